//! The responder end to end, in process: a mock GitHub (alerts API,
//! credential revocation, `/user`), a mock Slack and a notification sink,
//! all axum servers on 127.0.0.1, and the real server, queue, workers and
//! audit log in a temp directory.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyburn_responder::config::Config;
use keyburn_responder::mock::{
    alert, audit_events, fake_github_token, start_mock, wait_for, wait_until_ok,
};
use keyburn_responder::signature::sign;
use keyburn_responder::worker::Responder;
use serde_json::json;

const WEBHOOK_SECRET: &str = "test-webhook-secret";

struct Running {
    url: String,
    client: reqwest::Client,
    responder: Arc<Responder>,
}

/// A configuration pointed at the mock, with `extra` TOML appended.
fn config(dir: &Path, mock: &str, extra: &str) -> Config {
    std::env::set_var("KB_TEST_WEBHOOK_SECRET", WEBHOOK_SECRET);
    let text = format!(
        r#"
[server]
data_dir = "{dir}"
[github]
webhook_secrets = ["env:KB_TEST_WEBHOOK_SECRET"]
api_url = "{mock}"
token = "env:KB_TEST_UNSET"
reconcile_interval_secs = 0
[providers.slack]
api_url = "{mock}/slack"
[notify]
webhook = "{mock}/notify"
slack_webhook = "{mock}/slack-hook"
[worker]
concurrency = 2
backoff_base_ms = 50
backoff_max_ms = 200
http_timeout_ms = 1000
{extra}
"#,
        dir = dir.display()
    );
    let path = dir.join("keyburn.toml");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(&path, text).unwrap();
    Config::load(Some(&path)).unwrap()
}

/// Wait until `n` jobs are done.
async fn wait_done(resp: &Arc<Responder>, n: u64) {
    wait_for(&format!("{n} job(s) to finish"), || {
        let counts = resp.queue.lock().unwrap().counts().unwrap();
        counts.iter().any(|(s, c)| s.as_str() == "done" && *c == n)
    })
    .await;
}

/// A responder on 127.0.0.1, pointed at the mock.
async fn start_responder(dir: &Path, mock: &str, extra: &str) -> Running {
    start_with(config(dir, mock, extra)).await
}

async fn start_with(cfg: Config) -> Running {
    let (responder, _) = Responder::new(cfg).unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let r = responder.clone();
    tokio::spawn(async move {
        keyburn_responder::server::serve(r, l, std::future::pending())
            .await
            .unwrap()
    });
    Running {
        url,
        // A fresh connection per request: the server closes one it refused
        // a body on, and a pooled connection could be that one.
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap(),
        responder,
    }
}

fn alert_event(action: &str, number: u64) -> Vec<u8> {
    json!({
        "action": action,
        "alert": {"number": number, "secret_type": "github_personal_access_token"},
        "repository": {"full_name": "acme/app"},
    })
    .to_string()
    .into_bytes()
}

impl Running {
    async fn deliver(
        &self,
        event: &str,
        delivery: &str,
        body: Vec<u8>,
        secret: &str,
    ) -> reqwest::Response {
        self.try_deliver(event, delivery, body, secret)
            .await
            .unwrap()
    }

    /// [`Running::deliver`], where the server may also cut the connection
    /// before the whole body is sent.
    async fn try_deliver(
        &self,
        event: &str,
        delivery: &str,
        body: Vec<u8>,
        secret: &str,
    ) -> reqwest::Result<reqwest::Response> {
        self.client
            .post(format!("{}/webhooks/github", self.url))
            .header("X-GitHub-Event", event)
            .header("X-GitHub-Delivery", delivery)
            .header("X-Hub-Signature-256", sign(secret.as_bytes(), &body))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
    }

