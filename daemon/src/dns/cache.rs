//! The caches: values keyed by whatever identifies them, honouring TTLs, within
//! a capacity. One mechanism serves both of the [`super::Chain`]'s caches: replies
//! by (name, type), and finished responses by the request's bytes.
//!
//! A cache belongs to one chain, built with one policy. A policy change builds a
//! new chain with empty caches, so a new block bites at once without any flush
//! call to forget. Sharded mutexes keep the two cores from queueing on one lock.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hashbrown::HashMap;

const SHARDS: usize = 16;

struct Entry<V> {
    value: V,
    stored: Instant,
    expires: Instant,
}

type Shard<K, V> = Mutex<HashMap<K, Entry<V>, foldhash::fast::FixedState>>;

pub struct Cache<K, V> {
    shards: Vec<Shard<K, V>>,
    per_shard: usize,
}

impl<K, V> std::fmt::Debug for Cache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("capacity", &(self.per_shard * SHARDS))
            .finish()
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Cache<K, V> {
    /// A cache holding about `capacity` values (0 disables it).
    pub fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS);
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::default())).collect(),
            per_shard,
        }
    }

    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> &Shard<K, V> {
        // The map hashes again with the same state; the shard takes other bits.
        let hash = foldhash::fast::FixedState::default().hash_one(key);
        &self.shards[(hash >> 57) as usize % SHARDS]
    }

    /// The value and its age in whole seconds, if still fresh.
    pub fn get<Q>(&self, key: &Q, now: Instant) -> Option<(V, u32)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if self.per_shard == 0 {
            return None;
        }
        let shard = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        let entry = shard.get(key)?;
        if entry.expires <= now {
            return None;
        }
        let age = u32::try_from(now.duration_since(entry.stored).as_secs()).unwrap_or(u32::MAX);
        Some((entry.value.clone(), age))
    }

    /// Keeps `value` for `ttl` from `now`. When full, expired entries go first,
    /// then an eighth of the shard, whichever come first.
    pub fn insert(&self, key: K, value: V, ttl: Duration, now: Instant) {
        if self.per_shard == 0 || ttl.is_zero() {
            return;
        }
        let mut shard = self.shard(&key).lock().unwrap_or_else(|p| p.into_inner());
        if shard.len() >= self.per_shard && !shard.contains_key(&key) {
            shard.retain(|_, e| e.expires > now);
            if shard.len() >= self.per_shard {
                let drop: Vec<K> = shard.keys().take(self.per_shard.div_ceil(8)).cloned().collect();
                for k in drop {
                    shard.remove(&k);
                }
            }
        }
        let expires = now.checked_add(ttl).unwrap_or(now + Duration::from_secs(86_400));
        shard.insert(
            key,
            Entry {
                value,
                stored: now,
                expires,
            },
        );
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map(|s| s.len()).unwrap_or(0)).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::{LowerName, Name, RecordType};

    use super::*;
    use crate::dns::reply::Reply;

    fn name(s: &str) -> LowerName {
        LowerName::from(Name::from_ascii(s).unwrap())
    }

    const TTL: Duration = Duration::from_secs(30);

    #[test]
    fn entries_expire_with_their_ttl() {
        let cache: Cache<(LowerName, RecordType), Arc<Reply>> = Cache::new(100);
        let now = Instant::now();
        let reply = Arc::new(Reply::error(ResponseCode::NoError, None));
        cache.insert((name("a.example."), RecordType::A), reply, TTL, now);
        let (_, age) = cache
            .get(&(name("a.example."), RecordType::A), now + Duration::from_secs(10))
            .unwrap();
        assert_eq!(age, 10);
        assert!(cache.get(&(name("a.example."), RecordType::AAAA), now).is_none());
        assert!(cache.get(&(name("a.example."), RecordType::A), now + TTL).is_none());
    }

    #[test]
    fn stays_within_capacity() {
        let cache: Cache<(LowerName, RecordType), Arc<Reply>> = Cache::new(64);
        let now = Instant::now();
        for i in 0..1000 {
            let reply = Arc::new(Reply::error(ResponseCode::NoError, None));
            cache.insert((name(&format!("h{i}.example.")), RecordType::A), reply, TTL, now);
        }
        assert!(cache.len() <= 64, "{}", cache.len());
    }

    #[test]
    fn byte_keys_are_found_by_slice() {
        let cache: Cache<Box<[u8]>, u8> = Cache::new(16);
        let now = Instant::now();
        cache.insert(Box::from(&b"request"[..]), 7, Duration::from_secs(1), now);
        assert_eq!(cache.get(&b"request"[..], now), Some((7, 0)));
        assert_eq!(cache.get(&b"request"[..], now + Duration::from_secs(1)), None);
    }
}
