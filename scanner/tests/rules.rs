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

#[test]
fn the_set_a_scan_loads_is_the_builtin_set_without_its_cases() {
    let full = RuleSet::builtin();
    let lean = RuleSet::builtin_to_scan();
    assert_eq!(full.len(), lean.len());
    for (full, lean) in full.rules().iter().zip(lean.rules()) {
        assert!(lean.examples.is_empty() && lean.counterexamples.is_empty());
        let mut without = full.clone();
        without.examples.clear();
        without.counterexamples.clear();
        assert_eq!(
            serde_json::to_value(&without).unwrap(),
            serde_json::to_value(lean).unwrap(),
            "{}",
            full.id
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
    // A rule anchored at the start of the file (a whole-file key) costs
    // one look per file instead.
    // A one-byte keyword would send every scan to the slower Aho-Corasick
    // prefilter.
    for rule in RuleSet::builtin().rules() {
        assert!(
            !rule.keywords.is_empty() || rule.regex.starts_with(r"\A"),
            "{} has no keywords",
            rule.id
        );
        assert!(
            rule.keywords.iter().all(|k| k.len() >= 2),
            "{} has a one-byte keyword",
            rule.id
        );
    }
}

#[test]
fn the_builtin_set_covers_every_confidence_level() {
    let set = RuleSet::builtin();
    for c in [Confidence::High, Confidence::Medium, Confidence::Low] {
        assert!(set.rules().iter().any(|r| r.confidence == c), "{c:?}");
    }
}

/// The findings of the built-in rules in `text`, paired as a scan pairs
/// them.
fn paired_findings(text: &str) -> Vec<keyburn_scanner::finding::Finding> {
    use keyburn_scanner::finding::{pair_parts, Finding, LineIndex};
    let rules = RuleSet::builtin();
    let engine = Engine::new(rules.clone()).unwrap();
    let mut lines = LineIndex::new();
    let mut findings: Vec<Finding> = engine
        .scan(text.as_bytes())
        .iter()
        .map(|m| {
            Finding::new(
                &engine.rules()[m.rule],
                "creds",
                text.as_bytes(),
                m,
                &mut lines,
            )
        })
        .collect();
    pair_parts(&mut findings, |id| rules.get(id));
    findings
}

#[test]
fn a_secret_key_takes_its_nearby_key_id_as_a_part_and_a_lone_one_loses_confidence() {
    // Assembled, so that no key-shaped literal sits in the file.
    let id = format!("{}{}", "AKIA", "D6MX4MUX6B2PZCYC");
    let (near, far) = (
        ["kYpIygfdM7ENA8d5", "vFldPGYYJvW5hANsbEvrSFag"].concat(),
        ["EaBp0vXnJaE/9I0My", "TLUyi0kn1Gnt11CuZyzaA3U"].concat(),
    );
    let findings = paired_findings(&format!(
        "aws_access_key_id = {id}\naws_secret_access_key = {near}\n\n\n\n\n\n\n\nother_secret_access_key = {far}\n"
    ));
    let secret = |s: &str| findings.iter().find(|f| f.secret == s).unwrap();
    let paired = secret(&near);
    assert_eq!(paired.parts.get("access_key_id"), Some(&id));
    assert_eq!(paired.confidence, keyburn_scanner::Confidence::High);
    let lone = secret(&far);
    assert!(lone.parts.is_empty());
    assert_eq!(lone.confidence, keyburn_scanner::Confidence::Medium);
}

#[test]
fn a_twilio_auth_token_takes_its_account_sid_which_is_not_reported() {
    let sid = format!("AC{}", "4f0e2d9c8b7a61538e2f4d6c0b9a7e13");
    let token = ["9d3c5e7f1a2b4c6d", "8e0f1a3b5c7d9e2f"].concat();
    let findings = paired_findings(&format!(
        "TWILIO_ACCOUNT_SID={sid}\nTWILIO_AUTH_TOKEN={token}\n"
    ));
    let ids: Vec<&str> = findings.iter().map(|f| f.rule_id.as_str()).collect();
    assert_eq!(
        ids,
        ["twilio-auth-token"],
        "the SID is context, not a finding"
    );
    assert_eq!(findings[0].parts.get("account_sid"), Some(&sid));
}

#[test]
fn an_entra_client_secret_takes_tenant_and_client_id_and_loses_confidence_without_them() {
    let secret = format!("{}Q~{}", "Ab18", "k2Lm3Nn4Op5Qq6Rr7Ss8Tt9Uu0Vv1Wx");
    let (tenant, client) = (
        "3f1c2a8e-5b7d-4e9a-8c21-6d0f4b9e7a13",
        "8d2e4f60-1a3b-4c5d-9e7f-0a1b2c3d4e5f",
    );
    // `az ad sp create-for-rbac` prints the three together.
    let findings = paired_findings(&format!(
        "{{\n  \"appId\": \"{client}\",\n  \"displayName\": \"ci\",\n  \"password\": \"{secret}\",\n  \"tenant\": \"{tenant}\"\n}}\n"
    ));
    let f = findings
        .iter()
        .find(|f| f.rule_id == "azure-ad-client-secret")
        .unwrap();
    assert_eq!(f.parts.get("tenant").map(String::as_str), Some(tenant));
    assert_eq!(f.parts.get("client_id").map(String::as_str), Some(client));
    assert_eq!(f.confidence, keyburn_scanner::Confidence::High);
    assert!(findings
        .iter()
        .all(|f| !f.rule_id.starts_with("azure-") || f.rule_id == "azure-ad-client-secret"));
    // With only the tenant near it, one part is missing.
    let findings = paired_findings(&format!(
        "AZURE_TENANT_ID={tenant}\nAZURE_CLIENT_SECRET={secret}\n"
    ));
    let f = findings
        .iter()
        .find(|f| f.rule_id == "azure-ad-client-secret")
        .unwrap();
    assert_eq!(f.parts.get("tenant").map(String::as_str), Some(tenant));
    assert!(!f.parts.contains_key("client_id"));
    assert_eq!(f.confidence, keyburn_scanner::Confidence::Medium);
}

#[test]
fn parts_come_from_the_rules_named_groups_and_shapes_from_secret_first_regexes() {
    let rules = RuleSet::builtin();
    let pg = rules.get("postgres-url-password").unwrap();
    let url = format!(
        "postgres://app:{}@db.internal.acme.io:5433/billing",
        "PNcTa6XA5OHVZPp2bPVl"
    );
    let parts = pg.parts(&url);
    assert_eq!(parts.get("user").map(String::as_str), Some("app"));
    assert_eq!(
        parts.get("host").map(String::as_str),
        Some("db.internal.acme.io")
    );
    assert_eq!(parts.get("port").map(String::as_str), Some("5433"));
    assert_eq!(parts.get("database").map(String::as_str), Some("billing"));
    assert!(!parts.contains_key("secret"));
    assert!(rules.get("github-pat").unwrap().secret_first());
    assert!(!rules.get("aws-secret-access-key").unwrap().secret_first());
}

#[test]
fn every_check_a_rule_names_exists_and_every_provider_table_is_valid() {
    let rules = RuleSet::builtin();
    rules.check_providers().unwrap();
    // Loading the built-ins skips the references between rules (a scan
    // starts faster); merging checks them.
    RuleSet::default().merge(rules.clone()).unwrap();
    let mut validating = 0;
    for r in rules.rules() {
        if r.check.is_some() {
            let (_, _, c) = rules
                .check_of(r)
                .unwrap_or_else(|| panic!("{}: its check is missing", r.id));
            validating += usize::from(c.validates());
        }
    }
    assert!(validating > 0);
}

#[test]
fn every_rule_with_a_check_says_how_to_replace_its_secret() {
    // `keyburn incident` tells a person how to issue a replacement: the
    // provider's `rotate`, or the check's manual steps and console page.
    let rules = RuleSet::builtin();
    let missing: std::collections::BTreeSet<String> = rules
        .rules()
        .iter()
        .filter(|r| rules.check_of(r).is_some() && rules.rotation(r).is_none())
        .map(|r| r.provider.clone().unwrap_or_default())
        .collect();
    assert!(
        missing.is_empty(),
        "providers without rotation steps: {missing:?}"
    );
    let github = rules.get("github-pat").unwrap();
    assert!(rules
        .rotation(github)
        .unwrap()
        .contains("https://github.com/settings/tokens"));
}
