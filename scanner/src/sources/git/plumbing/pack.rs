//! Packs decoded whole: every object once, each delta applied to a base
//! decoded just before it.
//!
//! A pack stores most objects as deltas against another object of the same
//! kind, in chains up to 50 deep. Reading objects one by one re-inflates a
//! chain for every object unless a cache happens to hold its base; reading
//! them in delta-tree order (a base, then each of its deltas, depth first)
//! applies every delta exactly once, with only the bases on the current path
//! in memory. Compressed bytes are read with positioned reads rather than a
//! mapping, so what the process holds stays bounded by those paths whatever
//! the size of the pack.
//!
//! Each visited object also says which of its bytes its delta inserted
//! ("fresh" bytes): everything else was copied from its base, which was
//! visited before it.

use std::fs::File;
use std::ops::Range;
use std::path::PathBuf;

use std::sync::atomic::{AtomicUsize, Ordering};

use gix::objs::Kind;
use gix::ObjectId;

use super::{catch, WorkerPanic};

/// A pack that cannot be used at all (its objects are then read one by one).
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub(crate) struct PackError {
    path: String,
    message: String,
}

/// A pack of the repository: its index, opened once, and its data file.
pub(crate) struct Pack {
    pub index: gix::odb::pack::index::File,
    pub data: PathBuf,
}

/// The repository's packs, in name order; a pack whose index cannot be
/// read is left out (its objects are still found through the object
/// database).
pub(crate) fn packs(repo: &gix::Repository) -> Vec<Pack> {
    let dir = repo.common_dir().join("objects").join("pack");
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "idx"))
                .collect()
        })
        .unwrap_or_default();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|p| {
            let index = gix::odb::pack::index::File::at(&p, repo.object_hash()).ok()?;
            Some(Pack {
                index,
                data: p.with_extension("pack"),
            })
        })
        .collect()
}

/// Where each object of a pack lies in its data file, with its kind and
/// delta base, read from the entry headers.
pub(crate) struct Layout<'p> {
    pack: &'p Pack,
    file: File,
    /// Objects in pack order.
    nodes: Vec<Node>,
    /// Children of node `i`: `children[child_start[i]..child_start[i + 1]]`.
    child_start: Vec<u32>,
    children: Vec<u32>,
}

const NONE: u32 = u32::MAX;
/// Entry types in a pack header.
const OFS_DELTA: u8 = 6;
const REF_DELTA: u8 = 7;

#[derive(Clone, Copy)]
struct Node {
    offset: u64,
    /// Where the compressed data starts and ends.
    data: u64,
    end: u64,
    /// Inflated size of the entry's data (the delta's, for a delta).
    size: u64,
    /// Pack type: 1-4 for whole objects, 6 or 7 for deltas.
    kind: u8,
    /// The node this one is a delta of.
    base: u32,
    /// The object's position in the index (its id).
    index: u32,
}

fn kind_of(code: u8) -> Option<Kind> {
    match code {
        1 => Some(Kind::Commit),
        2 => Some(Kind::Tree),
        3 => Some(Kind::Blob),
        4 => Some(Kind::Tag),
        _ => None,
    }
}

/// Bytes read at once while parsing entry headers.
const HEADER_CHUNK: usize = 1 << 20;
/// Longest entry header: type and size (up to 10 bytes), and a base offset
/// (up to 10) or id.
const MAX_HEADER: usize = 10 + 32;

