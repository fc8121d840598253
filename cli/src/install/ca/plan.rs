//! What `ncd ca install` would do, worked out from the layout under the root and the
//! user's home before anything is touched: a copy of the CA at a stable path, the
//! system store's anchor and its refresh, the Firefox enterprise policies, the NSS
//! databases of Chrome/Chromium and every Firefox profile, and the macOS System
//! keychain. Steps already done (same bytes on disk, same CA recorded) are left out.

use std::path::{Path, PathBuf};

use super::super::fsutil::{self, Found};
use super::super::plan::Platform;
use super::super::{Describe, Where, show, size};
use super::apply::nss_cert;
use super::cert::{CaCert, Fingerprint};
use super::policy;
use super::record::CaManifest;

/// A copy of the CA at a stable, world-readable path: what the Firefox policy,
/// certutil and `security` read, and what `ncd status` compares with the current CA.
pub(crate) const COPY: &str = "/usr/local/share/ncd/ncd-local-ca.pem";
/// The nickname of ncd's CA in NSS databases.
pub(super) const NICKNAME: &str = "ncd local CA";
pub(super) const SYSTEM_KEYCHAIN: &str = "/Library/Keychains/System.keychain";

/// The system-wide certificate store, by the layout under the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SystemStore {
    /// Debian, Ubuntu: `update-ca-certificates`.
    Debian,
    /// Fedora, RHEL: `update-ca-trust`.
    Fedora,
    /// Arch: p11-kit's `trust`.
    Arch,
}

impl SystemStore {
    pub(super) fn detect(root: &Path) -> Option<SystemStore> {
        let has = |p: &str| fsutil::under(root, Path::new(p)).exists();
        if has("/usr/sbin/update-ca-certificates") || has("/etc/ca-certificates.conf") {
            Some(SystemStore::Debian)
        } else if has("/etc/pki/ca-trust/source/anchors") {
            Some(SystemStore::Fedora)
        } else if has("/etc/ca-certificates/trust-source/anchors") {
            Some(SystemStore::Arch)
        } else {
            None
        }
    }

    pub(super) fn anchor(self) -> &'static str {
        match self {
            SystemStore::Debian => "/usr/local/share/ca-certificates/ncd-local-ca.crt",
            SystemStore::Fedora => "/etc/pki/ca-trust/source/anchors/ncd-local-ca.pem",
            SystemStore::Arch => "/etc/ca-certificates/trust-source/anchors/ncd-local-ca.crt",
        }
    }

    pub(super) fn refresh(self) -> Vec<String> {
        let words: &[&str] = match self {
            SystemStore::Debian => &["update-ca-certificates"],
            SystemStore::Fedora => &["update-ca-trust", "extract"],
            SystemStore::Arch => &["trust", "extract-compat"],
        };
        words.iter().map(|w| (*w).to_string()).collect()
    }

    fn words(self) -> &'static str {
        match self {
            SystemStore::Debian => "Debian/Ubuntu",
            SystemStore::Fedora => "Fedora/RHEL",
            SystemStore::Arch => "Arch",
        }
    }
}

/// Whose browsers: the home whose NSS databases are updated (on disk), and the user
/// certutil runs as when ncd runs as root for them under sudo.
#[derive(Debug, Clone)]
pub(super) struct Home {
    pub dir: PathBuf,
    pub user: Option<String>,
}

impl Home {
    /// `argv` as the home's user (`sudo -u USER --`), so files in their home stay theirs.
    pub(super) fn command(&self, argv: Vec<String>) -> Vec<String> {
        as_user(self.user.as_deref(), argv)
    }
}

pub(super) fn as_user(user: Option<&str>, argv: Vec<String>) -> Vec<String> {
    match user {
        Some(user) => ["sudo", "-u", user, "--"]
            .iter()
            .map(|w| (*w).to_string())
            .chain(argv)
            .collect(),
        None => argv,
    }
}

pub(super) fn sql(db: &Path) -> String {
    format!("sql:{}", db.display())
}

pub(super) fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_string()).collect()
}

/// Whether `program` is an executable file in one of `$PATH`'s directories.
pub(super) fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(program)).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

#[derive(Debug, Clone)]
pub(super) enum CaStep {
    /// Write a file (whatever is there is kept aside first).
    Write {
        path: PathBuf,
        contents: Vec<u8>,
        mode: u32,
        what: String,
        /// For a Firefox policy: the entry added to `Certificates.Install`.
        policy_entry: Option<String>,
        /// Written by an earlier `ncd ca install` (its original is kept already).
        ours: bool,
    },
    /// Add the CA to an NSS database (creating the database first when `create`).
    Nss {
        db: PathBuf,
        what: String,
        create: bool,
        /// Whether certutil is there to run (else the step is listed only).
        runs: bool,
    },
    /// Run a command on the system (only when live).
    Run {
        argv: Vec<String>,
        why: String,
        /// A refresh of the system store, to run again on uninstall.
        refresh: bool,
    },
    /// Trust the CA in a macOS keychain (only when live; macOS asks in a dialog).
    Keychain { argv: Vec<String>, keychain: PathBuf },
}

