//! The durable job queue: embedded SQLite (WAL, `synchronous=FULL`, so a
//! committed job survives a crash or power loss).
//!
//! A job is one alert to handle, identified by (repository, alert number):
//! a webhook delivery and the periodic reconciliation that lists open
//! alerts both enqueue through [`Queue::enqueue`], which deduplicates on the
//! delivery id (a redelivery never runs twice) and on the alert (while a job
//! for it is pending, another is not created). A job records the step it
//! reached; a worker that dies mid-step leaves the job `running` with an
//! expired lease, and the next [`Queue::claim`] takes it up again at that
//! step. Failed steps are retried with exponential backoff and jitter until
//! the retry budget is spent, then the job is `dead` until re-driven
//! (reconciliation, or `keyburn jobs retry`).
//!
//! Leases are fenced: every claim bumps the job's `fence`, the worker holds
//! a [`Lease`] (id and fence) and renews it while a step runs, and every
//! later change to the job names the lease. A worker whose lease was taken
//! over (it stalled past the lease) finds out at its next write
//! ([`QueueError::LeaseLost`]) and its late result is discarded.

use std::path::Path;
use std::time::Duration;

mod bulk;
mod db;

use db::{Db, Row, P};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("job queue: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("job queue (PostgreSQL): {0}")]
    Postgres(#[from] postgres::Error),
    #[error("job queue: not a PostgreSQL URL: {0}")]
    Url(String),
    #[error("job queue: no job {0}")]
    NoSuchJob(i64),
    #[error("job queue: job {id} is {state}, not dead")]
    NotDead { id: i64, state: String },
    #[error("job queue: worker thread failed: {0}")]
    Worker(String),
    #[error("job queue: job {0} is no longer held by this worker (its lease was taken over)")]
    LeaseLost(i64),
    #[error("job queue: full (queue_max_bytes); new deliveries wait while queued jobs finish")]
    Full,
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Queued,
    Running,
    Done,
    Dead,
}

impl State {
    pub const ALL: [State; 4] = [State::Queued, State::Running, State::Done, State::Dead];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Running => "running",
            State::Done => "done",
            State::Dead => "dead",
        }
    }

    fn parse(s: &str) -> State {
        match s {
            "running" => State::Running,
            "done" => State::Done,
            "dead" => State::Dead,
            _ => State::Queued,
        }
    }
}

/// A job as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub id: i64,
    pub repo: String,
    pub alert_number: u64,
    /// `webhook`, `reconcile`, `cli` or `partner`.
    pub source: String,
    pub delivery: Option<String>,
    /// The webhook's (or the alert listing's) JSON; never a secret in
    /// clear (a partner job's token is sealed: see [`crate::partner`]).
    pub payload: String,
    pub state: State,
    /// The next step to run.
    pub step: String,
    /// Failed attempts of the current step.
    pub attempts: u32,
    /// Unix milliseconds before which the job is not run.
    pub next_run_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// What earlier steps decided and found (JSON; never the secret).
    pub context: String,
    /// Bumped by every claim: the holder's token.
    pub fence: i64,
}

impl Job {
    /// The lease this job was claimed under.
    pub fn lease(&self) -> Lease {
        Lease {
            id: self.id,
            fence: self.fence,
        }
    }
}

/// A claimed job, as its worker holds it: every write names it, and is
/// refused once another worker has claimed the job since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub id: i64,
    pub fence: i64,
}

/// Why a step failed, for the retry decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Worth trying again later (timeouts, 429, 5xx, a full disk).
    Retryable,
    /// Trying again gives the same answer (400/401/403/404/422): dead now.
    Permanent,
}

/// A job to create.
#[derive(Debug, Clone)]
pub struct NewJob<'a> {
    pub delivery: Option<&'a str>,
    pub repo: &'a str,
    pub alert_number: u64,
    pub source: &'a str,
    pub payload: &'a str,
    /// The first step.
    pub step: &'a str,
}

/// What [`Queue::enqueue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    Created(i64),
    /// This delivery id was seen before (its job, if it made one).
    DuplicateDelivery(Option<i64>),
    /// A job for this alert is already pending; the delivery is recorded
    /// against it.
    AlreadyPending(i64),
}

/// Retry policy for failed steps.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    /// Attempts of one step before the job goes dead.
    pub attempts: u32,
}

impl Default for Backoff {
    /// About three hours of retries (1.5 to 3 with jitter): long enough to
    /// outlast a provider's or GitHub's outage.
    fn default() -> Backoff {
        Backoff {
            base: Duration::from_secs(2),
            max: Duration::from_secs(1_800),
            attempts: 16,
        }
    }
}

impl Backoff {
    /// Delay before attempt `n + 1` after `n` failures: base * 2^(n-1),
    /// capped, with "full jitter" in [delay/2, delay].
    pub fn delay(&self, failures: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << failures.saturating_sub(1).min(20))
            .min(self.max);
        let half = exp / 2;
        half + half.mul_f64(rand::random::<f64>())
    }
}

