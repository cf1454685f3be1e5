//! Compiled Hyperscan databases cached on disk, so that only the first
//! run with a rule set pays for compiling it. A file's name hashes the
//! library version, the architecture and every expression.

use std::fmt::Write as _;
use std::path::Path;
use std::ptr::{self, NonNull};

use sha2::{Digest, Sha256};

use super::ffi::*;
use super::matcher::{Expr, Fallback};

pub(super) fn key(exprs: &[Expr]) -> String {
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
pub(super) fn load(path: &Path) -> Option<(NonNull<HsDatabase>, Vec<Fallback>)> {
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

pub(super) fn store(
    path: &Path,
    db: NonNull<HsDatabase>,
    dropped: &[Fallback],
) -> std::io::Result<()> {
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
