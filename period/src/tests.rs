//! The period with an injected clock: whole periods, reboots and unlocks in
//! milliseconds.

use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use ncd_config::Config;
use ncd_config::control::{UnlockScope, UnlockState};

use super::clock::{Clock, Reading};
use super::*;

/// A clock the test moves by hand.
#[derive(Debug)]
struct FakeClock(Mutex<Reading>);

impl FakeClock {
    fn new() -> Arc<Self> {
        Arc::new(Self(Mutex::new(Reading {
            boot_id: "boot-1".into(),
            since_boot: Duration::from_secs(1000),
            awake: Duration::from_secs(1000),
            wall_unix: 1_800_000_000,
        })))
    }

    /// Real time passes (both clocks move).
    fn pass(&self, secs: u64) {
        let mut r = self.0.lock().unwrap();
        r.since_boot += Duration::from_secs(secs);
        r.awake += Duration::from_secs(secs);
        r.wall_unix += secs as i64;
    }

    /// Real time passes, in milliseconds (for the pace of typing).
    fn pass_ms(&self, ms: u64) {
        let mut r = self.0.lock().unwrap();
        r.since_boot += Duration::from_millis(ms);
        r.awake += Duration::from_millis(ms);
    }

    /// The machine sleeps: boot and wall clocks move, the awake clock does not.
    fn suspend(&self, secs: u64) {
        let mut r = self.0.lock().unwrap();
        r.since_boot += Duration::from_secs(secs);
        r.wall_unix += secs as i64;
    }

    /// Someone sets the wall clock.
    fn set_wall(&self, by: i64) {
        self.0.lock().unwrap().wall_unix += by;
    }

    /// The machine is off for `secs` and boots again.
    fn reboot(&self, off_secs: u64) {
        let mut r = self.0.lock().unwrap();
        r.boot_id = format!("{}-next", r.boot_id);
        r.wall_unix += off_secs as i64 + 30;
        r.since_boot = Duration::from_secs(30);
        r.awake = Duration::from_secs(30);
    }
}

impl Clock for FakeClock {
    fn read(&self) -> Reading {
        self.0.lock().unwrap().clone()
    }
}

fn config(toml: &str) -> Config {
    Config::parse(toml, Path::new("t.toml")).unwrap()
}

const DAY: u64 = 86_400;

fn open(dir: &Path, clock: &Arc<FakeClock>) -> Period {
    Period::open(&StateDir::new(dir), clock.clone(), &Config::default())
}

/// The report as a tuple, so each test takes the parts it looks at.
type StatusParts = (PeriodStatus, UnlockStatus, Vec<String>, Vec<TamperEvent>, Vec<String>);

trait StatusTuple {
    fn status(&self) -> StatusParts;
}

impl StatusTuple for Period {
    fn status(&self) -> StatusParts {
        let Report {
            period,
            unlock,
            pending,
            journal,
            damage,
        } = self.report();
        (period, unlock, pending, journal, damage)
    }
}

/// Lives through `secs`: mostly asleep (suspend, as a laptop does), waking to tick
/// every few hours, which keeps a 60-day test at a few hundred ticks.
fn live(period: &Period, clock: &FakeClock, secs: u64) {
    let mut left = secs;
    while left > 0 {
        let step = left.min(4 * 3600);
        clock.suspend(step);
        period.tick();
        left -= step;
    }
}

/// Asks for a passage of `chars` and types it part by part, each at the least time
/// allowed; returns the whole passage.
fn type_passage(period: &Period, clock: &FakeClock, chars: usize) -> String {
    let mut part = period.challenge(chars).unwrap();
    let mut passage = String::new();
    while !part.done {
        clock.pass_ms(part.passage.chars().count() as u64 * MIN_MS_PER_CHAR);
        passage.push_str(&part.passage);
        part = period.type_part(&part.passage).unwrap();
    }
    passage
}

#[test]
fn a_sixty_day_period_runs_to_its_end_and_lifts() {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::new();
    let period = open(dir.path(), &clock);
    period
        .start(
            1000,
            60 * DAY,
            "to heal".into(),
            &config("[block]\nservices=[\"instagram\"]"),
        )
        .unwrap();
    live(&period, &clock, 30 * DAY);
    let (status, _, _, tamper, _) = period.status();
    assert_eq!(status.served_secs, 30 * DAY);
    assert!(tamper.is_empty(), "suspend is not tampering: {tamper:?}");
    assert!(status.active);
    clock.pass(30 * DAY - 1);
    assert!(!period.tick().ended);
    clock.pass(1);
    assert!(period.tick().ended);
    let (status, ..) = period.status();
    assert!(!status.active);
    let ended = status.ended.unwrap();
    assert_eq!((ended.reason.as_str(), ended.how.as_str()), ("to heal", "completed"));
}