/// What the newest job for an alert says, as [`Queue::standing`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// No job ever.
    Unknown,
    /// A job is queued or running.
    Pending(i64),
    /// The job gave up: re-drive it.
    Dead(i64),
    /// Done, and the alert was left open on purpose (notify, ignore, dry
    /// run): an open alert is the same episode.
    Handled(i64),
    /// Done, and the alert was closed (resolved by keyburn or a person): an
    /// open alert now was reopened, and is a new job.
    Closed(i64),
}

/// What [`Queue::fail`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Run again at this unix-ms time.
    At(i64),
    /// Budget spent: the job is dead.
    Dead,
}

pub struct Queue {
    db: Db,
    /// Bytes intake may fill (with the pending jobs' reserve), and the
    /// page size; the rest of the size limit is kept for the workers'
    /// progress (claims, steps, completions). SQLite only.
    intake_limit: Option<(i64, i64)>,
}

/// The share of `queue_max_bytes` that intake may fill.
const INTAKE_SHARE: (i64, i64) = (9, 10);

/// Room kept for each pending job's progress: its context grows as its
/// steps record what they found (a few hundred bytes in practice).
const JOB_RESERVE: i64 = 1024;

const SQLITE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    repo TEXT NOT NULL,
    alert_number INTEGER NOT NULL,
    source TEXT NOT NULL,
    delivery TEXT,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    step TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_run_at INTEGER NOT NULL,
    lease_until INTEGER NOT NULL DEFAULT 0,
    fence INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    context TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_alert ON jobs (repo, alert_number, state);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (state, next_run_at);
CREATE TABLE IF NOT EXISTS audit_anchor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    records INTEGER NOT NULL,
    head TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY,
    job_id INTEGER,
    received_at INTEGER NOT NULL
);
";

