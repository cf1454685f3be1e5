//! The matching engine: keyword prefilter, regex confirmation, post-filters.
//!
//! Scanning a buffer works in two stages. One Aho-Corasick automaton over the
//! keywords of every rule finds candidate positions in a single pass; only
//! the rules whose keywords occur run their regex, and only on a window of
//! bytes around each hit (windows of one rule are merged, so no byte is
//! searched twice by the same rule). Matches then go through the entropy,
//! checksum, placeholder and allow-list filters, rule requirements, and
//! finally overlap resolution, so that one secret yields one match: that of
//! the most confident, most specific rule.
//!
//! Regexes are compiled lazily on a rule's first keyword hit: a scan of one
//! small file compiles only the few rules it could trigger.

pub mod decode;
mod filters;
mod hyperscan;
pub mod names;
mod prefilter;
mod stage_one;

use std::ops::Range;
use std::path::PathBuf;
use std::sync::OnceLock;

use regex_automata::meta;
use regex_automata::util::captures::Captures;
use regex_automata::Input;

pub use hyperscan::HyperscanError;
pub use prefilter::Hit as KeywordHit;
use stage_one::StageOne;
pub use stage_one::StageScratch;

use crate::rules::{
    compile_path_regex, compile_regex, CompiledRule, Confidence, PathFilter, RegexTarget, Rule,
    RuleSet,
};

pub use filters::{entropy, entropy_floor, is_placeholder, valid_checksum};
use filters::{
    is_file_name_stem, is_inside_base64_blob, is_mostly_repetition, is_not_a_secret_value,
    is_password_word, keyword_is_a_word, opens_a_phrase,
};

/// An error building an engine (only user-supplied allow lists can fail here:
/// rule regexes were compiled when their file was loaded).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid global allow regex {pattern:?}: {message}")]
    AllowRegex { pattern: String, message: String },
    #[error("cannot build keyword prefilter: {0}")]
    Prefilter(#[from] aho_corasick::BuildError),
    #[error(transparent)]
    Hyperscan(#[from] HyperscanError),
}

/// Which implementation finds where rules may match (stage one). Both give
/// exactly the same findings; they differ in speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineKind {
    /// The pure-Rust keyword prefilter. Compiles nothing up front, so it
    /// starts in milliseconds.
    #[default]
    Rust,
    /// One Hyperscan database of keywords and prefiltering regexes (needs
    /// the `hyperscan` cargo feature), built before the engine is returned.
    Hyperscan,
    /// The Rust prefilter at once, and Hyperscan from the moment its
    /// database is ready: it is loaded or compiled on a background thread,
    /// so a short scan never waits for it and a long one gets its speed.
    /// Plain Rust in a build without the feature.
    Auto,
}

impl EngineKind {
    /// Whether this build can run Hyperscan.
    pub const HYPERSCAN_AVAILABLE: bool = cfg!(feature = "hyperscan");

    /// The engines this build can run on their own (not `Auto`), Rust
    /// first.
    pub fn compiled_in() -> &'static [EngineKind] {
        if Self::HYPERSCAN_AVAILABLE {
            &[EngineKind::Rust, EngineKind::Hyperscan]
        } else {
            &[EngineKind::Rust]
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Rust => "rust",
            EngineKind::Hyperscan => "hyperscan",
            EngineKind::Auto => "auto",
        }
    }
}

impl std::str::FromStr for EngineKind {
    type Err = String;
    fn from_str(s: &str) -> Result<EngineKind, String> {
        match s {
            "rust" => Ok(EngineKind::Rust),
            "hyperscan" => Ok(EngineKind::Hyperscan),
            "auto" => Ok(EngineKind::Auto),
            _ => Err(format!("unknown engine {s:?} (rust, hyperscan or auto)")),
        }
    }
}

/// A confirmed match in a scanned buffer. Offsets are byte offsets into it.
#[derive(Debug, Clone, PartialEq)]
pub struct RawMatch {
    /// Index of the rule in [`Engine::rules`].
    pub rule: usize,
    /// The secret's span.
    pub start: usize,
    pub end: usize,
    /// The whole regex match's span (contains the secret's).
    pub match_start: usize,
    pub match_end: usize,
    pub entropy: f64,
    /// Found in decoded text: the spans above are then the encoded text's.
    pub decoded: Option<Box<DecodedMatch>>,
}

/// What a match in decoded text found, and the decodings that led there
/// (outermost first).
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedMatch {
    pub secret: Vec<u8>,
    pub matched: Vec<u8>,
    pub chain: Vec<decode::Encoding>,
}

/// Builds an [`Engine`] from a rule set with a few knobs.
pub struct EngineBuilder {
    rules: RuleSet,
    min_confidence: Confidence,
    kind: EngineKind,
    cache_dir: Option<PathBuf>,
    explain: Option<Explain>,
    decode: decode::DecodeOptions,
    archives: decode::ArchiveOptions,
}

/// A built-in filter that can drop a rule's match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// The secret's entropy is under the rule's minimum.
    Entropy,
    /// The secret looks like a documentation placeholder.
    Placeholder,
    /// The secret holds a stopword (the rule's or a global one).
    Stopword,
    /// No keyword is a word of the value's name (`tokenizer`).
    KeywordWord,
    /// A generic rule's value is a number, version, path or expansion.
    ValueShape,
    /// Most of the secret is one short pattern repeated.
    Repetition,
    /// The secret is the stem of a file name (`<hash>.png`).
    FileName,
    /// A generic rule's quoted value is the first word of a phrase.
    Phrase,
    /// The secret is a piece of a longer base64 blob.
    Base64Blob,
}

