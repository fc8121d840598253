//! DNS over TCP (RFC 7766): messages with a two-byte length prefix, answered in
//! order on each connection.
//!
//! Connections are a bounded resource: at most [`MAX_CONNECTIONS`] at once (one
//! more is closed at accept), and an idle one is closed after [`IDLE`] — after
//! [`IDLE_WHEN_BUSY`] once more than half the slots are taken, so a crowd of idle
//! connections cannot keep real clients out for long.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::timeout;

use super::serve::{self, Transport};
use crate::generation::Generation;

/// TCP connections served at once, over all listeners.
pub const MAX_CONNECTIONS: usize = 256;
/// How long a connection may wait for its next message (or take to send one).
pub const IDLE: Duration = Duration::from_secs(10);
/// The same when more than half the connection slots are taken.
pub const IDLE_WHEN_BUSY: Duration = Duration::from_secs(1);

/// Accepts connections on `listener` for as long as the task lives.
pub async fn serve(listener: TcpListener, current: Arc<ArcSwap<Generation>>, slots: Arc<Semaphore>) {
    loop {
        let (stream, client) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, say: wait a little rather than spin.
                tracing::debug!(%error, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!("all TCP slots taken; closing a new connection");
            continue;
        };
        tokio::spawn(connection(stream, client, current.clone(), slots.clone(), slot));
    }
}

async fn connection(
    mut stream: TcpStream,
    client: SocketAddr,
    current: Arc<ArcSwap<Generation>>,
    slots: Arc<Semaphore>,
    _slot: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let mut request = Vec::new();
    let mut response = Vec::new();
    let mut frame = Vec::new();
    loop {
        let idle = if slots.available_permits() < MAX_CONNECTIONS / 2 {
            IDLE_WHEN_BUSY
        } else {
            IDLE
        };
        let Ok(Ok(len)) = timeout(idle, stream.read_u16()).await else {
            return;
        };
        request.resize(usize::from(len), 0);
        if !matches!(timeout(IDLE, stream.read_exact(&mut request)).await, Ok(Ok(_))) {
            return;
        }
        let generation = current.load_full();
        if !serve::respond(&generation.chain, &request, client, Transport::Tcp, &mut response).await {
            continue;
        }
        // The encoder's limit over TCP is u16::MAX, so the length always fits.
        let Ok(len) = u16::try_from(response.len()) else {
            return;
        };
        frame.clear();
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(&response);
        if !matches!(timeout(IDLE, stream.write_all(&frame)).await, Ok(Ok(()))) {
            return;
        }
    }
}
