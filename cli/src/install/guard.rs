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

use ncd_period::stop_guard::StopGuard;

use super::fsutil::{self, Found};
use super::manifest::Manifest;
use super::plan;
use crate::client::Client;

#[derive(Debug, clap::Args)]
pub struct GuardArgs {
    /// Guard the system under this directory as if it were `/` (commands are then
    /// listed, not run).
    #[arg(long, default_value = "/")]
    root: PathBuf,
}

pub fn guard(args: &GuardArgs, socket: Option<&Path>, state_dir: &Path) -> anyhow::Result<ExitCode> {
    let root = args.root.as_path();
    let running = super::check_no_period(root, socket, state_dir).is_err();
    StopGuard::at(root.to_path_buf()).set(running);
    if !running {
        println!("No period is running: nothing to guard.");
        return Ok(ExitCode::SUCCESS);
    }
    let Some(mut manifest) = Manifest::load(root)? else {
        println!("ncd is not installed here (no install manifest): only the stop guard was set.");
        return Ok(ExitCode::SUCCESS);
    };
    let mut drift = Vec::new();
    for (path, contents) in expected_resolver_files(root, &manifest.resolver)? {
        let full = fsutil::under(root, &path);
        let matches = matches!(fsutil::look(&full)?, Found::File { ref bytes, .. } if *bytes == contents);
        if matches {
            continue;
        }
        fsutil::write_atomically(&full, &contents, 0o644)?;
        if let Some(record) = manifest.files.iter_mut().find(|f| f.path == path) {
            record.hash = fsutil::hash(&contents);
        }
        drift.push(format!("{} had been changed; ncd put it back", path.display()));
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
        for argv in reload_commands(&manifest.resolver) {
            let _ = std::process::Command::new(argv[0]).args(&argv[1..]).status();
        }
    }
    // Best effort: ncdd records it in the journal `ncd status` shows.
    let socket = socket.map(Path::to_path_buf).unwrap_or_else(|| {
        fsutil::under(
            root,
            &crate::client::resolve_socket(None, &fsutil::under(root, Path::new(plan::CONFIG_PATH))),
        )
    });
    if let Err(error) = Client::new(socket).guard_report(drift.clone()) {
        eprintln!("ncd guard: could not tell ncdd ({error}); the system log has it");
    }
    Ok(ExitCode::SUCCESS)
}

/// The resolver files install wrote for this flavour, as they should read now.
fn expected_resolver_files(root: &Path, flavour: &str) -> anyhow::Result<Vec<(PathBuf, Vec<u8>)>> {
    Ok(match flavour {
        "systemd-resolved" => {
            let (config, _) = plan::effective_config(root)?;
            let text = plan::resolved_dropin(&plan::blocked_domains(&config));
            vec![(
                PathBuf::from("/etc/systemd/resolved.conf.d/99-ncd.conf"),
                text.into_bytes(),
            )]
        }
        "networkmanager" => {
            vec![(
                PathBuf::from("/etc/NetworkManager/conf.d/99-ncd.conf"),
                plan::NM_DROPIN.as_bytes().to_vec(),
            )]
        }
        "resolv.conf" => vec![(PathBuf::from("/etc/resolv.conf"), plan::RESOLV_CONF.as_bytes().to_vec())],
        _ => Vec::new(),
    })
}

fn reload_commands(flavour: &str) -> Vec<Vec<&'static str>> {
    match flavour {
        "systemd-resolved" => {
            vec![
                vec!["systemctl", "reload-or-restart", "systemd-resolved"],
                vec!["resolvectl", "flush-caches"],
            ]
        }
        "networkmanager" => vec![vec!["nmcli", "general", "reload"]],
        _ => Vec::new(),
    }
}