/// The same tables on PostgreSQL, plus what lets replicas share them: at
/// most one pending job per alert (a partial unique index, so that two
/// replicas taking deliveries of one alert make one job), and the audit
/// log with its head (see [`crate::audit`]). Creating them is serialized
/// by an advisory lock, since replicas may start together.
const POSTGRES_SCHEMA: &str = "
SELECT pg_advisory_xact_lock(4242001);
CREATE TABLE IF NOT EXISTS jobs (
    id BIGSERIAL PRIMARY KEY,
    repo TEXT NOT NULL,
    alert_number BIGINT NOT NULL,
    source TEXT NOT NULL,
    delivery TEXT,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    step TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_run_at BIGINT NOT NULL,
    lease_until BIGINT NOT NULL DEFAULT 0,
    fence BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    context TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_alert ON jobs (repo, alert_number, state);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (state, next_run_at);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_one_pending ON jobs (repo, alert_number)
    WHERE state IN ('queued', 'running');
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY,
    job_id BIGINT,
    received_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_anchor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    records BIGINT NOT NULL,
    head TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_log (
    seq BIGINT PRIMARY KEY,
    line TEXT NOT NULL
);
INSERT INTO audit_anchor (id, records, head)
    VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000')
    ON CONFLICT (id) DO NOTHING;
-- Append records (JSON objects) to the chain in one call: each line is
-- the record with `prev`, the SHA-256 of the line before, added last; the
-- head row is locked from the first read to the commit.
CREATE OR REPLACE FUNCTION keyburn_audit_append(records text[]) RETURNS bigint AS $fn$
DECLARE
    n bigint;
    h text;
    r text;
    line text;
BEGIN
    SELECT a.records, a.head INTO n, h FROM audit_anchor a WHERE a.id = 1 FOR UPDATE;
    FOREACH r IN ARRAY records LOOP
        line := left(r, -1) || ',\"prev\":\"' || h || '\"}';
        h := encode(sha256(convert_to(line, 'UTF8')), 'hex');
        n := n + 1;
        INSERT INTO audit_log (seq, line) VALUES (n, line);
    END LOOP;
    UPDATE audit_anchor SET records = n, head = h WHERE id = 1;
    RETURN n;
END
$fn$ LANGUAGE plpgsql;
";

const COLUMNS: &str = "id, repo, alert_number, source, delivery, payload, state, step, attempts, \
                       next_run_at, last_error, created_at, updated_at, context, fence";

/// Columns added since the first release, for databases created before.
const MIGRATIONS: &[(&str, &str)] = &[("fence", "INTEGER NOT NULL DEFAULT 0")];

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Run a blocking database call from wherever it is made: on a thread
/// that drives async tasks, the runtime is told first (the synchronous
/// PostgreSQL client blocks on a runtime of its own).
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Whether `url` names a PostgreSQL database (`postgres://`,
/// `postgresql://`).
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Connect to PostgreSQL at `url` (a libpq-style URL). TLS is not
/// offered: run the database on the same host or a private network.
pub fn connect_postgres(url: &str) -> Result<postgres::Client, QueueError> {
    let config: postgres::Config = url
        .parse()
        .map_err(|e: postgres::Error| QueueError::Url(e.to_string()))?;
    let mut config = config;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    Ok(config.connect(postgres::NoTls)?)
}

impl Queue {
    /// Open (creating) the SQLite queue database at `path`.
    pub fn open(path: &Path) -> Result<Queue, QueueError> {
        let conn = rusqlite::Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SQLITE_SCHEMA)?;
        for (column, decl) in MIGRATIONS {
            let present: bool = conn.query_row(
                "SELECT COUNT(*) > 0 FROM pragma_table_info('jobs') WHERE name = ?1",
                [column],
                |r| r.get(0),
            )?;
            if !present {
                conn.execute_batch(&format!("ALTER TABLE jobs ADD COLUMN {column} {decl}"))?;
            }
        }
        Ok(Queue {
            db: Db::Sqlite(conn),
            intake_limit: None,
        })
    }

    /// Connect to (creating the tables of) the PostgreSQL queue at `url`.
    pub fn connect(url: &str) -> Result<Queue, QueueError> {
        let mut db = Db::Postgres(Box::new(db::Pg::connect(url)?));
        db.batch(&format!("BEGIN; {POSTGRES_SCHEMA} COMMIT;"))?;
        Ok(Queue {
            db,
            intake_limit: None,
        })
    }

    /// Whether this queue is shared (PostgreSQL) rather than embedded.
    pub fn is_shared(&self) -> bool {
        self.db.is_postgres()
    }

    /// Cap the database's size (SQLite's `max_page_count`). Intake stops
    /// short of it ([`Queue::full`]: the server answers 503), keeping a
    /// tenth and room for every pending job's progress, so that the jobs
    /// already queued can always move on and finish. PostgreSQL manages
    /// its own space: there this does nothing.
    pub fn limit_size(&mut self, bytes: u64) -> Result<(), QueueError> {
        let Db::Sqlite(conn) = &self.db else {
            return Ok(());
        };
        let page: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let pages = (bytes / page.max(1) as u64).max(1) as i64;
        conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
        self.intake_limit = Some((pages * page * INTAKE_SHARE.0 / INTAKE_SHARE.1, page));
        Ok(())
    }

    /// Whether intake must stop: the pages in use and the pending jobs'
    /// reserve reached intake's share of the size limit.
    pub fn full(&mut self) -> Result<bool, QueueError> {
        let Some((limit, page)) = self.intake_limit else {
            return Ok(false);
        };
        let used = self.db.query_opt(
            "SELECT (SELECT page_count FROM pragma_page_count()) - \
                    (SELECT freelist_count FROM pragma_freelist_count()), \
                    (SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running'))",
            &[],
            |r| Ok((r.int(0)?, r.int(1)?)),
        )?;
        Ok(used.is_some_and(|(pages, pending)| pages * page + pending * JOB_RESERVE >= limit))
    }

    /// Forget what finished jobs no longer need, for those last updated
    /// more than `age` before `now`: their stored payload, and delivery ids
    /// received as long ago (GitHub redelivers for days, not months; a
    /// redelivery after that only re-checks an alert already handled).
    /// Jobs themselves stay, so that reconciliation still knows the alerts
    /// they handled. Returns (payloads dropped, deliveries dropped).
    pub fn prune(&mut self, age: Duration, now: i64) -> Result<(usize, usize), QueueError> {
        let before = now.saturating_sub(age.as_millis().min(i64::MAX as u128) as i64);
        self.transaction(|db| {
            let payloads = db.execute(
                "UPDATE jobs SET payload = '' WHERE state = 'done' AND updated_at < ?1 AND payload <> ''",
                &[P::Int(before)],
            )?;
            let deliveries = db.execute(
                "DELETE FROM deliveries WHERE received_at < ?1",
                &[P::Int(before)],
            )?;
            Ok((payloads, deliveries))
        })
    }

    /// After a restart, jobs left running belonged to the process that
    /// died: they are due again at once, at their step. Returns how many.
    /// A shared queue's running jobs may belong to live replicas: there
    /// they are left to their leases.
    pub fn recover(&mut self, now: i64) -> Result<usize, QueueError> {
        if self.db.is_postgres() {
            return Ok(0);
        }
        self.db.execute(
            "UPDATE jobs SET state = 'queued', fence = fence + 1, next_run_at = ?1, updated_at = ?1 \
             WHERE state = 'running'",
            &[P::Int(now)],
        )
    }

    /// Record a delivery and create its job, in one transaction: when this
    /// returns, the job is on disk.
    pub fn enqueue(&mut self, job: &NewJob, now: i64) -> Result<Enqueued, QueueError> {
        Ok(self.enqueue_all(std::slice::from_ref(job), now)?[0])
    }

    /// [`Queue::enqueue`] for many deliveries in one transaction: one
    /// fsync for the lot (group commit). Later jobs see earlier ones, so a
    /// delivery repeated within the batch is still a duplicate. On
    /// PostgreSQL a batch is a few array statements whatever its size (see
    /// [`bulk`]).
    pub fn enqueue_all(&mut self, jobs: &[NewJob], now: i64) -> Result<Vec<Enqueued>, QueueError> {
        Ok(self.enqueue_all_audited(jobs, now, |_| Vec::new())?.0)
    }

    /// [`Queue::enqueue_all`], and on PostgreSQL, where the audit log
    /// lives in the same database, the audit records `audit` makes of the
    /// outcomes (JSON objects) appended in the same transaction. Returns
    /// the outcomes and whether the records were stored (else the caller
    /// writes them to its log).
    pub fn enqueue_all_audited(
        &mut self,
        jobs: &[NewJob],
        now: i64,
        audit: impl Fn(&[Enqueued]) -> Vec<String>,
    ) -> Result<(Vec<Enqueued>, bool), QueueError> {
        let mut tries = 0;
        loop {
            let result = self.transaction(|db| match db.postgres() {
                Some(pg) => {
                    let outcomes = bulk::enqueue(pg, jobs, now)?;
                    let records = audit(&outcomes);
                    if !records.is_empty() {
                        pg.query("SELECT keyburn_audit_append($1::text[])", &[&records])?;
                    }
                    Ok((outcomes, true))
                }
                None => {
                    let outcomes: Result<Vec<_>, _> =
                        jobs.iter().map(|j| enqueue_in(db, j, now)).collect();
                    outcomes.map(|o| (o, false))
                }
            });
            match result {
                // Two replicas can still collide (a deadlock PostgreSQL
                // breaks by failing one side): once more.
                Err(QueueError::Postgres(e)) if tries == 0 && is_transient(&e) => tries += 1,
                other => return other,
            }
        }
    }

    /// Record a delivery that makes no job (a ping, an ignored event), so
    /// that its redelivery is recognised too. Returns false if seen before.
    pub fn record_delivery(&mut self, delivery: &str, now: i64) -> Result<bool, QueueError> {
        let n = self.db.execute(
            "INSERT INTO deliveries (id, job_id, received_at) VALUES (?1, NULL, ?2) \
             ON CONFLICT (id) DO NOTHING",
            &[P::Text(delivery), P::Int(now)],
        )?;
        Ok(n == 1)
    }

    /// Where the newest job for an alert stands, for reconciliation.
    pub fn standing(&mut self, repo: &str, alert_number: u64) -> Result<Standing, QueueError> {
        let closed = if self.db.is_postgres() {
            "CASE WHEN (context::jsonb ->> 'alert_closed') = 'true' THEN 1::bigint ELSE 0::bigint END"
        } else {
            "coalesce(json_extract(context, '$.alert_closed'), 0)"
        };
        let latest = self.db.query_opt(
            &format!(
                "SELECT id, state, {closed} FROM jobs WHERE repo = ?1 AND alert_number = ?2 \
                 ORDER BY id DESC LIMIT 1"
            ),
            &[P::Text(repo), P::Int(alert_number as i64)],
            |r| Ok((r.int(0)?, r.text(1)?, r.int(2)? != 0)),
        )?;
        Ok(match latest {
            None => Standing::Unknown,
            Some((id, state, closed)) => match State::parse(&state) {
                State::Queued | State::Running => Standing::Pending(id),
                State::Dead => Standing::Dead(id),
                State::Done if closed => Standing::Closed(id),
                State::Done => Standing::Handled(id),
            },
        })
    }

    /// Take the next due job, marking it running under a new lease. A job
    /// whose lease expired (its worker died) is due again, at its step. On
    /// PostgreSQL, replicas skip the rows others are claiming.
    pub fn claim(&mut self, now: i64, lease: Duration) -> Result<Option<Job>, QueueError> {
        let until = now + lease.as_millis() as i64;
        let skip = if self.db.is_postgres() {
            "FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let sql = format!(
            "UPDATE jobs SET state = 'running', lease_until = ?2, fence = fence + 1, updated_at = ?1 \
             WHERE id = (SELECT id FROM jobs \
                         WHERE (state = 'queued' AND next_run_at <= ?1) \
                            OR (state = 'running' AND lease_until <= ?1) \
                         ORDER BY next_run_at, id LIMIT 1 {skip}) \
             RETURNING {COLUMNS}"
        );
        self.db
            .query_opt(&sql, &[P::Int(now), P::Int(until)], row_to_job)
    }

    /// Extend a held lease to `now + lease`. Fails with
    /// [`QueueError::LeaseLost`] once another worker has claimed the job.
    pub fn renew(&mut self, held: Lease, now: i64, lease: Duration) -> Result<(), QueueError> {
        self.fenced(
            held,
            "UPDATE jobs SET lease_until = ?3 WHERE id = ?1 AND fence = ?2 AND state = 'running'",
            &[P::Int(now + lease.as_millis() as i64)],
        )
    }

    /// Record that the job finished its step and moves on to `next`
    /// (attempts reset), with the context the later steps need. The worker
    /// keeps its lease.
    pub fn advance(
        &mut self,
        held: Lease,
        next: &str,
        context: &str,
        now: i64,
    ) -> Result<(), QueueError> {
        self.fenced(
            held,
            "UPDATE jobs SET step = ?3, context = ?4, attempts = 0, last_error = NULL, updated_at = ?5 \
             WHERE id = ?1 AND fence = ?2 AND state = 'running'",
            &[P::Text(next), P::Text(context), P::Int(now)],
        )
    }

    /// Store the job's context without moving on: an intent recorded
    /// before a call that changes the outside world.
    pub fn save(&mut self, held: Lease, context: &str, now: i64) -> Result<(), QueueError> {
        self.fenced(
            held,
            "UPDATE jobs SET context = ?3, updated_at = ?4 \
             WHERE id = ?1 AND fence = ?2 AND state = 'running'",
            &[P::Text(context), P::Int(now)],
        )
    }

    /// Keep the audit log's head apart from the log.
    pub fn save_anchor(&mut self, anchor: &crate::audit::Anchor) -> Result<(), QueueError> {
        self.db.execute(
            "INSERT INTO audit_anchor (id, records, head) VALUES (1, ?1, ?2) \
             ON CONFLICT (id) DO UPDATE SET records = ?1, head = ?2",
            &[P::Int(anchor.records as i64), P::Text(&anchor.head)],
        )?;
        Ok(())
    }

    /// The audit log's head as last anchored.
    pub fn anchor(&mut self) -> Result<Option<crate::audit::Anchor>, QueueError> {
        self.db.query_opt(
            "SELECT records, head FROM audit_anchor WHERE id = 1",
            &[],
            |r| {
                Ok(crate::audit::Anchor {
                    records: r.int(0)? as u64,
                    head: r.text(1)?,
                })
            },
        )
    }

    /// The job is finished.
    pub fn complete(&mut self, held: Lease, context: &str, now: i64) -> Result<(), QueueError> {
        self.fenced(
            held,
            "UPDATE jobs SET state = 'done', step = 'done', context = ?3, last_error = NULL, \
             updated_at = ?4 WHERE id = ?1 AND fence = ?2 AND state = 'running'",
            &[P::Text(context), P::Int(now)],
        )
    }

    /// The current step failed: schedule a retry, or mark the job dead when
    /// the failure is permanent or the budget is spent.
    pub fn fail(
        &mut self,
        held: Lease,
        error: &str,
        failure: Failure,
        backoff: &Backoff,
        now: i64,
    ) -> Result<Retry, QueueError> {
        let attempts = self
            .db
            .query_opt(
                "SELECT attempts FROM jobs WHERE id = ?1 AND fence = ?2 AND state = 'running'",
                &[P::Int(held.id), P::Int(held.fence)],
                |r| r.int(0),
            )?
            .ok_or(QueueError::LeaseLost(held.id))?;
        let attempts = (attempts + 1).clamp(0, u32::MAX as i64) as u32;
        if failure == Failure::Permanent || attempts >= backoff.attempts {
            self.fenced(
                held,
                "UPDATE jobs SET state = 'dead', attempts = ?3, last_error = ?4, updated_at = ?5 \
                 WHERE id = ?1 AND fence = ?2 AND state = 'running'",
                &[P::Int(attempts.into()), P::Text(error), P::Int(now)],
            )?;
            return Ok(Retry::Dead);
        }
        let at = now + backoff.delay(attempts).as_millis() as i64;
        self.fenced(
            held,
            "UPDATE jobs SET state = 'queued', attempts = ?3, last_error = ?4, next_run_at = ?5, \
             updated_at = ?6 WHERE id = ?1 AND fence = ?2 AND state = 'running'",
            &[
                P::Int(attempts.into()),
                P::Text(error),
                P::Int(at),
                P::Int(now),
            ],
        )?;
        Ok(Retry::At(at))
    }

    /// Put a dead job back in the queue, at the step where it died or at
    /// `from_step`. Going back to an earlier step drops the intent that
    /// step recorded: the person asking has checked, so the call is made
    /// again rather than presumed made.
    pub fn retry(&mut self, id: i64, from_step: Option<&str>, now: i64) -> Result<(), QueueError> {
        let job = self.get(id)?;
        if job.state != State::Dead {
            return Err(QueueError::NotDead {
                id,
                state: job.state.as_str().into(),
            });
        }
        let step = from_step.unwrap_or(&job.step);
        let context = match (from_step.is_some(), self.db.is_postgres()) {
            (false, _) => "context",
            (true, false) => "json_remove(context, '$.intent')",
            (true, true) => "(context::jsonb - 'intent')::text",
        };
        let sql = format!(
            "UPDATE jobs SET state = 'queued', step = ?3, attempts = 0, next_run_at = ?2, \
             context = {context}, updated_at = ?2 WHERE id = ?1 AND state = 'dead'"
        );
        match self
            .db
            .execute(&sql, &[P::Int(id), P::Int(now), P::Text(step)])?
        {
            0 => Err(QueueError::NoSuchJob(id)),
            _ => Ok(()),
        }
    }

    /// Every dead job back in the queue at its step. Returns their ids.
    pub fn retry_dead(&mut self, now: i64) -> Result<Vec<i64>, QueueError> {
        self.db.query(
            "UPDATE jobs SET state = 'queued', attempts = 0, next_run_at = ?1, updated_at = ?1 \
             WHERE state = 'dead' RETURNING id",
            &[P::Int(now)],
            |r| r.int(0),
        )
    }

    pub fn get(&mut self, id: i64) -> Result<Job, QueueError> {
        self.db
            .query_opt(
                &format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"),
                &[P::Int(id)],
                row_to_job,
            )?
            .ok_or(QueueError::NoSuchJob(id))
    }

    /// Jobs, newest first, optionally of one state.
    pub fn list(&mut self, state: Option<State>, limit: usize) -> Result<Vec<Job>, QueueError> {
        let limit = P::Int(limit.min(i64::MAX as usize) as i64);
        match state {
            Some(s) => self.db.query(
                &format!("SELECT {COLUMNS} FROM jobs WHERE state = ?1 ORDER BY id DESC LIMIT ?2"),
                &[P::Text(s.as_str()), limit],
                row_to_job,
            ),
            None => self.db.query(
                &format!("SELECT {COLUMNS} FROM jobs ORDER BY id DESC LIMIT ?1"),
                &[limit],
                row_to_job,
            ),
        }
    }

    /// How many jobs are in each state.
    pub fn counts(&mut self) -> Result<Vec<(State, u64)>, QueueError> {
        let mut out = Vec::new();
        for s in State::ALL {
            let n = self
                .db
                .query_opt(
                    "SELECT COUNT(*) FROM jobs WHERE state = ?1",
                    &[P::Text(s.as_str())],
                    |r| r.int(0),
                )?
                .unwrap_or(0);
            out.push((s, n as u64));
        }
        Ok(out)
    }

    /// Run `f` in a transaction: committed if it succeeds, rolled back if
    /// it fails.
    fn transaction<T>(
        &mut self,
        f: impl FnOnce(&mut Db) -> Result<T, QueueError>,
    ) -> Result<T, QueueError> {
        self.db.begin()?;
        match f(&mut self.db).and_then(|v| self.db.commit().map(|()| v)) {
            Ok(v) => Ok(v),
            Err(e) => {
                self.db.rollback();
                Err(e)
            }
        }
    }

    /// A write that only the lease's holder may make: `sql` takes the
    /// job id as `?1`, the fence as `?2`, then `params`.
    fn fenced(&mut self, held: Lease, sql: &str, params: &[P]) -> Result<(), QueueError> {
        let mut all = vec![P::Int(held.id), P::Int(held.fence)];
        all.extend_from_slice(params);
        match self.db.execute(sql, &all)? {
            0 => Err(QueueError::LeaseLost(held.id)),
            _ => Ok(()),
        }
    }
}

/// A PostgreSQL error worth one more try of the transaction: a deadlock
/// or a serialization failure between replicas.
fn is_transient(e: &postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        *c == postgres::error::SqlState::T_R_DEADLOCK_DETECTED
            || *c == postgres::error::SqlState::T_R_SERIALIZATION_FAILURE
    })
}

