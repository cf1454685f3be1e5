//! Baselines: findings a team has reviewed and accepted (a fake key in a
//! test, a key revoked long ago that still sits in history). A later scan
//! subtracts them by fingerprint, so only new leaks fail the build.
//!
//! A baseline file is either a previous keyburn report (`-f json` or
//! `-f jsonl`, redacted or not: only fingerprints are read), a gitleaks
//! JSON report, or a plain list of fingerprints, one per line, where `#`
//! starts a comment: keyburn's (32 hex digits) or gitleaks' as
//! `.gitleaksignore` lists them (`file:rule:line`, `commit:file:rule:line`).

use std::collections::HashSet;

use serde::Deserialize;

use super::Report;

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("line {line}: {message}")]
    Syntax { line: usize, message: String },
}

/// The fingerprints of accepted findings.
#[derive(Debug, Clone, Default)]
pub struct Baseline {
    fingerprints: HashSet<String>,
    /// gitleaks' fingerprints (see [`super::gitleaks_fingerprint`]).
    gitleaks: HashSet<String>,
}

#[derive(Deserialize)]
struct GitleaksLeak {
    #[serde(rename = "Fingerprint")]
    fingerprint: String,
}

#[derive(Deserialize)]
struct JsonReport {
    findings: Vec<JsonFinding>,
}

#[derive(Deserialize)]
struct JsonFinding {
    fingerprint: String,
}

impl Baseline {
    pub fn parse(text: &str) -> Result<Baseline, BaselineError> {
        let trimmed = text.trim_start();
        if trimmed.starts_with('[') {
            let leaks: Vec<GitleaksLeak> =
                serde_json::from_str(text).map_err(|e| BaselineError::Syntax {
                    line: e.line(),
                    message: format!("not a gitleaks JSON report: {e}"),
                })?;
            return Ok(Baseline {
                fingerprints: HashSet::new(),
                gitleaks: leaks.into_iter().map(|l| l.fingerprint).collect(),
            });
        }
        let mut gitleaks = HashSet::new();
        let fingerprints = if trimmed.starts_with('{') && !is_jsonl(trimmed) {
            let report: JsonReport =
                serde_json::from_str(text).map_err(|e| BaselineError::Syntax {
                    line: e.line(),
                    message: format!("not a keyburn JSON report: {e}"),
                })?;
            report.findings.into_iter().map(|f| f.fingerprint).collect()
        } else {
            let mut set = HashSet::new();
            for (i, raw) in text.lines().enumerate() {
                let syntax = |message: String| BaselineError::Syntax {
                    line: i + 1,
                    message,
                };
                // A JSONL finding is taken whole: its strings may hold '#'.
                if raw.trim_start().starts_with('{') {
                    let f: JsonFinding = serde_json::from_str(raw)
                        .map_err(|e| syntax(format!("not a keyburn JSONL finding: {e}")))?;
                    set.insert(f.fingerprint);
                    continue;
                }
                let line = raw.split('#').next().unwrap_or("").trim();
                if line.is_empty() {
                    continue;
                } else if is_fingerprint(line) {
                    set.insert(line.to_ascii_lowercase());
                } else if is_gitleaks_fingerprint(line) {
                    gitleaks.insert(line.to_string());
                } else {
                    return Err(syntax(format!(
                        "{line:?} is not a fingerprint (32 hex digits, or gitleaks' \
                         file:rule:line or commit:file:rule:line)"
                    )));
                }
            }
            set
        };
        Ok(Baseline {
            fingerprints,
            gitleaks,
        })
    }

    pub fn merge(&mut self, other: Baseline) {
        self.fingerprints.extend(other.fingerprints);
        self.gitleaks.extend(other.gitleaks);
    }

