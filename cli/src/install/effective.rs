//! The resolver as it is in effect, not only the files `ncd install` wrote: what
//! `ncd guard` checks beyond its own files. Each check returns [`Finding`]s;
//! the guard carries out their repairs only while a period runs, and reports
//! every finding either way.
//!
//! - systemd-resolved: drop-ins that come after ncd's (`zz-mine.conf` with
//!   `DNS=`/`Domains=`), the global and per-link servers and domains resolved
//!   actually uses (`resolvectl dns`, `resolvectl domain`: a link's `~.`, or a
//!   domain holding a blocked name), and `/etc/resolv.conf`
//!   still leading to resolved's stub;
//! - NetworkManager: conf.d files after ncd's that set global DNS or take
//!   `resolv.conf` over, and `/etc/resolv.conf` naming only ncd;
//! - every flavour: `/etc/hosts` lines that give a blocked name an address.

use std::path::{Path, PathBuf};

use super::Runner;
use super::flavour::Flavour;
use super::fsutil::{self, Found};

/// Something around the boundary that is not as ncd set it.
#[derive(Debug, Clone)]
pub(super) struct Finding {
    /// What is wrong, in words.
    pub what: String,
    /// What the guard does about it during a period (`None`: report only).
    pub repair: Option<Repair>,
}

/// The policies whose blocked (or proxy-steered) names the guard keeps closed:
/// the config's, and the one the running period holds.
pub(super) struct Closed(pub Vec<ncd_policy::Policy>);

impl Closed {
    /// Whether `name` is blocked or steered by any of them.
    pub(super) fn name(&self, name: &str) -> bool {
        self.0.iter().any(|policy| {
            matches!(
                policy.verdict(name.as_bytes()),
                ncd_policy::Verdict::Blocked(_) | ncd_policy::Verdict::Steer(_)
            )
        })
    }

    /// A closed name at or under `domain`, if any.
    fn under(&self, domain: &str) -> Option<String> {
        self.0.iter().find_map(|policy| policy.closed_name_under(domain))
    }
}

#[derive(Debug, Clone)]
pub(super) enum Repair {
    /// Move a file that overrides ncd's settings into the guard's folder.
    MoveAside { path: PathBuf },
    /// Make `/etc/resolv.conf` the link to resolved's stub again.
    LinkStub,
    /// Write `/etc/resolv.conf` naming ncd only.
    WriteResolvConf { contents: Vec<u8> },
    /// Write `/etc/hosts` without the blocked names.
    WriteHosts { contents: Vec<u8>, mode: u32 },
    /// Drop a link's own DNS servers and domains (`resolvectl revert LINK`).
    RevertLink { link: String },
}

/// Where the guard keeps files it moved aside, relative to the root.
pub(super) const ASIDE_DIR: &str = "/var/lib/ncd-root/guard-aside";
/// ncd's own drop-in name in resolved's and NetworkManager's conf.d folders.
const OURS: &str = "99-ncd.conf";
const STUB: &str = "../run/systemd/resolve/stub-resolv.conf";
/// Addresses that lead to ncd (directly, or through resolved's stub).
const LOCAL_SERVERS: [&str; 4] = ["127.0.0.1", "::1", "127.0.0.53", "127.0.0.54"];

