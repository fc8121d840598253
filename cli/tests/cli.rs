//! End-to-end tests of the `ncd` command line: the real binary, config and list
//! files in a temp dir, exit statuses, text and JSON output.

// Tests may unwrap: a failed unwrap is a failed test, with its place.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ncd_config::catalog;
use serde_json::Value;
use tempfile::TempDir;

/// What one run of `ncd` did.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    #[track_caller]
    fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "{self:#?}");
        self
    }

    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {self:#?}"))
    }
}

/// A temp dir with a config file `ncd.toml` and an empty state dir.
struct Env {
    dir: TempDir,
}

impl Env {
    fn new(config: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ncd-cli-test-")
            .tempdir()
            .expect("temp dir");
        std::fs::write(dir.path().join("ncd.toml"), config).expect("write the config");
        std::fs::create_dir(dir.path().join("state")).expect("create the state dir");
        Self { dir }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("ncd.toml")
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write a file");
        path
    }

    /// `ncd --config CONFIG --state-dir STATE ARGS…`.
    fn ncd(&self, args: &[&str]) -> Run {
        let mut all = vec![
            "--config".to_string(),
            path_arg(&self.config()),
            "--state-dir".to_string(),
            path_arg(&self.state_dir()),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        ncd(&all)
    }
}

fn path_arg(path: &Path) -> String {
    path.to_str().expect("UTF-8 temp path").to_string()
}

/// Runs `ncd` with `args` (and nothing else) and waits for it.
fn ncd<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_ncd"))
        .args(args)
        .env_remove("NCD_SOCKET")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run ncd");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The number in front of `rules  SOURCE` in the text of `ncd config check`.
#[track_caller]
fn rules_of(stdout: &str, source: &str) -> usize {
    let suffix = format!(" rules  {source}");
    let line = stdout
        .lines()
        .find(|l| l.contains(&suffix))
        .unwrap_or_else(|| panic!("no line for {source:?} in:\n{stdout}"));
    line.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line:?}"))
}

const INSTAGRAM: &str = "[block]\nservices = [\"instagram\"]\n";

// ----- ncd check --------------------------------------------------------------------

#[test]
fn check_names_the_rule_and_service_that_block_a_name() {
    let env = Env::new(INSTAGRAM);
    let run = env.ncd(&["check", "www.instagram.com"]);
    run.expect_code(0);
    assert_eq!(
        run.stdout.trim(),
        "www.instagram.com is blocked by the rule `instagram.com` (service: instagram).",
        "{run:#?}"
    );
    // No ncdd answers in this test: ncd says it read the config file instead.
    assert!(run.stderr.contains("ncdd is not running"), "{run:#?}");
}

#[test]
fn check_of_a_lookalike_name_says_not_blocked_and_exits_1() {
    let env = Env::new(INSTAGRAM);
    let run = env.ncd(&["check", "notinstagram.com"]);
    run.expect_code(1);
    assert!(run.stdout.contains("notinstagram.com is not blocked"), "{run:#?}");

    let run = env.ncd(&["check", "instagram.com.evil.test"]);
    run.expect_code(1);
    assert!(run.stdout.contains("is not blocked"), "{run:#?}");
}

#[test]
fn check_of_an_allow_exception_names_the_rule_and_the_exception() {
    let env = Env::new("[block]\nservices = [\"facebook\"]\nallow = [\"business.facebook.com\"]\n");
    let run = env.ncd(&["check", "business.facebook.com"]);
    run.expect_code(1);
    let out = &run.stdout;
    assert!(out.starts_with("business.facebook.com is not blocked"), "{run:#?}");
    assert!(out.contains("the rule `facebook.com` (service: facebook)"), "{run:#?}");
    assert!(
        out.contains("the exception `business.facebook.com` (config: [block] allow)"),
        "{run:#?}"
    );
    // The rest of the service is still blocked.
    env.ncd(&["check", "www.facebook.com"]).expect_code(0);
}

