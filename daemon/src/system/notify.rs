//! Telling the service manager how ncdd is: `READY=1` once the listeners serve,
//! `STATUS=` with the day of the period, and `WATCHDOG=1` only after a real query
//! to ncdd's own socket was answered — a stuck daemon is restarted, not trusted.
//! Outside systemd (no `NOTIFY_SOCKET`) every call is a no-op.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
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

/// Pings the watchdog if `dns` answers a query for the Firefox canary (a name
/// ncdd answers itself, without any upstream) within a second.
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
    let name = Name::from_ascii("ncd-self-check.use-application-dns.net.").map_err(std::io::Error::other)?;
    query.add_query(Query::query(name, RecordType::A));
    let bytes = query.to_vec().map_err(std::io::Error::other)?;
    socket.send_to(&bytes, dns)?;
    let mut buf = [0u8; 512];
    let (len, _) = socket.recv_from(&mut buf)?;
    let answer = Message::from_vec(&buf[..len]).map_err(std::io::Error::other)?;
    Ok(answer.metadata.id == id)
}
