//! Content a walk has already scanned. A file whose bytes equal those of a
//! file scanned before (a vendored copy, release snapshots side by side, a
//! fixture repeated under several names) takes that file's matches instead
//! of being scanned again, as Nosey Parker skips blobs it has seen. The
//! index holds, per content, a 128-bit hash, the first file's path, and its
//! matches with the path answers they depend on
//! ([`Engine::scan_noting_paths`](crate::engine::Engine::scan_noting_paths)).
//! A file is only taken for a copy once its bytes compare equal with the
//! first file's, read again: a hash collision, or a file changed since,
//! costs a scan, never a finding.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rustc_hash::FxHashMap;
use twox_hash::XxHash3_128;

use crate::engine::RawMatch;

/// Files shorter than this are scanned whatever: reading the first copy
/// again would cost about what scanning them does.
pub(crate) const MIN_LEN: usize = 4096;
/// Contents remembered at most (about 100 bytes each); past this, new
/// content is scanned and not remembered.
const MAX_ENTRIES: usize = 1 << 20;
/// Path answers remembered at most per content.
const MAX_VARIANTS: usize = 4;

/// The contents scanned so far in one walk, shared by its threads.
#[derive(Default)]
pub(crate) struct SeenContent {
    map: Mutex<FxHashMap<u128, Entry>>,
}

struct Entry {
    path: PathBuf,
    variants: Vec<Variant>,
}

/// The matches of one content, for the paths that get the answers
/// `asked` notes.
#[derive(Clone)]
pub(crate) struct Variant {
    pub asked: Vec<(usize, bool)>,
    pub matches: Vec<RawMatch>,
}

/// What the index knows of a content: the first file that had it, and
/// its matches under each set of path answers met so far.
pub(crate) struct Known {
    pub first: PathBuf,
    pub variants: Vec<Variant>,
}

impl SeenContent {
    /// The index key of `content`.
    pub fn key(content: &[u8]) -> u128 {
        XxHash3_128::oneshot(content)
    }

    pub fn get(&self, key: u128) -> Option<Known> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&key).map(|e| Known {
            first: e.path.clone(),
            variants: e.variants.clone(),
        })
    }

    /// Remember the matches of the content with `key`, first met at `path`
    /// (an entry already there keeps its first path).
    pub fn remember(&self, key: u128, path: &Path, variant: Variant) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = map.get_mut(&key) {
            if e.variants.len() < MAX_VARIANTS {
                e.variants.push(variant);
            }
        } else if map.len() < MAX_ENTRIES {
            map.insert(
                key,
                Entry {
                    path: path.to_path_buf(),
                    variants: vec![variant],
                },
            );
        }
    }
}

/// Whether the file at `path` holds exactly `content`, read a block at a
/// time into `block` (no more memory than that, whatever the size).
pub(crate) fn holds(path: &Path, content: &[u8], block: &mut Vec<u8>) -> bool {
    let Ok(mut file) = File::open(path) else {
        return false;
    };
    if file
        .metadata()
        .map_or(true, |m| m.len() != content.len() as u64)
    {
        return false;
    }
    block.resize(64 * 1024, 0);
    let mut rest = content;
    loop {
        match file.read(block) {
            Ok(0) => return rest.is_empty(),
            Ok(n) if n <= rest.len() && block[..n] == rest[..n] => rest = &rest[n..],
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_holds_its_own_bytes_and_no_others() {
        let dir = tempfile::tempdir().unwrap();
        let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let path = dir.path().join("f");
        std::fs::write(&path, &content).unwrap();
        let mut block = Vec::new();
        assert!(holds(&path, &content, &mut block));
        let mut other = content.clone();
        other[150_000] ^= 1;
        assert!(!holds(&path, &other, &mut block));
        assert!(!holds(&path, &content[..199_999], &mut block));
        assert!(!holds(&dir.path().join("missing"), &content, &mut block));
    }

    #[test]
    fn the_first_path_stays_and_variants_are_bounded() {
        let seen = SeenContent::default();
        let v = |r| Variant {
            asked: vec![(r, true)],
            matches: Vec::new(),
        };
        assert!(seen.get(7).is_none());
        for r in 0..10 {
            seen.remember(7, Path::new(&format!("p{r}")), v(r));
        }
        let known = seen.get(7).unwrap();
        assert_eq!(known.first, Path::new("p0"));
        assert_eq!(known.variants.len(), MAX_VARIANTS);
    }
}
