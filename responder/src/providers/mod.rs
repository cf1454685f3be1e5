//! Providers: who can say whether a secret is live, and kill it. One
//! registry serves `scan --verify`, `keyburn validate`, `keyburn revoke`
//! and the webhook responder.
//!
//! Most providers are data: the `[provider.NAME]` tables of the rule files
//! declare each check's HTTP steps and matchers (see
//! `keyburn_scanner::rules::CheckSpec`), run by [`flow`]. Code providers
//! exist only where signing or a protocol is needed: AWS IAM (SigV4) and
//! database handshakes. Every request goes through the shared [`Http`]
//! plumbing, a per-provider rate limit, and, for hosts a secret names,
//! the SSRF [`guard`].

mod amqp;
pub mod aws;
mod database;
mod flow;
mod gcp;
pub mod guard;
mod mongodb;
mod mysql;
mod postgres;
mod redis;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyburn_scanner::rules::{CheckSpec, RevokeKind, RuleSet};
use serde::{Deserialize, Serialize};

pub use keyburn_scanner::finding::{Validation, ValidationStatus};

use crate::http::{CallError, Http};
use crate::queue::Failure;
use flow::{Runner, Vars};
use guard::Guard;

/// Whether a secret still works, as the responder's jobs record it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Validity {
    Active,
    Inactive,
    /// The provider's answer did not say (an unexpected status, say).
    Unknown,
}

impl Validity {
    pub fn as_str(self) -> &'static str {
        match self {
            Validity::Active => "active",
            Validity::Inactive => "inactive",
            Validity::Unknown => "unknown",
        }
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A secret and its named parts (an AWS secret key's key id, a Twilio
/// token's account SID, the pieces a check's `parse` regex splits out).
#[derive(Debug, Clone, Default)]
pub struct Secret {
    pub value: String,
    pub parts: BTreeMap<String, String>,
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret {
            value: value.into(),
            parts: BTreeMap::new(),
        }
    }
}

/// Why a check did not end with the provider's word.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Call(#[from] CallError),
    /// Not checked on purpose: an internal host, no credentials configured.
    #[error("{0}")]
    Skipped(String),
    /// The input cannot be checked: a part missing, a secret of the wrong
    /// shape for the rule.
    #[error("{0}")]
    Input(String),
    /// The provider answered something no matcher expects (HTML, garbage,
    /// an unexpected status).
    #[error("{0}")]
    Answer(String),
    /// A mutation got no answer: the provider may or may not have acted.
    #[error("{0}")]
    NoAnswer(CallError),
    /// keyburn's own credential for the provider (the one it revokes
    /// with, not the secret) was refused: expired or invalid. Nothing was
    /// checked or changed; renewing it makes a retry worth it.
    #[error("{0}")]
    Credentials(String),
}

impl CheckError {
    /// Whether a later retry can help (for the responder's queue).
    pub fn failure(&self) -> Failure {
        match self {
            CheckError::Call(e) | CheckError::NoAnswer(e) => e.failure(),
            CheckError::Answer(_) | CheckError::Credentials(_) => Failure::Retryable,
            CheckError::Skipped(_) | CheckError::Input(_) => Failure::Permanent,
        }
    }

    /// Whether the provider surely received and answered the request: a
    /// mutation without an answer may or may not have happened.
    pub fn answered(&self) -> bool {
        match self {
            CheckError::Call(e) => e.answered(),
            CheckError::NoAnswer(_) => false,
            _ => true,
        }
    }
}

/// What the provider said of a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub validity: Validity,
    pub reason: String,
}

/// What a revocation call came to, before any confirmation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    /// The provider says it is done; validating again confirms it.
    Revoked(String),
    /// The provider took it and nothing can confirm it (a 202 for a token
    /// keyburn cannot test).
    Accepted(String),
    /// Already gone.
    NotFound(String),
    /// The secret (or keyburn's admin credential) may not revoke it.
    NotAuthorized(String),
    /// The provider may or may not have acted (no answer to the
    /// mutation): never repeated blind.
    Unknown(String),
    /// No API: what a person does, and where (see [`Checker::manual`]).
    Manual(String),
}

