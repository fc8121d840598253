//! The install manifest (`ROOT/var/lib/ncd-root/install-manifest.json`): every file written,
//! every setting changed and every command run, so uninstall can put back exactly what
//! was there. Paths are as seen on the target system (absolute, without `--root`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::flavour::Flavour;
use super::fsutil;
use super::plan::Platform;

/// Where the manifest lives, relative to the root: root's own directory (0700, see
/// systemd/ncd.tmpfiles), not /var/lib/ncd, which systemd hands to the `ncd` user.
pub(super) const MANIFEST: &str = "/var/lib/ncd-root/install-manifest.json";
/// Where originals replaced by install are kept, relative to the root.
pub(super) const BACKUP_DIR: &str = "/var/lib/ncd-root/install-backup";
pub(super) const FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Manifest {
    /// Bumped when the layout changes; uninstall refuses a format it does not know.
    pub format: u32,
    /// Stored as "linux" or "macos".
    pub platform: Platform,
    /// The resolver flavour taken over, stored as "systemd-resolved",
    /// "networkmanager", "resolv.conf" or "macos".
    pub resolver: Flavour,
    /// Directories install created, parents first. Uninstall removes them, last
    /// first, when they are empty.
    pub dirs_created: Vec<PathBuf>,
    pub files: Vec<FileRecord>,
    pub settings: Vec<SettingRecord>,
    /// Every command install planned, whether it ran, and how it ended.
    pub commands: Vec<CommandRecord>,
    /// Commands uninstall runs before restoring files (stop the service).
    pub uninstall_before: Vec<Vec<String>>,
    /// Commands uninstall runs after restoring files (reload, flush caches).
    pub uninstall_after: Vec<Vec<String>>,
    /// Installed over the Debian package: its binaries and units are the
    /// package's, so uninstall neither stops nor removes them.
    #[serde(default)]
    pub packaged: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct FileRecord {
    pub path: PathBuf,
    /// What the file is, in words ("the ncdd daemon", "the resolver drop-in").
    pub what: String,
    /// `fnv1a64:<hex>` of the bytes written.
    pub hash: String,
    pub mode: u32,
    /// What was at `path` before.
    pub previous: Previous,
    /// The person's own file once edited (the config): left in place on uninstall
    /// rather than refused.
    #[serde(default)]
    pub keep_if_edited: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub(super) enum Previous {
    /// Nothing: uninstall deletes the file.
    Absent,
    /// A regular file, copied byte for byte to `backup`.
    File { backup: PathBuf, mode: u32, hash: String },
    /// A symbolic link and its target, exactly as read.
    Symlink { target: PathBuf },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct SettingRecord {
    pub what: String,
    pub previous: String,
    pub new: String,
    /// The command that sets it back.
    pub restore: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct CommandRecord {
    pub argv: Vec<String>,
    pub ran: bool,
    /// The exit status when it ran (`None`: not run, or killed by a signal).
    pub status: Option<i32>,
}

impl Manifest {
    /// The record of an install that has not written anything yet.
    pub(super) fn new(platform: Platform, resolver: Flavour) -> Manifest {
        Manifest {
            format: FORMAT,
            platform,
            resolver,
            dirs_created: Vec::new(),
            files: Vec::new(),
            settings: Vec::new(),
            commands: Vec::new(),
            uninstall_before: Vec::new(),
            uninstall_after: Vec::new(),
            packaged: false,
        }
    }

    pub(super) fn path(root: &Path) -> PathBuf {
        fsutil::under(root, Path::new(MANIFEST))
    }

    /// The manifest under `root`, or `None` when nothing is installed there.
    pub(super) fn load(root: &Path) -> anyhow::Result<Option<Manifest>> {
        fsutil::load_record(&Self::path(root), "install manifest", FORMAT, |m: &Manifest| m.format)
    }

    pub(super) fn save(&self, root: &Path) -> anyhow::Result<()> {
        fsutil::save_record(&Self::path(root), "install manifest", self)
    }

    pub(super) fn file(&self, path: &Path) -> Option<&FileRecord> {
        self.files.iter().find(|f| f.path == path)
    }
}
