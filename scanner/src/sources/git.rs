//! The git source: history and staged changes, read from the object database
//! with gix (no `git` subprocess).
//!
//! A history scan resolves the tips to walk (every ref, one branch, or a
//! range), walks the commits, and diffs each commit's tree against all of its
//! parents at once: an entry counts as introduced by a commit only if it
//! differs from every parent, so a merge reports only what its own conflict
//! resolution added, and subtrees shared with a parent are skipped by id
//! without being read. Each unique blob is then scanned exactly once, in
//! parallel, and its findings are attributed to every (path, commit) that
//! introduced it: once per path, the oldest commit first, or every commit
//! with `all_commits`.
//!
//! This module is the only one that knows gix.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use gix::objs::{Find, Kind};
use gix::ObjectId;

use super::pack::{packs, Pack};
use super::packed;
use super::tree::{self, EntryKind};
use super::{is_binary, Event, SkipReason};
use crate::engine::{RawMatch, Scratch};
use crate::finding::{CommitInfo, Finding, LineIndex};
use crate::Engine;

/// An error that stops a git scan before it starts (a bad repository or
/// revision). Errors on single objects are reported as events instead.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("{path}: not a git repository ({message})")]
    NotARepository { path: String, message: String },
    #[error("cannot resolve revision {spec:?}: {message}")]
    Revision { spec: String, message: String },
    #[error("cannot list references: {0}")]
    References(String),
    #[error("cannot walk the commit history: {0}")]
    Walk(String),
    #[error("cannot read the index: {0}")]
    Index(String),
}

/// Which part of history to scan.
#[derive(Debug, Clone, Default)]
pub struct HistoryOptions {
    /// Only commits reachable from this ref (default: every ref).
    pub branch: Option<String>,
    /// Skip commits reachable from this revision (e.g. `origin/main`).
    pub since: Option<String>,
    /// `A..B`: commits reachable from B and not from A.
    pub range: Option<String>,
    /// Report every commit that introduced a secret, not only the oldest.
    pub all_commits: bool,
    /// Also scan blobs no walked commit reaches (dangling, stashed away,
    /// left behind by a rewritten history).
    pub all_objects: bool,
    pub max_file_size: u64,
    /// Worker threads; 0 picks one per core.
    pub threads: usize,
    pub strategy: Strategy,
}

/// How a history scan finds what each commit introduced. Both strategies
/// give the same findings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Strategy {
    /// Packs for a whole history (every ref, or a branch) of a packed
    /// repository (1 MB of packs or more) and for a range of 20,000
    /// commits or more; diffs otherwise.
    #[default]
    Auto,
    /// Compare each commit's trees with its parents' (see [`tree`]).
    Diff,
    /// Scan every stored blob, then find where the few that matter were
    /// introduced (see [`packed`]).
    Packs,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Auto => "auto",
            Strategy::Diff => "diff",
            Strategy::Packs => "packs",
        }
    }
}

/// What a history scan walked, and how long each phase took.
#[derive(Debug, Clone, Default)]
pub struct HistorySummary {
    pub commits: usize,
    pub blobs: usize,
    /// Blobs read by decoding whole packs rather than one by one.
    pub blobs_from_packs: usize,
    pub walk: std::time::Duration,
    /// Tree diffs, or (packs) the tree phase and attribution.
    pub diff: std::time::Duration,
    pub scan: std::time::Duration,
    /// The strategy that ran.
    pub strategy: Strategy,
}

