//! gitleaks' TOML format, converted to keyburn rules so teams can bring an
//! existing `.gitleaks.toml`: Go RE2 patterns are translated where the two
//! regex dialects differ, and path-only rules (no regex) report files by
//! their path.

use serde::Deserialize;

use super::model::{Allow, Confidence, RegexTarget, Rule};
use super::{GlobalAllow, RuleError, RuleSet};

#[derive(Deserialize)]
struct GlFile {
    #[serde(default)]
    extend: Option<GlExtend>,
    #[serde(default)]
    rules: Vec<GlRule>,
    #[serde(default)]
    allowlist: Option<GlAllow>,
    #[serde(default)]
    allowlists: Vec<GlAllow>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct GlExtend {
    #[serde(default)]
    use_default: bool,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    disabled_rules: Vec<String>,
}

/// A gitleaks configuration file as a whole: its rules (with those of the
/// file its `[extend] path` names before them), and what it says of the
/// default rules.
#[derive(Debug, Clone, Default)]
pub struct GitleaksConfig {
    pub rules: RuleSet,
    /// `[extend] useDefault = true`: the defaults (keyburn's built-in
    /// rules) stay, with these rules added; otherwise these rules alone.
    pub use_default: bool,
    /// `[extend] disabledRules`: ids left out of the defaults.
    pub disabled: Vec<String>,
}

/// gitleaks ids as keyburn spells rule ids.
fn rule_id(id: &str) -> String {
    id.to_ascii_lowercase().replace(['_', ' ', '.'], "-")
}

impl GitleaksConfig {
    /// Load the gitleaks configuration at `path`, following `[extend]
    /// path` (relative to the file, at most a few levels deep).
    pub fn load(path: &std::path::Path) -> Result<GitleaksConfig, RuleError> {
        GitleaksConfig::load_depth(path, 0)
    }

