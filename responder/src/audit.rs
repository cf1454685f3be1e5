//! The audit log: append-only JSONL, one record per step the responder
//! takes, chained by hash so that a removed or edited line is detected.
//!
//! Secret values never appear in clear: [`AuditLog::secret_ref`] turns one
//! into `hmac-sha256:<hex>` under the configured key, as Vault's audit
//! device does, so that two records about the same secret can be matched
//! without revealing it. Each record carries `prev`, the SHA-256 of the
//! previous line (64 zeros for the first), and `keyburn audit verify`
//! recomputes the chain.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
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

/// An open audit log. Appends are serialized and flushed to disk (fsync)
/// before `append` returns.
pub struct AuditLog {
    path: PathBuf,
    key: Vec<u8>,
    inner: Mutex<Inner>,
}

struct Inner {
    file: File,
    prev: String,
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

impl AuditLog {
    /// Open (or create) the log at `path`, checking its chain so that new
    /// records continue it.
    pub fn open(path: &Path, key: &[u8]) -> Result<AuditLog, AuditError> {
        if key.is_empty() {
            return Err(AuditError::EmptyKey);
        }
        let io = |source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        };
        let prev = if path.exists() {
            verify(path)?.last_hash
        } else {
            GENESIS.to_string()
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        Ok(AuditLog {
            path: path.to_path_buf(),
            key: key.to_vec(),
            inner: Mutex::new(Inner { file, prev }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
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
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = String::new();
        let mut prev = inner.prev.clone();
        for mut record in records {
            if record.time.is_empty() {
                record.time = now();
            }
            let mut obj = match serde_json::to_value(&record) {
                Ok(Value::Object(o)) => o,
                _ => Map::new(),
            };
            obj.insert("prev".into(), Value::String(prev));
            let line = serde_json::to_string(&obj).unwrap_or_default();
            prev = hex::encode(Sha256::digest(line.as_bytes()));
            text.push_str(&line);
            text.push('\n');
        }
        let io = |source| AuditError::Io {
            path: self.path.clone(),
            source,
        };
        inner.file.write_all(text.as_bytes()).map_err(io)?;
        inner.file.sync_data().map_err(io)?;
        inner.prev = prev;
        Ok(())
    }
}

/// The current time, RFC 3339 UTC.
pub fn now() -> String {
    // Whole seconds, as every record has always carried.
    jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// What [`verify`] found in an intact log.
#[derive(Debug)]
pub struct Verified {
    pub records: usize,
    /// SHA-256 of the last line (what the next record's `prev` must be).
    pub last_hash: String,
}

/// Check every line of the log: valid JSON, `prev` equal to the hash of the
/// line before. Names the first line that breaks the chain.
pub fn verify(path: &Path) -> Result<Verified, AuditError> {
    let file = File::open(path).map_err(|source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut prev = GENESIS.to_string();
    let mut records = 0;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let broken = |message: String| AuditError::Broken {
            path: path.to_path_buf(),
            line: i + 1,
            message,
        };
        let line = line.map_err(|e| broken(e.to_string()))?;
        let obj: Map<String, Value> =
            serde_json::from_str(&line).map_err(|e| broken(format!("not a JSON record: {e}")))?;
        let got = obj.get("prev").and_then(Value::as_str).unwrap_or("");
        if got != prev {
            return Err(broken(format!(
                "chain broken: prev is {got:?}, the line before hashes to {prev}"
            )));
        }
        prev = hex::encode(Sha256::digest(line.as_bytes()));
        records += 1;
    }
    Ok(Verified {
        records,
        last_hash: prev,
    })
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
        assert_eq!(verify(&path).unwrap().records, 3);
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
