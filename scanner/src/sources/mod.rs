//! Where bytes come from: the filesystem (a parallel walk) and readers such
//! as stdin. Sources turn bytes into [`Finding`]s through the engine and
//! report what they did as a stream of [`Event`]s, so the caller decides how
//! to show progress, warnings and results.

mod archive;
pub(crate) mod fs;
mod git;
mod seen;
mod stream;

use std::io::Read;

use crate::engine::{Engine, RawMatch, Scratch};
use crate::finding::{Finding, LineIndex};

pub use fs::{walk, WalkOptions};
pub use git::{
    is_repository, scan_history, scan_staged, scan_worktree, GitError, HistoryOptions,
    HistorySummary, Strategy, WorkerPanic, WorktreeSummary,
};
pub use stream::CHUNK;

/// Why a file was not scanned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// A NUL byte in the first 8 KiB.
    Binary,
    /// Larger than the configured limit.
    TooLarge { size: u64, limit: u64 },
    /// A git submodule: a separate repository, scanned on its own.
    Submodule,
    /// An encrypted archive member: unreadable without its password.
    Encrypted,
    /// An archive nested deeper than the configured depth.
    ArchiveDepth { limit: u8 },
    /// An archive's decompressed bytes went over the configured bound: this
    /// member and those after it were not scanned.
    ArchiveBudget { limit: u64 },
    /// An archive (or member) that cannot be read past some point: what
    /// came before was scanned, the rest could not be.
    BrokenArchive { message: String },
}

impl SkipReason {
    /// Why `buf`, content to scan, is skipped, if it is: larger than
    /// `limit` bytes, or binary. Every source asks this one question.
    pub fn of(buf: &[u8], limit: u64) -> Option<SkipReason> {
        SkipReason::too_large(buf.len() as u64, limit)
            .or_else(|| is_binary(buf).then_some(SkipReason::Binary))
    }

    /// The size check alone, for a source that knows the size before it
    /// reads (a file's metadata).
    pub fn too_large(size: u64, limit: u64) -> Option<SkipReason> {
        (size > limit).then_some(SkipReason::TooLarge { size, limit })
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::Binary => write!(f, "binary file"),
            SkipReason::TooLarge { size, limit } => {
                write!(f, "file is {size} bytes, over the {limit}-byte limit")
            }
            SkipReason::Submodule => write!(
                f,
                "submodule: a separate repository, not scanned here (scan it on its own)"
            ),
            SkipReason::Encrypted => write!(
                f,
                "encrypted archive member: its content cannot be read without the password"
            ),
            SkipReason::ArchiveDepth { limit } => write!(
                f,
                "an archive nested more than {limit} deep, not opened (see --archive-depth)"
            ),
            SkipReason::ArchiveBudget { limit } => write!(
                f,
                "the archive holds more than {limit} decompressed bytes: this member and \
                 the rest were not scanned (see --archive-max-bytes)"
            ),
            SkipReason::BrokenArchive { message } => write!(
                f,
                "an archive that cannot be read ({message}): what follows the break was not scanned"
            ),
        }
    }
}

/// What a source reports while it works.
#[derive(Debug)]
pub enum Event {
    Finding(Box<Finding>),
    /// Files were scanned, with their total size (a walk reports them in
    /// batches, one event per file costing the receiving thread a wake-up).
    Scanned {
        files: u64,
        bytes: u64,
    },
    Skipped {
        path: String,
        reason: SkipReason,
    },
    /// Something could not be read; the scan goes on.
    Error {
        path: String,
        message: String,
    },
}

impl Event {
    /// One file of `bytes` was scanned.
    pub fn scanned(bytes: u64) -> Event {
        Event::Scanned { files: 1, bytes }
    }

    /// An error about `path` (empty when no path applies).
    pub fn error(path: impl Into<String>, message: impl std::fmt::Display) -> Event {
        Event::Error {
            path: path.into(),
            message: message.to_string(),
        }
    }
}

/// Inputs scanned (files, blobs) and their bytes, not reported yet, for
/// one summed [`Event::Scanned`] per batch: one event per file made the
/// receiving thread wake (and spin, on two cores against two scanning
/// threads) 70,000 times in a tree scan.
#[derive(Default)]
pub(crate) struct ScannedTally {
    files: u64,
    bytes: u64,
}

impl ScannedTally {
    /// Count one input of `bytes` scanned.
    pub(crate) fn count(&mut self, bytes: u64) {
        self.files += 1;
        self.bytes += bytes;
    }

    /// Inputs counted since the last event.
    pub(crate) fn pending(&self) -> u64 {
        self.files
    }

