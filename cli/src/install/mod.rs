//! `ncd install` and `ncd uninstall`: put ncd on the system as a service that owns the
//! resolver, and take it all back exactly.
//!
//! Install works out a [`plan::Plan`] from the layout under the root, prints it
//! (`--dry-run`) or carries it out, recording every file written, setting changed and
//! command run in a [`manifest::Manifest`]. Uninstall reads the manifest and undoes it:
//! files still as written are removed or replaced by the originals kept aside (bytes,
//! mode, and whether it was a link), edited ones are left alone and named. Commands run
//! only when the root is the live system (`/`); under another root they are listed.

mod fsutil;
pub mod guard;
mod manifest;
mod plan;
mod units;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::client::{Client, ClientError};
use fsutil::Found;
use manifest::{CommandRecord, FileRecord, Manifest, Previous, SettingRecord};
use plan::{Platform, Step};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PlatformArg {
    Linux,
    Macos,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Install into this directory as if it were `/` (commands are then listed, not run).
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// Print what would be done, and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Where the binaries go.
    #[arg(long, default_value = "/usr/local/bin")]
    bin_dir: PathBuf,
    /// Where to take `ncd` and `ncdd` from [default: the directory of this ncd].
    #[arg(long, value_name = "DIR")]
    from: Option<PathBuf>,
    /// The system to install for [default: this one].
    #[arg(long, value_enum)]
    platform: Option<PlatformArg>,
    /// Replace files ncd installed earlier even if they were edited since.
    #[arg(long)]
    force: bool,
    /// macOS network services and their DNS servers, as `NAME=SERVERS;…` ("Empty" for
    /// DHCP), instead of asking networksetup. For tests.
    #[arg(long, hide = true)]
    macos_services: Option<String>,
}

#[derive(Debug, Args)]
pub struct UninstallArgs {
    /// Uninstall from this directory as if it were `/` (commands are then listed, not run).
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// Print what would be done, and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Remove files ncd installed even if they were edited since.
    #[arg(long)]
    force: bool,
}

fn platform(arg: Option<PlatformArg>) -> Platform {
    match arg {
        Some(PlatformArg::Macos) => Platform::Macos,
        Some(PlatformArg::Linux) => Platform::Linux,
        None if cfg!(target_os = "macos") => Platform::Macos,
        None => Platform::Linux,
    }
}

/// Commands run only on the live system, for the system this ncd was built for.
fn live(root: &Path, platform: Platform) -> bool {
    let host = if cfg!(target_os = "macos") {
        Platform::Macos
    } else {
        Platform::Linux
    };
    root == Path::new("/") && platform == host
}

fn show(path: &Path) -> String {
    path.display().to_string()
}

fn size(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MB", bytes as f64 / f64::from(1 << 20))
    } else {
        format!("{bytes} bytes")
    }
}

/// Whether a planned step is already done, given the manifest and what is on disk.
enum State {
    Todo,
    Done,
    /// Ours, but changed since: the recorded record.
    Edited,
}

fn write_state(
    root: &Path,
    manifest: Option<&Manifest>,
    path: &Path,
    contents: &[u8],
    keep: bool,
) -> anyhow::Result<State> {
    let disk = fsutil::under(root, path);
    let found = fsutil::look(&disk).with_context(|| format!("Could not look at {}", disk.display()))?;
    let record = manifest.and_then(|m| m.file(path));
    Ok(match (found, record) {
        // The person's config, or any file of theirs we install only when missing.
        (Found::File { .. }, _) if keep => State::Done,
        // Removed since: written again.
        (Found::Absent, _) => State::Todo,
        (Found::File { bytes, .. }, Some(record)) => {
            let now = fsutil::hash(&bytes);
            if now == fsutil::hash(contents) {
                State::Done
            } else if now == record.hash {
                State::Todo
            } else {
                State::Edited
            }
        }
        (_, Some(_)) => State::Edited,
        _ => State::Todo,
    })
}

