//! The commands that read the config file themselves, without the daemon:
//! `ncd check NAME`, `ncd config check [FILE]` and `ncd services`.

use std::path::Path;
use std::process::ExitCode;

use ncd_config::{Config, DomainName, catalog};
use ncd_daemon::policy::{Policy, Verdict};

pub fn check(config: &Path, state_dir: &Path, name: &str, json: bool) -> anyhow::Result<ExitCode> {
    let config = Config::load(config)?;
    let name = DomainName::parse(name).map_err(anyhow::Error::msg)?;
    let policy = Policy::build(&config, state_dir);
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
        say!("{value}");
    } else {
        match verdict {
            Verdict::Pass => say!("{name} is not blocked: no rule covers it."),
            Verdict::Blocked(m) => {
                say!(
                    "{name} is blocked by the rule `{m}` ({}).",
                    policy.source_name(m.source)
                );
            }
            Verdict::Allowed { rule, exception } => say!(
                "{name} is not blocked: the rule `{rule}` ({}) covers it, but the exception `{exception}` ({}) lets it through.",
                policy.source_name(rule.source),
                policy.source_name(exception.source)
            ),
        }
    }
    Ok(if blocked { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

pub fn config_check(file: &Path, state_dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
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
        if let Some(error) = &source.error {
            line.push_str(&format!("  — not loaded: {error}"));
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

pub fn services() -> anyhow::Result<ExitCode> {
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
