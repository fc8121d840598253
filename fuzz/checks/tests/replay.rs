//! Replays every committed seed (`fuzz/corpus/<target>/`) and every crash found
//! so far (`fuzz/regressions/<target>/`) through the fuzz targets' checks, so the
//! properties are checked on stable by `cargo test --workspace`.
//!
//! A regression whose fix lies outside the fuzz crate and is not made yet is named
//! in `fuzz/regressions/OPEN` (one `target/file` a line, `#` comments): it is
//! expected to fail, and the test fails when it passes — fixed: take it off the
//! list, and from then on it must pass like the rest.

// Tests may unwrap: a failed unwrap is a failed test, with its place.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use ncd_fuzz_checks::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `target/file` names listed in fuzz/regressions/OPEN.
fn open() -> Vec<String> {
    let text = std::fs::read_to_string(fuzz_dir().join("regressions/OPEN")).unwrap_or_default();
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// The files of `fuzz/<kind>/<target>/`, sorted, with their `target/file` names.
fn inputs(kind: &str, target: &str) -> Vec<(String, PathBuf)> {
    let dir = fuzz_dir().join(kind).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                format!("{target}/{}", p.file_name().unwrap_or_default().to_string_lossy()),
                p,
            )
        })
        .collect();
    files.sort();
    files
}

fn check(target: &str) -> fn(&[u8]) {
    TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, f)| *f)
        .expect("a known target")
}

/// Runs each input; returns the names of those that failed, with why.
fn run(target: &str, inputs: &[(String, PathBuf)]) -> Vec<String> {
    let check = check(target);
    let mut failed = Vec::new();
    for (name, path) in inputs {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check(&bytes))) {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            let why: String = why.chars().take(2000).collect();
            failed.push(format!("{name}: {why}"));
        }
    }
    failed
}

fn replay(target: &str) {
    let open = open();
    let seeds = inputs("corpus", target);
    assert!(!seeds.is_empty(), "no seeds in fuzz/corpus/{target}");
    let (known, mut all): (Vec<_>, Vec<_>) = inputs("regressions", target)
        .into_iter()
        .partition(|(name, _)| open.contains(name));
    all.extend(seeds);
    let failed = run(target, &all);
    assert!(
        failed.is_empty(),
        "{} of {} inputs fail:\n{}",
        failed.len(),
        all.len(),
        failed.join("\n")
    );
    for (name, path) in known {
        assert!(
            !run(target, &[(name.clone(), path)]).is_empty(),
            "{name} passes now: take it off fuzz/regressions/OPEN"
        );
    }
}

#[test]
fn replay_config_ratchet() {
    replay("config_ratchet");
}

#[test]
fn replay_lists() {
    replay("lists");
}

#[test]
fn replay_control() {
    replay("control");
}

#[test]
fn replay_dns_request() {
    replay("dns_request");
}

#[test]
fn replay_proxy_request() {
    replay("proxy_request");
}

#[test]
fn replay_proxy_sni() {
    replay("proxy_sni");
}

#[test]
fn every_target_is_replayed() {
    let names: Vec<_> = TARGETS.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        names,
        [
            "config_ratchet",
            "lists",
            "control",
            "dns_request",
            "proxy_request",
            "proxy_sni"
        ]
    );
}
