//! The filesystem source: a parallel directory walk (the `ignore` crate, as in
//! ripgrep) that reads each regular file into a per-thread buffer and scans
//! it, or takes the matches of an earlier file with the same bytes (see
//! [`seen`](super::seen)). Memory is bounded by threads × the largest file
//! accepted, and the index of content seen; no content is kept across
//! files.

use std::fs::File;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ignore::{WalkBuilder, WalkState};

use super::seen::{self, SeenContent, Variant};
use super::{
    archive, archive_format, emit_findings, scan_archive, scan_buffer, stream, Event, ScannedTally,
    SkipReason,
};
use crate::engine::{Engine, Scratch};
use crate::finding::Finding;

/// How to walk. The defaults suit scanning a checkout: honour ignore files,
/// include hidden files (`.env`, `.npmrc`...), do not follow symlinks.
#[derive(Debug, Clone)]
pub struct WalkOptions {
    /// Scan files that .gitignore/.ignore/.keyburnignore exclude.
    pub no_ignore: bool,
    pub follow_links: bool,
    /// Files larger than this are skipped with an event (`u64::MAX`, the
    /// default: none is).
    pub max_file_size: u64,
    /// Files larger than this are read and scanned this many bytes at a
    /// time (see [`CHUNK`](super::CHUNK)).
    pub chunk: usize,
    /// Worker threads; 0 picks one per core.
    pub threads: usize,
}

impl Default for WalkOptions {
    fn default() -> Self {
        WalkOptions {
            no_ignore: false,
            follow_links: false,
            max_file_size: u64::MAX,
            chunk: super::CHUNK,
            threads: 0,
        }
    }
}

/// Which files of a walk are scanned, and under which name. A plain walk
/// scans every file; a git work tree's pass scans only what differs from
/// HEAD (see `sources::git`).
pub(crate) trait Select: Send + Sync {
    /// Decide from the metadata alone; `None` asks to see the content.
    fn by_metadata(&self, _path: &Path, _meta: &std::fs::Metadata) -> Option<bool> {
        Some(true)
    }

    /// Decide from the content, when the metadata could not.
    fn by_content(&self, _path: &Path, _content: &[u8]) -> bool {
        true
    }

    /// Whether to leave directory `dir` out entirely.
    fn prune(&self, _dir: &Path) -> bool {
        false
    }

    /// The name a file is reported under.
    fn name(&self, path: &Path) -> String {
        display_path(path)
    }
}

/// Every file, under the path it was reached by.
struct Everything;

impl Select for Everything {}

/// Walk `paths` (files or directories) and scan every regular file, calling
/// `on_event` on the calling thread for every event. Returns when done.
pub fn walk(engine: &Engine, paths: &[PathBuf], opts: &WalkOptions, on_event: impl FnMut(Event)) {
    walk_selected(engine, paths, opts, Arc::new(Everything), on_event)
}

/// [`walk`], scanning only the files `select` picks.
pub(crate) fn walk_selected(
    engine: &Engine,
    paths: &[PathBuf],
    opts: &WalkOptions,
    select: Arc<dyn Select>,
    mut on_event: impl FnMut(Event),
) {
    let Some((first, rest)) = paths.split_first() else {
        return;
    };
    // One regular file named on the command line (a hook, an editor on
    // save): scanned on this thread, without starting the walker's.
    if rest.is_empty() && std::fs::symlink_metadata(first).is_ok_and(|m| m.is_file()) {
        let mut worker = Worker::new(engine, select, opts, None);
        let on_event = std::cell::RefCell::new(on_event);
        worker.scan_file(first, &|ev| {
            (on_event.borrow_mut())(ev);
            true
        });
        if let Some(ev) = worker.scanned.take() {
            (on_event.borrow_mut())(ev);
        }
        return;
    }
    let mut builder = WalkBuilder::new(first);
    for p in rest {
        builder.add(p);
    }
    builder
        .hidden(false)
        .ignore(!opts.no_ignore)
        .git_ignore(!opts.no_ignore)
        .git_global(!opts.no_ignore)
        .git_exclude(!opts.no_ignore)
        .parents(!opts.no_ignore)
        .require_git(false)
        .follow_links(opts.follow_links)
        .threads(opts.threads)
        .filter_entry({
            let select = Arc::clone(&select);
            move |e| {
                e.file_name() != ".git"
                    && !(e.file_type().is_some_and(|t| t.is_dir()) && select.prune(e.path()))
            }
        });
    if !opts.no_ignore {
        builder.add_custom_ignore_filename(".keyburnignore");
    }
    let (tx, rx) = crossbeam_channel::bounded::<Event>(1024);
    let seen = SeenContent::default();
    let seen = &seen;
    std::thread::scope(|s| {
        s.spawn(move || {
            builder.build_parallel().run(|| {
                let mut walker = Walker {
                    worker: Worker::new(engine, Arc::clone(&select), opts, Some(seen)),
                    tx: tx.clone(),
                };
                Box::new(move |entry| {
                    let Walker { worker, tx } = &mut walker;
                    let send = |ev| tx.send(ev).is_ok();
                    let ok = match entry {
                        Ok(e) => {
                            // With follow_links off, a symlink is neither a file
                            // nor a directory here, so it is skipped.
                            if e.file_type().is_some_and(|t| t.is_file()) {
                                worker.scan_file(e.path(), &send)
                            } else {
                                true
                            }
                        }
                        Err(err) => send(Event::error(error_path(&err), error_message(&err))),
                    };
                    if ok {
                        WalkState::Continue
                    } else {
                        WalkState::Quit
                    }
                })
            });
        });
        for ev in rx {
            on_event(ev);
        }
    });
}

