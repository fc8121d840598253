//! The shipped configs (examples/ and config/defaults/) parse, and the schema refuses
//! what it must, naming `path:line:col`: an unknown key in any table of any shipped
//! file (after hickory-dns's `test_reject_unknown_fields`), and a bad value in each
//! typed field.

// Tests may unwrap: a failed unwrap is a failed test, with its place.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use ncd_config::{Config, ConfigError, ListSource};

/// The key inserted into every table; no table has a field of that name.
const BOGUS_KEY: &str = "bogus_key_xyz";
/// Tables every schema version has; `""` stands for the top level.
const REQUIRED_TABLES: &[&str] = &["", "dns", "block", "guard", "control"];

/// Every table of the schema, read from the serialised defaults (so a table added
/// later is covered too), with `""` for the top level first.
fn schema_tables() -> Vec<String> {
    let defaults = toml::to_string(&Config::default()).expect("serialise the defaults");
    let mut tables = vec![String::new()];
    tables.extend(
        defaults
            .lines()
            .filter_map(|l| l.trim().strip_prefix('[')?.strip_suffix(']').map(str::to_string)),
    );
    for required in REQUIRED_TABLES {
        assert!(tables.iter().any(|t| t == required), "no [{required}] in {tables:?}");
    }
    tables
}

/// Every `*.toml` under the workspace's examples/ and this crate's defaults/, sorted.
fn shipped_configs() -> Vec<PathBuf> {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in [crate_dir.join("../examples"), crate_dir.join("defaults")] {
        collect_toml(&dir, &mut files);
    }
    files.sort();
    assert!(
        files.len() >= 2,
        "expected at least examples/ncd.toml and config/defaults/dev.toml, found {files:?}"
    );
    files
}