#[test]
fn check_json_has_blocked_and_the_rule_with_its_source() {
    let env = Env::new(
        "[block]\nservices = [\"instagram\", \"facebook\"]\ndomains = [\"=exact.example.org\"]\n\
         allow = [\"business.facebook.com\"]\n",
    );

    let run = env.ncd(&["check", "--json", "www.instagram.com"]);
    run.expect_code(0);
    let v = run.json();
    assert_eq!(v["name"], "www.instagram.com");
    assert_eq!(v["blocked"], true);
    assert_eq!(v["by"]["rule"], "instagram.com");
    assert_eq!(v["by"]["source"], "service: instagram");

    let run = env.ncd(&["check", "--json", "exact.example.org"]);
    run.expect_code(0);
    let v = run.json();
    assert_eq!(v["by"]["rule"], "=exact.example.org");
    assert_eq!(v["by"]["source"], "config: [block] domains");

    let run = env.ncd(&["check", "--json", "www.exact.example.org"]);
    run.expect_code(1);
    let v = run.json();
    assert_eq!(v["blocked"], false);
    assert!(v.get("by").is_none(), "{v}");

    let run = env.ncd(&["check", "--json", "business.facebook.com"]);
    run.expect_code(1);
    let v = run.json();
    assert_eq!(v["blocked"], false);
    assert_eq!(v["by"]["rule"], "facebook.com");
    assert_eq!(v["by"]["source"], "service: facebook");
    assert_eq!(v["allowed_by"]["rule"], "business.facebook.com");
    assert_eq!(v["allowed_by"]["source"], "config: [block] allow");
}

#[test]
fn check_normalises_case_trailing_dot_and_idn() {
    let env = Env::new("[block]\ndomains = [\"bücher.example\"]\nservices = [\"instagram\"]\n");

    let run = env.ncd(&["check", "BÜCHER.example."]);
    run.expect_code(0);
    assert_eq!(
        run.stdout.trim(),
        "xn--bcher-kva.example is blocked by the rule `xn--bcher-kva.example` (config: [block] domains).",
        "{run:#?}"
    );

    let run = env.ncd(&["check", "--json", "Www.BÜCHER.Example."]);
    run.expect_code(0);
    let v = run.json();
    assert_eq!(v["name"], "www.xn--bcher-kva.example");
    assert_eq!(v["by"]["rule"], "xn--bcher-kva.example");

    let run = env.ncd(&["check", "WWW.InStAgRaM.CoM."]);
    run.expect_code(0);
    assert!(run.stdout.starts_with("www.instagram.com is blocked"), "{run:#?}");

    // The punycode spelling is the same name.
    env.ncd(&["check", "xn--bcher-kva.example"]).expect_code(0);
}

#[test]
fn check_of_an_invalid_name_exits_2_with_a_clear_error() {
    let env = Env::new(INSTAGRAM);
    for (name, why) in [
        ("a..b", "empty label"),
        ("*.instagram.com", "not allowed in a host name"),
        ("under score!.example", "not allowed in a host name"),
        (".", "empty domain name"),
    ] {
        let run = env.ncd(&["check", name]);
        run.expect_code(2);
        assert!(run.stdout.is_empty(), "{name:?}: {run:#?}");
        assert!(run.stderr.starts_with("ncd: "), "{name:?}: {run:#?}");
        assert!(run.stderr.contains(why), "{name:?}: {run:#?}");
        assert!(!run.stderr.contains("panicked"), "{name:?}: {run:#?}");
    }
    let run = env.ncd(&["check", "a..b"]);
    assert!(run.stderr.contains("\"a..b\""), "the error quotes the name: {run:#?}");
}

#[test]
fn check_with_a_broken_or_missing_config_exits_2_with_its_place() {
    let env = Env::new("[block]\nservices = [\"instagram\"]\ndomains = [\"bad..example\"]\n");
    let run = env.ncd(&["check", "www.instagram.com"]);
    run.expect_code(2);
    let place = format!("ncd: {}:3:", env.config().display());
    assert!(run.stderr.contains(&place), "expected {place:?}: {run:#?}");
    assert!(run.stderr.contains("bad..example"), "{run:#?}");

    let run = ncd(&[
        "--config",
        "/nonexistent/ncd-test/ncd.toml",
        "check",
        "www.instagram.com",
    ]);
    run.expect_code(2);
    assert!(run.stderr.contains("/nonexistent/ncd-test/ncd.toml"), "{run:#?}");
    assert!(run.stderr.contains("cannot read config"), "{run:#?}");
}

#[test]
fn check_finds_rules_in_list_files_and_downloaded_url_lists() {
    let env = Env::new("[block]\nlists = [\"social.hosts\", \"http://127.0.0.1:9/list.txt\"]\n");
    env.file("social.hosts", "# a hosts list\n0.0.0.0 vk.com\n0.0.0.0 ok.ru\n");
    let list = env.dir.path().join("social.hosts");

    let run = env.ncd(&["check", "--json", "m.vk.com"]);
    run.expect_code(0);
    let v = run.json();
    assert_eq!(v["by"]["rule"], "vk.com");
    assert_eq!(v["by"]["source"], format!("list: {}", list.display()));

    // The URL list is not downloaded yet: its names are not blocked, the rest is.
    env.ncd(&["check", "from-the-url.example"]).expect_code(1);

    // `--state-dir` is where the daemon keeps the last good copy.
    let cached = ncd_state::StateDir::new(env.state_dir()).url_list_copy("http://127.0.0.1:9/list.txt");
    std::fs::create_dir_all(cached.parent().unwrap()).unwrap();
    std::fs::write(&cached, "from-the-url.example\n").unwrap();
    let run = env.ncd(&["check", "--json", "www.from-the-url.example"]);
    run.expect_code(0);
    assert_eq!(run.json()["by"]["source"], "list: http://127.0.0.1:9/list.txt");
}