/// A walking thread's worker and its way to the receiving thread, which
/// the files it scanned but has not reported yet are sent on when the
/// walk drops it.
struct Walker<'a> {
    worker: Worker<'a>,
    tx: crossbeam_channel::Sender<Event>,
}

impl Drop for Walker<'_> {
    fn drop(&mut self) {
        if let Some(ev) = self.worker.scanned.take() {
            let _ = self.tx.send(ev);
        }
    }
}

struct Worker<'a> {
    engine: &'a Engine,
    select: Arc<dyn Select>,
    max: u64,
    chunk: usize,
    buf: Vec<u8>,
    scratch: Scratch,
    matches: Vec<crate::engine::RawMatch>,
    scanned: ScannedTally,
    /// The walk's index of content scanned, and what comparing a file
    /// with an earlier copy and noting path answers need.
    seen: Option<&'a SeenContent>,
    block: Vec<u8>,
    asked: Vec<(usize, bool)>,
}

/// Files scanned in a batch reported by one event.
const SCANNED_BATCH: u64 = 64;

impl<'a> Worker<'a> {
    fn new(
        engine: &'a Engine,
        select: Arc<dyn Select>,
        opts: &WalkOptions,
        seen: Option<&'a SeenContent>,
    ) -> Worker<'a> {
        Worker {
            engine,
            select,
            max: opts.max_file_size,
            chunk: opts.chunk,
            buf: Vec::new(),
            scratch: Scratch::default(),
            matches: Vec::new(),
            scanned: ScannedTally::default(),
            seen,
            block: Vec::new(),
            asked: Vec::new(),
        }
    }

    /// Report the path-only rules matching `name`; false when the receiver
    /// is gone.
    fn path_findings(&self, name: &str, send: &impl Fn(Event) -> bool) -> bool {
        self.engine.path_findings(name).into_iter().all(|r| {
            let f = Finding::for_path(&self.engine.rules()[r], name);
            send(Event::Finding(Box::new(f)))
        })
    }

    /// Scan one file; false when the receiver is gone.
    fn scan_file(&mut self, path: &Path, send: &impl Fn(Event) -> bool) -> bool {
        let name = self.select.name(path);
        let err = |e: std::io::Error| Event::error(name.clone(), e.to_string());
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) => return send(err(e)),
        };
        let meta = match file.metadata() {
            Ok(m) => m,
            Err(e) => return send(err(e)),
        };
        let wanted = self.select.by_metadata(path, &meta);
        if wanted == Some(false) {
            return true;
        }
        // Path-only rules judge a file by its name: binary or not, large
        // or not (a keystore).
        if wanted == Some(true) && !self.path_findings(&name, send) {
            return false;
        }
        let size = meta.len();
        if let Some(reason) = SkipReason::too_large(size, self.max) {
            return send(Event::Skipped { path: name, reason });
        }
        if size > self.chunk as u64 && wanted == Some(true) {
            // Too big to hold at once: an archive is read member by member,
            // anything else as a stream of chunks.
            let mut emit = |ev| send(ev);
            let parts = (&mut self.scratch, &mut self.matches);
            let archive = match peek_archive(self.engine, &name, &mut file) {
                Ok(a) => a,
                Err(e) => return send(err(e)),
            };
            if let Some(format) = archive {
                let reader = std::io::BufReader::new(file);
                return archive::scan(
                    self.engine,
                    &name,
                    format,
                    reader,
                    self.max,
                    parts,
                    &mut emit,
                );
            }
            return match stream::scan_stream(self.engine, &name, file, self.chunk, parts, &mut emit)
            {
                Ok(()) => true,
                Err(e) => send(err(e)),
            };
        }
        if let Err(e) = read_opened(&mut file, size, self.max, &mut self.buf) {
            return send(err(e));
        }
        if wanted.is_none() {
            if !self.select.by_content(path, &self.buf) {
                return true;
            }
            if !self.path_findings(&name, send) {
                return false;
            }
        }
        if let Some(format) = archive_format(self.engine, &name, &self.buf) {
            let mut emit = |ev| send(ev);
            let parts = (&mut self.scratch, &mut self.matches);
            let content = (format, self.buf.as_slice());
            return scan_archive(self.engine, &name, content, self.max, parts, &mut emit);
        }
        // `take` kept the size within the limit: only the binary check can
        // still skip the file.
        if let Some(reason) = SkipReason::of(&self.buf, self.max) {
            return send(Event::Skipped { path: name, reason });
        }
        let mut alive = true;
        self.scan_content(path, &name, |f| alive &= send(Event::Finding(Box::new(f))));
        self.scanned.count(self.buf.len() as u64);
        if self.scanned.pending() < SCANNED_BATCH {
            return alive;
        }
        alive && self.scanned.take().is_none_or(send)
    }
}

