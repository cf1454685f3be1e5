//! Encoded text worth a second look: base64 (standard and URL-safe), hex,
//! percent-encoding and `\xNN`/`\uNNNN` escapes. A run of such text is
//! decoded when the result reads as text; the engine then scans what came
//! out (and decodes again, to a depth), reporting a finding there at the
//! encoded text with the chain of decodings that led to it.

use std::ops::Range;

use serde::{Deserialize, Serialize};

/// One decoding step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Base64,
    Hex,
    Percent,
    Escape,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Base64 => "base64",
            Encoding::Hex => "hex",
            Encoding::Percent => "percent",
            Encoding::Escape => "escape",
        }
    }
}

/// How deep and how much to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Decodings stacked at most (base64 inside base64 is two); 0 is off.
    pub depth: u8,
    /// Decoded bytes at most per input, all levels together.
    pub budget: usize,
}

impl Default for DecodeOptions {
    fn default() -> DecodeOptions {
        DecodeOptions {
            depth: 2,
            budget: 1 << 20,
        }
    }
}

/// How archives are opened (see `sources::archive`).
#[derive(Debug, Clone, Copy)]
pub struct ArchiveOptions {
    /// Archives opened inside each other at most (1: an archive's own
    /// members only); 0 leaves archives unopened, skipped as binary.
    pub depth: u8,
    /// Decompressed bytes read at most from one archive, the archives
    /// nested in it included: a bound on a bomb's cost, and on the memory
    /// a member takes.
    pub max_bytes: u64,
}

impl Default for ArchiveOptions {
    fn default() -> ArchiveOptions {
        ArchiveOptions {
            depth: 3,
            max_bytes: 256 << 20,
        }
    }
}

impl ArchiveOptions {
    /// Whether archives are opened at all.
    pub fn enabled(&self) -> bool {
        self.depth > 0
    }
}

/// A run of encoded text in a buffer, and its decoding.
#[derive(Debug)]
pub struct Decoded {
    pub span: Range<usize>,
    pub encoding: Encoding,
    pub text: Vec<u8>,
}

/// The shortest base64 run looked at: 12 bytes of text.
const MIN_BASE64: usize = 16;
/// The shortest hex run: 16 bytes of text.
const MIN_HEX: usize = 32;
/// Runs longer than this (embedded images, bundles) are left alone.
const MAX_RUN: usize = 256 * 1024;
/// Percent or backslash escapes a run needs before it is decoded.
const MIN_ESCAPES: usize = 2;

/// The bytes of a base64 (standard or URL-safe) or hex run.
static B64: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'-' || b == b'_';
        i += 1;
    }
    t
};

