//! Load for the flood tests: a UDP flood generator paced to a target rate, idle
//! TCP connections, and what `/proc` says about a process (memory, open files).
//!
//! The flood mixes valid queries (blocked names, allowed names, names unknown
//! upstream) with every kind of bad packet a resolver meets: random bytes, cut
//! queries, oversized datagrams, other opcodes and classes, odd EDNS, no or two
//! questions, responses sent as queries, zone transfers over UDP. Every message
//! is built with hickory-proto; only the garbage is raw bytes.

// Each test binary uses its own part of the shared harness.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{DNSClass, Name, RecordType};

/// The kinds of packet in the flood, with their share (out of 100).
pub(crate) const MIX: &[(Kind, u32)] = &[
    (Kind::Blocked, 30),
    (Kind::Allowed, 20),
    (Kind::Unknown, 5),
    (Kind::RandomBytes, 10),
    (Kind::Truncated, 5),
    (Kind::Oversized, 3),
    (Kind::OtherOpcode, 5),
    (Kind::OtherClass, 5),
    (Kind::OddEdns, 7),
    (Kind::QuestionCount, 5),
    (Kind::Response, 3),
    (Kind::Transfer, 2),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A query for a blocked name (or a random name under one).
    Blocked,
    /// A query for a name the upstream knows (answered from the cache after the first).
    Allowed,
    /// A query for a random name under an allowed domain: a cache miss, upstream NXDOMAIN.
    Unknown,
    /// 0–600 random bytes (including the empty datagram).
    RandomBytes,
    /// A valid query cut short.
    Truncated,
    /// A valid query followed by kilobytes of noise (up to the largest UDP datagram).
    Oversized,
    /// STATUS, NOTIFY, UPDATE or an unassigned opcode.
    OtherOpcode,
    /// CHAOS (`version.bind`), HESIOD, NONE or ANY class.
    OtherClass,
    /// EDNS version 1, payload 0 or 65535, the DO bit, unknown and oversized options.
    OddEdns,
    /// No question, or two.
    QuestionCount,
    /// A message with the response bit set (must never be answered: no loops).
    Response,
    /// AXFR/IXFR over UDP.
    Transfer,
}

/// What to send, where, how fast and for how long.
#[derive(Debug, Clone)]
pub(crate) struct FloodPlan {
    pub target: SocketAddr,
    /// Packets per second, all threads together.
    pub rate: u64,
    pub duration: Duration,
    /// Sending threads (each with its own socket and a thread reading the answers).
    pub threads: usize,
    /// Blocked names (random labels are put in front of some of them).
    pub blocked: Vec<String>,
    /// Allowed names the upstream answers.
    pub allowed: Vec<String>,
    /// A domain under which random names are asked (the upstream says NXDOMAIN).
    pub unknown_under: String,
}

/// What a flood did.
#[derive(Debug, Clone, Default)]
pub(crate) struct FloodReport {
    pub sent: u64,
    /// Sends the kernel refused (a full socket buffer, …); not counted in `sent`.
    pub send_errors: u64,
    /// Datagrams that came back.
    pub answers: u64,
    pub elapsed: Duration,
}

