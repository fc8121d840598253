//! `ncd guard`: the root side of a period, run by `ncd-guard.path` (when the
//! period starts or ends — ncdd, not root, writes the period marker it watches —
//! or a resolver file changes) and `ncd-guard.timer` (every minute). ncdd itself
//! runs unprivileged, so this is where what needs root happens:
//!
//! - while a period runs, drop-ins make `systemctl stop` refuse for ncd.service,
//!   its sockets and the guard's own timer and path unit (`RefuseManualStop=yes`,
//!   see `ncd_period::stop_guard`); they go when the period ends;
//! - the resolver as it is in effect is checked ([`super::effective`]): the files
//!   `ncd install` wrote, other drop-ins that override them, what resolved
//!   actually uses, `/etc/resolv.conf`, and `/etc/hosts` lines for blocked names.
//!   While a period runs, what can be put back is put back; the rest is reported.
//!
//! Every finding and every repair goes into the guard's report in the state dir,
//! which ncdd serves in `ncd status` (and each repair to ncdd's journal too).
//! When it cannot tell whether a period runs, it assumes one does (fail closed).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ncd_config::control::{GuardRepair, GuardStatus};
use ncd_period::stop_guard::StopGuard;
use ncd_state::StateDir;

use super::effective::{self, Finding};
use super::fsutil::{self, Found};
use super::manifest::Manifest;
use super::period::{self, PeriodRunning, period_running};
use super::plan::{self, Platform};
use super::{CommandsArg, Runner};
use crate::client::Client;

/// Repairs kept in the report: the most recent ones.
const REPAIRS_KEPT: usize = 20;

#[derive(Debug, clap::Args)]
pub(crate) struct GuardArgs {
    /// Guard the system under this directory as if it were `/` (commands are then
    /// listed, not run).
    #[arg(long, default_value = "/")]
    root: PathBuf,
    #[command(flatten)]
    commands: CommandsArg,
}

