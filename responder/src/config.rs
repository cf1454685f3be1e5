//! `keyburn.toml`, as DESIGN.md lays it out, with environment overrides.
//!
//! Secrets are never written in the file itself: a value `env:NAME` reads
//! the environment variable NAME (and `file:PATH` a file), so the config
//! can be committed. With no file at all, `KEYBURN_WEBHOOK_SECRET` alone
//! starts a responder on defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{key}: {message}")]
    Value { key: String, message: String },
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<ConfigError>),
}

/// Webhook secrets shorter than this are refused: GitHub lets anyone guess
/// at them through the signature.
pub const MIN_WEBHOOK_SECRET_BYTES: usize = 16;

/// What to do with an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Revoke,
    Notify,
    Ignore,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: Server,
    #[serde(default)]
    pub github: GitHub,
    #[serde(default)]
    pub audit: Audit,
    #[serde(default)]
    pub policy: Policy,
    #[serde(default)]
    pub worker: Worker,
    #[serde(default)]
    pub notify: Notify,
    #[serde(default)]
    pub providers: Providers,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Largest accepted webhook body (GitHub caps payloads at 25 MB).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Cap on the queue database's size; at nine tenths of it deliveries
    /// get 503 while the workers drain what is queued.
    #[serde(default)]
    pub queue_max_bytes: Option<u64>,
    /// Finished jobs' payloads and old delivery ids are dropped after
    /// this many days (hourly, and by `keyburn jobs prune`).
    #[serde(default = "default_retention")]
    pub retention_days: u64,
    /// A client must send its request headers within this many seconds,
    /// and its body within `body_timeout_secs`; a slower one is cut.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_secs: u64,
    #[serde(default = "default_body_timeout")]
    pub body_timeout_secs: u64,
    /// Connections served at once; more wait in the listen backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// On SIGTERM, connections get this long to finish before the server
    /// stops anyway.
    #[serde(default = "default_drain")]
    pub shutdown_drain_secs: u64,
    /// Serve `/metrics` on this address instead of `listen` (an internal
    /// interface, say).
    pub metrics_listen: Option<String>,
    /// Require `Authorization: Bearer <token>` on `/metrics`
    /// (`env:NAME` / `file:PATH`).
    pub metrics_token: Option<String>,
    /// `postgres://user@host/db`: the queue and the audit log in
    /// PostgreSQL, shared by several `keyburn serve` replicas (default:
    /// SQLite and a file in `data_dir`). `KEYBURN_QUEUE_URL`; `env:NAME`
    /// or `file:PATH` for a URL holding a password.
    #[serde(default = "default_queue_url")]
    pub queue_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitHub {
    /// Every secret is accepted (rotation). `env:NAME` / `file:PATH`.
    #[serde(default = "default_webhook_secrets")]
    pub webhook_secrets: Vec<String>,
    #[serde(default = "default_api_url")]
    pub api_url: String,
    #[serde(default = "default_token")]
    pub token: Option<String>,
    /// Organisations whose open alerts are reconciled.
    #[serde(default)]
    pub organizations: Vec<String>,
    /// Repositories (`owner/name`) whose open alerts are reconciled.
    #[serde(default)]
    pub repositories: Vec<String>,
    /// Seconds between reconciliation passes (0: only at start).
    #[serde(default = "default_reconcile")]
    pub reconcile_interval_secs: u64,
    /// Authenticate as a GitHub App instead of with `token`.
    pub app: Option<GitHubApp>,
    /// The secret-scanning partner endpoint (`POST /webhooks/github-partner`).
    #[serde(default)]
    pub partner: Partner,
}

