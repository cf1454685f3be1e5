//! The HTTP side: `POST /webhooks/github`, `GET /healthz`, `/readyz`,
//! `/metrics`, and [`serve`], which also runs the workers and the
//! reconciler.
//!
//! A delivery is acknowledged with 202 only once its job is committed to
//! the queue; if the queue cannot write (a full disk), the answer is 503
//! so that the delivery can be redelivered from GitHub's side.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::queue::{now_ms, Enqueued, State as JobState};
use crate::worker::Responder;

/// The `secret_scanning_alert` actions that start a job.
const ACTIONS: &[&str] = &["created", "reopened", "publicly_leaked", "validated"];

pub fn router(r: Arc<Responder>) -> Router {
    let limit = r.cfg.server.max_body_bytes;
    let app = Router::new()
        .route("/webhooks/github", post(webhook))
        .route("/webhooks/github-partner", post(partner_webhook))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz));
    // With a listen address of its own, /metrics is served only there.
    let app = match r.cfg.server.metrics_listen {
        Some(_) => app,
        None => app.route("/metrics", get(metrics)),
    };
    app.layer(DefaultBodyLimit::max(limit)).with_state(r)
}

/// The router of `server.metrics_listen`: `/metrics` alone.
fn metrics_router(r: Arc<Responder>) -> Router {
    Router::new().route("/metrics", get(metrics)).with_state(r)
}

/// Serve on `listener` until `shutdown` completes, with the workers and
/// the periodic reconciliation running beside it. Connections are served
/// at most `max_connections` at a time, each cut if its headers take over
/// `header_timeout_secs`; on shutdown, open connections finish their
/// request within `shutdown_drain_secs` or are dropped.
pub async fn serve(
    r: Arc<Responder>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    for _ in 0..r.cfg.worker.concurrency.max(1) {
        tokio::spawn(Arc::clone(&r).work());
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tokio::spawn(return_memory());
    let pruner = Arc::clone(&r);
    tokio::spawn(async move {
        loop {
            match pruner.prune().await {
                Ok((0, 0)) => {}
                Ok((p, d)) => tracing::info!(
                    "pruned {p} finished job payload(s) and {d} delivery id(s) past retention"
                ),
                Err(e) => tracing::warn!("prune: {e}"),
            }
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    });
    let rec = Arc::clone(&r);
    tokio::spawn(async move {
        let every = rec.cfg.github.reconcile_interval_secs;
        loop {
            let n = rec.reconcile().await;
            if n > 0 {
                tracing::info!("reconciliation enqueued {n} open alert(s) no delivery brought");
            }
            if every == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_secs(every)).await;
        }
    });
    if let Some(addr) = &r.cfg.server.metrics_listen {
        let l = tokio::net::TcpListener::bind(addr).await?;
        tracing::info!("metrics on http://{}/metrics", l.local_addr()?);
        let app = metrics_router(Arc::clone(&r));
        tokio::spawn(async move {
            if let Err(e) = axum::serve(l, app).await {
                tracing::error!("metrics listener: {e}");
            }
        });
    }
    let limits = &r.cfg.server;
    let max = limits.max_connections.max(1);
    let drain = Duration::from_secs(limits.shutdown_drain_secs);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_timeout_secs.max(1)));
    let app = router(r);
    let slots = Arc::new(tokio::sync::Semaphore::new(max));
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            p = Arc::clone(&slots).acquire_owned() => p.expect("the semaphore is never closed"),
        };
        let (stream, _) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, say: wait, and go on.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(permit);
        });
    }
    let _ = stop_tx.send(true);
    if tokio::time::timeout(drain, slots.acquire_many(max as u32))
        .await
        .is_err()
    {
        tracing::warn!(
            "{} connection(s) still open after {} s: stopping anyway",
            max - slots.available_permits(),
            drain.as_secs()
        );
    }
    Ok(())
}

