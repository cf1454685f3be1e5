//! GitHub's secret-scanning partner program, for organisations that issue
//! tokens: GitHub posts the tokens of theirs it found in public content to
//! `POST /webhooks/github-partner`, signed with ECDSA P-256 (SHA-256) by a
//! key it publishes; keyburn checks the signature, queues each token of
//! ours for revocation and answers with GitHub's feedback array.
//!
//! A queued token is stored sealed (ChaCha20-Poly1305 under a key derived
//! from the audit HMAC key), so that the queue never holds a secret in
//! clear: a copy of the database alone does not give the tokens away.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac};
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::http::{CallError, Http};

#[derive(Debug, thiserror::Error)]
pub enum PartnerError {
    #[error("no Github-Public-Key-Identifier or Github-Public-Key-Signature header")]
    MissingHeaders,
    #[error("the signature is not base64 DER ECDSA")]
    BadSignature,
    #[error("GitHub publishes no key {0:?}")]
    UnknownKey(String),
    #[error("the signature does not match the body")]
    Mismatch,
    #[error("cannot fetch GitHub's partner keys: {0}")]
    Keys(String),
}

/// One token GitHub reports.
#[derive(Debug, Clone, Deserialize)]
pub struct Reported {
    pub token: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
}

/// GitHub's feedback on one token, in the response body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Feedback {
    /// SHA-256 of the raw token, lowercase hex.
    pub token_hash: String,
    pub token_type: String,
    /// `true_positive`: one of ours, live or revocable; else
    /// `false_positive`.
    pub label: String,
}

/// SHA-256 of a token, lowercase hex (GitHub's `token_hash`).
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The keys GitHub signs partner deliveries with, fetched from the keys
/// URL and cached. An unknown identifier refetches them, at most once per
/// [`REFETCH_EVERY`], so that forged identifiers cannot make keyburn
/// hammer the URL.
pub struct PartnerKeys {
    url: String,
    /// GitHub rate-limits the keys endpoint per caller; a token lifts it.
    token: Option<String>,
    http: Http,
    cache: tokio::sync::Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    keys: HashMap<String, VerifyingKey>,
    /// When the keys were last fetched.
    fetched: Option<Instant>,
    /// When an unknown identifier last made them be fetched again.
    refetched: Option<Instant>,
}

/// The shortest time between two fetches for unknown identifiers.
pub const REFETCH_EVERY: Duration = Duration::from_secs(10);

/// The shortest time between two attempts to load the keys at all (when
/// none could be loaded yet).
const RELOAD_EVERY: Duration = Duration::from_secs(1);

#[derive(Deserialize)]
struct KeysDocument {
    public_keys: Vec<PublishedKey>,
}

#[derive(Deserialize)]
struct PublishedKey {
    key_identifier: String,
    key: String,
}