impl Filter {
    pub fn as_str(self) -> &'static str {
        match self {
            Filter::Entropy => "entropy",
            Filter::Placeholder => "placeholder",
            Filter::Stopword => "stopword",
            Filter::KeywordWord => "keyword-word",
            Filter::ValueShape => "value-shape",
            Filter::Repetition => "repetition",
            Filter::FileName => "file-name",
            Filter::Phrase => "phrase",
            Filter::Base64Blob => "base64-blob",
        }
    }
}

/// A match of a user's rule that a built-in filter dropped: what
/// [`EngineBuilder::explain`] is told, so that a rule's author can see why
/// it reports nothing.
pub struct Dropped<'a> {
    pub rule: &'a Rule,
    pub filter: Filter,
    pub secret: &'a [u8],
}

type Explain = std::sync::Arc<dyn Fn(Dropped<'_>) + Send + Sync>;

impl EngineBuilder {
    pub fn new(rules: RuleSet) -> EngineBuilder {
        EngineBuilder {
            rules,
            min_confidence: Confidence::Low,
            kind: EngineKind::Rust,
            cache_dir: None,
            explain: None,
            decode: decode::DecodeOptions::default(),
            archives: decode::ArchiveOptions::default(),
        }
    }

    /// Tell `f` about every match of a user's rule (not a built-in one)
    /// that a built-in filter drops. It is called from scanning threads.
    pub fn explain(mut self, f: impl Fn(Dropped<'_>) + Send + Sync + 'static) -> EngineBuilder {
        self.explain = Some(std::sync::Arc::new(f));
        self
    }

    /// Select the stage-one implementation.
    pub fn kind(mut self, kind: EngineKind) -> EngineBuilder {
        self.kind = kind;
        self
    }

    /// Where compiled Hyperscan databases are cached (none by default).
    pub fn cache_dir(mut self, dir: Option<PathBuf>) -> EngineBuilder {
        self.cache_dir = dir;
        self
    }

    /// How deep and how much encoded text is decoded and scanned again
    /// (depth 0: not at all).
    pub fn decode(mut self, d: decode::DecodeOptions) -> EngineBuilder {
        self.decode = d;
        self
    }

    /// How deep and how much archives are opened and their members
    /// scanned (depth 0: not at all).
    pub fn archives(mut self, a: decode::ArchiveOptions) -> EngineBuilder {
        self.archives = a;
        self
    }

    /// Drop rules below this confidence.
    pub fn min_confidence(mut self, c: Confidence) -> EngineBuilder {
        self.min_confidence = c;
        self
    }

    pub fn build(mut self) -> Result<Engine, EngineError> {
        let min = self.min_confidence;
        // Context rules are never reported: they only lend other rules parts.
        self.rules.retain(|r| r.confidence >= min || r.context);
        let mut engine = Engine::new(self.rules)?;
        engine.explain = self.explain;
        engine.decode = self.decode;
        engine.archives = self.archives;
        let background = match self.kind {
            EngineKind::Rust => return Ok(engine),
            EngineKind::Hyperscan => false,
            EngineKind::Auto if EngineKind::HYPERSCAN_AVAILABLE => true,
            EngineKind::Auto => return Ok(engine),
        };
        let keywords = engine.keywords.clone();
        engine
            .stage_one
            .use_hyperscan(keywords, &engine.rules, self.cache_dir, background)?;
        Ok(engine)
    }
}

/// For text decoded from decoded text: the outermost encoded span and
/// the decodings so far.
type Outer<'a> = Option<(&'a Range<usize>, &'a [decode::Encoding])>;

/// For decoded text: the matches of the text it was decoded from that
/// other rules may require, and the encoded span there.
type Around<'a> = Option<(&'a [RawMatch], &'a Range<usize>)>;

/// A rule a keyword triggers, with the exact bytes required when the rule's
/// keywords are case-sensitive.
type Trigger = (u32, Option<Box<[u8]>>);

struct Global {
    paths: Vec<meta::Regex>,
    regexes: Vec<meta::Regex>,
    stopwords: Vec<Vec<u8>>,
    commits: Vec<String>,
}

/// A compiled rule set, ready to scan. Cheap to share between threads.
pub struct Engine {
    rules: Vec<Rule>,
    compiled: Vec<OnceLock<Option<CompiledRule>>>,
    /// Each rule's path filters, compiled on first use apart from its
    /// regexes (see [`Engine::takes`]).
    path_filters: Vec<OnceLock<Option<PathFilter>>>,
    /// The prefilter's patterns: lower-case keywords, deduplicated.
    keywords: Vec<String>,
    stage_one: StageOne,
    /// Length of the longest keyword, in bytes.
    longest_keyword: usize,
    /// For each prefilter pattern, the rules it triggers and, for rules with
    /// case-sensitive keywords, the exact bytes the hit must equal.
    triggers: Vec<Vec<Trigger>>,
    /// Rules without keywords: they run on every buffer.
    unconditional: Vec<u32>,
    /// Rules on paths alone (see [`Engine::path_findings`]).
    path_rules: Vec<usize>,
    /// Rules with a regex that run only on some paths (`paths`).
    path_limited: Vec<usize>,
    /// For each rule with a requirement: (index of the required rule, within).
    requirements: Vec<Option<(usize, usize)>>,
    /// For each rule, whether another requires it.
    lends: Vec<bool>,
    global: Global,
    explain: Option<Explain>,
    decode: decode::DecodeOptions,
    archives: decode::ArchiveOptions,
}

/// Per-thread scratch space, reused across buffers to avoid allocation.
#[derive(Default)]
pub struct Scratch {
    windows: Vec<(u32, usize, usize)>,
    last: Vec<u32>,
    matches: Vec<RawMatch>,
    vetoes: Vec<(usize, usize)>,
    stage_one: StageScratch,
    /// Each rule's regex cache and captures, made on the rule's first
    /// window and kept: the regex's own pool hands a thread other than its
    /// first a cache under a lock, on every search.
    regex: Vec<Option<RegexState>>,
}

struct RegexState {
    cache: meta::Cache,
    caps: Captures,
}

/// Rule `r`'s [`RegexState`] in `states`, made on first use.
fn regex_state<'s>(
    states: &'s mut Vec<Option<RegexState>>,
    r: usize,
    c: &CompiledRule,
) -> &'s mut RegexState {
    if states.len() <= r {
        states.resize_with(r + 1, || None);
    }
    states[r].get_or_insert_with(|| RegexState {
        cache: c.regex.create_cache(),
        caps: c.regex.create_captures(),
    })
}