// ----- ncd config check ---------------------------------------------------------------

/// Instagram (8 domains), two domains, and a list with 3 good lines (one a duplicate
/// of a service domain) and one broken line; guards off so the total is countable.
const COUNTED: &str = "[block]\nservices = [\"instagram\"]\ndomains = [\"a.example\", \"=b.example\"]\n\
                       lists = [\"list.txt\"]\nallow = [\"ok.a.example\"]\n\n[guard]\nencrypted_dns = false\n";
const COUNTED_LIST: &str = "# list\nc.example\nnot a domain\nd.example\ninstagram.com\n";

#[test]
fn config_check_prints_the_rules_per_source_and_the_total() {
    let env = Env::new(COUNTED);
    let list = env.file("list.txt", COUNTED_LIST);
    let instagram = catalog::service("instagram").unwrap().domains.len();

    let run = env.ncd(&["config", "check"]);
    run.expect_code(0);
    let out = &run.stdout;
    assert!(
        out.starts_with(&format!("{} is valid.", env.config().display())),
        "{run:#?}"
    );
    assert_eq!(rules_of(out, "service: instagram"), instagram, "{out}");
    assert_eq!(rules_of(out, "config: [block] domains"), 2, "{out}");
    assert_eq!(rules_of(out, "config: [block] allow"), 1, "{out}");
    let list_source = format!("list: {}", list.display());
    assert_eq!(rules_of(out, &list_source), 3, "{out}");
    let list_line = out.lines().find(|l| l.contains(&list_source)).unwrap();
    assert!(list_line.contains("(1 lines skipped"), "{list_line:?}");
    assert!(!out.contains("guard:"), "guards are off: {out}");

    // Distinct names: instagram.com from the list is already blocked by the service.
    let total = instagram + 2 + 2;
    assert!(
        out.contains(&format!(
            "\n{total} names blocked (each with its subdomains unless written =name), 1 exceptions."
        )),
        "expected {total} names blocked:\n{out}"
    );
    assert!(out.contains("Blocked names are answered 0.0.0.0 / ::"), "{out}");
}

#[test]
fn config_check_takes_the_file_argument_over_config() {
    let env = Env::new("this is not toml\n");
    let other = env.file(
        "other.toml",
        "[block]\nservices = [\"tiktok\"]\n[dns]\nanswer = \"nxdomain\"\n",
    );
    let run = env.ncd(&["config", "check", &path_arg(&other)]);
    run.expect_code(0);
    assert!(
        run.stdout.starts_with(&format!("{} is valid.", other.display())),
        "{run:#?}"
    );
    assert_eq!(
        rules_of(&run.stdout, "service: tiktok"),
        catalog::service("tiktok").unwrap().domains.len()
    );
    assert!(run.stdout.contains("answered NXDOMAIN"), "{run:#?}");
}

#[test]
fn config_check_counts_the_guards_when_they_are_on() {
    let env = Env::new("");
    let run = env.ncd(&["config", "check", "--json"]);
    run.expect_code(0);
    let v = run.json();
    let guards = v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == "guard: encrypted DNS bypasses")
        .unwrap_or_else(|| panic!("no guard source: {v}"));
    assert!(guards["rules"].as_u64().unwrap() > 0, "{v}");
}

#[test]
fn config_check_reports_a_url_list_that_is_not_downloaded_yet() {
    let env = Env::new("[block]\ndomains = [\"a.example\"]\nlists = [\"https://lists.example/x.txt\"]\n");
    let run = env.ncd(&["config", "check"]);
    run.expect_code(0);
    let line = run
        .stdout
        .lines()
        .find(|l| l.contains("list: https://lists.example/x.txt"))
        .unwrap_or_else(|| panic!("{run:#?}"));
    assert!(line.contains("not loaded: not downloaded yet"), "{line:?}");
}

