//! The period verbs that change the commitment: `ncd start`, `ncd extend`, and the
//! asking side of `ncd unlock` (the request, `--cancel`; `--confirm` lives in
//! `confirm.rs`). At a terminal they ask for what is missing, in plain words; without
//! one they say exactly which option to pass instead.

use std::io::{self, BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;
use ncd_config::HumanDuration;
use ncd_config::control::{UnlockScope, UnlockState};

use crate::client::Client;
use crate::{human, status};

/// The shortest "why now" accepted: about a sentence.
pub(crate) const MIN_WHY_CHARS: usize = 20;

fn stdin_is_terminal() -> bool {
    io::stdin().is_terminal()
}

/// Asks `question` and reads one line; `None` at end of input.
fn ask(question: &str) -> io::Result<Option<String>> {
    let mut out = io::stdout().lock();
    write!(out, "{question}")?;
    out.flush()?;
    let mut line = String::new();
    if io::stdin().lock().read_line(&mut line)? == 0 {
        writeln!(out)?;
        return Ok(None);
    }
    Ok(Some(line.trim().to_string()))
}

/// `ncd start [--for DURATION] [--reason TEXT]`.
pub(crate) fn start(
    client: &Client,
    length: Option<HumanDuration>,
    reason: Option<String>,
) -> anyhow::Result<ExitCode> {
    if length.is_some_and(|l| l.as_secs() == 0) {
        bail!("A period needs a length of at least a second, e.g. `--for 60d`.");
    }
    let reason = match reason {
        Some(reason) if reason.trim().is_empty() => {
            bail!("The reason is empty. Write it in your own words, e.g. --reason \"I want my mornings back.\"")
        }
        Some(reason) => reason.trim().to_string(),
        None if stdin_is_terminal() => loop {
            match ask("In a sentence, why are you doing this? You'll see it again when it matters.\n> ")? {
                None => bail!("No reason given, so no period was started."),
                Some(reason) if reason.is_empty() => continue,
                Some(reason) => break reason,
            }
        },
        None => bail!(
            "A period starts with a reason, in your own words. Give it with --reason \"…\" \
             (stdin is not a terminal, so ncd cannot ask for it). No period was started."
        ),
    };
    // ncdd answers with the length it used.
    let started = client.start(length.map(HumanDuration::as_secs), reason)?;
    match started.length_secs {
        0 => say!("Your period has begun."),
        secs => say!("Your period has begun: {}.", human::length(secs)),
    }
    say!("ncd holds the boundary until it ends. `ncd status` shows where you are, any time.");
    say!("Your reason is kept; you'll see it again when it matters.");
    wait_for_stop_refusal(client)?;
    Ok(ExitCode::SUCCESS)
}

/// How long `ncd start` waits for the root guard to make `systemctl stop` refuse.
const STOP_REFUSAL_WAIT: Duration = Duration::from_secs(10);

/// Where ncd runs as a service, the root guard puts the period's stop refusal in
/// place (`ncd-guard.path` sees the period start, within a second or so). `ncd
/// start` waits for the guard's report of it, so that when it returns, stopping
/// ncd is already refused (the live test found `systemctl stop` right after `ncd
/// start` allowed). No guard report at all: ncdd runs by hand, nothing to wait for.
fn wait_for_stop_refusal(client: &Client) -> anyhow::Result<()> {
    let deadline = Instant::now() + STOP_REFUSAL_WAIT;
    loop {
        let Ok(status) = client.status() else { return Ok(()) };
        let Some(guard) = &status.guard else { return Ok(()) };
        let started = status.period.started_unix.unwrap_or(0);
        if guard.stop_refusal && guard.checked_unix >= started {
            say!("Stopping ncd (`systemctl stop`) is refused until the period ends.");
            return Ok(());
        }
        if Instant::now() >= deadline {
            say!(
                "The guard has not yet made `systemctl stop` refuse for ncd; `ncd status` says so until it has \
                 (`systemctl status ncd-guard.path` says why)."
            );
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `ncd extend DURATION`.
pub(crate) fn extend(client: &Client, by: HumanDuration) -> anyhow::Result<ExitCode> {
    if by.as_secs() == 0 {
        bail!("Extend by at least a second, e.g. `ncd extend 7d`.");
    }
    let extended = client.extend(by.as_secs())?;
    say!("Extended by {}.", human::length(extended.extended_by_secs));
    if let Some(status) = client.status().ok().filter(|s| s.period.active) {
        say!("{} left.", capitalise(&human::duration(status.period.remaining_secs)));
    }
    Ok(ExitCode::SUCCESS)
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `ncd unlock --cancel`.
pub(crate) fn cancel(client: &Client) -> anyhow::Result<ExitCode> {
    client.unlock_cancel()?;
    say!("Withdrawn. Nothing changed.");
    Ok(ExitCode::SUCCESS)
}

fn check_why(why: &str) -> anyhow::Result<()> {
    if why.trim().chars().count() < MIN_WHY_CHARS {
        bail!("Please say why in a sentence or more (at least {MIN_WHY_CHARS} characters). Nothing was sent.");
    }
    Ok(())
}

/// `ncd unlock`, the request: interactive at a terminal, else `--scope` and `--why`.
pub(crate) fn request(client: &Client, scope: Option<UnlockScope>, why: Option<String>) -> anyhow::Result<ExitCode> {
    if let Some(why) = &why {
        check_why(why)?;
    }
    let (scope, why) = match (scope, why) {
        (Some(scope), Some(why)) => (scope, why.trim().to_string()),
        _ if !stdin_is_terminal() => bail!(
            "Say what to open with --scope end|pending, and why with --why \"…\" \
             (stdin is not a terminal, so ncd cannot ask). Nothing was sent."
        ),
        (scope, why) => match ask_unlock(client, scope, why)? {
            Some(answers) => answers,
            None => {
                say!("Nothing was sent.");
                return Ok(ExitCode::from(1));
            }
        },
    };
    // ncdd answers with the request as it now stands.
    let unlock = client.unlock(scope, why)?;
    say!("Your request is in.");
    if unlock.state == UnlockState::Waiting {
        let delay = if unlock.delay_secs > 0 {
            unlock.delay_secs
        } else {
            unlock.remaining_secs
        };
        say!(
            "It cools off for {} first. That is credited time: changing the clock does not shorten it.",
            human::duration(delay)
        );
        if unlock.delay_secs > unlock.remaining_secs && unlock.remaining_secs > 0 {
            say!("{} to go.", capitalise(&human::duration(unlock.remaining_secs)));
        }
    } else {
        say!("{}", status::unlock_lines(&unlock).join("\n"));
    }
    say!("After that, a window opens to confirm it with `ncd unlock --confirm`, by typing a short passage.");
    say!("If the urge passes, let it: `ncd unlock --cancel` withdraws the request, or simply don't confirm.");
    Ok(ExitCode::SUCCESS)
}

/// The questions of an interactive unlock; `None` when the person stops (end of input).
fn ask_unlock(
    client: &Client,
    scope: Option<UnlockScope>,
    why: Option<String>,
) -> anyhow::Result<Option<(UnlockScope, String)>> {
    let status = client.status()?;
    if !status.period.active {
        bail!(
            "No period is running, so there is nothing to unlock. \
             What the config blocks stays blocked while ncdd runs; edit the config to change it."
        );
    }
    if matches!(status.unlock.state, UnlockState::Waiting | UnlockState::Confirmable) {
        bail!(
            "A request is already under way.\n{}",
            status::unlock_lines(&status.unlock).join("\n")
        );
    }
    let scope = match scope {
        Some(scope) => scope,
        None if status.pending.is_empty() => {
            say!("There are no held changes, so this asks to end the period.");
            UnlockScope::End
        }
        None => {
            say!("What would you like to open?");
            say!(
                "  1. End the period now ({} left).",
                human::duration(status.period.remaining_secs)
            );
            say!("  2. Apply the changes held back, and keep the period:");
            for pending in &status.pending {
                say!("       - {pending}");
            }
            loop {
                match ask("Choose 1 or 2: ")?.as_deref() {
                    None => return Ok(None),
                    Some("1") => break UnlockScope::End,
                    Some("2") => break UnlockScope::Pending,
                    Some(_) => continue,
                }
            }
        }
    };
    say!();
    if let Some(reason) = status.period.reason.as_deref().filter(|r| !r.trim().is_empty()) {
        say!("When you started, you wrote: “{}”", reason.trim());
        say!();
    }
    let why = match why {
        Some(why) => why,
        None => {
            let mut question = "In your own words, why now?\n> ";
            loop {
                match ask(question)? {
                    None => return Ok(None),
                    Some(why) if why.chars().count() >= MIN_WHY_CHARS => break why,
                    Some(_) => question = "Take a little more room: a sentence or so, please.\n> ",
                }
            }
        }
    };
    Ok(Some((scope, why)))
}
