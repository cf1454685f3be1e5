//! The Hyperscan (or Vectorscan) stage one, behind the `hyperscan` feature.
//!
//! One block-mode database holds two kinds of expression:
//!
//! - every keyword of the rule set, as a case-insensitive literal: its
//!   matches are exactly the hits of the pure-Rust keyword prefilter, so the
//!   windows the regexes confirm are the same windows;
//! - every rule's regex in prefiltering mode, where Hyperscan guarantees a
//!   superset of the true match ends. A window whose rule reported no match
//!   end inside it cannot hold a match of that rule, so it is skipped
//!   without running the `regex` crate on it.
//!
//! Both stages therefore keep the Rust engine's semantics exactly: the first
//! reproduces its hits, the second only removes windows where its regex
//! search would find nothing. Rules whose regex Hyperscan cannot compile
//! keep every window (the Rust path), and the engine says which.
//!
//! Compiling the database costs seconds for the built-in rules; the
//! serialized database is cached on disk under a key that hashes the
//! library version and every expression, so later runs load it instead.

use std::ffi::{c_char, c_int, c_uint, c_ulonglong, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::ptr::{self, NonNull};
use std::sync::Mutex;

use regex_syntax::hir::Hir;

use super::cache;
use super::ffi::*;
use super::pattern::{escape_bytes, has_literal_prefix, to_pcre};
use super::HyperscanError;

/// A rule Hyperscan could not compile; it runs on the Rust path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    pub rule: usize,
    pub message: String,
}

/// How the database was obtained, for `-v`.
#[derive(Debug, Clone)]
pub enum Origin {
    Compiled {
        seconds: f64,
        cached: Option<PathBuf>,
    },
    Cache(PathBuf),
}

/// What one scan found: keyword hits and, per rule, prefilter match ends.
/// Lives in the caller's scratch so that the vectors are reused.
#[derive(Default)]
pub struct ScanScratch {
    scratch: Option<OwnedScratch>,
    /// (keyword pattern, start, end), as the Rust prefilter reports them.
    pub hits: Vec<(u32, usize, usize)>,
    /// (rule, end of a possible match), sorted by [`Matcher::scan`].
    gates: Vec<(u32, usize)>,
}

struct OwnedScratch {
    ptr: NonNull<HsScratch>,
    /// The database the scratch was cloned for.
    db: usize,
}

// SAFETY: a scratch is used by one thread at a time (it lives in a
// `&mut Scratch`); moving it between threads is allowed.
unsafe impl Send for OwnedScratch {}

impl Drop for OwnedScratch {
    fn drop(&mut self) {
        // SAFETY: allocated by hs_clone_scratch, freed once.
        unsafe { hs_free_scratch(self.ptr.as_ptr()) };
    }
}

/// A compiled database and what is needed to read its reports.
pub struct Matcher {
    db: NonNull<HsDatabase>,
    /// Prototype scratch, cloned for each thread's scratch.
    proto: Mutex<NonNull<HsScratch>>,
    /// Length of each keyword pattern (ids `0..keywords.len()`).
    keyword_len: Vec<u32>,
    /// For each rule, whether its windows are gated by its prefilter regex.
    gated: Vec<bool>,
    pub fallbacks: Vec<Fallback>,
    pub origin: Origin,
}

// SAFETY: a compiled database is immutable and may be scanned from any
// number of threads at once, each with its own scratch; the prototype
// scratch is only touched under its mutex.
unsafe impl Send for Matcher {}
unsafe impl Sync for Matcher {}

impl Drop for Matcher {
    fn drop(&mut self) {
        // SAFETY: both were allocated by the library and are freed once.
        unsafe {
            let proto = self.proto.get_mut().unwrap_or_else(|e| e.into_inner());
            hs_free_scratch(proto.as_ptr());
            hs_free_database(self.db.as_ptr());
        }
    }
}

