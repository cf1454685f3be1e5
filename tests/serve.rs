//! `keyburn serve` as a process: defaults from the environment, and a
//! kill -9 between revoking a key and resolving its alert.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keyburn_responder::mock::{
    audit_events, fake_github_token, partner_keys, start_mock, wait_for, wait_until_ok,
    PartnerSigner,
};
use keyburn_responder::queue::Queue;
use keyburn_responder::signature::sign;
use keyburn_responder::testdb::free_port;
use serde_json::json;

const SECRET: &str = "process-test-webhook-secret";

/// Start `keyburn serve` in `dir`, stderr appended to `dir/serve-N.log`.
fn spawn(dir: &Path, port: u16, mock: &str, config: Option<&Path>, n: usize) -> Child {
    command(dir, port, mock, config, n).spawn().unwrap()
}

/// The command [`spawn`] runs.
fn command(dir: &Path, port: u16, mock: &str, config: Option<&Path>, n: usize) -> Command {
    let log = fs::File::create(dir.join(format!("serve-{n}.log"))).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyburn"));
    cmd.arg("serve")
        .current_dir(dir)
        .env("KEYBURN_WEBHOOK_SECRET", SECRET)
        .env("KEYBURN_LISTEN", format!("127.0.0.1:{port}"))
        .env("KEYBURN_GITHUB_API", mock)
        .env("KEYBURN_LOG", "debug")
        .env_remove("KEYBURN_CONFIG")
        .env_remove("KEYBURN_AUDIT_HMAC_KEY")
        .env_remove("KEYBURN_GITHUB_TOKEN")
        .stdout(Stdio::null())
        .stderr(log);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    cmd
}

