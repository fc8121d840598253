//! What install would do, worked out from the layout under the root, before anything
//! is touched: a list of [`Step`]s that `--dry-run` prints and apply carries out.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context;
use ncd_config::Config;

use super::fsutil::{self, Found};
use super::units;

/// The example config and the list it names, installed when there is no config.
const EXAMPLE_CONFIG: &str = include_str!("../../../examples/ncd.toml");
const EXAMPLE_LIST: &str = include_str!("../../../examples/lists/social.hosts");
pub const CONFIG_PATH: &str = "/etc/ncd/ncd.toml";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Linux,
    Macos,
}

/// Who manages the system resolver, and so how ncd takes it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flavour {
    Resolved,
    NetworkManager,
    ResolvConf,
    Macos,
}

impl Flavour {
    pub fn name(&self) -> &'static str {
        match self {
            Flavour::Resolved => "systemd-resolved",
            Flavour::NetworkManager => "networkmanager",
            Flavour::ResolvConf => "resolv.conf",
            Flavour::Macos => "macos",
        }
    }

    pub fn words(&self) -> &'static str {
        match self {
            Flavour::Resolved => "systemd-resolved manages DNS here",
            Flavour::NetworkManager => "NetworkManager writes /etc/resolv.conf here",
            Flavour::ResolvConf => "/etc/resolv.conf is a plain file here",
            Flavour::Macos => "macOS: DNS is set per network service",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Step {
    /// Create a directory (mode 0755).
    Dir { path: PathBuf },
    /// Write a file; whatever is there is backed up first.
    Write {
        path: PathBuf,
        contents: Vec<u8>,
        mode: u32,
        what: String,
        keep_if_edited: bool,
    },
    /// Change a setting held outside files (macOS network services).
    Setting {
        what: String,
        previous: String,
        new: String,
        apply: Vec<String>,
        restore: Vec<String>,
    },
    /// Run a command (only when the root is the live system).
    Run { argv: Vec<String>, why: String },
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub flavour: Flavour,
    pub steps: Vec<Step>,
    pub uninstall_before: Vec<Vec<String>>,
    pub uninstall_after: Vec<Vec<String>>,
}

/// What install was asked for.
#[derive(Debug, Clone)]
pub struct Request {
    pub root: PathBuf,
    pub platform: Platform,
    /// Where the binaries go, on the target system.
    pub bin_dir: PathBuf,
    /// Where to copy `ncd` and `ncdd` from.
    pub from: PathBuf,
    /// macOS network services and their current DNS servers ("Empty" for DHCP).
    /// `None`: ask `networksetup` (live system only).
    pub macos_services: Option<Vec<(String, String)>>,
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_string()).collect()
}

