//! The rule model and keyburn's own TOML format.

use regex_automata::meta;
use regex_automata::util::syntax;
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use super::{ProviderSpec, RuleError, RuleSet};

/// How sure a rule is that a match is a live credential. Reports sort and
/// filter on it; when two rules match the same bytes the more confident wins.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    Low,
    #[default]
    Medium,
    High,
}

impl Confidence {
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Low => "low",
            Confidence::Medium => "medium",
            Confidence::High => "high",
        }
    }
}

impl std::str::FromStr for Confidence {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "low" => Ok(Confidence::Low),
            "medium" => Ok(Confidence::Medium),
            "high" => Ok(Confidence::High),
            _ => Err(format!("unknown confidence {s:?} (low, medium, high)")),
        }
    }
}

/// A structural check on the secret itself, beyond the regex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Checksum {
    /// GitHub's and npm's token format: the last 6 characters are the CRC32
    /// of the random part, in base62 (0-9A-Za-z), left-padded with zeros.
    #[serde(rename = "github-crc32")]
    GithubCrc32,
}

/// What an allow regex is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RegexTarget {
    #[default]
    Secret,
    Match,
    Line,
}

/// Patterns that cancel a rule's match.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allow {
    #[serde(default)]
    pub regexes: Vec<String>,
    #[serde(default)]
    pub regex_target: RegexTarget,
    /// Case-insensitive substrings of the secret.
    #[serde(default)]
    pub stopwords: Vec<String>,
    /// Regexes on the path of the scanned file.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Commits (ids or id prefixes) whose history findings of this rule
    /// are accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commits: Vec<String>,
}

/// A match of this rule only counts when a match of `rule` lies within
/// `within` bytes of it (an AWS secret key next to its access key id).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    pub rule: String,
    #[serde(default = "default_within")]
    pub within: usize,
}

fn default_within() -> usize {
    512
}

/// A multi-part credential: a finding of this rule takes, as its part
/// `part`, the secret of the nearest finding of `rule` in the same file
/// (and commit) within `within_lines` lines. A finding left without one of
/// its other parts is reported one confidence level lower.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pair {
    pub rule: String,
    pub part: String,
    #[serde(default = "default_within_lines")]
    pub within_lines: usize,
}

fn default_within_lines() -> usize {
    5
}

/// One detection rule. See DESIGN.md for the format.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub regex: String,
    /// Literals, matched case-insensitively, one of which must occur for the
    /// rule to run. An empty list runs the rule on every byte (slow).
    #[serde(default)]
    pub keywords: Vec<String>,
    /// A keyword must be a word of the name before the value (`token` in
    /// `GITHUB_TOKEN` or `authToken`, not in `tokenizer`): for rules that
    /// find a value by its name.
    #[serde(default, skip_serializing_if = "is_false")]
    pub keyword_word: bool,
    /// The rule reads a data format (Terraform's HCL, a credential file),
    /// where a value is the text written: one shaped like a name in code
    /// (`"UberSecretPassword"`), or the word `password` itself, is still
    /// the value.
    #[serde(default, skip_serializing_if = "is_false")]
    pub data_format: bool,
    /// Match keywords with exact case (for short keywords such as `SK`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub case_sensitive_keywords: bool,
    /// Minimum Shannon entropy (bits per byte) of the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entropy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<Checksum>,
    #[serde(default)]
    pub confidence: Confidence,
    /// Name of the responder provider able to validate and revoke it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The check (`[provider.P.check.NAME]`) of `provider` that validates
    /// and revokes this rule's secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    /// Capture group number holding the secret when it is not named `secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_group: Option<usize>,
    /// Bytes searched on each side of a keyword hit. Defaults to the regex's
    /// longest possible match when bounded, else 512.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<usize>,
    /// Regexes on the path: when set, the rule only runs on matching files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Drop matches that look like documentation placeholders (`xxxx`,
    /// `EXAMPLE`, `${VAR}`...). On by default.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub placeholder_filter: bool,
    /// A known secret searched for (`keyburn incident`'s inventory): every
    /// match is reported, no filter or allow list applies.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exact: bool,
    /// A rule on paths alone (gitleaks' rules with a `path` and no
    /// `regex`): a file whose path matches `paths` is a finding, whatever
    /// its content (a `.p12` keystore, say). The regex is not used.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub path_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires: Option<Requirement>,
    /// The other parts of a multi-part credential: one `pair` table or a
    /// list of them (Azure: tenant and client id).
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub pair: Vec<Pair>,
    /// An identifier, not a secret (a Twilio account SID, an Azure tenant
    /// id): its matches only serve as another rule's `pair` and are never
    /// reported.
    #[serde(default, skip_serializing_if = "is_false")]
    pub context: bool,
    #[serde(default)]
    pub allow: Allow,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
    /// The path the examples and counterexamples are scanned as, for a
    /// rule that only runs on some `paths` (`.pgpass`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example_path: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counterexamples: Vec<String>,
    /// The file the rule came from (for error messages).
    #[serde(skip)]
    pub source: String,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Pair>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(Pair),
        Many(Vec<Pair>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(p) => vec![p],
        OneOrMany::Many(v) => v,
    })
}

