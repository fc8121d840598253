//! The suffix set: a million rules in a few tens of bytes each, looked up without
//! allocating.
//!
//! Every rule name lives once in one byte arena. A hash table of `u32` entry indices
//! keyed by the hash of the name finds a rule in one probe. A lookup walks the query
//! name's suffixes at label boundaries (`a.b.example.com`, `b.example.com`,
//! `example.com`, `com`): the full name matches any rule, a proper suffix only a
//! subtree rule. That is the whole matching semantics, in one place.

use std::fmt;
use std::hash::BuildHasher;

use hashbrown::HashTable;

use ncd_config::RuleScope;

/// What a matched rule asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    /// Answer as `[dns] answer` says.
    Block,
    /// NXDOMAIN whatever the answer mode (the Firefox canary, Private Relay).
    NxDomain,
    /// An empty answer (DDR: "no designated resolver here").
    NoData,
    /// Not a block: answer with the proxy's addresses, so the companion proxy
    /// sees the site's requests (a host of a site that a `[[profile]]` names).
    /// Any blocking rule covering the same name wins over it.
    Steer,
}

impl RuleAction {
    /// True for the actions that block (everything but [`RuleAction::Steer`]).
    pub fn blocks(self) -> bool {
        !matches!(self, RuleAction::Steer)
    }
}

/// Index of the list, service or config key a rule came from.
pub type SourceId = u16;

/// The name of entry `e`, as bytes of the arena.
fn bytes_of(arena: &str, e: Entry) -> &[u8] {
    &arena.as_bytes()[e.start as usize..e.start as usize + e.len as usize]
}

#[derive(Clone, Copy)]
struct Entry {
    start: u32,
    len: u8,
    /// Bit 0: exact rule; bit 1: subtree rule; bits 2-3: action; bit 4: shared.
    flags: u8,
    source: SourceId,
}

const EXACT: u8 = 0b01;
const ACTION_BITS: u8 = 0b1100;
const SUBTREE: u8 = 0b10;
/// Another source has the same name too.
const SHARED: u8 = 0b1_0000;

impl Entry {
    fn action(self) -> RuleAction {
        match (self.flags >> 2) & 0b11 {
            1 => RuleAction::NxDomain,
            2 => RuleAction::NoData,
            3 => RuleAction::Steer,
            _ => RuleAction::Block,
        }
    }
}

fn action_bits(action: RuleAction) -> u8 {
    match action {
        RuleAction::Block => 0,
        RuleAction::NxDomain => 1 << 2,
        RuleAction::NoData => 2 << 2,
        RuleAction::Steer => 3 << 2,
    }
}

fn scope_bit(scope: RuleScope) -> u8 {
    match scope {
        RuleScope::Exact => EXACT,
        RuleScope::Subtree => SUBTREE,
    }
}

/// A rule found by [`SuffixSet::lookup`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match<'a> {
    /// The rule's name (the matched suffix of the query).
    pub name: &'a str,
    pub scope: RuleScope,
    pub action: RuleAction,
    /// The first source that has this rule.
    pub source: SourceId,
    /// Whether other sources have the same rule too.
    pub shared: bool,
}

impl fmt::Display for Match<'_> {
    /// The rule as it is written in a config: `name`, or `=name` for an exact rule.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scope {
            RuleScope::Exact => write!(f, "={}", self.name),
            RuleScope::Subtree => f.write_str(self.name),
        }
    }
}

/// The hash of the entry at index `i`, for when the table grows or shrinks.
fn rehash<'a>(
    arena: &'a str,
    entries: &'a [Entry],
    hasher: &'a foldhash::fast::FixedState,
) -> impl Fn(&u32) -> u64 + 'a {
    move |&i| hasher.hash_one(bytes_of(arena, entries[i as usize]))
}

/// A set of domain rules, each covering a name exactly or with its subdomains.
#[derive(Clone, Default)]
pub struct SuffixSet {
    arena: String,
    entries: Vec<Entry>,
    table: HashTable<u32>,
    hasher: foldhash::fast::FixedState,
}

impl fmt::Debug for SuffixSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SuffixSet").field("rules", &self.entries.len()).finish()
    }
}