#[test]
fn moving_the_clock_never_shortens_the_period_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::new();
    let period = open(dir.path(), &clock);
    period
        .start(1000, 10 * DAY, "reason".into(), &Config::default())
        .unwrap();
    clock.set_wall(90 * DAY as i64);
    clock.pass(5);
    period.tick();
    clock.set_wall(-180 * DAY as i64);
    clock.pass(5);
    period.tick();
    let (status, _, _, tamper, _) = period.status();
    assert_eq!(status.served_secs, 10);
    assert!(status.active);
    let clock_events = tamper.iter().filter(|e| e.kind == EventKind::Clock).count();
    assert_eq!(clock_events, 2, "{tamper:?}");
}

#[test]
fn reboots_credit_at_most_the_cap_and_survive_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::new();
    {
        let period = open(dir.path(), &clock);
        period
            .start(1000, 20 * DAY, "reason".into(), &Config::default())
            .unwrap();
        live(&period, &clock, DAY);
    }
    // Off for 10 days (or the clock set 10 days ahead while off): 72 h credited.
    clock.reboot(10 * DAY);
    let period = open(dir.path(), &clock);
    let (status, _, _, tamper, _) = period.status();
    assert_eq!(status.served_secs, DAY + 72 * 3600 + 30);
    assert!(tamper.iter().any(|e| e.kind == EventKind::Reboot), "{tamper:?}");
    assert_eq!(status.reason.as_deref(), Some("reason"));
}

#[test]
fn the_ratchet_holds_loosenings_and_applies_tightenings() {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::new();
    let period = open(dir.path(), &clock);
    let start = config("[block]\nservices=[\"instagram\", \"tiktok\"]");
    period.start(1000, DAY, "reason".into(), &start).unwrap();
    let edited = config("[block]\nservices=[\"instagram\", \"snapchat\"]");
    let effective = period.effective(&edited);
    let names: Vec<_> = effective.block.services.iter().map(|s| s.as_str()).collect();
    assert_eq!(names, ["instagram", "tiktok", "snapchat"]);
    let (_, _, pending, ..) = period.status();
    assert_eq!(pending, ["remove service tiktok"]);
    // Without a period the file applies as written.
    let free = open(tempfile::tempdir().unwrap().path(), &clock);
    assert_eq!(free.effective(&edited), edited);
}

#[test]
fn the_full_unlock_path_delay_window_passage() {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::new();
    let period = open(dir.path(), &clock);
    let start = config("[block]\nservices=[\"instagram\", \"facebook\"]");
    period.start(1000, 60 * DAY, "reason".into(), &start).unwrap();
    let file = config("[block]\nservices=[\"instagram\"]");
    period.effective(&file);
    assert!(
        period
            .request_unlock(UnlockScope::Pending, "short".into(), &file, DAY, 7200)
            .is_err(),
        "why is too short"
    );
    period
        .request_unlock(
            UnlockScope::Pending,
            "I need facebook for my new job".into(),
            &file,
            DAY,
            7200,
        )
        .unwrap();
    assert!(matches!(period.challenge(20), Err(Refusal::Conflict(_))), "too early");
    live(&period, &clock, DAY - 60);
    assert_eq!(period.status().1.state, UnlockState::Waiting);
    live(&period, &clock, 60);
    assert_eq!(period.status().1.state, UnlockState::Confirmable);
    let passage = type_passage(&period, &clock, 200);
    assert!(passage.len() >= 190 && passage.len() <= 200, "{}", passage.len());
    assert!(matches!(period.confirm("not it"), Err(Refusal::Mismatch(_))));
    assert_eq!(period.confirm(&passage).unwrap(), UnlockScope::Pending);
    let journal = period.status().3;
    assert!(
        journal
            .iter()
            .any(|e| e.detail == "unlock confirmed (apply the held changes) after typing 5/5 parts"),
        "{journal:#?}"
    );
    // The held change applied; the period goes on.
    let effective = period.effective(&file);
    assert_eq!(effective.block.services.len(), 1);
    assert!(period.status().0.active);
    assert!(period.status().2.is_empty());
}

