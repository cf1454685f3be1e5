//! The keyword prefilter: every occurrence of every keyword, ASCII
//! case-insensitive, overlapping — the same set an Aho-Corasick overlapping
//! search reports, found faster on text where keywords are rare.
//!
//! A DFA walks one table lookup per byte and tops out around 470 MB/s per
//! core here, whatever its size. Most bytes of a source tree start no
//! keyword, so this searcher first asks a cheaper question of each position:
//! does the hash of its next three (case-folded) bytes hit a 16 KiB bit table
//! (large enough that common trigrams rarely collide, small enough for L1)?
//! Each keyword enters the table by its rarest three-byte run (`ssw` for
//! `password`, not the ubiquitous `pas`), as Hyperscan's FDR picks its
//! fingerprints, so common code rarely reaches the second stage; how rare
//! a run is comes from a table of run frequencies in source code. Eight bytes
//! are loaded at once and six positions hashed from them. A position that
//! hits asks a second table about its four bytes (a run common in some
//! code, `erg` of `codeberg` in every `merge`, stops there), and only then
//! is it verified, byte by byte, against the keywords of that bucket.
//! Keywords of two bytes enter the table once per possible third byte; a
//! single-byte keyword would set every bit, so sets that have one use
//! Aho-Corasick instead.

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

const TABLE_BITS: u32 = 17;
const TABLE_WORDS: usize = 1 << (TABLE_BITS - 6);

/// One keyword occurrence: the index of the keyword and its span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Hit {
    pub pattern: usize,
    pub start: usize,
    pub end: usize,
}

pub enum KeywordSearcher {
    Fingerprint(Fingerprint),
    Automaton(AhoCorasick),
}

pub struct Fingerprint {
    /// Lowercased keywords.
    patterns: Vec<Box<[u8]>>,
    /// Ids of the keywords shorter than three bytes.
    short: Box<[u32]>,
    /// Offset of each keyword's fingerprint run within it.
    offsets_in_pattern: Vec<usize>,
    /// A fixed size, so that a probe needs no bounds check.
    table: Box<[u64; TABLE_WORDS]>,
    /// The second question asked of a position that hit `table` (see
    /// [`Fingerprint::confirm`]), in a table of the same size.
    second: Box<[u64; TABLE_WORDS]>,
    /// `(hash, keyword)` pairs sorted by hash, indexed by groups of
    /// hashes: group `g` (hashes `g << GROUP_SHIFT` and up) holds
    /// `entries[groups[g]..groups[g + 1]]`. A group index, not one slot
    /// per hash, stays small enough for the cache (and to build at
    /// start-up), and a group holds few keywords.
    groups: Box<[u32]>,
    entries: Box<[(u32, u32)]>,
}

/// Hashes per group of [`Fingerprint::groups`].
const GROUP_SHIFT: u32 = 4;

/// The case fold used for hashing: `| 0x20` maps each ASCII letter to its
/// lowercase form and leaves equal bytes equal, so a case-insensitive
/// occurrence always hashes like its keyword. (It also merges a few
/// punctuation pairs, which only costs a verification.)
#[inline(always)]
fn fold3(x: u32) -> u32 {
    (x & 0x00FF_FFFF) | 0x0020_2020
}

/// A rough frequency of a (folded) byte in source code and prose: the
/// fingerprint of a keyword is its run of three bytes with the lowest sum.
fn commonness(b: u8) -> u32 {
    match b | 0x20 {
        b' ' | b'e' => 100,
        b't' | b'a' | b'o' | b'i' | b'n' | b's' | b'r' => 60,
        b'l' | b'c' | b'd' | b'u' | b'h' | b'm' | b'p' => 35,
        b'f' | b'g' | b'b' | b'y' | b'w' | b'(' | b')' | b'.' | b',' | b';' | b'=' | b'\n' => 20,
        b'"' | b'\'' | b'/' | b'-' | b':' | b'v' | b'k' | b'0' | b'1' | b'2' => 12,
        b'x' | b'*' | b'{' | b'}' | b'[' | b']' | b'<' | b'>' | b'3'..=b'9' => 6,
        _ => 2,
    }
}

/// The 4096 (folded) three-byte runs most frequent in source code, each
/// with 4·log2 of its count, as `hex weight` lines sorted by run; counted
/// over a general corpus (the Python standard library and crates.io
/// sources), never over a benchmark input. `benches/trigrams.py` rebuilds
/// it.
static COMMON_RUNS: &str = include_str!("trigrams.txt");