pub(crate) fn guard(args: &GuardArgs, socket: Option<&Path>, state_dir: &Path) -> anyhow::Result<ExitCode> {
    let root = args.root.as_path();
    let manifest = Manifest::load(root)?;
    let runner = Runner::new(
        root,
        manifest.as_ref().map_or(Platform::Linux, |m| m.platform),
        &args.commands,
    );
    // Fail closed: a period nobody can read is guarded as one that runs.
    let running = match period_running(root, socket, state_dir) {
        PeriodRunning::No => false,
        PeriodRunning::Yes | PeriodRunning::Unknown { .. } => true,
    };
    let state = StateDir::new(fsutil::under(root, state_dir));
    let previous = read_report(&state);
    let now = now_unix();
    let mut repairs: Vec<String> = Vec::new();
    let mut problems: Vec<String> = Vec::new();

    let stop_guard = StopGuard::at(root.to_path_buf());
    let was_in_force = stop_guard.in_force();
    if stop_guard.update(running) {
        let _ = super::run_with(&plan::argv(&["systemctl", "daemon-reload"]), &runner, &mut Vec::new());
    }
    if running && !was_in_force && previous.as_ref().is_some_and(|p| p.stop_refusal) {
        repairs.push("the drop-ins that make `systemctl stop` refuse had been removed; ncd put them back".into());
    }
    let stop_refusal = running && stop_guard.in_force();
    if !running {
        println!("No period is running: nothing to guard.");
    }

    let config = guard_config(root, &state);
    let closed = closed_names(config.as_ref(), &state);
    let mut findings = effective::hosts(root, |name| closed.name(name));
    let mut resolver_repaired = false;
    let mut reloads = Vec::new();
    if let Some(mut manifest) = manifest {
        let Some(config) = &config else {
            anyhow::bail!(
                "Neither the config nor ncdd's last good copy of it can be read, so the resolver's routes \
                 cannot be checked. `ncd config check` shows what is wrong."
            );
        };
        let takeover = plan::takeover(root, manifest.resolver, config);
        reloads = takeover.reload.clone();
        if running {
            let put_back = own_files(root, &mut manifest, &takeover)?;
            resolver_repaired |= !put_back.is_empty();
            repairs.extend(put_back);
        }
        findings.extend(effective::resolver(root, manifest.resolver, &runner, &closed));
    }
    for Finding { what, repair } in findings {
        match repair {
            Some(repair) if running => match effective::carry_out(root, &repair, now, &runner) {
                Ok(done) => {
                    resolver_repaired |= !matches!(repair, effective::Repair::WriteHosts { .. });
                    repairs.push(format!("{what}; {done}"));
                }
                Err(error) => problems.push(format!("{what}; ncd could not put it back ({error})")),
            },
            _ => problems.push(what),
        }
    }
    if resolver_repaired {
        for reload in &reloads {
            let _ = super::run_with(&reload.argv, &runner, &mut Vec::new());
        }
    }

    for line in repairs.iter().chain(&problems) {
        eprintln!("ncd guard: {line}");
    }
    if running && repairs.is_empty() && problems.is_empty() {
        println!("The resolver settings are as ncd left them.");
    }
    let report = GuardStatus {
        checked_unix: now,
        stop_refusal,
        problems: problems.clone(),
        repairs: kept_repairs(previous.as_ref(), running, &repairs, now),
    };
    write_report(&state, &report);
    // Best effort: ncdd records what is new in the journal `ncd status` shows.
    let seen = previous.map(|p| p.problems).unwrap_or_default();
    let news: Vec<String> = repairs
        .into_iter()
        .chain(problems.into_iter().filter(|p| !seen.contains(p)))
        .collect();
    if running && !news.is_empty() {
        let socket = socket.map_or_else(|| period::default_socket(root), Path::to_path_buf);
        if let Err(error) = Client::new(socket).guard_report(news) {
            eprintln!("ncd guard: could not tell ncdd ({error}); its report in the state dir has it");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The takeover's files that are not as install wrote them, written again (only
/// those install recorded: a file it never recorded, uninstall could not undo).
fn own_files(root: &Path, manifest: &mut Manifest, takeover: &super::flavour::Takeover) -> anyhow::Result<Vec<String>> {
    let mut put_back = Vec::new();
    for file in &takeover.files {
        let Some(record) = manifest.files.iter_mut().find(|f| f.path == file.path) else {
            continue;
        };
        let full = fsutil::under(root, &file.path);
        if matches!(fsutil::look(&full)?, Found::File { ref bytes, .. } if *bytes == file.contents) {
            continue;
        }
        fsutil::write_atomically(&full, &file.contents, file.mode)?;
        record.hash = fsutil::hash(&file.contents);
        put_back.push(format!("{} had been changed; ncd put it back", file.path.display()));
    }
    if !put_back.is_empty() {
        manifest.save(root)?;
    }
    Ok(put_back)
}

/// The config the guard checks against: the file under the root, else (an edit
/// that does not load) the last good copy ncdd keeps, as ncdd itself does.
fn guard_config(root: &Path, state: &StateDir) -> Option<ncd_config::Config> {
    match plan::effective_config(root) {
        Ok((config, _)) => Some(config),
        Err(error) => {
            eprintln!("ncd guard: {error}");
            ncd_config::Config::load(&state.last_good_config()).ok()
        }
    }
}

/// What `config`, and the config the running period holds, block or steer.
fn closed_names(config: Option<&ncd_config::Config>, state: &StateDir) -> effective::Closed {
    use ncd_period::store::{Loaded, Store};
    let mut policies = Vec::new();
    if let Some(config) = config {
        policies.push(ncd_policy::Policy::build(config, state));
    }
    if let Loaded::Found { state: stored, .. } = Store::new(state).load()
        && let Some(commitment) = stored.commitment
    {
        policies.push(ncd_policy::Policy::build(&commitment.locked, state));
    }
    effective::Closed(policies)
}

/// The repairs the report keeps: this period's, the newest last, a few.
fn kept_repairs(previous: Option<&GuardStatus>, running: bool, new: &[String], now: i64) -> Vec<GuardRepair> {
    if !running {
        return Vec::new();
    }
    let mut repairs = previous.map(|p| p.repairs.clone()).unwrap_or_default();
    repairs.extend(new.iter().map(|what| GuardRepair {
        unix: now,
        what: what.clone(),
    }));
    let extra = repairs.len().saturating_sub(REPAIRS_KEPT);
    repairs.drain(..extra);
    repairs
}

fn read_report(state: &StateDir) -> Option<GuardStatus> {
    serde_json::from_slice(&std::fs::read(state.guard_report()).ok()?).ok()
}

/// Writes the report where ncdd reads it (0644: the guard is root, ncdd is not).
/// Only into a state dir that exists: ncd.service makes it, owned by its user.
fn write_report(state: &StateDir, report: &GuardStatus) {
    if !state.path().is_dir() {
        return;
    }
    let path = state.guard_report();
    let written = serde_json::to_vec_pretty(report)
        .map_err(std::io::Error::other)
        .and_then(|bytes| fsutil::write_atomically(&path, &bytes, 0o644));
    if let Err(error) = written {
        eprintln!("ncd guard: could not write {} ({error})", path.display());
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
