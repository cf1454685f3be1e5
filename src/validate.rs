//! `keyburn validate`, and `scan --verify`: ask providers whether secrets
//! are live, through the responder's provider registry. Also the pieces
//! `revoke` shares: the registry from the command line, the secrets to
//! check (given or read from stdin, their rule inferred from their shape).

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use keyburn_responder::config::Config;
use keyburn_responder::http::Http;
use keyburn_responder::providers::{self, Options, Registry, Secret, Validation, ValidationStatus};
use keyburn_scanner::finding::{mask, Finding};
use keyburn_scanner::rules::PartsReader;
use keyburn_scanner::{Engine, RuleSet};
use serde_json::json;

use crate::cli::{ProviderArgs, TableFormat, ValidateArgs};

/// The rules `validate` and `revoke` know: built-ins plus `--rules` files.
pub fn load_rules(extra: &[PathBuf]) -> Result<RuleSet> {
    let mut set = RuleSet::builtin();
    for path in extra {
        set.merge(RuleSet::load_file(path)?)
            .with_context(|| format!("cannot add the rules of {}", path.display()))?;
    }
    Ok(set)
}

/// The provider registry the command line describes.
pub fn registry(rules: &RuleSet, a: &ProviderArgs) -> Result<Registry> {
    let mut opts = Options {
        endpoints: a.endpoints.iter().cloned().collect(),
        allow_internal: a.allow_internal,
        ..Options::default()
    };
    let families = rules.providers();
    for key in opts.endpoints.keys() {
        let family = key.split('.').next().unwrap_or(key);
        if !families.contains_key(family) {
            let known: Vec<&str> = families.keys().copied().collect();
            bail!(
                "--endpoint names no provider {family:?} (known: {})",
                known.join(", ")
            );
        }
    }
    for r in &a.rates {
        let (family, n) = match r.split_once('=') {
            Some((f, n)) => (Some(f.to_string()), n),
            None => (None, r.as_str()),
        };
        let n: f64 = n
            .parse()
            .ok()
            .filter(|n: &f64| *n > 0.0)
            .with_context(|| format!("--rate {r:?}: not a positive number of requests/s"))?;
        match family {
            Some(f) => {
                opts.rates.insert(f, n);
            }
            None => {
                for f in families.keys() {
                    opts.rates.entry(f.to_string()).or_insert(n);
                }
            }
        }
    }
    let http = Http::new(Duration::from_secs(a.provider_timeout.max(1)))
        // A command waits for a rate limit only so long.
        .with_max_wait(Duration::from_secs(10));
    // AWS keys are read and deactivated with the caller's own AWS_*
    // credentials, as the responder's default configuration does.
    let mut aws = Config::default();
    if let Some(iam) = opts.endpoints.get("aws.iam") {
        aws.providers.aws.iam_url = iam.clone();
    }
    opts.aws = aws.aws(&http)?;
    Ok(Registry::new(rules, &http, &opts))
}

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// One secret to check, with the rule it belongs to.
pub struct Subject {
    pub rule_id: String,
    pub secret: Secret,
}

/// The secrets given on the command line (`-` reads stdin, one a line),
/// each with its rule: the one given, checked against the secret's shape,
/// or the one the secret's shape names.
pub fn subjects(
    rules: &RuleSet,
    given: &str,
    rule: Option<&str>,
    parts: &[(String, String)],
) -> Result<Vec<Subject>> {
    let secrets = read_secrets(given)?;
    let engine = Engine::new(rules.clone()).context("cannot build the rule engine")?;
    secrets
        .into_iter()
        .map(|s| {
            let rule_id = rule_for(rules, &engine, rule, &s)?;
            Ok(Subject {
                rule_id,
                secret: Secret {
                    value: s,
                    parts: parts.iter().cloned().collect(),
                },
            })
        })
        .collect()
}

/// The secrets given on the command line: one, or `-` for stdin's lines.
pub fn read_secrets(given: &str) -> Result<Vec<String>> {
    let secrets: Vec<String> = if given == "-" {
        std::io::stdin()
            .lock()
            .lines()
            .map(|l| l.map(|l| l.trim().to_string()))
            .filter(|l| l.as_ref().map_or(true, |l| !l.is_empty()))
            .collect::<std::io::Result<_>>()
            .context("cannot read secrets from stdin")?
    } else {
        vec![given.to_string()]
    };
    if secrets.is_empty() {
        bail!("no secret given");
    }
    Ok(secrets)
}

/// The rule of `secret`: the one given, checked against the secret's
/// shape, or the one its shape names (several is an error listing them).
pub fn rule_for(
    rules: &RuleSet,
    engine: &Engine,
    rule: Option<&str>,
    secret: &str,
) -> Result<String> {
    match rule {
        Some(id) => {
            check_shape(rules, engine, id, secret)?;
            Ok(id.to_string())
        }
        None => infer_rule(rules, engine, secret),
    }
}

