//! `ncd guard`: the root side of a period, run by `ncd-guard.path` (when a resolver
//! file changes) and `ncd-guard.timer` (every minute). ncdd itself runs
//! unprivileged, so this is where what needs root happens:
//!
//! - while a period runs, drop-ins make `systemctl stop` refuse for ncd.service and
//!   both sockets (`RefuseManualStop=yes`); they go when the period ends;
//! - while a period runs, the resolver settings `ncd install` made are checked and
//!   put back if they drifted (the blocked-domain routes follow the config too),
//!   and each drift is reported to ncdd's journal, which `ncd status` shows.
//!
//! When it cannot tell whether a period runs, it assumes one does (fail closed).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::fsutil::{self, Found};
use super::manifest::Manifest;
use super::period::{self, PeriodRunning, period_running};
use super::plan;
use crate::client::Client;

#[derive(Debug, clap::Args)]
pub(crate) struct GuardArgs {
    /// Guard the system under this directory as if it were `/` (commands are then
    /// listed, not run).
    #[arg(long, default_value = "/")]
    root: PathBuf,
}

pub(crate) fn guard(args: &GuardArgs, socket: Option<&Path>, state_dir: &Path) -> anyhow::Result<ExitCode> {
    let root = args.root.as_path();
    // Fail closed: a period nobody can read is guarded as one that runs.
    let running = match period_running(root, socket, state_dir) {
        PeriodRunning::No => false,
        PeriodRunning::Yes | PeriodRunning::Unknown { .. } => true,
    };
    set_stop_guard(root, running);
    if !running {
        println!("No period is running: nothing to guard.");
        return Ok(ExitCode::SUCCESS);
    }
    let Some(mut manifest) = Manifest::load(root)? else {
        println!("ncd is not installed here (no install manifest): only the stop guard was set.");
        return Ok(ExitCode::SUCCESS);
    };
    let takeover = plan::takeover(root, manifest.resolver)?;
    let mut drift = Vec::new();
    for file in &takeover.files {
        // Only what install wrote: a file it never recorded, uninstall could not undo.
        let Some(record) = manifest.files.iter_mut().find(|f| f.path == file.path) else {
            continue;
        };
        let full = fsutil::under(root, &file.path);
        let matches = matches!(fsutil::look(&full)?, Found::File { ref bytes, .. } if *bytes == file.contents);
        if matches {
            continue;
        }
        fsutil::write_atomically(&full, &file.contents, file.mode)?;
        record.hash = fsutil::hash(&file.contents);
        drift.push(format!("{} had been changed; ncd put it back", file.path.display()));
    }
    if drift.is_empty() {
        println!("The resolver settings are as ncd left them.");
        return Ok(ExitCode::SUCCESS);
    }
    manifest.save(root)?;
    for line in &drift {
        eprintln!("ncd guard: {line}");
    }
    if root == Path::new("/") {
        for reload in &takeover.reload {
            if let Some((program, args)) = reload.argv.split_first() {
                let _ = std::process::Command::new(program).args(args).status();
            }
        }
    }
    // Best effort: ncdd records it in the journal `ncd status` shows.
    let socket = socket.map_or_else(|| period::default_socket(root), Path::to_path_buf);
    if let Err(error) = Client::new(socket).guard_report(drift.clone()) {
        eprintln!("ncd guard: could not tell ncdd ({error}); the system log has it");
    }
    Ok(ExitCode::SUCCESS)
}

/// Puts the stop-guard drop-ins in place while a period runs, and removes them after.
fn set_stop_guard(root: &Path, period_running: bool) {
    use ncd_period::stop_guard::StopGuard;
    StopGuard::at(root.to_path_buf()).set(period_running);
}
