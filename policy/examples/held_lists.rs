//! Measures a list's compile with a period running (the lists' contents held):
//! `cargo run --release -p ncd-policy --example held_lists -- LIST`
//! (e.g. `python3 bench/gen_blocklist.py 1000000 hosts > /tmp/1m.hosts`).
//!
//! Four builds in a temp state dir: without a period; the period's first (the
//! locked copy is written); the steady state (nothing changed); and the list
//! emptied (every rule held, from the locked copy). Prints each one's time, and
//! the process's resident memory after it and at its peak.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::Instant;

use ncd_config::Config;
use ncd_policy::Policy;
use ncd_policy::lists::Hold;
use ncd_state::StateDir;

fn status_kib(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let source = std::env::args().nth(1).expect("usage: held_lists LIST");
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("list.txt");
    std::fs::copy(&source, &list).unwrap();
    let config = Config::parse(
        &format!("[block]\nlists = [\"{}\"]\n", list.display()),
        std::path::Path::new("held.toml"),
    )
    .unwrap();
    let state = StateDir::new(dir.path().join("state"));
    let mut policy = None;
    let mut run = |what: &str, hold: Hold<'_>| {
        drop(policy.take());
        let started = Instant::now();
        let p = Policy::build_keeping_copies(&config, &state, hold);
        let took = started.elapsed();
        println!(
            "{what:<36} {:>8.0} ms  {:>8} rules  {:>8} held  RSS {:>5.1} MiB  peak {:>5.1} MiB",
            took.as_secs_f64() * 1000.0,
            p.block_rules(),
            p.held().map(|(_, n)| n).sum::<usize>(),
            status_kib("VmRSS:") as f64 / 1024.0,
            status_kib("VmHWM:") as f64 / 1024.0,
        );
        policy = Some(p);
    };
    let key = Hold::Period { key: Some("1") };
    run("no period", Hold::None);
    run("period, first build (copy written)", key);
    run("period, steady", key);
    std::fs::write(&list, "").unwrap();
    run("period, list emptied (all held)", key);
}
