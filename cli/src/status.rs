//! `ncd status`: the screen a person opens at 1 a.m. It renders the daemon's
//! [`Status`] calmly — where the period stands, the reason they wrote, blocked
//! attempts as plain facts, the unlock state, held changes, what ncdd noticed and
//! its health. Counts are facts, never judgments.

use chrono::{Local, TimeZone};
use ncd_config::control::{
    GuardStatus, ListProblem, PeriodStatus, ProxyStatus, Status, UnlockScope, UnlockState, UnlockStatus, UpstreamStatus,
};

use crate::human::{self, Style};

/// Cells in the progress bar.
const BAR_WIDTH: usize = 30;
/// Tamper events shown, the most recent ones.
const TAMPER_SHOWN: usize = 5;

/// The whole screen, ending with a newline.
pub(crate) fn render(status: &Status, style: Style) -> String {
    let mut out = Screen::default();
    period(&mut out, &status.period, style);
    damage(&mut out, &status.daemon.damage, style);
    config_error(&mut out, status.config.last_error.as_deref(), style);
    list_problems(&mut out, &status.lists, style);
    upstreams(&mut out, &status.upstreams, style);
    unlock(&mut out, &status.unlock);
    pending(&mut out, &status.pending);
    if status.redacted {
        // The ledger was left out: "nothing blocked" would not be true.
        out.paragraph(&[style.dim("The reason and details are shown to the period's owner and root only.")]);
    } else {
        blocked(&mut out, status, style);
    }
    tamper(&mut out, status, style);
    guard(&mut out, status.guard.as_ref(), &status.period, style);
    proxy(&mut out, &status.proxy, style);
    health(&mut out, status, style);
    out.text
}

/// Paragraphs separated by one blank line.
#[derive(Default)]
struct Screen {
    text: String,
}

impl Screen {
    fn paragraph(&mut self, lines: &[String]) {
        if lines.is_empty() {
            return;
        }
        if !self.text.is_empty() {
            self.text.push('\n');
        }
        for line in lines {
            self.text.push_str(line);
            self.text.push('\n');
        }
    }
}

fn quoted(text: &str) -> String {
    format!("“{}”", text.trim())
}

fn period(out: &mut Screen, period: &PeriodStatus, style: Style) {
    if period.active {
        let headline = if period.length_secs >= 86_400 {
            format!(
                "Day {} of {}",
                human::day_number(period.served_secs).min(human::days_ceil(period.length_secs)),
                human::days_ceil(period.length_secs)
            )
        } else {
            format!("A period of {} is running", human::length(period.length_secs))
        };
        out.paragraph(&[style.bold(&headline)]);
        let left = if period.remaining_secs == 0 {
            "ending now".to_string()
        } else {
            format!("{} left", human::duration(period.remaining_secs))
        };
        out.paragraph(&[format!(
            "  {}  {:>3}%   {left}",
            style.accent(&human::progress_bar(period.served_secs, period.length_secs, BAR_WIDTH)),
            human::percent(period.served_secs, period.length_secs),
        )]);
        if let Some(reason) = period.reason.as_deref().filter(|r| !r.trim().is_empty()) {
            out.paragraph(&[format!("  You wrote: {}", quoted(reason))]);
        }
    } else if let Some(ended) = &period.ended {
        let mut lines = vec![style.bold("Your period has ended")];
        let when = local_time(ended.ended_unix)
            .map(|t| format!(" on {t}"))
            .unwrap_or_default();
        lines.push(match ended.how.as_str() {
            "completed" => format!("It ran its full {}, and ended{when}.", human::length(ended.length_secs)),
            "unlocked" => format!(
                "It ended through an unlock{when}, after {} of {}.",
                human::duration(ended.served_secs),
                human::length(ended.length_secs)
            ),
            _ => format!(
                "It ended{when}, after {} of {}.",
                human::duration(ended.served_secs),
                human::length(ended.length_secs)
            ),
        });
        out.paragraph(&lines);
        if !ended.reason.trim().is_empty() {
            out.paragraph(&[format!("  When you started, you wrote: {}", quoted(&ended.reason))]);
        }
        out.paragraph(&[
            "Start another with `ncd start --for 30d`, or open up at your own pace by editing the config.".to_string(),
        ]);
    } else {
        out.paragraph(&[
            style.bold("No period running"),
            "What your config blocks stays blocked while ncdd runs.".to_string(),
            "To make it binding for a while: `ncd start --for 60d --reason \"…\"`.".to_string(),
        ]);
    }
}

