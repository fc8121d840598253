//! The CA install record (`ROOT/var/lib/ncd-root/ca-install.json`, beside the install
//! manifest, root's eyes only): the fingerprint trusted, every file written (with a
//! backup of what was there), every NSS database the CA was added to under which
//! nickname, the keychain entry, and the commands that refresh the system store, so
//! `ncd ca uninstall` undoes exactly that. It lives apart from the install manifest
//! so the CA can be trusted and untrusted on its own, and never in the state dir,
//! which the unprivileged `ncd` user owns.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::super::fsutil;
use super::super::manifest::{CommandRecord, FileRecord};
use super::super::plan::Platform;
use super::cert::Fingerprint;

pub(super) const CA_MANIFEST: &str = "/var/lib/ncd-root/ca-install.json";
/// Where originals replaced by `ncd ca install` are kept, relative to the root.
pub(super) const CA_BACKUP_DIR: &str = "/var/lib/ncd-root/ca-backup";
const FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct CaManifest {
    pub format: u32,
    pub platform: Platform,
    /// The CA trusted by the last `ncd ca install`.
    pub fingerprint: Fingerprint,
    /// Its SHA-1, plain hex (for macOS `security delete-certificate -Z`).
    pub sha1: String,
    /// The domains it was constrained to.
    pub domains: Vec<String>,
    /// Directories created, parents first; removed again when empty.
    pub dirs_created: Vec<PathBuf>,
    pub files: Vec<CaFile>,
    pub nss: Vec<NssRecord>,
    /// The macOS keychain the CA was trusted in.
    #[serde(default)]
    pub keychain: Option<PathBuf>,
    /// Commands that refresh the system store: run again after the anchor goes.
    pub refresh: Vec<Vec<String>>,
    /// Every command the last install ran (or listed), and how it ended.
    pub commands: Vec<CommandRecord>,
}

/// A file written, as the install manifest records one, and, for a Firefox policy,
/// the entry added (so an edited policy file loses only that entry).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct CaFile {
    #[serde(flatten)]
    pub file: FileRecord,
    #[serde(default)]
    pub policy_entry: Option<String>,
}

/// An NSS database the CA was added to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct NssRecord {
    /// The database directory, on disk (user homes are not under the root).
    pub db: PathBuf,
    pub nickname: String,
    /// Whether `ncd ca install` created the database (it is left in place on uninstall).
    pub created: bool,
    /// The user certutil ran as (`sudo -u`), when ncd ran as root for them.
    pub user: Option<String>,
    pub fingerprint: Fingerprint,
}

impl CaManifest {
    pub(super) fn new(platform: Platform, fingerprint: Fingerprint, sha1: String, domains: Vec<String>) -> Self {
        CaManifest {
            format: FORMAT,
            platform,
            fingerprint,
            sha1,
            domains,
            dirs_created: Vec::new(),
            files: Vec::new(),
            nss: Vec::new(),
            keychain: None,
            refresh: Vec::new(),
            commands: Vec::new(),
        }
    }

    pub(super) fn path(root: &Path) -> PathBuf {
        fsutil::under(root, Path::new(CA_MANIFEST))
    }

    /// The record under `root`, or `None` when the CA was never installed there.
    pub(super) fn load(root: &Path) -> anyhow::Result<Option<CaManifest>> {
        fsutil::load_record(&Self::path(root), "CA install record", FORMAT, |m: &CaManifest| {
            m.format
        })
    }

    pub(super) fn save(&self, root: &Path) -> anyhow::Result<()> {
        fsutil::save_record(&Self::path(root), "CA install record", self)
    }

    pub(super) fn file(&self, path: &Path) -> Option<&CaFile> {
        self.files.iter().find(|f| f.file.path == path)
    }
}