impl Describe for CaStep {
    fn describe(&self, at: &Where) -> anyhow::Result<String> {
        Ok(match self {
            CaStep::Write {
                path,
                contents,
                mode,
                what,
                policy_entry,
                ours,
            } => {
                let found = fsutil::look(&fsutil::under(at.root, path))?;
                match (policy_entry, found) {
                    (None, Found::File { .. }) if *ours => format!(
                        "Write {} — {what} ({}, mode {mode:04o}), replacing ncd's earlier one",
                        show(path),
                        size(contents.len())
                    ),
                    (Some(entry), Found::Absent) => format!(
                        "Write the Firefox policy {} installing {entry} (Certificates.Install)",
                        show(path)
                    ),
                    (Some(entry), _) => format!(
                        "Add {entry} to Certificates.Install in the Firefox policy {}, keeping its other \
                         policies (a copy is kept to put back)",
                        show(path)
                    ),
                    (None, Found::Absent) => {
                        format!(
                            "Write {} — {what} ({}, mode {mode:04o})",
                            show(path),
                            size(contents.len())
                        )
                    }
                    (None, _) => format!(
                        "Write {} — {what} ({}, mode {mode:04o}), replacing what is there (a copy is kept \
                         to put back)",
                        show(path),
                        size(contents.len())
                    ),
                }
            }
            CaStep::Nss { db, what, create, runs } => {
                let create = if *create { "create it, then " } else { "" };
                let listed = if *runs {
                    ""
                } else {
                    " (listed only: certutil is not installed; `apt install libnss3-tools` or `dnf install nss-tools`)"
                };
                format!(
                    "NSS database {} ({what}): {create}add the CA as “{NICKNAME}” with `certutil -d {} -A -t C,, \
                     -n \"{NICKNAME}\" -i {}`{listed}",
                    db.display(),
                    sql(db),
                    show(Path::new(COPY))
                )
            }
            CaStep::Run { argv, why, .. } => format!("Run `{}` to {why}{}", argv.join(" "), at.listed()),
            CaStep::Keychain { argv, .. } => format!(
                "Run `{}` to trust the CA in the System keychain (macOS asks for an administrator's password \
                 in a dialog: root alone is not enough){}",
                argv.join(" "),
                at.listed()
            ),
        })
    }
}

/// What the plan is made from.
#[derive(Debug)]
pub(super) struct Target<'a> {
    pub root: &'a Path,
    pub platform: Platform,
    pub home: &'a Home,
    pub cert: &'a CaCert,
    pub certutil: bool,
}

/// The steps not done yet, and notes on what was skipped.
#[derive(Debug, Default)]
pub(super) struct Plan {
    pub steps: Vec<CaStep>,
    pub notes: Vec<String>,
}

impl Plan {
    /// Whether any step would change something (commands alone do not count).
    pub(super) fn changes_something(&self) -> bool {
        self.steps.iter().any(|s| match s {
            CaStep::Write { .. } | CaStep::Keychain { .. } => true,
            CaStep::Nss { runs, .. } => *runs,
            CaStep::Run { .. } => false,
        })
    }
}

