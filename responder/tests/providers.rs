//! Every provider check against one scripted mock, from the fixtures in
//! `testdata/providers/*.toml`: each case scripts the provider's answers,
//! runs the check through the registry, and asserts the exact requests
//! sent (method, path, headers, body) and the outcome read. Then every
//! check is put through the answers no fixture should have to list: a 429
//! with Retry-After, a 500, an HTML page, 401/403/404 where a 2xx was
//! expected, and a timeout (a mutation without an answer is `unknown` and
//! sent once). A check without fixtures fails the suite.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use keyburn_responder::http::Http;
use keyburn_responder::mock::script::{start_script, Reply, Script, Seen};
use keyburn_responder::providers::{CheckError, Options, Registry, Revoked, Secret};
use keyburn_scanner::rules::RuleSet;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    case: Vec<Case>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    rule: String,
    kind: Kind,
    /// `{mock}` is replaced by the mock's URL (for secrets that are URLs).
    secret: String,
    #[serde(default)]
    parts: BTreeMap<String, String>,
    outcome: String,
    request: Vec<Expected>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Validate,
    Revoke,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    method: String,
    path: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Headers that must not be sent.
    #[serde(default)]
    no_headers: Vec<String>,
    #[serde(default)]
    json: Option<Value>,
    #[serde(default)]
    form: Option<BTreeMap<String, String>>,
    reply: ReplySpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplySpec {
    status: u16,
    #[serde(default)]
    json: Option<Value>,
    #[serde(default)]
    body: Option<String>,
}

impl ReplySpec {
    fn reply(&self) -> Reply {
        match (&self.json, &self.body) {
            (Some(j), _) => Reply::json(self.status, j),
            (None, b) => Reply {
                status: self.status,
                body: b.clone().unwrap_or_default(),
                ..Reply::default()
            },
        }
    }
}

fn fixtures() -> Vec<(String, Case)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/providers");
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let fx: Fixture = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        out.extend(fx.case.into_iter().map(|c| (name.clone(), c)));
    }
    out
}

struct Harness {
    script: Arc<Script>,
    url: String,
    registry: Registry,
}

async fn harness(timeout: Duration) -> Harness {
    let (script, url) = start_script().await;
    let rules = RuleSet::builtin();
    let opts = Options {
        endpoints: rules
            .providers()
            .into_iter()
            .flat_map(|(family, spec)| {
                std::iter::once(family.to_string())
                    .chain(spec.hosts.keys().map(move |h| format!("{family}.{h}")))
            })
            .map(|k| (k, url.clone()))
            .collect(),
        allow_internal: true,
        ..Options::default()
    };
    let http = Http::new(timeout).with_max_wait(Duration::from_secs(2));
    let registry = Registry::new(&rules, &http, &opts);
    Harness {
        script,
        url,
        registry,
    }
}

impl Harness {
    fn secret(&self, c: &Case) -> Secret {
        Secret {
            value: c.secret.replace("{mock}", &self.url),
            parts: c
                .parts
                .iter()
                .map(|(k, v)| (k.clone(), v.replace("{mock}", &self.url)))
                .collect(),
        }
    }

    /// Run `c`'s check against `replies`; the outcome as the fixtures
    /// name it (`error` for a check that ended without the provider's word).
    async fn run(&self, c: &Case, replies: Vec<Reply>) -> String {
        self.script.load(replies);
        let checker = self
            .registry
            .for_rule(&c.rule)
            .unwrap_or_else(|| panic!("rule {} has no provider check", c.rule));
        let secret = self.secret(c);
        match c.kind {
            Kind::Validate => match checker.validate(&secret).await {
                Ok(v) => v.validity.as_str().to_string(),
                Err(CheckError::Answer(_)) => "unknown".into(),
                Err(e) => format!("error: {e}"),
            },
            Kind::Revoke => match checker.revoke(&secret).await {
                Ok(Revoked::Revoked(_)) => "revoked".into(),
                Ok(Revoked::Accepted(_)) => "accepted".into(),
                Ok(Revoked::NotFound(_)) => "not_found".into(),
                Ok(Revoked::NotAuthorized(_)) => "not_authorized".into(),
                Ok(Revoked::Unknown(_)) => "unknown".into(),
                Ok(Revoked::Manual(_)) => "manual".into(),
                Err(e) => format!("error: {e}"),
            },
        }
    }