pub(super) struct Expr {
    pub pattern: CString,
    pub flags: c_uint,
    /// Keyword `k` has id `k`; the regex of rule `r` has id `keywords + r`,
    /// so that dropping an expression renumbers nothing.
    pub id: c_uint,
    /// The rule it belongs to, for a regex; `None` for a keyword.
    pub rule: Option<usize>,
}

impl Matcher {
    /// Build the database for `keywords` (lower-case literals) and the
    /// rules' regexes, loading it from `cache_dir` when an identical one was
    /// compiled before.
    pub fn new(
        keywords: &[String],
        regexes: &[(usize, Hir)],
        rules: usize,
        cache_dir: Option<&Path>,
    ) -> Result<Matcher, HyperscanError> {
        // SAFETY: no arguments; checks the CPU has what the library needs.
        if unsafe { hs_valid_platform() } != HS_SUCCESS {
            return Err(HyperscanError::UnsupportedCpu);
        }
        let mut exprs: Vec<Expr> = keywords
            .iter()
            .enumerate()
            .map(|(i, k)| Expr {
                pattern: cstring(escape_bytes(k.as_bytes())),
                flags: HS_FLAG_CASELESS,
                id: i as c_uint,
                rule: None,
            })
            .collect();
        let mut fallbacks = Vec::new();
        for (rule, hir) in regexes {
            if !has_literal_prefix(hir) {
                // Hyperscan gating pays only where a literal anchors the
                // regex; a bare run of a character class (a 40-character
                // base64 string) reports at nearly every byte of text and
                // slowed the whole database tenfold. Such rules search
                // their keyword windows, as on the Rust path.
                continue;
            }
            match to_pcre(hir) {
                Ok(p) => exprs.push(Expr {
                    pattern: cstring(p),
                    flags: HS_FLAG_PREFILTER,
                    id: (keywords.len() + rule) as c_uint,
                    rule: Some(*rule),
                }),
                Err(e) => fallbacks.push(Fallback {
                    rule: *rule,
                    message: e.to_string(),
                }),
            }
        }
        let key = cache::key(&exprs);
        let path = cache_dir.map(|d| d.join(format!("hs-{key}.db")));
        if let Some(p) = &path {
            if let Some((db, cached_fallbacks)) = cache::load(p) {
                let gated = gated_rules(rules, &exprs, &cached_fallbacks);
                fallbacks.extend(cached_fallbacks);
                return Matcher::assemble(db, keywords, gated, fallbacks, Origin::Cache(p.clone()));
            }
        }
        let t = std::time::Instant::now();
        let (db, dropped) = compile_dropping_failures(&mut exprs)?;
        let seconds = t.elapsed().as_secs_f64();
        let cached = path.filter(|p| cache::store(p, db, &dropped).is_ok());
        let gated = gated_rules(rules, &exprs, &dropped);
        fallbacks.extend(dropped);
        fallbacks.sort_by_key(|f| f.rule);
        Matcher::assemble(
            db,
            keywords,
            gated,
            fallbacks,
            Origin::Compiled { seconds, cached },
        )
    }

    fn assemble(
        db: NonNull<HsDatabase>,
        keywords: &[String],
        gated: Vec<bool>,
        fallbacks: Vec<Fallback>,
        origin: Origin,
    ) -> Result<Matcher, HyperscanError> {
        let mut proto = ptr::null_mut();
        // SAFETY: db is a valid database; proto receives a new scratch.
        let rc = unsafe { hs_alloc_scratch(db.as_ptr(), &mut proto) };
        let Some(proto) = NonNull::new(proto).filter(|_| rc == HS_SUCCESS) else {
            // SAFETY: db is ours and not used again.
            unsafe { hs_free_database(db.as_ptr()) };
            return Err(HyperscanError::Scratch(rc));
        };
        Ok(Matcher {
            db,
            proto: Mutex::new(proto),
            keyword_len: keywords.iter().map(|k| k.len() as u32).collect(),
            gated,
            fallbacks,
            origin,
        })
    }

