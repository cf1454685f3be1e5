//! The git source: history and staged changes, read from the object
//! database with gix (no `git` subprocess). This folder is the only part
//! of the crate that knows gix.
//!
//! A history scan resolves the tips to walk ([`walk`]), then runs one of
//! two strategies that give the same findings: [`diff`] compares each
//! commit's trees with its parents' to learn what it introduced, then scans
//! those blobs; [`packs`] scans every stored blob first, then finds where
//! the few that matter were introduced. Both fold introductions and turn
//! matches into findings through [`attribution`]; both read objects
//! through [`plumbing`] (packs decoded whole, raw trees, commit headers).
//! Dependencies run one way: strategy -> attribution/walk -> plumbing.
//!
//! Each unique blob is scanned once, in parallel on one rayon pool per
//! scan, and its findings are attributed to every (path, commit) that
//! introduced it: once per path, the oldest commit first, or every commit
//! with `all_commits`.

mod attribution;
mod diff;
mod packs;
mod plumbing;
mod staged;
mod walk;
mod worktree;

use std::path::Path;

pub use plumbing::WorkerPanic;
pub use staged::scan_staged;
pub use worktree::{scan_worktree, WorktreeSummary};

use crate::sources::Event;
use crate::Engine;
use plumbing::pack::{packs as pack_files, Pack};

/// An error that stops a git scan: a bad repository or revision before it
/// starts, or a worker that failed while it ran. Errors on single objects
/// are reported as events instead.
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
    #[error("cannot read {what}: {message}")]
    Unreadable { what: String, message: String },
    #[error("cannot start the scan's worker threads: {0}")]
    Threads(String),
    #[error(transparent)]
    Worker(#[from] WorkerPanic),
}

/// Which part of history to scan.
#[derive(Debug, Clone)]
pub struct HistoryOptions {
    /// Only commits reachable from this ref (default: every ref).
    pub branch: Option<String>,
    /// Skip commits reachable from this revision (e.g. `origin/main`):
    /// `since..HEAD`, as `git log since..` means, or with `all_refs` every
    /// ref's commits not reachable from it.
    pub since: Option<String>,
    /// With `since` alone: walk from every ref, not only HEAD.
    pub all_refs: bool,
    /// `A..B`: commits reachable from B and not from A.
    pub range: Option<String>,
    /// Report every commit that introduced a secret, not only the oldest.
    pub all_commits: bool,
    /// Also scan blobs no walked commit reaches (dangling, stashed away,
    /// left behind by a rewritten history).
    pub all_objects: bool,
    /// Blobs larger than this are skipped (and reported so).
    pub max_file_size: u64,
    /// Worker threads; 0 picks one per core.
    pub threads: usize,
    pub strategy: Strategy,
}

/// Every ref, every blob whatever its size, the oldest commit per finding.
impl Default for HistoryOptions {
    fn default() -> Self {
        HistoryOptions {
            branch: None,
            since: None,
            all_refs: false,
            range: None,
            all_commits: false,
            all_objects: false,
            max_file_size: u64::MAX,
            threads: 0,
            strategy: Strategy::Auto,
        }
    }
}

/// How a history scan finds what each commit introduced. Both strategies
/// give the same findings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Strategy {
    /// Packs for a whole history (every ref, or a branch) of a packed
    /// repository (1 MB of packs or more) and for a range of 20,000
    /// commits or more; diffs otherwise, and whenever path-only rules are
    /// loaded.
    #[default]
    Auto,
    /// Compare each commit's trees with its parents' (see [`diff`]).
    Diff,
    /// Scan every stored blob, then find where the few that matter were
    /// introduced (see [`packs`]).
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
    /// Commits the walk could not read (each reported as an error event):
    /// history behind them was not scanned.
    pub unreadable_commits: usize,
    /// A shallow clone: history before its boundary is not in the
    /// repository and was not scanned.
    pub shallow: bool,
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

/// From how many commits a range is scanned pack first: the packs
/// strategy costs about the same whatever the range (git/git: 9 s), the
/// diff strategy about 0.1 ms per commit.
const PACKS_MIN_COMMITS: usize = 20_000;

/// From how many bytes of packs a whole history is scanned pack first.
const PACKS_MIN_BYTES: u64 = 1 << 20;

/// Object cache of the walking thread (commits are read twice).
const WALK_CACHE_BYTES: usize = 4 << 20;

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

/// The scan's one worker pool: every parallel phase of either strategy
/// runs on it.
fn pool(threads: usize) -> Result<rayon::ThreadPool, GitError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("keyburn-history-{i}"))
        .build()
        .map_err(|e| GitError::Threads(e.to_string()))
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
    let tips = walk::tips(&repo, opts)?;
    let shallow = repo.is_shallow().unwrap_or(false);
    let pool = pool(opts.threads)?;
    // A range is walked first: a small one is diffed, a large one (a
    // --since over many refs) is cheaper pack first.
    let mut walked = None;
    let range = !tips.hidden.is_empty();
    let packs_first = packs::applicable(&repo)
        && match opts.strategy {
            Strategy::Packs => true,
            Strategy::Diff => false,
            // Path-only rules judge every path of history, which the diff
            // strategy walks anyway; the packs strategy would have to keep
            // every tree entry (git/git with gitleaks' pkcs12-file rule:
            // 151 s against 23 s without it).
            Strategy::Auto if engine.has_path_rules() => false,
            // A small repository (a fresh one is all loose objects) is
            // diffed in no time, reading only reachable, unignored blobs.
            Strategy::Auto if !range => packed_bytes(&repo) >= PACKS_MIN_BYTES,
            Strategy::Auto => {
                let commits = walk::rev_walk(&repo, tips.clone(), &mut on_event)?;
                let large = commits.commits.len() >= PACKS_MIN_COMMITS;
                walked = Some(commits);
                large
            }
        };
    if packs_first {
        let packs = pack_files(&repo);
        match packs
            .iter()
            .map(Pack::layout)
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(layouts) => {
                let walked = match walked {
                    Some(c) => c,
                    None if !range => {
                        walk::from_packs(&pool, &repo, &layouts, &tips.tips, &mut on_event)?
                    }
                    None => walk::rev_walk(&repo, tips, &mut on_event)?,
                };
                let walk = t0.elapsed();
                // Resolving refs mapped pack and index pages through the
                // object database; a fresh handle starts with none.
                drop(repo);
                let repo = open(path)?;
                let mut summary = packs::scan(
                    engine,
                    &repo,
                    &pool,
                    (&packs, layouts),
                    &walked.commits,
                    opts,
                    &mut on_event,
                )?;
                summary.walk = walk;
                summary.unreadable_commits = walked.unreadable;
                summary.shallow = shallow;
                return Ok(summary);
            }
            Err(e) => on_event(Event::error(
                "",
                format!("{e}; reading objects one by one instead"),
            )),
        }
    }
    let walked = match walked {
        Some(c) => c,
        None => walk::rev_walk(&repo, tips, &mut on_event)?,
    };
    let walk = t0.elapsed();
    let mut summary = diff::scan(engine, &repo, &pool, &walked.commits, opts, &mut on_event)?;
    summary.walk = walk;
    summary.unreadable_commits = walked.unreadable;
    summary.shallow = shallow;
    Ok(summary)
}

#[cfg(test)]
mod tests;
