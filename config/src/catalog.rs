//! The built-in service catalog: which names a person may write in
//! `[block] services`, and which domains each of those names blocks.
//!
//! Every domain listed here blocks itself and all of its subdomains, so a
//! domain belongs in a service only if its whole subtree belongs to that
//! service. Shared parents (`googleapis.com`, `appspot.com`, `amazonaws.com`,
//! CDN zones and the like) are never listed; a specific host under one of
//! them (e.g. `youtubei.googleapis.com`) is listed instead.

/// One service a person can name in `[block] services`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    /// The name used in the config, lower-case (e.g. "instagram").
    pub name: &'static str,
    /// Other names accepted for it (e.g. "twitter" for "x").
    pub aliases: &'static [&'static str],
    /// Domains blocked for the service: each blocks the name and all its subdomains.
    pub domains: &'static [&'static str],
}

/// Every service `ncd` knows, in the order they are listed to people.
pub const SERVICES: &[Service] = &[
    Service {
        name: "instagram",
        aliases: &[],
        domains: &[
            "instagram.com",
            "cdninstagram.com",
            "instagram.net",
            "instagr.am",
            "ig.me",
            "igcdn.com",
            "igsonar.com",
            "igtv.com",
        ],
    },
    Service {
        name: "facebook",
        aliases: &["fb"],
        domains: &[
            "facebook.com",
            "facebook.net",
            "facebook.de",
            "thefacebook.com",
            "fbcdn.net",
            "fbcdn.com",
            "fbsbx.com",
            "fb.com",
            "fb.me",
            "fb.gg",
            "fb.watch",
            "fbwat.ch",
            "facebookmail.com",
        ],
    },
    Service {
        name: "messenger",
        aliases: &[],
        domains: &["messenger.com", "m.me", "fbmessenger.com", "msngr.com"],
    },
    Service {
        name: "whatsapp",
        aliases: &[],
        domains: &["whatsapp.com", "whatsapp.net", "wa.me"],
    },
    Service {
        name: "x",
        aliases: &["twitter"],
        domains: &[
            "x.com",
            "twitter.com",
            "twitter.jp",
            "twimg.com",
            "t.co",
            "twttr.com",
            "twttr.net",
            "twtrdns.net",
            "twvid.com",
            "ads-twitter.com",
            "tweetdeck.com",
            "pscp.tv",
            "periscope.tv",
        ],
    },
    Service {
        name: "tiktok",
        aliases: &[],
        domains: &[
            "tiktok.com",
            "tiktokv.com",
            "tiktokv.us",
            "tiktokv.eu",
            "tiktokw.us",
            "tiktokw.eu",
            "tiktokcdn.com",
            "tiktokcdn-us.com",
            "tiktokcdn-eu.com",
            "ttwstatic.com",
            "ttlivecdn.com",
            "byteoversea.com",
            "ibytedtos.com",
            "ibyteimg.com",
            "musical.ly",
            "muscdn.com",
        ],
    },
    Service {
        name: "snapchat",
        aliases: &[],
        domains: &[
            "snapchat.com",
            "snap.com",
            "sc-cdn.net",
            "sc-static.net",
            "snapkit.com",
            "snap-dev.net",
            "snapads.com",
        ],
    },
    Service {
        name: "threads",
        aliases: &[],
        domains: &["threads.net", "threads.com"],
    },
    Service {
        name: "linkedin",
        aliases: &[],
        domains: &["linkedin.com", "licdn.com", "lnkd.in"],
    },
    Service {
        name: "youtube",
        aliases: &[],
        domains: &[
            "youtube.com",
            "youtu.be",
            "yt.be",
            "ytimg.com",
            "googlevideo.com",
            "youtube-nocookie.com",
            "youtubekids.com",
            "youtube.googleapis.com",
            "youtubei.googleapis.com",
            "youtubeembeddedplayer.googleapis.com",
            "yt3.ggpht.com",
            "yt3.googleusercontent.com",
        ],
    },
    Service {
        name: "reddit",
        aliases: &[],
        domains: &[
            "reddit.com",
            "redd.it",
            "redditmedia.com",
            "redditstatic.com",
            "redditmail.com",
        ],
    },
    Service {
        name: "telegram",
        aliases: &[],
        domains: &[
            "telegram.org",
            "t.me",
            "telegram.me",
            "telegram.dog",
            "telegra.ph",
            "telesco.pe",
            "tdesktop.com",
            "cdn-telegram.org",
            "telegram-cdn.org",
        ],
    },
    Service {
        name: "discord",
        aliases: &[],
        domains: &[
            "discord.com",
            "discord.gg",
            "discord.media",
            "discord.gift",
            "discord.new",
            "discordapp.com",
            "discordapp.net",
            "discordcdn.com",
            "discordsays.com",
            "discordstatus.com",
            "dis.gd",
        ],
    },
    Service {
        name: "pinterest",
        aliases: &[],
        domains: &[
            "pinterest.com",
            "pinimg.com",
            "pin.it",
            "pinterest.co.uk",
            "pinterest.ca",
            "pinterest.com.au",
            "pinterest.com.mx",
            "pinterest.de",
            "pinterest.fr",
            "pinterest.es",
            "pinterest.it",
            "pinterest.nl",
            "pinterest.jp",
        ],
    },
    Service {
        name: "tumblr",
        aliases: &[],
        domains: &["tumblr.com", "tmblr.co"],
    },
    Service {
        name: "bereal",
        aliases: &[],
        domains: &["bereal.com", "bere.al", "bereal.team"],
    },
    Service {
        name: "tinder",
        aliases: &[],
        domains: &["tinder.com", "gotinder.com"],
    },
    Service {
        name: "bumble",
        aliases: &[],
        domains: &["bumble.com", "bumbcdn.com"],
    },
    Service {
        name: "hinge",
        aliases: &[],
        domains: &["hinge.co", "hingeaws.net", "hingenexus.com", "hingeprod.net"],
    },
];

