//! How a rule's secrets are checked and revoked at their provider, as
//! data. A rule file may declare provider families (`[provider.NAME]`) with
//! named checks; a rule points at one with `check = "NAME"` inside its own
//! `provider`. The scanner only loads and validates these tables (it never
//! touches the network); the responder's registry runs them.
//!
//! A check is a short flow of HTTP steps on the provider's base URL, each
//! with matchers that map an answer to an outcome, or names a code
//! provider (`code = "aws-iam"`) where signing or a protocol is needed.
//! Where no API revokes a secret, `revoke.manual` says what a person does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A provider family: where its API lives and the checks its rules use.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSpec {
    /// A person's name for it: `Slack`, `GitHub`.
    pub name: String,
    /// The API's base URL; `--endpoint NAME=URL` replaces it. Absent when
    /// every request's host comes from the secret (a database URL, a
    /// webhook URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// Other hosts some steps call (`oauth = "https://cloud.example"`),
    /// named by a step's `host`; `--endpoint NAME.HOST=URL` replaces one.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hosts: BTreeMap<String, String>,
    /// The provider's API reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docs: Option<String>,
    /// Requests per second keyburn allows itself against this provider
    /// by default (`--verify` and `revoke`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// How a person issues a replacement for a leaked secret (the console
    /// page, or the CLI/API call): `keyburn incident`'s rotation steps.
    /// A check's own `revoke.manual` (roll it in the console) comes first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate: Option<String>,
    #[serde(default)]
    pub check: BTreeMap<String, CheckSpec>,
}

/// How one kind of secret is validated and revoked.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    /// A regex whose named groups split the secret into parts for the
    /// templates (`^SG\.(?P<id>[^.]+)\.`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parse: Option<String>,
    /// Parts that must come from elsewhere (the finding's pair, or
    /// `--part NAME=VALUE`): an AWS secret key needs its key id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<String>,
    /// GitHub secret-scanning `secret_type` ids this check handles in the
    /// responder.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub github_types: Vec<String>,
    /// A provider implemented in code (`aws-iam`, `postgres`, ...) instead
    /// of HTTP steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validate: Option<Flow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke: Option<Revoke>,
}

/// A sequence of HTTP requests; the first matcher that fits an answer ends
/// the flow with its outcome.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flow {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docs: Option<String>,
    pub steps: Vec<Step>,
}

/// A revocation: API steps, or what a person must do where there is no
/// API (or both: the steps, and what to do when they cannot be run).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revoke {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docs: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
    /// The steps a person takes to revoke or roll it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual: Option<String>,
    /// Where in the provider's console.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console: Option<String>,
}

/// One HTTP request. Strings are templates: `{secret}`, `{part.NAME}`
/// (parts from `parse`, the finding or `--part`), `{NAME}` (a value an
/// earlier step extracted) and `{base}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub method: String,
    /// Appended to the base URL when it starts with `/`; else a whole URL
    /// (`{secret}` for a webhook URL, `https://{part.host}/...`).
    pub path: String,
    /// The provider's other host (a key of its `hosts`) this step calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// `Authorization: Bearer …`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer: Option<String>,
    /// `Authorization: Basic …` of user and password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic: Option<[String; 2]>,
    /// A form body (`application/x-www-form-urlencoded`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub form: BTreeMap<String, String>,
    /// A JSON body; its strings are templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<serde_json::Value>,
    /// Values taken from a 2xx answer for later steps.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extract: BTreeMap<String, Extract>,
    /// Matchers, tried in order.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matchers: Vec<Matcher>,
}

/// A value from a JSON answer: a dotted path (`result.id`), or the field
/// `take` of the first element of the array at `list` whose fields equal
/// `where` (templates allowed: `{secret}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Extract {
    Path(String),
    Find {
        list: String,
        #[serde(rename = "where")]
        filter: BTreeMap<String, String>,
        take: String,
    },
}

/// When an answer fits (every given condition holds), the flow ends with
/// `outcome`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matcher {
    /// Any of these statuses; empty = any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status: Vec<u16>,
    /// Dotted JSON paths and the value each must have; an array lists the
    /// values allowed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub json: BTreeMap<String, serde_json::Value>,
    /// A substring of the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Dotted JSON paths that must hold a value (not null).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub present: Vec<String>,
    /// Validation: `active`, `inactive`, `unknown`. Revocation: `revoked`,
    /// `accepted`, `not_found`, `not_authorized`, `unknown`.
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

const VALIDATE_OUTCOMES: &[&str] = &["active", "inactive", "unknown"];
const REVOKE_OUTCOMES: &[&str] = &[
    "revoked",
    "accepted",
    "not_found",
    "not_authorized",
    "unknown",
];
const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];

