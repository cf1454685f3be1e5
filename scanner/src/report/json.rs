//! `-f json` and `-f jsonl`, following the output contract in DESIGN.md.

use std::io::{self, Write};

use serde::Serialize;

use super::{Report, Stats};
use crate::finding::Finding;

#[derive(Serialize)]
struct Document<'a> {
    version: u32,
    findings: &'a [Finding],
    stats: &'a Stats,
}

pub(super) fn write(out: &mut dyn Write, report: &Report) -> io::Result<()> {
    let doc = Document {
        version: 1,
        findings: &report.findings,
        stats: &report.stats,
    };
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}

pub(super) fn write_lines(out: &mut dyn Write, report: &Report) -> io::Result<()> {
    for f in &report.findings {
        serde_json::to_writer(&mut *out, f)?;
        writeln!(out)?;
    }
    Ok(())
}
