//! The list formats (plain, hosts, adblock: `ncd_config::lists`).
//!
//! The first byte picks how the rest (read as UTF-8, lossily, as ncdd reads a
//! list file) is dressed, so each format gets its share of the inputs: 0 as it
//! is, 1 every line as a hosts line (`0.0.0.0 …`), 2 every line as an adblock
//! rule (`||…^`), 3 as an adblock exception (`@@||…^`). Then:
//!
//! - reading never panics, and the counts match what was reported;
//! - every error names a line of the text and a column on it where a
//!   non-blank character starts;
//! - every rule is in normal form (normalising it again changes nothing), and
//!   reads back as the same rule from a plain, hosts and adblock line;
//! - the list compiled into a `Policy` (through a real list file) counts the same
//!   rules and bad lines, blocks every rule's name — and, for a subtree rule, its
//!   subdomains — unless one of the list's exceptions covers it, and never blocks
//!   an exception's name. For small lists every probe name's verdict is checked
//!   against the definition (blocked iff a rule covers it and no exception does).

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

use ncd_config::lists::{LineError, ListRule, parse_list};
use ncd_config::{Config, DomainName, DomainRule, ListSource, RuleScope};
use ncd_policy::{Policy, Verdict};

use crate::fixture::fixture;

/// Lists with at most this many rules get the full definition check.
const ORACLE_RULES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    name: String,
    scope: RuleScope,
    allow: bool,
}

impl From<ListRule<'_>> for Rule {
    fn from(rule: ListRule<'_>) -> Self {
        Self {
            name: rule.name.to_string(),
            scope: rule.scope,
            allow: rule.allow,
        }
    }
}

fn read(text: &str) -> (Vec<Rule>, Vec<LineError>) {
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    let stats = parse_list(text, |r| rules.push(Rule::from(r)), |e| errors.push(e));
    assert_eq!(stats.rules, rules.len(), "rule count");
    assert_eq!(stats.errors, errors.len(), "error count");
    (rules, errors)
}