/// A provider implemented in code.
pub trait CodeProvider: Send + Sync {
    fn validate<'a>(&'a self, secret: &'a Secret) -> BoxFuture<'a, Result<Checked, CheckError>>;
    /// Revoke through the provider's API. A database or broker password
    /// has none: whoever runs the server changes it (the rule's manual
    /// steps), so by default there is nothing to call.
    fn revoke<'a>(&'a self, _secret: &'a Secret) -> BoxFuture<'a, Result<Revoked, CheckError>> {
        Box::pin(async {
            Err(CheckError::Skipped(
                "no API changes this password: see the rule's manual steps".into(),
            ))
        })
    }
    /// A containment step after revoking (AWS's quarantine policy).
    fn quarantine<'a>(
        &'a self,
        _secret: &'a Secret,
    ) -> Option<BoxFuture<'a, Result<(), CallError>>> {
        None
    }
}

/// Requests per second against one provider, shared by every check of its
/// family.
pub struct Limiter {
    interval: Duration,
    next: tokio::sync::Mutex<Instant>,
}

impl Limiter {
    pub fn new(per_second: f64) -> Limiter {
        Limiter {
            interval: Duration::from_secs_f64(1.0 / per_second.max(0.001)),
            next: tokio::sync::Mutex::new(Instant::now()),
        }
    }

    /// Wait for this request's slot.
    pub async fn wait(&self) {
        let at = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let at = (*next).max(now);
            *next = at + self.interval;
            at
        };
        tokio::time::sleep_until(at.into()).await;
    }
}

/// How the registry reaches providers.
#[derive(Clone, Default)]
pub struct Options {
    /// Base URLs by provider family, replacing the rule files' (GitHub
    /// Enterprise, self-hosted GitLab, tests). Trusted as given.
    pub endpoints: BTreeMap<String, String>,
    /// Requests per second by provider family, replacing the defaults.
    pub rates: BTreeMap<String, f64>,
    /// Contact hosts named by secrets even when they are internal.
    pub allow_internal: bool,
    /// The AWS IAM provider, when keyburn has credentials to act with.
    pub aws: Option<Arc<aws::Aws>>,
}

/// Every rule's check, ready to run.
pub struct Registry {
    by_rule: HashMap<String, Arc<Checker>>,
    by_github_type: HashMap<String, Arc<Checker>>,
}

impl Registry {
    pub fn new(rules: &RuleSet, http: &Http, opts: &Options) -> Registry {
        let guard = Guard {
            allow_internal: opts.allow_internal,
        };
        let mut limiters: HashMap<&str, Arc<Limiter>> = HashMap::new();
        let mut by_rule = HashMap::new();
        let mut by_github_type = HashMap::new();
        for rule in rules.rules() {
            let Some((family, spec, check)) = rules.check_of(rule) else {
                continue;
            };
            let limiter = opts.rates.get(family).copied().or(spec.rate).map(|rate| {
                limiters
                    .entry(family)
                    .or_insert_with(|| Arc::new(Limiter::new(rate)))
                    .clone()
            });
            let mut bases = BTreeMap::new();
            if let Some(b) = opts.endpoints.get(family).or(spec.base.as_ref()) {
                bases.insert(String::new(), b.clone());
            }
            for (host, url) in &spec.hosts {
                let b = opts
                    .endpoints
                    .get(&format!("{family}.{host}"))
                    .unwrap_or(url);
                bases.insert(host.clone(), b.clone());
            }
            // A code provider's hosts are the provider's: --endpoint
            // replaces them as it does for HTTP steps.
            let base = |host: &str, default: &str| {
                bases
                    .get(host)
                    .cloned()
                    .unwrap_or_else(|| default.to_string())
            };
            let code: Option<Arc<dyn CodeProvider>> = match check.code.as_deref() {
                Some("aws-iam") => opts.aws.clone().map(|a| a as Arc<dyn CodeProvider>),
                Some("aws-sts") => Some(Arc::new(aws::AwsPair {
                    http: http.clone(),
                    sts_url: base("sts", "https://sts.amazonaws.com"),
                    iam: opts.aws.clone(),
                })),
                Some("postgres") => Some(Arc::new(postgres::Postgres { guard })),
                Some("mysql") => Some(Arc::new(mysql::Mysql { guard })),
                Some("gcp-service-account") => Some(Arc::new(gcp::GcpServiceAccount {
                    http: http.clone(),
                    oauth_url: base("", "https://oauth2.googleapis.com"),
                    iam_url: base("iam", "https://iam.googleapis.com"),
                })),
                Some("redis") => Some(Arc::new(redis::Redis { guard })),
                Some("amqp") => Some(Arc::new(amqp::Amqp { guard })),
                Some("mongodb") => Some(Arc::new(mongodb::Mongodb { guard })),
                _ => None,
            };
            let parse = check
                .parse
                .as_deref()
                .and_then(|p| regex::Regex::new(p).ok());
            // AWS keys are revoked with keyburn's own IAM credentials.
            let acts = match check.code.as_deref() {
                Some("aws-iam" | "aws-sts") => opts.aws.is_some(),
                // Its key disables itself (when IAM lets it).
                Some(_) => code.is_some(),
                None => false,
            };
            let checker = Arc::new(Checker {
                acts,
                rule_id: rule.id.clone(),
                family: family.to_string(),
                provider_name: spec.name.clone(),
                bases,
                spec: check.clone(),
                parse,
                code,
                limiter,
                http: http.clone(),
                guard,
            });
            for t in &check.github_types {
                by_github_type
                    .entry(t.clone())
                    .or_insert_with(|| checker.clone());
            }
            by_rule.insert(rule.id.clone(), checker);
        }
        Registry {
            by_rule,
            by_github_type,
        }
    }

