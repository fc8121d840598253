//! End-to-end tests of `ncdd`: the real binary, a fake upstream DNS server in this
//! process, and real DNS queries over UDP and TCP (our own client and `dig`).
//!
//! Every test runs its own upstream and its own ncdd on free ports in its own temp
//! dir, so they run in parallel. Waits are polls with a deadline, never fixed sleeps.

// Tests may unwrap: a failed unwrap is a failed test, with its place.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

use ncd_config::BlockAnswer;
use support::blocked::{assert_blocked_and_unseen, assert_blocked_and_unseen_via};
use support::client::{self, Answer, a, dig, query_tcp, query_udp};
use support::ncdd::{Ncdd, Setup};
use support::upstream::{FakeUpstream, ZONE_TTL};
use support::{dead_loopback_port, eventually};

/// How long a config edit may take to be served (debounce is 300 ms).
const RELOAD_DEADLINE: Duration = Duration::from_secs(5);
const NULL_V4: Ipv4Addr = Ipv4Addr::UNSPECIFIED;
const NULL_V6: Ipv6Addr = Ipv6Addr::UNSPECIFIED;
/// RFC 8914 info-codes.
const EDE_BLOCKED: u16 = 15;
const EDE_PROHIBITED: u16 = 18;
const EDE_NO_REACHABLE_AUTHORITY: u16 = 22;

/// A config with the fake upstream, extra `[dns]` lines and the rest of the file.
fn config(upstream: &FakeUpstream, dns: &str, rest: &str) -> String {
    format!("[dns]\nupstreams = [\"{}\"]\n{dns}\n\n{rest}\n", upstream.url())
}