/// The text with each line dressed in a format (see the module docs).
fn dress(mode: u8, raw: &str) -> String {
    let (before, after) = match mode % 4 {
        1 => ("0.0.0.0 ", ""),
        2 => ("||", "^"),
        3 => ("@@||", "^"),
        _ => return raw.to_string(),
    };
    let mut out = String::with_capacity(raw.len() * 2);
    for line in raw.split_inclusive('\n') {
        let body = line.strip_suffix('\n').unwrap_or(line);
        let (body, cr) = match body.strip_suffix('\r') {
            Some(b) => (b, "\r"),
            None => (body, ""),
        };
        out.push_str(before);
        out.push_str(body);
        out.push_str(after);
        out.push_str(cr);
        if line.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

pub fn check_lists(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = dress(mode, &String::from_utf8_lossy(rest));
    let (rules, errors) = read(&text);

    let lines: Vec<&str> = text.lines().map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    for error in &errors {
        let place = format!("{}:{}: {}", error.line, error.column, error.message);
        assert!(!error.message.trim().is_empty(), "{place}: no words");
        assert!(
            (1..=lines.len()).contains(&error.line),
            "{place}: the text has {} lines",
            lines.len()
        );
        let line = lines[error.line - 1];
        assert!(
            (1..=line.len()).contains(&error.column),
            "{place}: line {:?} has {} bytes",
            line,
            line.len()
        );
        let at = error.column - 1;
        assert!(
            line.is_char_boundary(at),
            "{place}: column inside a character of {line:?}"
        );
        let c = line[at..].chars().next().unwrap_or(' ');
        assert!(!c.is_whitespace(), "{place}: column on blank {c:?} in {line:?}");
    }

    for rule in &rules {
        let parsed = DomainName::parse(&rule.name);
        assert_eq!(
            parsed.as_ref().map(DomainName::as_str),
            Ok(rule.name.as_str()),
            "{rule:?} is not in normal form"
        );
        let mut again = String::new();
        ncd_config::domain::normalize_into(&rule.name, &mut again).expect("normal form normalises");
        assert_eq!(again, rule.name, "normalising {rule:?} again");
        // Reads back the same in each format that can say it.
        let plain = match rule.scope {
            RuleScope::Exact => format!("={}", rule.name),
            RuleScope::Subtree => rule.name.clone(),
        };
        let mut forms = vec![(format!("@@||{}^", rule.name), true)];
        // A plain line that reads as an IP address is a hosts line without a name.
        let reads_as_address = rule.scope == RuleScope::Subtree && rule.name.parse::<std::net::IpAddr>().is_ok();
        if !rule.allow && !reads_as_address {
            forms.push((plain, false));
        }
        if rule.scope == RuleScope::Subtree {
            forms.push((format!("||{}^", rule.name), false));
            if !rule.allow && !is_housekeeping(&rule.name) {
                forms.push((format!("0.0.0.0 {}", rule.name), false));
            }
        }
        for (line, allow) in forms {
            let (back, errors) = read(&line);
            let want = Rule {
                allow,
                scope: if line.starts_with('=') {
                    RuleScope::Exact
                } else {
                    RuleScope::Subtree
                },
                ..rule.clone()
            };
            assert!(errors.is_empty(), "{line:?} from {rule:?}: {errors:?}");
            assert_eq!(back, [want], "{line:?} from {rule:?}");
        }
    }

    check_compiled(&text, &rules, &errors);
}

fn is_housekeeping(name: &str) -> bool {
    read(&format!("0.0.0.0 {name}")).0.is_empty()
}

/// The list as ncdd loads it: a file named by a config.
fn check_compiled(text: &str, rules: &[Rule], errors: &[LineError]) {
    let path = list_file();
    let mut file = std::fs::File::create(&path).expect("create the list file");
    file.write_all(text.as_bytes()).expect("write the list file");
    drop(file);
    let mut config = Config::default();
    config.guard.encrypted_dns = false;
    config.block.lists = vec![ListSource::File(path)];
    let policy = Policy::build(&config, &ncd_state::StateDir::new(fixture().empty_state_dir()));

    let [source] = policy.sources() else {
        panic!("one source expected: {:?}", policy.sources());
    };
    assert_eq!(source.error, None, "the list file could not be read");
    assert_eq!(source.rules, rules.len(), "rules counted by the policy");
    assert_eq!(source.bad_lines, errors.len(), "bad lines counted by the policy");

    let exceptions: Vec<DomainRule> = rules.iter().filter(|r| r.allow).map(domain_rule).collect();
    let blocks: Vec<DomainRule> = rules.iter().filter(|r| !r.allow).map(domain_rule).collect();
    let excepted = |name: &DomainName| exceptions.iter().any(|x| x.covers(name));
    let verdict = |name: &DomainName| policy.verdict(name.as_str().as_bytes());

    for rule in &blocks {
        let mut probes = vec![rule.name.clone()];
        if rule.scope == RuleScope::Subtree
            && let Ok(sub) = DomainName::parse(&format!("zz.{}", rule.name))
        {
            probes.push(sub);
        }
        for name in probes {
            match (verdict(&name), excepted(&name)) {
                (Verdict::Blocked(_), false) | (Verdict::Allowed { .. }, true) => {}
                (v, x) => panic!("{name} under rule {rule}: verdict {v:?}, excepted by the list: {x}"),
            }
        }
    }
    for exception in &exceptions {
        let v = verdict(&exception.name);
        assert!(
            !matches!(v, Verdict::Blocked(_)),
            "exception {exception} is blocked: {v:?}"
        );
    }

    if rules.len() <= ORACLE_RULES {
        let mut probes: Vec<DomainName> = Vec::new();
        for rule in blocks.iter().chain(&exceptions) {
            let name = rule.name.as_str();
            let mut rest = name;
            while let Some((_, parent)) = rest.split_once('.') {
                probes.extend(DomainName::parse(parent));
                rest = parent;
            }
            probes.extend(DomainName::parse(&format!("zz.{name}")));
            probes.push(rule.name.clone());
        }
        for name in probes {
            let covered = blocks.iter().any(|b| b.covers(&name));
            let want_blocked = covered && !excepted(&name);
            let v = verdict(&name);
            assert_eq!(
                matches!(v, Verdict::Blocked(_)),
                want_blocked,
                "{name}: verdict {v:?}, covered by a rule: {covered}, by an exception: {}",
                excepted(&name)
            );
        }
    }
}

fn domain_rule(rule: &Rule) -> DomainRule {
    DomainRule {
        name: DomainName::parse(&rule.name).expect("rules are normal"),
        scope: rule.scope,
    }
}

/// This thread's list file inside the fixture directory.
fn list_file() -> std::path::PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static PATH: std::path::PathBuf =
            fixture().dir().join(format!("fuzzed-{}.list", NEXT.fetch_add(1, Ordering::Relaxed)));
    }
    PATH.with(Clone::clone)
}
