//! Whether a period is running, as far as install, uninstall and `ncd guard` can
//! tell: the period state files first (ncdd writes a period before it answers, so
//! they know even while ncdd is stopped); when they say none runs, ncdd is asked
//! too, if it answers. A period either of them knows of is running.
//! The only place here that reads the period store.

use std::path::{Path, PathBuf};

use super::{fsutil, plan};
use crate::client::Client;

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

/// Reads the period state under `root` + `state_dir`; when that says no period
/// runs, asks ncdd on `socket` (by default the config's, inside the root) too.
pub(super) fn period_running(root: &Path, socket: Option<&Path>, state_dir: &Path) -> PeriodRunning {
    let dir = fsutil::under(root, state_dir);
    // Not root (`--dry-run`, `--check` as a user): the state dir is the `ncd`
    // user's (0700). Then only ncdd can say, and nothing is changed either way.
    let unreadable = std::fs::read_dir(&dir).is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied);
    let stored = if unreadable {
        PeriodRunning::Unknown {
            why: format!("the period state in {} can only be read by root", dir.display()),
        }
    } else {
        stored_period(&dir)
    };
    if matches!(stored, PeriodRunning::Yes) || matches!(stored, PeriodRunning::Unknown { .. }) && !unreadable {
        return stored;
    }
    // An explicit --socket is taken as it is; else the config's, inside the root.
    let socket = socket.map_or_else(|| default_socket(root), Path::to_path_buf);
    match Client::new(socket).status() {
        Ok(status) if status.period.active => PeriodRunning::Yes,
        Ok(_) if unreadable => PeriodRunning::No,
        // Not running, not reached, or unclear: the state files have decided.
        Ok(_) | Err(_) => stored,
    }
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
        // A commitment whose time is all served is over, even before ncdd has
        // recorded the end (it was stopped at that moment).
        Loaded::Found { state, .. }
            if state
                .commitment
                .as_ref()
                .is_none_or(ncd_period::commitment::Commitment::is_complete) =>
        {
            PeriodRunning::No
        }
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
