//! What the database and broker validators share: the host a URL names,
//! resolved through the SSRF guard; one time budget for the login; and
//! one wording of the server's answer.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use super::guard::Guard;
use super::{CheckError, Checked, Secret, Validity};
use crate::http::CallError;

/// The longest a connection and its authentication may take.
const LOGIN_BUDGET: Duration = Duration::from_secs(10);

/// Where a database URL's secret is checked: the host the URL names,
/// resolved through the guard, and the user.
pub(super) struct Target {
    pub host: String,
    pub addr: std::net::SocketAddr,
    pub user: Option<String>,
}

/// What the server said of the password.
pub(super) enum Login {
    /// Authenticated; the text adds what else was learnt (a vhost refused).
    Accepted(String),
    /// Refused; the text is the server's code.
    Refused(String),
    /// An answer that says neither.
    Other(String),
}

/// The host, port and user parts of a database URL finding, resolved
/// through the guard.
pub(super) async fn target(
    guard: &Guard,
    secret: &Secret,
    default_port: u16,
) -> Result<Target, CheckError> {
    let part = |name: &str| secret.parts.get(name).filter(|v| !v.is_empty());
    let host = part("host").ok_or_else(|| {
        CheckError::Skipped("needs its host (give it with --part host=NAME)".into())
    })?;
    let port = match part("port") {
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| CheckError::Input(format!("port {p:?} is not a port")))?,
        None => default_port,
    };
    let addr = guard.resolve(host, port).await?;
    Ok(Target {
        host: host.clone(),
        addr,
        user: part("user").cloned(),
    })
}

impl Target {
    /// The validation `login` comes to, for `user`.
    pub fn checked(&self, user: &str, login: Login) -> Checked {
        let host = &self.host;
        let with = |note: String| {
            if note.is_empty() {
                note
            } else {
                format!(" ({note})")
            }
        };
        match login {
            Login::Accepted(note) => Checked {
                validity: Validity::Active,
                reason: format!("{host} accepted the password of {user}{}", with(note)),
            },
            Login::Refused(code) => Checked {
                validity: Validity::Inactive,
                reason: format!("{host} refused the password of {user}{}", with(code)),
            },
            Login::Other(what) => Checked {
                validity: Validity::Unknown,
                reason: format!("{host} answered {what}"),
            },
        }
    }
}

/// Run a connection and its authentication within the login budget.
pub(super) async fn within_budget<T>(
    call: &str,
    login: impl Future<Output = T>,
) -> Result<T, CheckError> {
    tokio::time::timeout(LOGIN_BUDGET, login)
        .await
        .map_err(|_| CheckError::Call(CallError::Timeout { call: call.into() }))
}

/// A connection that broke before the server said anything of the password.
pub(super) fn broken(call: &str, e: impl Display) -> CheckError {
    CheckError::Call(CallError::Transport {
        call: call.into(),
        message: e.to_string(),
    })
}