fn default_true() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
}
fn is_false(b: &bool) -> bool {
    !*b
}

/// Reads a rule's named parts out of the text it matched.
#[derive(Debug)]
pub struct PartsReader {
    regex: meta::Regex,
    /// Capture group index and name of each part.
    names: Vec<(usize, String)>,
}

impl PartsReader {
    pub fn read(&self, matched: &str) -> BTreeMap<String, String> {
        let mut caps = self.regex.create_captures();
        self.regex.captures(matched.as_bytes(), &mut caps);
        self.names
            .iter()
            .filter_map(|(i, name)| {
                let span = caps.get_group(*i)?;
                let text = &matched.as_bytes()[span.start..span.end];
                Some((name.clone(), String::from_utf8_lossy(text).into_owned()))
            })
            .collect()
    }
}

/// A rule's regexes, compiled. Built once per rule on first use.
#[derive(Debug)]
pub struct CompiledRule {
    pub regex: meta::Regex,
    /// Capture group index of the secret (0 = whole match).
    pub secret_group: usize,
    pub window: usize,
    /// How far before a keyword hit a match starts, when every match
    /// begins with a literal holding a keyword (the keyword's offsets in
    /// those literals); empty when matches may start anywhere around it.
    pub starts: Vec<usize>,
    /// The regex's longest possible match, when bounded.
    pub max_len: Option<usize>,
    pub allow_regexes: Vec<meta::Regex>,
    pub stopwords: Vec<Vec<u8>>,
    /// The keywords (lower case) that must be a word of the value's name,
    /// when the rule says `keyword_word`.
    pub name_keywords: Vec<Vec<u8>>,
}

/// Which paths a rule takes: those its `paths` match (any path when it
/// has none) and its allow list's `paths` do not.
#[derive(Debug)]
pub struct PathFilter {
    only: Vec<meta::Regex>,
    allow: Vec<meta::Regex>,
}

impl PathFilter {
    /// Whether the rule takes the file at `path`; content without a path is
    /// taken only by a rule not limited to some paths.
    pub fn takes(&self, path: Option<&str>) -> bool {
        let Some(p) = path else {
            return self.only.is_empty();
        };
        (self.only.is_empty() || self.only.iter().any(|re| re.is_match(p)))
            && !self.allow.iter().any(|re| re.is_match(p))
    }
}

const DEFAULT_WINDOW: usize = 512;
/// Keywords often sit beside the token rather than inside it (`DISCORD_TOKEN=`
/// before a bot token), so even short regexes search a little context.
const MIN_WINDOW: usize = 256;
const MAX_WINDOW: usize = 64 * 1024;

/// Parse a rule regex the way [`compile_regex`] does: bytes, not Unicode.
pub(crate) fn parse_regex(src: &str) -> Result<regex_syntax::hir::Hir, String> {
    regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(src)
        .map_err(|e| e.to_string())
}

/// Compile a regex the way every rule is compiled: byte-oriented (secrets may
/// sit in invalid UTF-8), ASCII classes (`\w`, `\s`, `\b`), case folding ASCII.
pub fn compile_regex(src: &str) -> Result<(meta::Regex, Option<usize>), String> {
    let hir = parse_regex(src)?;
    compile_hir(&hir)
}

fn compile_hir(hir: &regex_syntax::hir::Hir) -> Result<(meta::Regex, Option<usize>), String> {
    let max_len = hir.properties().maximum_len();
    let regex = meta::Builder::new()
        .configure(meta::Config::new().utf8_empty(false))
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .build_from_hir(hir)
        .map_err(|e| e.to_string())?;
    Ok((regex, max_len))
}

