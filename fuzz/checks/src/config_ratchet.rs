//! The TOML config and the ratchet.
//!
//! The input is config text — or up to [`MAX_STEPS`] of them separated by
//! [`SEPARATOR`] lines, a period's successive edits of the file. Each must parse
//! or fail with a located error, never panic. Each config that parses is held by
//! `ncd_config::ratchet::ratchet` to the lock (starting from [`LOCKED`], the lock
//! becoming each step's effective config, as `Period::effective` does), and the
//! first is also held the other way round (it as the lock, [`LOCKED`] as the
//! edit). For every hold:
//!
//! - each field follows its kind in ratchet.rs's table: grow-only sets (services,
//!   domains, lists, DNS listen addresses, LAN networks) are the union, exceptions
//!   the intersection, the unlock delay and passage length the larger, the
//!   confirmation window the smaller, the guard on if either is, the answer
//!   `refused` only if both say so, the rate limit the higher (0 = none), the
//!   proxy's addresses the lock's unless the edit names the same set, and the free
//!   fields as the edit wrote them;
//! - `pending` is non-empty exactly when the edit loosens something, `tightened`
//!   exactly when it tightens something; an edit that loosens nothing is applied
//!   as written;
//! - holding the edit again to the result changes nothing (same pending, nothing
//!   more tightened), and an unlock of everything held (`rebase` with nothing
//!   tightened since) gives the edit back;
//! - compiled into a `Policy`, the effective config blocks every probe name the
//!   lock blocks and every one the edit blocks (probes: the names of every rule in
//!   the three configs and their lists, the catalog and guard names, each with a
//!   subdomain and its parents).
//!
//! Lists: a config may name the fixture lists (`lists/plain.txt` …, see
//! `fixture::LISTS`), which are read; other files are dropped before the hold (so
//! no input can make the check read /dev/zero); URL lists stay and have no copy.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::OnceLock;

use ncd_config::ratchet::{Ratcheted, ratchet, rebase};
use ncd_config::{BlockAnswer, Config, ConfigError, ListSource};
use ncd_policy::{Policy, Verdict};

use crate::fixture::fixture;
use crate::probe::{blocked, config_names};

/// The lock a period started with.
pub const LOCKED: &str = r#"
[dns]
listen = ["127.0.0.1:5353"]
upstreams = ["udp://127.0.0.1:1"]
answer = "nxdomain"

[block]
services = ["instagram", "tiktok", "reddit"]
domains = ["ex-blog.example", "=exact.example.org", "news.example"]
lists = ["lists/plain.txt", "lists/social.hosts"]
allow = ["help.instagram.com", "=old.reddit.com", "ok.news.example"]

[guard]
encrypted_dns = true

[unlock]
delay = "24h"
confirm_within = "2h"
challenge_chars = 200
"#;

/// Separates successive edits in one input.
pub const SEPARATOR: &str = "\n#next\n";
/// The most edits one input is read as (the rest is ignored).
pub const MAX_STEPS: usize = 4;

fn locked() -> &'static Config {
    static LOCK: OnceLock<Config> = OnceLock::new();
    LOCK.get_or_init(|| confine(Config::parse(LOCKED, &fixture().config_path()).expect("LOCKED parses")))
}

pub fn check_config_ratchet(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let path = fixture().config_path();
    let start = locked();
    let mut lock = start.clone();
    let mut first = true;
    for piece in text.split(SEPARATOR).take(MAX_STEPS) {
        let edit = match Config::parse(piece, &path) {
            Ok(config) => confine(config),
            Err(error) => {
                check_error(piece, &path, &error);
                continue;
            }
        };
        if first {
            first = false;
            check_hold(&edit, start);
            check_hold(&edit, &edit);
        }
        lock = check_hold(&lock, &edit).effective;
    }
    // The period as a whole only tightened.
    check_policies(&[(start, "the starting lock")], &lock);
}

/// A config error names the file and a line and column inside `text`.
fn check_error(text: &str, path: &Path, error: &ConfigError) {
    assert_eq!(error.path, path, "{error}");
    assert!(!error.message.trim().is_empty(), "an error without words: {error:?}");
    let Some((line, col)) = error.position else {
        panic!("config error without line:col: {error}");
    };
    let lines: Vec<&str> = text.split('\n').collect();
    assert!(
        (1..=lines.len()).contains(&line),
        "{error}: line {line} of {}",
        lines.len()
    );
    let chars = lines[line - 1].chars().count();
    assert!(
        (1..=chars + 1).contains(&col),
        "{error}: column {col} of a line of {chars} characters"
    );
    let shown = error.to_string();
    let want = format!("{}:{line}:{col}: ", path.display());
    assert!(shown.starts_with(&want), "{shown:?} does not start with {want:?}");
}

