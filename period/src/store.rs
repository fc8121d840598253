//! Writing the period to disk so that no crash, edit or deletion ends it.
//!
//! The state is kept in two files (`period.json` and `period.copy.json`), each
//! written atomically (temp file, fsync, rename, fsync dir) with a checksum line
//! and a sequence number. Reading takes the newest copy whose checksum holds; a
//! damaged or missing copy is rebuilt from the other and the damage reported.
//! When no copy can be read but one exists, the caller fails closed; the copies
//! whose checksum fails but whose body still parses are [`Store::salvage`], which
//! may only ever make the assumed period stricter.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::clock::Reading;
use super::commitment::Commitment;
use ncd_config::control::{EndedPeriod, EventKind, TamperEvent};
use ncd_state::{StateDir, checksum, remove_stale_temp_files, write_atomically};

const MAGIC: &str = "ncd-state v1";
/// Tamper events kept (the oldest are dropped).
const MAX_EVENTS: usize = 100;

/// Everything about the period that must survive a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct State {
    /// Bumped on every write; the higher of two valid copies wins.
    pub seq: u64,
    pub commitment: Option<Commitment>,
    /// The clocks at the last tick.
    pub checkpoint: Option<Reading>,
    pub tamper: Vec<TamperEvent>,
    pub ended: Option<EndedPeriod>,
}

impl State {
    /// Adds an event to the journal `ncd status` shows (clock changes, reboots,
    /// downtime, state damage, and every step of an unlock).
    pub fn record(&mut self, unix: i64, kind: EventKind, detail: String) {
        let word = kind.word();
        if kind.is_routine() {
            tracing::info!(kind = word, "{detail}");
        } else {
            tracing::warn!(kind = word, "{detail}");
        }
        self.tamper.push(TamperEvent { unix, kind, detail });
        if self.tamper.len() > MAX_EVENTS {
            let excess = self.tamper.len() - MAX_EVENTS;
            self.tamper.drain(..excess);
        }
    }
}

/// What reading the state found.
#[derive(Debug)]
pub enum Loaded {
    /// No state yet: a fresh install.
    Fresh,
    /// The state, and any damage that was repaired on the way.
    Found { state: Box<State>, damage: Vec<String> },
    /// State files exist but none can be read (see [`Store::salvage`]).
    Unreadable { damage: Vec<String> },
}

#[derive(Debug, Clone)]
pub struct Store {
    dir: StateDir,
    copies: [PathBuf; 2],
}

impl Store {
    pub fn new(dir: &StateDir) -> Self {
        Self {
            dir: dir.clone(),
            copies: dir.period_copies(),
        }
    }

    /// The state dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn path(&self, i: usize) -> PathBuf {
        self.copies[i].clone()
    }

    pub fn load(&self) -> Loaded {
        self.remove_stale_temp_files();
        let mut damage = Vec::new();
        let mut found = Vec::new();
        let mut any_exists = false;
        for i in 0..self.copies.len() {
            let path = self.path(i);
            match std::fs::read(&path) {
                Ok(bytes) => {
                    any_exists = true;
                    match decode(&bytes) {
                        Ok(state) => found.push(state),
                        Err(why) => damage.push(format!("{} is damaged ({why})", path.display())),
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    damage.push(format!("{} is missing", path.display()));
                }
                Err(e) => {
                    any_exists = true;
                    damage.push(format!("{} cannot be read ({e})", path.display()));
                }
            }
        }
        if !any_exists {
            return Loaded::Fresh;
        }
        let Some(state) = found.into_iter().max_by_key(|s| s.seq) else {
            return Loaded::Unreadable { damage };
        };
        if !damage.is_empty() {
            // Rebuild the bad copy now, so one more accident is survivable too.
            if let Err(error) = self.save(&state) {
                damage.push(format!("could not repair: {error}"));
            }
        }
        Loaded::Found {
            state: Box::new(state),
            damage,
        }
    }

    /// Removes the temp files of writes that a crash or a kill cut short (each
    /// process names its own, so they would pile up over many restarts).
    fn remove_stale_temp_files(&self) {
        let names: Vec<&str> = self
            .copies
            .iter()
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()))
            .collect();
        remove_stale_temp_files(self.dir.path(), &names);
    }

    /// The bodies of the copies whose checksum fails but which still parse: not to
    /// be believed (the damage may be an edit), only to make things stricter.
    pub fn salvage(&self) -> Vec<State> {
        (0..self.copies.len())
            .filter_map(|i| std::fs::read(self.path(i)).ok())
            .filter(|bytes| decode(bytes).is_err())
            .filter_map(|bytes| decode_unverified(&bytes))
            .collect()
    }

    /// Writes both copies, one after the other, so one is whole at any moment.
    pub fn save(&self, state: &State) -> std::io::Result<()> {
        let bytes = encode(state)?;
        for i in 0..self.copies.len() {
            write_atomically(&self.path(i), &bytes, None)?;
        }
        Ok(())
    }
}

