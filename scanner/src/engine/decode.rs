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
/// Most bytes of a source tree belong to no such run: base64 and hex runs
/// are looked for a window at a time without branching on each byte, and
/// escapes with `memchr`.
pub fn decode_runs(hay: &[u8], range: Range<usize>, budget: &mut usize, out: &mut Vec<Decoded>) {
    let end = range.end.min(hay.len());
    if range.start >= end {
        return;
    }
    let in_class = |i: usize| B64[hay[i] as usize];
    // Base64 and hex: 64-byte blocks classified into a mask (SIMD where
    // the target has it), in which a run shows as MIN_BASE64 consecutive
    // ones; a run across blocks is seen from the ones trailing the block
    // before.
    // A run ends before a byte outside the alphabet, so the search resumes
    // past each run without finding it again.
    let mut w = range.start;
    let mut carry = 0usize;
    while w < end && *budget > 0 {
        let block = &hay[w..hay.len().min(w + 64)];
        let mask = class_mask(block);
        let lead = (!mask).trailing_zeros() as usize;
        let found = if carry > 0 && carry + lead.min(block.len()) >= MIN_BASE64 {
            Some(w - carry)
        } else {
            let mut runs = mask;
            let mut shift = 1;
            while shift < MIN_BASE64 as u32 {
                runs &= runs >> shift;
                shift *= 2;
            }
            (runs != 0).then(|| w + runs.trailing_zeros() as usize)
        };
        let Some(p) = found else {
            carry = if mask == u64::MAX {
                carry + 64
            } else if block.len() == 64 {
                mask.leading_ones() as usize
            } else {
                0
            };
            w += 64;
            continue;
        };
        let mut s = p;
        while s > 0 && in_class(s - 1) {
            s -= 1;
        }
        let e = run_end(hay, p);
        let mut pad = e;
        while pad < hay.len() && pad < e + 2 && hay[pad] == b'=' {
            pad += 1;
        }
        if let Some(d) = run(hay, s..e, pad) {
            *budget = budget.saturating_sub(d.text.len());
            out.push(d);
        }
        w = pad;
        carry = 0;
    }
    // Short base64 (a password in a Kubernetes Secret's `data:`) is told
    // from a word by its padding.
    let mut i = range.start;
    while let Some(off) = memchr::memchr(b'=', &hay[i..end]) {
        if *budget == 0 {
            break;
        }
        let at = i + off;
        i = at + 1;
        // Most `=` in code follow a space or an operator.
        if at == 0 || !B64[hay[at - 1] as usize] {
            continue;
        }
        if let Some(d) = short_base64(hay, at) {
            *budget = budget.saturating_sub(d.text.len());
            i = d.span.end;
            out.push(d);
        }
    }
    // Percent-encoding and backslash escapes.
    let pem = memchr::memmem::find(&hay[range.start..end], b"-----BEGIN").is_some();
    let mut i = range.start;
    while let Some(off) = memchr::memchr2(b'%', b'\\', &hay[i..end]) {
        if *budget == 0 {
            break;
        }
        let at = i + off;
        if !escape_at(hay, at, pem) {
            i = at + 1;
            continue;
        }
        let (s, e) = escaped_run(hay, at);
        if let Some(d) = unescape(hay, s..e) {
            *budget = budget.saturating_sub(d.text.len());
            out.push(d);
        }
        i = e.max(at + 1);
        if i >= end {
            break;
        }
    }
    out.sort_by_key(|d| d.span.start);
}

/// The end of the base64/hex run through `hay[p]`, found 64 bytes at a
/// time: runs can be long (a bundled image, a wall of object ids).
fn run_end(hay: &[u8], p: usize) -> usize {
    let mut e = p;
    loop {
        let block = &hay[e..hay.len().min(e + 64)];
        let ones = (!class_mask(block)).trailing_zeros() as usize;
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
/// `\n` in text that holds a PEM block.
fn escape_at(hay: &[u8], at: usize, pem: bool) -> bool {
    let hex = |r: std::ops::Range<usize>| {
        hay.get(r)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    };
    match (hay[at], hay.get(at + 1)) {
        (b'%', _) => hex(at + 1..at + 3),
        (_, Some(b'x')) => hex(at + 2..at + 4),
        (_, Some(b'u')) => hex(at + 2..at + 6),
        (_, Some(b'n')) => pem,
        _ => false,
    }
}

/// Bit `k` set when `block[k]` (at most 64 bytes) is in the base64/hex
/// alphabet: letters, digits, `+`, `/`, `-`, `_`.
fn class_mask(block: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if block.len() == 64 {
        // SAFETY: SSE2 is part of the x86_64 baseline; the four loads read
        // the 64 bytes of `block`.
        return unsafe { sse2::class_mask64(block.as_ptr()) };
    }
    let mut mask = 0u64;
    for (k, &b) in block.iter().enumerate() {
        mask |= u64::from(B64[b as usize]) << k;
    }
    mask
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::*;

    /// `class_mask` of the 64 bytes at `p`, 16 at a time.
    ///
    /// # Safety
    /// `p` must be valid for reading 64 bytes.
    pub unsafe fn class_mask64(p: *const u8) -> u64 {
        let mut mask = 0u64;
        for i in 0..4 {
            let v = _mm_loadu_si128(p.add(16 * i) as *const __m128i);
            // Unsigned "x - lo < n" as a signed compare after a bias.
            let within = |lo: u8, n: u8, x: __m128i| {
                let d = _mm_sub_epi8(x, _mm_set1_epi8(lo as i8));
                let biased = _mm_xor_si128(d, _mm_set1_epi8(-128));
                _mm_cmplt_epi8(biased, _mm_set1_epi8((n as i8).wrapping_sub(-128i8)))
            };
            let letter = within(b'a', 26, _mm_or_si128(v, _mm_set1_epi8(0x20)));
            let digit = within(b'0', 10, v);
            let eq = |c: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(c as i8));
            let punct = _mm_or_si128(
                _mm_or_si128(eq(b'+'), eq(b'/')),
                _mm_or_si128(eq(b'-'), eq(b'_')),
            );
            let all = _mm_or_si128(_mm_or_si128(letter, digit), punct);
            mask |= (_mm_movemask_epi8(all) as u16 as u64) << (16 * i);
        }
        mask
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
        let bytes: Vec<u8> = (0..=255u8).collect();
        for chunk in bytes.chunks(64) {
            let mut table = 0u64;
            for (k, &b) in chunk.iter().enumerate() {
                table |= u64::from(B64[b as usize]) << k;
            }
            assert_eq!(class_mask(chunk), table, "{chunk:?}");
        }
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
