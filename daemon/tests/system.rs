//! ncdd inside a service manager, without one: sockets passed by
//! `systemd-socket-activate`, readiness and watchdog on a fake `NOTIFY_SOCKET`,
//! the stop guard written under a temp root, and the open-resolver refusal.

// Tests may unwrap: a failed unwrap is a failed test, with its place.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)] // each test binary uses part of the shared harness
mod support;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::eventually;
use support::upstream::FakeUpstream;

const NULL_V4: Ipv4Addr = Ipv4Addr::UNSPECIFIED;

fn ncdd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ncdd"))
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn write_config(dir: &Path, upstream: &FakeUpstream, extra: &str) -> std::path::PathBuf {
    let path = dir.join("ncd.toml");
    let text = format!(
        "[dns]\nupstreams = [\"{}\"]\n{extra}\n[block]\nservices = [\"instagram\"]\n",
        upstream.url()
    );
    std::fs::write(&path, text).expect("write the config");
    path
}

/// Asks `server` over UDP until an answer comes (the first datagram is what makes
/// `systemd-socket-activate` start ncdd).
fn first_answer(server: SocketAddr, name: &str) -> support::client::Answer {
    eventually(Duration::from_secs(20), || {
        std::panic::catch_unwind(|| support::client::a(server, name)).ok()
    })
    .unwrap_or_else(|| panic!("no answer from {server}"))
}

#[test]
fn a_socket_passed_by_systemd_is_served() {
    let upstream = FakeUpstream::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &upstream, "");
    let port = free_port();
    let child = Command::new("systemd-socket-activate")
        .args(["--datagram", "--fdname=dns", "-l", &format!("127.0.0.1:{port}")])
        .arg(env!("CARGO_BIN_EXE_ncdd"))
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--control-socket")
        .arg(dir.path().join("control.sock"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("systemd-socket-activate (apt package: systemd)");
    let _child = Killed(child);
    let server = SocketAddr::from(([127, 0, 0, 1], port));
    let answer = first_answer(server, "www.instagram.com");
    assert_eq!(answer.ipv4(), [NULL_V4], "{:?}", answer.message);
    let answer = support::client::a(server, "allowed.test");
    assert_eq!(answer.ipv4(), [Ipv4Addr::new(192, 0, 2, 1)], "{:?}", answer.message);
}

#[test]
fn readiness_status_and_watchdog_reach_the_service_manager() {
    let upstream = FakeUpstream::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &upstream, "");
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let child = ncdd()
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(["--listen", "127.0.0.1:0"])
        .arg("--control-socket")
        .arg(dir.path().join("control.sock"))
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "1000000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _child = Killed(child);
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut buf = [0u8; 1024];
    while Instant::now() < deadline {
        if let Ok(len) = notify.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..len]).into_owned());
        }
        let has = |m: &str| seen.iter().any(|s| s.contains(m));
        if has("READY=1") && has("STATUS=No period running; blocking") && has("WATCHDOG=1") {
            return;
        }
    }
    panic!("expected READY=1, STATUS= and WATCHDOG=1; got {seen:?}");
}

#[test]
fn a_period_puts_the_stop_guard_in_place_and_its_end_removes_it() {
    let upstream = FakeUpstream::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &upstream, "");
    let root = dir.path().join("root");
    let state = dir.path().join("state");
    let child = ncdd()
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(&state)
        .args(["--listen", "127.0.0.1:0"])
        .arg("--control-socket")
        .arg(dir.path().join("control.sock"))
        .env("NCD_SYSTEM_ROOT", &root)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    wait_ready(&mut child.0);
    let control = support::control::Control::new(dir.path().join("control.sock"));
    let guard = root.join("etc/systemd/system/ncd.service.d/50-period.conf");
    assert!(!guard.exists(), "no guard without a period");
    control.ok(
        "start",
        Some(serde_json::json!({ "length_secs": 3, "reason": "a test of the stop guard" })),
    );
    let text = eventually(Duration::from_secs(5), || std::fs::read_to_string(&guard).ok())
        .expect("the stop guard appears while a period runs");
    assert!(text.contains("RefuseManualStop=yes"), "{text}");
    let gone = eventually(Duration::from_secs(10), || (!guard.exists()).then_some(()));
    assert!(gone.is_some(), "the stop guard is removed when the period ends");
}

