//! The audit log: append-only JSONL, one record per step the responder
//! takes, chained by hash so that a removed or edited line is detected.
//!
//! Secret values never appear in clear: [`AuditLog::secret_ref`] turns one
//! into `hmac-sha256:<hex>` under the configured key, as Vault's audit
//! device does, so that two records about the same secret can be matched
//! without revealing it. Each record carries `prev`, the SHA-256 of the
//! previous line (64 zeros for the first), and `keyburn audit verify`
//! recomputes the chain.
//!
//! Appends are whole lines or nothing: a write that fails (a full disk) is
//! cut back to the last complete record. A torn final line left by a crash
//! mid-write is moved aside to `<log>.torn-<time>` when the log is opened
//! (see [`AuditLog::repaired`]), and the chain continues from the last
//! intact record. The head (record count and last hash) is also kept apart
//! from the log, as an [`Anchor`] in the queue database, so that a
//! truncated log or a recomputed chain is caught by [`verify_anchored`].

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: line {line}: {message}")]
    Broken {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("the audit HMAC key is empty")]
    EmptyKey,
    #[error("{path}: {message}")]
    Anchor { path: PathBuf, message: String },
    #[error("audit log (PostgreSQL): {0}")]
    Postgres(#[from] postgres::Error),
    #[error("audit log: {0}")]
    Database(String),
}

/// The log's head as last recorded apart from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub records: u64,
    /// SHA-256 of record number `records` (the last one).
    pub head: String,
}

/// One step, as written. Fields other than these go in `detail`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// RFC 3339, UTC.
    pub time: String,
    /// What happened: `webhook.accepted`, `alert.fetched`, `revoke`, ...
    pub event: String,
    /// Who acted: `keyburn-serve`, or the user running the CLI.
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
    /// `owner/repo#number`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    pub outcome: String,
    /// `hmac-sha256:<hex>` of the secret concerned, never the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub detail: Map<String, Value>,
}

/// An open audit log: a file in the data directory, or (with a shared
/// PostgreSQL queue) a table that every replica appends to. Appends are
/// serialized and durable (fsync, or a committed transaction) before
/// `append` returns.
pub struct AuditLog {
    key: Vec<u8>,
    sink: Sink,
    /// Where a torn final record was moved when the log was opened.
    repaired: Option<PathBuf>,
    /// How the log, when opened, failed to match its anchor.
    anchor_mismatch: Option<AuditError>,
    /// Whether the last append was stored.
    writable: AtomicBool,
}

enum Sink {
    File(Mutex<FileLog>),
    /// Appends go to the committer thread, which writes whatever is
    /// waiting in one transaction (group commit: the head row's lock, held
    /// across replicas, is taken once per batch, not per record).
    Postgres(Mutex<std::sync::mpsc::Sender<Append>>),
}

/// Records to append, and where to say how it went.
type Append = (Vec<Record>, Reply);

/// How the committer answers: a thread waits on a channel, a task on a
/// oneshot (so that async callers do not block a runtime thread).
enum Reply {
    Thread(std::sync::mpsc::SyncSender<Result<(), String>>),
    Task(tokio::sync::oneshot::Sender<Result<(), String>>),
}

impl Reply {
    fn send(self, result: Result<(), String>) {
        let _ = match self {
            Reply::Thread(tx) => tx.send(result).map_err(drop),
            Reply::Task(tx) => tx.send(result).map_err(drop),
        };
    }
}

/// Largest group commit of audit records.
const AUDIT_BATCH: usize = 1024;

struct FileLog {
    path: PathBuf,
    file: File,
    prev: String,
    records: u64,
    /// Length of the log up to its last complete record.
    len: u64,
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

impl AuditLog {
    /// Open (or create) the log at `path`, checking its chain so that new
    /// records continue it. A torn final line is moved aside first.
    pub fn open(path: &Path, key: &[u8]) -> Result<AuditLog, AuditError> {
        AuditLog::open_anchored(path, key, None)
    }

    /// [`AuditLog::open`], checking the log against `anchor` in the same
    /// read: a mismatch does not stop the log from opening (the service
    /// goes on), it is kept for [`AuditLog::anchor_mismatch`].
    pub fn open_anchored(
        path: &Path,
        key: &[u8],
        anchor: Option<&Anchor>,
    ) -> Result<AuditLog, AuditError> {
        if key.is_empty() {
            return Err(AuditError::EmptyKey);
        }
        let io = |source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        };
        let repaired = if path.exists() {
            cut_torn_tail(path)?
        } else {
            None
        };
        let v = if path.exists() {
            verify(path)?
        } else {
            Verified::default()
        };
        let anchor_mismatch = anchor.and_then(|a| check_anchor(path, &v, a).err());
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        Ok(AuditLog {
            key: key.to_vec(),
            sink: Sink::File(Mutex::new(FileLog {
                path: path.to_path_buf(),
                file,
                prev: v.last_hash().to_string(),
                records: v.records() as u64,
                len,
            })),
            repaired,
            anchor_mismatch,
            writable: AtomicBool::new(true),
        })
    }

