//! Property tests: the matcher agrees with the plain definition of a block, for
//! any names and rules.

use proptest::prelude::*;

use ncd_config::{DomainName, DomainRule, RuleScope};

use super::matcher::{RuleAction, SuffixSet};

/// Short labels from a small alphabet, so generated rules and names overlap often.
fn label() -> impl Strategy<Value = String> {
    "[ab]{1,2}"
}

fn name() -> impl Strategy<Value = String> {
    prop::collection::vec(label(), 1..5).prop_map(|labels| labels.join("."))
}

fn rule() -> impl Strategy<Value = (String, bool)> {
    (name(), any::<bool>())
}

fn set(rules: &[(String, bool)]) -> SuffixSet {
    let mut set = SuffixSet::new();
    for (i, (name, exact)) in rules.iter().enumerate() {
        let scope = if *exact { RuleScope::Exact } else { RuleScope::Subtree };
        set.insert(name, scope, RuleAction::Block, i as u16);
    }
    set
}

/// The definition: some rule covers the name (exact: equal; subtree: equal or a
/// subdomain at a label boundary).
fn covered(rules: &[(String, bool)], query: &str) -> bool {
    let query = DomainName::parse(query).unwrap();
    rules.iter().any(|(name, exact)| {
        let rule = DomainRule::parse(&if *exact { format!("={name}") } else { name.clone() }).unwrap();
        rule.covers(&query)
    })
}

proptest! {
    #[test]
    fn the_matcher_blocks_exactly_what_some_rule_covers(
        rules in prop::collection::vec(rule(), 0..12),
        query in name(),
    ) {
        let set = set(&rules);
        prop_assert_eq!(set.lookup(query.as_bytes()).is_some(), covered(&rules, &query));
    }

    #[test]
    fn blocked_iff_some_rule_covers_and_no_exception_does(
        rules in prop::collection::vec(rule(), 0..8),
        exceptions in prop::collection::vec(rule(), 0..4),
        query in name(),
    ) {
        let mut text = String::from("[guard]\nencrypted_dns = false\n[block]\ndomains = [");
        text.push_str(&rules.iter().map(|(n, e)| format!("\"{}{n}\"", if *e { "=" } else { "" })).collect::<Vec<_>>().join(", "));
        text.push_str("]\nallow = [");
        text.push_str(&exceptions.iter().map(|(n, e)| format!("\"{}{n}\"", if *e { "=" } else { "" })).collect::<Vec<_>>().join(", "));
        text.push_str("]\n");
        let config = ncd_config::Config::parse(&text, std::path::Path::new("p.toml")).unwrap();
        let policy = super::Policy::build(&config, &ncd_state::StateDir::new("/nonexistent"));
        let blocked = matches!(policy.verdict(query.as_bytes()), super::Verdict::Blocked(_));
        prop_assert_eq!(blocked, covered(&rules, &query) && !covered(&exceptions, &query));
    }

    #[test]
    fn normalisation_is_idempotent_and_case_and_dot_blind(query in name(), upper in any::<bool>(), dot in any::<bool>()) {
        let mut written = if upper { query.to_ascii_uppercase() } else { query.clone() };
        if dot {
            written.push('.');
        }
        let once = DomainName::parse(&written).unwrap();
        prop_assert_eq!(once.as_str(), query.as_str());
        prop_assert_eq!(DomainName::parse(once.as_str()).unwrap(), once);
    }
}