#[test]
fn ending_by_unlock_and_the_window_expiring() {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::new();
    let period = open(dir.path(), &clock);
    period
        .start(1000, 60 * DAY, "reason".into(), &Config::default())
        .unwrap();
    let why = "I have thought about it for a long time".to_string();
    period
        .request_unlock(UnlockScope::End, why.clone(), &Config::default(), 3600, 600)
        .unwrap();
    live(&period, &clock, 3600 + 600);
    assert_eq!(period.status().1.state, UnlockState::Expired);
    assert!(period.challenge(10).is_err());
    assert!(period.status().0.active, "expiry changes nothing");
    // A second request within 30 days waits twice as long.
    period
        .request_unlock(UnlockScope::End, why.clone(), &Config::default(), 3600, 600)
        .unwrap();
    assert_eq!(period.status().1.delay_secs, 7200);
    period.cancel_unlock().unwrap();
    period
        .request_unlock(UnlockScope::End, why, &Config::default(), 3600, 600)
        .unwrap();
    assert_eq!(period.status().1.delay_secs, 14_400);
    live(&period, &clock, 14_400);
    let passage = type_passage(&period, &clock, 30);
    period.confirm(&passage).unwrap();
    let (status, ..) = period.status();
    assert!(!status.active);
    assert_eq!(status.ended.unwrap().how.as_str(), "unlocked");
}

#[test]
fn the_delay_survives_a_restart_and_a_clock_change() {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::new();
    {
        let period = open(dir.path(), &clock);
        period
            .start(1000, 60 * DAY, "reason".into(), &Config::default())
            .unwrap();
        period
            .request_unlock(
                UnlockScope::End,
                "a long enough reason to ask".into(),
                &Config::default(),
                DAY,
                7200,
            )
            .unwrap();
        live(&period, &clock, 3600);
    }
    clock.set_wall(30 * DAY as i64);
    clock.pass(60);
    let period = open(dir.path(), &clock);
    let unlock = period.status().1;
    assert_eq!(unlock.state, UnlockState::Waiting);
    assert_eq!(unlock.remaining_secs, DAY - 3660);
}

#[test]
fn unreadable_state_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::new();
    {
        let period = open(dir.path(), &clock);
        period
            .start(1000, 60 * DAY, "reason".into(), &Config::default())
            .unwrap();
    }
    for name in ["period.json", "period.copy.json"] {
        std::fs::write(dir.path().join(name), "garbage").unwrap();
    }
    let strict = config("[block]\nservices=[\"instagram\"]");
    let period = Period::open(&StateDir::new(dir.path()), clock.clone(), &strict);
    let (status, _, _, _, damage) = period.status();
    assert!(status.active, "an unreadable state keeps a period running");
    assert!(!damage.is_empty());
    // And it holds the strictest config known.
    let effective = period.effective(&Config::default());
    assert_eq!(effective.block.services.len(), 1);
    // And the lists' locked copies on disk, whatever they were kept under.
    assert_eq!(period.list_hold(), Some(None));
}

#[test]
fn held_list_rules_show_as_pending_and_a_pending_unlock_renews_the_lists_key() {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::new();
    let period = open(dir.path(), &clock);
    assert_eq!(period.list_hold(), None, "no period, nothing held");
    period
        .start(1000, 60 * DAY, "reason".into(), &Config::default())
        .unwrap();
    let key = period.list_hold().unwrap().expect("a new period has a key");
    period.set_held_lists(vec![("/etc/ncd/mine.txt".into(), 3)]);
    assert_eq!(
        period.status().2,
        ["3 rules removed from /etc/ncd/mine.txt: held until the period ends or an unlock"]
    );
    // Held list rules are enough to ask for the pending unlock.
    let file = Config::default();
    period
        .request_unlock(
            UnlockScope::Pending,
            "I need facebook for my new job".into(),
            &file,
            60,
            7200,
        )
        .unwrap();
    live(&period, &clock, 60);
    let passage = type_passage(&period, &clock, 20);
    assert_eq!(period.confirm(&passage).unwrap(), UnlockScope::Pending);
    let renewed = period.list_hold().unwrap().unwrap();
    assert_ne!(renewed, key, "a confirmed pending unlock drops the copies");
    // It survives a restart.
    drop(period);
    let period = open(dir.path(), &clock);
    assert_eq!(period.list_hold(), Some(Some(renewed)));
}

