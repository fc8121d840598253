//! Credited time: how much of a period has been served, whatever the clocks do.
//!
//! - Same boot: credit the boot-clock delta since the last reading. Setting the
//!   wall clock changes nothing; suspend counts; a stopped daemon's time counts
//!   (killing ncdd neither pauses nor speeds up a period) but is recorded.
//! - New boot: credit the wall-clock time the machine was off, clamped to
//!   0..=[`MAX_OFFLINE_CREDIT`], plus the boot clock since this boot. A clock set
//!   back credits nothing; a clock set forward gains at most the cap per reboot,
//!   and each reboot is recorded.
//! - Either way, a wall clock that disagrees with the boot clock by more than
//!   [`JUMP_TOLERANCE`] is recorded as a clock change.
//!
//! No sequence of readings credits more than the boot clock advanced within a
//! boot, or more than the cap plus the boot clock across one.

use std::time::Duration;

use super::clock::Reading;

/// The most credited for the time a machine was off (per reboot).
pub const MAX_OFFLINE_CREDIT: Duration = Duration::from_secs(72 * 3600);
/// How far wall and boot clocks may drift apart before it is called a jump.
pub const JUMP_TOLERANCE: Duration = Duration::from_secs(60);
/// A gap between readings in one boot longer than this means ncdd was not running.
pub const DOWNTIME_NOTICE: Duration = Duration::from_secs(120);

/// Something worth telling the person about, from the clocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClockEvent {
    /// The wall clock moved by this many seconds (positive: forward) against the boot clock.
    WallJump { by_secs: i64 },
    /// The machine restarted; `credited` of the `offline_secs` gap was credited.
    Reboot { offline_secs: i64, credited_secs: u64 },
    /// ncdd was not running for this long within one boot.
    Downtime { secs: u64 },
    /// The boot clock went backwards within what claims to be one boot.
    BootClockWentBack,
}

