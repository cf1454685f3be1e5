//! The GitHub REST calls the responder needs: fetch a secret-scanning
//! alert (the only place the secret itself is available: webhooks do not
//! carry it), resolve it, and list open alerts for reconciliation.

use reqwest::header::{ACCEPT, AUTHORIZATION, LINK};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;

use crate::http::{CallError, Http};

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
}

#[derive(Debug, Clone, Deserialize)]
pub struct Repository {
    pub full_name: String,
}

#[derive(Clone)]
pub struct GitHub {
    http: Http,
    api: String,
    token: Option<String>,
}

impl GitHub {
    pub fn new(http: Http, api_url: &str, token: Option<String>) -> GitHub {
        GitHub {
            http,
            api: api_url.trim_end_matches('/').to_string(),
            token,
        }
    }

    pub fn api_url(&self) -> &str {
        &self.api
    }

    fn get(&self, c: &reqwest::Client, url: &str) -> reqwest::RequestBuilder {
        self.auth(c.get(url))
    }

    fn auth(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let rb = rb
            .header(ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28");
        match &self.token {
            Some(t) => rb.header(AUTHORIZATION, format!("Bearer {t}")),
            None => rb,
        }
    }

    /// `GET /repos/{repo}/secret-scanning/alerts/{number}`.
    pub async fn alert(&self, repo: &str, number: u64) -> Result<Alert, CallError> {
        let url = format!("{}/repos/{repo}/secret-scanning/alerts/{number}", self.api);
        let call = "GitHub get alert";
        let r = self.http.send(call, &[], |c| self.get(c, &url)).await?;
        r.json().await.map_err(|e| CallError::decode(call, e))
    }

    /// `PATCH` the alert to resolved, resolution `revoked`, with a comment.
    pub async fn resolve(&self, repo: &str, number: u64, comment: &str) -> Result<(), CallError> {
        let url = format!("{}/repos/{repo}/secret-scanning/alerts/{number}", self.api);
        let body = json!({
            "state": "resolved",
            "resolution": "revoked",
            "resolution_comment": comment,
        });
        self.http
            .send("GitHub resolve alert", &[], |c| {
                self.auth(c.patch(&url)).json(&body)
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
            let r = self.http.send(call, &[], |c| self.get(c, &u)).await?;
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
                if let Some(repo) = repo {
                    out.push((repo, a));
                }
            }
        }
        Ok(out)
    }

    /// `POST /credentials/revoke`: GitHub revokes the tokens it issued.
    /// The endpoint takes no authentication; 202 means accepted.
    pub async fn revoke_credentials(&self, tokens: &[&str]) -> Result<(), CallError> {
        let url = format!("{}/credentials/revoke", self.api);
        let body = json!({ "credentials": tokens });
        self.http
            .send("GitHub revoke credentials", &[StatusCode::ACCEPTED], |c| {
                c.post(&url)
                    .header(ACCEPT, "application/vnd.github+json")
                    .json(&body)
            })
            .await?;
        Ok(())
    }
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
    use super::next_link;

    #[test]
    fn link_header_next_page() {
        let h = r#"<https://api.github.com/orgs/a/secret-scanning/alerts?page=2>; rel="next", <https://api.github.com/orgs/a/secret-scanning/alerts?page=5>; rel="last""#;
        assert_eq!(
            next_link(h).as_deref(),
            Some("https://api.github.com/orgs/a/secret-scanning/alerts?page=2")
        );
        assert_eq!(next_link(r#"<https://x/?page=1>; rel="prev""#), None);
    }
}