impl Pack {
    /// Read every entry's header (one sequential pass over the data file).
    pub fn layout(&self) -> Result<Layout<'_>, PackError> {
        let fail = |message: String| PackError {
            path: self.data.display().to_string(),
            message,
        };
        let index = &self.index;
        let hash = index.object_hash();
        let file = File::open(&self.data).map_err(|e| fail(e.to_string()))?;
        let len = file.metadata().map_err(|e| fail(e.to_string()))?.len();
        let trailer = hash.len_in_bytes() as u64;
        let mut nodes: Vec<Node> = index
            .iter()
            .enumerate()
            .map(|(i, e)| Node {
                offset: e.pack_offset,
                data: 0,
                end: 0,
                size: 0,
                kind: 0,
                base: NONE,
                index: i as u32,
            })
            .collect();
        nodes.sort_unstable_by_key(|n| n.offset);
        if nodes.len() >= NONE as usize {
            return Err(fail("too many objects".into()));
        }
        if nodes.last().is_some_and(|n| n.offset + trailer > len) || len < 12 + trailer {
            return Err(fail("the data file is shorter than its index says".into()));
        }
        for i in 0..nodes.len() {
            nodes[i].end = nodes.get(i + 1).map_or(len - trailer, |n| n.offset);
        }
        let mut buf = vec![0u8; HEADER_CHUNK];
        let (mut at, mut filled) = (0u64, 0usize);
        let mut ref_bases = Vec::new();
        for i in 0..nodes.len() {
            let n = nodes[i];
            if n.offset < at || n.offset + MAX_HEADER as u64 > at + filled as u64 {
                at = n.offset;
                let want = HEADER_CHUNK.min((len - at) as usize);
                read_at(&file, &mut buf[..want], at).map_err(|e| fail(e.to_string()))?;
                filled = want;
            }
            let start = (n.offset - at) as usize;
            let avail = &buf[start..filled.min(start + (n.end - n.offset) as usize)];
            let corrupt = || fail(format!("corrupt entry header at offset {}", n.offset));
            let h = parse_header(avail, hash.len_in_bytes()).ok_or_else(corrupt)?;
            let node = &mut nodes[i];
            node.kind = h.kind;
            node.size = h.size;
            node.data = n.offset + h.len as u64;
            match h.base {
                Base::None => {}
                Base::Offset(back) => {
                    let target = n.offset.checked_sub(back).ok_or_else(corrupt)?;
                    let b = nodes
                        .binary_search_by_key(&target, |n| n.offset)
                        .map_err(|_| corrupt())?;
                    nodes[i].base = b as u32;
                }
                Base::Id(id) => ref_bases.push((i, id)),
            }
        }
        for (i, id) in ref_bases {
            // A base outside this pack (a thin pack) leaves the object to
            // one-by-one reads.
            if let Some(e) = index.lookup(id) {
                let target = index.pack_offset_at_index(e);
                if let Ok(b) = nodes.binary_search_by_key(&target, |n| n.offset) {
                    nodes[i].base = b as u32;
                }
            }
        }
        let mut child_start = vec![0u32; nodes.len() + 1];
        for n in &nodes {
            if n.base != NONE {
                child_start[n.base as usize + 1] += 1;
            }
        }
        for i in 0..nodes.len() {
            child_start[i + 1] += child_start[i];
        }
        let mut fill = child_start.clone();
        let mut children = vec![0u32; child_start[nodes.len()] as usize];
        for (i, n) in nodes.iter().enumerate() {
            if n.base != NONE {
                let slot = &mut fill[n.base as usize];
                children[*slot as usize] = i as u32;
                *slot += 1;
            }
        }
        Ok(Layout {
            pack: self,
            file,
            nodes,
            child_start,
            children,
        })
    }
}