/// Give freed heap back to the system every half minute: a burst of large
/// deliveries (up to `max_connections` bodies of `max_body_bytes` at once)
/// must not leave the process that large for good, and glibc's allocator
/// keeps freed memory unless asked.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
async fn return_memory() {
    loop {
        tokio::time::sleep(Duration::from_secs(30)).await;
        // SAFETY: malloc_trim only releases free heap pages; it takes the
        // allocator's own locks and touches no live allocation.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

#[derive(Deserialize)]
struct AlertEvent {
    action: String,
    alert: AlertRef,
    repository: RepoRef,
}

#[derive(Deserialize)]
struct AlertRef {
    number: u64,
}

#[derive(Deserialize)]
struct RepoRef {
    full_name: String,
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

async fn webhook(State(r): State<Arc<Responder>>, request: axum::extract::Request) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let event = header("x-github-event").unwrap_or_default();
    let (status, outcome, resp) = match read_body(&r, &headers, body).await {
        Ok(body) => handle(&r, &headers, &event, header("x-github-delivery"), body).await,
        Err(refused) => refused,
    };
    r.metrics.count(
        "keyburn_deliveries_total",
        &[("event", metric_event(&event)), ("outcome", outcome)],
    );
    r.metrics
        .observe("keyburn_webhook_ack_seconds", started.elapsed());
    if status.is_client_error() || status.is_server_error() {
        tracing::warn!(event = %event, status = status.as_u16(), "webhook refused: {outcome}");
    }
    resp
}

/// Bounded label values for metrics, whatever a sender puts in the header.
fn metric_event(event: &str) -> &'static str {
    match event {
        "ping" => "ping",
        "secret_scanning_alert" => "secret_scanning_alert",
        _ => "other",
    }
}

/// The body, up to `max_body_bytes`: a declared length over the limit is
/// refused before a byte is read, a body that runs over it as soon as it
/// does (413, logged and counted like every refusal).
async fn read_body(
    r: &Arc<Responder>,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<Bytes, (StatusCode, &'static str, Response)> {
    let limit = r.cfg.server.max_body_bytes;
    let too_large = || {
        let status = StatusCode::PAYLOAD_TOO_LARGE;
        let resp = reply(status, json!({"error": "payload too large"}));
        (status, "too_large", resp)
    };
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let timeout = Duration::from_secs(r.cfg.server.body_timeout_secs.max(1));
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(too_large()),
        Err(_) => {
            let status = StatusCode::REQUEST_TIMEOUT;
            let resp = reply(status, json!({"error": "request body too slow"}));
            Err((status, "timeout", resp))
        }
    }
}

async fn handle(
    r: &Arc<Responder>,
    headers: &HeaderMap,
    event: &str,
    delivery: Option<String>,
    body: Bytes,
) -> (StatusCode, &'static str, Response) {
    let sig = headers.get("x-hub-signature-256").map(|v| v.as_bytes());
    if let Err(e) = r.verifier.verify(sig, &body) {
        // Why it failed is for the operator's log, not for the caller: a
        // forger learns nothing from the answer.
        tracing::warn!(reason = %e, "webhook delivery refused: bad or missing signature");
        let resp = reply(StatusCode::UNAUTHORIZED, json!({"error": "unauthorized"}));
        return (StatusCode::UNAUTHORIZED, "unauthorized", resp);
    }
    let Some(delivery) = delivery.filter(|d| !d.is_empty() && d.len() <= 200) else {
        let resp = reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "missing X-GitHub-Delivery header"}),
        );
        return (StatusCode::BAD_REQUEST, "bad_request", resp);
    };
    if event != "secret_scanning_alert" {
        let status = if event == "ping" {
            StatusCode::OK
        } else {
            StatusCode::NO_CONTENT
        };
        let d = delivery.clone();
        return match r.db(move |q| q.record_delivery(&d, now_ms())).await {
            Ok(_) if status == StatusCode::OK => {
                (status, "ping", reply(status, json!({"status": "pong"})))
            }
            Ok(_) => (status, "ignored", status.into_response()),
            Err(e) => unavailable(&e.to_string()),
        };
    }
    let ev: AlertEvent = match serde_json::from_slice(&body) {
        Ok(ev) => ev,
        Err(e) => {
            let resp = reply(
                StatusCode::BAD_REQUEST,
                json!({"error": format!("not a secret_scanning_alert payload: {e}")}),
            );
            return (StatusCode::BAD_REQUEST, "bad_request", resp);
        }
    };
    if !ACTIONS.contains(&ev.action.as_str()) {
        let d = delivery.clone();
        return match r.db(move |q| q.record_delivery(&d, now_ms())).await {
            Ok(_) => (
                StatusCode::NO_CONTENT,
                "ignored",
                StatusCode::NO_CONTENT.into_response(),
            ),
            Err(e) => unavailable(&e.to_string()),
        };
    }
    if !crate::github::is_repo_name(&ev.repository.full_name) {
        let resp = reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "repository.full_name is not owner/name"}),
        );
        return (StatusCode::BAD_REQUEST, "bad_request", resp);
    }
    let number = ev.alert.number;
    // Only what the worker reads; the alert itself is re-read from GitHub.
    let payload = crate::worker::stored_payload(&ev.action);
    match r
        .submit(
            delivery,
            ev.repository.full_name,
            number,
            payload,
            "webhook",
        )
        .await
    {
        Ok(Enqueued::Created(id)) => {
            r.wake.notify_one();
            let resp = reply(StatusCode::ACCEPTED, json!({"status": "queued", "job": id}));
            (StatusCode::ACCEPTED, "queued", resp)
        }
        Ok(Enqueued::AlreadyPending(id)) => {
            let resp = reply(
                StatusCode::ACCEPTED,
                json!({"status": "already queued", "job": id}),
            );
            (StatusCode::ACCEPTED, "already_queued", resp)
        }
        Ok(Enqueued::DuplicateDelivery(job)) => {
            let resp = reply(
                StatusCode::OK,
                json!({"status": "duplicate delivery", "job": job}),
            );
            (StatusCode::OK, "duplicate", resp)
        }
        Err(e) => unavailable(&e),
    }
}

