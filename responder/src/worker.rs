//! The responder's state and its workers: each job runs its steps in
//! order, from the step it reached, recording progress after every step.
//!
//! fetch -> decide -> revoke -> [quarantine] -> confirm -> resolve -> notify
//!
//! Every run first fetches the alert (read-only, and the only source of the
//! secret, which is never stored). One outside effect per decision: before
//! a call that changes the outside world (a revoke, a notice), the job
//! records its intent, fenced by its lease; a run that finds the intent of
//! an earlier run (a worker killed mid-call, a call that timed out) does not
//! call again blind: the revoke is recorded as `unknown` and `confirm`
//! asks the provider, the notice is not sent twice. Steps also check before
//! acting: `revoke` re-reads the alert (a person may have closed it) and
//! validates the secret, `resolve` skips an alert already resolved.
//!
//! While a step runs its worker renews the lease; a worker that loses it
//! (it stalled past the lease and another took the job) is stopped and its
//! results are refused by the queue.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::audit::{AuditError, AuditLog, Record};
use crate::config::{Action, Config, ConfigError};
use crate::github::{Alert, AppAuth, Auth, GitHub};
use crate::http::{CallError, Http};
use crate::metrics::Metrics;
use crate::notify::{Notice, Notifier};
use crate::providers::{CheckError, Checker, Registry, Revoked, Secret, Validity};
use crate::queue::{now_ms, Enqueued, Failure, Lease, NewJob, Queue, QueueError, Retry, Standing};
use crate::signature::Verifier;
use keyburn_scanner::finding::mask;

/// The steps a job goes through, in order (`keyburn jobs retry
/// --from-step` takes one of them).
pub const STEPS: &[&str] = &[
    "fetch",
    "decide",
    "revoke",
    "quarantine",
    "confirm",
    "resolve",
    "notify",
];

const ACTOR: &str = "keyburn-serve";

/// The source of jobs the partner endpoint queues.
pub const PARTNER: &str = "partner";

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    DataDir(#[from] crate::datadir::DataDirError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Everything the server, the workers and the reconciler share.
pub struct Responder {
    pub cfg: Config,
    /// The queue's one connection: the workers and the intake thread take
    /// turns on it (a mutex hands over at once, where two SQLite
    /// connections would wait for each other in sleeping busy loops).
    pub queue: Arc<Mutex<Queue>>,
    /// Deliveries to commit, taken in batches by the intake thread.
    intake: std::sync::mpsc::Sender<Delivery>,
    pub audit: Arc<AuditLog>,
    pub verifier: Verifier,
    pub github: GitHub,
    pub providers: Registry,
    pub notifier: Notifier,
    pub metrics: Metrics,
    /// Bearer token `/metrics` requires, if any.
    pub metrics_token: Option<String>,
    /// Signalled when a job is enqueued.
    pub wake: tokio::sync::Notify,
    /// The partner endpoint's keys and the rules its types map to.
    pub partner: Partner,
    /// Seals partner tokens for the queue.
    pub sealer: crate::partner::Sealer,
    /// The data directory's lock, held while the responder lives.
    _data_dir: crate::datadir::DataDir,
}

/// The partner endpoint's pieces.
pub struct Partner {
    pub keys: crate::partner::PartnerKeys,
    /// The rules `[github.partner] types` names, to tell a token of ours
    /// by its shape.
    pub engine: keyburn_scanner::Engine,
}

impl Partner {
    /// The rule of a reported token: its type's, when the token has that
    /// rule's shape (and checksum) from end to end.
    pub fn rule_of(
        &self,
        types: &BTreeMap<String, String>,
        kind: &str,
        token: &str,
    ) -> Option<String> {
        let rule = types.get(kind)?;
        let whole = self.engine.scan(token.as_bytes()).into_iter().any(|m| {
            m.start == 0 && m.end == token.len() && self.engine.rules()[m.rule].id == *rule
        });
        whole.then(|| rule.clone())
    }
}

/// A delivery waiting for its group commit.
pub struct Delivery {
    pub id: String,
    pub repo: String,
    pub alert_number: u64,
    pub payload: String,
    /// `webhook`, or `partner` (which starts at `decide`: there is no
    /// alert to fetch).
    pub source: &'static str,
    pub reply: tokio::sync::oneshot::Sender<Result<Enqueued, String>>,
}

/// How a delivery's commit ends: its job, or why it could not be stored.
pub type Committed = tokio::sync::oneshot::Receiver<Result<Enqueued, String>>;

impl Delivery {
    pub fn new(
        id: String,
        repo: String,
        alert_number: u64,
        payload: String,
        source: &'static str,
    ) -> (Delivery, Committed) {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let d = Delivery {
            id,
            repo,
            alert_number,
            payload,
            source,
            reply,
        };
        (d, rx)
    }
}

/// Largest group commit.
const BATCH: usize = 512;

/// The intake thread: it owns a connection of its own and commits waiting
/// deliveries together (one transaction, one fsync, one audit sync), so
/// acknowledgements do not queue behind each other's fsyncs.
fn intake(q: Arc<Mutex<Queue>>, audit: Arc<AuditLog>, rx: std::sync::mpsc::Receiver<Delivery>) {
    let mut last_room = None;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(d) => batch.push(d),
                Err(_) => break,
            }
        }
        let jobs: Vec<NewJob> = batch
            .iter()
            .map(|d| NewJob {
                delivery: Some(&d.id),
                repo: &d.repo,
                alert_number: d.alert_number,
                source: d.source,
                payload: &d.payload,
                step: if d.source == PARTNER {
                    "decide"
                } else {
                    "fetch"
                },
            })
            .collect();
        // The records of the jobs a batch created.
        let accepted = |outcomes: &[Enqueued]| -> Vec<Record> {
            batch
                .iter()
                .zip(outcomes)
                .filter(|(_, o)| matches!(o, Enqueued::Created(_)))
                .map(|(d, _)| Record {
                    event: if d.source == PARTNER {
                        "partner.accepted".into()
                    } else {
                        "webhook.accepted".into()
                    },
                    actor: "github".into(),
                    delivery: Some(d.id.clone()),
                    alert: Some(format!("{}#{}", d.repo, d.alert_number)),
                    outcome: "queued".into(),
                    ..Record::default()
                })
                .collect()
        };
        let result = {
            let mut q = q.lock().unwrap_or_else(|e| e.into_inner());
            match q.full() {
                // On PostgreSQL the records go in the batch's own
                // transaction: one commit for jobs and audit.
                Ok(false) => q.enqueue_all_audited(&jobs, now_ms(), |o| {
                    accepted(o)
                        .into_iter()
                        .map(crate::audit::record_json)
                        .collect()
                }),
                Ok(true) => {
                    make_room(&mut q, &mut last_room);
                    Err(QueueError::Full)
                }
                Err(e) => Err(e),
            }
        };
        drop(jobs);
        match result {
            Ok((outcomes, audited)) => {
                let records = if audited {
                    Vec::new()
                } else {
                    accepted(&outcomes)
                };
                if !records.is_empty() {
                    if let Err(e) = audit.append_all(records) {
                        tracing::error!("audit log: {e}");
                    }
                }
                for (d, o) in batch.into_iter().zip(outcomes) {
                    let _ = d.reply.send(Ok(o));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for d in batch {
                    let _ = d.reply.send(Err(msg.clone()));
                }
            }
        }
    }
}

