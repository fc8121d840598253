//! Who manages the system resolver, and what taking it over means: the one place
//! that knows each [`Flavour`]'s files, their texts and the commands that make the
//! resolver read them. Install writes a [`Takeover`]; `ncd guard` puts its files back;
//! the manifest stores the flavour by the names below.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::fsutil::{self, Found};
use super::plan::Platform;
use super::units;

/// Who manages the system resolver, and so how ncd takes it over. Stored in the
/// manifest under the names given here, which are the ones it has always used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Flavour {
    #[serde(rename = "systemd-resolved")]
    Resolved,
    #[serde(rename = "networkmanager")]
    NetworkManager,
    #[serde(rename = "resolv.conf")]
    ResolvConf,
    #[serde(rename = "macos")]
    Macos,
}

/// A file a takeover writes, as it should read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ResolverFile {
    /// As on the target system (absolute, without the root).
    pub path: PathBuf,
    pub contents: Vec<u8>,
    pub mode: u32,
    /// What it is, in words.
    pub what: String,
}

/// A command that makes the resolver read the files (again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Reload {
    pub argv: Vec<String>,
    pub why: &'static str,
}

/// What taking over the resolver takes: the files, then the commands that reload it.
/// Uninstall runs the reloads again once the files are back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Takeover {
    pub files: Vec<ResolverFile>,
    pub reload: Vec<Reload>,
}

impl Flavour {
    /// Works out who manages the resolver under `root`.
    pub(super) fn detect(root: &Path, platform: Platform) -> anyhow::Result<Flavour> {
        if platform == Platform::Macos {
            return Ok(Flavour::Macos);
        }
        let resolv = fsutil::under(root, Path::new("/etc/resolv.conf"));
        let found = fsutil::look(&resolv).with_context(|| format!("Could not look at {}", resolv.display()))?;
        let nm = fsutil::under(root, Path::new("/etc/NetworkManager")).is_dir();
        match found {
            Found::Symlink { target } => {
                let t = target.to_string_lossy();
                if t.contains("run/systemd/resolve/") {
                    Ok(Flavour::Resolved)
                } else if nm && t.contains("run/NetworkManager/") {
                    Ok(Flavour::NetworkManager)
                } else {
                    anyhow::bail!(
                        "{} links to {}, a resolver manager ncd does not know how to take over (it knows \
                         systemd-resolved, NetworkManager and a plain file). Nothing was changed.",
                        resolv.display(),
                        target.display()
                    )
                }
            }
            Found::File { .. } if nm => Ok(Flavour::NetworkManager),
            Found::File { .. } | Found::Absent => Ok(Flavour::ResolvConf),
            Found::Other => anyhow::bail!(
                "{} is neither a file nor a link. Nothing was changed.",
                resolv.display()
            ),
        }
    }

