//! Findings: a confirmed match placed in its origin (path, line, column),
//! with a fingerprint that stays the same across runs.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::engine::RawMatch;
use crate::rules::{Confidence, Rule};

/// Where a finding sits: 1-based line and column (in characters) of the
/// secret's first character, and of its last character (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Location {
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
}

/// The commit that introduced a finding, for history scans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommitInfo {
    pub id: String,
    pub author: String,
    pub email: String,
    pub date: String,
    pub message: String,
}

/// Where a finding's bytes came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A blob in the repository's history (the finding names its commit).
    History,
    /// A work tree's change against HEAD: modified, staged or untracked.
    Worktree,
    /// A file or stream scanned as it is, outside any repository's view.
    #[default]
    File,
}

impl Source {
    /// The name the JSON contract gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::History => "history",
            Source::Worktree => "worktree",
            Source::File => "file",
        }
    }
}

/// What a provider said of a secret (`scan --verify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValidationStatus {
    /// The provider accepted it: a live credential.
    Active,
    /// The provider refused it: revoked, expired or never valid.
    Inactive,
    /// The provider's answer did not say.
    Unknown,
    /// The check could not be made (a network error, a timeout).
    Error,
    /// Not checked: no validator for the rule, a part missing, a host
    /// keyburn will not contact.
    Skipped,
}

impl ValidationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ValidationStatus::Active => "active",
            ValidationStatus::Inactive => "inactive",
            ValidationStatus::Unknown => "unknown",
            ValidationStatus::Error => "error",
            ValidationStatus::Skipped => "skipped",
        }
    }
}

impl std::str::FromStr for ValidationStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "active" => ValidationStatus::Active,
            "inactive" => ValidationStatus::Inactive,
            "unknown" => ValidationStatus::Unknown,
            "error" => ValidationStatus::Error,
            "skipped" => ValidationStatus::Skipped,
            _ => {
                return Err(format!(
                    "unknown validation status {s:?} (active, inactive, unknown, error, skipped)"
                ))
            }
        })
    }
}

/// The JSON contract's `validation` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Validation {
    pub status: ValidationStatus,
    pub reason: String,
    /// The provider family asked (`github`, `slack`), empty when none was.
    pub provider: String,
    /// RFC 3339 time of the check.
    pub checked_at: String,
}

/// One leaked secret at one place. Field names are the JSON output contract
/// (DESIGN.md): other tools parse them.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub rule_id: String,
    pub rule_name: String,
    pub confidence: Confidence,
    pub path: String,
    #[serde(flatten)]
    pub location: Location,
    pub secret: String,
    #[serde(rename = "match")]
    pub matched: String,
    pub fingerprint: String,
    pub entropy: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    pub source: Source,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<CommitInfo>,
    /// The other parts of a multi-part credential (an AWS secret key's
    /// `access_key_id`), by name.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub parts: std::collections::BTreeMap<String, String>,
    /// Whether the secret is live, with `--verify`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation: Option<Validation>,
    /// Found in decoded text: the decodings from the text at `location`
    /// to the secret, outermost first (`["base64"]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub decoded_from: Vec<crate::engine::decode::Encoding>,
    /// The repository, in scans of many (`scan --repos`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// The secret's first line, for people (the human format shows it
    /// masked); never serialized, since it holds the secret.
    #[serde(skip)]
    pub line_text: String,
}

const MAX_MATCH_CHARS: usize = 300;
pub const REDACTED: &str = "REDACTED";