    /// A correctly signed `secret_scanning_alert` delivery about alert
    /// `number` of acme/app; the HTTP status it got.
    async fn alert(&self, delivery: &str, action: &str, number: u64) -> u16 {
        self.deliver(
            "secret_scanning_alert",
            delivery,
            alert_event(action, number),
            WEBHOOK_SECRET,
        )
        .await
        .status()
        .as_u16()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaked_github_token_is_revoked_confirmed_resolved_notified_and_audited() {
    let (mock, murl) = start_mock().await;
    let token = fake_github_token();
    {
        let mut m = mock.lock().unwrap();
        m.leak("acme/app", 1, "github_personal_access_token", &token);
    }
    let dir = tempfile::tempdir().unwrap();
    let r = start_responder(
        dir.path(),
        &murl,
        "[policy]\ndefault = \"notify\"\n[[policy.rule]]\nsecret_type = \"github_personal_access_token\"\naction = \"revoke\"\n",
    )
    .await;

    assert_eq!(r.alert("d-1", "created", 1).await, 202);
    wait_for("the alert to be resolved and notified", || {
        let m = mock.lock().unwrap();
        m.alerts["acme/app#1"]["state"] == "resolved" && !m.notices.is_empty()
    })
    .await;
    // A redelivery of the same delivery does nothing new.
    assert_eq!(r.alert("d-1", "created", 1).await, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;

    {
        let m = mock.lock().unwrap();
        assert!(!m.active.contains(&token), "the token is dead");
        assert_eq!(m.revoke_calls, 1);
        assert_eq!(m.patches.len(), 1);
        assert_eq!(m.patches[0]["resolution"], "revoked");
        assert!(m.patches[0]["resolution_comment"]
            .as_str()
            .unwrap()
            .contains("github"));
        let n = &m.notices[0];
        assert_eq!(n["outcome"], "revoked");
        assert_eq!(n["secret_masked"], "ghp_********");
        assert_eq!(n["locations"][0], "config/app.env:3@0123456789ab");
        let slack = &m.slack_messages[0];
        assert!(
            slack.contains("github_personal_access_token") && slack.contains("acme/app"),
            "{slack}"
        );
        assert!(
            slack.contains("config/app.env:3") && !slack.contains(&token),
            "{slack}"
        );
        assert!(!n.to_string().contains(&token));
    }

    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert!(
        !audit.contains(&token),
        "the audit log holds no secret in clear"
    );
    assert!(audit.contains(&r.responder.audit.secret_ref(&token)));
    for event in [
        "webhook.accepted",
        "alert.fetched",
        "policy.decided",
        "\"revoke\"",
        "confirm",
        "alert.resolve",
        "notify",
    ] {
        assert!(audit.contains(event), "no {event} record in\n{audit}");
    }
    keyburn_responder::audit::verify(&dir.path().join("audit.jsonl")).unwrap();
    let metrics = r
        .client
        .get(format!("{}/metrics", r.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("keyburn_revocations_total{outcome=\"revoked\",provider=\"github\"} 1")
            || metrics
                .contains("keyburn_revocations_total{provider=\"github\",outcome=\"revoked\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("keyburn_jobs{state=\"done\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_deliveries_are_refused_and_start_nothing() {
    let (mock, murl) = start_mock().await;
    let dir = tempfile::tempdir().unwrap();
    let r = start_responder(dir.path(), &murl, "").await;
    let body = alert_event("created", 5);

    let forged = r
        .deliver(
            "secret_scanning_alert",
            "f-1",
            body.clone(),
            "not-the-secret",
        )
        .await;
    assert_eq!(forged.status(), 401);
    let why: serde_json::Value = forged.json().await.unwrap();
    assert_eq!(
        why,
        serde_json::json!({"error": "unauthorized"}),
        "the same for every failure"
    );
    let unsigned = r
        .client
        .post(format!("{}/webhooks/github", r.url))
        .header("X-GitHub-Event", "secret_scanning_alert")
        .header("X-GitHub-Delivery", "f-2")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    let why: serde_json::Value = unsigned.json().await.unwrap();
    assert_eq!(why, serde_json::json!({"error": "unauthorized"}));
    let truncated = r
        .deliver(
            "secret_scanning_alert",
            "f-3",
            body[..body.len() / 2].to_vec(),
            WEBHOOK_SECRET,
        )
        .await;
    assert_eq!(truncated.status(), 400);
    let not_json = r
        .deliver(
            "secret_scanning_alert",
            "f-4",
            b"hello".to_vec(),
            WEBHOOK_SECRET,
        )
        .await;
    assert_eq!(not_json.status(), 400);
    // Refused with 413, or cut off while the client still writes the body
    // (the server answers before reading it all): either way, not taken.
    let huge = r
        .try_deliver(
            "secret_scanning_alert",
            "f-5",
            vec![b' '; 2 << 20],
            WEBHOOK_SECRET,
        )
        .await;
    match huge {
        Ok(resp) => assert_eq!(resp.status(), 413),
        Err(e) => assert!(e.is_request(), "{e:?}"),
    }
    // A declared length over the limit is answered before any body byte
    // arrives (a server that waited would never answer this request).
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = r.url.trim_start_matches("http://").to_string();
        let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST /webhooks/github HTTP/1.1\r\nHost: {addr}\r\nX-GitHub-Event: secret_scanning_alert\r\n\
             X-GitHub-Delivery: f-10\r\nContent-Length: 100000000\r\n\r\n"
        );
        sock.write_all(head.as_bytes()).await.unwrap();
        let mut answer = vec![0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut answer))
            .await
            .expect("answered without the body")
            .unwrap();
        assert!(
            String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 413"),
            "{}",
            String::from_utf8_lossy(&answer[..n])
        );
    }
    // Refused on its declared length, before the body is read, and counted.
    let counted = r.responder.metrics.render(&[]);
    assert!(
        counted.contains(
            r#"keyburn_deliveries_total{event="secret_scanning_alert",outcome="too_large"} 2"#
        ),
        "{counted}"
    );
    let other = r
        .deliver("push", "f-6", b"{}".to_vec(), WEBHOOK_SECRET)
        .await;
    assert_eq!(other.status(), 204);
    // A signed payload whose repository would walk the API's paths.
    let sly = json!({
        "action": "created",
        "alert": {"number": 9, "secret_type": "github_personal_access_token"},
        "repository": {"full_name": "acme/app/../../../user?x="},
    });
    let sly = r
        .deliver(
            "secret_scanning_alert",
            "f-9",
            sly.to_string().into_bytes(),
            WEBHOOK_SECRET,
        )
        .await;
    assert_eq!(sly.status(), 400);
    assert_eq!(r.alert("f-7", "resolved", 5).await, 204);
    let ping = r
        .deliver("ping", "f-8", b"{\"zen\":\"x\"}".to_vec(), WEBHOOK_SECRET)
        .await;
    assert_eq!(ping.status(), 200);

    tokio::time::sleep(Duration::from_millis(200)).await;
    let counts = r.responder.queue.lock().unwrap().counts().unwrap();
    assert!(counts.iter().all(|(_, n)| *n == 0), "{counts:?}");
    assert!(mock.lock().unwrap().patches.is_empty());
    let health = r
        .client
        .get(format!("{}/healthz", r.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = r
        .client
        .get(format!("{}/readyz", r.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_5xx_slack_429_and_a_slow_provider_are_retried_until_done() {
    let (mock, murl) = start_mock().await;
    let slack_token = format!("{}-{}-{}", "xoxb", "1234567890", "abcdefghijklmnop");
    let gh_token = fake_github_token();
    {
        let mut m = mock.lock().unwrap();
        m.leak("acme/app", 2, "slack_api_token", &slack_token);
        m.leak("acme/app", 3, "github_personal_access_token", &gh_token);
        m.fail_fetches = 6; // both jobs' first fetch fails, own retries included
        m.throttle_slack = 1;
        m.user_delay = Duration::from_millis(1500); // over the 1 s timeout
    }
    let dir = tempfile::tempdir().unwrap();
    let r = start_responder(dir.path(), &murl, "[policy]\ndefault = \"revoke\"\n").await;
    assert_eq!(r.alert("r-2", "created", 2).await, 202);
    assert_eq!(r.alert("r-3", "created", 3).await, 202);
    wait_for("the Slack alert to resolve", || {
        mock.lock().unwrap().alerts["acme/app#2"]["state"] == "resolved"
    })
    .await;
    // The GitHub validation keeps timing out: the job keeps retrying.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(mock.lock().unwrap().alerts["acme/app#3"]["state"], "open");
    mock.lock().unwrap().user_delay = Duration::ZERO;
    wait_for("the GitHub alert to resolve", || {
        mock.lock().unwrap().alerts["acme/app#3"]["state"] == "resolved"
    })
    .await;
    let m = mock.lock().unwrap();
    assert!(m.active.is_empty(), "both tokens are dead");
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert!(audit.contains("step.failed"), "failures are audited");
    assert!(!audit.contains(&slack_token) && !audit.contains(&gh_token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_ignore_unknown_types_dry_run_and_reconciliation() {
    let (mock, murl) = start_mock().await;
    let ignored = fake_github_token();
    let dry = fake_github_token();
    {
        let mut m = mock.lock().unwrap();
        m.leak("acme/sandbox", 1, "github_personal_access_token", &ignored);
        m.alerts.insert(
            "acme/app#7".into(),
            alert(7, "stripe_api_key", "sk_live_fake"),
        );
        m.leak("acme/tools", 9, "github_personal_access_token", &dry);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(
        dir.path(),
        &murl,
        "[policy]\ndefault = \"revoke\"\ndry_run = true\n[[policy.rule]]\nrepository = \"acme/sandbox\"\naction = \"ignore\"\n",
    );
    cfg.github.organizations = vec!["acme".into()];
    let (resp, _) = Responder::new(cfg).unwrap();
    // No delivery for any of them: reconciliation finds all three.
    let n = resp.reconcile().await;
    assert_eq!(
        resp.reconcile().await,
        0,
        "a second pass enqueues nothing new"
    );
    tokio::spawn(resp.clone().work());
    wait_done(&resp, 3).await;
    assert_eq!(n, 3);
    let m = mock.lock().unwrap();
    assert_eq!(
        m.revoke_calls, 0,
        "ignored, unknown and dry-run: nothing revoked"
    );
    assert!(m.active.contains(&ignored) && m.active.contains(&dry));
    assert!(m.patches.is_empty());
    let outcomes: Vec<&str> = m
        .notices
        .iter()
        .map(|n| n["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    assert!(
        outcomes.contains(&"dry-run") && outcomes.contains(&"notified"),
        "{outcomes:?}"
    );
    let unknown = m
        .notices
        .iter()
        .find(|n| n["secret_type"] == "stripe_api_key")
        .unwrap();
    // No API revokes Stripe keys: the notice carries the manual steps.
    let summary = unknown["summary"].as_str().unwrap();
    assert!(
        summary.contains("no API revokes stripe_api_key") && summary.contains("Roll key"),
        "{unknown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_while_the_queued_jobs_still_finish() {
    let (mock, murl) = start_mock().await;
    {
        let mut m = mock.lock().unwrap();
        for n in 100..400 {
            m.leak(
                "acme/app",
                n,
                "github_personal_access_token",
                &fake_github_token(),
            );
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), &murl, "[policy]\ndefault = \"notify\"\n");
    cfg.server.queue_max_bytes = Some(64 * 1024);
    let (resp, _) = Responder::new(cfg).unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let r = Running {
        url: url.clone(),
        client: reqwest::Client::new(),
        responder: resp.clone(),
    };
    // Intake only first: no workers yet, so the queue fills.
    let app = keyburn_responder::server::router(resp.clone());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let mut statuses = Vec::new();
    for n in 100..400u64 {
        let s = r.alert(&format!("full-{n}"), "created", n).await;
        statuses.push(s);
        if s == 503 {
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&503), "{statuses:?}");
    assert!(statuses[..statuses.len() - 1].iter().all(|s| *s == 202));
    let accepted = statuses.len() as u64 - 1;
    assert!(accepted > 5, "{accepted}");
    let ready = r.client.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503, "not ready while full");

    // The workers still claim, step and complete every queued job.
    for _ in 0..2 {
        tokio::spawn(resp.clone().work());
    }
    wait_done(&resp, accepted).await;
    assert_eq!(mock.lock().unwrap().notices.len() as u64, accepted);

    // Dropping what finished jobs no longer need makes room again.
    resp.queue
        .lock()
        .unwrap()
        .prune(Duration::ZERO, i64::MAX / 2)
        .unwrap();
    let ready = r.client.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(r.alert("after-prune", "created", 399).await, 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_slower_than_the_lease_is_revoked_once_by_one_worker() {
    let (mock, murl) = start_mock().await;
    let token = fake_github_token();
    {
        let mut m = mock.lock().unwrap();
        m.leak("acme/app", 1, "github_personal_access_token", &token);
        m.revoke_delay = Duration::from_millis(2_500);
    }
    let dir = tempfile::tempdir().unwrap();
    // Two workers, a one-second lease, a revoke that takes 2.5 s.
    let mut cfg = config(dir.path(), &murl, "[policy]\ndefault = \"revoke\"\n");
    cfg.worker.lease_secs = 1;
    cfg.worker.http_timeout_ms = 5_000;
    let r = start_with(cfg).await;
    assert_eq!(r.alert("slow-1", "created", 1).await, 202);
    wait_for("the alert to resolve", || {
        let m = mock.lock().unwrap();
        m.alerts["acme/app#1"]["state"] == "resolved" && !m.notices.is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let m = mock.lock().unwrap();
    assert_eq!(m.revoke_calls, 1);
    assert_eq!(m.patches.len(), 1);
    assert_eq!(m.notices.len(), 1);
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    let revokes = audit_events(&audit, "revoke");
    assert_eq!(revokes.len(), 1, "{revokes:?}");
    assert!(
        revokes[0].contains(r#""outcome":"revoked""#),
        "{}",
        revokes[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_closing_the_alert_before_the_revoke_wins() {
    let (mock, murl) = start_mock().await;
    let token = fake_github_token();
    {
        let mut m = mock.lock().unwrap();
        m.leak("acme/app", 5, "github_personal_access_token", &token);
        // Validation times out: the job waits to retry at `revoke`.
        m.user_delay = Duration::from_millis(1_500);
    }
    let dir = tempfile::tempdir().unwrap();
    let r = start_responder(dir.path(), &murl, "[policy]\ndefault = \"revoke\"\n").await;
    assert_eq!(r.alert("fp-5", "created", 5).await, 202);
    wait_for("a failed revoke attempt", || {
        std::fs::read_to_string(dir.path().join("audit.jsonl"))
            .is_ok_and(|a| a.contains("step.failed"))
    })
    .await;
    {
        let mut m = mock.lock().unwrap();
        let a = m.alerts.get_mut("acme/app#5").unwrap();
        a["state"] = "resolved".into();
        a["resolution"] = "false_positive".into();
        a["resolved_by"] = json!({"login": "octocat"});
        m.user_delay = Duration::ZERO;
    }
    wait_done(&r.responder, 1).await;
    let m = mock.lock().unwrap();
    assert_eq!(m.revoke_calls, 0, "a person's decision stands");
    assert!(m.active.contains(&token));
    assert!(m.patches.is_empty());
    assert!(
        !m.notices.iter().any(|n| n["outcome"] == "revoked"),
        "{:?}",
        m.notices
    );
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert!(
        audit.contains("resolved by octocat as false_positive; not revoked"),
        "{audit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_alert_is_reconciled_and_a_missing_one_is_not_retried() {
    let (mock, murl) = start_mock().await;
    let token = fake_github_token();
    mock.lock()
        .unwrap()
        .leak("acme/app", 1, "github_personal_access_token", &token);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), &murl, "[policy]\ndefault = \"revoke\"\n");
    cfg.github.organizations = vec!["acme".into()];
    let (resp, _) = Responder::new(cfg).unwrap();
    for _ in 0..2 {
        tokio::spawn(resp.clone().work());
    }
    assert_eq!(resp.reconcile().await, 1);
    wait_done(&resp, 1).await;
    assert_eq!(resp.reconcile().await, 0, "resolved: nothing open");

    // Reopened (its webhook missed), the secret live again.
    {
        let mut m = mock.lock().unwrap();
        m.alerts.get_mut("acme/app#1").unwrap()["state"] = "open".into();
        m.active.insert(token.clone());
    }
    assert_eq!(resp.reconcile().await, 1, "the reopened alert is a new job");
    wait_done(&resp, 2).await;
    {
        let m = mock.lock().unwrap();
        assert_eq!(m.revoke_calls, 2);
        assert_eq!(m.alerts["acme/app#1"]["state"], "resolved");
    }
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert!(audit.contains("reconcile.reopened"), "{audit}");

    // An alert GitHub answers 404 for: dead at once, not retried for hours.
    let id = match resp.enqueue_alert("acme/app", 404, "cli").await.unwrap() {
        keyburn_responder::worker::Enqueue::Created(id) => id,
        other => panic!("{other:?}"),
    };
    wait_for("the 404 job to die", || {
        resp.queue.lock().unwrap().get(id).unwrap().state.as_str() == "dead"
    })
    .await;
    let job = resp.queue.lock().unwrap().get(id).unwrap();
    assert_eq!(job.attempts, 1, "a 404 is permanent");
    assert!(job.last_error.unwrap().contains("404"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_audit_tail_is_moved_aside_and_the_responder_starts() {
    let (_mock, murl) = start_mock().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &murl, "");
    let log = dir.path().join("audit.jsonl");
    {
        let (resp, _) = Responder::new(cfg.clone()).unwrap();
        resp.audit
            .append(keyburn_responder::audit::Record {
                event: "test".into(),
                actor: "test".into(),
                outcome: "ok".into(),
                ..Default::default()
            })
            .unwrap();
    }
    // The disk filled mid-record.
    let mut text = std::fs::read(&log).unwrap();
    text.extend_from_slice(br#"{"time":"2026-12-01T00:00:00Z","event":"webhook.acc"#);
    std::fs::write(&log, text).unwrap();

    let (resp, notes) = Responder::new(cfg).unwrap();
    assert!(notes.iter().any(|n| n.contains("torn")), "{notes:?}");
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("audit.jsonl.torn-")
        })
        .collect();
    assert_eq!(aside.len(), 1);
    assert!(std::fs::read_to_string(aside[0].path())
        .unwrap()
        .contains("webhook.acc"));
    let v = keyburn_responder::audit::verify(&log).unwrap();
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("audit.repaired"));
    drop(resp);
    assert!(v.records() >= 2, "{v:?}");
}

/// moto's IAM emulator/// moto's IAM emulator (PyPI `moto[server]`), on a free port, killed on drop.
struct Moto {
    child: std::process::Child,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_moto() -> Moto {
    let port = keyburn_responder::testdb::free_port();
    let child = std::process::Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("moto_server is needed for the AWS test: pip install 'moto[server]'");
    let url = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    while reqwest::get(format!("{url}/moto-api/")).await.is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "moto_server did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Moto { child, url }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aws_key_is_deactivated_and_quarantined_through_iam_on_moto() {
    use keyburn_responder::http::Http;
    use keyburn_responder::providers::aws::Aws;
    use keyburn_responder::providers::{CodeProvider, Secret, Validity};
    let validity = |c: Result<keyburn_responder::providers::Checked, _>| c.unwrap().validity;

    let moto = start_moto().await;
    let admin = Aws::new(
        Http::new(Duration::from_secs(10)),
        &moto.url,
        "us-east-1",
        "testing",
        "testing",
        None,
        None,
    );
    assert_eq!(
        admin
            .call("CreateUser", &[("UserName", "leaky")])
            .await
            .unwrap()
            .status,
        200
    );
    let key = admin
        .call("CreateAccessKey", &[("UserName", "leaky")])
        .await
        .unwrap();
    let key_id = key.text("AccessKeyId").unwrap().to_string();
    let doc =
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}"#;
    let policy = admin
        .call(
            "CreatePolicy",
            &[("PolicyName", "quarantine"), ("PolicyDocument", doc)],
        )
        .await
        .unwrap();
    let arn = policy.text("Arn").unwrap().to_string();
    assert_eq!(
        validity(admin.validate(&Secret::new(&key_id)).await),
        Validity::Active
    );
    assert_eq!(
        // A key id of the right shape that this account never issued,
        // assembled here so that no token-shaped literal sits in the file.
        validity(
            admin
                .validate(&Secret::new(format!("{}{}", "AKIA", "Z3N8Q2W7R4T6Y1U5")))
                .await
        ),
        Validity::Unknown
    );

    let (mock, murl) = start_mock().await;
    mock.lock()
        .unwrap()
        .alerts
        .insert("acme/app#4".into(), alert(4, "aws_access_key_id", &key_id));
    std::env::set_var("KB_TEST_MOTO_ID", "testing");
    std::env::set_var("KB_TEST_MOTO_SECRET", "testing");
    let dir = tempfile::tempdir().unwrap();
    let r = start_responder(
        dir.path(),
        &murl,
        &format!(
            "[policy]\ndefault = \"revoke\"\n[providers.aws]\niam_url = \"{}\"\n\
             access_key_id = \"env:KB_TEST_MOTO_ID\"\nsecret_access_key = \"env:KB_TEST_MOTO_SECRET\"\n\
             session_token = \"env:KB_TEST_UNSET\"\nquarantine = true\nquarantine_policy_arn = \"{arn}\"\n",
            moto.url
        ),
    )
    .await;
    assert_eq!(r.alert("aws-1", "created", 4).await, 202);
    wait_for("the AWS alert to resolve", || {
        mock.lock().unwrap().alerts["acme/app#4"]["state"] == "resolved"
    })
    .await;
    assert_eq!(
        validity(admin.validate(&Secret::new(&key_id)).await),
        Validity::Inactive
    );
    let listed = admin
        .call("ListAccessKeys", &[("UserName", "leaky")])
        .await
        .unwrap();
    assert!(
        listed.body.contains("<Status>Inactive</Status>"),
        "{}",
        listed.body
    );
    let attached = admin
        .call("ListAttachedUserPolicies", &[("UserName", "leaky")])
        .await
        .unwrap();
    assert!(attached.body.contains(&arn), "{}", attached.body);
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert!(audit.contains("\"provider\":\"aws\""), "{audit}");
    assert!(
        !audit.contains(&key_id),
        "the key id is a secret too: only its HMAC is audited"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_app_buys_one_installation_token_and_reuses_it() {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};

    let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    let public_pem = private
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let private_pem = private.to_pkcs8_pem(LineEnding::LF).unwrap();
    let (mock, murl) = start_mock().await;
    let tokens = [fake_github_token(), fake_github_token()];
    {
        let mut m = mock.lock().unwrap();
        m.app_public_key = Some(public_pem.into_bytes());
        for (i, t) in tokens.iter().enumerate() {
            let n = 10 + i as u64;
            m.leak("acme/app", n, "github_personal_access_token", t);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("app.pem");
    std::fs::write(&key_path, private_pem.as_bytes()).unwrap();
    // The [github.app] table follows the template's [github] table.
    let r = start_responder(
        dir.path(),
        &murl,
        &format!(
            "[policy]\ndefault = \"revoke\"\n[github.app]\nid = 42\ninstallation_id = 7\nprivate_key_path = \"{}\"\n",
            key_path.display()
        ),
    )
    .await;
    for n in [10, 11] {
        assert_eq!(r.alert(&format!("app-{n}"), "created", n).await, 202);
    }
    wait_for("both alerts to resolve", || {
        let m = mock.lock().unwrap();
        m.alerts["acme/app#10"]["state"] == "resolved"
            && m.alerts["acme/app#11"]["state"] == "resolved"
    })
    .await;
    assert_eq!(
        mock.lock().unwrap().installation_tokens.len(),
        1,
        "the token is cached"
    );

    // GitHub stops honouring the cached token (revoked, key rotated): the
    // 401 drops it and a new one is bought, rather than failing every job
    // until the cached one would have expired.
    let third = fake_github_token();
    {
        let mut m = mock.lock().unwrap();
        m.installation_tokens.clear();
        m.leak("acme/app", 12, "github_personal_access_token", &third);
    }
    assert_eq!(r.alert("app-12", "created", 12).await, 202);
    wait_for("the third alert to resolve with a new token", || {
        mock.lock().unwrap().alerts["acme/app#12"]["state"] == "resolved"
    })
    .await;
    assert_eq!(mock.lock().unwrap().installation_tokens.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_connections_are_bounded_and_shutdown_drains_in_time() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (_mock, murl) = start_mock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), &murl, "");
    cfg.server.header_timeout_secs = 1;
    cfg.server.body_timeout_secs = 1;
    cfg.server.max_connections = 2;
    cfg.server.shutdown_drain_secs = 1;
    let (resp, _) = Responder::new(cfg).unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(keyburn_responder::server::serve(resp, l, async {
        let _ = stop_rx.await;
    }));

    // Headers a byte at a time (a whole request would take 8 s): the
    // server hangs up after the 1 s header timeout.
    let (mut rd, mut wr) = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap()
        .into_split();
    tokio::spawn(async move {
        for b in b"POST /webhooks/github HTTP/1.1\r\nHost: x\r\n".iter() {
            if wr.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), rd.read_to_end(&mut buf))
        .await
        .expect("a slow sender of headers is cut")
        .ok();

    // A body slower than the body timeout: 408.
    let mut body_slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    body_slow
        .write_all(b"POST /webhooks/github HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        .await
        .unwrap();
    let mut answer = vec![0; 512];
    let n = tokio::time::timeout(Duration::from_secs(3), body_slow.read(&mut answer))
        .await
        .expect("answered within the body timeout")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // Two idle connections fill the limit: a third request waits until
    // the header timeout frees a slot, then is served.
    let idle: Vec<_> = idle_connections(addr, 2).await;
    let started = Instant::now();
    let ok = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "the third connection waited for a slot: {:?}",
        started.elapsed()
    );
    drop(idle);

    // A client that holds a request open does not hold up shutdown past
    // the drain time.
    let mut holder = tokio::net::TcpStream::connect(addr).await.unwrap();
    holder
        .write_all(b"POST /webhooks/github HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("shutdown is bounded")
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

/// `n` connections that send nothing.
async fn idle_connections(addr: std::net::SocketAddr, n: usize) -> Vec<tokio::net::TcpStream> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_require_a_token_or_live_on_their_own_address() {
    let (_mock, murl) = start_mock().await;
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("KB_TEST_METRICS_TOKEN", "metrics-token-for-tests");
    let mut cfg = config(dir.path(), &murl, "");
    cfg.server.metrics_token = Some("env:KB_TEST_METRICS_TOKEN".into());
    let r = start_with(cfg).await;
    let url = format!("{}/metrics", r.url);
    let refused = r.client.get(&url).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let wrong = r
        .client
        .get(&url)
        .bearer_auth("guess")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let ok = r
        .client
        .get(&url)
        .bearer_auth("metrics-token-for-tests")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.text().await.unwrap().contains("keyburn_jobs"));

    let dir = tempfile::tempdir().unwrap();
    let port = keyburn_responder::testdb::free_port();
    let mut cfg = config(dir.path(), &murl, "");
    cfg.server.metrics_listen = Some(format!("127.0.0.1:{port}"));
    let r = start_with(cfg).await;
    let main = r
        .client
        .get(format!("{}/metrics", r.url))
        .send()
        .await
        .unwrap();
    assert_eq!(main.status(), 404, "not on the webhook listener");
    wait_until_ok(&format!("http://127.0.0.1:{port}/metrics")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_that_times_out_is_not_repeated_but_verified() {
    let (mock, murl) = start_mock().await;
    let token = fake_github_token();
    {
        let mut m = mock.lock().unwrap();
        m.leak("acme/app", 1, "github_personal_access_token", &token);
        // Over the 1 s request timeout: the call goes unanswered, and the
        // provider kills the token all the same.
        m.revoke_delay = Duration::from_millis(1_500);
    }
    let dir = tempfile::tempdir().unwrap();
    let r = start_responder(dir.path(), &murl, "[policy]\ndefault = \"revoke\"\n").await;
    assert_eq!(r.alert("timeout-1", "created", 1).await, 202);
    wait_for("the alert to resolve", || {
        let m = mock.lock().unwrap();
        m.alerts["acme/app#1"]["state"] == "resolved" && !m.notices.is_empty()
    })
    .await;
    let m = mock.lock().unwrap();
    assert_eq!(m.revoke_calls, 1, "a timed-out revoke is not retried blind");
    assert!(!m.active.contains(&token));
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    let revokes = audit_events(&audit, "revoke");
    assert_eq!(revokes.len(), 1, "{revokes:?}");
    assert!(
        revokes[0].contains(r#""outcome":"unknown""#),
        "{}",
        revokes[0]
    );
    assert!(revokes[0].contains("timed out"), "{}", revokes[0]);
}