    /// The flavour in words, for the plan's heading.
    pub(super) fn words(self) -> &'static str {
        match self {
            Flavour::Resolved => "systemd-resolved manages DNS here",
            Flavour::NetworkManager => "NetworkManager writes /etc/resolv.conf here",
            Flavour::ResolvConf => "/etc/resolv.conf is a plain file here",
            Flavour::Macos => "macOS: DNS is set per network service",
        }
    }

    /// The files that send DNS to ncd, with `domains` (the blocked apexes) routed to
    /// it by name where the flavour can, and the commands that reload the resolver.
    /// `original_resolv_conf` is the person's own `/etc/resolv.conf` (before ncd):
    /// its `search`, `domain` and `options` lines are kept in ncd's.
    /// (macOS network services' DNS servers are settings, not files: see `plan`.)
    pub(super) fn takeover(self, domains: &[String], original_resolv_conf: Option<&str>) -> Takeover {
        let file = |path: &str, contents: &str, what: &str| ResolverFile {
            path: path.into(),
            contents: contents.as_bytes().to_vec(),
            mode: 0o644,
            what: what.into(),
        };
        match self {
            Flavour::Resolved => Takeover {
                files: vec![file(
                    "/etc/systemd/resolved.conf.d/99-ncd.conf",
                    &resolved_dropin(domains),
                    "the systemd-resolved drop-in sending DNS to ncd",
                )],
                reload: vec![
                    reload(
                        &["systemctl", "reload-or-restart", "systemd-resolved"],
                        "make systemd-resolved read it",
                    ),
                    reload(&["resolvectl", "flush-caches"], "forget cached answers"),
                ],
            },
            Flavour::NetworkManager => Takeover {
                files: vec![file(
                    "/etc/NetworkManager/conf.d/99-ncd.conf",
                    &nm_dropin(original_resolv_conf.unwrap_or("")),
                    "the NetworkManager global DNS setting",
                )],
                reload: vec![reload(
                    &["nmcli", "general", "reload"],
                    "make NetworkManager rewrite /etc/resolv.conf",
                )],
            },
            Flavour::ResolvConf => Takeover {
                files: vec![file(
                    "/etc/resolv.conf",
                    &resolv_conf(original_resolv_conf.unwrap_or("")),
                    "the resolver file, pointing at ncd",
                )],
                reload: Vec::new(),
            },
            Flavour::Macos => Takeover {
                files: domains
                    .iter()
                    .map(|domain| {
                        file(
                            &format!("/etc/resolver/{domain}"),
                            MACOS_RESOLVER,
                            &format!("the resolver for {domain}"),
                        )
                    })
                    .collect(),
                reload: vec![
                    reload(&["dscacheutil", "-flushcache"], "forget cached answers"),
                    reload(&["killall", "-HUP", "mDNSResponder"], "forget cached answers"),
                ],
            },
        }
    }
}

fn reload(argv: &[&str], why: &'static str) -> Reload {
    Reload {
        argv: argv.iter().map(|w| (*w).to_string()).collect(),
        why,
    }
}

/// The systemd-resolved drop-in, routing `domains` to ncd by name.
fn resolved_dropin(domains: &[String]) -> String {
    let routes: Vec<String> = domains.iter().map(|d| format!("~{d}")).collect();
    // Only in the settings: the template's comments name the placeholder too.
    let mut text = String::new();
    for line in units::RESOLVED_DROPIN.lines() {
        if line.starts_with('#') {
            text.push_str(line);
        } else {
            text.push_str(&line.replace("@BLOCKED_DOMAINS@", &routes.join(" ")));
        }
        text.push('\n');
    }
    text
}

/// The search domains of a `resolv.conf` text (`search` and `domain` lines), in
/// order, each once.
fn search_domains(text: &str) -> Vec<&str> {
    let mut domains: Vec<&str> = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if matches!(words.next(), Some("search" | "domain")) {
            for domain in words {
                if !domains.contains(&domain) {
                    domains.push(domain);
                }
            }
        }
    }
    domains
}

/// NetworkManager's global DNS, naming ncd. Global DNS replaces every
/// connection's search domains too, so the person's (from the `resolv.conf`
/// NetworkManager wrote before ncd, or since: it carries them on) are written in
/// `searches=`, and `printer` still finds `printer.lan`.
fn nm_dropin(original: &str) -> String {
    let domains = search_domains(original);
    if domains.is_empty() {
        return NM_DROPIN.to_string();
    }
    NM_DROPIN.replace(
        "[global-dns]\n",
        &format!("[global-dns]\nsearches={}\n", domains.join(",")),
    )
}

/// ncd's `/etc/resolv.conf`: ncd's servers, with the person's search domains
/// and options kept (local names like `printer` still find `printer.lan`).
pub(super) fn resolv_conf(original: &str) -> String {
    let kept: Vec<&str> = original
        .lines()
        .map(str::trim)
        .filter(|l| {
            let word = l.split_whitespace().next().unwrap_or("");
            matches!(word, "search" | "domain" | "options") && *l != "options edns0 trust-ad"
        })
        .collect();
    if kept.is_empty() {
        return RESOLV_CONF.to_string();
    }
    let mut text = String::new();
    for line in RESOLV_CONF.lines() {
        if line.starts_with("options") {
            text.push_str("# Kept from the original:\n");
            for kept in &kept {
                text.push_str(kept);
                text.push('\n');
            }
        }
        text.push_str(line);
        text.push('\n');
    }
    text
}

