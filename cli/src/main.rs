//! `ncd`: the command line of the no-contact boundary.
//!
//! This file owns the command-line grammar and hands each command to its module:
//! `local` (commands that read the config themselves), `client` (the control socket),
//! `status` (the status screen), `period` (start, extend, the unlock request),
//! `confirm` and `terminal` (typing the unlock passage in raw mode), `human` (words,
//! bars and colour), `install` (`ncd install` / `ncd uninstall`: the service, the
//! resolver takeover and the manifest that undoes them; `ncd ca`: the proxy's CA,
//! trusted and untrusted the same way).

/// `println!` that hands a write error back (`?`) instead of panicking: output into
/// a closed pipe (`ncd services | head -1`) is not a crash.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*)?
    }};
}

mod client;
mod confirm;
mod human;
mod install;
mod local;
mod period;
mod status;
mod terminal;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use ncd_config::HumanDuration;
use ncd_config::control::UnlockScope;

use crate::client::Client;

#[derive(Debug, Parser)]
#[command(
    name = "ncd",
    version,
    about = "Keep a boundary: block where the ex lives, for as long as you chose"
)]
struct Cli {
    /// The config file.
    #[arg(long, global = true, default_value = ncd_config::DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// The daemon's control socket [default: `[control] socket` of the config file,
    /// else /run/ncd/control.sock; when that is missing, the socket of `ncdd --dev`].
    #[arg(long, global = true, env = "NCD_SOCKET")]
    socket: Option<PathBuf>,
    /// The daemon's state dir (for downloaded lists).
    #[arg(long, global = true, default_value = "/var/lib/ncd")]
    state_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Where the period stands: time left, your reason, blocked attempts, unlock state.
    Status {
        /// Print the daemon's status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Begin a period: the boundary holds until it ends.
    Start {
        /// How long, e.g. 60d, 8w, 30d12h [default: `[period] length` of the config].
        #[arg(long = "for", value_name = "DURATION")]
        length: Option<HumanDuration>,
        /// Why you are doing this, in your own words. Asked for at a terminal if missing.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Make the running period longer. Takes effect at once.
    Extend {
        /// How much longer, e.g. 7d or 2w.
        #[arg(value_name = "DURATION")]
        by: HumanDuration,
    },
    /// Ask to open something early: a cooling-off delay, then a typed confirmation.
    Unlock(UnlockArgs),
    /// Say whether a name is blocked, and by which rule. Exit status: 0 blocked,
    /// 1 not blocked, 2 error.
    Check {
        /// A domain name (www.instagram.com), or a URL (https://www.instagram.com/name/) to ask
        /// the proxy's profile rules too.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Work with the config file.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// List the services of the built-in catalog and their domains.
    Services,
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the man page (roff).
    Man,
    /// Install ncd as a service that answers every DNS query on this machine.
    Install(install::InstallArgs),
    /// Take ncd off the system and put back what install changed.
    Uninstall(install::UninstallArgs),
    /// Keep a running period's ground (root, run by ncd-guard.timer): the stop
    /// guard, and the resolver settings put back if they drifted.
    Guard(install::guard::GuardArgs),
    /// The proxy's local CA: show it, trust it (`install`), untrust it (`uninstall`).
    Ca(install::ca::CaArgs),
}

#[derive(Debug, Args)]
struct UnlockArgs {
    /// What to open: `end` the period, or apply the `pending` (held) changes.
    #[arg(long, value_enum, conflicts_with_all = ["cancel", "confirm"])]
    scope: Option<ScopeArg>,
    /// Why now, in a sentence or more.
    #[arg(long, conflicts_with_all = ["cancel", "confirm"])]
    why: Option<String>,
    /// Withdraw the request under way.
    #[arg(long, conflicts_with = "confirm")]
    cancel: bool,
    /// Confirm the request by typing a passage (needs a terminal).
    #[arg(long)]
    confirm: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ScopeArg {
    /// End the period now.
    End,
    /// Apply the loosenings held back during the period.
    Pending,
}

impl From<ScopeArg> for UnlockScope {
    fn from(scope: ScopeArg) -> Self {
        match scope {
            ScopeArg::End => UnlockScope::End,
            ScopeArg::Pending => UnlockScope::Pending,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a config file and show what it would block, in numbers.
    Check {
        /// The file to check (default: --config).
        file: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let client = || Client::new(client::resolve_socket(cli.socket.as_deref(), &cli.config));
    let (result, error_code) = match &cli.command {
        Command::Check { name, json } => (local::check(&client(), &cli.config, &cli.state_dir, name, *json), 2),
        Command::Config {
            command: ConfigCommand::Check { file, json },
        } => (
            local::config_check(file.as_deref().unwrap_or(&cli.config), &cli.state_dir, *json),
            2,
        ),
        Command::Services => (local::services(), 2),
        Command::Status { json } => (status_command(&client(), &cli.state_dir, *json), 1),
        Command::Start { length, reason } => (period::start(&client(), *length, reason.clone()), 1),
        Command::Extend { by } => (period::extend(&client(), *by), 1),
        Command::Unlock(args) => (unlock(&client(), args), 1),
        Command::Completions { shell } => (completions(*shell), 2),
        Command::Man => (man(), 2),
        Command::Install(args) => (install::install(args), 1),
        Command::Uninstall(args) => (install::uninstall(args, cli.socket.as_deref(), &cli.state_dir), 1),
        Command::Guard(args) => (install::guard::guard(args, cli.socket.as_deref(), &cli.state_dir), 1),
        Command::Ca(args) => (install::ca::ca(args, cli.socket.as_deref(), &cli.state_dir), 1),
    };
    match result {
        Ok(code) => code,
        // Whoever read our output stopped reading: nothing to say, nobody to say it to.
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ncd: {error:#}");
            ExitCode::from(error_code)
        }
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn status_command(client: &Client, state_dir: &std::path::Path, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        let status = client.status()?;
        say!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        let status = client.status()?;
        std::io::stdout().write_all(status::render(&status, human::Style::for_stdout()).as_bytes())?;
        let problems = install::ca::ca_trust_problems(std::path::Path::new("/"), state_dir);
        std::io::stdout().write_all(status::ca_trust(&problems, human::Style::for_stdout()).as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}

fn unlock(client: &Client, args: &UnlockArgs) -> anyhow::Result<ExitCode> {
    if args.cancel {
        period::cancel(client)
    } else if args.confirm {
        confirm::run(client)
    } else {
        period::request(client, args.scope.map(Into::into), args.why.clone())
    }
}

fn completions(shell: Shell) -> anyhow::Result<ExitCode> {
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    // Into a buffer first: `generate` panics when it cannot write.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "ncd", &mut script);
    std::io::stdout().write_all(&script)?;
    Ok(ExitCode::SUCCESS)
}

fn man() -> anyhow::Result<ExitCode> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut page)?;
    std::io::stdout().write_all(&page)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
