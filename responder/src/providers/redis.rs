//! Redis URLs: connect with the leaked user and password and let the
//! client authenticate (AUTH during the handshake), then disconnect. No
//! command beyond the handshake. The host passes the SSRF guard first
//! and the connection goes to the address checked.

use super::database::{broken, target, within_budget, Login};
use super::guard::Guard;
use super::{BoxFuture, CheckError, Checked, CodeProvider, Secret};

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
            let t = target(&self.guard, secret, 6379).await?;
            let username = t.user.clone().filter(|u| !u.is_empty());
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
            let call = "Redis authenticate";
            let connect = client.get_multiplexed_async_connection();
            let login = match within_budget(call, connect).await? {
                Ok(conn) => {
                    drop(conn);
                    Login::Accepted(String::new())
                }
                Err(e) => {
                    let text = e.to_string();
                    if e.kind() == redis::ErrorKind::AuthenticationFailed
                        || text.contains("WRONGPASS")
                        || text.contains("invalid password")
                    {
                        Login::Refused(String::new())
                    } else if text.contains("without any password configured") {
                        Login::Other("that it asks for no password at all".into())
                    } else {
                        return Err(broken(call, text));
                    }
                }
            };
            Ok(t.checked(username.as_deref().unwrap_or("default"), login))
        })
    }
}
