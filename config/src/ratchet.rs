//! The ratchet: during a period the effective config may only get stricter.
//!
//! [`ratchet`] holds a new config (the file as edited) to the locked one (what the
//! period started with, plus every tightening since). Each field has one of a few
//! kinds, declared in one place, [`ratchet`]'s exhaustive destructuring: a new
//! config field does not compile until it is classified here.
//!
//! | kind | fields | effective value | held back (pending) |
//! |---|---|---|---|
//! | grow-only set | services, domains, lists | locked ∪ new | each removal |
//! | shrink-only set | allow exceptions | locked ∩ new | each addition |
//! | at-least | unlock delay, challenge chars | max | a smaller value |
//! | at-most | confirm window | min | a larger value |
//! | stays on | guard.encrypted_dns | locked ∨ new | turning it off |
//! | grow-only per handle | profiles (by name), their handles per site | locked ∪ new | each removed profile or handle |
//! | answer | `[dns] answer` | `null`/`nxdomain` as written; `refused` only if locked so | turning to `refused` |
//! | grow-only set | `[dns] listen`, `[dns] allow_clients` | locked ∪ new | each removal |
//! | no lower limit | `[dns] client_rate_limit` (0 = none) | the higher | a lower limit |
//! | fixed | `[proxy] listen` | locked unless the same set | any change |
//! | free | upstreams, `upstream_roots`, timeouts, TTLs, cache, `[control] socket`, refresh, the default period length, `[proxy] origin_roots` | new | never |
//!
//! "Free" fields change how allowed traffic is served, not whether a blocked answer
//! reaches the application; they apply at once. The resolver-facing rows are
//! there because a stub resolver (glibc, systemd-resolved, a phone on the LAN)
//! moves on to its next server when ncdd answers REFUSED, does not answer, or is
//! not there: `answer = "refused"`, a dropped listen address, a dropped LAN
//! network (its clients get REFUSED) and a lower rate limit (dropped queries) each
//! turn blocks into fall-throughs wherever another resolver is listed. The proxy's
//! listen addresses are what profile hosts are steered to: moving them elsewhere
//! (another machine, where a relay may serve the profile) is held as a whole;
//! adding one would steer there too, so growing is held as well.
//!
//! `listen` is bound when ncdd starts, so a held or applied change to it takes
//! effect at the next restart. Under socket activation the DNS sockets are
//! systemd's (`ncd.socket`) and `[dns] listen` is not what is served: the ratchet
//! still holds the field (and shows it as pending), but the addresses themselves
//! are the socket unit's, which only root can change.

use std::fmt::Display;

use crate::profile::{Profile, ProfileSite};
use crate::schema::{
    BlockAnswer, BlockConfig, Config, ControlConfig, DnsConfig, GuardConfig, PeriodConfig, ProxyConfig, UnlockConfig,
};

/// A new config held to a locked one.
#[derive(Debug, Clone, PartialEq)]
pub struct Ratcheted {
    /// What ncdd enforces: the locked config with the new one's tightenings and
    /// free changes, and none of its loosenings.
    pub effective: Config,
    /// Tightenings the new config brought (applied).
    pub tightened: Vec<String>,
    /// Loosenings the new config asks for (held until an unlock).
    pub pending: Vec<String>,
}

