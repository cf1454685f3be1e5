//! The HTTP plumbing every outbound call shares: one client (connection
//! pool, rustls, a per-request timeout), a short in-call retry for answers
//! that say "try again" (429 with `Retry-After`, 502/503/504), and errors
//! that say whether a later retry can help.
//!
//! Longer outages are the queue's business: a call that still fails
//! returns an error, the step fails, and the job is retried with backoff.
//! Error messages name the call, never a URL's query or a body, so no
//! secret reaches a log through them.

use std::time::Duration;

use reqwest::{RequestBuilder, Response, StatusCode};

use crate::queue::Failure;

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{call}: timed out")]
    Timeout { call: String },
    #[error("{call}: {message}")]
    Transport { call: String, message: String },
    #[error("{call}: HTTP {status}")]
    Status { call: String, status: u16 },
    #[error("{call}: unexpected response: {message}")]
    Decode { call: String, message: String },
    /// The provider answered and said no (an AWS error code, say): asking
    /// again gets the same answer.
    #[error("{call}: refused: {message}")]
    Refused { call: String, message: String },
}

impl CallError {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            CallError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether a later retry can help: timeouts, transport errors, 429,
    /// 5xx and unreadable answers can; a client error (400, 401, 403,
    /// 404, 422, ...) or a refusal cannot.
    pub fn failure(&self) -> Failure {
        match self {
            CallError::Status { status, .. } if *status != 429 && (400..500).contains(status) => {
                Failure::Permanent
            }
            CallError::Refused { .. } => Failure::Permanent,
            _ => Failure::Retryable,
        }
    }

    /// Whether the server answered, so that the request surely completed
    /// (with whatever effect the answer says). A timeout or a broken
    /// connection leaves a mutation's effect unknown.
    pub fn answered(&self) -> bool {
        !matches!(
            self,
            CallError::Timeout { .. } | CallError::Transport { .. }
        )
    }

    /// A request that got no answer: a timeout, or a transport error with
    /// the causes reqwest chains ("error sending request: dns error: ...")
    /// but without the URL, which may carry a query.
    pub fn request(call: &str, e: reqwest::Error) -> CallError {
        if e.is_timeout() {
            return CallError::Timeout { call: call.into() };
        }
        let e = e.without_url();
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        CallError::Transport {
            call: call.into(),
            message,
        }
    }

    pub fn refused(call: &str, message: impl ToString) -> CallError {
        CallError::Refused {
            call: call.into(),
            message: message.to_string(),
        }
    }

    pub fn decode(call: &str, message: impl ToString) -> CallError {
        CallError::Decode {
            call: call.into(),
            message: message.to_string(),
        }
    }
}

/// The shared client.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    timeout: Duration,
    /// Extra tries for a retryable answer within one call.
    retries: u32,
    /// The longest `Retry-After` honoured inside a call; longer waits are
    /// left to the queue's backoff.
    max_wait: Duration,
}

impl Http {
    pub fn new(timeout: Duration) -> Http {
        Http {
            client: Http::builder(timeout)
                .build()
                .expect("a TLS backend is compiled in"),
            timeout,
            retries: 2,
            max_wait: Duration::from_secs(30),
        }
    }