/// The encoded runs in `hay[range]` (a run may reach outside the range)
/// whose decoding reads as text, at most `budget` decoded bytes in all.
///
/// Most bytes of a source tree belong to no such run. The buffer is read
/// once, 64 bytes at a time, classified without branching on each byte
/// (SIMD where the target has it) into three masks: the base64/hex
/// alphabet, where a run shows as MIN_BASE64 consecutive ones; `=`, the
/// padding that tells short base64 from a word; and `%`/`\`, where
/// escapes may start.
pub fn decode_runs(hay: &[u8], range: Range<usize>, budget: &mut usize, out: &mut Vec<Decoded>) {
    let end = range.end.min(hay.len());
    if range.start >= end {
        return;
    }
    // `\n` only counts in text that holds a PEM block: looked for once,
    // when a `\n` is met.
    let mut pem_found = None;
    let mut pem = || {
        *pem_found.get_or_insert_with(|| {
            memchr::memmem::find(&hay[range.start..end], b"-----BEGIN").is_some()
        })
    };
    // A run across blocks is seen from the ones trailing the block before
    // (`carry`, which starts with the run the range begins in). A run ends
    // before a byte outside the alphabet, so the search resumes past each
    // run without finding it again; `=` and escapes resume past what was
    // decoded and past the blocks already read (a run across blocks moves
    // `w` back into the block it ends in, or past bytes that hold neither).
    let mut w = range.start;
    let mut carry = if B64[hay[w] as usize] {
        hay[..w]
            .iter()
            .rev()
            .take_while(|&&b| B64[b as usize])
            .count()
    } else {
        0
    };
    let (mut eq_from, mut esc_from) = (w, w);
    'blocks: while w < end && *budget > 0 {
        let block = &hay[w..hay.len().min(w + 64)];
        let masks = masks(block);
        let unread = |from: usize| {
            let (lo, hi) = (from.saturating_sub(w), end - w);
            let below_end = if hi >= 64 { !0 } else { (1u64 << hi) - 1 };
            if lo >= 64 {
                0
            } else {
                below_end & (!0u64 << lo)
            }
        };
        // Short base64 (a password in a Kubernetes Secret's `data:`),
        // told from a word by its padding. Most `=` in code follow a space
        // or an operator.
        let mut eq = masks.eq & unread(eq_from);
        while eq != 0 && *budget > 0 {
            let at = w + eq.trailing_zeros() as usize;
            eq &= eq - 1;
            if at < eq_from || at == 0 || !B64[hay[at - 1] as usize] {
                continue;
            }
            if let Some(d) = short_base64(hay, at) {
                eq_from = d.span.end;
                keep(d, budget, out);
            }
        }
        // Percent-encoding and backslash escapes.
        let mut esc = masks.esc & unread(esc_from);
        while esc != 0 && *budget > 0 {
            let at = w + esc.trailing_zeros() as usize;
            esc &= esc - 1;
            if at < esc_from || !escape_at(hay, at, &mut pem) {
                continue;
            }
            let (s, e) = escaped_run(hay, at);
            if let Some(d) = unescape(hay, s..e) {
                keep(d, budget, out);
            }
            esc_from = e.max(at + 1);
        }
        eq_from = eq_from.max(w + block.len());
        esc_from = esc_from.max(w + block.len());
        // Base64 and hex runs.
        let mut mask = masks.class;
        if carry > 0 {
            let lead = (!mask).trailing_zeros() as usize;
            if lead == 64 {
                carry += 64;
                w += 64;
                continue;
            }
            if carry + lead >= MIN_BASE64 {
                w = take_run(hay, w - carry..w + lead, budget, out);
                carry = 0;
                continue;
            }
            mask &= !0u64 << lead;
            carry = 0;
        }
        loop {
            let mut runs = mask;
            let mut shift = 1;
            while shift < MIN_BASE64 as u32 {
                runs &= runs >> shift;
                shift *= 2;
            }
            if runs == 0 {
                break;
            }
            let p = runs.trailing_zeros() as usize;
            let ones = (!(mask >> p)).trailing_zeros() as usize;
            if p + ones == 64 {
                // The run goes on into the next block.
                let e = run_end(hay, w + 64);
                w = take_run(hay, w + p..e, budget, out);
                continue 'blocks;
            }
            let next = take_run(hay, w + p..w + p + ones, budget, out) - w;
            if *budget == 0 {
                break 'blocks;
            }
            if next >= 64 {
                w += next;
                continue 'blocks;
            }
            mask &= !0u64 << next;
        }
        carry = if block.len() == 64 {
            mask.leading_ones() as usize
        } else {
            0
        };
        w += 64;
    }
    out.sort_by_key(|d| d.span.start);
}

/// Decode the base64/hex run `hay[r]` (with its `=` padding) into `out`
/// if it reads as text; where the search resumes, past the padding.
fn take_run(hay: &[u8], r: Range<usize>, budget: &mut usize, out: &mut Vec<Decoded>) -> usize {
    let e = r.end;
    let mut pad = e;
    while pad < hay.len() && pad < e + 2 && hay[pad] == b'=' {
        pad += 1;
    }
    if let Some(d) = run(hay, r, pad) {
        keep(d, budget, out);
    }
    pad
}

/// Add `d` to `out`, its decoded bytes taken from `budget`.
fn keep(d: Decoded, budget: &mut usize, out: &mut Vec<Decoded>) {
    *budget = budget.saturating_sub(d.text.len());
    out.push(d);
}

/// The end of the base64/hex run through `hay[p]`, found 64 bytes at a
/// time: runs can be long (a bundled image, a wall of object ids).
fn run_end(hay: &[u8], p: usize) -> usize {
    let mut e = p;
    loop {
        let block = &hay[e..hay.len().min(e + 64)];
        let ones = (!masks(block).class).trailing_zeros() as usize;
        if ones < block.len() || block.len() < 64 {
            return e + ones.min(block.len());
        }
        e += 64;
    }
}

