//! `ncd ca show`, `ncd ca install` and `ncd ca uninstall`: the proxy's local CA,
//! shown with its fingerprint and constraints, trusted where it can be (system store,
//! NSS databases, Firefox policies, the macOS System keychain) and untrusted again,
//! the way `ncd install` works: a plan printed (`--dry-run`) or carried out, each
//! step recorded with backups in its own record ([`record`]), undone exactly by
//! uninstall, which a running period refuses. [`ca_trust_problems`] tells `ncd
//! status` when the current CA is not trusted where it was installed.
//!
//! System files are under `--root`, and commands on the system run only when it is
//! `/`. The browsers' NSS databases live in a home instead: `--home`, else the
//! invoking user's (`SUDO_USER`'s under sudo), taken inside the root when the root
//! is not `/`; certutil runs on them whenever it is installed.

mod apply;
mod cert;
mod manual;
mod plan;
mod policy;
mod record;
mod trust;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::{PlatformArg, Where, live, need_root, platform, print_plan, show, would};
use cert::CaCert;
use plan::{Home, Target, on_path};
use record::CaManifest;

pub(crate) use trust::ca_trust_problems;

#[derive(Debug, Args)]
pub(crate) struct CaArgs {
    #[command(subcommand)]
    command: CaCommand,
}

#[derive(Debug, Subcommand)]
enum CaCommand {
    /// Print the CA certificate (PEM) on stdout; its fingerprint, the domains it is
    /// limited to and the steps to trust it on stderr.
    Show(ShowArgs),
    /// Trust the CA in the system store, the browsers' certificate databases, Firefox's
    /// policy and the macOS keychain, recording each step.
    Install(CaInstallArgs),
    /// Undo exactly what `ncd ca install` did (refused while a period runs).
    Uninstall(CaUninstallArgs),
    /// Say whether the current CA is trusted where `ncd ca install` put it (exit
    /// status 1 when it is not); `ncd status` says the same.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// Check inside this directory, as if it were `/`.
    #[arg(long, default_value = "/")]
    root: PathBuf,
}

#[derive(Debug, Args)]
struct ShowArgs {
    /// Read the state dir inside this directory, as if it were `/`.
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// Print the fingerprint, the domains and the steps on stdout, without the PEM.
    #[arg(long)]
    steps: bool,
}

