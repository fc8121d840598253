//! `upstreams = ["system"]` and encrypted upstreams, end to end: the real `ncdd`
//! reading a temp root of fake resolver files (`--network-root`), "the network's
//! servers" as fake upstreams on their own loopback addresses (127.0.0.2, .3 …),
//! each answering its own `printer.lan`, and unbound on loopback serving DNS over
//! TLS and over HTTPS with a test CA.
//!
//! Moving to another network is rewriting the files; ncdd notices by itself.

// Tests may unwrap: a failed unwrap is a failed test, with its place.
#![allow(clippy::unwrap_used, clippy::expect_used)]

// Each test binary uses its own part of the shared harness.
#[allow(dead_code)]
mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use support::client::{Answer, a, query_udp};
use support::control::Control;
use support::eventually;
use support::ncdd::{Ncdd, Setup};
use support::upstream::FakeUpstream;

/// How long a change on disk may take to apply (ncdd looks every 2 s).
const FOLLOWS_WITHIN: Duration = Duration::from_secs(10);
/// resolved's per-link file for link 2, as NetworkManager or `resolvectl` leave it.
const LINK_2: &str = "root/run/systemd/resolve/netif/2";

fn v4(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

/// A network's own server: the fake zone plus its own `printer.lan` (and
/// `spy.lan`, which the tests block, so that a leak would be answered).
fn network_server(ip: &str, printer: &str) -> FakeUpstream {
    FakeUpstream::start_on(v4(ip), &[("printer.lan", v4(printer)), ("spy.lan", v4(printer))])
}

/// resolved's state for one link with `server` and `domains` (`~` = routing only).
fn resolved_link(server: &FakeUpstream, domains: &str) -> String {
    format!(
        "# This is private data. Do not parse.\nLLMNR=yes\nMDNS=no\nSERVERS={}\nDOMAINS={domains}\n",
        server.addr
    )
}

/// ncdd with its network files read under `<temp dir>/root`.
fn with_network_root(setup: Setup) -> Setup {
    let root = setup.dir().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let script = format!("exec \"$0\" --network-root '{}' \"$@\"", root.display());
    setup.command_prefix(["sh", "-c", script.as_str()])
}

fn write(ncdd: &Ncdd, name: &str, text: &str) {
    let path = ncdd.dir().join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    // Whole or not at all, as resolved writes its files.
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(temp, path).unwrap();
}

fn resolves_to(answer: &Answer, ip: &str) -> bool {
    answer.rcode() == ResponseCode::NoError && answer.ipv4() == [v4(ip)]
}

#[track_caller]
fn wait_resolves(ncdd: &Ncdd, name: &str, ip: &str, what: &str) {
    let answered = eventually(FOLLOWS_WITHIN, || resolves_to(&a(ncdd.addr, name), ip).then_some(()));
    assert!(
        answered.is_some(),
        "{what}: {name} did not resolve to {ip} within {FOLLOWS_WITHIN:?}: {:?}\nncdd's log:\n{}",
        a(ncdd.addr, name).message,
        ncdd.stderr()
    );
}

#[track_caller]
fn assert_blocked(ncdd: &Ncdd, name: &str, what: &str) {
    let answer = a(ncdd.addr, name);
    assert!(
        answer.is_blocked(),
        "{what}: {name} is not blocked: {:?}",
        answer.message
    );
}

// ----- Following the network ----------------------------------------------------------

#[test]
fn local_names_follow_the_network_as_the_laptop_moves_and_blocked_names_never_leave() {
    let home = network_server("127.0.0.2", "10.0.0.2");
    let cafe = network_server("127.0.0.3", "10.0.0.3");
    let setup = Setup::new("[dns]\nupstreams = [\"system\"]\n[block]\ndomains = [\"instagram.com\", \"spy.lan\"]\n")
        .file(LINK_2, &resolved_link(&home, "lan"))
        // What the takeover leaves in /etc/resolv.conf: ncdd itself, never followed.
        .file(
            "root/etc/resolv.conf",
            "nameserver 127.0.0.1\nnameserver ::1\nsearch lan\n",
        );
    let ncdd = with_network_root(setup).spawn();

    wait_resolves(&ncdd, "printer.lan", "10.0.0.2", "at home");
    wait_resolves(&ncdd, "allowed.test", "192.0.2.1", "at home, a public name");
    assert!(home.was_asked("printer.lan") && !cafe.was_asked("printer.lan"));
    for name in ["www.instagram.com", "spy.lan", "printer.spy.lan"] {
        assert_blocked(&ncdd, name, "at home");
    }
    let status = Control::new(ncdd.control_socket()).status();
    assert_eq!(status.upstreams.network, [format!("link 2: {} (lan)", home.addr)]);
    assert_eq!(status.upstreams.unreachable, None);

    // The laptop moves: the link is handed the café's server.
    write(&ncdd, LINK_2, &resolved_link(&cafe, "lan"));
    wait_resolves(&ncdd, "printer.lan", "10.0.0.3", "at the café");
    wait_resolves(&ncdd, "allowed.test", "192.0.2.1", "at the café, a public name");
    assert!(cafe.was_asked("allowed.test"));
    for name in ["www.instagram.com", "spy.lan"] {
        assert_blocked(&ncdd, name, "at the café");
    }
    for server in [&home, &cafe] {
        for name in ["instagram.com", "www.instagram.com", "spy.lan", "printer.spy.lan"] {
            assert!(
                !server.was_asked(name),
                "{name} reached a network's server at {}",
                server.addr
            );
        }
    }
    assert!(
        ncdd.stderr().contains("the network's resolvers changed"),
        "the move is logged: {}",
        ncdd.stderr()
    );
}

#[test]
fn ncdd_never_follows_itself() {
    let home = network_server("127.0.0.10", "10.0.0.10");
    let setup = Setup::new("[dns]\nupstreams = [\"system\"]\nupstream_timeout = \"1s\"\n")
        .file(LINK_2, &resolved_link(&home, "lan"));
    let ncdd = with_network_root(setup).spawn();
    wait_resolves(&ncdd, "printer.lan", "10.0.0.10", "before");
    // After the takeover the link may name ncdd itself (and resolved's stub): a
    // loop that would answer nothing. Only the network's own server is followed.
    write(
        &ncdd,
        LINK_2,
        &format!(
            "SERVERS={} 127.0.0.53 {}\nDOMAINS=lan home.example\n",
            ncdd.addr, home.addr
        ),
    );
    let control = Control::new(ncdd.control_socket());
    // The new domain shows the file was read; the servers show what was kept.
    let network = eventually(FOLLOWS_WITHIN, || {
        let network = control.status().upstreams.network;
        network.iter().any(|l| l.contains("home.example")).then_some(network)
    })
    .expect("the rewritten link is read");
    assert_eq!(network, [format!("link 2: {} (lan, home.example)", home.addr)]);
    wait_resolves(&ncdd, "printer.lan", "10.0.0.10", "with ncdd named beside it");
    wait_resolves(&ncdd, "allowed.test", "192.0.2.1", "a public name");
}

#[test]
fn names_under_a_links_domains_go_to_that_link_and_the_rest_to_the_configured_resolvers() {
    let public = FakeUpstream::start();
    let home = network_server("127.0.0.4", "10.0.0.4");
    let vpn = FakeUpstream::start_on(v4("127.0.0.5"), &[("git.corp.example", v4("10.8.0.5"))]);
    let setup = Setup::new(&format!(
        "[dns]\nupstreams = [\"{}\", \"system\"]\n[block]\ndomains = [\"spy.lan\"]\n",
        public.url()
    ))
    .file(LINK_2, &resolved_link(&home, "lan"))
    // A split tunnel: only its own domain goes there.
    .file(
        "root/run/systemd/netif/links/7",
        &format!("OPER_STATE=routable\nDNS={}\nROUTE_DOMAINS=corp.example\n", vpn.addr),
    );
    let ncdd = with_network_root(setup).spawn();

    wait_resolves(&ncdd, "git.corp.example", "10.8.0.5", "a VPN name");
    wait_resolves(&ncdd, "printer.lan", "10.0.0.4", "a LAN name");
    wait_resolves(&ncdd, "allowed.test", "192.0.2.1", "a public name");
    assert!(
        vpn.was_asked("git.corp.example")
            && !public.was_asked("git.corp.example")
            && !home.was_asked("git.corp.example")
    );
    assert!(home.was_asked("printer.lan") && !public.was_asked("printer.lan") && !vpn.was_asked("printer.lan"));
    // The configured resolver answers first: the network's is not asked at all.
    assert!(public.was_asked("allowed.test") && !vpn.was_asked("allowed.test") && !home.was_asked("allowed.test"));
    // A private reverse name is the LAN's to answer, never a public resolver's.
    let _ = query_udp(ncdd.addr, "4.0.0.10.in-addr.arpa", RecordType::PTR);
    assert!(home.was_asked("4.0.0.10.in-addr.arpa") && !public.was_asked("4.0.0.10.in-addr.arpa"));
    assert_blocked(&ncdd, "spy.lan", "a blocked local name");
    assert!(!home.was_asked("spy.lan") && !public.was_asked("spy.lan") && !vpn.was_asked("spy.lan"));
}

#[test]
fn network_manager_and_resolv_conf_as_they_were_before_the_takeover() {
    let nm = network_server("127.0.0.6", "10.0.0.6");
    let before = network_server("127.0.0.7", "10.0.0.7");
    // No resolved: NetworkManager's own file, or the copy `ncd install` kept.
    let setup = Setup::new("[dns]\nupstream_timeout = \"1s\"\n")
        .file("root/etc/resolv.conf", "# ncd\nnameserver 127.0.0.1\n")
        .file(
            "root/var/lib/ncd-root/install-backup/etc/resolv.conf",
            &format!("search lan\nnameserver {}\n", before.addr),
        );
    let ncdd = with_network_root(setup).spawn();
    wait_resolves(&ncdd, "printer.lan", "10.0.0.7", "from the pre-takeover copy");

    write(
        &ncdd,
        "root/run/NetworkManager/no-stub-resolv.conf",
        &format!("search lan\nnameserver {}\n", nm.addr),
    );
    wait_resolves(&ncdd, "printer.lan", "10.0.0.6", "from NetworkManager");
}

// ----- Captive portals and failing fast -----------------------------------------------

#[test]
fn when_the_configured_resolvers_are_cut_off_the_networks_own_answer_and_status_says_so() {
    let outside = FakeUpstream::start();
    outside.set_unresponsive(true);
    let hotel = network_server("127.0.0.8", "10.0.0.8");
    let setup = Setup::new(&format!(
        "[dns]\nupstreams = [\"{}\", \"system\"]\nupstream_timeout = \"1s\"\n[block]\ndomains = [\"instagram.com\"]\n",
        outside.url()
    ))
    .file(LINK_2, &resolved_link(&hotel, "hotel.example"));
    let ncdd = with_network_root(setup).spawn();
    let control = Control::new(ncdd.control_socket());

    // The portal's login page (any allowed name) resolves through the hotel's server.
    wait_resolves(&ncdd, "allowed.test", "192.0.2.1", "the portal's page");
    assert!(
        outside.was_asked("allowed.test"),
        "the configured resolver is asked first"
    );
    assert_blocked(&ncdd, "www.instagram.com", "behind the portal");
    assert!(!hotel.was_asked("www.instagram.com") && !outside.was_asked("www.instagram.com"));

    let said = eventually(FOLLOWS_WITHIN, || {
        let _ = a(ncdd.addr, &format!("n{}.allowed.test", rand::random::<u32>()));
        control.status().upstreams.unreachable
    })
    .expect("ncd status says the configured resolvers cannot be reached");
    assert!(
        said.contains(&format!(
            "The resolvers in your config ({}) cannot be reached from this network",
            outside.url()
        )) && said.contains("through the network's own"),
        "{said}"
    );

    // Reachable again: the note goes.
    outside.set_unresponsive(false);
    let gone = eventually(FOLLOWS_WITHIN, || {
        let _ = a(ncdd.addr, &format!("n{}.allowed.test", rand::random::<u32>()));
        control.status().upstreams.unreachable.is_none().then_some(())
    });
    assert!(gone.is_some(), "the note stays after the resolver answers again");
}

#[test]
fn a_config_without_system_asks_exactly_its_resolvers_and_says_plainly_when_they_are_cut_off() {
    let outside = FakeUpstream::start();
    outside.set_unresponsive(true);
    let hotel = network_server("127.0.0.9", "10.0.0.9");
    let setup = Setup::new(&format!(
        "[dns]\nupstreams = [\"{}\"]\nupstream_timeout = \"1s\"\n",
        outside.url()
    ))
    .file(LINK_2, &resolved_link(&hotel, "lan"));
    let ncdd = with_network_root(setup).spawn();
    let control = Control::new(ncdd.control_socket());
    let said = eventually(FOLLOWS_WITHIN, || {
        let answer = a(ncdd.addr, &format!("n{}.allowed.test", rand::random::<u32>()));
        assert_eq!(answer.rcode(), ResponseCode::ServFail);
        control.status().upstreams.unreachable
    })
    .expect("ncd status says the configured resolvers cannot be reached");
    assert!(
        said.contains("cannot be reached from this network, so allowed names do not resolve"),
        "{said}"
    );
    assert!(said.contains("With \"system\" in [dns] upstreams"), "{said}");
    assert_eq!(a(ncdd.addr, "printer.lan").rcode(), ResponseCode::ServFail);
    assert_eq!(
        hotel.queries(),
        0,
        "the network's server was asked though the config does not list \"system\""
    );
    assert!(control.status().upstreams.network.is_empty());
}

#[test]
fn a_failed_name_is_answered_at_once_when_the_stub_in_front_retries() {
    let upstream = FakeUpstream::start();
    let ncdd = Ncdd::start(&format!(
        "[dns]\nupstreams = [\"{}\"]\nupstream_timeout = \"2s\"\n",
        upstream.url()
    ));
    upstream.set_unresponsive(true);

    let started = Instant::now();
    let first = a(ncdd.addr, "allowed.test");
    assert_eq!(first.rcode(), ResponseCode::ServFail);
    let asked = upstream.queries();
    // systemd-resolved retries at once (and again with less EDNS): each retry is a
    // new query. None of them waits for, or reaches, the upstream again.
    for _ in 0..5 {
        let retry = a(ncdd.addr, "allowed.test");
        assert_eq!(retry.rcode(), ResponseCode::ServFail);
        assert_eq!(retry.ede(), Some(22));
    }
    assert_eq!(upstream.queries(), asked, "a retry went to the upstream again");
    eprintln!("first SERVFAIL and five retries: {:?}", started.elapsed());

    // Asked by many at once (a stub's quick retries, every tab): one upstream
    // question, one answer for all (hickory's pool shares a question in flight).
    let many: Vec<_> = (0..8)
        .map(|_| {
            let server = ncdd.addr;
            std::thread::spawn(move || a(server, "later.test").rcode())
        })
        .collect();
    for handle in many {
        assert_eq!(handle.join().unwrap(), ResponseCode::ServFail);
    }
    // (One question can be more than one packet: UDP, then TCP.)
    let one_question = upstream.times_asked("allowed.test");
    assert_eq!(
        upstream.times_asked("later.test"),
        one_question,
        "the same question went out more than once"
    );

    // Once the failure is forgotten, the upstream is asked again.
    upstream.set_unresponsive(false);
    wait_resolves(&ncdd, "allowed.test", "192.0.2.1", "upstream back");
}

// ----- Encrypted upstreams against unbound ----------------------------------------------

/// unbound on 127.0.0.1 serving DNS over TLS and over HTTPS (RFC 8484) with a
/// certificate for `dns.encrypted.test` from a test CA. Killed when dropped.
struct Unbound {
    child: Child,
    tls: SocketAddr,
    https: SocketAddr,
    dir: tempfile::TempDir,
}

impl Unbound {
    /// unbound started, or `None` (a SKIPPED line; a failure under `CI=true`)
    /// when it is not installed.
    fn start(test: &str) -> Option<Self> {
        support::needs(test, support::program("unbound", "-V"))?;
        let dir = tempfile::Builder::new().prefix("ncd-unbound-").tempdir().unwrap();
        let (ca_pem, cert_pem, key_pem) = test_certificates("dns.encrypted.test");
        std::fs::write(dir.path().join("ca.pem"), ca_pem).unwrap();
        std::fs::write(dir.path().join("server.pem"), cert_pem).unwrap();
        std::fs::write(dir.path().join("server.key"), key_pem).unwrap();
        let (tls, https) = (free_tcp_port(), free_tcp_port());
        let d = dir.path().display();
        let conf = format!(
            "server:\n  username: \"\"\n  chroot: \"\"\n  directory: \"{d}\"\n  pidfile: \"{d}/unbound.pid\"\n\
             \x20 use-syslog: no\n  logfile: \"\"\n  do-daemonize: no\n  verbosity: 1\n  do-ip6: no\n\
             \x20 interface: 127.0.0.1@{tls}\n  interface: 127.0.0.1@{https}\n  tls-port: {tls}\n  https-port: {https}\n\
             \x20 tls-service-key: \"{d}/server.key\"\n  tls-service-pem: \"{d}/server.pem\"\n\
             \x20 access-control: 127.0.0.0/8 allow\n  module-config: \"iterator\"\n\
             \x20 local-zone: \"encrypted.test.\" static\n\
             \x20 local-data: \"dot.encrypted.test. 300 IN A 192.0.2.80\"\n\
             remote-control:\n  control-enable: no\n"
        );
        std::fs::write(dir.path().join("unbound.conf"), conf).unwrap();
        let child = Command::new("unbound")
            .arg("-d")
            .arg("-c")
            .arg(dir.path().join("unbound.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start unbound");
        let mut unbound = Unbound {
            child,
            tls: SocketAddr::from(([127, 0, 0, 1], tls)),
            https: SocketAddr::from(([127, 0, 0, 1], https)),
            dir,
        };
        let up = eventually(Duration::from_secs(10), || {
            (std::net::TcpStream::connect(unbound.tls).is_ok() && std::net::TcpStream::connect(unbound.https).is_ok())
                .then_some(())
        });
        if up.is_none() {
            let _ = unbound.child.kill();
            let output = unbound.child.wait_with_output_lossy();
            panic!("unbound did not start: {output}");
        }
        Some(unbound)
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

trait WaitLossy {
    fn wait_with_output_lossy(&mut self) -> String;
}

impl WaitLossy for Child {
    fn wait_with_output_lossy(&mut self) -> String {
        use std::io::Read;
        let mut text = String::new();
        if let Some(mut stderr) = self.stderr.take() {
            let _ = stderr.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A test CA and a leaf for `name` signed by it, as PEM: (ca, leaf, leaf key).
fn test_certificates(name: &str) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![name.to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    (ca_cert.pem(), leaf.pem(), leaf_key.serialize_pem())
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn encrypted_config(upstreams: &[String], roots: Option<&Path>) -> String {
    let list: Vec<String> = upstreams.iter().map(|u| format!("\"{u}\"")).collect();
    let roots = roots.map_or(String::new(), |r| format!("upstream_roots = [\"{}\"]\n", r.display()));
    format!(
        "[dns]\nupstreams = [{}]\nupstream_timeout = \"2s\"\n{roots}",
        list.join(", ")
    )
}

#[test]
fn dns_over_tls_and_https_answer_through_a_trusted_test_ca() {
    let Some(unbound) = Unbound::start("dns_over_tls_and_https_answer_through_a_trusted_test_ca") else {
        return;
    };
    for upstream in [
        format!("tls://{}#dns.encrypted.test", unbound.tls),
        format!("https://{}/dns-query#dns.encrypted.test", unbound.https),
    ] {
        let ncdd = Ncdd::start(&encrypted_config(std::slice::from_ref(&upstream), Some(&unbound.ca())));
        let answer = a(ncdd.addr, "dot.encrypted.test");
        assert!(
            resolves_to(&answer, "192.0.2.80"),
            "{upstream}: {:?}\nncdd's log:\n{}",
            answer.message,
            ncdd.stderr()
        );
    }
}

#[test]
fn a_wrong_certificate_or_name_is_refused_with_a_clear_error() {
    let Some(unbound) = Unbound::start("a_wrong_certificate_or_name_is_refused_with_a_clear_error") else {
        return;
    };
    let cases = [
        // The right name, but a CA ncdd was not told to trust.
        (
            format!("tls://{}#dns.encrypted.test", unbound.tls),
            None,
            "not signed by a CA ncdd trusts",
        ),
        (
            format!("https://{}/dns-query#dns.encrypted.test", unbound.https),
            None,
            "not signed by a CA ncdd trusts",
        ),
        // A trusted CA, but the certificate is for another name.
        (
            format!("tls://{}#other.encrypted.test", unbound.tls),
            Some(unbound.ca()),
            "for another name",
        ),
    ];
    for (upstream, roots, error) in cases {
        let ncdd = Ncdd::start(&encrypted_config(std::slice::from_ref(&upstream), roots.as_deref()));
        let answer = a(ncdd.addr, "dot.encrypted.test");
        assert_eq!(
            answer.rcode(),
            ResponseCode::ServFail,
            "{upstream}: {:?}",
            answer.message
        );
        let said = eventually(Duration::from_secs(5), || {
            let log = ncdd.stderr();
            log.lines()
                .find(|l| l.contains("upstream failed") && l.contains(&upstream) && l.contains(error))
                .map(str::to_string)
        });
        assert!(
            said.is_some(),
            "{upstream}: no clear {error} in the log:\n{}",
            ncdd.stderr()
        );
        assert!(!ncdd.stderr().contains("dot.encrypted.test"), "the log names the query");
    }
}

#[test]
fn a_dot_upstream_that_dies_fails_over_to_the_next_within_the_timeout() {
    let Some(mut unbound) = Unbound::start("a_dot_upstream_that_dies_fails_over_to_the_next_within_the_timeout") else {
        return;
    };
    let plain = FakeUpstream::start_on(Ipv4Addr::LOCALHOST, &[("dot.encrypted.test", v4("192.0.2.81"))]);
    let dot = format!("tls://{}#dns.encrypted.test", unbound.tls);
    let ncdd = Ncdd::start(&encrypted_config(&[dot, plain.url()], Some(&unbound.ca())));
    assert!(
        resolves_to(&a(ncdd.addr, "dot.encrypted.test"), "192.0.2.80"),
        "DoT answers first"
    );
    assert!(!plain.was_asked("dot.encrypted.test"));

    unbound.stop();
    let started = Instant::now();
    let answer = query_udp(ncdd.addr, "allowed.test", RecordType::A);
    let took = started.elapsed();
    assert!(
        resolves_to(&answer, "192.0.2.1"),
        "{:?}\n{}",
        answer.message,
        ncdd.stderr()
    );
    assert!(
        took < Duration::from_secs(2),
        "the failover took {took:?}, longer than upstream_timeout"
    );
    assert!(plain.was_asked("allowed.test"));
}