/// The shortest padded base64 run looked at: 4 bytes of text.
const MIN_SHORT_BASE64: usize = 6;

/// A base64 run shorter than [`MIN_BASE64`] whose padding starts at
/// `hay[at]`, decoded if it is all visible text (a short password, not a
/// word that happens to be base64).
fn short_base64(hay: &[u8], at: usize) -> Option<Decoded> {
    let mut s = at;
    while s > 0 && at - s < MIN_BASE64 && B64[hay[s - 1] as usize] {
        s -= 1;
    }
    let n = at - s;
    if !(MIN_SHORT_BASE64..MIN_BASE64).contains(&n) || (s > 0 && B64[hay[s - 1] as usize]) {
        return None;
    }
    let mut pad = at;
    while pad < hay.len() && hay[pad] == b'=' {
        pad += 1;
    }
    let ends = hay.get(pad).is_none_or(|&b| !B64[b as usize]);
    if pad - at > 2 || !(n + pad - at).is_multiple_of(4) || !ends {
        return None;
    }
    let r = &hay[s..at];
    if !(r.iter().any(u8::is_ascii_uppercase) && r.iter().any(u8::is_ascii_lowercase)) {
        return None;
    }
    let text = base64(r)?;
    (text.len() >= 4 && text.iter().all(|b| b.is_ascii_graphic())).then_some(Decoded {
        span: s..pad,
        encoding: Encoding::Base64,
        text,
    })
}

/// Whether an escape starts at `hay[at]`: `%XX`, `\xXX`, `\uXXXX`, or
/// `\n` in text that holds a PEM block (`pem`, asked only then).
fn escape_at(hay: &[u8], at: usize, pem: &mut impl FnMut() -> bool) -> bool {
    let hex = |r: std::ops::Range<usize>| {
        hay.get(r)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    };
    match (hay[at], hay.get(at + 1)) {
        (b'%', _) => hex(at + 1..at + 3),
        (_, Some(b'x')) => hex(at + 2..at + 4),
        (_, Some(b'u')) => hex(at + 2..at + 6),
        (_, Some(b'n')) => pem(),
        _ => false,
    }
}

/// What each byte of a block (at most 64) may start or continue: bit `k`
/// of `class` when `block[k]` is in the base64/hex alphabet (letters,
/// digits, `+`, `/`, `-`, `_`), of `eq` when it is `=`, of `esc` when it
/// is `%` or `\`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Masks {
    class: u64,
    eq: u64,
    esc: u64,
}

fn masks(block: &[u8]) -> Masks {
    #[cfg(target_arch = "x86_64")]
    if block.len() == 64 {
        // SAFETY: the loads read the 64 bytes of `block`; AVX2 is used
        // only where the CPU has it, SSE2 is part of the x86_64 baseline.
        return unsafe {
            if std::arch::is_x86_feature_detected!("avx2") {
                simd::masks64_avx2(block.as_ptr())
            } else {
                simd::masks64_sse2(block.as_ptr())
            }
        };
    }
    masks_table(block)
}

