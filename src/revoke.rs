//! `keyburn revoke`: kill secrets through their providers' APIs and check
//! that they are dead. Each secret is validated first (an already dead
//! one is `not_found`, and nothing is sent), revoked with one call that
//! is never repeated blind, then validated again to confirm.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};
use keyburn_responder::providers::{Checker, Registry, Revoked, Secret, Validity};
use keyburn_scanner::finding::{mask, ValidationStatus, REDACTED};
use keyburn_scanner::RuleSet;
use serde::Serialize;

use crate::cli::{RevokeArgs, TableFormat};
use crate::validate::{load_rules, registry, runtime, subjects, PartsReaders, Subject};

/// How one revocation ended (the JSON contract of `revoke -f json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Revoked, and a validation afterwards says it is dead.
    Revoked,
    /// The provider took the revocation; nothing can confirm it.
    Accepted,
    NotAuthorized,
    /// Already dead or gone: nothing was sent.
    NotFound,
    /// No API: a person must do it (the steps are given).
    Manual,
    /// The revocation call got no answer: it may have happened. Not
    /// repeated; check the provider before trying again.
    Unknown,
    /// `--dry-run`: what would be done.
    DryRun,
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Revoked => "revoked",
            Outcome::Accepted => "accepted",
            Outcome::NotAuthorized => "not_authorized",
            Outcome::NotFound => "not_found",
            Outcome::Manual => "manual",
            Outcome::Unknown => "unknown",
            Outcome::DryRun => "dry_run",
            Outcome::Error => "error",
        }
    }
}

#[derive(Serialize)]
struct Row {
    rule_id: String,
    provider: String,
    secret: String,
    outcome: Outcome,
    reason: String,
}

/// After a revocation, validate at once, then again after each of these
/// waits, before believing the provider did not do it (revocations take a
/// moment to spread).
const CONFIRM_WAITS: [u64; 2] = [1, 2];

async fn revoke_one(c: &Checker, secret: &Secret, dry_run: bool) -> (Outcome, String) {
    if let Some(done) = precheck(c, secret, dry_run).await {
        return done;
    }
    if dry_run {
        return dry_run_outcome(c);
    }
    match call(c, secret).await {
        Ok(reason) => confirm(c, secret, &reason).await,
        Err(ended) => ended,
    }
}

/// Before revoking: a secret its provider says is dead is `not_found`,
/// and nothing is sent. `None`: go on and revoke.
pub async fn precheck(c: &Checker, secret: &Secret, dry_run: bool) -> Option<(Outcome, String)> {
    if !c.validates() {
        return None;
    }
    match c.validate(secret).await {
        Ok(v) if v.validity == Validity::Inactive => {
            Some((Outcome::NotFound, format!("already dead: {}", v.reason)))
        }
        Ok(_) => None,
        // A secret keyburn cannot test is still revoked.
        Err(e) if dry_run => Some((Outcome::Error, e.to_string())),
        Err(_) => None,
    }
}

/// What `--dry-run` would do.
pub fn dry_run_outcome(c: &Checker) -> (Outcome, String) {
    match c.manual().filter(|_| !c.revokes_by_api()) {
        Some(steps) => (Outcome::Manual, steps),
        None if c.revokes_by_api() => (
            Outcome::DryRun,
            format!("would revoke through the {} API", c.provider_name),
        ),
        None => (Outcome::Error, "nothing revokes it".into()),
    }
}

/// The one revocation call. `Ok`: the provider says it revoked it (to be
/// confirmed); `Err`: how it ended otherwise.
pub async fn call(c: &Checker, secret: &Secret) -> Result<String, (Outcome, String)> {
    match c.revoke(secret).await {
        Ok(Revoked::Revoked(r)) => Ok(r),
        Ok(Revoked::Accepted(r)) => Err((Outcome::Accepted, r)),
        Ok(Revoked::NotFound(r)) => Err((Outcome::NotFound, r)),
        Ok(Revoked::NotAuthorized(r)) => Err((Outcome::NotAuthorized, r)),
        Ok(Revoked::Unknown(r)) => Err((Outcome::Unknown, r)),
        Ok(Revoked::Manual(steps)) => Err((Outcome::Manual, steps)),
        Err(e) => Err((Outcome::Error, e.to_string())),
    }
}

