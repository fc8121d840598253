//! The effective policy: every rule from the config, the catalog, the guards and
//! the lists, compiled into [`SuffixSet`]s: one of blocks, one of the config's
//! allow exceptions, one of the lists' own exceptions.
//!
//! An exception in a list (`@@||name^`) excepts that list's own rules only. It
//! never unblocks a service, a `[block]` domain, a guard or another list's rule:
//! adding a list can then only ever block more, which is what the ratchet counts
//! on when it applies a new list at once during a period. `[block] allow` is the
//! person's own word and excepts every rule.
//!
//! A `Policy` is immutable once built. A reload builds a new one and swaps it in
//! whole (see `ncd_daemon::generation`), so the query path never takes a lock and
//! never sees a half-loaded list.
//!
//! `ncd-policy` is shared by the daemon (which answers with it), the CLI (its
//! offline `ncd check` and `ncd config check`) and the proxy to come. What a
//! blocked answer looks like (answer mode, TTL) is the DNS chain's business, not
//! the policy's.

mod explain;
pub mod lists;
pub mod matcher;
mod source;

use ncd_config::control::ListProblem;
use ncd_config::guards::{GUARD_RULES, GuardAnswer};
use ncd_config::lists::parse_list;
use ncd_config::{Config, ProfileSite, RuleScope};
use ncd_state::StateDir;

use lists::{Copies, Hold};

pub use explain::explain;
pub use matcher::{Match, RuleAction, SourceId, SuffixSet};
pub use source::{GuardKind, Source};

/// What the policy says about a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// No rule covers the name.
    Pass,
    /// A rule covers it, but an allow exception covers it too.
    Allowed { rule: Match<'a>, exception: Match<'a> },
    /// Blocked by this rule.
    Blocked(Match<'a>),
    /// Not blocked, and a host of a site with profile rules: answered with the
    /// proxy's addresses ([`RuleAction::Steer`]).
    Steer(Match<'a>),
}

/// Rule counts per source, for `ncd config check` and the logs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SourceSummary {
    pub source: Source,
    pub rules: usize,
    /// Lines skipped because they could not be read.
    pub bad_lines: usize,
    /// Why the whole source could not be read, if it could not.
    pub error: Option<String>,
    /// Its rules come from the last good copy of a list that could not be read.
    pub from_copy: bool,
}

#[derive(Debug, Default)]
pub struct Policy {
    block: SuffixSet,
    /// `[block] allow`: excepts every rule.
    allow: SuffixSet,
    /// The lists' exceptions, each excepting its own list's rules only.
    list_allow: SuffixSet,
    sources: Vec<SourceSummary>,
    /// Names in `block` that only steer (counted apart from the blocked ones).
    steered: usize,
}

/// The most bad lines logged per list; the rest are counted.
const MAX_LOGGED_BAD_LINES: usize = 20;

impl Policy {
    /// Compiles `config`. List files are read now (see [`lists`]: regular files only,
    /// capped, with a deadline; a skipped one blocks with its last good copy); URL
    /// lists come from the last good copy in `state_dir` (fetched in the background,
    /// never waited for). Keeps no copies: for offline checks.
    pub fn build(config: &Config, state_dir: &StateDir) -> Self {
        Self::build_with(config, state_dir, Copies::ReadOnly, Hold::None)
    }

    /// [`Policy::build`], also keeping a last good copy of each local list that
    /// read well in `state_dir` (what ncdd does).
    /// While a period runs (`hold`), each list also blocks with every rule of its
    /// locked copy, and the copy gains the list's new rules (see [`Policy::held`]).
    pub fn build_keeping_copies(config: &Config, state_dir: &StateDir, hold: Hold<'_>) -> Self {
        Self::build_with(config, state_dir, Copies::Keep, hold)
    }

