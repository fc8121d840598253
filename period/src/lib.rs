//! The period: the commitment, its credited time, the ratchet and the unlock.
//!
//! [`Period`] owns the period state and is the only thing that changes it. The
//! daemon calls [`Period::tick`] every second (reading the clocks, never trusting
//! a sleep: tokio's timers stop during suspend), [`Period::effective`] on every
//! reload (the ratchet), and the control socket calls the verbs. Every change is
//! written to disk before it is acknowledged.
//!
//! Fail closed: when saved state exists but cannot be read, a period is assumed
//! to be running with the strictest config known, and the damage is reported.
//! An error never ends a period or applies a held loosening. When the state cannot
//! be written (a full disk, a read-only state dir), the period goes on in memory,
//! every verb that would change it is refused and undone, and `ncd status` says why.

pub mod clock;
pub mod commitment;
pub mod credit;
pub mod stop_guard;
pub mod store;

use std::sync::{Arc, Mutex, MutexGuard};

use ncd_config::Config;
use ncd_config::control::{
    CHUNK_CHARS, Challenge, EndedHow, EndedPeriod, EventKind, MIN_MS_PER_CHAR, PeriodStatus, TamperEvent, UnlockScope,
    UnlockState, UnlockStatus,
};
use ncd_config::ratchet::ratchet;
use ncd_state::StateDir;

use clock::Clock;
use commitment::Commitment;
use credit::{ClockEvent, credit};
use store::{Loaded, State, Store};

/// Written to disk at least this often while a period runs (and at every change).
const SAVE_EVERY_SECS: u64 = 10;

/// Why a verb was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Mismatch(String),
    #[error("{0}")]
    Internal(String),
}

/// The period's part of `ncd status`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    pub period: PeriodStatus,
    pub unlock: UnlockStatus,
    /// Loosenings held back by the ratchet, in words.
    pub pending: Vec<String>,
    /// The journal, most recent last.
    pub journal: Vec<TamperEvent>,
    /// State damage found at start.
    pub damage: Vec<String>,
}

/// What a tick saw that the daemon must act on.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TickOutcome {
    /// The period just ended: the lock lifts, the file config applies.
    pub ended: bool,
}

#[derive(Debug)]
struct Inner {
    state: State,
    damage: Vec<String>,
    pending: Vec<String>,
    /// The list rules held by the period, in words (from the last rebuild).
    held_lists: Vec<String>,
    last_saved_served: u64,
    /// Why the last write failed, until one succeeds again.
    write_error: Option<String>,
    /// How far the passage has been typed. In memory only: a restart of ncdd
    /// restarts the typing (the next `unlock_challenge` issues a new passage).
    typing: Option<Typing>,
}

/// The typing of one passage, part by part (see [`Period::type_part`]).
#[derive(Debug, Clone)]
struct Typing {
    /// The passage this progress belongs to.
    passage: String,
    parts: Vec<String>,
    /// The part being typed now (0-based); `parts.len()` once all are typed.
    index: usize,
    /// The boot clock when the current part was handed out (or last refused).
    handed_out: std::time::Duration,
    /// Parts refused for coming back too fast, and for not matching.
    too_fast: u32,
    mismatched: u32,
    /// The parts whose too-fast return is already in the journal (once per part).
    too_fast_noted: Vec<usize>,
}

impl Typing {
    fn new(passage: String, now: std::time::Duration) -> Self {
        let chars: Vec<char> = passage.chars().collect();
        let parts = chars.chunks(CHUNK_CHARS).map(|c| c.iter().collect()).collect();
        Self {
            passage,
            parts,
            index: 0,
            handed_out: now,
            too_fast: 0,
            mismatched: 0,
            too_fast_noted: Vec::new(),
        }
    }

    fn done(&self) -> bool {
        self.index >= self.parts.len()
    }

    /// The answer for where the typing stands.
    fn challenge(&self) -> Challenge {
        Challenge {
            passage: self.parts.get(self.index).cloned().unwrap_or_default(),
            chunk_chars: CHUNK_CHARS,
            part: (self.index + 1).min(self.parts.len()),
            parts: self.parts.len(),
            min_ms_per_char: MIN_MS_PER_CHAR,
            done: self.done(),
        }
    }
}

pub struct Period {
    clock: Arc<dyn Clock>,
    store: Store,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Period {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Period").field("store", &self.store).finish()
    }
}