fn open(path: &Path) -> Result<gix::Repository, GitError> {
    gix::discover(path).map_err(|e| GitError::NotARepository {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// Whether `path` is the root of a repository gix can open (a work tree
/// with its `.git`, or a bare repository).
pub fn is_repository(path: &Path) -> bool {
    gix::open(path).is_ok()
}

/// The commit `spec` names (annotated tags are peeled).
fn resolve(repo: &gix::Repository, spec: &str) -> Result<ObjectId, GitError> {
    repo.rev_parse_single(format!("{spec}^{{commit}}").as_str())
        .map(|id| id.detach())
        .map_err(|e| GitError::Revision {
            spec: spec.to_string(),
            message: e.to_string(),
        })
}

/// Tips to walk and tips to hide, from the options.
fn tips(
    repo: &gix::Repository,
    opts: &HistoryOptions,
) -> Result<(Vec<ObjectId>, Vec<ObjectId>), GitError> {
    let mut hidden = Vec::new();
    if let Some(since) = &opts.since {
        hidden.push(resolve(repo, since)?);
    }
    if let Some(range) = &opts.range {
        let Some((a, b)) = range.split_once("..") else {
            return Err(GitError::Revision {
                spec: range.clone(),
                message: "expected A..B".into(),
            });
        };
        hidden.push(resolve(repo, a)?);
        let b = if b.is_empty() { "HEAD" } else { b };
        return Ok((vec![resolve(repo, b)?], hidden));
    }
    if let Some(branch) = &opts.branch {
        return Ok((vec![resolve(repo, branch)?], hidden));
    }
    let mut tips = Vec::new();
    let refs = repo
        .references()
        .map_err(|e| GitError::References(e.to_string()))?;
    for r in refs
        .all()
        .map_err(|e| GitError::References(e.to_string()))?
    {
        let Ok(mut r) = r else { continue };
        // Refs to non-commits (a tag of a blob) are rare; history is commits.
        if let Ok(commit) = r.peel_to_commit() {
            tips.push(commit.id);
        }
    }
    if tips.is_empty() {
        // A detached HEAD with no refs still has history.
        if let Ok(id) = repo.head_id() {
            tips.push(id.detach());
        }
    }
    tips.sort();
    tips.dedup();
    Ok((tips, hidden))
}

pub(super) struct CommitNode {
    pub id: ObjectId,
    pub tree: ObjectId,
    pub parents: Vec<ObjectId>,
    /// Committer time, seconds since the epoch.
    pub time: i64,
}

/// Buffers for tree objects, reused across commits so that reading a tree
/// allocates nothing once the pool is warm.
#[derive(Default)]
struct TreeBufs {
    read: Vec<u8>,
    pool: Vec<Vec<u8>>,
}

impl TreeBufs {
    /// The bytes of tree `id`, in a buffer to hand back with `give`.
    fn take(&mut self, odb: &impl Find, id: &ObjectId) -> Result<Vec<u8>, String> {
        let data = odb
            .try_find(id, &mut self.read)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("tree {id} is missing"))?;
        if data.kind != Kind::Tree {
            return Err(format!("object {id} is a {}, not a tree", data.kind));
        }
        let mut out = self.pool.pop().unwrap_or_default();
        out.clear();
        out.extend_from_slice(data.data);
        Ok(out)
    }

    fn give(&mut self, buf: Vec<u8>) {
        self.pool.push(buf);
    }
}

/// Blobs of `new` that differ from every tree in `olds` at the same path.
/// Entries are compared in place (see [`tree::changes`]); subtrees equal to
/// one of the parents' are skipped unread.
fn introduced(
    odb: &impl Find,
    olds: &[Option<ObjectId>],
    new: &ObjectId,
    prefix: &mut Vec<u8>,
    bufs: &mut TreeBufs,
    out: &mut Vec<(ObjectId, Vec<u8>)>,
    submodules: &mut Vec<Vec<u8>>,
) -> Result<(), String> {
    if olds.iter().any(|o| o.as_ref() == Some(new)) {
        return Ok(());
    }
    let new_data = bufs.take(odb, new)?;
    let mut old_data = Vec::with_capacity(olds.len());
    let mut res = Ok(());
    for o in olds.iter().flatten() {
        match bufs.take(odb, o) {
            Ok(d) => old_data.push(d),
            Err(e) => {
                res = Err(e);
                break;
            }
        }
    }
    if res.is_ok() {
        let old_refs: Vec<&[u8]> = old_data.iter().map(Vec::as_slice).collect();
        let hash = new.kind();
        res = tree::changes(&new_data, &old_refs, hash.len_in_bytes(), |c| {
            let len = prefix.len();
            if !prefix.is_empty() {
                prefix.push(b'/');
            }
            prefix.extend_from_slice(c.entry.name);
            let id = ObjectId::from_bytes_or_panic(c.entry.id);
            let r = match c.entry.kind {
                // A gitlink: the submodule is a separate repository.
                EntryKind::Gitlink => {
                    submodules.push(prefix.clone());
                    Ok(())
                }
                EntryKind::Tree => {
                    let sub: Vec<Option<ObjectId>> = c
                        .in_parents
                        .iter()
                        .map(|p| p.map(ObjectId::from_bytes_or_panic))
                        .collect();
                    introduced(odb, &sub, &id, prefix, bufs, out, submodules)
                }
                EntryKind::Blob => {
                    out.push((id, prefix.clone()));
                    Ok(())
                }
            };
            prefix.truncate(len);
            r
        });
    }
    bufs.give(new_data);
    old_data.into_iter().for_each(|d| bufs.give(d));
    res
}

/// An occurrence of a blob in history.
pub(super) struct Occurrence {
    /// Interned: the same path string is shared by all its occurrences.
    pub path: std::sync::Arc<str>,
    pub commit: usize,
}

/// Scan the history of the repository at `path`, calling `on_event` on the
/// calling thread for every event.
pub fn scan_history(
    engine: &Engine,
    path: &Path,
    opts: &HistoryOptions,
    mut on_event: impl FnMut(Event),
) -> Result<HistorySummary, GitError> {
    let t0 = std::time::Instant::now();
    let mut repo = open(path)?;
    // A revision walk reads each commit, and `info.object()` reads it
    // again: keep the walk's reads in a small cache so the second is a copy.
    repo.object_cache_size(WALK_CACHE_BYTES);
    let (tips, hidden) = tips(&repo, opts)?;
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        opts.threads
    };
    // A range is walked first: a small one is diffed, a large one (a
    // --since over many refs) is cheaper pack first.
    let mut walked = None;
    let packs_first = packed::applicable(&repo)
        && match opts.strategy {
            Strategy::Packs => true,
            Strategy::Diff => false,
            // A small repository (a fresh one is all loose objects) is
            // diffed in no time, reading only reachable, unignored blobs.
            Strategy::Auto if hidden.is_empty() => packed_bytes(&repo) >= PACKS_MIN_BYTES,
            Strategy::Auto => {
                let commits = walk(&repo, tips.clone(), hidden.clone(), &mut on_event)?;
                let large = commits.len() >= PACKS_MIN_COMMITS;
                walked = Some(commits);
                large
            }
        };
    if packs_first {
        let packs = packs(&repo);
        match packs
            .iter()
            .map(Pack::layout)
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(layouts) => {
                let commits = match walked {
                    Some(c) => c,
                    None if hidden.is_empty() => {
                        packed::walk(&repo, &layouts, &tips, threads, &mut on_event)
                    }
                    None => walk(&repo, tips, hidden, &mut on_event)?,
                };
                let walk = t0.elapsed();
                // Resolving refs mapped pack and index pages through the
                // object database; a fresh handle starts with none.
                drop(repo);
                let repo = open(path)?;
                let out = packed::scan(
                    engine,
                    (&repo, &packs, layouts),
                    &commits,
                    opts,
                    threads,
                    &mut on_event,
                );
                return Ok(HistorySummary {
                    commits: commits.len(),
                    blobs: out.blobs,
                    blobs_from_packs: out.from_packs,
                    walk,
                    diff: out.tree_phase,
                    scan: out.blob_phase,
                    strategy: Strategy::Packs,
                });
            }
            Err(e) => on_event(Event::error(
                "",
                format!("{e}; reading objects one by one instead"),
            )),
        }
    }
    let commits = match walked {
        Some(c) => c,
        None => walk(&repo, tips, hidden, &mut on_event)?,
    };
    let walk = t0.elapsed();
    let sync = repo.clone().into_sync();
    let mut blobs = collect_blobs(&sync, &commits, threads, opts.all_commits, &mut on_event);
    drop_ignored(&repo, &mut blobs);
    if opts.all_objects {
        add_unreachable_blobs(&repo, &mut blobs, &mut on_event);
    }
    let packs = packs(&repo);
    let per_pack = sort_by_pack_location(&packs, &mut blobs);
    // Decoding a whole pack pays off only when much of it is wanted; a
    // commit range wants a few blobs, which are cheaper looked up.
    let whole: Vec<Pack> = packs
        .into_iter()
        .zip(per_pack)
        .filter(|(p, n)| n * WHOLE_PACK_SHARE >= p.index.num_objects() as usize)
        .map(|(p, _)| p)
        .collect();
    let diff = t0.elapsed() - walk;
    let mut summary = HistorySummary {
        commits: commits.len(),
        blobs: blobs.len(),
        walk,
        diff,
        strategy: Strategy::Diff,
        ..Default::default()
    };
    summary.blobs_from_packs = scan_blobs(
        engine,
        &sync,
        &whole,
        &commits,
        blobs,
        opts,
        threads,
        &mut on_event,
    );
    summary.scan = t0.elapsed() - walk - diff;
    Ok(summary)
}

