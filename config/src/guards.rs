//! The encrypted-DNS bypass guards: names that a device looks up to decide
//! whether to route around the local resolver, and the hostnames of
//! well-known public DNS-over-HTTPS / DNS-over-TLS resolvers.
//!
//! Answering these names keeps browsers and phones on `ncd`'s resolver:
//! the Firefox canary and iCloud Private Relay names are answered NXDOMAIN,
//! which their clients read as "this network asks you not to"; the DDR name
//! (RFC 9462) gets an empty answer so no encrypted upgrade is offered; and the
//! public resolvers' hostnames are blocked so a hard-coded DoH/DoT setting
//! cannot reach them by name.
//!
//! Only names whose whole purpose is DNS are listed. Parents that also host
//! ordinary sites (`google.com`, `cloudflare.com`, `quad9.net`, `nextdns.io`,
//! `apple.com`, `icloud.com`, …) are never blocked whole; the specific
//! resolver hostnames under them are listed instead.

/// What a guard name answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardAnswer {
    /// The name does not exist (NXDOMAIN).
    NxDomain,
    /// The name exists but has no records of the asked type (NOERROR, empty answer).
    NoData,
    /// The name is answered the way any blocked domain is answered.
    Blocked,
}

/// One guarded name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardRule {
    /// The guarded name: lower-case, no trailing dot.
    pub domain: &'static str,
    /// `true`: only `domain` itself; `false`: `domain` and all its subdomains.
    pub exact: bool,
    /// How the guarded name is answered.
    pub answer: GuardAnswer,
    /// Why the name is guarded, for logs and `ncd` explanations.
    pub why: &'static str,
}

const CANARY: &str = "Firefox DoH canary: NXDOMAIN tells Firefox not to enable DNS over HTTPS";
const RELAY: &str = "iCloud Private Relay: NXDOMAIN makes Apple devices keep using this resolver";
const DDR: &str = "Discovery of Designated Resolvers (RFC 9462): no encrypted upgrade is offered";
const DOH: &str = "public encrypted-DNS resolver that would bypass ncd";

/// A public DoH/DoT resolver hostname, blocked with its subdomains.
const fn resolver(domain: &'static str) -> GuardRule {
    GuardRule {
        domain,
        exact: false,
        answer: GuardAnswer::Blocked,
        why: DOH,
    }
}

/// An iCloud Private Relay name, answered NXDOMAIN.
const fn relay(domain: &'static str) -> GuardRule {
    GuardRule {
        domain,
        exact: true,
        answer: GuardAnswer::NxDomain,
        why: RELAY,
    }
}

