//! The per-client query budget of LAN mode: each client other than loopback may
//! send `limit` queries in a second; the rest of that second is dropped unanswered
//! (an answer, even REFUSED, would still feed a reflection attack).
//!
//! Memory is bounded: clients quiet for a second are forgotten when a shard fills,
//! and when a shard is full of clients active this very second (a flood from many
//! spoofed sources), new clients are dropped until the second turns.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

const SHARDS: usize = 16;
/// Clients tracked per shard: 64k in all, a few MiB at most.
const CLIENTS_PER_SHARD: usize = 4096;

#[derive(Debug)]
pub struct RateLimit {
    limit: u32,
    epoch: Instant,
    hasher: RandomState,
    shards: Box<[Mutex<HashMap<IpAddr, Window>>]>,
}

/// One client's count in one second.
#[derive(Debug, Clone, Copy)]
struct Window {
    second: u64,
    count: u32,
}

impl RateLimit {
    /// A limit of `limit` queries per second per client; `None` for 0 (no limit).
    pub fn new(limit: u32) -> Option<Self> {
        (limit > 0).then(|| Self {
            limit,
            epoch: Instant::now(),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        })
    }

    /// Counts one query from `client` at `now`; false when it is over the limit.
    pub fn admit(&self, client: IpAddr, now: Instant) -> bool {
        let second = now.saturating_duration_since(self.epoch).as_secs();
        let shard = &self.shards[self.hasher.hash_one(client) as usize % SHARDS];
        let mut clients = shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if clients.len() >= CLIENTS_PER_SHARD && !clients.contains_key(&client) {
            clients.retain(|_, window| window.second == second);
            if clients.len() >= CLIENTS_PER_SHARD {
                return false;
            }
        }
        let window = clients.entry(client).or_insert(Window { second, count: 0 });
        if window.second != second {
            *window = Window { second, count: 0 };
        }
        window.count = window.count.saturating_add(1);
        window.count <= self.limit
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn each_client_gets_its_own_budget_per_second() {
        let limit = RateLimit::new(3).unwrap();
        let now = Instant::now();
        let noisy: IpAddr = "192.168.1.10".parse().unwrap();
        let quiet: IpAddr = "192.168.1.11".parse().unwrap();
        let admitted = (0..10).filter(|_| limit.admit(noisy, now)).count();
        assert_eq!(admitted, 3);
        assert!(limit.admit(quiet, now), "another client is not starved");
        assert!(
            limit.admit(noisy, now + Duration::from_secs(1)),
            "the next second starts afresh"
        );
    }

    #[test]
    fn zero_means_no_limit() {
        assert!(RateLimit::new(0).is_none());
    }

    #[test]
    fn memory_stays_bounded_under_many_sources() {
        let limit = RateLimit::new(10).unwrap();
        let now = Instant::now();
        for i in 0..(SHARDS * CLIENTS_PER_SHARD * 2) as u32 {
            limit.admit(IpAddr::from((0x0a00_0000 + i).to_be_bytes()), now);
        }
        let tracked: usize = limit.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(tracked <= SHARDS * CLIENTS_PER_SHARD);
        // A second later the quiet ones are forgotten and new clients get in.
        assert!(limit.admit("10.200.0.1".parse().unwrap(), now + Duration::from_secs(1)));
    }
}
