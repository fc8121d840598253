//! `ncd`: the command line of the no-contact boundary.
//!
//! For now it reads the config itself (`ncd check`, `ncd config check`,
//! `ncd services`); the period commands arrive with the control socket and will
//! ask the daemon instead.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ncd_config::{Config, DomainName, catalog};
use ncd_daemon::policy::{Policy, Verdict};

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
    /// The daemon's control socket.
    #[arg(long, global = true, env = "NCD_SOCKET", default_value = ncd_config::DEFAULT_CONTROL_SOCKET)]
    socket: PathBuf,
    /// The daemon's state dir (for downloaded lists).
    #[arg(long, global = true, default_value = "/var/lib/ncd")]
    state_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Say whether a name is blocked, and by which rule. Exit status: 0 blocked,
    /// 1 not blocked, 2 error.
    Check {
        /// A domain name, e.g. www.instagram.com.
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
    let _ = &cli.socket; // used by the period commands (control socket)
    let result = match &cli.command {
        Command::Check { name, json } => check(&cli, name, *json),
        Command::Config {
            command: ConfigCommand::Check { file, json },
        } => config_check(file.as_deref().unwrap_or(&cli.config), &cli.state_dir, *json),
        Command::Services => services(),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("ncd: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn check(cli: &Cli, name: &str, json: bool) -> anyhow::Result<ExitCode> {
    let config = Config::load(&cli.config)?;
    let name = DomainName::parse(name).map_err(anyhow::Error::msg)?;
    let policy = Policy::build(&config, &cli.state_dir);
    let verdict = policy.verdict(name.as_str().as_bytes());
    let blocked = matches!(verdict, Verdict::Blocked(_));
    if json {
        let rule = |m: &ncd_daemon::policy::Match<'_>| serde_json::json!({ "rule": m.to_string(), "source": policy.source_name(m.source) });
        let value = match verdict {
            Verdict::Pass => serde_json::json!({ "name": name.as_str(), "blocked": false }),
            Verdict::Blocked(m) => serde_json::json!({ "name": name.as_str(), "blocked": true, "by": rule(&m) }),
            Verdict::Allowed { rule: r, exception } => serde_json::json!({
                "name": name.as_str(), "blocked": false, "by": rule(&r), "allowed_by": rule(&exception),
            }),
        };
        println!("{value}");
    } else {
        match verdict {
            Verdict::Pass => println!("{name} is not blocked: no rule covers it."),
            Verdict::Blocked(m) => {
                println!(
                    "{name} is blocked by the rule `{m}` ({}).",
                    policy.source_name(m.source)
                );
            }
            Verdict::Allowed { rule, exception } => println!(
                "{name} is not blocked: the rule `{rule}` ({}) covers it, but the exception `{exception}` ({}) lets it through.",
                policy.source_name(rule.source),
                policy.source_name(exception.source)
            ),
        }
    }
    Ok(if blocked { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn config_check(file: &Path, state_dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let config = match Config::load(file) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{error}");
            return Ok(ExitCode::from(1));
        }
    };
    let started = std::time::Instant::now();
    let policy = Policy::build(&config, state_dir);
    let elapsed = started.elapsed();
    if json {
        let value = serde_json::json!({
            "file": file.display().to_string(),
            "valid": true,
            "blocked_names": policy.block_rules(),
            "allow_exceptions": policy.allow_rules(),
            "sources": policy.sources(),
            "rule_bytes": policy.heap_bytes(),
            "compile_ms": elapsed.as_millis(),
        });
        println!("{value}");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{} is valid.", file.display());
    println!();
    for source in policy.sources() {
        let mut line = format!("  {:>9} rules  {}", source.rules, source.source);
        if source.bad_lines > 0 {
            line.push_str(&format!("  ({} lines skipped; ncdd logs each)", source.bad_lines));
        }
        if let Some(error) = &source.error {
            line.push_str(&format!("  — not loaded: {error}"));
        }
        println!("{line}");
    }
    println!();
    println!(
        "{} names blocked (each with its subdomains unless written =name), {} exceptions.",
        policy.block_rules(),
        policy.allow_rules()
    );
    println!(
        "Compiled in {} ms into {:.1} MiB.",
        elapsed.as_millis(),
        policy.heap_bytes() as f64 / (1024.0 * 1024.0)
    );
    println!(
        "Blocked names are answered {}, TTL {}s.",
        match config.dns.answer {
            ncd_config::BlockAnswer::Null => "0.0.0.0 / :: (no data for other types)",
            ncd_config::BlockAnswer::Nxdomain => "NXDOMAIN",
            ncd_config::BlockAnswer::Refused => "REFUSED",
        },
        config.dns.blocked_ttl.as_secs()
    );
    Ok(ExitCode::SUCCESS)
}

fn services() -> anyhow::Result<ExitCode> {
    for service in catalog::SERVICES {
        let aliases = if service.aliases.is_empty() {
            String::new()
        } else {
            format!(" (also: {})", service.aliases.join(", "))
        };
        println!("{}{aliases}", service.name);
        println!("    {}", service.domains.join(" "));
    }
    Ok(ExitCode::SUCCESS)
}