    /// The log kept in the PostgreSQL database at `url` (its tables are
    /// created by [`crate::queue::Queue::connect`]): replicas append to
    /// one chain, each append holding the head row's lock.
    pub fn connect(url: &str, key: &[u8]) -> Result<AuditLog, AuditError> {
        if key.is_empty() {
            return Err(AuditError::EmptyKey);
        }
        let client = crate::queue::blocking(|| crate::queue::connect_postgres(url))
            .map_err(|e| AuditError::Database(e.to_string()))?;
        let (tx, rx) = std::sync::mpsc::channel();
        let url = url.to_string();
        std::thread::Builder::new()
            .name("keyburn-audit".into())
            .spawn(move || commit_postgres(client, &url, rx))
            .map_err(|e| AuditError::Database(e.to_string()))?;
        Ok(AuditLog {
            key: key.to_vec(),
            sink: Sink::Postgres(Mutex::new(tx)),
            repaired: None,
            anchor_mismatch: None,
            writable: AtomicBool::new(true),
        })
    }

    /// Where a torn final record was moved aside when the log was opened.
    pub fn repaired(&self) -> Option<&Path> {
        self.repaired.as_deref()
    }

    /// How the log failed to match the anchor it was opened with.
    pub fn anchor_mismatch(&self) -> Option<&AuditError> {
        self.anchor_mismatch.as_ref()
    }

    /// The head to anchor apart from a file log: records written and the
    /// last one's hash. `None` for a log in the database, whose head row
    /// is its anchor.
    pub fn anchor(&self) -> Option<Anchor> {
        match &self.sink {
            Sink::File(f) => {
                let f = f.lock().unwrap_or_else(|e| e.into_inner());
                Some(Anchor {
                    records: f.records,
                    head: f.prev.clone(),
                })
            }
            Sink::Postgres(_) => None,
        }
    }

    /// Whether the last append was stored (for `/readyz`).
    pub fn writable(&self) -> bool {
        self.writable.load(Ordering::Relaxed)
    }

    /// `hmac-sha256:<hex>` of `secret` under the log's key.
    pub fn secret_ref(&self, secret: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(secret.as_bytes());
        format!("hmac-sha256:{}", hex::encode(mac.finalize().into_bytes()))
    }

    /// Append one record (its `time` is set if empty) and sync it to disk.
    pub fn append(&self, record: Record) -> Result<(), AuditError> {
        self.append_all(vec![record])
    }

    /// Append records in order with one sync for all of them.
    pub fn append_all(&self, records: Vec<Record>) -> Result<(), AuditError> {
        let result = match &self.sink {
            Sink::File(f) => {
                let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
                f.append(records)
            }
            Sink::Postgres(tx) => {
                let (reply, done) = std::sync::mpsc::sync_channel(1);
                let sent = tx
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .send((records, Reply::Thread(reply)));
                match sent {
                    Ok(()) => crate::queue::blocking(|| done.recv())
                        .unwrap_or_else(|_| Err("the audit committer stopped".into()))
                        .map_err(AuditError::Database),
                    Err(_) => Err(AuditError::Database("the audit committer stopped".into())),
                }
            }
        };
        self.writable.store(result.is_ok(), Ordering::Relaxed);
        result
    }
}

impl AuditLog {
    /// [`AuditLog::append_all`] for async callers: a log in PostgreSQL is
    /// awaited rather than blocked on (a file is written in place, as
    /// before: an fsync is short).
    pub async fn append_async(&self, records: Vec<Record>) -> Result<(), AuditError> {
        let Sink::Postgres(tx) = &self.sink else {
            return self.append_all(records);
        };
        let (reply, done) = tokio::sync::oneshot::channel();
        let sent = tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send((records, Reply::Task(reply)));
        let result = match sent {
            Ok(()) => done
                .await
                .unwrap_or_else(|_| Err("the audit committer stopped".into()))
                .map_err(AuditError::Database),
            Err(_) => Err(AuditError::Database("the audit committer stopped".into())),
        };
        self.writable.store(result.is_ok(), Ordering::Relaxed);
        result
    }
}

