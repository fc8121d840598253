//! Blocklist files: plain domains, hosts files and adblock-style `||domain^` rules.
//!
//! Every format means the same thing: a listed name is blocked with all of its
//! subdomains (`=name` keeps a plain line to the exact name). Comments (`#`, `!`),
//! blank lines, CRLF endings and hosts-file housekeeping names (`localhost` …) are
//! skipped quietly. A line that cannot be understood is reported with its line and
//! column and skipped; it never stops the rest of the list from loading.

use crate::domain::{RuleScope, normalize_into};

/// One rule read from a list line. `name` is in normal form and borrowed from a
/// buffer reused between lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListRule<'a> {
    pub name: &'a str,
    pub scope: RuleScope,
    /// An adblock exception (`@@||name^`): allows instead of blocks.
    pub allow: bool,
}

/// A line that was skipped because it could not be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Counts from one pass over a list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListStats {
    pub rules: usize,
    pub errors: usize,
}

/// Names that hosts files map to loopback as housekeeping, not as blocks.
const HOSTS_HOUSEKEEPING: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "local",
    "broadcasthost",
    "ip6-localhost",
    "ip6-loopback",
    "ip6-localnet",
    "ip6-mcastprefix",
    "ip6-allnodes",
    "ip6-allrouters",
    "ip6-allhosts",
    "0.0.0.0",
];

/// Reads every line of `text`, calling `on_rule` for each rule and `on_error` for
/// each line that is skipped.
pub fn parse_list(text: &str, mut on_rule: impl FnMut(ListRule<'_>), mut on_error: impl FnMut(LineError)) -> ListStats {
    let mut stats = ListStats::default();
    let mut buf = String::with_capacity(64);
    for (index, raw_line) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw_line.strip_suffix('\r').unwrap_or(raw_line);
        let mut report = |column: usize, message: String| {
            stats.errors += 1;
            on_error(LineError {
                line: line_no,
                column,
                message,
            });
        };
        let indent = line.len() - line.trim_start().len();
        let content = strip_comment(line).trim();
        if content.is_empty() || content.starts_with('!') || content.starts_with('[') {
            continue;
        }
        let column = indent + 1;
        let parsed = parse_line(content, &mut buf, &mut report, column, &mut |rule| {
            stats.rules += 1;
            on_rule(rule);
        });
        if let Err(message) = parsed {
            report(column, message);
        }
    }
    stats
}

/// `#` starts a comment unless it is part of an adblock rule (`##` cosmetic rules are
/// for browsers and are reported by `parse_line`).
fn strip_comment(line: &str) -> &str {
    let trimmed = line.trim_start();
    if trimmed.starts_with("||") || trimmed.starts_with("@@") {
        return line;
    }
    match line.find('#') {
        Some(i) => &line[..i],
        None => line,
    }
}