fn damage(out: &mut Screen, damage: &[String], style: Style) {
    if damage.is_empty() {
        return;
    }
    let mut lines =
        vec![style.notice("A note about ncdd: when it started, part of its saved state could not be read.")];
    lines.extend(damage.iter().map(|d| format!("  - {d}")));
    lines.push("It is blocking with the strictest policy it could still read, so the boundary holds.".to_string());
    lines.push("`journalctl -u ncd` has the details.".to_string());
    out.paragraph(&lines);
}

/// An edit of the config file that did not load: the person may think it applies.
fn config_error(out: &mut Screen, error: Option<&str>, style: Style) {
    let Some(error) = error else { return };
    out.paragraph(&[
        style.notice("Your last edit of the config is not in force: it has an error."),
        format!("  {}", error.trim()),
        "ncdd keeps using the last config that loaded. Fix the file and save it; it is picked up at once.".to_string(),
    ]);
}

/// Lists that could not be read as configured: the person may think they block.
fn list_problems(out: &mut Screen, lists: &[ListProblem], style: Style) {
    if lists.is_empty() {
        return;
    }
    let mut lines = vec![style.notice(if lists.len() == 1 {
        "A list in your config could not be read:"
    } else {
        "Some lists in your config could not be read:"
    })];
    lines.extend(lists.iter().map(|l| format!("  - {}: {}", l.list, l.why.trim())));
    lines.push("Every other rule still applies. Fix the file and save it; it is picked up at once.".to_string());
    out.paragraph(&lines);
}

fn scope_words(scope: Option<UnlockScope>) -> Option<&'static str> {
    scope.map(|s| match s {
        UnlockScope::End => "It asks to end the period.",
        UnlockScope::Pending => "It asks to apply the held changes.",
    })
}

/// The unlock lines, shared with `ncd unlock` (which shows them when a request is
/// already under way).
pub(crate) fn unlock_lines(unlock: &UnlockStatus) -> Vec<String> {
    let mut lines = Vec::new();
    match unlock.state {
        UnlockState::None => {}
        UnlockState::Waiting => {
            lines.push(format!(
                "An unlock request is cooling off: {} to go. `ncd unlock --cancel` withdraws it.",
                human::duration(unlock.remaining_secs)
            ));
            lines.extend(scope_words(unlock.scope).map(str::to_string));
        }
        UnlockState::Confirmable => {
            lines.push(format!(
                "You can confirm your unlock for the next {} with `ncd unlock --confirm`.",
                human::duration(unlock.remaining_secs)
            ));
            lines.extend(scope_words(unlock.scope).map(str::to_string));
            lines.push("If you let the window pass, nothing opens.".to_string());
        }
        UnlockState::Expired => {
            lines.push("Your last unlock request expired unconfirmed. The urge passed.".to_string());
        }
    }
    lines
}

fn unlock(out: &mut Screen, unlock: &UnlockStatus) {
    out.paragraph(&unlock_lines(unlock));
}

/// The held loosenings, shared with `ncd unlock`.
pub(crate) fn pending_lines(pending: &[String]) -> Vec<String> {
    match pending {
        [] => Vec::new(),
        [one] => vec![format!("Held until the period ends or an unlock: {one}")],
        many => {
            let mut lines = vec!["Held until the period ends or an unlock:".to_string()];
            lines.extend(many.iter().map(|p| format!("  - {p}")));
            lines
        }
    }
}

fn pending(out: &mut Screen, pending: &[String]) {
    out.paragraph(&pending_lines(pending));
}

