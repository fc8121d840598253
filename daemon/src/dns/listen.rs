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

/// Where the DNS sockets come from.
#[derive(Debug)]
pub enum Sockets {
    /// Bind these addresses, UDP and TCP each.
    Bind(Vec<SocketAddr>),
    /// Sockets handed over by the service manager.
    Inherited {
        udp: Vec<std::net::UdpSocket>,
        tcp: Vec<std::net::TcpListener>,
    },
}

/// Binds (or adopts) the sockets and starts serving with `handler`. A socket that
/// is not on loopback is refused unless `lan_clients` (some `allow_clients` are
/// configured): ncdd is never an open resolver by accident.
pub async fn bind(sockets: Sockets, lan_clients: bool, handler: DnsHandler) -> anyhow::Result<Listeners> {
    let mut server = Server::new(handler);
    let mut bound = Vec::new();
    let check = |address: SocketAddr| {
        if address.ip().is_loopback() || lan_clients {
            Ok(())
        } else {
            Err(anyhow::anyhow!(
                "refusing to serve DNS on {address}: it is not loopback, and [dns] allow_clients is empty \
                 (that would make ncdd an open resolver; list the networks that may use it)"
            ))
        }
    };
    match sockets {
        Sockets::Bind(addresses) => {
            for address in addresses {
                check(address)?;
                let (udp, tcp) = bind_pair(address).await?;
                let local = udp.local_addr()?;
                server.register_socket(udp);
                server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
                bound.push(local);
            }
        }
        Sockets::Inherited { udp, tcp } => {
            for socket in udp {
                let local = socket.local_addr()?;
                check(local)?;
                server.register_socket(UdpSocket::from_std(socket)?);
                bound.push(local);
            }
            for listener in tcp {
                check(listener.local_addr()?)?;
                server.register_listener(TcpListener::from_std(listener)?, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
            }
        }
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
