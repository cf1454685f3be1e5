//! Staged changes: what the pre-commit hook scans.

use std::collections::HashMap;
use std::path::Path;

use gix::objs::Find;

use super::{open, GitError};
use crate::engine::Scratch;
use crate::finding::{Finding, LineIndex, Source};
use crate::sources::{archive_format, scan_archive, Event, SkipReason};
use crate::Engine;

/// Scan what is staged in the repository at `path`: every index entry whose
/// blob differs from HEAD's, reporting only findings on added or changed
/// lines, with line numbers of the staged file. Works before the first
/// commit (everything staged is new) and in linked worktrees.
pub fn scan_staged(
    engine: &Engine,
    path: &Path,
    max_file_size: u64,
    mut on_event: impl FnMut(Event),
) -> Result<(), GitError> {
    let repo = open(path)?;
    if !repo.index_path().exists() {
        return Ok(()); // nothing was ever staged
    }
    let index = repo
        .open_index()
        .map_err(|e| GitError::Index(e.to_string()))?;
    let head_tree = repo.head_commit().ok().and_then(|c| c.tree().ok());
    let mut buf = Vec::new();
    let mut old_buf = Vec::new();
    let mut scratch = Scratch::default();
    let mut matches = Vec::new();
    for entry in index.entries() {
        let regular = entry.mode == gix::index::entry::Mode::FILE
            || entry.mode == gix::index::entry::Mode::FILE_EXECUTABLE;
        if entry.stage_raw() != 0 || !regular {
            continue;
        }
        let rel = entry.path(&index).to_string();
        let old_id = head_tree
            .as_ref()
            .and_then(|t| t.lookup_entry_by_path(&rel).ok().flatten())
            .filter(|e| e.mode().is_blob_or_symlink())
            .map(|e| e.object_id());
        if old_id == Some(entry.id) {
            continue;
        }
        let data = match repo.objects.try_find(&entry.id, &mut buf) {
            Ok(Some(d)) => d.data,
            _ => {
                on_event(Event::error(
                    rel,
                    format!("staged blob {} cannot be read", entry.id),
                ));
                continue;
            }
        };
        if let Some(format) = archive_format(engine, &rel, data) {
            // Every member of an archive staged anew is new.
            let mut emit = |ev| {
                on_event(match ev {
                    Event::Finding(mut f) => {
                        f.source = Source::Worktree;
                        Event::Finding(f)
                    }
                    other => other,
                });
                true
            };
            let parts = (&mut scratch, &mut matches);
            scan_archive(
                engine,
                &rel,
                (format, data),
                max_file_size,
                parts,
                &mut emit,
            );
            continue;
        }
        if let Some(reason) = SkipReason::of(data, max_file_size) {
            on_event(Event::Skipped { path: rel, reason });
            continue;
        }
        let old: &[u8] = match old_id {
            Some(id) => match repo.objects.try_find(&id, &mut old_buf) {
                Ok(Some(d)) => d.data,
                _ => &[],
            },
            None => &[],
        };
        let added = added_lines(old, data);
        matches.clear();
        engine.scan_into(Some(&rel), data, &mut scratch, &mut matches);
        let mut lines = LineIndex::new();
        for m in matches.iter() {
            let mut f = Finding::new(&engine.rules()[m.rule], &rel, data, m, &mut lines);
            f.source = Source::Worktree;
            let (a, b) = (f.location.line, f.location.end_line);
            if (a..=b).any(|l| added.get(l - 1).copied().unwrap_or(false)) {
                on_event(Event::Finding(Box::new(f)));
            }
        }
        on_event(Event::scanned(data.len() as u64));
    }
    Ok(())
}

/// For each line of `new`, whether it is added or changed relative to `old`:
/// a line counts as unchanged while `old` still has an unmatched copy of it,
/// so moved lines are not reported but a new duplicate is.
fn added_lines(old: &[u8], new: &[u8]) -> Vec<bool> {
    let mut pool: HashMap<&[u8], usize> = HashMap::new();
    for l in old.split(|&b| b == b'\n') {
        *pool.entry(trim_cr(l)).or_default() += 1;
    }
    new.split(|&b| b == b'\n')
        .map(|l| match pool.get_mut(trim_cr(l)) {
            Some(n) if *n > 0 => {
                *n -= 1;
                false
            }
            _ => true,
        })
        .collect()
}

fn trim_cr(l: &[u8]) -> &[u8] {
    l.strip_suffix(b"\r").unwrap_or(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_lines_ignores_moves_and_counts_duplicates() {
        let old = b"a\nb\nc\n";
        let new = b"c\na\nb\nb\nd\n";
        assert_eq!(
            added_lines(old, new),
            [false, false, false, true, true, false]
        );
    }
}
