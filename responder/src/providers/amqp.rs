//! AMQP (RabbitMQ) URLs: open a connection with the leaked user and
//! password (the broker authenticates during the handshake), then close
//! it. No channel is opened. The host passes the SSRF guard first and the
//! connection goes to the address checked.

use amqprs::connection::{Connection, OpenConnectionArguments};

use super::database::{broken, target, within_budget, Login};
use super::guard::Guard;
use super::{BoxFuture, CheckError, Checked, CodeProvider, Secret};

pub struct Amqp {
    pub guard: Guard,
}

impl CodeProvider for Amqp {
    fn validate<'a>(&'a self, secret: &'a Secret) -> BoxFuture<'a, Result<Checked, CheckError>> {
        Box::pin(async move {
            if secret.parts.get("scheme").is_some_and(|s| s == "amqps") {
                return Err(CheckError::Skipped(
                    "a TLS (amqps://) broker: keyburn validates AMQP over plain TCP only".into(),
                ));
            }
            let t = target(&self.guard, secret, 5672).await?;
            let user = t.user.clone().unwrap_or_else(|| "guest".into());
            let vhost = secret
                .parts
                .get("vhost")
                .filter(|v| !v.is_empty())
                .map_or("/".to_string(), |v| {
                    v.replace("%2F", "/").replace("%2f", "/")
                });
            let mut args = OpenConnectionArguments::new(
                &t.addr.ip().to_string(),
                t.addr.port(),
                &user,
                &secret.value,
            );
            args.virtual_host(&vhost)
                .connection_name("keyburn-validate");
            let call = "AMQP authenticate";
            let login = match within_budget(call, Connection::open(&args)).await? {
                Ok(conn) => {
                    let _ = conn.close().await;
                    Login::Accepted(String::new())
                }
                Err(e) => {
                    let text = e.to_string();
                    let lower = text.to_ascii_lowercase();
                    // A client that does not announce the
                    // authentication_failure_close capability is told
                    // "refused" by RabbitMQ closing the connection it
                    // accepted, in the middle of the handshake.
                    let cut = lower.contains("reset by peer")
                        || lower.contains("eof")
                        || lower.contains("shutdown");
                    if text.contains("ACCESS_REFUSED") || text.contains("403") || cut {
                        Login::Refused(String::new())
                    } else if text.contains("NOT_ALLOWED") || text.contains("530") {
                        // Authenticated, but not allowed on this vhost.
                        Login::Accepted(format!("not for vhost {vhost}"))
                    } else {
                        return Err(broken(call, text));
                    }
                }
            };
            Ok(t.checked(&user, login))
        })
    }
}