fn collect_toml(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            collect_toml(&path, out);
        } else if path.extension().is_some_and(|e| e == "toml") {
            out.push(path);
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The 1-based line of the header `[table]` in `text`, if the file has that table.
fn header_line(text: &str, table: &str) -> Option<usize> {
    let header = format!("[{table}]");
    text.lines().position(|l| l.trim() == header).map(|i| i + 1)
}

/// `text` with `line` inserted so that it becomes line `at` (1-based).
fn insert_line(text: &str, at: usize, line: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(at - 1, line);
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// Asserts the `Display` of `err` is `PATH:LINE:COL: message` for its own position.
#[track_caller]
fn assert_display_names_the_place(err: &ConfigError, path: &Path, line: usize) {
    let (at_line, col) = err.position.unwrap_or_else(|| panic!("no position in {err}"));
    assert_eq!(at_line, line, "{err}");
    let prefix = format!("{}:{line}:{col}: ", path.display());
    let shown = err.to_string();
    assert!(shown.starts_with(&prefix), "{shown:?} does not start with {prefix:?}");
    assert!(shown.len() > prefix.len(), "no message after the place: {shown:?}");
}

#[test]
fn every_shipped_config_parses() {
    for path in shipped_configs() {
        let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        // A shipped example must not name a list file that is not shipped with it.
        for list in &config.block.lists {
            if let ListSource::File(file) = list {
                assert!(
                    file.is_file(),
                    "{}: list {} does not exist",
                    path.display(),
                    file.display()
                );
            }
        }
    }
}

#[test]
fn the_dev_defaults_file_is_the_embedded_dev_config() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("defaults/dev.toml");
    assert_eq!(read(&path), ncd_config::DEV_CONFIG);
    assert_eq!(Config::load(&path).unwrap(), Config::dev());
}

#[test]
fn the_example_config_differs_from_the_defaults_only_where_it_says() {
    // The example documents every key with its default; the values it sets apart
    // from the defaults are the ones shown to a new user, so check they took effect.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/ncd.toml");
    let config = Config::load(&path).unwrap();
    let defaults = Config::default();
    assert_eq!(config.dns.listen, defaults.dns.listen);
    assert_eq!(config.dns.blocked_ttl, defaults.dns.blocked_ttl);
    assert_eq!(config.dns.max_ttl, defaults.dns.max_ttl);
    assert_eq!(config.dns.upstream_timeout, defaults.dns.upstream_timeout);
    assert_eq!(config.dns.cache_size, defaults.dns.cache_size);
    assert_eq!(config.block.refresh, defaults.block.refresh);
    assert_eq!(config.guard, defaults.guard);
    assert_eq!(config.control, defaults.control);
    assert!(!config.dns.upstreams.is_empty());
    assert!(!config.block.services.is_empty());
}

/// An unknown key is refused in every table of every shipped file, at its own line,
/// column 1, and the message names it. A table the file does not have is added at
/// the end.
#[test]
fn an_unknown_key_in_any_table_of_any_shipped_config_is_rejected_at_its_line() {
    let bogus = format!("{BOGUS_KEY} = 1");
    let tables = schema_tables();
    let mut checked = 0;
    for path in shipped_configs() {
        let text = read(&path);
        for table in &tables {
            let (mutated, line) = if table.is_empty() {
                (insert_line(&text, 1, &bogus), 1)
            } else if let Some(header) = header_line(&text, table) {
                (insert_line(&text, header + 1, &bogus), header + 1)
            } else {
                let appended = format!("{}\n[{table}]\n{bogus}\n", text.trim_end());
                let line = appended.lines().count();
                (appended, line)
            };
            let what = format!("{} [{table}]", path.display());
            let err = match Config::parse(&mutated, &path) {
                Ok(_) => panic!("{what}: {BOGUS_KEY} was accepted"),
                Err(err) => err,
            };
            assert_eq!(err.position, Some((line, 1)), "{what}: {err}");
            assert!(err.message.contains(BOGUS_KEY), "{what}: {err}");
            assert_display_names_the_place(&err, &path, line);
            checked += 1;
        }
    }
    assert!(checked >= 2 * REQUIRED_TABLES.len());
}

#[test]
fn an_unknown_table_is_rejected_with_its_name() {
    for path in shipped_configs() {
        let text = format!("{}\n[blok]\nservices = [\"instagram\"]\n", read(&path));
        let err = Config::parse(&text, &path).unwrap_err();
        assert!(err.message.contains("blok"), "{}: {err}", path.display());
        assert!(err.position.is_some(), "{}: {err}", path.display());
    }
}

/// One bad value: the key it replaces in examples/ncd.toml, the new line, and a
/// piece of the message.
struct BadValue {
    key: &'static str,
    line: &'static str,
    message: &'static str,
}

const BAD_VALUES: &[BadValue] = &[
    BadValue {
        key: "blocked_ttl",
        line: r#"blocked_ttl = "10 parsecs""#,
        message: "invalid duration \"10 parsecs\"",
    },
    BadValue {
        key: "max_ttl",
        line: r#"max_ttl = "1 hour""#,
        message: "invalid duration \"1 hour\"",
    },
    BadValue {
        key: "upstream_timeout",
        line: r#"upstream_timeout = "2""#,
        message: "a number needs a unit",
    },
    BadValue {
        key: "refresh",
        line: r#"refresh = "1y""#,
        message: "unknown unit \"y\"",
    },
    BadValue {
        key: "listen",
        line: r#"listen = ["127.0.0.1:53", "localhost:53"]"#,
        message: "socket address",
    },
    BadValue {
        key: "allow_clients",
        line: r#"allow_clients = ["192.168.1.0/24", "192.168.1.0/33"]"#,
        message: "IP address",
    },
    BadValue {
        key: "upstreams",
        line: r#"upstreams = ["udp://9.9.9.9:53", "quic://9.9.9.9"]"#,
        message: "unknown scheme \"quic\"",
    },
    BadValue {
        key: "upstreams",
        line: r#"upstreams = ["udp://dns.quad9.net"]"#,
        message: "plain DNS upstreams need an IP address",
    },
    BadValue {
        key: "services",
        line: r#"services = ["instagram", "myspace"]"#,
        message: "unknown service \"myspace\"",
    },
    BadValue {
        key: "answer",
        line: r#"answer = "blackhole""#,
        message: "blackhole",
    },
    BadValue {
        key: "cache_size",
        line: "cache_size = -1",
        message: "-1",
    },
    BadValue {
        key: "domains",
        line: r#"domains = ["example.com", "bad..example"]"#,
        message: "bad..example",
    },
    BadValue {
        key: "allow",
        line: r#"allow = ["*.facebook.com"]"#,
        message: "wildcards are not needed",
    },
    BadValue {
        key: "lists",
        line: r#"lists = ["ftp://example.org/list.txt"]"#,
        message: "only files and http(s) URLs",
    },
    BadValue {
        key: "encrypted_dns",
        line: r#"encrypted_dns = "yes""#,
        message: "expected a boolean",
    },
];

/// Each typed field with a bad value is refused at the line of that value; the
/// column is the value's (for an array: the array's or the bad element's).
#[test]
fn a_bad_value_in_each_typed_field_is_rejected_at_its_line() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/ncd.toml");
    let text = read(&path);
    for bad in BAD_VALUES {
        let prefix = format!("{} =", bad.key);
        let index = text
            .lines()
            .position(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("examples/ncd.toml has no line for {}", bad.key));
        let line = index + 1;
        let mut lines: Vec<&str> = text.lines().collect();
        lines[index] = bad.line;
        let mutated = lines.join("\n") + "\n";

        let err = match Config::parse(&mutated, &path) {
            Ok(_) => panic!("{:?} was accepted", bad.line),
            Err(err) => err,
        };
        assert!(err.message.contains(bad.message), "{:?}: {err}", bad.line);
        assert_display_names_the_place(&err, &path, line);
        let col = err.position.map_or(0, |p| p.1);
        let value_col = bad.line.find('=').map_or(0, |i| i + 2) + 1;
        let allowed: Vec<usize> = if bad.line[value_col - 1..].starts_with('[') {
            // The array, or the first element that is not in the good config.
            let element = bad.line.rfind(", \"").map_or(value_col + 1, |i| i + 3);
            vec![value_col, element]
        } else {
            vec![value_col]
        };
        assert!(
            allowed.contains(&col),
            "{:?}: column {col}, expected one of {allowed:?}: {err}",
            bad.line
        );
    }
}

