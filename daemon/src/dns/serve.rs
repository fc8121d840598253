//! One request's path from bytes to bytes: decode it (hickory-proto), ask the
//! [`Chain`], encode the response with the client's EDNS and size limit.
//!
//! It is split in two so the UDP loop can answer most queries inline, without a
//! task per query: [`start`] does everything that needs no upstream (the client
//! check, the policy, the cache) and only a cache miss comes back as [`Pending`],
//! to be finished in a task of its own. TCP, tests and the fuzz target use
//! [`respond`], both halves in one call.
//!
//! A UDP response is also kept, finished, keyed by the request's bytes after its
//! two-byte ID: clients ask the same question the same way again and again (stub
//! resolvers, browsers), and such a repeat is answered with the kept bytes and
//! the new ID — no decoding, no policy walk, no encoding. The kept responses live
//! in the chain, so a policy change starts without them; responses made from
//! upstream answers are kept for one second only, so their TTLs stay true. A
//! response is kept only the second time its request is seen, so one-off names
//! (a scan, a flood of random subdomains) neither crowd out the useful ones nor
//! pay for keeping.

use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use foldhash::fast::FixedState;

use hickory_proto::op::{
    Edns, Header, HeaderCounts, Message, MessageType, Metadata, OpCode, ResponseCode, emit_message_parts,
};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{DNSClass, LowerName, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};

use super::cache::Cache;
use super::reply::Reply;
use super::{Chain, Local};
use ncd_policy::SourceId;

/// The EDNS payload size ncdd advertises and the most it sends over UDP
/// (DNS Flag Day 2020: no fragmentation).
pub const EDNS_PAYLOAD: u16 = 1232;
/// The EDNS option code of Extended DNS Errors (RFC 8914 §2).
const EDE_OPTION_CODE: u16 = 15;
/// The size limit without EDNS (RFC 1035 §4.2.1).
const PLAIN_UDP_PAYLOAD: u16 = 512;
/// How long a finished response made from an upstream answer is reused.
const KEEP_FROM_UPSTREAM: Duration = Duration::from_secs(1);
/// How long a finished blocked response is reused: its TTL never counts down, and
/// a new policy starts without it anyway.
const KEEP_BLOCKED: Duration = Duration::from_secs(3600);

/// Finished UDP responses kept for repeats, and which requests were seen before.
#[derive(Debug)]
pub struct Responses {
    kept: Cache<Box<[u8]>, Arc<Response>>,
    /// A fingerprint of each request recently seen, one per slot, overwritten
    /// freely: a fixed 128 KiB however many names pass.
    seen: Box<[AtomicU64]>,
}

const SEEN_SLOTS: usize = 16 * 1024;

