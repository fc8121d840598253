//! End-to-end tests of the companion proxy inside ncdd: the real `ncdd` with a
//! `[[profile]]`, real DNS queries, real `curl` through the proxy with only ncd's
//! CA trusted, and the real `ncd`.
//!
//! What a person would notice: the site's hosts answer with the proxy's address
//! (unless the site is blocked whole), the ex's profile page is the block page,
//! `ncd check URL` names the profile rule, `ncd status` shows the profiles and the
//! CA to trust — and after an unlock lifts a whole-site block, the profile stays
//! closed. Pages the proxy lets through need the real origin; they are tested
//! against a fake origin in `proxy/tests/`.

// Tests may unwrap: a failed unwrap is a failed test, with its place.
#![allow(clippy::unwrap_used, clippy::expect_used)]

// Each test binary uses its own part of the shared harness.
#[allow(dead_code)]
mod support;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use hickory_proto::rr::RecordType;
use ncd_config::control::{Status, UnlockState};
use serde_json::json;

use support::cli::{Run, ncd};
use support::client::{a, query_udp};
use support::control::Control;
use support::eventually;
use support::ncdd::Ncdd;
use support::upstream::FakeUpstream;

const DEADLINE: Duration = Duration::from_secs(10);
const REASON: &str = "I want my mornings back, and my attention.";
const WHY: &str = "Work runs on Instagram and I talked it over with a friend.";
const FAST_UNLOCK: &str = "[unlock]\ndelay = \"2s\"\nconfirm_within = \"5s\"\nchallenge_chars = 20\n";
/// The words every block page carries (`ncd_proxy::block_page::BLOCK_MARKER`).
const BLOCK_MARKER: &str = "ncd-boundary-block";

/// A free loopback TCP port for the proxy (the config wants a fixed one).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A config with the fake upstream, a profile on Instagram, the proxy on `port`.
fn config(upstream: &FakeUpstream, port: u16, block: &str) -> String {
    format!(
        "[dns]\nupstreams = [\"{}\"]\n\n[block]\n{block}\n\n[[profile]]\nname = \"ex\"\ninstagram = [\"@ExName\"]\n\n\
         [proxy]\nlisten = [\"127.0.0.1:{port}\"]\n\n{FAST_UNLOCK}",
        upstream.url()
    )
}

fn socket(ncdd: &Ncdd) -> PathBuf {
    ncdd.state_dir().join("control.sock")
}

fn wait_status(control: &Control, what: &str, ready: impl Fn(&Status) -> bool) -> Status {
    let mut last = None;
    eventually(DEADLINE, || {
        let status = control.status();
        if ready(&status) {
            Some(status)
        } else {
            last = Some(status);
            None
        }
    })
    .unwrap_or_else(|| panic!("{what}: not within {DEADLINE:?}; the last status was {last:#?}"))
}

/// `curl` to `url` on www.instagram.com, connected to the proxy on `port` (as the
/// DNS answer steers it), trusting only ncd's CA. (status code, body)
fn curl(ncdd: &Ncdd, port: u16, url: &str, http: &str) -> (String, String) {
    let ca = ncdd.state_dir().join("ca/ca.pem");
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "10", http, "-o", "-", "-w", "\n%{http_code}"])
        .args(["-H", "Sec-Fetch-Mode: navigate", "-H", "Accept: text/html"])
        .arg("--connect-to")
        .arg(format!("www.instagram.com:443:127.0.0.1:{port}"))
        .arg("--cacert")
        .arg(&ca)
        .arg(url)
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .output()
        .expect("run curl (is it installed?)");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(output.status.success(), "curl {url}: {output:?}");
    let (body, code) = text.rsplit_once('\n').expect("curl printed the status code");
    (code.to_string(), body.to_string())
}

fn assert_steered(ncdd: &Ncdd, name: &str) {
    let answer = a(ncdd.addr, name);
    assert_eq!(
        answer.ipv4(),
        [Ipv4Addr::LOCALHOST],
        "{name} should be steered to the proxy: {answer:?}"
    );
}

