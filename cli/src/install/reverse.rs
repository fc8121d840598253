//! Uninstall as a plan: the manifest undone in reverse, worked out before anything is
//! touched as a list of [`Undo`] steps. The same list is printed (for `--dry-run` and
//! for the real run, by `print_plan`) and then carried out by [`undo`].
//!
//! On Linux the units are stopped before any file goes: the period's stop-refusing
//! drop-ins are lifted first (uninstall only runs once the period is over by the
//! state files, even if the guard has not run since), systemd re-reads its units,
//! the units are stopped, and uninstall stops there, changing nothing else, if
//! that failed or one still runs. The manifest is the last thing removed, so a
//! failed uninstall can always be run again.

use std::path::{Path, PathBuf};

use anyhow::Context;

use ncd_period::stop_guard::{self, StopGuard};

use super::fsutil::{self, Found};
use super::manifest::{self, FileRecord, Manifest, Previous};
use super::plan::{self, Platform};
use super::{Describe, Runner, Where, run_with, show};

/// One step of an uninstall.
#[derive(Debug, Clone)]
pub(super) enum Undo {
    /// Remove the period's stop-refusing drop-ins (and their empty folders).
    LiftStopGuard,
    /// Run a command the manifest names (stop the service, reload the resolver).
    /// When `must` and it fails, uninstall stops there (unless forced).
    Run { argv: Vec<String>, must: bool },
    /// Stop here, before any file is touched, if one of these units still runs.
    EnsureStopped { argv: Vec<String> },
    /// Set a setting back with the command the manifest saved.
    SetBack {
        what: String,
        previous: String,
        restore: Vec<String>,
    },
    /// Remove a file install wrote, or put back what it replaced.
    Restore(FileRecord),
    /// Leave a file the person edited since (their config): nothing is done.
    Keep { path: PathBuf },
    /// Remove the manifest, then the directories install created, when empty.
    Forget { dirs: Vec<PathBuf> },
}

impl Describe for Undo {
    fn describe(&self, at: &Where) -> anyhow::Result<String> {
        let listed = at.listed();
        Ok(match self {
            Undo::LiftStopGuard => {
                "Remove the period's stop-refusing drop-ins, if any are left (the period is over)".into()
            }
            Undo::Run { argv, must: false } => format!("Run `{}`{listed}", argv.join(" ")),
            Undo::Run { argv, must: true } => {
                format!("Run `{}`{listed}; if it fails, stop here", argv.join(" "))
            }
            Undo::EnsureStopped { argv } => {
                format!(
                    "Check with `{}` that no unit still runs; if one does, stop here{listed}",
                    argv.join(" ")
                )
            }
            Undo::SetBack {
                what,
                previous,
                restore,
            } => format!("Set the {what} back to {previous} with `{}`{listed}", restore.join(" ")),
            Undo::Restore(record) => match &record.previous {
                Previous::Absent => format!("Remove {} ({})", show(&record.path), record.what),
                Previous::File { backup, mode, .. } => format!(
                    "Put back the original {} (mode {mode:04o}) from {}",
                    show(&record.path),
                    show(backup)
                ),
                Previous::Symlink { target } => {
                    format!("Put back {} as a link to {}", show(&record.path), target.display())
                }
            },
            Undo::Keep { path } => format!("Keep {}: it is yours now (you edited it)", show(path)),
            Undo::Forget { .. } => format!(
                "Remove the install record {} and the directories ncd created, when empty",
                show(Path::new(manifest::MANIFEST))
            ),
        })
    }
}

