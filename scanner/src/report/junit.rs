//! `-f junit`: one failing test case per finding (and one passing case
//! when there is none), for CI systems that show JUnit results. Secrets
//! are masked: these reports land on dashboards.

use std::io::{self, Write};

use super::Report;
use crate::finding::mask;

fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 has no way to carry other control characters.
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

pub(super) fn write(out: &mut dyn Write, report: &Report) -> io::Result<()> {
    let n = report.findings.len();
    let seconds = report.stats.duration_ms as f64 / 1e3;
    writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
    writeln!(
        out,
        r#"<testsuites name="keyburn" tests="{}" failures="{n}" time="{seconds:.3}">"#,
        n.max(1)
    )?;
    writeln!(
        out,
        r#"  <testsuite name="keyburn scan" tests="{}" failures="{n}" errors="0" time="{seconds:.3}">"#,
        n.max(1)
    )?;
    if n == 0 {
        writeln!(
            out,
            r#"    <testcase classname="keyburn" name="no leaked secrets"/>"#
        )?;
    }
    for f in &report.findings {
        let place = format!("{}:{}:{}", f.path, f.location.line, f.location.column);
        let commit = f
            .commit
            .as_ref()
            .map(|c| format!(" at commit {}", &c.id[..c.id.len().min(12)]))
            .unwrap_or_default();
        writeln!(
            out,
            r#"    <testcase classname="{}" name="{}">"#,
            xml(&f.path),
            xml(&format!("{} at {place}{commit}", f.rule_id))
        )?;
        writeln!(
            out,
            r#"      <failure type="{}" message="{}">{}</failure>"#,
            xml(&f.rule_id),
            xml(&format!("{} in {place}{commit}", f.rule_name)),
            xml(&format!(
                "secret: {}\nfingerprint: {}",
                mask(&f.secret),
                f.fingerprint
            ))
        )?;
        writeln!(out, "    </testcase>")?;
    }
    writeln!(out, "  </testsuite>")?;
    writeln!(out, "</testsuites>")
}