pub fn install(args: &InstallArgs) -> anyhow::Result<ExitCode> {
    let platform = platform(args.platform);
    let from = match &args.from {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()
            .context("Could not find where this ncd is")?
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    };
    let macos_services = args.macos_services.as_deref().map(|spec| {
        spec.split(';')
            .filter(|s| !s.trim().is_empty())
            .map(|s| match s.split_once('=') {
                Some((name, servers)) => (name.trim().to_string(), servers.trim().to_string()),
                None => (s.trim().to_string(), "Empty".to_string()),
            })
            .collect()
    });
    let root = &args.root;
    anyhow::ensure!(root.is_dir(), "The root {} is not a directory.", root.display());
    let request = plan::Request {
        root: root.clone(),
        platform,
        bin_dir: args.bin_dir.clone(),
        from,
        macos_services,
    };
    let full = plan::plan(&request)?;
    let old = Manifest::load(root)?;

    // Leave out what is already done; stop at what someone changed since.
    let mut steps = Vec::new();
    let mut edited = Vec::new();
    for step in &full.steps {
        let todo = match step {
            Step::Write {
                path,
                contents,
                keep_if_edited,
                ..
            } => match write_state(root, old.as_ref(), path, contents, *keep_if_edited)? {
                State::Todo => true,
                State::Done => false,
                State::Edited if args.force => true,
                State::Edited => {
                    edited.push(path.clone());
                    false
                }
            },
            Step::Dir { .. } => true,
            Step::Setting { what, .. } => !old.as_ref().is_some_and(|m| m.settings.iter().any(|s| &s.what == what)),
            Step::Run { .. } => true,
        };
        if todo {
            steps.push(step.clone());
        }
    }
    if !edited.is_empty() {
        let list: Vec<String> = edited.iter().map(|p| format!("  {}", show(p))).collect();
        anyhow::bail!(
            "These files were installed by ncd and changed since:\n{}\nncd leaves them alone. Put them back \
             (or move them aside), or run install again with --force to replace them. Nothing was changed.",
            list.join("\n")
        );
    }
    if !steps.iter().any(|s| !matches!(s, Step::Run { .. })) {
        say!("Already installed; nothing to do.");
        return Ok(ExitCode::SUCCESS);
    }

    let live = live(root, platform);
    if root == Path::new("/") && !args.dry_run {
        need_root("install")?;
    }
    print_plan(&full, &steps, root, live, args.dry_run)?;
    if args.dry_run {
        say!("\nThis was a dry run: nothing was changed.");
        return Ok(ExitCode::SUCCESS);
    }
    let mut manifest = old.unwrap_or_else(|| Manifest {
        format: manifest::FORMAT,
        platform: match platform {
            Platform::Linux => "linux".into(),
            Platform::Macos => "macos".into(),
        },
        resolver: full.flavour.name().into(),
        dirs_created: Vec::new(),
        files: Vec::new(),
        settings: Vec::new(),
        commands: Vec::new(),
        uninstall_before: Vec::new(),
        uninstall_after: Vec::new(),
    });
    manifest.uninstall_before = full.uninstall_before.clone();
    manifest.uninstall_after = full.uninstall_after.clone();
    manifest.commands.clear();
    let failed = apply(root, &steps, &mut manifest, live)?;
    say!(
        "\nDone. What was changed is recorded in {}.",
        show(&Manifest::path(root))
    );
    if !live {
        say!("The commands above were not run, because --root is not /.");
    }
    say!("`ncd uninstall` puts everything back.");
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn print_plan(full: &plan::Plan, steps: &[Step], root: &Path, live: bool, dry_run: bool) -> anyhow::Result<()> {
    let into = if root == Path::new("/") {
        String::new()
    } else {
        format!(" into {}", root.display())
    };
    say!(
        "Installing ncd{into}{} ({}):",
        if dry_run { " would do this" } else { "" },
        full.flavour.words()
    );
    for (n, step) in steps.iter().enumerate() {
        let n = n + 1;
        match step {
            Step::Dir { path } => say!("{n:3}. Create the directory {}", show(path)),
            Step::Write {
                path,
                contents,
                mode,
                what,
                ..
            } => {
                let disk = fsutil::under(root, path);
                let replacing = match fsutil::look(&disk)? {
                    Found::Absent => String::new(),
                    Found::Symlink { target } => {
                        format!(", replacing the link to {} (kept to put back)", target.display())
                    }
                    _ => ", replacing what is there (a copy is kept to put back)".into(),
                };
                say!(
                    "{n:3}. Write {} — {what} ({}, mode {mode:04o}){replacing}",
                    show(path),
                    size(contents.len())
                );
            }
            Step::Setting {
                what, previous, new, ..
            } => say!("{n:3}. Set the {what} to {new} (now: {previous}; saved to put back)"),
            Step::Run { argv, why } => say!(
                "{n:3}. Run `{}` to {why}{}",
                argv.join(" "),
                if live {
                    ""
                } else {
                    " (listed only: not the live system)"
                }
            ),
        }
    }
    Ok(())
}

/// Creates the missing directories down to `dir`, recording each one.
fn ensure_dir(root: &Path, dir: &Path, manifest: &mut Manifest) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    for d in dir.ancestors() {
        if d.parent().is_none() || fsutil::under(root, d).is_dir() {
            break;
        }
        missing.push(d.to_path_buf());
    }
    for d in missing.into_iter().rev() {
        let disk = fsutil::under(root, &d);
        std::fs::create_dir(&disk).with_context(|| format!("Could not create the directory {}", disk.display()))?;
        use std::os::unix::fs::PermissionsExt;
        // Root's own record is for root's eyes only.
        let mode = if d.starts_with(Path::new(manifest::MANIFEST).parent().unwrap_or(Path::new("/"))) {
            0o700
        } else {
            0o755
        };
        std::fs::set_permissions(&disk, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("Could not set the mode of {}", disk.display()))?;
        manifest.dirs_created.push(d);
    }
    Ok(())
}