/// `[github.partner]`: for an organisation that issues tokens and receives
/// GitHub's reports of them found in public.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partner {
    /// Where GitHub publishes its signing keys
    /// (`KEYBURN_GITHUB_PARTNER_KEYS_URL` overrides).
    #[serde(default = "default_partner_keys_url")]
    pub keys_url: String,
    /// GitHub's `type` for each of your token types, mapped to the keyburn
    /// rule that recognises and revokes it (`acme_api_token =
    /// "acme-api-key"`). A reported type not listed is not one of ours.
    #[serde(default)]
    pub types: std::collections::BTreeMap<String, String>,
    /// Largest batch accepted (GitHub sends many tokens at once).
    #[serde(default = "default_partner_max_tokens")]
    pub max_tokens: usize,
    /// Seconds the answer may take: validations still running then give
    /// their token the label of what is known (GitHub waits 30 s).
    #[serde(default = "default_partner_answer_secs")]
    pub answer_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitHubApp {
    pub id: u64,
    /// The app's private key (PEM), as downloaded from its settings page.
    pub private_key_path: PathBuf,
    /// The installation to act as (the organisation's installation).
    pub installation_id: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Audit {
    #[serde(default = "default_audit_key")]
    pub hmac_key: Option<String>,
    /// Default: `<data_dir>/audit.jsonl`.
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default = "default_action")]
    pub default: Action,
    #[serde(default)]
    pub dry_run: bool,
    /// Revoke whatever the rules say when GitHub reports the secret as
    /// publicly leaked.
    #[serde(default)]
    pub revoke_public_leaks: bool,
    #[serde(default)]
    pub rule: Vec<PolicyRule>,
}

/// The first rule whose fields all match decides; absent fields match all.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRule {
    pub secret_type: Option<String>,
    /// `owner/name`, with `*` matching any run of characters.
    pub repository: Option<String>,
    pub action: Action,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Worker {
    #[serde(default = "default_workers")]
    pub concurrency: usize,
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_backoff_base")]
    pub backoff_base_ms: u64,
    #[serde(default = "default_backoff_max")]
    pub backoff_max_ms: u64,
    /// Timeout of one outbound HTTP request.
    #[serde(default = "default_http_timeout")]
    pub http_timeout_ms: u64,
    /// A worker holds a job this long without renewing; it renews every
    /// third of it while a step runs. A job whose worker died is taken
    /// over after it (at once after a restart).
    #[serde(default = "default_lease")]
    pub lease_secs: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    /// A Slack incoming-webhook URL (`env:NAME` allowed).
    pub slack_webhook: Option<String>,
    /// A URL that receives one JSON document per notification.
    pub webhook: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Providers {
    #[serde(default)]
    pub github: ProviderUrl,
    #[serde(default)]
    pub slack: ProviderUrl,
    #[serde(default)]
    pub aws: AwsProvider,
    /// Base URLs by provider family (`gitlab = "https://gitlab.acme.io"`),
    /// replacing the rule files' defaults.
    #[serde(default)]
    pub endpoints: std::collections::BTreeMap<String, String>,
    /// Requests per second by provider family.
    #[serde(default)]
    pub rates: std::collections::BTreeMap<String, f64>,
}

/// AWS access keys are deactivated with the responder's own IAM
/// credentials; without them, AWS alerts are notified only.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsProvider {
    #[serde(default = "default_iam_url")]
    pub iam_url: String,
    #[serde(default = "default_region")]
    pub region: String,
    #[serde(default = "default_aws_key_id")]
    pub access_key_id: Option<String>,
    #[serde(default = "default_aws_secret")]
    pub secret_access_key: Option<String>,
    #[serde(default = "default_aws_session")]
    pub session_token: Option<String>,
    /// Attach the quarantine policy to the key's user after deactivating.
    #[serde(default)]
    pub quarantine: bool,
    #[serde(default = "default_quarantine_policy")]
    pub quarantine_policy_arn: String,
}

/// A provider's base URL, for GitHub Enterprise, regional endpoints and
/// the tests' local mocks.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderUrl {
    pub api_url: Option<String>,
}

/// `http://host...` or `https://host...`, with a host.
fn is_http_url(u: &str) -> bool {
    ["http://", "https://"].iter().any(|scheme| {
        u.strip_prefix(scheme)
            .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
    })
}

