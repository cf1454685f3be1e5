//! AWS access keys, through IAM with the responder's own credentials:
//! `GetAccessKeyLastUsed` finds the key's user, `UpdateAccessKey` makes the
//! key inactive, `ListAccessKeys` confirms its status, and optionally
//! `AttachUserPolicy` attaches the quarantine policy AWS itself attaches to
//! exposed keys (a step of its own, so that a failure there is retried
//! rather than skipped because the key already reads inactive). Requests use the IAM query protocol, signed with SigV4
//! (the `aws-sigv4` crate).

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use reqwest::StatusCode;

use super::{BoxFuture, CheckError, Checked, CodeProvider, Revoked, Secret, Validity};
use crate::http::{CallError, Http};

/// AWS's own policy for compromised keys.
pub const QUARANTINE_POLICY: &str = "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV3";

pub struct Aws {
    http: Http,
    url: String,
    region: String,
    /// The signing name and API version: IAM's, or STS's.
    service: &'static str,
    version: &'static str,
    credentials: Credentials,
    /// Attach this policy to the key's user after deactivating the key.
    quarantine: Option<String>,
}

/// The answer of one IAM call: HTTP status and XML body.
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    /// The text of the first `<tag>` element.
    pub fn text(&self, tag: &str) -> Option<&str> {
        xml_text(&self.body, tag)
    }

    /// The AWS error code (`<Code>`), for a failed call.
    pub fn code(&self) -> Option<&str> {
        (self.status >= 400).then(|| self.text("Code")).flatten()
    }
}

impl Aws {
    pub fn new(
        http: Http,
        iam_url: &str,
        region: &str,
        access_key_id: &str,
        secret_access_key: &str,
        session_token: Option<String>,
        quarantine: Option<String>,
    ) -> Aws {
        Aws {
            http,
            url: iam_url.trim_end_matches('/').to_string() + "/",
            region: region.to_string(),
            service: "iam",
            version: "2010-05-08",
            credentials: Credentials::new(
                access_key_id,
                secret_access_key,
                session_token,
                None,
                "keyburn-config",
            ),
            quarantine,
        }
    }

    /// STS at `sts_url`, signed with the given key pair (a leaked one, to
    /// ask STS whose it is).
    pub fn sts(http: Http, sts_url: &str, access_key_id: &str, secret_access_key: &str) -> Aws {
        Aws {
            service: "sts",
            version: "2011-06-15",
            ..Aws::new(
                http,
                sts_url,
                "us-east-1",
                access_key_id,
                secret_access_key,
                None,
                None,
            )
        }
    }