impl PartnerKeys {
    pub fn new(url: &str, token: Option<String>, http: Http) -> PartnerKeys {
        PartnerKeys {
            url: url.to_string(),
            token,
            http,
            cache: Default::default(),
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, VerifyingKey>, CallError> {
        let call = "GitHub partner keys";
        let r = self
            .http
            .send(call, &[], |c| {
                let rb = c
                    .get(&self.url)
                    .header("Accept", "application/vnd.github+json");
                match &self.token {
                    Some(t) => rb.bearer_auth(t),
                    None => rb,
                }
            })
            .await?;
        let doc: KeysDocument = r.json().await.map_err(|e| CallError::decode(call, e))?;
        let mut keys = HashMap::new();
        for k in doc.public_keys {
            match VerifyingKey::from_public_key_pem(k.key.trim()) {
                Ok(v) => {
                    keys.insert(k.key_identifier, v);
                }
                Err(e) => {
                    tracing::warn!(key = %k.key_identifier, "GitHub partner key unreadable: {e}")
                }
            }
        }
        Ok(keys)
    }

    /// The key named `id`: the keys are loaded on first use, and fetched
    /// again once for an identifier they do not hold (GitHub rotated its
    /// key), at most once per [`REFETCH_EVERY`].
    async fn key(&self, id: &str) -> Result<VerifyingKey, PartnerError> {
        let mut cache = self.cache.lock().await;
        if let Some(k) = cache.keys.get(id) {
            return Ok(*k);
        }
        let recent = |t: Option<Instant>, every: Duration| t.is_some_and(|t| t.elapsed() < every);
        if cache.keys.is_empty() {
            if recent(cache.fetched, RELOAD_EVERY) {
                return Err(PartnerError::UnknownKey(id.to_string()));
            }
        } else {
            if recent(cache.refetched, REFETCH_EVERY) {
                return Err(PartnerError::UnknownKey(id.to_string()));
            }
            cache.refetched = Some(Instant::now());
        }
        cache.fetched = Some(Instant::now());
        let keys = self
            .fetch()
            .await
            .map_err(|e| PartnerError::Keys(e.to_string()))?;
        cache.keys = keys;
        cache
            .keys
            .get(id)
            .copied()
            .ok_or_else(|| PartnerError::UnknownKey(id.to_string()))
    }

    /// Check a delivery's signature: base64 DER ECDSA P-256 over SHA-256
    /// of the raw body, by the key `key_id` names.
    pub async fn verify(
        &self,
        key_id: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<(), PartnerError> {
        let (Some(id), Some(sig)) = (key_id, signature) else {
            return Err(PartnerError::MissingHeaders);
        };
        let der = base64::engine::general_purpose::STANDARD
            .decode(sig.trim())
            .map_err(|_| PartnerError::BadSignature)?;
        let sig = Signature::from_der(&der).map_err(|_| PartnerError::BadSignature)?;
        let key = self.key(id.trim()).await?;
        key.verify(body, &sig).map_err(|_| PartnerError::Mismatch)
    }
}

/// Seals tokens for the queue: ChaCha20-Poly1305 under a key derived from
/// the audit HMAC key (replicas sharing a queue share that key).
pub struct Sealer {
    cipher: ChaCha20Poly1305,
}

impl Sealer {
    pub fn new(audit_key: &[u8]) -> Sealer {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(audit_key).expect("HMAC takes any key length");
        mac.update(b"keyburn partner token sealing v1");
        let key = mac.finalize().into_bytes();
        Sealer {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        }
    }

    /// `base64(nonce || ciphertext)`.
    pub fn seal(&self, secret: &str) -> String {
        let nonce: [u8; 12] = rand::random();
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), secret.as_bytes())
            .expect("ChaCha20-Poly1305 encrypts any length a queue holds");
        let mut out = nonce.to_vec();
        out.extend(sealed);
        base64::engine::general_purpose::STANDARD.encode(out)
    }

    /// The secret [`Sealer::seal`] sealed; `None` when the text was not
    /// sealed under this key (another replica's key, or altered).
    pub fn open(&self, sealed: &str) -> Option<String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .ok()?;
        if bytes.len() < 12 {
            return None;
        }
        let (nonce, body) = bytes.split_at(12);
        let plain = self.cipher.decrypt(Nonce::from_slice(nonce), body).ok()?;
        String::from_utf8(plain).ok()
    }
}

/// The queue number of a token's job: the first 63 bits of its SHA-256,
/// so that a token reported twice while its job is pending makes one job.
pub fn job_number(token: &str) -> u64 {
    let d = Sha256::digest(token.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    u64::from_be_bytes(first) >> 1
}

/// The pseudo-repository partner jobs are filed under.
pub const PARTNER_REPO: &str = "github-partner";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_tokens_open_only_under_their_key() {
        let s = Sealer::new(b"audit-key-one");
        let sealed = s.seal("tok_secret_value");
        assert!(!sealed.contains("tok_secret_value"));
        assert_eq!(s.open(&sealed).as_deref(), Some("tok_secret_value"));
        assert_ne!(
            s.seal("tok_secret_value"),
            sealed,
            "a fresh nonce each time"
        );
        assert_eq!(Sealer::new(b"audit-key-two").open(&sealed), None);
        let mut altered = base64::engine::general_purpose::STANDARD
            .decode(&sealed)
            .unwrap();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        let altered = base64::engine::general_purpose::STANDARD.encode(altered);
        assert_eq!(s.open(&altered), None);
        assert_eq!(s.open("not base64!"), None);
    }

    #[test]
    fn token_hashes_are_sha256_hex() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(job_number("a") < 1 << 63);
        assert_eq!(job_number("a"), job_number("a"));
        assert_ne!(job_number("a"), job_number("b"));
    }
}