    pub fn for_rule(&self, rule_id: &str) -> Option<&Arc<Checker>> {
        self.by_rule.get(rule_id)
    }

    /// The check for a GitHub secret-scanning `secret_type`.
    pub fn for_github_type(&self, secret_type: &str) -> Option<&Arc<Checker>> {
        self.by_github_type.get(secret_type)
    }
}

/// One rule's check.
pub struct Checker {
    pub rule_id: String,
    /// The provider family (`github`), as `--endpoint` names it.
    pub family: String,
    /// A person's name for the provider.
    pub provider_name: String,
    /// Base URLs by host name (`""`: the main one).
    bases: BTreeMap<String, String>,
    spec: CheckSpec,
    parse: Option<regex::Regex>,
    code: Option<Arc<dyn CodeProvider>>,
    /// Whether the code provider can revoke here (has its credentials).
    acts: bool,
    limiter: Option<Arc<Limiter>>,
    http: Http,
    guard: Guard,
}

impl Checker {
    /// Whether the provider's answer to [`Checker::validate`] means
    /// anything (some tokens cannot call any endpoint that would say).
    pub fn validates(&self) -> bool {
        self.spec.validates()
    }

    pub fn revoke_kind(&self) -> RevokeKind {
        self.spec.revoke_kind()
    }

    /// Whether [`Checker::revoke`] calls an API here: HTTP steps, or a code
    /// provider keyburn has credentials for.
    pub fn revokes_by_api(&self) -> bool {
        let steps = self
            .spec
            .revoke
            .as_ref()
            .is_some_and(|r| !r.steps.is_empty());
        steps || (self.acts && self.spec.revoke_kind() == RevokeKind::Api)
    }

    /// The secret's parts: those given, plus what `parse` splits out.
    fn parts(&self, secret: &Secret) -> Result<BTreeMap<String, String>, CheckError> {
        let mut parts = secret.parts.clone();
        if let Some(re) = &self.parse {
            let caps = re.captures(&secret.value).ok_or_else(|| {
                CheckError::Input(format!(
                    "the secret does not have the shape rule {} expects",
                    self.rule_id
                ))
            })?;
            for name in re.capture_names().flatten() {
                if let Some(m) = caps.name(name) {
                    parts
                        .entry(name.to_string())
                        .or_insert_with(|| m.as_str().to_string());
                }
            }
        }
        for p in &self.spec.parts {
            if !parts.contains_key(p) {
                return Err(CheckError::Skipped(format!(
                    "needs its {p} too (a lone half; give it with --part {p}=VALUE)"
                )));
            }
        }
        Ok(parts)
    }

    /// Run a flow of HTTP steps for `secret`; `mutating` for a revocation.
    async fn run(
        &self,
        steps: &[keyburn_scanner::rules::Step],
        secret: &Secret,
        mutating: bool,
    ) -> Result<flow::Ended, CheckError> {
        let parts = self.parts(secret)?;
        let mut vars = Vars {
            secret: &secret.value,
            parts: &parts,
            base: self.bases.get("").map(String::as_str),
            extracted: BTreeMap::new(),
        };
        let call = format!(
            "{} {}",
            self.provider_name,
            if mutating { "revoke" } else { "validate" }
        );
        let runner = Runner {
            http: &self.http,
            guard: &self.guard,
            limiter: self.limiter.as_deref(),
            bases: &self.bases,
            family: &self.family,
            mutating,
            call: &call,
        };
        runner.run(steps, &mut vars).await
    }