/// Keeps the lists a check may read: fixture files and URLs (never downloaded).
fn confine(mut config: Config) -> Config {
    let allowed: Vec<_> = fixture().list_paths().collect();
    config.block.lists.retain(|list| match list {
        ListSource::File(path) => allowed.contains(path),
        ListSource::Url(_) => true,
    });
    config
}

fn set<T: Ord + Clone>(items: &[T]) -> BTreeSet<T> {
    items.iter().cloned().collect()
}

fn union<T: Ord + Clone>(a: &[T], b: &[T]) -> BTreeSet<T> {
    set(a).union(&set(b)).cloned().collect()
}

/// True when `a` has an item `b` lacks.
fn grows<T: Ord + Clone>(a: &[T], b: &[T]) -> bool {
    !set(a).is_subset(&set(b))
}

/// The config with its rule sets sorted and deduplicated, to compare as sets.
fn canonical(config: &Config) -> Config {
    fn canon<T: Ord + Clone>(items: &[T]) -> Vec<T> {
        set(items).into_iter().collect()
    }
    let mut c = config.clone();
    c.block.services = canon(&c.block.services);
    c.block.domains = canon(&c.block.domains);
    c.block.lists = canon(&c.block.lists);
    c.block.allow = canon(&c.block.allow);
    c.dns.listen = canon(&c.dns.listen);
    c.dns.allow_clients = canon(&c.dns.allow_clients);
    c.proxy.listen = canon(&c.proxy.listen);
    c
}

/// How permissive a rate limit is: 0 (none) above every number.
fn rate_rank(limit: u32) -> u64 {
    if limit == 0 { u64::MAX } else { u64::from(limit) }
}

