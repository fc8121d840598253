//! ncd's promise, end to end with the real `ncdd` and real clients:
//! - a blocked name is answered by ncdd and never reaches an upstream, however it is
//!   blocked, in every answer mode, over UDP and TCP, for every query type;
//! - a clock change never shortens anything (the wall clock jumped ±90 days under a
//!   running period with an unlock request, through libfaketime);
//! - `ncd start` during a period changes nothing;
//! - ncdd is not an open resolver, over TCP and IPv6 too, and with sockets handed
//!   over by socket activation;
//! - the service manager hears `Day N of M`.

// Tests may unwrap: a failed unwrap is a failed test, with its place.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)] // each test binary uses part of the shared harness
mod support;

use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ncd_config::BlockAnswer;
use ncd_config::control::{Status, UnlockState};
use serde_json::json;

use support::blocked::{assert_blocked_and_unseen, assert_blocked_and_unseen_via};
use support::cli::ncd;
use support::control::Control;
use support::eventually;
use support::ncdd::{Ncdd, Setup};
use support::upstream::FakeUpstream;

/// How long a condition may take to come true.
const DEADLINE: Duration = Duration::from_secs(15);
const REASON: &str = "I want my mornings back, and my attention.";
const WHY: &str = "Only to see whether they are alright.";
/// 90 days, the jump the README promises does not matter.
const NINETY_DAYS: i64 = 90 * 86_400;
/// The Extended DNS Error "Prohibited" (RFC 8914): ncdd's REFUSED to a stranger.
const EDE_PROHIBITED: u16 = 18;

fn control(ncdd: &Ncdd) -> Control {
    Control::in_state_dir(&ncdd.state_dir())
}

fn socket(ncdd: &Ncdd) -> PathBuf {
    ncdd.state_dir().join("control.sock")
}

/// Polls `status` until `ready` holds; panics with the last status after [`DEADLINE`].
#[track_caller]
fn wait_status(control: &Control, what: &str, ready: impl Fn(&Status) -> bool) -> Status {
    control.wait_status(what, DEADLINE, ready)
}

/// `ncd start --for LENGTH --reason REASON`, which must succeed.
#[track_caller]
fn start_period(ncdd: &Ncdd, length: &str) {
    let run = ncd(&socket(ncdd), &["start", "--for", length, "--reason", REASON]);
    assert!(
        run.success() && run.stdout.contains("Your period has begun"),
        "{run:#?}"
    );
}

fn mode_word(mode: BlockAnswer) -> &'static str {
    match mode {
        BlockAnswer::Null => "null",
        BlockAnswer::Nxdomain => "nxdomain",
        BlockAnswer::Refused => "refused",
    }
}

// ----- Blocked names never reach an upstream --------------------------------------------

/// Every way a name gets blocked, in one config: a service, a domain, a list, the
/// encrypted-DNS guard, a CNAME into a blocked domain, and (after the period
/// starts and the file drops it) a rule held by the ratchet.
fn every_way(upstream: &FakeUpstream, mode: BlockAnswer, domains: &str) -> String {
    format!(
        "[dns]\nupstreams = [\"{}\"]\nanswer = \"{}\"\n\n\
         [block]\nservices = [\"instagram\"]\ndomains = [{domains}]\nlists = [\"list.txt\"]\n",
        upstream.url(),
        mode_word(mode)
    )
}