    fn check_requests(&self, file: &str, c: &Case, seen: &[Seen]) {
        let at = format!("{file}: {} {:?} ({})", c.rule, c.kind, c.outcome);
        assert_eq!(
            seen.len(),
            c.request.len(),
            "{at}: requests sent: {:?}",
            seen.iter()
                .map(|s| format!("{} {}", s.method, s.path))
                .collect::<Vec<_>>()
        );
        let secret = self.secret(c);
        let fill = |t: &str| {
            let mut t = t
                .replace("{secret}", &secret.value)
                .replace("{mock}", &self.url);
            for (k, v) in &secret.parts {
                t = t.replace(&format!("{{part.{k}}}"), v);
            }
            t
        };
        for (i, (want, got)) in c.request.iter().zip(seen).enumerate() {
            let at = format!("{at}: request {}", i + 1);
            assert_eq!(got.method, want.method, "{at}: method");
            assert_eq!(got.path, fill(&want.path), "{at}: path");
            for (k, v) in &want.headers {
                assert_eq!(got.header(k), Some(fill(v).as_str()), "{at}: header {k}");
            }
            for k in &want.no_headers {
                assert_eq!(got.header(k), None, "{at}: header {k} must not be sent");
            }
            if let Some(j) = &want.json {
                let body: Value = serde_json::from_slice(&got.body)
                    .unwrap_or_else(|e| panic!("{at}: the body is not JSON: {e}"));
                let mut expected = j.to_string();
                expected = fill(&expected);
                let expected: Value = serde_json::from_str(&expected).unwrap();
                assert_eq!(body, expected, "{at}: JSON body");
            }
            if let Some(f) = &want.form {
                let body: BTreeMap<String, String> =
                    form_urlencoded::parse(&got.body).into_owned().collect();
                let expected: BTreeMap<String, String> =
                    f.iter().map(|(k, v)| (k.clone(), fill(v))).collect();
                assert_eq!(body, expected, "{at}: form body");
            }
        }
    }
}