/// The resolver checks for `flavour` under `root`. `runner` asks resolved what it
/// uses (`resolvectl`), when commands run.
pub(super) fn resolver(root: &Path, flavour: Flavour, runner: &Runner, closed: &Closed) -> Vec<Finding> {
    let mut findings = Vec::new();
    match flavour {
        Flavour::Resolved => {
            let dirs = [
                "/etc/systemd/resolved.conf.d",
                "/run/systemd/resolved.conf.d",
                "/usr/local/lib/systemd/resolved.conf.d",
                "/usr/lib/systemd/resolved.conf.d",
            ];
            // Any DNS= adds servers beside ncd (or, empty, drops ncd's); an empty
            // Domains= drops ncd's routes. A Domains= that adds search domains is
            // the person's, and stays.
            for path in later_files(root, &dirs) {
                if sets(root, &path, |section, key, value| {
                    section == "Resolve" && (key == "DNS" || key == "Domains" && value.is_empty())
                }) {
                    findings.push(aside(
                        &path,
                        format!(
                            "{} sets DNS servers (or clears ncd's routes) after ncd's drop-in, so they win",
                            path.display()
                        ),
                    ));
                }
            }
            findings.extend(resolved_in_use(runner, closed));
            findings.extend(resolv_conf_leads_to_stub(root));
        }
        Flavour::NetworkManager => {
            let dirs = [
                "/etc/NetworkManager/conf.d",
                "/run/NetworkManager/conf.d",
                "/usr/lib/NetworkManager/conf.d",
            ];
            for path in later_files(root, &dirs) {
                // Other settings that let /etc/resolv.conf name other servers
                // (`dns=none`) are caught by the check of /etc/resolv.conf itself.
                if sets(root, &path, |section, key, _| {
                    section.starts_with("global-dns") && key == "servers"
                }) {
                    findings.push(aside(
                        &path,
                        format!(
                            "{} sets NetworkManager's DNS after ncd's setting, so it wins",
                            path.display()
                        ),
                    ));
                }
            }
            // Global DNS set over D-Bus (`GlobalDnsConfiguration`) is kept here and
            // wins over every conf.d file. NetworkManager's own state: reported only.
            let intern = Path::new("/var/lib/NetworkManager/NetworkManager-intern.conf");
            if sets(root, intern, |section, key, value| {
                section.starts_with(".intern.global-dns-domain") && key == "servers" && !value.is_empty()
            }) {
                findings.push(Finding {
                    what: format!(
                        "NetworkManager's global DNS was set over D-Bus ({}), over ncd's setting",
                        intern.display()
                    ),
                    repair: None,
                });
            }
            findings.extend(resolv_conf_names_only_ncd(root));
        }
        // The plain file is ncd's own: the guard compares it with what install wrote.
        Flavour::ResolvConf | Flavour::Macos => {}
    }
    findings
}

fn aside(path: &Path, what: String) -> Finding {
    // /usr is read-only to the guard (and the package's to change): report only.
    let movable = path.starts_with("/etc") || path.starts_with("/run");
    Finding {
        what,
        repair: movable.then(|| Repair::MoveAside {
            path: path.to_path_buf(),
        }),
    }
}

/// Files in `dirs` (as on the target system) that systemd or NetworkManager read
/// after ncd's `99-ncd.conf`: by file name, across the folders, the first folder
/// winning for a name they share.
fn later_files(root: &Path, dirs: &[&str]) -> Vec<PathBuf> {
    let mut by_name = std::collections::BTreeMap::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(fsutil::under(root, Path::new(dir))) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".conf") && name.as_str() > OURS {
                by_name
                    .entry(name.clone())
                    .or_insert_with(|| Path::new(dir).join(&name));
            }
        }
    }
    by_name.into_values().collect()
}

/// Whether the ini-style file at `path` has a setting `wanted(section, key, value)` accepts.
fn sets(root: &Path, path: &Path, wanted: impl Fn(&str, &str, &str) -> bool) -> bool {
    let Ok(text) = std::fs::read_to_string(fsutil::under(root, path)) else {
        return false;
    };
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_string();
        } else if let Some((key, value)) = line.split_once('=')
            && wanted(&section, key.trim(), value.trim())
        {
            return true;
        }
    }
    false
}

/// `resolvectl dns` / `resolvectl domain` output: (scope, values) per line, the
/// scope "Global" or "Link 2 (wlan0)".
fn scopes(output: &str) -> Vec<(String, Vec<String>)> {
    output
        .lines()
        .filter_map(|line| {
            let (scope, values) = line.split_once(':')?;
            // A line of IPv6 servers only splits well after the scope's own ':'.
            let scope = scope.trim();
            (scope == "Global" || scope.starts_with("Link ")).then(|| {
                (
                    scope.to_string(),
                    values.split_whitespace().map(str::to_string).collect(),
                )
            })
        })
        .collect()
}

