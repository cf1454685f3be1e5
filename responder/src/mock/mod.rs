//! A mock of the services the responder calls, for tests (the
//! responder's and the binary's): GitHub's alerts API, credential
//! revocation and `/user`, Slack's `auth.test`/`auth.revoke`, and a
//! notification sink, served by axum on 127.0.0.1. Built only with the
//! `mock` feature.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

pub mod script;

/// Poll `cond` until it holds; fail the test after 20 s, naming `what`.
pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Poll `url` until it answers 200; fail the test after 20 s.
pub async fn wait_until_ok(url: &str) {
    let start = std::time::Instant::now();
    loop {
        if let Ok(r) = reqwest::get(url).await {
            if r.status() == StatusCode::OK {
                return;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{url} did not answer 200"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The lines of an audit log whose event is exactly `event`.
pub fn audit_events<'a>(audit: &'a str, event: &str) -> Vec<&'a str> {
    let field = format!(r#""event":"{event}""#);
    audit.lines().filter(|l| l.contains(&field)).collect()
}

/// A fake classic GitHub token: right shape and checksum, random body,
/// not a real one.
pub fn fake_github_token() -> String {
    const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let random: String = (0..30)
        .map(|_| BASE62[rand::random_range(0..BASE62.len())] as char)
        .collect();
    // GitHub's checksum: CRC32 of the random part, six base62 digits.
    let mut v = u64::from(crc32fast::hash(random.as_bytes()));
    let mut check = [b'0'; 6];
    for slot in check.iter_mut().rev() {
        *slot = BASE62[(v % 62) as usize];
        v /= 62;
    }
    format!("{}{random}{}", "ghp_", String::from_utf8_lossy(&check))
}

/// A fake Slack bot token of the real shape: random digits and letters.
pub fn fake_slack_token() -> String {
    let pick = |chars: &[u8], n: usize| -> String {
        (0..n)
            .map(|_| chars[rand::random_range(0..chars.len())] as char)
            .collect()
    };
    let digits = b"0123456789";
    let alnum = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    format!(
        "xoxb-{}-{}-{}",
        pick(digits, 11),
        pick(digits, 13),
        pick(alnum, 24)
    )
}

#[derive(Default)]
pub struct Mock {
    /// "owner/repo#n" -> alert JSON (with the secret).
    pub alerts: HashMap<String, Value>,
    /// Tokens that still work, at GitHub or Slack.
    pub active: std::collections::HashSet<String>,
    pub revoke_calls: usize,
    pub patches: Vec<Value>,
    pub notices: Vec<Value>,
    /// Answer this many alert fetches with 502 first.
    pub fail_fetches: usize,
    /// Answer this many Slack calls with 429 Retry-After: 1 first.
    pub throttle_slack: usize,
    /// Make every answer this slow (a real API's round trip).
    pub latency: Duration,
    /// Make `/user` this slow.
    pub user_delay: Duration,
    /// Make `/credentials/revoke` this slow: the call is counted when it
    /// arrives, the token dies when the answer is sent (as a provider
    /// that processes revocations asynchronously).
    pub revoke_delay: Duration,
    /// While set, resolving an alert answers 503 (a GitHub outage between
    /// revocation and resolution).
    pub refuse_resolve: bool,
    /// A GitHub App's public key (PEM): when set, alert calls need an
    /// installation token that a JWT signed by the app's key bought.
    pub app_public_key: Option<Vec<u8>>,
    /// Installation tokens issued.
    pub installation_tokens: Vec<String>,
    /// Texts posted to the Slack incoming webhook at `/slack-hook`.
    pub slack_messages: Vec<String>,
    /// What `/meta/public_keys/secret_scanning` serves (GitHub's partner
    /// signing keys), and how often it was asked.
    pub partner_keys: Value,
    pub partner_key_fetches: usize,
}

/// A partner-program signing key, as GitHub holds one: signs bodies the
/// way GitHub signs partner deliveries (base64 DER ECDSA P-256, SHA-256).
pub struct PartnerSigner {
    pub key_identifier: String,
    key: p256::ecdsa::SigningKey,
}

impl PartnerSigner {
    /// A fresh random key.
    pub fn generate(key_identifier: &str) -> PartnerSigner {
        let key = loop {
            if let Ok(k) = p256::ecdsa::SigningKey::from_slice(&rand::random::<[u8; 32]>()) {
                break k;
            }
        };
        PartnerSigner {
            key_identifier: key_identifier.to_string(),
            key,
        }
    }

    /// The `Github-Public-Key-Signature` of `body`.
    pub fn sign(&self, body: &[u8]) -> String {
        use base64::Engine as _;
        use p256::ecdsa::signature::Signer as _;
        let sig: p256::ecdsa::Signature = self.key.sign(body);
        base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes())
    }

    /// This key as an entry of GitHub's keys document.
    pub fn published(&self) -> Value {
        use p256::pkcs8::EncodePublicKey as _;
        let pem = self
            .key
            .verifying_key()
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .expect("a P-256 key encodes");
        json!({"key_identifier": self.key_identifier, "key": pem, "is_current": true})
    }
}

/// GitHub's partner keys document listing `signers`.
pub fn partner_keys(signers: &[&PartnerSigner]) -> Value {
    json!({"public_keys": signers.iter().map(|s| s.published()).collect::<Vec<_>>()})
}

async fn partner_keys_route(State(m): State<Shared>) -> Json<Value> {
    let mut m = m.lock().unwrap();
    m.partner_key_fetches += 1;
    Json(m.partner_keys.clone())
}

impl Mock {
    /// An open alert `repo#number` on `secret`, which still works.
    pub fn leak(&mut self, repo: &str, number: u64, secret_type: &str, secret: &str) {
        self.alerts.insert(
            format!("{repo}#{number}"),
            alert(number, secret_type, secret),
        );
        self.active.insert(secret.to_string());
    }
}

pub type Shared = Arc<Mutex<Mock>>;

fn bearer(h: &HeaderMap) -> String {
    h.get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_string()
}

/// With an app configured, only an issued installation token passes.
fn authorized(m: &Mock, h: &HeaderMap) -> bool {
    m.app_public_key.is_none() || m.installation_tokens.contains(&bearer(h))
}

async fn get_alert(
    State(m): State<Shared>,
    UrlPath((o, r, n)): UrlPath<(String, String, u64)>,
    h: HeaderMap,
) -> Response {
    let mut m = m.lock().unwrap();
    if !authorized(&m, &h) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if m.fail_fetches > 0 {
        m.fail_fetches -= 1;
        return StatusCode::BAD_GATEWAY.into_response();
    }
    match m.alerts.get(&format!("{o}/{r}#{n}")) {
        Some(a) => Json(a.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Every alert was found in one commit of `config/app.env`.
async fn alert_locations(State(m): State<Shared>, h: HeaderMap) -> Response {
    if !authorized(&m.lock().unwrap(), &h) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    Json(json!([{"type": "commit", "details": {
        "path": "config/app.env", "start_line": 3, "end_line": 3,
        "commit_sha": "0123456789abcdef0123456789abcdef01234567"
    }}]))
    .into_response()
}

/// A Slack incoming webhook: keeps the message text.
async fn slack_hook(State(m): State<Shared>, Json(body): Json<Value>) -> StatusCode {
    m.lock()
        .unwrap()
        .slack_messages
        .push(body["text"].as_str().unwrap_or("").to_string());
    StatusCode::OK
}

async fn patch_alert(
    State(m): State<Shared>,
    UrlPath((o, r, n)): UrlPath<(String, String, u64)>,
    h: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut m = m.lock().unwrap();
    if !authorized(&m, &h) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if m.refuse_resolve {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let key = format!("{o}/{r}#{n}");
    let Some(a) = m.alerts.get_mut(&key) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    a["state"] = body["state"].clone();
    a["resolution"] = body["resolution"].clone();
    let a = a.clone();
    m.patches.push(body);
    Json(a).into_response()
}

async fn list_org_alerts(State(m): State<Shared>, UrlPath(org): UrlPath<String>) -> Response {
    let m = m.lock().unwrap();
    let open: Vec<Value> = m
        .alerts
        .iter()
        .filter(|(k, a)| k.starts_with(&format!("{org}/")) && a["state"] == "open")
        .map(|(k, a)| {
            let mut a = a.clone();
            a["repository"] = json!({"full_name": k.split('#').next().unwrap()});
            a
        })
        .collect();
    Json(open).into_response()
}

/// `POST /app/installations/{id}/access_tokens`: checks the app's JWT
/// (RS256, issuer 42, not expired) and issues a one-hour token.
async fn installation_token(State(m): State<Shared>, h: HeaderMap) -> Response {
    let mut m = m.lock().unwrap();
    let Some(pem) = m.app_public_key.clone() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Ok(key) = jsonwebtoken::DecodingKey::from_rsa_pem(&pem) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_issuer(&["42"]);
    v.set_required_spec_claims(&["exp", "iat", "iss"]);
    if jsonwebtoken::decode::<Value>(&bearer(&h), &key, &v).is_err() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let token = format!("ghs_mock{:08x}", rand::random::<u32>());
    m.installation_tokens.push(token.clone());
    (
        StatusCode::CREATED,
        Json(json!({"token": token, "expires_at": "2999-01-01T00:00:00Z"})),
    )
        .into_response()
}

async fn revoke(State(m): State<Shared>, Json(body): Json<Value>) -> StatusCode {
    let delay = {
        let mut m = m.lock().unwrap();
        m.revoke_calls += 1;
        m.revoke_delay
    };
    let tokens: Vec<String> = body["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    // The revocation goes through even if the caller hangs up meanwhile.
    let done = tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        m.lock().unwrap().active.retain(|a| !tokens.contains(a));
    });
    let _ = done.await;
    StatusCode::ACCEPTED
}

async fn user(State(m): State<Shared>, h: HeaderMap) -> StatusCode {
    let delay = m.lock().unwrap().user_delay;
    tokio::time::sleep(delay).await;
    if m.lock().unwrap().active.contains(&bearer(&h)) {
        StatusCode::OK
    } else {
        StatusCode::UNAUTHORIZED
    }
}

async fn slack(
    State(m): State<Shared>,
    UrlPath(method): UrlPath<String>,
    h: HeaderMap,
) -> Response {
    let mut m = m.lock().unwrap();
    if m.throttle_slack > 0 {
        m.throttle_slack -= 1;
        return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")]).into_response();
    }
    let token = bearer(&h);
    let live = m.active.contains(&token);
    match method.as_str() {
        "auth.test" if live => Json(json!({"ok": true})).into_response(),
        "auth.test" => Json(json!({"ok": false, "error": "invalid_auth"})).into_response(),
        "auth.revoke" => {
            m.revoke_calls += 1;
            m.active.retain(|a| *a != token);
            Json(json!({"ok": live, "revoked": live, "error": if live { Value::Null } else { json!("invalid_auth") }}))
                .into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn notice(State(m): State<Shared>, Json(body): Json<Value>) -> StatusCode {
    m.lock().unwrap().notices.push(body);
    StatusCode::OK
}

/// Every answer waits `Mock::latency` first.
async fn latency(
    State(m): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let wait = m.lock().unwrap().latency;
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    next.run(request).await
}

pub async fn start_mock() -> (Shared, String) {
    start_mock_on(0).await
}

/// The mock on a given port (0: any free port); returns its state and URL.
pub async fn start_mock_on(port: u16) -> (Shared, String) {
    let m: Shared = Arc::default();
    let app = Router::new()
        .route(
            "/repos/{o}/{r}/secret-scanning/alerts/{n}",
            get(get_alert).patch(patch_alert),
        )
        .route("/orgs/{org}/secret-scanning/alerts", get(list_org_alerts))
        .route(
            "/repos/{o}/{r}/secret-scanning/alerts/{n}/locations",
            get(alert_locations),
        )
        .route("/slack-hook", post(slack_hook))
        .route("/meta/public_keys/secret_scanning", get(partner_keys_route))
        .route("/credentials/revoke", post(revoke))
        .route(
            "/app/installations/{id}/access_tokens",
            post(installation_token),
        )
        .route("/user", get(user))
        .route("/slack/{method}", post(slack))
        .route("/notify", post(notice))
        .layer(axum::middleware::from_fn_with_state(m.clone(), latency))
        .with_state(m.clone());
    let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (m, url)
}

pub fn alert(number: u64, secret_type: &str, secret: &str) -> Value {
    json!({
        "number": number,
        "state": "open",
        "resolution": null,
        "secret_type": secret_type,
        "secret": secret,
        "html_url": format!("https://github.example/acme/app/security/secret-scanning/{number}"),
    })
}
