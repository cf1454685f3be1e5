//! GitHub webhook signatures: `X-Hub-Signature-256: sha256=<hex>`, the
//! HMAC-SHA256 of the raw request body under the webhook secret.
//!
//! Several secrets may be configured at once so that a secret can be
//! rotated without dropping deliveries: a body signed with any of them is
//! accepted. Comparison is constant-time (`Mac::verify_slice`).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Why a delivery's signature was refused. Deliberately vague towards the
/// sender; the reason is for the operator's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no X-Hub-Signature-256 header")]
    Missing,
    #[error("X-Hub-Signature-256 is not sha256=<64 hex digits>")]
    Malformed,
    #[error("signature matches none of the configured webhook secrets")]
    Mismatch,
}

/// The configured webhook secrets.
#[derive(Clone)]
pub struct Verifier {
    secrets: Vec<Vec<u8>>,
}

impl Verifier {
    /// Empty secrets are ignored; a verifier without secrets accepts nothing.
    pub fn new<I, S>(secrets: I) -> Verifier
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        Verifier {
            secrets: secrets
                .into_iter()
                .map(|s| s.as_ref().to_vec())
                .filter(|s| !s.is_empty())
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// Check `header` (the header's value, if present) against `body`.
    pub fn verify(&self, header: Option<&[u8]>, body: &[u8]) -> Result<(), SignatureError> {
        let header = header.ok_or(SignatureError::Missing)?;
        let hex_sig = header
            .strip_prefix(b"sha256=")
            .ok_or(SignatureError::Malformed)?;
        let sig = hex::decode(hex_sig.trim_ascii()).map_err(|_| SignatureError::Malformed)?;
        if sig.len() != 32 {
            return Err(SignatureError::Malformed);
        }
        let ok = self.secrets.iter().any(|secret| {
            let mut mac =
                Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
            mac.update(body);
            mac.verify_slice(&sig).is_ok()
        });
        if ok {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

/// The header value GitHub would send for `body` signed with `secret`
/// (for tests, load scripts and the README's curl example).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_documented_example_verifies() {
        // The example in GitHub's "Validating webhook deliveries" guide.
        let v = Verifier::new(["It's a Secret to Everybody"]);
        let sig = b"sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(v.verify(Some(sig), b"Hello, World!"), Ok(()));
        assert_eq!(
            sign(b"It's a Secret to Everybody", b"Hello, World!").as_bytes(),
            sig
        );
    }

    #[test]
    fn forged_missing_and_malformed_signatures_are_refused() {
        let v = Verifier::new(["s3cret"]);
        let body = br#"{"action":"created"}"#;
        let good = sign(b"s3cret", body);
        assert_eq!(v.verify(Some(good.as_bytes()), body), Ok(()));
        assert_eq!(
            v.verify(Some(good.as_bytes()), br#"{"action":"resolved"}"#),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            v.verify(Some(sign(b"other", body).as_bytes()), body),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(v.verify(None, body), Err(SignatureError::Missing));
        for bad in [&b"sha1=abcd"[..], b"sha256=zz", b"sha256=abcd", b""] {
            assert_eq!(v.verify(Some(bad), body), Err(SignatureError::Malformed));
        }
    }

    #[test]
    fn any_configured_secret_verifies_during_rotation() {
        let v = Verifier::new(["old", "", "new"]);
        for s in [&b"old"[..], b"new"] {
            assert_eq!(v.verify(Some(sign(s, b"x").as_bytes()), b"x"), Ok(()));
        }
        assert!(Verifier::new([""]).is_empty());
        assert_eq!(
            Verifier::new([""]).verify(Some(sign(b"", b"x").as_bytes()), b"x"),
            Err(SignatureError::Mismatch)
        );
    }
}