/// Chain `records` after `prev`: their lines, and the new head.
fn chain(records: Vec<Record>, mut prev: String) -> (Vec<String>, String) {
    let lines = records
        .into_iter()
        .map(|record| {
            let mut obj = match serde_json::to_value(stamped(record)) {
                Ok(Value::Object(o)) => o,
                _ => Map::new(),
            };
            obj.insert("prev".into(), Value::String(prev.clone()));
            let line = serde_json::to_string(&obj).unwrap_or_default();
            prev = hex::encode(Sha256::digest(line.as_bytes()));
            line
        })
        .collect();
    (lines, prev)
}

impl FileLog {
    fn append(&mut self, records: Vec<Record>) -> Result<(), AuditError> {
        let count = records.len() as u64;
        let (lines, prev) = chain(records, self.prev.clone());
        let mut text = lines.join("\n");
        text.push('\n');
        let written = self
            .file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.sync_data());
        if let Err(source) = written {
            // Whole records or none: cut back whatever part reached the
            // file, so the next append starts on a line of its own.
            let _ = self.file.set_len(self.len);
            return Err(AuditError::Io {
                path: self.path.clone(),
                source,
            });
        }
        self.len += text.len() as u64;
        self.records += count;
        self.prev = prev;
        Ok(())
    }
}

/// The committer thread of a log in PostgreSQL: takes what is waiting,
/// appends it in one transaction, answers every caller; reconnects when
/// the connection is gone. Stops when the log is dropped.
fn commit_postgres(mut client: postgres::Client, url: &str, rx: std::sync::mpsc::Receiver<Append>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        let mut count = batch[0].0.len();
        while count < AUDIT_BATCH {
            match rx.try_recv() {
                Ok(a) => {
                    count += a.0.len();
                    batch.push(a);
                }
                Err(_) => break,
            }
        }
        let (records, replies): (Vec<Vec<Record>>, Vec<_>) = batch.into_iter().unzip();
        let result = append_postgres(&mut client, records.into_iter().flatten().collect())
            .map_err(|e| e.to_string());
        if result.is_err() && client.is_closed() {
            if let Ok(fresh) = crate::queue::connect_postgres(url) {
                tracing::warn!("audit log: reconnected to PostgreSQL");
                client = fresh;
            }
        }
        for reply in replies {
            reply.send(result.clone());
        }
    }
}

/// One call of `keyburn_audit_append` (created with the queue's tables):
/// the server locks the head row, chains the records after it, inserts
/// them and moves the head, in one round trip, so that the lock replicas
/// wait on is held for no client's network time.
fn append_postgres(c: &mut postgres::Client, records: Vec<Record>) -> Result<(), AuditError> {
    let json: Vec<String> = records.into_iter().map(record_json).collect();
    c.query_one("SELECT keyburn_audit_append($1::text[])", &[&json])?;
    Ok(())
}

/// A record as `keyburn_audit_append` takes it: a JSON object, its time
/// set.
pub fn record_json(record: Record) -> String {
    serde_json::to_string(&stamped(record))
        .unwrap_or_else(|_| r#"{"event":"unserializable"}"#.into())
}

/// The record with its time set, if it had none.
fn stamped(mut record: Record) -> Record {
    if record.time.is_empty() {
        record.time = now();
    }
    record
}

/// Check the log kept in PostgreSQL: every record in sequence, chained,
/// and the head row naming the last one (else records were removed from
/// the end, or the chain recomputed).
pub fn verify_postgres(url: &str) -> Result<Verified, AuditError> {
    let mut c =
        crate::queue::connect_postgres(url).map_err(|e| AuditError::Database(e.to_string()))?;
    let what = PathBuf::from("postgres:audit_log");
    let broken = |line: usize, message: String| AuditError::Broken {
        path: what.clone(),
        line,
        message,
    };
    let mut v = Verified::default();
    loop {
        let rows = c.query(
            "SELECT seq, line FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT 10000",
            &[&(v.records() as i64)],
        )?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            let (seq, line): (i64, String) = (row.try_get(0)?, row.try_get(1)?);
            let n = v.records() + 1;
            if seq != n as i64 {
                return Err(broken(n, format!("record {n} is missing (next is {seq})")));
            }
            v.push(&line).map_err(|message| broken(n, message))?;
        }
    }
    let head = c.query_one("SELECT records, head FROM audit_anchor WHERE id = 1", &[])?;
    let anchor = Anchor {
        records: head.try_get::<_, i64>(0)? as u64,
        head: head.try_get(1)?,
    };
    check_anchor(&what, &v, &anchor)?;
    Ok(v)
}