/// Works out who manages the resolver under `root`.
pub fn detect(root: &Path, platform: Platform) -> anyhow::Result<Flavour> {
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

/// The domains the config blocks through its catalog services and `[block] domains`:
/// routed to ncd by name so a VPN claiming every name does not win.
pub fn blocked_domains(config: &Config) -> Vec<String> {
    let mut set = BTreeSet::new();
    for service in &config.block.services {
        for domain in service.service().domains {
            set.insert((*domain).to_string());
        }
    }
    for rule in &config.block.domains {
        set.insert(rule.name.as_str().to_string());
    }
    set.into_iter().collect()
}

pub fn resolved_dropin(domains: &[String]) -> String {
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

pub const NM_DROPIN: &str = "\
# Installed by `ncd install`; `ncd uninstall` removes it.
# Global DNS overrides every connection's own: all queries go to ncd.
[global-dns]

[global-dns-domain-*]
servers=127.0.0.1,::1
";

pub const RESOLV_CONF: &str = "\
# Managed by ncd: every query goes to the ncd DNS filter on this machine.
# The original is kept in /var/lib/ncd-root/install-backup/etc/resolv.conf;
# `sudo ncd uninstall` puts it back.
nameserver 127.0.0.1
nameserver ::1
options edns0 trust-ad
";

pub fn macos_resolver_file() -> &'static str {
    "# Installed by `ncd install`: names in this domain go to ncd.\nnameserver 127.0.0.1\nnameserver ::1\n"
}

/// The config install will leave in place: the person's own, else the example.
pub fn effective_config(root: &Path) -> anyhow::Result<(Config, bool)> {
    let path = fsutil::under(root, Path::new(CONFIG_PATH));
    if path.exists() {
        let config = Config::load(&path).map_err(|e| {
            anyhow::anyhow!(
                "Your config {} does not parse, so ncd cannot tell which domains to route to itself:\n{e}\n\
                 Fix it (`ncd config check {}` shows what is wrong), then run install again.",
                path.display(),
                path.display()
            )
        })?;
        Ok((config, true))
    } else {
        let config = Config::parse(EXAMPLE_CONFIG, Path::new("/etc/ncd/ncd.toml"))
            .map_err(|e| anyhow::anyhow!("the example config does not parse: {e}"))?;
        Ok((config, false))
    }
}

fn read_binary(from: &Path, name: &str) -> anyhow::Result<Vec<u8>> {
    let path = from.join(name);
    std::fs::read(&path).with_context(|| {
        format!(
            "Could not read {} to install it. Build both binaries first (`cargo build --release`), \
             or say where they are with --from DIR",
            path.display()
        )
    })
}

fn write(path: impl Into<PathBuf>, contents: impl Into<Vec<u8>>, mode: u32, what: &str) -> Step {
    Step::Write {
        path: path.into(),
        contents: contents.into(),
        mode,
        what: what.to_string(),
        keep_if_edited: false,
    }
}

/// The full plan, as if nothing were installed yet.
pub fn plan(request: &Request) -> anyhow::Result<Plan> {
    let root = &request.root;
    let flavour = detect(root, request.platform)?;
    let (config, config_exists) = effective_config(root)?;
    let domains = blocked_domains(&config);
    let bin = &request.bin_dir;
    let ncdd_path = bin.join("ncdd");
    let mut steps = vec![
        write(
            bin.join("ncd"),
            read_binary(&request.from, "ncd")?,
            0o755,
            "the ncd command",
        ),
        write(
            &ncdd_path,
            read_binary(&request.from, "ncdd")?,
            0o755,
            "the ncdd daemon",
        ),
    ];
    if !config_exists {
        steps.push(Step::Write {
            path: CONFIG_PATH.into(),
            contents: EXAMPLE_CONFIG.into(),
            mode: 0o644,
            what: "the config, from the example; yours to edit".into(),
            keep_if_edited: true,
        });
        steps.push(Step::Write {
            path: "/etc/ncd/lists/social.hosts".into(),
            contents: EXAMPLE_LIST.into(),
            mode: 0o644,
            what: "the blocklist the example config names".into(),
            keep_if_edited: true,
        });
    }
    let mut uninstall_before = Vec::new();
    let mut uninstall_after = Vec::new();
    let ncdd = ncdd_path.to_string_lossy().into_owned();
    let ncd = format!("{} ", bin.join("ncd").to_string_lossy());
    match request.platform {
        Platform::Linux => {
            for (name, text) in units::SYSTEMD_UNITS {
                // ncdd first: "/usr/bin/ncd" is a prefix of "/usr/bin/ncdd".
                let text = text
                    .replace(units::PACKAGED_NCDD, &ncdd)
                    .replace(units::PACKAGED_NCD, &ncd);
                steps.push(write(
                    format!("/etc/systemd/system/{name}"),
                    text,
                    0o644,
                    &format!("the systemd unit {name}"),
                ));
            }
            steps.push(write(
                "/etc/sysusers.d/ncd.conf",
                units::SYSUSERS,
                0o644,
                "the ncd system user",
            ));
            steps.push(write(
                "/etc/tmpfiles.d/ncd.conf",
                units::TMPFILES,
                0o644,
                "the directories ncd needs (/etc/ncd, /run/ncd, /var/lib/ncd-root)",
            ));
            for (words, why) in [
                (
                    &["systemd-sysusers", "/etc/sysusers.d/ncd.conf"][..],
                    "create the ncd user",
                ),
                (
                    &["systemd-tmpfiles", "--create", "/etc/tmpfiles.d/ncd.conf"][..],
                    "create those directories",
                ),
                (&["systemctl", "daemon-reload"][..], "let systemd read the new units"),
                (
                    &[
                        "systemctl",
                        "enable",
                        "--now",
                        "ncd.socket",
                        "ncd-control.socket",
                        "ncd.service",
                        "ncd-guard.path",
                        "ncd-guard.timer",
                    ][..],
                    "start ncd now and at every boot",
                ),
            ] {
                steps.push(Step::Run {
                    argv: argv(words),
                    why: why.into(),
                });
            }
            uninstall_before.push(argv(&[
                "systemctl",
                "disable",
                "--now",
                "ncd-guard.timer",
                "ncd-guard.path",
                "ncd.service",
                "ncd.socket",
                "ncd-control.socket",
            ]));
            uninstall_after.push(argv(&["systemctl", "daemon-reload"]));
        }
        Platform::Macos => {
            let plist = format!("/Library/LaunchDaemons/{}.plist", units::LAUNCHD_LABEL);
            steps.push(write(
                &plist,
                units::LAUNCHD_PLIST.replace(units::PLIST_NCDD, &ncdd),
                0o644,
                "the launchd job",
            ));
            steps.push(Step::Run {
                argv: argv(&["launchctl", "bootstrap", "system", &plist]),
                why: "start ncd now and at every boot".into(),
            });
            uninstall_before.push(argv(&[
                "launchctl",
                "bootout",
                &format!("system/{}", units::LAUNCHD_LABEL),
            ]));
        }
    }
    // The resolver last: ncd is already answering when the system starts asking it.
    match flavour {
        Flavour::Resolved => {
            steps.push(write(
                "/etc/systemd/resolved.conf.d/99-ncd.conf",
                resolved_dropin(&domains),
                0o644,
                "the systemd-resolved drop-in sending DNS to ncd",
            ));
            let reload = [
                argv(&["systemctl", "reload-or-restart", "systemd-resolved"]),
                argv(&["resolvectl", "flush-caches"]),
            ];
            for (a, why) in reload
                .iter()
                .zip(["make systemd-resolved read it", "forget cached answers"])
            {
                steps.push(Step::Run {
                    argv: a.clone(),
                    why: why.into(),
                });
            }
            uninstall_after.extend(reload);
        }
        Flavour::NetworkManager => {
            steps.push(write(
                "/etc/NetworkManager/conf.d/99-ncd.conf",
                NM_DROPIN,
                0o644,
                "the NetworkManager global DNS setting",
            ));
            let reload = argv(&["nmcli", "general", "reload"]);
            steps.push(Step::Run {
                argv: reload.clone(),
                why: "make NetworkManager rewrite /etc/resolv.conf".into(),
            });
            uninstall_after.push(reload);
        }
        Flavour::ResolvConf => {
            steps.push(write(
                "/etc/resolv.conf",
                RESOLV_CONF,
                0o644,
                "the resolver file, pointing at ncd",
            ));
        }
        Flavour::Macos => {
            for domain in &domains {
                steps.push(write(
                    format!("/etc/resolver/{domain}"),
                    macos_resolver_file(),
                    0o644,
                    &format!("the resolver for {domain}"),
                ));
            }
            let services = match &request.macos_services {
                Some(services) => services.clone(),
                None => macos_services()?,
            };
            for (service, previous) in services {
                steps.push(Step::Setting {
                    what: format!("DNS servers of the network service \"{service}\""),
                    new: "127.0.0.1 ::1".into(),
                    apply: argv(&["networksetup", "-setdnsservers", &service, "127.0.0.1", "::1"]),
                    restore: ["networksetup", "-setdnsservers", &service]
                        .into_iter()
                        .map(str::to_string)
                        .chain(previous.split_whitespace().map(str::to_string))
                        .collect(),
                    previous,
                });
            }
            let flush = [
                argv(&["dscacheutil", "-flushcache"]),
                argv(&["killall", "-HUP", "mDNSResponder"]),
            ];
            for a in &flush {
                steps.push(Step::Run {
                    argv: a.clone(),
                    why: "forget cached answers".into(),
                });
            }
            uninstall_after.extend(flush);
        }
    }
    // Directories the writes need, parents first, plus the manifest's.
    let mut dirs = BTreeSet::new();
    let targets = steps
        .iter()
        .filter_map(|s| match s {
            Step::Write { path, .. } => Some(path.clone()),
            _ => None,
        })
        .chain([PathBuf::from(super::manifest::MANIFEST)]);
    for target in targets {
        for dir in target.ancestors().skip(1) {
            if dir.parent().is_some() && !fsutil::under(root, dir).exists() {
                dirs.insert(dir.to_path_buf());
            }
        }
    }
    // BTreeSet order puts every parent before its children.
    let mut all: Vec<Step> = dirs.into_iter().map(|path| Step::Dir { path }).collect();
    all.extend(steps);
    Ok(Plan {
        flavour,
        steps: all,
        uninstall_before,
        uninstall_after,
    })
}

/// Network services and their current DNS servers, from `networksetup` (macOS only).
fn macos_services() -> anyhow::Result<Vec<(String, String)>> {
    let run = |args: &[&str]| -> anyhow::Result<String> {
        let out = std::process::Command::new("networksetup")
            .args(args)
            .output()
            .context("Could not run networksetup")?;
        anyhow::ensure!(out.status.success(), "networksetup {} failed", args.join(" "));
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let mut services = Vec::new();
    // The first line is a note; a leading `*` marks a disabled service.
    for line in run(&["-listallnetworkservices"])?.lines().skip(1) {
        let service = line.trim_start_matches('*').trim();
        if service.is_empty() {
            continue;
        }
        let dns = run(&["-getdnsservers", service])?;
        let previous = if dns.contains("aren't any DNS Servers") {
            "Empty".to_string()
        } else {
            dns.split_whitespace().collect::<Vec<_>>().join(" ")
        };
        services.push((service.to_string(), previous));
    }
    Ok(services)
}
