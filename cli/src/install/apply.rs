//! Carrying out an install [`Plan`](super::plan::Plan)'s steps: directories, writes
//! (keeping what they replace), settings and commands, each recorded in the manifest,
//! which is saved after every step so a crash leaves a true record.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::fsutil::{self, Found};
use super::manifest::{self, FileRecord, Manifest, Previous, SettingRecord};
use super::plan::Step;
use super::{Runner, run_with};

/// Creates the missing directories down to `dir`, recording each one.
fn ensure_dir(root: &Path, dir: &Path, manifest: &mut Manifest) -> anyhow::Result<()> {
    // Root's own record is for root's eyes only.
    let private = parent(Path::new(manifest::MANIFEST));
    manifest.dirs_created.extend(fsutil::make_dirs(root, dir, private)?);
    Ok(())
}

fn backup_path(path: &Path) -> PathBuf {
    Path::new(manifest::BACKUP_DIR).join(path.strip_prefix("/").unwrap_or(path))
}

/// Carries out `steps`, saving the manifest after each so a crash leaves a true record.
/// Returns whether a command failed.
pub(super) fn apply(root: &Path, steps: &[Step], manifest: &mut Manifest, runner: &Runner) -> anyhow::Result<bool> {
    let mut failed = false;
    ensure_dir(root, parent(Path::new(manifest::MANIFEST)), manifest)?;
    manifest.save(root)?;
    for step in steps {
        match step {
            Step::Dir { path } => ensure_dir(root, path, manifest)?,
            Step::Write {
                path,
                contents,
                mode,
                what,
                keep_if_edited,
            } => {
                let record = FileRecord {
                    path: path.clone(),
                    what: what.clone(),
                    hash: fsutil::hash(contents),
                    mode: *mode,
                    previous: Previous::Absent,
                    keep_if_edited: *keep_if_edited,
                };
                write(root, record, contents, manifest)?;
            }
            Step::Setting {
                what,
                previous,
                new,
                apply,
                restore,
            } => {
                manifest.settings.push(SettingRecord {
                    what: what.clone(),
                    previous: previous.clone(),
                    new: new.clone(),
                    restore: restore.clone(),
                });
                manifest.save(root)?;
                failed |= !run_with(apply, runner, &mut manifest.commands)?;
            }
            Step::Run { argv, .. } => failed |= !run_with(argv, runner, &mut manifest.commands)?,
            Step::Unshadow { path } => {
                if let Some(record) = manifest.file(path).cloned() {
                    super::reverse::put_back(root, &record)?;
                    manifest.files.retain(|f| f.path != *path);
                }
            }
        }
        manifest.save(root)?;
    }
    Ok(failed)
}

fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("/"))
}

/// Writes `contents` where `record` says, after keeping what was there (once: a
/// file written before keeps its first original), and records it.
fn write(root: &Path, mut record: FileRecord, contents: &[u8], manifest: &mut Manifest) -> anyhow::Result<()> {
    let disk = fsutil::under(root, &record.path);
    ensure_dir(root, parent(&record.path), manifest)?;
    record.previous = match manifest.file(&record.path) {
        Some(old) => old.previous.clone(),
        None => keep_original(root, &record.path, manifest)?,
    };
    fsutil::write_atomically(&disk, contents, record.mode)
        .with_context(|| format!("Could not write {}", disk.display()))?;
    match manifest.files.iter_mut().find(|f| f.path == record.path) {
        Some(old) => *old = record,
        None => manifest.files.push(record),
    }
    Ok(())
}

/// What is at `path` now, with a regular file copied aside to put back later.
fn keep_original(root: &Path, path: &Path, manifest: &mut Manifest) -> anyhow::Result<Previous> {
    keep_aside(root, path, &backup_path(path), |dir| ensure_dir(root, dir, manifest))
}

/// What is at `path` (inside `root`) now; a regular file is copied to `backup`
/// first (its folder made by `make_dir`, which records it), so it can be put
/// back byte for byte. Shared by `ncd install` and `ncd ca install`.
pub(super) fn keep_aside(
    root: &Path,
    path: &Path,
    backup: &Path,
    make_dir: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<Previous> {
    let disk = fsutil::under(root, path);
    Ok(
        match fsutil::look(&disk).with_context(|| format!("Could not read {}", disk.display()))? {
            Found::Absent => Previous::Absent,
            Found::Symlink { target } => Previous::Symlink { target },
            Found::File { bytes, mode } => {
                make_dir(parent(backup))?;
                let backup_disk = fsutil::under(root, backup);
                fsutil::write_atomically(&backup_disk, &bytes, mode).with_context(|| {
                    format!(
                        "Could not keep a copy of {} in {}",
                        disk.display(),
                        backup_disk.display()
                    )
                })?;
                Previous::File {
                    backup: backup.to_path_buf(),
                    mode,
                    hash: fsutil::hash(&bytes),
                }
            }
            Found::Other => anyhow::bail!(
                "{} is a directory or something else that is not a file; ncd will not replace it.",
                disk.display()
            ),
        },
    )
}