/// Holds `new` to `locked`. See the module docs for each field's rule.
pub fn ratchet(locked: &Config, new: &Config) -> Ratcheted {
    let mut r = Changes::default();
    let Config {
        dns:
            DnsConfig {
                listen,
                upstreams,
                upstream_roots,
                answer,
                blocked_ttl,
                max_ttl,
                upstream_timeout,
                cache_size,
                allow_clients,
                client_rate_limit,
            },
        block:
            BlockConfig {
                services,
                domains,
                lists,
                allow,
                refresh,
            },
        guard: GuardConfig { encrypted_dns },
        control: ControlConfig { socket },
        period: PeriodConfig { length },
        unlock: UnlockConfig {
            delay,
            confirm_within,
            challenge_chars,
        },
        profiles,
        // `[proxy] listen` is fixed for the period: the DNS side steers the profile
        // hosts to these addresses, so one ncdd does not serve (another machine)
        // could relay the profile. `origin_roots` is free: it only adds trust for
        // the real origins of requests that are allowed anyway (never for the
        // proxy's own CA).
        proxy: ProxyConfig {
            listen: proxy_listen,
            origin_roots,
        },
    } = new.clone();

    let effective = Config {
        dns: DnsConfig {
            listen: r.grow_only("DNS listen address", &locked.dns.listen, listen),
            upstreams,
            upstream_roots,
            answer: r.answer(locked.dns.answer, answer),
            blocked_ttl,
            max_ttl,
            upstream_timeout,
            cache_size,
            allow_clients: r.grow_only("LAN network", &locked.dns.allow_clients, allow_clients),
            client_rate_limit: r.rate_limit(locked.dns.client_rate_limit, client_rate_limit),
        },
        block: BlockConfig {
            services: r.grow_only("service", &locked.block.services, services),
            domains: r.grow_only("domain", &locked.block.domains, domains),
            lists: r.grow_only("list", &locked.block.lists, lists),
            allow: r.shrink_only("exception", &locked.block.allow, allow),
            refresh,
        },
        guard: GuardConfig {
            encrypted_dns: r.stays_on("the encrypted-DNS guard", locked.guard.encrypted_dns, encrypted_dns),
        },
        control: ControlConfig { socket },
        period: PeriodConfig { length },
        unlock: UnlockConfig {
            delay: r.at_least("the unlock delay", locked.unlock.delay, delay),
            confirm_within: r.at_most("the confirmation window", locked.unlock.confirm_within, confirm_within),
            challenge_chars: r.at_least("the passage length", locked.unlock.challenge_chars, challenge_chars),
        },
        profiles: r.profiles(&locked.profiles, profiles),
        proxy: ProxyConfig {
            listen: r.fixed("the proxy's listen addresses", &locked.proxy.listen, proxy_listen),
            origin_roots,
        },
    };
    Ratcheted {
        effective,
        tightened: r.tightened,
        pending: r.pending,
    }
}

/// Applies an unlock of held changes without opening anything else.
///
/// `target` is the file as it was when the unlock was asked for (what the person
/// asked to open), `base` the lock at that moment, `head` the lock now. The result
/// is `target` plus every tightening made since (`base` → `head`): a change held
/// *after* the request is not opened by it, and nothing tightened since is lost.
pub fn rebase(target: &Config, base: &Config, head: &Config) -> Config {
    let Config {
        dns:
            DnsConfig {
                listen,
                upstreams: _,
                upstream_roots: _,
                answer,
                blocked_ttl: _,
                max_ttl: _,
                upstream_timeout: _,
                cache_size: _,
                allow_clients,
                client_rate_limit,
            },
        block:
            BlockConfig {
                services,
                domains,
                lists,
                allow,
                refresh: _,
            },
        guard: GuardConfig { encrypted_dns },
        control: _,
        period: _,
        unlock: UnlockConfig {
            delay,
            confirm_within,
            challenge_chars,
        },
        profiles,
        // `[proxy] listen` is fixed: nothing to tighten; the unlock applies the target's.
        proxy: _,
    } = head;
    let mut result = target.clone();
    // Profiles and handles added since the request stay.
    for profile in profiles {
        match base.profiles.iter().find(|p| p.name == profile.name) {
            None => {
                merge_profile(&mut result.profiles, &profile.name);
                for (site, handle) in profile.entries() {
                    merge_handle(&mut result.profiles, &profile.name, site, handle);
                }
            }
            Some(before) => {
                for (site, handle) in profile.entries() {
                    if !before.handles(site).contains(handle) {
                        merge_handle(&mut result.profiles, &profile.name, site, handle);
                    }
                }
            }
        }
    }
    result.block.services = grown(&target.block.services, &base.block.services, services);
    result.block.domains = grown(&target.block.domains, &base.block.domains, domains);
    result.block.lists = grown(&target.block.lists, &base.block.lists, lists);
    // Exceptions removed since the request stay removed.
    result.block.allow = target
        .block
        .allow
        .iter()
        .filter(|x| !base.block.allow.contains(x) || allow.contains(x))
        .cloned()
        .collect();
    result.dns.listen = grown(&target.dns.listen, &base.dns.listen, listen);
    result.dns.allow_clients = grown(&target.dns.allow_clients, &base.dns.allow_clients, allow_clients);
    // Turned away from `refused` since: the unlock does not turn it back.
    if base.dns.answer == BlockAnswer::Refused
        && *answer != BlockAnswer::Refused
        && target.dns.answer == BlockAnswer::Refused
    {
        result.dns.answer = *answer;
    }
    if rate_rank(*client_rate_limit) > rate_rank(base.dns.client_rate_limit)
        && rate_rank(*client_rate_limit) > rate_rank(target.dns.client_rate_limit)
    {
        result.dns.client_rate_limit = *client_rate_limit;
    }
    result.guard.encrypted_dns = target.guard.encrypted_dns || (*encrypted_dns && !base.guard.encrypted_dns);
    if *delay > base.unlock.delay {
        result.unlock.delay = result.unlock.delay.max(*delay);
    }
    if *confirm_within < base.unlock.confirm_within {
        result.unlock.confirm_within = result.unlock.confirm_within.min(*confirm_within);
    }
    if *challenge_chars > base.unlock.challenge_chars {
        result.unlock.challenge_chars = result.unlock.challenge_chars.max(*challenge_chars);
    }
    result
}