#[test]
fn a_blocked_name_is_answered_by_ncdd_and_never_reaches_the_upstream_however_it_is_blocked() {
    for mode in [BlockAnswer::Null, BlockAnswer::Nxdomain, BlockAnswer::Refused] {
        let upstream = FakeUpstream::start();
        let domains = "\"blocked.test\", \"kept.test\"";
        let ncdd = Setup::new(&every_way(&upstream, mode, domains))
            .file("list.txt", "listed-late.test\n")
            .spawn();
        let server = ncdd.addr;

        // A service of the catalog, a domain, a list's name, a guard name.
        for name in [
            "www.instagram.com",
            "www.exact.blocked.test",
            "listed-late.test",
            "dns.google",
        ] {
            assert_blocked_and_unseen(server, &upstream, name, mode);
            assert!(!upstream.was_asked(name), "{mode:?}: the upstream was asked for {name}");
        }
        // An allowed name whose answer is a CNAME into a blocked domain: ncdd must ask
        // for the alias, never for the target.
        assert_blocked_and_unseen_via(server, &upstream, "cloaked.test", "tracker.blocked.test", mode);
        assert!(upstream.was_asked("cloaked.test"), "the alias went upstream");

        // A rule held by the ratchet: the file drops kept.test during a period.
        let control = control(&ncdd);
        ncdd.settle();
        start_period(&ncdd, "1h");
        ncdd.rewrite_config(&every_way(&upstream, mode, "\"blocked.test\""));
        wait_status(&control, "the removal is held", |s| {
            s.pending == ["remove domain kept.test"]
        });
        assert_blocked_and_unseen(server, &upstream, "kept.test", mode);
        assert!(
            !upstream.was_asked("kept.test"),
            "{mode:?}: the upstream was asked for kept.test"
        );

        // The upstream was there all along, and answers what is allowed.
        let allowed = support::client::a(server, "allowed.test");
        assert!(allowed.is_from_fake_upstream(), "{mode:?}: {:?}", allowed.message);
    }
}

// ----- A clock change never shortens anything -------------------------------------------

/// libfaketime's multi-threaded library, where Debian puts it (`.ci/run` installs
/// the `libfaketime` package).
fn faketime_library() -> Result<PathBuf, String> {
    let found = std::fs::read_dir("/usr/lib")
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("faketime/libfaketimeMT.so.1"))
        .find(|path| path.is_file());
    found.ok_or_else(|| "libfaketime is not installed (no /usr/lib/*/faketime/libfaketimeMT.so.1)".into())
}

/// The offset libfaketime adds to ncdd's wall clock, changed at run time: the
/// file is read again at every clock call (`FAKETIME_NO_CACHE`).
fn set_wall_offset(file: &Path, secs: i64) {
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, format!("{secs:+}\n")).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

/// What a clock jump must leave alone, compared across `elapsed` of real time
/// (with a second of slack for the 1 s tick).
#[track_caller]
fn assert_nothing_shortened(before: &Status, after: &Status, elapsed: Duration, jump: &str) {
    let slack = elapsed.as_secs() + 2;
    assert!(after.period.active, "{jump}: the period ended: {after:#?}");
    assert_eq!(after.period.length_secs, before.period.length_secs, "{jump}");
    assert!(
        after.period.served_secs >= before.period.served_secs
            && after.period.served_secs <= before.period.served_secs + slack,
        "{jump}: served went from {} to {} in {elapsed:?}",
        before.period.served_secs,
        after.period.served_secs
    );
    assert!(
        after.period.remaining_secs + slack >= before.period.remaining_secs
            && after.period.remaining_secs <= before.period.remaining_secs,
        "{jump}: remaining went from {} to {} in {elapsed:?}",
        before.period.remaining_secs,
        after.period.remaining_secs
    );
    assert_eq!(after.unlock.state, UnlockState::Waiting, "{jump}: {after:#?}");
    assert_eq!(after.unlock.delay_secs, before.unlock.delay_secs, "{jump}");
    assert!(
        after.unlock.remaining_secs + slack >= before.unlock.remaining_secs
            && after.unlock.remaining_secs <= before.unlock.remaining_secs,
        "{jump}: the unlock's wait went from {} to {} in {elapsed:?}",
        before.unlock.remaining_secs,
        after.unlock.remaining_secs
    );
}