/// After a revocation: validate at once and after each of
/// [`CONFIRM_WAITS`] before believing the provider did not do it.
pub async fn confirm(c: &Checker, secret: &Secret, reason: &str) -> (Outcome, String) {
    if !c.validates() {
        return (
            Outcome::Accepted,
            format!("{reason}; nothing can confirm it"),
        );
    }
    let mut last = String::new();
    for wait in std::iter::once(0).chain(CONFIRM_WAITS) {
        tokio::time::sleep(Duration::from_secs(wait)).await;
        match c.validate(secret).await {
            Ok(v) if v.validity == Validity::Inactive => {
                return (
                    Outcome::Revoked,
                    format!("{reason}; confirmed: {}", v.reason),
                )
            }
            Ok(v) => last = format!("{}: {}", v.validity.as_str(), v.reason),
            Err(e) => last = e.to_string(),
        }
    }
    (
        Outcome::Accepted,
        format!("{reason}; but a validation after it still says {last}"),
    )
}

/// The distinct secrets of a keyburn JSON or JSONL report.
pub fn from_report(rules: &RuleSet, path: &Path, only_verified: bool) -> Result<Vec<Subject>> {
    let findings = crate::report_cmd::read(path)?.findings;
    let mut seen = std::collections::HashSet::new();
    let mut readers = PartsReaders::new(rules);
    let mut out = Vec::new();
    for (i, f) in findings.iter().enumerate() {
        let field = |k: &str| f.get(k).and_then(|v| v.as_str());
        let (Some(rule_id), Some(secret)) = (field("rule_id"), field("secret")) else {
            bail!(
                "{}: finding {}: no rule_id or secret (a report from another tool?)",
                path.display(),
                i + 1
            );
        };
        if secret == REDACTED {
            bail!(
                "{}: the report is redacted; scan again without --redact to revoke from it",
                path.display()
            );
        }
        if only_verified {
            let status = f
                .pointer("/validation/status")
                .and_then(|v| v.as_str())
                .and_then(|s| s.parse::<ValidationStatus>().ok());
            if status != Some(ValidationStatus::Active) {
                continue;
            }
        }
        let mut parts = field("match")
            .map(|m| readers.read(rule_id, m))
            .unwrap_or_default();
        if let Some(given) = f.get("parts").and_then(|p| p.as_object()) {
            for (k, v) in given {
                if let Some(v) = v.as_str() {
                    parts.insert(k.clone(), v.to_string());
                }
            }
        }
        if seen.insert((rule_id.to_string(), secret.to_string())) {
            out.push(Subject {
                rule_id: rule_id.to_string(),
                secret: Secret {
                    value: secret.to_string(),
                    parts,
                },
            });
        }
    }
    Ok(out)
}

pub fn run(a: RevokeArgs) -> Result<u8> {
    let rules = load_rules(&a.common.rules)?;
    let mut subjects = match (&a.report, &a.secret) {
        (Some(path), _) => from_report(&rules, path, a.only_verified)?,
        (None, Some(s)) => subjects(&rules, s, a.rule.as_deref(), &a.common.parts)?,
        (None, None) => bail!("give a secret, `-`, or --report FILE"),
    };
    for s in &mut subjects {
        for (k, v) in &a.common.parts {
            s.secret.parts.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    let registry: Registry = registry(&rules, &a.common.providers)?;
    let rows: Vec<Row> = runtime()?.block_on(async {
        let mut rows = Vec::new();
        for s in &subjects {
            let (provider, (outcome, reason)) = match registry.for_rule(&s.rule_id) {
                Some(c) => (c.family.clone(), revoke_one(c, &s.secret, a.dry_run).await),
                None => (
                    String::new(),
                    (
                        Outcome::Error,
                        format!("no provider check for rule {}", s.rule_id),
                    ),
                ),
            };
            rows.push(Row {
                rule_id: s.rule_id.clone(),
                provider,
                secret: mask(&s.secret.value),
                outcome,
                reason,
            });
        }
        rows
    });
    match a.common.format {
        TableFormat::Json => out!("{}", serde_json::to_string_pretty(&rows)?),
        TableFormat::Human => {
            for r in &rows {
                out!(
                    "{:<14} {:<14} {:<28} {}",
                    r.secret,
                    r.outcome.as_str(),
                    r.rule_id,
                    r.reason
                );
            }
            if rows.is_empty() {
                eprintln!("keyburn: nothing to revoke");
            }
        }
    }
    let ok = |o: Outcome| {
        matches!(o, Outcome::Revoked | Outcome::NotFound) || (a.dry_run && o == Outcome::DryRun)
    };
    Ok(if rows.iter().all(|r| ok(r.outcome)) {
        0
    } else {
        1
    })
}
