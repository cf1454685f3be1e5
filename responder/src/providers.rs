//! Providers: who can say whether a secret is live, and kill it. One
//! trait, one implementation per provider, all on the shared [`Http`]
//! plumbing with configurable base URLs.

use std::future::Future;
use std::pin::Pin;

use reqwest::header::AUTHORIZATION;
use serde::{Deserialize, Serialize};

use crate::github::GitHub;
use crate::http::{CallError, Http};

/// Whether a secret still works.
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

pub trait Provider: Send + Sync {
    /// Short name for logs, audit and metrics: `github`, `slack`, ...
    fn name(&self) -> &'static str;
    /// Whether this provider handles GitHub's `secret_type`.
    fn handles(&self, secret_type: &str) -> bool;
    fn validate<'a>(&'a self, secret: &'a str) -> BoxFuture<'a, Result<Validity, CallError>>;
    /// Revoke; `Ok` means the provider accepted the revocation (the caller
    /// validates again to see that it took).
    fn revoke<'a>(&'a self, secret: &'a str) -> BoxFuture<'a, Result<(), CallError>>;
    /// Whether [`Provider::validate`] can be believed for this type: when
    /// it cannot, the secret is revoked whatever it says and the
    /// revocation is not confirmed by it.
    fn validation_trusted(&self, _secret_type: &str) -> bool {
        true
    }
    /// A containment step after revoking (AWS's quarantine policy), when
    /// the provider has one configured.
    fn quarantine<'a>(&'a self, _secret: &'a str) -> Option<BoxFuture<'a, Result<(), CallError>>> {
        None
    }
}

/// GitHub tokens: validated with `GET /user`, revoked through the
/// credential revocation API.
pub struct GitHubTokens {
    http: Http,
    github: GitHub,
}

impl GitHubTokens {
    pub fn new(http: Http, api_url: &str) -> GitHubTokens {
        GitHubTokens {
            github: GitHub::new(http.clone(), api_url, crate::github::Auth::None),
            http,
        }
    }
}

/// The secret types GitHub's revocation API accepts.
const GITHUB_TYPES: &[&str] = &[
    "github_personal_access_token",
    "github_oauth_access_token",
    "github_app_installation_access_token",
    "github_refresh_token",
];

impl Provider for GitHubTokens {
    fn name(&self) -> &'static str {
        "github"
    }

    fn handles(&self, secret_type: &str) -> bool {
        GITHUB_TYPES.contains(&secret_type)
    }

    /// Installation tokens (`ghs_`) cannot call `GET /user` (403 whatever
    /// their state) and refresh tokens (`ghr_`) are not API credentials
    /// (401 whatever their state): neither answer says anything.
    fn validation_trusted(&self, secret_type: &str) -> bool {
        !matches!(
            secret_type,
            "github_app_installation_access_token" | "github_refresh_token"
        )
    }

    fn validate<'a>(&'a self, secret: &'a str) -> BoxFuture<'a, Result<Validity, CallError>> {
        Box::pin(async move {
            let url = format!("{}/user", self.github.api_url());
            let r = self
                .http
                .send(
                    "GitHub validate token",
                    &[
                        reqwest::StatusCode::UNAUTHORIZED,
                        reqwest::StatusCode::FORBIDDEN,
                    ],
                    |c| {
                        c.get(&url)
                            .header(AUTHORIZATION, format!("Bearer {secret}"))
                    },
                )
                .await?;
            Ok(match r.status().as_u16() {
                200 => Validity::Active,
                401 => Validity::Inactive,
                _ => Validity::Unknown,
            })
        })
    }

    fn revoke<'a>(&'a self, secret: &'a str) -> BoxFuture<'a, Result<(), CallError>> {
        Box::pin(async move { self.github.revoke_credentials(&[secret]).await })
    }
}

/// Slack tokens (`xoxb-`, `xoxp-`, ...): `auth.test` and `auth.revoke`.
pub struct Slack {
    http: Http,
    api: String,
}

impl Slack {
    pub fn new(http: Http, api_url: &str) -> Slack {
        Slack {
            http,
            api: api_url.trim_end_matches('/').to_string(),
        }
    }

    async fn call(&self, method: &str, secret: &str) -> Result<SlackReply, CallError> {
        let url = format!("{}/{method}", self.api);
        let call = format!("Slack {method}");
        let build = |c: &reqwest::Client| {
            c.post(&url)
                .header(AUTHORIZATION, format!("Bearer {secret}"))
        };
        let r = if method == "auth.revoke" {
            self.http.mutate(&call, &[], build).await?
        } else {
            self.http.send(&call, &[], build).await?
        };
        r.json().await.map_err(|e| CallError::decode(&call, e))
    }
}

#[derive(Deserialize)]
struct SlackReply {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    revoked: Option<bool>,
}

/// Slack's errors that mean the token is dead.
const SLACK_DEAD: &[&str] = &[
    "invalid_auth",
    "token_revoked",
    "token_expired",
    "account_inactive",
    "not_authed",
];

impl Provider for Slack {
    fn name(&self) -> &'static str {
        "slack"
    }

    fn handles(&self, secret_type: &str) -> bool {
        matches!(
            secret_type,
            "slack_api_token" | "slack_bot_token" | "slack_user_token"
        )
    }

    fn validate<'a>(&'a self, secret: &'a str) -> BoxFuture<'a, Result<Validity, CallError>> {
        Box::pin(async move {
            let reply = self.call("auth.test", secret).await?;
            Ok(match (reply.ok, reply.error.as_deref()) {
                (true, _) => Validity::Active,
                (false, Some(e)) if SLACK_DEAD.contains(&e) => Validity::Inactive,
                _ => Validity::Unknown,
            })
        })
    }

    fn revoke<'a>(&'a self, secret: &'a str) -> BoxFuture<'a, Result<(), CallError>> {
        Box::pin(async move {
            let reply = self.call("auth.revoke", secret).await?;
            match (reply.ok, reply.revoked, reply.error) {
                (true, Some(false), _) => {
                    Err(CallError::decode("Slack auth.revoke", "revoked: false"))
                }
                (true, _, _) => Ok(()),
                (false, _, Some(e)) if SLACK_DEAD.contains(&e.as_str()) => Ok(()),
                (false, _, e) => Err(CallError::decode(
                    "Slack auth.revoke",
                    e.unwrap_or_else(|| "ok: false".into()),
                )),
            }
        })
    }
}