/// How common the folded run `gram` (first byte lowest) is in source code:
/// 0 for a run outside the table, the rarest.
fn run_weight(gram: u32) -> u8 {
    static TABLE: std::sync::OnceLock<Vec<(u32, u8)>> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut runs: Vec<(u32, u8)> = COMMON_RUNS
            .lines()
            .filter_map(|line| {
                let (hex, weight) = line.split_once(' ')?;
                let b = u32::from_str_radix(hex, 16).ok()?;
                let run = (b >> 16) | (b & 0xFF00) | ((b & 0xFF) << 16);
                Some((run, weight.parse().ok()?))
            })
            .collect();
        runs.sort_unstable();
        runs
    });
    table
        .binary_search_by_key(&gram, |&(run, _)| run)
        .map_or(0, |i| table[i].1)
}

/// Offset of the rarest three-byte run of `p` (at least 3 bytes long): by
/// how often the run occurs in source code, then by how common its bytes
/// are. (Summing byte frequencies alone would enter `gitea` by `git`.)
fn fingerprint_offset(p: &[u8]) -> usize {
    (0..=p.len() - 3)
        .min_by_key(|&i| {
            let run = &p[i..i + 3];
            let gram = fold3(u32::from_le_bytes([run[0], run[1], run[2], 0]));
            (
                run_weight(gram),
                run.iter().map(|&b| commonness(b)).sum::<u32>(),
            )
        })
        .unwrap_or(0)
}

#[inline(always)]
fn hash(x: u32) -> u32 {
    x.wrapping_mul(0x9E37_79B1) >> (32 - TABLE_BITS)
}

/// The keys of [`Fingerprint::second`]: the four (folded) bytes from a
/// keyword's run, or from the byte before it when the run ends the
/// keyword, hashed apart; and, for a keyword too short to have four bytes
/// around its run, the run's own hash.
#[inline(always)]
fn second_key(x: u32, kind: SecondKey) -> u32 {
    let salt = match kind {
        SecondKey::RunOnward => 0,
        SecondKey::ByteBefore => 0x5BD1_E995,
        SecondKey::Short => 0x27D4_EB2F,
    };
    (x ^ salt).wrapping_mul(0x85EB_CA6B) >> (32 - TABLE_BITS)
}

#[derive(Clone, Copy)]
enum SecondKey {
    RunOnward,
    ByteBefore,
    Short,
}

fn set_bit(table: &mut [u64; TABLE_WORDS], h: u32) {
    table[(h >> 6) as usize] |= 1 << (h & 63);
}

fn has_bit(table: &[u64; TABLE_WORDS], h: u32) -> bool {
    table[(h >> 6) as usize] & (1 << (h & 63)) != 0
}

/// Four bytes from `hay[at..]` folded as [`fold3`] folds three, when
/// there are four.
#[inline(always)]
fn folded4(hay: &[u8], at: usize) -> Option<u32> {
    let b = hay.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) | 0x2020_2020)
}

impl KeywordSearcher {
    /// Build a searcher over `patterns` (already lowercase, non-empty).
    pub fn new(patterns: &[String]) -> Result<KeywordSearcher, aho_corasick::BuildError> {
        if patterns.iter().any(|p| p.len() < 2) {
            return AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .kind(Some(AhoCorasickKind::DFA))
                .build(patterns)
                .map(KeywordSearcher::Automaton);
        }
        let mut table = Box::new([0u64; TABLE_WORDS]);
        let mut second = Box::new([0u64; TABLE_WORDS]);
        let mut entries: Vec<(u32, u32)> = Vec::new();
        let mut add = |gram: u32, id: u32| {
            let h = hash(fold3(gram));
            set_bit(&mut table, h);
            entries.push((h, id));
            h
        };
        let mut offsets_in_pattern = Vec::with_capacity(patterns.len());
        for (id, p) in patterns.iter().enumerate() {
            let b = p.as_bytes();
            if b.len() >= 3 {
                let o = fingerprint_offset(b);
                offsets_in_pattern.push(o);
                let h = add(u32::from_le_bytes([b[o], b[o + 1], b[o + 2], 0]), id as u32);
                let (at, kind) = match b.len() {
                    3 => {
                        set_bit(&mut second, second_key(h, SecondKey::Short));
                        continue;
                    }
                    len if o + 4 <= len => (o, SecondKey::RunOnward),
                    _ => (o - 1, SecondKey::ByteBefore),
                };
                let four = folded4(b, at).unwrap_or_default();
                set_bit(&mut second, second_key(four, kind));
            } else {
                offsets_in_pattern.push(0);
                for third in 0..=255u8 {
                    let h = add(u32::from_le_bytes([b[0], b[1], third, 0]), id as u32);
                    set_bit(&mut second, second_key(h, SecondKey::Short));
                }
            }
        }
        entries.sort_unstable();
        entries.dedup();
        let mut groups = vec![0u32; (1 << (TABLE_BITS - GROUP_SHIFT)) + 1].into_boxed_slice();
        for &(h, _) in &entries {
            groups[(h >> GROUP_SHIFT) as usize + 1] += 1;
        }
        for g in 0..groups.len() - 1 {
            groups[g + 1] += groups[g];
        }
        Ok(KeywordSearcher::Fingerprint(Fingerprint {
            short: (0..patterns.len() as u32)
                .filter(|&i| patterns[i as usize].len() < 3)
                .collect(),
            groups,
            entries: entries.into_boxed_slice(),
            offsets_in_pattern,
            patterns: patterns
                .iter()
                .map(|p| p.as_bytes().to_ascii_lowercase().into_boxed_slice())
                .collect(),
            table,
            second,
        }))
    }