/// How permissive a rate limit is: 0 (no limit) ranks above every number.
fn rate_rank(limit: u32) -> u64 {
    if limit == 0 { u64::MAX } else { u64::from(limit) }
}

/// `target` plus what `head` added since `base`.
fn grown<T: PartialEq + Clone>(target: &[T], base: &[T], head: &[T]) -> Vec<T> {
    let mut out = target.to_vec();
    out.extend(
        head.iter()
            .filter(|x| !base.contains(x) && !target.contains(x))
            .cloned(),
    );
    out
}

/// Makes sure `profiles` has one named `name`; true when it was added.
fn merge_profile(profiles: &mut Vec<Profile>, name: &str) -> bool {
    if profiles.iter().any(|p| p.name == name) {
        return false;
    }
    profiles.push(Profile::named(name));
    true
}

/// Adds `handle` on `site` to the profile `name` (made if missing); true when added.
fn merge_handle(profiles: &mut Vec<Profile>, name: &str, site: ProfileSite, handle: &crate::profile::Handle) -> bool {
    merge_profile(profiles, name);
    match profiles.iter_mut().find(|p| p.name == name) {
        Some(profile) if !profile.handles(site).contains(handle) => {
            profile.handles_mut(site).push(handle.clone());
            true
        }
        _ => false,
    }
}

#[derive(Default)]
struct Changes {
    tightened: Vec<String>,
    pending: Vec<String>,
}

impl Changes {
    fn grow_only<T: PartialEq + Display + Clone>(&mut self, what: &str, locked: &[T], new: Vec<T>) -> Vec<T> {
        let mut effective = locked.to_vec();
        for item in locked.iter().filter(|item| !new.contains(item)) {
            self.pending.push(format!("remove {what} {item}"));
        }
        for item in new {
            if !effective.contains(&item) {
                self.tightened.push(format!("add {what} {item}"));
                effective.push(item);
            }
        }
        effective
    }

    fn shrink_only<T: PartialEq + Display + Clone>(&mut self, what: &str, locked: &[T], new: Vec<T>) -> Vec<T> {
        for item in new.iter().filter(|item| !locked.contains(item)) {
            self.pending.push(format!("add {what} {item}"));
        }
        for item in locked.iter().filter(|item| !new.contains(item)) {
            self.tightened.push(format!("remove {what} {item}"));
        }
        locked.iter().filter(|item| new.contains(item)).cloned().collect()
    }

