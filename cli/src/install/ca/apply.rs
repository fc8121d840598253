//! Carrying out a CA plan, recording each step in the [`CaManifest`] (saved after
//! every step), and its reverse: the record undone as a list of [`CaUndo`] steps,
//! printed and then carried out by the same code.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::super::fsutil::{self, Found};
use super::super::manifest::{CommandRecord, FileRecord, Previous};
use super::super::{Describe, Where, reverse, run, show};
use super::plan::{self, CaStep, Home, NICKNAME, sql, strings};
use super::policy;
use super::record::{CA_BACKUP_DIR, CA_MANIFEST, CaFile, CaManifest, NssRecord};

fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("/"))
}

/// Creates the missing directories down to `dir` (root-relative), recording each.
fn ensure_dir(root: &Path, dir: &Path, manifest: &mut CaManifest) -> anyhow::Result<()> {
    // Root's own records are for root's eyes only.
    let private = parent(Path::new(CA_MANIFEST));
    manifest.dirs_created.extend(fsutil::make_dirs(root, dir, private)?);
    Ok(())
}

/// What is at `path` now, with a regular file copied aside to put back later.
fn keep_original(root: &Path, path: &Path, manifest: &mut CaManifest) -> anyhow::Result<Previous> {
    let backup = Path::new(CA_BACKUP_DIR).join(path.strip_prefix("/").unwrap_or(path));
    super::super::apply::keep_aside(root, path, &backup, |dir| ensure_dir(root, dir, manifest))
}

