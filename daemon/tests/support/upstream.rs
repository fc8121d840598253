//! A fake upstream: an in-process authoritative DNS server on 127.0.0.1 (UDP and
//! TCP on one port) serving a fixed zone. It counts and records the queries it
//! receives, and can be switched between [`Mode`]s: answering, down (every query
//! dropped), slow (every answer held back) and answering garbage.

// Each test binary uses its own part of the shared harness.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_net::runtime::Time;
use hickory_net::xfer::Protocol;
use hickory_proto::op::{Header, HeaderCounts, Message, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::svcb::{Alpn, SvcParamKey, SvcParamValue};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, HTTPS, SOA, SVCB};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_server::Server;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

/// TTL of every record in the fake zone.
pub(crate) const ZONE_TTL: u32 = 300;

/// The owner of the fake zone's SOA: negative answers from upstream carry it, so a
/// test can tell "upstream said NXDOMAIN" from "ncdd blocked it".
pub(crate) const FAKE_SOA_MNAME: &str = "ns.fake-upstream.test.";

/// The records the fake upstream serves, as `(name, data)`.
fn zone_records() -> Vec<(&'static str, RData)> {
    let a = |ip: [u8; 4]| RData::A(A(Ipv4Addr::from(ip)));
    vec![
        ("allowed.test", a([192, 0, 2, 1])),
        (
            "allowed.test",
            RData::AAAA(AAAA(Ipv6Addr::from_str("2001:db8::1").unwrap())),
        ),
        ("later.test", a([192, 0, 2, 2])),
        ("kept.test", a([192, 0, 2, 3])),
        ("notinstagram.com", a([192, 0, 2, 10])),
        ("instagram.com.evil.test", a([192, 0, 2, 11])),
        ("www.exact.example.org", a([192, 0, 2, 12])),
        ("business.facebook.com", a([192, 0, 2, 13])),
        ("use-application-dns.net", a([192, 0, 2, 14])),
        ("www.facebook.com", a([192, 0, 2, 15])),
        ("www.instagram.com", a([192, 0, 2, 16])),
        ("listed-late.test", a([192, 0, 2, 17])),
        ("cloaked.test", RData::CNAME(CNAME(name("tracker.blocked.test")))),
        ("tracker.blocked.test", a([192, 0, 2, 66])),
        (
            "alias.test",
            RData::HTTPS(HTTPS(SVCB::new(0, name("target.blocked.test"), Vec::new()))),
        ),
        (
            "svc.test",
            RData::HTTPS(HTTPS(SVCB::new(
                1,
                Name::root(),
                vec![(SvcParamKey::Alpn, SvcParamValue::Alpn(Alpn(vec!["h2".to_string()])))],
            ))),
        ),
    ]
}

/// A fully qualified name from text (a trailing dot is added when missing).
pub(crate) fn name(text: &str) -> Name {
    let mut name = Name::from_ascii(text).unwrap_or_else(|e| panic!("bad test name {text:?}: {e}"));
    name.set_fqdn(true);
    name
}

#[derive(Debug)]
struct Zone {
    records: HashMap<(LowerName, RecordType), Vec<Record>>,
    names: HashSet<LowerName>,
    soa: Record,
}

impl Zone {
    fn new(extra: &[(&str, Ipv4Addr)]) -> Self {
        let mut records: HashMap<(LowerName, RecordType), Vec<Record>> = HashMap::new();
        let mut names = HashSet::new();
        let extra = extra.iter().map(|(owner, ip)| (*owner, RData::A(A(*ip))));
        for (owner, data) in zone_records().into_iter().chain(extra) {
            let owner = name(owner);
            let key = (LowerName::from(&owner), data.record_type());
            names.insert(key.0.clone());
            records
                .entry(key)
                .or_default()
                .push(Record::from_rdata(owner, ZONE_TTL, data));
        }
        let soa = SOA::new(
            name(FAKE_SOA_MNAME),
            name("hostmaster.fake-upstream.test"),
            1,
            3600,
            600,
            86_400,
            60,
        );
        let soa = Record::from_rdata(Name::root(), 60, RData::SOA(soa));
        Self { records, names, soa }
    }

