//! Where a blob was introduced, and the findings that follow from it: both
//! strategies fold what each commit introduced into [`Introductions`], scan
//! each blob once, and turn its matches into one finding per occurrence,
//! with the details of the commit that introduced it.

use std::collections::HashMap;
use std::sync::Arc;

use gix::ObjectId;

use super::plumbing::commit::CommitNode;
use super::HistoryOptions;
use crate::engine::{RawMatch, Scratch};
use crate::finding::{CommitInfo, Finding, LineIndex, Source};
use crate::sources::{archive, scan_archive, Event, SkipReason};
use crate::Engine;

/// An occurrence of a blob in history.
pub(super) struct Occurrence {
    /// Interned: the same path string is shared by all its occurrences.
    pub path: Arc<str>,
    /// The commit that introduced it (an index into the oldest-first
    /// commit list), or none for a blob no walked commit reaches.
    pub commit: Option<usize>,
}

/// A blob and where it occurs.
pub(super) type Blob = (ObjectId, Vec<Occurrence>);

/// A blob no walked commit reaches, under a pseudo-path naming its id.
pub(super) fn unreachable(id: ObjectId) -> Blob {
    let path = format!("(unreachable blob {id})").into();
    (id, vec![Occurrence { path, commit: None }])
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

/// What one commit introduced: blobs with their paths, and submodules.
#[derive(Default)]
pub(super) struct Introduced {
    pub blobs: Vec<(ObjectId, Vec<u8>)>,
    pub submodules: Vec<Vec<u8>>,
}

impl Introduced {
    /// Record the entry at `path` (the full path, already pushed).
    pub fn blob(&mut self, id: ObjectId, path: &[u8]) {
        self.blobs.push((id, path.to_vec()));
    }

    pub fn submodule(&mut self, path: &[u8]) {
        self.submodules.push(path.to_vec());
    }
}

/// Where blobs were introduced, folded in commit by commit: memory holds
/// one entry per (blob, path) (per commit with `all_commits`), with paths
/// interned, rather than every commit's full change list.
pub(super) struct Introductions {
    all_commits: bool,
    paths: HashMap<Vec<u8>, Arc<str>>,
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
    /// introduced; submodules are reported once per path.
    pub fn add(&mut self, commit: usize, found: Introduced, on_event: &mut impl FnMut(Event)) {
        for sub in found.submodules {
            let path = String::from_utf8_lossy(&sub).into_owned();
            if self.submodules_seen.insert(path.clone()) {
                on_event(Event::Skipped {
                    path,
                    reason: SkipReason::Submodule,
                });
            }
        }
        for (blob, path) in found.blobs {
            let path = match self.paths.get(&path) {
                Some(p) => p.clone(),
                None => {
                    let p: Arc<str> = String::from_utf8_lossy(&path).into();
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
                Some(o) if !self.all_commits => o.commit = o.commit.min(Some(commit)),
                _ => occ.push(Occurrence {
                    path,
                    commit: Some(commit),
                }),
            }
        }
    }

    /// Every introduced blob with its occurrences, sorted by path and
    /// commit, in the order blobs were first seen.
    pub fn finish(mut self) -> Vec<Blob> {
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

/// Paths the project excludes from scans (the `.keyburnignore` at the root
/// of the work tree) stay excluded in history.
pub(super) fn drop_ignored(repo: &gix::Repository, blobs: &mut Vec<Blob>) {
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

/// A finding or other event, with the commit it belongs to.
pub(super) type Attributed = (Event, Option<usize>);

/// The path a blob is reported under when one path must stand for all.
pub(super) fn first_path(occ: &[Occurrence]) -> &str {
    occ.first().map(|o| &*o.path).unwrap_or("")
}

/// The event for a blob left unscanned, named by its first path.
pub(super) fn skipped(id: &ObjectId, occ: &[Occurrence], reason: SkipReason) -> Event {
    Event::Skipped {
        path: format!("{} (blob {id})", first_path(occ)),
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
) -> Vec<Attributed> {
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
            let mut f = Finding::new(&engine.rules()[m.rule], &o.path, hay, m, &mut lines);
            f.source = Source::History;
            events.push((Event::Finding(Box::new(f)), o.commit));
        }
    }
    events
}

/// The events of an archive blob's members at each of its occurrences
/// (the member paths start with the archive's): findings under the commit
/// that introduced it there; what was scanned and skipped, once.
pub(super) fn archive_events(
    engine: &Engine,
    occ: &[Occurrence],
    content: (archive::Format, &[u8]),
    opts: &HistoryOptions,
) -> Vec<Attributed> {
    let mut events = Vec::new();
    let (mut scratch, mut matches) = (Scratch::default(), Vec::new());
    for (i, o) in occ.iter().enumerate() {
        let mut emit = |ev| {
            match ev {
                Event::Finding(mut f) => {
                    f.source = Source::History;
                    events.push((Event::Finding(f), o.commit));
                }
                other if i == 0 => events.push((other, None)),
                _ => {}
            }
            true
        };
        let parts = (&mut scratch, &mut matches);
        scan_archive(
            engine,
            &o.path,
            content,
            opts.max_file_size,
            parts,
            &mut emit,
        );
    }
    events
}

/// The findings of path-only rules at every occurrence of `blobs` (a
/// keystore committed is reported at the commit that added it, whatever
/// its content).
pub(super) fn path_findings(engine: &Engine, blobs: &[Blob]) -> Vec<Attributed> {
    let mut events = Vec::new();
    if !engine.has_path_rules() {
        return events;
    }
    for (_, occ) in blobs {
        for o in occ.iter().filter(|o| o.commit.is_some()) {
            for r in engine.path_findings(&o.path) {
                let mut f = Finding::for_path(&engine.rules()[r], &o.path);
                f.source = Source::History;
                events.push((Event::Finding(Box::new(f)), o.commit));
            }
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

    /// Pass `events` on, each finding with the details of its commit.
    pub fn attach(&mut self, events: Vec<Attributed>, on_event: &mut impl FnMut(Event)) {
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