/// One job of a batch, on SQLite (whose single writer serializes
/// batches: checks then inserts are safe).
fn enqueue_in(db: &mut Db, job: &NewJob, now: i64) -> Result<Enqueued, QueueError> {
    if let Some(d) = job.delivery {
        let fresh = db.execute(
            "INSERT INTO deliveries (id, job_id, received_at) VALUES (?1, NULL, ?2) \
             ON CONFLICT (id) DO NOTHING",
            &[P::Text(d), P::Int(now)],
        )? == 1;
        if !fresh {
            let job_id = db
                .query_opt(
                    "SELECT job_id FROM deliveries WHERE id = ?1",
                    &[P::Text(d)],
                    |r| r.opt_int(0),
                )?
                .flatten();
            return Ok(Enqueued::DuplicateDelivery(job_id));
        }
    }
    let pending = db.query_opt(
        "SELECT id FROM jobs WHERE repo = ?1 AND alert_number = ?2 \
         AND state IN ('queued', 'running') LIMIT 1",
        &[P::Text(job.repo), P::Int(job.alert_number as i64)],
        |r| r.int(0),
    )?;
    let outcome = match pending {
        Some(id) => Enqueued::AlreadyPending(id),
        None => {
            let id = db
                .query_opt(
                    "INSERT INTO jobs (repo, alert_number, source, delivery, payload, state, step, \
                     next_run_at, created_at, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?7, ?7, ?7) RETURNING id",
                    &[
                        P::Text(job.repo),
                        P::Int(job.alert_number as i64),
                        P::Text(job.source),
                        P::OptText(job.delivery),
                        P::Text(job.payload),
                        P::Text(job.step),
                        P::Int(now),
                    ],
                    |r| r.int(0),
                )?
                .ok_or_else(|| QueueError::Worker("insert returned no id".into()))?;
            Enqueued::Created(id)
        }
    };
    if let (Some(d), Enqueued::Created(id) | Enqueued::AlreadyPending(id)) = (job.delivery, outcome)
    {
        db.execute(
            "UPDATE deliveries SET job_id = ?2 WHERE id = ?1",
            &[P::Text(d), P::Int(id)],
        )?;
    }
    Ok(outcome)
}