#[test]
fn config_check_of_a_broken_file_exits_1_with_path_line_col() {
    let env = Env::new("# ncd\n[dns]\nlisten = [\"127.0.0.1:53\", \"nope\"]\n");
    let run = env.ncd(&["config", "check"]);
    run.expect_code(1);
    assert!(run.stdout.is_empty(), "{run:#?}");
    let line = run.stderr.lines().next().unwrap_or_default();
    let prefix = format!("{}:", env.config().display());
    let rest = line
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{line:?} does not start with {prefix:?}"));
    let mut parts = rest.splitn(3, ':');
    let (line_no, col, message) = (parts.next(), parts.next(), parts.next());
    assert_eq!(line_no, Some("3"), "{line:?}");
    assert!(
        col.and_then(|c| c.parse::<usize>().ok()).is_some_and(|c| c >= 1),
        "{line:?}"
    );
    let message = message.unwrap_or_default();
    assert!(message.starts_with(' ') && message.len() > 1, "{line:?}");
    assert!(message.contains("socket address"), "{line:?}");

    // An unknown key in the same way, at its own line and column 1.
    let env = Env::new("[block]\nservices = [\"instagram\"]\nservice = [\"tiktok\"]\n");
    let run = env.ncd(&["config", "check", "--json"]);
    run.expect_code(1);
    let prefix = format!("{}:3:1: ", env.config().display());
    assert!(run.stderr.starts_with(&prefix), "{run:#?}");
    assert!(run.stderr.contains("`service`"), "{run:#?}");
}

#[test]
fn config_check_json_parses_and_has_the_counts() {
    let env = Env::new(COUNTED);
    let list = env.file("list.txt", COUNTED_LIST);
    let instagram = catalog::service("instagram").unwrap().domains.len();

    let run = env.ncd(&["config", "check", "--json"]);
    run.expect_code(0);
    let v = run.json();
    assert_eq!(v["valid"], true);
    assert_eq!(v["file"], path_arg(&env.config()));
    assert_eq!(v["blocked_names"], instagram + 4);
    assert_eq!(v["allow_exceptions"], 1);
    let sources = v["sources"].as_array().expect("sources");
    let by_name = |name: &str| {
        sources
            .iter()
            .find(|s| s["source"] == name)
            .unwrap_or_else(|| panic!("no source {name:?}: {v}"))
    };
    assert_eq!(by_name("service: instagram")["rules"], instagram);
    let list = by_name(&format!("list: {}", list.display()));
    assert_eq!(list["rules"], 3);
    assert_eq!(list["bad_lines"], 1);
    assert_eq!(list["error"], Value::Null);
}

// ----- ncd services, --help -----------------------------------------------------------

#[test]
fn services_lists_every_catalog_service_with_its_domains() {
    let run = ncd(&["services"]);
    run.expect_code(0);
    assert_eq!(catalog::SERVICES.len(), 19);
    let names: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| !l.starts_with(' '))
        .map(|l| l.split_whitespace().next().unwrap_or_default())
        .collect();
    let expected: Vec<&str> = catalog::SERVICES.iter().map(|s| s.name).collect();
    assert_eq!(names, expected, "{}", run.stdout);
    for service in catalog::SERVICES {
        assert!(
            run.stdout.contains(&format!("    {}\n", service.domains.join(" "))),
            "{}'s domains are missing:\n{}",
            service.name,
            run.stdout
        );
    }
    assert!(run.stdout.contains("facebook (also: fb)"), "{}", run.stdout);
    assert!(run.stdout.contains("x (also: twitter)"), "{}", run.stdout);
}

#[test]
fn services_into_a_closed_pipe_exits_quietly() {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let output = Command::new(env!("CARGO_BIN_EXE_ncd"))
        .arg("services")
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run ncd");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_ne!(output.status.code(), Some(101), "{stderr}");
}

#[test]
fn help_and_version_exit_0() {
    let run = ncd(&["--help"]);
    run.expect_code(0);
    assert!(run.stdout.contains("Usage: ncd"), "{run:#?}");
    for command in ["check", "config", "services"] {
        assert!(run.stdout.contains(command), "{command} missing from --help: {run:#?}");
    }

    let run = ncd(&["check", "--help"]);
    run.expect_code(0);
    assert!(run.stdout.contains("Usage: ncd check"), "{run:#?}");
    assert!(run.stdout.contains("--json"), "{run:#?}");
    assert!(run.stdout.contains("0 blocked, 1 not blocked, 2 error"), "{run:#?}");

    ncd(&["config", "check", "--help"]).expect_code(0);
    let run = ncd(&["--version"]);
    run.expect_code(0);
    assert!(run.stdout.starts_with("ncd "), "{run:#?}");
}

#[test]
fn a_usage_error_exits_2() {
    let run = ncd(&["check"]);
    run.expect_code(2);
    assert!(run.stderr.contains("Usage"), "{run:#?}");
    ncd(&["no-such-command"]).expect_code(2);
}
