//! During a period, a runtime drop-in makes `systemctl stop ncd` refuse
//! (`RefuseManualStop=yes`), so stopping the boundary takes more than one casual
//! command. It lives under /run (gone at reboot, when the units start ncdd again)
//! and is removed when the period ends. Root can still remove it: the point is a
//! pause and a step, not a wall.

use std::path::{Path, PathBuf};

/// The service and both sockets: stopping a socket would stop the service with it.
const UNITS: [&str; 4] = ["ncd.service", "ncd.socket", "ncd-control.socket", "ncd-proxy.socket"];
const DROP_IN: &str = "50-period.conf";
const TEXT: &str = "# Written by ncdd while a no-contact period runs; removed when it ends.\n\
                    [Unit]\nRefuseManualStop=yes\n";

/// Where the drop-in goes: under `root` (tests use a temp dir; the service uses /).
#[derive(Debug, Clone)]
pub struct StopGuard {
    root: PathBuf,
}

impl StopGuard {
    /// The guard for this process: active under systemd (`INVOCATION_ID` is set)
    /// when running as root, or under `NCD_SYSTEM_ROOT` when that is given (tests).
    /// The shipped unit runs ncdd as the unprivileged `ncd` user; there the root
    /// `ncd-guard` unit keeps the drop-ins instead.
    pub fn from_env() -> Option<Self> {
        if let Some(root) = std::env::var_os("NCD_SYSTEM_ROOT") {
            return Some(Self::at(PathBuf::from(root)));
        }
        let root_user = rustix::process::geteuid().is_root();
        (root_user && std::env::var_os("INVOCATION_ID").is_some()).then(|| Self::at(PathBuf::from("/")))
    }

    /// The guard for the system under `root`.
    pub fn at(root: PathBuf) -> Self {
        Self { root }
    }

    /// The drop-in of `unit`.
    pub fn path_for(&self, unit: &str) -> PathBuf {
        self.root
            .join("run/systemd/system")
            .join(format!("{unit}.d"))
            .join(DROP_IN)
    }

    /// The service's drop-in.
    pub fn path(&self) -> PathBuf {
        self.path_for(UNITS[0])
    }

    /// Puts the drop-ins in place (or removes them), and tells systemd when they changed.
    pub fn set(&self, period_running: bool) {
        let changed: Vec<bool> = UNITS
            .iter()
            .map(|unit| self.set_one(&self.path_for(unit), period_running))
            .collect();
        if changed.contains(&true) {
            self.reload();
        }
    }

    fn set_one(&self, path: &Path, period_running: bool) -> bool {
        let path = path.to_path_buf();
        let present = std::fs::read_to_string(&path).is_ok_and(|t| t == TEXT);
        let result = match (period_running, present) {
            (true, false) => ncd_state::write_atomically(&path, TEXT.as_bytes(), None).map(|()| true),
            (false, true) => std::fs::remove_file(&path).map(|()| true),
            _ => Ok(false),
        };
        match result {
            Ok(changed) => {
                if changed {
                    tracing::info!(path = %path.display(), period_running, "stop guard updated");
                }
                changed
            }
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot update the stop guard");
                false
            }
        }
    }

    fn reload(&self) {
        if self.root != Path::new("/") {
            return;
        }
        match std::process::Command::new("systemctl").arg("daemon-reload").status() {
            Ok(status) if status.success() => {}
            Ok(status) => tracing::warn!(%status, "systemctl daemon-reload failed"),
            Err(error) => tracing::warn!(%error, "cannot run systemctl daemon-reload"),
        }
    }
}