fn row_to_job(r: Row) -> Result<Job, QueueError> {
    Ok(Job {
        id: r.int(0)?,
        repo: r.text(1)?,
        alert_number: r.int(2)? as u64,
        source: r.text(3)?,
        delivery: r.opt_text(4)?,
        payload: r.text(5)?,
        state: State::parse(&r.text(6)?),
        step: r.text(7)?,
        attempts: r.int(8)?.clamp(0, u32::MAX as i64) as u32,
        next_run_at: r.int(9)?,
        last_error: r.opt_text(10)?,
        created_at: r.int(11)?,
        updated_at: r.int(12)?,
        context: r.text(13)?,
        fence: r.int(14)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_job<'a>(delivery: Option<&'a str>, alert: u64) -> NewJob<'a> {
        NewJob {
            delivery,
            repo: "acme/app",
            alert_number: alert,
            source: "webhook",
            payload: "{}",
            step: "fetch",
        }
    }

    fn queue(dir: &tempfile::TempDir) -> Queue {
        Queue::open(&dir.path().join("queue.db")).unwrap()
    }

    #[test]
    fn a_redelivery_or_a_second_alert_event_makes_no_second_job() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = queue(&dir);
        let Enqueued::Created(id) = q.enqueue(&new_job(Some("d1"), 7), 0).unwrap() else {
            panic!("first delivery creates a job");
        };
        assert_eq!(
            q.enqueue(&new_job(Some("d1"), 7), 1).unwrap(),
            Enqueued::DuplicateDelivery(Some(id))
        );
        assert_eq!(
            q.enqueue(&new_job(Some("d2"), 7), 2).unwrap(),
            Enqueued::AlreadyPending(id)
        );
        assert_eq!(
            q.enqueue(&new_job(Some("d2"), 7), 3).unwrap(),
            Enqueued::DuplicateDelivery(Some(id))
        );
        assert!(matches!(
            q.enqueue(&new_job(None, 8), 4).unwrap(),
            Enqueued::Created(_)
        ));
        assert!(q.record_delivery("ping-1", 5).unwrap());
        assert!(!q.record_delivery("ping-1", 6).unwrap());
        assert_eq!(q.standing("acme/app", 7).unwrap(), Standing::Pending(id));
        assert_eq!(q.standing("acme/app", 9).unwrap(), Standing::Unknown);
    }

    #[test]
    fn a_stale_worker_cannot_write_once_its_lease_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = queue(&dir);
        let lease = Duration::from_millis(1_000);
        q.enqueue(&new_job(None, 1), 0).unwrap();
        let first = q.claim(0, lease).unwrap().unwrap().lease();
        q.renew(first, 900, lease).unwrap();
        assert!(q.claim(1_500, lease).unwrap().is_none(), "renewed to 1900");
        let second = q.claim(1_900, lease).unwrap().unwrap().lease();
        assert_eq!(second.id, first.id);
        assert!(second.fence > first.fence);
        for refused in [
            q.renew(first, 2_000, lease),
            q.advance(first, "revoke", "{}", 2_000),
            q.save(first, r#"{"intent":"revoke"}"#, 2_000),
            q.complete(first, "{}", 2_000),
            q.fail(
                first,
                "late",
                Failure::Retryable,
                &Backoff::default(),
                2_000,
            )
            .map(|_| ()),
        ] {
            assert!(
                matches!(refused, Err(QueueError::LeaseLost(id)) if id == first.id),
                "{refused:?}"
            );
        }
        q.advance(second, "confirm", "{}", 2_001).unwrap();
        let job = q.get(second.id).unwrap();
        assert_eq!((job.step.as_str(), job.state), ("confirm", State::Running));
        q.complete(second, r#"{"alert_closed":true}"#, 2_002)
            .unwrap();
        assert_eq!(
            q.standing("acme/app", 1).unwrap(),
            Standing::Closed(second.id)
        );
    }

    #[test]
    fn standing_tells_a_reopened_alert_from_one_already_handled() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = queue(&dir);
        let lease = Duration::from_secs(1);
        q.enqueue(&new_job(None, 1), 0).unwrap();
        let held = q.claim(0, lease).unwrap().unwrap().lease();
        q.complete(held, r#"{"action":"notify"}"#, 1).unwrap();
        assert_eq!(
            q.standing("acme/app", 1).unwrap(),
            Standing::Handled(held.id)
        );
        q.enqueue(&new_job(None, 2), 2).unwrap();
        let held = q.claim(2, lease).unwrap().unwrap().lease();
        let permanent = q
            .fail(held, "HTTP 404", Failure::Permanent, &Backoff::default(), 3)
            .unwrap();
        assert_eq!(permanent, Retry::Dead, "a 404 is not retried");
        assert_eq!(q.standing("acme/app", 2).unwrap(), Standing::Dead(held.id));
        assert_eq!(q.retry_dead(4).unwrap(), vec![held.id]);
        assert_eq!(
            q.standing("acme/app", 2).unwrap(),
            Standing::Pending(held.id)
        );
    }

    #[test]
    fn a_retry_from_an_earlier_step_drops_that_steps_intent() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = queue(&dir);
        let lease = Duration::from_secs(1);
        q.enqueue(&new_job(None, 1), 0).unwrap();
        let held = q.claim(0, lease).unwrap().unwrap().lease();
        q.advance(
            held,
            "confirm",
            r#"{"intent":"revoke","action":"revoke"}"#,
            1,
        )
        .unwrap();
        q.fail(
            held,
            "still active",
            Failure::Permanent,
            &Backoff::default(),
            2,
        )
        .unwrap();
        q.retry(held.id, None, 3).unwrap();
        let job = q.claim(3, lease).unwrap().unwrap();
        assert_eq!(job.step, "confirm");
        assert!(job.context.contains("intent"), "{}", job.context);
        q.fail(
            job.lease(),
            "still active",
            Failure::Permanent,
            &Backoff::default(),
            4,
        )
        .unwrap();
        q.retry(held.id, Some("revoke"), 5).unwrap();
        let job = q.claim(5, lease).unwrap().unwrap();
        assert_eq!(job.step, "revoke");
        assert_eq!(job.context, r#"{"action":"revoke"}"#);
    }

    #[test]
    fn a_batch_commits_together_and_sees_its_own_deliveries() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = queue(&dir);
        let out = q
            .enqueue_all(
                &[
                    new_job(Some("a"), 1),
                    new_job(Some("a"), 1),
                    new_job(Some("b"), 2),
                ],
                0,
            )
            .unwrap();
        let Enqueued::Created(first) = out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(out[1], Enqueued::DuplicateDelivery(Some(first)));
        assert!(matches!(out[2], Enqueued::Created(_)));
    }

    #[test]
    fn jobs_survive_reopening_and_a_dead_worker_is_taken_over_at_its_step() {
        let dir = tempfile::tempdir().unwrap();
        let lease = Duration::from_secs(30);
        let id = {
            let mut q = queue(&dir);
            let Enqueued::Created(id) = q.enqueue(&new_job(Some("d1"), 7), 0).unwrap() else {
                panic!()
            };
            let job = q.claim(0, lease).unwrap().unwrap();
            assert_eq!((job.id, job.step.as_str()), (id, "fetch"));
            q.advance(job.lease(), "revoke", r#"{"action":"revoke"}"#, 10)
                .unwrap();
            // The worker dies here: the process is gone, the lease runs.
            id
        };
        let mut q = queue(&dir);
        assert!(q.claim(1_000, lease).unwrap().is_none(), "lease still held");
        let job = q.claim(30_001, lease).unwrap().unwrap();
        assert_eq!(
            (job.id, job.step.as_str(), job.state),
            (id, "revoke", State::Running)
        );
        q.complete(job.lease(), &job.context, 30_002).unwrap();
        assert!(q.claim(100_000, lease).unwrap().is_none());
        // A done alert can be raised again (reopened): a new job.
        assert!(matches!(
            q.enqueue(&new_job(Some("d3"), 7), 100_001).unwrap(),
            Enqueued::Created(n) if n != id
        ));
    }

    #[test]
    fn failures_back_off_then_go_dead_and_can_be_retried() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = queue(&dir);
        let backoff = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_millis(1_000),
            attempts: 3,
        };
        q.enqueue(&new_job(None, 1), 0).unwrap();
        let job = q.claim(0, Duration::from_secs(1)).unwrap().unwrap();
        let Retry::At(at) = q
            .fail(
                job.lease(),
                "502 from GitHub",
                Failure::Retryable,
                &backoff,
                0,
            )
            .unwrap()
        else {
            panic!("first failure retries")
        };
        assert!((50..=100).contains(&at), "{at}");
        assert!(q.claim(at - 1, Duration::from_secs(1)).unwrap().is_none());
        let job = q.claim(at, Duration::from_secs(1)).unwrap().unwrap();
        let Retry::At(at2) = q
            .fail(job.lease(), "timeout", Failure::Retryable, &backoff, at)
            .unwrap()
        else {
            panic!()
        };
        assert!((at + 100..=at + 200).contains(&at2), "{at} {at2}");
        let job = q.claim(at2, Duration::from_secs(1)).unwrap().unwrap();
        assert_eq!(
            q.fail(job.lease(), "timeout", Failure::Retryable, &backoff, at2)
                .unwrap(),
            Retry::Dead
        );
        let dead = q.get(job.id).unwrap();
        assert_eq!(
            (dead.state, dead.last_error.as_deref()),
            (State::Dead, Some("timeout"))
        );
        assert!(q
            .claim(i64::MAX / 2, Duration::from_secs(1))
            .unwrap()
            .is_none());
        assert_eq!(q.list(Some(State::Dead), 10).unwrap().len(), 1);

        q.retry(job.id, None, at2 + 1).unwrap();
        assert!(
            q.retry(job.id, None, at2 + 1).is_err(),
            "only dead jobs are retried"
        );
        let again = q.claim(at2 + 1, Duration::from_secs(1)).unwrap().unwrap();
        assert_eq!((again.id, again.attempts), (job.id, 0));
        let counts = q.counts().unwrap();
        assert!(counts.contains(&(State::Running, 1)), "{counts:?}");
    }

    #[test]
    fn the_default_budget_outlasts_an_outage_of_an_hour_and_more() {
        let b = Backoff::default();
        let total: Duration = (1..b.attempts).map(|n| b.delay(n)).sum();
        assert!(total >= Duration::from_secs(3_600), "{total:?}");
    }

    #[test]
    fn backoff_grows_exponentially_with_jitter_and_a_cap() {
        let b = Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(10),
            attempts: 10,
        };
        for (n, full) in [
            (1, 1_000),
            (2, 2_000),
            (3, 4_000),
            (5, 10_000),
            (30, 10_000),
        ] {
            let d = b.delay(n).as_millis();
            assert!((full / 2..=full).contains(&d), "attempt {n}: {d} ms");
        }
    }
}