/// Compile a regex run on paths: bytes, as [`compile_regex`], without a
/// fully compiled DFA. Building one made each path regex cost three times
/// as much, a cost a one-file scan pays for every rule limited to paths;
/// the lazy DFA reads a path as fast.
pub fn compile_path_regex(src: &str) -> Result<meta::Regex, String> {
    meta::Builder::new()
        .configure(meta::Config::new().utf8_empty(false).dfa(false))
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .build(src)
        .map_err(|e| e.to_string())
}

/// When every match of `hir` begins with a literal holding one of
/// `keywords` (ASCII case aside unless `exact`), the offsets of keywords in
/// those literals: a match then starts at one of these offsets before a
/// keyword hit, and a window of the longest match around each hit finds it.
/// `None` otherwise (a keyword that sits beside the token, `DISCORD_TOKEN=`
/// before a bot token, needs the wider default window).
fn keyword_offsets(
    hir: &regex_syntax::hir::Hir,
    keywords: &[String],
    exact: bool,
) -> Option<Vec<usize>> {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    let seq = Extractor::new().kind(ExtractKind::Prefix).extract(hir);
    let lits = seq.literals().filter(|l| !l.is_empty())?;
    let mut offsets = Vec::new();
    for lit in lits {
        let lit = lit.as_bytes();
        let mut holds = false;
        for kw in keywords
            .iter()
            .map(String::as_bytes)
            .filter(|k| !k.is_empty())
        {
            for (o, w) in lit.windows(kw.len()).enumerate() {
                if (exact && w == kw) || (!exact && w.eq_ignore_ascii_case(kw)) {
                    offsets.push(o);
                    holds = true;
                }
            }
        }
        if !holds {
            return None;
        }
    }
    offsets.sort_unstable();
    offsets.dedup();
    Some(offsets)
}

impl Rule {
    /// Compile the rule's regexes and check that it is usable.
    pub fn compile(&self) -> Result<CompiledRule, RuleError> {
        let hir = parse_regex(&self.regex).map_err(|e| self.regex_error("", e))?;
        let (regex, max_len) = compile_hir(&hir).map_err(|e| self.regex_error("", e))?;
        let info = regex.group_info();
        let named = info.to_index(regex_automata::PatternID::ZERO, "secret");
        let secret_group = match (named, self.secret_group) {
            (Some(i), _) => i,
            (None, Some(n)) if n < info.group_len(regex_automata::PatternID::ZERO) => n,
            (None, Some(n)) => {
                return Err(RuleError::Invalid {
                    file: self.source.clone(),
                    id: self.id.clone(),
                    message: format!("secret_group {n} does not exist in the regex"),
                })
            }
            (None, None) => 0,
        };
        let starts = keyword_offsets(&hir, &self.keywords, self.case_sensitive_keywords);
        let window = match (self.window, max_len) {
            (Some(w), _) => w.clamp(MIN_WINDOW, MAX_WINDOW),
            (None, Some(len)) if starts.is_some() => len.min(MAX_WINDOW),
            (None, len) => len.unwrap_or(DEFAULT_WINDOW).clamp(MIN_WINDOW, MAX_WINDOW),
        };
        Ok(CompiledRule {
            regex,
            secret_group,
            window,
            starts: starts.unwrap_or_default(),
            max_len,
            allow_regexes: self
                .allow
                .regexes
                .iter()
                .map(|r| {
                    compile_regex(r)
                        .map(|(re, _)| re)
                        .map_err(|e| self.regex_error("allow regex", e))
                })
                .collect::<Result<_, _>>()?,
            stopwords: self
                .allow
                .stopwords
                .iter()
                .map(|s| s.to_ascii_lowercase().into_bytes())
                .collect(),
            name_keywords: if self.keyword_word {
                self.keywords
                    .iter()
                    .map(|k| k.to_ascii_lowercase().into_bytes())
                    .collect()
            } else {
                Vec::new()
            },
        })
    }

    /// Compile the rule's path filters, apart from its regexes: a file at
    /// a path the rule does not take is passed over without compiling them.
    pub fn compile_paths(&self) -> Result<PathFilter, RuleError> {
        let list = |what: &str, list: &[String]| -> Result<Vec<meta::Regex>, RuleError> {
            list.iter()
                .map(|r| compile_path_regex(r).map_err(|e| self.regex_error(what, e)))
                .collect()
        };
        Ok(PathFilter {
            only: list("path", &self.paths)?,
            allow: list("allow path", &self.allow.paths)?,
        })
    }