#[derive(Debug, Args)]
struct CaInstallArgs {
    /// Install into this directory as if it were `/` (system commands are then listed, not run).
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// Print what would be done, and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// The system to install for [default: this one].
    #[arg(long, value_enum)]
    platform: Option<PlatformArg>,
    /// The home whose browser certificate databases get the CA [default: the invoking
    /// user's, SUDO_USER's under sudo; inside --root when that is not /].
    #[arg(long, value_name = "DIR")]
    home: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct CaUninstallArgs {
    /// Uninstall from this directory as if it were `/` (system commands are then listed, not run).
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// Print what would be done, and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Remove files `ncd ca install` wrote even if they were edited since.
    #[arg(long)]
    force: bool,
}

pub(crate) fn ca(args: &CaArgs, socket: Option<&Path>, state_dir: &Path) -> anyhow::Result<ExitCode> {
    match &args.command {
        CaCommand::Show(args) => show_ca(args, state_dir),
        CaCommand::Install(args) => install(args, state_dir),
        CaCommand::Uninstall(args) => uninstall(args, socket, state_dir),
        CaCommand::Check(args) => check(&args.root, state_dir),
    }
}

fn check(root: &Path, state_dir: &Path) -> anyhow::Result<ExitCode> {
    let problems = ca_trust_problems(root, state_dir);
    if problems.is_empty() {
        if cert::cert_path(root, state_dir).exists() {
            say!("ncd's CA is trusted where `ncd ca install` put it.");
        } else {
            say!("{}", cert::no_ca_yet(&cert::cert_path(root, state_dir)));
        }
        return Ok(ExitCode::SUCCESS);
    }
    for problem in problems {
        say!("{problem}");
    }
    Ok(ExitCode::from(1))
}

/// The CA under the root's state dir; `None` after saying there is none yet.
fn current(root: &Path, state_dir: &Path) -> anyhow::Result<Option<CaCert>> {
    let path = cert::cert_path(root, state_dir);
    let cert = CaCert::load(&path)?;
    if cert.is_none() {
        let _ = writeln!(std::io::stderr(), "{}", cert::no_ca_yet(&path));
    }
    Ok(cert)
}

fn show_ca(args: &ShowArgs, state_dir: &Path) -> anyhow::Result<ExitCode> {
    let Some(cert) = current(&args.root, state_dir)? else {
        return Ok(ExitCode::from(1));
    };
    let mut lines = cert.facts();
    lines.push(String::new());
    lines.extend(manual::steps(&cert.path));
    if args.steps {
        for line in lines {
            say!("{line}");
        }
    } else {
        std::io::stdout().write_all(cert.pem.as_bytes())?;
        let mut err = std::io::stderr().lock();
        for line in lines {
            writeln!(err, "{line}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Whose browsers `ncd ca install` updates.
fn home(arg: Option<&Path>, root: &Path) -> anyhow::Result<Home> {
    if let Some(dir) = arg {
        return Ok(Home {
            dir: dir.to_path_buf(),
            user: None,
        });
    }
    let sudo_user = std::env::var("SUDO_USER")
        .ok()
        .filter(|u| !u.is_empty() && u != "root" && rustix::process::geteuid().is_root());
    let (dir, user) = match sudo_user {
        Some(name) => {
            let user = nix::unistd::User::from_name(&name)
                .ok()
                .flatten()
                .with_context(|| format!("Could not find the home of {name} (SUDO_USER); say it with --home DIR"))?;
            (user.dir, Some(name))
        }
        None => (
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(PathBuf::from)
                .context("Could not tell whose browsers to update: HOME is not set; say it with --home DIR")?,
            None,
        ),
    };
    let dir = if root == Path::new("/") {
        dir
    } else {
        super::fsutil::under(root, &dir)
    };
    Ok(Home { dir, user })
}

fn install(args: &CaInstallArgs, state_dir: &Path) -> anyhow::Result<ExitCode> {
    let root = &args.root;
    anyhow::ensure!(root.is_dir(), "The root {} is not a directory.", root.display());
    let Some(cert) = current(root, state_dir)? else {
        return Ok(ExitCode::from(1));
    };
    let platform = platform(args.platform);
    let home = home(args.home.as_deref(), root)?;
    let old = CaManifest::load(root)?;
    let target = Target {
        root,
        platform,
        home: &home,
        cert: &cert,
        certutil: on_path("certutil"),
    };
    let plan = plan::plan(&target, old.as_ref())?;
    for line in cert.facts() {
        say!("{line}");
    }
    say!("");
    if !plan.changes_something() {
        say!("ncd's CA is already trusted everywhere ncd can put it; nothing to do.");
        for note in &plan.notes {
            say!("{note}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if root == Path::new("/") && !args.dry_run {
        need_root("ca install")?;
    }
    let at = Where {
        root,
        live: live(root, platform),
    };
    let into = if root == Path::new("/") {
        String::new()
    } else {
        format!(" into {}", root.display())
    };
    print_plan(
        &format!("Trusting ncd's CA{into}{}", would(args.dry_run)),
        &plan.steps,
        &at,
    )?;
    for note in &plan.notes {
        say!("Note: {note}");
    }
    if args.dry_run {
        say!("\nThis was a dry run: nothing was changed.");
        return Ok(ExitCode::SUCCESS);
    }
    let mut manifest = match old {
        Some(mut old) => {
            old.fingerprint = cert.sha256.clone();
            old.sha1 = cert.sha1_hex.clone();
            old.domains = cert.domains.clone();
            old
        }
        None => CaManifest::new(
            platform,
            cert.sha256.clone(),
            cert.sha1_hex.clone(),
            cert.domains.clone(),
        ),
    };
    let failed = apply::apply(root, &plan.steps, &mut manifest, &at, &home)?;
    say!(
        "\nDone. What was changed is recorded in {}.",
        show(&CaManifest::path(root))
    );
    if !at.live {
        say!("The system commands above were not run, because --root is not /.");
    }
    say!("Restart the browsers to pick it up. `sudo ncd ca uninstall` takes it all back.");
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn uninstall(args: &CaUninstallArgs, socket: Option<&Path>, state_dir: &Path) -> anyhow::Result<ExitCode> {
    let root = &args.root;
    let Some(mut manifest) = CaManifest::load(root)? else {
        say!(
            "ncd's CA is not installed here (there is no {}); nothing to do.",
            show(&CaManifest::path(root))
        );
        return Ok(ExitCode::SUCCESS);
    };
    match super::period::period_running(root, socket, state_dir) {
        super::period::PeriodRunning::No => {}
        super::period::PeriodRunning::Yes => anyhow::bail!(
            "`ncd ca uninstall` is not possible while a period is running: that is the point of it. \
             When the period ends (or after `ncd unlock --scope end`), it will work."
        ),
        super::period::PeriodRunning::Unknown { why } => anyhow::bail!(
            "`ncd ca uninstall` is not possible: {why}, so ncd cannot tell whether a period is running, and \
             assumes one is. Start the daemon (`sudo systemctl start ncd`) and look at `ncd status`."
        ),
    }
    if root == Path::new("/") && !args.dry_run {
        need_root("ca uninstall")?;
    }
    let at = Where {
        root,
        live: live(root, manifest.platform),
    };
    let steps = apply::reverse(root, &manifest, args.force, on_path("certutil"))?;
    let from = if root == Path::new("/") {
        String::new()
    } else {
        format!(" from {}", root.display())
    };
    print_plan(
        &format!("Untrusting ncd's CA{from}{}", would(args.dry_run)),
        &steps,
        &at,
    )?;
    if args.dry_run {
        say!("\nThis was a dry run: nothing was changed.");
        return Ok(ExitCode::SUCCESS);
    }
    let failed = apply::undo(root, &steps, &mut manifest, at.live)?;
    if manifest.nss.is_empty() {
        say!("\nDone: ncd's CA is no longer trusted where `ncd ca install` put it. Restart the browsers.");
    } else {
        say!("\nDone, but for these NSS databases, which still have ncd's CA:");
        for record in &manifest.nss {
            say!("  {}", record.db.display());
        }
        say!(
            "Install certutil (`apt install libnss3-tools`, `dnf install nss-tools`) and run `ncd ca uninstall` \
             again: {} keeps what is left to do.",
            show(&CaManifest::path(root))
        );
    }
    if !at.live {
        say!("The system commands above were not run, because --root is not /.");
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