    /// One query-protocol call (IAM or STS). 4xx answers are returned (they carry
    /// the AWS error code); 5xx and transport errors are errors.
    pub async fn call(&self, action: &str, params: &[(&str, &str)]) -> Result<Reply, CallError> {
        let body = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("Action", action);
            form.append_pair("Version", self.version);
            for (k, v) in params {
                form.append_pair(k, v);
            }
            form.finish()
        };
        let call = format!("AWS {} {action}", self.service.to_uppercase());
        let signed = self
            .sign(&body)
            .map_err(|e| CallError::decode(&call, format!("cannot sign: {e}")))?;
        let client_errors: Vec<StatusCode> = (400..500)
            .filter_map(|s| StatusCode::from_u16(s).ok())
            .collect();
        let r = self
            .http
            .send(&call, &client_errors, |c| {
                let mut rb = c
                    .post(&self.url)
                    .header(
                        "content-type",
                        "application/x-www-form-urlencoded; charset=utf-8",
                    )
                    .body(body.clone());
                for (k, v) in &signed {
                    rb = rb.header(k.as_str(), v.as_str());
                }
                rb
            })
            .await?;
        let status = r.status().as_u16();
        let body = r.text().await.map_err(|e| CallError::decode(&call, e))?;
        Ok(Reply { status, body })
    }

    /// The SigV4 headers for a POST of `body` to the IAM endpoint.
    fn sign(&self, body: &str) -> Result<Vec<(String, String)>, String> {
        let identity = self.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(self.service)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let headers = [(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )];
        let req = SignableRequest::new(
            "POST",
            self.url.as_str(),
            headers.into_iter(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .map_err(|e| e.to_string())?;
        let (instructions, _) = sign(req, &params).map_err(|e| e.to_string())?.into_parts();
        Ok(instructions
            .headers()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    /// The user owning `key_id`, or `None` when this account has no such
    /// key (a key of another account is denied, a deleted one unknown).
    async fn owner(&self, key_id: &str) -> Result<Option<String>, CheckError> {
        let r = self
            .call("GetAccessKeyLastUsed", &[("AccessKeyId", key_id)])
            .await?;
        match r.code() {
            None => Ok(r.text("UserName").map(str::to_string)),
            Some("NoSuchEntity" | "AccessDenied") => Ok(None),
            Some(code) if CALLER_REFUSED.contains(&code) => Err(CheckError::Credentials(format!(
                "AWS refused keyburn's own credentials ({code}): renew them (the AWS_* \
                 environment or [providers.aws]); nothing was checked or changed"
            ))),
            Some(code) => Err(CallError::refused("AWS IAM GetAccessKeyLastUsed", code).into()),
        }
    }

    fn ok(r: &Reply, action: &str) -> Result<(), CallError> {
        match r.code() {
            None => Ok(()),
            // Throttling is worth another try; any other code says no.
            Some(code @ ("Throttling" | "ServiceFailure")) => {
                Err(CallError::decode(&format!("AWS IAM {action}"), code))
            }
            Some(code) => Err(CallError::refused(&format!("AWS IAM {action}"), code)),
        }
    }

    /// The user owning `key_id`; refused when this account has none.
    async fn require_owner(&self, key_id: &str) -> Result<String, CheckError> {
        self.owner(key_id).await?.ok_or_else(|| {
            CallError::refused(
                "AWS IAM GetAccessKeyLastUsed",
                "the key does not belong to this account",
            )
            .into()
        })
    }
}

impl CodeProvider for Aws {
    /// Reads the key's status in its account's IAM (keyburn's own
    /// credentials, not the leaked key).
    fn validate<'a>(&'a self, secret: &'a Secret) -> BoxFuture<'a, Result<Checked, CheckError>> {
        Box::pin(async move {
            let key_id = secret.value.as_str();
            let Some(user) = self.owner(key_id).await? else {
                return Ok(Checked {
                    validity: Validity::Unknown,
                    reason: "not a key of the account keyburn acts in".into(),
                });
            };
            let r = self.call("ListAccessKeys", &[("UserName", &user)]).await?;
            Aws::ok(&r, "ListAccessKeys")?;
            let status = r
                .body
                .split("<member>")
                .skip(1)
                .find(|m| xml_text(m, "AccessKeyId") == Some(key_id))
                .and_then(|m| xml_text(m, "Status"));
            Ok(match status {
                Some("Active") => Checked {
                    validity: Validity::Active,
                    reason: "IAM lists the key as Active".into(),
                },
                // Inactive, or deleted since: dead either way.
                s => Checked {
                    validity: Validity::Inactive,
                    reason: format!("IAM lists the key as {}", s.unwrap_or("deleted")),
                },
            })
        })
    }

    fn revoke<'a>(&'a self, secret: &'a Secret) -> BoxFuture<'a, Result<Revoked, CheckError>> {
        Box::pin(async move {
            let key_id = secret.value.as_str();
            let user = match self.require_owner(key_id).await {
                Ok(u) => u,
                Err(CheckError::Call(e @ CallError::Refused { .. })) => {
                    return Ok(Revoked::NotAuthorized(e.to_string()))
                }
                Err(e) => return Err(e),
            };
            let r = self
                .call(
                    "UpdateAccessKey",
                    &[
                        ("UserName", &user),
                        ("AccessKeyId", key_id),
                        ("Status", "Inactive"),
                    ],
                )
                .await;
            let r = match r {
                Ok(r) => r,
                // No answer: IAM may have acted. The confirm step looks.
                Err(e) if !e.answered() => {
                    return Ok(Revoked::Unknown(format!("{e}; not repeated")))
                }
                Err(e) => return Err(e.into()),
            };
            match Aws::ok(&r, "UpdateAccessKey") {
                Ok(()) => Ok(Revoked::Revoked("UpdateAccessKey Status=Inactive".into())),
                Err(CallError::Refused { message, .. }) if message == "NoSuchEntity" => {
                    Ok(Revoked::NotFound("IAM has no such key".into()))
                }
                Err(e @ CallError::Refused { .. }) => Ok(Revoked::NotAuthorized(e.to_string())),
                Err(e) => Err(e.into()),
            }
        })
    }

    /// Attaching a managed policy that is already attached succeeds, so a
    /// retried quarantine step is harmless.
    fn quarantine<'a>(
        &'a self,
        secret: &'a Secret,
    ) -> Option<BoxFuture<'a, Result<(), CallError>>> {
        let policy = self.quarantine.as_ref()?;
        Some(Box::pin(async move {
            let user = self
                .require_owner(&secret.value)
                .await
                .map_err(|e| match e {
                    CheckError::Call(c) => c,
                    other => CallError::refused("AWS IAM GetAccessKeyLastUsed", other),
                })?;
            let r = self
                .call(
                    "AttachUserPolicy",
                    &[("UserName", &user), ("PolicyArn", policy)],
                )
                .await?;
            Aws::ok(&r, "AttachUserPolicy")
        }))
    }
}

/// A secret access key with its key id: STS says whether the pair works
/// (`GetCallerIdentity` needs no permission); IAM, with keyburn's own
/// credentials when it has them, deactivates the key by its id.
pub struct AwsPair {
    pub http: Http,
    pub sts_url: String,
    pub iam: Option<std::sync::Arc<Aws>>,
}

/// Error codes that refuse the caller's own credentials: for STS called
/// with a leaked pair, the pair does not work; for IAM called with
/// keyburn's credentials, those need renewing.
const CALLER_REFUSED: &[&str] = &[
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
];

impl CodeProvider for AwsPair {
    fn validate<'a>(&'a self, secret: &'a Secret) -> BoxFuture<'a, Result<Checked, CheckError>> {
        Box::pin(async move {
            let id = secret.parts.get("access_key_id").ok_or_else(|| {
                CheckError::Skipped(
                    "needs its access key id (give it with --part access_key_id=AKIA...)".into(),
                )
            })?;
            let sts = Aws::sts(self.http.clone(), &self.sts_url, id, &secret.value);
            let r = sts.call("GetCallerIdentity", &[]).await?;
            Ok(match (r.status, r.code()) {
                (200, _) => Checked {
                    validity: Validity::Active,
                    reason: format!(
                        "STS GetCallerIdentity: the key of {}",
                        r.text("Arn").unwrap_or("an unnamed principal")
                    ),
                },
                (_, Some(code)) if CALLER_REFUSED.contains(&code) => Checked {
                    validity: Validity::Inactive,
                    reason: format!("STS GetCallerIdentity: {code}"),
                },
                (status, code) => Checked {
                    validity: Validity::Unknown,
                    reason: format!(
                        "STS GetCallerIdentity answered HTTP {status} {}",
                        code.unwrap_or("")
                    ),
                },
            })
        })
    }

    fn revoke<'a>(&'a self, secret: &'a Secret) -> BoxFuture<'a, Result<Revoked, CheckError>> {
        Box::pin(async move {
            let (Some(iam), Some(id)) = (&self.iam, secret.parts.get("access_key_id")) else {
                return Err(CheckError::Skipped(
                    "no AWS credentials to act with, or no access key id".into(),
                ));
            };
            iam.revoke(&Secret::new(id.clone())).await
        })
    }
}

/// The text of the first `<tag>...</tag>` in `xml` (IAM answers are small
/// and flat enough for this).
fn xml_text<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))?;
    Some(xml[start..start + end].trim())
}

#[cfg(test)]
mod tests {
    use super::xml_text;

    #[test]
    fn reads_flat_xml() {
        let x = "<R><User><UserName>leaky</UserName></User><Code> NoSuchEntity </Code></R>";
        assert_eq!(xml_text(x, "UserName"), Some("leaky"));
        assert_eq!(xml_text(x, "Code"), Some("NoSuchEntity"));
        assert_eq!(xml_text(x, "Status"), None);
    }
}