/// Inside a multi-line array, the error names the line of the bad element, not the
/// line where the array opens: the lists that need this are the long ones.
#[test]
fn a_bad_element_of_a_multi_line_array_is_rejected_at_its_own_line() {
    let path = Path::new("/etc/ncd/ncd.toml");
    let cases = [
        (
            "[block]\nservices = [\n    \"instagram\",\n    \"myspace\",\n]\n",
            "myspace",
        ),
        (
            "[block]\ndomains = [\n    \"example.com\",\n    \"bad..example\",\n]\n",
            "bad..example",
        ),
        (
            "[block]\nallow = [\n    \"example.com\",\n    \"*.example.org\",\n]\n",
            "*.example.org",
        ),
        (
            "[block]\nlists = [\n    \"a.txt\",\n    \"ftp://x/y\",\n]\n",
            "ftp://x/y",
        ),
        (
            "[dns]\nupstreams = [\n    \"udp://9.9.9.9\",\n    \"quic://9.9.9.9\",\n]\n",
            "quic://9.9.9.9",
        ),
        (
            "[dns]\nlisten = [\n    \"127.0.0.1:53\",\n    \"localhost:53\",\n]\n",
            "localhost:53",
        ),
    ];
    let mut wrong = Vec::new();
    for (text, value) in cases {
        let err = Config::parse(text, path).unwrap_err();
        if err.position != Some((4, 5)) {
            wrong.push(format!("{value}: {err}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "errors not at the bad element (4:5):\n{}",
        wrong.join("\n")
    );
}

/// The checks made after parsing (empty listen, zero timeout, short refresh) name
/// the line too, as the crate docs promise ("every error names `path:line:col`").
#[test]
fn a_value_out_of_range_is_rejected_at_its_line() {
    let path = Path::new("/etc/ncd/ncd.toml");
    for text in [
        "# ncd\n[block]\nrefresh = \"30s\"\n",
        "# ncd\n[dns]\nlisten = []\n",
        "# ncd\n[dns]\nupstream_timeout = \"0s\"\n",
    ] {
        let err = Config::parse(text, path).unwrap_err();
        assert_display_names_the_place(&err, path, 3);
    }
}

#[test]
fn values_out_of_range_are_rejected_with_a_reason() {
    let path = Path::new("/etc/ncd/ncd.toml");
    for (text, reason) in [
        ("[block]\nrefresh = \"30s\"\n", "refresh must be at least 1m"),
        ("[dns]\nlisten = []\n", "listen is empty"),
        (
            "[dns]\nupstream_timeout = \"0s\"\n",
            "upstream_timeout must be longer than 0s",
        ),
    ] {
        let err = Config::parse(text, path).unwrap_err();
        assert!(err.message.contains(reason), "{text:?}: {err}");
        assert!(err.to_string().starts_with("/etc/ncd/ncd.toml:"), "{err}");
    }
    // The smallest refresh allowed is accepted.
    Config::parse("[block]\nrefresh = \"1m\"\n", path).unwrap();
}

#[test]
fn a_missing_file_names_the_path_and_a_toml_syntax_error_its_place() {
    let missing = Path::new("/nonexistent/ncd-test/ncd.toml");
    let err = Config::load(missing).unwrap_err();
    assert_eq!(err.position, None);
    assert!(
        err.to_string()
            .starts_with("/nonexistent/ncd-test/ncd.toml: cannot read config"),
        "{err}"
    );

    let path = Path::new("/etc/ncd/ncd.toml");
    let err = Config::parse("[dns]\ncache_size = 10\nanswer = \"null\n", path).unwrap_err();
    assert_eq!(err.position.map(|p| p.0), Some(3), "{err}");
    assert_display_names_the_place(&err, path, 3);
}