    /// Scan `hay` (at most `u32::MAX` bytes), leaving keyword hits and
    /// prefilter ends in `s`. Returns false when the library failed, in
    /// which case the caller uses the Rust path.
    pub fn scan(&self, hay: &[u8], s: &mut ScanScratch) -> bool {
        let Ok(len) = c_uint::try_from(hay.len()) else {
            return false;
        };
        let db_id = self.db.as_ptr() as usize;
        if s.scratch.as_ref().is_none_or(|o| o.db != db_id) {
            let proto = self.proto.lock().unwrap_or_else(|e| e.into_inner());
            let mut ptr = ptr::null_mut();
            // SAFETY: proto is a valid scratch for this database.
            let rc = unsafe { hs_clone_scratch(proto.as_ptr(), &mut ptr) };
            match NonNull::new(ptr).filter(|_| rc == HS_SUCCESS) {
                Some(ptr) => s.scratch = Some(OwnedScratch { ptr, db: db_id }),
                None => return false,
            }
        }
        s.hits.clear();
        s.gates.clear();
        let mut ctx = Context {
            keyword_len: &self.keyword_len,
            hits: &mut s.hits,
            gates: &mut s.gates,
        };
        let scratch = s
            .scratch
            .as_ref()
            .map_or(ptr::null_mut(), |o| o.ptr.as_ptr());
        // SAFETY: the database and the scratch (cloned for this database)
        // are valid; data/len describe `hay`; ctx outlives the call and the
        // callback only runs during it.
        let rc = unsafe {
            hs_scan(
                self.db.as_ptr(),
                hay.as_ptr().cast(),
                len,
                0,
                scratch,
                on_match,
                (&mut ctx as *mut Context).cast(),
            )
        };
        if rc != HS_SUCCESS {
            return false;
        }
        s.gates.sort_unstable();
        s.gates.dedup();
        true
    }

    /// Whether rule `rule` may match inside `ws..we`, by the last scan.
    pub fn may_match(&self, s: &ScanScratch, rule: u32, ws: usize, we: usize) -> bool {
        if !self.gated[rule as usize] {
            return true;
        }
        let i = s.gates.partition_point(|&g| g < (rule, ws));
        s.gates
            .get(i)
            .is_some_and(|&(r, end)| r == rule && end <= we)
    }
}

struct Context<'a> {
    keyword_len: &'a [u32],
    hits: &'a mut Vec<(u32, usize, usize)>,
    gates: &'a mut Vec<(u32, usize)>,
}

unsafe extern "C" fn on_match(
    id: c_uint,
    _from: c_ulonglong,
    to: c_ulonglong,
    _flags: c_uint,
    context: *mut c_void,
) -> c_int {
    // SAFETY: `context` is the `Context` that Matcher::scan passed, alive
    // for the whole hs_scan call, and not aliased while the callback runs.
    let ctx = unsafe { &mut *context.cast::<Context>() };
    let end = to as usize;
    match ctx.keyword_len.get(id as usize) {
        Some(&len) => ctx.hits.push((id, end - len as usize, end)),
        None => {
            let rule = id - ctx.keyword_len.len() as u32;
            // Reports arrive by increasing end, so repeats are adjacent.
            if ctx.gates.last() != Some(&(rule, end)) {
                ctx.gates.push((rule, end));
            }
        }
    }
    0
}

fn cstring(s: String) -> CString {
    // Patterns are built from escaped bytes: no NUL can occur.
    CString::new(s).unwrap_or_default()
}

/// Which rules are gated: those with a regex in the database.
fn gated_rules(rules: usize, exprs: &[Expr], dropped: &[Fallback]) -> Vec<bool> {
    let mut gated = vec![false; rules];
    for r in exprs.iter().filter_map(|e| e.rule) {
        gated[r] = true;
    }
    for f in dropped {
        gated[f.rule] = false;
    }
    gated
}

