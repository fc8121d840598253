//! The answer cache: finished replies keyed by (name, type), honouring TTLs.
//!
//! A cache belongs to one [`super::Chain`], built with one policy. A policy change
//! builds a new chain with an empty cache, so a new block bites at once without any
//! flush call to forget. Sharded mutexes keep the two cores from queueing on one lock.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use hickory_proto::rr::{LowerName, RecordType};

use super::reply::Reply;

const SHARDS: usize = 16;

type Key = (LowerName, RecordType);

struct Entry {
    reply: Arc<Reply>,
    stored: Instant,
    expires: Instant,
}

pub struct Cache {
    shards: Vec<Mutex<HashMap<Key, Entry, foldhash::fast::RandomState>>>,
    per_shard: usize,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("capacity", &(self.per_shard * SHARDS))
            .finish()
    }
}

impl Cache {
    /// A cache holding about `capacity` replies (0 disables it).
    pub fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS);
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::default())).collect(),
            per_shard,
        }
    }

    fn shard(&self, key: &Key) -> &Mutex<HashMap<Key, Entry, foldhash::fast::RandomState>> {
        use std::hash::BuildHasher;
        &self.shards[foldhash::fast::FixedState::default().hash_one(key) as usize % SHARDS]
    }

    /// The cached reply and its age in whole seconds, if still fresh.
    pub fn get(&self, name: &LowerName, rtype: RecordType, now: Instant) -> Option<(Arc<Reply>, u32)> {
        if self.per_shard == 0 {
            return None;
        }
        let key = (name.clone(), rtype);
        let shard = self.shard(&key).lock().unwrap_or_else(|p| p.into_inner());
        let entry = shard.get(&key)?;
        if entry.expires <= now {
            return None;
        }
        let age = u32::try_from(now.duration_since(entry.stored).as_secs()).unwrap_or(u32::MAX);
        Some((entry.reply.clone(), age))
    }

    pub fn insert(&self, name: LowerName, rtype: RecordType, reply: Arc<Reply>, ttl: u32, now: Instant) {
        if self.per_shard == 0 || ttl == 0 {
            return;
        }
        let key = (name, rtype);
        let mut shard = self.shard(&key).lock().unwrap_or_else(|p| p.into_inner());
        if shard.len() >= self.per_shard && !shard.contains_key(&key) {
            shard.retain(|_, e| e.expires > now);
            // Still full of live answers: drop an eighth, whichever come first.
            if shard.len() >= self.per_shard {
                let drop: Vec<Key> = shard.keys().take(self.per_shard.div_ceil(8)).cloned().collect();
                for k in drop {
                    shard.remove(&k);
                }
            }
        }
        let expires = now + Duration::from_secs(u64::from(ttl));
        shard.insert(
            key,
            Entry {
                reply,
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
    use super::*;
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::Name;

    fn name(s: &str) -> LowerName {
        LowerName::from(Name::from_ascii(s).unwrap())
    }

    #[test]
    fn entries_expire_with_their_ttl() {
        let cache = Cache::new(100);
        let now = Instant::now();
        let reply = Arc::new(Reply::error(ResponseCode::NoError, None));
        cache.insert(name("a.example."), RecordType::A, reply, 30, now);
        let (_, age) = cache
            .get(&name("a.example."), RecordType::A, now + Duration::from_secs(10))
            .unwrap();
        assert_eq!(age, 10);
        assert!(cache.get(&name("a.example."), RecordType::AAAA, now).is_none());
        assert!(
            cache
                .get(&name("a.example."), RecordType::A, now + Duration::from_secs(30))
                .is_none()
        );
    }

    #[test]
    fn stays_within_capacity() {
        let cache = Cache::new(64);
        let now = Instant::now();
        for i in 0..1000 {
            let reply = Arc::new(Reply::error(ResponseCode::NoError, None));
            cache.insert(name(&format!("h{i}.example.")), RecordType::A, reply, 300, now);
        }
        assert!(cache.len() <= 64, "{}", cache.len());
    }
}