impl Worker<'_> {
    /// Scan the content of `path` (read into `self.buf`), reported as
    /// `name`, or take the matches of an earlier file with the same bytes
    /// whose path gets the same answers from the rules that asked.
    fn scan_content(&mut self, path: &Path, name: &str, emit: impl FnMut(Finding)) {
        let engine = self.engine;
        let mut index = self
            .seen
            .filter(|_| self.buf.len() >= seen::MIN_LEN)
            .map(|seen| (seen, SeenContent::key(&self.buf)));
        if let Some(known) = index.and_then(|(seen, key)| seen.get(key)) {
            if !seen::holds(&known.first, &self.buf, &mut self.block) {
                // A collision, or the first file changed since: scanned,
                // not remembered.
                index = None;
            } else if let Some(v) = known
                .variants
                .iter()
                .find(|v| engine.answers_alike(name, &v.asked))
            {
                return emit_findings(engine, name, &self.buf, &v.matches, emit);
            }
        }
        let Some((seen, key)) = index else {
            let (scratch, matches) = (&mut self.scratch, &mut self.matches);
            return scan_buffer(engine, name, &self.buf, scratch, matches, emit);
        };
        self.matches.clear();
        let scratch = &mut self.scratch;
        if engine.scan_noting_paths(name, &self.buf, scratch, &mut self.matches, &mut self.asked) {
            let variant = Variant {
                asked: self.asked.clone(),
                matches: self.matches.clone(),
            };
            seen.remember(key, path, variant);
        }
        emit_findings(engine, name, &self.buf, &self.matches, emit);
    }
}

/// Read into `buf` the `size` bytes `file` had when it was opened (at most
/// `max`), with one read for most files: reading to the end takes a
/// second read to learn that there is no more, one system call per file
/// (a file that grows meanwhile is read as it was opened). A file that
/// says it is empty (a kernel's pseudo-file) is read to its end.
fn read_opened(file: &mut File, size: u64, max: u64, buf: &mut Vec<u8>) -> std::io::Result<()> {
    if size == 0 {
        buf.clear();
        // `take` bounds memory even if the file is endless.
        file.take(max).read_to_end(buf)?;
        return Ok(());
    }
    let len = usize::try_from(size.min(max)).unwrap_or(usize::MAX);
    // The buffer is reused: only bytes it never held are zeroed.
    if buf.len() < len {
        buf.resize(len, 0);
    } else {
        buf.truncate(len);
    }
    let mut filled = 0;
    while filled < len {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(())
}

/// Whether `file` is an archive, by its first bytes; the file is left at
/// its start either way.
fn peek_archive(
    engine: &Engine,
    name: &str,
    file: &mut File,
) -> std::io::Result<Option<archive::Format>> {
    if !engine.archives().enabled() {
        return Ok(None);
    }
    let mut head = Vec::with_capacity(512);
    (&mut *file).take(512).read_to_end(&mut head)?;
    file.seek(std::io::SeekFrom::Start(0))?;
    Ok(archive_format(engine, name, &head))
}

/// Paths as users expect to read them: forward slashes, no leading `./`.
pub(crate) fn display_path(path: &Path) -> String {
    let s = path.to_string_lossy();
    let s = s.strip_prefix("./").unwrap_or(&s);
    if std::path::MAIN_SEPARATOR == '\\' {
        s.replace('\\', "/")
    } else {
        s.to_string()
    }
}

fn error_path(err: &ignore::Error) -> String {
    match err {
        ignore::Error::WithPath { path, .. } => display_path(path),
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
            error_path(err)
        }
        ignore::Error::Loop { child, .. } => display_path(child),
        _ => String::new(),
    }
}

fn error_message(err: &ignore::Error) -> String {
    match err {
        ignore::Error::WithPath { err, .. }
        | ignore::Error::WithDepth { err, .. }
        | ignore::Error::WithLineNumber { err, .. } => error_message(err),
        ignore::Error::Loop { ancestor, .. } => {
            format!("symlink loop back to {}", display_path(ancestor))
        }
        other => other.to_string(),
    }
}
