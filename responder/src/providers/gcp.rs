//! Google Cloud service-account keys: the key signs a JWT (RS256) that the
//! OAuth token endpoint exchanges for an access token when the key works
//! (`invalid_grant` when it is disabled or deleted). With that token the
//! key disables itself (`serviceAccountKeys.disable`, reversible), which
//! works when the account may manage its own keys; otherwise the console
//! steps apply.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use super::{BoxFuture, CheckError, Checked, CodeProvider, Revoked, Secret, Validity};
use crate::http::{CallError, Http};

pub struct GcpServiceAccount {
    pub http: Http,
    /// Where tokens are bought (`https://oauth2.googleapis.com`).
    pub oauth_url: String,
    /// IAM (`https://iam.googleapis.com`).
    pub iam_url: String,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// What the token endpoint said of the key.
enum Exchange {
    Token(String),
    Refused(String),
    Other(String),
}

impl GcpServiceAccount {
    /// Sign the assertion and exchange it.
    async fn exchange(&self, secret: &Secret) -> Result<(Exchange, String), CheckError> {
        let email = secret.parts.get("client_email").ok_or_else(|| {
            CheckError::Skipped(
                "needs the key file's client_email (give it with --part client_email=...)".into(),
            )
        })?;
        // The key as it sits in the JSON file: newlines escaped.
        let pem = secret.value.replace("\\n", "\n");
        let key = EncodingKey::from_rsa_pem(pem.as_bytes())
            .map_err(|e| CheckError::Input(format!("not an RSA private key: {e}")))?;
        let aud = format!("{}/token", self.oauth_url.trim_end_matches('/'));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut header = Header::new(Algorithm::RS256);
        header.kid = secret.parts.get("private_key_id").cloned();
        let claims = Claims {
            iss: email,
            scope: "https://www.googleapis.com/auth/cloud-platform",
            aud: &aud,
            iat: now,
            exp: now + 600,
        };
        let jwt = jsonwebtoken::encode(&header, &claims, &key)
            .map_err(|e| CheckError::Input(format!("cannot sign with the key: {e}")))?;
        let call = "Google OAuth token (JWT bearer)";
        let form = [
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", jwt.as_str()),
        ];
        let r = self
            .http
            .exchange(call, true, |c| c.post(&aud).form(&form))
            .await?;
        let status = r.status().as_u16();
        let reply: Option<TokenReply> = r.json().await.ok();
        let why = |t: &TokenReply| {
            format!(
                "{}{}",
                t.error.as_deref().unwrap_or("?"),
                t.error_description
                    .as_deref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            )
        };
        Ok(match (status, reply) {
            (
                200,
                Some(TokenReply {
                    access_token: Some(t),
                    ..
                }),
            ) => (Exchange::Token(t), email.clone()),
            (400 | 401, Some(t)) if t.error.as_deref() == Some("invalid_grant") => {
                (Exchange::Refused(why(&t)), email.clone())
            }
            (s, Some(t)) => (
                Exchange::Other(format!("HTTP {s}: {}", why(&t))),
                email.clone(),
            ),
            (s, None) => (
                Exchange::Other(format!(
                    "HTTP {s} with an answer that is not the token endpoint's"
                )),
                email.clone(),
            ),
        })
    }
}

impl CodeProvider for GcpServiceAccount {
    fn validate<'a>(&'a self, secret: &'a Secret) -> BoxFuture<'a, Result<Checked, CheckError>> {
        Box::pin(async move {
            let (answer, email) = self.exchange(secret).await?;
            Ok(match answer {
                Exchange::Token(_) => Checked {
                    validity: Validity::Active,
                    reason: format!("the key of {email} bought an access token"),
                },
                Exchange::Refused(why) => Checked {
                    validity: Validity::Inactive,
                    reason: format!("the token endpoint refused the key of {email} ({why})"),
                },
                Exchange::Other(why) => Checked {
                    validity: Validity::Unknown,
                    reason: why,
                },
            })
        })
    }

    fn revoke<'a>(&'a self, secret: &'a Secret) -> BoxFuture<'a, Result<Revoked, CheckError>> {
        Box::pin(async move {
            let key_id = secret.parts.get("private_key_id").ok_or_else(|| {
                CheckError::Skipped(
                    "needs the key file's private_key_id (give it with --part private_key_id=...)"
                        .into(),
                )
            })?;
            let (answer, email) = self.exchange(secret).await?;
            let token = match answer {
                Exchange::Token(t) => t,
                Exchange::Refused(why) => {
                    return Ok(Revoked::NotFound(format!("already dead: {why}")))
                }
                Exchange::Other(why) => return Err(CheckError::Answer(why)),
            };
            let url = format!(
                "{}/v1/projects/-/serviceAccounts/{email}/keys/{key_id}:disable",
                self.iam_url.trim_end_matches('/')
            );
            let call = "Google IAM serviceAccountKeys.disable";
            let r = match self
                .http
                .exchange(call, false, |c| {
                    c.post(&url)
                        .bearer_auth(&token)
                        .json(&serde_json::json!({}))
                })
                .await
            {
                Ok(r) => r,
                Err(e) if !e.answered() => {
                    return Ok(Revoked::Unknown(format!(
                        "{e}; not repeated, check the key"
                    )))
                }
                Err(e) => return Err(e.into()),
            };
            Ok(match r.status().as_u16() {
                200 => Revoked::Revoked(format!("IAM disabled key {key_id} of {email}")),
                403 => Revoked::NotAuthorized(format!(
                    "{email} may not disable its own keys (iam.serviceAccountKeys.disable)"
                )),
                404 => Revoked::NotFound(format!("IAM has no key {key_id} for {email}")),
                s => {
                    return Err(CheckError::Call(CallError::Status {
                        call: call.into(),
                        status: s,
                    }))
                }
            })
        })
    }
}
