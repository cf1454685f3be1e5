//! gitleaks' TOML format, converted to keyburn rules so teams can bring an
//! existing `.gitleaks.toml`. Path-only rules (no regex) have no equivalent
//! and are rejected with a message naming them.

use serde::Deserialize;

use super::model::{Allow, Confidence, RegexTarget, Rule};
use super::{GlobalAllow, RuleError, RuleSet};

#[derive(Deserialize)]
struct GlFile {
    #[serde(default)]
    rules: Vec<GlRule>,
    #[serde(default)]
    allowlist: Option<GlAllow>,
    #[serde(default)]
    allowlists: Vec<GlAllow>,
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

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct GlAllow {
    #[serde(default)]
    regexes: Vec<String>,
    #[serde(default)]
    regex_target: Option<String>,
    #[serde(default)]
    stopwords: Vec<String>,
    #[serde(default)]
    paths: Vec<String>,
}

pub(super) fn parse(text: &str, file: &str) -> Result<RuleSet, RuleError> {
    let parsed: GlFile = toml::from_str(text).map_err(|e| RuleError::Parse {
        file: file.to_string(),
        message: e.to_string(),
    })?;
    let mut global = GlobalAllow::default();
    for a in parsed.allowlist.into_iter().chain(parsed.allowlists) {
        global.paths.extend(a.paths);
        global.regexes.extend(a.regexes);
        global.stopwords.extend(a.stopwords);
    }
    let mut rules = Vec::with_capacity(parsed.rules.len());
    for gl in parsed.rules {
        let Some(regex) = gl.regex else {
            return Err(RuleError::Invalid {
                file: file.to_string(),
                id: gl.id,
                message: "path-only gitleaks rules (no regex) are not supported".into(),
            });
        };
        let mut allow = Allow::default();
        for a in gl.allowlist.into_iter().chain(gl.allowlists) {
            if let Some(t) = a.regex_target.as_deref() {
                allow.regex_target = match t {
                    "match" => RegexTarget::Match,
                    "line" => RegexTarget::Line,
                    _ => RegexTarget::Secret,
                };
            }
            allow.regexes.extend(a.regexes);
            allow.stopwords.extend(a.stopwords);
            allow.paths.extend(a.paths);
        }
        let name = gl.description.clone().unwrap_or_else(|| gl.id.clone());
        rules.push(Rule {
            id: gl.id.to_ascii_lowercase().replace(['_', ' ', '.'], "-"),
            name,
            description: gl.description,
            regex,
            keywords: gl.keywords,
            case_sensitive_keywords: false,
            entropy: gl.entropy,
            checksum: None,
            confidence: Confidence::Medium,
            provider: None,
            secret_group: gl.secret_group.filter(|&g| g > 0),
            window: None,
            paths: gl.path.into_iter().collect(),
            placeholder_filter: true,
            requires: None,
            allow,
            tags: gl.tags,
            examples: vec![],
            counterexamples: vec![],
            source: file.to_string(),
        });
    }
    Ok(RuleSet {
        rules,
        allow: global,
    })
}
