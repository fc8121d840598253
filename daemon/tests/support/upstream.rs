//! A fake upstream: an in-process authoritative DNS server on 127.0.0.1 (UDP and
//! TCP on one port) serving a fixed zone. It counts and records the queries it
//! receives, and can be told to drop every query (an upstream that is down).

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use hickory_net::runtime::Time;
use hickory_proto::op::{Header, HeaderCounts, Metadata, ResponseCode};
use hickory_proto::rr::rdata::svcb::{Alpn, SvcParamKey, SvcParamValue};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, HTTPS, SOA, SVCB};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_server::Server;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

/// TTL of every record in the fake zone.
pub const ZONE_TTL: u32 = 300;

/// The owner of the fake zone's SOA: negative answers from upstream carry it, so a
/// test can tell "upstream said NXDOMAIN" from "ncdd blocked it".
pub const FAKE_SOA_MNAME: &str = "ns.fake-upstream.test.";

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
pub fn name(text: &str) -> Name {
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
    fn new() -> Self {
        let mut records: HashMap<(LowerName, RecordType), Vec<Record>> = HashMap::new();
        let mut names = HashSet::new();
        for (owner, data) in zone_records() {
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

#[derive(Debug, Default)]
struct Stats {
    queries: AtomicUsize,
    unresponsive: AtomicBool,
    log: Mutex<Vec<(String, RecordType)>>,
}

#[derive(Debug, Clone)]
struct ZoneHandler {
    zone: Arc<Zone>,
    stats: Arc<Stats>,
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
        if self.stats.unresponsive.load(Ordering::SeqCst) {
            // Down: the query is dropped without any answer.
            return no_response(metadata);
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
pub struct FakeUpstream {
    pub addr: SocketAddr,
    stats: Arc<Stats>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeUpstream {
    /// Starts serving the fake zone on 127.0.0.1, UDP and TCP on one free port.
    pub fn start() -> Self {
        let (udp, tcp) = bind_pair();
        let addr = udp.local_addr().expect("fake upstream address");
        let stats = Arc::new(Stats::default());
        let handler = ZoneHandler {
            zone: Arc::new(Zone::new()),
            stats: stats.clone(),
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
    pub fn url(&self) -> String {
        format!("udp://{}", self.addr)
    }

    /// How many queries arrived (answered or dropped).
    pub fn queries(&self) -> usize {
        self.stats.queries.load(Ordering::SeqCst)
    }

    /// True when a query for `qname` (any type, case-insensitive) has arrived.
    pub fn was_asked(&self, qname: &str) -> bool {
        let qname = qname.trim_end_matches('.').to_ascii_lowercase();
        self.stats.log.lock().unwrap().iter().any(|(n, _)| *n == qname)
    }

    /// When true, every query is dropped without an answer.
    pub fn set_unresponsive(&self, unresponsive: bool) {
        self.stats.unresponsive.store(unresponsive, Ordering::SeqCst);
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

/// A UDP socket and a TCP listener on the same free loopback port, non-blocking.
fn bind_pair() -> (std::net::UdpSocket, std::net::TcpListener) {
    for _ in 0..50 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
        let Ok(tcp) = std::net::TcpListener::bind(udp.local_addr().expect("UDP address")) else {
            continue;
        };
        udp.set_nonblocking(true).expect("non-blocking UDP");
        tcp.set_nonblocking(true).expect("non-blocking TCP");
        return (udp, tcp);
    }
    panic!("no loopback port free for both UDP and TCP");
}