fn backup_path(path: &Path) -> PathBuf {
    Path::new(manifest::BACKUP_DIR).join(path.strip_prefix("/").unwrap_or(path))
}

/// Carries out `steps`, saving the manifest after each so a crash leaves a true record.
/// Returns whether a command failed.
fn apply(root: &Path, steps: &[Step], manifest: &mut Manifest, live: bool) -> anyhow::Result<bool> {
    let mut failed = false;
    ensure_dir(
        root,
        Path::new(manifest::MANIFEST).parent().unwrap_or(Path::new("/")),
        manifest,
    )?;
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
                let disk = fsutil::under(root, path);
                ensure_dir(root, path.parent().unwrap_or(Path::new("/")), manifest)?;
                let previous = match manifest.file(path) {
                    Some(record) => record.previous.clone(),
                    None => match fsutil::look(&disk).with_context(|| format!("Could not read {}", disk.display()))? {
                        Found::Absent => Previous::Absent,
                        Found::Symlink { target } => Previous::Symlink { target },
                        Found::File { bytes, mode } => {
                            let backup = backup_path(path);
                            ensure_dir(root, backup.parent().unwrap_or(Path::new("/")), manifest)?;
                            let backup_disk = fsutil::under(root, &backup);
                            fsutil::write_atomically(&backup_disk, &bytes, mode).with_context(|| {
                                format!(
                                    "Could not keep a copy of {} in {}",
                                    disk.display(),
                                    backup_disk.display()
                                )
                            })?;
                            Previous::File {
                                backup,
                                mode,
                                hash: fsutil::hash(&bytes),
                            }
                        }
                        Found::Other => anyhow::bail!(
                            "{} is a directory or something else that is not a file; ncd will not replace it.",
                            disk.display()
                        ),
                    },
                };
                fsutil::write_atomically(&disk, contents, *mode)
                    .with_context(|| format!("Could not write {}", disk.display()))?;
                let record = FileRecord {
                    path: path.clone(),
                    what: what.clone(),
                    hash: fsutil::hash(contents),
                    mode: *mode,
                    previous,
                    keep_if_edited: *keep_if_edited,
                };
                match manifest.files.iter_mut().find(|f| f.path == *path) {
                    Some(old) => *old = record,
                    None => manifest.files.push(record),
                }
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
                failed |= !run(apply, live, &mut manifest.commands)?;
            }
            Step::Run { argv, .. } => failed |= !run(argv, live, &mut manifest.commands)?,
        }
        manifest.save(root)?;
    }
    Ok(failed)
}