    fn build_with(config: &Config, state_dir: &StateDir, copies: Copies, hold: Hold<'_>) -> Self {
        let mut policy = Policy::default();
        let holding = copies == Copies::Keep && lists::prepare_hold(state_dir, hold);

        if config.guard.encrypted_dns {
            let source = policy.add_source(Source::Guard(GuardKind::EncryptedDns));
            for rule in GUARD_RULES {
                let action = match rule.answer {
                    GuardAnswer::NxDomain => RuleAction::NxDomain,
                    GuardAnswer::NoData => RuleAction::NoData,
                    GuardAnswer::Blocked => RuleAction::Block,
                };
                let scope = if rule.exact {
                    RuleScope::Exact
                } else {
                    RuleScope::Subtree
                };
                policy.block.insert(rule.domain, scope, action, source);
                policy.sources[source as usize].rules += 1;
            }
        }
        for service in &config.block.services {
            let service = service.service();
            let source = policy.add_source(Source::Service(service.name));
            for domain in service.domains {
                policy
                    .block
                    .insert(domain, RuleScope::Subtree, RuleAction::Block, source);
            }
            policy.sources[source as usize].rules = service.domains.len();
        }
        if !config.block.domains.is_empty() {
            let source = policy.add_source(Source::Domains);
            for rule in &config.block.domains {
                policy
                    .block
                    .insert(rule.name.as_str(), rule.scope, RuleAction::Block, source);
            }
            policy.sources[source as usize].rules = config.block.domains.len();
        }
        if !config.block.allow.is_empty() {
            let source = policy.add_source(Source::Allow);
            for rule in &config.block.allow {
                policy
                    .allow
                    .insert(rule.name.as_str(), rule.scope, RuleAction::Block, source);
            }
            policy.sources[source as usize].rules = config.block.allow.len();
        }
        for list in &config.block.lists {
            let source = policy.add_source(Source::List(list.clone()));
            let loaded = lists::load(list, state_dir, copies);
            if let Some(error) = loaded.error {
                if loaded.from_copy {
                    tracing::warn!(%list, %error, "blocklist not read; its last good copy blocks");
                } else {
                    tracing::warn!(%list, %error, "blocklist not loaded; the other rules still apply");
                }
                policy.sources[source as usize].error = Some(error);
            }
            policy.sources[source as usize].from_copy = loaded.from_copy;
            // A list and locked copy as they were at a hold that held nothing: the
            // same again (the common reload), with no comparison.
            let quiet = holding
                && loaded
                    .text
                    .as_deref()
                    .is_some_and(|text| lists::hold_is_quiet(&state_dir.locked_list(&list.to_string()), text));
            let mut current = (holding && !quiet).then(Vec::new);
            if let Some(text) = &loaded.text {
                policy.load_list(source, text, current.as_mut());
            }
            if let Some(current) = current {
                policy.hold_list(list, state_dir, current, loaded.text.as_deref());
            }
        }
        // Last, so any block on the same name is already there (a block wins).
        for site in ProfileSite::ALL {
            if !config.profiles.iter().any(|p| !p.handles(site).is_empty()) {
                continue;
            }
            let source = policy.add_source(Source::Profile(site));
            for host in site.hosts() {
                let before = policy.block.len();
                policy.block.insert(host, RuleScope::Exact, RuleAction::Steer, source);
                policy.steered += policy.block.len() - before;
            }
            policy.sources[source as usize].rules = site.hosts().len();
        }
        policy.block.shrink_to_fit();
        policy.allow.shrink_to_fit();
        policy.list_allow.shrink_to_fit();
        policy
    }

    fn add_source(&mut self, source: Source) -> SourceId {
        self.sources.push(SourceSummary {
            source,
            rules: 0,
            bad_lines: 0,
            error: None,
            from_copy: false,
        });
        // More than 65k sources would need that many config entries: saturate.
        SourceId::try_from(self.sources.len() - 1).unwrap_or(SourceId::MAX)
    }

    /// The hash a rule is compared by against a locked copy (random per process:
    /// no name can be made to collide with a held one).
    fn rule_hash(scope: RuleScope, name: &str) -> u64 {
        use std::hash::BuildHasher;
        static STATE: std::sync::OnceLock<foldhash::quality::RandomState> = std::sync::OnceLock::new();
        STATE.get_or_init(Default::default).hash_one((scope, name))
    }

