//! Report writers: findings in, bytes out. Each format lives in its own
//! module; adding one touches nothing else.

mod baseline;
mod csv;
mod gitleaks;
mod human;
mod json;
mod junit;
mod sarif;

use std::io::{self, Write};

use serde::Serialize;

use crate::finding::Finding;
use crate::rules::Rule;

pub use baseline::{Baseline, BaselineError};
pub use gitleaks::gitleaks_fingerprint;
pub use human::HumanOptions;

/// What a scan did besides finding things.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub files_scanned: u64,
    pub bytes_scanned: u64,
    pub files_skipped: u64,
    pub errors: u64,
    /// History scans: the commits walked and the unique blobs they hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commits: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blobs: Option<u64>,
    /// Repository scans: the work tree's changed, staged and untracked
    /// files scanned besides history.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worktree_files: Option<u64>,
    /// Sweeps (`scan --repos`): the repositories scanned, and those that
    /// could not be (cloned, opened); the scan fails with the latter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repositories: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed_repositories: Vec<String>,
    /// Paths given to scan that do not exist (the scan fails with them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing_paths: Vec<String>,
    /// Findings a baseline accepted and the report leaves out.
    pub baselined: u64,
    pub rules: usize,
    pub duration_ms: u64,
}

/// Something the scan could not look at, or that went wrong, for formats
/// that list them (SARIF's tool notifications). Binary files are not
/// listed: skipping them is the expected behaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub level: NoticeLevel,
    /// The path concerned; empty when none applies.
    pub path: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeLevel {
    /// Not scanned, on purpose (a size limit, a submodule).
    Skipped,
    /// Could not be read: the report is incomplete.
    Error,
}

/// A finished scan: findings sorted by path and position, deduplicated.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub stats: Stats,
    pub notices: Vec<Notice>,
    /// The absolute directory relative paths in findings start from (a
    /// repository's root, or the directory scanned): SARIF's `%SRCROOT%`.
    pub root: Option<std::path::PathBuf>,
}

impl Report {
    /// Sort findings by path, position and rule, and keep one finding per
    /// fingerprint (the same secret, path and rule), commit and line: a
    /// secret written on three lines of a file is three places to clean,
    /// while the same secret found twice on one line (as written and
    /// decoded) is one.
    pub fn finish(&mut self) {
        self.findings.sort_by(|a, b| {
            (
                &a.repository,
                &a.path,
                a.location.line,
                a.location.column,
                &a.rule_id,
            )
                .cmp(&(
                    &b.repository,
                    &b.path,
                    b.location.line,
                    b.location.column,
                    &b.rule_id,
                ))
        });
        let mut seen = std::collections::HashSet::new();
        self.findings.retain(|f| {
            let commit = f.commit.as_ref().map(|c| c.id.clone());
            seen.insert((
                f.fingerprint.clone(),
                f.repository.clone(),
                commit,
                f.location.line,
            ))
        });
    }

    pub fn redact(&mut self) {
        self.findings.iter_mut().for_each(Finding::redact);
    }
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
    Jsonl,
    Sarif,
    /// gitleaks' own JSON array.
    Gitleaks,
    Csv,
    Junit,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "human" | "text" => Ok(Format::Human),
            "json" => Ok(Format::Json),
            "jsonl" => Ok(Format::Jsonl),
            "sarif" => Ok(Format::Sarif),
            "gitleaks" => Ok(Format::Gitleaks),
            "csv" => Ok(Format::Csv),
            "junit" => Ok(Format::Junit),
            _ => Err(format!(
                "unknown format {s:?} (human, json, jsonl, sarif, gitleaks, csv, junit)"
            )),
        }
    }
}

/// Write `report` in `format`. `rules` are the rules the scan ran (SARIF
/// lists them in its tool section).
pub fn write(
    out: &mut dyn Write,
    format: Format,
    report: &Report,
    rules: &[Rule],
    human: &HumanOptions,
) -> io::Result<()> {
    match format {
        Format::Human => human::write(out, report, human),
        Format::Json => json::write(out, report),
        Format::Jsonl => json::write_lines(out, report),
        Format::Sarif => sarif::write(out, report, rules),
        Format::Gitleaks => gitleaks::write(out, report),
        Format::Csv => csv::write(out, report),
        Format::Junit => junit::write(out, report),
    }
}
