//! Reading keyburn reports back (`revoke --report`, `incident --report`)
//! and `keyburn report merge`, which combines a sweep's shard reports.
//!
//! Findings are handled as JSON objects, so that every field a report
//! carries (including ones a newer keyburn added) passes through a merge.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};

use crate::cli::{MergeArgs, MergeFormat};

/// A keyburn report as read: its findings, and its stats when it has them
/// (JSONL reports have none).
pub struct ReadReport {
    pub findings: Vec<Value>,
    pub stats: Option<Map<String, Value>>,
}

/// Read a keyburn JSON (`version` 1) or JSONL report. Another tool's
/// report, a redacted one (for the caller to judge) or a newer version is
/// told apart with a clear message.
pub fn read(path: &Path) -> Result<ReadReport> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the report {}", path.display()))?;
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(mut o)) if o.contains_key("findings") => {
            match o.get("version").and_then(Value::as_u64) {
                Some(1) => {}
                v => bail!(
                    "{}: report version {} (this keyburn reads version 1)",
                    path.display(),
                    v.map_or_else(|| "missing".to_string(), |v| v.to_string())
                ),
            }
            let findings = match o.remove("findings") {
                Some(Value::Array(a)) => a,
                _ => bail!("{}: the report's `findings` is not a list", path.display()),
            };
            let stats = match o.remove("stats") {
                Some(Value::Object(s)) => Some(s),
                _ => None,
            };
            Ok(ReadReport { findings, stats })
        }
        Ok(Value::Array(_)) => bail!(
            "{} is a JSON array, not a keyburn report (gitleaks' format has no rule checks); \
             scan with `keyburn scan -f json`",
            path.display()
        ),
        // A JSONL report of one finding.
        Ok(one @ Value::Object(_)) if one.get("rule_id").is_some() => Ok(ReadReport {
            findings: vec![one],
            stats: None,
        }),
        Ok(_) => bail!("{} is not a keyburn JSON report", path.display()),
        Err(_) => {
            let findings = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .enumerate()
                .map(|(i, l)| {
                    let v: Value = serde_json::from_str(l).with_context(|| {
                        format!(
                            "{}: line {}: not JSON (nor a JSON report)",
                            path.display(),
                            i + 1
                        )
                    })?;
                    if v.get("rule_id").is_none() {
                        bail!(
                            "{}: line {}: not a keyburn finding (no rule_id)",
                            path.display(),
                            i + 1
                        );
                    }
                    Ok(v)
                })
                .collect::<Result<_>>()?;
            Ok(ReadReport {
                findings,
                stats: None,
            })
        }
    }
}

/// What makes two findings the same one across shard reports.
fn identity(f: &Value) -> (String, String, String, u64) {
    let s = |p: &str| {
        f.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let line = f.get("line").and_then(Value::as_u64).unwrap_or(0);
    (s("/fingerprint"), s("/repository"), s("/commit/id"), line)
}

/// The order a scan writes findings in: repository, path, line, column,
/// rule.
fn order_key(f: &Value) -> (String, String, u64, u64, String) {
    let s = |k: &str| f.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let n = |k: &str| f.get(k).and_then(Value::as_u64).unwrap_or(0);
    (
        s("repository"),
        s("path"),
        n("line"),
        n("column"),
        s("rule_id"),
    )
}

/// Add `b`'s stats to `a`'s: counts add up, lists join, `rules` (the same
/// in every shard of one configuration) keeps the largest, `duration_ms`
/// adds up (the work done, not the wall time of parallel shards).
fn add_stats(a: &mut Map<String, Value>, b: Map<String, Value>) {
    for (k, v) in b {
        let merged = match (a.remove(&k), v) {
            (None, v) => v,
            (Some(Value::Number(x)), Value::Number(y)) if k == "rules" => {
                Value::from(x.as_u64().unwrap_or(0).max(y.as_u64().unwrap_or(0)))
            }
            (Some(Value::Number(x)), Value::Number(y)) => {
                Value::from(x.as_u64().unwrap_or(0) + y.as_u64().unwrap_or(0))
            }
            (Some(Value::Array(mut x)), Value::Array(y)) => {
                x.extend(y);
                Value::Array(x)
            }
            (Some(x), _) => x,
        };
        a.insert(k, merged);
    }
}

/// Merge reports: findings deduplicated (first seen kept) and sorted as a
/// scan sorts them, stats added up.
pub fn merge_reports(reports: Vec<ReadReport>) -> (Vec<Value>, Map<String, Value>) {
    let mut seen = HashSet::new();
    let mut findings = Vec::new();
    let mut stats = Map::new();
    for r in reports {
        for f in r.findings {
            if seen.insert(identity(&f)) {
                findings.push(f);
            }
        }
        if let Some(s) = r.stats {
            add_stats(&mut stats, s);
        }
    }
    findings.sort_by_cached_key(order_key);
    (findings, stats)
}

pub fn merge(a: MergeArgs) -> Result<u8> {
    let reports = a
        .reports
        .iter()
        .map(|p| read(p))
        .collect::<Result<Vec<_>>>()?;
    let (findings, stats) = merge_reports(reports);
    let any = !findings.is_empty();
    let mut text = match a.format {
        MergeFormat::Json => serde_json::to_string_pretty(&serde_json::json!({
            "version": 1,
            "findings": findings,
            "stats": stats,
        }))?,
        MergeFormat::Jsonl => findings
            .iter()
            .map(serde_json::to_string)
            .collect::<serde_json::Result<Vec<_>>>()?
            .join("\n"),
    };
    if !text.is_empty() {
        text.push('\n');
    }
    match &a.output {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => std::io::stdout()
            .lock()
            .write_all(text.as_bytes())
            .context("cannot write the report")?,
    }
    Ok(u8::from(any))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report(findings: Vec<Value>, stats: Value) -> ReadReport {
        ReadReport {
            findings,
            stats: stats.as_object().cloned(),
        }
    }

    #[test]
    fn merging_dedupes_by_fingerprint_repository_commit_and_line() {
        let f = |fp: &str, repo: &str, commit: &str, line: u64| {
            json!({"rule_id": "r", "fingerprint": fp, "repository": repo,
                   "commit": {"id": commit}, "path": "a", "line": line, "column": 1})
        };
        let a = report(
            vec![f("x", "b/repo", "c1", 1), f("x", "a/repo", "c1", 1)],
            json!({"files_scanned": 2, "errors": 0, "rules": 262, "failed_repositories": ["q"]}),
        );
        let b = report(
            vec![
                f("x", "a/repo", "c1", 1),
                f("x", "a/repo", "c2", 1),
                f("x", "a/repo", "c1", 7),
            ],
            json!({"files_scanned": 3, "errors": 1, "rules": 262, "repositories": 4}),
        );
        let (findings, stats) = merge_reports(vec![a, b]);
        let ids: Vec<_> = findings.iter().map(identity).collect();
        assert_eq!(
            ids,
            [
                ("x".into(), "a/repo".into(), "c1".into(), 1),
                ("x".into(), "a/repo".into(), "c2".into(), 1),
                ("x".into(), "a/repo".into(), "c1".into(), 7),
                ("x".into(), "b/repo".into(), "c1".into(), 1),
            ]
        );
        assert_eq!(stats["files_scanned"], 5);
        assert_eq!(stats["errors"], 1);
        assert_eq!(stats["rules"], 262);
        assert_eq!(stats["repositories"], 4);
        assert_eq!(stats["failed_repositories"], json!(["q"]));
    }
}