    /// Blocks with the rules of `list`'s locked copy that its text no longer has
    /// (`current`: the hashes of the text's block rules), under a
    /// [`Source::HeldList`] of its own; then keeps the copy as locked ∪ current,
    /// written only when the text has rules the copy lacks.
    fn hold_list(
        &mut self,
        list: &ncd_config::ListSource,
        state_dir: &StateDir,
        mut current: Vec<u64>,
        text: Option<&str>,
    ) {
        let path = state_dir.locked_list(&list.to_string());
        let locked_text = match lists::read_file(&path) {
            Ok(text) => text,
            Err(lists::Skipped::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(why) => {
                // Never overwritten while it cannot be read: it may hold more. Said
                // in `ncd status` too (a held rule that stops blocking must show).
                let words = format!(
                    "{}; the rules removed from it during the period cannot be read",
                    why.words(&path)
                );
                tracing::warn!("{words}");
                let source = self.add_source(Source::HeldList(list.clone()));
                self.sources[source as usize].error = Some(words);
                lists::note_hold(&path, None);
                return;
            }
        };
        current.sort_unstable();
        current.dedup();
        let mut locked = Vec::new();
        let mut held_source = None;
        for (scope, name) in locked_text.lines().filter_map(lists::parse_locked_line) {
            let hash = Self::rule_hash(scope, name);
            locked.push(hash);
            if current.binary_search(&hash).is_ok() {
                continue;
            }
            let source = *held_source.get_or_insert_with(|| self.add_source(Source::HeldList(list.clone())));
            self.block.insert(name, scope, RuleAction::Block, source);
            self.sources[source as usize].rules += 1;
        }
        locked.sort_unstable();
        locked.dedup();
        let grew = current.iter().any(|h| locked.binary_search(h).is_err());
        let quiet = held_source.is_none();
        let Some(text) = text.filter(|_| grew) else {
            lists::note_hold(&path, text.filter(|_| quiet).map(|t| (t, locked_text.as_str())));
            return;
        };
        drop(current);
        let mut out = locked_text;
        parse_list(
            text,
            |rule| {
                if !rule.allow && locked.binary_search(&Self::rule_hash(rule.scope, rule.name)).is_err() {
                    lists::push_locked_line(&mut out, rule.scope, rule.name);
                }
            },
            |_| {},
        );
        let kept = lists::keep_locked(&path, &out);
        lists::note_hold(&path, (quiet && kept).then_some((text, out.as_str())));
    }

    fn load_list(&mut self, source: SourceId, text: &str, mut current: Option<&mut Vec<u64>>) {
        let Self {
            block,
            list_allow,
            sources,
            ..
        } = self;
        let summary = &mut sources[source as usize];
        let label = match &summary.source {
            Source::List(list) => list.to_string(),
            other => other.to_string(),
        };
        // One rule a line is the common case; over-reserving is undone by shrink_to_fit.
        let lines = line_count(text.as_bytes());
        block.reserve(lines, text.len());
        let stats = parse_list(
            text,
            |rule| {
                if !rule.allow
                    && let Some(current) = current.as_deref_mut()
                {
                    current.push(Self::rule_hash(rule.scope, rule.name));
                }
                let set = if rule.allow { &mut *list_allow } else { &mut *block };
                set.insert(rule.name, rule.scope, RuleAction::Block, source);
            },
            |bad| {
                if bad.line <= MAX_LOGGED_BAD_LINES || summary.bad_lines < MAX_LOGGED_BAD_LINES {
                    tracing::warn!("{label}:{}:{}: {} (line skipped)", bad.line, bad.column, bad.message);
                }
                summary.bad_lines += 1;
            },
        );
        summary.rules = stats.rules;
        if stats.errors > MAX_LOGGED_BAD_LINES {
            tracing::warn!("{label}: {} lines skipped in all", stats.errors);
        }
    }

    /// The verdict for `name` (normal form: lower-case, no trailing dot).
    pub fn verdict(&self, name: &[u8]) -> Verdict<'_> {
        let mut rules = self.block.covering(name);
        // Steering rules stand aside for any blocking rule covering the name.
        let mut steer = None;
        let rule = loop {
            match rules.next() {
                None => return steer.map_or(Verdict::Pass, Verdict::Steer),
                Some(m) if m.action == RuleAction::Steer => {
                    steer.get_or_insert(m);
                }
                Some(m) => break m,
            }
        };
        let unblocked = |rule, exception| match steer {
            Some(steer) => Verdict::Steer(steer),
            None => Verdict::Allowed { rule, exception },
        };
        if let Some(exception) = self.allow.lookup(name) {
            return unblocked(rule, exception);
        }
        // A list's exception must answer for every rule covering the name: one
        // that another source has too keeps it blocked.
        let Some(exception) = self.list_allow.lookup(name) else {
            return Verdict::Blocked(rule);
        };
        let others = |r: &Match<'_>| r.action.blocks() && (r.source != exception.source || r.shared);
        match std::iter::once(rule).chain(rules).find(others) {
            Some(unexcepted) => Verdict::Blocked(unexcepted),
            None => unblocked(rule, exception),
        }
    }