fn masks_table(block: &[u8]) -> Masks {
    let mut m = Masks::default();
    for (k, &b) in block.iter().enumerate() {
        m.class |= u64::from(B64[b as usize]) << k;
        m.eq |= u64::from(b == b'=') << k;
        m.esc |= u64::from(b == b'%' || b == b'\\') << k;
    }
    m
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use super::Masks;
    use std::arch::x86_64::*;

    /// The three byte tests of [`super::masks`] on one vector, in the
    /// vector width the caller's instructions give: the alphabet (letters
    /// folded to lower case, digits, four punctuation bytes; "x - lo < n"
    /// unsigned is a signed compare after a bias), `=`, and `%` or `\`.
    macro_rules! classify {
        ($v:expr, $set1:ident, $sub:ident, $xor:ident, $or:ident, $lt:expr, $eq:ident) => {{
            let v = $v;
            let within = |lo: u8, n: u8, x| {
                let biased = $xor($sub(x, $set1(lo as i8)), $set1(-128));
                $lt(biased, $set1((n as i8).wrapping_sub(-128i8)))
            };
            let letter = within(b'a', 26, $or(v, $set1(0x20)));
            let digit = within(b'0', 10, v);
            let eq = |c: u8| $eq(v, $set1(c as i8));
            let punct = $or($or(eq(b'+'), eq(b'/')), $or(eq(b'-'), eq(b'_')));
            (
                $or($or(letter, digit), punct),
                eq(b'='),
                $or(eq(b'%'), eq(b'\\')),
            )
        }};
    }

    /// `masks` of the 64 bytes at `p`, 16 at a time.
    ///
    /// # Safety
    /// `p` must be valid for reading 64 bytes.
    pub unsafe fn masks64_sse2(p: *const u8) -> Masks {
        let mut m = Masks::default();
        for i in 0..4 {
            let v = _mm_loadu_si128(p.add(16 * i) as *const __m128i);
            let (class, eq, esc) = classify!(
                v,
                _mm_set1_epi8,
                _mm_sub_epi8,
                _mm_xor_si128,
                _mm_or_si128,
                _mm_cmplt_epi8,
                _mm_cmpeq_epi8
            );
            let bits = |x| (_mm_movemask_epi8(x) as u16 as u64) << (16 * i);
            m.class |= bits(class);
            m.eq |= bits(eq);
            m.esc |= bits(esc);
        }
        m
    }

    /// `masks` of the 64 bytes at `p`, 32 at a time.
    ///
    /// # Safety
    /// `p` must be valid for reading 64 bytes, and the CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn masks64_avx2(p: *const u8) -> Masks {
        let lt = |a, b| _mm256_cmpgt_epi8(b, a);
        let mut m = Masks::default();
        for i in 0..2 {
            let v = _mm256_loadu_si256(p.add(32 * i) as *const __m256i);
            let (class, eq, esc) = classify!(
                v,
                _mm256_set1_epi8,
                _mm256_sub_epi8,
                _mm256_xor_si256,
                _mm256_or_si256,
                lt,
                _mm256_cmpeq_epi8
            );
            let bits = |x| (_mm256_movemask_epi8(x) as u32 as u64) << (32 * i);
            m.class |= bits(class);
            m.eq |= bits(eq);
            m.esc |= bits(esc);
        }
        m
    }
}

/// A base64 or hex run `hay[r]` (with `=` padding up to `pad`), decoded if
/// it reads as text.
fn run(hay: &[u8], r: Range<usize>, pad: usize) -> Option<Decoded> {
    let s = &hay[r.clone()];
    if s.len() < MIN_BASE64 || s.len() > MAX_RUN {
        return None;
    }
    // Most runs are not encoded text; each test below stops at the first
    // byte that settles it, so a long run of dashes or a camelCase name
    // costs a few bytes, not its length.
    if s.iter().all(u8::is_ascii_hexdigit) {
        let lower = s.iter().any(u8::is_ascii_lowercase);
        if s.len() < MIN_HEX || s.len() % 2 == 1 || (lower && s.iter().any(u8::is_ascii_uppercase))
        {
            return None;
        }
        let text: Vec<u8> = s
            .chunks(2)
            .map(|p| (nibble(p[0]) << 4) | nibble(p[1]))
            .collect();
        return reads_as_text(&text).then_some(Decoded {
            span: r,
            encoding: Encoding::Hex,
            text,
        });
    }
    // The first character of each four holds the top six bits of a byte,
    // and text's bytes start with few: more fours outside them than the
    // text check tolerates (one byte in ten) cannot decode to text.
    let tolerated = s.len() * 3 / 4 / 10;
    let mut not_text = 0;
    for &c in s.iter().step_by(4) {
        if !matches!(c, b'C' | b'D' | b'I'..=b'Z' | b'a'..=b'f') {
            not_text += 1;
            if not_text > tolerated {
                return None;
            }
        }
    }
    // Base64 of text mixes cases; a lower-case path or name does not.
    if !(s.iter().any(u8::is_ascii_uppercase) && s.iter().any(u8::is_ascii_lowercase)) {
        return None;
    }
    let text = base64(s)?;
    reads_as_text(&text).then_some(Decoded {
        span: r.start..pad,
        encoding: Encoding::Base64,
        text,
    })
}