    fn builder(timeout: Duration) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("keyburn/", env!("CARGO_PKG_VERSION")))
    }

    /// This client, but connecting to `host` only at `addr`: a request to
    /// a host named by a secret goes to the address that was checked, not
    /// to whatever a second DNS answer says.
    pub fn pinned(&self, host: &str, addr: std::net::SocketAddr) -> Http {
        let client = Http::builder(self.timeout)
            .resolve(host, addr)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a TLS backend is compiled in");
        Http {
            client,
            ..self.clone()
        }
    }

    /// The longest `Retry-After` honoured inside one call.
    pub fn with_max_wait(mut self, max_wait: Duration) -> Http {
        self.max_wait = max_wait;
        self
    }

    /// Send and return whatever the server finally answered, after the
    /// in-call retries of a read (`idempotent`) or of a mutation: the
    /// caller reads every status itself.
    pub async fn exchange(
        &self,
        call: &str,
        idempotent: bool,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, CallError> {
        self.send_with(call, &[], build, idempotent, true).await
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Send the request `build` makes (called again for each try), and
    /// return the response if its status is a success or one of `accept`.
    /// For reads and idempotent writes: a timeout is tried again.
    pub async fn send(
        &self,
        call: &str,
        accept: &[StatusCode],
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, CallError> {
        self.send_with(call, accept, build, true, false).await
    }

    /// [`Http::send`] for a call whose repetition is an effect of its own
    /// (a revocation, a notice): tried again only when the server said
    /// it did nothing (429, 503), never after a timeout, a broken
    /// connection or a gateway error, after which its effect is unknown.
    pub async fn mutate(
        &self,
        call: &str,
        accept: &[StatusCode],
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, CallError> {
        self.send_with(call, accept, build, false, false).await
    }

    async fn send_with(
        &self,
        call: &str,
        accept: &[StatusCode],
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
        idempotent: bool,
        any_answer: bool,
    ) -> Result<Response, CallError> {
        let mut tries = 0;
        loop {
            let res = build(&self.client)
                .send()
                .await
                .map_err(|e| CallError::request(call, e));
            let wait = match &res {
                Ok(r) if r.status().is_success() || accept.contains(&r.status()) => {
                    return res;
                }
                Ok(r) if idempotent || refused_untouched(r.status()) => retry_wait(r, tries),
                Ok(_) => None,
                Err(CallError::Timeout { .. }) | Err(CallError::Transport { .. }) if idempotent => {
                    Some(Duration::from_millis(200 << tries))
                }
                Err(_) => None,
            };
            match wait {
                Some(w) if tries < self.retries && w <= self.max_wait => {
                    tries += 1;
                    tokio::time::sleep(w).await;
                }
                _ => {
                    return match res {
                        Ok(r) if any_answer => Ok(r),
                        Ok(r) => Err(CallError::Status {
                            call: call.into(),
                            status: r.status().as_u16(),
                        }),
                        Err(e) => Err(e),
                    }
                }
            }
        }
    }
}

/// Answers that say the request was not acted on.
fn refused_untouched(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 503)
}

/// How long to wait before trying again, if the answer invites it.
fn retry_wait(r: &Response, tries: u32) -> Option<Duration> {
    let status = r.status();
    if status == StatusCode::TOO_MANY_REQUESTS {
        let after = r
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(1);
        return Some(Duration::from_secs(after));
    }
    if matches!(status.as_u16(), 502..=504) {
        return Some(Duration::from_millis(200 << tries));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{refused_untouched, CallError};
    use crate::queue::Failure;
    use reqwest::StatusCode;

    fn status(s: u16) -> CallError {
        CallError::Status {
            call: "c".into(),
            status: s,
        }
    }

    #[test]
    fn client_errors_are_permanent_the_rest_retryable() {
        for s in [400, 401, 403, 404, 422] {
            assert_eq!(status(s).failure(), Failure::Permanent, "{s}");
        }
        for s in [429, 500, 502, 503, 504] {
            assert_eq!(status(s).failure(), Failure::Retryable, "{s}");
        }
        assert_eq!(
            CallError::Timeout { call: "c".into() }.failure(),
            Failure::Retryable
        );
        assert_eq!(
            CallError::refused("AWS IAM UpdateAccessKey", "AccessDenied").failure(),
            Failure::Permanent
        );
        // A timeout leaves a mutation's effect unknown; an answer does not.
        assert!(!CallError::Timeout { call: "c".into() }.answered());
        assert!(status(503).answered());
    }

    #[test]
    fn only_answers_that_did_nothing_are_retried_for_a_mutation() {
        assert!(refused_untouched(StatusCode::TOO_MANY_REQUESTS));
        assert!(refused_untouched(StatusCode::SERVICE_UNAVAILABLE));
        assert!(!refused_untouched(StatusCode::BAD_GATEWAY));
        assert!(!refused_untouched(StatusCode::GATEWAY_TIMEOUT));
    }
}
