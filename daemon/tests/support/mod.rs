//! Test support for the integration tests: a fake upstream DNS server, a harness
//! that runs the real `ncdd` binary, a small DNS client, a control-socket client,
//! a runner for the real `ncd` command line, a flood generator and a private mount
//! namespace.

pub(crate) mod cli;
pub(crate) mod client;
pub(crate) mod control;
pub(crate) mod flood;
pub(crate) mod mountns;
pub(crate) mod ncdd;
pub(crate) mod netns;
pub(crate) mod upstream;

use std::time::{Duration, Instant};

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
