//! Archives, scanned member by member: zip (and what is built on it: jar,
//! war, apk, whl, nupkg, docx...), tar, and gzip or bzip2 around a tar or a
//! single file, nested up to [`ArchiveOptions::depth`] deep. A member is
//! reported under `archive!member` (`release.tar.gz!config/.env.prod`,
//! `app.zip!lib/inner.jar!application.yml`), and the rules that look at
//! names judge the member's own path.
//!
//! An archive is known by its first bytes, not its name (a tar without
//! the ustar magic, by its name and header checksum). The decompressed
//! bytes of one archive, nested ones included, are bounded as a whole, so a
//! bomb costs at most [`ArchiveOptions::max_bytes`]; what a bound leaves
//! out, or an encrypted member, is reported as skipped, never passed over.

use std::io::{Cursor, Read, Seek};

use super::{is_binary, Event, SkipReason, BINARY_PROBE};
use crate::engine::decode::ArchiveOptions;
use crate::engine::{RawMatch, Scratch};
use crate::finding::{Finding, LineIndex};
use crate::Engine;

/// What an archive is stored as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Zip,
    Tar,
    Gzip,
    Bzip2,
}

/// Bytes of a tar header: what is needed to tell a tar.
const TAR_HEADER: usize = 512;

/// Budget charged per member on top of its bytes, so an archive of
/// millions of empty members is bounded too.
const MEMBER_COST: u64 = 512;

/// The format of the content `head` (its first bytes, at least 512 where
/// there are) of the file `name`, when it is an archive.
pub(crate) fn detect(name: &str, head: &[u8]) -> Option<Format> {
    match head {
        [b'P', b'K', 3, 4, ..] | [b'P', b'K', 5, 6, ..] | [b'P', b'K', 7, 8, ..] => {
            Some(Format::Zip)
        }
        [0x1f, 0x8b, 8, ..] => Some(Format::Gzip),
        [b'B', b'Z', b'h', b'1'..=b'9', rest @ ..]
            if rest.starts_with(&[0x31, 0x41, 0x59, 0x26, 0x53, 0x59])
                || rest.starts_with(&[0x17, 0x72, 0x45, 0x38, 0x50, 0x90]) =>
        {
            Some(Format::Bzip2)
        }
        _ if is_tar(name, head) => Some(Format::Tar),
        _ => None,
    }
}

/// A ustar or GNU tar header, or an old (v7) one in a file named `.tar`
/// whose header checksum holds.
fn is_tar(name: &str, head: &[u8]) -> bool {
    if head.len() < TAR_HEADER {
        return false;
    }
    if &head[257..262] == b"ustar" {
        return true;
    }
    let lower = name.to_ascii_lowercase();
    if !lower.ends_with(".tar") || head[0] == 0 {
        return false;
    }
    let stored = std::str::from_utf8(&head[148..156])
        .ok()
        .map(|s| s.trim_matches(|c: char| c == '\0' || c == ' '))
        .and_then(|s| u32::from_str_radix(s, 8).ok());
    // The checksum is the sum of the header's bytes, its own field read
    // as spaces.
    let sum: u32 = head[..TAR_HEADER]
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                b as u32
            }
        })
        .sum();
    stored == Some(sum)
}

/// Scan the archive `reader`, in `format`, reported under `name`, calling
/// `emit` for every event (findings, members scanned and skipped, errors);
/// false when the receiver is gone. `max_file_size` bounds each member as
/// it bounds files.
pub(crate) fn scan(
    engine: &Engine,
    name: &str,
    format: Format,
    reader: impl Read + Seek,
    max_file_size: u64,
    (scratch, matches): (&mut Scratch, &mut Vec<RawMatch>),
    emit: &mut dyn FnMut(Event) -> bool,
) -> bool {
    // An allow-listed archive is left out whole, as a file would be.
    if engine.path_ignored(name) {
        return true;
    }
    let opts = engine.archives();
    let mut walk = Walk {
        engine,
        opts,
        max_file_size,
        left: opts.max_bytes,
        scratch,
        matches,
        emit,
        alive: true,
        stop: false,
    };
    walk.open(name, format, reader, 1);
    walk.alive
}

/// One archive's walk: the budget left, and where events go.
struct Walk<'a> {
    engine: &'a Engine,
    opts: ArchiveOptions,
    max_file_size: u64,
    /// Decompressed bytes still allowed.
    left: u64,
    scratch: &'a mut Scratch,
    matches: &'a mut Vec<RawMatch>,
    emit: &'a mut dyn FnMut(Event) -> bool,
    /// The receiver still listens.
    alive: bool,
    /// The budget is spent (or the receiver gone): read nothing more.
    stop: bool,
}

