//! Telling the team: a Slack incoming webhook and a generic JSON webhook.
//! A notification carries the alert link, secret type, repository, what
//! was done and the secret masked as every report masks it
//! ([`keyburn_scanner::finding::mask`]).

use serde::Serialize;
use serde_json::json;

use crate::http::{CallError, Http};

#[derive(Debug, Clone, Serialize)]
pub struct Notice {
    pub repository: String,
    pub alert_number: u64,
    pub alert_url: Option<String>,
    pub secret_type: String,
    /// `revoked`, `notified`, `dry-run`, `dead-letter`, ...
    pub outcome: String,
    /// One sentence on what was done.
    pub summary: String,
    pub secret_masked: String,
    /// `path:line@commit` of the first places the secret was found.
    pub locations: Vec<String>,
    /// The incident (`keyburn incident`) that acted, when no alert did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
}

pub struct Notifier {
    http: Http,
    slack: Option<String>,
    webhook: Option<String>,
}

impl Notifier {
    pub fn new(http: Http, slack: Option<String>, webhook: Option<String>) -> Notifier {
        Notifier {
            http,
            slack,
            webhook,
        }
    }

    /// Send to every configured channel; the first failure is returned
    /// (the step is retried, so a channel may see a notice twice, never
    /// none).
    pub async fn send(&self, n: &Notice) -> Result<(), CallError> {
        if let Some(url) = &self.slack {
            let link = match (&n.incident, n.alert_url.as_deref()) {
                (Some(id), _) => format!("incident `{id}`"),
                (None, Some(u)) => format!("<{u}|alert #{}>", n.alert_number),
                (None, None) => format!("alert #{}", n.alert_number),
            };
            let mut text = format!(
                ":rotating_light: {} in `{}` ({link}), secret `{}`: {}",
                n.secret_type, n.repository, n.secret_masked, n.summary
            );
            if let Some(first) = n.locations.first() {
                text.push_str(&format!(" (found at `{first}`)"));
            }
            let body = json!({ "text": text });
            self.http
                .mutate("Slack notification", &[], |c| c.post(url).json(&body))
                .await?;
        }
        if let Some(url) = &self.webhook {
            self.http
                .mutate("webhook notification", &[], |c| c.post(url).json(n))
                .await?;
        }
        Ok(())
    }
}