/// Compile `exprs`; when one regex fails, drop it (its rule takes the Rust
/// path) and compile again. Keywords never fail: they are escaped literals.
fn compile_dropping_failures(
    exprs: &mut Vec<Expr>,
) -> Result<(NonNull<HsDatabase>, Vec<Fallback>), HyperscanError> {
    let mut dropped = Vec::new();
    loop {
        match compile(exprs) {
            Ok(db) => return Ok((db, dropped)),
            Err(CompileFailure {
                expression: Some(i),
                message,
            }) if exprs[i].rule.is_some() => {
                let rule = exprs.remove(i).rule.unwrap_or_default();
                dropped.push(Fallback { rule, message });
            }
            Err(CompileFailure { message, .. }) => return Err(HyperscanError::Compile(message)),
        }
    }
}

/// The library's word on a failed compile: which expression, and why.
struct CompileFailure {
    expression: Option<usize>,
    message: String,
}

fn compile(exprs: &[Expr]) -> Result<NonNull<HsDatabase>, CompileFailure> {
    let patterns: Vec<*const c_char> = exprs.iter().map(|e| e.pattern.as_ptr()).collect();
    let flags: Vec<c_uint> = exprs.iter().map(|e| e.flags).collect();
    let ids: Vec<c_uint> = exprs.iter().map(|e| e.id).collect();
    let mut db = ptr::null_mut();
    let mut err = ptr::null_mut();
    // SAFETY: the three arrays have exprs.len() elements and the strings
    // are NUL-terminated and alive for the call.
    let rc = unsafe {
        hs_compile_multi(
            patterns.as_ptr(),
            flags.as_ptr(),
            ids.as_ptr(),
            exprs.len() as c_uint,
            HS_MODE_BLOCK,
            ptr::null(),
            &mut db,
            &mut err,
        )
    };
    if rc == HS_SUCCESS {
        if let Some(db) = NonNull::new(db) {
            return Ok(db);
        }
    }
    if err.is_null() {
        return Err(CompileFailure {
            expression: None,
            message: format!("error {rc}"),
        });
    }
    // SAFETY: on failure the library fills `err`; we read it and free it.
    let failure = unsafe {
        let e = &*err;
        let message = CStr::from_ptr(e.message).to_string_lossy().into_owned();
        let expression = usize::try_from(e.expression).ok();
        hs_free_compile_error(err);
        CompileFailure {
            expression,
            message,
        }
    };
    Err(failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expr(pattern: &str, id: c_uint, rule: Option<usize>) -> Expr {
        Expr {
            pattern: cstring(pattern.to_string()),
            flags: if rule.is_some() {
                HS_FLAG_PREFILTER
            } else {
                HS_FLAG_CASELESS
            },
            id,
            rule,
        }
    }

    /// A regex the library rejects is dropped with its message, its rule
    /// is left ungated, and the rest of the database still compiles.
    #[test]
    fn a_rejected_regex_is_dropped_and_named() {
        let mut exprs = vec![
            expr("tok", 0, None),
            expr("tok=[0-9]+", 1, Some(0)),
            expr("(?:unbalanced", 2, Some(1)),
        ];
        let (db, dropped) = compile_dropping_failures(&mut exprs).unwrap();
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].rule, 1);
        assert!(!dropped[0].message.is_empty());
        assert_eq!(gated_rules(2, &exprs, &dropped), [true, false]);
        let m = Matcher::assemble(
            db,
            &["tok".to_string()],
            vec![true, false],
            dropped,
            Origin::Cache(PathBuf::new()),
        )
        .unwrap();
        let mut s = ScanScratch::default();
        assert!(m.scan(b"x tok=42 y", &mut s));
        assert_eq!(s.hits, [(0, 2, 5)]);
        assert!(m.may_match(&s, 0, 0, 10));
        assert!(!m.may_match(&s, 0, 0, 6));
        assert!(
            m.may_match(&s, 1, 0, 1),
            "an ungated rule keeps its windows"
        );
    }
}
