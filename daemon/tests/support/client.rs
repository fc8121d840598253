//! A small DNS client: builds a query with hickory-proto (with an EDNS OPT record,
//! so an Extended DNS Error can come back), sends it over UDP or TCP, and gives
//! the parts of the answer the tests look at.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// How long the client waits for an answer before giving up.
pub(crate) const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// The EDNS option code of Extended DNS Errors (RFC 8914).
const EDE_OPTION: u16 = 15;

/// A parsed response, with the helpers the tests use.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub message: Message,
}

impl Answer {
    pub(crate) fn rcode(&self) -> ResponseCode {
        self.message.metadata.response_code
    }

    pub(crate) fn answers(&self) -> &[Record] {
        &self.message.answers
    }

    pub(crate) fn authorities(&self) -> &[Record] {
        &self.message.authorities
    }

    /// The info-code of the Extended DNS Error, if there is one.
    pub(crate) fn ede(&self) -> Option<u16> {
        let edns = self.message.edns.as_ref()?;
        edns.options().options.iter().find_map(|(_, option)| match option {
            EdnsOption::Unknown(EDE_OPTION, data) if data.len() >= 2 => Some(u16::from_be_bytes([data[0], data[1]])),
            _ => None,
        })
    }

    /// The IPv4 addresses in the answer section.
    pub(crate) fn ipv4(&self) -> Vec<Ipv4Addr> {
        self.answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect()
    }

    /// The IPv6 addresses in the answer section.
    pub(crate) fn ipv6(&self) -> Vec<Ipv6Addr> {
        self.answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::AAAA(a) => Some(a.0),
                _ => None,
            })
            .collect()
    }

    /// The SOA record of the authority section (owner TTL, data), if any.
    pub(crate) fn soa(&self) -> Option<(u32, &SOA)> {
        self.authorities().iter().find_map(|r| match &r.data {
            RData::SOA(soa) => Some((r.ttl, soa)),
            _ => None,
        })
    }

    /// True when ncdd says it blocked the name (EDE 15, "Blocked").
    pub(crate) fn is_blocked(&self) -> bool {
        self.ede() == Some(15)
    }

    /// True when the answer is the fake upstream's: not blocked, and either records
    /// or the upstream's own SOA.
    pub(crate) fn is_from_fake_upstream(&self) -> bool {
        let fake_soa = self
            .soa()
            .is_some_and(|(_, soa)| soa.mname.to_ascii() == super::upstream::FAKE_SOA_MNAME);
        !self.is_blocked() && (!self.answers().is_empty() || fake_soa)
    }
}

/// A recursive query for `name`/`rtype` with EDNS (payload 1232).
pub(crate) fn build_query(name: &str, rtype: RecordType) -> Message {
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(qname(name), rtype));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    message.set_edns(edns);
    message
}

/// The name as given (case kept), fully qualified.
fn qname(text: &str) -> Name {
    let mut name = Name::from_ascii(text).unwrap_or_else(|e| panic!("bad query name {text:?}: {e}"));
    name.set_fqdn(true);
    name
}

/// Sends `message` over UDP and waits for the answer with the same id.
pub(crate) fn exchange_udp(server: SocketAddr, message: &Message, timeout: Duration) -> std::io::Result<Message> {
    let bind: SocketAddr = match server.ip() {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(bind)?;
    socket.connect(server)?;
    socket.send(&message.to_vec().map_err(std::io::Error::other)?)?;
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65_535];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no UDP answer"));
        }
        socket.set_read_timeout(Some(left))?;
        let len = socket.recv(&mut buf)?;
        let response = Message::from_vec(&buf[..len]).map_err(std::io::Error::other)?;
        if response.metadata.id == message.metadata.id {
            return Ok(response);
        }
    }
}

/// Sends `message` over TCP with the 2-byte length prefix (RFC 1035 §4.2.2).
pub(crate) fn exchange_tcp(server: SocketAddr, message: &Message, timeout: Duration) -> std::io::Result<Message> {
    let mut stream = TcpStream::connect_timeout(&server, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let bytes = message.to_vec().map_err(std::io::Error::other)?;
    let len = u16::try_from(bytes.len()).map_err(std::io::Error::other)?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    stream.write_all(&framed)?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len)?;
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut body)?;
    Message::from_vec(&body).map_err(std::io::Error::other)
}

/// Asks `server` over UDP; panics when no answer comes within [`CLIENT_TIMEOUT`].
pub(crate) fn query_udp(server: SocketAddr, name: &str, rtype: RecordType) -> Answer {
    let message = build_query(name, rtype);
    match exchange_udp(server, &message, CLIENT_TIMEOUT) {
        Ok(message) => Answer { message },
        Err(error) => panic!("UDP query {name} {rtype} to {server}: {error}"),
    }
}

/// Asks `server` over TCP; panics when no answer comes within [`CLIENT_TIMEOUT`].
pub(crate) fn query_tcp(server: SocketAddr, name: &str, rtype: RecordType) -> Answer {
    let message = build_query(name, rtype);
    match exchange_tcp(server, &message, CLIENT_TIMEOUT) {
        Ok(message) => Answer { message },
        Err(error) => panic!("TCP query {name} {rtype} to {server}: {error}"),
    }
}

/// `A` over UDP.
pub(crate) fn a(server: SocketAddr, name: &str) -> Answer {
    query_udp(server, name, RecordType::A)
}

/// Runs the real `dig` against `server` with extra arguments; returns its stdout.
pub(crate) fn dig(server: SocketAddr, args: &[&str]) -> String {
    let output = std::process::Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "+time=3", "+tries=1"])
        .args(args)
        .output()
        .expect("run dig (is it installed at /usr/bin/dig?)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}