    /// A name this policy blocks or steers at or under `domain` (normal form), if
    /// any: whoever answers for `domain` answers for it too. A walk over every
    /// rule, for the guard's minute-by-minute checks, not for queries.
    pub fn closed_name_under(&self, domain: &str) -> Option<String> {
        let under = |name: &str| {
            domain.is_empty() || name == domain || name.strip_suffix(domain).is_some_and(|rest| rest.ends_with('.'))
        };
        self.block
            .rules()
            .map(|(name, _)| name)
            .find(|name| {
                under(name) && !matches!(self.verdict(name.as_bytes()), Verdict::Pass | Verdict::Allowed { .. })
            })
            .map(str::to_string)
    }

    /// The rules each list no longer has but the running period still holds
    /// (none when no period runs).
    pub fn held(&self) -> impl Iterator<Item = (&ncd_config::ListSource, usize)> {
        self.sources.iter().filter_map(|s| match &s.source {
            Source::HeldList(list) if s.rules > 0 => Some((list, s.rules)),
            _ => None,
        })
    }

    /// Where a rule came from.
    pub fn source(&self, id: SourceId) -> Option<&Source> {
        self.sources.get(id as usize).map(|s| &s.source)
    }

    /// Where a rule came from, in words.
    pub fn source_name(&self, id: SourceId) -> String {
        self.source(id)
            .map_or_else(|| "unknown".to_string(), ToString::to_string)
    }

    pub fn sources(&self) -> &[SourceSummary] {
        &self.sources
    }

    /// The lists that were skipped or read from their last good copy, and why
    /// (for `ncd status`).
    pub fn list_problems(&self) -> Vec<ListProblem> {
        self.sources
            .iter()
            .filter_map(|s| match (&s.source, &s.error) {
                (Source::List(list) | Source::HeldList(list), Some(why)) => Some(ListProblem {
                    list: list.to_string(),
                    why: why.clone(),
                }),
                _ => None,
            })
            .collect()
    }

    /// Distinct blocked names.
    pub fn block_rules(&self) -> usize {
        self.block.len() - self.steered
    }

    /// Hosts steered to the proxy (those no block covers by the same name).
    pub fn steered_hosts(&self) -> usize {
        self.steered
    }

    /// Distinct allow exceptions, the config's and the lists'.
    pub fn allow_rules(&self) -> usize {
        self.allow.len() + self.list_allow.len()
    }

    /// Heap held by the compiled rules.
    pub fn heap_bytes(&self) -> usize {
        self.block.heap_bytes() + self.allow.heap_bytes() + self.list_allow.heap_bytes()
    }
}

fn line_count(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b == b'\n').count() + 1
}

