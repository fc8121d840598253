//! Domain names as ncd compares them, and the rules written in configs and lists.
//!
//! One normal form everywhere: lower-case ASCII, no trailing dot, internationalised
//! names as punycode (`bücher.example` → `xn--bcher-kva.example`). A rule `example.com`
//! covers the name and every subdomain; `=example.com` covers the exact name only.

use std::fmt;
use std::str::FromStr;

use hickory_proto::rr::Name;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest presentation-form name without its trailing dot (RFC 1035 §3.1).
pub const MAX_NAME_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// A domain name in ncd's normal form.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomainName(String);

impl DomainName {
    /// Normalises `text` (case, trailing dot, IDN) and checks it is a valid host name.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut out = String::new();
        normalize_into(text, &mut out)?;
        Ok(Self(out))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when `self` is `other` or a subdomain of it.
    pub fn is_within(&self, other: &DomainName) -> bool {
        self.0 == other.0
            || (self.0.len() > other.0.len()
                && self.0.ends_with(other.0.as_str())
                && self.0.as_bytes()[self.0.len() - other.0.len() - 1] == b'.')
    }
}

/// Writes the normal form of `text` into `out` (cleared first), reusing its buffer:
/// the list loader calls this once per line of a million-line file.
pub fn normalize_into(text: &str, out: &mut String) -> Result<(), String> {
    out.clear();
    let trimmed = text.trim();
    let without_dot = trimmed.strip_suffix('.').unwrap_or(trimmed);
    if without_dot.is_empty() {
        return Err("empty domain name".into());
    }
    if without_dot.is_ascii() {
        out.push_str(without_dot);
        out.make_ascii_lowercase();
    } else {
        let name = Name::from_utf8(without_dot).map_err(|e| format!("invalid domain name {trimmed:?}: {e}"))?;
        out.push_str(&name.to_ascii());
        out.make_ascii_lowercase();
        if out.ends_with('.') {
            out.pop();
        }
    }
    validate_ascii(out).map_err(|why| format!("invalid domain name {trimmed:?}: {why}"))
}

fn validate_ascii(name: &str) -> Result<(), String> {
    if name.len() > MAX_NAME_LEN {
        return Err(format!("longer than {MAX_NAME_LEN} characters"));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label (two dots in a row, or a leading dot)".into());
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(format!("label {label:?} is longer than {MAX_LABEL_LEN} characters"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!("character {c:?} is not allowed in a host name"));
        }
    }
    Ok(())
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for DomainName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

/// How much of the namespace a rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleScope {
    /// The name and every subdomain (the default, written `example.com`).
    Subtree,
    /// The name alone (written `=example.com`).
    Exact,
}

/// A block or allow rule: a name and how far it reaches.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomainRule {
    pub name: DomainName,
    pub scope: RuleScope,
}

impl DomainRule {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some(rest) = text.strip_prefix("*.") {
            return Err(format!(
                "{text:?}: wildcards are not needed — write {rest:?}, which already covers every subdomain \
                 (or \"={rest}\" for the exact name only)"
            ));
        }
        let (scope, name) = match text.strip_prefix('=') {
            Some(rest) => (RuleScope::Exact, rest),
            None => (RuleScope::Subtree, text),
        };
        Ok(Self {
            name: DomainName::parse(name)?,
            scope,
        })
    }

    /// True when this rule covers `name`.
    pub fn covers(&self, name: &DomainName) -> bool {
        match self.scope {
            RuleScope::Exact => *name == self.name,
            RuleScope::Subtree => name.is_within(&self.name),
        }
    }
}

impl fmt::Display for DomainRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scope {
            RuleScope::Exact => write!(f, "={}", self.name),
            RuleScope::Subtree => write!(f, "{}", self.name),
        }
    }
}

impl FromStr for DomainRule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

impl<'de> Deserialize<'de> for DomainRule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::error::parse_str(deserializer, Self::parse)
    }
}

impl Serialize for DomainRule {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> DomainName {
        DomainName::parse(s).unwrap()
    }

    #[test]
    fn normalises_case_trailing_dot_and_idn() {
        assert_eq!(name("WWW.Instagram.COM.").as_str(), "www.instagram.com");
        assert_eq!(name("bücher.example").as_str(), "xn--bcher-kva.example");
        assert_eq!(name("BÜCHER.example."), name("xn--bcher-kva.example"));
        assert_eq!(name("_dns.resolver.arpa").as_str(), "_dns.resolver.arpa");
    }

    #[test]
    fn refuses_invalid_names() {
        let long_label = "a".repeat(64);
        let long_name = vec!["abcdefghi"; 26].join(".");
        for bad in [
            "",
            ".",
            "a..b",
            ".a.b",
            "a b.com",
            "exa$mple.com",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            assert!(DomainName::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn subtree_covers_subdomains_but_not_false_suffixes() {
        let rule = DomainRule::parse("instagram.com").unwrap();
        assert!(rule.covers(&name("instagram.com")));
        assert!(rule.covers(&name("www.instagram.com")));
        assert!(rule.covers(&name("a.b.c.instagram.com")));
        assert!(!rule.covers(&name("notinstagram.com")));
        assert!(!rule.covers(&name("instagram.com.evil.test")));
        assert!(!rule.covers(&name("com")));
    }

    #[test]
    fn exact_covers_only_the_name() {
        let rule = DomainRule::parse("=exact.example.org").unwrap();
        assert_eq!(rule.scope, RuleScope::Exact);
        assert!(rule.covers(&name("exact.example.org")));
        assert!(!rule.covers(&name("www.exact.example.org")));
        assert_eq!(rule.to_string(), "=exact.example.org");
    }

    #[test]
    fn wildcards_get_a_helpful_refusal() {
        let err = DomainRule::parse("*.example.com").unwrap_err();
        assert!(err.contains("already covers every subdomain"), "{err}");
    }
}