/// `POST /webhooks/github-partner`: GitHub's report of tokens found in
/// public. The signature is checked before anything else (401 and nothing
/// more when it fails); each token of ours is queued durably before the
/// answer, which is GitHub's feedback array: `true_positive` for a token
/// of ours that is live or that keyburn can revoke, else
/// `false_positive`.
async fn partner_webhook(
    State(r): State<Arc<Responder>>,
    request: axum::extract::Request,
) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let (status, outcome, resp) = match read_body(&r, &parts.headers, body).await {
        Ok(body) => partner(&r, &parts.headers, body).await,
        Err(refused) => refused,
    };
    r.metrics.count(
        "keyburn_deliveries_total",
        &[("event", "github_partner"), ("outcome", outcome)],
    );
    r.metrics
        .observe("keyburn_webhook_ack_seconds", started.elapsed());
    if status.is_client_error() || status.is_server_error() {
        tracing::warn!(
            status = status.as_u16(),
            "partner delivery refused: {outcome}"
        );
    }
    resp
}

async fn partner(
    r: &Arc<Responder>,
    headers: &HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str, Response) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Err(e) = r
        .partner
        .keys
        .verify(
            header("github-public-key-identifier"),
            header("github-public-key-signature"),
            &body,
        )
        .await
    {
        tracing::warn!(reason = %e, "partner delivery refused: bad or missing signature");
        let resp = reply(StatusCode::UNAUTHORIZED, json!({"error": "unauthorized"}));
        return (StatusCode::UNAUTHORIZED, "unauthorized", resp);
    }
    let reported: Vec<crate::partner::Reported> = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            let resp = reply(
                StatusCode::BAD_REQUEST,
                json!({"error": format!("not a list of reported tokens: {e}")}),
            );
            return (StatusCode::BAD_REQUEST, "bad_request", resp);
        }
    };
    let cfg = &r.cfg.github.partner;
    if reported.len() > cfg.max_tokens {
        let resp = reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"error": format!("{} tokens; at most {} a batch", reported.len(), cfg.max_tokens)}),
        );
        return (StatusCode::PAYLOAD_TOO_LARGE, "too_large", resp);
    }
    // Ours: queued before the answer (below), so that an acknowledged
    // token is never lost.
    let rules: Vec<Option<String>> = reported
        .iter()
        .map(|t| r.partner.rule_of(&cfg.types, &t.kind, &t.token))
        .collect();
    // Labels: what is known without an answer (ours and revocable), then
    // each token of ours validated, all within the answer's time; before
    // the tokens are queued, so that the worker's revocation cannot turn a
    // live token into a dead one under the check.
    let checkers: Vec<Option<Arc<crate::providers::Checker>>> = rules
        .iter()
        .map(|rule| {
            rule.as_ref()
                .and_then(|id| r.providers.for_rule(id))
                .cloned()
        })
        .collect();
    let mut labels: Vec<bool> = checkers
        .iter()
        .map(|c| c.as_ref().is_some_and(|c| c.revokes_by_api()))
        .collect();
    let deadline = Duration::from_secs(cfg.answer_secs.max(1));
    let permits = Arc::new(tokio::sync::Semaphore::new(16));
    let mut checks = tokio::task::JoinSet::new();
    for (i, (t, c)) in reported.iter().zip(&checkers).enumerate() {
        let Some(c) = c.clone().filter(|c| c.validates()) else {
            continue;
        };
        let (token, permits) = (t.token.clone(), Arc::clone(&permits));
        checks.spawn(async move {
            let _p = permits.acquire_owned().await;
            let v = c.validate(&crate::providers::Secret::new(token)).await;
            let label = match v {
                Ok(v) if v.validity == crate::providers::Validity::Active => Some(true),
                Ok(v) if v.validity == crate::providers::Validity::Inactive => Some(false),
                _ => None,
            };
            (i, label)
        });
    }
    let _ = tokio::time::timeout(deadline, async {
        while let Some(Ok((i, label))) = checks.join_next().await {
            if let Some(l) = label {
                labels[i] = l;
            }
        }
    })
    .await;
    checks.abort_all();
    let mut stored = Vec::new();
    for (t, rule) in reported.iter().zip(&rules) {
        let Some(rule) = rule else { continue };
        let payload = json!({
            "type": t.kind,
            "rule": rule,
            "url": t.url,
            "source": t.source,
            "sealed": r.sealer.seal(&t.token),
        })
        .to_string();
        let delivery = crate::worker::Delivery::new(
            format!("partner:{}", crate::partner::token_hash(&t.token)),
            crate::partner::PARTNER_REPO.into(),
            crate::partner::job_number(&t.token),
            payload,
            crate::worker::PARTNER,
        );
        match r.deliver(delivery.0) {
            Ok(()) => stored.push(delivery.1),
            Err(e) => return unavailable(&e),
        }
    }
    for rx in stored {
        match rx.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return unavailable(&e),
            Err(_) => return unavailable("the intake thread stopped"),
        }
    }
    r.wake.notify_one();
    let feedback: Vec<crate::partner::Feedback> = reported
        .iter()
        .zip(&labels)
        .map(|(t, &ours)| crate::partner::Feedback {
            token_hash: crate::partner::token_hash(&t.token),
            token_type: t.kind.clone(),
            label: if ours {
                "true_positive"
            } else {
                "false_positive"
            }
            .into(),
        })
        .collect();
    let ours = rules.iter().filter(|r| r.is_some()).count();
    let record = crate::audit::Record {
        event: "partner.reported".into(),
        actor: "github".into(),
        outcome: "accepted".into(),
        detail: [
            ("tokens".to_string(), reported.len().into()),
            ("ours".to_string(), ours.into()),
        ]
        .into_iter()
        .collect(),
        ..Default::default()
    };
    if let Err(e) = r.audit.append_async(vec![record]).await {
        tracing::error!("audit log: {e}");
    }
    (
        StatusCode::OK,
        "accepted",
        (StatusCode::OK, Json(feedback)).into_response(),
    )
}

