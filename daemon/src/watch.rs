//! The config watcher: a change to the config file or a local list asks for a reload.
//!
//! It watches folders, not files, because editors replace a file rather than write
//! into it. A watched folder can itself be moved away, deleted or made anew (`mv
//! lists x; mkdir lists; …`); the kernel's watch then follows the old folder or
//! ends, and notify drops it. So each folder's parent is watched too, a move or
//! removal of a watched folder marks it stale and asks for a reload, and
//! [`ConfigWatcher::rearm`] (after every reload, and every few seconds) watches
//! again each folder that is stale or is no longer the one watched (by device
//! and inode). A re-armed folder asks for one more reload: what changed in it
//! while nobody watched is read then.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use ncd_config::Config;
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Why a reload was asked for by the watcher.
const CHANGED: &str = "a watched file changed";
const REARMED: &str = "a watched folder was moved or made anew";

/// What the notify callback reads: kept apart from the watcher itself, which must
/// never be called while this is locked (its event thread takes this lock).
#[derive(Debug, Default)]
struct Shared {
    /// File names whose change means "reload": the config and each local list.
    names: HashSet<OsString>,
    /// The folders holding them.
    dirs: HashSet<PathBuf>,
    /// Folders moved, removed or created since they were last armed.
    stale: HashSet<PathBuf>,
}

/// One armed folder.
#[derive(Debug, Clone, Copy, Default)]
struct Armed {
    /// (device, inode) of the folder watched; `None` while it is missing.
    identity: Option<(u64, u64)>,
    /// Armed at least once: a later arming means it changed (asks for a reload).
    before: bool,
    /// The watch is in place (a folder that cannot be watched is tried again only
    /// once it changes).
    watching: bool,
}

/// Watches the config file and the local list files (see the module docs).
pub(crate) struct ConfigWatcher {
    watcher: Mutex<notify::RecommendedWatcher>,
    shared: Arc<Mutex<Shared>>,
    /// Every folder armed (the files' folders and their parents), with the identity
    /// (device, inode) of the folder that was there when it was; `None` while missing.
    armed: Mutex<HashMap<PathBuf, Armed>>,
    reload: mpsc::Sender<&'static str>,
}

impl std::fmt::Debug for ConfigWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigWatcher").field("shared", &self.shared).finish()
    }
}

impl ConfigWatcher {
    pub(crate) fn new(config_path: &Path, reload: mpsc::Sender<&'static str>) -> anyhow::Result<Self> {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let seen = shared.clone();
        let tx = reload.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            if event.kind.is_access() {
                return;
            }
            let Ok(mut shared) = seen.lock() else { return };
            let moved = matches!(
                event.kind,
                EventKind::Remove(_) | EventKind::Create(_) | EventKind::Modify(notify::event::ModifyKind::Name(_))
            );
            let mut wanted = false;
            for path in &event.paths {
                if moved && shared.dirs.contains(path) {
                    shared.stale.insert(path.clone());
                    wanted = true;
                }
                if path.file_name().is_some_and(|n| shared.names.contains(n)) {
                    wanted = true;
                }
            }
            if wanted {
                let _ = tx.try_send(CHANGED);
            }
        })
        .context("cannot watch the config file")?;
        let this = Self {
            watcher: Mutex::new(watcher),
            shared,
            armed: Mutex::new(HashMap::new()),
            reload,
        };
        this.follow(config_path)?;
        Ok(this)
    }

    fn follow(&self, file: &Path) -> anyhow::Result<()> {
        let dir = file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let parent = dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf);
        let new = {
            let mut shared = self.shared.lock().map_err(|_| anyhow::anyhow!("watcher poisoned"))?;
            if let Some(name) = file.file_name() {
                shared.names.insert(name.to_os_string());
            }
            shared.dirs.insert(dir.clone())
        };
        if new {
            let mut armed = self.armed.lock().map_err(|_| anyhow::anyhow!("watcher poisoned"))?;
            armed.entry(dir.clone()).or_default();
            if let Some(parent) = parent {
                armed.entry(parent).or_default();
            }
            drop(armed);
            self.rearm();
            if !self.is_watching(&dir) {
                anyhow::bail!("cannot watch {}", dir.display());
            }
        }
        Ok(())
    }

    fn is_watching(&self, dir: &Path) -> bool {
        self.armed
            .lock()
            .is_ok_and(|armed| armed.get(dir).is_some_and(|a| a.watching))
    }

    /// Starts following the local lists `config` names (lists only ever get added
    /// to the watch set; a stale entry costs one needless reload at most).
    pub(crate) fn follow_lists(&self, config: &Config) {
        for list in &config.block.lists {
            if let ncd_config::ListSource::File(path) = list
                && let Err(error) = self.follow(path)
            {
                tracing::warn!("{error:#}; edits to this list are seen once its folder exists");
            }
        }
    }

    /// Watches again every folder that was moved, removed or made anew since it was
    /// armed. When one was, asks for a reload (its files may have changed unseen)
    /// and returns true.
    pub(crate) fn rearm(&self) -> bool {
        let stale = self
            .shared
            .lock()
            .map(|mut s| std::mem::take(&mut s.stale))
            .unwrap_or_default();
        let (Ok(mut armed), Ok(mut watcher)) = (self.armed.lock(), self.watcher.lock()) else {
            return false;
        };
        let mut changed = false;
        for (dir, armed) in armed.iter_mut() {
            let now = std::fs::metadata(dir)
                .ok()
                .filter(std::fs::Metadata::is_dir)
                .map(|m| (m.dev(), m.ino()));
            if armed.before && now == armed.identity && !stale.contains(dir) {
                continue;
            }
            // notify keeps a watch by path; the old one may follow a moved folder.
            let _ = watcher.unwatch(dir);
            armed.identity = now;
            armed.watching = false;
            if now.is_some() {
                match watcher.watch(dir, RecursiveMode::NonRecursive) {
                    Ok(()) => armed.watching = true,
                    Err(error) => tracing::warn!(dir = %dir.display(), %error, "cannot watch a folder"),
                }
            }
            changed |= std::mem::replace(&mut armed.before, true);
        }
        drop((armed, watcher));
        if changed {
            let _ = self.reload.try_send(REARMED);
        }
        changed
    }
}
