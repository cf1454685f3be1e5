//! `keyburn rules list` and `keyburn rules check`, and the rule selection
//! shared with `scan`.

use std::path::Path;

use anyhow::{bail, Context, Result};
use keyburn_scanner::engine::check_examples;
use keyburn_scanner::rules::{GitleaksConfig, RevokeKind};
use keyburn_scanner::{Confidence, Engine, RuleSet};

use crate::cli::{CheckArgs, ListArgs, MinConfidence, RuleSelection};

impl From<MinConfidence> for Confidence {
    fn from(m: MinConfidence) -> Confidence {
        match m {
            MinConfidence::Low => Confidence::Low,
            MinConfidence::Medium => Confidence::Medium,
            MinConfidence::High => Confidence::High,
        }
    }
}

/// The rules a run uses: the built-in ones (unless disabled; with their
/// examples when `examples`, which a scan does not read), a gitleaks
/// configuration (`--config`, or a `.gitleaks.toml` in `root` when no
/// `--rules` is given), the `--rules` files (which may override built-in
/// ids), then `--enable-rule`/`--disable-rule`.
pub fn load_rules(sel: &RuleSelection, root: Option<&Path>, examples: bool) -> Result<RuleSet> {
    let gitleaks_file = sel.config.clone().or_else(|| {
        root.map(|r| r.join(".gitleaks.toml"))
            .filter(|p| sel.rules.is_empty() && p.is_file())
    });
    let gitleaks =
        match &gitleaks_file {
            Some(p) => Some(GitleaksConfig::load(p).with_context(|| {
                format!("cannot use the gitleaks configuration {}", p.display())
            })?),
            None => None,
        };
    let builtin = !sel.no_builtin_rules && gitleaks.as_ref().is_none_or(|g| g.use_default);
    let mut set = if builtin && examples {
        RuleSet::builtin()
    } else if builtin {
        RuleSet::builtin_to_scan()
    } else {
        RuleSet::default()
    };
    if let Some(g) = gitleaks {
        set.retain(|r| !g.disabled.contains(&r.id));
        set.merge(g.rules)?;
    }
    for path in &sel.rules {
        let user = RuleSet::load_file(path)?;
        set.merge(user)
            .with_context(|| format!("cannot add the rules of {}", path.display()))?;
    }
    for id in sel.enable.iter().chain(&sel.disable) {
        if set.get(id).is_none() {
            bail!("unknown rule id {id:?} (see `keyburn rules list`)");
        }
    }
    if !sel.enable.is_empty() {
        // An enabled rule keeps the context rules it takes parts from.
        let context: Vec<String> = set
            .rules()
            .iter()
            .filter(|r| sel.enable.contains(&r.id))
            .flat_map(|r| &r.pair)
            .filter(|p| set.get(&p.rule).is_some_and(|r| r.context))
            .map(|p| p.rule.clone())
            .collect();
        set.retain(|r| sel.enable.contains(&r.id) || context.contains(&r.id));
    }
    set.retain(|r| !sel.disable.contains(&r.id));
    if set.is_empty() {
        bail!("no rules selected");
    }
    Ok(set)
}

pub fn list(args: ListArgs) -> Result<u8> {
    let set = load_rules(&args.selection, Some(Path::new(".")), true)?;
    let min: Confidence = args.selection.min_confidence.into();
    let rules: Vec<_> = set.rules().iter().filter(|r| r.confidence >= min).collect();
    let caps = |r: &keyburn_scanner::rules::Rule| match set.check_of(r) {
        Some((_, _, c)) => (c.validates(), c.revoke_kind()),
        None => (false, RevokeKind::None),
    };
    if args.json {
        let rows = rules
            .iter()
            .map(|r| {
                let mut v = serde_json::to_value(r)?;
                let (validate, revoke) = caps(r);
                v["validate"] = validate.into();
                v["revoke"] = revoke.as_str().into();
                Ok(v)
            })
            .collect::<Result<Vec<_>, serde_json::Error>>()?;
        out!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    let width = rules.iter().map(|r| r.id.len()).max().unwrap_or(0);
    out!(
        "{:width$}  {:6}  {:12}  {:8}  {:6}  NAME",
        "ID",
        "CONF",
        "PROVIDER",
        "VALIDATE",
        "REVOKE"
    );
    for r in &rules {
        let (validate, revoke) = caps(r);
        out!(
            "{:width$}  {:6}  {:12}  {:8}  {:6}  {}",
            r.id,
            r.confidence.as_str(),
            r.provider.as_deref().unwrap_or("-"),
            if validate { "yes" } else { "-" },
            revoke.as_str(),
            r.name
        );
    }
    out!("{} rules", rules.len());
    Ok(0)
}

pub fn check(args: CheckArgs) -> Result<u8> {
    let mut bad = 0usize;
    for path in &args.files {
        let set = match RuleSet::load_file(path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("keyburn: error: {e}");
                bad += 1;
                continue;
            }
        };
        let failures = check_examples(&Engine::new(set.clone())?);
        let cases: usize = set
            .rules()
            .iter()
            .map(|r| r.examples.len() + r.counterexamples.len())
            .sum();
        for f in &failures {
            let what = if f.expected_match {
                "example not detected"
            } else {
                "counterexample detected"
            };
            eprintln!(
                "{}: rule {:?}: {what}: {:?}",
                path.display(),
                f.rule,
                f.text
            );
        }
        let no_examples: Vec<&str> = set
            .rules()
            .iter()
            .filter(|r| r.examples.is_empty())
            .map(|r| r.id.as_str())
            .collect();
        if !no_examples.is_empty() {
            eprintln!(
                "{}: warning: rules without examples: {}",
                path.display(),
                no_examples.join(", ")
            );
        }
        out!(
            "{}: {} rules, {} cases, {} failed",
            path.display(),
            set.len(),
            cases,
            failures.len()
        );
        if !failures.is_empty() {
            bad += 1;
        }
    }
    Ok(if bad == 0 { 0 } else { 1 })
}
