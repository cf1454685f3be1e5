//! MySQL and MariaDB URLs: connect with the leaked user and password (the
//! server authenticates during the handshake), then disconnect. No query.
//! The host passes the SSRF guard first and the connection goes to the
//! address checked.

use super::database::{broken, target, within_budget, Login};
use super::guard::Guard;
use super::{BoxFuture, CheckError, Checked, CodeProvider, Secret};

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
            let t = target(&self.guard, secret, 3306).await?;
            let user = t.user.clone().unwrap_or_else(|| "root".into());
            let opts = mysql_async::OptsBuilder::default()
                .ip_or_hostname(t.addr.ip().to_string())
                .tcp_port(t.addr.port())
                .user(Some(user.clone()))
                .pass(Some(secret.value.clone()))
                .prefer_socket(false);
            let call = "MySQL authenticate";
            let login = match within_budget(call, mysql_async::Conn::new(opts)).await? {
                Ok(conn) => {
                    let _ = conn.disconnect().await;
                    Login::Accepted(String::new())
                }
                Err(mysql_async::Error::Server(e)) if e.code == ACCESS_DENIED => {
                    Login::Refused(format!("error {}", e.code))
                }
                Err(mysql_async::Error::Server(e)) if AUTHENTICATED.contains(&e.code) => {
                    Login::Accepted(String::new())
                }
                Err(mysql_async::Error::Server(e)) => Login::Other(format!("error {}", e.code)),
                Err(e) => return Err(broken(call, e)),
            };
            Ok(t.checked(&user, login))
        })
    }
}