fn default_iam_url() -> String {
    "https://iam.amazonaws.com".into()
}
fn default_region() -> String {
    "us-east-1".into()
}
fn default_aws_key_id() -> Option<String> {
    Some("env:AWS_ACCESS_KEY_ID".into())
}
fn default_aws_secret() -> Option<String> {
    Some("env:AWS_SECRET_ACCESS_KEY".into())
}
fn default_aws_session() -> Option<String> {
    Some("env:AWS_SESSION_TOKEN".into())
}
fn default_quarantine_policy() -> String {
    crate::providers::aws::QUARANTINE_POLICY.into()
}
fn default_listen() -> String {
    "127.0.0.1:8787".into()
}
fn default_data_dir() -> PathBuf {
    "./keyburn-data".into()
}
fn default_max_body() -> usize {
    1 << 20
}
fn default_webhook_secrets() -> Vec<String> {
    vec!["env:KEYBURN_WEBHOOK_SECRET".into()]
}
fn default_partner_keys_url() -> String {
    "https://api.github.com/meta/public_keys/secret_scanning".into()
}
fn default_partner_max_tokens() -> usize {
    1000
}
fn default_partner_answer_secs() -> u64 {
    20
}
fn default_api_url() -> String {
    "https://api.github.com".into()
}
fn default_token() -> Option<String> {
    Some("env:KEYBURN_GITHUB_TOKEN".into())
}
fn default_reconcile() -> u64 {
    900
}
fn default_audit_key() -> Option<String> {
    Some("env:KEYBURN_AUDIT_HMAC_KEY".into())
}
fn default_action() -> Action {
    Action::Notify
}
fn default_workers() -> usize {
    4
}
fn default_attempts() -> u32 {
    16
}
fn default_backoff_base() -> u64 {
    2_000
}
fn default_backoff_max() -> u64 {
    1_800_000
}
fn default_queue_url() -> Option<String> {
    Some("env:KEYBURN_QUEUE_URL".into())
}
fn default_header_timeout() -> u64 {
    10
}
fn default_body_timeout() -> u64 {
    30
}
fn default_max_connections() -> usize {
    256
}
fn default_drain() -> u64 {
    10
}
fn default_retention() -> u64 {
    30
}
fn default_lease() -> u64 {
    300
}
fn default_http_timeout() -> u64 {
    10_000
}

macro_rules! defaults_from_serde {
    ($($t:ty),*) => {$(
        impl Default for $t {
            fn default() -> Self {
                toml::from_str("").expect("every field has a default")
            }
        }
    )*};
}
defaults_from_serde!(Server, GitHub, Partner, Audit, Policy, Worker, AwsProvider);

impl Default for Config {
    fn default() -> Config {
        toml::from_str("").expect("every section has a default")
    }
}