/// The manifest undone, last things first: stop the service, set settings back, put
/// files back (in the reverse of the order they were written), reload, forget.
/// Refuses, changing nothing, when a file ncd wrote was edited since (unless `force`).
pub(super) fn reverse(root: &Path, manifest: &Manifest, force: bool) -> anyhow::Result<Vec<Undo>> {
    let mut restore = Vec::new();
    let mut kept = Vec::new();
    let mut edited = Vec::new();
    let lists = kept_config_lists(root, manifest, force)?;
    for record in &manifest.files {
        match file_state(root, record, force)? {
            // The config stays, so the lists it names stay with it.
            FileState::Restore if lists.contains(&fsutil::under(root, &record.path)) => kept.push(Undo::Keep {
                path: record.path.clone(),
            }),
            FileState::Restore => restore.push(Undo::Restore(record.clone())),
            FileState::Gone => {}
            FileState::Keep => kept.push(Undo::Keep {
                path: record.path.clone(),
            }),
            FileState::Edited => edited.push(record.path.clone()),
        }
    }
    if !edited.is_empty() {
        let list: Vec<String> = edited
            .iter()
            .map(|p| format!("  {}", show(&fsutil::under(root, p))))
            .collect();
        anyhow::bail!(
            "These files were installed by ncd and changed since, so ncd will not remove them:\n{}\n\
             Put back what ncd wrote, or run `ncd uninstall --force` to remove them anyway. Nothing was changed.",
            list.join("\n")
        );
    }
    let runs = |commands: &[Vec<String>], must: bool| {
        commands
            .iter()
            .map(|argv| Undo::Run {
                argv: argv.clone(),
                must: must && !force,
            })
            .collect::<Vec<_>>()
    };
    let mut steps = Vec::new();
    if manifest.platform == Platform::Linux {
        steps.push(Undo::LiftStopGuard);
        steps.extend(runs(&[plan::argv(&["systemctl", "daemon-reload"])], true));
        steps.extend(runs(&manifest.uninstall_before, true));
        if !manifest.packaged && !force {
            let mut argv = plan::argv(&["systemctl", "is-active", "--quiet"]);
            argv.extend(stop_guard::UNITS.iter().map(|u| (*u).to_string()));
            steps.push(Undo::EnsureStopped { argv });
        }
    } else {
        steps.extend(runs(&manifest.uninstall_before, false));
    }
    steps.extend(manifest.settings.iter().map(|s| Undo::SetBack {
        what: s.what.clone(),
        previous: s.previous.clone(),
        restore: s.restore.clone(),
    }));
    steps.extend(restore.into_iter().rev());
    steps.extend(kept);
    steps.extend(runs(&manifest.uninstall_after, false));
    steps.push(Undo::Forget {
        dirs: manifest.dirs_created.clone(),
    });
    Ok(steps)
}

enum FileState {
    /// Still as written (or forced): removed or put back.
    Restore,
    /// Gone already, and nothing to put back.
    Gone,
    /// The person's, edited since: left in place.
    Keep,
    /// Ours, edited since: uninstall refuses.
    Edited,
}

fn file_state(root: &Path, record: &FileRecord, force: bool) -> anyhow::Result<FileState> {
    let disk = fsutil::under(root, &record.path);
    let found = fsutil::look(&disk).with_context(|| format!("Could not look at {}", disk.display()))?;
    let intact = matches!(&found, Found::File { bytes, .. } if fsutil::hash(bytes) == record.hash);
    Ok(if intact || force && !record.keep_if_edited {
        FileState::Restore
    } else if found == Found::Absent && record.previous == Previous::Absent {
        FileState::Gone
    } else if record.keep_if_edited {
        FileState::Keep
    } else {
        FileState::Edited
    })
}

/// The local lists a config that stays after uninstall names (paths inside the
/// root): the person's config, or ours edited since. Empty when the config goes.
fn kept_config_lists(root: &Path, manifest: &Manifest, force: bool) -> anyhow::Result<Vec<PathBuf>> {
    let config_path = Path::new(plan::CONFIG_PATH);
    let stays = match manifest.files.iter().find(|f| f.path == config_path) {
        None => true,
        Some(record) => matches!(file_state(root, record, force)?, FileState::Keep),
    };
    if !stays {
        return Ok(Vec::new());
    }
    // A config that does not load names no list we can tell: nothing extra is kept.
    let Ok(config) = ncd_config::Config::load(&fsutil::under(root, config_path)) else {
        return Ok(Vec::new());
    };
    Ok(config
        .block
        .lists
        .iter()
        .filter_map(|list| match list {
            ncd_config::ListSource::File(path) => Some(path.clone()),
            _ => None,
        })
        .collect())
}