/// Finds a service by name or alias, case-insensitively.
pub fn service(name: &str) -> Option<&'static Service> {
    SERVICES
        .iter()
        .find(|s| s.name.eq_ignore_ascii_case(name) || s.aliases.iter().any(|a| a.eq_ignore_ascii_case(name)))
}

/// The canonical names of every service, in catalog order.
pub fn service_names() -> impl Iterator<Item = &'static str> {
    SERVICES.iter().map(|s| s.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Asserts that `name` is in the catalog and lists every one of `core`.
    fn assert_core(name: &str, core: &[&str]) {
        let Some(svc) = service(name) else {
            panic!("service {name:?} missing from the catalog");
        };
        assert_eq!(svc.name, name, "{name:?} resolved to another service");
        for domain in core {
            assert!(svc.domains.contains(domain), "{name}: core domain {domain} missing");
        }
    }

    /// True when `domain` is `parent` or lies under it.
    fn within(domain: &str, parent: &str) -> bool {
        domain == parent || domain.strip_suffix(parent).is_some_and(|rest| rest.ends_with('.'))
    }

    #[test]
    fn instagram_core_domains() {
        assert_core("instagram", &["instagram.com", "cdninstagram.com", "ig.me"]);
    }

    #[test]
    fn facebook_core_domains() {
        assert_core("facebook", &["facebook.com", "facebook.net", "fbcdn.net", "fb.com"]);
    }

    #[test]
    fn messenger_core_domains() {
        assert_core("messenger", &["messenger.com", "m.me"]);
    }

    #[test]
    fn whatsapp_core_domains() {
        assert_core("whatsapp", &["whatsapp.com", "whatsapp.net", "wa.me"]);
    }

    #[test]
    fn x_core_domains() {
        assert_core("x", &["x.com", "twitter.com", "twimg.com", "t.co"]);
    }

    #[test]
    fn tiktok_core_domains() {
        assert_core("tiktok", &["tiktok.com", "tiktokv.com", "tiktokcdn.com"]);
    }

    #[test]
    fn snapchat_core_domains() {
        assert_core("snapchat", &["snapchat.com", "sc-cdn.net"]);
    }

    #[test]
    fn threads_core_domains() {
        assert_core("threads", &["threads.net", "threads.com"]);
    }

    #[test]
    fn linkedin_core_domains() {
        assert_core("linkedin", &["linkedin.com", "licdn.com", "lnkd.in"]);
    }

    #[test]
    fn youtube_core_domains() {
        assert_core("youtube", &["youtube.com", "youtu.be", "ytimg.com", "googlevideo.com"]);
    }

    #[test]
    fn reddit_core_domains() {
        assert_core("reddit", &["reddit.com", "redd.it", "redditmedia.com"]);
    }

    #[test]
    fn telegram_core_domains() {
        assert_core("telegram", &["telegram.org", "t.me"]);
    }

    #[test]
    fn discord_core_domains() {
        assert_core("discord", &["discord.com", "discord.gg", "discordapp.com"]);
    }

    #[test]
    fn pinterest_core_domains() {
        assert_core("pinterest", &["pinterest.com", "pinimg.com", "pin.it"]);
    }

    #[test]
    fn tumblr_core_domains() {
        assert_core("tumblr", &["tumblr.com"]);
    }

    #[test]
    fn bereal_core_domains() {
        assert_core("bereal", &["bereal.com", "bere.al"]);
    }

    #[test]
    fn tinder_core_domains() {
        assert_core("tinder", &["tinder.com", "gotinder.com"]);
    }

    #[test]
    fn bumble_core_domains() {
        assert_core("bumble", &["bumble.com", "bumbcdn.com"]);
    }

    #[test]
    fn hinge_core_domains() {
        assert_core("hinge", &["hinge.co", "hingeaws.net"]);
    }

    #[test]
    fn aliases_resolve() {
        assert_eq!(service("Twitter").map(|s| s.name), Some("x"));
        assert_eq!(service("twitter").map(|s| s.name), Some("x"));
        assert_eq!(service("FB").map(|s| s.name), Some("facebook"));
        assert_eq!(service("Instagram").map(|s| s.name), Some("instagram"));
        assert_eq!(service("X").map(|s| s.name), Some("x"));
        assert_eq!(service("myspace"), None);
        assert_eq!(service(""), None);
    }

    #[test]
    fn service_names_follow_catalog_order() {
        let names: Vec<_> = service_names().collect();
        assert_eq!(names.len(), SERVICES.len());
        assert_eq!(names.first(), Some(&"instagram"));
        assert_eq!(names.last(), Some(&"hinge"));
    }

    #[test]
    fn domains_are_well_formed() {
        for svc in SERVICES {
            assert!(!svc.domains.is_empty(), "{} has no domains", svc.name);
            let mut seen = HashSet::new();
            for &d in svc.domains {
                assert!(
                    d.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-'),
                    "{}: {d:?} has a character outside [a-z0-9.-]",
                    svc.name
                );
                assert!(d.contains('.'), "{}: {d:?} has no dot", svc.name);
                assert!(!d.starts_with('.'), "{}: {d:?} starts with a dot", svc.name);
                assert!(!d.ends_with('.'), "{}: {d:?} ends with a dot", svc.name);
                assert!(!d.contains(".."), "{}: {d:?} has an empty label", svc.name);
                assert!(seen.insert(d), "{}: {d:?} listed twice", svc.name);
            }
            // A subdomain of another listed domain would be dead weight.
            for &d in svc.domains {
                for &parent in svc.domains {
                    assert!(
                        d == parent || !within(d, parent),
                        "{}: {d:?} is already covered by {parent:?}",
                        svc.name
                    );
                }
            }
        }
    }

    #[test]
    fn no_shared_parents() {
        const SHARED: &[&str] = &[
            "googleapis.com",
            "amazonaws.com",
            "appspot.com",
            "cloudfront.net",
            "akamaihd.net",
            "akamai.net",
            "google.com",
            "gstatic.com",
            "apple.com",
            "microsoft.com",
        ];
        for svc in SERVICES {
            for &d in svc.domains {
                for &shared in SHARED {
                    assert!(
                        !within(shared, d),
                        "{}: {d:?} would block the shared parent {shared:?}",
                        svc.name
                    );
                }
            }
        }
    }

    #[test]
    fn names_and_aliases_are_unique() {
        let mut seen = HashSet::new();
        for svc in SERVICES {
            for &n in std::iter::once(&svc.name).chain(svc.aliases) {
                assert_eq!(n, n.to_ascii_lowercase(), "{n:?} is not lower-case");
                assert!(seen.insert(n), "{n:?} names two services");
            }
        }
    }
}
