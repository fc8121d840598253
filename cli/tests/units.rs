//! The service units in systemd/: checked with this machine's `systemd-analyze` inside a
//! temp root laid out as installed (never the real /etc or service manager), the launchd
//! plist parsed with the `plist` crate, and the house rules every file keeps.
//!
//! `systemd-analyze` comes with the Debian package `systemd`; without it these tests fail
//! and say so.

// Tests may unwrap: a failed unwrap is a failed test, with its place.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The four units ncdd needs, then the guard's.
const UNITS: [&str; 7] = [
    "ncd.service",
    "ncd.socket",
    "ncd-control.socket",
    "ncd-proxy.socket",
    "ncd-guard.service",
    "ncd-guard.path",
    "ncd-guard.timer",
];

/// Targets the units (and their default dependencies) refer to. `--root` makes
/// systemd-analyze look them up in the temp root only, so stubs stand in for them.
const TARGETS: [&str; 8] = [
    "sysinit",
    "basic",
    "shutdown",
    "sockets",
    "multi-user",
    "nss-lookup",
    "paths",
    "timers",
];

const EXEC_START: &str = "ExecStart=/usr/bin/ncdd --config /etc/ncd/ncd.toml --state-dir /var/lib/ncd";

fn systemd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd")
}

fn read(name: &str) -> String {
    let path = systemd_dir().join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/bin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("`{name}` not found: install the Debian package `systemd` (apt-get install systemd)"))
}

fn write_executable(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// A temp root with the units where `ncd install` puts them, the sysusers.d and
/// tmpfiles.d entries, stub targets, and stand-ins for the binaries ExecStart= and
/// ExecReload= name (systemd-analyze checks they are executable inside the root).
fn staged_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let units = root.path().join("etc/systemd/system");
    fs::create_dir_all(&units).unwrap();
    for unit in UNITS {
        fs::copy(systemd_dir().join(unit), units.join(unit)).unwrap();
    }
    let vendor = root.path().join("usr/lib/systemd/system");
    fs::create_dir_all(&vendor).unwrap();
    for target in TARGETS {
        fs::write(
            vendor.join(format!("{target}.target")),
            format!("[Unit]\nDescription=stub {target}\n"),
        )
        .unwrap();
    }
    for (from, to) in [
        ("ncd.sysusers", "usr/lib/sysusers.d/ncd.conf"),
        ("ncd.tmpfiles", "usr/lib/tmpfiles.d/ncd.conf"),
    ] {
        let to = root.path().join(to);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(systemd_dir().join(from), to).unwrap();
    }
    write_executable(&root.path().join("usr/bin/ncdd"), "#!/bin/sh\nexit 0\n");
    write_executable(&root.path().join("usr/bin/ncd"), "#!/bin/sh\nexit 0\n");
    write_executable(&root.path().join("bin/kill"), "#!/bin/sh\nexit 0\n");
    root
}

/// Runs a command; returns (success, stdout and stderr together).
fn run(command: &mut Command) -> (bool, String) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[test]
fn units_verify_without_a_single_warning() {
    let root = staged_root();
    // systemd 252: `--root` works with verify (ExecStart= and the targets are looked up
    // inside it); `--man=no` because ncd's man page is not installed in the root.
    let (ok, output) = run(Command::new(tool("systemd-analyze"))
        .arg("verify")
        .arg("--man=no")
        .arg("--recursive-errors=yes")
        .arg(format!("--root={}", root.path().display()))
        .args(UNITS));
    // verify prints nothing when all is well: every line is a warning or an error.
    let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        ok && lines.is_empty(),
        "systemd-analyze verify (success: {ok}) said:\n{output}"
    );
}

#[test]
fn units_enable_offline_with_sockets_and_guard() {
    let root = staged_root();
    let (ok, output) = run(Command::new(tool("systemctl"))
        .arg(format!("--root={}", root.path().display()))
        .args(["enable", "ncd.service"]));
    assert!(ok, "systemctl --root enable failed:\n{output}");
    for link in [
        "multi-user.target.wants/ncd.service",
        "sockets.target.wants/ncd.socket",
        "sockets.target.wants/ncd-control.socket",
        "paths.target.wants/ncd-guard.path",
        "timers.target.wants/ncd-guard.timer",
    ] {
        let path = root.path().join("etc/systemd/system").join(link);
        assert!(
            path.symlink_metadata().is_ok(),
            "{link} missing after enable:\n{output}"
        );
    }
}

/// `systemd-analyze security` prints "→ Overall exposure level for UNIT: 1.3 OK 🙂".
fn exposure(output: &str, unit: &str) -> f64 {
    let marker = format!("Overall exposure level for {unit}:");
    let line = output
        .lines()
        .find(|l| l.contains(&marker))
        .unwrap_or_else(|| panic!("no score in:\n{output}"));
    let rest = line.split(&marker).nth(1).unwrap().trim();
    rest.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("bad score line: {line}"))
}

