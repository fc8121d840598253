//! The commands that read the config file themselves, without the daemon:
//! `ncd check NAME`, `ncd config check [FILE]` and `ncd services`.

use std::path::Path;
use std::process::ExitCode;

use ncd_config::control::{Explanation, RuleRef};
use ncd_config::{Config, DomainName, catalog};
use ncd_policy::{Policy, explain};
use ncd_state::StateDir;

use crate::client::{Client, ClientError};

/// `ncd check NAME|URL`: asks the running daemon (which knows the effective
/// policy, including a period's ratchet); when ncdd is not running, reads the
/// config file and says so. A URL (`https://…`) is judged by the proxy's profile
/// rules too, which only the daemon has.
pub(crate) fn check(
    client: &Client,
    config: &Path,
    state_dir: &Path,
    name: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if name.contains("://") {
        let verdict = client.check(name)?;
        if json {
            say!("{}", serde_json::to_string(&verdict)?);
        } else {
            say!("{}", in_words(&verdict));
        }
        return Ok(if verdict.blocked {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    let name = DomainName::parse(name).map_err(anyhow::Error::msg)?;
    let verdict = match client.check(name.as_str()) {
        Ok(verdict) => verdict,
        Err(ClientError::NotRunning { .. }) => {
            eprintln!("(ncdd is not running: this answer comes from {})", config.display());
            let config = Config::load(config)?;
            explain(&Policy::build(&config, &StateDir::new(state_dir)), &name)
        }
        Err(error) => return Err(error.into()),
    };
    if json {
        say!("{}", serde_json::to_string(&verdict)?);
    } else {
        say!("{}", in_words(&verdict));
    }
    Ok(if verdict.blocked {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `ncd check`'s sentence.
fn in_words(verdict: &Explanation) -> String {
    let name = &verdict.name;
    if verdict.steered && !verdict.blocked {
        let by = verdict
            .by
            .as_ref()
            .map_or(String::new(), |by| format!(" ({})", by.source));
        return if name.contains("://") {
            format!("{name} opens: ncd's proxy passes it{by}.")
        } else {
            format!(
                "{name} is not blocked: it goes through ncd's proxy{by}, which keeps the profiles your [[profile]] rules name closed."
            )
        };
    }
    match (verdict.blocked, &verdict.by, &verdict.allowed_by) {
        (true, Some(RuleRef { rule, source }), _) if name.contains("://") => {
            format!("{name} is blocked by {rule} ({source}).")
        }
        (true, Some(RuleRef { rule, source }), _) => format!("{name} is blocked by the rule `{rule}` ({source})."),
        (true, None, _) => format!("{name} is blocked."),
        (false, Some(by), Some(exception)) => format!(
            "{name} is not blocked: the rule `{}` ({}) covers it, but the exception `{}` ({}) lets it through.",
            by.rule, by.source, exception.rule, exception.source
        ),
        (false, ..) => format!("{name} is not blocked: no rule covers it."),
    }
}

pub(crate) fn config_check(file: &Path, state_dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let config = match Config::load(file) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{error}");
            return Ok(ExitCode::from(1));
        }
    };
    let started = std::time::Instant::now();
    let policy = Policy::build(&config, &StateDir::new(state_dir));
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
        say!("{value}");
        return Ok(ExitCode::SUCCESS);
    }
    say!("{} is valid.", file.display());
    say!();
    for source in policy.sources() {
        let mut line = format!("  {:>9} rules  {}", source.rules, source.source);
        if source.bad_lines > 0 {
            line.push_str(&format!("  ({} lines skipped; ncdd logs each)", source.bad_lines));
        }
        match (&source.error, source.from_copy) {
            (Some(error), true) => line.push_str(&format!("  — not read: {error}")),
            (Some(error), false) => line.push_str(&format!("  — not loaded: {error}")),
            (None, _) => {}
        }
        say!("{line}");
    }
    say!();
    say!(
        "{} names blocked (each with its subdomains unless written =name), {} exceptions.",
        policy.block_rules(),
        policy.allow_rules()
    );
    say!(
        "Compiled in {} ms into {:.1} MiB.",
        elapsed.as_millis(),
        policy.heap_bytes() as f64 / (1024.0 * 1024.0)
    );
    say!(
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

pub(crate) fn services() -> anyhow::Result<ExitCode> {
    for service in catalog::SERVICES {
        let aliases = if service.aliases.is_empty() {
            String::new()
        } else {
            format!(" (also: {})", service.aliases.join(", "))
        };
        say!("{}{aliases}", service.name);
        say!("    {}", service.domains.join(" "));
    }
    Ok(ExitCode::SUCCESS)
}
