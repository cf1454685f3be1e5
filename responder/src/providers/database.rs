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

/// TLS for database logins, as libpq's `sslmode=prefer`/`require` do it:
/// encrypted, the certificate not checked against a CA (managed databases
/// present chains of their own CAs, which no root store carries), the
/// handshake signatures checked. What is sent is a password already
/// published; TLS keeps it from being published again on the wire.
pub(super) fn tls_config() -> std::sync::Arc<rustls::ClientConfig> {
    use std::sync::{Arc, OnceLock};
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// Accepts any certificate chain; checks the handshake's signatures.
#[derive(Debug)]
struct AnyCertificate(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
