//! Whether a period is running, as far as install, uninstall and `ncd guard` can
//! tell: ncdd is asked first; if it cannot be asked, the period state files decide.
//! The only place here that reads the period store.

use std::path::{Path, PathBuf};

use super::{fsutil, plan};
use crate::client::{Client, ClientError};

/// What is known of the period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PeriodRunning {
    Yes,
    No,
    /// The state cannot be read, so nobody can tell: callers assume one runs.
    Unknown {
        /// Why, in words: which state, and what is wrong with it.
        why: String,
    },
}

/// Asks ncdd on `socket` (by default the config's, inside the root), else reads
/// the period state under `root` + `state_dir`.
pub(super) fn period_running(root: &Path, socket: Option<&Path>, state_dir: &Path) -> PeriodRunning {
    // An explicit --socket is taken as it is; else the config's, inside the root.
    let socket = socket.map_or_else(|| default_socket(root), Path::to_path_buf);
    match Client::new(socket).status() {
        Ok(status) if status.period.active => return PeriodRunning::Yes,
        Ok(_) => return PeriodRunning::No,
        Err(ClientError::NotRunning { .. }) => {}
        // Reached but unclear: the state files decide.
        Err(_) => {}
    }
    stored_period(&fsutil::under(root, state_dir))
}

/// ncdd's control socket as the config under `root` names it, inside the root.
pub(super) fn default_socket(root: &Path) -> PathBuf {
    fsutil::under(
        root,
        &crate::client::resolve_socket(None, &fsutil::under(root, Path::new(plan::CONFIG_PATH))),
    )
}

/// The period as the state files in `dir` record it.
fn stored_period(dir: &Path) -> PeriodRunning {
    use ncd_period::store::{Loaded, Store};
    match Store::new(&ncd_state::StateDir::new(dir)).load() {
        Loaded::Fresh => PeriodRunning::No,
        Loaded::Found { state, .. } if state.commitment.is_none() => PeriodRunning::No,
        Loaded::Found { .. } => PeriodRunning::Yes,
        Loaded::Unreadable { damage } => PeriodRunning::Unknown {
            why: format!(
                "the period state in {} cannot be read ({})",
                dir.display(),
                damage.join("; ")
            ),
        },
    }
}