#[test]
fn a_wall_clock_jump_of_90_days_either_way_shortens_neither_the_period_nor_the_unlock_delay() {
    let Some(library) = support::needs("the clock-jump test", faketime_library()) else {
        return;
    };
    let upstream = FakeUpstream::start();
    let dir = tempfile::tempdir().unwrap();
    let offset = dir.path().join("faketime");
    set_wall_offset(&offset, 0);
    // Only the wall clock is faked: CLOCK_MONOTONIC and CLOCK_BOOTTIME stay real
    // (FAKETIME_DONT_FAKE_MONOTONIC; ncdd reads the boot clock through the vDSO,
    // which libfaketime does not see anyway).
    let faked = [
        "env".to_string(),
        format!("LD_PRELOAD={}", library.display()),
        format!("FAKETIME_TIMESTAMP_FILE={}", offset.display()),
        "FAKETIME_NO_CACHE=1".to_string(),
        "FAKETIME_DONT_FAKE_MONOTONIC=1".to_string(),
    ];
    let config = format!(
        "[dns]\nupstreams = [\"{}\"]\n\n[block]\ndomains = [\"later.test\"]\n\n\
         [unlock]\ndelay = \"2h\"\nconfirm_within = \"1h\"\n",
        upstream.url()
    );
    let ncdd = Setup::new(&config).command_prefix(faked).spawn();
    let control = control(&ncdd);
    start_period(&ncdd, "30d");
    let run = ncd(&socket(&ncdd), &["unlock", "--scope", "end", "--why", WHY]);
    assert!(run.success() && run.stdout.contains("Your request is in"), "{run:#?}");

    let mut before = control.status();
    assert_eq!(before.unlock.state, UnlockState::Waiting, "{before:#?}");
    assert_eq!(before.unlock.delay_secs, 7200, "{before:#?}");
    let mut taken = Instant::now();
    for (jump, offset_secs, words) in [
        ("+90 days", NINETY_DAYS, "the wall clock moved forward by 90 days"),
        ("-90 days", -NINETY_DAYS, "the wall clock moved back by 180 days"),
    ] {
        set_wall_offset(&offset, offset_secs);
        let after = wait_status(&control, &format!("the journal shows the {jump} jump"), |s| {
            s.tamper.iter().any(|e| e.detail.contains(words))
        });
        assert_nothing_shortened(&before, &after, taken.elapsed(), jump);
        // Blocking goes on, and what is allowed still resolves.
        assert_blocked_and_unseen(ncdd.addr, &upstream, "later.test", BlockAnswer::Null);
        let screen = ncd(&socket(&ncdd), &["status"]);
        assert!(
            screen.success() && screen.stdout.contains(words),
            "`ncd status` should show the jump ({words:?}):\n{}",
            screen.stdout
        );
        before = after;
        taken = Instant::now();
    }

    // Real time is still credited: served grows by the boot clock.
    let served = before.period.served_secs;
    wait_status(&control, "time is still credited", |s| s.period.served_secs > served);
}

// ----- `ncd start` during a period ------------------------------------------------------

#[test]
fn ncd_start_during_a_period_is_refused_and_changes_nothing() {
    let upstream = FakeUpstream::start();
    let config = format!(
        "[dns]\nupstreams = [\"{}\"]\n\n[block]\ndomains = [\"later.test\"]\n",
        upstream.url()
    );
    let ncdd = Ncdd::start(&config);
    let control = control(&ncdd);
    start_period(&ncdd, "30d");
    let before = control.status();

    // Shorter, with another reason: the person at 1 a.m. trying to start over.
    let run = ncd(
        &socket(&ncdd),
        &["start", "--for", "1h", "--reason", "A fresh start, a shorter one."],
    );
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(
        run.stderr.contains("A period is already running") && run.stderr.contains("ncd extend"),
        "the refusal should say why and what is possible: {run:#?}"
    );
    let after = control.status();
    assert_eq!(after.period.length_secs, before.period.length_secs, "{after:#?}");
    assert_eq!(after.period.reason.as_deref(), Some(REASON), "{after:#?}");
    assert_eq!(after.period.started_unix, before.period.started_unix, "{after:#?}");
    assert!(after.period.served_secs >= before.period.served_secs, "{after:#?}");
    // The raw verb, as any client could send it, is refused the same way.
    let (code, message) = control.refused("start", Some(json!({ "length_secs": 60, "reason": "Another one." })));
    assert!(message.contains("already running"), "{code}: {message}");
    assert_eq!(control.status().period.length_secs, before.period.length_secs);
}

// ----- Not an open resolver ---------------------------------------------------------------

