//! Binding the listeners: UDP and TCP on every `listen` address, the same port for
//! both (port 0 picks one free port for the pair, which the tests use).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};

use super::handler::DnsHandler;

/// How long an idle TCP client may hold a connection.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses queued per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 64;

/// A running DNS server and the addresses it really listens on.
pub struct Listeners {
    pub server: Server<DnsHandler>,
    pub bound: Vec<SocketAddr>,
}

impl std::fmt::Debug for Listeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listeners").field("bound", &self.bound).finish()
    }
}

/// Binds every address for UDP and TCP and starts serving with `handler`.
pub async fn bind(addresses: &[SocketAddr], handler: DnsHandler) -> anyhow::Result<Listeners> {
    let mut server = Server::new(handler);
    let mut bound = Vec::new();
    for &address in addresses {
        let (udp, tcp) = bind_pair(address).await?;
        let local = udp.local_addr()?;
        server.register_socket(udp);
        server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
        bound.push(local);
    }
    Ok(Listeners { server, bound })
}

async fn bind_pair(address: SocketAddr) -> anyhow::Result<(UdpSocket, TcpListener)> {
    let hint = |e: std::io::Error| {
        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied && address.port() < 1024 {
            " (ports below 1024 need root or CAP_NET_BIND_SERVICE; try `ncdd --dev`, which uses 5353)"
        } else if e.kind() == std::io::ErrorKind::AddrInUse {
            " (another DNS server is already there: is ncdd, systemd-resolved or dnsmasq running?)"
        } else {
            ""
        };
        anyhow::anyhow!("cannot listen on {address}: {e}{hint}")
    };
    if address.port() != 0 {
        let udp = UdpSocket::bind(address).await.map_err(hint)?;
        let tcp = TcpListener::bind(address).await.map_err(hint)?;
        return Ok((udp, tcp));
    }
    // Port 0: find one port free for both protocols.
    for _ in 0..20 {
        let udp = UdpSocket::bind(address).await.map_err(hint)?;
        let port_address = udp.local_addr().context("reading the bound UDP address")?;
        if let Ok(tcp) = TcpListener::bind(port_address).await {
            return Ok((udp, tcp));
        }
    }
    bail!("cannot find a port free for both UDP and TCP on {address}")
}