#[test]
fn one_copy_edited_to_end_the_period_is_recovered_from_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::new();
    {
        let period = open(dir.path(), &clock);
        period
            .start(1000, 60 * DAY, "reason".into(), &Config::default())
            .unwrap();
    }
    let path = dir.path().join("period.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("\"served_secs\":0", &format!("\"served_secs\":{}", 60 * DAY)),
    )
    .unwrap();
    let period = open(dir.path(), &clock);
    let (status, _, _, _, damage) = period.status();
    assert!(status.active);
    assert!(status.served_secs < 60);
    assert!(damage.iter().any(|d| d.contains("checksum")), "{damage:?}");
}

#[test]
fn both_copies_edited_keep_the_locked_rules_they_still_show() {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::new();
    let both = config("[block]\ndomains=[\"later.test\", \"kept.test\"]");
    let file = config("[block]\ndomains=[\"later.test\"]");
    {
        let period = open(dir.path(), &clock);
        period.start(1000, 90 * DAY, "reason".into(), &both).unwrap();
        // kept.test removed from the file: held.
        assert_eq!(period.effective(&file).block.domains.len(), 2);
    }
    // Both copies edited to say the period is over, the checksums left as they were.
    for name in ["period.json", "period.copy.json"] {
        let path = dir.path().join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("\"served_secs\":0", "\"served_secs\":7775999")).unwrap();
    }
    let period = Period::open(&StateDir::new(dir.path()), clock.clone(), &file);
    let (status, _, _, _, damage) = period.status();
    assert!(status.active, "{damage:?}");
    assert!(damage.iter().any(|d| d.contains("damaged copy")), "{damage:?}");
    // The held removal stays held: the rules the damaged copies still show are kept.
    let effective = period.effective(&file);
    assert_eq!(effective.block.domains.len(), 2, "{:?}", effective.block.domains);
    // The length is at least the config's own (60 days by default).
    assert!(status.length_secs >= 60 * DAY, "{status:?}");
}

#[test]
fn a_failed_write_refuses_the_verb_and_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("state");
    let clock = FakeClock::new();
    let period = open(&dir, &clock);
    period
        .start(1000, 60 * DAY, "reason".into(), &Config::default())
        .unwrap();
    // The state dir becomes a file: every write fails from here on.
    std::fs::rename(&dir, root.path().join("moved")).unwrap();
    std::fs::write(&dir, "not a directory").unwrap();

    let error = period.extend(DAY).unwrap_err();
    assert!(
        matches!(&error, Refusal::Internal(m) if m.contains("nothing changed")),
        "{error:?}"
    );
    let error = period
        .request_unlock(
            UnlockScope::End,
            "a reason that is long enough".into(),
            &Config::default(),
            3600,
            3600,
        )
        .unwrap_err();
    assert!(matches!(error, Refusal::Internal(_)), "{error:?}");
    let (status, unlock, _, journal, _) = period.status();
    assert_eq!(status.length_secs, 60 * DAY, "the refused extension did not stay");
    assert_eq!(unlock.state, UnlockState::None, "the refused request did not stay");
    let failures = journal.iter().filter(|e| e.detail.contains("cannot save")).count();
    assert_eq!(failures, 1, "one entry for the failure, not one per try: {journal:?}");
    // Ticks go on in memory.
    clock.pass(30);
    period.tick();
    assert!(period.status().0.served_secs >= 30);

    // Writable again: the verbs work, and the journal says so.
    std::fs::remove_file(&dir).unwrap();
    std::fs::rename(root.path().join("moved"), &dir).unwrap();
    period.extend(DAY).unwrap();
    let (status, _, _, journal, _) = period.status();
    assert_eq!(status.length_secs, 61 * DAY);
    assert!(journal.iter().any(|e| e.detail.contains("saved again")), "{journal:?}");
    let reopened = open(&dir, &clock);
    assert_eq!(reopened.status().0.length_secs, 61 * DAY);
    assert!(reopened.status().3.iter().any(|e| e.detail.contains("cannot save")));
}

