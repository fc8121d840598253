//! During a period, drop-ins make `systemctl stop` refuse (`RefuseManualStop=yes`)
//! for ncd's service, its sockets and the guard's own timer and path unit, so
//! stopping the boundary takes more than one casual command. Root can still remove
//! them: the point is a pause and steps that show in `ncd status`, not a wall.
//!
//! The drop-ins live under /etc/systemd/system, so they are in force from early
//! boot, before `ncd.socket` accepts (a /run drop-in is gone at every reboot until
//! the guard's first run). They are removed when the period ends, with their
//! folders once empty (older versions wrote them under /run: those go too).
//!
//! ncdd runs as the unprivileged `ncd` user and cannot write them. It writes the
//! [`period marker`](ncd_state::StateDir::period_marker) instead, only when a
//! period starts or ends; `ncd-guard.path` watches it, so the root guard runs at
//! once and sets the drop-ins in the same second.

use std::path::{Path, PathBuf};

/// The service, its sockets (stopping one would stop the service with it), and
/// the guard's triggers (stopping them would end the repairs).
pub const UNITS: [&str; 6] = [
    "ncd.service",
    "ncd.socket",
    "ncd-control.socket",
    "ncd-proxy.socket",
    "ncd-guard.timer",
    "ncd-guard.path",
];
const DROP_IN: &str = "50-period.conf";
/// Where the drop-ins go, and where versions before 0.2 put them (removed only).
const DIR: &str = "etc/systemd/system";
const OLD_DIR: &str = "run/systemd/system";
const TEXT: &str = "# Written by `ncd guard` (ncd-guard.service, run as root) while a no-contact\n\
                    # period runs; removed when it ends. It makes `systemctl stop` refuse.\n\
                    [Unit]\nRefuseManualStop=yes\n";
const MARKER_TEXT: &str = "a period is running\n";

/// Where the drop-ins go: under `root` (tests use a temp dir; the service uses /).
#[derive(Debug, Clone)]
pub struct StopGuard {
    root: PathBuf,
}

/// What the daemon keeps for the guard: the drop-ins itself when it runs as
/// root, else the marker that starts the root guard.
#[derive(Debug, Clone)]
pub enum DaemonGuard {
    DropIns(StopGuard),
    Marker(PathBuf),
}

impl DaemonGuard {
    /// For this process: the drop-ins under `NCD_SYSTEM_ROOT` when that is given
    /// (tests); else the marker in the state dir, which `ncd-guard.path` watches.
    /// ncdd never writes under the real /etc itself, even as root: the one path
    /// to the drop-ins is the guard.
    pub fn from_env(state: &ncd_state::StateDir) -> Self {
        match std::env::var_os("NCD_SYSTEM_ROOT") {
            Some(root) => Self::DropIns(StopGuard::at(PathBuf::from(root))),
            None => Self::Marker(state.period_marker()),
        }
    }

    /// Brings the drop-ins or the marker in line with the period. Writes only on
    /// a change, so the path unit runs the guard only when the period starts or ends.
    pub fn set(&self, period_running: bool) {
        match self {
            Self::DropIns(guard) => guard.set(period_running),
            Self::Marker(path) => {
                if set_file(path, period_running.then_some(MARKER_TEXT)) {
                    tracing::info!(path = %path.display(), period_running, "period marker updated");
                }
            }
        }
    }
}

impl StopGuard {
    /// The guard for the system under `root`.
    pub fn at(root: PathBuf) -> Self {
        Self { root }
    }

    /// The drop-in of `unit`.
    pub fn path_for(&self, unit: &str) -> PathBuf {
        self.root.join(DIR).join(format!("{unit}.d")).join(DROP_IN)
    }

    fn old_path_for(&self, unit: &str) -> PathBuf {
        self.root.join(OLD_DIR).join(format!("{unit}.d")).join(DROP_IN)
    }

    /// The service's drop-in.
    pub fn path(&self) -> PathBuf {
        self.path_for(UNITS[0])
    }

    /// Whether every drop-in is in place as written.
    pub fn in_force(&self) -> bool {
        UNITS
            .iter()
            .all(|unit| std::fs::read_to_string(self.path_for(unit)).is_ok_and(|t| t == TEXT))
    }

