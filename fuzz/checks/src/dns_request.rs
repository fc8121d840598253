//! DNS requests through ncdd's own request path: `ncd_daemon::dns::serve::respond`
//! (raw request bytes and the client's address in, response bytes out), on a
//! `Chain` built from a config with rules, whose upstream is an in-process fake
//! on loopback ([`FakeUpstream`]).
//!
//! Input: one flag byte, then the request bytes. The flag byte picks the chain
//! (bits 0-1, see [`CHAINS`]), the transport (bit 2: UDP or TCP) and the client
//! (bits 3-5, see [`CLIENTS`]). Checked:
//!
//! - never a panic; a request is dropped unanswered only when it has no header,
//!   is a response, or (on the rate-limited chain) comes from a LAN client;
//! - a response parses (hickory-proto), is a response, has the request's ID and
//!   opcode, echoes the question when it has one, and over UDP fits the size the
//!   client can take (512 bytes, or its EDNS payload up to 1232);
//! - EDNS in the response only when the request had it (and then always, unless
//!   the response is a bare header or truncated);
//! - a name the policy blocks gets no upstream address — its answers are only
//!   `0.0.0.0` / `::` — and is never sent to the upstream, and an EDNS client gets
//!   Extended DNS Error 15; no name the upstream is asked is one the policy blocks;
//! - no record from the upstream reaches the client when its owner, or the target
//!   of a CNAME/HTTPS/SVCB, is a blocked name (CNAME cloaking);
//! - a client outside loopback and `allow_clients` gets REFUSED (or a
//!   FORMERR/NOTIMP for a malformed request) with no answer, and the upstream
//!   hears nothing of it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, HTTPS, SOA, SVCB, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use ncd_config::Config;
use ncd_daemon::dns::Chain;
use ncd_daemon::dns::serve::{EDNS_PAYLOAD, Transport, respond};
use ncd_daemon::dns::upstream::{UpstreamInputs, Upstreams};
use ncd_policy::{Policy, Verdict};
use tokio::net::UdpSocket;

use crate::fixture::fixture;
use crate::runtime::runtime;

/// The rules every chain enforces (`{upstream}` is the fake upstream's address).
const RULES: &str = r#"
[dns]
upstreams = ["udp://{upstream}"]
upstream_timeout = "2s"
allow_clients = ["192.168.0.0/16"]

[block]
services = ["instagram"]
domains = ["blocked.test", "=exact.test"]
allow = ["ok.blocked.test"]
lists = ["lists/ads.adblock"]

[guard]
encrypted_dns = true
"#;

/// The chains the flag byte picks from: answer mode, cache size, rate limit.
pub const CHAINS: [(&str, usize, u32); 4] = [("null", 0, 0), ("nxdomain", 64, 0), ("refused", 0, 0), ("null", 64, 1)];

/// The clients the flag byte picks from (the last ones are not allowed to query).
pub const CLIENTS: [&str; 6] = [
    "127.0.0.1:5353",
    "[::1]:5353",
    "192.168.1.5:5353",
    "[::ffff:192.168.1.5]:5353",
    "203.0.113.9:5353",
    "[2001:db8::9]:5353",
];

/// Addresses the fake upstream answers with, to be told from ncd's own.
const UPSTREAM_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const CLOAKED_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 66);
const UPSTREAM_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

/// An authoritative-looking server on 127.0.0.1 that answers every question by
/// its first label: `cname` → a CNAME into `tracker.blocked.test`, `alias` → an
/// HTTPS alias into `target.blocked.test`, `svc` → an SVCB to itself, `nx` →
/// NXDOMAIN, `fail` → SERVFAIL, `big` → forty A records, else A / AAAA / TXT
/// data, or no data with an SOA. It records every name it is asked.
#[derive(Debug)]
pub struct FakeUpstream {
    pub addr: SocketAddr,
    asked: Arc<Mutex<Vec<Name>>>,
}