/// The plan for `target`, leaving out what `old` and the disk show as done.
pub(super) fn plan(target: &Target, old: Option<&CaManifest>) -> anyhow::Result<Plan> {
    let mut plan = Plan::default();
    let pem = target.cert.pem.as_bytes();
    let same_ca = old.is_some_and(|m| m.fingerprint == target.cert.sha256);
    write_if_changed(
        &mut plan,
        target.root,
        old,
        COPY,
        pem,
        "a copy of ncd's CA, which the browser steps read",
    )?;
    match target.platform {
        Platform::Linux => {
            match SystemStore::detect(target.root) {
                Some(store) => {
                    if write_if_changed(
                        &mut plan,
                        target.root,
                        old,
                        store.anchor(),
                        pem,
                        &format!("ncd's CA for the system store ({})", store.words()),
                    )? {
                        plan.steps.push(CaStep::Run {
                            argv: store.refresh(),
                            why: "rebuild the system's list of trusted CAs".into(),
                            refresh: true,
                        });
                    }
                }
                None => plan.notes.push(format!(
                    "No system certificate store was found under {} (the Debian, Fedora or Arch layout); \
                     that part is skipped.",
                    target.root.display()
                )),
            }
            firefox_policies(&mut plan, target.root, policy::LINUX_POLICIES)?;
            for (db, what, create) in nss_dbs(&target.home.dir) {
                // Recorded for this CA, and (when certutil can tell) still there.
                let done = same_ca
                    && old.is_some_and(|m| m.nss.iter().any(|n| n.db == db))
                    && (!target.certutil
                        || nss_cert(&db).is_some_and(|der| Fingerprint::of(&der) == target.cert.sha256));
                if !done {
                    plan.steps.push(CaStep::Nss {
                        db,
                        what,
                        create,
                        runs: target.certutil,
                    });
                }
            }
            if !target.certutil {
                plan.notes.push(
                    "certutil is not installed, so Chrome/Chromium and Firefox profiles cannot be updated here \
                     (`sudo apt install libnss3-tools`, or `sudo dnf install nss-tools`, then run this again)."
                        .into(),
                );
            }
        }
        Platform::Macos => {
            firefox_policies(&mut plan, target.root, policy::MACOS_POLICIES)?;
            if !(same_ca && old.is_some_and(|m| m.keychain.is_some())) {
                plan.steps.push(CaStep::Keychain {
                    argv: strings(&[
                        "security",
                        "add-trusted-cert",
                        "-d",
                        "-r",
                        "trustRoot",
                        "-k",
                        SYSTEM_KEYCHAIN,
                        COPY,
                    ]),
                    keychain: SYSTEM_KEYCHAIN.into(),
                });
            }
        }
    }
    Ok(plan)
}

/// Adds a write of `contents` to `path` unless it holds them already. True when added.
fn write_if_changed(
    plan: &mut Plan,
    root: &Path,
    old: Option<&CaManifest>,
    path: &str,
    contents: &[u8],
    what: &str,
) -> anyhow::Result<bool> {
    if let Found::File { bytes, .. } = fsutil::look(&fsutil::under(root, Path::new(path)))?
        && bytes == contents
    {
        return Ok(false);
    }
    plan.steps.push(CaStep::Write {
        path: path.into(),
        contents: contents.to_vec(),
        mode: 0o644,
        what: what.into(),
        policy_entry: None,
        ours: old.is_some_and(|m| m.file(Path::new(path)).is_some()),
    });
    Ok(true)
}

/// Each Firefox installed under the root: its policy file with the CA added.
fn firefox_policies(plan: &mut Plan, root: &Path, places: &[(&str, &str)]) -> anyhow::Result<()> {
    let mut seen: Vec<&str> = Vec::new();
    for (installed, file) in places {
        if seen.contains(file) || !fsutil::under(root, Path::new(installed)).exists() {
            continue;
        }
        seen.push(file);
        let disk = fsutil::under(root, Path::new(file));
        let existing = match fsutil::look(&disk)? {
            Found::Absent => None,
            Found::File { bytes, .. } => Some(bytes),
            _ => anyhow::bail!(
                "{} is not a regular file, so ncd will not change it. Nothing was changed.",
                disk.display()
            ),
        };
        let what = disk.display().to_string();
        if let Some(contents) = policy::merged(existing.as_deref(), COPY, &what)? {
            plan.steps.push(CaStep::Write {
                path: (*file).into(),
                contents,
                mode: 0o644,
                what: "the Firefox enterprise policy".into(),
                policy_entry: Some(COPY.into()),
                ours: false,
            });
        }
    }
    Ok(())
}

/// The NSS databases in `home` (on disk): Chrome/Chromium's (created when missing),
/// the Chromium snap's, and every Firefox profile's (deb and snap). Sorted.
pub(super) fn nss_dbs(home: &Path) -> Vec<(PathBuf, String, bool)> {
    let has_db = |dir: &Path| dir.join("cert9.db").is_file();
    let mut out = Vec::new();
    let chromium = home.join(".pki/nssdb");
    out.push((chromium.clone(), "Chrome and Chromium".to_string(), !has_db(&chromium)));
    let snap = home.join("snap/chromium/current/.pki/nssdb");
    if has_db(&snap) {
        out.push((snap, "the Chromium snap".to_string(), false));
    }
    for profiles in [
        home.join(".mozilla/firefox"),
        home.join("snap/firefox/common/.mozilla/firefox"),
    ] {
        let Ok(entries) = std::fs::read_dir(&profiles) else {
            continue;
        };
        let mut dbs: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| has_db(p))
            .collect();
        dbs.sort();
        for db in dbs {
            let name = db
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push((db, format!("the Firefox profile {name}"), false));
        }
    }
    out
}