impl Config {
    /// Read `path`, or the defaults when `None`; then apply the
    /// environment overrides (`KEYBURN_LISTEN`, `KEYBURN_GITHUB_API`,
    /// `KEYBURN_GITHUB_PARTNER_KEYS_URL`, `KEYBURN_DATA_DIR`).
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut cfg = match path {
            Some(p) => {
                let file = |message: String| ConfigError::File {
                    path: p.to_path_buf(),
                    message,
                };
                let text = std::fs::read_to_string(p).map_err(|e| file(e.to_string()))?;
                toml::from_str(&text).map_err(|e| file(e.to_string()))?
            }
            None => Config::default(),
        };
        if let Some(v) = env_nonempty("KEYBURN_LISTEN") {
            cfg.server.listen = v;
        }
        if let Some(v) = env_nonempty("KEYBURN_GITHUB_API") {
            cfg.github.api_url = v;
        }
        if let Some(v) = env_nonempty("KEYBURN_GITHUB_PARTNER_KEYS_URL") {
            cfg.github.partner.keys_url = v;
        }
        if let Some(v) = env_nonempty("KEYBURN_DATA_DIR") {
            cfg.server.data_dir = v.into();
        }
        Ok(cfg)
    }

    /// Check what a running responder would trip over late: zero timeouts,
    /// attempts or workers, webhook secrets under 16 bytes, URLs that are
    /// not http(s). Returns warnings (no GitHub credentials) when it passes,
    /// every problem at once when it does not.
    pub fn check(&self) -> Result<Vec<String>, ConfigError> {
        let mut errors = Vec::new();
        let mut bad = |key: &str, message: String| {
            errors.push(ConfigError::Value {
                key: key.to_string(),
                message,
            })
        };
        let w = &self.worker;
        for (key, value) in [
            ("worker.max_attempts", u64::from(w.max_attempts)),
            ("worker.http_timeout_ms", w.http_timeout_ms),
            ("worker.concurrency", w.concurrency as u64),
            ("worker.lease_secs", w.lease_secs),
            (
                "server.header_timeout_secs",
                self.server.header_timeout_secs,
            ),
            ("server.body_timeout_secs", self.server.body_timeout_secs),
            ("server.max_connections", self.server.max_connections as u64),
        ] {
            if value == 0 {
                bad(key, "must be at least 1".into());
            }
        }
        match self.webhook_secrets() {
            Ok(secrets) => {
                for (i, s) in secrets.iter().enumerate() {
                    if s.len() < MIN_WEBHOOK_SECRET_BYTES {
                        bad(
                            &format!("github.webhook_secrets[{i}]"),
                            format!(
                                "{} bytes; use at least {MIN_WEBHOOK_SECRET_BYTES} random bytes",
                                s.len()
                            ),
                        );
                    }
                }
            }
            Err(e) => errors.push(e),
        }
        let mut urls = vec![
            ("github.api_url", Some(self.github.api_url.clone())),
            (
                "providers.github.api_url",
                self.providers.github.api_url.clone(),
            ),
            (
                "providers.slack.api_url",
                self.providers.slack.api_url.clone(),
            ),
            (
                "providers.aws.iam_url",
                Some(self.providers.aws.iam_url.clone()),
            ),
            ("notify.webhook", self.notify.webhook.clone()),
            (
                "github.partner.keys_url",
                Some(self.github.partner.keys_url.clone()),
            ),
        ];
        let endpoint_keys: Vec<String> = self
            .providers
            .endpoints
            .keys()
            .map(|k| format!("providers.endpoints.{k}"))
            .collect();
        for (key, url) in endpoint_keys.iter().zip(self.providers.endpoints.values()) {
            urls.push((key.as_str(), Some(url.clone())));
        }
        match self.slack_webhook() {
            Ok(u) => urls.push(("notify.slack_webhook", u)),
            Err(e) => errors.push(e),
        }
        for (key, url) in urls {
            if let Some(url) = url.filter(|u| !is_http_url(u)) {
                errors.push(ConfigError::Value {
                    key: key.into(),
                    message: format!("{url:?} is not an http:// or https:// URL"),
                });
            }
        }
        if !self.github.partner.types.is_empty() {
            let rules = keyburn_scanner::rules::RuleSet::builtin();
            for (kind, id) in &self.github.partner.types {
                let problem = match rules.get(id) {
                    None => Some(format!("{id:?} is no rule (see `keyburn rules list`)")),
                    Some(r) if rules.check_of(r).is_none() => {
                        Some(format!("rule {id:?} has no provider check to revoke it"))
                    }
                    Some(_) => None,
                };
                if let Some(message) = problem {
                    errors.push(ConfigError::Value {
                        key: format!("github.partner.types.{kind}"),
                        message,
                    });
                }
            }
        }
        let shared = match self.queue_url() {
            Ok(url) => url.is_some(),
            Err(e) => {
                errors.push(e);
                false
            }
        };
        if shared && !matches!(self.audit_key(), Ok(Some(_))) {
            errors.push(ConfigError::Value {
                key: "audit.hmac_key".into(),
                message: "replicas sharing a queue must share the audit key: set \
                          KEYBURN_AUDIT_HMAC_KEY (or audit.hmac_key) on every one"
                    .into(),
            });
        }
        if !errors.is_empty() {
            return Err(ConfigError::Invalid(errors));
        }
        let mut warnings = Vec::new();
        if shared && self.server.queue_max_bytes.is_some() {
            warnings.push(
                "server.queue_max_bytes applies to the embedded SQLite queue only; \
                 PostgreSQL manages its own space"
                    .to_string(),
            );
        }
        if self.github.app.is_none() && !matches!(self.github_token(), Ok(Some(_))) {
            warnings.push(
                "no GitHub credentials (github.token or [github.app]): alerts cannot be \
                 fetched with their secret, so nothing will be revoked or resolved"
                    .to_string(),
            );
        }
        Ok(warnings)
    }

    /// The webhook secrets, resolved; an error when none is set, since a
    /// responder that accepts unsigned deliveries must not start.
    pub fn webhook_secrets(&self) -> Result<Vec<String>, ConfigError> {
        let mut out = Vec::new();
        for (i, s) in self.github.webhook_secrets.iter().enumerate() {
            if let Some(v) = resolve(&format!("github.webhook_secrets[{i}]"), s, false)? {
                out.push(v);
            }
        }
        if out.is_empty() {
            return Err(ConfigError::Value {
                key: "github.webhook_secrets".into(),
                message: "no webhook secret is set (set KEYBURN_WEBHOOK_SECRET)".into(),
            });
        }
        Ok(out)
    }

    pub fn github_token(&self) -> Result<Option<String>, ConfigError> {
        match &self.github.token {
            Some(t) => resolve("github.token", t, false),
            None => Ok(None),
        }
    }

    pub fn audit_key(&self) -> Result<Option<String>, ConfigError> {
        match &self.audit.hmac_key {
            Some(k) => resolve("audit.hmac_key", k, false),
            None => Ok(None),
        }
    }

    /// The shared queue's URL, when one is configured.
    pub fn queue_url(&self) -> Result<Option<String>, ConfigError> {
        let Some(u) = &self.server.queue_url else {
            return Ok(None);
        };
        let url = resolve("server.queue_url", u, true)?;
        match url {
            Some(url) if !crate::queue::is_postgres_url(&url) => Err(ConfigError::Value {
                key: "server.queue_url".into(),
                message: "must be a postgres:// or postgresql:// URL".into(),
            }),
            url => Ok(url),
        }
    }

    pub fn metrics_token(&self) -> Result<Option<String>, ConfigError> {
        match &self.server.metrics_token {
            Some(t) => resolve("server.metrics_token", t, false),
            None => Ok(None),
        }
    }

    pub fn slack_webhook(&self) -> Result<Option<String>, ConfigError> {
        match &self.notify.slack_webhook {
            Some(u) => resolve("notify.slack_webhook", u, true),
            None => Ok(None),
        }
    }

    /// Base URLs by provider family: `[providers.endpoints]`, with
    /// GitHub's and Slack's own keys (GitHub's defaulting to
    /// `github.api_url`, for GitHub Enterprise).
    pub fn endpoints(&self) -> std::collections::BTreeMap<String, String> {
        let mut e = self.providers.endpoints.clone();
        let github = self.providers.github.api_url.clone();
        e.insert(
            "github".into(),
            github.unwrap_or_else(|| self.github.api_url.clone()),
        );
        if let Some(u) = &self.providers.slack.api_url {
            e.insert("slack".into(), u.clone());
        }
        e
    }

    /// AWS IAM acting with `[providers.aws]`'s credentials (by default the
    /// AWS_* environment variables), when both the key id and the secret
    /// are set: the responder's and the CLI's.
    pub fn aws(
        &self,
        http: &crate::http::Http,
    ) -> Result<Option<std::sync::Arc<crate::providers::aws::Aws>>, ConfigError> {
        let a = &self.providers.aws;
        let get = |key: &str, v: &Option<String>| match v {
            Some(v) => resolve(key, v, false),
            None => Ok(None),
        };
        let id = get("providers.aws.access_key_id", &a.access_key_id)?;
        let secret = get("providers.aws.secret_access_key", &a.secret_access_key)?;
        let token = get("providers.aws.session_token", &a.session_token)?;
        Ok(id.zip(secret).map(|(id, secret)| {
            std::sync::Arc::new(crate::providers::aws::Aws::new(
                http.clone(),
                &a.iam_url,
                &a.region,
                &id,
                &secret,
                token,
                a.quarantine.then(|| a.quarantine_policy_arn.clone()),
            ))
        }))
    }

    /// The job queue's database: `<data_dir>/queue.db`, for the server and
    /// for `keyburn jobs` alike.
    pub fn queue_path(&self) -> PathBuf {
        self.server.data_dir.join("queue.db")
    }

    pub fn audit_path(&self) -> PathBuf {
        self.audit
            .path
            .clone()
            .unwrap_or_else(|| self.server.data_dir.join("audit.jsonl"))
    }

    /// How long finished jobs keep their payload and deliveries their id.
    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.server.retention_days.saturating_mul(86_400))
    }

    pub fn backoff(&self) -> crate::queue::Backoff {
        crate::queue::Backoff {
            base: Duration::from_millis(self.worker.backoff_base_ms),
            max: Duration::from_millis(self.worker.backoff_max_ms),
            attempts: self.worker.max_attempts.max(1),
        }
    }

    /// What the policy says for this alert. `public`: GitHub reports the
    /// secret as publicly leaked. Secret types no provider handles can only
    /// be notified, which [`crate::worker`] enforces.
    pub fn decide(&self, secret_type: &str, repository: &str, public: bool) -> Action {
        if public && self.policy.revoke_public_leaks {
            return Action::Revoke;
        }
        self.policy
            .rule
            .iter()
            .find(|r| {
                r.secret_type.as_deref().is_none_or(|t| t == secret_type)
                    && r.repository
                        .as_deref()
                        .is_none_or(|p| glob_match(p.as_bytes(), repository.as_bytes()))
            })
            .map_or(self.policy.default, |r| r.action)
    }
}