/// Credit earned between `last` and `now`, and anything unusual seen.
pub fn credit(last: &Reading, now: &Reading) -> (Duration, Vec<ClockEvent>) {
    let mut events = Vec::new();
    if now.boot_id == last.boot_id && now.since_boot >= last.since_boot {
        let delta = now.since_boot - last.since_boot;
        let wall_delta = now.wall_unix - last.wall_unix;
        let drift = wall_delta - delta.as_secs() as i64;
        if drift.unsigned_abs() > JUMP_TOLERANCE.as_secs() {
            events.push(ClockEvent::WallJump { by_secs: drift });
        }
        // Awake time tells a stopped daemon from a suspended machine: suspend
        // moves the boot clock but not the awake clock.
        let awake = now.awake.checked_sub(last.awake).unwrap_or(delta);
        if awake > DOWNTIME_NOTICE {
            events.push(ClockEvent::Downtime { secs: awake.as_secs() });
        }
        return (delta, events);
    }
    if now.boot_id == last.boot_id {
        // Same boot id but the boot clock went back: impossible unless tampered or
        // the id is unknown. Credit nothing rather than guess.
        events.push(ClockEvent::BootClockWentBack);
        return (Duration::ZERO, events);
    }
    // A reboot: the machine was off from `last` until this boot began.
    let boot_began_unix = now.wall_unix - now.since_boot.as_secs() as i64;
    let offline = boot_began_unix - last.wall_unix;
    let offline_credit = Duration::from_secs(offline.max(0) as u64).min(MAX_OFFLINE_CREDIT);
    events.push(ClockEvent::Reboot {
        offline_secs: offline,
        credited_secs: offline_credit.as_secs(),
    });
    (offline_credit + now.since_boot, events)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    fn at(boot: &str, since_boot: u64, wall: i64) -> Reading {
        awake_at(boot, since_boot, since_boot, wall)
    }

    fn awake_at(boot: &str, since_boot: u64, awake: u64, wall: i64) -> Reading {
        Reading {
            boot_id: boot.into(),
            since_boot: Duration::from_secs(since_boot),
            awake: Duration::from_secs(awake),
            wall_unix: wall,
        }
    }

    #[test]
    fn within_a_boot_only_the_boot_clock_counts() {
        let (c, e) = credit(&at("a", 100, 1_000_000), &at("a", 105, 1_000_005));
        assert_eq!((c.as_secs(), e.len()), (5, 0));
        // The wall clock jumps 90 days ahead: still 5 s served, and it is recorded.
        let (c, e) = credit(&at("a", 100, 1_000_000), &at("a", 105, 1_000_005 + 90 * DAY as i64));
        assert_eq!(c.as_secs(), 5);
        assert_eq!(
            e,
            [ClockEvent::WallJump {
                by_secs: 90 * DAY as i64
            }]
        );
        // … or 90 days back.
        let (c, e) = credit(&at("a", 100, 1_000_000), &at("a", 105, 1_000_005 - 90 * DAY as i64));
        assert_eq!(c.as_secs(), 5);
        assert_eq!(
            e,
            [ClockEvent::WallJump {
                by_secs: -(90 * DAY as i64)
            }]
        );
    }

    #[test]
    fn suspend_counts_and_downtime_is_recorded() {
        // Eight hours of suspend: boot and wall clocks moved, the awake clock did not.
        let (c, e) = credit(
            &awake_at("a", 100, 100, 1_000_000),
            &awake_at("a", 100 + 8 * 3600, 101, 1_000_000 + 8 * 3600),
        );
        assert_eq!(c.as_secs(), 8 * 3600);
        assert_eq!(e, []);
        // Eight hours with ncdd stopped: every clock moved. Credited, and recorded.
        let (c, e) = credit(&at("a", 100, 1_000_000), &at("a", 100 + 8 * 3600, 1_000_000 + 8 * 3600));
        assert_eq!(c.as_secs(), 8 * 3600);
        assert_eq!(e, [ClockEvent::Downtime { secs: 8 * 3600 }]);
    }

    #[test]
    fn a_reboot_credits_the_offline_gap_clamped() {
        // Off for 10 h, then up for 60 s.
        let (c, e) = credit(&at("a", 5000, 1_000_000), &at("b", 60, 1_000_000 + 10 * 3600 + 60));
        assert_eq!(c.as_secs(), 10 * 3600 + 60);
        assert_eq!(
            e,
            [ClockEvent::Reboot {
                offline_secs: 10 * 3600,
                credited_secs: 10 * 3600
            }]
        );
        // Off "for 30 days" (or the clock was set ahead): at most 72 h.
        let (c, _) = credit(
            &at("a", 5000, 1_000_000),
            &at("b", 60, 1_000_000 + 30 * DAY as i64 + 60),
        );
        assert_eq!(c.as_secs(), 72 * 3600 + 60);
        // The clock set back before booting: nothing for the gap.
        let (c, e) = credit(&at("a", 5000, 1_000_000), &at("b", 60, 1_000_000 - 90 * DAY as i64));
        assert_eq!(c.as_secs(), 60);
        assert!(matches!(e[0], ClockEvent::Reboot { credited_secs: 0, .. }));
    }

    #[test]
    fn a_boot_clock_going_back_in_one_boot_credits_nothing() {
        let (c, e) = credit(&at("a", 5000, 1_000_000), &at("a", 10, 1_000_010));
        assert_eq!(c, Duration::ZERO);
        assert_eq!(e, [ClockEvent::BootClockWentBack]);
    }

    #[test]
    fn a_sixty_day_period_with_suspends_reboots_and_clock_games() {
        // Simulated: 60 days of 1-minute ticks, a reboot every 10 days (2 h off),
        // a nightly 8 h suspend, and the wall clock thrown a year ahead on day 30.
        let mut last = at("boot0", 0, 1_700_000_000);
        let mut served = Duration::ZERO;
        let mut truth = Duration::ZERO; // what really passed
        let mut boot = 0;
        let mut since_boot = 0u64;
        let mut wall = 1_700_000_000i64;
        let mut skew = 0i64;
        while truth < Duration::from_secs(60 * DAY) {
            let step = if (truth.as_secs() / 3600).is_multiple_of(24) && truth.as_secs().is_multiple_of(3600) {
                8 * 3600
            } else {
                60
            };
            truth += Duration::from_secs(step);
            since_boot += step;
            wall += step as i64;
            if truth.as_secs() % (10 * DAY) < step && truth.as_secs() > step {
                boot += 1;
                since_boot = 0;
                wall += 2 * 3600;
                truth += Duration::from_secs(2 * 3600);
            }
            if truth.as_secs() / DAY == 30 && skew == 0 {
                skew = 365 * DAY as i64;
            }
            let now = at(&format!("boot{boot}"), since_boot, wall + skew);
            let (c, _) = credit(&last, &now);
            served += c;
            assert!(
                served <= truth + MAX_OFFLINE_CREDIT,
                "served {served:?} > truth {truth:?}"
            );
            last = now;
        }
        // The year-ahead clock was crossed by the next reboot: it gained at most the cap once.
        assert!(
            served >= truth - Duration::from_secs(60),
            "served {served:?} < truth {truth:?}"
        );
        assert!(served <= truth + MAX_OFFLINE_CREDIT);
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Step {
        /// Time passes awake: `secs`, with the wall clock set by `jump` on top.
        Awake { secs: u64, jump: i64 },
        /// Suspend: boot and wall clocks move, the awake clock does not.
        Sleep { secs: u64 },
        /// Off for `secs`, the wall clock set by `jump` meanwhile, then a new boot.
        Reboot { secs: u64, jump: i64 },
    }

    fn step() -> impl Strategy<Value = Step> {
        let jump = prop_oneof![Just(0i64), -(400 * 86_400i64)..(400 * 86_400i64)];
        prop_oneof![
            (0..10_000u64, jump.clone()).prop_map(|(secs, jump)| Step::Awake { secs, jump }),
            (0..200_000u64).prop_map(|secs| Step::Sleep { secs }),
            (0..1_000_000u64, jump).prop_map(|(secs, jump)| Step::Reboot { secs, jump }),
        ]
    }

    proptest! {
        /// Whatever the clocks do, served time grows by exactly the boot clock within
        /// a boot and by at most the cap per reboot: it never outruns real time by
        /// more than the cap per reboot, and moving the wall clock never adds or
        /// removes a second.
        #[test]
        fn served_time_never_outruns_the_boot_clock(steps in prop::collection::vec(step(), 1..60)) {
            let mut boot = 0u32;
            let mut now = Reading { boot_id: "b0".into(), since_boot: Duration::from_secs(100), awake: Duration::from_secs(100), wall_unix: 1_800_000_000 };
            let mut served = Duration::ZERO;
            let mut real = Duration::ZERO;
            let mut reboots = 0u32;
            for step in steps {
                let last = now.clone();
                match step {
                    Step::Awake { secs, jump } => {
                        now.since_boot += Duration::from_secs(secs);
                        now.awake += Duration::from_secs(secs);
                        now.wall_unix += secs as i64 + jump;
                        real += Duration::from_secs(secs);
                    }
                    Step::Sleep { secs } => {
                        now.since_boot += Duration::from_secs(secs);
                        now.wall_unix += secs as i64;
                        real += Duration::from_secs(secs);
                    }
                    Step::Reboot { secs, jump } => {
                        boot += 1;
                        reboots += 1;
                        now.boot_id = format!("b{boot}");
                        now.since_boot = Duration::from_secs(1);
                        now.awake = Duration::from_secs(1);
                        now.wall_unix += secs as i64 + 1 + jump;
                        real += Duration::from_secs(secs + 1);
                    }
                }
                let (credited, _) = credit(&last, &now);
                served += credited;
                prop_assert!(served <= real + MAX_OFFLINE_CREDIT * reboots, "served {served:?} real {real:?}");
                if !matches!(step, Step::Reboot { .. }) {
                    prop_assert_eq!(credited, now.since_boot - last.since_boot);
                }
            }
        }
    }
}