/// Carries out `steps`, dropping each file from the manifest (saved) once it is
/// back, so an interrupted uninstall can be run again. Returns whether a command
/// failed; stops with an error, before any file is touched, when the units could
/// not be stopped.
pub(super) fn undo(root: &Path, steps: &[Undo], manifest: &mut Manifest, runner: &Runner) -> anyhow::Result<bool> {
    let mut failed = false;
    // Uninstall's commands are not recorded: the record goes at the end.
    let mut log = Vec::new();
    for step in steps {
        match step {
            Undo::LiftStopGuard => {
                StopGuard::at(root.to_path_buf()).update(false);
            }
            Undo::Run { argv, must } => {
                let ok = run_with(argv, runner, &mut log)?;
                anyhow::ensure!(
                    ok || !must,
                    "`{}` did not succeed, so uninstall stopped here: no file was removed, and the install \
                     record is kept, so `sudo ncd uninstall` can be run again. (`--force` carries on regardless.)",
                    argv.join(" ")
                );
                failed |= !ok;
            }
            Undo::EnsureStopped { argv } => {
                // `systemctl is-active` succeeds when at least one of the units is active.
                let running = runner.succeeds(argv);
                anyhow::ensure!(
                    !running,
                    "A unit of ncd is still running after it was stopped (`systemctl status 'ncd*'` shows which), \
                     so uninstall stopped here: no file was removed, and the install record is kept. Stop it, \
                     then run `sudo ncd uninstall` again."
                );
            }
            Undo::SetBack { restore, .. } => failed |= !run_with(restore, runner, &mut log)?,
            Undo::Restore(record) => {
                put_back(root, record)?;
                manifest.files.retain(|f| f.path != record.path);
                manifest.save(root)?;
            }
            Undo::Keep { .. } => {}
            Undo::Forget { dirs } => {
                let manifest_disk = Manifest::path(root);
                fsutil::remove(&manifest_disk)
                    .with_context(|| format!("Could not remove {}", manifest_disk.display()))?;
                for dir in dirs.iter().rev() {
                    // Only empty ones: anything else in them is not ours to delete.
                    let _ = std::fs::remove_dir(fsutil::under(root, dir));
                }
            }
        }
    }
    Ok(failed)
}

/// Removes the file `record` describes, or puts back what was there before.
pub(super) fn put_back(root: &Path, record: &FileRecord) -> anyhow::Result<()> {
    let disk = fsutil::under(root, &record.path);
    match &record.previous {
        Previous::Absent => fsutil::remove(&disk).with_context(|| format!("Could not remove {}", disk.display())),
        Previous::Symlink { target } => fsutil::symlink_atomically(&disk, target)
            .with_context(|| format!("Could not put back the link {}", disk.display())),
        Previous::File { backup, mode, hash } => {
            let backup_disk = fsutil::under(root, backup);
            let bytes = std::fs::read(&backup_disk)
                .with_context(|| format!("Could not read the kept original {}", backup_disk.display()))?;
            anyhow::ensure!(
                fsutil::hash(&bytes) == *hash,
                "The kept original {} was changed since install; {} was left as it is.",
                backup_disk.display(),
                disk.display()
            );
            fsutil::write_atomically(&disk, &bytes, *mode)
                .with_context(|| format!("Could not put back {}", disk.display()))?;
            fsutil::remove(&backup_disk)
                .with_context(|| format!("Could not remove the kept copy {}", backup_disk.display()))
        }
    }
}