fn encode(state: &State) -> std::io::Result<Vec<u8>> {
    let body = serde_json::to_string(state).map_err(std::io::Error::other)?;
    Ok(format!("{MAGIC} {:016x}\n{body}\n", checksum(body.as_bytes())).into_bytes())
}

fn decode(bytes: &[u8]) -> Result<State, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not text")?;
    let (header, body) = text.split_once('\n').ok_or("truncated")?;
    let sum = header.strip_prefix(MAGIC).map(str::trim).ok_or("unknown format")?;
    let body = body.strip_suffix('\n').unwrap_or(body);
    if format!("{:016x}", checksum(body.as_bytes())) != sum {
        return Err("checksum does not match: edited or cut short".into());
    }
    serde_json::from_str(body).map_err(|e| format!("unreadable: {e}"))
}

/// The body of a copy whose checksum fails, if it still parses: the damage may be
/// an edit, so this is never believed, only used to tighten.
fn decode_unverified(bytes: &[u8]) -> Option<State> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (_, body) = text.split_once('\n')?;
    serde_json::from_str(body.trim_end()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILES: [&str; 2] = ["period.json", "period.copy.json"];

    fn state(seq: u64) -> State {
        State {
            seq,
            ..State::default()
        }
    }

    #[test]
    fn round_trips_and_prefers_the_newest_copy() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(&StateDir::new(dir.path()));
        assert!(matches!(store.load(), Loaded::Fresh));
        store.save(&state(3)).unwrap();
        match store.load() {
            Loaded::Found { state, damage } => assert_eq!((state.seq, damage.len()), (3, 0)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn one_damaged_or_missing_copy_is_recovered_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(&StateDir::new(dir.path()));
        store.save(&state(5)).unwrap();
        let primary = dir.path().join(FILES[0]);
        let text = std::fs::read_to_string(&primary).unwrap();
        std::fs::write(&primary, text.replace("\"seq\":5", "\"seq\":9")).unwrap();
        match store.load() {
            Loaded::Found { state, damage } => {
                assert_eq!(state.seq, 5);
                assert!(damage[0].contains("checksum"), "{damage:?}");
            }
            other => panic!("{other:?}"),
        }
        // It was repaired: the next load is clean.
        assert!(matches!(store.load(), Loaded::Found { ref damage, .. } if damage.is_empty()));
        std::fs::remove_file(dir.path().join(FILES[1])).unwrap();
        assert!(matches!(store.load(), Loaded::Found { ref damage, .. } if damage[0].contains("missing")));
    }

    #[test]
    fn stale_temp_files_of_cut_writes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(&StateDir::new(dir.path()));
        store.save(&state(2)).unwrap();
        let stale = dir.path().join(".period.json.4242424.tmp");
        let other = dir.path().join(".stats.json.4242424.tmp");
        std::fs::write(&stale, b"half a wri").unwrap();
        std::fs::write(&other, b"not ours").unwrap();
        assert!(matches!(store.load(), Loaded::Found { ref damage, .. } if damage.is_empty()));
        assert!(!stale.exists());
        assert!(other.exists(), "only the period's own temp files are touched");
    }

    #[test]
    fn a_copy_that_parses_despite_its_checksum_is_only_salvage() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(&StateDir::new(dir.path()));
        store.save(&state(4)).unwrap();
        for file in FILES {
            let path = dir.path().join(file);
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(&path, text.replace("\"seq\":4", "\"seq\":40")).unwrap();
        }
        match store.load() {
            Loaded::Unreadable { damage } => assert_eq!(damage.len(), 2, "{damage:?}"),
            other => panic!("{other:?}"),
        }
        let salvage = store.salvage();
        assert_eq!(salvage.iter().map(|s| s.seq).collect::<Vec<_>>(), [40, 40]);
    }

    #[test]
    fn no_readable_copy_is_unreadable_not_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(&StateDir::new(dir.path()));
        store.save(&state(1)).unwrap();
        std::fs::write(dir.path().join(FILES[0]), b"ncd-state v1 00\n{").unwrap();
        std::fs::write(dir.path().join(FILES[1]), b"").unwrap();
        assert!(matches!(store.load(), Loaded::Unreadable { .. }));
    }
}