fn v4(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

/// Asserts a null-mode block of an A query: 0.0.0.0, EDE 15.
#[track_caller]
fn assert_blocked_a(answer: &Answer, what: &str) {
    assert_eq!(answer.rcode(), ResponseCode::NoError, "{what}: {:?}", answer.message);
    assert_eq!(answer.ipv4(), [NULL_V4], "{what}: {:?}", answer.message);
    assert_eq!(answer.ede(), Some(EDE_BLOCKED), "{what}: {:?}", answer.message);
}

/// Asserts the fake upstream's A answer `ip`, with no EDE.
#[track_caller]
fn assert_upstream_a(answer: &Answer, ip: &str, what: &str) {
    assert_eq!(answer.rcode(), ResponseCode::NoError, "{what}: {:?}", answer.message);
    assert_eq!(answer.ipv4(), [v4(ip)], "{what}: {:?}", answer.message);
    assert_eq!(answer.ede(), None, "{what}: {:?}", answer.message);
}

/// Asserts a NOERROR/no-data block: no answers, an SOA with TTL and negative TTL
/// `ttl`, EDE 15.
#[track_caller]
fn assert_blocked_no_data(answer: &Answer, ttl: u32, what: &str) {
    assert_eq!(answer.rcode(), ResponseCode::NoError, "{what}: {:?}", answer.message);
    assert!(answer.answers().is_empty(), "{what}: {:?}", answer.message);
    let (soa_ttl, soa) = answer
        .soa()
        .unwrap_or_else(|| panic!("{what}: no SOA: {:?}", answer.message));
    assert_eq!((soa_ttl, soa.minimum), (ttl, ttl), "{what}: SOA TTLs");
    assert_eq!(answer.ede(), Some(EDE_BLOCKED), "{what}: {:?}", answer.message);
}

/// Asserts an NXDOMAIN synthesised by ncdd: SOA in authority, EDE 15.
#[track_caller]
fn assert_blocked_nxdomain(answer: &Answer, what: &str) {
    assert_eq!(answer.rcode(), ResponseCode::NXDomain, "{what}: {:?}", answer.message);
    assert!(answer.answers().is_empty(), "{what}: {:?}", answer.message);
    assert!(answer.soa().is_some(), "{what}: no SOA: {:?}", answer.message);
    assert_eq!(answer.ede(), Some(EDE_BLOCKED), "{what}: {:?}", answer.message);
}

/// Blocked as a user would notice (see `support::blocked`), over UDP and TCP, for
/// every query type, and nothing of it reaches the upstream meanwhile.
#[track_caller]
fn assert_blocked(ncdd: &Ncdd, upstream: &FakeUpstream, name: &str, what: &str) {
    assert_blocked_a(&a(ncdd.addr, name), what);
    assert_blocked_and_unseen(ncdd.addr, upstream, name, BlockAnswer::Null);
}

/// Polls until an A query for `name` is blocked (0.0.0.0); panics after the deadline.
#[track_caller]
fn wait_until_blocked(ncdd: &Ncdd, name: &str) {
    let blocked = eventually(RELOAD_DEADLINE, || {
        let answer = a(ncdd.addr, name);
        (answer.ipv4() == [NULL_V4]).then_some(answer)
    });
    match blocked {
        Some(answer) => assert_blocked_a(&answer, name),
        None => panic!(
            "{name} was not blocked within {RELOAD_DEADLINE:?}: {:?}",
            a(ncdd.addr, name).message
        ),
    }
}

// ----- Matching -------------------------------------------------------------------

#[test]
fn catalog_service_blocks_the_domain_and_every_subdomain() {
    let upstream = FakeUpstream::start();
    let ncdd = Ncdd::start(&config(&upstream, "", "[block]\nservices = [\"instagram\"]"));

    for name in [
        "instagram.com",
        "www.instagram.com",
        "a.b.instagram.com",
        "cdninstagram.com",
        "ig.me",
    ] {
        assert_blocked(&ncdd, &upstream, name, name);
    }
    assert_eq!(upstream.queries(), 0, "blocked names must never be forwarded");
}

#[test]
fn exact_rule_blocks_only_the_name_itself() {
    let upstream = FakeUpstream::start();
    let ncdd = Ncdd::start(&config(&upstream, "", "[block]\ndomains = [\"=exact.example.org\"]"));

    assert_blocked(&ncdd, &upstream, "exact.example.org", "exact.example.org");
    assert!(!upstream.was_asked("exact.example.org"));
    assert_upstream_a(
        &a(ncdd.addr, "www.exact.example.org"),
        "192.0.2.12",
        "www.exact.example.org",
    );
    assert!(upstream.was_asked("www.exact.example.org"));
}

#[test]
fn lookalike_names_that_merely_contain_a_blocked_domain_resolve() {
    let upstream = FakeUpstream::start();
    let ncdd = Ncdd::start(&config(&upstream, "", "[block]\nservices = [\"instagram\"]"));

    assert_upstream_a(&a(ncdd.addr, "notinstagram.com"), "192.0.2.10", "notinstagram.com");
    assert_upstream_a(
        &a(ncdd.addr, "instagram.com.evil.test"),
        "192.0.2.11",
        "instagram.com.evil.test",
    );
    assert_blocked(&ncdd, &upstream, "instagram.com", "instagram.com itself");
}

#[test]
fn letter_case_in_queries_and_rules_does_not_matter() {
    let upstream = FakeUpstream::start();
    let rest = "[block]\nservices = [\"instagram\"]\ndomains = [\"MiXeD.Example\"]";
    let ncdd = Ncdd::start(&config(&upstream, "", rest));

    let answer = a(ncdd.addr, "WWW.InStAgRaM.CoM");
    assert_blocked_a(&answer, "WWW.InStAgRaM.CoM");
    // The question comes back as it was asked (0x20-randomising resolvers check it).
    assert_eq!(answer.message.queries[0].name().to_ascii(), "WWW.InStAgRaM.CoM.");
    assert_blocked(&ncdd, &upstream, "mixed.example", "mixed.example");
    assert_blocked(&ncdd, &upstream, "WWW.MIXED.EXAMPLE", "WWW.MIXED.EXAMPLE");
}

#[test]
fn a_trailing_dot_in_a_rule_or_a_query_makes_no_difference() {
    let upstream = FakeUpstream::start();
    let ncdd = Ncdd::start(&config(
        &upstream,
        "",
        "[block]\ndomains = [\"dotted.example.\", \"plain.example\"]",
    ));

    for name in [
        "dotted.example",
        "dotted.example.",
        "sub.dotted.example",
        "plain.example.",
        "plain.example",
    ] {
        assert_blocked(&ncdd, &upstream, name, name);
    }
    let out = dig(ncdd.addr, &["dotted.example.", "+short"]);
    assert_eq!(out.trim(), "0.0.0.0", "dig dotted.example.: {out}");
}

#[test]
fn an_internationalised_rule_blocks_its_punycode_name() {
    let upstream = FakeUpstream::start();
    let ncdd = Ncdd::start(&config(&upstream, "", "[block]\ndomains = [\"bücher.example\"]"));

    for name in [
        "xn--bcher-kva.example",
        "www.xn--bcher-kva.example",
        "XN--BCHER-KVA.EXAMPLE",
    ] {
        assert_blocked(&ncdd, &upstream, name, name);
    }
    assert_eq!(upstream.queries(), 0);
}

// ----- Answer modes ---------------------------------------------------------------

#[test]
fn null_mode_answers_a_with_0000_and_aaaa_with_unspecified_for_blocked_ttl() {
    let upstream = FakeUpstream::start();
    let ncdd = Ncdd::start(&config(
        &upstream,
        "answer = \"null\"\nblocked_ttl = \"7s\"",
        "[block]\nservices = [\"instagram\"]",
    ));

    let answer = a(ncdd.addr, "www.instagram.com");
    assert_blocked_a(&answer, "A");
    assert_eq!(answer.answers()[0].ttl, 7);

    let answer = query_udp(ncdd.addr, "www.instagram.com", RecordType::AAAA);
    assert_eq!(answer.rcode(), ResponseCode::NoError);
    assert_eq!(answer.ipv6(), [NULL_V6], "{:?}", answer.message);
    assert_eq!(answer.answers()[0].ttl, 7);
    assert_eq!(answer.ede(), Some(EDE_BLOCKED));
}

#[test]
fn null_mode_answers_other_types_with_no_data_and_an_soa() {
    let upstream = FakeUpstream::start();
    let ncdd = Ncdd::start(&config(
        &upstream,
        "answer = \"null\"\nblocked_ttl = \"7s\"",
        "[block]\nservices = [\"instagram\"]",
    ));

    for rtype in [
        RecordType::HTTPS,
        RecordType::SVCB,
        RecordType::MX,
        RecordType::TXT,
        RecordType::ANY,
    ] {
        let answer = query_udp(ncdd.addr, "www.instagram.com", rtype);
        assert_blocked_no_data(&answer, 7, &format!("{rtype}"));
    }
}

#[test]
fn nxdomain_mode_answers_nxdomain_with_an_soa() {
    let upstream = FakeUpstream::start();
    let ncdd = Ncdd::start(&config(
        &upstream,
        "answer = \"nxdomain\"\nblocked_ttl = \"7s\"",
        "[block]\nservices = [\"instagram\"]",
    ));

    assert_blocked_and_unseen(ncdd.addr, &upstream, "www.instagram.com", BlockAnswer::Nxdomain);
    for rtype in [RecordType::A, RecordType::AAAA, RecordType::HTTPS] {
        let answer = query_udp(ncdd.addr, "www.instagram.com", rtype);
        assert_blocked_nxdomain(&answer, &format!("{rtype}"));
        let (ttl, soa) = answer.soa().unwrap();
        assert_eq!((ttl, soa.minimum), (7, 7), "{rtype}: negative TTL is blocked_ttl");
    }
    // Allowed names are untouched by the mode.
    assert_upstream_a(&a(ncdd.addr, "allowed.test"), "192.0.2.1", "allowed.test");
}

#[test]
fn refused_mode_answers_refused() {
    let upstream = FakeUpstream::start();
    let ncdd = Ncdd::start(&config(
        &upstream,
        "answer = \"refused\"",
        "[block]\nservices = [\"instagram\"]",
    ));

    assert_blocked_and_unseen(ncdd.addr, &upstream, "www.instagram.com", BlockAnswer::Refused);
    for rtype in [RecordType::A, RecordType::AAAA] {
        let answer = query_udp(ncdd.addr, "www.instagram.com", rtype);
        assert_eq!(answer.rcode(), ResponseCode::Refused, "{rtype}");
        assert!(answer.answers().is_empty(), "{rtype}");
        assert_eq!(answer.ede(), Some(EDE_BLOCKED), "{rtype}");
    }
    assert_upstream_a(&a(ncdd.addr, "allowed.test"), "192.0.2.1", "allowed.test");
}

#[test]
fn queries_without_edns_get_the_block_without_an_opt_record() {
    let upstream = FakeUpstream::start();
    let ncdd = Ncdd::start(&config(&upstream, "", "[block]\nservices = [\"instagram\"]"));

    let mut query = client::build_query("www.instagram.com", RecordType::A);
    query.edns = None;
    let response = client::exchange_udp(ncdd.addr, &query, client::CLIENT_TIMEOUT).expect("answer");
    let answer = Answer { message: response };
    assert_eq!(answer.ipv4(), [NULL_V4]);
    assert!(answer.message.edns.is_none(), "{:?}", answer.message);
}

// ----- Answer inspection ------------------------------------------------------------

#[test]
fn cname_cloaking_into_a_blocked_domain_is_blocked() {
    let upstream = FakeUpstream::start();
    let ncdd = Ncdd::start(&config(&upstream, "", "[block]\ndomains = [\"blocked.test\"]"));

    // cloaked.test is not blocked itself, but upstream answers with a CNAME into blocked.test.
    assert_blocked_a(&a(ncdd.addr, "cloaked.test"), "cloaked.test A");
    assert!(
        upstream.was_asked("cloaked.test"),
        "cloaked.test itself must be looked up"
    );
    assert_blocked_and_unseen_via(
        ncdd.addr,
        &upstream,
        "cloaked.test",
        "tracker.blocked.test",
        BlockAnswer::Null,
    );
    let answer = query_udp(ncdd.addr, "cloaked.test", RecordType::AAAA);
    assert_eq!(answer.ipv6(), [NULL_V6], "{:?}", answer.message);
    assert_eq!(answer.ede(), Some(EDE_BLOCKED));
    // The tracker address from upstream never reaches the client.
    assert!(!answer.answers().iter().any(|r| matches!(r.data, RData::CNAME(_))));
    // The control: the same name resolves when blocked.test is not blocked.
    let open = FakeUpstream::start();
    let ncdd_open = Ncdd::start(&config(&open, "", ""));
    let answer = a(ncdd_open.addr, "cloaked.test");
    assert_eq!(answer.ipv4(), [v4("192.0.2.66")], "{:?}", answer.message);
}

#[test]
fn https_alias_record_pointing_into_a_blocked_domain_is_blocked() {
    let upstream = FakeUpstream::start();
    let ncdd = Ncdd::start(&config(
        &upstream,
        "blocked_ttl = \"7s\"",
        "[block]\ndomains = [\"blocked.test\"]",
    ));

    let answer = query_udp(ncdd.addr, "alias.test", RecordType::HTTPS);
    assert!(upstream.was_asked("alias.test"));
    assert_blocked_no_data(&answer, 7, "alias.test HTTPS");
}

#[test]
fn https_service_mode_record_passes_through() {
    let upstream = FakeUpstream::start();
    let ncdd = Ncdd::start(&config(&upstream, "", "[block]\ndomains = [\"blocked.test\"]"));

    let answer = query_udp(ncdd.addr, "svc.test", RecordType::HTTPS);
    assert_eq!(answer.rcode(), ResponseCode::NoError);
    assert_eq!(answer.ede(), None);
    let [record] = answer.answers() else {
        panic!("one HTTPS record expected: {:?}", answer.message)
    };
    let RData::HTTPS(https) = &record.data else {
        panic!("not HTTPS: {record:?}")
    };
    assert_eq!(https.0.svc_priority, 1);
    assert!(https.0.target_name.is_root());
    assert!(format!("{}", https.0).contains("alpn=h2"), "{}", https.0);
}

// ----- Guards -----------------------------------------------------------------------

#[test]
fn firefox_canary_and_private_relay_get_nxdomain() {
    let upstream = FakeUpstream::start();
    let ncdd = Ncdd::start(&config(&upstream, "", ""));

    for name in ["use-application-dns.net", "mask.icloud.com", "mask-h2.icloud.com"] {
        assert_blocked_nxdomain(&a(ncdd.addr, name), name);
    }
    assert_eq!(upstream.queries(), 0);
}

#[test]
fn ddr_query_is_told_there_is_no_designated_resolver() {
    let upstream = FakeUpstream::start();
    let ncdd = Ncdd::start(&config(&upstream, "blocked_ttl = \"7s\"", ""));

    let answer = query_udp(ncdd.addr, "_dns.resolver.arpa", RecordType::SVCB);
    assert_blocked_no_data(&answer, 7, "_dns.resolver.arpa SVCB");
    assert_eq!(upstream.queries(), 0);
}

#[test]
fn public_doh_resolver_hostnames_are_blocked() {
    let upstream = FakeUpstream::start();
    let ncdd = Ncdd::start(&config(&upstream, "", ""));

    for name in [
        "dns.google",
        "cloudflare-dns.com",
        "mozilla.cloudflare-dns.com",
        "dns.quad9.net",
    ] {
        assert_blocked(&ncdd, &upstream, name, name);
    }
    assert_eq!(upstream.queries(), 0);
}

#[test]
fn with_guards_off_the_canary_goes_upstream() {
    let upstream = FakeUpstream::start();
    let ncdd = Ncdd::start(&config(&upstream, "", "[guard]\nencrypted_dns = false"));

    assert_upstream_a(&a(ncdd.addr, "use-application-dns.net"), "192.0.2.14", "canary");
    assert!(upstream.was_asked("use-application-dns.net"));
}

// ----- Allow exceptions -------------------------------------------------------------

#[test]
fn allow_exception_wins_over_a_service_block() {
    let upstream = FakeUpstream::start();
    let rest = "[block]\nservices = [\"facebook\"]\nallow = [\"business.facebook.com\"]";
    let ncdd = Ncdd::start(&config(&upstream, "", rest));

    assert_blocked(&ncdd, &upstream, "www.facebook.com", "www.facebook.com");
    assert_blocked(&ncdd, &upstream, "facebook.com", "facebook.com");
    assert_upstream_a(
        &a(ncdd.addr, "business.facebook.com"),
        "192.0.2.13",
        "business.facebook.com",
    );
    assert!(!upstream.was_asked("www.facebook.com"));
}

// ----- Lists ------------------------------------------------------------------------

/// Starts ncdd with one list file `file` and returns it with the list's absolute path.
fn start_with_list(upstream: &FakeUpstream, file: &str, text: &str) -> (Ncdd, String) {
    let setup = Setup::new(&config(upstream, "", &format!("[block]\nlists = [\"{file}\"]"))).file(file, text);
    let path = setup.dir().join(file).display().to_string();
    (setup.spawn(), path)
}

/// The broken line is named `path:line:` in ncdd's stderr.
#[track_caller]
fn assert_list_error_logged(ncdd: &Ncdd, path: &str, line: usize) {
    let needle = format!("{path}:{line}:");
    assert!(
        ncdd.wait_for_stderr(&needle, Duration::from_secs(5)),
        "stderr does not name {needle}:\n{}",
        ncdd.stderr()
    );
}

#[test]
fn plain_list_blocks_its_good_lines_and_skips_a_broken_one() {
    let upstream = FakeUpstream::start();
    let text = "# a plain list\nplain-one.test\nnot a domain.test\n=plain-exact.test\nplain-two.test\n";
    let (ncdd, path) = start_with_list(&upstream, "plain.txt", text);

    assert_blocked(&ncdd, &upstream, "plain-one.test", "plain-one.test");
    assert_blocked(&ncdd, &upstream, "sub.plain-two.test", "line after the broken one");
    assert_blocked(&ncdd, &upstream, "plain-exact.test", "=plain-exact.test");
    assert!(a(ncdd.addr, "www.plain-exact.test").is_from_fake_upstream());
    assert_list_error_logged(&ncdd, &path, 3);
    assert_upstream_a(&a(ncdd.addr, "allowed.test"), "192.0.2.1", "still serving");
}

#[test]
fn hosts_list_blocks_its_good_lines_and_skips_a_broken_one() {
    let upstream = FakeUpstream::start();
    let text = "127.0.0.1 localhost\n0.0.0.0 hosts-one.test hosts-two.test\n0.0.0.0 b@d.hosts.test\n\
                :: hosts-three.test # comment\n";
    let (ncdd, path) = start_with_list(&upstream, "social.hosts", text);

    for name in ["hosts-one.test", "hosts-two.test", "www.hosts-three.test"] {
        assert_blocked(&ncdd, &upstream, name, name);
    }
    // `localhost` is housekeeping, not a block: it goes upstream (NXDOMAIN there).
    let localhost = a(ncdd.addr, "localhost");
    assert!(localhost.is_from_fake_upstream(), "{:?}", localhost.message);
    assert_list_error_logged(&ncdd, &path, 3);
    assert_upstream_a(&a(ncdd.addr, "allowed.test"), "192.0.2.1", "still serving");
}

#[test]
fn adblock_list_blocks_its_good_lines_and_skips_a_broken_one() {
    let upstream = FakeUpstream::start();
    let text = "[Adblock Plus 2.0]\n! comment\n||ads-one.test^\n||ads-bad.test^$third-party\n||ads-two.test^\n\
                @@||ok.ads-one.test^\n";
    let (ncdd, path) = start_with_list(&upstream, "adblock.txt", text);

    assert_blocked(&ncdd, &upstream, "ads-one.test", "ads-one.test");
    assert_blocked(&ncdd, &upstream, "x.ads-two.test", "line after the broken one");
    // The rule with a browser-only modifier is skipped, not widened into a block.
    let skipped = a(ncdd.addr, "ads-bad.test");
    assert!(skipped.is_from_fake_upstream(), "{:?}", skipped.message);
    // `@@||…^` is an exception.
    assert!(a(ncdd.addr, "ok.ads-one.test").is_from_fake_upstream());
    assert_list_error_logged(&ncdd, &path, 4);
    assert_upstream_a(&a(ncdd.addr, "allowed.test"), "192.0.2.1", "still serving");
}

#[test]
fn a_missing_list_file_does_not_stop_the_other_rules() {
    let upstream = FakeUpstream::start();
    let rest = "[block]\ndomains = [\"kept.test\"]\nlists = [\"/nonexistent/ncd-test/list.txt\"]";
    let ncdd = Ncdd::start(&config(&upstream, "", rest));

    assert_blocked(&ncdd, &upstream, "kept.test", "kept.test");
    assert!(
        ncdd.wait_for_stderr("/nonexistent/ncd-test/list.txt", Duration::from_secs(5)),
        "{}",
        ncdd.stderr()
    );
}

/// The lists `ncd status --json` names as not read, with why.
fn status_lists(ncdd: &Ncdd) -> Vec<(String, String)> {
    let run = support::cli::ncd(&ncdd.control_socket(), &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&run.stdout).expect("status --json parses");
    status["lists"]
        .as_array()
        .map(|lists| {
            lists
                .iter()
                .map(|l| {
                    (
                        l["list"].as_str().unwrap_or("").to_string(),
                        l["why"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// ncdd's resident memory in KiB, from /proc/PID/status.
fn rss_kib(ncdd: &Ncdd) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", ncdd.pid())).expect("read /proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

#[test]
fn a_device_as_a_list_is_refused_and_the_rest_of_the_config_applies() {
    let upstream = FakeUpstream::start();
    let rest = "[block]\ndomains = [\"kept.test\"]\nlists = [\"/dev/zero\", \"good.txt\"]";
    let ncdd = Setup::new(&config(&upstream, "", rest))
        .file("good.txt", "listed.test\n")
        .spawn();

    assert_blocked(&ncdd, &upstream, "kept.test", "kept.test");
    assert_blocked(&ncdd, &upstream, "listed.test", "the good list next to /dev/zero");
    assert_upstream_a(&a(ncdd.addr, "allowed.test"), "192.0.2.1", "still serving");
    assert!(
        ncdd.wait_for_stderr("/dev/zero is a character device, not a file", Duration::from_secs(5)),
        "{}",
        ncdd.stderr()
    );
    let lists = status_lists(&ncdd);
    assert!(
        lists
            .iter()
            .any(|(list, why)| list == "/dev/zero" && why.contains("character device")),
        "{lists:?}"
    );
    let rss = rss_kib(&ncdd);
    assert!(rss < 200 * 1024, "ncdd holds {rss} KiB after refusing /dev/zero");
}

#[test]
fn a_list_over_the_size_cap_is_refused_with_its_size() {
    let upstream = FakeUpstream::start();
    let setup = Setup::new(&config(
        &upstream,
        "",
        "[block]\ndomains = [\"kept.test\"]\nlists = [\"big.txt\"]",
    ));
    // Sparse: one byte over the cap, and no disk used.
    let big = setup.dir().join("big.txt");
    std::fs::File::create(&big)
        .and_then(|f| f.set_len(256 * 1024 * 1024 + 1))
        .expect("make a sparse file");
    let ncdd = setup.spawn();

    assert_blocked(&ncdd, &upstream, "kept.test", "kept.test");
    let needle = format!("{} is 257 MiB (268435457 bytes), over the 256 MiB", big.display());
    assert!(
        ncdd.wait_for_stderr(&needle, Duration::from_secs(5)),
        "{}",
        ncdd.stderr()
    );
    let lists = status_lists(&ncdd);
    assert!(
        lists.iter().any(|(_, why)| why.contains("268435457 bytes")),
        "{lists:?}"
    );
}

#[test]
fn a_list_folder_moved_away_and_back_or_made_anew_is_still_watched() {
    let upstream = FakeUpstream::start();
    let ncdd = Setup::new(&config(&upstream, "", "[block]\nlists = [\"lists/local.txt\"]"))
        .file("lists/local.txt", "kept.test\n")
        .spawn();
    ncdd.settle();
    assert_blocked(&ncdd, &upstream, "kept.test", "kept.test");
    let (lists, away) = (ncdd.dir().join("lists"), ncdd.dir().join("away"));
    let append = |name: &str| {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(lists.join("local.txt"))
            .expect("open the list");
        writeln!(file, "{name}").expect("append to the list");
    };

    // Moved away and back: the same folder, which the old watch no longer follows.
    std::fs::rename(&lists, &away).unwrap();
    std::fs::create_dir(&lists).unwrap();
    std::fs::remove_dir(&lists).unwrap();
    std::fs::rename(&away, &lists).unwrap();
    append("back.test");
    wait_until_blocked(&ncdd, "back.test");

    // Moved away and made anew: a new folder with a copy of the list.
    std::fs::rename(&lists, &away).unwrap();
    std::fs::create_dir(&lists).unwrap();
    std::fs::copy(away.join("local.txt"), lists.join("local.txt")).unwrap();
    wait_until_blocked(&ncdd, "back.test");
    append("anew.test");
    wait_until_blocked(&ncdd, "anew.test");
    // And an edit after that still bites (the watch is on the new folder).
    append("later.test");
    wait_until_blocked(&ncdd, "later.test");
}

// ----- Upstream failures --------------------------------------------------------------

#[test]
fn blocked_names_are_answered_at_once_while_the_upstream_is_down() {
    let upstream = FakeUpstream::start();
    upstream.set_unresponsive(true);
    let ncdd = Ncdd::start(&config(
        &upstream,
        "upstream_timeout = \"1s\"",
        "[block]\nservices = [\"instagram\"]",
    ));

    let started = Instant::now();
    assert_blocked(&ncdd, &upstream, "www.instagram.com", "blocked while upstream is down");
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(900),
        "a blocked answer waited for the upstream: {took:?}"
    );
}

#[test]
fn allowed_names_get_servfail_within_the_timeout_while_the_upstream_is_down() {
    let upstream = FakeUpstream::start();
    upstream.set_unresponsive(true);
    let ncdd = Ncdd::start(&config(&upstream, "upstream_timeout = \"1s\"", ""));

    let started = Instant::now();
    let answer = a(ncdd.addr, "allowed.test");
    let took = started.elapsed();
    assert_eq!(answer.rcode(), ResponseCode::ServFail, "{:?}", answer.message);
    assert!(answer.answers().is_empty());
    assert_eq!(answer.ede(), Some(EDE_NO_REACHABLE_AUTHORITY));
    assert!(
        took < Duration::from_secs(3),
        "SERVFAIL took {took:?} with upstream_timeout = 1s"
    );
    assert!(upstream.was_asked("allowed.test"), "the upstream was not even tried");

    // The failure is not cached: once the upstream is back, the name resolves.
    upstream.set_unresponsive(false);
    let answer = eventually(Duration::from_secs(5), || {
        let answer = a(ncdd.addr, "allowed.test");
        (answer.rcode() == ResponseCode::NoError).then_some(answer)
    })
    .expect("allowed.test resolves again once the upstream answers");
    assert_upstream_a(&answer, "192.0.2.1", "after recovery");
}

#[test]
fn a_dead_first_upstream_falls_back_to_the_next() {
    let upstream = FakeUpstream::start();
    let dead = dead_loopback_port();
    let text = format!(
        "[dns]\nupstreams = [\"udp://127.0.0.1:{dead}\", \"{}\"]\n",
        upstream.url()
    );
    let ncdd = Ncdd::start(&text);

    let started = Instant::now();
    assert_upstream_a(&a(ncdd.addr, "allowed.test"), "192.0.2.1", "via the second upstream");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "fallback took {:?}",
        started.elapsed()
    );
    let answer = query_udp(ncdd.addr, "allowed.test", RecordType::AAAA);
    assert_eq!(answer.ipv6(), ["2001:db8::1".parse::<Ipv6Addr>().unwrap()]);
}

// ----- Cache ----------------------------------------------------------------------

#[test]
fn a_repeated_query_is_answered_from_the_cache() {
    let upstream = FakeUpstream::start();
    let ncdd = Ncdd::start(&config(&upstream, "", ""));

    let first = a(ncdd.addr, "allowed.test");
    assert_upstream_a(&first, "192.0.2.1", "first");
    assert_eq!(upstream.queries(), 1);
    let second = a(ncdd.addr, "allowed.test");
    assert_upstream_a(&second, "192.0.2.1", "second");
    assert_eq!(upstream.queries(), 1, "the second query must come from the cache");
    assert!(second.answers()[0].ttl <= ZONE_TTL);
    // Another type is another cache entry.
    query_udp(ncdd.addr, "allowed.test", RecordType::AAAA);
    assert_eq!(upstream.queries(), 2);
}

#[test]
fn a_new_block_bites_at_once_even_for_a_cached_name() {
    let upstream = FakeUpstream::start();
    let ncdd = Ncdd::start(&config(&upstream, "", ""));
    // Make sure edits are watched before anything is cached (see `Ncdd::settle`).
    ncdd.settle();

    assert_upstream_a(&a(ncdd.addr, "allowed.test"), "192.0.2.1", "before");
    assert_upstream_a(&a(ncdd.addr, "allowed.test"), "192.0.2.1", "cached");
    assert_eq!(upstream.queries(), 1);

    ncdd.rewrite_config(&config(&upstream, "", "[block]\ndomains = [\"allowed.test\"]"));
    wait_until_blocked(&ncdd, "allowed.test");
    assert_eq!(upstream.queries(), 1);
}

#[test]
fn a_repeated_request_is_answered_with_its_own_id() {
    let upstream = FakeUpstream::start();
    let ncdd = Ncdd::start(&config(&upstream, "", "[block]\nservices = [\"instagram\"]"));
    // The same question asked the same way, as stub resolvers do: after the
    // second time its response is kept, and only the ID differs.
    for name in ["allowed.test", "www.instagram.com"] {
        let mut answers = Vec::new();
        for id in [7, 8, 9, 10] {
            let mut query = client::build_query(name, RecordType::A);
            query.metadata.id = id;
            let response = client::exchange_udp(ncdd.addr, &query, Duration::from_secs(3)).expect("an answer");
            assert_eq!(response.metadata.id, id, "{name}");
            assert_eq!(response.queries, query.queries, "{name}: the question is echoed");
            answers.push(response.answers);
        }
        assert!(answers.windows(2).all(|w| w[0] == w[1]), "{name}: {answers:?}");
        // And what is kept is the right answer, not just the same one four times.
        let expected = if name == "allowed.test" { "192.0.2.1" } else { "0.0.0.0" };
        let addresses: Vec<String> = answers[3]
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(addresses, [expected], "{name}: {answers:?}");
    }
    assert_eq!(upstream.queries(), 1, "one upstream query for four asks");
}

#[test]
fn malformed_requests_get_formerr_or_nothing_and_serving_goes_on() {
    let upstream = FakeUpstream::start();
    let ncdd = Ncdd::start(&config(&upstream, "", "[block]\nservices = [\"instagram\"]"));
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(ncdd.addr).unwrap();
    socket.set_read_timeout(Some(client::CLIENT_TIMEOUT)).unwrap();
    let mut buf = [0u8; 2048];

    // A whole header and a question cut short: FORMERR, to the request's ID.
    let mut query = client::build_query("www.instagram.com", RecordType::A);
    query.metadata.id = 0x5151;
    let bytes = query.to_vec().unwrap();
    socket.send(&bytes[..bytes.len() / 2]).unwrap();
    let len = socket.recv(&mut buf).expect("FORMERR for a cut question");
    let response = hickory_proto::op::Message::from_vec(&buf[..len]).unwrap();
    assert_eq!(response.metadata.id, 0x5151);
    assert_eq!(response.metadata.response_code, ResponseCode::FormErr);

    // Too short to carry an ID, and a response sent as if it were a query: nothing.
    socket.send(&bytes[..5]).unwrap();
    let mut reply = query.clone();
    reply.metadata.message_type = hickory_proto::op::MessageType::Response;
    socket.send(&reply.to_vec().unwrap()).unwrap();
    // Then good queries on the same socket, one after another: ncdd answers
    // these inline, as they come, so a reply to the fragment or the response would
    // arrive before (or among) the answers to three later queries. Every datagram
    // read must be one of those answers. (No timed silence.)
    for id in [0x6261, 0x6262, 0x6263] {
        let mut marker = client::build_query("www.instagram.com", RecordType::A);
        marker.metadata.id = id;
        socket.send(&marker.to_vec().unwrap()).unwrap();
        let len = socket.recv(&mut buf).expect("an answer to a good query");
        let next = hickory_proto::op::Message::from_vec(&buf[..len]).unwrap();
        assert_eq!(
            next.metadata.id, id,
            "no answer to a fragment or to a response, yet one came: {next:?}"
        );
    }

    assert_blocked(&ncdd, &upstream, "www.instagram.com", "after the garbage");
}

// ----- Reloads --------------------------------------------------------------------

#[test]
fn editing_the_config_applies_the_new_rules() {
    let upstream = FakeUpstream::start();
    let ncdd = Ncdd::start(&config(&upstream, "", "[block]\ndomains = [\"kept.test\"]"));
    assert_blocked(&ncdd, &upstream, "kept.test", "kept.test");
    assert_upstream_a(&a(ncdd.addr, "later.test"), "192.0.2.2", "later.test before the edit");

    ncdd.rewrite_config(&config(&upstream, "", "[block]\ndomains = [\"later.test\"]"));
    wait_until_blocked(&ncdd, "later.test");
    // A rule that was removed is lifted.
    assert_upstream_a(
        &a(ncdd.addr, "kept.test"),
        "192.0.2.3",
        "kept.test after its rule was removed",
    );
    assert!(ncdd.stderr().contains("policy reloaded"), "{}", ncdd.stderr());
}

#[test]
fn a_broken_edit_keeps_the_last_good_config_serving() {
    let upstream = FakeUpstream::start();
    let good = config(&upstream, "", "[block]\ndomains = [\"kept.test\"]");
    let ncdd = Ncdd::start(&good);
    assert_blocked(&ncdd, &upstream, "kept.test", "kept.test");
    assert_upstream_a(&a(ncdd.addr, "later.test"), "192.0.2.2", "later.test");

    // Line 5 of the new file: `domains = ["later.test"` is never closed… and the old
    // rule is gone. Neither may take effect.
    let broken = format!(
        "[dns]\nupstreams = [\"{}\"]\n\n[block]\ndomains = [\"later.test\"\n",
        upstream.url()
    );
    ncdd.rewrite_config(&broken);
    let path = ncdd.config_path().display().to_string();
    let error = eventually(RELOAD_DEADLINE, || {
        let stderr = ncdd.stderr();
        stderr
            .lines()
            .find(|l| l.contains(&format!("{path}:")))
            .map(str::to_string)
    })
    .unwrap_or_else(|| panic!("no error naming {path} in stderr:\n{}", ncdd.stderr()));
    // `path:line:col: message`
    let place = error.split(&format!("{path}:")).nth(1).unwrap();
    let mut parts = place.splitn(3, ':');
    let line: usize = parts
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("no line in {error:?}"));
    let col: usize = parts
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("no column in {error:?}"));
    assert!(line == 5 && col >= 1, "{error}");
    assert!(error.contains("keeping the last good config"), "{error}");

    assert_blocked(&ncdd, &upstream, "kept.test", "kept.test after the broken edit");
    assert_upstream_a(
        &a(ncdd.addr, "later.test"),
        "192.0.2.2",
        "later.test after the broken edit",
    );

    // Fixing the file applies it.
    ncdd.rewrite_config(&config(&upstream, "", "[block]\ndomains = [\"later.test\"]"));
    wait_until_blocked(&ncdd, "later.test");
}

#[test]
fn ncd_status_shows_a_failed_edit_until_one_loads() {
    let upstream = FakeUpstream::start();
    let ncdd = Ncdd::start(&config(&upstream, "", "[block]\ndomains = [\"kept.test\"]"));
    let socket = ncdd.control_socket();
    let shown = || support::cli::ncd(&socket, &["status", "--json"]);
    let last_error = |run: &support::cli::Run| -> Option<String> {
        let status: serde_json::Value = serde_json::from_str(&run.stdout).expect("status --json parses");
        status["config"]["last_error"].as_str().map(str::to_string)
    };
    assert_eq!(last_error(&shown()), None, "a good config has no error to show");

    // Line 2 names a service the catalog does not have.
    ncdd.rewrite_config(&format!(
        "[dns]\nupstreams = [\"{}\"]\n[block]\nservices = [\"instagran\"]\n",
        upstream.url()
    ));
    let path = ncdd.config_path().display().to_string();
    let error = eventually(RELOAD_DEADLINE, || last_error(&shown()))
        .unwrap_or_else(|| panic!("status never showed the failed edit:\n{}", ncdd.stderr()));
    assert!(error.starts_with(&format!("{path}:4:")), "{error}");
    let screen = support::cli::ncd(&socket, &["status"]);
    assert!(
        screen.stdout.contains("Your last edit of the config is not in force") && screen.stdout.contains(&error),
        "{}",
        screen.stdout
    );
    assert_blocked(&ncdd, &upstream, "kept.test", "kept.test while the edit is broken");

    // The next good edit clears it.
    ncdd.rewrite_config(&config(&upstream, "", "[block]\ndomains = [\"later.test\"]"));
    wait_until_blocked(&ncdd, "later.test");
    assert_eq!(last_error(&shown()), None, "a good edit clears the error");
}

#[test]
fn sighup_reloads_the_config() {
    // No file changes here: the reload in the log can only come from the signal.
    let upstream = FakeUpstream::start();
    let ncdd = Setup::new(&config(&upstream, "", "[block]\ndomains = [\"kept.test\"]")).spawn();
    ncdd.settle();
    ncdd.sighup();
    let reloaded_by_signal = |log: &str| {
        log.lines()
            .any(|l| l.contains("policy reloaded") && l.contains("SIGHUP"))
    };
    let seen = eventually(Duration::from_secs(5), || {
        reloaded_by_signal(&ncdd.stderr()).then_some(())
    });
    assert!(seen.is_some(), "no reload after SIGHUP:\n{}", ncdd.stderr());
    assert_blocked(&ncdd, &upstream, "kept.test", "kept.test");
}

#[test]
fn editing_a_list_next_to_the_config_reloads_it() {
    let upstream = FakeUpstream::start();
    let ncdd = Setup::new(&config(&upstream, "", "[block]\nlists = [\"local.txt\"]"))
        .file("local.txt", "kept.test\n")
        .spawn();
    ncdd.settle();
    assert_blocked(&ncdd, &upstream, "kept.test", "kept.test");
    assert_upstream_a(
        &a(ncdd.addr, "listed-late.test"),
        "192.0.2.17",
        "before the list changed",
    );

    ncdd.write_file("local.txt", "kept.test\nlisted-late.test\n");
    wait_until_blocked(&ncdd, "listed-late.test");
}

#[test]
fn a_restart_on_a_broken_config_serves_the_last_good_one() {
    let upstream = FakeUpstream::start();
    let mut ncdd = Ncdd::start(&config(&upstream, "", "[block]\ndomains = [\"kept.test\"]"));
    assert_blocked(&ncdd, &upstream, "kept.test", "kept.test");
    assert!(ncdd.state_dir().join("config.last-good.toml").is_file());

    ncdd.rewrite_config("[block]\ndomains = [\"kept.test\", \"bad..name\"]\n");
    let path = ncdd.config_path().display().to_string();
    assert!(
        ncdd.wait_for_stderr(&format!("{path}:2:"), RELOAD_DEADLINE),
        "{}",
        ncdd.stderr()
    );

    ncdd.restart();
    assert!(
        ncdd.wait_for_stderr("serving the last good config", Duration::from_secs(5)),
        "{}",
        ncdd.stderr()
    );
    assert_blocked(&ncdd, &upstream, "kept.test", "kept.test after the restart");
    assert_upstream_a(
        &a(ncdd.addr, "later.test"),
        "192.0.2.2",
        "upstream of the last good config",
    );
}

#[test]
fn a_broken_config_without_an_earlier_good_one_stops_ncdd_with_its_place() {
    let setup = Setup::new("[dns]\nanswer = \"maybe\"\n");
    let path = setup.dir().join("ncd.toml").display().to_string();
    let failure = match setup.try_spawn() {
        Ok(_) => panic!("ncdd started on a broken config"),
        Err(failure) => failure,
    };
    assert!(failure.status.is_some_and(|s| !s.success()), "{failure:?}");
    assert!(failure.stderr.contains(&format!("{path}:2:")), "{}", failure.stderr);
}

// ----- Transports and tools ------------------------------------------------------------

#[test]
fn tcp_queries_are_filtered_and_forwarded_too() {
    let upstream = FakeUpstream::start();
    let ncdd = Ncdd::start(&config(&upstream, "", "[block]\nservices = [\"instagram\"]"));

    assert_blocked_a(
        &query_tcp(ncdd.addr, "www.instagram.com", RecordType::A),
        "blocked over TCP",
    );
    assert_upstream_a(
        &query_tcp(ncdd.addr, "allowed.test", RecordType::A),
        "192.0.2.1",
        "allowed over TCP",
    );
    let aaaa = query_tcp(ncdd.addr, "allowed.test", RecordType::AAAA);
    assert_eq!(aaaa.ipv6(), ["2001:db8::1".parse::<Ipv6Addr>().unwrap()]);
}

#[test]
fn dig_sees_blocked_names_as_0000_and_allowed_names_as_their_address() {
    let upstream = FakeUpstream::start();
    let ncdd = Ncdd::start(&config(&upstream, "", "[block]\nservices = [\"instagram\"]"));

    assert_eq!(dig(ncdd.addr, &["instagram.com", "+short"]).trim(), "0.0.0.0");
    assert_eq!(dig(ncdd.addr, &["instagram.com", "AAAA", "+short"]).trim(), "::");
    assert_eq!(dig(ncdd.addr, &["allowed.test", "+short"]).trim(), "192.0.2.1");
    let full = dig(ncdd.addr, &["www.instagram.com"]);
    assert!(full.contains("status: NOERROR"), "{full}");
    assert!(full.contains("EDE: 15"), "dig shows the Extended DNS Error: {full}");
}

#[test]
fn dig_over_tcp_gets_the_same_answers() {
    let upstream = FakeUpstream::start();
    let ncdd = Ncdd::start(&config(&upstream, "", "[block]\nservices = [\"instagram\"]"));

    assert_eq!(dig(ncdd.addr, &["+tcp", "instagram.com", "+short"]).trim(), "0.0.0.0");
    assert_eq!(dig(ncdd.addr, &["+tcp", "allowed.test", "+short"]).trim(), "192.0.2.1");
    let nx = dig(ncdd.addr, &["+tcp", "use-application-dns.net"]);
    assert!(nx.contains("status: NXDOMAIN"), "{nx}");
}

#[test]
fn sigterm_shuts_ncdd_down_cleanly() {
    let upstream = FakeUpstream::start();
    let mut ncdd = Ncdd::start(&config(&upstream, "", ""));
    assert_upstream_a(&a(ncdd.addr, "allowed.test"), "192.0.2.1", "serving");
    assert_upstream_a(
        &query_tcp(ncdd.addr, "allowed.test", RecordType::A),
        "192.0.2.1",
        "serving TCP",
    );

    ncdd.settle();
    let started = Instant::now();
    let status = ncdd.terminate(Duration::from_secs(8));
    let status = status.unwrap_or_else(|| panic!("ncdd still runs 8 s after SIGTERM:\n{}", ncdd.stderr()));
    assert!(status.success(), "exit status {status:?}:\n{}", ncdd.stderr());
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "shutdown took {:?}",
        started.elapsed()
    );
    assert!(ncdd.stderr().contains("shutting down"), "{}", ncdd.stderr());
}

// ----- Clients ----------------------------------------------------------------------

#[test]
fn a_lan_client_is_refused_unless_allow_clients_lets_it_in() {
    let Some(ns) = support::needs("the LAN client test", support::netns::NetNs::create()) else {
        return;
    };
    let upstream = FakeUpstream::start();
    // Serving a LAN address needs some allow_clients; this one lets in only a
    // documentation network, not the client in the namespace.
    let ncdd = Setup::new(&config(
        &upstream,
        "allow_clients = [\"192.0.2.0/24\"]",
        "[block]\nservices = [\"instagram\"]",
    ))
    .listen((ns.host_addr, 0).into())
    .spawn();
    let port = ncdd.addr.port().to_string();
    let server = format!("@{}", ns.host_addr);
    let dig_from_lan = |name: &str| {
        let args = [server.as_str(), "-p", port.as_str(), "+time=2", "+tries=1", name];
        ns.exec("dig", &args).1
    };

    let refused = eventually(Duration::from_secs(5), || {
        let out = dig_from_lan("allowed.test");
        out.contains("status:").then_some(out)
    })
    .expect("an answer to the LAN client");
    assert!(refused.contains("status: REFUSED"), "{refused}");
    assert!(refused.contains(&format!("EDE: {EDE_PROHIBITED}")), "{refused}");
    assert!(!upstream.was_asked("allowed.test"));

    let allowed = format!("allow_clients = [\"{}/32\"]", ns.peer_addr);
    ncdd.rewrite_config(&config(&upstream, &allowed, "[block]\nservices = [\"instagram\"]"));
    let answered = eventually(RELOAD_DEADLINE, || {
        let out = dig_from_lan("allowed.test");
        out.contains("status: NOERROR").then_some(out)
    })
    .unwrap_or_else(|| panic!("the allowed LAN client got no answer: {}", dig_from_lan("allowed.test")));
    assert!(answered.contains("192.0.2.1"), "{answered}");
    let blocked = dig_from_lan("www.instagram.com");
    assert!(blocked.contains("0.0.0.0"), "{blocked}");
}

#[test]
fn a_noisy_lan_client_is_held_to_its_rate_limit() {
    let Some(ns) = support::needs("the rate-limit test", support::netns::NetNs::create()) else {
        return;
    };
    let upstream = FakeUpstream::start();
    let dns = format!("allow_clients = [\"{}/32\"]\nclient_rate_limit = 5", ns.peer_addr);
    let ncdd = Setup::new(&config(&upstream, &dns, "[block]\nservices = [\"instagram\"]"))
        .listen((ns.host_addr, 0).into())
        .spawn();
    let server = ncdd.addr;
    let name = ns.name.clone();
    // A socket made on a thread that joined the namespace lives there: the client
    // has the LAN address, and the burst is sent faster than any second turns.
    let answered = std::thread::spawn(move || {
        let netns = std::fs::File::open(format!("/var/run/netns/{name}")).expect("the namespace");
        nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET).expect("join the namespace");
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        socket.connect(server).unwrap();
        let bytes = client::build_query("www.instagram.com", RecordType::A)
            .to_vec()
            .unwrap();
        for _ in 0..50 {
            socket.send(&bytes).unwrap();
        }
        socket.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
        let mut buf = [0u8; 2048];
        std::iter::from_fn(|| socket.recv(&mut buf).ok()).count()
    })
    .join()
    .unwrap();
    // Five a second; a burst that straddles a second boundary may get ten.
    assert!((1..=10).contains(&answered), "{answered} of 50 answered");
}

// ----- Right after `ready` ------------------------------------------------------------
// Scripts and service managers act as soon as ncdd says `ready`.

#[test]
fn an_edit_made_right_after_ready_is_applied() {
    let upstream = FakeUpstream::start();
    let ncdd = Ncdd::start(&config(&upstream, "", ""));
    ncdd.replace_config(&config(&upstream, "", "[block]\ndomains = [\"later.test\"]"));
    wait_until_blocked(&ncdd, "later.test");
}

#[test]
fn a_sighup_right_after_ready_does_not_kill_ncdd() {
    let upstream = FakeUpstream::start();
    let mut ncdd = Ncdd::start(&config(&upstream, "", "[block]\ndomains = [\"kept.test\"]"));
    ncdd.sighup_now();
    // SIGHUP's default action is to terminate: it must be caught from `ready` on,
    // and it must reload.
    let reloaded = ncdd.wait_for_stderr("SIGHUP", RELOAD_DEADLINE);
    let exited = ncdd.try_exit_status();
    assert!(
        reloaded && exited.is_none(),
        "a SIGHUP sent right after `ready`: reloaded {reloaded}, exit {exited:?}\n{}",
        ncdd.stderr()
    );
    assert_blocked(&ncdd, &upstream, "kept.test", "kept.test after SIGHUP");
}

#[test]
fn a_sigterm_right_after_ready_still_exits_cleanly() {
    let upstream = FakeUpstream::start();
    let mut ncdd = Ncdd::start(&config(&upstream, "", ""));
    nix::sys::signal::kill(ncdd.pid(), nix::sys::signal::Signal::SIGTERM).expect("send SIGTERM");
    let status = eventually(Duration::from_secs(8), || ncdd.try_exit_status())
        .unwrap_or_else(|| panic!("ncdd still runs 8 s after SIGTERM:\n{}", ncdd.stderr()));
    assert!(
        status.success(),
        "a SIGTERM right after `ready` ended ncdd with {status:?}"
    );
}

// ----- The first five minutes ----------------------------------------------------------

/// The README's quick start: `ncdd --dev` serves the catalog at once, and `ncd`
/// finds it by itself (the per-user dev socket), with no flag and no file edited.
#[test]
fn ncd_finds_a_dev_daemon_by_itself() {
    use std::io::BufRead;
    let runtime = tempfile::tempdir().expect("temp runtime dir");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ncdd"))
        .args(["--dev", "--listen", "127.0.0.1:0"])
        .env("XDG_RUNTIME_DIR", runtime.path())
        .env_remove("NCD_SOCKET")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn ncdd --dev");
    let stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut addr = None;
    for line in stdout.lines() {
        let line = line.expect("read ncdd's stdout");
        if let Some(a) = line.strip_prefix("ncdd: listening on ") {
            addr = Some(a.parse::<std::net::SocketAddr>().expect("an address"));
        }
        if line == "ncdd: ready" {
            break;
        }
    }
    let addr = addr.expect("ncdd --dev said where it listens");
    assert_blocked_a(&a(addr, "instagram.com"), "instagram.com from the built-in catalog");

    // A config whose socket is not there stands for "no system ncdd here".
    let config = runtime.path().join("ncd.toml");
    std::fs::write(&config, "[control]\nsocket = \"/nonexistent/ncd/control.sock\"\n").expect("write config");
    let ncd = |args: &[&str]| {
        std::process::Command::new(support::cli::ncd_path())
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("XDG_RUNTIME_DIR", runtime.path())
            .env_remove("NCD_SOCKET")
            .env("NO_COLOR", "1")
            .output()
            .expect("run ncd")
    };
    let status = ncd(&["status", "--json"]);
    let _ = child.kill();
    let _ = child.wait();
    assert!(status.status.success(), "{status:?}");
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status --json");
    assert_eq!(status["daemon"]["listening"][0], addr.to_string(), "{status}");
}