    /// Ask the provider whether the secret works. Never changes anything.
    pub async fn validate(&self, secret: &Secret) -> Result<Checked, CheckError> {
        if let Some(flow) = &self.spec.validate {
            let ended = self.run(&flow.steps, secret, false).await?;
            let validity = match ended.outcome.as_str() {
                "active" => Validity::Active,
                "inactive" => Validity::Inactive,
                _ => Validity::Unknown,
            };
            return Ok(Checked {
                validity,
                reason: ended.reason,
            });
        }
        // Every code provider validates.
        match &self.code {
            Some(code) => code.validate(secret).await,
            None => Err(self.unavailable("validates")),
        }
    }

    /// Revoke through the provider's API, or say what a person does.
    /// Mutations are sent once: without an answer the result is
    /// [`Revoked::Unknown`].
    pub async fn revoke(&self, secret: &Secret) -> Result<Revoked, CheckError> {
        let revoke = self.spec.revoke.as_ref();
        if let Some(r) = revoke.filter(|r| !r.steps.is_empty()) {
            let ended = match self.run(&r.steps, secret, true).await {
                Ok(e) => e,
                Err(CheckError::NoAnswer(e)) => {
                    return Ok(Revoked::Unknown(format!(
                        "{e}: the provider may have acted; not repeated, check its state"
                    )))
                }
                Err(e) => return Err(e),
            };
            let reason = ended.reason;
            return Ok(match ended.outcome.as_str() {
                "revoked" => Revoked::Revoked(reason),
                "accepted" => Revoked::Accepted(reason),
                "not_found" => Revoked::NotFound(reason),
                "not_authorized" => Revoked::NotAuthorized(reason),
                _ => Revoked::Unknown(reason),
            });
        }
        if let Some(code) = self.code.as_ref().filter(|_| self.acts) {
            if self.spec.revoke_kind() == RevokeKind::Api {
                return code.revoke(secret).await;
            }
        }
        self.manual()
            .map(Revoked::Manual)
            .ok_or_else(|| self.unavailable("revokes"))
    }

    /// The steps and console URL a person follows to revoke it.
    pub fn manual(&self) -> Option<String> {
        let r = self.spec.revoke.as_ref()?;
        let steps = r.manual.clone()?;
        Some(match &r.console {
            Some(c) => format!("{steps} ({c})"),
            None => steps,
        })
    }

    /// The provider's containment step after a revocation, if it has one.
    pub fn quarantine<'a>(
        &'a self,
        secret: &'a Secret,
    ) -> Option<BoxFuture<'a, Result<(), CallError>>> {
        self.code.as_ref()?.quarantine(secret)
    }

    fn unavailable(&self, what: &str) -> CheckError {
        match self.spec.code.as_deref() {
            Some("aws-iam" | "aws-sts") if !self.acts => CheckError::Skipped(
                "no AWS credentials to act with (providers.aws, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)".into(),
            ),
            _ => CheckError::Skipped(format!(
                "nothing {what} {} secrets",
                self.rule_id
            )),
        }
    }

    /// The validation record for reports.
    pub fn validation(&self, result: &Result<Checked, CheckError>) -> Validation {
        validation(&self.family, result)
    }
}

/// The report's record of a validation.
pub fn validation(provider: &str, result: &Result<Checked, CheckError>) -> Validation {
    let (status, reason) = match result {
        Ok(c) => (
            match c.validity {
                Validity::Active => ValidationStatus::Active,
                Validity::Inactive => ValidationStatus::Inactive,
                Validity::Unknown => ValidationStatus::Unknown,
            },
            c.reason.clone(),
        ),
        Err(CheckError::Skipped(r)) => (ValidationStatus::Skipped, r.clone()),
        Err(CheckError::Answer(r)) => (ValidationStatus::Unknown, r.clone()),
        Err(e) => (ValidationStatus::Error, e.to_string()),
    };
    Validation {
        status,
        reason,
        provider: provider.to_string(),
        checked_at: jiff::Timestamp::now()
            .round(jiff::Unit::Second)
            .map_or_else(|_| String::new(), |t| t.to_string()),
    }
}