    fn load_depth(path: &std::path::Path, depth: usize) -> Result<GitleaksConfig, RuleError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| RuleError::Io {
            file: file.clone(),
            source,
        })?;
        let mut parsed: GlFile = toml::from_str(&text).map_err(|e| RuleError::Parse {
            file: file.clone(),
            message: e.to_string(),
        })?;
        let extend = parsed.extend.take().unwrap_or_default();
        let mut config = match &extend.path {
            Some(_) if depth >= 4 => {
                return Err(RuleError::Parse {
                    file,
                    message: "[extend] path chains more than four files deep".into(),
                })
            }
            Some(base) => {
                let dir = path.parent().unwrap_or(std::path::Path::new("."));
                GitleaksConfig::load_depth(&dir.join(base), depth + 1)?
            }
            None => GitleaksConfig::default(),
        };
        config.use_default |= extend.use_default;
        config
            .disabled
            .extend(extend.disabled_rules.iter().map(|id| rule_id(id)));
        // This file's own rules; a base file's were checked when it loaded.
        let own = convert(parsed, &file)?;
        for rule in own.rules() {
            rule.check_compiles()?;
        }
        config.rules.merge(own)?;
        Ok(config)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GlRule {
    id: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    regex: Option<String>,
    #[serde(default)]
    secret_group: Option<usize>,
    #[serde(default)]
    entropy: Option<f64>,
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    allowlist: Option<GlAllow>,
    #[serde(default)]
    allowlists: Vec<GlAllow>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase")]
struct GlAllow {
    #[serde(default)]
    target_rules: Vec<String>,
    #[serde(default)]
    regexes: Vec<String>,
    #[serde(default)]
    regex_target: Option<String>,
    #[serde(default)]
    stopwords: Vec<String>,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    commits: Vec<String>,
}

pub(super) fn parse(text: &str, file: &str) -> Result<RuleSet, RuleError> {
    let parsed: GlFile = toml::from_str(text).map_err(|e| RuleError::Parse {
        file: file.to_string(),
        message: e.to_string(),
    })?;
    convert(parsed, file)
}

fn re2(v: Vec<String>) -> Vec<String> {
    v.iter().map(|r| re2_to_rust(r)).collect()
}

/// A gitleaks allowlist as a rule's allow list.
fn add_allow(allow: &mut Allow, a: GlAllow) {
    if let Some(t) = a.regex_target.as_deref() {
        allow.regex_target = match t {
            "match" => RegexTarget::Match,
            "line" => RegexTarget::Line,
            _ => RegexTarget::Secret,
        };
    }
    allow.regexes.extend(re2(a.regexes));
    allow.stopwords.extend(a.stopwords);
    allow.paths.extend(re2(a.paths));
    allow.commits.extend(a.commits);
}

fn convert(parsed: GlFile, file: &str) -> Result<RuleSet, RuleError> {
    let mut global = GlobalAllow::default();
    // `[[allowlists]]` naming `targetRules` apply to those rules only.
    let mut targeted: Vec<(Vec<String>, GlAllow)> = Vec::new();
    for mut a in parsed.allowlist.into_iter().chain(parsed.allowlists) {
        if !a.target_rules.is_empty() {
            let ids = std::mem::take(&mut a.target_rules)
                .iter()
                .map(|id| rule_id(id))
                .collect();
            targeted.push((ids, a));
            continue;
        }
        global.paths.extend(re2(a.paths));
        global.regexes.extend(re2(a.regexes));
        global.stopwords.extend(a.stopwords);
        global.commits.extend(a.commits);
    }
    let mut rules = Vec::with_capacity(parsed.rules.len());
    for gl in parsed.rules {
        // A rule with a path and no regex reports the file itself.
        let path_only = gl.regex.is_none();
        if path_only && gl.path.is_none() {
            return Err(RuleError::Invalid {
                file: file.to_string(),
                id: gl.id,
                message: "a rule needs a regex, a path, or both".into(),
            });
        }
        let regex = gl.regex.unwrap_or_default();
        let mut allow = Allow::default();
        for a in gl.allowlist.into_iter().chain(gl.allowlists) {
            add_allow(&mut allow, a);
        }
        let name = gl.description.clone().unwrap_or_else(|| gl.id.clone());
        rules.push(Rule {
            id: rule_id(&gl.id),
            name,
            description: gl.description,
            regex: re2_to_rust(&regex),
            keywords: gl.keywords,
            case_sensitive_keywords: false,
            entropy: gl.entropy,
            checksum: None,
            confidence: Confidence::Medium,
            provider: None,
            check: None,
            pair: Vec::new(),
            context: false,
            keyword_word: false,
            data_format: false,
            example_path: None,
            secret_group: gl.secret_group.filter(|&g| g > 0),
            window: None,
            paths: gl.path.iter().map(|p| re2_to_rust(p)).collect(),
            placeholder_filter: true,
            exact: false,
            path_only,
            requires: None,
            allow,
            tags: gl.tags,
            examples: vec![],
            counterexamples: vec![],
            source: file.to_string(),
        });
    }
    for (ids, a) in targeted {
        for id in &ids {
            if !rules.iter().any(|r| &r.id == id) {
                return Err(RuleError::Invalid {
                    file: file.to_string(),
                    id: id.clone(),
                    message: "an allowlist's targetRules names a rule this file lacks".into(),
                });
            }
        }
        for rule in rules.iter_mut().filter(|r| ids.contains(&r.id)) {
            add_allow(&mut rule.allow, a.clone());
        }
    }
    Ok(RuleSet {
        providers: Default::default(),
        builtin_providers: false,
        rules,
        allow: global,
    })
}

/// A Go RE2 pattern as the `regex` crate reads it. The two dialects agree
/// but for a few spellings, translated here exactly:
///
/// - RE2 reads `{` as a literal brace wherever it does not start a valid
///   repetition (`{{`, `{\d+}` after a group opener, `x{a}`); the `regex`
///   crate rejects those, so such braces, and the `}` closing them, are
///   escaped;
/// - `\Q...\E` quotes a literal run, which the `regex` crate lacks: its
///   characters are escaped one by one.
///
/// Character classes are copied as they are (braces inside are literals
/// in both).
pub(crate) fn re2_to_rust(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut i = 0;
    // Whether the last thing written can take a repetition.
    let mut repeatable = false;
    // Braces opened as literals wait for their `}` to be escaped too.
    let mut literal_braces = 0usize;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' if chars.get(i + 1) == Some(&'Q') => {
                i += 2;
                while i < chars.len() && !(chars[i] == '\\' && chars.get(i + 1) == Some(&'E')) {
                    out.push_str(&regex_syntax::escape(&chars[i].to_string()));
                    i += 1;
                }
                i += 2; // past \E (or the end)
                repeatable = true;
                continue;
            }
            '\\' => {
                out.push(c);
                if let Some(&n) = chars.get(i + 1) {
                    out.push(n);
                }
                i += 2;
                repeatable = true;
                continue;
            }
            '[' => {
                let end = class_end(&chars, i);
                out.extend(&chars[i..end]);
                i = end;
                repeatable = true;
                continue;
            }
            '{' => {
                let rep = repetition_len(&chars[i..]);
                match rep {
                    Some(n) if repeatable => {
                        out.extend(&chars[i..i + n]);
                        i += n;
                        // `x{2}{3}` is an error in both; let the crate say so.
                        repeatable = false;
                        continue;
                    }
                    _ => {
                        out.push_str("\\{");
                        literal_braces += 1;
                        repeatable = true;
                    }
                }
            }
            '}' if literal_braces > 0 => {
                out.push_str("\\}");
                literal_braces -= 1;
                repeatable = true;
            }
            '}' => {
                out.push_str("\\}");
                repeatable = true;
            }
            '(' | '|' => {
                out.push(c);
                repeatable = false;
            }
            '*' | '+' | '?' => {
                out.push(c);
                // A lazy marker after a repetition is not repeatable either.
                repeatable = false;
            }
            _ => {
                out.push(c);
                repeatable = c != '^' && c != '$';
            }
        }
        i += 1;
    }
    out
}

