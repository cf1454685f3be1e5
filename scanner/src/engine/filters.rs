//! Post-filters applied to a regex match: entropy, checksum, placeholders.

use crate::rules::Checksum;

/// Shannon entropy of `bytes` in bits per byte.
pub fn entropy(bytes: &[u8]) -> f64 {
    if bytes.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in bytes {
        counts[b as usize] += 1;
    }
    let n = bytes.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// The entropy a secret must reach for a rule asking `min`. Hex strings draw
/// on 16 symbols, not 64: a random 32-character hex key has only ~3.5 bits per
/// character, so thresholds tuned for base64 are scaled down for them.
pub fn entropy_floor(min: f64, secret: &[u8]) -> f64 {
    let hex = secret.iter().all(|b| b.is_ascii_hexdigit() || *b == b'-');
    if hex {
        min * 0.85
    } else {
        min
    }
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn base62_value(b: u8) -> Option<u64> {
    BASE62.iter().position(|&c| c == b).map(|p| p as u64)
}

/// Whether `secret` carries a valid checksum of kind `kind`.
pub fn valid_checksum(kind: Checksum, secret: &[u8]) -> bool {
    match kind {
        Checksum::GithubCrc32 => {
            // prefix_ + random + 6 checksum chars; the random part follows the
            // last underscore of the prefix (ghp_, gho_, npm_...).
            let Some(us) = secret.iter().rposition(|&b| b == b'_') else {
                return false;
            };
            let body = &secret[us + 1..];
            if body.len() <= 6 {
                return false;
            }
            let (random, check) = body.split_at(body.len() - 6);
            let mut value: u64 = 0;
            for &b in check {
                let Some(v) = base62_value(b) else {
                    return false;
                };
                value = value * 62 + v;
            }
            value == u64::from(crc32fast::hash(random))
        }
    }
}

/// Substrings that mark documentation and templates rather than secrets.
const PLACEHOLDER_WORDS: &[&str] = &[
    "example",
    "sample",
    "placeholder",
    "your_",
    "your-",
    "yourkey",
    "yourtoken",
    "yoursecret",
    "yourpassword",
    "changeme",
    "change_me",
    "change-me",
    "redacted",
    "dummy",
    "notreal",
    "not_real",
    "not-a-real",
    "fake",
    "replace_me",
    "replaceme",
    "insert_",
    "insert-",
    "xxxx",
    "****",
    "####",
    "....",
    "…",
    "${",
    "{{",
    "}}",
    "%(",
    "$(",
    "0123456789",
    "123456789",
    "abcdefghij",
    "qwerty",
];

/// Whether the secret looks like a placeholder: `EXAMPLE` keys, `xxxx`,
/// `your-token-here`, `${VAR}`, `<TOKEN>`, `****`, `{{ .Values.x }}`, a lone
/// `$VAR`, or a single repeated character.
pub fn is_placeholder(secret: &[u8]) -> bool {
    if secret.is_empty() {
        return true;
    }
    let lower = secret.to_ascii_lowercase();
    if PLACEHOLDER_WORDS
        .iter()
        .any(|w| memchr::memmem::find(&lower, w.as_bytes()).is_some())
    {
        return true;
    }
    if secret.first() == Some(&b'<') && secret.last() == Some(&b'>') {
        return true;
    }
    if is_env_reference(secret) {
        return true;
    }
    secret.iter().all(|&b| b == secret[0])
}

/// `$NAME`, `${NAME}`, `%NAME%`, or a format string's or template's slot
/// (`{name}`, `{{ name }}`, `{0}`, `{}`, `%(name)s`): a reference, not a
/// value.
fn is_env_reference(s: &[u8]) -> bool {
    let name = |b: &[u8]| {
        !b.is_empty()
            && !b[0].is_ascii_digit()
            && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_')
    };
    match s {
        [b'$', b'{', inner @ .., b'}'] => name(inner),
        [b'$', inner @ ..] => name(inner),
        [b'%', inner @ .., b'%'] => name(inner),
        [b'%', b'(', inner @ .., b')', b's'] => name(inner),
        [b'{', inner @ .., b'}'] => {
            let inner = inner.trim_ascii();
            let inner = inner
                .strip_prefix(b"{")
                .and_then(|i| i.strip_suffix(b"}"))
                .map_or(inner, <[u8]>::trim_ascii);
            inner.is_empty()
                || name(inner)
                || (inner.iter().all(u8::is_ascii_digit) && inner.len() < 3)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_string_slots_are_placeholders_but_braced_values_are_not() {
        for p in [
            "{pw}",
            "{password}",
            "{{ db_password }}",
            "{0}",
            "{}",
            "%(password)s",
        ] {
            assert!(is_placeholder(p.as_bytes()), "{p}");
        }
        for s in ["{Xk9-2fQ}", "{a b}", "q{pw}z", "{8f3e1c22d9}"] {
            assert!(!is_placeholder(s.as_bytes()), "{s}");
        }
    }

    fn github_token(prefix: &str, random: &str) -> String {
        let mut v = crc32fast::hash(random.as_bytes()) as u64;
        let mut check = [b'0'; 6];
        for slot in check.iter_mut().rev() {
            *slot = BASE62[(v % 62) as usize];
            v /= 62;
        }
        format!("{prefix}{random}{}", std::str::from_utf8(&check).unwrap())
    }

    #[test]
    fn github_checksum_accepts_valid_and_rejects_altered_tokens() {
        let tok = github_token("ghp_", "kQ3vN8sLw2XzR5tYb7MfJ1cHd9GpE4");
        assert!(valid_checksum(Checksum::GithubCrc32, tok.as_bytes()));
        let mut bad = tok.clone().into_bytes();
        bad[10] = if bad[10] == b'a' { b'b' } else { b'a' };
        assert!(!valid_checksum(Checksum::GithubCrc32, &bad));
        assert!(!valid_checksum(Checksum::GithubCrc32, b"ghp_short"));
        assert!(!valid_checksum(Checksum::GithubCrc32, b"no-underscore"));
    }

    #[test]
    fn hex_secrets_get_a_lower_entropy_floor() {
        assert!(entropy_floor(3.5, b"5be6f4f56a7ed9fc0dc7fdfbf06b9956") < 3.0);
        assert_eq!(entropy_floor(3.5, b"uEl8LWYX2EiNo4cjd09jRphseJNJhgFz"), 3.5);
    }

    #[test]
    fn entropy_of_uniform_and_constant_strings() {
        assert_eq!(entropy(b"aaaaaaaa"), 0.0);
        assert!((entropy(b"abcd") - 2.0).abs() < 1e-9);
        assert_eq!(entropy(b""), 0.0);
    }

    #[test]
    fn placeholders_are_recognised() {
        for p in [
            "AKIAIOSFODNN7EXAMPLE",
            "xxxxxxxxxxxxxxxx",
            "your-api-key-here",
            "${GITHUB_TOKEN}",
            "$DB_PASSWORD",
            "%API_KEY%",
            "<TOKEN>",
            "********",
            "{{ .Values.secret }}",
            "aaaaaaaa",
        ] {
            assert!(is_placeholder(p.as_bytes()), "{p}");
        }
        for s in ["kQ3vN8sLw2XzR5tYb7Mf", "$apr1$Jd8/a$k2mZ", "hunter2!Qx"] {
            assert!(!is_placeholder(s.as_bytes()), "{s}");
        }
    }
}
