//! The work tree's changes against HEAD, what `git status` lists: tracked
//! files modified or staged, and untracked files that are not ignored. A
//! repository scan covers these next to its history, so a secret written
//! but not yet committed is not missed.
//!
//! Files are walked like any directory (ignore files honoured, in
//! parallel), and each is scanned only if it differs from HEAD: an entry
//! whose index stat still matches the file and whose index blob is HEAD's
//! is passed over unread (as git does, except for racily clean entries,
//! which are hashed); any other tracked file is hashed and compared with
//! HEAD's blob at its path. A staged blob that differs from both HEAD and
//! the file on disk is scanned from the object database too.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gix::bstr::{BString, ByteSlice};
use gix::objs::{Find, Kind};
use gix::ObjectId;

use super::{open, GitError};
use crate::engine::Scratch;
use crate::finding::Source;
use crate::sources::fs::{display_path, walk_selected, Select};
use crate::sources::{archive_format, scan_archive, scan_buffer, Event, SkipReason, WalkOptions};
use crate::Engine;

/// What the work tree pass looked at.
#[derive(Debug, Clone, Copy, Default)]
pub struct WorktreeSummary {
    /// Changed, staged or untracked files scanned.
    pub files: usize,
}

/// An index entry as the pass needs it.
struct Tracked {
    id: ObjectId,
    size: u32,
    mtime: (u32, u32),
}

struct Changes {
    root: PathBuf,
    hash: gix::hash::Kind,
    tracked: HashMap<BString, Tracked>,
    head: HashMap<BString, ObjectId>,
    /// Submodules: separate repositories, scanned on their own.
    gitlinks: HashSet<BString>,
    /// When the index was written: a file modified in that same second may
    /// keep its stat and still have changed ("racily clean").
    index_mtime: Option<(u64, u32)>,
}

impl Changes {
    fn rel(&self, path: &Path) -> Option<BString> {
        let rel = path.strip_prefix(&self.root).ok()?;
        Some(display_path(rel).into())
    }
}

impl Select for Changes {
    fn by_metadata(&self, path: &Path, meta: &std::fs::Metadata) -> Option<bool> {
        let rel = self.rel(path)?;
        let Some(t) = self.tracked.get(&rel) else {
            return Some(true); // untracked and not ignored
        };
        if self.head.get(&rel) != Some(&t.id) {
            return Some(true); // staged: the index differs from HEAD
        }
        let unchanged = stat_matches(meta, t)
            && self
                .index_mtime
                .is_some_and(|index| mtime(meta).is_some_and(|m| (m.0 as u64, m.1) < index));
        // Unchanged since it was staged, and HEAD's: nothing new. Otherwise
        // only the content can tell.
        if unchanged {
            Some(false)
        } else {
            None
        }
    }

    fn by_content(&self, path: &Path, content: &[u8]) -> bool {
        let Some(rel) = self.rel(path) else {
            return true;
        };
        let id = gix::objs::compute_hash(self.hash, Kind::Blob, content).ok();
        id.is_none() || self.head.get(&rel) != id.as_ref()
    }

    fn prune(&self, dir: &Path) -> bool {
        self.rel(dir).is_some_and(|r| self.gitlinks.contains(&r))
    }

    fn name(&self, path: &Path) -> String {
        self.rel(path)
            .map(|r| r.to_str_lossy().into_owned())
            .unwrap_or_else(|| display_path(path))
    }
}

fn mtime(meta: &std::fs::Metadata) -> Option<(u32, u32)> {
    let d = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    Some((u32::try_from(d.as_secs()).ok()?, d.subsec_nanos()))
}

fn stat_matches(meta: &std::fs::Metadata, t: &Tracked) -> bool {
    meta.len() as u32 == t.size && mtime(meta) == Some(t.mtime)
}