    /// Call `f` for every keyword occurrence in `hay`.
    pub fn for_each_hit(&self, hay: &[u8], mut f: impl FnMut(Hit)) {
        match self {
            KeywordSearcher::Automaton(ac) => {
                for m in ac.find_overlapping_iter(hay) {
                    f(Hit {
                        pattern: m.pattern().as_usize(),
                        start: m.start(),
                        end: m.end(),
                    });
                }
            }
            KeywordSearcher::Fingerprint(fp) => fp.for_each_hit(hay, f),
        }
    }
}

impl Fingerprint {
    /// Probe the three bytes at the bottom of `gram`, already folded
    /// ([`fold3`] or a whole word `| 0x2020…`).
    #[inline(always)]
    fn probe(&self, gram: u32) -> Option<u32> {
        let h = hash(gram & 0x00FF_FFFF);
        (self.table[(h >> 6) as usize] & (1 << (h & 63)) != 0).then_some(h)
    }

    /// Whether the position `at`, whose run hit the table with hash `h`,
    /// may start a keyword's run: the four bytes from it or from the byte
    /// before it are a keyword's, or a keyword has no fourth byte there.
    /// A run common in some code (`erg` of `codeberg` in every `merge`)
    /// and the table's chance collisions stop here, before the keywords
    /// are looked up and compared.
    #[inline(always)]
    fn confirm(&self, hay: &[u8], at: usize, h: u32) -> bool {
        let key = |at, kind| folded4(hay, at).map(|x| second_key(x, kind));
        has_bit(&self.second, second_key(h, SecondKey::Short))
            || key(at, SecondKey::RunOnward).is_none_or(|k| has_bit(&self.second, k))
            || at
                .checked_sub(1)
                .and_then(|at| key(at, SecondKey::ByteBefore))
                .is_some_and(|k| has_bit(&self.second, k))
    }

    #[cold]
    fn verify(&self, hay: &[u8], at: usize, h: u32, f: &mut impl FnMut(Hit)) {
        if !self.confirm(hay, at, h) {
            return;
        }
        let g = (h >> GROUP_SHIFT) as usize;
        let group = &self.entries[self.groups[g] as usize..self.groups[g + 1] as usize];
        for &(_, id) in group.iter().filter(|e| e.0 == h) {
            let p = &self.patterns[id as usize];
            let Some(start) = at.checked_sub(self.offsets_in_pattern[id as usize]) else {
                continue;
            };
            let end = start + p.len();
            if end <= hay.len() && hay[start..end].eq_ignore_ascii_case(p) {
                f(Hit {
                    pattern: id as usize,
                    start,
                    end,
                });
            }
        }
    }