/// A config value: `env:NAME`, `file:PATH` or literal. `None` when the
/// variable is unset or empty. A literal is refused for secrets unless
/// `literal_ok`, so that no secret is committed in a config file.
fn resolve(key: &str, value: &str, literal_ok: bool) -> Result<Option<String>, ConfigError> {
    let err = |message: String| ConfigError::Value {
        key: key.into(),
        message,
    };
    if let Some(name) = value.strip_prefix("env:") {
        return Ok(env_nonempty(name));
    }
    if let Some(path) = value.strip_prefix("file:") {
        let v = std::fs::read_to_string(path).map_err(|e| err(format!("{path}: {e}")))?;
        let v = v.trim().to_string();
        return Ok((!v.is_empty()).then_some(v));
    }
    if literal_ok {
        return Ok(Some(value.to_string()));
    }
    Err(err(
        "write secrets as \"env:NAME\" or \"file:PATH\", not in the config file".into(),
    ))
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `*` matches any run of characters (including `/`); everything else
/// matches itself.
fn glob_match(pat: &[u8], s: &[u8]) -> bool {
    match pat.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| glob_match(rest, &s[i..])),
        Some((c, rest)) => s.first() == Some(c) && glob_match(rest, &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_design_example_parses_and_policy_picks_the_first_matching_rule() {
        let cfg: Config = toml::from_str(
            r#"
[server]
listen = "127.0.0.1:9999"
[github]
webhook_secrets = ["env:KB_TEST_UNSET_SECRET"]
api_url = "http://127.0.0.1:1"
[policy]
default = "notify"
[[policy.rule]]
secret_type = "github_personal_access_token"
repository = "acme/sandbox-*"
action = "ignore"
[[policy.rule]]
secret_type = "github_personal_access_token"
action = "revoke"
[[policy.rule]]
repository = "acme/legacy"
action = "ignore"
"#,
        )
        .unwrap();
        assert_eq!(cfg.server.listen, "127.0.0.1:9999");
        let pat = "github_personal_access_token";
        assert_eq!(cfg.decide(pat, "acme/app", false), Action::Revoke);
        assert_eq!(cfg.decide(pat, "acme/sandbox-1", false), Action::Ignore);
        assert_eq!(
            cfg.decide("slack_api_token", "acme/legacy", false),
            Action::Ignore
        );
        assert_eq!(
            cfg.decide("slack_api_token", "acme/app", false),
            Action::Notify
        );
        assert!(
            cfg.webhook_secrets().is_err(),
            "an unset secret is no secret"
        );
    }

    #[test]
    fn public_leaks_can_be_forced_to_revoke() {
        let cfg: Config =
            toml::from_str("[policy]\ndefault = \"ignore\"\nrevoke_public_leaks = true\n").unwrap();
        assert_eq!(cfg.decide("x", "a/b", true), Action::Revoke);
        assert_eq!(cfg.decide("x", "a/b", false), Action::Ignore);
    }

    #[test]
    fn literal_secrets_and_unknown_keys_are_refused() {
        let cfg: Config = toml::from_str("[github]\nwebhook_secrets = [\"hunter2\"]\n").unwrap();
        let err = cfg.webhook_secrets().unwrap_err().to_string();
        assert!(err.contains("env:NAME"), "{err}");
        assert!(toml::from_str::<Config>("[server]\nlisten_on = \"x\"\n").is_err());
    }

    #[test]
    fn globs_match_whole_names() {
        assert!(glob_match(b"acme/*", b"acme/app"));
        assert!(glob_match(b"*/app", b"acme/app"));
        assert!(!glob_match(b"acme/*", b"other/app"));
        assert!(!glob_match(b"acme/app", b"acme/app2"));
    }

    #[test]
    fn check_refuses_what_would_fail_late_and_lists_it_all() {
        let dir = tempfile::tempdir().unwrap();
        let secret = |name: &str, value: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, value).unwrap();
            format!("file:{}", path.display())
        };
        let short = secret("short", "short");
        let cfg: Config = toml::from_str(&format!(
            "[github]\nwebhook_secrets = [{short:?}]\napi_url = \"ftp://example.org\"\n\
             [worker]\nmax_attempts = 0\nhttp_timeout_ms = 0\n\
             [notify]\nwebhook = \"example.org/hook\"\n",
        ))
        .unwrap();
        let text = cfg.check().unwrap_err().to_string();
        for key in [
            "worker.max_attempts",
            "worker.http_timeout_ms",
            "github.webhook_secrets[0]",
            "github.api_url",
            "notify.webhook",
        ] {
            assert!(text.contains(key), "{key} missing from {text}");
        }
        let long = secret("long", "0123456789abcdef");
        let good: Config =
            toml::from_str(&format!("[github]\nwebhook_secrets = [{long:?}]\n")).unwrap();
        let warnings = good.check().unwrap();
        assert!(
            warnings.iter().any(|w| w.contains("no GitHub credentials")),
            "{warnings:?}"
        );

        // A shared queue: a PostgreSQL URL, and the audit key every
        // replica shares.
        let not_pg: Config = toml::from_str(&format!(
            "[server]\nqueue_url = \"mysql://db/keyburn\"\n\
             [github]\nwebhook_secrets = [{long:?}]\n"
        ))
        .unwrap();
        let text = not_pg.check().unwrap_err().to_string();
        assert!(text.contains("server.queue_url"), "{text}");
        let no_key: Config = toml::from_str(&format!(
            "[server]\nqueue_url = \"postgres://db/keyburn\"\n\
             [audit]\nhmac_key = \"env:KB_TEST_UNSET_KEY\"\n\
             [github]\nwebhook_secrets = [{long:?}]\n"
        ))
        .unwrap();
        let text = no_key.check().unwrap_err().to_string();
        assert!(text.contains("audit.hmac_key"), "{text}");
    }
}