fn blocked(out: &mut Screen, status: &Status, style: Style) {
    let blocked = &status.blocked;
    let mut lines = Vec::new();
    if blocked.today == 0 {
        lines.push("Nothing blocked today.".to_string());
    } else {
        let by_service = blocked
            .today_by_service
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(service, n)| format!("{service} {n}"))
            .collect::<Vec<_>>();
        let detail = if by_service.is_empty() {
            String::new()
        } else {
            format!(" ({})", by_service.join(", "))
        };
        lines.push(format!("Blocked today: {}{detail}", blocked.today));
    }
    if !blocked.last_14_days.is_empty() {
        lines.push(format!(
            "Last {}:  {}  {}",
            human::count(blocked.last_14_days.len() as u64, "day", "days"),
            style.accent(&human::sparkline(&blocked.last_14_days)),
            style.dim("(today last)")
        ));
    }
    if let Some(hour) = blocked.peak_hour {
        lines.push(format!("Urges come most around {hour:02}:00."));
    }
    out.paragraph(&lines);
}

fn local_time(unix: i64) -> Option<String> {
    Local
        .timestamp_opt(unix, 0)
        .single()
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
}

fn tamper(out: &mut Screen, status: &Status, style: Style) {
    let events = &status.tamper;
    if events.is_empty() {
        return;
    }
    let mut lines = vec!["Things ncdd noticed (most recent last):".to_string()];
    let hidden = events.len().saturating_sub(TAMPER_SHOWN);
    if hidden > 0 {
        lines.push(style.dim(&format!(
            "  … {} earlier",
            human::count(hidden as u64, "event", "events")
        )));
    }
    for event in &events[hidden..] {
        let when = local_time(event.unix).unwrap_or_else(|| format!("@{}", event.unix));
        let kind = event.kind.word().to_string();
        let what = if event.detail.trim().is_empty() {
            kind
        } else {
            format!("{kind}: {}", event.detail.trim())
        };
        lines.push(format!("  {}  {what}", style.dim(&when)));
    }
    if status.period.active {
        lines.push(style.dim("The period's time is credited time; none of this shortens it."));
    }
    out.paragraph(&lines);
}

/// Repairs the guard shown, the most recent ones.
const REPAIRS_SHOWN: usize = 5;

/// What the root guard found around the boundary and what it put back. Said
/// plainly: a way around the block stays visible here until it is undone.
fn guard(out: &mut Screen, guard: Option<&GuardStatus>, period: &PeriodStatus, style: Style) {
    let Some(guard) = guard else { return };
    let period_active = period.active;
    if !guard.problems.is_empty() {
        let mut lines = vec![style.notice(if period_active {
            "Around the boundary, the system is not as ncd set it:"
        } else {
            "Around ncd, the system is not as ncd set it:"
        })];
        lines.extend(guard.problems.iter().map(|p| format!("  - {}", p.trim())));
        lines.push("Each of these can let a blocked name through until it is undone.".to_string());
        out.paragraph(&lines);
    }
    if !guard.repairs.is_empty() {
        let mut lines = vec!["Put back by the guard during this period (most recent last):".to_string()];
        let hidden = guard.repairs.len().saturating_sub(REPAIRS_SHOWN);
        if hidden > 0 {
            lines.push(style.dim(&format!("  … {hidden} earlier")));
        }
        for repair in &guard.repairs[hidden..] {
            let when = local_time(repair.unix).unwrap_or_else(|| format!("@{}", repair.unix));
            lines.push(format!("  {}  {}", style.dim(&when), repair.what.trim()));
        }
        out.paragraph(&lines);
    }
    if period_active && !guard.stop_refusal {
        let since_start = period.started_unix.is_none_or(|start| guard.checked_unix >= start);
        out.paragraph(&[style.notice(if since_start {
            "`systemctl stop` is not refused for ncd right now: the guard could not put its drop-ins in place."
        } else {
            "The guard has not run since the period started, so `systemctl stop` is not refused yet. It runs \
             within seconds; if this stays, `systemctl status ncd-guard.path` says why."
        })]);
    }
}

