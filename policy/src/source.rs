//! Where a rule came from, as a type: said in words by `ncd check` and
//! `ncd config check`, and mapped to a service for the urge ledger.

use std::fmt;

use ncd_config::{ListSource, ProfileSite};

/// The config entry (or built-in set) a rule came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A bypass guard that is on by default.
    Guard(GuardKind),
    /// A catalog service named in `[block] services`.
    Service(&'static str),
    /// `[block] domains`.
    Domains,
    /// `[block] allow`: exceptions to every rule.
    Allow,
    /// One entry of `[block] lists`, a file or a URL.
    List(ListSource),
    /// The rules a list held earlier in the running period and its file (or
    /// download) no longer has: still blocking until the period ends or a
    /// `pending` unlock applies them. Apart from [`Source::List`], so the list's
    /// own exceptions never except them.
    HeldList(ListSource),
    /// The hosts of a site a `[[profile]]` names: steered to the proxy, not blocked.
    Profile(ProfileSite),
}

/// The kinds of bypass guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardKind {
    /// Firefox's canary, Private Relay, DDR and the public DoH/DoT hosts.
    EncryptedDns,
}

impl Source {
    /// What a blocked attempt by this source counts as in the urge ledger; guards
    /// are not attempts a person made, so they do not count.
    pub fn ledger_label(&self) -> Option<&str> {
        match self {
            Source::Guard(_) | Source::Profile(_) => None,
            Source::Service(name) => Some(name),
            Source::List(_) | Source::HeldList(_) => Some("your lists"),
            Source::Domains | Source::Allow => Some("your domains"),
        }
    }
}

/// The words `ncd check` and `ncd config check` show (part of `--json` output).
impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Guard(GuardKind::EncryptedDns) => f.write_str("guard: encrypted DNS bypasses"),
            Source::Service(name) => write!(f, "service: {name}"),
            Source::Domains => f.write_str("config: [block] domains"),
            Source::Allow => f.write_str("config: [block] allow"),
            Source::List(list) => write!(f, "list: {list}"),
            Source::HeldList(list) => write!(
                f,
                "list: {list} (removed from it during the period; held until the period ends or an unlock)"
            ),
            Source::Profile(site) => write!(f, "profile rules: {site}"),
        }
    }
}

/// Serialised as its words, as `ncd config check --json` has always shown it.
impl serde::Serialize for Source {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_each_source_counts_as() {
        assert_eq!(Source::Service("instagram").ledger_label(), Some("instagram"));
        let list = Source::List(ListSource::File("/etc/ncd/a.txt".into()));
        assert_eq!(list.ledger_label(), Some("your lists"));
        assert_eq!(list.to_string(), "list: /etc/ncd/a.txt");
        assert_eq!(Source::Domains.ledger_label(), Some("your domains"));
        assert_eq!(Source::Guard(GuardKind::EncryptedDns).ledger_label(), None);
    }
}