/// The length of a valid repetition (`{n}`, `{n,}`, `{n,m}`) at the start
/// of `s`, if there is one.
fn repetition_len(s: &[char]) -> Option<usize> {
    let mut i = 1;
    let digits = |i: &mut usize| {
        let start = *i;
        while s.get(*i).is_some_and(char::is_ascii_digit) {
            *i += 1;
        }
        *i > start
    };
    if !digits(&mut i) {
        return None;
    }
    if s.get(i) == Some(&',') {
        i += 1;
        digits(&mut i);
    }
    (s.get(i) == Some(&'}')).then_some(i + 1)
}

/// Where the character class opening at `start` ends (one past its `]`).
fn class_end(s: &[char], start: usize) -> usize {
    let mut i = start + 1;
    if s.get(i) == Some(&'^') {
        i += 1;
    }
    // A `]` first in the class is a literal.
    if s.get(i) == Some(&']') {
        i += 1;
    }
    while i < s.len() {
        match s[i] {
            '\\' => i += 2,
            '[' if s.get(i + 1) == Some(&':') => {
                // [:alpha:]
                match (i + 2..s.len().saturating_sub(1)).find(|&j| s[j] == ':' && s[j + 1] == ']') {
                    Some(j) => i = j + 2,
                    None => i += 1,
                }
            }
            ']' => return i + 1,
            _ => i += 1,
        }
    }
    s.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn re2_braces_that_repeat_nothing_become_literals() {
        let cases = [
            (r"\$?{{[^}]+}}", r"\$?\{\{[^}]+\}\}"),
            (r"key={\d+}", r"key=\{\d+\}"),
            (r"(?:{a})", r"(?:\{a\})"),
            (r"x{", r"x\{"),
            (r"a}b", r"a\}b"),
            // Real repetitions and classes are left alone.
            (r"[a-z]{2,3}x{4}y{5,}", r"[a-z]{2,3}x{4}y{5,}"),
            (r"[{}]+\{", r"[{}]+\{"),
            (r"[]{]x", r"[]{]x"),
            (r"[[:alpha:]{]", r"[[:alpha:]{]"),
            // \Q...\E quotes a literal run.
            (r"\Qa.b{1}\E+", r"a\.b\{1\}+"),
        ];
        for (re2, rust) in cases {
            assert_eq!(re2_to_rust(re2), rust, "{re2}");
            crate::rules::compile_regex(rust).unwrap_or_else(|e| panic!("{rust}: {e}"));
        }
    }
}