/// Scan the work tree of the repository at `path` for what differs from
/// HEAD. A bare repository has no work tree: nothing to do.
pub fn scan_worktree(
    engine: &Engine,
    path: &Path,
    opts: &WalkOptions,
    mut on_event: impl FnMut(Event),
) -> Result<WorktreeSummary, GitError> {
    let repo = open(path)?;
    let Some(root) = repo.workdir().map(Path::to_path_buf) else {
        return Ok(WorktreeSummary::default());
    };
    let unreadable = |what: &str, e: &dyn std::fmt::Display| GitError::Unreadable {
        what: what.to_string(),
        message: e.to_string(),
    };
    let mut head = HashMap::new();
    if let Ok(commit) = repo.head_commit() {
        let tree = commit.tree().map_err(|e| unreadable("HEAD's tree", &e))?;
        let mut recorder = gix::traverse::tree::Recorder::default();
        tree.traverse()
            .breadthfirst(&mut recorder)
            .map_err(|e| unreadable("HEAD's tree", &e))?;
        for e in recorder.records {
            if e.mode.is_blob_or_symlink() {
                head.insert(e.filepath, e.oid);
            }
        }
    }
    let index_path = repo.index_path();
    let index_mtime = std::fs::metadata(&index_path)
        .ok()
        .and_then(|m| mtime(&m))
        .map(|(s, n)| (s as u64, n));
    let mut tracked = HashMap::new();
    let mut gitlinks = HashSet::new();
    let index = if index_path.exists() {
        Some(
            repo.open_index()
                .map_err(|e| GitError::Index(e.to_string()))?,
        )
    } else {
        None
    };
    for (index, entry) in index
        .iter()
        .flat_map(|i| i.entries().iter().map(move |e| (i, e)))
    {
        if entry.stage_raw() != 0 {
            continue;
        }
        let path = entry.path(index).to_owned();
        if entry.mode == gix::index::entry::Mode::COMMIT {
            gitlinks.insert(path);
            continue;
        }
        tracked.insert(
            path,
            Tracked {
                id: entry.id,
                size: entry.stat.size,
                mtime: (entry.stat.mtime.secs, entry.stat.mtime.nsecs),
            },
        );
    }
    let changes = Arc::new(Changes {
        root: root.clone(),
        hash: repo.object_hash(),
        tracked,
        head,
        gitlinks,
        index_mtime,
    });
    let mut summary = WorktreeSummary::default();
    let mut pass = |ev: Event| {
        let ev = match ev {
            Event::Finding(mut f) => {
                f.source = Source::Worktree;
                Event::Finding(f)
            }
            Event::Scanned { files, bytes } => {
                summary.files += files as usize;
                Event::Scanned { files, bytes }
            }
            other => other,
        };
        on_event(ev)
    };
    walk_selected(
        engine,
        std::slice::from_ref(&root),
        opts,
        Arc::clone(&changes) as Arc<dyn Select>,
        &mut pass,
    );
    scan_staged_only(engine, &repo, &changes, opts.max_file_size, &mut pass);
    Ok(summary)
}

/// Staged blobs that differ from HEAD and from the file on disk (`git add`,
/// then an edit): the walk saw only the file.
fn scan_staged_only(
    engine: &Engine,
    repo: &gix::Repository,
    changes: &Changes,
    max_file_size: u64,
    on_event: &mut impl FnMut(Event),
) {
    let (mut buf, mut scratch, mut matches) = (Vec::new(), Scratch::default(), Vec::new());
    for (rel, t) in &changes.tracked {
        if changes.head.get(rel) == Some(&t.id) {
            continue;
        }
        let on_disk = std::fs::read(changes.root.join(rel.to_str_lossy().as_ref()))
            .ok()
            .and_then(|c| gix::objs::compute_hash(changes.hash, Kind::Blob, &c).ok());
        if on_disk == Some(t.id) {
            continue;
        }
        let name = rel.to_str_lossy().into_owned();
        let data = match repo.objects.try_find(&t.id, &mut buf) {
            Ok(Some(d)) => d.data,
            _ => {
                on_event(Event::error(
                    name,
                    format!("staged blob {} cannot be read", t.id),
                ));
                continue;
            }
        };
        if let Some(format) = archive_format(engine, &name, data) {
            let mut emit = |ev| {
                on_event(ev);
                true
            };
            let parts = (&mut scratch, &mut matches);
            scan_archive(
                engine,
                &name,
                (format, data),
                max_file_size,
                parts,
                &mut emit,
            );
            continue;
        }
        if let Some(reason) = SkipReason::of(data, max_file_size) {
            on_event(Event::Skipped { path: name, reason });
            continue;
        }
        scan_buffer(engine, &name, data, &mut scratch, &mut matches, |f| {
            on_event(Event::Finding(Box::new(f)))
        });
        on_event(Event::scanned(data.len() as u64));
    }
}