/// The companion proxy: whose profiles it keeps closed, and whether it can.
fn proxy(out: &mut Screen, proxy: &ProxyStatus, style: Style) {
    if proxy.sites.is_empty() {
        return;
    }
    let names = proxy.profiles.iter().map(|p| quoted(p)).collect::<Vec<_>>().join(", ");
    let names = if names.is_empty() {
        String::new()
    } else {
        format!(": {names}")
    };
    let mut lines = vec![format!(
        "Profiles kept closed{names} on {} (the rest of those sites opens, through ncd's proxy).",
        proxy.sites.join(", ")
    )];
    if let Some(error) = &proxy.error {
        lines.push(style.notice(&format!(
            "The proxy is not serving: {error}. Until it does, those sites do not open at all."
        )));
    }
    if let Some(ca) = &proxy.ca {
        lines.push(style.dim(&format!(
            "Browsers must trust ncd's CA ({}): `sudo ncd ca install`. Fingerprint {}.",
            ca.domains.join(", "),
            ca.fingerprint_sha256
        )));
    }
    out.paragraph(&lines);
}

/// Only when the resolvers in the config cannot be reached from this network:
/// then what answers instead is worth knowing (the network's own servers).
fn upstreams(out: &mut Screen, upstreams: &UpstreamStatus, style: Style) {
    if let Some(words) = &upstreams.unreachable {
        let mut lines = vec![style.notice(words)];
        if !upstreams.network.is_empty() {
            lines.push(style.dim(&format!("This network's resolvers: {}.", upstreams.network.join("; "))));
        }
        out.paragraph(&lines);
    }
}

fn health(out: &mut Screen, status: &Status, style: Style) {
    let daemon = &status.daemon;
    let mut parts = vec![
        if daemon.version.is_empty() {
            "ncdd".to_string()
        } else {
            format!("ncdd {}", daemon.version)
        },
        format!("up {}", human::duration(daemon.uptime_secs)),
        human::count(daemon.rules as u64, "rule", "rules"),
    ];
    if !daemon.listening.is_empty() {
        parts.push(format!("listening on {}", daemon.listening.join(", ")));
    }
    out.paragraph(&[style.dim(&parts.join(" · "))]);
}