impl Finding {
    /// Build a finding from a raw match in `hay`, the content of `path`.
    pub fn new(
        rule: &Rule,
        path: &str,
        hay: &[u8],
        m: &RawMatch,
        lines: &mut LineIndex,
    ) -> Finding {
        let (secret, matched) = match &m.decoded {
            Some(d) => (&d.secret[..], &d.matched[..]),
            None => (&hay[m.start..m.end], &hay[m.match_start..m.match_end]),
        };
        let secret = String::from_utf8_lossy(secret).into_owned();
        let (line, column) = lines.position(hay, m.start);
        let (end_line, end_col_after) = lines.position(hay, m.end);
        // `end` is exclusive: the last character is the one before it, unless
        // the secret ends a line, in which case it sits on the previous line.
        let (end_line, end_column) = if end_col_after == 1 && end_line > line {
            let (l, c) = lines.position(hay, m.end - 1);
            (l, c)
        } else {
            (end_line, end_col_after - 1)
        };
        let line_text = String::from_utf8_lossy(crate::engine::line_around(hay, m.start, m.start))
            .trim_end_matches('\r')
            .to_string();
        let mut matched = String::from_utf8_lossy(matched).into_owned();
        if matched.chars().count() > MAX_MATCH_CHARS {
            matched = matched.chars().take(MAX_MATCH_CHARS).collect::<String>() + "…";
        }
        let location = Location {
            line,
            column,
            end_line,
            end_column,
        };
        let mut f = Finding::of_rule(rule, path, location, secret, matched);
        f.entropy = (m.entropy * 1000.0).round() / 1000.0;
        f.line_text = line_text;
        if let Some(d) = &m.decoded {
            f.decoded_from = d.chain.clone();
        }
        f
    }

    /// A finding of a path-only rule: the file at `path` itself, with no
    /// secret to show (line 1, column 1).
    pub fn for_path(rule: &Rule, path: &str) -> Finding {
        let start = Location {
            line: 1,
            column: 1,
            end_line: 1,
            end_column: 1,
        };
        Finding::of_rule(rule, path, start, String::new(), path.to_string())
    }

    /// What every finding of `rule` at `path` carries; entropy and the line
    /// are left empty.
    fn of_rule(
        rule: &Rule,
        path: &str,
        location: Location,
        secret: String,
        matched: String,
    ) -> Finding {
        Finding {
            rule_id: rule.id.clone(),
            rule_name: rule.name.clone(),
            confidence: rule.confidence,
            path: path.to_string(),
            location,
            fingerprint: fingerprint(&rule.id, path, &secret),
            secret,
            matched,
            entropy: 0.0,
            provider: rule.provider.clone(),
            tags: rule.tags.clone(),
            source: Source::File,
            commit: None,
            parts: Default::default(),
            validation: None,
            decoded_from: Vec::new(),
            repository: None,
            line_text: String::new(),
        }
    }

    /// Remove the secret from every field that carries it.
    pub fn redact(&mut self) {
        if !self.secret.is_empty() {
            self.matched = self.matched.replace(&self.secret, REDACTED);
            self.line_text = self.line_text.replace(&self.secret, REDACTED);
        }
        self.secret = REDACTED.to_string();
        self.parts.clear();
    }
}

/// Give each finding of a rule with a `pair` its other parts: for each
/// pair, the secret of the nearest finding of the paired rule in the same
/// file and commit, within the pair's lines. A finding missing a part drops
/// one confidence level. Findings of `context` rules (identifiers, not
/// secrets) have served their purpose then and are removed. `rule_of` looks
/// a rule up by id.
pub fn pair_parts<'r>(findings: &mut Vec<Finding>, rule_of: impl Fn(&str) -> Option<&'r Rule>) {
    let rules: Vec<Option<&'r Rule>> = findings.iter().map(|f| rule_of(&f.rule_id)).collect();
    let wanted: std::collections::HashSet<&str> = rules
        .iter()
        .flatten()
        .flat_map(|r| r.pair.iter().map(|p| p.rule.as_str()))
        .collect();
    if !wanted.is_empty() {
        let commit = |f: &Finding| f.commit.as_ref().map(|c| c.id.clone());
        // The findings other parts can come from, by rule, path and commit.
        let mut halves: std::collections::HashMap<_, Vec<(usize, String)>> = Default::default();
        for f in findings
            .iter()
            .filter(|f| wanted.contains(f.rule_id.as_str()))
        {
            halves
                .entry((f.rule_id.clone(), f.path.clone(), commit(f)))
                .or_default()
                .push((f.location.line, f.secret.clone()));
        }
        for (f, rule) in findings.iter_mut().zip(&rules) {
            let Some(rule) = rule else { continue };
            let line = f.location.line;
            let mut missing = false;
            for p in &rule.pair {
                let other = halves
                    .get(&(p.rule.clone(), f.path.clone(), commit(f)))
                    .into_iter()
                    .flatten()
                    .filter(|(l, _)| l.abs_diff(line) <= p.within_lines)
                    .min_by_key(|(l, _)| l.abs_diff(line));
                match other {
                    Some((_, secret)) => {
                        f.parts.insert(p.part.clone(), secret.clone());
                    }
                    None => missing = true,
                }
            }
            if missing {
                f.confidence = match f.confidence {
                    Confidence::High => Confidence::Medium,
                    _ => Confidence::Low,
                }
            }
        }
    }
    let mut context = rules.iter().map(|r| r.is_some_and(|r| r.context));
    findings.retain(|_| !context.next().unwrap_or(false));
}

