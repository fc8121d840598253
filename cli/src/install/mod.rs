//! `ncd install` and `ncd uninstall`: put ncd on the system as a service that owns the
//! resolver, and take it all back exactly. This module owns the two verbs' flow, the
//! printing of a plan (the same code both ways) and running commands.
//!
//! Install works out a [`plan::Plan`] from the layout under the root, prints it
//! (`--dry-run`) or carries it out ([`apply`]), recording every file written, setting
//! changed and command run in a [`manifest::Manifest`]. Uninstall works out the reverse
//! plan from the manifest ([`reverse`]), prints it the same way, and carries out exactly
//! what it printed: files still as written are removed or replaced by the originals kept
//! aside (bytes, mode, and whether it was a link), edited ones are left alone and named.
//! Commands run only when the root is the live system (`/`); under another root they are
//! listed, or run through `--run-with PROGRAM` (the tests' stand-in for systemctl and
//! resolvectl: [`Runner`]). Where the Debian package is installed, install only takes
//! the resolver over and uninstall leaves the package's units alone.

mod apply;
pub(crate) mod ca;
mod effective;
mod flavour;
mod fsutil;
pub(crate) mod guard;
mod manifest;
mod period;
mod plan;
mod reverse;
mod units;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};

use fsutil::Found;
use manifest::{CommandRecord, Manifest};
use period::{PeriodRunning, period_running};
use plan::{Platform, Step};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum PlatformArg {
    Linux,
    Macos,
}

#[derive(Debug, Args)]
pub(crate) struct InstallArgs {
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
    #[command(flatten)]
    commands: CommandsArg,
}

/// Tests replace the system's commands (systemctl, resolvectl, …) with one program.
#[derive(Debug, Clone, Args)]
pub(crate) struct CommandsArg {
    /// Run every command as `PROGRAM COMMAND ARGS…`, even under --root. For tests.
    #[arg(long, hide = true, value_name = "PROGRAM")]
    run_with: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct UninstallArgs {
    /// Uninstall from this directory as if it were `/` (commands are then listed, not run).
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// Print what would be done, and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Remove files ncd installed even if they were edited since, and carry on
    /// when stopping the service fails.
    #[arg(long)]
    force: bool,
    /// Only say whether ncd may be removed now (no period running, by the period's
    /// state files), and change nothing: exit 0 if so, else 1 with the reason. The
    /// Debian package's `prerm` asks this.
    #[arg(long, conflicts_with_all = ["dry_run", "force"])]
    check: bool,
    #[command(flatten)]
    commands: CommandsArg,
}

fn platform(arg: Option<PlatformArg>) -> Platform {
    match arg {
        Some(PlatformArg::Macos) => Platform::Macos,
        Some(PlatformArg::Linux) => Platform::Linux,
        None if cfg!(target_os = "macos") => Platform::Macos,
        None => Platform::Linux,
    }
}

/// How a plan's commands are carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Runner {
    /// Listed, not run: the root is not the live system.
    List,
    /// Run as they are.
    Live,
    /// Each run as `PROGRAM ARGV…` (`--run-with`: tests' stand-in for the system's tools).
    Via(PathBuf),
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

impl Runner {
    /// Commands run only on the live system (see [`live`]), unless `--run-with`
    /// names a stand-in.
    fn new(root: &Path, platform: Platform, commands: &CommandsArg) -> Runner {
        match &commands.run_with {
            Some(program) => Runner::Via(program.clone()),
            None if live(root, platform) => Runner::Live,
            None => Runner::List,
        }
    }

    fn runs(&self) -> bool {
        *self != Runner::List
    }

    /// The process for `argv`, or None when commands are only listed.
    fn command(&self, argv: &[String]) -> Option<std::process::Command> {
        match self {
            Runner::List => None,
            Runner::Live => {
                let (program, args) = argv.split_first()?;
                let mut command = std::process::Command::new(program);
                command.args(args);
                Some(command)
            }
            Runner::Via(program) => {
                let mut command = std::process::Command::new(program);
                command.args(argv);
                Some(command)
            }
        }
    }