    pub fn len(&self) -> usize {
        self.fingerprints.len() + self.gitleaks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `fingerprint` (keyburn's) is accepted.
    pub fn contains(&self, fingerprint: &str) -> bool {
        self.fingerprints.contains(fingerprint)
    }

    /// Whether the baseline accepts `f`, by either kind of fingerprint.
    pub fn accepts(&self, f: &crate::finding::Finding) -> bool {
        self.fingerprints.contains(&f.fingerprint)
            || (!self.gitleaks.is_empty()
                && self.gitleaks.contains(&super::gitleaks_fingerprint(f)))
    }
}

/// `path:rule:line`, maybe behind a commit id: ends in `:<line>` and has at
/// least two colons before it.
fn is_gitleaks_fingerprint(s: &str) -> bool {
    let Some((rest, line)) = s.rsplit_once(':') else {
        return false;
    };
    !line.is_empty()
        && line.bytes().all(|b| b.is_ascii_digit())
        && rest
            .rsplit_once(':')
            .is_some_and(|(p, rule)| !p.is_empty() && !rule.is_empty())
}

/// A JSONL report has a whole finding on its first line; a JSON report's
/// first line is `{` or, written compactly, an object with no fingerprint.
fn is_jsonl(text: &str) -> bool {
    let first = text.lines().next().unwrap_or("");
    serde_json::from_str::<JsonFinding>(first).is_ok()
}

fn is_fingerprint(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Report {
    /// Drop the findings the baseline accepts; their number goes into the
    /// stats so the summary can say that something was held back.
    pub fn subtract(&mut self, baseline: &Baseline) {
        let before = self.findings.len();
        self.findings.retain(|f| !baseline.accepts(f));
        self.stats.baselined += (before - self.findings.len()) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0123456789abcdef0123456789abcdef";
    const B: &str = "fedcba9876543210fedcba9876543210";

    #[test]
    fn reads_reports_jsonl_reports_and_plain_lists() {
        let json = format!(
            "{{\n  \"version\": 1,\n  \"findings\": [{{\"fingerprint\": \"{A}\", \"secret\": \"REDACTED\"}},\n {{\"fingerprint\": \"{B}\"}}],\n  \"stats\": {{}}\n}}\n"
        );
        let jsonl = format!(
            "{{\"rule_id\": \"x\", \"fingerprint\": \"{A}\"}}\n{{\"fingerprint\": \"{B}\", \"commit\": {{\"message\": \"fix #12\"}}}}\n"
        );
        let list = format!(
            "# reviewed 2026-11-23\n{}  # test fixture\n\n{B}\n",
            A.to_uppercase()
        );
        for text in [json, jsonl, list] {
            let b = Baseline::parse(&text).unwrap();
            assert_eq!(b.len(), 2, "{text}");
            assert!(b.contains(A) && b.contains(B), "{text}");
        }
        assert!(Baseline::parse("").unwrap().is_empty());
    }

    #[test]
    fn reads_gitleaksignore_lines_and_gitleaks_reports() {
        let c = "1111111111111111111111111111111111111111";
        let ignore = format!("# .gitleaksignore\nconfig/.env:aws-access-key:3\n{c}:src/a.py:generic-api-key:12\n{A}\n");
        let b = Baseline::parse(&ignore).unwrap();
        assert_eq!(b.len(), 3);
        assert!(b.gitleaks.contains("config/.env:aws-access-key:3"));
        assert!(b
            .gitleaks
            .contains(&format!("{c}:src/a.py:generic-api-key:12")));
        let report =
            r#"[{"RuleID": "x", "Fingerprint": "a.txt:x:1"}, {"Fingerprint": "b.txt:y:2"}]"#;
        let b = Baseline::parse(report).unwrap();
        assert_eq!(b.len(), 2);
        assert!(b.gitleaks.contains("b.txt:y:2"));
        assert!(Baseline::parse("a.txt:rule").is_err(), "no line number");
        assert!(Baseline::parse(":rule:3").is_err(), "no path");
    }

    #[test]
    fn garbage_is_refused_with_its_line() {
        let err = Baseline::parse(&format!("{A}\nnot-a-fingerprint\n")).unwrap_err();
        assert!(err.to_string().starts_with("line 2:"), "{err}");
        let err = Baseline::parse("{\"findings\": [{\"rule\": 1}]}").unwrap_err();
        assert!(err.to_string().contains("fingerprint"), "{err}");
    }
}