impl FloodReport {
    /// Packets per second actually sent.
    pub(crate) fn rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Answers per second received.
    pub(crate) fn answer_rate(&self) -> f64 {
        self.answers as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Sends the flood and returns what was sent and answered. Each thread sends from
/// its own loopback address (127.0.0.1, .2, …), so the flood comes from several
/// clients, and paces itself to its share of the rate.
pub(crate) fn flood(plan: &FloodPlan) -> FloodReport {
    let threads = plan.threads.max(1);
    let share = (plan.rate / threads as u64).max(1);
    let stop_reading = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(AtomicU64::new(0));
    // The packets are made before the clock starts.
    let mut pools: Vec<Vec<Vec<u8>>> = (0..threads).map(|_| packet_pool(plan, 4096)).collect();
    let start = Arc::new(std::sync::Barrier::new(threads + 1));
    let mut senders = Vec::new();
    let mut readers = Vec::new();
    for t in 0..threads {
        let source = format!("127.0.0.{}:0", 1 + t % 250);
        let socket = UdpSocket::bind(&source)
            .or_else(|_| UdpSocket::bind("127.0.0.1:0"))
            .expect("bind a flood socket");
        let reader = socket.try_clone().expect("clone the flood socket");
        reader
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        let (stop, answers) = (stop_reading.clone(), answers.clone());
        readers.push(std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !stop.load(Ordering::Relaxed) {
                if reader.recv(&mut buf).is_ok() {
                    answers.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
        let packets = pools.pop().expect("one pool per thread");
        let (target, duration, start) = (plan.target, plan.duration, start.clone());
        senders.push(std::thread::spawn(move || {
            start.wait();
            send_paced(&socket, target, &packets, share, duration)
        }));
    }
    start.wait();
    let started = Instant::now();
    let mut report = FloodReport::default();
    for sender in senders {
        let (sent, errors) = sender.join().expect("a flood thread panicked");
        report.sent += sent;
        report.send_errors += errors;
    }
    report.elapsed = started.elapsed();
    // Late answers still count: give them a moment, then stop reading.
    std::thread::sleep(Duration::from_millis(300));
    stop_reading.store(true, Ordering::Relaxed);
    for reader in readers {
        let _ = reader.join();
    }
    report.answers = answers.load(Ordering::Relaxed);
    report
}

/// Sends `packets` round and round at `rate` per second for `duration`; returns
/// (sent, failed sends).
fn send_paced(
    socket: &UdpSocket,
    target: SocketAddr,
    packets: &[Vec<u8>],
    rate: u64,
    duration: Duration,
) -> (u64, u64) {
    const BATCH: u64 = 32;
    let started = Instant::now();
    let (mut sent, mut errors) = (0u64, 0u64);
    let mut next = 0usize;
    loop {
        let elapsed = started.elapsed();
        if elapsed >= duration {
            break;
        }
        let due = (elapsed.as_secs_f64() * rate as f64) as u64;
        if sent + errors >= due + BATCH {
            // Ahead of the schedule: wait for it to catch up.
            let ahead = (sent + errors - due) as f64 / rate as f64;
            std::thread::sleep(Duration::from_secs_f64(ahead.min(0.01)));
            continue;
        }
        for _ in 0..BATCH {
            match socket.send_to(&packets[next], target) {
                Ok(_) => sent += 1,
                Err(_) => errors += 1,
            }
            next = (next + 1) % packets.len();
        }
    }
    (sent, errors)
}

/// `count` packets drawn from [`MIX`].
pub(crate) fn packet_pool(plan: &FloodPlan, count: usize) -> Vec<Vec<u8>> {
    let total: u32 = MIX.iter().map(|(_, share)| share).sum();
    (0..count)
        .map(|_| {
            let mut pick = rand::random_range(0..total);
            let kind = MIX
                .iter()
                .find(|(_, share)| {
                    if pick < *share {
                        true
                    } else {
                        pick -= share;
                        false
                    }
                })
                .map_or(Kind::RandomBytes, |(kind, _)| *kind);
            packet(plan, kind)
        })
        .collect()
}

/// One packet of `kind`.
pub(crate) fn packet(plan: &FloodPlan, kind: Kind) -> Vec<u8> {
    let pick = |names: &[String]| names[rand::random_range(0..names.len())].clone();
    let label = || format!("r{:08x}", rand::random::<u32>());
    match kind {
        Kind::Blocked => {
            let name = pick(&plan.blocked);
            let name = if rand::random_bool(0.5) {
                name
            } else {
                format!("{}.{name}", label())
            };
            encode(&query(&name, random_type(), true))
        }
        Kind::Allowed => encode(&query(&pick(&plan.allowed), RecordType::A, rand::random_bool(0.5))),
        Kind::Unknown => encode(&query(
            &format!("{}.{}", label(), plan.unknown_under),
            RecordType::A,
            true,
        )),
        Kind::RandomBytes => random_bytes(rand::random_range(0..600)),
        Kind::Truncated => {
            let mut bytes = encode(&query(&pick(&plan.blocked), RecordType::A, true));
            bytes.truncate(rand::random_range(1..bytes.len()));
            bytes
        }
        Kind::Oversized => {
            let mut bytes = encode(&query(&pick(&plan.allowed), RecordType::A, true));
            let noise = if rand::random_ratio(1, 20) {
                65_507 - bytes.len()
            } else {
                rand::random_range(1_000..9_000)
            };
            bytes.extend(random_bytes(noise));
            bytes
        }
        Kind::OtherOpcode => {
            let mut message = query(&pick(&plan.blocked), RecordType::A, true);
            message.metadata.op_code =
                [OpCode::Status, OpCode::Notify, OpCode::Update, OpCode::Unknown(7)][rand::random_range(0..4)];
            encode(&message)
        }
        Kind::OtherClass => {
            let (name, rtype) = if rand::random_bool(0.5) {
                ("version.bind".to_string(), RecordType::TXT)
            } else {
                (pick(&plan.blocked), RecordType::A)
            };
            let class = [DNSClass::CH, DNSClass::HS, DNSClass::NONE, DNSClass::ANY][rand::random_range(0..4)];
            let mut message = Message::query();
            message.metadata.id = rand::random();
            message.metadata.recursion_desired = true;
            let mut q = Query::query(fqdn(&name), rtype);
            q.set_query_class(class);
            message.add_query(q);
            encode(&message)
        }
        Kind::OddEdns => {
            let mut message = query(&pick(&plan.blocked), RecordType::A, false);
            let mut edns = Edns::new();
            match rand::random_range(0..5) {
                0 => {
                    edns.set_version(1);
                }
                1 => {
                    edns.set_max_payload(0);
                }
                2 => {
                    edns.set_max_payload(65_535).set_dnssec_ok(true);
                }
                3 => edns
                    .options_mut()
                    .insert(EdnsOption::Unknown(65_001, random_bytes(rand::random_range(0..64)))),
                _ => edns
                    .options_mut()
                    .insert(EdnsOption::Unknown(65_002, random_bytes(1_400))),
            }
            message.set_edns(edns);
            encode(&message)
        }
        Kind::QuestionCount => {
            let mut message = Message::query();
            message.metadata.id = rand::random();
            message.metadata.recursion_desired = true;
            if rand::random_bool(0.5) {
                message.add_query(Query::query(fqdn(&pick(&plan.blocked)), RecordType::A));
                message.add_query(Query::query(fqdn(&pick(&plan.allowed)), RecordType::A));
            }
            encode(&message)
        }
        Kind::Response => {
            let mut message = query(&pick(&plan.allowed), RecordType::A, true);
            message.metadata.message_type = MessageType::Response;
            encode(&message)
        }
        Kind::Transfer => {
            let rtype = if rand::random_bool(0.5) {
                RecordType::AXFR
            } else {
                RecordType::IXFR
            };
            encode(&query(&pick(&plan.allowed), rtype, false))
        }
    }
}

fn random_type() -> RecordType {
    [
        RecordType::A,
        RecordType::AAAA,
        RecordType::HTTPS,
        RecordType::TXT,
        RecordType::MX,
        RecordType::ANY,
    ][rand::random_range(0..6)]
}

/// A recursive query with a random id, with or without EDNS.
fn query(name: &str, rtype: RecordType, edns: bool) -> Message {
    let mut message = Message::query();
    message.metadata.id = rand::random();
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(fqdn(name), rtype));
    if edns {
        let mut opt = Edns::new();
        opt.set_max_payload(1232);
        message.set_edns(opt);
    }
    message
}

fn fqdn(text: &str) -> Name {
    let mut name = Name::from_ascii(text).unwrap_or_else(|e| panic!("bad flood name {text:?}: {e}"));
    name.set_fqdn(true);
    name
}

fn encode(message: &Message) -> Vec<u8> {
    message.to_vec().expect("encode a flood message")
}

fn random_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|_| rand::random::<u8>()).collect()
}

// ----- Idle TCP connections ----------------------------------------------------------

/// TCP connections opened and then left idle (some after half a length prefix),
/// as a slow or hostile client leaves them.
#[derive(Debug)]
pub(crate) struct IdleTcp {
    pub streams: Vec<TcpStream>,
    /// Connections that could not even be opened.
    pub failed: usize,
}

impl IdleTcp {
    /// Opens `count` connections to `target` (each with a short connect timeout).
    pub(crate) fn open(target: SocketAddr, count: usize) -> Self {
        use std::io::Write;
        let mut streams = Vec::with_capacity(count);
        let mut failed = 0;
        for i in 0..count {
            match TcpStream::connect_timeout(&target, Duration::from_secs(2)) {
                Ok(mut stream) => {
                    if i % 2 == 1 {
                        // One byte of the two-byte length prefix, and then nothing.
                        let _ = stream.write_all(&[0]);
                    }
                    streams.push(stream);
                }
                Err(_) => failed += 1,
            }
        }
        Self { streams, failed }
    }

    /// How many of the connections the server has closed (EOF or reset on a
    /// non-blocking read).
    pub(crate) fn closed_by_server(&self) -> usize {
        use std::io::Read;
        self.streams
            .iter()
            .filter(|stream| {
                let _ = stream.set_nonblocking(true);
                let mut buf = [0u8; 512];
                let mut s: &TcpStream = stream;
                let closed = match s.read(&mut buf) {
                    Ok(0) => true,
                    Ok(_) => false,
                    Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                };
                let _ = stream.set_nonblocking(false);
                closed
            })
            .count()
    }
}

// ----- /proc ---------------------------------------------------------------------------

/// A process's memory, from `/proc/PID/status`, in KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Memory {
    /// Resident now (VmRSS).
    pub rss_kib: u64,
    /// The most it was ever resident (VmHWM).
    pub peak_kib: u64,
}

/// The memory of `pid`, or `None` when it is gone.
pub(crate) fn memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        peak_kib: field("VmHWM:")?,
    })
}

