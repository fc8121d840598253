//! End-to-end tests of the period: the real `ncdd`, the real `ncd` (built next to
//! it), a fake upstream in this process, real DNS queries, and the control socket
//! spoken by hand.
//!
//! What a person would notice is what is checked: names blocked or resolving, what
//! `ncd status` says, exit codes, and the state files on disk. Durations are seconds
//! long so a whole period, an unlock delay and a confirmation window fit in a test.
//! Waits are polls with a deadline; the only sleeps are the random kill moments and
//! the gaps between typed keys.

// Tests may unwrap: a failed unwrap is a failed test, with its place.
#![allow(clippy::unwrap_used, clippy::expect_used)]

// Each test binary uses its own part of the shared harness.
#[allow(dead_code)]
mod support;

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use ncd_config::BlockAnswer;
use ncd_config::control::{Status, UnlockScope, UnlockState};
use serde_json::{Value, json};

use support::cli::{self, NOBODY, Run, TtySession, ncd};
use support::client::{Answer, a};
use support::control::Control;
use support::eventually;
use support::ncdd::{Ncdd, Setup};
use support::upstream::FakeUpstream;

/// How long a state change (a tick, a reload, a restart) may take to show.
const DEADLINE: Duration = Duration::from_secs(10);
const REASON: &str = "I want my mornings back, and my attention.";
const WHY: &str = "A work event needs this page, and I talked it over with a friend.";
/// `[unlock]` for tests: a delay of seconds, long enough that a "still cooling
/// off" check right after the request never races it on a loaded machine; a window
/// of an hour, so typing never races its close; a short passage.
const FAST_UNLOCK: &str = "[unlock]\ndelay = \"5s\"\nconfirm_within = \"1h\"\nchallenge_chars = 20\n";
/// The fake upstream's addresses for the names the tests open and close.
const LATER_TEST: &str = "192.0.2.2";
const KEPT_TEST: &str = "192.0.2.3";
const ALLOWED_TEST: &str = "192.0.2.1";
/// The placeholder reason of a period assumed because no state copy could be read.
const UNREADABLE_REASON: &str = "(ncd could not read the reason you wrote)";

// ----- Harness ----------------------------------------------------------------------

/// A config that sends allowed queries to the fake upstream, then `rest`.
fn config(upstream: &FakeUpstream, rest: &str) -> String {
    format!("[dns]\nupstreams = [\"{}\"]\n\n{rest}\n", upstream.url())
}

fn socket(ncdd: &Ncdd) -> PathBuf {
    ncdd.state_dir().join("control.sock")
}

fn control(ncdd: &Ncdd) -> Control {
    Control::in_state_dir(&ncdd.state_dir())
}

/// `ncd ARGS…` against `ncdd`, which must succeed.
#[track_caller]
fn ncd_ok(ncdd: &Ncdd, args: &[&str]) -> Run {
    let run = ncd(&socket(ncdd), args);
    assert!(run.success(), "`ncd {}` failed: {run:#?}", args.join(" "));
    run
}

/// `ncd ARGS…` against `ncdd`, which must fail with exit status 1.
#[track_caller]
fn ncd_refused(ncdd: &Ncdd, args: &[&str]) -> Run {
    let run = ncd(&socket(ncdd), args);
    assert_eq!(
        run.code,
        Some(1),
        "`ncd {}` should be refused: {run:#?}",
        args.join(" ")
    );
    run
}

/// `ncd status --json`: the printed JSON, and the same as the shared `Status` type.
#[track_caller]
fn cli_status(ncdd: &Ncdd) -> (Value, Status) {
    let run = ncd_ok(ncdd, &["status", "--json"]);
    let value: Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("`ncd status --json` is not JSON ({e}): {run:#?}"));
    let status =
        serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("unknown status shape ({e}): {value}"));
    (value, status)
}

/// `ncd start --for LENGTH --reason REASON`.
#[track_caller]
fn start_period(ncdd: &Ncdd, length: &str) {
    let run = ncd_ok(ncdd, &["start", "--for", length, "--reason", REASON]);
    assert!(run.stdout.contains("Your period has begun"), "{run:#?}");
}

/// `ncd unlock --scope SCOPE --why WHY`.
#[track_caller]
fn request_unlock(ncdd: &Ncdd, scope: &str) -> Run {
    let run = ncd_ok(ncdd, &["unlock", "--scope", scope, "--why", WHY]);
    assert!(run.stdout.contains("Your request is in"), "{run:#?}");
    run
}

/// Polls `status` until `ready` holds; panics with the last status after [`DEADLINE`].
#[track_caller]
fn wait_status(control: &Control, what: &str, ready: impl Fn(&Status) -> bool) -> Status {
    wait_status_within(control, what, DEADLINE, ready)
}

/// [`wait_status`] with a deadline of its own.
#[track_caller]
fn wait_status_within(control: &Control, what: &str, deadline: Duration, ready: impl Fn(&Status) -> bool) -> Status {
    control.wait_status(what, deadline, ready)
}

/// The message of the journal entries (`status.tamper`), for `contains` checks.
fn journal(status: &Status) -> String {
    status
        .tamper
        .iter()
        .map(|e| format!("{}: {}\n", e.kind, e.detail))
        .collect()
}

fn is_null_block(answer: &Answer) -> bool {
    answer.is_blocked() && answer.ipv4() == [Ipv4Addr::UNSPECIFIED]
}

fn resolves_to(answer: &Answer, ip: &str) -> bool {
    !answer.is_blocked() && answer.ipv4() == [ip.parse::<Ipv4Addr>().unwrap()]
}

#[track_caller]
fn assert_blocked(ncdd: &Ncdd, upstream: &FakeUpstream, name: &str) {
    // Blocked as a user would notice: 0.0.0.0 / :: / no data with EDE 15, over UDP
    // and TCP, for A, AAAA, HTTPS, ANY and a rare type, and nothing goes upstream.
    support::blocked::assert_blocked_and_unseen(ncdd.addr, upstream, name, BlockAnswer::Null);
}

#[track_caller]
fn assert_resolves(ncdd: &Ncdd, name: &str, ip: &str) {
    let answer = a(ncdd.addr, name);
    assert!(
        resolves_to(&answer, ip),
        "{name} should resolve to {ip}: {:?}",
        answer.message
    );
}

#[track_caller]
fn wait_blocked(ncdd: &Ncdd, name: &str) {
    if eventually(DEADLINE, || is_null_block(&a(ncdd.addr, name)).then_some(())).is_none() {
        panic!(
            "{name} was not blocked within {DEADLINE:?}: {:?}",
            a(ncdd.addr, name).message
        );
    }
}

#[track_caller]
fn wait_resolves(ncdd: &Ncdd, name: &str, ip: &str) {
    if eventually(DEADLINE, || resolves_to(&a(ncdd.addr, name), ip).then_some(())).is_none() {
        panic!(
            "{name} did not resolve to {ip} within {DEADLINE:?}: {:?}",
            a(ncdd.addr, name).message
        );
    }
}

/// The Firefox canary is answered NXDOMAIN by the encrypted-DNS guard.
#[track_caller]
fn assert_guarded(ncdd: &Ncdd) {
    let answer = a(ncdd.addr, "use-application-dns.net");
    assert!(
        answer.rcode() == ResponseCode::NXDomain && answer.is_blocked(),
        "the encrypted-DNS guard should answer the canary NXDOMAIN: {:?}",
        answer.message
    );
}

/// A state file in ncdd's state dir.
fn state_file(ncdd: &Ncdd, name: &str) -> PathBuf {
    ncdd.state_dir().join(name)
}

/// The JSON body of a state file (`ncd-state v1 CHECKSUM`, then one JSON line).
#[track_caller]
fn state_body(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let (header, body) = text
        .split_once('\n')
        .unwrap_or_else(|| panic!("{} has no header line: {text:?}", path.display()));
    assert!(header.starts_with("ncd-state v1 "), "{}: {header:?}", path.display());
    serde_json::from_str(body.trim_end()).unwrap_or_else(|e| panic!("{} body is not JSON ({e})", path.display()))
}

/// A whole-word-and-spaces passage of at most `chars` characters.
#[track_caller]
fn assert_passage(passage: &str, chars: usize) {
    assert!(
        !passage.is_empty()
            && passage.chars().count() <= chars
            && passage.chars().all(|c| c.is_ascii_lowercase() || c == ' '),
        "an odd passage: {passage:?}"
    );
}

// ----- 1. A whole period ------------------------------------------------------------