impl FakeUpstream {
    async fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind the fake upstream");
        let addr = socket.local_addr().expect("the fake upstream's address");
        let asked: Arc<Mutex<Vec<Name>>> = Arc::default();
        let log = asked.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_535];
            loop {
                let Ok((len, from)) = socket.recv_from(&mut buf).await else {
                    continue;
                };
                let Ok(request) = Message::from_vec(&buf[..len]) else {
                    continue;
                };
                if let Some(query) = request.queries.first() {
                    log.lock().unwrap_or_else(|p| p.into_inner()).push(query.name().clone());
                }
                if let Ok(bytes) = answer(&request).to_vec() {
                    let _ = socket.send_to(&bytes, from).await;
                }
            }
        });
        Self { addr, asked }
    }

    fn take_asked(&self) -> Vec<Name> {
        std::mem::take(&mut *self.asked.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

fn name(text: &str) -> Name {
    Name::from_ascii(text).expect("a fixed name")
}

/// The fake upstream's response to `request`.
fn answer(request: &Message) -> Message {
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.add_queries(request.queries.clone());
    if let Some(edns) = &request.edns {
        let mut ours = Edns::new();
        ours.set_max_payload(edns.max_payload().max(512));
        response.set_edns(ours);
    }
    let Some(query) = request.queries.first() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return response;
    };
    let qname = query.name().clone();
    let first = qname.iter().next().map(<[u8]>::to_ascii_lowercase).unwrap_or_default();
    let record = |owner: &Name, data: RData| Record::from_rdata(owner.clone(), 300, data);
    let soa = || {
        let soa = SOA::new(name("ns.fake.test."), name("host.fake.test."), 1, 3600, 600, 86_400, 60);
        record(&name("fake.test."), RData::SOA(soa))
    };
    match (first.as_slice(), query.query_type()) {
        (b"nx", _) => {
            response.metadata.response_code = ResponseCode::NXDomain;
            response.add_authority(soa());
        }
        (b"fail", _) => response.metadata.response_code = ResponseCode::ServFail,
        (b"cname", _) => {
            let target = name("tracker.blocked.test.");
            response.add_answer(record(&qname, RData::CNAME(CNAME(target.clone()))));
            response.add_answer(record(&target, RData::A(A(CLOAKED_V4))));
        }
        (b"alias", _) => {
            let svcb = SVCB::new(0, name("target.blocked.test."), Vec::new());
            response.add_answer(record(&qname, RData::HTTPS(HTTPS(svcb))));
        }
        (b"svc", _) => {
            let svcb = SVCB::new(1, Name::root(), Vec::new());
            response.add_answer(record(&qname, RData::SVCB(svcb)));
        }
        (b"big", RecordType::A) => {
            for i in 0..40u8 {
                response.add_answer(record(&qname, RData::A(A(Ipv4Addr::new(192, 0, 2, i)))));
            }
        }
        (_, RecordType::A) => {
            response.add_answer(record(&qname, RData::A(A(UPSTREAM_V4))));
        }
        (_, RecordType::AAAA) => {
            response.add_answer(record(&qname, RData::AAAA(AAAA(UPSTREAM_V6))));
        }
        (_, RecordType::TXT) => {
            response.add_answer(record(&qname, RData::TXT(TXT::new(vec!["fake".into()]))));
        }
        _ => {
            response.add_authority(soa());
        }
    }
    response
}

struct Setup {
    upstream: FakeUpstream,
    chains: Vec<Chain>,
    /// One input at a time: the upstream's record of names is shared.
    turn: tokio::sync::Mutex<()>,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        runtime().block_on(async {
            let upstream = FakeUpstream::start().await;
            let rules = RULES.replace("{upstream}", &upstream.addr.to_string());
            let fixture = fixture();
            let mut chains = Vec::new();
            for (mode, cache_size, rate_limit) in CHAINS {
                let text = rules.replace(
                    "[dns]\n",
                    &format!(
                        "[dns]\nanswer = \"{mode}\"\ncache_size = {cache_size}\nclient_rate_limit = {rate_limit}\n"
                    ),
                );
                let config = Config::parse(&text, &fixture.config_path()).expect("the chain config parses");
                let upstreams = Upstreams::build(UpstreamInputs {
                    entries: config.dns.upstreams.clone(),
                    // Never the machine's own network: nothing here leaves loopback.
                    network: Default::default(),
                    roots: Vec::new(),
                    timeout: config.dns.upstream_timeout.0,
                })
                .await;
                let policy = Policy::build(&config, &ncd_state::StateDir::new(fixture.empty_state_dir()));
                let chain = Chain::new(Arc::new(policy), Arc::new(upstreams), &config.dns);
                chains.push(chain);
            }
            Setup {
                upstream,
                chains,
                turn: tokio::sync::Mutex::new(()),
            }
        })
    })
}