/// The embedded queue and the audit file in the data directory: private
/// files, the size limit, jobs left running resumed, a torn audit tail
/// repaired and the log checked against its anchor, which is kept up to
/// date from then on.
fn open_embedded(
    cfg: &Config,
    key: &[u8],
    notes: &mut Vec<String>,
) -> Result<(Arc<Mutex<Queue>>, Arc<AuditLog>), SetupError> {
    let queue_path = cfg.queue_path();
    let mut queue = Queue::open(&queue_path)?;
    let audit = Arc::new(AuditLog::open_anchored(
        &cfg.audit_path(),
        key,
        queue.anchor()?.as_ref(),
    )?);
    for suffix in ["", "-wal", "-shm"] {
        let mut name = queue_path.clone().into_os_string();
        name.push(suffix);
        crate::datadir::private_file(std::path::Path::new(&name)).map_err(io_at(&queue_path))?;
    }
    crate::datadir::private_file(&cfg.audit_path()).map_err(io_at(&cfg.audit_path()))?;
    if let Some(max) = cfg.server.queue_max_bytes {
        queue.limit_size(max)?;
    }
    let recovered = queue.recover(now_ms())?;
    if recovered > 0 {
        notes.push(format!(
            "{recovered} job(s) were running when the responder stopped; resuming them at their step"
        ));
    }
    let record = |event: &str, outcome: &str, key: &str, value: String| Record {
        event: event.into(),
        actor: ACTOR.into(),
        outcome: outcome.into(),
        detail: [(key.to_string(), value.into())].into_iter().collect(),
        ..Record::default()
    };
    if let Some(aside) = audit.repaired() {
        audit.append(record(
            "audit.repaired",
            "torn-record-moved",
            "moved_to",
            aside.display().to_string(),
        ))?;
        notes.push(format!(
            "the audit log ended in a torn record (a crash or a full disk mid-write); \
             it was moved to {} and the chain continues from the last intact record",
            aside.display()
        ));
    }
    if let Some(e) = audit.anchor_mismatch() {
        audit.append(record(
            "audit.anchor_mismatch",
            "error",
            "error",
            e.to_string(),
        ))?;
        notes.push(format!(
            "the audit log does not match its anchor in the queue database: {e}"
        ));
    }
    if let Some(anchor) = audit.anchor() {
        queue.save_anchor(&anchor)?;
    }
    let queue = Arc::new(Mutex::new(queue));
    spawn_anchor(Arc::downgrade(&queue), Arc::downgrade(&audit))
        .map_err(io_at(&cfg.server.data_dir))?;
    Ok((queue, audit))
}