impl SuffixSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of distinct names.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn name_of(&self, entry: Entry) -> &str {
        &self.arena[entry.start as usize..entry.start as usize + entry.len as usize]
    }

    fn find(&self, name: &[u8], hash: u64) -> Option<Entry> {
        self.table
            .find(hash, |&i| {
                let e = self.entries[i as usize];
                bytes_of(&self.arena, e) == name
            })
            .map(|&i| self.entries[i as usize])
    }

    /// Adds a rule. `name` must be in normal form (see `ncd_config::domain`). The
    /// first source and action recorded for a name are kept — except that a
    /// blocking rule always takes the place of a steering one; scopes accumulate,
    /// and a name from a second source is marked shared.
    pub fn insert(&mut self, name: &str, scope: RuleScope, action: RuleAction, source: SourceId) {
        let Ok(len) = u8::try_from(name.len()) else {
            return; // longer than any valid DNS name: can never match a query
        };
        let hash = self.hasher.hash_one(name.as_bytes());
        let Self {
            arena,
            entries,
            table,
            hasher,
        } = self;
        // One probe finds the name or the slot for it (the table makes room first).
        let slot = table.entry(
            hash,
            |&i| bytes_of(arena, entries[i as usize]) == name.as_bytes(),
            rehash(arena, entries, hasher),
        );
        let vacant = match slot {
            hashbrown::hash_table::Entry::Occupied(found) => {
                let entry = &mut entries[*found.get() as usize];
                if entry.action() == RuleAction::Steer && action.blocks() {
                    // A block wins over steering, whatever the order of insertion.
                    entry.flags = (entry.flags & !ACTION_BITS) | action_bits(action);
                    entry.source = source;
                }
                entry.flags |= scope_bit(scope);
                if entry.source != source {
                    entry.flags |= SHARED;
                }
                return;
            }
            hashbrown::hash_table::Entry::Vacant(vacant) => vacant,
        };
        let Ok(start) = u32::try_from(arena.len()) else {
            return; // arena beyond 4 GiB: refuse more rules rather than corrupt
        };
        arena.push_str(name);
        vacant.insert(entries.len() as u32);
        entries.push(Entry {
            start,
            len,
            flags: scope_bit(scope) | action_bits(action),
            source,
        });
    }

    /// Every rule's name and action, in no particular order.
    pub fn rules(&self) -> impl Iterator<Item = (&str, RuleAction)> + '_ {
        self.entries.iter().map(|&e| (self.name_of(e), e.action()))
    }

    /// Finds the most specific rule covering `name` (normal form, as bytes).
    pub fn lookup(&self, name: &[u8]) -> Option<Match<'_>> {
        self.covering(name).next()
    }

    /// Every rule covering `name`, the most specific first.
    pub fn covering<'s, 'n>(&'s self, name: &'n [u8]) -> Covering<'s, 'n> {
        Covering {
            set: self,
            suffix: (!self.entries.is_empty()).then_some(name),
            full: true,
        }
    }

    /// Makes room for about `rules` more rules of `bytes` name bytes in all, so a big
    /// list loads without rehashing the table again and again.
    pub fn reserve(&mut self, rules: usize, bytes: usize) {
        self.arena.reserve(bytes);
        self.entries.reserve(rules);
        self.table
            .reserve(rules, rehash(&self.arena, &self.entries, &self.hasher));
    }

    /// Releases spare capacity once loading is done.
    pub fn shrink_to_fit(&mut self) {
        self.arena.shrink_to_fit();
        self.entries.shrink_to_fit();
        self.table
            .shrink_to_fit(rehash(&self.arena, &self.entries, &self.hasher));
    }

    /// Bytes of heap this set holds (for `ncd config check` and the benchmarks).
    pub fn heap_bytes(&self) -> usize {
        self.arena.capacity()
            + self.entries.capacity() * std::mem::size_of::<Entry>()
            + self.table.capacity() * (std::mem::size_of::<u32>() + 1)
    }
}