fn blocked(policy: &Policy, name: &Name) -> bool {
    let mut buf = [0u8; 256];
    matches!(
        policy.verdict(ncd_daemon::dns::name_bytes(name, &mut buf)),
        Verdict::Blocked(_)
    )
}

fn is_upstream_data(data: &RData) -> bool {
    match data {
        RData::A(a) => a.0.octets()[..3] == [192, 0, 2],
        RData::AAAA(aaaa) => aaaa.0.segments()[..2] == [0x2001, 0xdb8],
        RData::CNAME(_) | RData::HTTPS(_) | RData::SVCB(_) | RData::TXT(_) => true,
        _ => false,
    }
}

pub fn check_dns_request(data: &[u8]) {
    let Some((&flags, bytes)) = data.split_first() else {
        return;
    };
    let setup = setup();
    let (mode, _, rate_limit) = CHAINS[usize::from(flags & 3)];
    let chain = &setup.chains[usize::from(flags & 3)];
    let transport = if flags & 4 != 0 { Transport::Tcp } else { Transport::Udp };
    let client: SocketAddr = CLIENTS[usize::from(flags >> 3) % CLIENTS.len()]
        .parse()
        .expect("a fixed address");
    let client_ip = match client.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client.ip(), IpAddr::V4),
        v4 => v4,
    };
    let rt = runtime();
    let _turn = rt.block_on(setup.turn.lock());
    setup.upstream.take_asked();

    let mut out = Vec::new();
    let answered = rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(20),
            respond(chain, bytes, client, transport, &mut out),
        )
        .await
        .expect("an answer within 20 s (the upstream timeout is 2 s)")
    });
    let asked = setup.upstream.take_asked();
    let ctx = || format!("chain {mode}, {transport:?}, client {client}, request {bytes:02x?}");

    for name in &asked {
        assert!(
            !blocked(&chain.policy, name),
            "the upstream was asked for blocked {name}\n{}",
            ctx()
        );
    }
    let allowed_client = chain.client_allowed(client_ip);
    if !allowed_client {
        assert!(
            asked.is_empty(),
            "the upstream heard of a refused client's query\n{}",
            ctx()
        );
    }

    let header = Header::read(&mut BinDecoder::new(bytes)).ok();
    let request = Message::from_vec(bytes).ok();
    if !answered {
        let may_drop = match &header {
            None => true,
            Some(h) => h.metadata.message_type == MessageType::Response || (rate_limit > 0 && !client_ip.is_loopback()),
        };
        assert!(may_drop, "a query was dropped unanswered\n{}", ctx());
        return;
    }
    let Some(header) = header else {
        panic!("an answer to a request without a header\n{}", ctx());
    };
    assert_eq!(
        header.metadata.message_type,
        MessageType::Query,
        "an answer to a response\n{}",
        ctx()
    );

    let response =
        Message::from_vec(&out).unwrap_or_else(|e| panic!("the response does not parse: {e}\n{out:02x?}\n{}", ctx()));
    let ctx = || format!("{}\nresponse {response:#?}", ctx());
    assert_eq!(response.metadata.id, header.metadata.id, "response ID\n{}", ctx());
    assert_eq!(response.metadata.message_type, MessageType::Response, "\n{}", ctx());
    assert_eq!(response.metadata.op_code, header.metadata.op_code, "opcode\n{}", ctx());
    if transport == Transport::Udp {
        let limit = request
            .as_ref()
            .and_then(|r| r.edns.as_ref())
            .map_or(512, |edns| edns.max_payload().clamp(512, EDNS_PAYLOAD));
        assert!(
            out.len() <= usize::from(limit),
            "{} bytes over UDP, limit {limit}\n{}",
            out.len(),
            ctx()
        );
    }
    let Some(request) = request else {
        assert_eq!(response.metadata.response_code, ResponseCode::FormErr, "\n{}", ctx());
        assert!(response.answers.is_empty(), "\n{}", ctx());
        return;
    };
    if !response.queries.is_empty() {
        assert_eq!(response.queries, request.queries, "the question echoed\n{}", ctx());
    }
    // EDNS only to a client that spoke it; to one that did, unless the response is
    // a bare header or was cut short.
    if request.edns.is_none() {
        assert!(response.edns.is_none(), "EDNS to a client without it\n{}", ctx());
    } else if !response.queries.is_empty() && !response.metadata.truncation {
        assert!(response.edns.is_some(), "no EDNS to a client that spoke it\n{}", ctx());
    }

    // Upstream data never names a blocked name.
    for record in &response.answers {
        if !is_upstream_data(&record.data) {
            continue;
        }
        let target = match &record.data {
            RData::CNAME(cname) => Some(&cname.0),
            RData::HTTPS(https) => Some(&https.0.target_name),
            RData::SVCB(svcb) => Some(&svcb.target_name),
            _ => None,
        };
        for name in std::iter::once(&record.name).chain(target) {
            assert!(
                !blocked(&chain.policy, name),
                "upstream data about blocked {name}\n{}",
                ctx()
            );
        }
    }

    let serves = request.metadata.op_code == OpCode::Query
        && matches!(request.queries.as_slice(), [q] if q.query_class() == DNSClass::IN);
    if !allowed_client {
        assert!(response.answers.is_empty(), "answers for a refused client\n{}", ctx());
        if serves {
            assert_eq!(response.metadata.response_code, ResponseCode::Refused, "\n{}", ctx());
        }
        return;
    }
    let [query] = request.queries.as_slice() else {
        return;
    };
    if serves && blocked(&chain.policy, query.name()) {
        check_blocked(query, &response, &asked, &ctx);
    }
}

