//! What install would do, worked out from the layout under the root before anything
//! is touched: a [`Plan`] of [`Step`]s that `--dry-run` prints and apply carries out.
//! Each part of the install (binaries, config, service units, resolver takeover, the
//! directories they need) is one small function returning its steps.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context;
use ncd_config::Config;
use serde::{Deserialize, Serialize};

use super::flavour::{Flavour, Takeover};
use super::fsutil::{self, Found};
use super::{Describe, Where, show, size, units};

/// The example config and the list it names, installed when there is no config.
const EXAMPLE_CONFIG: &str = include_str!("../../../examples/ncd.toml");
const EXAMPLE_LIST: &str = include_str!("../../../examples/lists/social.hosts");
pub(super) const CONFIG_PATH: &str = "/etc/ncd/ncd.toml";
/// Where the example config's list goes (the example names it `lists/social.hosts`).
const EXAMPLE_LIST_PATH: &str = "/etc/ncd/lists/social.hosts";

/// The system installed for; stored in the manifest as "linux" or "macos".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Platform {
    Linux,
    Macos,
}

#[derive(Debug, Clone)]
pub(super) enum Step {
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
    /// Remove a file an earlier install wrote that the package now provides
    /// (a unit in /etc/systemd/system would hide the package's), putting back
    /// what it replaced.
    Unshadow { path: PathBuf },
}

impl Describe for Step {
    fn describe(&self, at: &Where) -> anyhow::Result<String> {
        Ok(match self {
            Step::Dir { path } => format!("Create the directory {}", show(path)),
            Step::Write {
                path,
                contents,
                mode,
                what,
                ..
            } => {
                let replacing = match fsutil::look(&fsutil::under(at.root, path))? {
                    Found::Absent => String::new(),
                    Found::Symlink { target } => {
                        format!(", replacing the link to {} (kept to put back)", target.display())
                    }
                    _ => ", replacing what is there (a copy is kept to put back)".into(),
                };
                format!(
                    "Write {} — {what} ({}, mode {mode:04o}){replacing}",
                    show(path),
                    size(contents.len())
                )
            }
            Step::Setting {
                what, previous, new, ..
            } => format!("Set the {what} to {new} (now: {previous}; saved to put back)"),
            Step::Run { argv, why } => format!("Run `{}` to {why}{}", argv.join(" "), at.listed()),
            Step::Unshadow { path } => format!(
                "Remove {}, written by an earlier `ncd install`: the package's own copy serves now",
                show(path)
            ),
        })
    }
}

/// Everything install would do, as if nothing were installed yet.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub flavour: Flavour,
    /// The Debian package is installed: its binaries and units serve, and
    /// install only takes the resolver over (and starts the package's units).
    pub packaged: bool,
    pub steps: Vec<Step>,
    /// Commands uninstall runs before putting files back (stop the service).
    pub uninstall_before: Vec<Vec<String>>,
    /// Commands uninstall runs after putting files back (reload the resolver).
    pub uninstall_after: Vec<Vec<String>>,
}

/// What install was asked for.
#[derive(Debug, Clone)]
pub(super) struct Request {
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

pub(super) fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_string()).collect()
}