#[cfg(test)]
mod tests_prop;

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(toml: &str) -> Policy {
        let config = Config::parse(toml, std::path::Path::new("t.toml")).unwrap();
        Policy::build(&config, &StateDir::new("/nonexistent"))
    }

    fn blocked_by(p: &Policy, name: &str) -> Option<String> {
        match p.verdict(name.as_bytes()) {
            Verdict::Blocked(m) => Some(format!("{} ({})", m.name, p.source_name(m.source))),
            _ => None,
        }
    }

    #[test]
    fn services_domains_and_allow_exceptions() {
        let p = policy(
            "[block]\nservices=[\"facebook\"]\ndomains=[\"=exact.example.org\"]\nallow=[\"business.facebook.com\"]\n",
        );
        assert_eq!(
            blocked_by(&p, "www.facebook.com").as_deref(),
            Some("facebook.com (service: facebook)")
        );
        assert!(matches!(p.verdict(b"business.facebook.com"), Verdict::Allowed { .. }));
        assert!(matches!(p.verdict(b"x.business.facebook.com"), Verdict::Allowed { .. }));
        assert!(blocked_by(&p, "exact.example.org").is_some());
        assert_eq!(p.verdict(b"www.exact.example.org"), Verdict::Pass);
    }

    #[test]
    fn guards_follow_the_switch() {
        let on = policy("");
        match on.verdict(b"use-application-dns.net") {
            Verdict::Blocked(m) => assert_eq!(m.action, RuleAction::NxDomain),
            other => panic!("{other:?}"),
        }
        let off = policy("[guard]\nencrypted_dns=false\n");
        assert_eq!(off.verdict(b"use-application-dns.net"), Verdict::Pass);
    }

    #[test]
    fn a_lists_exceptions_except_its_own_rules_only() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("l.adblock");
        std::fs::write(
            &list,
            "||ads.example^\n@@||ok.ads.example^\n@@||instagram.com^\n@@||a.example^\n",
        )
        .unwrap();
        let p = policy(&format!(
            "[block]\nservices=[\"instagram\"]\ndomains=[\"a.example\"]\nlists=[\"{}\"]\n",
            list.display()
        ));
        assert!(matches!(p.verdict(b"ok.ads.example"), Verdict::Allowed { .. }));
        assert!(blocked_by(&p, "x.ads.example").is_some());
        assert_eq!(
            blocked_by(&p, "www.instagram.com").as_deref(),
            Some("instagram.com (service: instagram)"),
            "a list cannot unblock a service"
        );
        assert!(blocked_by(&p, "a.example").is_some(), "nor a [block] domain");

        // Nor another list's rule, even when both lists have the same name.
        let other = dir.path().join("other.txt");
        std::fs::write(&other, "ok.ads.example\n").unwrap();
        let p = policy(&format!(
            "[block]\nlists=[\"{}\", \"{}\"]\n",
            list.display(),
            other.display()
        ));
        assert!(blocked_by(&p, "ok.ads.example").is_some());
    }

    #[test]
    fn a_missing_list_is_reported_and_the_rest_still_blocks() {
        let p = policy("[block]\ndomains=[\"a.example\"]\nlists=[\"/nonexistent/list.txt\"]\n");
        assert!(blocked_by(&p, "a.example").is_some());
        let list = p
            .sources()
            .iter()
            .find(|s| matches!(s.source, Source::List(_)))
            .unwrap();
        assert!(list.error.is_some());
    }

    #[test]
    fn a_lists_exception_never_excepts_a_locked_rule_the_file_no_longer_has() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("state"));
        let list = dir.path().join("l.adblock");
        let config = Config::parse(
            &format!("[block]\nlists=[\"{}\"]\n", list.display()),
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let hold = Hold::Period { key: Some("1") };
        std::fs::write(&list, "||ads.example^\n=exact.example\nkept.example\n").unwrap();
        let p = Policy::build_keeping_copies(&config, &state, hold);
        assert!(blocked_by(&p, "x.ads.example").is_some());
        assert_eq!(p.held().count(), 0);
        // The same again (the quiet path, no comparison): the same rules.
        let p = Policy::build_keeping_copies(&config, &state, hold);
        assert!(blocked_by(&p, "exact.example").is_some());
        assert_eq!(p.held().count(), 0);

        // The rule is dropped and the file excepts its name: still blocked, as held.
        std::fs::write(&list, "kept.example\n@@||ads.example^\nnew.example\n").unwrap();
        let p = Policy::build_keeping_copies(&config, &state, hold);
        let by = blocked_by(&p, "x.ads.example").expect("a held rule stays blocked");
        assert!(by.contains("held until the period ends"), "{by}");
        assert!(blocked_by(&p, "new.example").is_some(), "a new rule bites at once");
        let held: Vec<_> = p.held().map(|(_, n)| n).collect();
        assert_eq!(held, [2], "ads.example and =exact.example");
        // The list's own current rule is still excepted by its own exception.
        std::fs::write(&list, "ads.example\n@@||ads.example^\n").unwrap();
        let p = Policy::build_keeping_copies(&config, &state, hold);
        assert!(matches!(p.verdict(b"ads.example"), Verdict::Allowed { .. }));

        // Without a period (or under another key) the file is what counts.
        std::fs::write(&list, "@@||ads.example^\n").unwrap();
        let p = Policy::build_keeping_copies(&config, &state, Hold::Period { key: Some("2") });
        assert_eq!(p.verdict(b"x.ads.example"), Verdict::Pass);
        let p = Policy::build_keeping_copies(&config, &state, Hold::None);
        assert_eq!(p.verdict(b"new.example"), Verdict::Pass);
        assert!(!state.locked_lists_dir().exists());
    }

    #[test]
    fn a_locked_copy_that_cannot_be_read_is_named_in_the_list_problems() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("state"));
        let list = dir.path().join("l.txt");
        std::fs::write(&list, "kept.example\n").unwrap();
        let config = Config::parse(
            &format!("[block]\nlists=[\"{}\"]\n", list.display()),
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let hold = Hold::Period { key: Some("1") };
        let p = Policy::build_keeping_copies(&config, &state, hold);
        assert!(p.list_problems().is_empty());
        // Root replaces the locked copy with something that is not a file.
        let copy = state.locked_list(&list.display().to_string());
        std::fs::remove_file(&copy).unwrap();
        std::fs::create_dir(&copy).unwrap();
        let p = Policy::build_keeping_copies(&config, &state, hold);
        let problems = p.list_problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].why.contains("cannot be read"), "{problems:?}");
        assert!(
            blocked_by(&p, "kept.example").is_some(),
            "the file's own rules still block"
        );
    }
}
