//! The built-in rules: they load, compile, and behave on their own examples
//! and counterexamples, all rules loaded together as in a real scan.

use keyburn_scanner::engine::{check_examples, EngineKind};
use keyburn_scanner::{Confidence, Engine, EngineBuilder, RuleSet};

#[test]
fn builtin_rules_compile_and_have_unique_ids() {
    let set = RuleSet::builtin();
    assert!(set.len() >= 120, "only {} rules", set.len());
    let mut ids = std::collections::HashSet::new();
    for rule in set.rules() {
        assert!(ids.insert(rule.id.clone()), "duplicate id {}", rule.id);
        rule.compile()
            .unwrap_or_else(|e| panic!("rule {} does not compile: {e}", rule.id));
    }
}

#[test]
fn every_builtin_rule_has_examples_and_counterexamples() {
    for rule in RuleSet::builtin().rules() {
        assert!(!rule.examples.is_empty(), "{} has no example", rule.id);
        assert!(
            !rule.counterexamples.is_empty(),
            "{} has no counterexample",
            rule.id
        );
    }
}

/// Every engine compiled into this build.
fn engines() -> Vec<Engine> {
    EngineKind::compiled_in()
        .iter()
        .map(|&k| {
            EngineBuilder::new(RuleSet::builtin())
                .kind(k)
                .build()
                .unwrap()
        })
        .collect()
}

#[test]
fn builtin_rule_examples_match_and_counterexamples_do_not() {
    for engine in engines() {
        check_builtin_examples(&engine);
    }
}

fn check_builtin_examples(engine: &Engine) {
    let failures = check_examples(engine);
    let report: Vec<String> = failures
        .iter()
        .map(|f| {
            format!(
                "{}: {} {:?}",
                f.rule,
                if f.expected_match {
                    "missed example"
                } else {
                    "matched counterexample"
                },
                f.text
            )
        })
        .collect();
    assert!(
        report.is_empty(),
        "{} failures with the {} engine:\n{}",
        report.len(),
        engine.kind().as_str(),
        report.join("\n")
    );
}

#[test]
fn every_builtin_rule_has_keywords_so_the_prefilter_gates_it() {
    for rule in RuleSet::builtin().rules() {
        assert!(!rule.keywords.is_empty(), "{} has no keywords", rule.id);
    }
}

#[test]
fn the_builtin_set_covers_every_confidence_level() {
    let set = RuleSet::builtin();
    for c in [Confidence::High, Confidence::Medium, Confidence::Low] {
        assert!(set.rules().iter().any(|r| r.confidence == c), "{c:?}");
    }
}
