//! Human durations: `10s`, `90m`, `24h`, `60d`, `2w`, and sums like `1h30m`.
//!
//! Periods are long (weeks) and timeouts are short (seconds); one syntax serves both.
//! Bare numbers are refused: "60" could mean seconds or days, and a period is too
//! important to guess.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written the way people write them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

const UNITS: &[(&str, u64)] = &[
    ("ms", 0), // handled apart: milliseconds
    ("s", 1),
    ("m", 60),
    ("h", 3600),
    ("d", 86_400),
    ("w", 7 * 86_400),
];

impl HumanDuration {
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    pub fn as_secs(self) -> u64 {
        self.0.as_secs()
    }
}

impl From<HumanDuration> for Duration {
    fn from(d: HumanDuration) -> Duration {
        d.0
    }
}

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let s = text.trim();
        if s.is_empty() {
            return Err("empty duration: write e.g. \"10s\", \"24h\", \"60d\" or \"2w\"".into());
        }
        let mut total = Duration::ZERO;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(format!("invalid duration {text:?}: expected a number at {rest:?}"));
            }
            let number: u64 = rest[..digits]
                .parse()
                .map_err(|_| format!("invalid duration {text:?}: number too large"))?;
            rest = &rest[digits..];
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let unit = &rest[..unit_len];
            rest = rest[unit_len..].trim_start();
            let part = match unit {
                "" => {
                    return Err(format!(
                        "invalid duration {text:?}: a number needs a unit (s, m, h, d or w), e.g. \"{number}s\""
                    ));
                }
                "ms" => Duration::from_millis(number),
                _ => match UNITS.iter().find(|(name, _)| *name == unit) {
                    Some((_, secs)) => number
                        .checked_mul(*secs)
                        .map(Duration::from_secs)
                        .ok_or_else(|| format!("invalid duration {text:?}: too large"))?,
                    None => {
                        return Err(format!(
                            "invalid duration {text:?}: unknown unit {unit:?} (use ms, s, m, h, d or w)"
                        ));
                    }
                },
            };
            total = total
                .checked_add(part)
                .ok_or_else(|| format!("invalid duration {text:?}: too large"))?;
        }
        Ok(Self(total))
    }
}

impl fmt::Display for HumanDuration {
    /// The shortest exact spelling in the largest units: `2w`, `1d12h`, `1500ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.subsec_nanos() != 0 {
            return write!(f, "{}ms", d.as_millis());
        }
        let mut secs = d.as_secs();
        if secs == 0 {
            return f.write_str("0s");
        }
        for (name, unit) in UNITS.iter().rev().filter(|(_, unit)| *unit > 0) {
            if secs >= *unit {
                write!(f, "{}{name}", secs / unit)?;
                secs %= unit;
            }
        }
        Ok(())
    }
}

/// `1 day`, `2 days`.
pub fn count(n: u64, singular: &str, plural: &str) -> String {
    if n == 1 {
        format!("1 {singular}")
    } else {
        format!("{n} {plural}")
    }
}

/// Time in words, in the two largest units that matter: "48 days 3 hours",
/// "23 hours 10 minutes", "5 minutes", "less than a minute". Rounds down. Used for
/// everything a person reads, by the daemon and the CLI alike.
pub fn in_words(secs: u64) -> String {
    const MINUTE: u64 = 60;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;
    let (days, hours, minutes) = (secs / DAY, secs % DAY / HOUR, secs % HOUR / MINUTE);
    let pair = |big: String, small: u64, singular: &str, plural: &str| {
        if small == 0 {
            big
        } else {
            format!("{big} {}", count(small, singular, plural))
        }
    };
    if days > 0 {
        pair(count(days, "day", "days"), hours, "hour", "hours")
    } else if hours > 0 {
        pair(count(hours, "hour", "hours"), minutes, "minute", "minutes")
    } else if minutes > 0 {
        count(minutes, "minute", "minutes")
    } else {
        "less than a minute".to_string()
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::error::parse_str(deserializer, str::parse)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: &str) -> u64 {
        s.parse::<HumanDuration>().unwrap().as_secs()
    }

    #[test]
    fn parses_every_unit_and_sums() {
        assert_eq!(secs("10s"), 10);
        assert_eq!(secs("90m"), 5400);
        assert_eq!(secs("24h"), 86_400);
        assert_eq!(secs("60d"), 60 * 86_400);
        assert_eq!(secs("2w"), 14 * 86_400);
        assert_eq!(secs("1h30m"), 5400);
        assert_eq!(secs("1d 12h"), 129_600);
        let ms: HumanDuration = "1500ms".parse().unwrap();
        assert_eq!(ms.0, Duration::from_millis(1500));
    }

    #[test]
    fn refuses_ambiguous_or_broken_input() {
        for bad in ["", "60", "10x", "h", "1.5h", "-1d", "99999999999999999999w"] {
            assert!(bad.parse::<HumanDuration>().is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn displays_round_trip() {
        for s in ["2w", "1d12h", "10s", "1500ms", "0s", "1w1d1h1m1s"] {
            let d: HumanDuration = s.parse().unwrap();
            assert_eq!(d.to_string(), s);
            assert_eq!(d.to_string().parse::<HumanDuration>().unwrap(), d);
        }
    }
}