/// A period with a confirmable request to end it.
fn confirmable(dir: &Path, clock: &Arc<FakeClock>) -> Period {
    let period = open(dir, clock);
    period
        .start(1000, 60 * DAY, "reason".into(), &Config::default())
        .unwrap();
    let why = "I have thought about it for a long time".to_string();
    period
        .request_unlock(UnlockScope::End, why, &Config::default(), 60, 3600)
        .unwrap();
    live(&period, clock, 60);
    assert_eq!(period.status().1.state, UnlockState::Confirmable);
    period
}

#[test]
fn the_passage_comes_one_part_at_a_time_and_each_must_take_a_typists_time() {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::new();
    let period = confirmable(dir.path(), &clock);
    let first = period.challenge(100).unwrap();
    assert_eq!((first.part, first.parts, first.done), (1, 3, false));
    assert_eq!(first.passage.chars().count(), CHUNK_CHARS);
    assert_eq!(first.min_ms_per_char, MIN_MS_PER_CHAR);
    let least = CHUNK_CHARS as u64 * MIN_MS_PER_CHAR;

    // Back at once: too fast to be typed; the part is not taken.
    assert!(
        matches!(period.type_part(&first.passage), Err(Refusal::Conflict(m)) if m.contains("too fast to be typed"))
    );
    // Its time starts over at the refusal: waiting out the rest is not enough.
    clock.pass_ms(least - 1);
    assert!(matches!(period.type_part(&first.passage), Err(Refusal::Conflict(_))));
    // A wrong part: mismatch, the same part again.
    clock.pass_ms(least);
    assert!(matches!(period.type_part("not the part"), Err(Refusal::Mismatch(_))));
    // Nothing skipped: confirming with the whole passage now is refused.
    assert!(matches!(period.confirm("anything"), Err(Refusal::Conflict(m)) if m.contains("0 of 3")));

    clock.pass_ms(least);
    let second = period.type_part(&first.passage).unwrap();
    assert_eq!((second.part, second.parts, second.done), (2, 3, false));
    assert_ne!(second.passage, first.passage);
    // Typing the first part again does not count for the second.
    clock.pass_ms(least);
    assert!(matches!(period.type_part(&first.passage), Err(Refusal::Mismatch(_))));
    clock.pass_ms(least);
    let third = period.type_part(&second.passage).unwrap();
    assert_eq!(third.part, 3);
    clock.pass_ms(third.passage.chars().count() as u64 * MIN_MS_PER_CHAR);
    let done = period.type_part(&third.passage).unwrap();
    assert!(done.done && done.passage.is_empty() && done.part == 3, "{done:?}");
    assert!(matches!(period.type_part(""), Err(Refusal::Conflict(_))));

    let passage = format!("{}{}{}", first.passage, second.passage, third.passage);
    assert!(matches!(period.confirm("not it"), Err(Refusal::Mismatch(_))));
    assert_eq!(period.confirm(&passage).unwrap(), UnlockScope::End);
    let journal: Vec<String> = period.status().3.into_iter().map(|e| e.detail).collect();
    for line in [
        "part 1 of 3 came back too fast to be typed; it must be typed again",
        "typed part 1 of 3 of the passage",
        "typed part 3 of 3 of the passage",
        "unlock confirmed (end the period) after typing 3/3 parts (2 refused as too fast to be typed, 2 as not matching)",
    ] {
        assert!(journal.iter().any(|d| d == line), "{line:?} not in {journal:#?}");
    }
    // The too-fast part is journaled once, not at every try.
    assert_eq!(
        journal.iter().filter(|d| d.contains("too fast")).count(),
        2,
        "{journal:#?}"
    );
}

#[test]
fn a_new_challenge_or_a_restart_starts_the_typing_over() {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::new();
    let period = confirmable(dir.path(), &clock);
    let first = period.challenge(100).unwrap();
    clock.pass_ms(10_000);
    period.type_part(&first.passage).unwrap();
    let again = period.challenge(100).unwrap();
    assert_eq!(again.part, 1, "a new passage starts at part 1");
    clock.pass_ms(10_000);
    period.type_part(&again.passage).unwrap();
    drop(period);

    let period = open(dir.path(), &clock);
    assert_eq!(period.status().1.state, UnlockState::Confirmable);
    assert!(matches!(period.type_part("anything"), Err(Refusal::Conflict(m)) if m.contains("restarted")));
    let fresh = period.challenge(100).unwrap();
    assert_eq!((fresh.part, fresh.parts), (1, 3));
}
