//! The human format: one block per finding, colour on a terminal, secrets
//! masked unless asked for.

use std::io::{self, Write};

use super::Report;
use crate::finding::{mask, REDACTED};
use crate::rules::Confidence;

/// Presentation choices for the human format.
#[derive(Debug, Clone, Default)]
pub struct HumanOptions {
    pub color: bool,
    pub show_secrets: bool,
}

struct Paint(bool);

impl Paint {
    fn wrap(&self, code: &str, s: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
}

pub(super) fn write(out: &mut dyn Write, report: &Report, opts: &HumanOptions) -> io::Result<()> {
    let p = Paint(opts.color);
    for f in &report.findings {
        let level = match f.confidence {
            Confidence::High => p.wrap("1;31", "high"),
            Confidence::Medium => p.wrap("1;33", "medium"),
            Confidence::Low => p.wrap("2", "low"),
        };
        let shown = if opts.show_secrets || f.secret == REDACTED {
            f.secret.clone()
        } else {
            mask(&f.secret)
        };
        writeln!(
            out,
            "{} {}  [{}, {}]",
            p.wrap("1", "●"),
            p.wrap("1", &f.rule_name),
            f.rule_id,
            level
        )?;
        writeln!(
            out,
            "  {}:{}:{}",
            p.wrap("36", &f.path),
            f.location.line,
            f.location.column
        )?;
        if let Some(c) = &f.commit {
            let short = &c.id[..c.id.len().min(12)];
            writeln!(
                out,
                "  commit {short} {} <{}> {}",
                c.author, c.email, c.date
            )?;
        }
        writeln!(out, "  secret: {}", p.wrap("31", &shown))?;
        writeln!(out)?;
    }
    let s = &report.stats;
    let n = report.findings.len();
    let count = |c| report.findings.iter().filter(|f| f.confidence == c).count();
    let files: std::collections::HashSet<&str> =
        report.findings.iter().map(|f| f.path.as_str()).collect();
    let head = if n == 0 {
        p.wrap("32", "no leaks found")
    } else {
        p.wrap(
            "1;31",
            &format!(
                "{n} finding{} ({} high, {} medium, {} low) in {} file{}",
                if n == 1 { "" } else { "s" },
                count(Confidence::High),
                count(Confidence::Medium),
                count(Confidence::Low),
                files.len(),
                if files.len() == 1 { "" } else { "s" }
            ),
        )
    };
    let plural = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let covered = match (s.commits, s.blobs, s.worktree_files) {
        (Some(c), Some(b), w) => format!(
            "{} ({}){}",
            plural(c, "commit", "commits"),
            plural(b, "blob", "blobs"),
            w.map(|w| format!(
                " and {}",
                plural(w, "working-tree file", "working-tree files")
            ))
            .unwrap_or_default()
        ),
        _ => plural(s.files_scanned, "file", "files"),
    };
    writeln!(
        out,
        "{head}; scanned {covered}, {:.1} MB in {:.2} s{}{}",
        s.bytes_scanned as f64 / 1e6,
        s.duration_ms as f64 / 1e3,
        if s.files_skipped > 0 {
            format!(", skipped {}", s.files_skipped)
        } else {
            String::new()
        },
        if s.baselined > 0 {
            format!("; {} known in the baseline", s.baselined)
        } else {
            String::new()
        }
    )
}