/// The current time, RFC 3339 UTC.
pub fn now() -> String {
    // Whole seconds, as every record has always carried.
    jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// What [`verify`] found in an intact log.
#[derive(Debug, Default)]
pub struct Verified {
    /// SHA-256 of each line, in order.
    hashes: Vec<String>,
}

impl Verified {
    pub fn records(&self) -> usize {
        self.hashes.len()
    }

    /// SHA-256 of the last line (what the next record's `prev` must be).
    pub fn last_hash(&self) -> &str {
        self.hashes.last().map_or(GENESIS, String::as_str)
    }

    /// Take the next line of the chain: a JSON record whose `prev` is the
    /// hash of the line before. The message says why it is not.
    fn push(&mut self, line: &str) -> Result<(), String> {
        let obj: Map<String, Value> =
            serde_json::from_str(line).map_err(|e| format!("not a JSON record: {e}"))?;
        let got = obj.get("prev").and_then(Value::as_str).unwrap_or("");
        let prev = self.last_hash();
        if got != prev {
            return Err(format!(
                "chain broken: prev is {got:?}, the record before hashes to {prev}"
            ));
        }
        self.hashes
            .push(hex::encode(Sha256::digest(line.as_bytes())));
        Ok(())
    }
}

/// Check every line of the log: valid JSON, `prev` equal to the hash of the
/// line before. Names the first line that breaks the chain.
pub fn verify(path: &Path) -> Result<Verified, AuditError> {
    let file = File::open(path).map_err(|source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut v = Verified::default();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let broken = |message: String| AuditError::Broken {
            path: path.to_path_buf(),
            line: i + 1,
            message,
        };
        let line = line.map_err(|e| broken(e.to_string()))?;
        v.push(&line).map_err(broken)?;
    }
    Ok(v)
}

/// [`verify`], then check the log against its anchor: it must hold at
/// least the anchored records (else it was truncated) and the anchored
/// record must hash to the anchored head (else the chain was recomputed).
/// Records after the anchor are the few written since it was last saved.
pub fn verify_anchored(path: &Path, anchor: &Anchor) -> Result<Verified, AuditError> {
    let v = verify(path)?;
    check_anchor(path, &v, anchor)?;
    Ok(v)
}

fn check_anchor(path: &Path, v: &Verified, anchor: &Anchor) -> Result<(), AuditError> {
    let bad = |message: String| AuditError::Anchor {
        path: path.to_path_buf(),
        message,
    };
    if anchor.records == 0 {
        return Ok(());
    }
    match v.hashes.get(anchor.records as usize - 1) {
        None => Err(bad(format!(
            "truncated: the anchor records {} records, the log holds {}",
            anchor.records,
            v.records()
        ))),
        Some(h) if *h != anchor.head => Err(bad(format!(
            "the chain was rewritten: record {} hashes to {h}, the anchor says {}",
            anchor.records, anchor.head
        ))),
        Some(_) => Ok(()),
    }
}

/// If the log's last line is torn (no final newline, or not JSON: a crash
/// or a full disk mid-write), move it to `<log>.torn-<time>` and cut the
/// log back to its last complete record. Returns where it went.
fn cut_torn_tail(path: &Path) -> Result<Option<PathBuf>, AuditError> {
    let io = |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    };
    let data = std::fs::read(path).map_err(io)?;
    let body_end = data.strip_suffix(b"\n").map_or(data.len(), <[u8]>::len);
    let last_start = data[..body_end]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let last = &data[last_start..];
    let complete = last.ends_with(b"\n")
        && serde_json::from_slice::<Map<String, Value>>(&last[..last.len() - 1]).is_ok();
    if last.is_empty() || complete {
        return Ok(None);
    }
    let stamp = now().replace(':', "");
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".torn-{stamp}"));
    let aside = PathBuf::from(aside);
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&aside).map_err(|source| AuditError::Io {
        path: aside.clone(),
        source,
    })?;
    f.write_all(last)
        .and_then(|()| f.sync_all())
        .map_err(|source| AuditError::Io {
            path: aside.clone(),
            source,
        })?;
    let log = OpenOptions::new().write(true).open(path).map_err(io)?;
    log.set_len(last_start as u64)
        .and_then(|()| log.sync_all())
        .map_err(io)?;
    Ok(Some(aside))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(event: &str) -> Record {
        Record {
            event: event.into(),
            actor: "test".into(),
            outcome: "ok".into(),
            ..Record::default()
        }
    }

    #[test]
    fn records_chain_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path, b"k").unwrap();
        log.append(record("a")).unwrap();
        log.append(record("b")).unwrap();
        drop(log);
        let log = AuditLog::open(&path, b"k").unwrap();
        log.append(record("c")).unwrap();
        assert_eq!(verify(&path).unwrap().records(), 3);
    }

    #[test]
    fn an_edited_or_removed_line_breaks_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path, b"k").unwrap();
        for e in ["a", "b", "c"] {
            log.append(record(e)).unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();

        std::fs::write(&path, format!("{}\n{}\n", lines[0], lines[2])).unwrap();
        let err = verify(&path).unwrap_err().to_string();
        assert!(
            err.contains("line 2") && err.contains("chain broken"),
            "{err}"
        );

        let edited = text.replacen("\"outcome\":\"ok\"", "\"outcome\":\"no\"", 1);
        std::fs::write(&path, edited).unwrap();
        let err = verify(&path).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        // A broken log refuses new records rather than extending a lie.
        assert!(AuditLog::open(&path, b"k").is_err());
    }

    #[test]
    fn a_torn_final_record_is_moved_aside_and_the_chain_continues() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path, b"k").unwrap();
        log.append(record("a")).unwrap();
        log.append(record("b")).unwrap();
        drop(log);
        let intact = std::fs::read(&path).unwrap();
        let mut torn = intact.clone();
        torn.extend_from_slice(br#"{"time":"2026-12-01T00:00:00Z","event":"rev"#);
        std::fs::write(&path, &torn).unwrap();
        assert!(verify(&path).is_err(), "a torn line fails verification");

        let log = AuditLog::open(&path, b"k").unwrap();
        let aside = log.repaired().expect("repaired").to_path_buf();
        assert_eq!(
            std::fs::read(&aside).unwrap(),
            &torn[intact.len()..],
            "the torn bytes are kept"
        );
        log.append(record("c")).unwrap();
        assert_eq!(verify(&path).unwrap().records(), 3);
        drop(log);
        let again = AuditLog::open(&path, b"k").unwrap();
        assert!(again.repaired().is_none(), "an intact log is left alone");

        // A torn line in the middle is not a torn tail: still refused.
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        std::fs::write(&path, format!("{}\n{{\"half\n{}\n", lines[0], lines[1])).unwrap();
        assert!(AuditLog::open(&path, b"k").is_err());
    }

    #[test]
    fn the_anchor_catches_truncation_and_a_recomputed_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path, b"k").unwrap();
        for e in ["a", "b", "c"] {
            log.append(record(e)).unwrap();
        }
        let anchor = log.anchor().expect("a file log has an anchor");
        assert_eq!(anchor.records, 3);
        log.append(record("d")).unwrap();
        drop(log);
        assert_eq!(verify_anchored(&path, &anchor).unwrap().records(), 4);

        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        std::fs::write(&path, format!("{}\n{}\n", lines[0], lines[1])).unwrap();
        assert!(verify(&path).is_ok(), "a cut chain is still a chain");
        let err = verify_anchored(&path, &anchor).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
        // Opened with its anchor, the log still opens, and says so.
        let reopened = AuditLog::open_anchored(&path, b"k", Some(&anchor)).unwrap();
        let said = reopened.anchor_mismatch().map(ToString::to_string);
        assert!(said.is_some_and(|e| e.contains("truncated")));
        drop(reopened);

        // Rewrite the log from scratch with an edited record: the chain
        // verifies, the anchor does not.
        std::fs::remove_file(&path).unwrap();
        let forged = AuditLog::open(&path, b"k").unwrap();
        for e in ["a", "b-edited", "c", "d"] {
            forged.append(record(e)).unwrap();
        }
        assert!(verify(&path).is_ok());
        let err = verify_anchored(&path, &anchor).unwrap_err().to_string();
        assert!(err.contains("rewritten"), "{err}");
    }

    #[test]
    fn secrets_are_keyed_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let a = AuditLog::open(&dir.path().join("a"), b"key-one").unwrap();
        let b = AuditLog::open(&dir.path().join("b"), b"key-two").unwrap();
        let secret = format!("{}{}", "ghp_", "x".repeat(36));
        let r = a.secret_ref(&secret);
        assert!(r.starts_with("hmac-sha256:") && r.len() == 12 + 64, "{r}");
        assert!(!r.contains(&secret));
        assert_eq!(
            r,
            a.secret_ref(&secret),
            "same key, same secret: correlatable"
        );
        assert_ne!(r, b.secret_ref(&secret), "another key gives another value");
    }
}