/// Runs a command when `live` (else records it as not run). False when it failed.
fn run(argv: &[String], live: bool, record: &mut Vec<CommandRecord>) -> anyhow::Result<bool> {
    if !live {
        record.push(CommandRecord {
            argv: argv.to_vec(),
            ran: false,
            status: None,
        });
        return Ok(true);
    }
    let status = std::process::Command::new(&argv[0]).args(&argv[1..]).status();
    let (ok, code) = match &status {
        Ok(s) => (s.success(), s.code()),
        Err(_) => (false, None),
    };
    record.push(CommandRecord {
        argv: argv.to_vec(),
        ran: status.is_ok(),
        status: code,
    });
    if !ok {
        let why = match status {
            Ok(s) => format!("it ended with {s}"),
            Err(e) => format!("it could not be started: {e}"),
        };
        let _ = writeln!(
            std::io::stderr(),
            "ncd: `{}` did not succeed ({why}); carrying on with the rest.",
            argv.join(" ")
        );
    }
    Ok(ok)
}

/// Changing the live system needs root; say so before touching anything.
fn need_root(verb: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        rustix::process::geteuid().is_root(),
        "`ncd {verb}` changes system files and services, so it needs root: run `sudo ncd {verb}`. \
         (`ncd {verb} --dry-run` shows what it would do, without root.) Nothing was changed."
    );
    Ok(())
}

/// Refuses while a period runs: asks the daemon, else reads the period state files.
pub(crate) fn check_no_period(root: &Path, socket: Option<&Path>, state_dir: &Path) -> anyhow::Result<()> {
    const KIND: &str = "Uninstall is not possible while a period is running: that is the point of it. \
                        When the period ends (or after `ncd unlock --scope end`), uninstall will work.";
    // An explicit --socket is taken as it is; else the config's, inside the root.
    let socket = match socket {
        Some(socket) => socket.to_path_buf(),
        None => fsutil::under(
            root,
            &crate::client::resolve_socket(None, &fsutil::under(root, Path::new(plan::CONFIG_PATH))),
        ),
    };
    match Client::new(socket).status() {
        Ok(status) if status.period.active => anyhow::bail!("{KIND}"),
        Ok(_) => return Ok(()),
        Err(ClientError::NotRunning { .. }) => {}
        // Reached but unclear: the state files decide.
        Err(_) => {}
    }
    let dir = fsutil::under(root, state_dir);
    match ncd_period::store::Store::new(&ncd_state::StateDir::new(&dir)).load() {
        ncd_period::store::Loaded::Fresh => Ok(()),
        ncd_period::store::Loaded::Found { state, .. } if state.commitment.is_none() => Ok(()),
        ncd_period::store::Loaded::Found { .. } => anyhow::bail!("{KIND}"),
        ncd_period::store::Loaded::Unreadable { damage } => anyhow::bail!(
            "Uninstall is not possible: the period state in {} cannot be read ({}), so ncd cannot tell \
             whether a period is running, and assumes one is. Start the daemon (`sudo systemctl start ncd`) \
             and look at `ncd status`.",
            dir.display(),
            damage.join("; ")
        ),
    }
}