#[test]
fn services_score_2_0_or_better() {
    let root = staged_root();
    for unit in ["ncd.service", "ncd-guard.service"] {
        // --threshold is in tenths on systemd 252 ("2.0" is rejected): 20 means 2.0.
        let (ok, output) = run(Command::new(tool("systemd-analyze"))
            .args(["security", "--offline=yes", "--threshold=20", "--no-pager"])
            .arg(format!("--root={}", root.path().display()))
            .arg(unit));
        let score = exposure(&output, unit);
        println!("{unit}: exposure {score}");
        assert!(
            ok,
            "systemd-analyze security failed the 2.0 threshold for {unit}:\n{output}"
        );
        assert!(score <= 2.0, "{unit} exposure {score} > 2.0:\n{output}");
    }
}

#[test]
fn launchd_plist_has_the_expected_keys() {
    let path = systemd_dir().join("macos/org.ncd.ncdd.plist");
    let value = plist::Value::from_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let job = value.as_dictionary().expect("top level is a dictionary");
    let string = |key: &str| job.get(key).and_then(plist::Value::as_string);
    assert_eq!(string("Label"), Some("org.ncd.ncdd"));
    assert_eq!(string("UserName"), Some("root"));
    assert_eq!(job.get("RunAtLoad").and_then(plist::Value::as_boolean), Some(true));
    assert_eq!(job.get("KeepAlive").and_then(plist::Value::as_boolean), Some(true));
    assert!(string("StandardErrorPath").is_some_and(|p| p.starts_with('/')));

    let args: Vec<&str> = job["ProgramArguments"]
        .as_array()
        .expect("ProgramArguments is an array")
        .iter()
        .map(|a| a.as_string().expect("arguments are strings"))
        .collect();
    // /usr/bin is read-only on macOS (SIP): ncd install puts ncdd in /usr/local/bin.
    assert_eq!(
        args,
        [
            "/usr/local/bin/ncdd",
            "--config",
            "/etc/ncd/ncd.toml",
            "--state-dir",
            "/var/lib/ncd"
        ]
    );

    let sockets = job["Sockets"].as_dictionary().expect("Sockets is a dictionary");
    let mut names: Vec<&str> = sockets.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["control", "dns", "proxy"]);

    // The companion proxy: TCP 443 on loopback only, never UDP (no QUIC to go around it).
    let proxy = sockets["proxy"].as_array().expect("proxy is an array of sockets");
    let mut proxy: Vec<(String, String, String)> = proxy
        .iter()
        .map(|s| {
            let s = s.as_dictionary().expect("each socket is a dictionary");
            let get = |k: &str| {
                s.get(k)
                    .and_then(plist::Value::as_string)
                    .unwrap_or_default()
                    .to_owned()
            };
            (get("SockNodeName"), get("SockServiceName"), get("SockType"))
        })
        .collect();
    proxy.sort();
    assert_eq!(
        proxy,
        [
            ("127.0.0.1".into(), "443".into(), "stream".into()),
            ("::1".into(), "443".into(), "stream".into())
        ]
    );

    let dns = sockets["dns"].as_array().expect("dns is an array of sockets");
    let mut seen: Vec<(String, String, String)> = dns
        .iter()
        .map(|s| {
            let s = s.as_dictionary().expect("each socket is a dictionary");
            let get = |k: &str| {
                s.get(k)
                    .and_then(plist::Value::as_string)
                    .unwrap_or_default()
                    .to_owned()
            };
            assert_eq!(get("SockServiceName"), "53");
            (get("SockNodeName"), get("SockFamily"), get("SockType"))
        })
        .collect();
    seen.sort();
    let expected: Vec<(String, String, String)> = [
        ("127.0.0.1", "IPv4", "dgram"),
        ("127.0.0.1", "IPv4", "stream"),
        ("::1", "IPv6", "dgram"),
        ("::1", "IPv6", "stream"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(
        seen, expected,
        "dns: UDP and TCP on 127.0.0.1:53 and [::1]:53, loopback only"
    );

    let control = sockets["control"].as_dictionary().expect("control is one socket");
    assert_eq!(
        control.get("SockPathName").and_then(plist::Value::as_string),
        Some("/var/run/ncd.sock")
    );
    // launchd.plist(5) takes the mode in decimal: 438 = 0o666.
    assert_eq!(
        control.get("SockPathMode").and_then(plist::Value::as_signed_integer),
        Some(0o666)
    );
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_in(&path));
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}

