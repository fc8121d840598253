//! Names to ask a policy about, and the question itself.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use ncd_config::catalog::SERVICES;
use ncd_config::guards::GUARD_RULES;
use ncd_config::lists::parse_list;
use ncd_config::{Config, DomainName, ListSource};
use ncd_policy::{Policy, Verdict};

use crate::fixture::{LISTS, fixture};

/// True when `policy` blocks `name` (normal form).
pub(crate) fn blocked(policy: &Policy, name: &str) -> bool {
    matches!(policy.verdict(name.as_bytes()), Verdict::Blocked(_))
}

/// Adds `name`, a subdomain of it, and every parent of it (at label boundaries).
pub(crate) fn add_with_family(names: &mut BTreeSet<String>, name: &str) {
    let sub = format!("zz.{name}");
    if DomainName::parse(&sub).is_ok() {
        names.insert(sub);
    }
    let mut rest = name;
    loop {
        names.insert(rest.to_string());
        match rest.split_once('.') {
            Some((_, parent)) => rest = parent,
            None => break,
        }
    }
}

/// The guard names and every catalog domain, each with its family.
fn fixed_names() -> &'static BTreeSet<String> {
    static NAMES: OnceLock<BTreeSet<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut names = BTreeSet::new();
        for rule in GUARD_RULES {
            add_with_family(&mut names, rule.domain);
        }
        for service in SERVICES {
            for domain in service.domains {
                add_with_family(&mut names, domain);
            }
        }
        names
    })
}

/// Every name the configs' rules speak of (domains, exceptions, their lists'
/// names when they are fixture lists), the guard names and the catalog's domains,
/// each with its family.
pub(crate) fn config_names(configs: &[&Config]) -> BTreeSet<String> {
    let mut names = fixed_names().clone();
    let fixture = fixture();
    for config in configs {
        for rule in config.block.domains.iter().chain(&config.block.allow) {
            add_with_family(&mut names, rule.name.as_str());
        }
        for list in &config.block.lists {
            let ListSource::File(path) = list else { continue };
            for ((_, text), fixture_path) in LISTS.iter().zip(fixture.list_paths()) {
                if *path == fixture_path {
                    let mut found = Vec::new();
                    parse_list(text, |rule| found.push(rule.name.to_string()), |_| {});
                    for name in found {
                        add_with_family(&mut names, &name);
                    }
                }
            }
        }
    }
    names
}
