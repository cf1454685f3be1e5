//! The human format: one block per finding, colour on a terminal, secrets
//! masked unless asked for.

use std::io::{self, Write};

use super::Report;
use crate::finding::{mask, Finding, ValidationStatus, REDACTED};
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

/// Characters of context kept on each side of the secret in a long line.
const CONTEXT_CHARS: usize = 60;

/// The finding's line with its secret replaced by `shown` (masked or not),
/// cut to some context around it, and where the secret sits in it (column
/// and width, in characters). Other secrets reported in the same file are
/// masked in it too (`others`, empty when secrets are shown). None when the
/// line does not hold the secret as reported.
fn source_line(f: &Finding, shown: &str, others: &[&str]) -> Option<(String, usize, usize)> {
    let line = &f.line_text;
    let at = line.find(&f.secret).filter(|_| !f.secret.is_empty())?;
    let clean = |s: &str| -> String {
        let mut s: String = s.chars().filter(|c| !c.is_control()).collect();
        for o in others.iter().filter(|o| !o.is_empty()) {
            s = s.replace(o, &mask(o));
        }
        s
    };
    let before = clean(&line[..at]);
    let after = clean(&line[at + f.secret.len()..]);
    let n = before.chars().count();
    let before = if n > CONTEXT_CHARS {
        let kept: String = before.chars().skip(n - CONTEXT_CHARS).collect();
        format!("…{kept}")
    } else {
        before
    };
    let after = if after.chars().count() > CONTEXT_CHARS {
        let kept: String = after.chars().take(CONTEXT_CHARS).collect();
        format!("{kept}…")
    } else {
        after
    };
    let col = before.chars().count();
    Some((
        format!("{before}{shown}{after}"),
        col,
        shown.chars().count(),
    ))
}

pub(super) fn write(out: &mut dyn Write, report: &Report, opts: &HumanOptions) -> io::Result<()> {
    let p = Paint(opts.color);
    let mut secrets: std::collections::HashMap<&str, Vec<&str>> = Default::default();
    if !opts.show_secrets {
        for f in &report.findings {
            secrets.entry(&f.path).or_default().push(&f.secret);
        }
    }
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
        let others = secrets.get(f.path.as_str()).map_or(&[][..], Vec::as_slice);
        if let Some((shown_line, at, width)) = source_line(f, &shown, others) {
            let gutter = f.location.line.to_string();
            writeln!(out, "  {gutter} | {shown_line}")?;
            writeln!(
                out,
                "  {} | {}{}",
                " ".repeat(gutter.len()),
                " ".repeat(at),
                p.wrap("31", &"^".repeat(width.max(1)))
            )?;
        }
        writeln!(out, "  secret: {}", p.wrap("31", &shown))?;
        if !f.decoded_from.is_empty() {
            let chain: Vec<&str> = f.decoded_from.iter().map(|e| e.as_str()).collect();
            writeln!(out, "  decoded from: {}", chain.join(" > "))?;
        }
        if let Some(v) = &f.validation {
            let status = match v.status {
                ValidationStatus::Active => p.wrap("1;31", "ACTIVE"),
                ValidationStatus::Inactive => p.wrap("32", "inactive"),
                s => p.wrap("33", s.as_str()),
            };
            writeln!(out, "  validation: {status} ({})", v.reason)?;
        }
        writeln!(out, "  fingerprint: {}", f.fingerprint)?;
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