    /// The event for the inputs counted since the last one, if any.
    pub(crate) fn take(&mut self) -> Option<Event> {
        let ScannedTally { files, bytes } = std::mem::take(self);
        (files > 0).then_some(Event::Scanned { files, bytes })
    }
}

pub(crate) const BINARY_PROBE: usize = 8 * 1024;

/// Whether `buf` looks binary: a NUL byte in its first 8 KiB.
pub fn is_binary(buf: &[u8]) -> bool {
    memchr::memchr(0, &buf[..buf.len().min(BINARY_PROBE)]).is_some()
}

/// The archive format of `head`, the first bytes of `name`, when archives
/// are opened and it is one.
pub(crate) fn archive_format(engine: &Engine, name: &str, head: &[u8]) -> Option<archive::Format> {
    engine
        .archives()
        .enabled()
        .then(|| archive::detect(name, head))
        .flatten()
}

/// Scan the content `buf` of the archive `name` member by member; false
/// when the receiver is gone.
pub(crate) fn scan_archive(
    engine: &Engine,
    name: &str,
    (format, buf): (archive::Format, &[u8]),
    max_file_size: u64,
    parts: (&mut Scratch, &mut Vec<RawMatch>),
    emit: &mut dyn FnMut(Event) -> bool,
) -> bool {
    let reader = std::io::Cursor::new(buf);
    archive::scan(engine, name, format, reader, max_file_size, parts, emit)
}

/// Scan one buffer and hand every finding to `emit`.
pub fn scan_buffer(
    engine: &Engine,
    path: &str,
    buf: &[u8],
    scratch: &mut Scratch,
    matches: &mut Vec<RawMatch>,
    emit: impl FnMut(Finding),
) {
    matches.clear();
    engine.scan_into(Some(path), buf, scratch, matches);
    emit_findings(engine, path, buf, matches, emit);
}

/// The findings of `matches` in `buf`, the content of `path`.
pub(crate) fn emit_findings(
    engine: &Engine,
    path: &str,
    buf: &[u8],
    matches: &[RawMatch],
    mut emit: impl FnMut(Finding),
) {
    let mut lines = LineIndex::new();
    for m in matches {
        emit(Finding::new(
            &engine.rules()[m.rule],
            path,
            buf,
            m,
            &mut lines,
        ));
    }
}

/// Scan everything `reader` yields (stdin) under the display name `name`:
/// as a stream of `chunk`-byte pieces, however long it is, or, when the
/// caller set a `limit` (`u64::MAX` for none), whole, skipping it if it is
/// longer.
pub fn scan_reader(
    engine: &Engine,
    name: &str,
    reader: impl Read,
    (limit, chunk): (u64, usize),
    mut on_event: impl FnMut(Event),
) {
    let mut scratch = Scratch::default();
    let mut matches = Vec::new();
    // An archive piped in is opened like a file: its first bytes tell.
    let mut reader = reader;
    let mut head = Vec::with_capacity(512);
    if engine.archives().enabled() {
        if let Err(e) = (&mut reader).take(512).read_to_end(&mut head) {
            on_event(Event::error(name.to_string(), e.to_string()));
            return;
        }
        if let Some(format) = archive_format(engine, name, &head) {
            // A zip is read from its end: the stream is held whole, within
            // the archive bound (the compressed size is below it).
            let cap = engine.archives().max_bytes.min(limit);
            let read = (&mut reader).take(cap).read_to_end(&mut head);
            if let Err(e) = read {
                on_event(Event::error(name.to_string(), e.to_string()));
                return;
            }
            let mut emit = |ev| {
                on_event(ev);
                true
            };
            let parts = (&mut scratch, &mut matches);
            scan_archive(engine, name, (format, &head), limit, parts, &mut emit);
            return;
        }
    }
    let reader = std::io::Cursor::new(head).chain(reader);
    if limit == u64::MAX {
        let mut emit = |ev| {
            on_event(ev);
            true
        };
        let parts = (&mut scratch, &mut matches);
        if let Err(e) = stream::scan_stream(engine, name, reader, chunk, parts, &mut emit) {
            on_event(Event::error(name.to_string(), e.to_string()));
        }
        return;
    }
    let mut buf = Vec::new();
    let read = reader.take(limit.saturating_add(1)).read_to_end(&mut buf);
    if let Err(e) = read {
        on_event(Event::error(name.to_string(), e.to_string()));
        return;
    }
    if let Some(reason) = SkipReason::of(&buf, limit) {
        on_event(Event::Skipped {
            path: name.to_string(),
            reason,
        });
        return;
    }
    scan_buffer(engine, name, &buf, &mut scratch, &mut matches, |f| {
        on_event(Event::Finding(Box::new(f)))
    });
    on_event(Event::scanned(buf.len() as u64));
}