pub fn uninstall(args: &UninstallArgs, socket: Option<&Path>, state_dir: &Path) -> anyhow::Result<ExitCode> {
    let root = &args.root;
    let Some(mut manifest) = Manifest::load(root)? else {
        say!(
            "ncd is not installed here (there is no {}); nothing to do.",
            show(&Manifest::path(root))
        );
        return Ok(ExitCode::SUCCESS);
    };
    check_no_period(root, socket, state_dir)?;
    if root == Path::new("/") && !args.dry_run {
        need_root("uninstall")?;
    }
    let platform = if manifest.platform == "macos" {
        Platform::Macos
    } else {
        Platform::Linux
    };
    let live = live(root, platform);

    // Sort the files: still as written, edited since, or already gone.
    let mut restore = Vec::new();
    let mut kept = Vec::new();
    let mut edited = Vec::new();
    for record in &manifest.files {
        let disk = fsutil::under(root, &record.path);
        let found = fsutil::look(&disk).with_context(|| format!("Could not look at {}", disk.display()))?;
        let intact = matches!(&found, Found::File { bytes, .. } if fsutil::hash(bytes) == record.hash);
        if intact || args.force && !record.keep_if_edited {
            restore.push(record.clone());
        } else if found == Found::Absent && record.previous == Previous::Absent {
            // Gone already, and nothing to put back.
        } else if record.keep_if_edited {
            kept.push(record.path.clone());
        } else {
            edited.push(record.path.clone());
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

    let mut n = 0;
    let mut line = |text: String| -> anyhow::Result<()> {
        n += 1;
        say!("{n:3}. {text}");
        Ok(())
    };
    say!(
        "Uninstalling ncd{}{}:",
        if root == Path::new("/") {
            String::new()
        } else {
            format!(" from {}", root.display())
        },
        if args.dry_run { " would do this" } else { "" },
    );
    let listed = if live {
        ""
    } else {
        " (listed only: not the live system)"
    };
    for argv in &manifest.uninstall_before {
        line(format!("Run `{}`{listed}", argv.join(" ")))?;
    }
    for setting in &manifest.settings {
        line(format!(
            "Set the {} back to {} with `{}`{listed}",
            setting.what,
            setting.previous,
            setting.restore.join(" ")
        ))?;
    }
    for record in restore.iter().rev() {
        line(match &record.previous {
            Previous::Absent => format!("Remove {} ({})", show(&record.path), record.what),
            Previous::File { backup, mode, .. } => format!(
                "Put back the original {} (mode {mode:04o}) from {}",
                show(&record.path),
                show(backup)
            ),
            Previous::Symlink { target } => {
                format!("Put back {} as a link to {}", show(&record.path), target.display())
            }
        })?;
    }
    for path in &kept {
        line(format!("Keep {}: it is yours now (you edited it)", show(path)))?;
    }
    for argv in &manifest.uninstall_after {
        line(format!("Run `{}`{listed}", argv.join(" ")))?;
    }
    line(format!(
        "Remove the install record {} and the directories ncd created, when empty",
        show(Path::new(manifest::MANIFEST))
    ))?;
    if args.dry_run {
        say!("\nThis was a dry run: nothing was changed.");
        return Ok(ExitCode::SUCCESS);
    }

    let mut failed = false;
    let mut log = Vec::new();
    for argv in manifest.uninstall_before.clone() {
        failed |= !run(&argv, live, &mut log)?;
    }
    for setting in manifest.settings.clone() {
        failed |= !run(&setting.restore, live, &mut log)?;
    }
    for record in restore.iter().rev() {
        let disk = fsutil::under(root, &record.path);
        match &record.previous {
            Previous::Absent => {
                fsutil::remove(&disk).with_context(|| format!("Could not remove {}", disk.display()))?
            }
            Previous::Symlink { target } => fsutil::symlink_atomically(&disk, target)
                .with_context(|| format!("Could not put back the link {}", disk.display()))?,
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
                    .with_context(|| format!("Could not remove the kept copy {}", backup_disk.display()))?;
            }
        }
        // One record at a time, so an interrupted uninstall can be run again.
        manifest.files.retain(|f| f.path != record.path);
        manifest.save(root)?;
    }
    for argv in manifest.uninstall_after.clone() {
        failed |= !run(&argv, live, &mut log)?;
    }
    let manifest_disk = Manifest::path(root);
    fsutil::remove(&manifest_disk).with_context(|| format!("Could not remove {}", manifest_disk.display()))?;
    for dir in manifest.dirs_created.iter().rev() {
        // Only empty ones: anything else in them is not ours to delete.
        let _ = std::fs::remove_dir(fsutil::under(root, dir));
    }
    say!("\nDone: ncd is uninstalled.");
    if !live {
        say!("The commands above were not run, because --root is not /.");
    }
    for path in &kept {
        say!("Your {} was kept.", show(path));
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
