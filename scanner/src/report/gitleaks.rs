//! `-f gitleaks`: the JSON array gitleaks writes, field for field, so that
//! DefectDojo and dashboards that import gitleaks reports take keyburn's.
//! Positions are the secret's (keyburn's); `Match` is the whole match.

use std::io::{self, Write};

use serde::Serialize;

use super::Report;
use crate::finding::Finding;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Leak<'a> {
    #[serde(rename = "RuleID")]
    rule_id: &'a str,
    description: &'a str,
    start_line: usize,
    end_line: usize,
    start_column: usize,
    end_column: usize,
    #[serde(rename = "Match")]
    matched: &'a str,
    secret: &'a str,
    file: &'a str,
    symlink_file: &'a str,
    commit: &'a str,
    entropy: f64,
    author: &'a str,
    email: &'a str,
    date: &'a str,
    message: &'a str,
    tags: Vec<String>,
    fingerprint: String,
}

/// gitleaks' fingerprint of a finding: `file:rule:line`, with the commit
/// first for history (`commit:file:rule:line`). `.gitleaksignore` files
/// list these.
pub fn gitleaks_fingerprint(f: &Finding) -> String {
    match &f.commit {
        Some(c) => format!("{}:{}:{}:{}", c.id, f.path, f.rule_id, f.location.line),
        None => format!("{}:{}:{}", f.path, f.rule_id, f.location.line),
    }
}

pub(super) fn write(out: &mut dyn Write, report: &Report) -> io::Result<()> {
    let leaks: Vec<Leak> = report
        .findings
        .iter()
        .map(|f| {
            let c = f.commit.as_ref();
            let field = |get: fn(&crate::finding::CommitInfo) -> &str| c.map_or("", get);
            Leak {
                rule_id: &f.rule_id,
                description: &f.rule_name,
                start_line: f.location.line,
                end_line: f.location.end_line,
                start_column: f.location.column,
                end_column: f.location.end_column,
                matched: &f.matched,
                secret: &f.secret,
                file: &f.path,
                symlink_file: "",
                commit: field(|c| &c.id),
                entropy: f.entropy,
                author: field(|c| &c.author),
                email: field(|c| &c.email),
                date: field(|c| &c.date),
                message: field(|c| &c.message),
                // gitleaks' own validation tags read `validation:active`.
                tags: f
                    .tags
                    .iter()
                    .cloned()
                    .chain(
                        f.validation
                            .as_ref()
                            .map(|v| format!("validation:{}", v.status.as_str())),
                    )
                    .collect(),
                fingerprint: gitleaks_fingerprint(f),
            }
        })
        .collect();
    serde_json::to_writer_pretty(&mut *out, &leaks)?;
    writeln!(out)
}
