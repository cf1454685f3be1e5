//! Raw git trees, compared without decoding them into lists.
//!
//! A history scan compares every commit's trees with its parents'. Most
//! entries of a tree are byte-for-byte the same as in the parent (same mode,
//! name and id), so entries are walked in place over the object's bytes and
//! an entry identical to the parent's at the cursor is passed over with one
//! comparison. After a change, a single-parent comparison checks whether the
//! rest of both trees is identical and stops there.

use std::cmp::Ordering;

/// What a tree entry points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum EntryKind {
    Tree,
    /// A file or a symlink: content to scan.
    Blob,
    /// A submodule's commit, which lives in another repository.
    Gitlink,
}

/// One entry, borrowed from its tree's bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawEntry<'a> {
    pub name: &'a [u8],
    pub id: &'a [u8],
    pub kind: EntryKind,
    /// The whole encoded entry: identical bytes mean an identical entry.
    pub bytes: &'a [u8],
}

/// Parse the entry starting at `pos` of a tree whose ids are `hash_len`
/// bytes long.
pub(crate) fn entry_at(data: &[u8], pos: usize, hash_len: usize) -> Result<RawEntry<'_>, String> {
    let rest = &data[pos..];
    let corrupt = || format!("corrupt tree entry at byte {pos}");
    // Modes are five or six octal digits and names are short: plain loops
    // beat memchr's set-up here (this runs once per entry of every tree).
    let space = rest
        .iter()
        .take(8)
        .position(|&b| b == b' ')
        .ok_or_else(corrupt)?;
    let nul = space
        + 1
        + rest[space + 1..]
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(corrupt)?;
    let end = nul + 1 + hash_len;
    if end > rest.len() || space == 0 || nul == space + 1 {
        return Err(corrupt());
    }
    let mut mode = 0u32;
    for &b in &rest[..space] {
        if !(b'0'..=b'7').contains(&b) {
            return Err(corrupt());
        }
        mode = (mode << 3) | u32::from(b - b'0');
    }
    let kind = match mode & 0o170000 {
        0o040000 => EntryKind::Tree,
        0o160000 => EntryKind::Gitlink,
        _ => EntryKind::Blob,
    };
    Ok(RawEntry {
        name: &rest[space + 1..nul],
        id: &rest[nul + 1..end],
        kind,
        bytes: &rest[..end],
    })
}

/// Git's tree order: names compare bytewise, a tree's name as if it ended
/// with '/'. Entries of a tree are stored in this order.
fn git_order(a: &RawEntry, b: &RawEntry) -> Ordering {
    let n = a.name.len().min(b.name.len());
    match a.name[..n].cmp(&b.name[..n]) {
        Ordering::Equal => {}
        o => return o,
    }
    let next = |e: &RawEntry| match e.name.get(n) {
        Some(&c) => c,
        None if e.kind == EntryKind::Tree => b'/',
        None => 0,
    };
    next(a).cmp(&next(b))
}

/// An entry of the new tree that no parent has identically, with what each
/// parent has under the same name and kind (`None`: nothing).
pub(crate) struct Change<'a, 'o> {
    pub entry: RawEntry<'a>,
    pub in_parents: &'o [Option<&'a [u8]>],
}