/// ncdd (the shipped unit runs it as `ncd`, which cannot write the drop-ins)
/// writes the period marker `ncd-guard.path` watches, at the period's start and
/// end only, so the root guard runs at once.
#[test]
fn an_unprivileged_ncdd_marks_the_period_for_the_guard() {
    let upstream = FakeUpstream::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &upstream, "");
    let state = dir.path().join("state");
    let child = ncdd()
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(&state)
        .args(["--listen", "127.0.0.1:0"])
        .arg("--control-socket")
        .arg(dir.path().join("control.sock"))
        .env_remove("NCD_SYSTEM_ROOT")
        .env_remove("INVOCATION_ID")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    wait_ready(&mut child.0);
    let marker = state.join("period.running");
    assert!(!marker.exists(), "no marker without a period");
    let control = support::control::Control::new(dir.path().join("control.sock"));
    control.ok(
        "start",
        Some(serde_json::json!({ "length_secs": 3, "reason": "a test of the marker" })),
    );
    // Written at the next tick (every second).
    assert!(
        eventually(Duration::from_secs(3), || marker.exists().then_some(())).is_some(),
        "the marker appears when the period starts"
    );
    let gone = eventually(Duration::from_secs(10), || (!marker.exists()).then_some(()));
    assert!(gone.is_some(), "the marker goes when the period ends");
}

/// What the root guard finds reaches `ncd status` through ncdd, the one place that
/// serves status: the real `ncd guard` (under a temp root) writes its report into
/// ncdd's state dir, and the real `ncd status` shows it.
#[test]
fn what_the_guard_finds_shows_in_ncd_status() {
    let upstream = FakeUpstream::start();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc/ncd")).unwrap();
    let config = write_config(&root.join("etc/ncd"), &upstream, "");
    std::fs::write(
        root.join("etc/hosts"),
        "127.0.0.1 localhost\n157.240.1.1 www.instagram.com\n",
    )
    .unwrap();
    let state = root.join("var/lib/ncd");
    let socket = dir.path().join("control.sock");
    let child = ncdd()
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(&state)
        .args(["--listen", "127.0.0.1:0"])
        .arg("--control-socket")
        .arg(&socket)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    wait_ready(&mut child.0);
    let before = support::cli::ncd(&socket, &["status"]);
    assert!(before.success(), "{before:?}");
    assert!(!before.stdout.contains("/etc/hosts"), "{}", before.stdout);
    let guard = Command::new(support::cli::ncd_path())
        .args(["--state-dir", "/var/lib/ncd", "--socket"])
        .arg(&socket)
        .args(["guard", "--root"])
        .arg(&root)
        .output()
        .unwrap();
    assert!(guard.status.success(), "{guard:?}");
    let after = support::cli::ncd(&socket, &["status"]);
    assert!(
        after.stdout.contains(
            "Around ncd, the system is not as ncd set it:\n  - /etc/hosts gives www.instagram.com an address of its own"
        ),
        "{}",
        after.stdout
    );
    let json = support::cli::ncd(&socket, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert!(status["guard"]["checked_unix"].as_i64().unwrap() > 0, "{status}");
}

#[test]
fn a_non_loopback_address_needs_allow_clients() {
    let upstream = FakeUpstream::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &upstream, "");
    let output = ncdd()
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(["--listen", "0.0.0.0:0"])
        .arg("--control-socket")
        .arg(dir.path().join("control.sock"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("open resolver"), "{stderr}");
}

fn wait_ready(child: &mut Child) {
    use std::io::BufRead;
    let stdout = child.stdout.take().expect("stdout piped");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let ready = lines.any(|l| l.is_ok_and(|l| l == "ncdd: ready"));
    assert!(ready, "ncdd did not become ready");
    // Keep draining stdout so ncdd never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
}