#[test]
fn profile_hosts_are_steered_to_the_proxy_and_a_whole_site_block_wins() {
    let upstream = FakeUpstream::start();
    let port = free_port();
    let ncdd = Ncdd::start(&config(&upstream, port, ""));
    assert_steered(&ncdd, "www.instagram.com");
    assert_steered(&ncdd, "instagram.com");
    // No IPv6 address for the proxy here, and no HTTPS record (no ECH, no hints
    // that would lead around the proxy).
    for rtype in [RecordType::AAAA, RecordType::HTTPS] {
        let answer = query_udp(ncdd.addr, "www.instagram.com", rtype);
        assert!(answer.answers().is_empty(), "{rtype}: {answer:?}");
        assert!(!answer.is_from_fake_upstream(), "{rtype}: {answer:?}");
    }
    // Other sites and other Instagram-like names go upstream as ever.
    assert_eq!(a(ncdd.addr, "www.facebook.com").ipv4(), [Ipv4Addr::new(192, 0, 2, 15)]);
    assert_eq!(a(ncdd.addr, "notinstagram.com").ipv4(), [Ipv4Addr::new(192, 0, 2, 10)]);

    // Blocked whole, the site is blocked, profile rule or not.
    let blocked = Ncdd::start(&config(&upstream, free_port(), "services = [\"instagram\"]"));
    let answer = a(blocked.addr, "www.instagram.com");
    assert!(answer.is_blocked(), "{answer:?}");
    assert_eq!(answer.ipv4(), [Ipv4Addr::UNSPECIFIED]);
}

