//! Telling the service manager how ncdd is: `READY=1` once the listeners serve,
//! `STATUS=` with the day of the period, and `WATCHDOG=1` only after a real query
//! to ncdd's own socket was answered — a stuck daemon is restarted, not trusted.
//! Outside systemd (no `NOTIFY_SOCKET`) every call is a no-op.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use sd_notify::NotifyState;

pub fn ready() {
    let _ = sd_notify::notify(false, &[NotifyState::Ready]);
}

pub fn status(text: &str) {
    let _ = sd_notify::notify(false, &[NotifyState::Status(text)]);
}

pub fn stopping() {
    let _ = sd_notify::notify(false, &[NotifyState::Stopping]);
}

/// The watchdog interval systemd asked for, if any. As sd_watchdog_enabled(3):
/// `WATCHDOG_USEC` gives it; `WATCHDOG_PID`, when set, must be this process.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Pings the watchdog if `dns` answers a query of ncdd's own within a second.
///
/// The query is in the CHAOS class, which ncdd answers itself (REFUSED) whatever
/// the config and the network: it proves the socket is read and answered, and
/// never waits on an upstream. (The Firefox canary it used to ask goes upstream
/// when `[guard] encrypted_dns = false`; offline, that went unanswered, and
/// systemd restarted a healthy ncdd every `WatchdogSec`.)
pub fn ping_if_serving(dns: SocketAddr) -> bool {
    let serving = self_query(dns).unwrap_or(false);
    if serving {
        let _ = sd_notify::notify(false, &[NotifyState::Watchdog]);
    }
    serving
}

fn self_query(dns: SocketAddr) -> std::io::Result<bool> {
    let bind: SocketAddr = if dns.is_ipv4() {
        ([127, 0, 0, 1], 0).into()
    } else {
        "[::1]:0".parse().map_err(std::io::Error::other)?
    };
    let socket = UdpSocket::bind(bind)?;
    socket.set_read_timeout(Some(Duration::from_secs(1)))?;
    let id = rand::random::<u16>();
    let mut query = Message::new(id, MessageType::Query, OpCode::Query);
    let name = Name::from_ascii("ncd-self-check.").map_err(std::io::Error::other)?;
    let mut question = Query::query(name, RecordType::TXT);
    question.set_query_class(DNSClass::CH);
    query.add_query(question);
    let bytes = query.to_vec().map_err(std::io::Error::other)?;
    socket.send_to(&bytes, dns)?;
    let mut buf = [0u8; 512];
    let (len, _) = socket.recv_from(&mut buf)?;
    let answer = Message::from_vec(&buf[..len]).map_err(std::io::Error::other)?;
    Ok(answer.metadata.id == id)
}