/// The rules whose matches span the whole of `secret`.
fn whole_matches(engine: &Engine, secret: &str) -> Vec<String> {
    let mut ids: Vec<String> = engine
        .scan(secret.as_bytes())
        .iter()
        .filter(|m| m.start == 0 && m.end == secret.len())
        .map(|m| engine.rules()[m.rule].id.clone())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

fn check_shape(rules: &RuleSet, engine: &Engine, id: &str, secret: &str) -> Result<()> {
    let Some(rule) = rules.get(id) else {
        bail!("unknown rule id {id:?} (see `keyburn rules list`)");
    };
    if rules.check_of(rule).is_none() {
        bail!(
            "rule {id:?} has no provider check (see `keyburn rules list`: validate/revoke columns)"
        );
    }
    if rule.secret_first() && !whole_matches(engine, secret).iter().any(|r| r == id) {
        bail!(
            "the secret {} does not have the shape of rule {id:?} ({})",
            mask(secret),
            rule.name
        );
    }
    Ok(())
}

fn infer_rule(rules: &RuleSet, engine: &Engine, secret: &str) -> Result<String> {
    let candidates: Vec<String> = whole_matches(engine, secret)
        .into_iter()
        .filter(|id| rules.get(id).and_then(|r| rules.check_of(r)).is_some())
        .collect();
    match candidates.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!(
            "no rule with a provider check recognises {} by its shape; name one with --rule",
            mask(secret)
        ),
        many => bail!(
            "{} has the shape of several rules ({}); name one with --rule",
            mask(secret),
            many.join(", ")
        ),
    }
}

/// Validate one secret: a record for every outcome, never an error.
pub async fn check(registry: &Registry, subject: &Subject) -> Validation {
    match registry.for_rule(&subject.rule_id) {
        Some(c) => c.validation(&c.validate(&subject.secret).await),
        None => skipped(&subject.rule_id),
    }
}

fn skipped(rule_id: &str) -> Validation {
    providers::validation(
        "",
        &Err(providers::CheckError::Skipped(format!(
            "no validator for rule {rule_id}"
        ))),
    )
}

pub fn run(a: ValidateArgs) -> Result<u8> {
    let rules = load_rules(&a.common.rules)?;
    let subjects = subjects(&rules, &a.secret, a.rule.as_deref(), &a.common.parts)?;
    let registry = registry(&rules, &a.common.providers)?;
    let results: Vec<Validation> = runtime()?.block_on(async {
        let mut out = Vec::new();
        for s in &subjects {
            out.push(check(&registry, s).await);
        }
        out
    });
    match a.common.format {
        TableFormat::Json => {
            let rows: Vec<_> = subjects
                .iter()
                .zip(&results)
                .map(|(s, v)| {
                    json!({"rule_id": s.rule_id, "secret": mask(&s.secret.value), "validation": v})
                })
                .collect();
            out!("{}", serde_json::to_string_pretty(&rows)?);
        }
        TableFormat::Human => {
            for (s, v) in subjects.iter().zip(&results) {
                out!(
                    "{:<14} {:<9} {:<28} {}",
                    mask(&s.secret.value),
                    v.status.as_str(),
                    s.rule_id,
                    v.reason
                );
            }
        }
    }
    let all = |st: ValidationStatus| results.iter().all(|v| v.status == st);
    Ok(if all(ValidationStatus::Active) {
        0
    } else if results.iter().all(|v| {
        matches!(
            v.status,
            ValidationStatus::Active | ValidationStatus::Inactive
        )
    }) {
        1
    } else {
        crate::EXIT_ERROR
    })
}

/// Each rule's parts reader, compiled once a run (a report holds many
/// findings of a few rules).
pub struct PartsReaders<'r> {
    rules: &'r RuleSet,
    readers: HashMap<String, Option<PartsReader>>,
}

impl<'r> PartsReaders<'r> {
    pub fn new(rules: &'r RuleSet) -> PartsReaders<'r> {
        PartsReaders {
            rules,
            readers: HashMap::new(),
        }
    }

    /// The parts the rule's regex names in `matched`.
    pub fn read(&mut self, rule_id: &str, matched: &str) -> BTreeMap<String, String> {
        let rules = self.rules;
        self.readers
            .entry(rule_id.to_string())
            .or_insert_with(|| rules.get(rule_id).and_then(|r| r.parts_reader()))
            .as_ref()
            .map(|r| r.read(matched))
            .unwrap_or_default()
    }
}

/// `scan --verify`: validate every finding's secret, each distinct one
/// once, `workers` at a time; findings of rules without a validator say
/// `skipped`.
pub fn verify(
    findings: &mut [Finding],
    rules: &RuleSet,
    a: &ProviderArgs,
    workers: usize,
) -> Result<()> {
    let registry = Arc::new(registry(rules, a)?);
    let mut distinct: HashMap<(String, String, BTreeMap<String, String>), Vec<usize>> =
        HashMap::new();
    let mut readers = PartsReaders::new(rules);
    for (i, f) in findings.iter().enumerate() {
        let mut parts = readers.read(&f.rule_id, &f.matched);
        parts.extend(f.parts.clone());
        distinct
            .entry((f.rule_id.clone(), f.secret.clone(), parts))
            .or_default()
            .push(i);
    }
    let results = runtime()?.block_on(async move {
        let permits = Arc::new(tokio::sync::Semaphore::new(workers.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for ((rule_id, value, parts), idx) in distinct {
            let registry = Arc::clone(&registry);
            let permits = Arc::clone(&permits);
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let subject = Subject {
                    rule_id,
                    secret: Secret { value, parts },
                };
                let v = if subject.secret.value.is_empty() {
                    skipped(&subject.rule_id)
                } else {
                    check(&registry, &subject).await
                };
                (idx, v)
            });
        }
        let mut out = Vec::new();
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok(r) => out.push(r),
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        }
        out
    });
    for (idx, v) in results {
        for i in idx {
            findings[i].validation = Some(v.clone());
        }
    }
    Ok(())
}
