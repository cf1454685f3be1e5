//! MongoDB connection URLs: connect with the leaked user and password, let
//! the driver authenticate (SCRAM during the handshake), send `ping` (a
//! no-op every server answers) and disconnect. Never a query. A
//! `mongodb+srv://` name is expanded through DNS (SRV and TXT records, no
//! connection) by the driver's parser; the first seed host then passes the
//! SSRF guard and the connection goes, directly, to the address checked.
//! TLS when the URL asks for it (always with `+srv`), the certificate not
//! checked: the address is an IP by then, and what is sent is a password
//! already published.

use std::future::IntoFuture;
use std::time::Duration;

use mongodb::options::{ClientOptions, ServerAddress, Tls, TlsOptions};

use super::database::{broken, within_budget, Login, Target};
use super::guard::Guard;
use super::{BoxFuture, CheckError, Checked, CodeProvider, Secret};

pub struct Mongodb {
    pub guard: Guard,
}

impl Mongodb {
    /// The URL the finding came from, rebuilt from its parts (the user and
    /// password as they were written, percent-encoding included).
    fn url(secret: &Secret) -> Result<String, CheckError> {
        let part = |name: &str| secret.parts.get(name).filter(|v| !v.is_empty());
        let host = part("host").ok_or_else(|| {
            CheckError::Skipped("needs its host (give it with --part host=NAME)".into())
        })?;
        let scheme = part("scheme").map_or("mongodb", String::as_str);
        let user = part("user").ok_or_else(|| {
            CheckError::Skipped("needs its user (give it with --part user=NAME)".into())
        })?;
        let mut url = format!("{scheme}://{user}:{}@{host}/", secret.value);
        if let Some(db) = part("database") {
            url.push_str(db);
        }
        if let Some(options) = part("options") {
            url.push('?');
            url.push_str(options);
        }
        Ok(url)
    }
}

impl CodeProvider for Mongodb {
    fn validate<'a>(&'a self, secret: &'a Secret) -> BoxFuture<'a, Result<Checked, CheckError>> {
        Box::pin(async move {
            let call = "MongoDB authenticate";
            let url = Mongodb::url(secret)?;
            let mut opts = within_budget(call, ClientOptions::parse(&url).into_future())
                .await?
                .map_err(|e| {
                    CheckError::Input(format!(
                        "not a connection string the driver reads: {}",
                        e.kind
                    ))
                })?;
            let Some(ServerAddress::Tcp { host, port }) = opts.hosts.first().cloned() else {
                return Err(CheckError::Input("the URL names no TCP host".into()));
            };
            let addr = self.guard.resolve(&host, port.unwrap_or(27017)).await?;
            let user = opts
                .credential
                .as_ref()
                .and_then(|c| c.username.clone())
                .unwrap_or_default();
            opts.hosts = vec![ServerAddress::Tcp {
                host: addr.ip().to_string(),
                port: Some(addr.port()),
            }];
            opts.direct_connection = Some(true);
            opts.repl_set_name = None;
            opts.app_name = Some("keyburn-validate".into());
            opts.connect_timeout = Some(Duration::from_secs(5));
            opts.server_selection_timeout = Some(Duration::from_secs(5));
            if let Some(Tls::Enabled(_)) = opts.tls {
                opts.tls = Some(Tls::Enabled(
                    TlsOptions::builder()
                        .allow_invalid_certificates(true)
                        .build(),
                ));
            }
            let client = mongodb::Client::with_options(opts)
                .map_err(|e| CheckError::Input(e.kind.to_string()))?;
            let admin = client.database("admin");
            let ping = admin
                .run_command(mongodb::bson::doc! { "ping": 1 })
                .into_future();
            let answer = within_budget(call, ping).await;
            client.shutdown().await;
            let login = match answer? {
                Ok(_) => Login::Accepted(String::new()),
                Err(e) => match e.kind.as_ref() {
                    mongodb::error::ErrorKind::Authentication { .. } => {
                        Login::Refused("authentication failed".into())
                    }
                    mongodb::error::ErrorKind::Command(c) if c.code == 18 => {
                        Login::Refused("AuthenticationFailed".into())
                    }
                    mongodb::error::ErrorKind::Command(c) => {
                        Login::Other(format!("error {} ({})", c.code, c.code_name))
                    }
                    other => return Err(broken(call, other)),
                },
            };
            let target = Target {
                host,
                addr,
                user: Some(user.clone()),
            };
            Ok(target.checked(&user, login))
        })
    }
}
