//! Socket activation (`LISTEN_FDS`, `LISTEN_FDNAMES`, as systemd passes them).
//!
//! With `ncd.socket` the service needs no privilege to use port 53, and the port
//! stays bound across a crash or restart, so queries wait instead of failing over
//! to another resolver. Sockets named `dns` (or unnamed inet sockets) are DNS —
//! UDP or TCP, told apart by their type; the one named `control` is the control
//! socket; those named `proxy` are the companion proxy's TCP listeners (443).

use std::net::{TcpListener, UdpSocket};
use std::os::unix::net::UnixListener;

use anyhow::{Context, bail};

/// The sockets systemd handed over.
#[derive(Debug, Default)]
pub struct Activated {
    pub udp: Vec<UdpSocket>,
    pub tcp: Vec<TcpListener>,
    pub control: Option<UnixListener>,
    /// The companion proxy's listeners.
    pub proxy: Vec<TcpListener>,
}

/// Takes the sockets passed to this process, if any were.
pub fn from_env() -> anyhow::Result<Option<Activated>> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() == 0 {
        return Ok(None);
    }
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|names| names.split(':').map(str::to_string).collect())
        .unwrap_or_default();
    let mut activated = Activated::default();
    for index in 0..fds.len() {
        let name = names.get(index).map_or("dns", String::as_str);
        match name {
            "control" => {
                let listener = fds
                    .take_unix_listener(index)
                    .with_context(|| format!("socket {index} ({name})"))?;
                activated.control = listener;
            }
            "proxy" => match fds.take_tcp_listener(index) {
                Ok(Some(tcp)) => activated.proxy.push(tcp),
                _ => bail!("socket {index} (named proxy) is not a TCP listener"),
            },
            _ => {
                if let Ok(Some(udp)) = fds.take_udp_socket(index) {
                    activated.udp.push(udp);
                } else if let Ok(Some(tcp)) = fds.take_tcp_listener(index) {
                    activated.tcp.push(tcp);
                } else {
                    bail!("socket {index} (named {name:?}) is neither a UDP nor a TCP socket");
                }
            }
        }
    }
    for socket in &activated.udp {
        socket.set_nonblocking(true)?;
    }
    for listener in activated.tcp.iter().chain(&activated.proxy) {
        listener.set_nonblocking(true)?;
    }
    if let Some(control) = &activated.control {
        control.set_nonblocking(true)?;
    }
    Ok(Some(activated))
}