/// Every guarded name.
pub const GUARD_RULES: &[GuardRule] = &[
    // Firefox's canary domain (and anything under it).
    GuardRule {
        domain: "use-application-dns.net",
        exact: false,
        answer: GuardAnswer::NxDomain,
        why: CANARY,
    },
    // iCloud Private Relay.
    relay("mask.icloud.com"),
    relay("mask-h2.icloud.com"),
    relay("mask-api.icloud.com"),
    relay("mask-canary.icloud.com"),
    relay("mask.apple-dns.net"),
    // DDR (RFC 9462): queried as `_dns.resolver.arpa` SVCB.
    GuardRule {
        domain: "_dns.resolver.arpa",
        exact: true,
        answer: GuardAnswer::NoData,
        why: DDR,
    },
    // Google Public DNS.
    resolver("dns.google"),
    resolver("dns.google.com"),
    // Cloudflare 1.1.1.1 (every name under cloudflare-dns.com is a resolver).
    resolver("cloudflare-dns.com"),
    resolver("one.one.one.one"),
    resolver("1dot1dot1dot1.cloudflare-dns.com"),
    resolver("mozilla.cloudflare-dns.com"),
    resolver("chrome.cloudflare-dns.com"),
    resolver("security.cloudflare-dns.com"),
    resolver("family.cloudflare-dns.com"),
    // Quad9.
    resolver("dns.quad9.net"),
    resolver("dns9.quad9.net"),
    resolver("dns10.quad9.net"),
    resolver("dns11.quad9.net"),
    // AdGuard DNS.
    resolver("dns.adguard.com"),
    resolver("dns-unfiltered.adguard.com"),
    resolver("dns-family.adguard.com"),
    resolver("dns.adguard-dns.com"),
    resolver("unfiltered.adguard-dns.com"),
    resolver("family.adguard-dns.com"),
    resolver("d.adguard-dns.com"),
    // NextDNS.
    resolver("dns.nextdns.io"),
    resolver("chromium.dns.nextdns.io"),
    resolver("dns1.nextdns.io"),
    resolver("dns2.nextdns.io"),
    // Cisco OpenDNS / Umbrella.
    resolver("doh.opendns.com"),
    resolver("doh.familyshield.opendns.com"),
    resolver("doh.sandbox.opendns.com"),
    resolver("dns.opendns.com"),
    resolver("familyshield.opendns.com"),
    resolver("dns.umbrella.com"),
    resolver("doh.umbrella.com"),
    // CleanBrowsing.
    resolver("doh.cleanbrowsing.org"),
    resolver("family-filter-dns.cleanbrowsing.org"),
    resolver("adult-filter-dns.cleanbrowsing.org"),
    resolver("security-filter-dns.cleanbrowsing.org"),
    // Mullvad.
    resolver("doh.mullvad.net"),
    resolver("adblock.doh.mullvad.net"),
    resolver("dns.mullvad.net"),
    resolver("adblock.dns.mullvad.net"),
    resolver("base.dns.mullvad.net"),
    resolver("extended.dns.mullvad.net"),
    resolver("family.dns.mullvad.net"),
    resolver("all.dns.mullvad.net"),
    // Control D.
    resolver("dns.controld.com"),
    resolver("freedns.controld.com"),
    // DNS0.EU.
    resolver("dns0.eu"),
    resolver("open.dns0.eu"),
    resolver("kids.dns0.eu"),
    resolver("zero.dns0.eu"),
    // DNS4EU.
    resolver("protective.joindns4.eu"),
    resolver("child.joindns4.eu"),
    resolver("noads.joindns4.eu"),
    resolver("child-noads.joindns4.eu"),
    resolver("unfiltered.joindns4.eu"),
    // CIRA Canadian Shield.
    resolver("private.canadianshield.cira.ca"),
    resolver("protected.canadianshield.cira.ca"),
    resolver("family.canadianshield.cira.ca"),
    // RethinkDNS.
    resolver("sky.rethinkdns.com"),
    resolver("basic.rethinkdns.com"),
    resolver("max.rethinkdns.com"),
    // Apple's own DoH endpoint.
    resolver("doh.dns.apple.com"),
    // ISPs.
    resolver("doh.xfinity.com"),
    resolver("dohtrial.att.net"),
    resolver("dns.aa.net.uk"),
    // Asia.
    resolver("dns.alidns.com"),
    resolver("doh.pub"),
    resolver("dot.pub"),
    resolver("doh.360.cn"),
    resolver("dot.360.cn"),
    resolver("dns.twnic.tw"),
    resolver("public.dns.iij.jp"),
    resolver("doh.tiar.app"),
    // Yandex.
    resolver("common.dot.dns.yandex.net"),
    resolver("safe.dot.dns.yandex.net"),
    resolver("family.dot.dns.yandex.net"),
    // Independent and non-profit resolvers.
    resolver("doh.dns.sb"),
    resolver("doh.libredns.gr"),
    resolver("dns.switch.ch"),
    resolver("dns.digitale-gesellschaft.ch"),
    resolver("doh.applied-privacy.net"),
    resolver("dot1.applied-privacy.net"),
    resolver("dns.brahma.world"),
    resolver("doh.ffmuc.net"),
    resolver("dns.njal.la"),
    resolver("dns.decloudus.com"),
    resolver("dns.rabbitdns.org"),
    resolver("wikimedia-dns.org"),
    resolver("doh.centraleu.pi-dns.com"),
    resolver("doh-ch.blahdns.com"),
    resolver("doh-de.blahdns.com"),
    resolver("doh-fi.blahdns.com"),
    resolver("doh-jp.blahdns.com"),
    resolver("ordns.he.net"),
    resolver("dns.comss.one"),
    resolver("kaitain.restena.lu"),
    resolver("dnspub.restena.lu"),
    resolver("anycast.uncensoreddns.org"),
    resolver("unicast.uncensoreddns.org"),
    resolver("odvr.nic.cz"),
    resolver("dns3.digitalcourage.de"),
    resolver("dnsforge.de"),
    resolver("dns.surfshark.com"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn rule(domain: &str) -> Option<&'static GuardRule> {
        GUARD_RULES.iter().find(|r| r.domain == domain)
    }

    /// True when `rule` matches the query name `name`.
    fn covers(rule: &GuardRule, name: &str) -> bool {
        name == rule.domain || (!rule.exact && name.strip_suffix(rule.domain).is_some_and(|rest| rest.ends_with('.')))
    }

    #[test]
    fn firefox_canary_is_nxdomain() {
        let canary = rule("use-application-dns.net");
        assert_eq!(canary.map(|r| r.answer), Some(GuardAnswer::NxDomain));
        assert_eq!(canary.map(|r| r.exact), Some(false));
    }

    #[test]
    fn private_relay_is_nxdomain() {
        for name in [
            "mask.icloud.com",
            "mask-h2.icloud.com",
            "mask-api.icloud.com",
            "mask-canary.icloud.com",
            "mask.apple-dns.net",
        ] {
            let r = rule(name);
            assert_eq!(r.map(|r| r.answer), Some(GuardAnswer::NxDomain), "{name}");
            assert_eq!(r.map(|r| r.exact), Some(true), "{name}");
        }
    }

    #[test]
    fn ddr_is_nodata() {
        let ddr = rule("_dns.resolver.arpa");
        assert_eq!(ddr.map(|r| r.answer), Some(GuardAnswer::NoData));
        assert_eq!(ddr.map(|r| r.exact), Some(true));
    }

    #[test]
    fn well_known_resolvers_are_blocked() {
        for name in [
            "dns.google",
            "cloudflare-dns.com",
            "mozilla.cloudflare-dns.com",
            "dns.quad9.net",
            "dns.nextdns.io",
            "abc123.dns.nextdns.io",
            "doh.opendns.com",
            "dns.adguard-dns.com",
        ] {
            assert!(
                GUARD_RULES
                    .iter()
                    .any(|r| r.answer == GuardAnswer::Blocked && covers(r, name)),
                "{name} is not blocked"
            );
        }
    }

    #[test]
    fn no_duplicates() {
        let mut seen = HashSet::new();
        for r in GUARD_RULES {
            assert!(seen.insert(r.domain), "{} listed twice", r.domain);
        }
    }

    #[test]
    fn domains_are_well_formed() {
        for r in GUARD_RULES {
            let d = r.domain;
            assert!(
                d.bytes().all(|b| b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || b == b'.'
                    || b == b'-'
                    || (b == b'_' && d == "_dns.resolver.arpa")),
                "{d:?} has a character outside [a-z0-9.-]"
            );
            assert!(d.contains('.'), "{d:?} has no dot");
            assert!(!d.starts_with('.'), "{d:?} starts with a dot");
            assert!(!d.ends_with('.'), "{d:?} ends with a dot");
            assert!(!d.contains(".."), "{d:?} has an empty label");
            assert!(!r.why.is_empty(), "{d:?} has no reason");
        }
    }

    #[test]
    fn ordinary_parents_are_not_guarded() {
        for name in [
            "google.com",
            "www.google.com",
            "cloudflare.com",
            "www.cloudflare.com",
            "quad9.net",
            "www.quad9.net",
            "nextdns.io",
            "my.nextdns.io",
            "apple.com",
            "www.apple.com",
            "icloud.com",
            "www.icloud.com",
            "adguard.com",
            "opendns.com",
        ] {
            for r in GUARD_RULES {
                assert!(!covers(r, name), "{} would guard {name}", r.domain);
            }
        }
    }
}