fn unavailable(error: &str) -> (StatusCode, &'static str, Response) {
    tracing::error!("cannot store delivery: {error}");
    let resp = reply(
        StatusCode::SERVICE_UNAVAILABLE,
        json!({"error": "cannot store the delivery; retry later"}),
    );
    (StatusCode::SERVICE_UNAVAILABLE, "unavailable", resp)
}

/// Ready when the queue answers and has room for deliveries, and the
/// audit log took its last record.
async fn readyz(State(r): State<Arc<Responder>>) -> Response {
    let not_ready = |why: String| (StatusCode::SERVICE_UNAVAILABLE, why).into_response();
    match r.db(|q| q.full()).await {
        Ok(false) => {}
        Ok(true) => return not_ready("queue: full; draining\n".into()),
        Err(e) => return not_ready(format!("queue: {e}\n")),
    }
    if !r.audit.writable() {
        return not_ready("audit log: the last record could not be written\n".into());
    }
    "ready\n".into_response()
}

async fn metrics(State(r): State<Arc<Responder>>, headers: HeaderMap) -> Response {
    if let Some(token) = &r.metrics_token {
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        // Digests compared, so that the time taken says nothing of the
        // token.
        use sha2::{Digest, Sha256};
        if Sha256::digest(given.as_bytes()) != Sha256::digest(token.as_bytes()) {
            return reply(StatusCode::UNAUTHORIZED, json!({"error": "unauthorized"}));
        }
    }
    let counts = r.db(|q| q.counts()).await.unwrap_or_default();
    let jobs: Vec<(&str, u64)> = JobState::ALL
        .iter()
        .map(|s| {
            let n = counts.iter().find(|(c, _)| c == s).map_or(0, |(_, n)| *n);
            (s.as_str(), n)
        })
        .collect();
    (
        [("content-type", "text/plain; version=0.0.4")],
        r.metrics.render(&jobs),
    )
        .into_response()
}
