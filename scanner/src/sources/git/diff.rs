//! The diff strategy: compare each commit's tree with its parents' to learn
//! what it introduced, then scan each introduced blob once.
//!
//! An entry counts as introduced by a commit only if it differs from every
//! parent, so a merge reports only what its own conflict resolution added,
//! and subtrees shared with a parent are skipped by id without being read.
//! Blobs are then read in pack order: whole packs decoded in delta-tree
//! order where many of their blobs are wanted, the rest looked up one by
//! one. Cheapest for ranges and small repositories.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use gix::objs::{Find, Kind};
use gix::ObjectId;
use rayon::prelude::*;

use super::attribution::{
    self, archive_events, finding_events, first_path, skipped, Attributed, Blob, CommitDetails,
    CommitTrees, Introduced, Introductions,
};
use super::plumbing::commit::CommitNode;
use super::plumbing::pack::{packs, Pack};
use super::plumbing::tree::{self, EntryKind};
use super::plumbing::{catch, stream, WorkerPanic};
use super::{HistoryOptions, HistorySummary, Strategy};
use crate::engine::{RawMatch, Scratch};
use crate::sources::{archive_format, Event, SkipReason};
use crate::Engine;

/// Scan what `commits` (oldest first) introduced.
pub(super) fn scan(
    engine: &Engine,
    repo: &gix::Repository,
    pool: &rayon::ThreadPool,
    commits: &[CommitNode],
    opts: &HistoryOptions,
    on_event: &mut impl FnMut(Event),
) -> Result<HistorySummary, WorkerPanic> {
    let t0 = std::time::Instant::now();
    let sync = repo.clone().into_sync();
    let mut blobs = collect_blobs(pool, &sync, commits, opts.all_commits, on_event)?;
    attribution::drop_ignored(repo, &mut blobs);
    if opts.all_objects {
        add_unreachable_blobs(repo, &mut blobs, on_event);
    }
    let packs = packs(repo);
    let per_pack = sort_by_pack_location(&packs, &mut blobs);
    // Decoding a whole pack pays off only when much of it is wanted; a
    // commit range wants a few blobs, which are cheaper looked up.
    let whole: Vec<Pack> = packs
        .into_iter()
        .zip(per_pack)
        .filter(|(p, n)| n * WHOLE_PACK_SHARE >= p.index.num_objects() as usize)
        .map(|(p, _)| p)
        .collect();
    let diff = t0.elapsed();
    let mut summary = HistorySummary {
        commits: commits.len(),
        blobs: blobs.len(),
        diff,
        strategy: Strategy::Diff,
        ..Default::default()
    };
    let mut details = CommitDetails::new(sync.to_thread_local(), commits);
    details.attach(attribution::path_findings(engine, &blobs), on_event);
    let mut attach = |events| details.attach(events, on_event);
    let done = scan_whole_packs(engine, pool, &whole, &blobs, opts, &mut attach)?;
    let total = blobs.len();
    let rest: Vec<Blob> = blobs
        .into_iter()
        .zip(done)
        .filter_map(|(b, d)| (!d.load(Ordering::Relaxed)).then_some(b))
        .collect();
    summary.blobs_from_packs = total - rest.len();
    let init = || (Vec::new(), Scratch::default(), Vec::new());
    let work =
        |repo: &gix::Repository,
         (buf, scratch, matches): &mut (Vec<u8>, Scratch, Vec<RawMatch>),
         (id, occ): &Blob| { scan_one(engine, repo, id, occ, opts, buf, scratch, matches) };
    let what = |(id, occ): &Blob| format!("blob {id} ({})", first_path(occ));
    fan_out(
        pool,
        &sync,
        &rest,
        BLOB_CHUNK,
        (init, work, what),
        |_, events| attach(events),
    )?;
    summary.scan = t0.elapsed() - diff;
    Ok(summary)
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
    out: &mut Introduced,
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
                    out.submodule(prefix);
                    Ok(())
                }
                EntryKind::Tree => {
                    let sub: Vec<Option<ObjectId>> = c
                        .in_parents
                        .iter()
                        .map(|p| p.map(ObjectId::from_bytes_or_panic))
                        .collect();
                    introduced(odb, &sub, &id, prefix, bufs, out)
                }
                EntryKind::Blob => {
                    out.blob(id, prefix);
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

/// Run `work` over `items` on `pool`, each worker with its own repository
/// handle and state from `init`, in runs of `chunk` consecutive items
/// (which share cache-friendly locality). Every result reaches `consume`
/// on the calling thread, with its item's index. A panic in `work` stops
/// the run with an error naming the item (`what`).
fn fan_out<T: Sync, S, R: Send>(
    pool: &rayon::ThreadPool,
    sync: &gix::ThreadSafeRepository,
    items: &[T],
    chunk: usize,
    (init, work, what): (
        impl Fn() -> S + Sync + Send,
        impl Fn(&gix::Repository, &mut S, &T) -> R + Sync + Send,
        impl Fn(&T) -> String + Sync + Send,
    ),
    mut consume: impl FnMut(usize, R),
) -> Result<(), WorkerPanic> {
    let produce = |tx: crossbeam_channel::Sender<(usize, R)>| {
        pool.install(|| {
            items.par_chunks(chunk).enumerate().try_for_each_init(
                || (thread_repo(sync), init()),
                |(repo, state), (n, run)| {
                    for (i, item) in run.iter().enumerate() {
                        let r = catch(|| what(item), || work(repo, state, item))?;
                        if tx.send((n * chunk + i, r)).is_err() {
                            break; // the consumer is gone
                        }
                    }
                    Ok(())
                },
            )
        })
    };
    stream(produce, |(i, r)| consume(i, r))
}

/// Commits handed to a worker at a time: a commit's parent tree is
/// usually its predecessor's tree, still in the same worker's caches.
const DIFF_CHUNK: usize = 16;

/// Phase one: which blobs each commit introduced, in parallel over commits.
fn collect_blobs(
    pool: &rayon::ThreadPool,
    sync: &gix::ThreadSafeRepository,
    commits: &[CommitNode],
    all_commits: bool,
    on_event: &mut impl FnMut(Event),
) -> Result<Vec<Blob>, WorkerPanic> {
    let trees = CommitTrees::new(commits);
    let mut intro = Introductions::new(all_commits);
    let diff_commit = |repo: &gix::Repository, bufs: &mut TreeBufs, c: &CommitNode| {
        let olds = trees.of_parents(repo, c);
        let mut out = Introduced::default();
        let res = introduced(
            &repo.objects,
            &olds,
            &c.tree,
            &mut Vec::new(),
            bufs,
            &mut out,
        );
        (out, res.err())
    };
    let what = |c: &CommitNode| format!("the trees of commit {}", c.id);
    fan_out(
        pool,
        sync,
        commits,
        DIFF_CHUNK,
        (TreeBufs::default, diff_commit, what),
        |i, (out, err)| {
            if let Some(message) = err {
                on_event(Event::error(format!("commit {}", commits[i].id), message));
            }
            intro.add(i, out, on_event);
        },
    )?;
    Ok(intro.finish())
}

/// Every blob in the object database that no walked commit introduced.
fn add_unreachable_blobs(
    repo: &gix::Repository,
    blobs: &mut Vec<Blob>,
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
            blobs.push(attribution::unreachable(id));
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
fn sort_by_pack_location(packs: &[Pack], blobs: &mut Vec<Blob>) -> Vec<usize> {
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

/// Blobs handed to a worker at a time: consecutive blobs (in pack order)
/// share delta bases, so each worker keeps runs together.
const BLOB_CHUNK: usize = 64;

/// Scan the wanted blobs that lie in `packs` by decoding each pack whole
/// instead of looking blobs up one by one. Returns which blobs were
/// scanned; the rest (loose objects, decode errors) are left to the caller.
fn scan_whole_packs(
    engine: &Engine,
    pool: &rayon::ThreadPool,
    packs: &[Pack],
    blobs: &[Blob],
    opts: &HistoryOptions,
    attach: &mut impl FnMut(Vec<Attributed>),
) -> Result<Vec<AtomicBool>, WorkerPanic> {
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
        let (wanted, done) = (&wanted, &done);
        let produce = |tx: crossbeam_channel::Sender<Vec<Attributed>>| {
            let init = || (Scratch::default(), Vec::new());
            layout.traverse(pool, Kind::Blob, init, |(scratch, matches), v| {
                let Some(&i) = wanted.get(v.id) else { return };
                if !done[i].swap(true, Ordering::Relaxed) {
                    let (id, occ) = &blobs[i];
                    let events = scan_bytes(engine, id, occ, v.data, opts, scratch, matches);
                    // The receiver outlives the traversal.
                    let _ = tx.send(events);
                }
            })
        };
        stream(produce, &mut *attach)?;
    }
    Ok(done)
}

#[allow(clippy::too_many_arguments)]
fn scan_one(
    engine: &Engine,
    repo: &gix::Repository,
    id: &ObjectId,
    occ: &[attribution::Occurrence],
    opts: &HistoryOptions,
    buf: &mut Vec<u8>,
    scratch: &mut Scratch,
    matches: &mut Vec<RawMatch>,
) -> Vec<Attributed> {
    let first = first_path(occ);
    let data = match repo.objects.try_find(id, buf) {
        Ok(Some(d)) => d,
        Ok(None) => {
            return vec![(
                Event::error(
                    first,
                    format!("blob {id} is missing from the object database"),
                ),
                None,
            )]
        }
        Err(e) => {
            return vec![(
                Event::error(first, format!("blob {id} cannot be read: {e}")),
                None,
            )]
        }
    };
    #[cfg(test)]
    super::plumbing::panic_on_marker(data.data);
    scan_bytes(engine, id, occ, data.data, opts, scratch, matches)
}

/// Scan one blob's content and attribute what it finds to its occurrences.
fn scan_bytes(
    engine: &Engine,
    id: &ObjectId,
    occ: &[attribution::Occurrence],
    hay: &[u8],
    opts: &HistoryOptions,
    scratch: &mut Scratch,
    matches: &mut Vec<RawMatch>,
) -> Vec<Attributed> {
    let skip = SkipReason::of(hay, opts.max_file_size);
    if !matches!(skip, Some(SkipReason::TooLarge { .. })) {
        if let Some(format) = archive_format(engine, "", hay) {
            return archive_events(engine, occ, (format, hay), opts);
        }
    }
    if let Some(reason) = skip {
        return vec![(skipped(id, occ, reason), None)];
    }
    matches.clear();
    engine.scan_blob_at(occ.iter().map(|o| &*o.path), hay, scratch, matches);
    let mut events = finding_events(engine, occ, hay, matches);
    events.push((Event::scanned(hay.len() as u64), None));
    events
}