#[test]
fn every_file_starts_with_a_comment_and_exec_start_stays_on_one_line() {
    let files = files_in(&systemd_dir());
    assert!(files.len() >= 10, "systemd/ holds {files:?}");
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = fs::read_to_string(&path).unwrap();
        if name == "README.md" {
            continue;
        }
        let first = if name.ends_with(".plist") {
            // A comment may not precede the XML declaration: it comes right after.
            let mut lines = text.lines();
            assert!(
                lines.next().unwrap().starts_with("<?xml "),
                "{name}: no XML declaration"
            );
            lines.next().unwrap_or_default().starts_with("<!--")
        } else {
            text.starts_with('#')
        };
        assert!(first, "{name} does not start with a comment saying what it is for");
        assert!(text.contains("nstall"), "{name} does not say where it is installed");

        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.starts_with("ExecStart=") {
                // `ncd install` rewrites this line for a /usr/local install.
                assert!(
                    !line.trim_end().ends_with('\\'),
                    "{name}:{}: ExecStart= continues",
                    i + 1
                );
                assert!(
                    line.starts_with("ExecStart=/usr/bin/ncdd ") || line.starts_with("ExecStart=/usr/bin/ncd "),
                    "{name}:{}: {line}",
                    i + 1
                );
            }
        }
    }
    let service = read("ncd.service");
    assert_eq!(
        service
            .lines()
            .filter(|l| l.starts_with("ExecStart="))
            .collect::<Vec<_>>(),
        [EXEC_START]
    );
}

#[test]
fn resolved_dropin_template_resets_then_routes_everything_to_ncd() {
    let text = read("resolved-dropin.conf.in");
    let settings: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    assert_eq!(
        settings,
        [
            "[Resolve]",
            "DNS=",
            "DNS=127.0.0.1 ::1",
            // No `Domains=` reset: the person's own search domains stay.
            "Domains=~. @BLOCKED_DOMAINS@",
            "FallbackDNS=",
            "DNSSEC=no",
            "DNSOverTLS=no",
        ]
    );
    assert_eq!(
        text.matches("@BLOCKED_DOMAINS@").count(),
        2,
        "one placeholder, one mention in the comment"
    );
}

#[test]
fn sysusers_and_tmpfiles_entries() {
    let sysusers = read("ncd.sysusers");
    let user: Vec<&str> = sysusers.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(user, [r#"u ncd - "ncd DNS filter" /var/lib/ncd /usr/sbin/nologin"#]);

    let service = read("ncd.service");
    assert!(service.lines().any(|l| l == "User=ncd"));
    assert!(service.lines().any(|l| l == "StateDirectory=ncd"));
    // RuntimeDirectory= would re-own /run/ncd and delete the control socket on stop.
    assert!(!service.lines().any(|l| l.starts_with("RuntimeDirectory=")));
    // Each of these would break ncdd (peer credentials, upstreams, boot_id).
    for forbidden in [
        "PrivateUsers=yes",
        "PrivateNetwork=yes",
        "ProcSubset=pid",
        "IPAddressDeny=",
    ] {
        assert!(
            !service.lines().any(|l| l.starts_with(forbidden)),
            "ncd.service must not set {forbidden}"
        );
    }

    let tmpfiles = read("ncd.tmpfiles");
    let lines: Vec<Vec<&str>> = tmpfiles
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(
        lines.contains(&vec!["d", "/run/ncd", "0755", "root", "root", "-"]),
        "{tmpfiles}"
    );
    assert!(
        lines.contains(&vec!["d", "/var/lib/ncd-root", "0700", "root", "root", "-"]),
        "{tmpfiles}"
    );
}

/// The stop refusal from a period's first second: ncdd (not root) writes the
/// period marker, `ncd-guard.path` watches that very file, and the folders of the
/// drop-ins, so a removed one is put back at once.
#[test]
fn the_guard_path_watches_the_period_marker_and_the_stop_refusal() {
    let text = read("ncd-guard.path");
    let watched: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("PathChanged=")).collect();
    let marker = ncd_state::StateDir::new("/var/lib/ncd").period_marker();
    assert!(watched.contains(&marker.to_str().unwrap()), "{watched:?}");
    let guard = ncd_period::stop_guard::StopGuard::at("/".into());
    for unit in ["ncd.service", "ncd.socket", "ncd-control.socket", "ncd-guard.timer"] {
        let folder = guard.path_for(unit).parent().unwrap().to_path_buf();
        assert!(watched.contains(&folder.to_str().unwrap()), "{unit}: {watched:?}");
    }
    // Early boot: the timer's first run comes soon, and the drop-ins are persistent.
    assert!(guard.path().starts_with("/etc/systemd/system"));
}