/// Why a member could not be read whole.
enum Cut {
    /// Binary by its first bytes, and no archive: not read further.
    Binary,
    TooLarge(u64),
    Budget,
    Io(std::io::Error),
}

impl Walk<'_> {
    fn send(&mut self, ev: Event) {
        if self.alive && !(self.emit)(ev) {
            self.alive = false;
            self.stop = true;
        }
    }

    fn skip(&mut self, path: String, reason: SkipReason) {
        self.send(Event::Skipped { path, reason });
    }

    /// `path` cannot be read past some point: a truncated or corrupt
    /// archive (a test fixture, often), reported as not wholly scanned.
    fn broken(&mut self, path: &str, what: &str, e: impl std::fmt::Display) {
        let message = format!("{what}: {e}");
        self.skip(path.to_string(), SkipReason::BrokenArchive { message });
    }

    /// Open the archive `name` at nesting `depth` (1: a file itself).
    fn open(&mut self, name: &str, format: Format, reader: impl Read + Seek, depth: u8) {
        match format {
            Format::Zip => self.zip(name, reader, depth),
            Format::Tar => self.tar(name, reader, depth),
            Format::Gzip => {
                let inner = strip_suffix(name, &[(".tgz", ".tar"), (".gz", ""), (".gzip", "")]);
                let dec = flate2::read::MultiGzDecoder::new(reader);
                self.compressed(name, &inner, dec, depth)
            }
            Format::Bzip2 => {
                let inner = strip_suffix(
                    name,
                    &[
                        (".tbz2", ".tar"),
                        (".tbz", ".tar"),
                        (".bz2", ""),
                        (".bz", ""),
                    ],
                );
                let dec = bzip2::read::MultiBzDecoder::new(reader);
                self.compressed(name, &inner, dec, depth)
            }
        }
    }

    fn zip(&mut self, name: &str, reader: impl Read + Seek, depth: u8) {
        let mut zip = match zip::ZipArchive::new(reader) {
            Ok(z) => z,
            Err(e) => return self.broken(name, "the zip archive", e),
        };
        for i in 0..zip.len() {
            if self.stop {
                return;
            }
            let (member, encrypted) = match zip.by_index_raw(i) {
                Ok(f) if f.is_dir() || f.is_symlink() => continue,
                Ok(f) => (member_name(f.name_raw()), f.encrypted()),
                Err(e) => return self.broken(name, "the zip archive", e),
            };
            let path = format!("{name}!{member}");
            if encrypted {
                // Its name still counts: a keystore is one by its name.
                self.path_findings(&path, &member);
                self.skip(path, SkipReason::Encrypted);
                continue;
            }
            let content = match zip.by_index(i) {
                Ok(f) => self.read_member(&member, f),
                Err(e) => {
                    self.broken(&path, "the member", e);
                    continue;
                }
            };
            self.member(&path, &member, content, depth);
        }
    }

    fn tar(&mut self, name: &str, reader: impl Read, depth: u8) {
        let mut tar = tar::Archive::new(reader);
        let entries = match tar.entries() {
            Ok(e) => e,
            Err(e) => return self.broken(name, "the tar archive", e),
        };
        for entry in entries {
            if self.stop {
                return;
            }
            let entry = match entry {
                Ok(e) => e,
                // A broken header: what follows cannot be found.
                Err(e) => return self.broken(name, "the tar archive", e),
            };
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let member = member_name(&entry.path_bytes());
            let path = format!("{name}!{member}");
            let content = self.read_member(&member, entry);
            // A stream broken inside a member has nothing readable after it.
            let broken = matches!(content, Err(Cut::Io(_)));
            self.member(&path, &member, content, depth);
            if broken {
                return;
            }
        }
    }

    /// A gzip or bzip2 stream: a tar inside is read member by member under
    /// `name`; anything else is one member named `inner`.
    fn compressed(&mut self, name: &str, inner: &str, mut dec: impl Read, depth: u8) {
        let mut head = Vec::with_capacity(TAR_HEADER);
        let limit = (TAR_HEADER as u64).min(self.left);
        if let Err(e) = (&mut dec).take(limit).read_to_end(&mut head) {
            return self.broken(name, "the compressed stream", e);
        }
        if is_tar(inner, &head) {
            self.left -= head.len() as u64;
            return self.tar(name, Cursor::new(head).chain(dec), depth);
        }
        let member = inner.rsplit('/').next().unwrap_or(inner).to_string();
        let content = self.read_member(&member, Cursor::new(head).chain(dec));
        let path = format!("{name}!{inner}");
        self.member(&path, &member, content, depth);
    }

    /// Read the member `member` whole, within the member and archive
    /// bounds; the bytes read are charged to the budget. A binary member
    /// that is no archive is known by its first bytes, and the rest is not
    /// decompressed.
    fn read_member(&mut self, member: &str, mut reader: impl Read) -> Result<Vec<u8>, Cut> {
        let cap = self
            .left
            .saturating_sub(MEMBER_COST)
            .min(self.max_file_size);
        let mut buf = Vec::new();
        let probe = cap.saturating_add(1).min(BINARY_PROBE as u64);
        let mut read = (&mut reader).take(probe).read_to_end(&mut buf);
        let binary = read.is_ok()
            && buf.len() as u64 <= cap
            && is_binary(&buf)
            && detect(member, &buf).is_none();
        if read.is_ok() && !binary && buf.len() as u64 == probe {
            let rest = cap.saturating_add(1) - probe;
            read = reader.take(rest).read_to_end(&mut buf);
        }
        self.left = self
            .left
            .saturating_sub(buf.len() as u64)
            .saturating_sub(MEMBER_COST);
        read.map_err(Cut::Io)?;
        if binary {
            return Err(Cut::Binary);
        }
        if buf.len() as u64 > cap {
            return Err(if cap == self.max_file_size {
                Cut::TooLarge(self.max_file_size)
            } else {
                Cut::Budget
            });
        }
        Ok(buf)
    }

    /// Report the member `path` (named `member` within its archive), read
    /// or not: its name to path-only rules, then its content, opened when
    /// it is an archive itself.
    fn member(&mut self, path: &str, member: &str, content: Result<Vec<u8>, Cut>, depth: u8) {
        self.path_findings(path, member);
        let content = match content {
            Ok(c) => c,
            Err(Cut::TooLarge(limit)) => {
                // Only the first bytes were read: enough to say how large
                // it is not.
                let reason = SkipReason::TooLarge {
                    size: limit.saturating_add(1),
                    limit,
                };
                return self.skip(path.to_string(), reason);
            }
            Err(Cut::Budget) => {
                self.stop = true;
                let limit = self.opts.max_bytes;
                return self.skip(path.to_string(), SkipReason::ArchiveBudget { limit });
            }
            Err(Cut::Io(e)) => return self.broken(path, "the member", e),
            Err(Cut::Binary) => return self.skip(path.to_string(), SkipReason::Binary),
        };
        if let Some(format) = detect(member, &content) {
            if depth >= self.opts.depth {
                let limit = self.opts.depth;
                return self.skip(path.to_string(), SkipReason::ArchiveDepth { limit });
            }
            return self.open(path, format, Cursor::new(content), depth + 1);
        }
        if let Some(reason) = SkipReason::of(&content, self.max_file_size) {
            return self.skip(path.to_string(), reason);
        }
        self.matches.clear();
        self.engine
            .scan_into(Some(member), &content, self.scratch, self.matches);
        let mut lines = LineIndex::new();
        let rules = self.engine.rules();
        for i in 0..self.matches.len() {
            let f = Finding::new(
                &rules[self.matches[i].rule],
                path,
                &content,
                &self.matches[i],
                &mut lines,
            );
            self.send(Event::Finding(Box::new(f)));
        }
        self.send(Event::scanned(content.len() as u64));
    }

    /// The path-only rules taking the member `member`, reported at `path`.
    fn path_findings(&mut self, path: &str, member: &str) {
        for r in self.engine.path_findings(member) {
            let f = Finding::for_path(&self.engine.rules()[r], path);
            self.send(Event::Finding(Box::new(f)));
        }
    }
}

/// A member's path as rules read it: without a leading `./` or `/`.
fn member_path_of(member: &str) -> &str {
    member.trim_start_matches("./").trim_start_matches('/')
}

/// A member's name as stored, made printable: forward slashes, no leading
/// `./`.
fn member_name(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw).replace('\\', "/");
    member_path_of(&s).to_string()
}

/// `name` without its directory and its compression suffix, as the file
/// inside is called: `notes.txt.gz` -> `notes.txt`, `site.tgz` -> `site.tar`.
fn strip_suffix(name: &str, suffixes: &[(&str, &str)]) -> String {
    let base = name.rsplit(['/', '!']).next().unwrap_or(name);
    let lower = base.to_ascii_lowercase();
    for (suffix, with) in suffixes {
        if lower.ends_with(suffix) && lower.len() > suffix.len() {
            return format!("{}{with}", &base[..base.len() - suffix.len()]);
        }
    }
    base.to_string()
}
