//! Redis URLs: connect with the leaked user and password and let the
//! client authenticate (AUTH during the handshake), then disconnect. No
//! command beyond the handshake. The host passes the SSRF guard first
//! and the connection goes to the address checked.

use std::time::Duration;

use super::guard::Guard;
use super::{database_target, BoxFuture, CheckError, Checked, CodeProvider, Secret, Validity};
use crate::http::CallError;

pub struct Redis {
    pub guard: Guard,
}

impl CodeProvider for Redis {
    fn validate<'a>(&'a self, secret: &'a Secret) -> BoxFuture<'a, Result<Checked, CheckError>> {
        Box::pin(async move {
            if secret.parts.get("scheme").is_some_and(|s| s == "rediss") {
                return Err(CheckError::Skipped(
                    "a TLS (rediss://) server: keyburn validates Redis over plain TCP only".into(),
                ));
            }
            let t = database_target(&self.guard, secret, 6379).await?;
            let username = t.user.filter(|u| !u.is_empty());
            let info = redis::ConnectionInfo {
                addr: redis::ConnectionAddr::Tcp(t.addr.ip().to_string(), t.addr.port()),
                redis: redis::RedisConnectionInfo {
                    db: 0,
                    username: username.clone(),
                    password: Some(secret.value.clone()),
                    ..Default::default()
                },
            };
            let client = redis::Client::open(info).map_err(|e| CheckError::Input(e.to_string()))?;
            let who = username.as_deref().unwrap_or("default");
            let host = &t.host;
            let connect = client.get_multiplexed_async_connection();
            match tokio::time::timeout(Duration::from_secs(10), connect).await {
                Err(_) => Err(CheckError::Call(CallError::Timeout {
                    call: "Redis authenticate".into(),
                })),
                Ok(Ok(conn)) => {
                    drop(conn);
                    Ok(Checked {
                        validity: Validity::Active,
                        reason: format!("{host} accepted the password of {who}"),
                    })
                }
                Ok(Err(e)) => {
                    let text = e.to_string();
                    if e.kind() == redis::ErrorKind::AuthenticationFailed
                        || text.contains("WRONGPASS")
                        || text.contains("invalid password")
                    {
                        Ok(Checked {
                            validity: Validity::Inactive,
                            reason: format!("{host} refused the password of {who}"),
                        })
                    } else if text.contains("without any password configured") {
                        Ok(Checked {
                            validity: Validity::Unknown,
                            reason: format!("{host} asks for no password at all"),
                        })
                    } else {
                        Err(CheckError::Call(CallError::Transport {
                            call: "Redis authenticate".into(),
                            message: text,
                        }))
                    }
                }
            }
        })
    }
}