/// The rules covering one name, from the name itself up to its top label: see
/// [`SuffixSet::covering`].
#[derive(Debug)]
pub struct Covering<'s, 'n> {
    set: &'s SuffixSet,
    /// The suffix to look at next; `None` when the walk is over.
    suffix: Option<&'n [u8]>,
    /// Whether `suffix` is the whole name (exact rules match only then).
    full: bool,
}

impl<'s> Iterator for Covering<'s, '_> {
    type Item = Match<'s>;

    fn next(&mut self) -> Option<Match<'s>> {
        while let Some(suffix) = self.suffix {
            let full = self.full;
            self.suffix = suffix.iter().position(|&b| b == b'.').map(|dot| &suffix[dot + 1..]);
            self.full = false;
            let hash = self.set.hasher.hash_one(suffix);
            let Some(entry) = self.set.find(suffix, hash) else {
                continue;
            };
            let scope = if full && entry.flags & EXACT != 0 {
                RuleScope::Exact
            } else if entry.flags & SUBTREE != 0 {
                RuleScope::Subtree
            } else {
                continue;
            };
            return Some(Match {
                name: self.set.name_of(entry),
                scope,
                action: entry.action(),
                source: entry.source,
                shared: entry.flags & SHARED != 0,
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(rules: &[(&str, RuleScope)]) -> SuffixSet {
        let mut s = SuffixSet::new();
        for (i, (name, scope)) in rules.iter().enumerate() {
            s.insert(name, *scope, RuleAction::Block, i as SourceId);
        }
        s
    }

    fn hit(s: &SuffixSet, q: &str) -> Option<String> {
        s.lookup(q.as_bytes()).map(|m| m.name.to_string())
    }

    #[test]
    fn subtree_rules_cover_subdomains_only_at_label_boundaries() {
        let s = set(&[("instagram.com", RuleScope::Subtree)]);
        assert_eq!(hit(&s, "instagram.com").as_deref(), Some("instagram.com"));
        assert_eq!(hit(&s, "a.b.instagram.com").as_deref(), Some("instagram.com"));
        assert_eq!(hit(&s, "notinstagram.com"), None);
        assert_eq!(hit(&s, "instagram.com.evil.test"), None);
        assert_eq!(hit(&s, "com"), None);
    }

    #[test]
    fn exact_rules_cover_only_the_name() {
        let s = set(&[("exact.example.org", RuleScope::Exact)]);
        assert!(hit(&s, "exact.example.org").is_some());
        assert_eq!(hit(&s, "www.exact.example.org"), None);
    }

    #[test]
    fn both_scopes_on_one_name_and_the_most_specific_rule_wins() {
        let s = set(&[
            ("example.com", RuleScope::Exact),
            ("example.com", RuleScope::Subtree),
            ("www.example.com", RuleScope::Subtree),
        ]);
        assert_eq!(s.len(), 2);
        assert_eq!(hit(&s, "a.example.com").as_deref(), Some("example.com"));
        let m = s.lookup(b"x.www.example.com").unwrap();
        assert_eq!((m.name, m.source), ("www.example.com", 2));
    }

    #[test]
    fn first_action_and_source_are_kept() {
        let mut s = SuffixSet::new();
        s.insert("use-application-dns.net", RuleScope::Subtree, RuleAction::NxDomain, 7);
        s.insert("use-application-dns.net", RuleScope::Subtree, RuleAction::Block, 9);
        let m = s.lookup(b"use-application-dns.net").unwrap();
        assert_eq!((m.action, m.source), (RuleAction::NxDomain, 7));
    }

    #[test]
    fn many_rules_stay_findable_after_growth_and_shrink() {
        let mut s = SuffixSet::new();
        for i in 0..50_000 {
            s.insert(
                &format!("host{i}.example{}.test", i % 97),
                RuleScope::Subtree,
                RuleAction::Block,
                0,
            );
        }
        s.shrink_to_fit();
        for i in (0..50_000).step_by(7) {
            let q = format!("www.host{i}.example{}.test", i % 97);
            assert!(s.lookup(q.as_bytes()).is_some(), "{q}");
        }
        assert!(s.lookup(b"host1.example2.test").is_none());
        assert!(
            s.heap_bytes() / s.len() < 60,
            "{} bytes per rule",
            s.heap_bytes() / s.len()
        );
    }
}
