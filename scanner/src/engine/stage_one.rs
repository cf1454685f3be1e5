//! Stage one: where in a buffer each rule may match. Two implementations
//! give the same keyword hits: the pure-Rust keyword searcher (always
//! there, and the one callers ask for hits directly), and Hyperscan, which
//! also reports where each rule's regex may end, so that windows where it
//! cannot end are skipped. The engine asks one question,
//! [`StageOne::search`], and does not know which answered.

use std::path::PathBuf;

use super::hyperscan::HyperscanError;
#[cfg(feature = "hyperscan")]
use super::hyperscan::{self as hs};
use super::prefilter::{Hit, KeywordSearcher};
use super::{EngineError, EngineKind};
use crate::rules::Rule;

/// The stage-one implementation of an engine.
pub(super) enum StageOne {
    /// The Rust keyword searcher (none when no rule has keywords).
    Keywords(Option<KeywordSearcher>),
    /// Hyperscan from the moment its database is ready (at once, or built
    /// on a background thread), the keyword searcher until then or if it
    /// failed.
    #[cfg(feature = "hyperscan")]
    Hyperscan {
        keywords: Option<KeywordSearcher>,
        matcher: std::sync::Arc<std::sync::OnceLock<Result<hs::Matcher, HyperscanError>>>,
    },
}

/// What stage one needs per thread, reused across buffers, and what the
/// last search left for [`StageOne::allows`].
#[derive(Default)]
pub struct StageScratch {
    #[cfg(feature = "hyperscan")]
    hyperscan: hs::ScanScratch,
    /// Whether Hyperscan answered the last search (it may become ready
    /// between two buffers, never during one).
    #[cfg(feature = "hyperscan")]
    gated: bool,
}

impl StageOne {
    /// The Rust searcher over `patterns` (lower-case, deduplicated).
    pub fn keywords(patterns: &[String]) -> Result<StageOne, EngineError> {
        let searcher = if patterns.is_empty() {
            None
        } else {
            Some(KeywordSearcher::new(patterns)?)
        };
        Ok(StageOne::Keywords(searcher))
    }

    /// Switch to Hyperscan over the same `patterns` and the regexes of
    /// `rules`: now (an error if it cannot be built), or (`background`)
    /// from when a thread has built the database. Every regex is compiled
    /// up front, unless a cached database exists in `cache_dir`.
    #[cfg(feature = "hyperscan")]
    pub fn use_hyperscan(
        &mut self,
        patterns: Vec<String>,
        rules: &[Rule],
        cache_dir: Option<PathBuf>,
        background: bool,
    ) -> Result<(), EngineError> {
        let regexes: Vec<String> = rules.iter().map(|r| r.regex.clone()).collect();
        let keywords = match std::mem::replace(self, StageOne::Keywords(None)) {
            StageOne::Keywords(k) | StageOne::Hyperscan { keywords: k, .. } => k,
        };
        let build = move || {
            let hirs: Vec<(usize, regex_syntax::hir::Hir)> = regexes
                .iter()
                .enumerate()
                .filter_map(|(i, r)| crate::rules::parse_regex(r).ok().map(|h| (i, h)))
                .collect();
            hs::Matcher::new(&patterns, &hirs, regexes.len(), cache_dir.as_deref())
        };
        let matcher = std::sync::Arc::new(std::sync::OnceLock::new());
        if background {
            let slot = std::sync::Arc::clone(&matcher);
            std::thread::Builder::new()
                .name("hyperscan-compile".into())
                .spawn(move || {
                    let _ = slot.set(build());
                })
                .map_err(|e| HyperscanError::Thread(e.to_string()))?;
        } else {
            let _ = matcher.set(Ok(build()?));
        }
        *self = StageOne::Hyperscan { keywords, matcher };
        Ok(())
    }

    #[cfg(not(feature = "hyperscan"))]
    pub fn use_hyperscan(
        &mut self,
        _: Vec<String>,
        _: &[Rule],
        _: Option<PathBuf>,
        _: bool,
    ) -> Result<(), EngineError> {
        Err(HyperscanError::NotBuiltIn.into())
    }

