//! PostgreSQL connection URLs: connect with the leaked user and password,
//! authenticate, disconnect. Never a query. The host comes from the
//! secret, so it passes the SSRF guard first and the connection goes to
//! the address the guard checked.

use super::guard::Guard;
use super::{database_target, BoxFuture, CheckError, Checked, CodeProvider, Secret, Validity};
use crate::http::CallError;

pub struct Postgres {
    pub guard: Guard,
}

/// SQLSTATEs that mean "these credentials do not work": invalid password,
/// invalid authorization specification.
const REFUSED: &[&str] = &["28P01", "28000"];

impl CodeProvider for Postgres {
    fn validate<'a>(&'a self, secret: &'a Secret) -> BoxFuture<'a, Result<Checked, CheckError>> {
        Box::pin(async move {
            let t = database_target(&self.guard, secret, 5432).await?;
            let user = t.user.as_deref().unwrap_or("postgres");
            let host = &t.host;
            let addr = t.addr;
            let mut cfg = tokio_postgres::Config::new();
            cfg.host(host)
                .hostaddr(addr.ip())
                .port(addr.port())
                .user(user)
                .password(&secret.value)
                .dbname(
                    secret
                        .parts
                        .get("database")
                        .filter(|d| !d.is_empty())
                        .map_or(user, String::as_str),
                )
                .connect_timeout(std::time::Duration::from_secs(10))
                .application_name("keyburn-validate");
            let call = "PostgreSQL authenticate";
            match cfg.connect(tokio_postgres::NoTls).await {
                Ok((client, connection)) => {
                    drop(client);
                    // Let the connection close itself (Terminate message).
                    let _ = connection.await;
                    Ok(Checked {
                        validity: Validity::Active,
                        reason: format!("{host} accepted the password of {user}"),
                    })
                }
                Err(e) => match e.code().map(|c| c.code()) {
                    Some(code) if REFUSED.contains(&code) => Ok(Checked {
                        validity: Validity::Inactive,
                        reason: format!("{host} refused the password of {user} (SQLSTATE {code})"),
                    }),
                    // A database that does not exist was reached after
                    // authentication succeeded.
                    Some("3D000") => Ok(Checked {
                        validity: Validity::Active,
                        reason: format!("{host} accepted the password of {user}"),
                    }),
                    Some(code) => Ok(Checked {
                        validity: Validity::Unknown,
                        reason: format!("{host} answered SQLSTATE {code}"),
                    }),
                    None => Err(CheckError::Call(CallError::Transport {
                        call: call.into(),
                        message: e.to_string(),
                    })),
                },
            }
        })
    }
}