fn parse_line(
    content: &str,
    buf: &mut String,
    report: &mut impl FnMut(usize, String),
    column: usize,
    emit: &mut impl FnMut(ListRule<'_>),
) -> Result<(), String> {
    // Adblock: `||name^`, `@@||name^`.
    let (allow, adblock) = match content.strip_prefix("@@") {
        Some(rest) => (true, rest),
        None => (false, content),
    };
    if let Some(rest) = adblock.strip_prefix("||") {
        let name = rest
            .strip_suffix('^')
            .or_else(|| rest.strip_suffix("^|"))
            .ok_or_else(|| adblock_refusal(content))?;
        normalize_into(name, buf)?;
        emit(ListRule {
            name: buf,
            scope: RuleScope::Subtree,
            allow,
        });
        return Ok(());
    }
    if allow {
        return Err(adblock_refusal(content));
    }

    let mut fields = content.split_whitespace();
    let first = fields.next().unwrap_or_default();
    let looks_like_address = first.starts_with(|c: char| c.is_ascii_digit() || c == ':');
    if looks_like_address && first.parse::<std::net::IpAddr>().is_ok() {
        // Hosts file: `0.0.0.0 name [name …]`.
        let mut any = false;
        for name in fields {
            any = true;
            let at = column + offset_in(content, name);
            if is_housekeeping(name) {
                continue;
            }
            match normalize_into(name, buf) {
                Ok(()) => emit(ListRule {
                    name: buf,
                    scope: RuleScope::Subtree,
                    allow: false,
                }),
                Err(message) => report(at, message),
            }
        }
        if !any {
            return Err(format!("hosts line {content:?} has an address but no name"));
        }
        return Ok(());
    }
    if fields.next().is_some() {
        return Err(format!("expected one domain per line, found {content:?}"));
    }
    let (scope, name) = match first.strip_prefix('=') {
        Some(rest) => (RuleScope::Exact, rest),
        None => (RuleScope::Subtree, first),
    };
    if name.contains(['/', ':', '*', '|', '^', '$']) {
        return Err(format!(
            "{content:?} is not a domain name (URLs, wildcards and regexes are not list rules)"
        ));
    }
    normalize_into(name, buf)?;
    emit(ListRule {
        name: buf,
        scope,
        allow: false,
    });
    Ok(())
}

/// Where `part`, a slice of `whole` (as `split_whitespace` gives), starts in it.
/// Addresses, not a search: a search per name was a sixth of a 1M-line load.
fn offset_in(whole: &str, part: &str) -> usize {
    (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize)
}

/// Whether `name` is one of the names hosts files map as housekeeping.
fn is_housekeeping(name: &str) -> bool {
    const LONGEST: usize = "localhost.localdomain".len();
    name.len() <= LONGEST && HOSTS_HOUSEKEEPING.iter().any(|h| h.eq_ignore_ascii_case(name))
}

fn adblock_refusal(content: &str) -> String {
    format!(
        "unsupported adblock rule {content:?}: only `||domain^` and `@@||domain^` apply to DNS \
         (modifiers, paths and cosmetic rules are for browsers)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Vec<(String, RuleScope, bool)>, Vec<LineError>) {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        parse_list(
            text,
            |r| rules.push((r.name.to_string(), r.scope, r.allow)),
            |e| errors.push(e),
        );
        (rules, errors)
    }

    #[test]
    fn reads_plain_hosts_and_adblock_with_comments_and_crlf() {
        let text = "# a list\r\nInstagram.com\r\n\r\n0.0.0.0 tiktok.com www.tiktok.com # two\r\n\
                    127.0.0.1 localhost\n||snapchat.com^\n! adblock comment\n[Adblock Plus 2.0]\n\
                    @@||business.facebook.com^\n=exact.example.org\n:: x.com\n";
        let (rules, errors) = parse(text);
        assert!(errors.is_empty(), "{errors:?}");
        let names: Vec<_> = rules.iter().map(|(n, ..)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "instagram.com",
                "tiktok.com",
                "www.tiktok.com",
                "snapchat.com",
                "business.facebook.com",
                "exact.example.org",
                "x.com"
            ]
        );
        assert!(rules[4].2, "@@ is an allow rule");
        assert_eq!(rules[5].1, RuleScope::Exact);
    }

    #[test]
    fn a_bad_line_is_reported_with_its_place_and_skipped() {
        let text = "good.example\nnot a domain\n  bad$.example\n||ads.example^$third-party\n0.0.0.0\nalso-good.example\n0.0.0.0 ok.example b@d.example\n";
        let (rules, errors) = parse(text);
        let names: Vec<_> = rules.iter().map(|(n, ..)| n.as_str()).collect();
        assert_eq!(names, ["good.example", "also-good.example", "ok.example"]);
        let places: Vec<_> = errors.iter().map(|e| (e.line, e.column)).collect();
        assert_eq!(places, [(2, 1), (3, 3), (4, 1), (5, 1), (7, 20)]);
    }
}