const POSITIVE: &[&str] = &["active", "revoked", "accepted"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_check_sends_what_its_fixtures_expect_and_reads_the_answers() {
    let h = harness(Duration::from_secs(5)).await;
    let cases = fixtures();
    assert!(!cases.is_empty());
    for (file, c) in &cases {
        let replies = c.request.iter().map(|r| r.reply.reply()).collect();
        let got = h.run(c, replies).await;
        if c.outcome == "error" {
            assert!(
                got.starts_with("error:"),
                "{file}: {} {:?}: {got}",
                c.rule,
                c.kind
            );
        } else {
            assert_eq!(got, c.outcome, "{file}: {} {:?}", c.rule, c.kind);
        }
        h.check_requests(file, c, &h.script.seen());
    }
}

/// Every rule's check has fixtures: a validator at least one case that
/// says active and one that says otherwise; an API revoker one that
/// revokes and one that does not.
#[test]
fn every_check_has_fixtures_for_both_answers() {
    let rules = RuleSet::builtin();
    let cases = fixtures();
    let mut missing = Vec::new();
    for rule in rules.rules() {
        let Some((family, _, check)) = rules.check_of(rule) else {
            continue;
        };
        let name = format!("{family}.{}", rule.check.as_deref().unwrap_or(""));
        let covered = |kind: Kind| -> (bool, bool) {
            let outcomes: BTreeSet<&str> = cases
                .iter()
                .filter(|(_, c)| {
                    c.kind == kind
                        && rules.get(&c.rule).and_then(|r| r.check.as_deref())
                            == rule.check.as_deref()
                        && rules.get(&c.rule).and_then(|r| r.provider.as_deref()) == Some(family)
                })
                .map(|(_, c)| c.outcome.as_str())
                .collect();
            (
                outcomes.iter().any(|o| POSITIVE.contains(o)),
                outcomes.iter().any(|o| !POSITIVE.contains(o)),
            )
        };
        if check.validate.is_some() && covered(Kind::Validate) != (true, true) {
            missing.push(format!("{name} validate"));
        }
        if check.revoke.as_ref().is_some_and(|r| !r.steps.is_empty())
            && covered(Kind::Revoke) != (true, true)
        {
            missing.push(format!("{name} revoke"));
        }
    }
    missing.sort();
    missing.dedup();
    assert!(missing.is_empty(), "checks without fixtures: {missing:?}");
}

/// The first positive case of each check and kind.
fn positive_cases() -> Vec<(String, Case)> {
    let mut seen = BTreeSet::new();
    let rules = RuleSet::builtin();
    fixtures()
        .into_iter()
        .filter(|(_, c)| POSITIVE.contains(&c.outcome.as_str()))
        .filter(|(_, c)| {
            let r = rules.get(&c.rule).unwrap();
            seen.insert((r.provider.clone(), r.check.clone(), c.kind))
        })
        .collect()
}

/// Run `f` on every positive case at once, each with its own mock (the
/// waits these tests provoke add up otherwise).
async fn each_positive<F, Fut>(timeout: Duration, f: F)
where
    F: Fn(Harness, String, Case) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut tasks = tokio::task::JoinSet::new();
    for (file, c) in positive_cases() {
        tasks.spawn(f(harness(timeout).await, file, c));
    }
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_with_retry_after_is_waited_out() {
    each_positive(Duration::from_secs(5), |h, file, c| async move {
        let mut replies = vec![Reply {
            status: 429,
            headers: vec![("retry-after".into(), "1".into())],
            ..Reply::default()
        }];
        replies.extend(c.request.iter().map(|r| r.reply.reply()));
        let got = h.run(&c, replies).await;
        assert_eq!(
            got, c.outcome,
            "{file}: {} {:?} after a 429",
            c.rule, c.kind
        );
        assert_eq!(
            h.script.seen().len(),
            c.request.len() + 1,
            "{file}: {}",
            c.rule
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_html_and_refusals_never_read_as_live_or_revoked() {
    let h = harness(Duration::from_secs(5)).await;
    let html = Reply {
        status: 200,
        headers: vec![("content-type".into(), "text/html; charset=utf-8".into())],
        body: "<!DOCTYPE html><html><body>Sign in to continue</body></html>".into(),
        ..Reply::default()
    };
    for (file, c) in positive_cases() {
        let mut answers = vec![
            (
                "HTTP 500",
                Reply::json(500, &serde_json::json!({"error": "boom"})),
            ),
            ("an HTML page", html.clone()),
            (
                "garbage",
                Reply {
                    status: 200,
                    body: "\u{1}\u{2}not json".into(),
                    ..Reply::default()
                },
            ),
        ];
        for s in [401, 403, 404] {
            answers.push((
                "a refusal",
                Reply::json(s, &serde_json::json!({"message": "no"})),
            ));
        }
        // A rate limit that does not lift within the wait keyburn allows.
        answers.push((
            "a rate limit that never lifts",
            Reply {
                status: 429,
                headers: vec![("retry-after".into(), "3600".into())],
                ..Reply::default()
            },
        ));
        for (what, reply) in answers {
            let got = h.run(&c, vec![reply.clone(); 4]).await;
            assert!(
                !POSITIVE.contains(&got.as_str()),
                "{file}: {} {:?}: {what} (HTTP {}) read as {got}",
                c.rule,
                c.kind,
                reply.status
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_is_an_error_and_a_mutation_without_answer_is_unknown_and_sent_once() {
    each_positive(Duration::from_millis(300), |h, file, c| async move {
        let slow = Reply {
            delay: Duration::from_secs(2),
            ..c.request[0].reply.reply()
        };
        let got = h.run(&c, vec![slow.clone(), slow.clone(), slow]).await;
        let mutation =
            c.kind == Kind::Revoke && !matches!(c.request[0].method.as_str(), "GET" | "HEAD");
        if mutation {
            assert_eq!(got, "unknown", "{file}: {} revoke timed out", c.rule);
            assert_eq!(
                h.script.seen().len(),
                1,
                "{file}: {}: a mutation is sent once",
                c.rule
            );
        } else {
            assert!(
                got.starts_with("error:") && got.contains("timed out"),
                "{file}: {} {:?}: {got}",
                c.rule,
                c.kind
            );
        }
    })
    .await;
}

#[tokio::test]
async fn a_secret_naming_an_internal_host_is_not_contacted() {
    // A listener that counts connections.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c2 = count.clone();
    tokio::spawn(async move {
        while let Ok((_s, _)) = l.accept().await {
            c2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let rules = RuleSet::builtin();
    let registry = Registry::new(
        &rules,
        &Http::new(Duration::from_secs(2)),
        &Options::default(),
    );
    let hook = registry.for_rule("slack-webhook-url").unwrap();
    let url =
        format!("http://127.0.0.1:{port}/services/T0000000/B0000000/abcdefghijklmnopqrstuvwx");
    let e = hook.validate(&Secret::new(url.clone())).await.unwrap_err();
    assert!(matches!(e, CheckError::Skipped(_)), "{e}");
    assert!(e.to_string().contains("--allow-internal"), "{e}");
    let pg = registry.for_rule("postgres-url-password").unwrap();
    let s = Secret {
        value: "hunter2hunter2".into(),
        parts: [
            ("host".to_string(), "localhost".to_string()),
            ("port".to_string(), port.to_string()),
        ]
        .into(),
    };
    assert!(matches!(pg.validate(&s).await, Err(CheckError::Skipped(_))));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 0);

    // With --allow-internal it is contacted.
    let allowed = Registry::new(
        &rules,
        &Http::new(Duration::from_millis(500)),
        &Options {
            allow_internal: true,
            ..Options::default()
        },
    );
    let _ = allowed
        .for_rule("slack-webhook-url")
        .unwrap()
        .validate(&Secret::new(url))
        .await;
    assert!(count.load(std::sync::atomic::Ordering::SeqCst) >= 1);
}

#[tokio::test]
async fn an_aws_key_pair_is_asked_of_sts_signed_with_itself() {
    let (script, url) = start_script().await;
    let rules = RuleSet::builtin();
    let registry = Registry::new(
        &rules,
        &Http::new(Duration::from_secs(5)),
        &Options {
            endpoints: [("aws.sts".to_string(), url)].into(),
            ..Options::default()
        },
    );
    let check = registry.for_rule("aws-secret-access-key").unwrap();
    // Assembled, so that no key-shaped literal sits in the file.
    let key_id = format!("{}{}", "AKIA", "FIXTURE0FIXTURE0");
    let pair = Secret {
        value: "Fixture/Fixture/Fixture/Fixture/Fixture0".into(),
        parts: [("access_key_id".to_string(), key_id.clone())].into(),
    };
    let xml = |body: &str| Reply {
        status: 200,
        headers: vec![("content-type".into(), "text/xml".into())],
        body: body.into(),
        ..Reply::default()
    };
    script.load(vec![xml(
        "<GetCallerIdentityResponse><GetCallerIdentityResult><Arn>arn:aws:iam::123456789012:user/ci</Arn>\
         </GetCallerIdentityResult></GetCallerIdentityResponse>",
    )]);
    let live = check.validate(&pair).await.unwrap();
    assert_eq!(live.validity.as_str(), "active");
    assert!(
        live.reason.contains("arn:aws:iam::123456789012:user/ci"),
        "{}",
        live.reason
    );
    let seen = script.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    let body = String::from_utf8_lossy(&seen[0].body);
    assert!(
        body.contains("Action=GetCallerIdentity") && body.contains("Version=2011-06-15"),
        "{body}"
    );
    let auth = seen[0].header("authorization").unwrap();
    assert!(
        auth.starts_with(&format!("AWS4-HMAC-SHA256 Credential={key_id}/"))
            && auth.contains("/sts/aws4_request"),
        "{auth}"
    );

    script.load(vec![Reply {
        status: 403,
        body: "<ErrorResponse><Error><Code>InvalidClientTokenId</Code></Error></ErrorResponse>"
            .into(),
        ..Reply::default()
    }]);
    let dead = check.validate(&pair).await.unwrap();
    assert_eq!(dead.validity.as_str(), "inactive", "{}", dead.reason);

    // A lone secret key is not sent anywhere.
    let alone = check
        .validate(&Secret::new(pair.value.clone()))
        .await
        .unwrap_err();
    assert!(matches!(alone, CheckError::Skipped(_)), "{alone}");
    // Without keyburn's own AWS credentials it cannot be revoked by API.
    assert!(!check.revokes_by_api());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_account_key_signs_its_own_token_request_and_disables_itself() {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    let pem = private.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    let public = private
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let (script, url) = start_script().await;
    let rules = RuleSet::builtin();
    let registry = Registry::new(
        &rules,
        &Http::new(Duration::from_secs(5)),
        &Options {
            endpoints: [
                ("google".to_string(), url.clone()),
                ("google.iam".to_string(), url.clone()),
            ]
            .into(),
            ..Options::default()
        },
    );
    let check = registry.for_rule("gcp-service-account-key").unwrap();
    assert!(check.revokes_by_api());
    // The key file as a scan finds it: the rule's groups give the parts.
    let email = "deployer@acme-prod.iam.gserviceaccount.com";
    let key_id = "e5e20d37090bfb3328b2ec3f826b79dc31436da8";
    let escaped = pem.replace('\n', "\\n");
    let file = format!(
        "{{\n  \"type\": \"service_account\",\n  \"project_id\": \"acme-prod\",\n  \"private_key_id\": \"{key_id}\",\n  \"private_key\": \"{escaped}\",\n  \"client_email\": \"{email}\"\n}}"
    );
    let rule = rules.get("gcp-service-account-key").unwrap();
    let parts = rule.parts(&file);
    assert_eq!(parts.get("client_email").map(String::as_str), Some(email));
    assert_eq!(
        parts.get("private_key_id").map(String::as_str),
        Some(key_id)
    );
    let secret = Secret {
        value: escaped,
        parts,
    };
    let token = Reply::json(
        200,
        &serde_json::json!({"access_token": "ya29.fixture", "expires_in": 3599}),
    );

    script.load(vec![token.clone()]);
    let live = check.validate(&secret).await.unwrap();
    assert_eq!(live.validity.as_str(), "active", "{}", live.reason);
    let seen = script.seen();
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("POST", "/token")
    );
    let form: BTreeMap<String, String> =
        form_urlencoded::parse(&seen[0].body).into_owned().collect();
    assert_eq!(
        form["grant_type"],
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    );
    // The assertion is signed by the key itself, for its account.
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_audience(&[format!("{url}/token")]);
    let claims = jsonwebtoken::decode::<Value>(
        &form["assertion"],
        &jsonwebtoken::DecodingKey::from_rsa_pem(public.as_bytes()).unwrap(),
        &v,
    )
    .unwrap();
    assert_eq!(claims.claims["iss"], email);
    assert_eq!(claims.header.kid.as_deref(), Some(key_id));

    script.load(vec![Reply::json(
        400,
        &serde_json::json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
    )]);
    let dead = check.validate(&secret).await.unwrap();
    assert_eq!(dead.validity.as_str(), "inactive", "{}", dead.reason);

    script.load(vec![
        token.clone(),
        Reply::json(200, &serde_json::json!({})),
    ]);
    let revoked = check.revoke(&secret).await.unwrap();
    assert!(matches!(revoked, Revoked::Revoked(_)), "{revoked:?}");
    let seen = script.seen();
    assert_eq!(seen[1].method, "POST");
    assert_eq!(
        seen[1].path,
        format!("/v1/projects/-/serviceAccounts/{email}/keys/{key_id}:disable")
    );
    assert_eq!(seen[1].header("authorization"), Some("Bearer ya29.fixture"));

    script.load(vec![
        token,
        Reply::json(
            403,
            &serde_json::json!({"error": {"status": "PERMISSION_DENIED"}}),
        ),
    ]);
    assert!(matches!(
        check.revoke(&secret).await.unwrap(),
        Revoked::NotAuthorized(_)
    ));
}
