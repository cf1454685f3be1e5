//! Inputs of any size, scanned in bounded chunks: stdin, and files larger
//! than one chunk. Consecutive chunks overlap by the engine's longest
//! match, and a finding belongs to the chunk its match starts in, so a
//! secret across a border is found exactly once; memory stays bounded by
//! a chunk and two overlaps, whatever the input's size.

use std::io::Read;

use super::{is_binary, Event, SkipReason};
use crate::engine::{RawMatch, Scratch};
use crate::finding::{Finding, LineIndex};
use crate::Engine;

/// Bytes scanned at a time in an input read as a stream (and the size
/// from which a file is read as one).
pub const CHUNK: usize = 16 << 20;

/// Scan everything `reader` yields under `name`, `chunk` bytes at a time.
/// Returns the bytes read; a binary input (a NUL byte in its first 8 KiB)
/// is skipped.
pub(crate) fn scan_stream(
    engine: &Engine,
    name: &str,
    mut reader: impl Read,
    chunk: usize,
    (scratch, matches): (&mut Scratch, &mut Vec<RawMatch>),
    emit: &mut dyn FnMut(Event) -> bool,
) -> std::io::Result<()> {
    let chunk = chunk.max(1);
    let overlap = engine.longest_match().max(1);
    let mut buf: Vec<u8> = Vec::new();
    // Absolute offset of buf[0]; findings whose match starts before
    // `own_start` belonged to the previous chunk.
    let (mut base, mut own_start) = (0u64, 0u64);
    // Where buf[0] sits: newlines before it, characters since the last.
    let (mut lines_before, mut col_before) = (0usize, 0usize);
    let mut first = true;
    loop {
        let target = buf.len().saturating_add(chunk).saturating_add(overlap);
        let eof = fill(&mut reader, &mut buf, target)?;
        if std::mem::take(&mut first) && is_binary(&buf) {
            emit(Event::Skipped {
                path: name.to_string(),
                reason: SkipReason::Binary,
            });
            return Ok(());
        }
        let own_end = base + (buf.len() - if eof { 0 } else { overlap }) as u64;
        matches.clear();
        engine.scan_into(Some(name), &buf, scratch, matches);
        let mut lines = LineIndex::new();
        for m in matches.iter() {
            let at = base + m.match_start as u64;
            if at < own_start || at >= own_end {
                continue;
            }
            let mut f = Finding::new(&engine.rules()[m.rule], name, &buf, m, &mut lines);
            let loc = &mut f.location;
            if loc.line == 1 {
                loc.column += col_before;
            }
            if loc.end_line == 1 {
                loc.end_column += col_before;
            }
            loc.line += lines_before;
            loc.end_line += lines_before;
            if !emit(Event::Finding(Box::new(f))) {
                return Ok(());
            }
        }
        if eof {
            emit(Event::scanned(base + buf.len() as u64));
            return Ok(());
        }
        // Keep what the next chunk's keyword windows and regexes may need
        // before its first own byte.
        let keep_from = ((own_end - base) as usize).saturating_sub(overlap);
        let dropped = &buf[..keep_from];
        lines_before += memchr::memchr_iter(b'\n', dropped).count();
        col_before = match memchr::memrchr(b'\n', dropped) {
            Some(i) => chars(&dropped[i + 1..]),
            None => col_before + chars(dropped),
        };
        buf.drain(..keep_from);
        base += keep_from as u64;
        own_start = own_end;
    }
}

/// Characters as [`LineIndex`] counts them (bytes that start one).
fn chars(b: &[u8]) -> usize {
    b.iter().filter(|&&c| (c as i8) >= -0x40).count()
}

/// Read until `buf` holds `target` bytes; true at the end of the input.
/// The buffer grows with what arrives, so a short input costs little.
fn fill(reader: &mut impl Read, buf: &mut Vec<u8>, target: usize) -> std::io::Result<bool> {
    let want = target.saturating_sub(buf.len()) as u64;
    reader.take(want).read_to_end(buf)?;
    Ok(buf.len() < target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleSet;

    fn findings(engine: &Engine, input: &[u8], chunk: usize) -> Vec<(usize, usize, String)> {
        let (mut scratch, mut matches) = (Scratch::default(), Vec::new());
        let mut out = Vec::new();
        let mut emit = |ev: Event| {
            if let Event::Finding(f) = ev {
                out.push((f.location.line, f.location.column, f.secret.clone()));
            }
            true
        };
        scan_stream(
            engine,
            "input",
            input,
            chunk,
            (&mut scratch, &mut matches),
            &mut emit,
        )
        .unwrap();
        out
    }

    /// Any chunk size finds what one whole-buffer scan finds, at the same
    /// lines and columns, each once: secrets straddle borders at many
    /// offsets as the chunk size varies.
    #[test]
    fn chunks_find_exactly_what_a_whole_scan_finds() {
        let engine = Engine::new(RuleSet::builtin()).unwrap();
        let overlap = engine.longest_match();
        let key = |n: usize| {
            let bodies = ["Q7XK2M4PZ6RB3TVN", "M3ZQ7KX2P4TB6RVN", "T6RB3Q7XZ2M4PKVN"];
            format!("{}{}", "AKIA", bodies[n % 3])
        };
        let mut input = String::new();
        let mut i = 0;
        // Several overlaps long, so that every chunk size below splits it.
        while input.len() < 5 * overlap {
            input.push_str(&"é filler text without secrets ".repeat(i % 97));
            input.push_str(&format!("aws_key = \"{}\" # {i}\n", key(i)));
            i += 1;
        }
        let whole = findings(&engine, input.as_bytes(), usize::MAX);
        assert_eq!(whole.len(), i);
        for chunk in [1, 1000, overlap / 3, overlap, overlap + 17, 2 * overlap + 1] {
            assert_eq!(
                findings(&engine, input.as_bytes(), chunk),
                whole,
                "chunk {chunk}"
            );
        }
    }
}