impl Layout<'_> {
    fn children(&self, i: u32) -> &[u32] {
        let i = i as usize;
        &self.children[self.child_start[i] as usize..self.child_start[i + 1] as usize]
    }

    fn roots(&self, kind: Kind) -> Vec<u32> {
        (0..self.nodes.len() as u32)
            .filter(|&i| kind_of(self.nodes[i as usize].kind) == Some(kind))
            .collect()
    }

    /// Call `f` on `root` and every object decoded from it.
    fn for_each_in_tree(&self, root: u32, mut f: impl FnMut(u32)) {
        let mut stack = vec![root];
        while let Some(i) = stack.pop() {
            f(i);
            stack.extend_from_slice(self.children(i));
        }
    }

    fn subtree_size(&self, root: u32) -> usize {
        let mut n = 0;
        self.for_each_in_tree(root, |_| n += 1);
        n
    }

    /// Objects that no traversal reaches: deltas whose base is missing or
    /// forms a cycle, and entries of unknown type. They are left to
    /// one-by-one reads, which report what is wrong with them.
    pub fn unreachable(&self) -> Vec<ObjectId> {
        let mut seen = vec![false; self.nodes.len()];
        for root in (0..self.nodes.len() as u32).filter(|&i| self.nodes[i as usize].base == NONE) {
            if kind_of(self.nodes[root as usize].kind).is_none() {
                continue;
            }
            self.for_each_in_tree(root, |i| seen[i as usize] = true);
        }
        self.nodes
            .iter()
            .zip(seen)
            .filter(|(_, s)| !s)
            .map(|(n, _)| self.pack.index.oid_at_index(n.index).to_owned())
            .collect()
    }

    /// Visit every object of `kind` in delta-tree order on every worker of
    /// `pool`, each with its own state from `init`; returns the states
    /// and the objects that could not be decoded (with why), for one-by-one
    /// reads to retry and report. A panicking visitor fails the whole
    /// traversal with the object whose delta tree it was reading.
    pub fn traverse<S: Send>(
        &self,
        pool: &rayon::ThreadPool,
        kind: Kind,
        init: impl Fn() -> S + Sync,
        visit: impl Fn(&mut S, Visit<'_>) + Sync,
    ) -> Result<Traversal<S>, WorkerPanic> {
        let mut roots = self.roots(kind);
        // Biggest delta trees first, so that no worker is left with a
        // long one at the end while the others idle.
        let mut sized: Vec<(usize, u32)> =
            roots.iter().map(|&r| (self.subtree_size(r), r)).collect();
        sized.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        roots = sized.into_iter().map(|(_, r)| r).collect();
        // Every worker of the pool takes the next root until none is left:
        // one state per worker, and the big trees go first.
        let next = AtomicUsize::new(0);
        let parts = pool.broadcast(|_| {
            let mut state = init();
            let mut walker = Walker::default();
            let mut failed = Vec::new();
            loop {
                let at = next.fetch_add(1, Ordering::Relaxed);
                let Some(&root) = roots.get(at) else { break };
                let what = || {
                    let id = self
                        .pack
                        .index
                        .oid_at_index(self.nodes[root as usize].index);
                    format!(
                        "the delta tree of {kind} {id} in {}",
                        self.pack.data.display()
                    )
                };
                match catch(what, || {
                    walker.walk(self, kind, root, &mut |v| visit(&mut state, v))
                }) {
                    Ok(lost) => failed.extend(lost),
                    Err(panic) => {
                        // The other workers stop at their next root.
                        next.store(roots.len(), Ordering::Relaxed);
                        return Err(panic);
                    }
                }
            }
            Ok((state, failed))
        });
        let mut out = Traversal {
            states: Vec::with_capacity(parts.len()),
            failed: Vec::new(),
        };
        for part in parts {
            let (state, failed) = part?;
            out.states.push(state);
            out.failed.extend(failed);
        }
        Ok(out)
    }
}

/// What a traversal leaves: each worker's state, and the objects that
/// could not be decoded, with why.
pub(crate) struct Traversal<S> {
    pub states: Vec<S>,
    pub failed: Vec<(ObjectId, String)>,
}

/// An object handed to a traversal's visitor.
pub(crate) struct Visit<'a> {
    pub id: &'a gix::oid,
    pub data: &'a [u8],
    /// Byte ranges of `data` its delta inserted (all of it for an object
    /// stored whole).
    pub fresh: &'a [Range<usize>],
    /// The rest: ranges copied from the base, in order.
    pub copied: &'a [Copied],
    /// Where the object sits on the decoding path, and its base (visited
    /// before it): a visitor can keep what it learnt about each level's
    /// object for the deltas applied to it. A level is reused once its
    /// object is no longer needed, possibly by that object's last delta.
    pub level: usize,
    pub base: Option<usize>,
}

/// `len` bytes of an object copied from its base: `data[to..to + len]` is
/// `base[from..from + len]`. Copies that continue each other are merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Copied {
    pub to: usize,
    pub from: usize,
    pub len: usize,
}