impl ProviderSpec {
    /// Check the tables for what can be checked before any request.
    pub(crate) fn check_spec(&self, family: &str) -> Result<(), String> {
        for (name, c) in &self.check {
            let at = |m: String| format!("provider {family:?} check {name:?}: {m}");
            if let Some(p) = &c.parse {
                crate::rules::compile_regex(p).map_err(|e| at(format!("parse: {e}")))?;
            }
            if let Some(code) = &c.code {
                if c.code_revokes().is_none() {
                    let known: Vec<&str> = CODE_PROVIDERS.iter().map(|c| c.0).collect();
                    return Err(at(format!(
                        "unknown code provider {code:?} ({})",
                        known.join(", ")
                    )));
                }
            }
            if c.code.is_none() && c.validate.is_none() && c.revoke.is_none() {
                return Err(at("has no validate, revoke or code".into()));
            }
            if let Some(v) = &c.validate {
                flow_ok(&v.steps, VALIDATE_OUTCOMES).map_err(at)?;
                if v.steps.is_empty() {
                    return Err(at("validate has no steps".into()));
                }
            }
            if let Some(r) = &c.revoke {
                flow_ok(&r.steps, REVOKE_OUTCOMES).map_err(at)?;
                if r.steps.is_empty() && r.manual.is_none() {
                    return Err(at("revoke has neither steps nor manual".into()));
                }
            }
            let steps = c
                .validate
                .iter()
                .flat_map(|f| &f.steps)
                .chain(c.revoke.iter().flat_map(|r| &r.steps));
            for step in steps {
                if let Some(h) = step.host.as_ref().filter(|h| !self.hosts.contains_key(*h)) {
                    return Err(at(format!("a step names the host {h:?}, not in hosts")));
                }
            }
        }
        Ok(())
    }
}

/// At most this many steps: a lookup or two, then the call.
const MAX_STEPS: usize = 3;

fn flow_ok(steps: &[Step], outcomes: &[&str]) -> Result<(), String> {
    if steps.len() > MAX_STEPS {
        return Err(format!("{} steps; at most {MAX_STEPS}", steps.len()));
    }
    for (i, s) in steps.iter().enumerate() {
        if !METHODS.contains(&s.method.as_str()) {
            return Err(format!("step {}: unknown method {:?}", i + 1, s.method));
        }
        for m in &s.matchers {
            if !outcomes.contains(&m.outcome.as_str()) {
                return Err(format!(
                    "step {}: outcome {:?} is not one of {}",
                    i + 1,
                    m.outcome,
                    outcomes.join(", ")
                ));
            }
        }
        if i + 1 == steps.len() && s.matchers.is_empty() {
            return Err(format!("step {}: the last step needs matchers", i + 1));
        }
    }
    Ok(())
}

/// What a rule's check can do, for `rules list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RevokeKind {
    Api,
    Manual,
    None,
}

impl RevokeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RevokeKind::Api => "api",
            RevokeKind::Manual => "manual",
            RevokeKind::None => "none",
        }
    }
}

/// Code providers (all of them validate) and how they revoke.
pub const CODE_PROVIDERS: &[(&str, RevokeKind)] = &[
    ("aws-iam", RevokeKind::Api),
    ("aws-sts", RevokeKind::Api),
    ("gcp-service-account", RevokeKind::Api),
    ("postgres", RevokeKind::None),
    ("mysql", RevokeKind::None),
    ("redis", RevokeKind::None),
    ("amqp", RevokeKind::None),
    ("mongodb", RevokeKind::None),
];

impl CheckSpec {
    pub fn validates(&self) -> bool {
        self.validate.is_some() || self.code_revokes().is_some()
    }

    /// API when steps or the code provider revoke it (a manual text is
    /// then the fallback), else manual when a person can.
    pub fn revoke_kind(&self) -> RevokeKind {
        let steps = self.revoke.as_ref().is_some_and(|r| !r.steps.is_empty());
        if steps || self.code_revokes() == Some(RevokeKind::Api) {
            RevokeKind::Api
        } else if self.revoke.as_ref().is_some_and(|r| r.manual.is_some()) {
            RevokeKind::Manual
        } else {
            RevokeKind::None
        }
    }

    /// How the check's code provider revokes; `None` without a known one.
    fn code_revokes(&self) -> Option<RevokeKind> {
        let code = self.code.as_deref()?;
        CODE_PROVIDERS
            .iter()
            .find(|(n, _)| *n == code)
            .map(|(_, r)| *r)
    }
}
