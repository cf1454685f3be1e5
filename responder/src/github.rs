//! The GitHub REST calls the responder needs: fetch a secret-scanning
//! alert (the only place the secret itself is available: webhooks do not
//! carry it), resolve it, and list open alerts for reconciliation.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::{ACCEPT, AUTHORIZATION, LINK};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Mutex;

use crate::http::{CallError, Http};

/// How the responder authenticates to the GitHub API.
pub enum Auth {
    None,
    Token(String),
    App(AppAuth),
}

/// A GitHub App: a JWT signed with the app's key buys an installation
/// token (valid one hour), cached until five minutes before it expires.
pub struct AppAuth {
    app_id: u64,
    installation_id: u64,
    key: EncodingKey,
    cached: Mutex<Option<(String, SystemTime)>>,
}

impl AppAuth {
    /// `pem`: the app's RSA private key.
    pub fn new(app_id: u64, installation_id: u64, pem: &[u8]) -> Result<AppAuth, String> {
        let key = EncodingKey::from_rsa_pem(pem).map_err(|e| format!("GitHub App key: {e}"))?;
        Ok(AppAuth {
            app_id,
            installation_id,
            key,
            cached: Mutex::new(None),
        })
    }

    /// The app's JWT: issued a minute in the past (clock drift), valid
    /// nine minutes (GitHub allows ten).
    fn jwt(&self) -> Result<String, CallError> {
        #[derive(Serialize)]
        struct Claims {
            iat: u64,
            exp: u64,
            iss: String,
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = Claims {
            iat: now.saturating_sub(60),
            exp: now + 540,
            iss: self.app_id.to_string(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .map_err(|e| CallError::decode("GitHub App JWT", e))
    }
}

#[derive(Deserialize)]
struct InstallationToken {
    token: String,
    expires_at: String,
}

/// The fields of an alert the responder uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Alert {
    pub number: u64,
    pub state: String,
    #[serde(default)]
    pub resolution: Option<String>,
    pub secret_type: String,
    #[serde(default)]
    pub secret_type_display_name: Option<String>,
    /// The leaked value. Kept in memory only; never logged or stored.
    #[serde(default)]
    pub secret: String,
    #[serde(default)]
    pub html_url: Option<String>,
    #[serde(default)]
    pub publicly_leaked: bool,
    /// Present in organisation listings.
    #[serde(default)]
    pub repository: Option<Repository>,
    /// Who resolved it, when it is resolved.
    #[serde(default)]
    pub resolved_by: Option<User>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub login: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Repository {
    pub full_name: String,
}

pub struct GitHub {
    http: Http,
    api: String,
    auth: Auth,
}

impl GitHub {
    pub fn new(http: Http, api_url: &str, auth: Auth) -> GitHub {
        GitHub {
            http,
            api: api_url.trim_end_matches('/').to_string(),
            auth,
        }
    }

    pub fn api_url(&self) -> &str {
        &self.api
    }

    /// The `Authorization` header value, fetching (or reusing) an
    /// installation token for an app.
    async fn credentials(&self) -> Result<Option<String>, CallError> {
        match &self.auth {
            Auth::None => Ok(None),
            Auth::Token(t) => Ok(Some(format!("Bearer {t}"))),
            Auth::App(app) => {
                let mut cached = app.cached.lock().await;
                let fresh = SystemTime::now() + Duration::from_secs(300);
                if let Some((token, expiry)) = cached.as_ref() {
                    if *expiry > fresh {
                        return Ok(Some(format!("Bearer {token}")));
                    }
                }
                let jwt = app.jwt()?;
                let url = format!(
                    "{}/app/installations/{}/access_tokens",
                    self.api, app.installation_id
                );
                let call = "GitHub App installation token";
                let r = self
                    .http
                    .send(call, &[], |c| {
                        with_headers(c.post(&url), &Some(format!("Bearer {jwt}")))
                    })
                    .await?;
                let t: InstallationToken =
                    r.json().await.map_err(|e| CallError::decode(call, e))?;
                let expiry = parse_rfc3339(&t.expires_at)
                    .unwrap_or_else(|| SystemTime::now() + Duration::from_secs(3000));
                *cached = Some((t.token.clone(), expiry));
                Ok(Some(format!("Bearer {}", t.token)))
            }
        }
    }

    /// Forget a GitHub App's cached installation token (GitHub refused it:
    /// revoked, or the app's key rotated), so the next call buys a new one.
    async fn drop_token(&self) {
        if let Auth::App(app) = &self.auth {
            *app.cached.lock().await = None;
        }
    }

    /// An authenticated request through the shared retrying client. A 401
    /// to a GitHub App drops its installation token and tries once more
    /// with a new one.
    async fn authed(
        &self,
        call: &str,
        build: impl Fn(&reqwest::Client, &Option<String>) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, CallError> {
        let auth = self.credentials().await?;
        match self.http.send(call, &[], |c| build(c, &auth)).await {
            Err(e) if e.status() == Some(401) && matches!(self.auth, Auth::App(_)) => {
                tracing::warn!("{call}: GitHub refused the installation token; renewing it");
                self.drop_token().await;
                let auth = self.credentials().await?;
                self.http.send(call, &[], |c| build(c, &auth)).await
            }
            other => other,
        }
    }

    /// An authenticated `GET`.
    async fn get(&self, call: &str, url: &str) -> Result<reqwest::Response, CallError> {
        self.authed(call, |c, auth| with_headers(c.get(url), auth))
            .await
    }

    /// `GET /repos/{repo}/secret-scanning/alerts/{number}`.
    pub async fn alert(&self, repo: &str, number: u64) -> Result<Alert, CallError> {
        let url = format!("{}/repos/{repo}/secret-scanning/alerts/{number}", self.api);
        let call = "GitHub get alert";
        let r = self.get(call, &url).await?;
        r.json().await.map_err(|e| CallError::decode(call, e))
    }

    /// Where the secret was found: `path:line@commit` of each location
    /// GitHub lists (commits; issues and the like by their type).
    pub async fn locations(&self, repo: &str, number: u64) -> Result<Vec<String>, CallError> {
        #[derive(Deserialize)]
        struct Location {
            #[serde(rename = "type")]
            kind: String,
            #[serde(default)]
            details: serde_json::Map<String, serde_json::Value>,
        }
        let url = format!(
            "{}/repos/{repo}/secret-scanning/alerts/{number}/locations?per_page=100",
            self.api
        );
        let call = "GitHub alert locations";
        let r = self.get(call, &url).await?;
        let list: Vec<Location> = r.json().await.map_err(|e| CallError::decode(call, e))?;
        Ok(list
            .into_iter()
            .map(|l| {
                let d = &l.details;
                match (
                    d.get("path").and_then(|p| p.as_str()),
                    d.get("commit_sha").and_then(|c| c.as_str()),
                ) {
                    (Some(path), Some(sha)) => format!(
                        "{path}:{}@{}",
                        d.get("start_line").and_then(|n| n.as_u64()).unwrap_or(0),
                        &sha[..sha.len().min(12)]
                    ),
                    _ => l.kind,
                }
            })
            .collect())
    }

    /// `PATCH` the alert to resolved, resolution `revoked`, with a comment.
    pub async fn resolve(&self, repo: &str, number: u64, comment: &str) -> Result<(), CallError> {
        let url = format!("{}/repos/{repo}/secret-scanning/alerts/{number}", self.api);
        let body = json!({
            "state": "resolved",
            "resolution": "revoked",
            "resolution_comment": comment,
        });
        self.authed("GitHub resolve alert", |c, auth| {
            with_headers(c.patch(&url), auth).json(&body)
        })
        .await?;
        Ok(())
    }

    /// Every open alert of an organisation (`orgs/{org}`) or a repository
    /// (`repos/{owner}/{name}`), following `Link: rel="next"` pages.
    pub async fn open_alerts(&self, scope: &str) -> Result<Vec<(String, Alert)>, CallError> {
        let call = "GitHub list open alerts";
        let mut url = Some(format!(
            "{}/{scope}/secret-scanning/alerts?state=open&per_page=100",
            self.api
        ));
        let default_repo = scope.strip_prefix("repos/").map(str::to_string);
        let mut out = Vec::new();
        while let Some(u) = url.take() {
            let r = self.get(call, &u).await?;
            url = r
                .headers()
                .get(LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link);
            let page: Vec<Alert> = r.json().await.map_err(|e| CallError::decode(call, e))?;
            for a in page {
                let repo = a
                    .repository
                    .as_ref()
                    .map(|r| r.full_name.clone())
                    .or_else(|| default_repo.clone());
                match repo {
                    Some(repo) if is_repo_name(&repo) => out.push((repo, a)),
                    Some(repo) => {
                        tracing::warn!(%repo, "alert listing names no owner/name repository; skipped")
                    }
                    None => {}
                }
            }
        }
        Ok(out)
    }
}

fn with_headers(rb: reqwest::RequestBuilder, auth: &Option<String>) -> reqwest::RequestBuilder {
    let rb = rb
        .header(ACCEPT, "application/vnd.github+json")
        .header("X-GitHub-Api-Version", "2022-11-28");
    match auth {
        Some(a) => rb.header(AUTHORIZATION, a),
        None => rb,
    }
}

/// `2026-11-22T10:00:00Z` as a time (GitHub's timestamps are UTC).
fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    s.parse::<jiff::Timestamp>().ok().map(SystemTime::from)
}

/// Whether `full_name` is a repository's `owner/name` as GitHub spells
/// them (letters, digits, `-`, `_`, `.`; not `.` or `..`): what a webhook
/// or listing says is placed in API paths, so nothing else may pass.
pub fn is_repo_name(full_name: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.len() <= 100
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    matches!(full_name.split_once('/'), Some((owner, name)) if part(owner) && part(name))
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim() == "rel=\"next\"")
            .then(|| {
                url.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
    })
}

#[cfg(test)]
mod tests {
    use super::{is_repo_name, next_link, parse_rfc3339};
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn github_timestamps_parse() {
        let t = |s| parse_rfc3339(s).map(|t| t.duration_since(UNIX_EPOCH).unwrap());
        assert_eq!(t("1970-01-01T00:00:00Z"), Some(Duration::ZERO));
        assert_eq!(
            t("2023-11-14T22:13:20Z"),
            Some(Duration::from_secs(1_700_000_000))
        );
        assert_eq!(
            t("2000-02-29T00:00:00Z"),
            Some(Duration::from_secs(951_782_400))
        );
        assert_eq!(t("yesterday"), None);
    }

    #[test]
    fn link_header_next_page() {
        let h = r#"<https://api.github.com/orgs/a/secret-scanning/alerts?page=2>; rel="next", <https://api.github.com/orgs/a/secret-scanning/alerts?page=5>; rel="last""#;
        assert_eq!(
            next_link(h).as_deref(),
            Some("https://api.github.com/orgs/a/secret-scanning/alerts?page=2")
        );
        assert_eq!(next_link(r#"<https://x/?page=1>; rel="prev""#), None);
    }

    #[test]
    fn repository_names_are_owner_slash_name_and_nothing_else() {
        assert!(is_repo_name("acme/app"));
        assert!(is_repo_name("Acme-Corp/my_app.js"));
        for bad in [
            "acme/app/../../../user?x=",
            "acme",
            "/app",
            "acme/",
            "acme/..",
            "../app",
            "acme/app?x=1",
            "acme/a b",
            "acme/app#1",
        ] {
            assert!(!is_repo_name(bad), "{bad}");
        }
    }
}