/// The proxy's CA, when it is not trusted where `ncd ca install` put it: a paragraph
/// of its own after the screen (empty when all is well). The problems come from the
/// CLI's side (`install::ca::ca_trust_problems`), not from the daemon's status.
pub(crate) fn ca_trust(problems: &[String], style: Style) -> String {
    if problems.is_empty() {
        return String::new();
    }
    let mut lines = vec![style.notice("The proxy's CA needs your attention:")];
    lines.extend(problems.iter().map(|p| format!("  - {p}")));
    format!("\n{}\n", lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use ncd_config::control::{
        BlockedStatus, ConfigStatus, DaemonStatus, EndedHow, EndedPeriod, EventKind, TamperEvent,
    };

    use super::*;

    const DAY: u64 = 86_400;

    #[test]
    fn ca_trust_problems_get_a_paragraph_of_their_own() {
        assert_eq!(ca_trust(&[], Style::plain()), "");
        let text = ca_trust(&["ncd's CA changed since `ncd ca install`.".into()], Style::plain());
        assert_eq!(
            text,
            "\nThe proxy's CA needs your attention:\n  - ncd's CA changed since `ncd ca install`.\n"
        );
    }

    #[test]
    fn a_failed_edit_is_shown_until_one_loads() {
        let mut status = active();
        let plain = render(&status, Style::plain());
        assert!(!plain.contains("not in force"), "{plain}");
        status.config.last_error = Some("/etc/ncd/ncd.toml:3:12: unknown service \"instagran\"".into());
        let text = render(&status, Style::plain());
        assert!(text.contains("Your last edit of the config is not in force"), "{text}");
        assert!(text.contains("/etc/ncd/ncd.toml:3:12: unknown service"), "{text}");
    }

    fn active() -> Status {
        Status {
            period: PeriodStatus {
                active: true,
                length_secs: 60 * DAY,
                served_secs: 11 * DAY + 21 * 3600,
                remaining_secs: 48 * DAY + 3 * 3600,
                reason: Some("I want my mornings back.".into()),
                started_unix: Some(1_700_000_000),
                ended: None,
            },
            unlock: UnlockStatus {
                state: UnlockState::Waiting,
                scope: Some(UnlockScope::End),
                remaining_secs: 23 * 3600 + 10 * 60,
                why: Some("I miss them tonight".into()),
                delay_secs: 24 * 3600,
            },
            pending: vec!["remove service tiktok".into()],
            tamper: (0..7)
                .map(|i| TamperEvent {
                    unix: 1_700_000_000 + i * 3600,
                    kind: EventKind::Clock,
                    detail: format!("event {i}"),
                })
                .collect(),
            blocked: BlockedStatus {
                today: 5,
                last_14_days: vec![0, 0, 1, 3, 0, 8, 5, 2, 0, 0, 3, 2, 0, 5],
                today_by_service: vec![("instagram".into(), 3), ("tiktok".into(), 2)],
                peak_hour: Some(23),
            },
            daemon: DaemonStatus {
                version: "0.1.0".into(),
                uptime_secs: 3 * DAY + 2 * 3600,
                listening: vec!["127.0.0.1:53".into(), "[::1]:53".into()],
                rules: 1234,
                damage: vec!["commitment copy B: checksum mismatch".into()],
            },
            config: ConfigStatus::default(),
            proxy: Default::default(),
            lists: Vec::new(),
            guard: None,
            upstreams: Default::default(),
            redacted: false,
        }
    }

    #[test]
    fn what_the_guard_found_and_put_back_is_shown() {
        let mut status = active();
        status.guard = Some(GuardStatus {
            checked_unix: 1_700_000_000,
            stop_refusal: true,
            problems: vec!["/etc/hosts names instagram.com (a blocked name)".into()],
            repairs: vec![ncd_config::control::GuardRepair {
                unix: 1_700_000_000,
                what: "/etc/resolv.conf had been changed; ncd put it back".into(),
            }],
        });
        let text = render(&status, Style::plain());
        for shown in [
            "Around the boundary, the system is not as ncd set it:\n  - /etc/hosts names instagram.com",
            "Put back by the guard during this period",
            "/etc/resolv.conf had been changed; ncd put it back",
        ] {
            assert!(text.contains(shown), "missing {shown:?}:\n{text}");
        }
        assert!(!text.contains("not refused"), "{text}");
        let redacted = render(&status.clone().redacted(), Style::plain());
        assert!(!redacted.contains("instagram"), "{redacted}");
        assert!(
            redacted.contains("a setting around the boundary was changed"),
            "{redacted}"
        );
        status.guard.as_mut().unwrap().stop_refusal = false;
        assert!(render(&status, Style::plain()).contains("`systemctl stop` is not refused for ncd right now"));
        // A report from before the period started: the guard has not run yet.
        status.guard.as_mut().unwrap().checked_unix = 1_600_000_000;
        assert!(render(&status, Style::plain()).contains("has not run since the period started"));
        assert!(!render(&active(), Style::plain()).contains("guard"));
    }

    #[test]
    fn unreachable_resolvers_are_said_plainly_with_the_networks_own() {
        let mut status = active();
        assert!(!render(&status, Style::plain()).contains("cannot be reached"));
        status.upstreams = UpstreamStatus {
            network: vec!["wlan0: 10.0.0.1 (hotel.example)".into()],
            unreachable: Some(
                "The resolvers in your config (tls://1.1.1.1:853#one.one.one.one) cannot be reached from this network."
                    .into(),
            ),
        };
        let text = render(&status, Style::plain());
        assert!(
            text.contains(
                "cannot be reached from this network.\nThis network's resolvers: wlan0: 10.0.0.1 (hotel.example)."
            ),
            "{text}"
        );
    }

    #[test]
    fn another_user_sees_the_day_and_the_lock_but_no_private_words() {
        let mut status = active();
        status.proxy.profiles = vec!["Alex".into()];
        status.proxy.sites = vec!["instagram".into()];
        let text = render(&status.clone().redacted(), Style::plain());
        for shown in [
            "Day 12 of 60\n",
            "An unlock request is cooling off",
            "Held until the period ends or an unlock: 1 change to the config",
            "The reason and details are shown to the period's owner and root only.",
            "clock jump\n",
            "Profiles kept closed on instagram",
        ] {
            assert!(text.contains(shown), "missing {shown:?}:\n{text}");
        }
        for hidden in [
            "mornings",
            "miss them",
            "tiktok",
            "event 6",
            "Nothing blocked",
            "Blocked today",
            "Urges",
            "Alex",
        ] {
            assert!(!text.contains(hidden), "{hidden:?} shown to another user:\n{text}");
        }
    }

    #[test]
    fn a_skipped_list_is_named_with_why() {
        let mut status = active();
        status.lists = vec![ListProblem {
            list: "/etc/ncd/lists/f".into(),
            why: "/etc/ncd/lists/f is a FIFO, not a file".into(),
        }];
        let text = render(&status, Style::plain());
        assert!(
            text.contains("A list in your config could not be read:\n  - /etc/ncd/lists/f: /etc/ncd/lists/f is a FIFO"),
            "{text}"
        );
        assert!(!render(&active(), Style::plain()).contains("in your config could not be read"));
    }

    #[test]
    fn an_active_period_reads_calmly() {
        let text = render(&active(), Style::plain());
        for phrase in [
            "Day 12 of 60\n",
            "  █████░░░░░░░░░░░░░░░░░░░░░░░░░   19%   48 days 3 hours left\n",
            "You wrote: “I want my mornings back.”",
            "Blocked today: 5 (instagram 3, tiktok 2)",
            "Last 14 days:  ▁▁▂▄▁█▆▃▁▁▄▃▁▆  (today last)",
            "Urges come most around 23:00.",
            "An unlock request is cooling off: 23 hours 10 minutes to go. `ncd unlock --cancel` withdraws it.",
            "Held until the period ends or an unlock: remove service tiktok",
            "  … 2 events earlier",
            "clock jump: event 6",
            "commitment copy B: checksum mismatch",
            "ncdd 0.1.0 · up 3 days 2 hours · 1234 rules · listening on 127.0.0.1:53, [::1]:53",
        ] {
            assert!(text.contains(phrase), "{phrase:?} missing from:\n{text}");
        }
        assert!(!text.contains("event 1"), "only the 5 most recent events:\n{text}");
        assert!(!text.contains('\x1b'));
    }

    #[test]
    fn the_end_shows_the_reason_and_the_offer() {
        let mut status = active();
        status.period = PeriodStatus {
            ended: Some(EndedPeriod {
                reason: "I want my mornings back.".into(),
                length_secs: 60 * DAY,
                served_secs: 60 * DAY,
                how: EndedHow::Completed,
                ended_unix: 1_700_000_000,
            }),
            ..PeriodStatus::default()
        };
        status.unlock = UnlockStatus::default();
        let text = render(&status, Style::plain());
        assert!(text.contains("Your period has ended"), "{text}");
        assert!(text.contains("It ran its full 60 days"), "{text}");
        assert!(
            text.contains("When you started, you wrote: “I want my mornings back.”"),
            "{text}"
        );
        assert!(
            text.contains(
                "Start another with `ncd start --for 30d`, or open up at your own pace by editing the config."
            )
        );
    }

    #[test]
    fn confirmable_and_expired_unlocks() {
        let mut unlock = UnlockStatus {
            state: UnlockState::Confirmable,
            scope: Some(UnlockScope::Pending),
            remaining_secs: 3600 + 40 * 60,
            ..UnlockStatus::default()
        };
        assert_eq!(
            unlock_lines(&unlock)[0],
            "You can confirm your unlock for the next 1 hour 40 minutes with `ncd unlock --confirm`."
        );
        unlock.state = UnlockState::Expired;
        assert_eq!(
            unlock_lines(&unlock),
            ["Your last unlock request expired unconfirmed. The urge passed."]
        );
    }

    #[test]
    fn nothing_running_and_nothing_blocked() {
        let text = render(&Status::default(), Style::plain());
        assert!(text.starts_with("No period running\n"), "{text}");
        assert!(text.contains("Nothing blocked today."), "{text}");
    }

    #[test]
    fn no_banned_words() {
        let text = render(&active(), Style::plain()).to_lowercase();
        for word in ["slip", "fail", "weak"] {
            assert!(!text.contains(word), "{word:?} in:\n{text}");
        }
    }
}