/// Runs a command quietly; true when it succeeded.
fn quietly(argv: &[String]) -> bool {
    argv.split_first().is_some_and(|(program, args)| {
        std::process::Command::new(program)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// The certificate under ncd's nickname in an NSS database, DER, if there is one.
pub(super) fn nss_cert(db: &Path) -> Option<Vec<u8>> {
    let out = std::process::Command::new("certutil")
        .args(["-d", &sql(db), "-L", "-n", NICKNAME, "-r"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    (out.status.success() && !out.stdout.is_empty()).then_some(out.stdout)
}

/// Carries out `steps`, saving the record after each. Returns whether a command failed.
pub(super) fn apply(
    root: &Path,
    steps: &[CaStep],
    manifest: &mut CaManifest,
    at: &Where,
    home: &Home,
) -> anyhow::Result<bool> {
    let mut failed = false;
    ensure_dir(root, parent(Path::new(CA_MANIFEST)), manifest)?;
    manifest.commands.clear();
    manifest.save(root)?;
    let copy = fsutil::under(root, Path::new(plan::COPY));
    for step in steps {
        match step {
            CaStep::Write {
                path,
                contents,
                mode,
                what,
                policy_entry,
                ..
            } => {
                let disk = fsutil::under(root, path);
                ensure_dir(root, parent(path), manifest)?;
                let previous = match manifest.file(path) {
                    Some(old) => old.file.previous.clone(),
                    None => keep_original(root, path, manifest)?,
                };
                fsutil::write_atomically(&disk, contents, *mode)
                    .with_context(|| format!("Could not write {}", disk.display()))?;
                let record = CaFile {
                    file: FileRecord {
                        path: path.clone(),
                        what: what.clone(),
                        hash: fsutil::hash(contents),
                        mode: *mode,
                        previous,
                        keep_if_edited: false,
                    },
                    policy_entry: policy_entry.clone(),
                };
                match manifest.files.iter_mut().find(|f| f.file.path == *path) {
                    Some(old) => *old = record,
                    None => manifest.files.push(record),
                }
            }
            CaStep::Nss { db, create, runs, .. } => {
                let add = home.command(vec![
                    "certutil".into(),
                    "-d".into(),
                    sql(db),
                    "-A".into(),
                    "-t".into(),
                    "C,,".into(),
                    "-n".into(),
                    NICKNAME.into(),
                    "-i".into(),
                    copy.display().to_string(),
                ]);
                if !runs {
                    run(&add, false, &mut manifest.commands)?;
                    continue;
                }
                let created_before = manifest.nss.iter().any(|n| n.db == *db && n.created);
                if *create {
                    let mkdir = home.command(vec![
                        "mkdir".into(),
                        "-p".into(),
                        "-m".into(),
                        "0700".into(),
                        db.display().to_string(),
                    ]);
                    let new_db = home.command(strings(&["certutil", "-d", &sql(db), "-N", "--empty-password"]));
                    if !(run(&mkdir, true, &mut manifest.commands)? && run(&new_db, true, &mut manifest.commands)?) {
                        failed = true;
                        continue;
                    }
                }
                // An older ncd CA holds the nickname (NSS ties a nickname to one
                // subject): it goes first. Bounded, in case deleting does not work.
                let list = home.command(strings(&["certutil", "-d", &sql(db), "-L", "-n", NICKNAME]));
                let delete = home.command(strings(&["certutil", "-d", &sql(db), "-D", "-n", NICKNAME]));
                for _ in 0..4 {
                    if !quietly(&list) || !run(&delete, true, &mut manifest.commands)? {
                        break;
                    }
                }
                if run(&add, true, &mut manifest.commands)? {
                    manifest.nss.retain(|n| n.db != *db);
                    manifest.nss.push(NssRecord {
                        db: db.clone(),
                        nickname: NICKNAME.into(),
                        created: *create || created_before,
                        user: home.user.clone(),
                        fingerprint: manifest.fingerprint.clone(),
                    });
                } else {
                    failed = true;
                }
            }
            CaStep::Run { argv, refresh, .. } => {
                if *refresh && !manifest.refresh.contains(argv) {
                    manifest.refresh.push(argv.clone());
                }
                failed |= !run(argv, at.live, &mut manifest.commands)?;
            }
            CaStep::Keychain { argv, keychain } => {
                manifest.keychain = Some(keychain.clone());
                manifest.save(root)?;
                failed |= !run(argv, at.live, &mut manifest.commands)?;
            }
        }
        manifest.save(root)?;
    }
    Ok(failed)
}

/// One step of `ncd ca uninstall`.
#[derive(Debug, Clone)]
pub(super) enum CaUndo {
    /// A command on the system (the keychain, the store's refresh): only when live.
    Run { argv: Vec<String>, why: String },
    /// Take ncd's CA out of an NSS database (when certutil is there to run).
    Nss { record: NssRecord, runs: bool },
    /// Remove a file `ncd ca install` wrote, or put back what it replaced.
    Restore(CaFile),
    /// A Firefox policy edited since: only ncd's entry is taken out.
    Unmerge {
        path: PathBuf,
        entry: String,
        backup: Option<PathBuf>,
    },
    /// Remove the record, then the directories install created, when empty.
    Forget { dirs: Vec<PathBuf> },
}

impl Describe for CaUndo {
    fn describe(&self, at: &Where) -> anyhow::Result<String> {
        let listed = at.listed();
        Ok(match self {
            CaUndo::Run { argv, why } => format!("Run `{}` to {why}{listed}", argv.join(" ")),
            CaUndo::Nss { record, runs } => format!(
                "NSS database {}: remove “{}” with `certutil -d {} -D -n \"{}\"`{}",
                record.db.display(),
                record.nickname,
                sql(&record.db),
                record.nickname,
                if *runs {
                    ""
                } else {
                    " (listed only: certutil is not installed)"
                }
            ),
            CaUndo::Restore(record) => match &record.file.previous {
                Previous::Absent => format!("Remove {} ({})", show(&record.file.path), record.file.what),
                Previous::File { backup, mode, .. } => format!(
                    "Put back the original {} (mode {mode:04o}) from {}",
                    show(&record.file.path),
                    show(backup)
                ),
                Previous::Symlink { target } => {
                    format!("Put back {} as a link to {}", show(&record.file.path), target.display())
                }
            },
            CaUndo::Unmerge { path, entry, .. } => format!(
                "Take {entry} out of the Firefox policy {} (edited since: the rest stays as it is now)",
                show(path)
            ),
            CaUndo::Forget { .. } => format!(
                "Remove the CA install record {} and the directories ncd created, when empty",
                show(Path::new(CA_MANIFEST))
            ),
        })
    }
}

/// The record undone, last things first: the keychain, the NSS databases, the files
/// (policies, anchor, copy) in reverse, the store's refresh, the record. Refuses,
/// changing nothing, when a file ncd wrote was edited since (unless `force`);
/// a Firefox policy edited since only loses ncd's entry.
pub(super) fn reverse(root: &Path, manifest: &CaManifest, force: bool, certutil: bool) -> anyhow::Result<Vec<CaUndo>> {
    let mut steps = Vec::new();
    if let Some(keychain) = &manifest.keychain {
        let keychain = keychain.display().to_string();
        steps.push(CaUndo::Run {
            argv: strings(&["security", "remove-trusted-cert", "-d", plan::COPY]),
            why: "stop trusting the CA".into(),
        });
        steps.push(CaUndo::Run {
            argv: strings(&["security", "delete-certificate", "-Z", &manifest.sha1, &keychain]),
            why: "remove it from the System keychain".into(),
        });
    }
    steps.extend(manifest.nss.iter().map(|record| CaUndo::Nss {
        record: record.clone(),
        runs: certutil,
    }));
    let mut edited = Vec::new();
    for record in manifest.files.iter().rev() {
        let disk = fsutil::under(root, &record.file.path);
        let found = fsutil::look(&disk).with_context(|| format!("Could not look at {}", disk.display()))?;
        let intact = matches!(&found, Found::File { bytes, .. } if fsutil::hash(bytes) == record.file.hash);
        let backup = match &record.file.previous {
            Previous::File { backup, .. } => Some(backup.clone()),
            _ => None,
        };
        if intact || force {
            steps.push(CaUndo::Restore(record.clone()));
        } else if found == Found::Absent && record.file.previous == Previous::Absent {
            // Gone already, and nothing to put back.
        } else if let (Some(entry), Found::File { .. }) = (&record.policy_entry, &found) {
            steps.push(CaUndo::Unmerge {
                path: record.file.path.clone(),
                entry: entry.clone(),
                backup,
            });
        } else {
            edited.push(disk);
        }
    }
    if !edited.is_empty() {
        let list: Vec<String> = edited.iter().map(|p| format!("  {}", p.display())).collect();
        anyhow::bail!(
            "These files were written by `ncd ca install` and changed since, so ncd will not remove them:\n{}\n\
             Put back what ncd wrote, or run `ncd ca uninstall --force` to remove them anyway. Nothing was changed.",
            list.join("\n")
        );
    }
    steps.extend(manifest.refresh.iter().map(|argv| CaUndo::Run {
        argv: argv.clone(),
        why: "rebuild the system's list of trusted CAs without ncd's".into(),
    }));
    steps.push(CaUndo::Forget {
        dirs: manifest.dirs_created.clone(),
    });
    Ok(steps)
}

/// Carries out `steps`, dropping each part from the record (saved) once it is undone,
/// so an interrupted uninstall can be run again. Returns whether a command failed.
pub(super) fn undo(root: &Path, steps: &[CaUndo], manifest: &mut CaManifest, live: bool) -> anyhow::Result<bool> {
    let mut failed = false;
    let mut log: Vec<CommandRecord> = Vec::new();
    for step in steps {
        match step {
            CaUndo::Run { argv, .. } => failed |= !run(argv, live, &mut log)?,
            CaUndo::Nss { record, runs } => {
                let delete = plan::as_user(
                    record.user.as_deref(),
                    strings(&["certutil", "-d", &sql(&record.db), "-D", "-n", &record.nickname]),
                );
                // Gone already (the profile was deleted) counts as done.
                let there = record.db.join("cert9.db").is_file();
                if !*runs {
                    // Listed only, and kept in the record.
                    run(&delete, false, &mut log)?;
                    continue;
                }
                if there && !run(&delete, true, &mut log)? {
                    failed = true;
                    continue;
                }
                manifest.nss.retain(|n| n.db != record.db);
                manifest.save(root)?;
            }
            CaUndo::Restore(record) => {
                reverse::put_back(root, &record.file)?;
                manifest.files.retain(|f| f.file.path != record.file.path);
                manifest.save(root)?;
            }
            CaUndo::Unmerge { path, entry, backup } => {
                let disk = fsutil::under(root, path);
                if let Found::File { bytes, mode } = fsutil::look(&disk)? {
                    let what = disk.display().to_string();
                    let left = policy::without(&bytes, entry, &what)?;
                    fsutil::write_atomically(&disk, &left, mode)
                        .with_context(|| format!("Could not write {}", disk.display()))?;
                }
                if let Some(backup) = backup {
                    let backup_disk = fsutil::under(root, backup);
                    fsutil::remove(&backup_disk)
                        .with_context(|| format!("Could not remove the kept copy {}", backup_disk.display()))?;
                }
                manifest.files.retain(|f| f.file.path != *path);
                manifest.save(root)?;
            }
            // NSS databases the CA could not be taken out of (no certutil, or it
            // failed) keep the record, so uninstall can be run again for them.
            CaUndo::Forget { .. } if !manifest.nss.is_empty() => manifest.save(root)?,
            CaUndo::Forget { dirs } => {
                let disk = CaManifest::path(root);
                fsutil::remove(&disk).with_context(|| format!("Could not remove {}", disk.display()))?;
                // The backup dir's own subdirectories, emptied above, then the created ones.
                remove_empty_tree(&fsutil::under(root, Path::new(CA_BACKUP_DIR)));
                for dir in dirs.iter().rev() {
                    let _ = std::fs::remove_dir(fsutil::under(root, dir));
                }
            }
        }
    }
    Ok(failed)
}

/// Removes `dir` and the directories below it that are (or become) empty.
fn remove_empty_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.filter_map(Result::ok) {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_empty_tree(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}
