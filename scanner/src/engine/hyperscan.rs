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
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::ptr::{self, NonNull};
use std::sync::Mutex;

use regex_syntax::hir::{Class, Hir, HirKind};
use sha2::{Digest, Sha256};

#[repr(C)]
struct HsDatabase {
    _private: [u8; 0],
}
#[repr(C)]
struct HsScratch {
    _private: [u8; 0],
}
#[repr(C)]
struct HsCompileError {
    message: *mut c_char,
    expression: c_int,
}

type MatchHandler = unsafe extern "C" fn(
    id: c_uint,
    from: c_ulonglong,
    to: c_ulonglong,
    flags: c_uint,
    context: *mut c_void,
) -> c_int;

const HS_SUCCESS: c_int = 0;
const HS_MODE_BLOCK: c_uint = 1;
const HS_FLAG_CASELESS: c_uint = 1;
const HS_FLAG_PREFILTER: c_uint = 128;

#[link(name = "hs")]
extern "C" {
    fn hs_compile_multi(
        expressions: *const *const c_char,
        flags: *const c_uint,
        ids: *const c_uint,
        elements: c_uint,
        mode: c_uint,
        platform: *const c_void,
        db: *mut *mut HsDatabase,
        error: *mut *mut HsCompileError,
    ) -> c_int;
    fn hs_free_compile_error(error: *mut HsCompileError) -> c_int;
    fn hs_free_database(db: *mut HsDatabase) -> c_int;
    fn hs_alloc_scratch(db: *const HsDatabase, scratch: *mut *mut HsScratch) -> c_int;
    fn hs_clone_scratch(src: *const HsScratch, dest: *mut *mut HsScratch) -> c_int;
    fn hs_free_scratch(scratch: *mut HsScratch) -> c_int;
    fn hs_scan(
        db: *const HsDatabase,
        data: *const c_char,
        length: c_uint,
        flags: c_uint,
        scratch: *mut HsScratch,
        on_event: MatchHandler,
        context: *mut c_void,
    ) -> c_int;
    fn hs_serialize_database(
        db: *const HsDatabase,
        bytes: *mut *mut c_char,
        length: *mut usize,
    ) -> c_int;
    fn hs_deserialize_database(
        bytes: *const c_char,
        length: usize,
        db: *mut *mut HsDatabase,
    ) -> c_int;
    fn hs_version() -> *const c_char;
    fn hs_valid_platform() -> c_int;
}

extern "C" {
    // hs_serialize_database allocates with the C allocator.
    fn free(p: *mut c_void);
}

/// The version string of the linked library.
pub fn version() -> String {
    // SAFETY: hs_version returns a static NUL-terminated string.
    unsafe { CStr::from_ptr(hs_version()) }
        .to_string_lossy()
        .into_owned()
}

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

struct Expr {
    pattern: CString,
    flags: c_uint,
    /// Keyword `k` has id `k`; the regex of rule `r` has id `keywords + r`,
    /// so that dropping an expression renumbers nothing.
    id: c_uint,
    /// The rule it belongs to, for a regex; `None` for a keyword.
    rule: Option<usize>,
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
    ) -> Result<Matcher, String> {
        // SAFETY: no arguments; checks the CPU has what the library needs.
        if unsafe { hs_valid_platform() } != HS_SUCCESS {
            return Err("this CPU lacks the instructions Hyperscan needs (SSSE3)".into());
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
                Err(message) => fallbacks.push(Fallback {
                    rule: *rule,
                    message,
                }),
            }
        }
        let key = cache_key(&exprs);
        let path = cache_dir.map(|d| d.join(format!("hs-{key}.db")));
        if let Some(p) = &path {
            if let Some((db, cached_fallbacks)) = load(p) {
                let gated = gated_rules(rules, &exprs, &cached_fallbacks);
                fallbacks.extend(cached_fallbacks);
                return Matcher::assemble(db, keywords, gated, fallbacks, Origin::Cache(p.clone()));
            }
        }
        let t = std::time::Instant::now();
        let (db, dropped) = compile_dropping_failures(&mut exprs)?;
        let seconds = t.elapsed().as_secs_f64();
        let cached = path.filter(|p| store(p, db, &dropped).is_ok());
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
    ) -> Result<Matcher, String> {
        let mut proto = ptr::null_mut();
        // SAFETY: db is a valid database; proto receives a new scratch.
        let rc = unsafe { hs_alloc_scratch(db.as_ptr(), &mut proto) };
        let Some(proto) = NonNull::new(proto).filter(|_| rc == HS_SUCCESS) else {
            // SAFETY: db is ours and not used again.
            unsafe { hs_free_database(db.as_ptr()) };
            return Err(format!(
                "cannot allocate Hyperscan scratch space (error {rc})"
            ));
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
) -> Result<(NonNull<HsDatabase>, Vec<Fallback>), String> {
    let mut dropped = Vec::new();
    loop {
        match compile(exprs) {
            Ok(db) => return Ok((db, dropped)),
            Err((Some(i), message)) if exprs[i].rule.is_some() => {
                let rule = exprs.remove(i).rule.unwrap_or_default();
                dropped.push(Fallback { rule, message });
            }
            Err((_, message)) => {
                return Err(format!("cannot compile the keyword database: {message}"))
            }
        }
    }
}

fn compile(exprs: &[Expr]) -> Result<NonNull<HsDatabase>, (Option<usize>, String)> {
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
        return Err((None, format!("error {rc}")));
    }
    // SAFETY: on failure the library fills `err`; we read it and free it.
    let (index, message) = unsafe {
        let e = &*err;
        let m = CStr::from_ptr(e.message).to_string_lossy().into_owned();
        let i = usize::try_from(e.expression).ok();
        hs_free_compile_error(err);
        (i, m)
    };
    Err((index, message))
}