/// Call `on_change` for every entry of `new` that differs from the entry at
/// the same path in every one of `olds` (all trees' ids `hash_len` long).
pub(crate) fn changes<'a>(
    new: &'a [u8],
    olds: &[&'a [u8]],
    hash_len: usize,
    mut on_change: impl FnMut(Change<'a, '_>) -> Result<(), String>,
) -> Result<(), String> {
    let mut cursors = vec![0usize; olds.len()];
    let mut same: Vec<Option<&'a [u8]>> = Vec::with_capacity(olds.len());
    let mut pos = 0;
    'entries: while pos < new.len() {
        let e = entry_at(new, pos, hash_len)?;
        pos += e.bytes.len();
        // The common case: a parent has this very entry at its cursor.
        for (old, cur) in olds.iter().zip(cursors.iter_mut()) {
            if old[*cur..].starts_with(e.bytes) {
                *cur += e.bytes.len();
                continue 'entries;
            }
        }
        same.clear();
        for (old, cur) in olds.iter().zip(cursors.iter_mut()) {
            let mut hit = None;
            while *cur < old.len() {
                let o = entry_at(old, *cur, hash_len)?;
                match git_order(&o, &e) {
                    Ordering::Less => *cur += o.bytes.len(),
                    Ordering::Equal => {
                        if o.name == e.name && o.kind == e.kind {
                            hit = Some(o.id);
                        }
                        *cur += o.bytes.len();
                        break;
                    }
                    Ordering::Greater => break,
                }
            }
            same.push(hit);
        }
        if same.contains(&Some(e.id)) {
            continue;
        }
        on_change(Change {
            entry: e,
            in_parents: &same,
        })?;
        // One parent whose remaining entries are all identical: done.
        if let [old] = olds {
            if new[pos..] == old[cursors[0]..] {
                break;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: usize = 20;

    fn tree(entries: &[(&str, &str, u8)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (mode, name, id) in entries {
            out.extend_from_slice(mode.as_bytes());
            out.push(b' ');
            out.extend_from_slice(name.as_bytes());
            out.push(0);
            out.extend_from_slice(&[*id; H]);
        }
        out
    }

    fn changed(new: &[u8], olds: &[&[u8]]) -> Vec<(String, Vec<Option<u8>>)> {
        let mut out = Vec::new();
        changes(new, olds, H, |c| {
            out.push((
                String::from_utf8_lossy(c.entry.name).into_owned(),
                c.in_parents.iter().map(|p| p.map(|id| id[0])).collect(),
            ));
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn only_entries_that_differ_from_every_parent_are_changes() {
        let old = tree(&[
            ("100644", "a", 1),
            ("40000", "dir", 2),
            ("100644", "m", 3),
            ("100644", "z", 4),
        ]);
        let new = tree(&[
            ("100644", "a", 1),
            ("100755", "b", 9),
            ("40000", "dir", 7),
            ("100644", "m", 3),
            ("100644", "z", 5),
        ]);
        assert_eq!(
            changed(&new, &[&old]),
            [
                ("b".into(), vec![None]),
                ("dir".into(), vec![Some(2)]),
                ("z".into(), vec![Some(4)]),
            ]
        );
        assert!(changed(&new, &[&new]).is_empty());
        assert_eq!(changed(&new, &[]).len(), 5);
    }

    #[test]
    fn a_merge_keeps_what_either_parent_had() {
        let left = tree(&[("100644", "a", 1), ("100644", "b", 2)]);
        let right = tree(&[("100644", "a", 3), ("100644", "b", 4)]);
        let merged = tree(&[("100644", "a", 3), ("100644", "b", 5)]);
        assert_eq!(
            changed(&merged, &[&left, &right]),
            [("b".into(), vec![Some(2), Some(4)])]
        );
    }

    #[test]
    fn a_mode_change_alone_is_not_new_content_but_a_kind_change_is() {
        let old = tree(&[("100644", "run", 1), ("100644", "x", 2)]);
        let exec = tree(&[("100755", "run", 1), ("100644", "x", 2)]);
        assert!(changed(&exec, &[&old]).is_empty());
        // "x" became a directory: the tree sorts as "x/", after a file "x".
        let dir = tree(&[("100644", "run", 1), ("40000", "x", 2)]);
        assert_eq!(changed(&dir, &[&old]), [("x".into(), vec![None])]);
    }

    #[test]
    fn trees_sort_as_if_their_name_ended_with_a_slash() {
        // "a-b" < "a/" (tree "a") < "a0": a cursor must not skip past "a".
        let old = tree(&[("100644", "a-b", 1), ("40000", "a", 2), ("100644", "a0", 3)]);
        let new = tree(&[("100644", "a-b", 1), ("40000", "a", 4), ("100644", "a0", 3)]);
        assert_eq!(changed(&new, &[&old]), [("a".into(), vec![Some(2)])]);
    }

    #[test]
    fn corrupt_trees_are_errors_not_panics() {
        let good = tree(&[("100644", "a", 1)]);
        for bad in [
            &good[..good.len() - 1],
            b"100644 a".as_slice(),
            b"10x644 a\0aaaaaaaaaaaaaaaaaaaa",
            b" a\0aaaaaaaaaaaaaaaaaaaa",
        ] {
            assert!(changes(bad, &[], H, |_| Ok(())).is_err(), "{bad:?}");
            assert!(changes(&good, &[bad], H, |_| Ok(())).is_err(), "{bad:?}");
        }
    }
}