    /// (rcode, answers, authorities) for a question, following CNAMEs inside the zone.
    fn answer(&self, qname: &LowerName, qtype: RecordType) -> (ResponseCode, Vec<Record>, Vec<Record>) {
        let mut answers = Vec::new();
        let mut current = qname.clone();
        for _ in 0..8 {
            if let Some(records) = self.records.get(&(current.clone(), qtype)) {
                answers.extend(records.iter().cloned());
                return (ResponseCode::NoError, answers, Vec::new());
            }
            match self.records.get(&(current.clone(), RecordType::CNAME)) {
                Some(cname) if qtype != RecordType::CNAME => {
                    answers.extend(cname.iter().cloned());
                    let RData::CNAME(target) = &cname[0].data else {
                        unreachable!()
                    };
                    current = LowerName::from(&target.0);
                }
                _ => break,
            }
        }
        let soa = vec![self.soa.clone()];
        if !answers.is_empty() || self.names.contains(&current) {
            (ResponseCode::NoError, answers, soa)
        } else {
            (ResponseCode::NXDomain, answers, soa)
        }
    }
}

/// How the fake upstream treats the queries it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Mode {
    /// Answers from the zone at once.
    #[default]
    Normal,
    /// Down: every query is dropped without an answer.
    Unresponsive,
    /// Answers from the zone, each after this delay.
    Slow(Duration),
    /// Answers every UDP query with garbage, one kind after another (see
    /// [`GARBAGE_KINDS`]); TCP queries are dropped. Nothing it sends is a usable
    /// answer to the question asked.
    Garbage,
}

/// The kinds of garbage [`Mode::Garbage`] sends, in turn: fewer bytes than a DNS
/// header; the right answer cut in half; the right answer under another id; an
/// answer with the right id to a question that was not asked (a forgery); the
/// right id followed by random bytes.
pub(crate) const GARBAGE_KINDS: usize = 5;

#[derive(Debug, Default)]
struct Stats {
    queries: AtomicUsize,
    mode: Mutex<Mode>,
    garbage_sent: AtomicUsize,
    log: Mutex<Vec<(String, RecordType)>>,
}

impl Stats {
    fn mode(&self) -> Mode {
        *self.mode.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Debug, Clone)]
struct ZoneHandler {
    zone: Arc<Zone>,
    stats: Arc<Stats>,
    /// A second handle on the UDP socket, to send what hickory-server would not.
    raw_udp: Arc<std::net::UdpSocket>,
}

impl ZoneHandler {
    /// Sends the next kind of garbage in reply to `request` (from the UDP socket the
    /// query came in on, so that it passes the client's source check).
    fn send_garbage(&self, request: &Request, qname: &Name, qtype: RecordType) {
        let id = request.metadata.id;
        let (rcode, answers, authorities) = self.zone.answer(&LowerName::from(qname), qtype);
        let answer_to = |id: u16, qname: &Name| {
            let mut message = Message::response(id, OpCode::Query);
            message.metadata.response_code = rcode;
            message.metadata.recursion_desired = true;
            message.metadata.recursion_available = true;
            message.add_query(Query::query(qname.clone(), qtype));
            message.add_answers(answers.iter().cloned());
            message.add_authorities(authorities.iter().cloned());
            message.to_vec().expect("encode a fake answer")
        };
        let kind = self.stats.garbage_sent.fetch_add(1, Ordering::SeqCst) % GARBAGE_KINDS;
        let bytes = match kind {
            0 => (0..rand::random_range(1..12)).map(|_| rand::random::<u8>()).collect(),
            1 => {
                let mut bytes = answer_to(id, qname);
                bytes.truncate(bytes.len() / 2);
                bytes
            }
            2 => answer_to(id.wrapping_add(1), qname),
            3 => {
                let mut forged = Message::response(id, OpCode::Query);
                forged.add_query(Query::query(name("forged.invalid"), RecordType::A));
                forged.add_answer(Record::from_rdata(
                    name("forged.invalid"),
                    ZONE_TTL,
                    RData::A(A(Ipv4Addr::new(192, 0, 2, 99))),
                ));
                forged.to_vec().expect("encode a forged answer")
            }
            _ => {
                // The id of a real answer, then noise.
                let mut bytes = answer_to(id, qname);
                bytes.truncate(2);
                bytes.extend((0..rand::random_range(10..500)).map(|_| rand::random::<u8>()));
                bytes
            }
        };
        let _ = self.raw_udp.send_to(&bytes, request.src());
    }
}

#[async_trait::async_trait]
impl RequestHandler for ZoneHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        let no_response = |mut metadata: Metadata| {
            metadata.response_code = ResponseCode::ServFail;
            ResponseInfo::from(Header {
                metadata,
                counts: HeaderCounts::default(),
            })
        };
        self.stats.queries.fetch_add(1, Ordering::SeqCst);
        let Some(query) = request.queries.queries().first() else {
            return no_response(metadata);
        };
        let qname = query.name().clone();
        let qtype = query.query_type();
        let text = Name::from(&qname).to_ascii().trim_end_matches('.').to_string();
        self.stats.log.lock().unwrap().push((text, qtype));
        match self.stats.mode() {
            Mode::Normal => {}
            // Down: the query is dropped without any answer.
            Mode::Unresponsive => return no_response(metadata),
            Mode::Slow(delay) => tokio::time::sleep(delay).await,
            Mode::Garbage => {
                if request.protocol() == Protocol::Udp {
                    self.send_garbage(request, &Name::from(&qname), qtype);
                }
                return no_response(metadata);
            }
        }

        let (rcode, answers, authorities) = self.zone.answer(&qname, qtype);
        metadata.response_code = rcode;
        metadata.authoritative = true;
        let response = MessageResponseBuilder::from_message_request(request).build(
            metadata,
            answers.iter(),
            authorities.iter(),
            [],
            [],
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(_) => no_response(metadata),
        }
    }
}