/// One thread's buffers for depth-first decoding.
#[derive(Default)]
struct Walker {
    /// Decoded objects on the current path that still have deltas to
    /// apply: a base is kept only while a sibling of the object decoded
    /// from it waits, so a chain of single deltas needs two buffers.
    levels: Vec<Vec<u8>>,
    spare: Vec<u8>,
    compressed: Vec<u8>,
    delta: Vec<u8>,
    fresh: Vec<Range<usize>>,
    copied: Vec<Copied>,
    /// Objects to decode, with the level holding their base.
    stack: Vec<(u32, usize)>,
}

/// The stack's mark for an object stored whole.
const NO_BASE: usize = usize::MAX;
/// Buffers that grew past this are freed after their delta tree, so one
/// huge object does not pin its size for the rest of the pack.
const KEEP_CAPACITY: usize = 8 << 20;

impl Walker {
    /// Decode `root` and all its deltas, depth first. Returns the objects
    /// that could not be decoded (a failed base takes its deltas along).
    fn walk(
        &mut self,
        pack: &Layout,
        kind: Kind,
        root: u32,
        visit: &mut dyn FnMut(Visit<'_>),
    ) -> Vec<(ObjectId, String)> {
        let mut failed = Vec::new();
        self.stack.clear();
        self.stack.push((root, NO_BASE));
        while let Some((i, base)) = self.stack.pop() {
            // The last delta of a base takes the base's level: the base is
            // no longer needed once it is applied.
            let level = match base {
                NO_BASE => 0,
                b if self.stack.last().map(|t| t.1) != Some(b) => b,
                b => b + 1,
            };
            if self.levels.len() <= level {
                self.levels.resize_with(level + 1, Vec::new);
            }
            let node = pack.nodes[i as usize];
            let res = if base == NO_BASE {
                let mut out = std::mem::take(&mut self.levels[0]);
                let r = self.inflate(pack, &node, &mut out);
                self.levels[0] = out;
                self.fresh.clear();
                self.fresh.push(0..self.levels[0].len());
                self.copied.clear();
                r
            } else {
                let mut delta = std::mem::take(&mut self.delta);
                let r = self.inflate(pack, &node, &mut delta).and_then(|()| {
                    let out = (&mut self.spare, &mut self.fresh, &mut self.copied);
                    apply_delta(&self.levels[base], &delta, out)
                });
                self.delta = delta;
                if r.is_ok() {
                    std::mem::swap(&mut self.levels[level], &mut self.spare);
                }
                r
            };
            match res {
                Ok(()) => {
                    #[cfg(test)]
                    super::panic_on_marker(&self.levels[level]);
                    visit(Visit {
                        id: pack.pack.index.oid_at_index(node.index),
                        data: &self.levels[level],
                        fresh: &self.fresh,
                        copied: &self.copied,
                        level,
                        base: (base != NO_BASE).then_some(base),
                    });
                    self.stack
                        .extend(pack.children(i).iter().map(|&c| (c, level)));
                }
                Err(message) => {
                    let own = pack.pack.index.oid_at_index(node.index);
                    let mut lost = vec![i];
                    while let Some(l) = lost.pop() {
                        let id = pack.pack.index.oid_at_index(pack.nodes[l as usize].index);
                        let why = if l == i {
                            message.clone()
                        } else {
                            format!("its delta base {own} cannot be decoded")
                        };
                        failed.push((
                            id.to_owned(),
                            format!("{kind} in {}: {why}", pack.pack.data.display()),
                        ));
                        lost.extend_from_slice(pack.children(l));
                    }
                }
            }
        }
        for buf in self
            .levels
            .iter_mut()
            .chain([&mut self.spare, &mut self.delta])
        {
            if buf.capacity() > KEEP_CAPACITY {
                *buf = Vec::new();
            }
        }
        failed
    }

    /// Inflate a node's data into `out`.
    fn inflate(&mut self, pack: &Layout, node: &Node, out: &mut Vec<u8>) -> Result<(), String> {
        let len = node
            .end
            .checked_sub(node.data)
            .ok_or("entry overlaps the next one")? as usize;
        self.compressed.resize(len, 0);
        read_at(&pack.file, &mut self.compressed, node.data).map_err(|e| e.to_string())?;
        let size = usize::try_from(node.size).map_err(|_| "object too large")?;
        out.clear();
        out.resize(size, 0);
        let (got, code) =
            zlib_rs::decompress_slice(out, &self.compressed, zlib_rs::InflateConfig::default());
        if code != zlib_rs::ReturnCode::Ok || got.len() != size {
            return Err(format!(
                "cannot inflate the entry at offset {} ({code:?})",
                node.offset
            ));
        }
        Ok(())
    }
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    while !buf.is_empty() {
        match std::os::windows::fs::FileExt::seek_read(file, buf, offset)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

enum Base {
    None,
    /// Distance back from the entry.
    Offset(u64),
    Id(ObjectId),
}

struct Header {
    kind: u8,
    size: u64,
    len: usize,
    base: Base,
}

/// Parse an entry header: type and inflated size, then the delta base.
fn parse_header(b: &[u8], hash_len: usize) -> Option<Header> {
    let mut c = *b.first()?;
    let kind = (c >> 4) & 7;
    let mut size = u64::from(c & 15);
    let (mut i, mut shift) = (1, 4);
    while c & 0x80 != 0 {
        c = *b.get(i)?;
        i += 1;
        if shift > 57 {
            return None;
        }
        size |= u64::from(c & 0x7f) << shift;
        shift += 7;
    }
    let base = match kind {
        OFS_DELTA => {
            c = *b.get(i)?;
            i += 1;
            let mut back = u64::from(c & 0x7f);
            while c & 0x80 != 0 {
                c = *b.get(i)?;
                i += 1;
                back = back.checked_add(1)?.checked_mul(128)? | u64::from(c & 0x7f);
            }
            Base::Offset(back)
        }
        REF_DELTA => {
            let id = ObjectId::try_from(b.get(i..i + hash_len)?).ok()?;
            i += hash_len;
            Base::Id(id)
        }
        1..=4 => Base::None,
        _ => return None,
    };
    Some(Header {
        kind,
        size,
        len: i,
        base,
    })
}

/// A little-endian base-128 size at the start of a delta.
fn delta_size(d: &[u8], pos: &mut usize) -> Result<usize, String> {
    let (mut v, mut shift) = (0usize, 0);
    loop {
        let c = *d.get(*pos).ok_or("truncated delta")?;
        *pos += 1;
        if shift > 56 {
            return Err("delta size overflows".into());
        }
        v |= usize::from(c & 0x7f) << shift;
        shift += 7;
        if c & 0x80 == 0 {
            return Ok(v);
        }
    }
}

/// Apply git delta `delta` to `base` into `out`; `fresh` receives the
/// ranges of `out` the delta inserted and `copied` those it copied
/// (adjacent ones merged).
pub(crate) fn apply_delta(
    base: &[u8],
    delta: &[u8],
    (out, fresh, copied): (&mut Vec<u8>, &mut Vec<Range<usize>>, &mut Vec<Copied>),
) -> Result<(), String> {
    let mut pos = 0;
    if delta_size(delta, &mut pos)? != base.len() {
        return Err("delta does not fit its base".into());
    }
    let size = delta_size(delta, &mut pos)?;
    out.clear();
    out.reserve(size);
    fresh.clear();
    copied.clear();
    while pos < delta.len() {
        let op = delta[pos];
        pos += 1;
        if op & 0x80 != 0 {
            let mut arg = [0u32; 2];
            for (bit, (slot, shift)) in [(0, 0), (0, 8), (0, 16), (0, 24), (1, 0), (1, 8), (1, 16)]
                .into_iter()
                .enumerate()
            {
                if op & (1 << bit) != 0 {
                    let b = *delta.get(pos).ok_or("truncated delta")?;
                    pos += 1;
                    arg[slot] |= u32::from(b) << shift;
                }
            }
            let (from, mut len) = (arg[0] as usize, arg[1] as usize);
            if len == 0 {
                len = 0x10000;
            }
            let src = base
                .get(from..from.checked_add(len).ok_or("bad delta copy")?)
                .ok_or("delta copies past the end of its base")?;
            let to = out.len();
            match copied.last_mut() {
                Some(c) if c.to + c.len == to && c.from + c.len == from => c.len += len,
                _ => copied.push(Copied { to, from, len }),
            }
            out.extend_from_slice(src);
        } else if op != 0 {
            let n = usize::from(op);
            let src = delta.get(pos..pos + n).ok_or("truncated delta")?;
            pos += n;
            let at = out.len();
            match fresh.last_mut() {
                Some(last) if last.end == at => last.end = at + n,
                _ => fresh.push(at..at + n),
            }
            out.extend_from_slice(src);
        } else {
            return Err("reserved delta opcode 0".into());
        }
        if out.len() > size {
            return Err("delta writes past its declared size".into());
        }
    }
    if out.len() != size {
        return Err("delta result is shorter than declared".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_copy_and_insert_and_report_inserted_ranges() {
        let base = b"0123456789abcdef";
        // size 16 -> 11: copy 4 bytes from 2, insert "XY", copy 5 from 10.
        // Then copies of 2 bytes from 14 and 1 from 0: a new copied range
        // each (not continuing the previous one), and 3 from 1, which
        // continues the last and is merged into it.
        let delta = [
            16, 17, 0x91, 2, 4, 2, b'X', b'Y', 0x91, 10, 5, 0x91, 14, 2, 0x90, 1, 0x91, 1, 3,
        ];
        let (mut out, mut fresh, mut copied) = (Vec::new(), Vec::new(), Vec::new());
        apply_delta(base, &delta, (&mut out, &mut fresh, &mut copied)).unwrap();
        assert_eq!(out, b"2345XYabcdeef0123");
        assert_eq!((fresh.len(), fresh.first()), (1, Some(&(4..6))));
        let c = |to, from, len| Copied { to, from, len };
        assert_eq!(copied, [c(0, 2, 4), c(6, 10, 5), c(11, 14, 2), c(13, 0, 4)]);
    }

    #[test]
    fn broken_deltas_are_errors_not_panics() {
        let base = b"0123456789";
        let (mut out, mut fresh, mut copied) = (Vec::new(), Vec::new(), Vec::new());
        for delta in [
            &[11u8, 4, 0x91, 0, 4][..], // wrong base size
            &[10, 4, 0x91, 8, 4],       // copy past the base's end
            &[10, 4, 5, b'a'],          // insert past the delta's end
            &[10, 4, 0],                // reserved opcode
            &[10, 9, 0x91, 0, 4],       // shorter than declared
            &[10, 2, 0x91, 0, 4],       // longer than declared
            &[10],                      // no result size
            &[
                0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 1,
            ],
        ] {
            assert!(
                apply_delta(base, delta, (&mut out, &mut fresh, &mut copied)).is_err(),
                "{delta:?}"
            );
        }
    }

    #[test]
    fn entry_headers_give_type_size_and_base() {
        // A blob of 300 bytes: type 3, size 300 = 0b1_0010_1100.
        let h = parse_header(&[0x80 | 0x30 | 0xc, 0x12], 20).unwrap();
        assert_eq!((h.kind, h.size, h.len), (3, 300, 2));
        // An offset delta 200 bytes back: 200 = ((0 + 1) << 7) | 72.
        let h = parse_header(&[0x60 | 5, 0x80, 72], 20).unwrap();
        assert!(matches!(h.base, Base::Offset(200)));
        assert_eq!((h.kind, h.size, h.len), (OFS_DELTA, 5, 3));
        assert!(parse_header(&[0x50], 20).is_none(), "type 5 is reserved");
        assert!(parse_header(&[0xb0], 20).is_none(), "truncated size");
        assert!(
            parse_header(&[0x70, 1, 2], 20).is_none(),
            "truncated base id"
        );
    }
}
