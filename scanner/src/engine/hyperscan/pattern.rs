//! Rule regexes translated for Hyperscan: pure Rust, compiled and tested
//! whether the `hyperscan` feature is on or not.
//!
//! A translated pattern matches a superset of what the rule's regex
//! matches, never less: Hyperscan then only tells which keyword windows
//! cannot hold a match, and the `regex` crate still decides every finding.

use std::fmt::Write as _;

use regex_syntax::hir::{Class, Hir, HirKind};

/// Why a regex has no Hyperscan form; its rule then takes the Rust path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    #[error("the regex matches the empty string")]
    MatchesEmpty,
    #[error("the regex has an empty class")]
    EmptyClass,
}

/// Whether every match of `hir` starts with one of a few literals of at
/// least three bytes.
pub(crate) fn has_literal_prefix(hir: &Hir) -> bool {
    let seq = regex_syntax::hir::literal::Extractor::new().extract(hir);
    seq.min_literal_len().is_some_and(|n| n >= 3)
}

/// `bytes` as a pattern matching exactly them: `\xHH` for all but ASCII
/// letters and digits.
pub(crate) fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        push_byte(&mut out, b);
    }
    out
}

fn push_byte(out: &mut String, b: u8) {
    if b.is_ascii_alphanumeric() {
        out.push(b as char);
    } else {
        let _ = write!(out, "\\x{b:02x}");
    }
}

/// A Hyperscan pattern whose matches are a superset of `hir`'s. The HIR
/// was parsed without Unicode, so literals and classes are bytes and case
/// folding is already spelled out. Look-around assertions are dropped
/// (dropping one only widens the language; prefiltering mode widens it
/// further where it must). Unicode classes, which a rule can still ask for
/// with `(?u)`, keep their ASCII part exactly and accept any UTF-8 sequence
/// for the rest.
pub(crate) fn to_pcre(hir: &Hir) -> Result<String, TranslateError> {
    let mut out = String::new();
    write_pcre(hir, &mut out)?;
    if out.is_empty() {
        return Err(TranslateError::MatchesEmpty);
    }
    Ok(out)
}

fn write_pcre(hir: &Hir, out: &mut String) -> Result<(), TranslateError> {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => {}
        HirKind::Literal(lit) => {
            for &b in lit.0.iter() {
                push_byte(out, b);
            }
        }
        HirKind::Class(Class::Bytes(c)) => {
            let ranges: Vec<(u8, u8)> = c.ranges().iter().map(|r| (r.start(), r.end())).collect();
            push_class(out, &ranges)?;
        }
        HirKind::Class(Class::Unicode(c)) => {
            let ascii: Vec<(u8, u8)> = c
                .ranges()
                .iter()
                .filter(|r| (r.start() as u32) < 0x80)
                .map(|r| (r.start() as u8, (r.end() as u32).min(0x7f) as u8))
                .collect();
            let wide = c.ranges().iter().any(|r| r.end() as u32 >= 0x80);
            match (ascii.is_empty(), wide) {
                (false, false) => push_class(out, &ascii)?,
                (true, true) => out.push_str(UTF8_NON_ASCII),
                (false, true) => {
                    out.push_str("(?:");
                    push_class(out, &ascii)?;
                    out.push('|');
                    out.push_str(UTF8_NON_ASCII);
                    out.push(')');
                }
                (true, false) => return Err(TranslateError::EmptyClass),
            }
        }
        HirKind::Repetition(rep) => {
            let mut sub = String::new();
            write_pcre(&rep.sub, &mut sub)?;
            if sub.is_empty() || rep.max == Some(0) {
                return Ok(());
            }
            let _ = write!(out, "(?:{sub})");
            // Large counted repeats (a PEM body of 64 to 16,000 characters)
            // cost Hyperscan minutes of compile time and megabytes of
            // database. Loosening a count keeps a superset: the minimum is
            // capped and a large maximum becomes unbounded.
            let min = rep.min.min(MAX_COUNT);
            let max = rep.max.filter(|&n| n <= MAX_COUNT);
            match (min, max) {
                (0, None) => out.push('*'),
                (1, None) => out.push('+'),
                (0, Some(1)) => out.push('?'),
                (m, None) => {
                    let _ = write!(out, "{{{m},}}");
                }
                (m, Some(n)) if m == n => {
                    let _ = write!(out, "{{{m}}}");
                }
                (m, Some(n)) => {
                    let _ = write!(out, "{{{m},{n}}}");
                }
            }
        }
        HirKind::Capture(cap) => {
            let mut sub = String::new();
            write_pcre(&cap.sub, &mut sub)?;
            if !sub.is_empty() {
                let _ = write!(out, "(?:{sub})");
            }
        }
        HirKind::Concat(parts) => {
            for p in parts {
                write_pcre(p, out)?;
            }
        }
        HirKind::Alternation(alts) => {
            let mut branches = Vec::with_capacity(alts.len());
            for a in alts {
                let mut sub = String::new();
                write_pcre(a, &mut sub)?;
                branches.push(sub);
            }
            let optional = branches.iter().any(String::is_empty);
            branches.retain(|b| !b.is_empty());
            if !branches.is_empty() {
                let _ = write!(out, "(?:{})", branches.join("|"));
                if optional {
                    // A branch matched the empty string.
                    out.push('?');
                }
            }
        }
    }
    Ok(())
}

/// The largest repeat count kept exactly in a Hyperscan pattern.
const MAX_COUNT: u32 = 32;

/// Any UTF-8 encoded non-ASCII character (and some invalid sequences).
const UTF8_NON_ASCII: &str = r"[\xc0-\xff][\x80-\xbf]{1,3}";

fn push_class(out: &mut String, ranges: &[(u8, u8)]) -> Result<(), TranslateError> {
    if ranges.is_empty() {
        return Err(TranslateError::EmptyClass);
    }
    out.push('[');
    for &(a, b) in ranges {
        push_class_byte(out, a);
        if b != a {
            out.push('-');
            push_class_byte(out, b);
        }
    }
    out.push(']');
    Ok(())
}

fn push_class_byte(out: &mut String, b: u8) {
    let _ = write!(out, "\\x{b:02x}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translation_only_widens() {
        let pcre = |re: &str| to_pcre(&crate::rules::parse_regex(re).unwrap());
        // Look-around dropped, counts capped, an empty branch made optional.
        assert_eq!(pcre(r"\bab\b").unwrap(), "ab");
        assert_eq!(pcre("a{40,400}").unwrap(), "(?:a){32,}");
        assert_eq!(pcre("(?:x|)y").unwrap(), "(?:x)?y");
        assert_eq!(pcre("^$"), Err(TranslateError::MatchesEmpty));
    }

    #[test]
    fn literals_are_escaped_byte_by_byte() {
        assert_eq!(escape_bytes(b"api_key"), "api\\x5fkey");
        let lit = |re: &str| has_literal_prefix(&crate::rules::parse_regex(re).unwrap());
        assert!(lit("ghp_[A-Za-z0-9]{36}"));
        assert!(!lit("[A-Za-z0-9]{40}"));
    }
}