/// A server as resolvectl prints it ("1.1.1.1", "1.1.1.1:53", "[::1]:53",
/// "1.1.1.1#cloudflare-dns.com"), as a bare address.
fn bare(server: &str) -> &str {
    let server = server.split('#').next().unwrap_or(server);
    if let Some(rest) = server.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match server.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.parse::<u16>().is_ok() => host,
        _ => server,
    }
}

/// What resolved actually uses: global servers other than ncd, and links with
/// servers of their own that claim every name (`~.`: reported) or a domain at,
/// under or above a closed name (`~www.instagram.com`, `~com`, or a search
/// domain: resolved routes names under a link's search domains to that link
/// too; reverted during a period).
fn resolved_in_use(runner: &Runner, closed: &Closed) -> Vec<Finding> {
    let ask = |what: &str| {
        runner
            .output(&["resolvectl", what])
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let (Some(dns), Some(domains)) = (ask("dns"), ask("domain")) else {
        return Vec::new();
    };
    let dns = scopes(&dns);
    let domains = scopes(&domains);
    let mut findings = Vec::new();
    for (scope, servers) in &dns {
        let others: Vec<&str> = servers
            .iter()
            .map(|s| bare(s))
            .filter(|s| !LOCAL_SERVERS.contains(s))
            .collect();
        if others.is_empty() {
            continue;
        }
        if scope == "Global" {
            findings.push(Finding {
                what: format!("systemd-resolved asks {} besides ncd for every name", others.join(" ")),
                repair: None,
            });
            continue;
        }
        let link = scope.trim_start_matches("Link ").to_string();
        let servers = others.join(" ");
        let undo = "set with `resolvectl dns`/`resolvectl domain`, by NetworkManager or by a VPN; \
                    `resolvectl revert` undoes it";
        let link_domains = domains.iter().filter(|(s, _)| s == scope).flat_map(|(_, names)| names);
        for domain in link_domains {
            let domain = domain
                .trim_start_matches('~')
                .trim_end_matches('.')
                .to_ascii_lowercase();
            if domain.is_empty() {
                findings.push(Finding {
                    what: format!(
                        "the network link {link} sends names to its own DNS servers ({servers}) instead of ncd ({undo})"
                    ),
                    repair: None,
                });
            } else if let Some(name) = closed
                .name(&domain)
                .then(|| domain.clone())
                .or_else(|| closed.under(&domain))
            {
                // Unlike `~.` (a VPN's "everything through me", which ncd's own
                // `~domain` routes outrank), a domain for a blocked site ties with
                // or outranks ncd's route: put back during a period.
                let interface = link
                    .split_once('(')
                    .map_or(link.as_str(), |(_, rest)| rest.trim_end_matches(')'));
                findings.push(Finding {
                    what: format!(
                        "the network link {link} sends names under {domain} to its own DNS servers ({servers}), \
                         and {name} is blocked ({undo})"
                    ),
                    repair: Some(Repair::RevertLink {
                        link: interface.to_string(),
                    }),
                });
            }
        }
    }
    findings
}

/// The text of `/etc/resolv.conf` under `root`, following a link inside the root.
fn resolv_conf_text(root: &Path) -> Option<String> {
    let path = fsutil::under(root, Path::new("/etc/resolv.conf"));
    match fsutil::look(&path).ok()? {
        Found::File { bytes, .. } => Some(String::from_utf8_lossy(&bytes).into_owned()),
        Found::Symlink { target } => {
            let full = if target.is_absolute() {
                fsutil::under(root, &target)
            } else {
                path.parent()?.join(&target)
            };
            std::fs::read_to_string(full).ok()
        }
        Found::Absent | Found::Other => None,
    }
}

/// The `nameserver` lines of a resolv.conf that lead anywhere but ncd.
fn other_nameservers(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .map(str::trim)
        .filter(|s| !LOCAL_SERVERS.contains(s))
        .map(str::to_string)
        .collect()
}

/// Under resolved, `/etc/resolv.conf` must lead to the stub (127.0.0.53), which
/// asks ncd. resolved's other file (`/run/systemd/resolve/resolv.conf`) lists the
/// network's servers, and a plain file can name anything.
fn resolv_conf_leads_to_stub(root: &Path) -> Vec<Finding> {
    let path = fsutil::under(root, Path::new("/etc/resolv.conf"));
    let what = match fsutil::look(&path) {
        Ok(Found::Symlink { target }) if target.to_string_lossy().ends_with("stub-resolv.conf") => return Vec::new(),
        Ok(Found::Symlink { target }) => format!(
            "/etc/resolv.conf was re-pointed to {}, around systemd-resolved's stub",
            target.display()
        ),
        Ok(Found::File { bytes, .. }) => {
            let others = other_nameservers(&String::from_utf8_lossy(&bytes));
            if others.is_empty() {
                return Vec::new();
            }
            format!(
                "/etc/resolv.conf was replaced by a file naming {}, around systemd-resolved",
                others.join(" ")
            )
        }
        Ok(Found::Absent) => "/etc/resolv.conf was removed".to_string(),
        Ok(Found::Other) | Err(_) => return Vec::new(),
    };
    vec![Finding {
        what,
        repair: Some(Repair::LinkStub),
    }]
}

/// Under NetworkManager's global DNS, `/etc/resolv.conf` names ncd only.
fn resolv_conf_names_only_ncd(root: &Path) -> Vec<Finding> {
    let text = resolv_conf_text(root).unwrap_or_default();
    let others = other_nameservers(&text);
    if others.is_empty() {
        return Vec::new();
    }
    vec![Finding {
        what: format!("/etc/resolv.conf names {} besides ncd", others.join(" ")),
        // Its search domains stay: NetworkManager's global DNS (ncd's) is read
        // from them again, and takes them on.
        repair: Some(Repair::WriteResolvConf {
            contents: super::flavour::resolv_conf(&text).into_bytes(),
        }),
    }]
}

/// `/etc/hosts` lines that give a name `blocked` says is blocked an address of
/// its own (a loopback or unspecified address blocks it too: those are left).
pub(super) fn hosts(root: &Path, blocked: impl Fn(&str) -> bool) -> Vec<Finding> {
    let path = fsutil::under(root, Path::new("/etc/hosts"));
    let Ok(Found::File { bytes, mode }) = fsutil::look(&path) else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let mut found = Vec::new();
    let mut kept = String::new();
    for line in text.split_inclusive('\n') {
        let body = line.split('#').next().unwrap_or("");
        let mut fields = body.split_whitespace();
        let address = fields.next().and_then(|a| a.parse::<std::net::IpAddr>().ok());
        let names: Vec<&str> = fields.collect();
        let opens = address.is_some_and(|a| !a.is_loopback() && !a.is_unspecified());
        let (out, stay): (Vec<&str>, Vec<&str>) = names
            .iter()
            .partition(|n| opens && blocked(&n.trim_end_matches('.').to_ascii_lowercase()));
        if out.is_empty() {
            kept.push_str(line);
            continue;
        }
        found.extend(out.iter().map(|n| (*n).to_string()));
        if let (Some(address), false) = (address, stay.is_empty()) {
            kept.push_str(&format!("{address}\t{}\n", stay.join(" ")));
        }
    }
    if found.is_empty() {
        return Vec::new();
    }
    vec![Finding {
        what: format!(
            "/etc/hosts gives {} an address of its own, around the block",
            found.join(", ")
        ),
        repair: Some(Repair::WriteHosts {
            contents: kept.into_bytes(),
            mode,
        }),
    }]
}

/// Carries out `repair` under `root`; returns what was done, in words.
pub(super) fn carry_out(root: &Path, repair: &Repair, now_unix: i64, runner: &Runner) -> anyhow::Result<String> {
    let resolv = fsutil::under(root, Path::new("/etc/resolv.conf"));
    Ok(match repair {
        Repair::MoveAside { path } => {
            let from = fsutil::under(root, path);
            let relative = path.strip_prefix("/").unwrap_or(path);
            let mut to = Path::new(ASIDE_DIR).join(relative);
            if fsutil::under(root, &to).exists() {
                to.set_extension(format!("conf.{now_unix}"));
            }
            let to_disk = fsutil::under(root, &to);
            if let Some(dir) = to_disk.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::rename(&from, &to_disk)?;
            format!("ncd moved it aside to {} (put it back after the period)", to.display())
        }
        Repair::LinkStub => {
            if let Ok(Found::File { bytes, mode }) = fsutil::look(&resolv) {
                let kept = Path::new(ASIDE_DIR).join(format!("etc/resolv.conf.{now_unix}"));
                let kept_disk = fsutil::under(root, &kept);
                if let Some(dir) = kept_disk.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                fsutil::write_atomically(&kept_disk, &bytes, mode)?;
            }
            fsutil::symlink_atomically(&resolv, Path::new(STUB))?;
            format!("ncd linked it to {STUB} again")
        }
        Repair::WriteResolvConf { contents } => {
            fsutil::write_atomically(&resolv, contents, 0o644)?;
            "ncd wrote it naming ncd again".to_string()
        }
        Repair::WriteHosts { contents, mode } => {
            fsutil::write_atomically(&fsutil::under(root, Path::new("/etc/hosts")), contents, *mode)?;
            "ncd removed those names from it".to_string()
        }
        Repair::RevertLink { link } => match runner.output(&["resolvectl", "revert", link]) {
            Some(out) if out.status.success() => {
                format!("ncd dropped the link's own DNS settings (`resolvectl revert {link}`)")
            }
            Some(out) => anyhow::bail!(
                "`resolvectl revert {link}` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            None => anyhow::bail!("`resolvectl revert {link}` could not be run here"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolvectl_output_is_read_per_scope() {
        let dns = "Global: 127.0.0.1 ::1\nLink 2 (eth0): 192.168.1.1 [fe80::1]:53\nLink 3 (wg0):\n";
        let parsed = scopes(dns);
        assert_eq!(parsed[0], ("Global".into(), vec!["127.0.0.1".into(), "::1".into()]));
        assert_eq!(parsed[1].0, "Link 2 (eth0)");
        assert_eq!(bare(&parsed[1].1[1]), "fe80::1");
        assert_eq!(bare("1.1.1.1:53"), "1.1.1.1");
        assert_eq!(bare("1.1.1.1#one.one.one.one"), "1.1.1.1");
        assert_eq!(bare("::1"), "::1");
        assert!(parsed[2].1.is_empty());
    }

    #[test]
    fn only_lines_that_open_a_blocked_name_are_changed() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = "127.0.0.1 localhost\n# 1.2.3.4 instagram.com\n0.0.0.0 instagram.com\n\
                     157.240.1.1 www.instagram.com nas.lan\n157.240.1.2 Instagram.com.\n";
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/hosts"), hosts).unwrap();
        let findings = super::hosts(dir.path(), |n| n == "instagram.com" || n.ends_with(".instagram.com"));
        assert_eq!(findings.len(), 1);
        assert!(
            findings[0].what.contains("www.instagram.com, Instagram.com."),
            "{}",
            findings[0].what
        );
        let Some(Repair::WriteHosts { contents, .. }) = &findings[0].repair else {
            panic!("no repair")
        };
        assert_eq!(
            String::from_utf8_lossy(contents),
            "127.0.0.1 localhost\n# 1.2.3.4 instagram.com\n0.0.0.0 instagram.com\n157.240.1.1\tnas.lan\n"
        );
    }
}