impl Responses {
    /// Keeps up to `capacity` responses (0: none).
    pub fn new(capacity: usize) -> Self {
        let slots = if capacity == 0 { 0 } else { SEEN_SLOTS };
        Self {
            kept: Cache::new(capacity),
            seen: (0..slots).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Notes that `key` was asked; true when it had been asked recently before.
    fn seen_before(&self, key: &[u8]) -> bool {
        if self.seen.is_empty() {
            return false;
        }
        let fingerprint = FixedState::default().hash_one(key) | 1;
        let slot = &self.seen[(fingerprint >> 40) as usize % self.seen.len()];
        slot.swap(fingerprint, Ordering::Relaxed) == fingerprint
    }
}

/// A finished UDP response, kept for repeats of the request it answered.
#[derive(Debug)]
pub struct Response {
    bytes: Box<[u8]>,
    /// The rule source to count a repeat against, for a blocked name.
    blocked_by: Option<SourceId>,
}

/// How the response travels: UDP responses are cut to the client's payload size
/// (with TC set, so it retries over TCP); TCP responses are not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What [`start`] did with a request.
#[derive(Debug)]
pub enum Step {
    /// The response is in the output buffer.
    Reply,
    /// Nothing to send: not a query (a response, too short to have an ID) or a
    /// client over its rate limit.
    Drop,
    /// The upstreams must be asked: finish with [`Pending::finish`].
    Upstream(Box<Pending>),
}

/// A request waiting for the upstreams.
#[derive(Debug)]
pub struct Pending {
    /// The request's repeat key, when its response may be kept for repeats.
    repeat_key: Option<Box<[u8]>>,
    request: Message,
    qname: LowerName,
    qtype: RecordType,
    client: IpAddr,
    transport: Transport,
}

impl Pending {
    /// Asks the upstreams and writes the response into `out`.
    pub async fn finish(self, chain: &Chain, out: &mut Vec<u8>) {
        let reply = chain.ask_upstream(&self.qname, self.qtype, self.client).await;
        encode(&self.request, &reply, 0, self.transport, out);
        if let Some(key) = &self.repeat_key {
            keep(chain, key, out, KEEP_FROM_UPSTREAM, None);
        }
    }
}

/// Both halves of the path: the response to `request` in `out`, or false when
/// there is nothing to send.
pub async fn respond(
    chain: &Chain,
    request: &[u8],
    client: SocketAddr,
    transport: Transport,
    out: &mut Vec<u8>,
) -> bool {
    match start(chain, request, client, transport, out) {
        Step::Reply => true,
        Step::Drop => false,
        Step::Upstream(pending) => {
            pending.finish(chain, out).await;
            true
        }
    }
}

/// The first half: answers into `out` whatever needs no upstream.
pub fn start(chain: &Chain, bytes: &[u8], client: SocketAddr, transport: Transport, out: &mut Vec<u8>) -> Step {
    if !chain.admit(client.ip()) {
        return Step::Drop;
    }
    // Refusals depend on the client and TCP responses are not cut: neither is kept.
    let repeat = (transport == Transport::Udp && chain.client_allowed(client.ip()))
        .then(|| repeat_key(bytes))
        .flatten()
        .filter(|&(_, key)| chain.responses.seen_before(key));
    if let Some((id, key)) = repeat
        && answer_repeat(chain, id, key, client.ip(), out)
    {
        return Step::Reply;
    }
    let key = repeat.map(|(_, key)| key);
    let request = match Message::from_bytes(bytes) {
        Ok(request) if request.metadata.message_type == MessageType::Query => request,
        Ok(_) => return Step::Drop, // a response: never answer one (no loops, no reflection)
        Err(_) => {
            // Malformed past the header: FORMERR to the ID, if there is one.
            let Ok(header) = Header::read(&mut BinDecoder::new(bytes)) else {
                return Step::Drop;
            };
            if header.metadata.message_type != MessageType::Query {
                return Step::Drop;
            }
            encode_header_only(&header.metadata, ResponseCode::FormErr, out);
            return Step::Reply;
        }
    };
    let (qname, qtype) = match question(&request) {
        Ok(query) => (LowerName::from(query.name()), query.query_type()),
        Err(rcode) => {
            encode(&request, &Reply::error(rcode, None), 0, transport, out);
            return Step::Reply;
        }
    };
    match chain.answer_locally(&qname, qtype, client.ip()) {
        Local::Blocked(reply, source) | Local::Steered(reply, source) => {
            encode(&request, &reply, 0, transport, out);
            if let Some(key) = key {
                keep(chain, key, out, KEEP_BLOCKED, Some(source));
            }
        }
        Local::Refused(reply) => encode(&request, &reply, 0, transport, out),
        Local::Cached(reply, age) => {
            encode(&request, &reply, age, transport, out);
            if let Some(key) = key {
                keep(chain, key, out, KEEP_FROM_UPSTREAM, None);
            }
        }
        Local::Upstream => {
            return Step::Upstream(Box::new(Pending {
                repeat_key: key.map(Box::from),
                request,
                qname,
                qtype,
                client: client.ip(),
                transport,
            }));
        }
    }
    Step::Reply
}

/// The request's bytes after its ID: what makes two requests the same question,
/// asked the same way. `None` when there is no whole header.
fn repeat_key(request: &[u8]) -> Option<(u16, &[u8])> {
    let header = Header::read(&mut BinDecoder::new(request)).ok()?;
    let id_len = std::mem::size_of_val(&header.metadata.id);
    Some((header.metadata.id, &request[id_len..]))
}

/// Answers a repeat of a request whose response was kept: the kept response with
/// this request's ID, its header rewritten through hickory's codec.
fn answer_repeat(chain: &Chain, id: u16, key: &[u8], client: IpAddr, out: &mut Vec<u8>) -> bool {
    let Some((kept, _)) = chain.responses.kept.get(key, Instant::now()) else {
        return false;
    };
    let Ok(mut header) = Header::read(&mut BinDecoder::new(&kept.bytes)) else {
        return false;
    };
    header.metadata.id = id;
    out.clear();
    if header.emit(&mut BinEncoder::new(out)).is_err() {
        return false;
    }
    out.extend_from_slice(&kept.bytes[out.len()..]);
    if let Some(source) = kept.blocked_by {
        chain.count(client, source);
    }
    true
}

/// Keeps `response` for repeats of the request with this repeat `key`.
fn keep(chain: &Chain, key: &[u8], response: &[u8], keep_for: Duration, blocked_by: Option<SourceId>) {
    let response = Arc::new(Response {
        bytes: Box::from(response),
        blocked_by,
    });
    chain
        .responses
        .kept
        .insert(Box::from(key), response, keep_for, Instant::now());
}

/// The one question a standard query asks, or the response code for a request
/// ncdd does not serve.
fn question(request: &Message) -> Result<&hickory_proto::op::Query, ResponseCode> {
    if request.metadata.op_code != OpCode::Query {
        return Err(ResponseCode::NotImp);
    }
    let [query] = request.queries.as_slice() else {
        return Err(ResponseCode::FormErr);
    };
    if query.query_class() != DNSClass::IN {
        return Err(ResponseCode::Refused);
    }
    Ok(query)
}

/// Encodes `reply` to `request`, its TTLs counted down by `age` seconds: the
/// question echoed, EDNS (and an Extended DNS Error) when the client spoke EDNS,
/// cut to the client's payload size over UDP.
fn encode(request: &Message, reply: &Reply, age: u32, transport: Transport, out: &mut Vec<u8>) {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = reply.rcode;
    metadata.recursion_available = true;

    let edns = request.edns.as_ref().map(|_| {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        if let Some((code, text)) = reply.ede {
            let mut data = code.to_be_bytes().to_vec();
            data.extend_from_slice(text.as_bytes());
            edns.options_mut().insert(EdnsOption::Unknown(EDE_OPTION_CODE, data));
        }
        edns
    });
    let max_size = match transport {
        Transport::Udp => request.edns.as_ref().map_or(PLAIN_UDP_PAYLOAD, |client| {
            client.max_payload().clamp(PLAIN_UDP_PAYLOAD, EDNS_PAYLOAD)
        }),
        Transport::Tcp => u16::MAX,
    };

    // A cached reply is shared: aged copies are made only when time has passed.
    let aged = |records: &[Record]| -> Vec<Record> {
        records
            .iter()
            .map(|record| {
                let mut record = record.clone();
                record.ttl = record.ttl.saturating_sub(age);
                record
            })
            .collect()
    };
    let (answers, authorities);
    let (answers, authorities) = if age == 0 {
        (&reply.answers[..], &reply.authorities[..])
    } else {
        answers = aged(&reply.answers);
        authorities = aged(&reply.authorities);
        (&answers[..], &authorities[..])
    };

    out.clear();
    let mut encoder = BinEncoder::new(out);
    encoder.set_max_size(max_size);
    let emitted = emit_message_parts(
        &metadata,
        &mut request.queries.iter(),
        &mut answers.iter(),
        &mut authorities.iter(),
        &mut std::iter::empty::<&Record>(),
        edns.as_ref(),
        None,
        &mut encoder,
    );
    if let Err(error) = emitted {
        tracing::debug!(%error, "could not encode a response; sending SERVFAIL");
        encode_header_only(&metadata, ResponseCode::ServFail, out);
    }
}

/// A response that is a header alone: to a request too broken to echo, or when
/// encoding the real response failed.
fn encode_header_only(request: &Metadata, rcode: ResponseCode, out: &mut Vec<u8>) {
    let mut metadata = Metadata::response_from_request(request);
    metadata.response_code = rcode;
    metadata.recursion_available = true;
    let header = Header {
        metadata,
        counts: HeaderCounts::default(),
    };
    out.clear();
    // Twelve bytes into a Vec: this cannot fail.
    let _ = header.emit(&mut BinEncoder::new(out));
}