    /// Whether `argv` ran and succeeded (false when listed only), quietly.
    fn succeeds(&self, argv: &[String]) -> bool {
        self.command(argv).is_some_and(|mut command| {
            command
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
    }

    /// Runs `argv` and returns its output (None when listed only or it could not start).
    fn output(&self, argv: &[&str]) -> Option<std::process::Output> {
        let argv: Vec<String> = argv.iter().map(|w| (*w).to_string()).collect();
        self.command(&argv)?.stderr(std::process::Stdio::null()).output().ok()
    }
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

pub(crate) fn install(args: &InstallArgs) -> anyhow::Result<ExitCode> {
    let platform = platform(args.platform);
    let root = &args.root;
    anyhow::ensure!(root.is_dir(), "The root {} is not a directory.", root.display());
    let request = plan::Request {
        root: root.clone(),
        platform,
        bin_dir: args.bin_dir.clone(),
        from: from_dir(args.from.as_deref())?,
        macos_services: args.macos_services.as_deref().map(macos_services),
    };
    let full = plan::plan(&request)?;
    let old = Manifest::load(root)?;
    let mut steps = todo(root, &full, old.as_ref(), args.force)?;
    if full.packaged {
        steps.splice(0..0, unshadow(root, old.as_ref())?);
    }
    if !steps.iter().any(|s| !matches!(s, Step::Run { .. })) {
        say!("Already installed; nothing to do.");
        return Ok(ExitCode::SUCCESS);
    }

    let runner = Runner::new(root, platform, &args.commands);
    let at = Where {
        root,
        live: runner.runs(),
    };
    if root == Path::new("/") && !args.dry_run {
        need_root("install")?;
    }
    let into = if root == Path::new("/") {
        String::new()
    } else {
        format!(" into {}", root.display())
    };
    let heading = format!("Installing ncd{into}{} ({})", would(args.dry_run), full.flavour.words());
    print_plan(&heading, &steps, &at)?;
    if args.dry_run {
        say!("\nThis was a dry run: nothing was changed.");
        return Ok(ExitCode::SUCCESS);
    }
    let mut manifest = old.unwrap_or_else(|| Manifest::new(platform, full.flavour));
    manifest.uninstall_before = full.uninstall_before.clone();
    manifest.uninstall_after = full.uninstall_after.clone();
    manifest.packaged = full.packaged;
    manifest.commands.clear();
    let failed = apply::apply(root, &steps, &mut manifest, &runner)?;
    say!(
        "\nDone. What was changed is recorded in {}.",
        show(&Manifest::path(root))
    );
    if !at.live {
        say!("The commands above were not run, because --root is not /.");
    }
    say!("`ncd uninstall` puts everything back.");
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// Over the package: the binaries and units an earlier `ncd install` wrote, still
/// as written, removed (they would hide the package's, so its upgrades would never
/// serve), then systemd re-reads the units and ncd restarts on the package's.
fn unshadow(root: &Path, old: Option<&Manifest>) -> anyhow::Result<Vec<Step>> {
    let Some(old) = old else { return Ok(Vec::new()) };
    let units = plan::own_unit_paths();
    let mut steps = Vec::new();
    for record in &old.files {
        let binary =
            record.path.file_name().is_some_and(|n| n == "ncd" || n == "ncdd") && !record.path.starts_with("/usr/bin");
        if !binary && !units.contains(&record.path) {
            continue;
        }
        let disk = fsutil::under(root, &record.path);
        let intact = match fsutil::look(&disk).with_context(|| format!("Could not look at {}", disk.display()))? {
            Found::File { bytes, .. } => fsutil::hash(&bytes) == record.hash,
            Found::Absent => true,
            _ => false,
        };
        // An edited one is the person's: left, and named by uninstall later.
        if intact {
            steps.push(Step::Unshadow {
                path: record.path.clone(),
            });
        }
    }
    if !steps.is_empty() {
        steps.push(Step::Run {
            argv: plan::argv(&["systemctl", "daemon-reload"]),
            why: "let systemd read the package's units".into(),
        });
        steps.push(Step::Run {
            argv: plan::argv(&["systemctl", "try-restart", "ncd.service"]),
            why: "serve with the package's ncdd".into(),
        });
    }
    Ok(steps)
}

/// Where to take the binaries from: `--from`, else beside this ncd.
fn from_dir(from: Option<&Path>) -> anyhow::Result<PathBuf> {
    Ok(match from {
        Some(dir) => dir.to_path_buf(),
        None => std::env::current_exe()
            .context("Could not find where this ncd is")?
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    })
}

/// `--macos-services NAME=SERVERS;…` as (service, servers) pairs.
fn macos_services(spec: &str) -> Vec<(String, String)> {
    spec.split(';')
        .filter(|s| !s.trim().is_empty())
        .map(|s| match s.split_once('=') {
            Some((name, servers)) => (name.trim().to_string(), servers.trim().to_string()),
            None => (s.trim().to_string(), "Empty".to_string()),
        })
        .collect()
}

/// The plan's steps not done yet. Refuses, changing nothing, when a file ncd wrote
/// was changed since (unless `force`).
fn todo(root: &Path, full: &plan::Plan, old: Option<&Manifest>, force: bool) -> anyhow::Result<Vec<Step>> {
    let mut steps = Vec::new();
    let mut edited = Vec::new();
    for step in &full.steps {
        let todo = match step {
            Step::Write {
                path,
                contents,
                keep_if_edited,
                ..
            } => match write_state(root, old, path, contents, *keep_if_edited)? {
                State::Todo => true,
                State::Done => false,
                State::Edited if force => true,
                State::Edited => {
                    edited.push(path.clone());
                    false
                }
            },
            Step::Dir { .. } | Step::Unshadow { .. } => true,
            Step::Setting { what, .. } => !old.is_some_and(|m| m.settings.iter().any(|s| &s.what == what)),
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
    Ok(steps)
}

fn would(dry_run: bool) -> &'static str {
    if dry_run { " would do this" } else { "" }
}

/// Where a plan is carried out, as its printout needs to know.
struct Where<'a> {
    root: &'a Path,
    /// Whether commands run (else they are only listed).
    live: bool,
}

impl Where<'_> {
    /// What follows a command that will not be run.
    fn listed(&self) -> &'static str {
        if self.live {
            ""
        } else {
            " (listed only: not the live system)"
        }
    }
}

/// A plan's step that can say, in one line, what it will do.
trait Describe {
    fn describe(&self, at: &Where) -> anyhow::Result<String>;
}

/// Prints a plan: the heading, then its steps numbered. Install and uninstall, dry
/// run or not, print with this.
fn print_plan<S: Describe>(heading: &str, steps: &[S], at: &Where) -> anyhow::Result<()> {
    say!("{heading}:");
    for (n, step) in steps.iter().enumerate() {
        say!("{:3}. {}", n + 1, step.describe(at)?);
    }
    Ok(())
}

/// Runs a command when `live` (else records it as not run). False when it failed.
fn run(argv: &[String], live: bool, record: &mut Vec<CommandRecord>) -> anyhow::Result<bool> {
    let runner = if live { Runner::Live } else { Runner::List };
    run_with(argv, &runner, record)
}

/// Runs a command (or records it as not run, when commands are only listed).
/// False when it failed.
fn run_with(argv: &[String], runner: &Runner, record: &mut Vec<CommandRecord>) -> anyhow::Result<bool> {
    if !runner.runs() {
        record.push(CommandRecord {
            argv: argv.to_vec(),
            ran: false,
            status: None,
        });
        return Ok(true);
    }
    let status = match runner.command(argv) {
        Some(mut command) => command.status(),
        None => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "an empty command",
        )),
    };
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

pub(crate) fn uninstall(args: &UninstallArgs, socket: Option<&Path>, state_dir: &Path) -> anyhow::Result<ExitCode> {
    let root = &args.root;
    if args.check {
        refuse_during_a_period(root, socket, state_dir)?;
        say!("No period is running: ncd may be removed.");
        return Ok(ExitCode::SUCCESS);
    }
    let Some(mut manifest) = Manifest::load(root)? else {
        say!(
            "ncd is not installed here (there is no {}); nothing to do.",
            show(&Manifest::path(root))
        );
        return Ok(ExitCode::SUCCESS);
    };
    refuse_during_a_period(root, socket, state_dir)?;
    if root == Path::new("/") && !args.dry_run {
        need_root("uninstall")?;
    }
    let runner = Runner::new(root, manifest.platform, &args.commands);
    let at = Where {
        root,
        live: runner.runs(),
    };
    let steps = reverse::reverse(root, &manifest, args.force)?;
    let from = if root == Path::new("/") {
        String::new()
    } else {
        format!(" from {}", root.display())
    };
    print_plan(&format!("Uninstalling ncd{from}{}", would(args.dry_run)), &steps, &at)?;
    if args.dry_run {
        say!("\nThis was a dry run: nothing was changed.");
        return Ok(ExitCode::SUCCESS);
    }
    let failed = reverse::undo(root, &steps, &mut manifest, &runner)?;
    say!("\nDone: ncd is uninstalled.");
    if !at.live {
        say!("The commands above were not run, because --root is not /.");
    }
    for step in &steps {
        if let reverse::Undo::Keep { path } = step {
            say!("Your {} was kept.", show(path));
        }
    }
    if manifest.packaged {
        say!("The Debian package's ncd service keeps running; `sudo apt remove ncd` removes it.");
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// Uninstall is refused while a period runs, or when nobody can tell.
fn refuse_during_a_period(root: &Path, socket: Option<&Path>, state_dir: &Path) -> anyhow::Result<()> {
    match period_running(root, socket, state_dir) {
        PeriodRunning::No => Ok(()),
        PeriodRunning::Yes => anyhow::bail!(
            "Uninstall is not possible while a period is running: that is the point of it. \
             When the period ends (or after `ncd unlock --scope end`), uninstall will work."
        ),
        PeriodRunning::Unknown { why } => anyhow::bail!(
            "Uninstall is not possible: {why}, so ncd cannot tell whether a period is running, and assumes \
             one is. Start the daemon (`sudo systemctl start ncd`) and look at `ncd status`."
        ),
    }
}