#[test]
fn a_short_period_runs_its_course_and_then_the_held_change_applies() {
    let upstream = FakeUpstream::start();
    let ncdd = Ncdd::start(&config(&upstream, "[block]\ndomains = [\"later.test\", \"kept.test\"]"));
    let control = control(&ncdd);
    ncdd.settle();

    start_period(&ncdd, "4s");
    let (json, status) = cli_status(&ncdd);
    assert_eq!(json["period"]["active"], true, "{json:#}");
    assert_eq!(status.period.length_secs, 4);
    assert!(status.period.served_secs < 4, "{status:#?}");
    assert_eq!(status.period.reason.as_deref(), Some(REASON));
    assert!(status.period.started_unix.is_some(), "{status:#?}");

    // Dropping a domain while the period runs: held, still blocked.
    ncdd.rewrite_config(&config(&upstream, "[block]\ndomains = [\"kept.test\"]"));
    let held = wait_status(&control, "the removal shows as held", |s| !s.pending.is_empty());
    assert!(
        held.period.active,
        "the edit must land while the period runs: {held:#?}"
    );
    assert_eq!(held.pending, ["remove domain later.test"]);
    assert_blocked(&ncdd, &upstream, "later.test");

    // Served and remaining add up to the length; time served grows, tick by tick
    // (up to the end, where the ended period keeps what was served).
    assert_eq!(held.period.remaining_secs + held.period.served_secs, 4, "{held:#?}");
    let before = held.period.served_secs;
    let served = |s: &Status| match &s.period.ended {
        Some(ended) if !s.period.active => ended.served_secs,
        _ => s.period.served_secs,
    };
    wait_status(&control, "served grows", |s| served(s) > before);

    // The end: the reason is shown once more, and the held change applies.
    wait_status(&control, "the period ends", |s| !s.period.active);
    let (json, status) = cli_status(&ncdd);
    assert_eq!(json["period"]["active"], false, "{json:#}");
    let ended = status
        .period
        .ended
        .as_ref()
        .expect("status shows the period that ended");
    assert_eq!(ended.how, "completed");
    assert_eq!(ended.reason, REASON);
    assert_eq!((ended.length_secs, ended.served_secs), (4, 4));
    assert!(
        status.pending.is_empty(),
        "nothing is held once the period ended: {status:#?}"
    );
    assert!(journal(&status).contains("the period ended (completed)"), "{status:#?}");
    wait_resolves(&ncdd, "later.test", LATER_TEST);
    assert_blocked(&ncdd, &upstream, "kept.test");
}

// ----- 2. The ratchet ---------------------------------------------------------------