/// Holds `edit` to `lock` and checks everything ratchet.rs promises.
fn check_hold(lock: &Config, edit: &Config) -> Ratcheted {
    let r = ratchet(lock, edit);
    let e = &r.effective;
    let ctx = || format!("lock {lock:#?}\nedit {edit:#?}\nresult {r:#?}");
    let (l, n) = (&lock.block, &edit.block);

    // Each field by its kind.
    assert_eq!(
        set(&e.block.services),
        union(&l.services, &n.services),
        "services\n{}",
        ctx()
    );
    assert_eq!(
        set(&e.block.domains),
        union(&l.domains, &n.domains),
        "domains\n{}",
        ctx()
    );
    assert_eq!(set(&e.block.lists), union(&l.lists, &n.lists), "lists\n{}", ctx());
    let both: BTreeSet<_> = set(&l.allow).intersection(&set(&n.allow)).cloned().collect();
    assert_eq!(set(&e.block.allow), both, "exceptions\n{}", ctx());
    assert_eq!(
        e.guard.encrypted_dns,
        lock.guard.encrypted_dns || edit.guard.encrypted_dns,
        "guard\n{}",
        ctx()
    );
    let (lu, nu, eu) = (&lock.unlock, &edit.unlock, &e.unlock);
    assert_eq!(eu.delay.0, lu.delay.0.max(nu.delay.0), "unlock delay\n{}", ctx());
    assert_eq!(
        eu.confirm_within.0,
        lu.confirm_within.0.min(nu.confirm_within.0),
        "window\n{}",
        ctx()
    );
    assert_eq!(
        eu.challenge_chars,
        lu.challenge_chars.max(nu.challenge_chars),
        "passage\n{}",
        ctx()
    );
    let (ld, nd, ed) = (&lock.dns, &edit.dns, &e.dns);
    assert_eq!(set(&ed.listen), union(&ld.listen, &nd.listen), "dns listen\n{}", ctx());
    assert_eq!(
        set(&ed.allow_clients),
        union(&ld.allow_clients, &nd.allow_clients),
        "allow_clients\n{}",
        ctx()
    );
    let refused = |a: BlockAnswer| a == BlockAnswer::Refused;
    if refused(nd.answer) && !refused(ld.answer) {
        assert_eq!(ed.answer, ld.answer, "answer refused is held\n{}", ctx());
    } else {
        assert_eq!(ed.answer, nd.answer, "answer\n{}", ctx());
    }
    assert_eq!(
        rate_rank(ed.client_rate_limit),
        rate_rank(ld.client_rate_limit).max(rate_rank(nd.client_rate_limit)),
        "rate limit\n{}",
        ctx()
    );
    let proxy_moves = set(&lock.proxy.listen) != set(&edit.proxy.listen);
    let want_proxy = if proxy_moves {
        &lock.proxy.listen
    } else {
        &edit.proxy.listen
    };
    assert_eq!(&e.proxy.listen, want_proxy, "proxy listen\n{}", ctx());
    assert_eq!(
        e.proxy.origin_roots,
        edit.proxy.origin_roots,
        "free: origin_roots\n{}",
        ctx()
    );
    let free_dns = |d: &ncd_config::DnsConfig| {
        (
            d.upstreams.clone(),
            d.blocked_ttl,
            d.max_ttl,
            d.upstream_timeout,
            d.cache_size,
        )
    };
    assert_eq!(free_dns(ed), free_dns(nd), "free: dns\n{}", ctx());
    assert_eq!(e.control, edit.control, "free: control\n{}", ctx());
    assert_eq!(e.period, edit.period, "free: period\n{}", ctx());
    assert_eq!(e.block.refresh, n.refresh, "free: refresh\n{}", ctx());

    // Held back exactly when something loosens; applied exactly when something tightens.
    let looser = grows(&l.services, &n.services)
        || grows(&l.domains, &n.domains)
        || grows(&l.lists, &n.lists)
        || grows(&n.allow, &l.allow)
        || (lock.guard.encrypted_dns && !edit.guard.encrypted_dns)
        || nu.delay.0 < lu.delay.0
        || nu.confirm_within.0 > lu.confirm_within.0
        || nu.challenge_chars < lu.challenge_chars
        || grows(&ld.listen, &nd.listen)
        || grows(&ld.allow_clients, &nd.allow_clients)
        || (refused(nd.answer) && !refused(ld.answer))
        || rate_rank(nd.client_rate_limit) < rate_rank(ld.client_rate_limit)
        || proxy_moves;
    let tighter = grows(&n.services, &l.services)
        || grows(&n.domains, &l.domains)
        || grows(&n.lists, &l.lists)
        || grows(&l.allow, &n.allow)
        || (!lock.guard.encrypted_dns && edit.guard.encrypted_dns)
        || nu.delay.0 > lu.delay.0
        || nu.confirm_within.0 < lu.confirm_within.0
        || nu.challenge_chars > lu.challenge_chars
        || grows(&nd.listen, &ld.listen)
        || grows(&nd.allow_clients, &ld.allow_clients)
        || (refused(ld.answer) && !refused(nd.answer))
        || rate_rank(nd.client_rate_limit) > rate_rank(ld.client_rate_limit);
    assert_eq!(!r.pending.is_empty(), looser, "pending\n{}", ctx());
    assert_eq!(!r.tightened.is_empty(), tighter, "tightened\n{}", ctx());
    assert!(
        r.pending.iter().chain(&r.tightened).all(|c| !c.trim().is_empty()),
        "a change without words\n{}",
        ctx()
    );
    if !looser {
        assert_eq!(
            canonical(e),
            canonical(edit),
            "an edit that loosens nothing applies as written\n{}",
            ctx()
        );
    }

    // Holding again changes nothing more.
    let again = ratchet(e, edit);
    assert_eq!(&again.effective, e, "holding the edit to the result again\n{}", ctx());
    assert_eq!(again.pending, r.pending, "held changes, held again\n{}", ctx());
    assert!(
        again.tightened.is_empty(),
        "tightened twice: {:?}\n{}",
        again.tightened,
        ctx()
    );
    let same = ratchet(e, e);
    assert!(
        same.effective == *e && same.pending.is_empty() && same.tightened.is_empty(),
        "{same:#?}"
    );
    // Unlocking everything held, nothing tightened since: the edit as written.
    assert_eq!(
        &rebase(edit, lock, lock),
        edit,
        "rebase onto an unchanged lock\n{}",
        ctx()
    );
    assert_eq!(
        &rebase(edit, lock, e),
        edit,
        "rebase onto the lock the edit made\n{}",
        ctx()
    );

    // What the policy blocks.
    check_policies(&[(lock, "the lock"), (edit, "the edit")], e);
    r
}

/// Every probe name some config in `stricter_than` blocks, `effective` blocks too.
fn check_policies(stricter_than: &[(&Config, &str)], effective: &Config) {
    let state = ncd_state::StateDir::new(fixture().empty_state_dir());
    let policy = Policy::build(effective, &state);
    let mut configs: Vec<&Config> = stricter_than.iter().map(|(c, _)| *c).collect();
    configs.push(effective);
    let names = config_names(&configs);
    for (config, what) in stricter_than {
        let other = Policy::build(config, &state);
        for name in &names {
            if blocked(&other, name) && !blocked(&policy, name) {
                panic!(
                    "{name} is blocked under {what} but not under the effective config: {}\n\
                     {what}: {config:#?}\neffective: {effective:#?}",
                    describe(&policy, name)
                );
            }
        }
    }
}

fn describe(policy: &Policy, name: &str) -> String {
    match policy.verdict(name.as_bytes()) {
        Verdict::Pass => "no rule covers it".into(),
        Verdict::Allowed { rule, exception } => format!(
            "{rule} ({}) is excepted by {exception} ({})",
            policy.source_name(rule.source),
            policy.source_name(exception.source)
        ),
        Verdict::Blocked(rule) => format!("blocked by {rule}"),
        Verdict::Steer(rule) => format!("steered to the proxy by {rule}"),
    }
}