/// `dig` from inside the namespace to `server` (`+tcp` when `tcp`); its output.
fn dig_from(ns: &support::netns::NetNs, server: SocketAddr, tcp: bool, name: &str) -> String {
    let at = format!("@{}", server.ip());
    let port = server.port().to_string();
    let mut args = vec![at.as_str(), "-p", port.as_str(), "+time=2", "+tries=1"];
    if tcp {
        args.push("+tcp");
    }
    args.push(name);
    ns.exec("dig", &args).1
}

/// A LAN client outside `allow_clients` asks `server`, over UDP and TCP, for an
/// allowed and a blocked name: REFUSED with EDE 18 each time, nothing goes upstream.
#[track_caller]
fn assert_refuses_strangers(ns: &support::netns::NetNs, server: SocketAddr, upstream: &FakeUpstream) {
    for tcp in [false, true] {
        for name in ["allowed.test", "www.instagram.com"] {
            let out = eventually(DEADLINE, || {
                let out = dig_from(ns, server, tcp, name);
                out.contains("status:").then_some(out)
            })
            .unwrap_or_else(|| {
                panic!(
                    "no answer to {name} from {server} (tcp: {tcp}): {}",
                    dig_from(ns, server, tcp, name)
                )
            });
            assert!(out.contains("status: REFUSED"), "{server} tcp {tcp} {name}:\n{out}");
            assert!(
                out.contains(&format!("EDE: {EDE_PROHIBITED}")),
                "{server} tcp {tcp} {name}:\n{out}"
            );
        }
    }
    assert!(!upstream.was_asked("allowed.test"), "a stranger's query went upstream");
}

fn lan_config(upstream: &FakeUpstream, allow: &str) -> String {
    format!(
        "[dns]\nupstreams = [\"{}\"]\n{allow}\n\n[block]\nservices = [\"instagram\"]\n",
        upstream.url()
    )
}

#[test]
fn a_stranger_on_the_lan_is_refused_over_udp_and_tcp_on_ipv4_and_ipv6() {
    let Some(ns) = support::needs("the open-resolver test", support::netns::NetNs::create()) else {
        return;
    };
    let upstream = FakeUpstream::start();
    // Serving a LAN address needs some allow_clients: a documentation network,
    // not the namespace.
    let allow = "allow_clients = [\"192.0.2.0/24\", \"2001:db8::/32\"]";
    for listen in [
        SocketAddr::from((ns.host_addr, 0)),
        SocketAddr::from((ns.host_addr6, 0)),
    ] {
        let ncdd = Setup::new(&lan_config(&upstream, allow)).listen(listen).spawn();
        assert_refuses_strangers(&ns, ncdd.addr, &upstream);
    }
}