#[test]
fn refused_answers_and_a_dropped_listen_address_are_held_until_the_period_ends() {
    // `[dns] listen` names what ncdd would bind without `--listen` (the harness binds
    // port 0): the ratchet holds the field either way.
    let upstream = FakeUpstream::start();
    let file = |answer: &str, listen: &str| {
        format!(
            "[dns]\nlisten = [{listen}]\nanswer = \"{answer}\"\nupstreams = [\"{}\"]\n\n\
             [block]\ndomains = [\"later.test\"]\n",
            upstream.url()
        )
    };
    let ncdd = Ncdd::start(&file("null", r#""127.0.0.1:53", "127.0.0.1:5399""#));
    let control = control(&ncdd);
    ncdd.settle();
    start_period(&ncdd, "5s");

    // `refused` would let a stub resolver ask its next server: held; a dropped
    // listen address would leave the resolver's address dark: held.
    ncdd.rewrite_config(&file("refused", r#""127.0.0.1:53""#));
    let held = wait_status(&control, "the resolver-facing edits show as held", |s| {
        s.pending.len() == 2
    });
    assert!(
        held.period.active,
        "the edit must land while the period runs: {held:#?}"
    );
    assert!(held.pending.iter().any(|p| p.contains("refused")), "{held:#?}");
    assert!(
        held.pending
            .contains(&"remove DNS listen address 127.0.0.1:5399".to_string()),
        "{held:#?}"
    );
    assert_blocked(&ncdd, &upstream, "later.test");
    let screen = ncd_ok(&ncdd, &["status"]).stdout;
    assert!(
        screen.contains("Held until the period ends or an unlock:") && screen.contains("127.0.0.1:5399"),
        "{screen}"
    );

    // After the period both apply.
    wait_status(&control, "the period ends", |s| !s.period.active);
    let status = wait_status(&control, "nothing is held", |s| s.pending.is_empty());
    assert!(!status.period.active);
    let refused = eventually(DEADLINE, || {
        let answer = a(ncdd.addr, "later.test");
        (answer.rcode() == ResponseCode::Refused).then_some(answer)
    });
    assert!(
        refused.is_some(),
        "later.test is answered REFUSED once the period ended"
    );
}

#[test]
fn during_a_period_tightenings_bite_at_once_and_loosenings_are_held() {
    let upstream = FakeUpstream::start();
    let file = |services: &str, domains: &str, allow: &str, guard: bool| {
        config(
            &upstream,
            &format!(
                "[block]\nservices = [{services}]\ndomains = [{domains}]\nallow = [{allow}]\n\n\
                 [guard]\nencrypted_dns = {guard}\n"
            ),
        )
    };
    let ncdd = Ncdd::start(&file("\"facebook\"", "\"later.test\"", "", true));
    let control = control(&ncdd);
    ncdd.settle();
    assert_resolves(&ncdd, "kept.test", KEPT_TEST);
    assert_resolves(&ncdd, "allowed.test", ALLOWED_TEST);
    start_period(&ncdd, "1h");

    // A tightening: blocked at once, nothing held.
    ncdd.rewrite_config(&file("\"facebook\"", "\"later.test\", \"kept.test\"", "", true));
    wait_blocked(&ncdd, "kept.test");
    assert!(control.status().pending.is_empty());

    // A loosening: a removed domain keeps being blocked and is listed as held.
    ncdd.rewrite_config(&file("\"facebook\"", "\"kept.test\"", "", true));
    wait_status(&control, "the removed domain is held", |s| {
        s.pending == ["remove domain later.test"]
    });
    assert_blocked(&ncdd, &upstream, "later.test");

    // A removed service, likewise.
    ncdd.rewrite_config(&file("", "\"kept.test\"", "", true));
    wait_status(&control, "the removed service is held", |s| {
        s.pending.contains(&"remove service facebook".to_string())
    });
    assert_blocked(&ncdd, &upstream, "www.facebook.com");

    // A mixed edit (swap kept.test for allowed.test): the addition bites, the removal waits.
    ncdd.rewrite_config(&file("", "\"allowed.test\"", "", true));
    wait_blocked(&ncdd, "allowed.test");
    let status = wait_status(&control, "the swapped-out domain is held", |s| {
        s.pending.contains(&"remove domain kept.test".to_string())
    });
    assert!(status.period.active);
    assert_blocked(&ncdd, &upstream, "kept.test");

    // An allow exception added during the period is held: the name stays blocked.
    ncdd.rewrite_config(&file("", "\"allowed.test\"", "\"business.facebook.com\"", true));
    wait_status(&control, "the exception is held", |s| {
        s.pending.contains(&"add exception business.facebook.com".to_string())
    });
    assert_blocked(&ncdd, &upstream, "business.facebook.com");

    // Turning the encrypted-DNS guard off is held: the canary is still answered NXDOMAIN.
    ncdd.rewrite_config(&file("", "\"allowed.test\"", "\"business.facebook.com\"", false));
    let status = wait_status(&control, "turning the guard off is held", |s| {
        s.pending.contains(&"turn off the encrypted-DNS guard".to_string())
    });
    assert_guarded(&ncdd);
    assert_eq!(
        status.pending,
        [
            "remove service facebook",
            "remove domain later.test",
            "remove domain kept.test",
            "add exception business.facebook.com",
            "turn off the encrypted-DNS guard",
        ]
    );
    for name in [
        "later.test",
        "kept.test",
        "allowed.test",
        "www.facebook.com",
        "business.facebook.com",
    ] {
        assert_blocked(&ncdd, &upstream, name);
    }
    let screen = ncd_ok(&ncdd, &["status"]).stdout;
    assert!(
        screen.contains("remove domain later.test"),
        "`ncd status` lists what is held:\n{screen}"
    );
}

#[test]
fn the_unlock_settings_themselves_only_ever_get_stricter_during_a_period() {
    let upstream = FakeUpstream::start();
    let file = |domains: &str, unlock: &str| {
        config(
            &upstream,
            &format!("[block]\ndomains = [{domains}]\n\n[unlock]\n{unlock}"),
        )
    };
    let strict = "delay = \"1h\"\nconfirm_within = \"10m\"\nchallenge_chars = 50\n";
    let ncdd = Ncdd::start(&file("\"later.test\"", strict));
    let control = control(&ncdd);
    ncdd.settle();
    start_period(&ncdd, "1h");

    // A longer delay (with a new domain, to see the edit land) applies at once …
    ncdd.rewrite_config(&file(
        "\"later.test\", \"kept.test\"",
        "delay = \"2h\"\nconfirm_within = \"10m\"\nchallenge_chars = 50\n",
    ));
    wait_blocked(&ncdd, "kept.test");
    // … a shorter one, a longer window and a shorter passage are held.
    ncdd.rewrite_config(&file(
        "\"later.test\", \"kept.test\"",
        "delay = \"1s\"\nconfirm_within = \"1d\"\nchallenge_chars = 5\n",
    ));
    let status = wait_status(&control, "the looser unlock settings are held", |s| {
        !s.pending.is_empty()
    });
    assert_eq!(
        status.pending,
        [
            "lower the unlock delay from 2h to 1s",
            "raise the confirmation window from 10m to 1d",
            "lower the passage length from 50 to 5",
        ]
    );
    request_unlock(&ncdd, "end");
    let status = control.status();
    assert_eq!(
        status.unlock.delay_secs, 7200,
        "the request waits the locked delay: {status:#?}"
    );
    assert!(status.unlock.remaining_secs > 7000, "{status:#?}");
}

/// Makes a FIFO at `path` (replacing whatever is there).
fn mkfifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    let made = std::process::Command::new("mkfifo").arg(path).status().unwrap();
    assert!(made.success(), "mkfifo {}", path.display());
}

/// The `why` `ncd status` gives for `list`, if it names it.
fn list_problem(status: &Status, list: &Path) -> Option<String> {
    let list = list.display().to_string();
    status.lists.iter().find(|p| p.list == list).map(|p| p.why.clone())
}

#[test]
fn a_fifo_as_a_list_during_a_period_holds_up_nothing() {
    let upstream = FakeUpstream::start();
    let file = |domains: &str, lists: &str| {
        config(
            &upstream,
            &format!("[block]\ndomains = [{domains}]\nlists = [{lists}]\n"),
        )
    };
    let setup = Setup::new(&file("\"later.test\"", "\"held.txt\"")).file("held.txt", "held.test\n");
    let (fifo, held) = (setup.dir().join("f"), setup.dir().join("held.txt"));
    let mut ncdd = setup.spawn();
    let control = control(&ncdd);
    ncdd.settle();
    assert_blocked(&ncdd, &upstream, "held.test");
    start_period(&ncdd, "8s");

    // A FIFO added as a list (a tightening, so it applies at once).
    mkfifo(&fifo);
    ncdd.rewrite_config(&file("\"later.test\"", "\"held.txt\", \"f\""));
    let status = wait_status(&control, "status names the FIFO", |s| list_problem(s, &fifo).is_some());
    assert!(
        status.period.active,
        "the edit must land while the period runs: {status:#?}"
    );
    let why = list_problem(&status, &fifo).unwrap();
    assert!(why.contains("is a FIFO, not a file"), "{why}");

    // A list that read well turned into a FIFO: its last good copy keeps blocking.
    mkfifo(&held);
    let status = wait_status(&control, "status names the held list", |s| {
        list_problem(s, &held).is_some()
    });
    let why = list_problem(&status, &held).unwrap();
    assert!(
        why.contains("is a FIFO") && why.contains("using the last good copy"),
        "{why}"
    );
    assert_blocked(&ncdd, &upstream, "held.test");

    // Later tightenings still apply.
    ncdd.rewrite_config(&file("\"later.test\", \"kept.test\"", "\"held.txt\", \"f\""));
    wait_blocked(&ncdd, "kept.test");

    // The screen and the offline check name the FIFO.
    let screen = ncd_ok(&ncdd, &["status"]).stdout;
    assert!(
        screen.contains(&format!("{}: {} is a FIFO", fifo.display(), fifo.display())),
        "{screen}"
    );
    let (config_path, state_dir) = (ncdd.config_path(), ncdd.state_dir());
    let run = ncd_ok(
        &ncdd,
        &[
            "--state-dir",
            state_dir.to_str().unwrap(),
            "config",
            "check",
            config_path.to_str().unwrap(),
        ],
    );
    assert!(
        run.stdout
            .contains(&format!("{} is a FIFO, not a file", fifo.display())),
        "{run:#?}"
    );

    // The period still ends.
    let ended = wait_status(&control, "the period ends", |s| !s.period.active);
    assert!(journal(&ended).contains("the period ended (completed)"), "{ended:#?}");

    // A restart with the FIFOs in the config serves within the normal start deadline.
    ncdd.restart();
    assert_blocked(&ncdd, &upstream, "kept.test");
    assert_blocked(&ncdd, &upstream, "held.test");
    assert_resolves(&ncdd, "allowed.test", ALLOWED_TEST);
    let (_, status) = cli_status(&ncdd);
    assert!(list_problem(&status, &fifo).is_some(), "{status:#?}");
}

/// The pending lines that hold rules removed from the list `name`.
fn held_list_lines(status: &Status, name: &str) -> Vec<String> {
    status
        .pending
        .iter()
        .filter(|p| p.contains(" removed from ") && p.contains(name))
        .cloned()
        .collect()
}

#[test]
fn an_emptied_or_shortened_list_keeps_blocking_until_a_pending_unlock() {
    let upstream = FakeUpstream::start();
    let setup = Setup::new(&config(
        &upstream,
        &format!("[block]\nlists = [\"mine.txt\"]\n\n{FAST_UNLOCK}"),
    ))
    .file("mine.txt", "later.test\nkept.test\n");
    let ncdd = setup.spawn();
    let control = control(&ncdd);
    ncdd.settle();
    assert_blocked(&ncdd, &upstream, "later.test");
    start_period(&ncdd, "1h");

    // Emptied: every name it had stays blocked, and status says so.
    ncdd.write_file("mine.txt", "");
    let status = wait_status(&control, "the emptied list's rules show as held", |s| {
        !held_list_lines(s, "mine.txt").is_empty()
    });
    let held = held_list_lines(&status, "mine.txt");
    assert_eq!(held.len(), 1, "{status:#?}");
    assert!(
        held[0].starts_with("2 rules removed from ")
            && held[0].ends_with("mine.txt: held until the period ends or an unlock"),
        "{held:?}"
    );
    assert_blocked(&ncdd, &upstream, "later.test");
    assert_blocked(&ncdd, &upstream, "kept.test");
    let screen = ncd_ok(&ncdd, &["status"]).stdout;
    assert!(screen.contains("2 rules removed from"), "{screen}");

    // Shortened (and grown): the new name bites at once, the dropped one is held.
    ncdd.write_file("mine.txt", "kept.test\nlisted-late.test\n");
    wait_blocked(&ncdd, "listed-late.test");
    let status = wait_status(&control, "one rule is held", |s| {
        held_list_lines(s, "mine.txt")
            .iter()
            .any(|l| l.starts_with("1 rule removed from "))
    });
    assert!(status.period.active, "{status:#?}");
    assert_blocked(&ncdd, &upstream, "later.test");
    assert_blocked(&ncdd, &upstream, "kept.test");

    // A `pending` unlock applies the held rules; the period goes on.
    request_unlock(&ncdd, "pending");
    wait_status(&control, "the window opens", |s| {
        s.unlock.state == UnlockState::Confirmable
    });
    let passage = control.type_passage();
    let result = control.ok("unlock_confirm", Some(json!({ "typed": passage })));
    assert_eq!(result["scope"], "pending");
    wait_resolves(&ncdd, "later.test", LATER_TEST);
    assert_blocked(&ncdd, &upstream, "kept.test");
    assert_blocked(&ncdd, &upstream, "listed-late.test");
    let status = wait_status(&control, "nothing is held", |s| {
        held_list_lines(s, "mine.txt").is_empty()
    });
    assert!(status.period.active, "{status:#?}");

    // The lock holds again from here: the next removal is held like the first.
    ncdd.write_file("mine.txt", "listed-late.test\n");
    wait_status(&control, "the new removal is held", |s| {
        held_list_lines(s, "mine.txt")
            .iter()
            .any(|l| l.starts_with("1 rule removed from "))
    });
    assert_blocked(&ncdd, &upstream, "kept.test");
}

#[test]
fn a_shortened_list_opens_when_the_period_ends() {
    let upstream = FakeUpstream::start();
    let setup =
        Setup::new(&config(&upstream, "[block]\nlists = [\"mine.txt\"]\n")).file("mine.txt", "later.test\nkept.test\n");
    let ncdd = setup.spawn();
    let control = control(&ncdd);
    ncdd.settle();
    start_period(&ncdd, "6s");

    ncdd.write_file("mine.txt", "kept.test\n");
    let status = wait_status(&control, "the removal is held", |s| {
        !held_list_lines(s, "mine.txt").is_empty()
    });
    assert!(
        status.period.active,
        "the edit must land while the period runs: {status:#?}"
    );
    assert_blocked(&ncdd, &upstream, "later.test");
    assert!(ncdd.state_dir().join("lists-locked").is_dir());

    let ended = wait_status(&control, "the period ends", |s| !s.period.active);
    assert!(journal(&ended).contains("the period ended (completed)"), "{ended:#?}");
    wait_resolves(&ncdd, "later.test", LATER_TEST);
    assert_blocked(&ncdd, &upstream, "kept.test");
    let status = control.status();
    assert!(status.pending.is_empty(), "{status:#?}");
    assert!(!ncdd.state_dir().join("lists-locked").exists());
}

// ----- 3. The unlock ----------------------------------------------------------------

#[test]
fn an_unlock_of_the_held_changes_cools_off_then_applies_them_once_the_passage_is_typed() {
    let upstream = FakeUpstream::start();
    let both = config(
        &upstream,
        &format!("[block]\ndomains = [\"later.test\", \"kept.test\"]\n\n{FAST_UNLOCK}"),
    );
    let ncdd = Ncdd::start(&both);
    let control = control(&ncdd);
    ncdd.settle();
    start_period(&ncdd, "1h");

    // Nothing is held yet: there is nothing to apply.
    let run = ncd_refused(&ncdd, &["unlock", "--scope", "pending", "--why", WHY]);
    assert!(run.stderr.contains("no held changes"), "{run:#?}");

    ncdd.rewrite_config(&config(
        &upstream,
        &format!("[block]\ndomains = [\"kept.test\"]\n\n{FAST_UNLOCK}"),
    ));
    wait_status(&control, "the removal is held", |s| {
        s.pending == ["remove domain later.test"]
    });

    request_unlock(&ncdd, "pending");
    let (_, status) = cli_status(&ncdd);
    assert_eq!(status.unlock.state, UnlockState::Waiting, "{status:#?}");
    assert_eq!(status.unlock.scope, Some(UnlockScope::Pending));
    assert_eq!(status.unlock.delay_secs, 5);
    assert!(status.unlock.remaining_secs <= 5, "{status:#?}");
    assert_eq!(status.unlock.why.as_deref(), Some(WHY));

    // While it cools off there is no passage to type, and nothing to confirm.
    let (code, message) = control.refused("unlock_challenge", None);
    assert_eq!(code, "conflict", "{message}");
    assert!(message.contains("Not yet"), "{message}");
    let (code, _) = control.refused("unlock_confirm", Some(json!({ "typed": "river" })));
    assert_eq!(code, "conflict");
    assert_blocked(&ncdd, &upstream, "later.test");

    let status = wait_status(&control, "the window opens", |s| s.unlock.state != UnlockState::Waiting);
    assert_eq!(status.unlock.state, UnlockState::Confirmable, "{status:#?}");
    assert!(status.unlock.remaining_secs <= 3600, "{status:#?}");

    let passage = control.type_passage();
    assert_passage(&passage, 20);

    // A wrong passage is refused and changes nothing.
    let wrong = format!("{}x", &passage[..passage.len() - 1]);
    let (code, message) = control.refused("unlock_confirm", Some(json!({ "typed": wrong })));
    assert_eq!(code, "mismatch", "{message}");
    let status = control.status();
    assert_eq!(status.unlock.state, UnlockState::Confirmable, "{status:#?}");
    assert_eq!(status.pending, ["remove domain later.test"]);
    assert_blocked(&ncdd, &upstream, "later.test");

    // The right one applies the held change; the period goes on.
    let result = control.ok("unlock_confirm", Some(json!({ "typed": passage })));
    assert_eq!(result["scope"], "pending");
    wait_resolves(&ncdd, "later.test", LATER_TEST);
    assert_blocked(&ncdd, &upstream, "kept.test");
    let status = control.status();
    assert!(status.period.active, "{status:#?}");
    assert_eq!(status.period.reason.as_deref(), Some(REASON));
    assert_eq!(status.unlock.state, UnlockState::None);
    assert!(status.pending.is_empty(), "{status:#?}");
    assert!(
        journal(&status).contains("unlock confirmed (apply the held changes) after typing 1/1 parts"),
        "{status:#?}"
    );

    // The lock holds again from here: the next loosening is held like the first.
    ncdd.rewrite_config(&config(&upstream, &format!("[block]\ndomains = []\n\n{FAST_UNLOCK}")));
    wait_status(&control, "a new removal is held", |s| {
        s.pending == ["remove domain kept.test"]
    });
    assert_blocked(&ncdd, &upstream, "kept.test");
}

#[test]
fn an_unlock_of_the_end_ends_the_period_once_the_passage_is_typed() {
    let upstream = FakeUpstream::start();
    let ncdd = Ncdd::start(&config(
        &upstream,
        &format!("[block]\ndomains = [\"later.test\", \"kept.test\"]\n\n{FAST_UNLOCK}"),
    ));
    let control = control(&ncdd);
    ncdd.settle();
    start_period(&ncdd, "1h");
    ncdd.rewrite_config(&config(
        &upstream,
        &format!("[block]\ndomains = [\"later.test\"]\n\n{FAST_UNLOCK}"),
    ));
    wait_status(&control, "the removal is held", |s| {
        s.pending == ["remove domain kept.test"]
    });

    request_unlock(&ncdd, "end");
    let status = control.status();
    assert_eq!(
        (status.unlock.state, status.unlock.scope),
        (UnlockState::Waiting, Some(UnlockScope::End))
    );
    wait_status(&control, "the window opens", |s| {
        s.unlock.state == UnlockState::Confirmable
    });
    let passage = control.type_passage();
    assert_passage(&passage, 20);
    assert_blocked(&ncdd, &upstream, "kept.test");
    let result = control.ok("unlock_confirm", Some(json!({ "typed": passage })));
    assert_eq!(result["scope"], "end");

    let (_, status) = cli_status(&ncdd);
    assert!(!status.period.active, "{status:#?}");
    let ended = status.period.ended.as_ref().expect("the ended period is shown");
    assert_eq!(ended.how, "unlocked");
    assert_eq!(ended.reason, REASON);
    assert!(ended.served_secs < 3600, "{ended:?}");
    assert_eq!(status.unlock.state, UnlockState::None);
    // The lock lifts: the held removal applies; what the config still names stays blocked.
    wait_resolves(&ncdd, "kept.test", KEPT_TEST);
    assert_blocked(&ncdd, &upstream, "later.test");
}

#[test]
fn an_unlock_of_the_held_changes_opens_only_what_was_held_when_it_was_asked_for() {
    let upstream = FakeUpstream::start();
    let unlock = "[unlock]\ndelay = \"1s\"\nconfirm_within = \"1h\"\nchallenge_chars = 20\n";
    let ncdd = Ncdd::start(&config(
        &upstream,
        &format!("[block]\ndomains = [\"later.test\", \"kept.test\"]\n\n{unlock}"),
    ));
    let control = control(&ncdd);
    ncdd.settle();
    start_period(&ncdd, "1h");
    ncdd.rewrite_config(&config(
        &upstream,
        &format!("[block]\ndomains = [\"kept.test\"]\n\n{unlock}"),
    ));
    wait_status(&control, "the first removal is held", |s| {
        s.pending == ["remove domain later.test"]
    });
    request_unlock(&ncdd, "pending");

    // After asking, one more loosening: it has not waited out any delay.
    ncdd.rewrite_config(&config(&upstream, &format!("[block]\ndomains = []\n\n{unlock}")));
    wait_status(&control, "the second removal is held", |s| s.pending.len() == 2);
    wait_status(&control, "the window opens", |s| {
        s.unlock.state == UnlockState::Confirmable
    });
    let passage = control.type_passage();
    control.ok("unlock_confirm", Some(json!({ "typed": passage })));

    wait_resolves(&ncdd, "later.test", LATER_TEST);
    let answer = a(ncdd.addr, "kept.test");
    assert!(
        is_null_block(&answer),
        "kept.test was removed after the request, so it must wait for an unlock of its own; ncdd answered {:?}",
        answer.message
    );
    assert_eq!(control.status().pending, ["remove domain kept.test"]);
}

// ----- 3b. The typing is the daemon's -----------------------------------------------

/// `[unlock]` with a passage of two parts (40 + up to 10 characters) and a long window.
const TWO_PARTS: &str = "[unlock]\ndelay = \"1s\"\nconfirm_within = \"1h\"\nchallenge_chars = 50\n";

/// A period with a confirmable request to end it, under [`TWO_PARTS`].
fn confirmable_two_parts(upstream: &FakeUpstream) -> (Ncdd, Control) {
    let ncdd = Ncdd::start(&config(
        upstream,
        &format!("[block]\ndomains = [\"later.test\"]\n\n{TWO_PARTS}"),
    ));
    let control = control(&ncdd);
    start_period(&ncdd, "1h");
    request_unlock(&ncdd, "end");
    wait_status(&control, "the window opens", |s| {
        s.unlock.state == UnlockState::Confirmable
    });
    (ncdd, control)
}

/// The whole passage, as a client that can read ncdd's state files (root) finds it.
fn saved_passage(ncdd: &Ncdd) -> String {
    let body = state_body(&state_file(ncdd, "period.json"));
    body["commitment"]["unlock"]["passage"]
        .as_str()
        .unwrap_or_else(|| panic!("no passage saved: {body:#}"))
        .to_string()
}

/// The passage in the daemon's parts of 40 characters.
fn parts_of(passage: &str) -> Vec<String> {
    let chars: Vec<char> = passage.chars().collect();
    chars.chunks(40).map(|c| c.iter().collect()).collect()
}

#[test]
fn a_raw_client_sending_the_whole_passage_at_once_is_refused() {
    let upstream = FakeUpstream::start();
    let (ncdd, control) = confirmable_two_parts(&upstream);
    let first = control.ok("unlock_challenge", None);
    assert_eq!(
        (first["part"].as_u64(), first["parts"].as_u64()),
        (Some(1), Some(2)),
        "{first}"
    );
    assert_eq!(first["min_ms_per_char"], 50, "{first}");
    let passage = saved_passage(&ncdd);
    assert_eq!(
        first["passage"].as_str(),
        Some(parts_of(&passage)[0].as_str()),
        "only part 1 is handed out"
    );
    // Even after a typist's time for all of it.
    std::thread::sleep(Duration::from_millis(60 * passage.chars().count() as u64));

    let (code, message) = control.refused("unlock_confirm", Some(json!({ "typed": passage })));
    assert_eq!(code, "conflict", "{message}");
    assert!(message.contains("0 of 2 parts typed"), "{message}");
    let status = control.status();
    assert!(status.period.active, "{status:#?}");
    assert_eq!(status.unlock.state, UnlockState::Confirmable);
    assert_blocked(&ncdd, &upstream, "later.test");
}

#[test]
fn a_raw_client_sending_the_parts_as_fast_as_it_can_is_refused() {
    let upstream = FakeUpstream::start();
    let (ncdd, control) = confirmable_two_parts(&upstream);
    control.ok("unlock_challenge", None);
    let passage = saved_passage(&ncdd);
    let parts = parts_of(&passage);
    // Each part back at once, again and again: never taken.
    for _ in 0..5 {
        let (code, message) = control.refused("unlock_chunk", Some(json!({ "typed": parts[0] })));
        assert_eq!(code, "conflict", "{message}");
        assert!(message.contains("too fast to be typed"), "{message}");
    }
    // Skipping to the second part does not work either.
    let (code, message) = control.refused("unlock_chunk", Some(json!({ "typed": parts[1] })));
    assert_eq!(code, "mismatch", "{message}");
    let (code, message) = control.refused("unlock_confirm", Some(json!({ "typed": passage })));
    assert_eq!(code, "conflict", "{message}");

    let (_, status) = cli_status(&ncdd);
    assert!(status.period.active, "{status:#?}");
    let journal = journal(&status);
    assert!(
        journal.contains("part 1 of 2 came back too fast to be typed"),
        "{journal}"
    );
    assert_eq!(
        journal.matches("too fast").count(),
        1,
        "journaled once, not at every try: {journal}"
    );
    assert!(!journal.contains("typed part"), "{journal}");
    assert_blocked(&ncdd, &upstream, "later.test");
}

#[test]
fn a_raw_client_typing_at_a_typists_pace_confirms_and_status_shows_the_parts() {
    let upstream = FakeUpstream::start();
    let (ncdd, control) = confirmable_two_parts(&upstream);
    let passage = control.type_passage();
    assert_passage(&passage, 50);
    let result = control.ok("unlock_confirm", Some(json!({ "typed": passage })));
    assert_eq!(result["scope"], "end");

    let run = ncd_ok(&ncdd, &["status"]);
    assert!(run.stdout.contains("unlocked"), "the period ended by unlock: {run:#?}");
    for line in [
        "typed part 1 of 2 of the passage",
        "typed part 2 of 2 of the passage",
        "unlock confirmed (end the period) after typing 2/2 parts",
    ] {
        assert!(run.stdout.contains(line), "{line:?} not shown: {run:#?}");
    }
}

// ----- 4. Cancel, expiry, escalation ------------------------------------------------

#[test]
fn withdrawn_or_expired_requests_change_nothing_and_each_new_one_waits_twice_as_long() {
    let upstream = FakeUpstream::start();
    let ncdd = Ncdd::start(&config(
        &upstream,
        "[block]\ndomains = [\"later.test\"]\n\n[unlock]\ndelay = \"3s\"\nconfirm_within = \"1s\"\n",
    ));
    let control = control(&ncdd);
    start_period(&ncdd, "1h");

    // Withdrawn.
    request_unlock(&ncdd, "end");
    let status = control.status();
    assert_eq!(
        (status.unlock.state, status.unlock.delay_secs),
        (UnlockState::Waiting, 3),
        "{status:#?}"
    );
    let run = ncd_ok(&ncdd, &["unlock", "--cancel"]);
    assert!(run.stdout.contains("Withdrawn"), "{run:#?}");
    let status = control.status();
    assert_eq!(status.unlock.state, UnlockState::None, "{status:#?}");
    assert!(status.period.active && status.period.length_secs == 3600, "{status:#?}");
    assert_eq!(status.period.reason.as_deref(), Some(REASON));
    assert!(journal(&status).contains("unlock request withdrawn"), "{status:#?}");
    let run = ncd_refused(&ncdd, &["unlock", "--cancel"]);
    assert!(run.stderr.contains("no unlock request"), "{run:#?}");

    // Asked again within 30 days: twice the delay. Left alone, it expires.
    request_unlock(&ncdd, "end");
    let status = control.status();
    assert_eq!(
        (status.unlock.state, status.unlock.delay_secs),
        (UnlockState::Waiting, 6),
        "{status:#?}"
    );
    // 6 s of cooling off and a 1 s window, and then some.
    let status = wait_status_within(&control, "the request expires", Duration::from_secs(30), |s| {
        s.unlock.state == UnlockState::Expired
    });
    assert!(status.period.active && status.period.length_secs == 3600, "{status:#?}");
    assert!(
        journal(&status).contains("the unlock request expired unconfirmed; nothing changed"),
        "{status:#?}"
    );
    let (code, _) = control.refused("unlock_challenge", None);
    assert_eq!(code, "conflict");
    assert_blocked(&ncdd, &upstream, "later.test");
    let (_, shown) = cli_status(&ncdd);
    assert_eq!(shown.unlock.state, UnlockState::Expired);

    // And the third: twice again.
    request_unlock(&ncdd, "end");
    let status = control.status();
    assert_eq!(
        (status.unlock.state, status.unlock.delay_secs),
        (UnlockState::Waiting, 12),
        "{status:#?}"
    );
}

// ----- 5. Confirming at a keyboard --------------------------------------------------

#[test]
fn confirming_from_piped_input_is_refused_and_asks_for_no_passage() {
    let upstream = FakeUpstream::start();
    let ncdd = Ncdd::start(&config(
        &upstream,
        "[block]\ndomains = [\"later.test\"]\n\n[unlock]\ndelay = \"1s\"\nconfirm_within = \"1h\"\n",
    ));
    let control = control(&ncdd);
    start_period(&ncdd, "1h");
    request_unlock(&ncdd, "end");
    wait_status(&control, "the window opens", |s| {
        s.unlock.state == UnlockState::Confirmable
    });

    let run = ncd(&socket(&ncdd), &["unlock", "--confirm"]);
    assert_ne!(run.code, Some(0), "{run:#?}");
    assert!(run.stderr.contains("not a terminal"), "{run:#?}");
    let status = control.status();
    assert_eq!(status.unlock.state, UnlockState::Confirmable, "{status:#?}");
    assert!(status.period.active);
    // No passage was even asked for: the saved request has none.
    for copy in ["period.json", "period.copy.json"] {
        let body = state_body(&state_file(&ncdd, copy));
        assert_eq!(body["commitment"]["unlock"]["passage"], Value::Null, "{copy}: {body:#}");
    }
}

#[test]
fn a_pasted_passage_is_refused_at_a_terminal_and_typing_it_ends_the_period() {
    // util-linux `script` gives ncd a pseudo-terminal to type at.
    if support::needs("typing at a terminal", support::program("script", "--version")).is_none() {
        return;
    }
    let upstream = FakeUpstream::start();
    let ncdd = Ncdd::start(&config(
        &upstream,
        "[block]\ndomains = [\"later.test\"]\n\n[unlock]\ndelay = \"1s\"\nconfirm_within = \"1h\"\nchallenge_chars = 20\n",
    ));
    let control = control(&ncdd);
    start_period(&ncdd, "1h");
    request_unlock(&ncdd, "end");
    wait_status(&control, "the window opens", |s| {
        s.unlock.state == UnlockState::Confirmable
    });

    let mut tty = TtySession::start(&socket(&ncdd), &["unlock", "--confirm"]);
    let screen = tty.expect("Part 1 of 1:", DEADLINE);
    assert!(screen.contains(REASON), "the reason is shown back:\n{screen}");
    let part = screen.split("Part 1 of 1:").nth(1).unwrap_or_default();
    let chunk = part
        .split_once('“')
        .and_then(|(_, rest)| rest.split_once('”'))
        .map(|(chunk, _)| chunk.to_string())
        .unwrap_or_else(|| panic!("no quoted passage on the screen:\n{screen}"));
    assert_passage(&chunk, 20);

    // All at once, as a paste: refused, and nothing is sent.
    tty.paste(chunk.as_bytes());
    tty.expect("faster than typing", DEADLINE);
    let status = control.status();
    assert!(status.period.active, "{status:#?}");
    assert_eq!(status.unlock.state, UnlockState::Confirmable);

    // In pieces of 7 bytes, 6 ms apart (never a run of 8 fast bytes): refused too.
    let screen = tty.text();
    for piece in chunk.as_bytes().chunks(7) {
        std::thread::sleep(Duration::from_millis(6));
        tty.paste(piece);
    }
    eventually(DEADLINE, || {
        (tty.text().matches("faster than typing").count() > screen.matches("faster than typing").count()).then_some(())
    })
    .unwrap_or_else(|| panic!("7-byte pieces were not refused:\n{}", tty.text()));
    assert!(
        !journal(&control.status()).contains("typed part"),
        "nothing was handed back"
    );

    // Typed key by key, at 200 words a minute: confirmed.
    tty.type_slowly(chunk.as_bytes(), Duration::from_millis(60));
    tty.expect("Confirmed.", DEADLINE);
    let exit = tty.wait(DEADLINE).expect("ncd exits after confirming");
    assert!(exit.success(), "{exit:?}\n{}", tty.text());
    let status = control.status();
    assert!(!status.period.active, "{status:#?}");
    assert_eq!(status.period.ended.map(|e| e.how.as_str()), Some("unlocked"));
}

// ----- 6. Only the owner ------------------------------------------------------------

#[test]
fn another_user_may_read_the_period_but_not_change_it() {
    if support::needs("running ncd as another user", support::root()).is_none() {
        return;
    }
    let upstream = FakeUpstream::start();
    let ncdd = Ncdd::start(&config(&upstream, "[block]\ndomains = [\"later.test\"]"));
    let control = control(&ncdd);
    // Let `nobody` reach the socket: the temp dir is 0700 until told otherwise.
    let dir = ncdd.config_path().parent().expect("the temp dir").to_path_buf();
    for path in [&dir, &ncdd.state_dir()] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let ncd_copy = cli::ncd_for_others(&dir);
    let socket = socket(&ncdd);

    // Starting is for root, the user ncdd runs as, or the owner of the config file.
    let run = cli::ncd_as(
        NOBODY,
        &ncd_copy,
        &socket,
        &["start", "--for", "1d", "--reason", REASON],
    );
    assert_eq!(run.code, Some(1), "`ncd start` as nobody: {run:#?}");
    // The daemon's words, not an EACCES on the socket (which also exits 1).
    assert!(
        run.stderr
            .contains("Starting a period here is for root, the user ncdd runs as, or the owner of the config file."),
        "`ncd start` as nobody: {run:#?}"
    );
    assert!(!control.status().period.active, "nobody started a period");

    start_period(&ncdd, "30d");
    request_unlock(&ncdd, "end");
    let before = control.status();
    assert_eq!(before.unlock.state, UnlockState::Waiting);

    let forbidden = "Only root or the person who started this period can do that.";
    for args in [&["unlock", "--cancel"][..], &["extend", "1d"][..]] {
        let run = cli::ncd_as(NOBODY, &ncd_copy, &socket, args);
        assert_eq!(run.code, Some(1), "`ncd {}` as nobody: {run:#?}", args.join(" "));
        assert!(
            run.stderr.contains(forbidden),
            "`ncd {}` as nobody: {run:#?}",
            args.join(" ")
        );
    }
    let response = cli::protocol_as(
        NOBODY,
        &socket,
        &json!({ "v": 1, "id": 41, "method": "extend", "params": { "by_secs": 86_400 } }).to_string(),
    );
    let response: Value = serde_json::from_str(&response).unwrap_or_else(|e| panic!("{e}: {response}"));
    assert_eq!(response["ok"], false, "{response}");
    assert_eq!(response["id"], 41, "{response}");
    assert_eq!(response["error"]["code"], "forbidden", "{response}");

    let after = control.status();
    assert_eq!(
        after.period.length_secs, before.period.length_secs,
        "nobody extended it"
    );
    assert_eq!(after.unlock.state, UnlockState::Waiting, "nobody withdrew the request");
    assert_eq!(after.unlock.delay_secs, before.unlock.delay_secs);

    // Reading is for everyone; the private words are the owner's and root's.
    let run = cli::ncd_as(NOBODY, &ncd_copy, &socket, &["status"]);
    assert!(run.success(), "{run:#?}");
    assert!(run.stdout.contains("Day 1 of 30"), "{run:#?}");
    assert!(run.stdout.contains("An unlock request is cooling off"), "{run:#?}");
    assert!(
        run.stdout
            .contains("The reason and details are shown to the period's owner and root only."),
        "{run:#?}"
    );
    assert!(!run.stdout.contains(REASON), "the reason shown to nobody: {run:#?}");
    let run = cli::ncd_as(NOBODY, &ncd_copy, &socket, &["status", "--json"]);
    assert!(run.success(), "{run:#?}");
    assert!(run.stdout.contains("\"active\": true"), "{run:#?}");
    assert!(run.stdout.contains("\"redacted\": true"), "{run:#?}");
    for private in [REASON, WHY] {
        assert!(!run.stdout.contains(private), "{private:?} shown to nobody: {run:#?}");
    }
    assert!(
        control.status().tamper.iter().any(|e| !e.detail.is_empty()),
        "the journal has details to hide"
    );
    let hidden: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:#?}"));
    let details = hidden["tamper"].as_array().expect("the journal's entries");
    assert!(!details.is_empty(), "kinds and times stay: {hidden:#}");
    assert!(details.iter().all(|e| e["detail"] == ""), "{hidden:#}");
    // The owner (root here) still sees everything.
    let (json, status) = cli_status(&ncdd);
    assert_eq!(json["redacted"], false, "{json:#}");
    assert_eq!(status.period.reason.as_deref(), Some(REASON));
    assert_eq!(status.unlock.why.as_deref(), Some(WHY));

    // And the owner (root) may.
    ncd_ok(&ncdd, &["unlock", "--cancel"]);
    ncd_ok(&ncdd, &["extend", "1d"]);
    let owner = control.status();
    assert_eq!(owner.unlock.state, UnlockState::None);
    assert_eq!(owner.period.length_secs, before.period.length_secs + 86_400);
}

// ----- 7. Killed and restarted ------------------------------------------------------

#[test]
fn killing_ncdd_at_random_moments_loses_neither_the_period_nor_the_pending_unlock() {
    let upstream = FakeUpstream::start();
    let mut ncdd = Ncdd::start(&config(
        &upstream,
        "[block]\ndomains = [\"later.test\"]\n\n[unlock]\ndelay = \"1h\"\n",
    ));
    let control = control(&ncdd);
    start_period(&ncdd, "1h");
    request_unlock(&ncdd, "end");
    let first = control.status();
    assert_eq!(
        (first.unlock.state, first.unlock.delay_secs),
        (UnlockState::Waiting, 3600)
    );
    // Served and the time left to wait add up to the moment the window opens.
    let opens_at = first.period.served_secs + first.unlock.remaining_secs;

    let mut served_before = first.period.served_secs;
    for round in 1..=10 {
        std::thread::sleep(Duration::from_millis(rand::random_range(0..=300)));
        let before = control.status();
        served_before = served_before.max(before.period.served_secs);
        ncdd.restart();
        let after = control.status();
        let what = format!("after kill {round}: {after:#?}");
        assert!(after.daemon.damage.is_empty(), "{what}");
        assert!(after.period.active, "{what}");
        assert_eq!(after.period.reason.as_deref(), Some(REASON), "{what}");
        assert_eq!(after.period.length_secs, 3600, "{what}");
        assert!(
            after.period.served_secs + 1 >= served_before,
            "served went back from {served_before}: {what}"
        );
        assert_eq!(after.unlock.state, UnlockState::Waiting, "{what}");
        assert_eq!(after.unlock.scope, Some(UnlockScope::End), "{what}");
        assert_eq!(after.unlock.why.as_deref(), Some(WHY), "{what}");
        assert_eq!(after.unlock.delay_secs, 3600, "{what}");
        assert_eq!(
            after.period.served_secs + after.unlock.remaining_secs,
            opens_at,
            "{what}"
        );
        assert_blocked(&ncdd, &upstream, "later.test");
        served_before = after.period.served_secs;
    }
}

// ----- 8. Damaged state -------------------------------------------------------------

#[test]
fn damaged_or_missing_state_files_never_end_the_period() {
    let upstream = FakeUpstream::start();
    let mut ncdd = Setup::new(&config(&upstream, "[block]\ndomains = [\"later.test\"]")).spawn();
    let control = control(&ncdd);
    start_period(&ncdd, "1h");
    let primary = state_file(&ncdd, "period.json");
    let copy = state_file(&ncdd, "period.copy.json");
    assert_eq!(state_body(&primary)["commitment"]["reason"], REASON);

    let check = |ncdd: &Ncdd, case: &str, damage: &[&str]| -> Status {
        let status = control.status();
        let what = format!("{case}: {status:#?}");
        assert!(status.period.active, "{what}");
        let reported = status.daemon.damage.join("\n");
        for word in damage {
            assert!(
                reported.contains(word),
                "{case}: damage should mention {word:?}: {what}"
            );
        }
        assert!(
            journal(&status).contains("state: "),
            "{case}: the damage is in the journal: {what}"
        );
        assert_blocked(ncdd, &upstream, "later.test");
        status
    };

    // (a) period.json cut short: the copy carries the period, and period.json is rewritten.
    ncdd.kill_hard();
    let bytes = std::fs::read(&primary).unwrap();
    std::fs::write(&primary, &bytes[..bytes.len() / 2]).unwrap();
    ncdd.restart();
    let status = check(&ncdd, "truncated", &["period.json", "damaged"]);
    assert_eq!(status.period.reason.as_deref(), Some(REASON));
    assert_eq!(
        state_body(&primary)["commitment"]["reason"],
        REASON,
        "period.json was repaired"
    );

    // (b) The copy deleted: the repaired period.json alone carries the period.
    ncdd.kill_hard();
    std::fs::remove_file(&copy).unwrap();
    ncdd.restart();
    let status = check(&ncdd, "copy deleted", &["period.copy.json", "missing"]);
    assert_eq!(status.period.reason.as_deref(), Some(REASON), "{status:#?}");
    assert!(copy.exists(), "the deleted copy was written again");
    assert_eq!(state_body(&copy)["commitment"]["reason"], REASON);

    // (c) period.json edited to say the period is served (and to look newer), the
    // checksum left as it was: the edit is not believed.
    ncdd.kill_hard();
    let mut body = state_body(&primary);
    body["commitment"]["served_secs"] = json!(3600);
    body["seq"] = json!(body["seq"].as_u64().unwrap() + 1000);
    let text = std::fs::read_to_string(&primary).unwrap();
    let header = text.lines().next().unwrap();
    std::fs::write(&primary, format!("{header}\n{body}\n")).unwrap();
    ncdd.restart();
    let status = check(&ncdd, "edited", &["period.json", "checksum"]);
    assert!(
        status.period.served_secs < 600,
        "the edited served time was not taken: {status:#?}"
    );
    assert_eq!(status.period.remaining_secs, 3600 - status.period.served_secs);
    assert_eq!(
        state_body(&primary)["commitment"]["served_secs"],
        json!(status.period.served_secs)
    );

    // (d) Both copies garbage, and the config file broken too: ncdd starts on the last
    // good config and assumes a period is running.
    ncdd.kill_hard();
    std::fs::write(&primary, "ncd-state v1 0000000000000000\n{\"seq\":").unwrap();
    std::fs::write(&copy, b"\x00\xff garbage \x7f").unwrap();
    ncdd.replace_config("[block\ndomains = [\"later.test\"\n");
    ncdd.restart();
    let status = check(
        &ncdd,
        "both copies garbage",
        &["period.json", "period.copy.json", "no copy"],
    );
    assert_eq!(status.period.reason.as_deref(), Some(UNREADABLE_REASON), "{status:#?}");
    // The assumed period has the last good config's length (`[period] length`, 60 days by default).
    assert_eq!(status.period.length_secs, 60 * 86_400, "{status:#?}");
    assert!(status.period.served_secs < 600, "{status:#?}");
}

#[test]
/// Root can delete the state dir, and nothing local can stop that (README,
/// "cannot stop"). What ncd does is leave a trace outside it: the system log.
fn deleting_both_state_copies_leaves_a_trace_in_the_log() {
    let upstream = FakeUpstream::start();
    let mut ncdd = Ncdd::start(&config(&upstream, "[block]\ndomains = [\"later.test\"]"));
    start_period(&ncdd, "30d");
    ncdd.kill_hard();
    for copy in ["period.json", "period.copy.json"] {
        std::fs::remove_file(state_file(&ncdd, copy)).unwrap();
    }
    ncdd.restart();
    assert!(
        ncdd.wait_for_stderr("its files were deleted", Duration::from_secs(5)),
        "{}",
        ncdd.stderr()
    );
}

#[test]
fn a_period_that_ends_while_ncdd_is_down_has_ended_when_it_comes_back() {
    let upstream = FakeUpstream::start();
    let mut ncdd = Ncdd::start(&config(&upstream, "[block]\ndomains = [\"later.test\", \"kept.test\"]"));
    let control = control(&ncdd);
    ncdd.settle();
    start_period(&ncdd, "3s");
    let started = std::time::Instant::now();
    ncdd.rewrite_config(&config(&upstream, "[block]\ndomains = [\"later.test\"]"));
    let status = wait_status(&control, "the removal is held", |s| !s.pending.is_empty());
    assert!(status.period.active, "{status:#?}");
    ncdd.kill_hard();
    // The time passes with ncdd stopped; the boot clock counts it all the same.
    let rest = Duration::from_millis(3500).saturating_sub(started.elapsed());
    std::thread::sleep(rest);
    ncdd.restart();
    let status = control.status();
    assert!(!status.period.active, "{status:#?}");
    let ended = status.period.ended.expect("the period that ended is shown");
    assert_eq!((ended.how.as_str(), ended.reason.as_str()), ("completed", REASON));
    assert!(status.daemon.damage.is_empty(), "{:?}", status.daemon.damage);
    assert_resolves(&ncdd, "kept.test", KEPT_TEST);
    assert_blocked(&ncdd, &upstream, "later.test");
}

// ----- 9. Garbage on the control socket --------------------------------------------

#[test]
fn garbage_on_the_control_socket_is_refused_and_ncdd_keeps_serving() {
    let upstream = FakeUpstream::start();
    let ncdd = Ncdd::start(&config(&upstream, "[block]\nservices = [\"instagram\"]"));
    let control = control(&ncdd);
    start_period(&ncdd, "1h");

    let still_fine = |after: &str| {
        assert_blocked(&ncdd, &upstream, "www.instagram.com");
        assert_resolves(&ncdd, "allowed.test", ALLOWED_TEST);
        let status = control
            .try_status()
            .unwrap_or_else(|| panic!("after {after}: status did not answer"));
        assert!(status.period.active, "after {after}: {status:#?}");
        assert_eq!(status.period.reason.as_deref(), Some(REASON), "after {after}");
    };
    let bad_request = |line: &[u8], id: u64, what: &str| {
        let answer = control
            .exchange(line)
            .unwrap_or_else(|e| panic!("{what}: {e}"))
            .unwrap_or_else(|| panic!("{what}: no answer"));
        let response: Value = serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{what}: {e}: {answer}"));
        assert_eq!(response["ok"], false, "{what}: {response}");
        assert_eq!(response["error"]["code"], "bad_request", "{what}: {response}");
        assert_eq!(response["id"], id, "{what}: {response}");
        still_fine(what);
    };

    bad_request(b"{this is not json\n", 0, "invalid JSON");
    bad_request(b"\xff\xfe\x00\x01\n", 0, "binary bytes");
    bad_request(
        b"{\"v\":1,\"id\":7,\"method\":\"frobnicate\"}\n",
        7,
        "an unknown method",
    );
    bad_request(b"{\"v\":2,\"id\":8,\"method\":\"status\"}\n", 8, "a wrong version");
    bad_request(
        b"{\"v\":1,\"id\":9,\"method\":\"extend\",\"params\":{\"by_secs\":\"lots\"}}\n",
        9,
        "a bad parameter",
    );
    bad_request(
        b"{\"v\":1,\"id\":10,\"method\":\"check\",\"params\":{\"name\":\"no spaces.example\"}}\n",
        10,
        "a bad name",
    );

    // A 1 MiB line without a newline: refused once the cap is passed, then closed.
    {
        let stream = control.connect().expect("connect");
        let writer = {
            let mut stream = stream.try_clone().expect("clone");
            std::thread::spawn(move || {
                use std::io::Write;
                let _ = stream.write_all(&vec![b'a'; 1 << 20]);
            })
        };
        let answer = support::control::read_line(&stream)
            .expect("read")
            .expect("an answer to the long line");
        let response: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(response["error"]["code"], "bad_request", "{response}");
        let _ = stream.shutdown(std::net::Shutdown::Both);
        writer.join().unwrap();
        still_fine("a 1 MiB line");
    }

    // Half a request, then the write side closed: an answer is due, and it says why.
    {
        let mut stream = control.connect().expect("connect");
        use std::io::Write;
        stream.write_all(b"{\"v\":1,\"id\":11,\"meth").unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let answer = support::control::read_line(&stream).expect("read").expect("an answer");
        let response: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(response["error"]["code"], "bad_request", "{response}");
        still_fine("half a request");
    }
    // Half a request, then gone.
    {
        let mut stream = control.connect().expect("connect");
        use std::io::Write;
        stream.write_all(b"{\"v\":1,\"id\":12,\"method\":\"sta").unwrap();
        drop(stream);
        still_fine("half a request and a hang-up");
    }

    // 500 connections at once, held open by one user: DNS is not affected; ncdd
    // keeps MAX_PER_USER (16) of them and closes the rest at once; another user
    // still gets in meanwhile; and the control socket answers this user again
    // once they are gone.
    const MAX_PER_USER: usize = 16;
    let held: Vec<_> = (0..500).map(|_| control.connect().expect("connect")).collect();
    for name in ["www.instagram.com", "instagram.com"] {
        assert_blocked(&ncdd, &upstream, name);
    }
    assert_resolves(&ncdd, "allowed.test", ALLOWED_TEST);
    let closed_by_ncdd = |stream: &std::os::unix::net::UnixStream| {
        use std::io::Read;
        stream.set_nonblocking(true).expect("non-blocking");
        matches!((&*stream).read(&mut [0u8; 1]), Ok(0))
    };
    let open = eventually(DEADLINE, || {
        let open = held.iter().filter(|s| !closed_by_ncdd(s)).count();
        (open == MAX_PER_USER).then_some(open)
    });
    assert!(
        open.is_some(),
        "one user holds {} of 500 control connections; the cap is {MAX_PER_USER}",
        held.iter().filter(|s| !closed_by_ncdd(s)).count()
    );
    if support::needs("another user beside the 500", support::root()).is_some() {
        let dir = ncdd.config_path().parent().expect("the temp dir").to_path_buf();
        for path in [&dir, &ncdd.state_dir()] {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let line = json!({ "v": 1, "id": 77, "method": "status" }).to_string();
        let response = cli::protocol_as(NOBODY, &socket(&ncdd), &line);
        let response: Value = serde_json::from_str(&response).unwrap_or_else(|e| panic!("{e}: {response}"));
        assert_eq!(response["ok"], true, "another user was kept out by the 500: {response}");
        assert_eq!(response["result"]["period"]["active"], true, "{response}");
    }
    drop(held);
    let back = eventually(DEADLINE, || control.try_status());
    assert!(back.is_some(), "status did not answer after the 500 connections closed");
    still_fine("500 connections");
}

// ----- 10. The status screen and check ---------------------------------------------

#[test]
fn status_shows_the_day_and_the_reason_and_check_names_the_rule() {
    let upstream = FakeUpstream::start();
    let ncdd = Ncdd::start(&config(&upstream, "[block]\nservices = [\"instagram\"]"));
    let control = control(&ncdd);
    start_period(&ncdd, "30d");

    let screen = ncd_ok(&ncdd, &["status"]).stdout;
    assert!(screen.starts_with("Day 1 of 30"), "{screen}");
    assert!(screen.contains(REASON), "{screen}");

    let config_path = ncdd.config_path();
    let state_dir = ncdd.state_dir();
    let local = [
        "--config",
        config_path.to_str().unwrap(),
        "--state-dir",
        state_dir.to_str().unwrap(),
    ];
    let run = ncd_ok(&ncdd, &[&local[..], &["check", "www.instagram.com"]].concat());
    assert!(
        run.stdout.contains("www.instagram.com is blocked by the rule"),
        "{run:#?}"
    );
    let run = ncd_ok(&ncdd, &[&local[..], &["check", "--json", "www.instagram.com"]].concat());
    let verdict: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:#?}"));
    assert_eq!(verdict["blocked"], true, "{verdict}");
    let run = ncd(&socket(&ncdd), &[&local[..], &["check", "allowed.test"]].concat());
    assert_eq!(run.code, Some(1), "not blocked exits 1: {run:#?}");

    // The daemon's own answer agrees.
    let result = control.ok("check", Some(json!({ "name": "www.instagram.com" })));
    assert_eq!(result["blocked"], true, "{result}");
    assert_eq!(result["by"]["rule"], verdict["by"]["rule"], "{result} vs {verdict}");
}

#[test]
fn check_during_a_period_answers_for_what_ncdd_enforces() {
    let upstream = FakeUpstream::start();
    let ncdd = Ncdd::start(&config(&upstream, "[block]\nservices = [\"instagram\"]"));
    let control = control(&ncdd);
    ncdd.settle();
    start_period(&ncdd, "30d");
    ncdd.rewrite_config(&config(&upstream, "[block]\nservices = []"));
    wait_status(&control, "the removal is held", |s| {
        s.pending == ["remove service instagram"]
    });
    assert_blocked(&ncdd, &upstream, "www.instagram.com");
    assert_eq!(
        control.ok("check", Some(json!({ "name": "www.instagram.com" })))["blocked"],
        true
    );

    let config_path = ncdd.config_path();
    let state_dir = ncdd.state_dir();
    let run = ncd(
        &socket(&ncdd),
        &[
            "--config",
            config_path.to_str().unwrap(),
            "--state-dir",
            state_dir.to_str().unwrap(),
            "check",
            "www.instagram.com",
        ],
    );
    assert!(
        run.success() && run.stdout.contains("is blocked"),
        "ncdd blocks www.instagram.com, but `ncd check` says: {run:#?}"
    );
}