    fn for_each_hit(&self, hay: &[u8], mut f: impl FnMut(Hit)) {
        let mut i = 0;
        // Six positions per 8-byte load: position i+k needs bytes up to i+k+2.
        while i + 8 <= hay.len() {
            // Folded once for the six positions.
            let w = u64::from_le_bytes(hay[i..i + 8].try_into().unwrap()) | 0x2020_2020_2020_2020;
            for k in 0..6 {
                if let Some(h) = self.probe((w >> (8 * k)) as u32) {
                    self.verify(hay, i + k, h, &mut f);
                }
            }
            i += 6;
        }
        // The tail, where fewer than three bytes may remain: pad with a byte
        // no keyword needs (verification checks the real length anyway).
        while i < hay.len() {
            let b = |j: usize| hay.get(j).copied().unwrap_or(0);
            let gram = u32::from_le_bytes([b(i), b(i + 1), b(i + 2), 0]);
            let padded = i + 2 >= hay.len();
            if padded {
                // A two-byte keyword ending at the last byte has no third
                // byte to hash; check the short keywords directly.
                self.verify_short_tail(hay, i, &mut f);
            } else if let Some(h) = self.probe(fold3(gram)) {
                self.verify(hay, i, h, &mut f);
            }
            i += 1;
        }
    }

    fn verify_short_tail(&self, hay: &[u8], at: usize, f: &mut impl FnMut(Hit)) {
        for &id in self.short.iter() {
            let id = id as usize;
            let p = &self.patterns[id];
            let end = at + p.len();
            if end <= hay.len() && hay[at..end].eq_ignore_ascii_case(p) {
                f(Hit {
                    pattern: id,
                    start: at,
                    end,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference(patterns: &[String], hay: &[u8]) -> Vec<Hit> {
        let ac = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(patterns)
            .unwrap();
        let mut v: Vec<Hit> = ac
            .find_overlapping_iter(hay)
            .map(|m| Hit {
                pattern: m.pattern().as_usize(),
                start: m.start(),
                end: m.end(),
            })
            .collect();
        v.sort();
        v
    }

    fn fingerprint(patterns: &[String], hay: &[u8]) -> Vec<Hit> {
        let s = KeywordSearcher::new(patterns).unwrap();
        assert!(matches!(s, KeywordSearcher::Fingerprint(_)));
        let mut v = Vec::new();
        s.for_each_hit(hay, |h| v.push(h));
        v.sort();
        v
    }

    #[test]
    fn finds_overlapping_case_insensitive_hits_and_tails() {
        let pats: Vec<String> = ["sk", "ghp_", "secret", "secret_key", "et_k", "key"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for hay in [
            &b"SECRET_KEY=x ghp_ sk"[..],
            b"sk",
            b"xsk",
            b"Sk",
            b"",
            b"s",
            b"secret_ke",
            b"aaaaaaaaaaaaaaaaaaaaaaasecret_key",
        ] {
            assert_eq!(fingerprint(&pats, hay), reference(&pats, hay), "{hay:?}");
        }
    }

    #[test]
    fn fingerprints_avoid_common_runs() {
        assert_eq!(fingerprint_offset(b"password"), 2); // "ssw"
        assert_eq!(fingerprint_offset(b"ghp_"), 1); // "hp_"

        // Rare letters do not make a rare run: "git" is in every
        // repository's scripts, "tea" far less often.
        assert_eq!(fingerprint_offset(b"gitea"), 2);
    }

    #[test]
    fn the_run_table_parses_and_weighs_common_runs_above_rare_ones() {
        let gram = |s: &[u8]| fold3(u32::from_le_bytes([s[0], s[1], s[2], 0]));
        assert_eq!(COMMON_RUNS.lines().count(), 4096);
        assert!(run_weight(gram(b"the")) > run_weight(gram(b"sec")));
        assert!(run_weight(gram(b"sec")) > 0);
        assert_eq!(run_weight(gram(b"hp_")), 0);
    }

    #[test]
    fn single_byte_keywords_fall_back_to_the_automaton() {
        let pats = vec!["x".to_string(), "key".to_string()];
        let s = KeywordSearcher::new(&pats).unwrap();
        assert!(matches!(s, KeywordSearcher::Automaton(_)));
        let mut v = Vec::new();
        s.for_each_hit(b"X key", |h| v.push(h));
        v.sort();
        assert_eq!(v, reference(&pats, b"X key"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn fingerprint_search_equals_aho_corasick(
            pats in proptest::collection::vec("[a-cA-C_:/.-]{2,6}", 1..12),
            hay in proptest::collection::vec(
                prop_oneof![Just(b'a'), Just(b'B'), Just(b'c'), Just(b'_'), Just(b':'), Just(b'/'), Just(0xff), any::<u8>()],
                0..200,
            ),
        ) {
            let pats: Vec<String> = pats.into_iter().map(|p| p.to_ascii_lowercase()).collect();
            prop_assert_eq!(fingerprint(&pats, &hay), reference(&pats, &hay));
        }
    }
}