fn nibble(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

/// Standard or URL-safe base64, padded or not; `None` when it is neither.
fn base64(s: &[u8]) -> Option<Vec<u8>> {
    let url = s.iter().any(|b| *b == b'-' || *b == b'_');
    let std = s.iter().any(|b| *b == b'+' || *b == b'/');
    if url && std {
        return None;
    }
    let value = |b: u8| -> Option<u32> {
        Some(match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        let mut n = 0u32;
        for (k, &b) in chunk.iter().enumerate() {
            n |= value(b)? << (18 - 6 * k);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len() - 1]);
    }
    Some(out)
}

/// Whether decoded bytes are text: printable ASCII, tabs and line ends
/// (nine in ten at least), and long enough to hold a secret.
fn reads_as_text(t: &[u8]) -> bool {
    if t.len() < 8 {
        return false;
    }
    let printable = t
        .iter()
        .filter(|&&b| (0x20..0x7f).contains(&b) || b == b'\n' || b == b'\r' || b == b'\t')
        .count();
    printable * 10 >= t.len() * 9
}

/// The run around an escape at `at`: the bytes up to whitespace or a quote
/// on each side.
fn escaped_run(hay: &[u8], at: usize) -> (usize, usize) {
    let stop = |b: u8| b.is_ascii_whitespace() || b"\"'`<>".contains(&b);
    let mut s = at;
    while s > 0 && !stop(hay[s - 1]) && at - s < 4096 {
        s -= 1;
    }
    let mut e = at;
    while e < hay.len() && !stop(hay[e]) && e - at < MAX_RUN {
        e += 1;
    }
    (s, e)
}

/// Percent-decode or unescape `hay[r]` when it holds enough escapes and
/// reads as text afterwards.
fn unescape(hay: &[u8], r: Range<usize>) -> Option<Decoded> {
    let s = &hay[r.clone()];
    let hex2 = |i: usize| {
        s.get(i..i + 2)
            .filter(|p| p.iter().all(u8::is_ascii_hexdigit))
            .map(|p| (nibble(p[0]) << 4) | nibble(p[1]))
    };
    let mut out = Vec::with_capacity(s.len());
    let (mut percent, mut escapes) = (0, 0);
    // `\n` is every other string's line end: it only counts in a PEM block
    // written on one line.
    let pem = memchr::memmem::find(s, b"-----BEGIN").is_some();
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => match hex2(i + 1) {
                Some(v) => {
                    out.push(v);
                    percent += 1;
                    i += 3;
                }
                None => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b'\\' => match s.get(i + 1) {
                Some(b'x') if hex2(i + 2).is_some() => {
                    out.push(hex2(i + 2).unwrap_or_default());
                    escapes += 1;
                    i += 4;
                }
                Some(b'u') if hex2(i + 2).is_some() && hex2(i + 4).is_some() => {
                    let code = u32::from(hex2(i + 2).unwrap_or_default()) << 8
                        | u32::from(hex2(i + 4).unwrap_or_default());
                    let mut buf = [0u8; 4];
                    let c = char::from_u32(code).unwrap_or('\u{fffd}');
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    escapes += 1;
                    i += 6;
                }
                Some(b'n') => {
                    out.push(b'\n');
                    escapes += usize::from(pem);
                    i += 2;
                }
                _ => {
                    out.push(b'\\');
                    i += 1;
                }
            },
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    let encoding = if percent >= escapes {
        Encoding::Percent
    } else {
        Encoding::Escape
    };
    (percent.max(escapes) >= MIN_ESCAPES && reads_as_text(&out)).then_some(Decoded {
        span: r,
        encoding,
        text: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    fn decode_all(s: &str) -> Vec<(Encoding, String)> {
        let mut out = Vec::new();
        let mut budget = 1 << 20;
        decode_runs(s.as_bytes(), 0..s.len(), &mut budget, &mut out);
        out.into_iter()
            .map(|d| (d.encoding, String::from_utf8_lossy(&d.text).into_owned()))
            .collect()
    }

    #[test]
    fn text_in_base64_hex_percent_and_escapes_is_decoded() {
        assert_eq!(
            decode_all("password: aHVudGVyMjItcHJvZHVjdGlvbg=="),
            [(Encoding::Base64, "hunter22-production".to_string())]
        );
        assert_eq!(
            decode_all("x = 'aHVudGVyMjItcHJvZHVjdGlvbg'"),
            [(Encoding::Base64, "hunter22-production".to_string())]
        );
        assert_eq!(
            decode_all("k=68756e74657232322d70726f64756374696f6e"),
            [(Encoding::Hex, "hunter22-production".to_string())]
        );
        assert_eq!(
            decode_all("u=https%3A%2F%2Fops%3As3cret%40acme.io"),
            [(
                Encoding::Percent,
                "u=https://ops:s3cret@acme.io".to_string()
            )]
        );
        assert_eq!(
            decode_all(r#"s = "\x70\x61\x73\x73\x77\x6f\x72\x64""#),
            [(Encoding::Escape, "password".to_string())]
        );
    }

    #[test]
    fn identifiers_hashes_and_binary_are_left_alone() {
        assert!(decode_all("getElementByIdentifierForTheUser").is_empty());
        assert!(decode_all("src/main/resources/application").is_empty());
        // A SHA-1 decodes to binary.
        assert!(decode_all("da39a3ee5e6b4b0d3255bfef95601890afd80709").is_empty());
        // Random base64 decodes to binary.
        assert!(decode_all("kYpIygfdM7ENA8d5vFldPGYYJvW5hANsbEvrSFag").is_empty());
        assert!(decode_all("100%25 sure").is_empty());
        assert!(decode_all(r#"printf("line one\nline two\n")"#).is_empty());
    }

    #[test]
    fn a_pem_block_written_on_one_line_is_unescaped() {
        let pem = r#"key = "-----BEGIN\x20PRIVATE\x20KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----""#;
        let out = decode_all(pem);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].1.contains("-----BEGIN PRIVATE KEY-----\nMIIE"));
    }

    #[test]
    fn the_simd_and_the_table_classify_alike() {
        let bytes: Vec<u8> = (0..=255u8).chain(0..=255u8).collect();
        for chunk in bytes.chunks(64).chain(bytes[7..].chunks(64)) {
            let table = masks_table(chunk);
            assert_eq!(masks(chunk), table, "{chunk:?}");
            #[cfg(target_arch = "x86_64")]
            if chunk.len() == 64 {
                // SAFETY: 64 readable bytes; AVX2 only where the CPU has it.
                unsafe {
                    assert_eq!(simd::masks64_sse2(chunk.as_ptr()), table);
                    if std::arch::is_x86_feature_detected!("avx2") {
                        assert_eq!(simd::masks64_avx2(chunk.as_ptr()), table);
                    }
                }
            }
        }
        let eq = masks_table(b"a=b%c\\d");
        assert_eq!((eq.class, eq.eq, eq.esc), (0b101_0101, 0b10, 0b10_1000));
    }

    #[test]
    fn a_run_across_blocks_is_found() {
        for at in [40, 56, 60, 63, 100, 120] {
            let mut text = " ".repeat(at);
            text.push_str("aHVudGVyMjItcHJvZHVjdGlvbg==");
            text.push_str(&" ".repeat(70));
            assert_eq!(decode_all(&text).len(), 1, "at {at}");
        }
    }

    /// Standard base64 of `t`, unpadded.
    fn encode(t: &[u8]) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        t.chunks(3)
            .flat_map(|c| {
                let n = c
                    .iter()
                    .enumerate()
                    .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
                (0..=c.len()).map(move |i| A[(n >> (18 - 6 * i) & 63) as usize] as char)
            })
            .collect()
    }

    proptest::proptest! {
        /// The check of each four's first character only rejects what the
        /// decoding would: any text that reads as text is still decoded,
        /// line ends and a few stray bytes included.
        #[test]
        fn base64_of_text_is_always_decoded(
            text in proptest::collection::vec(
                proptest::prop_oneof![
                    20 => 0x20u8..0x7f,
                    1 => proptest::sample::select(vec![b'\n', b'\r', b'\t']),
                    1 => 0u8..=255,
                ],
                12..300,
            )
        ) {
            let encoded = encode(&text);
            let mut out = Vec::new();
            let mut budget = 1 << 20;
            decode_runs(encoded.as_bytes(), 0..encoded.len(), &mut budget, &mut out);
            let mixed = encoded.bytes().any(|b| b.is_ascii_uppercase())
                && encoded.bytes().any(|b| b.is_ascii_lowercase());
            let hex = encoded.bytes().all(|b| b.is_ascii_hexdigit());
            if reads_as_text(&text) && mixed && !hex && !encoded.contains(['-', '_']) {
                proptest::prop_assert_eq!(out.len(), 1);
                proptest::prop_assert_eq!(&out[0].text, &text);
            }
        }
    }

    /// What `decode_runs(hay, from..)` decodes, found one kind at a time
    /// and a byte at a time: every maximal run of the alphabet that is
    /// long enough, then each `=` and each `%`/`\\`, as `memchr` finds them.
    fn decoded_one_kind_at_a_time(hay: &[u8], from: usize) -> Vec<Range<usize>> {
        let mut spans = Vec::new();
        let mut budget = usize::MAX;
        let mut i = 0;
        while i < hay.len() {
            let s = i;
            while i < hay.len() && B64[hay[i] as usize] {
                i += 1;
            }
            if i - s >= MIN_BASE64 && i > from {
                let mut decoded = Vec::new();
                take_run(hay, s..i, &mut budget, &mut decoded);
                spans.extend(decoded.into_iter().map(|d| d.span));
            }
            i = i.max(s + 1);
        }
        let mut i = from;
        while let Some(off) = memchr::memchr(b'=', &hay[i..]) {
            let at = i + off;
            i = at + 1;
            if at > 0 && B64[hay[at - 1] as usize] {
                if let Some(d) = short_base64(hay, at) {
                    i = d.span.end;
                    spans.push(d.span);
                }
            }
        }
        let pem = memchr::memmem::find(&hay[from..], b"-----BEGIN").is_some();
        let mut i = from;
        while let Some(off) = memchr::memchr2(b'%', b'\\', &hay[i..]) {
            let at = i + off;
            i = at + 1;
            if escape_at(hay, at, &mut || pem) {
                let (s, e) = escaped_run(hay, at);
                spans.extend(unescape(hay, s..e).map(|d| d.span));
                i = e.max(at + 1);
            }
        }
        spans.sort_by_key(|r| (r.start, r.end));
        spans
    }

    proptest::proptest! {
        /// One pass over block masks decodes what a search for each kind
        /// on its own decodes: several runs in one block, runs across
        /// blocks and at their edges, the run the range starts in, short
        /// padded base64, escapes and a PEM block's `\\n`.
        #[test]
        fn block_masks_find_what_each_search_finds(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    3 => "[A-Za-z0-9+/ ]{4,90}".prop_map(|t| encode(t.as_bytes())),
                    2 => "[a-z_]{1,70}",
                    1 => "[%][0-9A-F]{2}[a-z]{0,3}",
                    1 => "[\\\\]x[0-9a-f]{2}",
                    1 => "[\\\\]u00[4-6][0-9]",
                    2 => proptest::sample::select(vec![
                        " ", "=", "==", "\\n", ".", "\t", "\"", "-----BEGIN KEY-----",
                    ])
                    .prop_map(str::to_string),
                ],
                0..40,
            ),
            from in 0usize..400,
        ) {
            let hay = parts.concat().into_bytes();
            let from = from.min(hay.len().saturating_sub(1));
            let mut out = Vec::new();
            let mut budget = usize::MAX;
            decode_runs(&hay, from..hay.len(), &mut budget, &mut out);
            let mut found: Vec<_> = out.into_iter().map(|d| d.span).collect();
            found.sort_by_key(|r| (r.start, r.end));
            proptest::prop_assert_eq!(found, decoded_one_kind_at_a_time(&hay, from));
        }
    }

    #[test]
    fn the_budget_bounds_what_is_decoded() {
        let one = "aHVudGVyMjItcHJvZHVjdGlvbg== ";
        let text = one.repeat(10);
        let mut out = Vec::new();
        let mut budget = 40;
        decode_runs(text.as_bytes(), 0..text.len(), &mut budget, &mut out);
        assert_eq!(out.len(), 3, "19 bytes each: the third crosses 40");
        assert_eq!(budget, 0);
    }

    #[test]
    fn a_run_cut_by_the_range_is_taken_whole() {
        let s = "data: aHVudGVyMjItcHJvZHVjdGlvbg==";
        let mut out = Vec::new();
        let mut budget = 1 << 20;
        decode_runs(s.as_bytes(), 12..s.len(), &mut budget, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].span, 6..s.len());
    }
}
