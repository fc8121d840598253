//! Binding the listeners: UDP and TCP on every `listen` address, the same port for
//! both (port 0 picks one free port for the pair, which the tests use).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use arc_swap::ArcSwap;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{tcp, udp};
use crate::generation::Generation;

/// The running DNS listeners and the addresses they really listen on.
#[derive(Debug)]
pub struct Listeners {
    pub bound: Vec<SocketAddr>,
    tasks: JoinSet<()>,
}

impl Listeners {
    /// Stops receiving and accepting. Queries already waiting for an upstream are
    /// left to finish with the runtime.
    pub async fn shutdown(mut self) {
        self.tasks.shutdown().await;
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

/// Binds (or adopts) the sockets and starts serving whatever chain is current. A
/// socket that is not on loopback is refused unless `lan_clients` (some
/// `allow_clients` are configured): ncdd is never an open resolver by accident.
pub async fn bind(sockets: Sockets, lan_clients: bool, current: Arc<ArcSwap<Generation>>) -> anyhow::Result<Listeners> {
    let mut udp_sockets = Vec::new();
    let mut tcp_listeners = Vec::new();
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
                bound.push(udp.local_addr()?);
                udp_sockets.push(udp);
                tcp_listeners.push(tcp);
            }
        }
        Sockets::Inherited { udp, tcp } => {
            for socket in udp {
                let local = socket.local_addr()?;
                check(local)?;
                udp_sockets.push(UdpSocket::from_std(socket)?);
                bound.push(local);
            }
            for listener in tcp {
                check(listener.local_addr()?)?;
                tcp_listeners.push(TcpListener::from_std(listener)?);
            }
        }
    }
    // Limits shared by every socket: they bound the whole daemon, not each socket.
    let waiting = Arc::new(Semaphore::new(udp::MAX_WAITING_FOR_UPSTREAM));
    let slots = Arc::new(Semaphore::new(tcp::MAX_CONNECTIONS));
    let mut tasks = JoinSet::new();
    for socket in udp_sockets {
        udp::spawn(socket, current.clone(), waiting.clone(), &mut tasks);
    }
    for listener in tcp_listeners {
        tasks.spawn(tcp::serve(listener, current.clone(), slots.clone()));
    }
    Ok(Listeners { bound, tasks })
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