async fn wait_ready(port: u16) {
    wait_until_ok(&format!("http://127.0.0.1:{port}/readyz")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_starts_with_only_a_webhook_secret_and_generates_an_audit_key() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = spawn(dir.path(), port, "http://127.0.0.1:9", None, 0);
    wait_ready(port).await;
    let health = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    // A second server on the same data dir stops at once, saying why.
    let second = spawn(dir.path(), free_port(), "http://127.0.0.1:9", None, 1)
        .wait_with_output()
        .unwrap();
    assert_eq!(second.status.code(), Some(2));
    let said = fs::read_to_string(dir.path().join("serve-1.log")).unwrap();
    assert!(said.contains("in use by another keyburn serve"), "{said}");
    child.kill().unwrap();
    child.wait().unwrap();
    let mode = |p: &str| {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(dir.path().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    // The data dir is its owner's alone.
    assert_eq!(mode("keyburn-data"), 0o700);
    for f in ["audit.key", "audit.jsonl", "queue.db", "lock"] {
        assert_eq!(mode(&format!("keyburn-data/{f}")), 0o600, "{f}");
    }
    // Once the first is gone, the data dir can be used again; this time
    // logging JSON lines.
    let mut third = command(dir.path(), port, "http://127.0.0.1:9", None, 2)
        .env("KEYBURN_LOG_FORMAT", "json")
        .spawn()
        .unwrap();
    wait_ready(port).await;
    third.kill().unwrap();
    third.wait().unwrap();
    let json_log = fs::read_to_string(dir.path().join("serve-2.log")).unwrap();
    assert!(json_log.lines().count() >= 2, "{json_log}");
    for line in json_log.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect(line);
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
    let log = fs::read_to_string(dir.path().join("serve-0.log")).unwrap();
    assert!(log.contains("generated one in"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "no colour codes in a log file: {log}"
    );

    // Without a webhook secret it refuses to start.
    let out = Command::new(env!("CARGO_BIN_EXE_keyburn"))
        .arg("serve")
        .current_dir(dir.path())
        .env_remove("KEYBURN_WEBHOOK_SECRET")
        .env_remove("KEYBURN_CONFIG")
        .env("KEYBURN_LISTEN", format!("127.0.0.1:{}", free_port()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("KEYBURN_WEBHOOK_SECRET"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_between_revoke_and_resolve_neither_revokes_twice_nor_forgets_to_resolve() {
    let (mock, murl) = start_mock().await;
    let token = fake_github_token();
    {
        let mut m = mock.lock().unwrap();
        m.leak("acme/app", 1, "github_personal_access_token", &token);
        m.refuse_resolve = true;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = revoking_config(dir.path());
    let port = free_port();
    let mut first = spawn(dir.path(), port, &murl, Some(&config), 1);
    wait_ready(port).await;
    assert_eq!(deliver(port, "kill-1", 1).await, 202);
    wait_for("the revocation", || mock.lock().unwrap().revoke_calls == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // resolve is failing
    first.kill().unwrap(); // SIGKILL: no cleanup of any kind
    first.wait().unwrap();

    // Harder still: the process died after the revoke call reached the
    // provider but before the step was recorded. Rewind the job to it.
    {
        let mut q = Queue::open(&dir.path().join("keyburn-data/queue.db")).unwrap();
        let job = q
            .claim(i64::MAX / 2, Duration::from_secs(1))
            .unwrap()
            .expect("the job waits for its retry");
        assert_eq!(job.step, "resolve");
        q.advance(job.lease(), "revoke", &job.context, 0).unwrap();
    }
    mock.lock().unwrap().refuse_resolve = false;
    let mut second = spawn(dir.path(), port, &murl, Some(&config), 2);
    wait_ready(port).await;
    wait_for("the alert to be resolved", || {
        mock.lock().unwrap().alerts["acme/app#1"]["state"] == "resolved"
    })
    .await;
    // The job goes on to notify after resolving: stop the server only once
    // it is done, or the listing below races the last step.
    let jobs_list = || {
        let out = Command::new(env!("CARGO_BIN_EXE_keyburn"))
            .args(["jobs", "list", "--config"])
            .arg(&config)
            .current_dir(dir.path())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    wait_for("the job to be done", || jobs_list().contains("done")).await;
    second.kill().unwrap();
    second.wait().unwrap();

    let m = mock.lock().unwrap();
    assert_eq!(m.revoke_calls, 1, "the restart checked before revoking");
    assert_eq!(m.patches.len(), 1);
    let audit = fs::read_to_string(dir.path().join("keyburn-data/audit.jsonl")).unwrap();
    assert!(audit.contains("already-inactive"), "{audit}");
    // No log line and no audit record holds the secret.
    for f in ["serve-1.log", "serve-2.log"] {
        let log = fs::read_to_string(dir.path().join(f)).unwrap();
        assert!(!log.is_empty());
        assert!(!log.contains(&token), "{f} leaks the secret");
    }
    assert!(!audit.contains(&token));
    let verify = Command::new(env!("CARGO_BIN_EXE_keyburn"))
        .args(["audit", "verify", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let jobs = jobs_list();
    assert!(
        jobs.contains("done") && jobs.contains("acme/app#1"),
        "{jobs}"
    );
}

/// `dir/keyburn.toml`: revoke everything, retry fast, no reconciliation.
fn revoking_config(dir: &Path) -> std::path::PathBuf {
    let config = dir.join("keyburn.toml");
    fs::write(
        &config,
        "[policy]\ndefault = \"revoke\"\n[worker]\nbackoff_base_ms = 50\nbackoff_max_ms = 100\n\
         [github]\nreconcile_interval_secs = 0\n",
    )
    .unwrap();
    config
}

/// A signed `created` delivery about `acme/app#number` to the server on
/// `port`; the status it got.
async fn deliver(port: u16, delivery: &str, number: u64) -> u16 {
    let body = json!({
        "action": "created",
        "alert": {"number": number},
        "repository": {"full_name": "acme/app"},
    })
    .to_string();
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/webhooks/github"))
        .header("X-GitHub-Event", "secret_scanning_alert")
        .header("X-GitHub-Delivery", delivery)
        .header(
            "X-Hub-Signature-256",
            sign(SECRET.as_bytes(), body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_an_in_flight_revoke_and_an_immediate_restart_revoke_once() {
    let (mock, murl) = start_mock().await;
    let token = fake_github_token();
    {
        let mut m = mock.lock().unwrap();
        m.leak("acme/app", 1, "github_personal_access_token", &token);
        // The provider takes the call, and kills the token only when it
        // answers, seconds later: until then the token still validates.
        m.revoke_delay = Duration::from_secs(2);
    }
    let dir = tempfile::tempdir().unwrap();
    let config = revoking_config(dir.path());
    let port = free_port();
    let mut first = spawn(dir.path(), port, &murl, Some(&config), 1);
    wait_ready(port).await;
    assert_eq!(deliver(port, "inflight-1", 1).await, 202);
    wait_for("the revoke call", || mock.lock().unwrap().revoke_calls == 1).await;
    first.kill().unwrap(); // mid-call
    first.wait().unwrap();
    let mut second = spawn(dir.path(), port, &murl, Some(&config), 2);
    wait_ready(port).await;
    wait_for("the alert to be resolved", || {
        mock.lock().unwrap().alerts["acme/app#1"]["state"] == "resolved"
    })
    .await;
    second.kill().unwrap();
    second.wait().unwrap();

    let m = mock.lock().unwrap();
    assert_eq!(m.revoke_calls, 1, "the restart did not call again blind");
    assert!(!m.active.contains(&token));
    assert_eq!(m.patches.len(), 1);
    let audit = fs::read_to_string(dir.path().join("keyburn-data/audit.jsonl")).unwrap();
    let revokes = audit_events(&audit, "revoke");
    assert_eq!(revokes.len(), 1, "one record per call made: {revokes:?}");
    assert!(
        revokes[0].contains(r#""outcome":"unknown""#),
        "{}",
        revokes[0]
    );
    assert!(audit.contains(r#""event":"confirm""#) && audit.contains(r#""outcome":"inactive""#));
    let verify = Command::new(env!("CARGO_BIN_EXE_keyburn"))
        .args(["audit", "verify", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success() && said.contains("anchor"), "{said}");
}

#[test]
fn check_config_lists_every_problem_and_warns_without_github_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keyburn.toml");
    fs::write(
        &config,
        "[worker]\nmax_attempts = 0\n[notify]\nwebhook = \"ftp://example.org/x\"\n",
    )
    .unwrap();
    let check = |secret: &str| {
        Command::new(env!("CARGO_BIN_EXE_keyburn"))
            .args(["serve", "--check-config", "--config"])
            .arg(&config)
            .current_dir(dir.path())
            .env("KEYBURN_WEBHOOK_SECRET", secret)
            .env_remove("KEYBURN_GITHUB_TOKEN")
            .output()
            .unwrap()
    };
    let out = check("short");
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    for key in [
        "worker.max_attempts",
        "notify.webhook",
        "webhook_secrets[0]",
    ] {
        assert!(said.contains(key), "{key}: {said}");
    }
    fs::write(&config, "").unwrap();
    let out = check(SECRET);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration OK"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no GitHub credentials"));
    assert!(
        !dir.path().join("keyburn-data").exists(),
        "a check starts nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_postgres_one_killed_resolve_every_alert_once() {
    let pg = keyburn_responder::testdb::TestPostgres::start();
    let (mock, murl) = start_mock().await;
    const ALERTS: u64 = 24;
    {
        let mut m = mock.lock().unwrap();
        for n in 1..=ALERTS {
            m.leak(
                "acme/app",
                n,
                "github_personal_access_token",
                &fake_github_token(),
            );
        }
        // Revocations in flight long enough for the kill to catch some.
        m.revoke_delay = Duration::from_millis(300);
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keyburn.toml");
    fs::write(
        &config,
        "[policy]\ndefault = \"revoke\"\n[worker]\nlease_secs = 2\nbackoff_base_ms = 50\n\
         backoff_max_ms = 200\n[github]\nreconcile_interval_secs = 0\n",
    )
    .unwrap();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut replicas: Vec<Child> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let home = dir.path().join(format!("replica-{i}"));
            fs::create_dir_all(&home).unwrap();
            command(&home, *port, &murl, Some(&config), i)
                .env("KEYBURN_QUEUE_URL", pg.url())
                .env("KEYBURN_AUDIT_HMAC_KEY", "shared-audit-key-of-the-replicas")
                .spawn()
                .unwrap()
        })
        .collect();
    for port in &ports {
        wait_ready(*port).await;
    }
    // Each delivery reaches two replicas (a retrying load balancer): one
    // job all the same.
    for n in 1..=ALERTS {
        let d = format!("pg-{n}");
        let first = ports[n as usize % 3];
        let second = ports[(n as usize + 1) % 3];
        assert_eq!(deliver(first, &d, n).await, 202);
        assert!([200, 202].contains(&deliver(second, &d, n).await));
    }
    wait_for("a few revocations", || {
        mock.lock().unwrap().revoke_calls >= 4
    })
    .await;
    replicas[0].kill().unwrap(); // SIGKILL, mid-run
    replicas[0].wait().unwrap();
    let resolved = || {
        let m = mock.lock().unwrap();
        (1..=ALERTS).all(|n| m.alerts[&format!("acme/app#{n}")]["state"] == "resolved")
    };
    let started = Instant::now();
    while !resolved() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not every alert resolved: {}",
            fs::read_to_string(dir.path().join("replica-1/serve-1.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for r in &mut replicas[1..] {
        r.kill().unwrap();
        r.wait().unwrap();
    }
    let m = mock.lock().unwrap();
    assert!(m.active.is_empty(), "every secret is dead");
    assert_eq!(m.revoke_calls as u64, ALERTS, "one revoke per secret");
    assert_eq!(m.patches.len() as u64, ALERTS, "each alert resolved once");
    drop(m);

    let keyburn = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_keyburn"))
            .args(args)
            .arg("--config")
            .arg(&config)
            .current_dir(dir.path())
            .env("KEYBURN_QUEUE_URL", pg.url())
            .output()
            .unwrap()
    };
    let verify = keyburn(&["audit", "verify"]);
    let said = String::from_utf8_lossy(&verify.stdout);
    assert!(
        verify.status.success() && said.contains("PostgreSQL"),
        "{said}{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let jobs = keyburn(&[
        "jobs", "list", "--state", "done", "--json", "--limit", "100",
    ]);
    let jobs: serde_json::Value = serde_json::from_slice(&jobs.stdout).unwrap();
    assert_eq!(jobs.as_array().unwrap().len() as u64, ALERTS);
}

/// POST a partner batch to the server on `port`, signed by `signer` over
/// `signed` (normally the body itself); the status and the answer.
async fn report_tokens(
    port: u16,
    signer: &PartnerSigner,
    key_id: &str,
    body: &str,
    signed: &str,
) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/webhooks/github-partner"))
        .header("Content-Type", "application/json")
        .header("Github-Public-Key-Identifier", key_id)
        .header(
            "Github-Public-Key-Signature",
            signer.sign(signed.as_bytes()),
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partner_batches_signed_by_githubs_key_are_labelled_and_revoked_forgeries_are_not() {
    let (mock, murl) = start_mock().await;
    let github = PartnerSigner::generate("key-1");
    let forger = PartnerSigner::generate("key-1");
    mock.lock().unwrap().partner_keys = partner_keys(&[&github]);
    let (live, dead, foreign) = (
        fake_github_token(),
        fake_github_token(),
        fake_github_token(),
    );
    mock.lock().unwrap().active.insert(live.clone());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keyburn.toml");
    fs::write(
        &config,
        format!(
            "[github]\nreconcile_interval_secs = 0\n\
             [github.partner]\nkeys_url = \"{murl}/meta/public_keys/secret_scanning\"\n\
             max_tokens = 4\ntypes = {{ acme_pat = \"github-pat\" }}\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let mut server = spawn(dir.path(), port, &murl, Some(&config), 0);
    wait_ready(port).await;
    let batch = json!([
        {"token": live, "type": "acme_pat", "url": "https://github.com/o/r/blob/x/a.env", "source": "content"},
        {"token": dead, "type": "acme_pat", "url": "https://github.com/o/r/blob/x/b.env", "source": "commit"},
        {"token": foreign, "type": "someone_elses_token", "url": "https://gist.github.com/x", "source": "gist_content"},
        {"token": "acme_not_a_token", "type": "acme_pat", "url": "https://github.com/o/r/issues/1", "source": "issue_comment"},
    ])
    .to_string();

    let (status, feedback) = report_tokens(port, &github, "key-1", &batch, &batch).await;
    assert_eq!(status, 200, "{feedback}");
    let label = |token: &str| {
        let hash = keyburn_responder::partner::token_hash(token);
        feedback
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["token_hash"] == hash.as_str())
            .map(|f| f["label"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("no feedback for a token: {feedback}"))
    };
    assert_eq!(label(&live), "true_positive");
    assert_eq!(label(&dead), "false_positive", "dead: not live");
    assert_eq!(label(&foreign), "false_positive", "not a type of ours");
    assert_eq!(label("acme_not_a_token"), "false_positive", "not the shape");
    assert_eq!(feedback[2]["token_type"], "someone_elses_token");
    wait_for("the live token to be revoked", || {
        !mock.lock().unwrap().active.contains(&live)
    })
    .await;

    // Forged, replayed over another body, unknown key, malformed,
    // oversized, unsigned: refused, and nothing queued.
    let calls = mock.lock().unwrap().revoke_calls;
    let other = json!([{"token": fake_github_token(), "type": "acme_pat"}]).to_string();
    for (signer, key, body, signed, want) in [
        (&forger, "key-1", &batch, &batch, 401),
        (&github, "key-1", &other, &batch, 401),
        (&github, "key-9", &batch, &batch, 401),
    ] {
        let (status, answer) = report_tokens(port, signer, key, body, signed).await;
        assert_eq!(status, want, "{answer}");
        assert_eq!(answer, json!({"error": "unauthorized"}));
    }
    let fetches = mock.lock().unwrap().partner_key_fetches;
    assert_eq!(fetches, 2, "fetched once, and once more for the unknown id");
    let (status, _) = report_tokens(port, &github, "key-9", &batch, &batch).await;
    assert_eq!(status, 401);
    assert_eq!(
        mock.lock().unwrap().partner_key_fetches,
        fetches,
        "an unknown id does not refetch again at once"
    );
    let malformed = r#"{"token": "x"}"#;
    assert_eq!(
        report_tokens(port, &github, "key-1", malformed, malformed)
            .await
            .0,
        400
    );
    let five = json!(vec![json!({"token": "t", "type": "acme_pat"}); 5]).to_string();
    assert_eq!(
        report_tokens(port, &github, "key-1", &five, &five).await.0,
        413
    );
    let unsigned = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/webhooks/github-partner"))
        .body(batch.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);

    // The same batch again: the token's job exists; nothing is revoked twice.
    let (status, _) = report_tokens(port, &github, "key-1", &batch, &batch).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(mock.lock().unwrap().revoke_calls, calls);
    server.kill().unwrap();
    server.wait().unwrap();

    // The queue and the audit log hold no token in clear.
    let audit = fs::read_to_string(dir.path().join("keyburn-data/audit.jsonl")).unwrap();
    assert!(audit.contains("partner.accepted"), "{audit}");
    assert!(audit.contains("\"event\":\"revoke\""), "{audit}");
    let db = fs::read(dir.path().join("keyburn-data/queue.db")).unwrap();
    let wal = fs::read(dir.path().join("keyburn-data/queue.db-wal")).unwrap_or_default();
    for token in [&live, &dead] {
        assert!(!audit.contains(token.as_str()));
        let t = token.as_bytes();
        assert!(
            !db.windows(t.len()).any(|w| w == t),
            "queue.db holds a token"
        );
        assert!(
            !wal.windows(t.len()).any(|w| w == t),
            "queue.db-wal holds a token"
        );
    }
}