impl Period {
    /// Loads the period from `state_dir`. `strictest` is the strictest config known
    /// (the last good one): if the state is unreadable, a period holding it is
    /// assumed, so damage never opens anything.
    pub fn open(state_dir: &StateDir, clock: Arc<dyn Clock>, strictest: &Config) -> Self {
        let store = Store::new(state_dir);
        let now = clock.read();
        let ran_here_before = has_run_here_before(state_dir);
        let (mut state, damage) = match store.load() {
            Loaded::Fresh => {
                // Root can delete the state dir; what ncd can do is leave a trace
                // outside it (the system log) when that is what it looks like.
                if ran_here_before {
                    tracing::warn!(
                        dir = %state_dir.path().display(),
                        "no saved period, though ncdd has run here before: if a period was running, its files were deleted"
                    );
                }
                (State::default(), Vec::new())
            }
            Loaded::Found { state, damage } => (*state, damage),
            Loaded::Unreadable { mut damage } => {
                let salvage = store.salvage();
                damage.push(
                    "no copy of the period could be read; ncd keeps blocking as if the period were running".into(),
                );
                let (locked, length_secs) = assumed_lock(strictest, &salvage);
                if salvage.iter().any(|s| s.commitment.is_some()) {
                    damage.push(
                        "the rules and length of a damaged copy were added to the assumed period (they can only make it stricter)"
                            .into(),
                    );
                }
                let seq = salvage.iter().map(|s| s.seq).max().unwrap_or(0);
                let state = State {
                    seq,
                    commitment: Some(Commitment {
                        reason: "(ncd could not read the reason you wrote)".into(),
                        owner_uid: 0,
                        started_unix: now.wall_unix,
                        length_secs,
                        served_secs: 0,
                        locked,
                        unlock: None,
                        last_request: None,
                        lists_key: None,
                    }),
                    checkpoint: Some(now.clone()),
                    ..State::default()
                };
                (state, damage)
            }
        };
        for problem in &damage {
            state.record(now.wall_unix, EventKind::State, problem.clone());
        }
        let last_saved_served = state.commitment.as_ref().map_or(0, |c| c.served_secs);
        let period = Self {
            clock,
            store,
            inner: Mutex::new(Inner {
                state,
                damage,
                pending: Vec::new(),
                held_lists: Vec::new(),
                last_saved_served,
                write_error: None,
                typing: None,
            }),
        };
        period.tick();
        period
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reads the clocks, credits time served, moves the unlock request along, and
    /// ends the period when it is complete.
    pub fn tick(&self) -> TickOutcome {
        let now = self.clock.read();
        let mut inner = self.lock();
        let mut outcome = TickOutcome::default();
        let mut must_save = false;
        let last = inner.state.checkpoint.replace(now.clone());
        // Without a period, time and clocks are nobody's business: nothing to credit or record.
        if let Some(last) = last.filter(|_| inner.state.commitment.is_some()) {
            let (credited, events) = credit(&last, &now);
            for event in events {
                let (kind, detail) = describe(&event);
                inner.state.record(now.wall_unix, kind, detail);
                must_save = true;
            }
            if let Some(c) = inner.state.commitment.as_mut() {
                c.served_secs = c.served_secs.saturating_add(credited.as_secs());
                // Keep the sub-second part for the next tick rather than lose it.
                let kept = credited - std::time::Duration::from_secs(credited.as_secs());
                if let Some(cp) = inner.state.checkpoint.as_mut() {
                    cp.since_boot = cp.since_boot.saturating_sub(kept);
                }
            }
        }
        if let Some(c) = inner.state.commitment.as_mut()
            && let Some(request) = &c.unlock
            && request.state(c.served_secs) == UnlockState::Expired
            && !request.expiry_noted
        {
            // Expired: nothing changes. The request stays, marked, so status can say so.
            if let Some(request) = c.unlock.as_mut() {
                request.expiry_noted = true;
                request.passage = None;
            }
            inner.state.record(
                now.wall_unix,
                EventKind::Unlock,
                "the unlock request expired unconfirmed; nothing changed".into(),
            );
            must_save = true;
        }
        if inner.state.commitment.as_ref().is_some_and(Commitment::is_complete) {
            end(&mut inner.state, now.wall_unix, EndedHow::Completed);
            inner.pending.clear();
            inner.held_lists.clear();
            outcome.ended = true;
            must_save = true;
        }
        let served = inner.state.commitment.as_ref().map_or(0, |c| c.served_secs);
        if must_save || served >= inner.last_saved_served + SAVE_EVERY_SECS {
            self.save(&mut inner);
        }
        outcome
    }

    /// Writes the state. When writes start to fail, that goes to the log and the
    /// journal `ncd status` shows (once, not at every retry), and so does the first
    /// write that works again.
    fn write(&self, inner: &mut Inner) -> std::io::Result<()> {
        inner.state.seq += 1;
        match self.store.save(&inner.state) {
            Ok(()) => {
                inner.last_saved_served = inner.state.commitment.as_ref().map_or(0, |c| c.served_secs);
                if inner.write_error.take().is_some() {
                    let unix = self.clock.read().wall_unix;
                    inner
                        .state
                        .record(unix, EventKind::State, "the period state can be saved again".into());
                    inner.state.seq += 1;
                    let _ = self.store.save(&inner.state);
                }
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// Notes a failed write (see [`Period::write`]).
    fn note_write_failure(&self, inner: &mut Inner, error: &std::io::Error) {
        let text = error.to_string();
        if inner.write_error.as_deref() == Some(text.as_str()) {
            return;
        }
        tracing::error!(
            %error,
            dir = %self.store.dir().display(),
            "cannot save the period state; the period goes on in memory and blocking continues, \
             but changes to the period are refused until it can be saved"
        );
        let unix = self.clock.read().wall_unix;
        inner.state.tamper.push(TamperEvent {
            unix,
            kind: EventKind::State,
            detail: format!(
                "cannot save the period state ({text}); it goes on in memory and blocking continues, \
                 but changes to the period are refused until it can be saved"
            ),
        });
        inner.write_error = Some(text);
    }

    /// Writes the state; on failure the period goes on in memory and the write is
    /// tried again at a later tick.
    fn save(&self, inner: &mut Inner) {
        if let Err(error) = self.write(inner) {
            self.note_write_failure(inner, &error);
        }
    }

    /// Writes the state changed by a verb, or refuses the verb: on failure the state
    /// is put back to `before`, so that "nothing changed" is true.
    fn save_or_refuse(&self, inner: &mut Inner, before: State) -> Result<(), Refusal> {
        let Err(error) = self.write(inner) else {
            return Ok(());
        };
        // A later write must win over whatever part of this one reached the disk.
        let seq = inner.state.seq;
        inner.state = before;
        inner.state.seq = seq;
        self.note_write_failure(inner, &error);
        let _ = self.write(inner);
        Err(Refusal::Internal(format!(
            "cannot write the period state ({error}); nothing changed"
        )))
    }

    /// The config to enforce for `file`: as written when no period runs; held to
    /// the locked config by the ratchet while one does. Tightenings become part of
    /// the lock; loosenings are kept as pending.
    pub fn effective(&self, file: &Config) -> Config {
        let mut inner = self.lock();
        let Some(c) = inner.state.commitment.as_mut() else {
            inner.pending.clear();
            inner.held_lists.clear();
            return file.clone();
        };
        let r = ratchet(&c.locked, file);
        let changed = r.effective != c.locked;
        for change in &r.tightened {
            tracing::info!("applied at once: {change}");
        }
        for change in &r.pending {
            tracing::info!("held until the period ends or an unlock: {change}");
        }
        c.locked = r.effective.clone();
        inner.pending = r.pending;
        if changed {
            self.save(&mut inner);
        }
        r.effective
    }

    /// Whether the lists' contents are held: `None` when no period runs, else
    /// `Some(key)`, the key the lists' locked copies are kept under (new at the
    /// start and at each confirmed `pending` unlock, so those start the copies
    /// afresh; `None` adopts the copies on disk, see `Commitment::lists_key`).
    pub fn list_hold(&self) -> Option<Option<String>> {
        let inner = self.lock();
        let c = inner.state.commitment.as_ref()?;
        Some(c.lists_key.clone())
    }

    /// The list rules the rebuild kept blocking though their lists dropped them:
    /// `(list, rules)`. Shown in `pending`, and opened by a `pending` unlock.
    pub fn set_held_lists(&self, held: Vec<(String, usize)>) {
        let mut inner = self.lock();
        if inner.state.commitment.is_none() {
            inner.held_lists.clear();
            return;
        }
        inner.held_lists = held
            .into_iter()
            .map(|(list, n)| {
                format!(
                    "{n} rule{} removed from {list}: held until the period ends or an unlock",
                    if n == 1 { "" } else { "s" }
                )
            })
            .collect();
    }

    /// Adds an event from outside the period (e.g. resolver drift) to the journal.
    pub fn record(&self, kind: EventKind, detail: String) {
        let unix = self.clock.read().wall_unix;
        let mut inner = self.lock();
        inner.state.record(unix, kind, detail);
        self.save(&mut inner);
    }

    /// The owner of the running period, if one runs.
    pub fn owner(&self) -> Option<u32> {
        self.lock().state.commitment.as_ref().map(|c| c.owner_uid)
    }

    pub fn start(&self, uid: u32, length_secs: u64, reason: String, current: &Config) -> Result<(), Refusal> {
        if length_secs == 0 {
            return Err(Refusal::Conflict("A period needs a length, e.g. `--for 60d`.".into()));
        }
        if reason.trim().is_empty() {
            return Err(Refusal::Conflict(
                "Write a reason: you will see it again when it matters.".into(),
            ));
        }
        let now = self.clock.read();
        let mut inner = self.lock();
        if inner.state.commitment.is_some() {
            return Err(Refusal::Conflict(
                "A period is already running. `ncd extend` makes it longer.".into(),
            ));
        }
        let before = inner.state.clone();
        inner.state.commitment = Some(Commitment {
            reason,
            owner_uid: uid,
            started_unix: now.wall_unix,
            length_secs,
            served_secs: 0,
            locked: current.clone(),
            unlock: None,
            last_request: None,
            lists_key: Some(lists_key()),
        });
        inner.state.ended = None;
        inner.state.checkpoint = Some(now);
        self.save_or_refuse(&mut inner, before)?;
        tracing::info!(length_secs, uid, "period started");
        Ok(())
    }

    pub fn extend(&self, by_secs: u64) -> Result<(), Refusal> {
        let mut inner = self.lock();
        let before = inner.state.clone();
        let c = inner.state.commitment.as_mut().ok_or_else(no_period)?;
        c.length_secs = c.length_secs.saturating_add(by_secs);
        self.save_or_refuse(&mut inner, before)?;
        tracing::info!(by_secs, "period extended");
        Ok(())
    }

    /// Asks to open `scope`. For held changes, what opens is fixed now: the
    /// loosenings `file` holds at this moment, nothing edited later.
    pub fn request_unlock(
        &self,
        scope: UnlockScope,
        why: String,
        file: &Config,
        delay: u64,
        window: u64,
    ) -> Result<(), Refusal> {
        if why.trim().chars().count() < 20 {
            return Err(Refusal::Conflict("Say why now, in a sentence or more.".into()));
        }
        let mut inner = self.lock();
        if scope == UnlockScope::Pending && inner.pending.is_empty() && inner.held_lists.is_empty() {
            return Err(Refusal::Conflict("There are no held changes to apply.".into()));
        }
        let before = inner.state.clone();
        let c = inner.state.commitment.as_mut().ok_or_else(no_period)?;
        let request = c
            .request_unlock(scope, why, file, delay, window)
            .map_err(Refusal::Conflict)?;
        tracing::info!(?scope, delay_secs = request.delay_secs, "unlock requested; cooling off");
        let detail = format!(
            "unlock requested ({}); cooling off for {}",
            scope_words(scope),
            ncd_config::duration::in_words(request.delay_secs)
        );
        let unix = self.clock.read().wall_unix;
        inner.state.record(unix, EventKind::Unlock, detail);
        self.save_or_refuse(&mut inner, before)
    }

    pub fn cancel_unlock(&self) -> Result<(), Refusal> {
        let mut inner = self.lock();
        let before = inner.state.clone();
        let c = inner.state.commitment.as_mut().ok_or_else(no_period)?;
        if c.unlock.take().is_none() {
            return Err(Refusal::Conflict("There is no unlock request to withdraw.".into()));
        }
        let unix = self.clock.read().wall_unix;
        inner
            .state
            .record(unix, EventKind::Unlock, "unlock request withdrawn".into());
        self.save_or_refuse(&mut inner, before)
    }

    /// Issues a fresh passage for a confirmable request; the answer is its first
    /// part. Typing starts over.
    pub fn challenge(&self, chars: usize) -> Result<Challenge, Refusal> {
        let now = self.clock.read();
        let mut inner = self.lock();
        let before = inner.state.clone();
        let c = inner.state.commitment.as_mut().ok_or_else(no_period)?;
        let served = c.served_secs;
        let request = c
            .unlock
            .as_mut()
            .ok_or_else(|| Refusal::Conflict("There is no unlock request.".into()))?;
        match request.state(served) {
            UnlockState::Confirmable => {}
            UnlockState::Waiting => {
                return Err(Refusal::Conflict(format!(
                    "Not yet: the cooling-off has {} to go.",
                    ncd_config::duration::in_words(request.remaining(served))
                )));
            }
            _ => return Err(Refusal::Conflict("The request expired; nothing changed.".into())),
        }
        let passage = passage(chars);
        request.passage = Some(passage.clone());
        self.save_or_refuse(&mut inner, before)?;
        let typing = Typing::new(passage, now.since_boot);
        let challenge = typing.challenge();
        inner.typing = Some(typing);
        Ok(challenge)
    }

    /// Takes back the part just typed. It counts only if it matches and came back
    /// no sooner than [`MIN_MS_PER_CHAR`] per character after it was handed out
    /// (by the boot clock, which nobody can set); the answer is then the next part.
    /// A part refused (wrong, or too fast to be typed) is to be typed again, and
    /// its time starts over.
    pub fn type_part(&self, typed: &str) -> Result<Challenge, Refusal> {
        let now = self.clock.read();
        let mut inner = self.lock();
        let c = inner.state.commitment.as_ref().ok_or_else(no_period)?;
        let request = c
            .unlock
            .as_ref()
            .ok_or_else(|| Refusal::Conflict("There is no unlock request.".into()))?;
        if request.state(c.served_secs) != UnlockState::Confirmable {
            return Err(Refusal::Conflict("The request is not open for confirmation.".into()));
        }
        let Some(passage) = request.passage.clone() else {
            return Err(Refusal::Conflict("Ask for the passage first.".into()));
        };
        let typing = match inner.typing.as_mut() {
            Some(t) if t.passage == passage => t,
            _ => {
                return Err(Refusal::Conflict(
                    "ncdd restarted since the passage was given: ask for a new one and type it again.".into(),
                ));
            }
        };
        let Some(part) = typing.parts.get(typing.index).cloned() else {
            return Err(Refusal::Conflict(
                "Every part is typed already: confirm with the whole passage.".into(),
            ));
        };
        let (number, parts) = (typing.index + 1, typing.parts.len());
        let elapsed = now.since_boot.saturating_sub(typing.handed_out);
        let chars = u64::try_from(part.chars().count()).unwrap_or(u64::MAX);
        let least = std::time::Duration::from_millis(chars.saturating_mul(MIN_MS_PER_CHAR));
        typing.handed_out = now.since_boot;
        if typed != part {
            typing.mismatched = typing.mismatched.saturating_add(1);
            return Err(Refusal::Mismatch(format!(
                "Part {number} of {parts} did not match; type it again."
            )));
        }
        if elapsed < least {
            typing.too_fast = typing.too_fast.saturating_add(1);
            let first = !typing.too_fast_noted.contains(&typing.index);
            if first {
                typing.too_fast_noted.push(typing.index);
                inner.state.record(
                    now.wall_unix,
                    EventKind::Unlock,
                    format!("part {number} of {parts} came back too fast to be typed; it must be typed again"),
                );
                self.save(&mut inner);
            }
            return Err(Refusal::Conflict(format!(
                "Part {number} of {parts} came back too fast to be typed (in {} ms; typing it takes at least {} ms). \
                 Type it again, at a person's pace.",
                elapsed.as_millis(),
                least.as_millis()
            )));
        }
        typing.index += 1;
        let answer = typing.challenge();
        inner.state.record(
            now.wall_unix,
            EventKind::Unlock,
            format!("typed part {number} of {parts} of the passage"),
        );
        self.save(&mut inner);
        Ok(answer)
    }

    /// Confirms with the typed passage, once every part of it was typed (see
    /// [`Period::type_part`]). On success the period ends (`End`) or the
    /// loosenings held when the request was made apply (`Pending`), keeping every
    /// tightening made since.
    pub fn confirm(&self, typed: &str) -> Result<UnlockScope, Refusal> {
        let now = self.clock.read();
        let mut inner = self.lock();
        let before = inner.state.clone();
        let typing = inner.typing.clone();
        let c = inner.state.commitment.as_mut().ok_or_else(no_period)?;
        let served = c.served_secs;
        let request = c
            .unlock
            .as_ref()
            .ok_or_else(|| Refusal::Conflict("There is no unlock request.".into()))?;
        if request.state(served) != UnlockState::Confirmable {
            return Err(Refusal::Conflict("The request is not open for confirmation.".into()));
        }
        let Some(passage) = request.passage.as_deref() else {
            return Err(Refusal::Conflict("Ask for the passage first.".into()));
        };
        let typing = match typing {
            Some(t) if t.passage == passage && t.done() => t,
            Some(t) if t.passage == passage => {
                return Err(Refusal::Conflict(format!(
                    "Type the passage part by part first: {} of {} parts typed.",
                    t.index,
                    t.parts.len()
                )));
            }
            _ => {
                return Err(Refusal::Conflict(
                    "Type the passage part by part first (ask for a new one if ncdd restarted).".into(),
                ));
            }
        };
        if passage != typed {
            return Err(Refusal::Mismatch("The passage did not match.".into()));
        }
        let scope = request.scope;
        let target = request.target.clone();
        c.unlock = None;
        match (scope, target) {
            (UnlockScope::End, _) => end(&mut inner.state, now.wall_unix, EndedHow::Unlocked),
            (UnlockScope::Pending, Some(target)) => {
                let (file_then, lock_then) = *target;
                c.locked = ncd_config::ratchet::rebase(&file_then, &lock_then, &c.locked);
                // Every list rule held now opens too (the next rebuild starts
                // the locked copies afresh from the lists as they are).
                c.lists_key = Some(lists_key());
            }
            (UnlockScope::Pending, None) => {
                return Err(Refusal::Internal(
                    "The request does not say what it opens; nothing changed.".into(),
                ));
            }
        }
        let parts = typing.parts.len();
        let mut detail = format!(
            "unlock confirmed ({}) after typing {parts}/{parts} parts",
            scope_words(scope)
        );
        if typing.too_fast > 0 || typing.mismatched > 0 {
            detail.push_str(&format!(
                " ({} refused as too fast to be typed, {} as not matching)",
                typing.too_fast, typing.mismatched
            ));
        }
        inner.state.record(now.wall_unix, EventKind::Unlock, detail);
        self.save_or_refuse(&mut inner, before)?;
        inner.typing = None;
        Ok(scope)
    }

    /// The period part of `ncd status`.
    pub fn report(&self) -> Report {
        let inner = self.lock();
        let period = match &inner.state.commitment {
            Some(c) => PeriodStatus {
                active: true,
                length_secs: c.length_secs,
                served_secs: c.served_secs.min(c.length_secs),
                remaining_secs: c.remaining_secs(),
                reason: Some(c.reason.clone()),
                started_unix: Some(c.started_unix),
                ended: None,
            },
            None => PeriodStatus {
                ended: inner.state.ended.clone(),
                ..PeriodStatus::default()
            },
        };
        let unlock = inner
            .state
            .commitment
            .as_ref()
            .and_then(|c| c.unlock.as_ref().map(|r| (r, c.served_secs)))
            .map(|(r, served)| UnlockStatus {
                state: r.state(served),
                scope: Some(r.scope),
                remaining_secs: r.remaining(served),
                why: Some(r.why.clone()),
                delay_secs: r.delay_secs,
            })
            .unwrap_or_default();
        Report {
            period,
            unlock,
            pending: inner.pending.iter().chain(&inner.held_lists).cloned().collect(),
            journal: inner.state.tamper.clone(),
            damage: inner.damage.clone(),
        }
    }

    /// True while a period runs (cheap: for the once-a-second tick).
    pub fn is_active(&self) -> bool {
        self.lock().state.commitment.is_some()
    }
}

/// True when ncdd has started with this state dir before; marks it for next time.
/// (The last good config cannot tell: ncdd writes it just before the period is
/// read, on the very first start too. Only when it is older than a minute does it
/// count, for state dirs from before the marker.)
fn has_run_here_before(state_dir: &StateDir) -> bool {
    let marker = state_dir.ran_here_marker();
    let marked = marker.exists();
    let old_config = std::fs::metadata(state_dir.last_good_config())
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > std::time::Duration::from_secs(60));
    if !marked {
        let _ = std::fs::write(&marker, "ncdd has started here before\n");
    }
    marked || old_config
}

/// The lock and the length of a period assumed because no copy could be read:
/// `strictest` (the last good config), made stricter by the locked rules of every
/// salvaged copy (through the ratchet, which only ever tightens), and at least as
/// long as what any of them had left to serve.
fn assumed_lock(strictest: &Config, salvage: &[State]) -> (Config, u64) {
    let mut locked = strictest.clone();
    let mut length = strictest.period.length.as_secs();
    for c in salvage.iter().filter_map(|s| s.commitment.as_ref()) {
        locked = ratchet(&c.locked, &locked).effective;
        length = length.max(c.remaining_secs());
    }
    (locked, length)
}

/// A fresh name for the lists' locked copies.
fn lists_key() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn scope_words(scope: UnlockScope) -> &'static str {
    match scope {
        UnlockScope::End => "end the period",
        UnlockScope::Pending => "apply the held changes",
    }
}

fn no_period() -> Refusal {
    Refusal::Conflict("No period is running.".into())
}

fn end(state: &mut State, unix: i64, how: EndedHow) {
    if let Some(c) = state.commitment.take() {
        tracing::info!(how = how.as_str(), "the period ended");
        state.ended = Some(EndedPeriod {
            reason: c.reason,
            length_secs: c.length_secs,
            served_secs: c.served_secs.min(c.length_secs),
            how,
            ended_unix: unix,
        });
        state.record(unix, EventKind::Period, format!("the period ended ({how})"));
    }
}

fn describe(event: &ClockEvent) -> (EventKind, String) {
    let d = ncd_config::duration::in_words;
    match *event {
        ClockEvent::WallJump { by_secs } => (
            EventKind::Clock,
            format!(
                "the wall clock moved {} by {}; time served is unaffected",
                if by_secs > 0 { "forward" } else { "back" },
                d(by_secs.unsigned_abs())
            ),
        ),
        ClockEvent::Reboot {
            offline_secs,
            credited_secs,
        } if offline_secs < 0 => (
            EventKind::Reboot,
            format!(
                "restarted with the clock {} behind; credited {}",
                d(offline_secs.unsigned_abs()),
                d(credited_secs)
            ),
        ),
        ClockEvent::Reboot {
            offline_secs,
            credited_secs,
        } => (
            EventKind::Reboot,
            format!(
                "the machine was off for {}; credited {}",
                d(offline_secs as u64),
                d(credited_secs)
            ),
        ),
        ClockEvent::Downtime { secs } => (EventKind::Downtime, format!("ncdd was not running for {}", d(secs))),
        ClockEvent::BootClockWentBack => (
            EventKind::Clock,
            "the boot clock went back within one boot; nothing credited".to_string(),
        ),
    }
}

/// A random passage of at least `chars` characters: lower-case words, so it can be
/// typed but not guessed.
fn passage(chars: usize) -> String {
    use rand::seq::IndexedRandom;
    const WORDS: &[&str] = &[
        "river", "quiet", "morning", "window", "garden", "patience", "harbor", "lantern", "meadow", "pebble",
        "orchard", "candle", "compass", "willow", "thunder", "blanket", "kettle", "ribbon", "saddle", "timber",
        "violet", "walnut", "anchor", "bridge", "cinder", "dawn", "ember", "feather", "glacier", "hollow", "island",
        "juniper", "kindle", "ledger", "marble", "nectar", "oyster", "prairie", "quartz", "rustle", "summit", "tundra",
        "umbrella", "valley", "whistle", "yonder", "zephyr", "acorn", "breeze", "canyon", "drift", "estuary", "fern",
        "granite", "heron", "inlet", "jasmine", "kestrel", "lagoon", "moss", "nimbus", "otter", "pine", "quill",
        "reed", "sparrow", "tide", "upland", "vista", "wren", "yarrow", "basalt",
    ];
    let mut rng = rand::rng();
    let mut out = String::new();
    while out.len() < chars {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(WORDS.choose(&mut rng).copied().unwrap_or("river"));
    }
    out.truncate(chars.max(1));
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests;