/// Whether every match of `hir` starts with one of a few literals of at
/// least three bytes.
fn has_literal_prefix(hir: &Hir) -> bool {
    let seq = regex_syntax::hir::literal::Extractor::new().extract(hir);
    seq.min_literal_len().is_some_and(|n| n >= 3)
}

/// `bytes` as a pattern matching exactly them: `\xHH` for all but ASCII
/// letters and digits.
fn escape_bytes(bytes: &[u8]) -> String {
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
fn to_pcre(hir: &Hir) -> Result<String, String> {
    let mut out = String::new();
    write_pcre(hir, &mut out)?;
    if out.is_empty() {
        return Err("the regex matches the empty string".into());
    }
    Ok(out)
}

fn write_pcre(hir: &Hir, out: &mut String) -> Result<(), String> {
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
                (true, false) => return Err("the regex has an empty class".into()),
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

fn push_class(out: &mut String, ranges: &[(u8, u8)]) -> Result<(), String> {
    if ranges.is_empty() {
        return Err("the regex has an empty class".into());
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

fn cache_key(exprs: &[Expr]) -> String {
    let mut h = Sha256::new();
    h.update(version().as_bytes());
    h.update(std::env::consts::ARCH.as_bytes());
    for e in exprs {
        h.update(e.pattern.as_bytes_with_nul());
        h.update(e.flags.to_le_bytes());
        h.update(e.id.to_le_bytes());
    }
    let digest = h.finalize();
    digest[..16].iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Cache file layout: one line of JSON naming the regexes Hyperscan
/// rejected (rule, message), then the serialized database.
fn load(path: &Path) -> Option<(NonNull<HsDatabase>, Vec<Fallback>)> {
    let bytes = std::fs::read(path).ok()?;
    let nl = memchr::memchr(b'\n', &bytes)?;
    let header: Vec<(usize, String)> = serde_json::from_slice(&bytes[..nl]).ok()?;
    let body = &bytes[nl + 1..];
    let mut db = ptr::null_mut();
    // SAFETY: body/len describe a readable buffer; the library validates it.
    let rc = unsafe { hs_deserialize_database(body.as_ptr().cast(), body.len(), &mut db) };
    let db = NonNull::new(db).filter(|_| rc == HS_SUCCESS)?;
    let fallbacks = header
        .into_iter()
        .map(|(rule, message)| Fallback { rule, message })
        .collect();
    Some((db, fallbacks))
}

fn store(path: &Path, db: NonNull<HsDatabase>, dropped: &[Fallback]) -> std::io::Result<()> {
    let mut bytes = ptr::null_mut();
    let mut len = 0usize;
    // SAFETY: db is valid; the library allocates `bytes` with malloc.
    let rc = unsafe { hs_serialize_database(db.as_ptr(), &mut bytes, &mut len) };
    if rc != HS_SUCCESS || bytes.is_null() {
        return Err(std::io::Error::other(format!("serialize failed ({rc})")));
    }
    // SAFETY: the library returned `len` initialized bytes at `bytes`.
    let body = unsafe { std::slice::from_raw_parts(bytes.cast::<u8>(), len) }.to_vec();
    // SAFETY: allocated by the library with malloc, freed once.
    unsafe { free(bytes.cast()) };
    let header: Vec<(usize, &str)> = dropped
        .iter()
        .map(|f| (f.rule, f.message.as_str()))
        .collect();
    let mut data = serde_json::to_vec(&header).map_err(std::io::Error::other)?;
    data.push(b'\n');
    data.extend_from_slice(&body);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Write then rename, so that a concurrent run never reads half a file.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, &data)?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        prune(dir);
    }
    Ok(())
}

/// Databases kept in the cache: one per rule set in use (built-in rules,
/// a team's rule file, a `--min-confidence` variant...).
const CACHE_KEEP: usize = 8;

/// Delete all but the newest databases, and write-then-rename leftovers
/// of runs that were killed more than an hour ago.
fn prune(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let now = std::time::SystemTime::now();
    let mut dbs = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(modified) = e.metadata().and_then(|m| m.modified()).ok() else {
            continue;
        };
        if !name.starts_with("hs-") {
            continue;
        }
        if name.ends_with(".db") {
            dbs.push((modified, e.path()));
        } else if now
            .duration_since(modified)
            .is_ok_and(|age| age.as_secs() > 3600)
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
    dbs.sort_by_key(|d| std::cmp::Reverse(d.0));
    for (_, p) in dbs.into_iter().skip(CACHE_KEEP) {
        let _ = std::fs::remove_file(p);
    }
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

    #[test]
    fn translation_only_widens() {
        let pcre = |re: &str| to_pcre(&crate::rules::parse_regex(re).unwrap());
        // Look-around dropped, counts capped, an empty branch made optional.
        assert_eq!(pcre(r"\bab\b").unwrap(), "ab");
        assert_eq!(pcre("a{40,400}").unwrap(), "(?:a){32,}");
        assert_eq!(pcre("(?:x|)y").unwrap(), "(?:x)?y");
        assert!(pcre("^$").is_err(), "matches the empty string");
    }
}
