//! PostgreSQL connection URLs: connect with the leaked user and password,
//! authenticate, disconnect. Never a query. The host comes from the
//! secret, so it passes the SSRF guard first and the connection goes to
//! the address the guard checked. TLS when the server offers it (libpq's
//! `sslmode=prefer`): a server that only takes encrypted logins is
//! answered, not mistaken for a refusal.

use super::database::{broken, target, tls_config, within_budget, Login};
use super::guard::Guard;
use super::{BoxFuture, CheckError, Checked, CodeProvider, Secret};

pub struct Postgres {
    pub guard: Guard,
}

/// The SQLSTATE that means "these credentials do not work". A server that
/// will not let keyburn in from where it is (`pg_hba.conf` has no entry
/// for it: 28000) says nothing of the password.
const REFUSED: &[&str] = &["28P01"];

impl CodeProvider for Postgres {
    fn validate<'a>(&'a self, secret: &'a Secret) -> BoxFuture<'a, Result<Checked, CheckError>> {
        Box::pin(async move {
            let t = target(&self.guard, secret, 5432).await?;
            let user = t.user.as_deref().unwrap_or("postgres");
            let mut cfg = tokio_postgres::Config::new();
            cfg.host(&t.host)
                .hostaddr(t.addr.ip())
                .port(t.addr.port())
                .user(user)
                .password(&secret.value)
                .dbname(
                    secret
                        .parts
                        .get("database")
                        .filter(|d| !d.is_empty())
                        .map_or(user, String::as_str),
                )
                .application_name("keyburn-validate")
                .ssl_mode(tokio_postgres::config::SslMode::Prefer);
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new((*tls_config()).clone());
            let call = "PostgreSQL authenticate";
            let login = match within_budget(call, cfg.connect(tls)).await? {
                Ok((client, connection)) => {
                    drop(client);
                    // Let the connection close itself (Terminate message).
                    let _ = connection.await;
                    Login::Accepted(String::new())
                }
                Err(e) => match e.code().map(|c| c.code()) {
                    Some(code) if REFUSED.contains(&code) => {
                        Login::Refused(format!("SQLSTATE {code}"))
                    }
                    // A database that does not exist was reached after
                    // authentication succeeded.
                    Some("3D000") => Login::Accepted(String::new()),
                    Some(code) => Login::Other(format!("SQLSTATE {code}")),
                    None => return Err(broken(call, e)),
                },
            };
            Ok(t.checked(user, login))
        })
    }
}