/// What the post-filters decide about a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Keep,
    Drop,
    /// Drop, and let no generic rule report these bytes either.
    Veto,
}

/// Markers that keep a line out of every report: ours, and those of the
/// tools a team may be coming from, so their reviewed lines stay reviewed.
const INLINE_ALLOW: [&[u8]; 5] = [
    b"keyburn:allow",
    b"gitleaks:allow",
    b"betterleaks:allow",
    b"trufflehog:ignore",
    b"kingfisher:ignore",
];

impl Engine {
    pub fn new(set: RuleSet) -> Result<Engine, EngineError> {
        let global = Global {
            paths: compile_all(&set.allow.paths, compile_path_regex)?,
            regexes: compile_all(&set.allow.regexes, |p| compile_regex(p).map(|(re, _)| re))?,
            stopwords: set
                .allow
                .stopwords
                .iter()
                .map(|s| s.to_ascii_lowercase().into_bytes())
                .collect(),
            commits: set.allow.commits.clone(),
        };
        let rules = set.into_rules();
        let mut patterns: Vec<String> = Vec::new();
        let mut index = std::collections::HashMap::new();
        let mut triggers: Vec<Vec<Trigger>> = Vec::new();
        let mut unconditional = Vec::new();
        let mut path_rules = Vec::new();
        let mut path_limited = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            if rule.path_only {
                path_rules.push(i);
                continue;
            }
            if !rule.paths.is_empty() {
                path_limited.push(i);
            }
            if rule.keywords.is_empty() {
                unconditional.push(i as u32);
            }
            for kw in &rule.keywords {
                let key = kw.to_ascii_lowercase();
                let p = *index.entry(key.clone()).or_insert_with(|| {
                    patterns.push(key);
                    triggers.push(Vec::new());
                    patterns.len() - 1
                });
                let exact = rule
                    .case_sensitive_keywords
                    .then(|| kw.as_bytes().to_vec().into_boxed_slice());
                if !triggers[p]
                    .iter()
                    .any(|(r, e)| *r == i as u32 && *e == exact)
                {
                    triggers[p].push((i as u32, exact));
                }
            }
        }
        let stage_one = StageOne::keywords(&patterns)?;
        let requirements = rules
            .iter()
            .map(|r| {
                r.requires.as_ref().and_then(|req| {
                    rules
                        .iter()
                        .position(|o| o.id == req.rule)
                        .map(|i| (i, req.within))
                })
            })
            .collect::<Vec<_>>();
        let mut lends = vec![false; rules.len()];
        for &(req, _) in requirements.iter().flatten() {
            lends[req] = true;
        }
        let compiled = rules.iter().map(|_| OnceLock::new()).collect();
        let path_filters = rules.iter().map(|_| OnceLock::new()).collect();
        let longest_keyword = patterns.iter().map(String::len).max().unwrap_or(0);
        Ok(Engine {
            rules,
            compiled,
            path_filters,
            longest_keyword,
            keywords: patterns,
            stage_one,
            triggers,
            unconditional,
            path_rules,
            path_limited,
            requirements,
            lends,
            global,
            explain: None,
            decode: decode::DecodeOptions::default(),
            archives: decode::ArchiveOptions::default(),
        })
    }

    /// Which implementation runs stage one now.
    pub fn kind(&self) -> EngineKind {
        self.stage_one.kind()
    }

    /// What became of Hyperscan in this engine: how its database was
    /// obtained, or why it was not used, and the rules whose regex it
    /// rejected (they search every keyword window, as on the Rust path).
    pub fn hyperscan_notes(&self) -> Vec<String> {
        self.stage_one
            .hyperscan_notes(|rule| self.rules[rule].id.clone())
    }

    /// How archives are opened (see [`EngineBuilder::archives`]).
    pub fn archives(&self) -> decode::ArchiveOptions {
        self.archives
    }

    /// The engine's rules; [`RawMatch::rule`] indexes this slice.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The compiled form of rule `i`, compiling it on first use. `None` when
    /// the rule does not compile (only possible for rules that skipped
    /// validation; they are then inert).
    fn compiled(&self, i: usize) -> Option<&CompiledRule> {
        self.compiled[i]
            .get_or_init(|| self.rules[i].compile().ok())
            .as_ref()
    }

    /// Whether rule `r` takes the file at `path` (content without a path
    /// when `None`), by its own path filters. A rule limited to other paths
    /// is passed over without compiling its regexes: a one-file scan would
    /// otherwise compile every keyword-less rule limited to paths
    /// (`.erlang.cookie`, Rails' `master.key`) to learn that they do not
    /// take it.
    fn takes(&self, r: usize, path: Option<&str>) -> bool {
        let rule = &self.rules[r];
        if !self.judges_paths(r) || (path.is_none() && rule.paths.is_empty()) {
            return true;
        }
        self.path_filters[r]
            .get_or_init(|| rule.compile_paths().ok())
            .as_ref()
            .is_some_and(|f| f.takes(path))
    }

    /// Scan a buffer that has no path.
    pub fn scan(&self, hay: &[u8]) -> Vec<RawMatch> {
        let mut scratch = Scratch::default();
        let mut out = Vec::new();
        self.scan_into(None, hay, &mut scratch, &mut out);
        out
    }

    /// Scan `hay`, the content of `path` if it has one, appending matches to
    /// `out` sorted by position.
    pub fn scan_into(
        &self,
        path: Option<&str>,
        hay: &[u8],
        scratch: &mut Scratch,
        out: &mut Vec<RawMatch>,
    ) {
        if path.is_some_and(|p| self.path_ignored(p)) {
            return;
        }
        self.scan_filtered(hay, None, None, scratch, out, |r| self.takes(r, path));
    }

    /// [`Engine::scan_into`] for the file at `path`, noting in `asked`
    /// each rule the scan asked about whose taking depends on the path (a
    /// rule limited to some paths, or with paths allowed), with the
    /// answer. The matches are then those of the same content at any path
    /// that gets the same answers ([`Engine::answers_alike`]). False when
    /// a global allow list leaves `path` out, and nothing was scanned.
    pub fn scan_noting_paths(
        &self,
        path: &str,
        hay: &[u8],
        scratch: &mut Scratch,
        out: &mut Vec<RawMatch>,
        asked: &mut Vec<(usize, bool)>,
    ) -> bool {
        asked.clear();
        if self.path_ignored(path) {
            return false;
        }
        let noted = std::cell::RefCell::new(std::mem::take(asked));
        self.scan_filtered(hay, None, None, scratch, out, |r| {
            let takes = self.takes(r, Some(path));
            if self.judges_paths(r) {
                noted.borrow_mut().push((r, takes));
            }
            takes
        });
        *asked = noted.into_inner();
        asked.sort_unstable();
        asked.dedup();
        true
    }

    /// Whether the file at `path` gets the answers `asked` notes (see
    /// [`Engine::scan_noting_paths`]).
    pub fn answers_alike(&self, path: &str, asked: &[(usize, bool)]) -> bool {
        !self.path_ignored(path)
            && asked
                .iter()
                .all(|&(r, takes)| self.takes(r, Some(path)) == takes)
    }

    /// Scan a git blob found at `paths`: every rule that may take it at one
    /// of them (a rule limited to other paths would compete for bytes with
    /// the rules that count there, and be dropped at every path). Check
    /// each path with [`Engine::applies_to`] before reporting a match there.
    pub fn scan_blob_at<'p>(
        &self,
        paths: impl Iterator<Item = &'p str>,
        hay: &[u8],
        scratch: &mut Scratch,
        out: &mut Vec<RawMatch>,
    ) {
        let placed: Vec<&str> = if self.path_limited.is_empty() {
            Vec::new()
        } else {
            paths.filter(|p| !self.path_ignored(p)).collect()
        };
        self.scan_filtered(hay, None, None, scratch, out, |r| {
            self.rules[r].paths.is_empty() || placed.iter().any(|p| self.takes(r, Some(p)))
        });
    }

    /// Scan a git blob before its paths are known, without the rules
    /// limited to some paths (a blob found where one of them may take it
    /// is scanned again with [`Engine::scan_blob_at`]). Stage one is done
    /// by the caller: `hits` must hold every keyword occurrence in `hay`
    /// (as [`Engine::keyword_hits`] finds them); the findings are then
    /// exactly `scan_blob_at`'s for paths no such rule takes. A caller that
    /// knows most of `hay` is a copy of an already scanned buffer (a git
    /// delta) can take that part's hits from it. `fresh`, when given, are
    /// the only ranges where encoded text is looked for (the rest was
    /// decoded with the buffer it was copied from).
    pub fn scan_unplaced_with_hits(
        &self,
        hay: &[u8],
        hits: &[KeywordHit],
        fresh: Option<&[Range<usize>]>,
        scratch: &mut Scratch,
        out: &mut Vec<RawMatch>,
    ) {
        self.scan_filtered(hay, Some(hits), fresh, scratch, out, |r| {
            self.rules[r].paths.is_empty()
        });
    }

    /// Whether a rule limited to some paths may take the file at `path`.
    pub fn path_limited_applies(&self, path: &str) -> bool {
        !self.path_limited.is_empty()
            && !self.path_ignored(path)
            && self.path_limited.iter().any(|&r| self.takes(r, Some(path)))
    }

    /// Tests on file names for the rules limited to some paths: `None`
    /// when there are none; `Some(None)` when some cannot be judged by a
    /// name (then every file may be taken).
    pub fn path_limited_names(&self) -> Option<Option<names::NameFilter>> {
        if self.path_limited.is_empty() {
            return None;
        }
        Some(names::NameFilter::new(self.path_limited.iter().flat_map(
            |&r| self.rules[r].paths.iter().map(String::as_str),
        )))
    }

    /// Every keyword occurrence lying wholly inside `hay[range]`, with
    /// offsets into `hay`, appended to `out` sorted by start (ASCII
    /// case-insensitive, overlapping occurrences included).
    pub fn keyword_hits(&self, hay: &[u8], range: Range<usize>, out: &mut Vec<KeywordHit>) {
        let base = range.start;
        let from = out.len();
        self.stage_one.keyword_hits(&hay[range], |h| {
            out.push(KeywordHit {
                pattern: h.pattern,
                start: h.start + base,
                end: h.end + base,
            })
        });
        // Stage one probes each keyword at its own offset, so a keyword
        // starting later can be met first.
        let found = &mut out[from..];
        if !found.is_sorted_by_key(|h| h.start) {
            found.sort_unstable_by_key(|h| (h.start, h.end, h.pattern));
        }
    }

    /// The longest match worth planning for, in bytes: a rule's longest
    /// possible match when its regex is bounded, else what its keyword
    /// windows can hold (two windows and a keyword). Inputs scanned in
    /// chunks overlap by this much. Compiles every rule on first use.
    pub fn longest_match(&self) -> usize {
        (0..self.rules.len())
            .filter_map(|i| self.compiled(i))
            .map(|c| c.max_len.unwrap_or(2 * c.window + self.longest_keyword))
            .max()
            .unwrap_or(0)
    }

    /// The length of the longest keyword, in bytes: an occurrence that
    /// touches byte `i` lies within `longest_keyword() - 1` bytes of it.
    pub fn longest_keyword(&self) -> usize {
        self.longest_keyword
    }

    /// Whether an allow list accepts the findings of rule `rule_id` in
    /// commit `commit` (a global one, or the rule's own): ids or prefixes
    /// of at least 7 characters.
    pub fn allows_commit(&self, rule_id: &str, commit: &str) -> bool {
        let listed = |list: &[String]| {
            list.iter()
                .any(|c| c.len() >= 7 && commit.starts_with(c.to_ascii_lowercase().as_str()))
        };
        listed(&self.global.commits)
            || self
                .rules
                .iter()
                .find(|r| r.id == rule_id)
                .is_some_and(|r| listed(&r.allow.commits))
    }

    /// Whether any rule judges files by their path alone.
    pub fn has_path_rules(&self) -> bool {
        !self.path_rules.is_empty()
    }

    /// The path-only rules that report the file at `path` itself (a
    /// keystore by its extension), whatever its content.
    pub fn path_findings(&self, path: &str) -> Vec<usize> {
        if self.path_rules.is_empty() || self.path_ignored(path) {
            return Vec::new();
        }
        self.path_rules
            .iter()
            .copied()
            .filter(|&r| !self.rules[r].paths.is_empty() && self.takes(r, Some(path)))
            .collect()
    }

    /// Whether rule `r` takes some paths and not others: it is limited to
    /// some, or allows some.
    fn judges_paths(&self, r: usize) -> bool {
        let rule = &self.rules[r];
        !rule.paths.is_empty() || !rule.allow.paths.is_empty()
    }

    /// Whether matches of rule `rule` count at `path` (global and rule path
    /// filters).
    pub fn applies_to(&self, rule: usize, path: &str) -> bool {
        !self.path_ignored(path) && self.takes(rule, Some(path))
    }

    /// Whether a global allow list leaves the file at `path` out.
    pub(crate) fn path_ignored(&self, path: &str) -> bool {
        self.global.paths.iter().any(|re| re.is_match(path))
    }

    /// Scan `hay`, then decode what is encoded in it (in `fresh` alone when
    /// given, else everywhere) and scan that.
    fn scan_filtered(
        &self,
        hay: &[u8],
        hits: Option<&[KeywordHit]>,
        fresh: Option<&[Range<usize>]>,
        scratch: &mut Scratch,
        out: &mut Vec<RawMatch>,
        rule_applies: impl Fn(usize) -> bool,
    ) {
        self.scan_plain(hay, hits, scratch, out, &rule_applies, None);
        let whole = 0..hay.len();
        let regions = fresh.unwrap_or(std::slice::from_ref(&whole));
        self.decode_pass(hay, regions, scratch, out, &rule_applies);
    }

    /// Decode the encoded runs in `regions` of `hay` and scan what they
    /// hold, to the configured depth; matches found there are appended to
    /// `out` (which stays sorted by position) at their encoded text.
    fn decode_pass(
        &self,
        hay: &[u8],
        regions: &[Range<usize>],
        scratch: &mut Scratch,
        out: &mut Vec<RawMatch>,
        rule_applies: &dyn Fn(usize) -> bool,
    ) {
        if self.decode.depth == 0 {
            return;
        }
        let before = out.len();
        let mut budget = self.decode.budget;
        // What the text around encoded runs holds that their findings may
        // require (a Kubernetes Secret's manifest for its base64 values).
        let lent: Vec<RawMatch> = out.iter().filter(|m| self.lends[m.rule]).cloned().collect();
        self.decode_into(
            hay,
            regions,
            self.decode.depth,
            &mut budget,
            (None, &lent),
            scratch,
            out,
            rule_applies,
        );
        if out.len() > before {
            // Encoded text inside a provider's secret (a Discord token's
            // base64 part) is that secret, already reported; a generic rule
            // that took the encoded text itself for a secret gives way to
            // what the decoding found there.
            let rules = &self.rules;
            let overlaps = |a: &RawMatch, b: &RawMatch| a.start < b.end && b.start < a.end;
            let (raw, decoded) = out.split_at(before);
            let keep_decoded: Vec<bool> = decoded
                .iter()
                .map(|d| {
                    !raw.iter()
                        .any(|r| !rules[r.rule].is_generic() && overlaps(r, d))
                })
                .collect();
            let keep_raw: Vec<bool> = raw
                .iter()
                .map(|r| {
                    !rules[r.rule].is_generic()
                        || !decoded
                            .iter()
                            .zip(&keep_decoded)
                            .any(|(d, &k)| k && overlaps(r, d))
                })
                .collect();
            let mut keep = keep_raw.into_iter().chain(keep_decoded);
            out.retain(|_| keep.next().unwrap_or(true));
            out.sort_by_key(|m| m.start);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn decode_into(
        &self,
        hay: &[u8],
        regions: &[Range<usize>],
        depth: u8,
        budget: &mut usize,
        (outer, lent): (Outer<'_>, &[RawMatch]),
        scratch: &mut Scratch,
        out: &mut Vec<RawMatch>,
        rule_applies: &dyn Fn(usize) -> bool,
    ) {
        let mut runs = Vec::new();
        for r in regions {
            decode::decode_runs(hay, r.clone(), budget, &mut runs);
        }
        if runs.is_empty() {
            return;
        }
        runs.dedup_by(|a, b| a.span == b.span);
        let mut found = Vec::new();
        let mut text = Vec::new();
        for d in runs {
            let span = outer.map_or(d.span.clone(), |(s, _)| s.clone());
            let mut chain = outer.map_or_else(Vec::new, |(_, c)| c.to_vec());
            chain.push(d.encoding);
            // The decoding in its line (`password: <base64>` reads as
            // `password: <text>`), so that a name before it still counts.
            let (head, tail) = line_context(hay, &d.span);
            text.clear();
            text.extend_from_slice(head);
            text.extend_from_slice(&d.text);
            text.extend_from_slice(tail);
            let inner = head.len()..head.len() + d.text.len();
            found.clear();
            let around = Some((lent, &span));
            self.scan_plain(&text, None, scratch, &mut found, rule_applies, around);
            for m in found
                .drain(..)
                .filter(|m| m.start < inner.end && inner.start < m.end)
            {
                out.push(RawMatch {
                    rule: m.rule,
                    start: span.start,
                    end: span.end,
                    match_start: span.start,
                    match_end: span.end,
                    entropy: m.entropy,
                    decoded: Some(Box::new(DecodedMatch {
                        secret: text[m.start..m.end].to_vec(),
                        matched: text[m.match_start..m.match_end].to_vec(),
                        chain: chain.clone(),
                    })),
                });
            }
            if depth > 1 && *budget > 0 {
                let whole = 0..d.text.len();
                self.decode_into(
                    &d.text,
                    std::slice::from_ref(&whole),
                    depth - 1,
                    budget,
                    (Some((&span, &chain)), lent),
                    scratch,
                    out,
                    rule_applies,
                );
            }
        }
    }

    /// Stage one and stage two on `hay` as it is, no decoding.
    fn scan_plain(
        &self,
        hay: &[u8],
        hits: Option<&[KeywordHit]>,
        scratch: &mut Scratch,
        out: &mut Vec<RawMatch>,
        rule_applies: &dyn Fn(usize) -> bool,
        around: Around<'_>,
    ) {
        self.collect_windows(hay, hits, scratch);
        self.drop_unmet_requirements(&mut scratch.windows, around);
        let windows = std::mem::take(&mut scratch.windows);
        let mut found = std::mem::take(&mut scratch.matches);
        found.clear();
        scratch.vetoes.clear();
        let mut current: Option<(u32, Option<&CompiledRule>)> = None;
        for &(r, ws, we) in &windows {
            if current.map(|c| c.0) != Some(r) {
                let c = rule_applies(r as usize)
                    .then(|| self.compiled(r as usize))
                    .flatten();
                current = Some((r, c));
            }
            if let Some((_, Some(c))) = current {
                let state = regex_state(&mut scratch.regex, r as usize, c);
                self.search_window((r, ws, we), hay, state, &mut found, &mut scratch.vetoes);
            }
        }
        scratch.windows = windows;
        self.apply_requirements(&mut found, around);
        if !scratch.vetoes.is_empty() {
            // A provider format with a wrong checksum is a typo or an
            // invention; generic rules must not report it either.
            found.retain(|m| {
                !self.rules[m.rule].is_generic()
                    || !scratch
                        .vetoes
                        .iter()
                        .any(|&(s, e)| m.start < e && s < m.end)
            });
        }
        resolve_overlaps(&self.rules, &mut found);
        out.append(&mut found);
        scratch.matches = found;
    }

    /// Stage one: keyword hits (found here, or `given`) become per-rule
    /// windows, merged and sorted.
    fn collect_windows(&self, hay: &[u8], given: Option<&[KeywordHit]>, scratch: &mut Scratch) {
        let wins = &mut scratch.windows;
        wins.clear();
        scratch.last.clear();
        scratch.last.resize(self.rules.len(), u32::MAX);
        let last = &mut scratch.last;
        let states = &mut scratch.regex;
        let mut on_hit = |pattern: usize, start: usize, end: usize| {
            for (r, exact) in &self.triggers[pattern] {
                if let Some(exact) = exact {
                    if hay[start..end] != **exact {
                        continue;
                    }
                }
                let Some(c) = self.compiled(*r as usize) else {
                    continue;
                };
                if !c.starts.is_empty()
                    && !starts_a_match(
                        c,
                        &mut regex_state(states, *r as usize, c).cache,
                        hay,
                        start,
                    )
                {
                    continue;
                }
                let ws = start.saturating_sub(c.window);
                let we = (end + c.window).min(hay.len());
                let last = &mut last[*r as usize];
                if *last != u32::MAX {
                    let w = &mut wins[*last as usize];
                    if ws <= w.2 && we >= w.1 {
                        w.1 = w.1.min(ws);
                        w.2 = w.2.max(we);
                        continue;
                    }
                }
                *last = wins.len() as u32;
                wins.push((*r, ws, we));
            }
        };
        match given {
            Some(hits) => {
                for h in hits {
                    on_hit(h.pattern, h.start, h.end);
                }
            }
            None => self.stage_one.search(hay, &mut scratch.stage_one, on_hit),
        }
        for &r in &self.unconditional {
            wins.push((r, 0, hay.len()));
        }
        wins.sort_unstable();
        // Hits of different lengths can arrive slightly out of order; merge
        // whatever overlaps after sorting so each byte is searched once per rule.
        let mut w = 0;
        for i in 0..wins.len() {
            if w > 0 && wins[w - 1].0 == wins[i].0 && wins[i].1 <= wins[w - 1].2 {
                wins[w - 1].2 = wins[w - 1].2.max(wins[i].2);
            } else {
                wins[w] = wins[i];
                w += 1;
            }
        }
        wins.truncate(w);
        if given.is_none() && self.stage_one.gates(&scratch.stage_one) {
            // Drop windows where the rule's prefiltering regex ended
            // nowhere: the regex crate would find nothing there.
            let (stage_one, s) = (&self.stage_one, &scratch.stage_one);
            wins.retain(|&(r, ws, we)| stage_one.allows(s, r, ws, we));
        }
    }

    /// Stage two: run rule `r` on `hay[ws..we]` and filter what it finds.
    fn search_window(
        &self,
        (r, ws, we): (u32, usize, usize),
        hay: &[u8],
        RegexState { cache, caps }: &mut RegexState,
        out: &mut Vec<RawMatch>,
        vetoes: &mut Vec<(usize, usize)>,
    ) {
        let r = r as usize;
        let Some(c) = self.compiled(r) else { return };
        let rule = &self.rules[r];
        let mut input = Input::new(hay).range(ws..we);
        loop {
            c.regex.search_captures_with(cache, &input, caps);
            let Some(m) = caps.get_match() else { break };
            let span = caps.get_group(c.secret_group).unwrap_or_else(|| m.span());
            if span.start < span.end {
                let secret = &hay[span.start..span.end];
                let ent = entropy(secret);
                let verdict = self.keep(rule, c, hay, m.span(), span, ent);
                if verdict == Verdict::Veto {
                    vetoes.push((span.start, span.end));
                }
                if verdict == Verdict::Keep {
                    out.push(RawMatch {
                        rule: r,
                        start: span.start,
                        end: span.end,
                        match_start: m.start(),
                        match_end: m.end(),
                        entropy: ent,
                        decoded: None,
                    });
                }
            }
            let next = if m.is_empty() { m.end() + 1 } else { m.end() };
            if next >= we {
                break;
            }
            input.set_start(next);
        }
    }

    /// The post-filters, cheapest first.
    fn keep(
        &self,
        rule: &Rule,
        c: &CompiledRule,
        hay: &[u8],
        whole: regex_automata::Span,
        span: regex_automata::Span,
        ent: f64,
    ) -> Verdict {
        let secret = &hay[span.start..span.end];
        if rule.exact {
            return Verdict::Keep;
        }
        if rule
            .entropy
            .is_some_and(|min| ent < entropy_floor(min, secret))
        {
            return self.dropped(rule, Filter::Entropy, secret);
        }
        if rule.checksum.is_some_and(|k| !valid_checksum(k, secret)) {
            return Verdict::Veto;
        }
        // In a data format the password word is the password written
        // (`localhost:5432:app:root:password` in a .pgpass).
        if rule.placeholder_filter
            && is_placeholder(secret)
            && !(rule.data_format && is_password_word(secret))
        {
            return self.dropped(rule, Filter::Placeholder, secret);
        }
        if contains_any_ci(secret, &c.stopwords) || contains_any_ci(secret, &self.global.stopwords)
        {
            return self.dropped(rule, Filter::Stopword, secret);
        }
        if !c.name_keywords.is_empty()
            && !keyword_is_a_word(&hay[whole.start..span.start], &c.name_keywords)
        {
            return self.dropped(rule, Filter::KeywordWord, secret);
        }
        if rule.is_generic() || rule.keyword_word {
            if is_not_a_secret_value(secret, !rule.data_format) {
                return self.dropped(rule, Filter::ValueShape, secret);
            }
            if opens_a_phrase(
                span.start.checked_sub(1).map(|i| hay[i]),
                &hay[span.end..hay.len().min(span.end + 256)],
            ) {
                return self.dropped(rule, Filter::Phrase, secret);
            }
        }
        if is_mostly_repetition(secret) {
            return self.dropped(rule, Filter::Repetition, secret);
        }
        if is_file_name_stem(&hay[span.end..hay.len().min(span.end + 8)]) {
            return self.dropped(rule, Filter::FileName, secret);
        }
        if is_inside_base64_blob(hay, span.start..span.end) {
            return self.dropped(rule, Filter::Base64Blob, secret);
        }
        let line = line_around(hay, whole.start, whole.end);
        if !c.allow_regexes.is_empty() {
            let target = match rule.allow.regex_target {
                RegexTarget::Secret => secret,
                RegexTarget::Match => &hay[whole.start..whole.end],
                RegexTarget::Line => line,
            };
            if c.allow_regexes.iter().any(|re| re.is_match(target)) {
                return Verdict::Drop;
            }
        }
        if self.global.regexes.iter().any(|re| re.is_match(secret)) {
            return Verdict::Drop;
        }
        if INLINE_ALLOW
            .iter()
            .any(|m| memchr::memmem::find(line, m).is_some())
        {
            return Verdict::Drop;
        }
        Verdict::Keep
    }

    /// A drop by a built-in filter, told to whoever asked when the rule is
    /// a user's.
    fn dropped(&self, rule: &Rule, filter: Filter, secret: &[u8]) -> Verdict {
        if let Some(explain) = &self.explain {
            if !rule.source.starts_with("builtin:") {
                explain(Dropped {
                    rule,
                    filter,
                    secret,
                });
            }
        }
        Verdict::Drop
    }

    /// Drop the windows of a rule that requires another when that rule
    /// has no window here and lends nothing from around: the required
    /// match cannot exist, so neither can a kept match of this rule (a
    /// Kubernetes Secret's value rule would otherwise search every
    /// `token:` of every YAML file).
    fn drop_unmet_requirements(&self, windows: &mut Vec<(u32, usize, usize)>, around: Around<'_>) {
        if !windows
            .iter()
            .any(|w| self.requirements[w.0 as usize].is_some())
        {
            return;
        }
        // Windows are sorted by rule.
        let has_window = |rule: usize| {
            let i = windows.partition_point(|w| (w.0 as usize) < rule);
            windows.get(i).is_some_and(|w| w.0 as usize == rule)
        };
        let lent =
            |rule: usize| around.is_some_and(|(lent, _)| lent.iter().any(|m| m.rule == rule));
        let unmet: Vec<u32> = windows
            .iter()
            .filter_map(|w| {
                let (req, _) = self.requirements[w.0 as usize]?;
                (!has_window(req) && !lent(req)).then_some(w.0)
            })
            .collect();
        if !unmet.is_empty() {
            windows.retain(|w| !unmet.contains(&w.0));
        }
    }

    /// Drop the matches whose required rule matched nowhere near them: in
    /// `found`, or, for decoded text, in the text around its encoded span.
    fn apply_requirements(&self, found: &mut Vec<RawMatch>, around: Around<'_>) {
        if !found.iter().any(|m| self.requirements[m.rule].is_some()) {
            return;
        }
        let near = |o: &RawMatch, req: usize, (s, e): (usize, usize), within: usize| {
            o.rule == req && o.start <= e + within && s <= o.end + within
        };
        let snapshot = found.clone();
        found.retain(|m| match self.requirements[m.rule] {
            None => true,
            Some((req, within)) => {
                snapshot
                    .iter()
                    .any(|o| near(o, req, (m.start, m.end), within))
                    || around.is_some_and(|(lent, span)| {
                        lent.iter()
                            .any(|o| near(o, req, (span.start, span.end), within))
                    })
            }
        });
    }
}

/// An example or counterexample of a rule that did not behave.
#[derive(Debug, Clone)]
pub struct ExampleFailure {
    pub rule: String,
    pub text: String,
    /// True for an example that was not detected, false for a
    /// counterexample that was.
    pub expected_match: bool,
}

/// Run every rule's examples (each must yield a finding of that rule) and
/// counterexamples (none may), all rules of the engine loaded together, so
/// that overlaps between rules are judged as a real scan would judge them.
pub fn check_examples(engine: &Engine) -> Vec<ExampleFailure> {
    let mut failures = Vec::new();
    for (i, rule) in engine.rules().iter().enumerate() {
        let cases = rule
            .examples
            .iter()
            .map(|e| (e, true))
            .chain(rule.counterexamples.iter().map(|e| (e, false)));
        for (text, expected) in cases {
            let mut found = Vec::new();
            engine.scan_into(
                rule.example_path.as_deref(),
                text.as_bytes(),
                &mut Scratch::default(),
                &mut found,
            );
            let found = found.iter().any(|m| m.rule == i);
            if found != expected {
                failures.push(ExampleFailure {
                    rule: rule.id.clone(),
                    text: text.clone(),
                    expected_match: expected,
                });
            }
        }
    }
    failures
}

fn compile_all(
    list: &[String],
    compile: impl Fn(&str) -> Result<meta::Regex, String>,
) -> Result<Vec<meta::Regex>, EngineError> {
    list.iter()
        .map(|p| {
            compile(p).map_err(|message| EngineError::AllowRegex {
                pattern: p.clone(),
                message,
            })
        })
        .collect()
}

/// The text before and after `span` on its line, at most 256 bytes each.
fn line_context<'h>(hay: &'h [u8], span: &Range<usize>) -> (&'h [u8], &'h [u8]) {
    const AROUND: usize = 256;
    let from = span.start.saturating_sub(AROUND);
    let near = &hay[from..(span.end + AROUND).min(hay.len())];
    let line = line_bounds(near, span.start - from, span.end - from);
    (
        &near[line.start..span.start - from],
        &near[span.end - from..line.end],
    )
}

/// Whether a match of `c` (a rule whose matches begin with a literal
/// holding a keyword) starts where the keyword hit at `hit` puts one: an
/// anchored search, which dismisses `path` for Airtable's `pat` prefix in
/// a few bytes, before a window is searched around it. A match found in
/// a window starts at a hit of its own, so no window that could find one
/// is dropped.
fn starts_a_match(c: &CompiledRule, cache: &mut meta::Cache, hay: &[u8], hit: usize) -> bool {
    c.starts.iter().any(|&o| {
        hit >= o
            && c.regex
                .search_with(
                    cache,
                    &Input::new(hay)
                        .range(hit - o..)
                        .anchored(regex_automata::Anchored::Yes)
                        .earliest(true),
                )
                .is_some()
    })
}

fn contains_any_ci(hay: &[u8], needles: &[Vec<u8>]) -> bool {
    if needles.is_empty() {
        return false;
    }
    let lower = hay.to_ascii_lowercase();
    needles
        .iter()
        .any(|n| memchr::memmem::find(&lower, n).is_some())
}

/// The line (or lines) holding `start..end`, without the line terminators.
pub(crate) fn line_around(hay: &[u8], start: usize, end: usize) -> &[u8] {
    &hay[line_bounds(hay, start, end)]
}

/// Where the line (or lines) holding `hay[start..end]` starts and ends.
fn line_bounds(hay: &[u8], start: usize, end: usize) -> Range<usize> {
    let ls = memchr::memrchr(b'\n', &hay[..start]).map_or(0, |i| i + 1);
    let le = memchr::memchr(b'\n', &hay[end..]).map_or(hay.len(), |i| end + i);
    ls..le
}

/// Keep one match per secret: among overlapping secrets, the most confident
/// rule wins, then a provider rule over a generic one, then the one whose
/// regex consumed more context (more specific), then the rule listed first.
fn resolve_overlaps(rules: &[Rule], found: &mut Vec<RawMatch>) {
    found.sort_by_key(|m| (m.start, m.end, m.rule));
    let key = |m: &RawMatch| {
        let rule = &rules[m.rule];
        (
            rule.confidence,
            !rule.is_generic(),
            m.match_end - m.match_start,
            std::cmp::Reverse(m.rule),
        )
    };
    let better = |a: &RawMatch, b: &RawMatch| key(a) > key(b);
    let mut kept: Vec<RawMatch> = Vec::with_capacity(found.len());
    // Context matches (identifiers lent to other rules as parts) neither
    // hide a secret nor are hidden by one.
    let mut context = Vec::new();
    for m in found.drain(..) {
        if rules[m.rule].context {
            context.push(m);
            continue;
        }
        match kept.last_mut() {
            Some(last) if m.start < last.end => {
                if better(&m, last) {
                    *last = m;
                }
            }
            _ => kept.push(m),
        }
    }
    kept.append(&mut context);
    *found = kept;
}
