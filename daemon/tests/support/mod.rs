//! Test support for the integration tests: a fake upstream DNS server, a harness
//! that runs the real `ncdd` binary, a small DNS client, a control-socket client,
//! a runner for the real `ncd` command line, a flood generator and a private mount
//! namespace.

pub(crate) mod blocked;
pub(crate) mod cli;
pub(crate) mod client;
pub(crate) mod control;
pub(crate) mod flood;
pub(crate) mod mountns;
pub(crate) mod ncdd;
pub(crate) mod netns;
pub(crate) mod upstream;

use std::io::Write;
use std::time::{Duration, Instant};

/// True when the run is CI's (`CI=true`, as `.ci/run` sets it).
pub(crate) fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// What a test needs from the machine (root, a tool, a namespace): `Some` when it
/// is there. When it is not, the test fails under `CI=true` (`.ci/run` provides
/// all of it, so a skip there would be a pass that tested nothing); elsewhere it
/// says `SKIPPED` on stderr, past the harness's capture, and the test returns.
#[track_caller]
pub(crate) fn needs<T>(test: &str, available: Result<T, String>) -> Option<T> {
    match available {
        Ok(value) => Some(value),
        Err(why) if in_ci() => panic!("CI=true and {test} cannot run: {why} (.ci/run must provide it)"),
        Err(why) => {
            let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
            None
        }
    }
}

/// `Ok` when this process runs as root.
#[allow(dead_code)] // each test binary uses its own part of the harness
pub(crate) fn root() -> Result<(), String> {
    if rustix::process::geteuid().is_root() {
        Ok(())
    } else {
        Err("it needs root".into())
    }
}

/// `Ok` when `program` runs (`program ARG` exits 0): a tool the test drives.
#[allow(dead_code)] // each test binary uses its own part of the harness
pub(crate) fn program(program: &str, arg: &str) -> Result<(), String> {
    match std::process::Command::new(program)
        .arg(arg)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
    {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!("`{program} {arg}` exited with {status}")),
        Err(e) => Err(format!("`{program}` is not installed ({e})")),
    }
}

/// Calls `check` until it returns `Some`, or `timeout` passes (then `None`). Polls
/// every 20 ms: no test relies on a fixed sleep.
pub(crate) fn eventually<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A UDP port on loopback that nothing listens on (bound once, then released).
pub(crate) fn dead_loopback_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a probe socket");
    socket.local_addr().expect("probe address").port()
}