    /// Compile every regex of the rule, to learn that it is usable.
    pub fn check_compiles(&self) -> Result<(), RuleError> {
        self.compile()?;
        self.compile_paths()?;
        Ok(())
    }

    fn regex_error(&self, what: &str, e: String) -> RuleError {
        RuleError::Regex {
            file: self.source.clone(),
            id: self.id.clone(),
            message: if what.is_empty() {
                e
            } else {
                format!("{what}: {e}")
            },
        }
    }

    /// The named groups of the regex other than `secret` (a URL's `host`,
    /// `user`, `port`), read from the text the rule matched: the parts a
    /// provider check needs besides the secret. For many findings, build
    /// the [`PartsReader`] once.
    pub fn parts(&self, matched: &str) -> BTreeMap<String, String> {
        self.parts_reader()
            .map(|r| r.read(matched))
            .unwrap_or_default()
    }

    /// The rule's regex compiled to read parts, when it names any.
    pub fn parts_reader(&self) -> Option<PartsReader> {
        let (regex, _) = compile_regex(&self.regex).ok()?;
        let names: Vec<(usize, String)> = regex
            .group_info()
            .pattern_names(regex_automata::PatternID::ZERO)
            .enumerate()
            .filter_map(|(i, n)| Some((i, n.filter(|n| *n != "secret")?.to_string())))
            .collect();
        (!names.is_empty()).then_some(PartsReader { regex, names })
    }

    /// Whether the regex starts at the secret itself (a token format),
    /// rather than at a name or keyword before it: only then can a lone
    /// secret be told to have the wrong shape for the rule.
    pub fn secret_first(&self) -> bool {
        let r = self.regex.trim_start_matches(r"\b");
        r.starts_with("(?P<secret>") || r.starts_with("(?<secret>")
    }

    /// Generic rules (tag `generic`) lose ties against provider rules.
    pub fn is_generic(&self) -> bool {
        self.tags.iter().any(|t| t == "generic")
    }

    fn validate(&self) -> Result<(), String> {
        let id_ok = !self.id.is_empty()
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !self.id.starts_with('-');
        if !id_ok {
            return Err("id must be kebab-case: lowercase letters, digits and '-'".into());
        }
        if self.name.trim().is_empty() {
            return Err("name is empty".into());
        }
        if !self.paths.is_empty() && !self.examples.is_empty() && self.example_path.is_none() {
            return Err("a rule with paths needs an example_path to test its examples at".into());
        }
        if self.keywords.iter().any(|k| k.is_empty()) {
            return Err("a keyword is empty".into());
        }
        if let Some(e) = self.entropy {
            if !(0.0..=8.0).contains(&e) {
                return Err(format!("entropy {e} is outside 0..8 bits"));
            }
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyburnFile {
    #[serde(default)]
    rule: Vec<Rule>,
    #[serde(default)]
    provider: BTreeMap<String, ProviderSpec>,
}

/// Check a provider table for what can be checked before any request.
pub(super) fn check_provider(
    family: &str,
    spec: &ProviderSpec,
    file: &str,
) -> Result<(), RuleError> {
    spec.check_spec(family).map_err(|message| RuleError::Parse {
        file: file.to_string(),
        message,
    })
}

pub(super) fn parse_keyburn(text: &str, file: &str) -> Result<RuleSet, RuleError> {
    let parsed: KeyburnFile = toml::from_str(text).map_err(|e| RuleError::Parse {
        file: file.to_string(),
        message: e.to_string(),
    })?;
    for (family, spec) in &parsed.provider {
        check_provider(family, spec, file)?;
    }
    finish_keyburn(parsed, file)
}

/// The built-in rule files, converted from TOML to JSON at build time
/// (their provider tables apart, see `builtin_providers`).
pub(super) fn parse_keyburn_json(json: &str, file: &str) -> Result<RuleSet, RuleError> {
    let parsed: KeyburnFile = serde_json::from_str(json).map_err(|e| RuleError::Parse {
        file: file.to_string(),
        message: e.to_string(),
    })?;
    finish_keyburn(parsed, file)
}

fn finish_keyburn(parsed: KeyburnFile, file: &str) -> Result<RuleSet, RuleError> {
    let mut rules = parsed.rule;
    for rule in &mut rules {
        rule.source = file.to_string();
        rule.validate().map_err(|message| RuleError::Invalid {
            file: file.to_string(),
            id: rule.id.clone(),
            message,
        })?;
    }
    Ok(RuleSet {
        rules,
        allow: Default::default(),
        providers: parsed.provider,
        builtin_providers: false,
    })
}