/// A stable identifier of a secret at a path under a rule: the same leak
/// keeps its fingerprint when lines move, so baselines survive edits.
pub fn fingerprint(rule_id: &str, path: &str, secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(rule_id.as_bytes());
    h.update([0]);
    h.update(path.as_bytes());
    h.update([0]);
    h.update(secret.as_bytes());
    let digest = h.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Mask a secret for human eyes (reports, logs, notifications): a short
/// prefix, then asterisks. The length is not revealed, and a secret shorter
/// than 8 characters shows nothing.
pub fn mask(secret: &str) -> String {
    let n = secret.chars().count();
    let keep = if n >= 16 {
        4
    } else if n >= 8 {
        2
    } else {
        0
    };
    let prefix: String = secret.chars().take(keep).collect();
    format!("{prefix}********")
}

/// Turns byte offsets into (line, column), walking forward through a buffer
/// so that sorted offsets cost one pass in total.
#[derive(Default)]
pub struct LineIndex {
    offset: usize,
    line: usize,
    line_start: usize,
}

impl LineIndex {
    pub fn new() -> LineIndex {
        LineIndex {
            offset: 0,
            line: 1,
            line_start: 0,
        }
    }

    /// 1-based line and column of byte `offset`. Columns count characters
    /// (UTF-8 continuation bytes do not start one).
    pub fn position(&mut self, hay: &[u8], offset: usize) -> (usize, usize) {
        if offset < self.offset {
            *self = LineIndex::new();
        }
        for i in memchr::memchr_iter(b'\n', &hay[self.offset..offset]) {
            self.line += 1;
            self.line_start = self.offset + i + 1;
        }
        self.offset = offset;
        let col = hay[self.line_start..offset]
            .iter()
            .filter(|&&b| (b as i8) >= -0x40)
            .count();
        (self.line, col + 1)
    }
}

/// Seconds since the epoch as an RFC 3339 UTC timestamp; empty for a time
/// no calendar holds (a commit with a garbled date).
pub fn rfc3339(secs: i64) -> String {
    jiff::Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters() {
        let hay = "ab\r\ncé token\nx".as_bytes();
        let mut li = LineIndex::new();
        assert_eq!(li.position(hay, 0), (1, 1));
        let t = hay.windows(5).position(|w| w == b"token").unwrap();
        assert_eq!(li.position(hay, t), (2, 4));
        assert_eq!(li.position(hay, hay.len() - 1), (3, 1));
        // going backwards restarts cleanly
        assert_eq!(li.position(hay, 1), (1, 2));
    }

    #[test]
    fn fingerprint_is_stable_and_discriminating() {
        let a = fingerprint("r", "p", "s");
        assert_eq!(a, fingerprint("r", "p", "s"));
        assert_ne!(a, fingerprint("r", "p2", "s"));
        assert_ne!(fingerprint("ab", "c", "s"), fingerprint("a", "bc", "s"));
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn mask_hides_all_but_a_prefix() {
        assert_eq!(mask("ghp_abcdefghijklmnop"), "ghp_********");
        assert_eq!(mask("short"), "********");
        assert_eq!(mask("abc123"), "********", "a short secret shows nothing");
    }

    #[test]
    fn source_names_are_the_json_contracts() {
        for s in [Source::History, Source::Worktree, Source::File] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }

    #[test]
    fn rfc3339_formats_epoch_seconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(i64::MAX), "");
    }
}