fn run(words: &[&str], why: &str) -> Step {
    Step::Run {
        argv: argv(words),
        why: why.into(),
    }
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

/// The domains the config blocks through its catalog services and `[block] domains`:
/// routed to ncd by name so a VPN claiming every name does not win.
pub(super) fn blocked_domains(config: &Config) -> Vec<String> {
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

/// The config install will leave in place: the person's own, else the example.
pub(super) fn effective_config(root: &Path) -> anyhow::Result<(Config, bool)> {
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
        let config = Config::parse(EXAMPLE_CONFIG, Path::new(CONFIG_PATH))
            .map_err(|e| anyhow::anyhow!("the example config does not parse: {e}"))?;
        Ok((config, false))
    }
}

/// The resolver takeover for the config install leaves in place: what install
/// writes, and what `ncd guard` expects to find.
pub(super) fn takeover(root: &Path, flavour: Flavour, config: &Config) -> Takeover {
    let original = original_resolv_conf(root);
    flavour.takeover(&blocked_domains(config), original.as_deref())
}

/// The person's own `/etc/resolv.conf`: the copy install kept aside, else the
/// file itself. Only its search domains and options are used, and ncd's own file
/// (or NetworkManager's, written from ncd's setting) carries those on, so a file
/// ncd wrote gives the same takeover again.
fn original_resolv_conf(root: &Path) -> Option<String> {
    let kept = Path::new(super::manifest::BACKUP_DIR).join("etc/resolv.conf");
    if let Ok(text) = std::fs::read_to_string(fsutil::under(root, &kept)) {
        return Some(text);
    }
    std::fs::read_to_string(fsutil::under(root, Path::new("/etc/resolv.conf"))).ok()
}

/// The Debian package's files under `root`: its daemon in /usr/bin and its
/// service unit in /usr/lib/systemd/system (or /lib/systemd/system).
pub(super) fn package_installed(root: &Path) -> bool {
    let has = |path: &str| fsutil::under(root, Path::new(path)).is_file();
    has(units::PACKAGED_NCDD) && (has("/usr/lib/systemd/system/ncd.service") || has("/lib/systemd/system/ncd.service"))
}

/// The units `ncd install` writes into /etc/systemd/system (which would hide the
/// package's), as on the target system.
pub(super) fn own_unit_paths() -> Vec<PathBuf> {
    units::SYSTEMD_UNITS
        .iter()
        .map(|(name, _)| Path::new("/etc/systemd/system").join(name))
        .collect()
}

/// The full plan, as if nothing were installed yet.
pub(super) fn plan(request: &Request) -> anyhow::Result<Plan> {
    let root = &request.root;
    let flavour = Flavour::detect(root, request.platform)?;
    let (config, config_exists) = effective_config(root)?;
    let original = original_resolv_conf(root);
    let takeover = flavour.takeover(&blocked_domains(&config), original.as_deref());
    let bin = &request.bin_dir;
    let packaged = request.platform == Platform::Linux && package_installed(root);
    let mut steps = if packaged { Vec::new() } else { binaries(request)? };
    if !config_exists {
        steps.extend(example_config());
    } else if names_missing_example_list(root, &config) {
        // Your config names the example's list, and it is gone (an older
        // uninstall removed it): it is put back, yours to edit.
        steps.extend(example_config().into_iter().skip(1));
    }
    let (mut uninstall_before, mut uninstall_after) = (Vec::new(), Vec::new());
    match request.platform {
        // The package's units are the package's: started, never written or stopped.
        Platform::Linux if packaged => steps.push(run(
            &[
                "systemctl",
                "enable",
                "--now",
                "ncd.socket",
                "ncd-control.socket",
                "ncd-proxy.socket",
                "ncd-guard.path",
                "ncd-guard.timer",
            ],
            "make sure the package's ncd runs now and at every boot",
        )),
        Platform::Linux => {
            steps.extend(systemd_units(bin));
            steps.extend(state_dirs());
            steps.extend(enable_commands());
            uninstall_before.push(disable_command());
            uninstall_after.push(argv(&["systemctl", "daemon-reload"]));
        }
        Platform::Macos => {
            steps.extend(launchd_job(bin));
            uninstall_before.push(bootout_command());
        }
    }
    // The resolver last: ncd is already answering when the system starts asking it.
    steps.extend(resolver_takeover(&takeover, request)?);
    uninstall_after.extend(takeover.reload.iter().map(|r| r.argv.clone()));
    Ok(Plan {
        flavour,
        packaged,
        steps: with_dirs(root, steps),
        uninstall_before,
        uninstall_after,
    })
}

/// `ncd` and `ncdd`, copied from `request.from`.
fn binaries(request: &Request) -> anyhow::Result<Vec<Step>> {
    let read = |name: &str| {
        let path = request.from.join(name);
        std::fs::read(&path).with_context(|| {
            format!(
                "Could not read {} to install it. Build both binaries first (`cargo build --release`), \
                 or say where they are with --from DIR",
                path.display()
            )
        })
    };
    Ok(vec![
        write(request.bin_dir.join("ncd"), read("ncd")?, 0o755, "the ncd command"),
        write(request.bin_dir.join("ncdd"), read("ncdd")?, 0o755, "the ncdd daemon"),
    ])
}

/// The example config and its list, when there is no config: the person's to edit.
fn example_config() -> Vec<Step> {
    let keep = |path: &str, contents: &str, what: &str| Step::Write {
        path: path.into(),
        contents: contents.into(),
        mode: 0o644,
        what: what.into(),
        keep_if_edited: true,
    };
    vec![
        keep(
            CONFIG_PATH,
            EXAMPLE_CONFIG,
            "the config, from the example; yours to edit",
        ),
        keep(
            EXAMPLE_LIST_PATH,
            EXAMPLE_LIST,
            "the blocklist the example config names",
        ),
    ]
}

/// Whether `config` names the example's list file, and it is missing under `root`.
fn names_missing_example_list(root: &Path, config: &Config) -> bool {
    let example = fsutil::under(root, Path::new(EXAMPLE_LIST_PATH));
    config
        .block
        .lists
        .iter()
        .any(|list| matches!(list, ncd_config::ListSource::File(path) if *path == example))
        && !example.exists()
}

/// The service, socket and guard units, naming the installed binaries.
fn systemd_units(bin: &Path) -> Vec<Step> {
    let ncdd = bin.join("ncdd").to_string_lossy().into_owned();
    let ncd = format!("{} ", bin.join("ncd").to_string_lossy());
    units::SYSTEMD_UNITS
        .iter()
        .map(|(name, text)| {
            // ncdd first: "/usr/bin/ncd" is a prefix of "/usr/bin/ncdd".
            let text = text
                .replace(units::PACKAGED_NCDD, &ncdd)
                .replace(units::PACKAGED_NCD, &ncd);
            write(
                format!("/etc/systemd/system/{name}"),
                text,
                0o644,
                &format!("the systemd unit {name}"),
            )
        })
        .collect()
}

/// The `ncd` user and the directories systemd makes for it.
fn state_dirs() -> Vec<Step> {
    vec![
        write(
            "/etc/sysusers.d/ncd.conf",
            units::SYSUSERS,
            0o644,
            "the ncd system user",
        ),
        write(
            "/etc/tmpfiles.d/ncd.conf",
            units::TMPFILES,
            0o644,
            "the directories ncd needs (/etc/ncd, /run/ncd, /var/lib/ncd-root)",
        ),
    ]
}

/// Create the user and directories, then enable and start the units.
fn enable_commands() -> Vec<Step> {
    vec![
        run(&["systemd-sysusers", "/etc/sysusers.d/ncd.conf"], "create the ncd user"),
        run(
            &["systemd-tmpfiles", "--create", "/etc/tmpfiles.d/ncd.conf"],
            "create those directories",
        ),
        run(&["systemctl", "daemon-reload"], "let systemd read the new units"),
        run(
            &[
                "systemctl",
                "enable",
                "--now",
                "ncd.socket",
                "ncd-control.socket",
                "ncd.service",
                "ncd-proxy.socket",
                "ncd-guard.path",
                "ncd-guard.timer",
            ],
            "start ncd now and at every boot",
        ),
    ]
}

/// What uninstall runs first on Linux: stop and disable every unit.
fn disable_command() -> Vec<String> {
    argv(&[
        "systemctl",
        "disable",
        "--now",
        "ncd-guard.timer",
        "ncd-guard.path",
        "ncd.service",
        "ncd.socket",
        "ncd-control.socket",
        "ncd-proxy.socket",
    ])
}

fn launchd_plist() -> String {
    format!("/Library/LaunchDaemons/{}.plist", units::LAUNCHD_LABEL)
}

/// The launchd job on macOS, naming the installed daemon, and its start.
fn launchd_job(bin: &Path) -> Vec<Step> {
    let plist = launchd_plist();
    let ncdd = bin.join("ncdd").to_string_lossy().into_owned();
    vec![
        write(
            &plist,
            units::LAUNCHD_PLIST.replace(units::PLIST_NCDD, &ncdd),
            0o644,
            "the launchd job",
        ),
        run(
            &["launchctl", "bootstrap", "system", &plist],
            "start ncd now and at every boot",
        ),
    ]
}

/// What uninstall runs first on macOS: stop the job.
fn bootout_command() -> Vec<String> {
    argv(&["launchctl", "bootout", &format!("system/{}", units::LAUNCHD_LABEL)])
}

/// The takeover's files, the macOS network services' DNS servers, then the reloads.
fn resolver_takeover(takeover: &Takeover, request: &Request) -> anyhow::Result<Vec<Step>> {
    let mut steps: Vec<Step> = takeover
        .files
        .iter()
        .map(|f| write(&f.path, f.contents.clone(), f.mode, &f.what))
        .collect();
    if request.platform == Platform::Macos {
        let services = match &request.macos_services {
            Some(services) => services.clone(),
            None => macos_services()?,
        };
        steps.extend(
            services
                .into_iter()
                .map(|(service, previous)| dns_servers(&service, previous)),
        );
    }
    steps.extend(takeover.reload.iter().map(|r| Step::Run {
        argv: r.argv.clone(),
        why: r.why.into(),
    }));
    Ok(steps)
}

/// Point a macOS network service's DNS servers at ncd, saving the old ones.
fn dns_servers(service: &str, previous: String) -> Step {
    Step::Setting {
        what: format!("DNS servers of the network service \"{service}\""),
        new: "127.0.0.1 ::1".into(),
        apply: argv(&["networksetup", "-setdnsservers", service, "127.0.0.1", "::1"]),
        restore: argv(&["networksetup", "-setdnsservers", service])
            .into_iter()
            .chain(previous.split_whitespace().map(str::to_string))
            .collect(),
        previous,
    }
}

/// `steps` after the directories their writes (and the manifest) need that are
/// missing under the root, parents first.
fn with_dirs(root: &Path, steps: Vec<Step>) -> Vec<Step> {
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
    all
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