/// The answer to a blocked name: ncd's own, the upstream never asked.
fn check_blocked(query: &Query, response: &Message, asked: &[Name], ctx: &dyn Fn() -> String) {
    assert!(
        asked.is_empty(),
        "blocked {} went to the upstream: {asked:?}\n{}",
        query.name(),
        ctx()
    );
    assert!(
        matches!(
            response.metadata.response_code,
            ResponseCode::NoError | ResponseCode::NXDomain | ResponseCode::Refused | ResponseCode::ServFail
        ),
        "\n{}",
        ctx()
    );
    for record in &response.answers {
        match &record.data {
            RData::A(a) if a.0.is_unspecified() => {}
            RData::AAAA(aaaa) if aaaa.0.is_unspecified() => {}
            other => panic!("blocked {} answered with {other:?}\n{}", query.name(), ctx()),
        }
    }
    // An EDNS client learns why (Extended DNS Error 15, "Blocked").
    if let Some(edns) = &response.edns {
        let ede = match edns.options().get(EdnsCode::from(15)) {
            Some(EdnsOption::Unknown(_, data)) => Some(data.clone()),
            _ => None,
        };
        let code = ede
            .as_ref()
            .and_then(|d| d.get(..2))
            .map(|b| u16::from_be_bytes([b[0], b[1]]));
        assert_eq!(
            code,
            Some(15),
            "blocked {} without EDE 15: {ede:?}\n{}",
            query.name(),
            ctx()
        );
    }
}
