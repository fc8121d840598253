//! Words and looks: durations in plain words ("48 days 3 hours"), counts with the
//! right plural, a 14-day sparkline, a progress bar, and ANSI colour that is used
//! only when stdout is a terminal and `NO_COLOR` is unset.

use std::io::IsTerminal;

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

pub(crate) use ncd_config::duration::{count, in_words as duration};

/// The length of a period in words: like [`duration`], but short test periods
/// are counted in seconds rather than called "less than a minute".
pub(crate) fn length(secs: u64) -> String {
    if secs < MINUTE {
        count(secs, "second", "seconds")
    } else {
        duration(secs)
    }
}

/// Days, counting a started day as a day: the "60" of "Day 12 of 60".
pub(crate) fn days_ceil(secs: u64) -> u64 {
    secs.div_ceil(DAY)
}

/// The day a period is on, counting from 1: 0 s served is day 1.
pub(crate) fn day_number(served_secs: u64) -> u64 {
    served_secs / DAY + 1
}

/// A bar of `width` cells, `█` for the share done and `░` for the rest.
pub(crate) fn progress_bar(done: u64, total: u64, width: usize) -> String {
    let filled = if total == 0 {
        0
    } else {
        ((u128::from(done.min(total)) * width as u128) / u128::from(total)) as usize
    };
    format!("{}{}", "█".repeat(filled), "░".repeat(width - filled))
}

/// Whole percent done, rounded down (so 100 % only when it is).
pub(crate) fn percent(done: u64, total: u64) -> u64 {
    if total == 0 {
        0
    } else {
        (u128::from(done.min(total)) * 100 / u128::from(total)) as u64
    }
}

const SPARKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// One block character per value, scaled to the largest; zero is always the
/// lowest block, anything above zero at least the second. All zeros: flat `▁`.
pub(crate) fn sparkline(values: &[u64]) -> String {
    let max = values.iter().copied().max().unwrap_or(0);
    values
        .iter()
        .map(|&v| {
            if max == 0 || v == 0 {
                SPARKS[0]
            } else {
                let level = (u128::from(v) * 7).div_ceil(u128::from(max)) as usize;
                SPARKS[level.clamp(1, 7)]
            }
        })
        .collect()
}

/// ANSI styling that switches itself off when it should.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Style {
    color: bool,
}

impl Style {
    /// Colour only when stdout is a terminal and `NO_COLOR` is unset (or empty).
    pub(crate) fn for_stdout() -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self {
            color: !no_color && std::io::stdout().is_terminal(),
        }
    }

    #[cfg(test)]
    pub(crate) fn plain() -> Self {
        Self { color: false }
    }

    fn paint(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    pub(crate) fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }

    pub(crate) fn dim(self, text: &str) -> String {
        self.paint("2", text)
    }

    /// The calm accent of the progress bar and the sparkline.
    pub(crate) fn accent(self, text: &str) -> String {
        self.paint("36", text)
    }

    /// For things worth noticing (state damage): yellow, not red.
    pub(crate) fn notice(self, text: &str) -> String {
        self.paint("33", text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_speech() {
        assert_eq!(duration(0), "less than a minute");
        assert_eq!(duration(59), "less than a minute");
        assert_eq!(duration(60), "1 minute");
        assert_eq!(duration(5 * 60 + 59), "5 minutes");
        assert_eq!(duration(HOUR), "1 hour");
        assert_eq!(duration(HOUR + 40 * MINUTE), "1 hour 40 minutes");
        assert_eq!(duration(23 * HOUR + 10 * MINUTE + 5), "23 hours 10 minutes");
        assert_eq!(duration(DAY), "1 day");
        assert_eq!(duration(DAY + 30 * MINUTE), "1 day");
        assert_eq!(duration(48 * DAY + 3 * HOUR + 59 * MINUTE), "48 days 3 hours");
        assert_eq!(duration(60 * DAY), "60 days");
    }

    #[test]
    fn lengths_count_seconds_when_short() {
        assert_eq!(length(30), "30 seconds");
        assert_eq!(length(1), "1 second");
        assert_eq!(length(14 * DAY), "14 days");
    }

    #[test]
    fn days_and_day_numbers() {
        assert_eq!(days_ceil(60 * DAY), 60);
        assert_eq!(days_ceil(30), 1);
        assert_eq!(day_number(0), 1);
        assert_eq!(day_number(11 * DAY + 5 * HOUR), 12);
    }

    #[test]
    fn bars_fill_in_proportion() {
        assert_eq!(progress_bar(0, 60, 10), "░░░░░░░░░░");
        assert_eq!(progress_bar(30, 60, 10), "█████░░░░░");
        assert_eq!(progress_bar(60, 60, 10), "██████████");
        assert_eq!(progress_bar(99, 60, 10), "██████████");
        assert_eq!(progress_bar(5, 0, 4), "░░░░");
        assert_eq!(percent(11, 60), 18);
        assert_eq!(percent(60, 60), 100);
        assert_eq!(percent(1, 0), 0);
    }

    #[test]
    fn sparklines_scale_to_the_largest() {
        assert_eq!(sparkline(&[0, 0, 0]), "▁▁▁");
        assert_eq!(sparkline(&[]), "");
        assert_eq!(sparkline(&[0, 1, 7, 14]), "▁▂▅█");
        assert_eq!(sparkline(&[1, 100]), "▂█");
    }

    #[test]
    fn plain_style_adds_nothing() {
        let s = Style::plain();
        assert_eq!(s.bold("x"), "x");
        assert_eq!(s.notice("y"), "y");
    }
}