    /// Puts the drop-ins in place (or removes them), and tells systemd when they
    /// changed (on the live system only).
    pub fn set(&self, period_running: bool) {
        if self.update(period_running) && self.root == Path::new("/") {
            match std::process::Command::new("systemctl").arg("daemon-reload").status() {
                Ok(status) if status.success() => {}
                Ok(status) => tracing::warn!(%status, "systemctl daemon-reload failed"),
                Err(error) => tracing::warn!(%error, "cannot run systemctl daemon-reload"),
            }
        }
    }

    /// Puts the drop-ins in place (or removes them, and their folders once empty)
    /// without telling systemd. Returns whether anything changed: then the caller
    /// runs `systemctl daemon-reload`.
    pub fn update(&self, period_running: bool) -> bool {
        let mut changed = false;
        for unit in UNITS {
            let path = self.path_for(unit);
            changed |= set_file(&path, period_running.then_some(TEXT));
            let old = self.old_path_for(unit);
            changed |= set_file(&old, None);
            if !period_running {
                for file in [&path, &old] {
                    // Only an empty folder: anything else in it is someone else's.
                    if let Some(dir) = file.parent() {
                        let _ = std::fs::remove_dir(dir);
                    }
                }
            }
        }
        changed
    }
}

/// Makes `path` hold `text`, or not exist. Returns whether it changed anything.
fn set_file(path: &Path, text: Option<&str>) -> bool {
    let present = std::fs::read_to_string(path).ok();
    let result = match (text, present) {
        (Some(text), Some(now)) if now == text => Ok(false),
        (Some(text), _) => ncd_state::write_atomically(path, text.as_bytes(), None).map(|()| true),
        (None, None) => Ok(false),
        (None, Some(_)) => std::fs::remove_file(path).map(|()| true),
    };
    match result {
        Ok(changed) => {
            if changed {
                tracing::info!(path = %path.display(), "stop guard updated");
            }
            changed
        }
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot update the stop guard");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drop_ins_cover_every_unit_and_go_with_their_empty_folders() {
        let dir = tempfile::tempdir().unwrap();
        let guard = StopGuard::at(dir.path().to_path_buf());
        // A drop-in an older version left under /run, and a folder with someone else's file.
        let old = dir.path().join("run/systemd/system/ncd.service.d/50-period.conf");
        std::fs::create_dir_all(old.parent().unwrap()).unwrap();
        std::fs::write(&old, TEXT).unwrap();
        let theirs = dir.path().join("etc/systemd/system/ncd.socket.d/mine.conf");
        std::fs::create_dir_all(theirs.parent().unwrap()).unwrap();
        std::fs::write(&theirs, "[Socket]\n").unwrap();

        assert!(guard.update(true));
        assert!(guard.in_force());
        for unit in ["ncd-guard.timer", "ncd-guard.path", "ncd-proxy.socket"] {
            let text = std::fs::read_to_string(guard.path_for(unit)).unwrap();
            assert!(
                text.contains("RefuseManualStop=yes") && text.contains("ncd guard"),
                "{text}"
            );
        }
        assert!(!old.exists(), "the old /run drop-in is gone");
        assert!(!guard.update(true), "nothing to change the second time");

        assert!(guard.update(false));
        assert!(!guard.in_force());
        assert!(!dir.path().join("etc/systemd/system/ncd.service.d").exists());
        assert!(!dir.path().join("run/systemd/system/ncd.service.d").exists());
        assert!(theirs.exists(), "someone else's drop-in stays");
        assert!(!guard.update(false));
    }

    #[test]
    fn the_marker_is_written_only_when_the_period_changes() {
        let dir = tempfile::tempdir().unwrap();
        let state = ncd_state::StateDir::new(dir.path());
        let marker = state.period_marker();
        let guard = DaemonGuard::Marker(marker.clone());
        guard.set(true);
        let first = std::fs::metadata(&marker).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        guard.set(true);
        assert_eq!(std::fs::metadata(&marker).unwrap().modified().unwrap(), first);
        guard.set(false);
        assert!(!marker.exists());
    }
}