    /// Profiles are grow-only, profile by profile (by name) and handle by handle.
    fn profiles(&mut self, locked: &[Profile], new: Vec<Profile>) -> Vec<Profile> {
        let mut effective = locked.to_vec();
        for held in locked {
            match new.iter().find(|p| p.name == held.name) {
                None => self.pending.push(format!("remove profile {:?}", held.name)),
                Some(edited) => {
                    for (site, handle) in held.entries() {
                        if !edited.handles(site).contains(handle) {
                            self.pending
                                .push(format!("remove {site} handle {handle} from profile {:?}", held.name));
                        }
                    }
                }
            }
        }
        for profile in &new {
            if merge_profile(&mut effective, &profile.name) {
                self.tightened.push(format!("add profile {:?}", profile.name));
            }
            for (site, handle) in profile.entries() {
                if merge_handle(&mut effective, &profile.name, site, handle) {
                    self.tightened
                        .push(format!("add {site} handle {handle} to profile {:?}", profile.name));
                }
            }
        }
        effective
    }

    /// `refused` lets a stub resolver try its next server, so it is the loose one;
    /// `null` and `nxdomain` both keep the name from resolving and swap freely.
    fn answer(&mut self, locked: BlockAnswer, new: BlockAnswer) -> BlockAnswer {
        let word = |a: BlockAnswer| match a {
            BlockAnswer::Null => "null",
            BlockAnswer::Nxdomain => "nxdomain",
            BlockAnswer::Refused => "refused",
        };
        match (locked, new) {
            (BlockAnswer::Refused, BlockAnswer::Refused) => new,
            (_, BlockAnswer::Refused) => {
                self.pending.push(format!(
                    "answer blocked names with refused instead of {} (a stub resolver would ask the next server)",
                    word(locked)
                ));
                locked
            }
            (BlockAnswer::Refused, _) => {
                self.tightened
                    .push(format!("answer blocked names with {} instead of refused", word(new)));
                new
            }
            _ => new,
        }
    }

    /// A lower limit drops more of a LAN client's queries, which its stub then
    /// asks elsewhere; a higher one (or none, 0) only serves more.
    fn rate_limit(&mut self, locked: u32, new: u32) -> u32 {
        let words = |l: u32| if l == 0 { "none".to_string() } else { format!("{l}/s") };
        match rate_rank(new).cmp(&rate_rank(locked)) {
            std::cmp::Ordering::Less => {
                self.pending.push(format!(
                    "lower the LAN client rate limit from {} to {}",
                    words(locked),
                    words(new)
                ));
                locked
            }
            std::cmp::Ordering::Greater => {
                self.tightened.push(format!(
                    "raise the LAN client rate limit from {} to {}",
                    words(locked),
                    words(new)
                ));
                new
            }
            std::cmp::Ordering::Equal => new,
        }
    }

    /// A value that may not change at all during a period (compared as a set).
    fn fixed<T: PartialEq + Display + Clone>(&mut self, what: &str, locked: &[T], new: Vec<T>) -> Vec<T> {
        let same = locked.iter().all(|x| new.contains(x)) && new.iter().all(|x| locked.contains(x));
        if same {
            return new;
        }
        let list = |items: &[T]| items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        self.pending
            .push(format!("change {what} from {} to {}", list(locked), list(&new)));
        locked.to_vec()
    }

    fn stays_on(&mut self, what: &str, locked: bool, new: bool) -> bool {
        match (locked, new) {
            (true, false) => self.pending.push(format!("turn off {what}")),
            (false, true) => self.tightened.push(format!("turn on {what}")),
            _ => {}
        }
        locked || new
    }

    fn at_least<T: PartialOrd + Display + Copy>(&mut self, what: &str, locked: T, new: T) -> T {
        if new < locked {
            self.pending.push(format!("lower {what} from {locked} to {new}"));
            locked
        } else {
            if new > locked {
                self.tightened.push(format!("raise {what} from {locked} to {new}"));
            }
            new
        }
    }

