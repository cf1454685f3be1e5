//! Rules: what a credential looks like, loaded from TOML and validated.
//!
//! A rule file holds `[[rule]]` tables in keyburn's format (see DESIGN.md) or
//! `[[rules]]` tables in gitleaks' format, so teams can bring an existing
//! config. Loading checks everything that can be checked without scanning:
//! ids, keywords, regex syntax (for user rules), requirements between rules.
//! The built-in rules live in the workspace's `rules/` folder and are embedded
//! at build time; their regexes compile lazily, on the first keyword hit.

mod check;
mod gitleaks;
mod model;

pub use check::{
    CheckSpec, Extract, Flow, Matcher, ProviderSpec, Revoke, RevokeKind, Step, CODE_PROVIDERS,
};

pub use gitleaks::GitleaksConfig;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Serialize;

#[cfg(any(feature = "hyperscan", test))]
pub(crate) use model::parse_regex;
pub use model::{
    compile_path_regex, compile_regex, Allow, Checksum, CompiledRule, Confidence, Pair,
    PartsReader, PathFilter, RegexTarget, Requirement, Rule,
};

include!(concat!(env!("OUT_DIR"), "/embedded_rules.rs"));

/// An error in a rule file. Every variant names the file, and the rule where
/// one is involved, so the user can go straight to the problem.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("{file}: cannot read rule file: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: not a valid rule file: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: rule {id:?}: invalid regex: {message}")]
    Regex {
        file: String,
        id: String,
        message: String,
    },
    #[error("{file}: rule {id:?}: {message}")]
    Invalid {
        file: String,
        id: String,
        message: String,
    },
}

/// Patterns that cancel findings of every rule: paths, regexes on the secret,
/// and stopwords. Filled from gitleaks' global `[allowlist]` and from the CLI.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GlobalAllow {
    pub paths: Vec<String>,
    pub regexes: Vec<String>,
    pub stopwords: Vec<String>,
    /// Commits (ids or id prefixes) whose history findings are accepted.
    pub commits: Vec<String>,
}

impl GlobalAllow {
    fn extend(&mut self, other: GlobalAllow) {
        self.paths.extend(other.paths);
        self.regexes.extend(other.regexes);
        self.stopwords.extend(other.stopwords);
        self.commits.extend(other.commits);
    }
}

/// An ordered collection of rules with unique ids, plus global allow lists.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    pub allow: GlobalAllow,
    /// Provider families and their checks from rule files other than the
    /// built-in ones, by name (they override built-in families).
    providers: BTreeMap<String, ProviderSpec>,
    /// Whether the built-in provider tables apply (parsed on first use).
    builtin_providers: bool,
}

/// The built-in provider tables, parsed once, on first use.
fn builtin_providers() -> &'static BTreeMap<String, ProviderSpec> {
    static TABLES: std::sync::OnceLock<BTreeMap<String, ProviderSpec>> = std::sync::OnceLock::new();
    TABLES.get_or_init(|| {
        let mut all = BTreeMap::new();
        for (name, json) in EMBEDDED_PROVIDERS {
            // The test suite checks every embedded table.
            let tables: BTreeMap<String, ProviderSpec> = serde_json::from_str(json)
                .unwrap_or_else(|e| panic!("embedded provider tables of {name} are invalid: {e}"));
            all.extend(tables);
        }
        all
    })
}

impl RuleSet {
    /// The rules compiled into the binary, with their examples and
    /// counterexamples.
    pub fn builtin() -> RuleSet {
        let mut set = RuleSet::builtin_to_scan();
        // Cases by rule id: [examples, counterexamples].
        type Cases = HashMap<String, (Option<Vec<String>>, Option<Vec<String>>)>;
        let mut cases: Cases = serde_json::from_str(EMBEDDED_EXAMPLES)
            .unwrap_or_else(|e| panic!("embedded rule examples are invalid: {e}"));
        for rule in &mut set.rules {
            if let Some((examples, counterexamples)) = cases.remove(&rule.id) {
                rule.examples = examples.unwrap_or_default();
                rule.counterexamples = counterexamples.unwrap_or_default();
            }
        }
        set
    }

    /// The rules compiled into the binary without their examples and
    /// counterexamples, which a scan never reads: they are a third of the
    /// rules' text, and a one-file scan (the pre-commit hook) parses the
    /// rest on every run.
    pub fn builtin_to_scan() -> RuleSet {
        let mut set = RuleSet {
            builtin_providers: true,
            ..RuleSet::default()
        };
        // One merge for all files: `add` indexes what it merges into.
        let mut files = RuleSet::default();
        for (name, json) in EMBEDDED {
            // The test suite loads every embedded file, so a broken built-in
            // file cannot ship; here a failure would be a build bug.
            let file = model::parse_keyburn_json(json, &format!("builtin:{name}"))
                .unwrap_or_else(|e| panic!("embedded rule file is invalid: {e}"));
            files.rules.extend(file.rules);
            files.allow.extend(file.allow);
            files.providers.extend(file.providers);
        }
        set.add(files);
        set
    }

    /// A provider family's table: a rule file's, else the built-in one.
    pub fn provider(&self, family: &str) -> Option<&ProviderSpec> {
        self.providers.get(family).or_else(|| {
            self.builtin_providers
                .then(|| builtin_providers().get(family))
                .flatten()
        })
    }

    /// Every provider family and its table, by name.
    pub fn providers(&self) -> BTreeMap<&str, &ProviderSpec> {
        let mut all: BTreeMap<&str, &ProviderSpec> = BTreeMap::new();
        if self.builtin_providers {
            all.extend(builtin_providers().iter().map(|(k, v)| (k.as_str(), v)));
        }
        all.extend(self.providers.iter().map(|(k, v)| (k.as_str(), v)));
        all
    }

