//! `explain`: whether a name is blocked and by which rule, as `ncd check` says it.
//! The daemon answers `check` with it; the CLI uses it offline when ncdd is down.

use ncd_config::DomainName;
use ncd_config::control::{Explanation, RuleRef};

use crate::{Match, Policy, Verdict};

/// Whether `name` is blocked under `policy`, and by which rule.
pub fn explain(policy: &Policy, name: &DomainName) -> Explanation {
    let rule = |m: &Match<'_>| RuleRef {
        rule: m.to_string(),
        source: policy.source_name(m.source),
    };
    let (blocked, by, allowed_by) = match policy.verdict(name.as_str().as_bytes()) {
        Verdict::Pass => (false, None, None),
        Verdict::Blocked(m) => (true, Some(rule(&m)), None),
        Verdict::Allowed { rule: r, exception } => (false, Some(rule(&r)), Some(rule(&exception))),
        Verdict::Steer(m) => {
            return Explanation {
                name: name.as_str().to_string(),
                blocked: false,
                by: Some(rule(&m)),
                allowed_by: None,
                steered: true,
            };
        }
    };
    Explanation {
        name: name.as_str().to_string(),
        blocked,
        by,
        allowed_by,
        steered: false,
    }
}