    fn at_most<T: PartialOrd + Display + Copy>(&mut self, what: &str, locked: T, new: T) -> T {
        if new > locked {
            self.pending.push(format!("raise {what} from {locked} to {new}"));
            locked
        } else {
            if new < locked {
                self.tightened.push(format!("lower {what} from {locked} to {new}"));
            }
            new
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config(toml: &str) -> Config {
        Config::parse(toml, Path::new("t.toml")).unwrap()
    }

    const LOCKED: &str = r#"
[block]
services = ["instagram", "tiktok"]
domains = ["ex-blog.example"]
lists = ["/etc/ncd/lists/a.txt"]
allow = ["business.facebook.com", "help.instagram.com"]
[guard]
encrypted_dns = true
[unlock]
delay = "24h"
confirm_within = "2h"
challenge_chars = 200
"#;

    #[test]
    fn the_same_config_changes_nothing() {
        let locked = config(LOCKED);
        let r = ratchet(&locked, &locked);
        assert_eq!(r.effective, locked);
        assert!(r.tightened.is_empty() && r.pending.is_empty());
    }

    #[test]
    fn tightenings_apply_at_once() {
        let locked = config(LOCKED);
        let new = config(
            &LOCKED
                .replace(r#""tiktok"]"#, r#""tiktok", "snapchat"]"#)
                .replace("\"24h\"", "\"48h\""),
        );
        let r = ratchet(&locked, &new);
        assert!(r.pending.is_empty(), "{:?}", r.pending);
        assert_eq!(r.effective.block.services.len(), 3);
        assert_eq!(r.effective.unlock.delay.as_secs(), 48 * 3600);
        assert_eq!(
            r.tightened,
            ["add service snapchat", "raise the unlock delay from 1d to 2d"]
        );
    }

    #[test]
    fn loosenings_are_held_and_named() {
        let locked = config(LOCKED);
        let new = config(
            r#"
[block]
services = ["instagram"]
allow = ["business.facebook.com", "help.instagram.com", "www.instagram.com"]
[guard]
encrypted_dns = false
[unlock]
delay = "1h"
confirm_within = "1d"
challenge_chars = 10
"#,
        );
        let r = ratchet(&locked, &new);
        assert_eq!(r.effective, locked, "nothing may loosen");
        assert_eq!(
            r.pending,
            [
                "remove service tiktok",
                "remove domain ex-blog.example",
                "remove list /etc/ncd/lists/a.txt",
                "add exception www.instagram.com",
                "turn off the encrypted-DNS guard",
                "lower the unlock delay from 1d to 1h",
                "raise the confirmation window from 2h to 1d",
                "lower the passage length from 200 to 10",
            ]
        );
        assert!(r.tightened.is_empty());
    }

    #[test]
    fn a_mixed_edit_applies_its_tightenings_and_holds_its_loosenings() {
        let locked = config(LOCKED);
        // Swap tiktok for snapchat, and drop one exception.
        let new = config(
            &LOCKED
                .replace(r#""tiktok"]"#, r#""snapchat"]"#)
                .replace(r#", "help.instagram.com""#, ""),
        );
        let r = ratchet(&locked, &new);
        let services: Vec<_> = r
            .effective
            .block
            .services
            .iter()
            .map(|s| s.as_str().to_string())
            .collect();
        assert_eq!(services, ["instagram", "tiktok", "snapchat"]);
        assert_eq!(r.effective.block.allow.len(), 1);
        assert_eq!(r.pending, ["remove service tiktok"]);
        assert_eq!(
            r.tightened,
            ["add service snapchat", "remove exception help.instagram.com"]
        );
    }

    #[test]
    fn free_fields_apply_as_written() {
        let locked = config(LOCKED);
        let new = config(&format!(
            "[dns]\nupstreams = [\"udp://192.0.2.1:53\"]\nanswer = \"nxdomain\"\n\
             blocked_ttl = \"30s\"\nmax_ttl = \"5m\"\nupstream_timeout = \"1s\"\ncache_size = 5\n\
             [control]\nsocket = \"/tmp/x.sock\"\n[period]\nlength = \"1d\"\n\
             [proxy]\nlisten = [\"[::1]:443\", \"127.0.0.1:443\"]\norigin_roots = [\"/tmp/root.pem\"]\n{}",
            LOCKED.replace("[block]", "[block]\nrefresh = \"1h\"")
        ));
        let r = ratchet(&locked, &new);
        assert!(r.pending.is_empty() && r.tightened.is_empty(), "{r:?}");
        assert_eq!(r.effective, new);
    }

    const SERVING: &str = r#"
[dns]
listen = ["127.0.0.1:53", "[::1]:53", "192.168.1.2:53"]
answer = "null"
allow_clients = ["192.168.1.0/24"]
client_rate_limit = 500
[proxy]
listen = ["127.0.0.1:443"]
"#;

    #[test]
    fn null_and_nxdomain_swap_freely_and_refused_is_held() {
        let locked = config(SERVING);
        let nx = config(&SERVING.replace(r#""null""#, r#""nxdomain""#));
        let r = ratchet(&locked, &nx);
        assert!(r.pending.is_empty() && r.tightened.is_empty(), "{r:?}");
        assert_eq!(r.effective.dns.answer, BlockAnswer::Nxdomain);

        let refused = config(&SERVING.replace(r#""null""#, r#""refused""#));
        for lock in [&locked, &nx] {
            let r = ratchet(lock, &refused);
            assert_eq!(r.effective.dns.answer, lock.dns.answer, "refused is held");
            assert_eq!(r.pending.len(), 1, "{r:?}");
            assert!(r.pending[0].contains("refused"), "{:?}", r.pending);
        }
        // A period that began on `refused` may leave it at once.
        let r = ratchet(&refused, &nx);
        assert_eq!(r.effective.dns.answer, BlockAnswer::Nxdomain);
        assert!(r.pending.is_empty());
        assert_eq!(r.tightened, ["answer blocked names with nxdomain instead of refused"]);
    }

    #[test]
    fn listen_addresses_and_lan_networks_only_grow() {
        let locked = config(SERVING);
        let new = config(
            &SERVING
                .replace(r#", "192.168.1.2:53"]"#, r#", "10.0.0.2:53"]"#)
                .replace(r#"["192.168.1.0/24"]"#, r#"["10.0.0.0/8"]"#),
        );
        let r = ratchet(&locked, &new);
        let listen: Vec<String> = r.effective.dns.listen.iter().map(ToString::to_string).collect();
        assert_eq!(listen, ["127.0.0.1:53", "[::1]:53", "192.168.1.2:53", "10.0.0.2:53"]);
        assert_eq!(r.effective.dns.allow_clients.len(), 2);
        assert_eq!(
            r.pending,
            [
                "remove DNS listen address 192.168.1.2:53",
                "remove LAN network 192.168.1.0/24"
            ]
        );
        assert_eq!(
            r.tightened,
            ["add DNS listen address 10.0.0.2:53", "add LAN network 10.0.0.0/8"]
        );
    }

    #[test]
    fn a_lower_rate_limit_is_held_and_none_is_the_highest() {
        let locked = config(SERVING);
        let lower = config(&SERVING.replace("= 500", "= 5"));
        let r = ratchet(&locked, &lower);
        assert_eq!(r.effective.dns.client_rate_limit, 500);
        assert_eq!(r.pending, ["lower the LAN client rate limit from 500/s to 5/s"]);
        let none = config(&SERVING.replace("= 500", "= 0"));
        let r = ratchet(&locked, &none);
        assert_eq!(r.effective.dns.client_rate_limit, 0);
        assert!(r.pending.is_empty());
        let r = ratchet(&none, &locked);
        assert_eq!(r.effective.dns.client_rate_limit, 0);
        assert_eq!(r.pending, ["lower the LAN client rate limit from none to 500/s"]);
    }

    #[test]
    fn the_proxy_stays_where_it_listened() {
        let locked = config(SERVING);
        for to in [r#"["192.0.2.9:443"]"#, r#"["127.0.0.1:443", "192.0.2.9:443"]"#] {
            let new = config(&SERVING.replace(r#"["127.0.0.1:443"]"#, to));
            let r = ratchet(&locked, &new);
            assert_eq!(r.effective.proxy.listen, locked.proxy.listen, "{to}");
            assert_eq!(r.pending.len(), 1, "{r:?}");
            assert!(r.tightened.is_empty());
        }
    }

    #[test]
    fn an_unlock_keeps_resolver_tightenings_made_since() {
        let base = config(&SERVING.replace(r#""null""#, r#""refused""#));
        // Asked to open: a listen address dropped, the proxy moved.
        let target = config(
            &SERVING
                .replace(r#""null""#, r#""refused""#)
                .replace(r#", "192.168.1.2:53"]"#, "]")
                .replace(r#"["127.0.0.1:443"]"#, r#"["127.0.0.2:443"]"#),
        );
        // Since then: answer null, a listen address and a LAN network added, no rate limit.
        let head = config(
            &SERVING
                .replace(r#", "192.168.1.2:53"]"#, r#", "192.168.1.2:53", "10.0.0.2:53"]"#)
                .replace(r#"["192.168.1.0/24"]"#, r#"["192.168.1.0/24", "10.0.0.0/8"]"#)
                .replace("= 500", "= 0"),
        );
        let result = rebase(&target, &base, &head);
        assert_eq!(result.dns.answer, BlockAnswer::Null);
        let listen: Vec<String> = result.dns.listen.iter().map(ToString::to_string).collect();
        assert_eq!(listen, ["127.0.0.1:53", "[::1]:53", "10.0.0.2:53"]);
        assert_eq!(result.dns.allow_clients.len(), 2);
        assert_eq!(result.dns.client_rate_limit, 0);
        assert_eq!(result.proxy.listen, target.proxy.listen);
    }

    #[test]
    fn an_unlock_opens_what_was_held_when_asked_and_keeps_later_tightenings() {
        let base = config(LOCKED);
        // Asked to open: tiktok removed.
        let target = config(&LOCKED.replace(r#", "tiktok"]"#, "]"));
        // Since then: snapchat added (a tightening), an exception removed.
        let head = config(
            &LOCKED
                .replace(r#""tiktok"]"#, r#""tiktok", "snapchat"]"#)
                .replace(r#", "help.instagram.com""#, ""),
        );
        let result = rebase(&target, &base, &head);
        let services: Vec<_> = result.block.services.iter().map(|s| s.as_str().to_string()).collect();
        assert_eq!(services, ["instagram", "snapchat"]);
        assert_eq!(result.block.allow.len(), 1);
        // The file now also removes ex-blog.example: that is held again, not opened.
        let file_now = config(
            &LOCKED
                .replace(r#", "tiktok"]"#, "]")
                .replace(r#"domains = ["ex-blog.example"]"#, ""),
        );
        let r = ratchet(&result, &file_now);
        assert_eq!(
            r.pending,
            [
                "remove service snapchat",
                "remove domain ex-blog.example",
                "add exception help.instagram.com"
            ]
        );
    }

    #[test]
    fn the_effective_config_is_never_looser_than_either_side_demands() {
        // Each field, pushed both ways, lands on the stricter value.
        let base = config(LOCKED);
        let loose = config(
            "[guard]\nencrypted_dns = false\n[unlock]\ndelay = \"1s\"\nconfirm_within = \"9d\"\nchallenge_chars = 1\n",
        );
        for (locked, new) in [(&base, &loose), (&loose, &base)] {
            let e = ratchet(locked, new).effective;
            assert!(e.guard.encrypted_dns);
            assert_eq!(e.unlock.delay.as_secs(), 86_400);
            assert_eq!(e.unlock.confirm_within.as_secs(), 7200);
            assert_eq!(e.unlock.challenge_chars, 200);
            assert!(e.block.allow.is_empty());
            assert_eq!(e.block.services.len(), 2);
        }
    }
}