/// How many files `pid` has open, or `None` when it is gone.
pub(crate) fn open_files(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd")).ok().map(Iterator::count)
}

/// Samples the resident memory of a process every 50 ms on a thread, until dropped
/// or [`RssSampler::stop`]ped; keeps the highest sample.
#[derive(Debug)]
pub(crate) struct RssSampler {
    stop: Arc<AtomicBool>,
    highest: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    pub(crate) fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let highest = Arc::new(AtomicU64::new(0));
        let (s, h) = (stop.clone(), highest.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(m) = memory(pid) {
                    h.fetch_max(m.rss_kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Self {
            stop,
            highest,
            thread: Some(thread),
        }
    }

    /// Stops sampling; returns the highest resident size seen, in KiB.
    pub(crate) fn stop(mut self) -> u64 {
        self.finish();
        self.highest.load(Ordering::Relaxed)
    }

    fn finish(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Sets the soft limit of open files of process `pid` to `soft` (at most its hard
/// limit, which stays); returns the old soft limit. Our own children are fine.
pub(crate) fn set_open_files_limit(pid: u32, soft: u64) -> std::io::Result<u64> {
    use rustix::process::{Pid, Resource, Rlimit, prlimit};
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits"))?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .ok_or_else(|| std::io::Error::other("no open-files line in /proc/PID/limits"))?;
    let fields: Vec<&str> = line["Max open files".len()..].split_whitespace().collect();
    let parse = |text: &str| text.parse::<u64>().ok();
    let (old_soft, hard) = (
        fields.first().and_then(|t| parse(t)),
        fields.get(1).and_then(|t| parse(t)),
    );
    let soft = hard.map_or(soft, |hard| soft.min(hard));
    let pid = Pid::from_raw(i32::try_from(pid).map_err(std::io::Error::other)?);
    prlimit(
        pid,
        Resource::Nofile,
        Rlimit {
            current: Some(soft),
            maximum: hard,
        },
    )?;
    Ok(old_soft.unwrap_or(u64::MAX))
}