/// The error of an I/O failure at `path`, for `map_err`.
fn io_at(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> SetupError {
    let path = path.to_path_buf();
    move |source| SetupError::Io { path, source }
}

/// How often the audit log's head is copied to the queue database.
const ANCHOR_EVERY: Duration = Duration::from_millis(200);

/// Copy the audit log's head to the queue database whenever it moved,
/// until the responder is dropped.
fn spawn_anchor(
    queue: std::sync::Weak<Mutex<Queue>>,
    audit: std::sync::Weak<AuditLog>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("keyburn-anchor".into())
        .spawn(move || {
            let mut saved = None;
            loop {
                std::thread::sleep(ANCHOR_EVERY);
                let (Some(queue), Some(audit)) = (queue.upgrade(), audit.upgrade()) else {
                    return;
                };
                let Some(anchor) = audit.anchor() else {
                    return;
                };
                if saved.as_ref() == Some(&anchor) {
                    continue;
                }
                let result = queue
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .save_anchor(&anchor);
                match result {
                    Ok(()) => saved = Some(anchor),
                    Err(e) => tracing::warn!("cannot anchor the audit log: {e}"),
                }
            }
        })
        .map(drop)
}

/// A full queue drops delivery ids older than an hour and finished jobs'
/// payloads at once (not after `retention_days`), at most once a minute,
/// so that intake resumes when the workers have drained it.
fn make_room(q: &mut Queue, last: &mut Option<std::time::Instant>) {
    if last.is_some_and(|t| t.elapsed() < Duration::from_secs(60)) {
        return;
    }
    *last = Some(std::time::Instant::now());
    match q.prune(Duration::from_secs(3600), now_ms()) {
        Ok((p, d)) => tracing::warn!(
            "job queue full: dropped {p} finished payload(s) and {d} delivery id(s) to make room"
        ),
        Err(e) => tracing::error!("job queue full, and cannot make room: {e}"),
    }
}

/// What earlier steps of a job found; stored with the job, never secret.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Context {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    action: Option<Action>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    provider: Option<String>,
    /// `revoked`, `already-inactive`, `dry-run`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revoke: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    validity: Option<Validity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    /// Where the secret was found (the first few locations).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    locations: Vec<String>,
    /// The step whose outside call was started and not yet recorded as
    /// finished: found by a later run, it means "may have happened".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    intent: Option<String>,
    /// The job saw the alert closed (it resolved it, or a person had):
    /// the alert open again later was reopened, and gets a new job.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    alert_closed: bool,
}

/// Why a run stopped short.
#[derive(Debug)]
enum StepError {
    /// The step failed, with a message fit for logs (no secret).
    Failed { message: String, failure: Failure },
    /// Another worker holds the job now: stop, record nothing more.
    LeaseLost,
}

impl StepError {
    fn retryable(message: impl ToString) -> StepError {
        StepError::Failed {
            message: message.to_string(),
            failure: Failure::Retryable,
        }
    }
}

impl From<CallError> for StepError {
    fn from(e: CallError) -> StepError {
        StepError::Failed {
            failure: e.failure(),
            message: e.to_string(),
        }
    }
}

impl From<CheckError> for StepError {
    fn from(e: CheckError) -> StepError {
        StepError::Failed {
            failure: e.failure(),
            message: e.to_string(),
        }
    }
}

impl From<QueueError> for StepError {
    fn from(e: QueueError) -> StepError {
        match e {
            QueueError::LeaseLost(_) => StepError::LeaseLost,
            e => StepError::retryable(e),
        }
    }
}

impl Responder {
    /// Open the queue and the audit log in the data directory and build
    /// the clients. Returns notes for the operator (a generated audit key).
    pub fn new(cfg: Config) -> Result<(Arc<Responder>, Vec<String>), SetupError> {
        let dir = &cfg.server.data_dir;
        let mut notes = cfg.check()?;
        let data_dir = crate::datadir::DataDir::claim(dir)?;
        let queue_url = cfg.queue_url()?;
        let key = match cfg.audit_key()? {
            Some(k) => k,
            None => {
                let (k, created) = audit_key_file(&dir.join("audit.key")).map_err(io_at(dir))?;
                if created {
                    notes.push(format!(
                        "no audit HMAC key configured: generated one in {} (mode 0600); \
                         keep it to correlate audit records",
                        dir.join("audit.key").display()
                    ));
                }
                k
            }
        };
        let (queue, audit) = match &queue_url {
            Some(url) => {
                let queue = crate::queue::blocking(|| Queue::connect(url))?;
                let audit = Arc::new(AuditLog::connect(url, key.as_bytes())?);
                (Arc::new(Mutex::new(queue)), audit)
            }
            None => open_embedded(&cfg, key.as_bytes(), &mut notes)?,
        };
        let (intake_tx, intake_rx) = std::sync::mpsc::channel();
        // On PostgreSQL intake gets a connection of its own, so that
        // acknowledgements do not wait behind the workers' steps (SQLite
        // has one writer whatever the connections: one is shared).
        let intake_q = match &queue_url {
            Some(url) => Arc::new(Mutex::new(crate::queue::blocking(|| Queue::connect(url))?)),
            None => Arc::clone(&queue),
        };
        let intake_audit = Arc::clone(&audit);
        std::thread::Builder::new()
            .name("keyburn-intake".into())
            .spawn(move || intake(intake_q, intake_audit, intake_rx))
            .map_err(io_at(dir))?;
        let http = Http::new(Duration::from_millis(cfg.worker.http_timeout_ms));
        let github = github_client(&cfg, &http)?;
        let mut options = crate::providers::Options {
            endpoints: cfg.endpoints(),
            rates: cfg.providers.rates.clone(),
            ..Default::default()
        };
        options.aws = cfg.aws(&http)?;
        if options.aws.is_none() {
            notes.push(
                "no AWS credentials (providers.aws): AWS keys will be notified, not revoked".into(),
            );
        }
        let rules = keyburn_scanner::rules::RuleSet::builtin();
        let providers = Registry::new(&rules, &http, &options);
        let partner = {
            let mut mapped = rules.clone();
            let wanted: std::collections::BTreeSet<&String> =
                cfg.github.partner.types.values().collect();
            mapped.retain(|r| wanted.contains(&r.id));
            Partner {
                keys: crate::partner::PartnerKeys::new(
                    &cfg.github.partner.keys_url,
                    cfg.github_token()?,
                    http.clone(),
                ),
                engine: keyburn_scanner::Engine::new(mapped).map_err(|e| ConfigError::Value {
                    key: "github.partner.types".into(),
                    message: e.to_string(),
                })?,
            }
        };
        let notifier = Notifier::new(http, cfg.slack_webhook()?, cfg.notify.webhook.clone());
        let r = Responder {
            verifier: Verifier::new(cfg.webhook_secrets()?),
            queue,
            intake: intake_tx,
            audit,
            github,
            providers,
            notifier,
            metrics: Metrics::default(),
            metrics_token: cfg.metrics_token()?,
            wake: tokio::sync::Notify::new(),
            partner,
            sealer: crate::partner::Sealer::new(key.as_bytes()),
            cfg,
            _data_dir: data_dir,
        };
        Ok((Arc::new(r), notes))
    }

