//! The urge ledger: blocked attempts per service per day, and the hours they come.
//!
//! An attempt is what a person did, not what their devices did: opening an app
//! fires dozens of lookups in a second, and apps retry in the background. So
//! lookups from one client for one service count once per [`BURST_WINDOW_SECS`]
//! (the first lookup opens the window; lookups inside it are the same attempt).
//! This machine is one device however it asks: 127.0.0.1, ::1 and any other
//! loopback address (resolved asks both families) are one client.
//! Encrypted-DNS guard hits are browser plumbing, not urges, and are not counted.
//! No query names or client addresses are stored: only counts.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use chrono::{Local, NaiveDate, Timelike};
use ncd_config::control::BlockedStatus;
use serde::{Deserialize, Serialize};

use ncd_state::{StateDir, write_atomically};

/// Lookups from one client for one service within this many seconds are one attempt.
pub const BURST_WINDOW_SECS: u64 = 300;
/// Days of history kept.
const KEEP_DAYS: usize = 60;
/// Dedup slots: a collision only risks counting one attempt twice.
const SLOTS: usize = 4096;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Day {
    total: u64,
    by_service: BTreeMap<String, u64>,
    by_hour: [u64; 24],
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Days(BTreeMap<NaiveDate, Day>);

pub struct Ledger {
    path: PathBuf,
    days: Mutex<Days>,
    /// Per slot: the key's hash (high 32 bits) and when its window opened (low 32 bits, Unix seconds).
    recent: Vec<AtomicU64>,
    hasher: foldhash::fast::RandomState,
    dirty: AtomicBool,
    /// The last save failed (a full disk, a read-only state dir): logged once.
    failing: AtomicBool,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("path", &self.path).finish()
    }
}

impl Ledger {
    /// Opens the ledger kept in `state_dir` (a damaged file starts a new one: these
    /// are counts, not the commitment).
    pub fn open(state_dir: &StateDir) -> Self {
        let path = state_dir.stats();
        let days = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Self {
            path,
            days: Mutex::new(days),
            recent: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            hasher: foldhash::fast::RandomState::default(),
            dirty: AtomicBool::new(false),
            failing: AtomicBool::new(false),
        }
    }

    /// Counts a blocked lookup from `client` for `service`, unless it belongs to an
    /// attempt already counted.
    pub fn record(&self, client: IpAddr, service: &str) {
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        let key = self.hasher.hash_one((device(client), service));
        let slot = &self.recent[(key as usize) % SLOTS];
        let tag = key >> 32;
        let seen = slot.load(Ordering::Relaxed);
        if seen >> 32 == tag && now.saturating_sub(seen & 0xffff_ffff) < BURST_WINDOW_SECS {
            return;
        }
        slot.store((tag << 32) | (now & 0xffff_ffff), Ordering::Relaxed);
        let local = Local::now();
        let mut days = self.days.lock().unwrap_or_else(|p| p.into_inner());
        let day = days.0.entry(local.date_naive()).or_default();
        day.total += 1;
        *day.by_service.entry(service.to_string()).or_default() += 1;
        day.by_hour[local.hour() as usize] += 1;
        while days.0.len() > KEEP_DAYS {
            days.0.pop_first();
        }
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// Writes the ledger if it changed since the last save.
    pub fn save(&self) {
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return;
        }
        let bytes = {
            let days = self.days.lock().unwrap_or_else(|p| p.into_inner());
            serde_json::to_vec(&*days)
        };
        match bytes {
            Ok(bytes) => match write_atomically(&self.path, &bytes, None) {
                Ok(()) => {
                    if self.failing.swap(false, Ordering::Relaxed) {
                        tracing::info!("the attempt counts can be saved again");
                    }
                }
                Err(error) => {
                    // Retried every minute; said once.
                    if !self.failing.swap(true, Ordering::Relaxed) {
                        tracing::warn!(%error, "cannot save the attempt counts; they are kept in memory meanwhile");
                    }
                    self.dirty.store(true, Ordering::Relaxed);
                }
            },
            Err(error) => tracing::warn!(%error, "cannot encode the attempt counts"),
        }
    }

    pub fn status(&self) -> BlockedStatus {
        let today = Local::now().date_naive();
        let days = self.days.lock().unwrap_or_else(|p| p.into_inner());
        let last_14_days = (0..14)
            .rev()
            .map(|back| {
                let date = today - chrono::Days::new(back);
                days.0.get(&date).map_or(0, |d| d.total)
            })
            .collect();
        let mut hours = [0u64; 24];
        for day in days.0.values().rev().take(14) {
            for (hour, count) in day.by_hour.iter().enumerate() {
                hours[hour] += count;
            }
        }
        let peak_hour = hours
            .iter()
            .enumerate()
            .filter(|(_, count)| **count > 0)
            .max_by_key(|(hour, count)| (**count, std::cmp::Reverse(*hour)))
            .map(|(hour, _)| hour as u8);
        let today_day = days.0.get(&today).cloned().unwrap_or_default();
        BlockedStatus {
            today: today_day.total,
            last_14_days,
            today_by_service: today_day.by_service.into_iter().collect(),
            peak_hour,
        }
    }
}

/// The device behind a client address: every loopback address (v4, v6 or
/// v4-mapped) is this machine; anything else is itself.
fn device(client: IpAddr) -> IpAddr {
    if client.to_canonical().is_loopback() {
        IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
    } else {
        client.to_canonical()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_from_one_client_is_one_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&StateDir::new(dir.path()));
        let phone: IpAddr = "192.168.1.20".parse().unwrap();
        let laptop: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..50 {
            ledger.record(phone, "instagram");
        }
        ledger.record(phone, "tiktok");
        ledger.record(laptop, "instagram");
        let status = ledger.status();
        assert_eq!(status.today, 3);
        assert_eq!(status.last_14_days.len(), 14);
        assert_eq!(status.last_14_days[13], 3);
        assert_eq!(
            status.today_by_service,
            [("instagram".to_string(), 2), ("tiktok".to_string(), 1)]
        );
        assert_eq!(status.peak_hour, Some(Local::now().hour() as u8));
    }

    #[test]
    fn this_machine_over_ipv4_and_ipv6_is_one_device() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&StateDir::new(dir.path()));
        for client in ["127.0.0.1", "::1", "127.0.0.53", "::ffff:127.0.0.1"] {
            ledger.record(client.parse().unwrap(), "instagram");
        }
        assert_eq!(ledger.status().today, 1);
        // Another device still counts on its own.
        ledger.record("192.168.1.20".parse().unwrap(), "instagram");
        assert_eq!(ledger.status().today, 2);
    }

    #[test]
    fn counts_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&StateDir::new(dir.path()));
        ledger.record("127.0.0.1".parse().unwrap(), "x");
        ledger.save();
        assert_eq!(Ledger::open(&StateDir::new(dir.path())).status().today, 1);
    }
}