/// The commits reachable from `tips` and not from `hidden`, oldest first
/// (ties by id, so that the order does not depend on the walk).
fn walk(
    repo: &gix::Repository,
    tips: Vec<ObjectId>,
    hidden: Vec<ObjectId>,
    on_event: &mut impl FnMut(Event),
) -> Result<Vec<CommitNode>, GitError> {
    let mut commits = Vec::new();
    if tips.is_empty() {
        return Ok(commits);
    }
    let walk = repo
        .rev_walk(tips)
        .with_hidden(hidden)
        .all()
        .map_err(|e| GitError::Walk(e.to_string()))?;
    for info in walk {
        let info = match info {
            Ok(i) => i,
            Err(e) => {
                on_event(Event::error("", format!("history walk stopped early: {e}")));
                break;
            }
        };
        let node = info.object().ok().and_then(|c| {
            Some(CommitNode {
                id: info.id,
                tree: c.tree_id().ok()?.detach(),
                parents: info.parent_ids.iter().copied().collect(),
                time: c.time().map(|t| t.seconds).unwrap_or(0),
            })
        });
        match node {
            Some(n) => commits.push(n),
            None => on_event(Event::error(
                format!("commit {}", info.id),
                "cannot read commit",
            )),
        }
    }
    // Oldest first: the first commit to introduce a blob at a path is the
    // one a finding names.
    commits.sort_by_key(|c| (c.time, c.id));
    Ok(commits)
}

