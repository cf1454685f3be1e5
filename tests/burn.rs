//! `scan --verify`, `validate` and `revoke` as processes, against the mock
//! Slack of `keyburn_responder::mock` (tokens in its `active` set work; a
//! revoked one stops working).

use std::fs;
use std::io::Write;
use std::process::{Command, Output, Stdio};

use keyburn_responder::mock::{fake_slack_token, start_mock};
use serde_json::Value;

/// Run keyburn with `args` (stdin from `input`) off the async threads.
async fn keyburn(args: Vec<String>, input: Option<String>) -> Output {
    keyburn_env(args, input, &[]).await
}

/// [`keyburn`] with environment variables set.
async fn keyburn_env(args: Vec<String>, input: Option<String>, env: &[(&str, &str)]) -> Output {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_keyburn"))
            .args(&args)
            .envs(env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        if let Some(i) = input {
            stdin.write_all(i.as_bytes()).unwrap();
        }
        drop(stdin);
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

/// A command line's words (the paths here hold no spaces).
fn words(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_tells_live_from_dead_and_revoke_kills_the_live_one_and_confirms_it() {
    let (mock, url) = start_mock().await;
    let live = fake_slack_token();
    let dead = fake_slack_token();
    mock.lock().unwrap().active.insert(live.clone());
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("deploy.env"),
        format!("SLACK_BOT_TOKEN={live}\nOLD_SLACK_TOKEN={dead}\n"),
    )
    .unwrap();
    let endpoint = format!("slack={url}/slack");
    let tree = dir.path().display().to_string();
    let report = dir.path().join("report.json").display().to_string();

    let scan = keyburn(
        words(&format!(
            "scan {} --no-history -f json -o {} --verify --endpoint {}",
            tree, report, endpoint
        )),
        None,
    )
    .await;
    assert_eq!(
        scan.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&scan.stderr)
    );
    let doc: Value = serde_json::from_slice(&fs::read(&report).unwrap()).unwrap();
    let status_of = |token: &str| {
        doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["secret"] == token)
            .map(|f| f["validation"].clone())
            .unwrap()
    };
    assert_eq!(status_of(&live)["status"], "active");
    assert_eq!(status_of(&live)["provider"], "slack");
    assert!(status_of(&live)["checked_at"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    assert_eq!(status_of(&dead)["status"], "inactive");

    // A dry run changes nothing.
    let dry = keyburn(
        words(&format!(
            "revoke --report {} --only-verified --dry-run --endpoint {}",
            report, endpoint
        )),
        None,
    )
    .await;
    assert_eq!(
        dry.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert_eq!(mock.lock().unwrap().revoke_calls, 0);

    let revoke = keyburn(
        words(&format!(
            "revoke --report {} --only-verified -f json --endpoint {}",
            report, endpoint
        )),
        None,
    )
    .await;
    assert_eq!(
        revoke.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&revoke.stderr)
    );
    let rows: Value = serde_json::from_slice(&revoke.stdout).unwrap();
    assert_eq!(
        rows.as_array().unwrap().len(),
        1,
        "only the verified one: {rows}"
    );
    assert_eq!(rows[0]["outcome"], "revoked");
    assert!(rows[0]["reason"].as_str().unwrap().contains("confirmed"));
    assert!(
        !String::from_utf8_lossy(&revoke.stdout).contains(&live),
        "the secret is masked"
    );
    assert_eq!(mock.lock().unwrap().revoke_calls, 1);
    assert!(!mock.lock().unwrap().active.contains(&live));

    // Now dead: validate says so (exit 1), and a second revoke sends
    // nothing (not_found, exit 0).
    let v = keyburn(
        words(&format!(
            "validate --rule slack-bot-token - --endpoint {}",
            endpoint
        )),
        Some(format!("{live}\n")),
    )
    .await;
    assert_eq!(
        v.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&v.stdout)
    );
    assert!(String::from_utf8_lossy(&v.stdout).contains("inactive"));
    let again = keyburn(
        words(&format!("revoke - --endpoint {}", endpoint)),
        Some(live.clone()),
    )
    .await;
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    assert!(String::from_utf8_lossy(&again.stdout).contains("not_found"));
    assert_eq!(mock.lock().unwrap().revoke_calls, 1);

    let only = keyburn(
        words(&format!(
            "scan {} --no-history -f json --verify --only-verified --endpoint {}",
            tree, endpoint
        )),
        None,
    )
    .await;
    assert_eq!(only.status.code(), Some(0), "no live secret is left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_message_and_the_batch_goes_on() {
    let (mock, url) = start_mock().await;
    let endpoint = format!("slack={url}/slack");
    let wrong = keyburn(words("validate --rule github-pat not-a-token"), None).await;
    assert_eq!(wrong.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("does not have the shape"));

    let unknown = keyburn(words("validate plainly-not-a-secret"), None).await;
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("--rule"));

    let dir = tempfile::tempdir().unwrap();
    let gitleaks = dir.path().join("gitleaks.json");
    fs::write(&gitleaks, r#"[{"RuleID":"x","Secret":"y"}]"#).unwrap();
    let r = keyburn(
        words(&format!("revoke --report {}", gitleaks.display())),
        None,
    )
    .await;
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("not a keyburn report"));
    // A JSONL report of one finding (a secret no rule checks) is read as
    // such: the revocation is an error, not a refusal of the file.
    let one = dir.path().join("one.jsonl");
    fs::write(&one, r#"{"rule_id":"generic-password","secret":"s3cr3t-fixture","match":"password=s3cr3t-fixture"}"#).unwrap();
    let r = keyburn(words(&format!("revoke --report {}", one.display())), None).await;
    assert_eq!(
        r.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(
        String::from_utf8_lossy(&r.stdout).contains("no provider check for rule generic-password")
    );
    let future = dir.path().join("future.json");
    fs::write(&future, r#"{"version": 9, "findings": []}"#).unwrap();
    let r = keyburn(
        words(&format!("revoke --report {}", future.display())),
        None,
    )
    .await;
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("report version 9"));

    // One live token and one the provider answers with garbage for: the
    // first is revoked, the second reported, and the exit code says not
    // everything succeeded.
    let live = fake_slack_token();
    mock.lock().unwrap().active.insert(live.clone());
    let broken = keyburn(
        words(&format!(
            "revoke - --rule slack-bot-token --endpoint {}",
            endpoint.replace("/slack", "/nowhere")
        )),
        Some(live.clone()),
    )
    .await;
    assert_eq!(broken.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&broken.stdout).contains("error"));
    // A TLS handshake with a server that speaks plain HTTP: one clear
    // line, could not tell (exit 2).
    let tls = keyburn(
        words(&format!(
            "validate --rule slack-bot-token - --endpoint {}",
            endpoint.replace("http://", "https://")
        )),
        Some(live.clone()),
    )
    .await;
    assert_eq!(tls.status.code(), Some(2));
    let out = String::from_utf8_lossy(&tls.stdout);
    assert!(
        out.contains("error") && out.contains("Slack validate"),
        "{out}"
    );
    let ok = keyburn(
        words(&format!("revoke - --endpoint {}", endpoint)),
        Some(live),
    )
    .await;
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_admin_credential_is_named_and_the_batch_goes_on() {
    use keyburn_responder::mock::script::{start_script, Reply};
    // IAM refuses keyburn's own (expired) credentials on every call.
    let (iam, iam_url) = start_script().await;
    let expired = Reply {
        status: 403,
        headers: vec![("content-type".into(), "text/xml".into())],
        body: "<ErrorResponse><Error><Type>Sender</Type><Code>ExpiredToken</Code>\
               <Message>The security token included in the request is expired</Message>\
               </Error></ErrorResponse>"
            .into(),
        ..Reply::default()
    };
    iam.load(vec![expired; 4]);
    let (mock, url) = start_mock().await;
    let live = fake_slack_token();
    mock.lock().unwrap().active.insert(live.clone());
    let key_id = format!("{}{}", "AKIA", "D6MX4MUX6B2PZCYC");
    let out = keyburn_env(
        words(&format!(
            "revoke - -f json --endpoint slack={url}/slack --endpoint aws.iam={iam_url}/"
        )),
        Some(format!("{key_id}\n{live}\n")),
        &[
            ("AWS_ACCESS_KEY_ID", "AKIAFIXTUREFIXTURE00"),
            ("AWS_SECRET_ACCESS_KEY", "fixture-secret-access-key"),
            ("AWS_SESSION_TOKEN", "fixture-session-token"),
        ],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = |rule: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["rule_id"] == rule)
            .cloned()
            .unwrap_or_else(|| panic!("no row for {rule}: {rows}"))
    };
    let aws = row("aws-access-key-id");
    assert_eq!(aws["outcome"], "error", "{aws}");
    let reason = aws["reason"].as_str().unwrap();
    assert!(
        reason.contains("keyburn's own credentials") && reason.contains("ExpiredToken"),
        "{reason}"
    );
    assert_eq!(row("slack-bot-token")["outcome"], "revoked");
    // Nothing was attempted past the refused look-up.
    assert!(iam
        .seen()
        .iter()
        .all(|s| String::from_utf8_lossy(&s.body).contains("Action=GetAccessKeyLastUsed")));
}