const NM_DROPIN: &str = "\
# Installed by `ncd install`; `ncd uninstall` removes it.
# Global DNS overrides every connection's own: all queries go to ncd.
[global-dns]

[global-dns-domain-*]
servers=127.0.0.1,::1
";

const RESOLV_CONF: &str = "\
# Managed by ncd: every query goes to the ncd DNS filter on this machine.
# The original is kept in /var/lib/ncd-root/install-backup/etc/resolv.conf;
# `sudo ncd uninstall` puts it back.
nameserver 127.0.0.1
nameserver ::1
options edns0 trust-ad
";

const MACOS_RESOLVER: &str =
    "# Installed by `ncd install`: names in this domain go to ncd.\nnameserver 127.0.0.1\nnameserver ::1\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flavours_keep_the_names_manifests_have_always_stored() {
        for (flavour, name) in [
            (Flavour::Resolved, "systemd-resolved"),
            (Flavour::NetworkManager, "networkmanager"),
            (Flavour::ResolvConf, "resolv.conf"),
            (Flavour::Macos, "macos"),
        ] {
            let json = format!("\"{name}\"");
            assert_eq!(serde_json::to_string(&flavour).unwrap(), json);
            assert_eq!(serde_json::from_str::<Flavour>(&json).unwrap(), flavour);
        }
        assert!(serde_json::from_str::<Flavour>("\"openresolv\"").is_err());
    }

    #[test]
    fn the_resolved_takeover_routes_each_domain() {
        let takeover = Flavour::Resolved.takeover(&["a.example".into(), "b.example".into()], None);
        let text = String::from_utf8(takeover.files[0].contents.clone()).unwrap();
        assert!(text.contains(" ~a.example ~b.example"), "{text}");
        assert_eq!(takeover.reload.len(), 2);
        // The person's own search domains (an earlier drop-in's Domains=) are not reset.
        assert!(!text.lines().any(|l| l == "Domains="), "{text}");
    }

    #[test]
    fn network_managers_global_dns_keeps_search_domains() {
        let original = "# Generated by NetworkManager\nsearch lan corp.example\nnameserver 10.0.0.1\n";
        let takeover = Flavour::NetworkManager.takeover(&[], Some(original));
        let text = String::from_utf8(takeover.files[0].contents.clone()).unwrap();
        assert!(text.contains("[global-dns]\nsearches=lan,corp.example\n"), "{text}");
        assert!(text.contains("servers=127.0.0.1,::1"), "{text}");
        // What NetworkManager writes from it carries the same domains: a fixed point.
        let written = "# Generated by NetworkManager\nsearch lan corp.example\nnameserver 127.0.0.1\n";
        assert_eq!(
            Flavour::NetworkManager.takeover(&[], Some(written)).files[0].contents,
            takeover.files[0].contents
        );
        let none = Flavour::NetworkManager.takeover(&[], Some("nameserver 10.0.0.1\n"));
        assert_eq!(none.files[0].contents, NM_DROPIN.as_bytes());
    }

    #[test]
    fn the_plain_file_keeps_search_domains_and_options() {
        let original = "# from DHCP\nnameserver 10.0.0.1\nsearch lan corp.example\noptions rotate\n";
        let takeover = Flavour::ResolvConf.takeover(&[], Some(original));
        let text = String::from_utf8(takeover.files[0].contents.clone()).unwrap();
        assert!(text.contains("nameserver 127.0.0.1\nnameserver ::1\n"), "{text}");
        assert!(
            text.contains("\nsearch lan corp.example\noptions rotate\noptions edns0 trust-ad\n"),
            "{text}"
        );
        assert!(!text.contains("10.0.0.1"), "{text}");
        // Taken over again from ncd's own file: nothing doubles.
        let again = Flavour::ResolvConf.takeover(&[], Some(&text));
        assert_eq!(again.files[0].contents, takeover.files[0].contents);
    }
}