    /// Run `f` on the queue off the async threads (SQLite fsyncs).
    pub async fn db<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Queue) -> Result<T, QueueError> + Send + 'static,
    ) -> Result<T, QueueError> {
        let r = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let mut q = r.queue.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut q)
        })
        .await
        .unwrap_or_else(|e| Err(QueueError::Worker(e.to_string())))
    }

    /// Commit a delivery's job (batched with others arriving meanwhile);
    /// resolves once it is on disk.
    pub async fn submit(
        &self,
        id: String,
        repo: String,
        alert_number: u64,
        payload: String,
        source: &'static str,
    ) -> Result<Enqueued, String> {
        let (d, rx) = Delivery::new(id, repo, alert_number, payload, source);
        self.deliver(d)?;
        rx.await
            .map_err(|_| "the intake thread stopped".to_string())?
    }

    /// Hand a delivery to the intake thread; its receiver says when it is
    /// committed. Deliveries handed over together share a commit.
    pub fn deliver(&self, d: Delivery) -> Result<(), String> {
        self.intake
            .send(d)
            .map_err(|_| "the intake thread stopped".to_string())
    }

    /// Write an audit record; a failure is logged (the action happened
    /// whether or not it could be recorded).
    async fn record(
        &self,
        event: &str,
        alert: &str,
        outcome: &str,
        extra: impl FnOnce(&mut Record),
    ) {
        let mut rec = Record {
            event: event.into(),
            actor: ACTOR.into(),
            alert: Some(alert.into()),
            outcome: outcome.into(),
            ..Record::default()
        };
        extra(&mut rec);
        if let Err(e) = self.audit.append_async(vec![rec]).await {
            tracing::error!("audit log: {e}");
        }
    }

    /// Enqueue an alert found open by reconciliation or given on the
    /// command line: a new job unless one is pending or already handled
    /// this opening of the alert; a dead job is re-driven at its step.
    pub async fn enqueue_alert(
        self: &Arc<Self>,
        repo: &str,
        number: u64,
        source: &'static str,
    ) -> Result<Enqueue, QueueError> {
        let repo = repo.to_string();
        let payload = stored_payload(source);
        let outcome = self
            .db(move |q| {
                let now = now_ms();
                match q.standing(&repo, number)? {
                    Standing::Pending(_) | Standing::Handled(_) => Ok(Enqueue::Nothing),
                    Standing::Dead(id) => {
                        q.retry(id, None, now)?;
                        Ok(Enqueue::Redriven(id))
                    }
                    standing @ (Standing::Unknown | Standing::Closed(_)) => {
                        let job = NewJob {
                            delivery: None,
                            repo: &repo,
                            alert_number: number,
                            source,
                            payload: &payload,
                            step: "fetch",
                        };
                        Ok(match q.enqueue(&job, now)? {
                            Enqueued::Created(id) if matches!(standing, Standing::Closed(_)) => {
                                Enqueue::Reopened(id)
                            }
                            Enqueued::Created(id) => Enqueue::Created(id),
                            _ => Enqueue::Nothing,
                        })
                    }
                }
            })
            .await?;
        if outcome != Enqueue::Nothing {
            self.wake.notify_one();
        }
        Ok(outcome)
    }

    /// One reconciliation pass over the configured organisations and
    /// repositories. Returns how many alerts were enqueued or re-driven.
    pub async fn reconcile(self: &Arc<Self>) -> usize {
        let scopes = (self
            .cfg
            .github
            .organizations
            .iter()
            .map(|o| format!("orgs/{o}")))
        .chain(
            self.cfg
                .github
                .repositories
                .iter()
                .map(|r| format!("repos/{r}")),
        );
        let mut added = 0;
        for scope in scopes {
            match self.github.open_alerts(&scope).await {
                Ok(alerts) => {
                    for (repo, a) in alerts {
                        let alert_ref = format!("{repo}#{}", a.number);
                        let (event, job) =
                            match self.enqueue_alert(&repo, a.number, "reconcile").await {
                                Ok(Enqueue::Created(id)) => ("reconcile.enqueued", id),
                                Ok(Enqueue::Reopened(id)) => ("reconcile.reopened", id),
                                Ok(Enqueue::Redriven(id)) => ("reconcile.redriven", id),
                                Ok(Enqueue::Nothing) => continue,
                                Err(e) => {
                                    tracing::error!("reconcile {scope}: {e}");
                                    continue;
                                }
                            };
                        added += 1;
                        self.record(event, &alert_ref, "queued", |r| {
                            r.detail.insert("job".into(), job.into());
                        })
                        .await;
                    }
                }
                Err(e) => tracing::warn!("reconcile {scope}: {e}"),
            }
        }
        added
    }

    fn lease(&self) -> Duration {
        Duration::from_secs(self.cfg.worker.lease_secs.max(1))
    }

    /// Drop what finished jobs older than `retention_days` no longer need.
    pub async fn prune(self: &Arc<Self>) -> Result<(usize, usize), QueueError> {
        let age = self.cfg.retention();
        self.db(move |q| q.prune(age, now_ms())).await
    }

    /// Take jobs until the process stops.
    pub async fn work(self: Arc<Self>) {
        let lease = self.lease();
        loop {
            match self.db(move |q| q.claim(now_ms(), lease)).await {
                Ok(Some(job)) => self.process(job).await,
                Ok(None) => {
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
                Err(e) => {
                    tracing::error!("job queue: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Renew `held` every third of the lease until the lease is lost
    /// (returns then) or the caller drops this future.
    async fn keep_lease(self: &Arc<Self>, held: Lease) {
        let lease = self.lease();
        loop {
            tokio::time::sleep(lease / 3).await;
            match self.db(move |q| q.renew(held, now_ms(), lease)).await {
                Ok(()) => {}
                Err(QueueError::LeaseLost(_)) => return,
                // The next renewal may get through; the lease has two
                // more thirds to run.
                Err(e) => tracing::warn!(job = held.id, "cannot renew the lease: {e}"),
            }
        }
    }

    async fn process(self: &Arc<Self>, job: crate::queue::Job) {
        let alert_ref = format!("{}#{}", job.repo, job.alert_number);
        let held = job.lease();
        let mut ctx: Context = serde_json::from_str(&job.context).unwrap_or_default();
        let result = tokio::select! {
            r = self.steps(&job, held, &alert_ref, &mut ctx) => r,
            () = self.keep_lease(held) => Err(StepError::LeaseLost),
        };
        let now = now_ms();
        match result {
            Ok(()) => {
                let c = serde_json::to_string(&ctx).unwrap_or_else(|_| "{}".into());
                match self.db(move |q| q.complete(held, &c, now)).await {
                    Ok(()) => {}
                    Err(QueueError::LeaseLost(_)) => return self.lost(&job, &alert_ref),
                    Err(e) => tracing::error!("job {}: {e}", job.id),
                }
                self.metrics.count(
                    "keyburn_steps_total",
                    &[("step", "done"), ("outcome", "ok")],
                );
                self.metrics.observe(
                    "keyburn_alert_resolution_seconds",
                    Duration::from_millis((now - job.created_at).max(0) as u64),
                );
                tracing::info!(job = job.id, alert = %alert_ref, "job done");
            }
            Err(StepError::LeaseLost) => self.lost(&job, &alert_ref),
            Err(StepError::Failed { message, failure }) => {
                let (backoff, m) = (self.cfg.backoff(), message.clone());
                let retry = self
                    .db(move |q| q.fail(held, &m, failure, &backoff, now))
                    .await;
                if matches!(retry, Err(QueueError::LeaseLost(_))) {
                    return self.lost(&job, &alert_ref);
                }
                self.metrics.count(
                    "keyburn_steps_total",
                    &[("step", &job.step), ("outcome", "error")],
                );
                self.record("step.failed", &alert_ref, "error", |r| {
                    r.detail
                        .insert("error".into(), Value::String(message.clone()));
                    if failure == Failure::Permanent {
                        r.detail.insert("permanent".into(), true.into());
                    }
                })
                .await;
                match retry {
                    Ok(Retry::At(at)) => {
                        tracing::warn!(job = job.id, alert = %alert_ref, "step failed, retry in {} ms: {message}", at - now)
                    }
                    Ok(Retry::Dead) => self.dead_letter(&job, &alert_ref, &message).await,
                    Err(e) => tracing::error!("job {}: {e}", job.id),
                }
            }
        }
    }

    /// Another worker took the job over: this one's result is discarded.
    fn lost(&self, job: &crate::queue::Job, alert_ref: &str) {
        tracing::warn!(job = job.id, alert = %alert_ref, "lease lost to another worker; this run's result is discarded");
        self.metrics.count(
            "keyburn_steps_total",
            &[("step", &job.step), ("outcome", "lease_lost")],
        );
    }

    async fn dead_letter(&self, job: &crate::queue::Job, alert_ref: &str, message: &str) {
        let id = job.id;
        tracing::error!(job = id, alert = %alert_ref, "job dead: {message}");
        self.record("job.dead", alert_ref, "dead", |_| {}).await;
        let notice = Notice {
            repository: job.repo.clone(),
            alert_number: job.alert_number,
            alert_url: None,
            secret_type: String::new(),
            outcome: "dead-letter".into(),
            summary: format!(
                "keyburn gave up ({message}); see `keyburn jobs show {id}`, then `keyburn jobs retry {id}`"
            ),
            secret_masked: String::new(),
            locations: Vec::new(),
            incident: None,
        };
        if let Err(e) = self.notifier.send(&notice).await {
            tracing::error!("dead-letter notification: {e}");
        }
    }

    /// The check of a GitHub `secret_type`, or of a partner job's rule
    /// (`partner:<rule id>`).
    fn checker(&self, secret_type: &str) -> Option<&Arc<Checker>> {
        match secret_type.strip_prefix("partner:") {
            Some(rule) => self.providers.for_rule(rule),
            None => self.providers.for_github_type(secret_type),
        }
    }

    /// The check that revokes `secret_type` through an API, if any.
    fn provider(&self, secret_type: &str) -> Option<&Checker> {
        self.checker(secret_type)
            .filter(|c| c.revokes_by_api())
            .map(|c| c.as_ref())
    }

    /// What a person does to revoke `secret_type`, where no API can.
    fn manual_steps(&self, secret_type: &str) -> Option<String> {
        self.checker(secret_type)?.manual()
    }

    /// A partner job's token as an alert: the sealed token opened, its
    /// rule as the secret type. There is no alert at GitHub to fetch or
    /// resolve.
    fn partner_alert(&self, job: &crate::queue::Job) -> Result<Alert, StepError> {
        let p: Map<String, Value> = serde_json::from_str(&job.payload).unwrap_or_default();
        let field = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_string);
        let permanent = |message: &str| StepError::Failed {
            message: message.into(),
            failure: Failure::Permanent,
        };
        let token = field("sealed")
            .and_then(|s| self.sealer.open(&s))
            .ok_or_else(|| {
                permanent(
                    "the token cannot be unsealed (another audit key, or its payload was pruned)",
                )
            })?;
        let rule = field("rule").ok_or_else(|| permanent("a partner job without its rule"))?;
        Ok(Alert {
            number: job.alert_number,
            state: "open".into(),
            resolution: None,
            secret_type: format!("partner:{rule}"),
            secret_type_display_name: field("type"),
            secret: token,
            html_url: field("url"),
            publicly_leaked: true,
            repository: None,
            resolved_by: None,
        })
    }

    /// Record, under the lease, that `step`'s outside call is about to be
    /// made. Returns false when an earlier run recorded it already: that
    /// call may have happened, and must not be repeated blind.
    async fn intend(
        self: &Arc<Self>,
        held: Lease,
        ctx: &mut Context,
        step: &str,
    ) -> Result<bool, StepError> {
        if ctx.intent.as_deref() == Some(step) {
            return Ok(false);
        }
        self.set_intent(held, ctx, Some(step)).await?;
        Ok(true)
    }

    /// Store the job's intent under the lease: `None` after a call that
    /// was answered with an error (it had no effect), so that the retry
    /// calls again.
    async fn set_intent(
        self: &Arc<Self>,
        held: Lease,
        ctx: &mut Context,
        intent: Option<&str>,
    ) -> Result<(), StepError> {
        ctx.intent = intent.map(str::to_string);
        let c = serde_json::to_string(ctx).map_err(StepError::retryable)?;
        self.db(move |q| q.save(held, &c, now_ms())).await?;
        Ok(())
    }

    async fn steps(
        self: &Arc<Self>,
        job: &crate::queue::Job,
        held: Lease,
        alert_ref: &str,
        ctx: &mut Context,
    ) -> Result<(), StepError> {
        let partner = job.source == PARTNER;
        let alert = if partner {
            self.partner_alert(job)?
        } else {
            self.github.alert(&job.repo, job.alert_number).await?
        };
        let secret_ref = self.audit.secret_ref(&alert.secret);
        let mut step = job.step.clone();
        loop {
            let next = match step.as_str() {
                "fetch" => {
                    let locations = self.github.locations(&job.repo, job.alert_number).await?;
                    ctx.locations = locations.iter().take(5).cloned().collect();
                    self.record("alert.fetched", alert_ref, &alert.state, |r| {
                        r.secret = Some(secret_ref.clone());
                        r.delivery = job.delivery.clone();
                        r.detail
                            .insert("secret_type".into(), alert.secret_type.clone().into());
                        r.detail.insert("locations".into(), json!(locations));
                    })
                    .await;
                    if alert.state != "open" {
                        ctx.alert_closed = true;
                        return Ok(());
                    }
                    "decide"
                }
                "decide" => {
                    let public =
                        alert.publicly_leaked || payload_action(&job.payload) == "publicly_leaked";
                    // GitHub reports a partner's own tokens found in public:
                    // they are revoked (a dry run still changes nothing).
                    let mut action = if partner {
                        Action::Revoke
                    } else {
                        self.cfg.decide(&alert.secret_type, &job.repo, public)
                    };
                    let provider = self.provider(&alert.secret_type);
                    if action == Action::Revoke && provider.is_none() {
                        action = Action::Notify;
                        ctx.note = Some(match self.manual_steps(&alert.secret_type) {
                            Some(steps) => format!(
                                "no API revokes {} secrets: notified instead. To revoke: {steps}",
                                alert.secret_type
                            ),
                            None => format!(
                                "no provider revokes {} secrets: notified instead",
                                alert.secret_type
                            ),
                        });
                    }
                    ctx.action = Some(action);
                    ctx.provider = provider.map(|p| p.family.clone());
                    self.record("policy.decided", alert_ref, action_str(action), |r| {
                        r.secret = Some(secret_ref.clone());
                        if let Some(n) = &ctx.note {
                            r.detail.insert("note".into(), n.clone().into());
                        }
                    })
                    .await;
                    match action {
                        Action::Revoke => "revoke",
                        Action::Notify => "notify",
                        Action::Ignore => return Ok(()),
                    }
                }
                "revoke" => {
                    // A person may have closed the alert since the job was
                    // queued (a false positive, say): their word stands.
                    let now = if partner {
                        alert.clone()
                    } else {
                        self.github.alert(&job.repo, job.alert_number).await?
                    };
                    if now.state != "open" {
                        let by = now.resolved_by.as_ref().map_or("someone", |u| &u.login);
                        let why = now.resolution.as_deref().unwrap_or("closed");
                        self.record("revoke.skipped", alert_ref, "not-revoked", |r| {
                            r.secret = Some(secret_ref.clone());
                            r.detail.insert(
                                "reason".into(),
                                format!("resolved by {by} as {why}; not revoked").into(),
                            );
                        })
                        .await;
                        ctx.alert_closed = true;
                        return Ok(());
                    }
                    let p = self.require_provider(&alert)?;
                    let secret = Secret::new(alert.secret.clone());
                    let trusted = p.validates();
                    let (outcome, note) = if self.cfg.policy.dry_run {
                        ("dry-run", None)
                    } else if ctx.intent.as_deref() == Some("revoke") {
                        (
                            "unknown",
                            Some("an earlier run's revoke call was cut short (the process stopped); not repeated, verified afterwards".to_string()),
                        )
                    } else if trusted && p.validate(&secret).await?.validity == Validity::Inactive {
                        ("already-inactive", None)
                    } else {
                        self.intend(held, ctx, "revoke").await?;
                        let refused = match p.revoke(&secret).await {
                            // Confirmed (or not) by the confirm step.
                            Ok(Revoked::Revoked(_)) => {
                                Ok((if trusted { "revoked" } else { "accepted" }, None))
                            }
                            Ok(Revoked::Accepted(r)) => Ok(("accepted", Some(r))),
                            Ok(Revoked::NotFound(r)) => Ok(("already-inactive", Some(r))),
                            // No answer: the provider may have acted.
                            // Not repeated; confirm finds out.
                            Ok(Revoked::Unknown(r)) => {
                                Ok(("unknown", Some(format!("{r}; verified afterwards"))))
                            }
                            Err(e) if !e.answered() => Ok((
                                "unknown",
                                Some(format!("{e}; not repeated, verified afterwards")),
                            )),
                            Ok(Revoked::NotAuthorized(r)) => Err(StepError::Failed {
                                message: r,
                                failure: Failure::Permanent,
                            }),
                            Ok(Revoked::Manual(steps)) => Err(StepError::Failed {
                                message: format!("no API revokes it: {steps}"),
                                failure: Failure::Permanent,
                            }),
                            Err(e) => Err(e.into()),
                        };
                        match refused {
                            Ok(done) => done,
                            Err(e) => {
                                let message = match &e {
                                    StepError::Failed { message, .. } => message.clone(),
                                    _ => "lease lost".into(),
                                };
                                self.record("revoke", alert_ref, "error", |r| {
                                    r.provider = Some(p.family.clone());
                                    r.secret = Some(secret_ref.clone());
                                    r.detail.insert("error".into(), message.into());
                                })
                                .await;
                                self.set_intent(held, ctx, None).await?;
                                return Err(e);
                            }
                        }
                    };
                    ctx.revoke = Some(outcome.into());
                    self.metrics.count(
                        "keyburn_revocations_total",
                        &[("provider", &p.family), ("outcome", outcome)],
                    );
                    self.record("revoke", alert_ref, outcome, |r| {
                        r.provider = Some(p.family.clone());
                        r.secret = Some(secret_ref.clone());
                        if let Some(n) = &note {
                            r.detail.insert("note".into(), n.clone().into());
                        }
                    })
                    .await;
                    match outcome {
                        "dry-run" => "notify",
                        // A containment step only where the provider has
                        // one (the future is built, not run).
                        _ if p.quarantine(&secret).is_some() => "quarantine",
                        _ => "confirm",
                    }
                }
                "quarantine" => {
                    let p = self.require_provider(&alert)?;
                    let secret = Secret::new(alert.secret.clone());
                    if let Some(call) = p.quarantine(&secret) {
                        let result = call.await;
                        self.record(
                            "quarantine",
                            alert_ref,
                            if result.is_ok() { "attached" } else { "error" },
                            |r| {
                                r.provider = Some(p.family.clone());
                                r.secret = Some(secret_ref.clone());
                                if let Err(e) = &result {
                                    r.detail.insert("error".into(), e.to_string().into());
                                }
                            },
                        )
                        .await;
                        result?;
                    }
                    "confirm"
                }
                "confirm" => {
                    let p = self.require_provider(&alert)?;
                    if p.validates() {
                        let v = p
                            .validate(&Secret::new(alert.secret.clone()))
                            .await?
                            .validity;
                        self.record("confirm", alert_ref, v.as_str(), |r| {
                            r.provider = Some(p.family.clone());
                            r.secret = Some(secret_ref.clone());
                        })
                        .await;
                        if v == Validity::Active {
                            return Err(StepError::retryable(format!(
                                "{} still accepts the secret after revocation",
                                p.family
                            )));
                        }
                        ctx.validity = Some(v);
                    } else {
                        self.record("confirm", alert_ref, "unverifiable", |r| {
                            r.provider = Some(p.family.clone());
                            r.secret = Some(secret_ref.clone());
                        })
                        .await;
                    }
                    if partner {
                        "notify"
                    } else {
                        "resolve"
                    }
                }
                "resolve" => {
                    // The alert as this run fetched it: after a crash
                    // mid-PATCH it reads resolved, and is not patched again.
                    let outcome = if alert.state != "open" {
                        "already-resolved"
                    } else {
                        let comment = format!(
                            "Revoked by keyburn through the {} API; validation after revocation: {}.",
                            ctx.provider.as_deref().unwrap_or("provider"),
                            ctx.validity.map_or("not checked", Validity::as_str)
                        );
                        self.github
                            .resolve(&job.repo, job.alert_number, &comment)
                            .await?;
                        "resolved"
                    };
                    ctx.alert_closed = true;
                    self.record("alert.resolve", alert_ref, outcome, |_| {})
                        .await;
                    "notify"
                }
                "notify" => {
                    let notice = notice_for(job, &alert, ctx);
                    if !self.intend(held, ctx, "notify").await? {
                        // Sent or not, it is not sent twice.
                        self.record("notify", alert_ref, "unknown", |r| {
                            r.secret = Some(secret_ref.clone());
                            r.detail.insert(
                                "note".into(),
                                "an earlier run may have sent it; not sent again".into(),
                            );
                        })
                        .await;
                        ctx.intent = None;
                        return Ok(());
                    }
                    let sent = self.notifier.send(&notice).await;
                    // No answer: the notice may have gone out. Not resent.
                    let outcome = match &sent {
                        Ok(()) => notice.outcome.as_str(),
                        Err(e) if !e.answered() => "unknown",
                        Err(_) => "error",
                    };
                    self.record("notify", alert_ref, outcome, |r| {
                        r.secret = Some(secret_ref.clone());
                        if let Err(e) = &sent {
                            r.detail.insert("error".into(), e.to_string().into());
                        }
                    })
                    .await;
                    match sent {
                        Err(e) if e.answered() => {
                            self.set_intent(held, ctx, None).await?;
                            return Err(e.into());
                        }
                        _ => {
                            ctx.intent = None;
                            return Ok(());
                        }
                    }
                }
                other => {
                    return Err(StepError::Failed {
                        message: format!("unknown step {other:?}"),
                        failure: Failure::Permanent,
                    })
                }
            };
            self.metrics
                .count("keyburn_steps_total", &[("step", &step), ("outcome", "ok")]);
            ctx.intent = None;
            let n = next.to_string();
            let c = serde_json::to_string(ctx).map_err(StepError::retryable)?;
            self.db(move |q| q.advance(held, &n, &c, now_ms())).await?;
            step = next.to_string();
        }
    }

    fn require_provider(&self, alert: &Alert) -> Result<&Checker, StepError> {
        self.provider(&alert.secret_type)
            .ok_or_else(|| StepError::Failed {
                message: format!("no provider for {}", alert.secret_type),
                failure: Failure::Permanent,
            })
    }
}

/// The GitHub client the configuration describes: a GitHub App's
/// installation, a token, or no credentials.
pub fn github_client(cfg: &Config, http: &Http) -> Result<GitHub, SetupError> {
    let auth = match &cfg.github.app {
        Some(app) => {
            let pem = std::fs::read(&app.private_key_path).map_err(io_at(&app.private_key_path))?;
            let a = AppAuth::new(app.id, app.installation_id, &pem).map_err(|message| {
                ConfigError::Value {
                    key: "github.app.private_key_path".into(),
                    message,
                }
            })?;
            Auth::App(a)
        }
        None => cfg.github_token()?.map_or(Auth::None, Auth::Token),
    };
    Ok(GitHub::new(http.clone(), &cfg.github.api_url, auth))
}

/// What [`Responder::enqueue_alert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueue {
    /// A first job for the alert.
    Created(i64),
    /// The alert was closed and is open again: a new job.
    Reopened(i64),
    /// Its dead job is queued again at its step.
    Redriven(i64),
    /// A job is pending, or handled this opening of the alert already.
    Nothing,
}

/// What a job keeps of a delivery: the action (it may say
/// `publicly_leaked`) and nothing else; the alert is re-read from GitHub.
pub fn stored_payload(action: &str) -> String {
    json!({ "action": action }).to_string()
}

fn action_str(a: Action) -> &'static str {
    match a {
        Action::Revoke => "revoke",
        Action::Notify => "notify",
        Action::Ignore => "ignore",
    }
}

fn payload_action(payload: &str) -> String {
    serde_json::from_str::<Map<String, Value>>(payload)
        .ok()
        .and_then(|m| m.get("action").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default()
}

fn notice_for(job: &crate::queue::Job, alert: &Alert, ctx: &Context) -> Notice {
    let (outcome, summary) = match (ctx.action, ctx.revoke.as_deref()) {
        (Some(Action::Revoke), Some("dry-run")) => (
            "dry-run",
            "dry run: keyburn would have revoked it; nothing was changed".to_string(),
        ),
        (Some(Action::Revoke), Some(r)) => (
            "revoked",
            format!(
                "{} through {} ({}), confirmed {}, alert resolved as revoked",
                if r == "already-inactive" {
                    "found already inactive"
                } else {
                    "revoked"
                },
                ctx.provider.as_deref().unwrap_or("its provider"),
                r,
                ctx.validity.map_or("unknown", Validity::as_str)
            ),
        ),
        _ => (
            "notified",
            ctx.note
                .clone()
                .unwrap_or_else(|| "policy says notify: rotate this secret".into()),
        ),
    };
    Notice {
        repository: job.repo.clone(),
        alert_number: job.alert_number,
        alert_url: alert.html_url.clone(),
        secret_type: alert.secret_type.clone(),
        outcome: outcome.into(),
        summary,
        secret_masked: mask(&alert.secret),
        locations: ctx.locations.clone(),
        incident: None,
    }
}

/// Read the generated audit key, creating it (32 random bytes, hex, mode
/// 0600) on first start. Returns the key and whether it was created.
pub fn audit_key_file(path: &std::path::Path) -> std::io::Result<(String, bool)> {
    if let Ok(k) = std::fs::read_to_string(path) {
        let k = k.trim().to_string();
        if !k.is_empty() {
            return Ok((k, false));
        }
    }
    let key = hex::encode(rand::random::<[u8; 32]>());
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write;
    opts.open(path)?.write_all(key.as_bytes())?;
    Ok((key, true))
}
