//! DNS over UDP: a few reader tasks per socket, each with its own buffers, answer
//! whatever needs no upstream inline (blocked names, cache hits, refusals) — no
//! task, no allocation for the datagram. Only a cache miss gets a task of its own,
//! and at most [`MAX_WAITING_FOR_UPSTREAM`] of those exist at once.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::serve::{self, EDNS_PAYLOAD, Step, Transport};
use crate::generation::Generation;

/// Queries waiting for an upstream at once, over all UDP sockets. Past this, new
/// cache misses are dropped (the client retries); blocked names and cache hits are
/// still answered. This bounds memory under a flood of unique names.
pub const MAX_WAITING_FOR_UPSTREAM: usize = 4096;
/// The largest datagram read. Anything longer is not a DNS query ncdd answers,
/// but reading it whole keeps the next datagram aligned.
const MAX_DATAGRAM: usize = 65_535;

/// Starts serving `socket` with one reader per runtime worker.
pub fn spawn(socket: UdpSocket, current: Arc<ArcSwap<Generation>>, waiting: Arc<Semaphore>, tasks: &mut JoinSet<()>) {
    let socket = Arc::new(socket);
    let readers = tokio::runtime::Handle::current().metrics().num_workers().max(1);
    for _ in 0..readers {
        tasks.spawn(serve(socket.clone(), current.clone(), waiting.clone()));
    }
}

async fn serve(socket: Arc<UdpSocket>, current: Arc<ArcSwap<Generation>>, waiting: Arc<Semaphore>) {
    let mut request = vec![0u8; MAX_DATAGRAM];
    let mut response = Vec::with_capacity(usize::from(EDNS_PAYLOAD));
    loop {
        let (len, client) = match socket.recv_from(&mut request).await {
            Ok(received) => received,
            Err(error) => {
                tracing::debug!(%error, "UDP receive failed");
                tokio::task::yield_now().await;
                continue;
            }
        };
        // The generation guard is dropped before any await: a reload never waits on it.
        let step = serve::start(
            &current.load().chain,
            &request[..len],
            client,
            Transport::Udp,
            &mut response,
        );
        match step {
            Step::Reply => send(&socket, &response, client).await,
            Step::Drop => {}
            Step::Upstream(pending) => {
                let Ok(permit) = waiting.clone().try_acquire_owned() else {
                    tracing::debug!("too many queries waiting for an upstream; dropping one");
                    continue;
                };
                let generation = current.load_full();
                let socket = socket.clone();
                tokio::spawn(async move {
                    let mut response = Vec::new();
                    pending.finish(&generation.chain, &mut response).await;
                    send(&socket, &response, client).await;
                    drop(permit);
                });
            }
        }
    }
}

async fn send(socket: &UdpSocket, response: &[u8], client: SocketAddr) {
    if let Err(error) = socket.send_to(response, client).await {
        tracing::debug!(%error, "UDP send failed");
    }
}
