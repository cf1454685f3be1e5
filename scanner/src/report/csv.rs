//! `-f csv`: one finding per row, for spreadsheets and quick greps. Fields
//! are quoted as RFC 4180 asks (commas, quotes and line ends inside).

use std::io::{self, Write};

use super::Report;

const HEADER: [&str; 15] = [
    "rule_id",
    "rule_name",
    "confidence",
    "path",
    "line",
    "column",
    "end_line",
    "end_column",
    "secret",
    "fingerprint",
    "source",
    "commit",
    "author",
    "email",
    "date",
];

fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub(super) fn write(out: &mut dyn Write, report: &Report) -> io::Result<()> {
    writeln!(out, "{}", HEADER.join(","))?;
    for f in &report.findings {
        let c = f.commit.as_ref();
        let row = [
            f.rule_id.clone(),
            f.rule_name.clone(),
            f.confidence.as_str().to_string(),
            f.path.clone(),
            f.location.line.to_string(),
            f.location.column.to_string(),
            f.location.end_line.to_string(),
            f.location.end_column.to_string(),
            f.secret.clone(),
            f.fingerprint.clone(),
            f.source.as_str().to_string(),
            c.map(|c| c.id.clone()).unwrap_or_default(),
            c.map(|c| c.author.clone()).unwrap_or_default(),
            c.map(|c| c.email.clone()).unwrap_or_default(),
            c.map(|c| c.date.clone()).unwrap_or_default(),
        ];
        let row: Vec<String> = row.iter().map(|s| field(s)).collect();
        writeln!(out, "{}", row.join(","))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn fields_with_separators_are_quoted() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
    }
}