#[test]
fn the_exs_profile_is_the_block_page_and_check_and_status_say_so() {
    let upstream = FakeUpstream::start();
    let port = free_port();
    let ncdd = Ncdd::start(&config(&upstream, port, ""));
    let control = Control::new(socket(&ncdd));
    let status = wait_status(&control, "the proxy serves", |s| !s.proxy.listening.is_empty());
    assert_eq!(status.proxy.sites, ["instagram"], "{status:#?}");
    assert_eq!(status.proxy.profiles, ["ex"]);
    let ca = status.proxy.ca.as_ref().expect("a CA once a profile is in force");
    assert_eq!(ca.domains, ["instagram.com"]);
    assert!(ncdd.state_dir().join("ca/ca.pem").is_file());

    for http in ["--http1.1", "--http2"] {
        // Handles match without case and without the @ the config wrote.
        let (code, body) = curl(&ncdd, port, "https://www.instagram.com/exname/", http);
        assert_eq!(code, "403", "{http}: {body}");
        assert!(body.contains(BLOCK_MARKER), "{http}: {body}");
        assert!(
            !body.to_lowercase().contains("exname"),
            "the block page never names the profile: {body}"
        );
        let (code, body) = curl(&ncdd, port, "https://www.instagram.com/EXNAME/reels/", http);
        assert_eq!(code, "403", "{http}: {body}");
    }

    let run = ncd(&socket(&ncdd), &["check", "https://www.instagram.com/exname/"]);
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert!(run.stdout.contains("the profile rule \"ex\""), "{run:#?}");
    let run = ncd(&socket(&ncdd), &["check", "https://www.instagram.com/"]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(run.stdout.contains("opens"), "{run:#?}");
    let run = ncd(&socket(&ncdd), &["check", "www.instagram.com"]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(run.stdout.contains("goes through ncd's proxy"), "{run:#?}");

    let run: Run = ncd(&socket(&ncdd), &["status"]);
    assert!(
        run.stdout.contains("Profiles kept closed: “ex” on instagram"),
        "{run:#?}"
    );
    assert!(run.stdout.contains("sudo ncd ca install"), "{run:#?}");
    let status = control.status();
    let journal: String = status.tamper.iter().map(|e| e.detail.clone()).collect();
    assert!(journal.contains("made the proxy's CA for instagram.com"), "{status:#?}");
    // The blocked attempt counts, once, as a look at the profile.
    assert!(
        status
            .blocked
            .today_by_service
            .iter()
            .any(|(s, _)| s == "instagram: profile"),
        "{status:#?}"
    );
}

/// The README's story: Instagram is blocked whole during the period; an unlock of
/// the held changes opens the site for work — and the ex's profile stays closed.
#[test]
fn after_an_unlock_opens_the_site_the_exs_profile_stays_blocked() {
    let upstream = FakeUpstream::start();
    let port = free_port();
    let ncdd = Ncdd::start(&config(&upstream, port, "services = [\"instagram\"]"));
    let control = Control::new(socket(&ncdd));
    ncdd.settle();
    let run = ncd(&socket(&ncdd), &["start", "--for", "1h", "--reason", REASON]);
    assert!(run.success(), "{run:#?}");
    assert!(a(ncdd.addr, "www.instagram.com").is_blocked());

    // "I need Instagram for work": held during the period.
    ncdd.rewrite_config(&config(&upstream, port, ""));
    wait_status(&control, "the removal is held", |s| {
        s.pending == ["remove service instagram"]
    });
    assert!(a(ncdd.addr, "www.instagram.com").is_blocked(), "held, so still blocked");

    let run = ncd(&socket(&ncdd), &["unlock", "--scope", "pending", "--why", WHY]);
    assert!(run.success(), "{run:#?}");
    wait_status(&control, "the window opens", |s| {
        s.unlock.state == UnlockState::Confirmable
    });
    let passage = control.type_passage();
    control.ok("unlock_confirm", Some(json!({ "typed": passage })));

    // The site opens — through the proxy — and the profile does not.
    let steered = eventually(DEADLINE, || {
        (a(ncdd.addr, "www.instagram.com").ipv4() == [Ipv4Addr::LOCALHOST]).then_some(())
    });
    assert!(steered.is_some(), "www.instagram.com was not steered after the unlock");
    let status = wait_status(&control, "the proxy serves", |s| !s.proxy.listening.is_empty());
    assert!(status.period.active, "the period goes on: {status:#?}");
    let (code, body) = curl(&ncdd, port, "https://www.instagram.com/exname/", "--http2");
    assert_eq!(code, "403", "{body}");
    assert!(body.contains(BLOCK_MARKER), "{body}");
    assert!(
        body.contains(REASON),
        "the block page shows the person's own reason: {body}"
    );

    // Removing the profile now is a loosening the ratchet holds.
    ncdd.rewrite_config(&format!(
        "[dns]\nupstreams = [\"{}\"]\n\n[proxy]\nlisten = [\"127.0.0.1:{port}\"]\n\n{FAST_UNLOCK}",
        upstream.url()
    ));
    let status = wait_status(&control, "the profile removal is held", |s| !s.pending.is_empty());
    assert!(status.pending.iter().any(|p| p.contains("profile")), "{status:#?}");
    assert_steered(&ncdd, "www.instagram.com");
}

/// The proxy is not an open relay: a client outside loopback and `allow_clients`
/// gets no TLS answer at all; one inside gets the same proxy a local browser does.
#[test]
fn a_client_outside_loopback_and_allow_clients_is_refused_by_the_proxy() {
    let ns = match support::netns::NetNs::create() {
        Ok(ns) => ns,
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => panic!("CI must run the proxy LAN test: {why}"),
        Err(why) => {
            eprintln!("skipping the proxy LAN client test: {why}");
            return;
        }
    };
    let upstream = FakeUpstream::start();
    let curl_from_lan = |ncdd: &Ncdd, port: u16| {
        let ca = ncdd.state_dir().join("ca/ca.pem");
        let target = format!("www.instagram.com:443:{}:{port}", ns.host_addr);
        ns.exec(
            "curl",
            &[
                "-sS",
                "--max-time",
                "5",
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
                "-H",
                "Sec-Fetch-Mode: navigate",
                "--connect-to",
                &target,
                "--cacert",
                ca.to_str().unwrap(),
                "https://www.instagram.com/exname/",
            ],
        )
    };
    for (allow, let_in) in [("192.0.2.0/24", false), ("10.250.0.0/16", true)] {
        let port = free_port();
        let text = config(&upstream, port, "").replace(
            "[dns]\n",
            &format!("[dns]\nallow_clients = [\"{allow}\"]\nlisten = [\"127.0.0.1:0\"]\n"),
        );
        let text = text.replace(
            &format!("listen = [\"127.0.0.1:{port}\"]"),
            &format!("listen = [\"{}:{port}\"]", ns.host_addr),
        );
        let ncdd = Ncdd::start(&text);
        let control = Control::new(socket(&ncdd));
        wait_status(&control, "the proxy serves", |s| !s.proxy.listening.is_empty());
        let (ok, out) = curl_from_lan(&ncdd, port);
        if let_in {
            assert!(ok && out.ends_with("403") && out.contains(BLOCK_MARKER), "{out}");
        } else {
            assert!(!ok && !out.contains(BLOCK_MARKER), "a LAN client got an answer: {out}");
        }
    }
}