/// From how many commits a range is scanned pack first: the packs
/// strategy costs about the same whatever the range (git/git: 9 s), the
/// diff strategy about 0.1 ms per commit.
const PACKS_MIN_COMMITS: usize = 20_000;

/// From how many bytes of packs a whole history is scanned pack first.
const PACKS_MIN_BYTES: u64 = 1 << 20;

/// The size of the repository's pack files.
fn packed_bytes(repo: &gix::Repository) -> u64 {
    std::fs::read_dir(repo.common_dir().join("objects").join("pack"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Object cache of the walking thread (commits are read twice).
const WALK_CACHE_BYTES: usize = 4 << 20;
/// Delta-base cache per thread: most objects in a pack are deltas, and
/// without a cache every object re-inflates its whole chain of bases.
const PACK_CACHE_BYTES: usize = 32 << 20;
/// Decoded-object cache per thread: the same trees recur across commits.
const OBJECT_CACHE_BYTES: usize = 16 << 20;

/// A thread-local repository handle with the caches a history scan wants.
fn thread_repo(sync: &gix::ThreadSafeRepository) -> gix::Repository {
    let mut repo = sync.to_thread_local();
    repo.objects.set_pack_cache(|| {
        Box::new(gix::odb::pack::cache::lru::MemoryCappedHashmap::new(
            PACK_CACHE_BYTES,
        ))
    });
    repo.object_cache_size(OBJECT_CACHE_BYTES);
    repo
}

/// Run `work` over `items` on `threads` threads, each with its own
/// repository handle and per-thread state from `init`, handing items out in
/// runs of `chunk` (consecutive items share cache-friendly locality). Every
/// result reaches `consume` on the calling thread, with its item's index.
fn fan_out<T: Sync, S, R: Send>(
    sync: &gix::ThreadSafeRepository,
    items: &[T],
    (threads, chunk): (usize, usize),
    init: impl Fn() -> S + Sync,
    work: impl Fn(&gix::Repository, &mut S, &T) -> R + Sync,
    mut consume: impl FnMut(usize, R),
) {
    let next = AtomicUsize::new(0);
    let (tx, rx) = crossbeam_channel::bounded::<(usize, R)>(1024);
    std::thread::scope(|s| {
        for _ in 0..threads {
            let (tx, next, init, work) = (tx.clone(), &next, &init, &work);
            s.spawn(move || {
                let repo = thread_repo(sync);
                let mut state = init();
                loop {
                    let start = next.fetch_add(chunk, Ordering::Relaxed);
                    if start >= items.len() {
                        break;
                    }
                    let end = (start + chunk).min(items.len());
                    for (i, item) in items[start..end].iter().enumerate() {
                        if tx.send((start + i, work(&repo, &mut state, item))).is_err() {
                            return;
                        }
                    }
                }
            });
        }
        drop(tx);
        for (i, r) in rx {
            consume(i, r);
        }
    });
}

/// Paths the project excludes from scans (the `.keyburnignore` at the root
/// of the work tree) stay excluded in history.
pub(super) fn drop_ignored(repo: &gix::Repository, blobs: &mut Vec<(ObjectId, Vec<Occurrence>)>) {
    let Some(root) = repo.workdir() else { return };
    let file = root.join(".keyburnignore");
    if !file.is_file() {
        return;
    }
    let mut b = ignore::gitignore::GitignoreBuilder::new(root);
    b.add(&file);
    let Ok(ignore) = b.build() else { return };
    for (_, occ) in blobs.iter_mut() {
        occ.retain(|o| {
            !ignore
                .matched_path_or_any_parents(&*o.path, false)
                .is_ignore()
        });
    }
    blobs.retain(|(_, occ)| !occ.is_empty());
}

/// Commits handed to a diffing thread at a time: a commit's parent tree is
/// usually its predecessor's tree, still in the same thread's caches.
const DIFF_CHUNK: usize = 16;

/// Phase one: which blobs each commit introduced, in parallel over commits.
fn collect_blobs(
    sync: &gix::ThreadSafeRepository,
    commits: &[CommitNode],
    threads: usize,
    all_commits: bool,
    on_event: &mut impl FnMut(Event),
) -> Vec<(ObjectId, Vec<Occurrence>)> {
    let trees = CommitTrees::new(commits);
    let mut intro = Introductions::new(all_commits);
    let diff_commit = |repo: &gix::Repository, bufs: &mut TreeBufs, c: &CommitNode| {
        let olds = trees.of_parents(repo, c);
        let (mut out, mut subs) = (Vec::new(), Vec::new());
        let res = introduced(
            &repo.objects,
            &olds,
            &c.tree,
            &mut Vec::new(),
            bufs,
            &mut out,
            &mut subs,
        );
        (out, subs, res.err())
    };
    fan_out(
        sync,
        commits,
        (threads, DIFF_CHUNK),
        TreeBufs::default,
        diff_commit,
        |i, (out, subs, err)| {
            if let Some(message) = err {
                on_event(Event::error(format!("commit {}", commits[i].id), message));
            }
            intro.add(i, out, subs, on_event);
        },
    );
    intro.finish()
}

/// The root tree of each walked commit, for comparing a commit with its
/// parents.
pub(super) struct CommitTrees(HashMap<ObjectId, ObjectId>);

impl CommitTrees {
    pub fn new(commits: &[CommitNode]) -> CommitTrees {
        CommitTrees(commits.iter().map(|c| (c.id, c.tree)).collect())
    }

    /// The trees of `c`'s parents. Parents outside the walk (hidden by
    /// --since) are read from the object database; those it lacks (cut by a
    /// shallow boundary) have none.
    pub fn of_parents(&self, repo: &gix::Repository, c: &CommitNode) -> Vec<Option<ObjectId>> {
        c.parents
            .iter()
            .map(|p| {
                self.0.get(p).copied().or_else(|| {
                    repo.find_commit(*p)
                        .ok()
                        .and_then(|p| p.tree_id().ok())
                        .map(|t| t.detach())
                })
            })
            .collect()
    }
}

/// Where blobs were introduced, folded in commit by commit: memory holds
/// one entry per (blob, path) (per commit with `all_commits`), with paths
/// interned, rather than every commit's full change list.
pub(super) struct Introductions {
    all_commits: bool,
    paths: HashMap<Vec<u8>, std::sync::Arc<str>>,
    submodules_seen: std::collections::HashSet<String>,
    by_blob: HashMap<ObjectId, Vec<Occurrence>>,
    order: Vec<ObjectId>,
}

impl Introductions {
    pub fn new(all_commits: bool) -> Introductions {
        Introductions {
            all_commits,
            paths: HashMap::new(),
            submodules_seen: Default::default(),
            by_blob: HashMap::new(),
            order: Vec::new(),
        }
    }

    /// What commit `commit` (an index into the oldest-first commit list)
    /// introduced: blobs with their paths, and submodules (reported once
    /// per path).
    pub fn add(
        &mut self,
        commit: usize,
        blobs: Vec<(ObjectId, Vec<u8>)>,
        submodules: Vec<Vec<u8>>,
        on_event: &mut impl FnMut(Event),
    ) {
        for sub in submodules {
            let path = String::from_utf8_lossy(&sub).into_owned();
            if self.submodules_seen.insert(path.clone()) {
                on_event(Event::Skipped {
                    path,
                    reason: SkipReason::Submodule,
                });
            }
        }
        for (blob, path) in blobs {
            let path = match self.paths.get(&path) {
                Some(p) => p.clone(),
                None => {
                    let p: std::sync::Arc<str> = String::from_utf8_lossy(&path).into();
                    self.paths.insert(path, p.clone());
                    p
                }
            };
            let order = &mut self.order;
            let occ = self.by_blob.entry(blob).or_insert_with(|| {
                order.push(blob);
                Vec::new()
            });
            match occ.iter_mut().find(|o| o.path == path) {
                // Commits may finish out of order: keep the oldest per path.
                Some(o) if !self.all_commits => o.commit = o.commit.min(commit),
                _ => occ.push(Occurrence { path, commit }),
            }
        }
    }

    /// Every introduced blob with its occurrences, sorted by path and
    /// commit, in the order blobs were first seen.
    pub fn finish(mut self) -> Vec<(ObjectId, Vec<Occurrence>)> {
        self.order
            .into_iter()
            .map(|b| {
                let mut occ = self.by_blob.remove(&b).unwrap_or_default();
                occ.sort_by(|a, b| (&a.path, a.commit).cmp(&(&b.path, b.commit)));
                (b, occ)
            })
            .collect()
    }
}

/// Marks an occurrence with no commit (an unreachable blob).
pub(super) const NO_COMMIT: usize = usize::MAX;

/// Every blob in the object database that no walked commit introduced,
/// reported under a pseudo-path naming its id.
fn add_unreachable_blobs(
    repo: &gix::Repository,
    blobs: &mut Vec<(ObjectId, Vec<Occurrence>)>,
    on_event: &mut impl FnMut(Event),
) {
    use gix::odb::Header as _;
    let mut seen: std::collections::HashSet<ObjectId> = blobs.iter().map(|(id, _)| *id).collect();
    let all = match repo.objects.iter() {
        Ok(all) => all,
        Err(e) => {
            on_event(Event::error("", format!("cannot list all objects: {e}")));
            return;
        }
    };
    for id in all.flatten() {
        if !seen.insert(id) {
            continue;
        }
        let is_blob = matches!(repo.objects.try_header(&id), Ok(Some(h)) if h.kind() == Kind::Blob);
        if is_blob {
            let path: std::sync::Arc<str> = format!("(unreachable blob {id})").into();
            blobs.push((
                id,
                vec![Occurrence {
                    path,
                    commit: NO_COMMIT,
                }],
            ));
        }
    }
}

/// A pack is decoded whole when at least 1 in this many of its objects is a
/// wanted blob (in git/git's pack of 850k objects, a full history wants
/// 262k).
const WHOLE_PACK_SHARE: usize = 10;

/// Order blobs as they lie in their packs (loose objects first): reading in
/// pack order lets consecutive deltas share their bases in the delta cache,
/// where id order would make every read start its chain from scratch. Only
/// the pack indexes are read (the object database's own location lookup
/// inflates every entry to measure it). Returns how many of the blobs each
/// pack holds.
fn sort_by_pack_location(
    packs: &[Pack],
    blobs: &mut Vec<(ObjectId, Vec<Occurrence>)>,
) -> Vec<usize> {
    let mut per_pack = vec![0; packs.len()];
    let mut keyed: Vec<_> = std::mem::take(blobs)
        .into_iter()
        .map(|b| {
            let at = packs.iter().enumerate().find_map(|(n, p)| {
                let e = p.index.lookup(b.0)?;
                Some((n, p.index.pack_offset_at_index(e)))
            });
            if let Some((n, _)) = at {
                per_pack[n] += 1;
            }
            (at.map_or((0, 0), |(n, offset)| (n + 1, offset)), b)
        })
        .collect();
    keyed.sort_by_key(|(key, _)| *key);
    *blobs = keyed.into_iter().map(|(_, b)| b).collect();
    per_pack
}

/// Blobs handed to a scanning thread at a time: consecutive blobs (in pack
/// order) share delta bases, so each thread keeps runs together.
const BLOB_CHUNK: usize = 64;

/// Phase two: scan each unique blob once, attribute findings: first the
/// blobs of the packs in `whole`, by decoding them whole, then the rest one
/// by one. Returns how many blobs came from whole-pack decoding.
#[allow(clippy::too_many_arguments)]
fn scan_blobs(
    engine: &Engine,
    sync: &gix::ThreadSafeRepository,
    whole: &[Pack],
    commits: &[CommitNode],
    blobs: Vec<(ObjectId, Vec<Occurrence>)>,
    opts: &HistoryOptions,
    threads: usize,
    on_event: &mut impl FnMut(Event),
) -> usize {
    let mut commit_details = CommitDetails::new(sync.to_thread_local(), commits);
    let mut attribute = |events| commit_details.attach(events, on_event);
    let done = scan_packs(engine, whole, &blobs, opts, threads, &mut attribute);
    let total = blobs.len();
    let blobs: Vec<_> = blobs
        .into_iter()
        .zip(done)
        .filter_map(|(b, d)| (!d.load(Ordering::Relaxed)).then_some(b))
        .collect();
    let from_packs = total - blobs.len();
    let init = || (Vec::new(), Scratch::default(), Vec::new());
    let work = |repo: &gix::Repository,
                (buf, scratch, matches): &mut (Vec<u8>, Scratch, Vec<RawMatch>),
                (id, occ): &(ObjectId, Vec<Occurrence>)| {
        scan_one(engine, repo, id, occ, opts, buf, scratch, matches)
    };
    fan_out(
        sync,
        &blobs,
        (threads, BLOB_CHUNK),
        init,
        work,
        |_, events| attribute(events),
    );
    from_packs
}

/// Scan the wanted blobs that lie in `packs` by decoding each pack whole
/// (see [`pack`]) instead of looking blobs up one by one. Returns which
/// blobs were scanned; the rest (loose objects, decode errors) are left to
/// the caller.
fn scan_packs(
    engine: &Engine,
    packs: &[Pack],
    blobs: &[(ObjectId, Vec<Occurrence>)],
    opts: &HistoryOptions,
    threads: usize,
    on_events: &mut impl FnMut(Vec<(Event, Option<usize>)>),
) -> Vec<std::sync::atomic::AtomicBool> {
    use std::sync::atomic::AtomicBool;
    let done: Vec<AtomicBool> = blobs.iter().map(|_| AtomicBool::new(false)).collect();
    let wanted: HashMap<ObjectId, usize> = blobs
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (*id, i))
        .collect();
    for p in packs {
        // A pack that cannot be laid out has its blobs read one by one by
        // the caller, which reports what cannot be read.
        let Ok(layout) = p.layout() else { continue };
        let (tx, rx) = crossbeam_channel::bounded::<Vec<(Event, Option<usize>)>>(1024);
        let (wanted, done) = (&wanted, &done);
        std::thread::scope(|s| {
            s.spawn(move || {
                let init = || (Scratch::default(), Vec::new());
                layout.traverse(Kind::Blob, threads, init, |(scratch, matches), v| {
                    let Some(&i) = wanted.get(v.id) else { return };
                    if !done[i].swap(true, Ordering::Relaxed) {
                        let (id, occ) = &blobs[i];
                        let events = scan_bytes(engine, id, occ, v.data, opts, scratch, matches);
                        // The receiver outlives the traversal.
                        let _ = tx.send(events);
                    }
                });
            });
            for events in rx {
                on_events(events);
            }
        });
    }
    done
}

#[allow(clippy::too_many_arguments)]
fn scan_one(
    engine: &Engine,
    repo: &gix::Repository,
    id: &ObjectId,
    occ: &[Occurrence],
    opts: &HistoryOptions,
    buf: &mut Vec<u8>,
    scratch: &mut Scratch,
    matches: &mut Vec<RawMatch>,
) -> Vec<(Event, Option<usize>)> {
    let first = occ.first().map(|o| &*o.path).unwrap_or("");
    let data = match repo.objects.try_find(id, buf) {
        Ok(Some(d)) => d,
        Ok(None) => {
            return vec![(
                Event::error(
                    first.to_string(),
                    format!("blob {id} is missing from the object database"),
                ),
                None,
            )]
        }
        Err(e) => {
            return vec![(
                Event::error(first.to_string(), format!("blob {id} cannot be read: {e}")),
                None,
            )]
        }
    };
    scan_bytes(engine, id, occ, data.data, opts, scratch, matches)
}

/// Scan one blob's content and attribute what it finds to its occurrences.
fn scan_bytes(
    engine: &Engine,
    id: &ObjectId,
    occ: &[Occurrence],
    hay: &[u8],
    opts: &HistoryOptions,
    scratch: &mut Scratch,
    matches: &mut Vec<RawMatch>,
) -> Vec<(Event, Option<usize>)> {
    if let Some(reason) = skip_reason(hay, opts) {
        return vec![(skipped(id, occ, reason), None)];
    }
    matches.clear();
    engine.scan_blob(hay, scratch, matches);
    let mut events = finding_events(engine, occ, hay, matches);
    events.push((
        Event::Scanned {
            bytes: hay.len() as u64,
        },
        None,
    ));
    events
}

/// Why a blob is not scanned, if it is not.
pub(super) fn skip_reason(hay: &[u8], opts: &HistoryOptions) -> Option<SkipReason> {
    if hay.len() as u64 > opts.max_file_size {
        Some(SkipReason::TooLarge {
            size: hay.len() as u64,
            limit: opts.max_file_size,
        })
    } else if is_binary(hay) {
        Some(SkipReason::Binary)
    } else {
        None
    }
}

/// The event for a blob left unscanned, named by its first path.
pub(super) fn skipped(id: &ObjectId, occ: &[Occurrence], reason: SkipReason) -> Event {
    let first = occ.first().map(|o| &*o.path).unwrap_or("");
    Event::Skipped {
        path: format!("{first} (blob {id})"),
        reason,
    }
}

/// The findings of blob `hay` at each of its occurrences (one per path, its
/// oldest commit, or one per commit with `all_commits`), where each rule
/// applies to the path.
pub(super) fn finding_events(
    engine: &Engine,
    occ: &[Occurrence],
    hay: &[u8],
    matches: &[RawMatch],
) -> Vec<(Event, Option<usize>)> {
    let mut events = Vec::new();
    if matches.is_empty() {
        return events;
    }
    for o in occ {
        let mut lines = LineIndex::new();
        for m in matches
            .iter()
            .filter(|m| engine.applies_to(m.rule, &o.path))
        {
            let f = Finding::new(&engine.rules()[m.rule], &o.path, hay, m, &mut lines);
            let commit = (o.commit != NO_COMMIT).then_some(o.commit);
            events.push((Event::Finding(Box::new(f)), commit));
        }
    }
    events
}

/// Commit details for findings, read once per commit.
pub(super) struct CommitDetails<'c> {
    repo: gix::Repository,
    commits: &'c [CommitNode],
    infos: HashMap<usize, CommitInfo>,
}

impl<'c> CommitDetails<'c> {
    pub fn new(repo: gix::Repository, commits: &'c [CommitNode]) -> CommitDetails<'c> {
        CommitDetails {
            repo,
            commits,
            infos: HashMap::new(),
        }
    }

    /// Pass `events` on, each finding with the details of its commit (an
    /// index into the commit list).
    pub fn attach(
        &mut self,
        events: Vec<(Event, Option<usize>)>,
        on_event: &mut impl FnMut(Event),
    ) {
        for (mut ev, commit) in events {
            if let (Event::Finding(f), Some(c)) = (&mut ev, commit) {
                let info = self
                    .infos
                    .entry(c)
                    .or_insert_with(|| commit_info(&self.repo, &self.commits[c].id));
                f.commit = Some(info.clone());
            }
            on_event(ev);
        }
    }
}

fn commit_info(repo: &gix::Repository, id: &ObjectId) -> CommitInfo {
    let mut info = CommitInfo {
        id: id.to_string(),
        author: String::new(),
        email: String::new(),
        date: String::new(),
        message: String::new(),
    };
    if let Ok(c) = repo.find_commit(*id) {
        if let Ok(a) = c.author() {
            info.author = a.name.to_string();
            info.email = a.email.to_string();
            info.date = crate::finding::rfc3339(a.seconds());
        }
        if let Ok(m) = c.message_raw() {
            info.message = String::from_utf8_lossy(m)
                .lines()
                .next()
                .unwrap_or("")
                .to_string();
        }
    }
    info
}

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
        if data.len() as u64 > max_file_size {
            on_event(Event::Skipped {
                path: rel,
                reason: SkipReason::TooLarge {
                    size: data.len() as u64,
                    limit: max_file_size,
                },
            });
            continue;
        }
        if is_binary(data) {
            on_event(Event::Skipped {
                path: rel,
                reason: SkipReason::Binary,
            });
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
            let f = Finding::new(&engine.rules()[m.rule], &rel, data, m, &mut lines);
            let (a, b) = (f.location.line, f.location.end_line);
            if (a..=b).any(|l| added.get(l - 1).copied().unwrap_or(false)) {
                on_event(Event::Finding(Box::new(f)));
            }
        }
        on_event(Event::Scanned {
            bytes: data.len() as u64,
        });
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
    fn rfc3339_formats_epoch_seconds() {
        use crate::finding::rfc3339;
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

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
