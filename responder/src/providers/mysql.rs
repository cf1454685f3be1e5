//! MySQL and MariaDB URLs: connect with the leaked user and password (the
//! server authenticates during the handshake), then disconnect. No query.
//! The host passes the SSRF guard first and the connection goes to the
//! address checked.

use std::time::Duration;

use super::guard::Guard;
use super::{database_target, BoxFuture, CheckError, Checked, CodeProvider, Secret, Validity};
use crate::http::CallError;

pub struct Mysql {
    pub guard: Guard,
}

/// ER_ACCESS_DENIED_ERROR: wrong user or password.
const ACCESS_DENIED: u16 = 1045;
/// Authenticated, but refused the database or host: the password works.
const AUTHENTICATED: &[u16] = &[1044, 1049];

impl CodeProvider for Mysql {
    fn validate<'a>(&'a self, secret: &'a Secret) -> BoxFuture<'a, Result<Checked, CheckError>> {
        Box::pin(async move {
            let t = database_target(&self.guard, secret, 3306).await?;
            let user = t.user.unwrap_or_else(|| "root".into());
            let opts = mysql_async::OptsBuilder::default()
                .ip_or_hostname(t.addr.ip().to_string())
                .tcp_port(t.addr.port())
                .user(Some(user.clone()))
                .pass(Some(secret.value.clone()))
                .prefer_socket(false);
            let host = &t.host;
            let connect = mysql_async::Conn::new(opts);
            let call = "MySQL authenticate";
            match tokio::time::timeout(Duration::from_secs(10), connect).await {
                Err(_) => Err(CheckError::Call(CallError::Timeout { call: call.into() })),
                Ok(Ok(conn)) => {
                    let _ = conn.disconnect().await;
                    Ok(Checked {
                        validity: Validity::Active,
                        reason: format!("{host} accepted the password of {user}"),
                    })
                }
                Ok(Err(mysql_async::Error::Server(e))) if e.code == ACCESS_DENIED => Ok(Checked {
                    validity: Validity::Inactive,
                    reason: format!("{host} refused the password of {user} (error {})", e.code),
                }),
                Ok(Err(mysql_async::Error::Server(e))) if AUTHENTICATED.contains(&e.code) => {
                    Ok(Checked {
                        validity: Validity::Active,
                        reason: format!("{host} accepted the password of {user}"),
                    })
                }
                Ok(Err(mysql_async::Error::Server(e))) => Ok(Checked {
                    validity: Validity::Unknown,
                    reason: format!("{host} answered error {}", e.code),
                }),
                Ok(Err(e)) => Err(CheckError::Call(CallError::Transport {
                    call: call.into(),
                    message: e.to_string(),
                })),
            }
        })
    }
}