/// `systemd-socket-activate` holding one socket on `addr` for ncdd (UDP when
/// `datagram`), as `ncd.socket` does; ncdd starts at the first query.
fn socket_activated(addr: SocketAddr, datagram: bool, dir: &Path, config: &Path) -> Killed {
    let mut command = Command::new("systemd-socket-activate");
    if datagram {
        command.arg("--datagram");
    }
    let child = command
        .args(["--fdname=dns", "-l", &addr.to_string()])
        .arg(env!("CARGO_BIN_EXE_ncdd"))
        .arg("--config")
        .arg(config)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--control-socket")
        .arg(dir.join("control.sock"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("systemd-socket-activate (apt package: systemd)");
    Killed(child)
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free port on `ip` (bound once, then released).
fn free_port(ip: std::net::IpAddr) -> u16 {
    let socket = std::net::TcpListener::bind((ip, 0)).unwrap();
    let port = socket.local_addr().unwrap().port();
    // The UDP side must be free too.
    std::net::UdpSocket::bind((ip, port)).map_or_else(|_| free_port(ip), |_| port)
}

#[test]
fn sockets_handed_over_by_socket_activation_refuse_strangers_too() {
    let Some(ns) = support::needs(
        "the socket-activation open-resolver test",
        support::netns::NetNs::create(),
    ) else {
        return;
    };
    let upstream = FakeUpstream::start();
    for datagram in [true, false] {
        for ip in [ns.host_addr.into(), ns.host_addr6.into()] {
            let dir = tempfile::tempdir().unwrap();
            let config = dir.path().join("ncd.toml");
            let allow = "allow_clients = [\"192.0.2.0/24\", \"2001:db8::/32\"]";
            std::fs::write(&config, lan_config(&upstream, allow)).unwrap();
            let addr = SocketAddr::new(ip, free_port(ip));
            let _activator = socket_activated(addr, datagram, dir.path(), &config);
            let out = eventually(DEADLINE, || {
                let out = dig_from(&ns, addr, !datagram, "allowed.test");
                out.contains("status:").then_some(out)
            })
            .unwrap_or_else(|| panic!("ncdd never answered on the activated socket {addr}"));
            assert!(out.contains("status: REFUSED"), "{addr} (udp: {datagram}):\n{out}");
            assert!(out.contains(&format!("EDE: {EDE_PROHIBITED}")), "{addr}:\n{out}");
            assert!(
                !upstream.was_asked("allowed.test"),
                "{addr}: a stranger's query went upstream"
            );
        }
    }

    // No allow_clients at all: ncdd will not serve an activated LAN socket.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ncd.toml");
    std::fs::write(&config, lan_config(&upstream, "")).unwrap();
    let addr = SocketAddr::new(ns.host_addr.into(), free_port(ns.host_addr.into()));
    let mut activator = socket_activated(addr, true, dir.path(), &config);
    let _ = dig_from(&ns, addr, false, "allowed.test");
    let exited = eventually(DEADLINE, || activator.0.try_wait().ok().flatten())
        .unwrap_or_else(|| panic!("ncdd kept running on an activated LAN socket with no allow_clients"));
    assert!(!exited.success(), "{exited:?}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut activator.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("open resolver"), "{stderr}");
    assert!(!upstream.was_asked("allowed.test"));
}

// ----- The service manager hears the day -------------------------------------------------

#[test]
fn the_service_manager_hears_the_day_of_the_period() {
    let upstream = FakeUpstream::start();
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let config = format!(
        "[dns]\nupstreams = [\"{}\"]\n\n[block]\ndomains = [\"later.test\"]\n",
        upstream.url()
    );
    let ncdd = Setup::new(&config)
        .command_prefix(["env".to_string(), format!("NOTIFY_SOCKET={}", notify_path.display())])
        .spawn();
    let mut seen: Vec<String> = Vec::new();
    let mut wait_for = |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(40);
        let mut buf = [0u8; 1024];
        while Instant::now() < deadline {
            if seen.iter().any(|s| s.contains(needle)) {
                return;
            }
            if let Ok(len) = notify.recv(&mut buf) {
                seen.push(String::from_utf8_lossy(&buf[..len]).into_owned());
            }
        }
        panic!("the service manager never heard {needle:?}; it heard {seen:?}");
    };
    wait_for("STATUS=No period running");
    // A 3-day period: day 1 of 3, as `systemctl status ncd` shows it.
    control(&ncdd).ok("start", Some(json!({ "length_secs": 3 * 86_400, "reason": REASON })));
    wait_for("STATUS=Day 1 of 3; blocking");
}

// ----- The watchdog ---------------------------------------------------------------------

/// Datagrams from ncdd on a `NOTIFY_SOCKET` the test owns.
struct Notifications {
    socket: UnixDatagram,
    path: PathBuf,
    seen: Vec<String>,
}

impl Notifications {
    fn bind(dir: &Path) -> Self {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        Self {
            socket,
            path,
            seen: Vec::new(),
        }
    }

    /// Reads what has arrived (waiting up to 100 ms for the first datagram).
    fn read(&mut self) {
        let mut buf = [0u8; 1024];
        while let Ok(len) = self.socket.recv(&mut buf) {
            self.seen.push(String::from_utf8_lossy(&buf[..len]).into_owned());
        }
    }

    /// Forgets what was seen so far.
    fn clear(&mut self) {
        self.read();
        self.seen.clear();
    }

    fn pings(&self) -> usize {
        self.seen
            .iter()
            .filter(|s| s.lines().any(|l| l == "WATCHDOG=1"))
            .count()
    }

    #[track_caller]
    fn wait_for_ping(&mut self, what: &str) {
        let deadline = Instant::now() + DEADLINE;
        while self.pings() == 0 {
            assert!(
                Instant::now() < deadline,
                "{what}: no WATCHDOG=1; heard {:?}",
                self.seen
            );
            self.read();
        }
    }
}

/// The number of times ncdd has logged that its self-query failed.
fn failed_self_queries(ncdd: &Ncdd) -> usize {
    ncdd.stderr().matches("self-query failed").count()
}

#[test]
fn the_watchdog_is_pinged_only_while_ncdd_answers_its_own_query() {
    // ncdd in a network namespace of its own, so the test can take its loopback
    // away (and give it back) without touching the machine's.
    let Some(ns) = support::needs("the watchdog test", support::netns::NetNs::create()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut notify = Notifications::bind(dir.path());
    // No upstream is reachable from inside: the self-query must need none.
    let config = "[dns]\nupstreams = [\"udp://127.0.0.1:9\"]\n\n[block]\ndomains = [\"later.test\"]\n";
    let ncdd = Setup::new(config)
        .command_prefix([
            "ip".to_string(),
            "netns".to_string(),
            "exec".to_string(),
            ns.name.clone(),
            "env".to_string(),
            format!("NOTIFY_SOCKET={}", notify.path.display()),
            "WATCHDOG_USEC=1000000".to_string(),
        ])
        .spawn();
    notify.wait_for_ping("serving");

    // Its DNS socket unreachable (loopback down): no ping between two failed
    // self-queries.
    let (ok, out) = ns.exec("ip", &["link", "set", "lo", "down"]);
    assert!(ok, "{out}");
    let failed = failed_self_queries(&ncdd);
    assert!(
        eventually(DEADLINE, || (failed_self_queries(&ncdd) > failed).then_some(())).is_some(),
        "ncdd never noticed that its own query went unanswered:\n{}",
        ncdd.stderr()
    );
    notify.clear();
    let failed = failed_self_queries(&ncdd);
    assert!(
        eventually(DEADLINE, || (failed_self_queries(&ncdd) > failed).then_some(())).is_some(),
        "a second self-query did not fail:\n{}",
        ncdd.stderr()
    );
    notify.read();
    assert_eq!(
        notify.pings(),
        0,
        "WATCHDOG=1 while ncdd could not answer itself: {:?}",
        notify.seen
    );

    // Loopback back: the pings come back.
    let (ok, out) = ns.exec("ip", &["link", "set", "lo", "up"]);
    assert!(ok, "{out}");
    notify.clear();
    notify.wait_for_ping("serving again");
}

#[test]
fn with_the_guard_off_and_no_upstream_the_watchdog_still_hears_a_serving_ncdd() {
    // The self-query must not depend on the config or the network: offline, a
    // watchdog that went quiet would have systemd restart a healthy ncdd over and
    // over, until it gives up and the machine's resolver moves on without it.
    let upstream = FakeUpstream::start();
    upstream.set_unresponsive(true);
    let dir = tempfile::tempdir().unwrap();
    let mut notify = Notifications::bind(dir.path());
    let config = format!(
        "[dns]\nupstreams = [\"{}\"]\n\n[guard]\nencrypted_dns = false\n\n[block]\ndomains = [\"later.test\"]\n",
        upstream.url()
    );
    // Pings 3 s apart, more than the upstream timeout (2 s), as with the unit's
    // WatchdogSec=30s: each self-query starts afresh.
    let ncdd = Setup::new(&config)
        .command_prefix([
            "env".to_string(),
            format!("NOTIFY_SOCKET={}", notify.path.display()),
            "WATCHDOG_USEC=6000000".to_string(),
        ])
        .spawn();
    notify.clear();
    notify.wait_for_ping("offline, guard off");
    assert_eq!(failed_self_queries(&ncdd), 0, "{}", ncdd.stderr());
    assert_blocked_and_unseen(ncdd.addr, &upstream, "later.test", BlockAnswer::Null);
}