/// A running fake upstream; stopped when dropped.
#[derive(Debug)]
pub(crate) struct FakeUpstream {
    pub addr: SocketAddr,
    stats: Arc<Stats>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeUpstream {
    /// Starts serving the fake zone on 127.0.0.1, UDP and TCP on one free port.
    pub(crate) fn start() -> Self {
        Self::start_on(Ipv4Addr::LOCALHOST, &[])
    }

    /// Starts serving the fake zone plus `extra` A records (a network's own
    /// `printer.lan`) on `ip`, a loopback address such as 127.0.0.2, so that each
    /// "network's server" of a test has an address of its own.
    pub(crate) fn start_on(ip: Ipv4Addr, extra: &[(&str, Ipv4Addr)]) -> Self {
        let (udp, tcp) = bind_pair(ip);
        let addr = udp.local_addr().expect("fake upstream address");
        let stats = Arc::new(Stats::default());
        let handler = ZoneHandler {
            zone: Arc::new(Zone::new(extra)),
            stats: stats.clone(),
            raw_udp: Arc::new(udp.try_clone().expect("a second handle on the UDP socket")),
        };
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("fake-upstream-{}", addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("fake upstream runtime");
                runtime.block_on(async move {
                    let mut server = Server::new(handler);
                    server.register_socket(tokio::net::UdpSocket::from_std(udp).expect("tokio UDP socket"));
                    server.register_listener(
                        tokio::net::TcpListener::from_std(tcp).expect("tokio TCP listener"),
                        std::time::Duration::from_secs(5),
                        16,
                    );
                    let _ = stopped.await;
                    // Dropping the server aborts its tasks and closes the sockets.
                    drop(server);
                });
            })
            .expect("spawn the fake upstream thread");
        Self {
            addr,
            stats,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// `udp://127.0.0.1:PORT`, as written in `[dns] upstreams`.
    pub(crate) fn url(&self) -> String {
        format!("udp://{}", self.addr)
    }

    /// How many queries arrived (answered or dropped).
    pub(crate) fn queries(&self) -> usize {
        self.stats.queries.load(Ordering::SeqCst)
    }

    /// True when a query for `qname` (any type, case-insensitive) has arrived.
    pub(crate) fn was_asked(&self, qname: &str) -> bool {
        let qname = qname.trim_end_matches('.').to_ascii_lowercase();
        self.stats.log.lock().unwrap().iter().any(|(n, _)| *n == qname)
    }

    /// How many queries for `qname` (any type, case-insensitive) have arrived.
    pub(crate) fn times_asked(&self, qname: &str) -> usize {
        let qname = qname.trim_end_matches('.').to_ascii_lowercase();
        self.stats
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| *n == qname)
            .count()
    }

    /// When true, every query is dropped without an answer.
    pub(crate) fn set_unresponsive(&self, unresponsive: bool) {
        self.set_mode(if unresponsive { Mode::Unresponsive } else { Mode::Normal });
    }

    /// Switches how queries are treated from now on.
    pub(crate) fn set_mode(&self, mode: Mode) {
        *self.stats.mode.lock().unwrap_or_else(|p| p.into_inner()) = mode;
    }

    /// How many garbage replies were sent so far.
    pub(crate) fn garbage_sent(&self) -> usize {
        self.stats.garbage_sent.load(Ordering::SeqCst)
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A UDP socket and a TCP listener on the same free port of `ip`, non-blocking.
fn bind_pair(ip: Ipv4Addr) -> (std::net::UdpSocket, std::net::TcpListener) {
    for _ in 0..50 {
        let udp = std::net::UdpSocket::bind((ip, 0)).expect("bind UDP");
        let Ok(tcp) = std::net::TcpListener::bind(udp.local_addr().expect("UDP address")) else {
            continue;
        };
        udp.set_nonblocking(true).expect("non-blocking UDP");
        tcp.set_nonblocking(true).expect("non-blocking TCP");
        return (udp, tcp);
    }
    panic!("no loopback port free for both UDP and TCP");
}