    fn searcher(&self) -> Option<&KeywordSearcher> {
        match self {
            StageOne::Keywords(k) => k.as_ref(),
            #[cfg(feature = "hyperscan")]
            StageOne::Hyperscan { keywords, .. } => keywords.as_ref(),
        }
    }

    #[cfg(feature = "hyperscan")]
    fn matcher(&self) -> Option<&hs::Matcher> {
        match self {
            StageOne::Keywords(_) => None,
            StageOne::Hyperscan { matcher, .. } => matcher.get().and_then(|r| r.as_ref().ok()),
        }
    }

    /// Every keyword occurrence in `hay` (ASCII case-insensitive,
    /// overlapping), by the Rust searcher.
    pub fn keyword_hits(&self, hay: &[u8], f: impl FnMut(Hit)) {
        if let Some(s) = self.searcher() {
            s.for_each_hit(hay, f);
        }
    }

    /// Stage one over `hay`: `on_hit(pattern, start, end)` for every
    /// keyword occurrence. Then ask [`StageOne::gates`] whether windows
    /// can be dropped.
    pub fn search(
        &self,
        hay: &[u8],
        scratch: &mut StageScratch,
        mut on_hit: impl FnMut(usize, usize, usize),
    ) {
        #[cfg(feature = "hyperscan")]
        {
            // A buffer the library refuses (over 4 GiB, or an internal
            // error) takes the Rust path.
            scratch.gated = self
                .matcher()
                .is_some_and(|m| m.scan(hay, &mut scratch.hyperscan));
            if scratch.gated {
                for &(p, s, e) in &scratch.hyperscan.hits {
                    on_hit(p as usize, s, e);
                }
                return;
            }
        }
        let _ = scratch;
        self.keyword_hits(hay, |h| on_hit(h.pattern, h.start, h.end));
    }

    /// Whether the last [`StageOne::search`] with `scratch` can tell that
    /// some windows hold no match.
    pub fn gates(&self, scratch: &StageScratch) -> bool {
        #[cfg(feature = "hyperscan")]
        return scratch.gated;
        #[cfg(not(feature = "hyperscan"))]
        {
            let _ = scratch;
            false
        }
    }

    /// Whether rule `rule` may match inside `ws..we`, by the last search
    /// with `scratch`.
    pub fn allows(&self, scratch: &StageScratch, rule: u32, ws: usize, we: usize) -> bool {
        #[cfg(feature = "hyperscan")]
        if let Some(m) = self.matcher().filter(|_| scratch.gated) {
            return m.may_match(&scratch.hyperscan, rule, ws, we);
        }
        let _ = (scratch, rule, ws, we);
        true
    }

    /// Which implementation answers now.
    pub fn kind(&self) -> EngineKind {
        #[cfg(feature = "hyperscan")]
        if self.matcher().is_some() {
            return EngineKind::Hyperscan;
        }
        EngineKind::Rust
    }

    /// What became of Hyperscan: how its database was obtained, or why it
    /// is not used, and the rules whose regex it rejected, by index.
    pub fn hyperscan_notes(&self, rule_id: impl Fn(usize) -> String) -> Vec<String> {
        #[cfg(feature = "hyperscan")]
        if let StageOne::Hyperscan { matcher, .. } = self {
            return match matcher.get() {
                Some(Ok(m)) => {
                    let version = hs::version();
                    let mut notes = vec![match &m.origin {
                        hs::Origin::Cache(p) => {
                            format!("hyperscan {version}: database loaded from {}", p.display())
                        }
                        hs::Origin::Compiled { seconds, cached } => format!(
                            "hyperscan {version}: database compiled in {seconds:.2} s{}",
                            cached
                                .as_ref()
                                .map(|p| format!(", cached at {}", p.display()))
                                .unwrap_or_default()
                        ),
                    }];
                    notes.extend(m.fallbacks.iter().map(|f| {
                        format!(
                            "hyperscan: rule {} runs on the Rust path: {}",
                            rule_id(f.rule),
                            f.message
                        )
                    }));
                    notes
                }
                Some(Err(e)) => vec![format!("hyperscan not used: {e}")],
                None => Vec::new(),
            };
        }
        let _ = rule_id;
        Vec::new()
    }
}