    /// Load a user's rule file. Its regexes are compiled now so that errors
    /// surface before scanning, naming the file and rule.
    pub fn load_file(path: &Path) -> Result<RuleSet, RuleError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| RuleError::Io {
            file: file.clone(),
            source,
        })?;
        parse_str(&text, &file, true)
    }

    /// Parse rules from a string; `file` is only used in error messages.
    /// With `strict`, every regex is compiled to catch syntax errors now.
    pub fn from_toml(text: &str, file: &str) -> Result<RuleSet, RuleError> {
        parse_str(text, file, true)
    }

    /// Check every provider table (loading built-in files skips this; the
    /// test suite calls it).
    pub fn check_providers(&self) -> Result<(), RuleError> {
        for (family, spec) in self.providers() {
            model::check_provider(family, spec, "rule set")?;
        }
        Ok(())
    }

    /// Add the rules of `other`. A rule whose id already exists replaces the
    /// earlier one, so a user file can override a built-in rule.
    pub fn merge(&mut self, other: RuleSet) -> Result<(), RuleError> {
        self.add(other);
        self.check_requirements()
    }

    /// [`RuleSet::merge`] without checking references between rules.
    fn add(&mut self, other: RuleSet) {
        let mut index: HashMap<String, usize> = self
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.clone(), i))
            .collect();
        self.rules.reserve(other.rules.len());
        for rule in other.rules {
            match index.get(&rule.id) {
                Some(&i) => self.rules[i] = rule,
                None => {
                    index.insert(rule.id.clone(), self.rules.len());
                    self.rules.push(rule);
                }
            }
        }
        self.allow.extend(other.allow);
        self.providers.extend(other.providers);
        self.builtin_providers |= other.builtin_providers;
    }

    /// Keep only the rules for which `keep` returns true.
    pub fn retain(&mut self, keep: impl FnMut(&Rule) -> bool) {
        self.rules.retain(keep);
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rules, taken out of the set.
    pub fn into_rules(self) -> Vec<Rule> {
        self.rules
    }

    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The provider check of `rule`, when it has one.
    pub fn check_of<'a, 'r>(
        &'a self,
        rule: &'r Rule,
    ) -> Option<(&'r str, &'a ProviderSpec, &'a CheckSpec)> {
        let family = rule.provider.as_deref()?;
        let spec = self.provider(family)?;
        let check = spec.check.get(rule.check.as_deref()?)?;
        Some((family, spec, check))
    }

    /// How a person replaces a leaked secret of `rule`: its check's
    /// manual steps and console page (the most specific), else its
    /// provider's `rotate`.
    pub fn rotation(&self, rule: &Rule) -> Option<String> {
        let (_, spec, check) = self.check_of(rule)?;
        let manual = check.revoke.as_ref().and_then(|r| {
            let steps = r.manual.clone()?;
            Some(match &r.console {
                Some(c) => format!("{steps} ({c})"),
                None => steps,
            })
        });
        manual.or_else(|| spec.rotate.clone())
    }

    fn check_requirements(&self) -> Result<(), RuleError> {
        for rule in &self.rules {
            if let Some(check) = &rule.check {
                let invalid = |message: String| RuleError::Invalid {
                    file: rule.source.clone(),
                    id: rule.id.clone(),
                    message,
                };
                let family = rule
                    .provider
                    .as_deref()
                    .ok_or_else(|| invalid(format!("check {check:?} without a provider")))?;
                let spec = self.provider(family).ok_or_else(|| {
                    invalid(format!(
                        "provider {family:?} has no [provider.{family}] table"
                    ))
                })?;
                if !spec.check.contains_key(check) {
                    return Err(invalid(format!(
                        "provider {family:?} has no check {check:?}"
                    )));
                }
            }
            if let Some(p) = rule.pair.iter().find(|p| self.get(&p.rule).is_none()) {
                return Err(RuleError::Invalid {
                    file: rule.source.clone(),
                    id: rule.id.clone(),
                    message: format!("pairs with unknown rule {:?}", p.rule),
                });
            }
            if let Some(req) = &rule.requires {
                if self.get(&req.rule).is_none() {
                    return Err(RuleError::Invalid {
                        file: rule.source.clone(),
                        id: rule.id.clone(),
                        message: format!("requires unknown rule {:?}", req.rule),
                    });
                }
            }
        }
        Ok(())
    }
}

fn parse_str(text: &str, file: &str, strict: bool) -> Result<RuleSet, RuleError> {
    let value: toml::Table = toml::from_str(text).map_err(|e| RuleError::Parse {
        file: file.to_string(),
        message: e.to_string(),
    })?;
    let set = if value.contains_key("rule") {
        model::parse_keyburn(text, file)?
    } else if value.contains_key("rules") || value.contains_key("allowlist") {
        gitleaks::parse(text, file)?
    } else {
        return Err(RuleError::Parse {
            file: file.to_string(),
            message: "no [[rule]] (keyburn) or [[rules]] (gitleaks) tables found".into(),
        });
    };
    let mut seen = HashMap::new();
    for rule in &set.rules {
        if seen.insert(rule.id.as_str(), ()).is_some() {
            return Err(RuleError::Invalid {
                file: file.to_string(),
                id: rule.id.clone(),
                message: "duplicate rule id in this file".into(),
            });
        }
        if strict {
            rule.check_compiles()?;
        }
    }
    Ok(set)
}
