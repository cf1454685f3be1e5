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
    "not_a_real",
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
    "$random",
    "0123456789",
    "123456789",
    "abcdefghij",
    "qwerty",
    "randomstring",
    "random_string",
    "random-string",
];

/// Words written where any value would do (`setPassword('whatever')`, a
/// test's `'password' => 'something'`): a value that is only one of them
/// (and digits) is a placeholder.
const FILLER_WORDS: &[&str] = &[
    "something",
    "whatever",
    "anything",
    "nothing",
    "foobar",
    "foobarbaz",
    "blahblah",
];

/// "Password", its plural, and the word in other languages: a value that
/// is only the word (and digits) names its slot (`getConnection(url,
/// "usuario", "contrasena")`, a Secret's `password: password`).
const PASSWORD_WORDS: &[&str] = &[
    "password",
    "passwords",
    "passwd",
    "contrasena",
    "contrasenas",
    "contraseñas",
    "contrasenya",
    "passworter",
    "passwörter",
    "kennwörter",
    "paswoord",
    "paswoorden",
    "wachtwoorden",
    "senhas",
    "contraseña",
    "passwort",
    "kennwort",
    "senha",
    "motdepasse",
    "mot_de_passe",
    "wachtwoord",
    "losenord",
    "lösenord",
    "adgangskode",
    "passord",
    "salasana",
    "haslo",
    "hasło",
    "parola",
    "jelszo",
    "jelszó",
    "heslo",
    "sifre",
    "şifre",
];

/// A lower-cased word with its trailing blanks and digits cut: `password1 `
/// reads `password`.
fn bare_word(lower: &[u8]) -> &[u8] {
    let word = lower.trim_ascii_end();
    &word[..word.len() - word.iter().rev().take_while(|b| b.is_ascii_digit()).count()]
}

/// Whether `secret` is the word "password" itself, in some language, with
/// digits or not (`Password1`, `contraseña`): the slot's name written in
/// it, except where a file's format makes it the password (a `.pgpass`).
pub fn is_password_word(secret: &[u8]) -> bool {
    let lower = secret.to_ascii_lowercase();
    let word = bare_word(&lower);
    PASSWORD_WORDS.iter().any(|w| w.as_bytes() == word)
}

/// Whether the secret looks like a placeholder: `EXAMPLE` keys, `xxxx`,
/// `your-token-here`, `${VAR}`, `<TOKEN>`, `****`, `{{ .Values.x }}`, a lone
/// `$VAR`, or a single repeated character.
pub fn is_placeholder(secret: &[u8]) -> bool {
    if secret.is_empty() || is_documented_example(secret) {
        return true;
    }
    // A percent-encoded value is judged as it reads decoded: a URL's
    // `%7BENCODED_PASSWORD%7D` is a template slot, `%25%21%2A` punctuation.
    if let Some(decoded) = percent_decoded(secret) {
        return !decoded.iter().any(u8::is_ascii_alphanumeric) || is_placeholder(&decoded);
    }
    let lower = secret.to_ascii_lowercase();
    if PLACEHOLDER_WORDS
        .iter()
        .any(|w| memchr::memmem::find(&lower, w.as_bytes()).is_some())
    {
        return true;
    }
    let word = bare_word(&lower);
    if PASSWORD_WORDS
        .iter()
        .chain(FILLER_WORDS)
        .any(|w| w.as_bytes() == word)
    {
        return true;
    }
    // Elided, as documentation shortens a value: `eyJ2IjoiMSIs...`.
    if secret.ends_with(b"...") {
        return true;
    }
    if spells_out_password(secret, &lower)
        || names_its_own_slot(&lower)
        || says_it_is_wrong(secret, &lower)
    {
        return true;
    }
    if secret.first() == Some(&b'<') && secret.last() == Some(&b'>') {
        return true;
    }
    if is_redaction_marker(secret) {
        return true;
    }
    if is_env_reference(secret) {
        return true;
    }
    secret.iter().all(|&b| b == secret[0])
}

/// A word in square brackets, as scrubbers write what they removed:
/// Sentry's `[Filtered]`, Rails' `[FILTERED]`, `[REDACTED]`, `[hidden]`.
/// A token's alphabet has no brackets around letters only.
fn is_redaction_marker(secret: &[u8]) -> bool {
    secret.len() > 2
        && secret.first() == Some(&b'[')
        && secret.last() == Some(&b']')
        && secret[1..secret.len() - 1]
            .iter()
            .all(|b| b.is_ascii_alphabetic() || b" _-".contains(b))
}

/// A value that spells out the word it stands for inside a phrase:
/// documentation's `mypassword`, `some_password`, `SomeKindOfPassword123!@#`,
/// `PassWordMustBeAtLeast6Chars.`. A password people pick and commit,
/// `AdminPassword1`, `petclinicpassword` or `P@ssw0rd`, is left to report.
/// (`lower` is `secret` lowercased.)
fn spells_out_password(secret: &[u8], lower: &[u8]) -> bool {
    if ![&b"password"[..], b"passwd"]
        .iter()
        .any(|w| memchr::memmem::find(lower, w).is_some())
    {
        return false;
    }
    let phrase = [
        &b"my"[..],
        b"some",
        b"your",
        b"other",
        b"new",
        b"the",
        b"super",
        b"secret",
    ]
    .iter()
    .any(|p| lower.starts_with(p));
    // Words of a camelCase phrase: `SomeKindOfPassword` has four.
    let steps = secret
        .windows(2)
        .filter(|w| w[0].is_ascii_lowercase() && w[1].is_ascii_uppercase())
        .count();
    phrase || steps >= 3
}

/// A password a test offers to be refused, and says so: `wrongpass`,
/// `wrong_password`, `invalidPassword`, `BadPassword1`, `incorrect-pwd`.
/// The leading word must be a word (`Badger-Pass` is not `bad`).
/// (`lower` is `secret` lowercased.)
fn says_it_is_wrong(secret: &[u8], lower: &[u8]) -> bool {
    const WORDS: [&str; 4] = ["pass", "pwd", "secret", "token"];
    ["wrong", "bad", "invalid", "incorrect"].iter().any(|w| {
        let n = w.len();
        lower.starts_with(w.as_bytes())
            && secret.get(n).is_some_and(|&b| {
                !b.is_ascii_alphanumeric()
                    || b.is_ascii_uppercase()
                    || WORDS.iter().any(|k| lower[n..].starts_with(k.as_bytes()))
            })
            && WORDS
                .iter()
                .any(|k| memchr::memmem::find(&lower[n..], k.as_bytes()).is_some())
    })
}

/// A lower-case phrase that tells the reader what to put there:
/// `yourcoverallsprojectrepositorytoken`, `my_api_key`, `yoursecretkey`.
fn names_its_own_slot(lower: &[u8]) -> bool {
    ["your", "my"]
        .iter()
        .any(|p| lower.starts_with(p.as_bytes()))
        && lower
            .iter()
            .all(|b| b.is_ascii_lowercase() || *b == b'_' || *b == b'-')
        && ["token", "key", "secret", "password", "passwd"]
            .iter()
            .any(|w| lower.ends_with(w.as_bytes()))
}

/// Values that specifications and vendors' documentation print as their
/// examples, found in every library that copies the example: RFC 6749's
/// access token, refresh token, authorization code and client secret,
/// RFC 4226/6238's test secret (base32 of `12345678901234567890`), and the
/// token jwt.io shows (known by its signature).
const DOCUMENTED_EXAMPLES: &[&str] = &[
    "2YotnFZFEjr1zCsicMWpAA",
    "tGzv3JOkF0XG5Qx2TlKWIA",
    "SplxlOBeZQQYbYS6WxSbIA",
    "7Fjfp0ZBr1KtDRbnfVdmIw",
    "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
];
const JWT_IO_SIGNATURE: &str = ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";

fn is_documented_example(secret: &[u8]) -> bool {
    DOCUMENTED_EXAMPLES.iter().any(|e| e.as_bytes() == secret)
        || secret.ends_with(JWT_IO_SIGNATURE.as_bytes())
}

/// `s` percent-decoded, when it holds a `%XX` escape.
fn percent_decoded(s: &[u8]) -> Option<Vec<u8>> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut escaped = false;
    let mut i = 0;
    while i < s.len() {
        match (
            s[i],
            s.get(i + 1).and_then(|&b| hex(b)),
            s.get(i + 2).and_then(|&b| hex(b)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push(h << 4 | l);
                escaped = true;
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    escaped.then_some(out)
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
            // A long mix of cases and digits in braces is a value written
            // that way (Jenkins' `{AQAAABAAAAAQ…}`), not a slot's name.
            let random = inner.len() >= 24
                && [
                    u8::is_ascii_uppercase,
                    u8::is_ascii_lowercase,
                    u8::is_ascii_digit,
                ]
                .iter()
                .all(|class| inner.iter().any(class))
                && !inner.contains(&b'_');
            inner.is_empty()
                || (name(inner) && !random)
                || (inner.iter().all(u8::is_ascii_digit) && inner.len() < 3)
        }
        _ => false,
    }
}

/// Words a name may glue in front of its keyword and still mean it
/// (`dbpassword`, `accesstoken`, `clientsecret`, `apikey`): in a name of
/// one case, nothing else marks where the keyword starts.
const NAME_COMPOUNDS: &[&str] = &[
    "access",
    "account",
    "admin",
    "api",
    "app",
    "auth",
    "aws",
    "bearer",
    "bot",
    "client",
    "csrf",
    "db",
    "default",
    "deploy",
    "encryption",
    "ftp",
    "github",
    "gitlab",
    "id",
    "ldap",
    "login",
    "mail",
    "master",
    "my",
    "mysql",
    "new",
    "npm",
    "oauth",
    "old",
    "personal",
    "postgres",
    "private",
    "redis",
    "refresh",
    "root",
    "secret",
    "service",
    "session",
    "signing",
    "slack",
    "smtp",
    "sql",
    "ssh",
    "user",
    "vault",
    "webhook",
    "xsrf",
];

/// Whether one of `keywords` (lower case) is a word of the name that
/// leads to the value (`name` is the match before the secret): bounded
/// by punctuation, a camelCase step, a digit, a known compound before it
/// or a plural `s` after it. `token` is a word of `GITHUB_TOKEN`,
/// `authToken` and `accesstoken`, not of `tokenizer` or `tiktoken`.
pub fn keyword_is_a_word(name: &[u8], keywords: &[Vec<u8>]) -> bool {
    let lower = name.to_ascii_lowercase();
    keywords.iter().any(|kw| {
        memchr::memmem::find_iter(&lower, kw).any(|p| {
            let end = p + kw.len();
            word_start(name, &lower, p)
                && word_end(name, end, kw)
                && !qualified(&lower, p)
                && !names_an_attribute(name, end)
        })
    })
}

/// Words that, after the keyword in a name, make it name a property of
/// the credential rather than the credential: `token.style`,
/// `secretKeyLength`, `PasswordResetRequired`, `token_url`.
const ATTRIBUTE_WORDS: &[&str] = &[
    "address",
    "changed",
    "count",
    "encoder",
    "endpoint",
    "field",
    "format",
    "header",
    "hint",
    "label",
    "len",
    "length",
    "max",
    "min",
    "mode",
    "pattern",
    "placeholder",
    "policy",
    "prefix",
    "prompt",
    "regex",
    "required",
    "reset",
    "size",
    "style",
    "timeout",
    "ttl",
    "type",
    "uri",
    "url",
    "validator",
    "variable",
    "version",
];

/// Whether the identifier that goes on after the keyword (ending at
/// `end` of `name`) holds a word of [`ATTRIBUTE_WORDS`].
fn names_an_attribute(name: &[u8], end: usize) -> bool {
    let rest = &name[end..];
    let len = rest
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || b"_-.".contains(b)))
        .unwrap_or(rest.len());
    let rest = &rest[..len];
    let mut words: Vec<Vec<u8>> = Vec::new();
    let mut word = Vec::new();
    for (i, &b) in rest.iter().enumerate() {
        let step = i > 0 && b.is_ascii_uppercase() && rest[i - 1].is_ascii_lowercase();
        if !b.is_ascii_alphanumeric() || step {
            words.push(std::mem::take(&mut word));
        }
        if b.is_ascii_alphanumeric() {
            word.push(b.to_ascii_lowercase());
        }
    }
    words.push(word);
    // A stored credential's id (Jenkins' `tokenCredentialId`,
    // `credentialsId`) names one kept elsewhere.
    let credential_id = words
        .windows(2)
        .any(|w| w[0].starts_with(b"credential") && w[1] == b"id");
    credential_id
        || words
            .iter()
            .any(|w| ATTRIBUTE_WORDS.iter().any(|a| a.as_bytes() == w.as_slice()))
}

/// Words that, right before the keyword, name a token that grants
/// nothing: a page cursor (`PageToken`, `next_token`, AWS's `NextToken`,
/// `continuationToken`), a sync or cancellation token, an idempotency key,
/// Postman's cache-busting `Postman-Token`, EC2's `PurchaseToken`.
const NOT_CREDENTIAL_QUALIFIERS: &[&str] = &[
    "page",
    "next",
    "continuation",
    "pagination",
    "sync",
    "cancellation",
    "idempotency",
    "resume",
    "postman",
    "purchase",
];

/// Whether the keyword at `p` of the (lowercased) name follows a word of
/// [`NOT_CREDENTIAL_QUALIFIERS`], with or without a `_`, `-` or `.`
/// between them (`nextPageToken`, `NEXT_TOKEN`).
fn qualified(lower: &[u8], p: usize) -> bool {
    let before = &lower[..p];
    let before = before
        .strip_suffix(b"_")
        .or_else(|| before.strip_suffix(b"-"))
        .or_else(|| before.strip_suffix(b"."))
        .unwrap_or(before);
    NOT_CREDENTIAL_QUALIFIERS
        .iter()
        .any(|q| before.ends_with(q.as_bytes()))
}

fn word_start(name: &[u8], lower: &[u8], p: usize) -> bool {
    if p == 0 || !name[p - 1].is_ascii_alphanumeric() || !name[p].is_ascii_alphanumeric() {
        return true;
    }
    let (before, here) = (name[p - 1], name[p]);
    if here.is_ascii_uppercase() && (before.is_ascii_lowercase() || before.is_ascii_digit()) {
        return true;
    }
    NAME_COMPOUNDS.iter().any(|c| {
        lower[..p].ends_with(c.as_bytes()) && {
            let q = p - c.len();
            q == 0 || !name[q - 1].is_ascii_alphanumeric()
        }
    })
}

fn word_end(name: &[u8], end: usize, kw: &[u8]) -> bool {
    let Some(&next) = name.get(end) else {
        return true;
    };
    if !next.is_ascii_alphanumeric() || kw.last().is_some_and(|b| !b.is_ascii_alphanumeric()) {
        return true;
    }
    let last = name[end - 1];
    if next.is_ascii_digit() || (next.is_ascii_uppercase() && last.is_ascii_lowercase()) {
        return true;
    }
    // A plural: `tokens`, `PASSWORDS`.
    matches!(next, b's' | b'S')
        && name
            .get(end + 1)
            .is_none_or(|b| !b.is_ascii_alphanumeric() || b.is_ascii_uppercase())
}

/// Whether the value a generic rule found is data of another kind: a
/// number, a quantity, a date or a version (`1515902314887`, `3600s`,
/// `2024-01-31`, `==4.0.3`, `v1.2.3-rc1`), a path of words
/// (`config/db/prod.yml`), or the tail of a shell expansion
/// (`${PW:+has-password}` leaves `+has-password}`). In `code`, also a
/// name that names a credential (`RealtimeSessionClientSecret`); in a data
/// format that is the value written.
pub fn is_not_a_secret_value(v: &[u8], code: bool) -> bool {
    // Escapes that end the value inside a string literal (`...}\n"`) are
    // not part of it.
    let mut v = v;
    while let Some(rest) = [b"\\n", b"\\r", b"\\t"]
        .iter()
        .find_map(|e| v.strip_suffix(&e[..]))
    {
        v = rest;
    }
    if !v.iter().any(u8::is_ascii_alphabetic) {
        return true;
    }
    let digits = v.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits > 0 && v.len() - digits <= 2 && v[digits..].iter().all(u8::is_ascii_alphabetic) {
        return true;
    }
    if is_version(v) || is_timestamp(v) {
        return true;
    }
    if matches!(v.first(), Some(b'+' | b'-' | b'?' | b':' | b'=')) && v.last() == Some(&b'}') {
        return true;
    }
    // A template cut at its first slot: `"eyJhbGciOi...9.{header}"`.
    if v.last() == Some(&b'{') {
        return true;
    }
    if (code && is_credential_identifier(v)) || is_selector_or_member_assignment(v) {
        return true;
    }
    // Markup the value ran into: a Word document's `admin</w:t><w:br`.
    if memchr::memmem::find(v, b"</").is_some() || memchr::memmem::find(v, b"/>").is_some() {
        return true;
    }
    // Another assignment after an empty one (`A_PASSWORD= B_HOST=0.0.0.0`),
    // or a list of field names (`password:uid:gid:gecos:home:shell`).
    if let Some(eq) = v.iter().position(|&b| b == b'=') {
        if eq > 0
            && v.get(eq + 1).is_some_and(|&b| b != b'=')
            && v[..eq]
                .iter()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_')
            && v[0].is_ascii_uppercase()
        {
            return true;
        }
    }
    if v.split(|&b| b == b':').count() >= 3
        && v.split(|&b| b == b':')
            .all(|w| !w.is_empty() && w.iter().all(u8::is_ascii_lowercase))
    {
        return true;
    }
    // A dotted name: a syntax scope (an editor mode's `token:
    // 'keyword.control.actionscript.2'`), another resource's attribute
    // (Terraform's `random_password.db.result`), a package.
    if v.split(|&b| b == b'.').count() >= 3
        && v.split(|&b| b == b'.').all(|w| {
            !w.is_empty()
                && (w.iter().all(u8::is_ascii_digit)
                    || (w[0].is_ascii_lowercase()
                        && w.iter().all(|b| {
                            b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-".contains(b)
                        })))
        })
    {
        return true;
    }
    // Documentation's choice of values (`True|False`, `enabled|disabled`),
    // or a form's validation rules (Laravel's `required|string|min:8`).
    if v.contains(&b'|')
        && v.split(|&b| b == b'|').all(|w| {
            let (name, args) = match w.iter().position(|&b| b == b':') {
                Some(i) => (&w[..i], Some(&w[i + 1..])),
                None => (w, None),
            };
            name.len() > 1
                && name.iter().all(|b| b.is_ascii_alphabetic() || *b == b'_')
                && args.is_none_or(|a| {
                    !a.is_empty()
                        && a.iter()
                            .all(|b| b.is_ascii_alphanumeric() || b"_,.-".contains(b))
                })
        })
    {
        return true;
    }
    if is_namespaced_class(v) || is_ethereum_address(v) {
        return true;
    }
    // One validation rule naming another credential field (Laravel's
    // `same:confirm-password`, `different:old_password`).
    if let Some(colon) = v.iter().position(|&b| b == b':') {
        let (rule, field) = (&v[..colon], &v[colon + 1..]);
        if rule.len() > 2
            && rule.iter().all(u8::is_ascii_lowercase)
            && field
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-".contains(b))
            && CREDENTIAL_WORDS
                .iter()
                .any(|w| memchr::memmem::find(field, w.as_bytes()).is_some())
        {
            return true;
        }
    }
    // A stylesheet's rule after a pseudo-class: `.ti-password:before{content:`.
    if let Some(brace) = v.iter().position(|&b| b == b'{') {
        let property = &v[brace + 1..];
        let colon = property.iter().position(|&b| b == b':');
        if v[..brace]
            .iter()
            .all(|b| b.is_ascii_alphabetic() || *b == b'-')
            && colon.is_some_and(|c| {
                c > 0
                    && property[..c]
                        .iter()
                        .all(|b| b.is_ascii_lowercase() || *b == b'-')
            })
        {
            return true;
        }
    }
    v.contains(&b'/')
        && v.split(|&b| b == b'/').all(|seg| {
            seg.iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(b))
                || (seg.len() > 1
                    && seg[0].is_ascii_uppercase()
                    && seg[1..].iter().all(u8::is_ascii_lowercase))
        })
}

/// Words that name a credential: an identifier built of words, one of
/// them one of these, names a credential instead of holding one.
const CREDENTIAL_WORDS: &[&str] = &[
    "auth",
    "credential",
    "credentials",
    "key",
    "keys",
    "pass",
    "passwd",
    "password",
    "pwd",
    "secret",
    "secrets",
    "token",
    "tokens",
];

/// Whether `v` is a name in code that names a credential: an identifier
/// whose words (split at `_` and camelCase steps) are all letters, save a
/// trailing number, one of them a credential word. A type annotation
/// (`client_secret: RealtimeSessionClientSecret`), a variable passed on
/// (`api_key = _api_key_explicitly_provided`) or a constant's name
/// (`_X509_SUBJECT_TOKEN_TYPE`); never a random secret, whose case and
/// digits fall anywhere.
fn is_credential_identifier(v: &[u8]) -> bool {
    let body = v.strip_prefix(b"$").unwrap_or(v);
    if body.is_empty()
        || body[0].is_ascii_digit()
        || !body.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
    {
        return false;
    }
    let mut words: Vec<&[u8]> = Vec::new();
    for part in body.split(|&b| b == b'_').filter(|p| !p.is_empty()) {
        let mut start = 0;
        for i in 1..part.len() {
            let (a, b) = (part[i - 1], part[i]);
            let next_lower = part.get(i + 1).is_some_and(u8::is_ascii_lowercase);
            // `fooBar`, and `ADToken` (an acronym before a word).
            if (a.is_ascii_lowercase() && b.is_ascii_uppercase())
                || (a.is_ascii_uppercase() && b.is_ascii_uppercase() && next_lower)
            {
                words.push(&part[start..i]);
                start = i;
            }
        }
        words.push(&part[start..]);
    }
    // A one-letter word is one in a constant's name (`X509`) only; in a
    // camelCase name a capital before a word begins an acronym with it
    // (`OAuthFlowPassword`).
    let constant = !body.iter().any(u8::is_ascii_lowercase);
    if !constant {
        let mut k = 0;
        while k + 1 < words.len() {
            if words[k].len() == 1 && words[k][0].is_ascii_uppercase() {
                words.remove(k);
            } else {
                k += 1;
            }
        }
    }
    let wordy = |w: &&[u8]| {
        let letters = w.iter().take_while(|b| b.is_ascii_alphabetic()).count();
        (letters > 1 || (constant && letters == 1))
            && w[letters..].iter().all(u8::is_ascii_digit)
            && (w[1..letters].iter().all(u8::is_ascii_lowercase)
                || w[..letters].iter().all(u8::is_ascii_uppercase))
    };
    // A generic type's parameter suffix: `_AzureTokenProviderT`.
    if words.len() > 2
        && words
            .last()
            .is_some_and(|w| w.len() == 1 && w[0].is_ascii_uppercase())
    {
        words.pop();
    }
    words.len() >= 2
        && words.iter().all(wordy)
        && words.iter().any(|w| {
            let lower = w.to_ascii_lowercase();
            CREDENTIAL_WORDS
                .iter()
                .any(|c| c.as_bytes() == lower.as_slice())
        })
}

/// Code in minified JavaScript and its stylesheets: a CSS class selector
/// (`passwordInput: '.basic_auth__password'`) or a chain of assignments
/// to members (`TokenNode=e.AbstractMmlNode=e.indent…`).
fn is_selector_or_member_assignment(v: &[u8]) -> bool {
    // An identifier, or with `-` among `punct` a class name.
    let ident = |w: &[u8], punct: &[u8]| {
        w.first()
            .is_some_and(|b| b.is_ascii_alphabetic() || punct.contains(b))
            && w.iter()
                .all(|b| b.is_ascii_alphanumeric() || punct.contains(b))
    };
    if let Some(class) = v.strip_prefix(b".") {
        return ident(class, b"_$-");
    }
    let Some(eq) = v.iter().position(|&b| b == b'=') else {
        return false;
    };
    let mut parts = v[..eq].split(|&b| b == b'.');
    let member = parts.next().is_some_and(|p| ident(p, b"_$")) && {
        let rest: Vec<&[u8]> = parts.collect();
        !rest.is_empty() && rest.iter().all(|p| ident(p, b"_$"))
    };
    member
        && v.get(eq + 1)
            .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
}

/// A PHP class by its namespace (`Auth\\PasswordController`,
/// `Illuminate\\Support\\Facades\\Password::class`): capitalised
/// identifiers joined by backslashes (doubled inside a string).
fn is_namespaced_class(v: &[u8]) -> bool {
    let v = v.strip_suffix(b"::class").unwrap_or(v);
    let v = v
        .strip_prefix(b"\\\\")
        .or(v.strip_prefix(b"\\"))
        .unwrap_or(v);
    let parts: Vec<&[u8]> = v.split(|&b| b == b'\\').filter(|p| !p.is_empty()).collect();
    parts.len() >= 2
        && v.windows(3).all(|w| w != b"\\\\\\")
        && parts.iter().all(|p| {
            p[0].is_ascii_uppercase() && p.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
        })
}

/// An Ethereum account or contract address: `0x` and 40 hex digits, a
/// public name (a private key has 64).
fn is_ethereum_address(v: &[u8]) -> bool {
    v.len() == 42
        && (v.starts_with(b"0x") || v.starts_with(b"0X"))
        && v[2..].iter().all(u8::is_ascii_hexdigit)
}

/// An ISO 8601 date or date and time: `2024-01-31`, `2024-01-31T10:00:00Z`.
fn is_timestamp(v: &[u8]) -> bool {
    let digits =
        |r: std::ops::Range<usize>| v.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    v.len() >= 10
        && digits(0..4)
        && v[4] == b'-'
        && digits(5..7)
        && v[7] == b'-'
        && digits(8..10)
        && v[10..]
            .iter()
            .all(|b| b.is_ascii_digit() || b":.TZ+-".contains(b))
}

/// `1.2`, `v1.2.3`, `==4.0.3`, `^1.2.3-beta.1`, `~>2.0`, a Debian package's
/// `1:4.5-1ubuntu2.5`: digits and dots after an optional operator, epoch
/// and `v`, with an optional pre-release or packaging tail.
fn is_version(v: &[u8]) -> bool {
    let v = {
        let start = v
            .iter()
            .position(|b| !b"=<>~^!".contains(b))
            .unwrap_or(v.len());
        &v[start..]
    };
    let v = match v.iter().position(|&b| b == b':') {
        Some(i @ 1..=3) if v[..i].iter().all(u8::is_ascii_digit) => &v[i + 1..],
        _ => v,
    };
    let v = v.strip_prefix(b"v").unwrap_or(v);
    let core_end = v
        .iter()
        .position(|b| !b.is_ascii_digit() && *b != b'.')
        .unwrap_or(v.len());
    let core = &v[..core_end];
    let dotted = core.first().is_some_and(u8::is_ascii_digit)
        && core.contains(&b'.')
        && !core.ends_with(b".")
        && !core.windows(2).any(|w| w == b"..");
    dotted
        && match v.get(core_end) {
            None => true,
            Some(b'-' | b'+') => v[core_end + 1..]
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b".+~".contains(b)),
            _ => false,
        }
}

/// Whether a third or more of the secret, and at least 12 characters, is
/// one short pattern repeated (`123123123123`, `abababababab`): filler,
/// not randomness. Long secrets (keys, certificates) are left alone.
pub fn is_mostly_repetition(secret: &[u8]) -> bool {
    if secret.len() > 512 {
        return false;
    }
    let need = (secret.len() / 3).max(12);
    (1..=4).any(|period| {
        let mut run = 0;
        for i in period..secret.len() {
            if secret[i] == secret[i - period] {
                run += 1;
                if run + period >= need {
                    return true;
                }
            } else {
                run = 0;
            }
        }
        false
    })
}

/// Extensions of files a secret never names itself after: a token
/// followed by `.png` is a content hash in an asset's file name.
const FILE_EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "svg", "ico", "webp", "bmp", "css", "js", "mjs", "map", "woff",
    "woff2", "ttf", "eot", "otf", "mp3", "mp4", "webm", "pdf", "html", "htm", "json", "xml", "txt",
    "zip", "gz", "tar", "wasm",
];

/// Whether the bytes after a secret make it part of a file name
/// (`7a38….png`).
pub fn is_file_name_stem(after: &[u8]) -> bool {
    let Some(rest) = after.strip_prefix(b".") else {
        return false;
    };
    let ext_len = rest
        .iter()
        .position(|b| !b.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    let ext = rest[..ext_len].to_ascii_lowercase();
    FILE_EXTENSIONS
        .iter()
        .any(|e| e.as_bytes() == ext.as_slice())
}

/// Whether a secret without `+` or `/` in it, at `hay[span]`, is a piece
/// of a longer base64 blob (a font or an image inlined in a bundle or an
/// SVG): the run of base64 characters through it goes on at least 32
/// bytes past the secret and holds both `+` and `/` there. A token's
/// alphabet has neither, so a token written in text or a URL is cut from
/// its neighbours by other bytes.
pub fn is_inside_base64_blob(hay: &[u8], span: std::ops::Range<usize>) -> bool {
    let secret = &hay[span.clone()];
    let b64 = |b: &u8| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/';
    if secret.iter().any(|b| *b == b'+' || *b == b'/') {
        return false;
    }
    let touches = |b: Option<&u8>| b.is_some_and(|b| *b == b'+' || *b == b'/');
    if !touches(span.start.checked_sub(1).map(|i| &hay[i])) && !touches(hay.get(span.end)) {
        return false;
    }
    const REACH: usize = 256;
    let before = &hay[span.start.saturating_sub(REACH)..span.start];
    let before = &before[before.iter().rposition(|b| !b64(b)).map_or(0, |i| i + 1)..];
    let after = &hay[span.end..hay.len().min(span.end + REACH)];
    let after = &after[..after.iter().position(|b| !b64(b)).unwrap_or(after.len())];
    let has = |c: u8| before.contains(&c) || after.contains(&c);
    before.len() + after.len() >= 32 && has(b'+') && has(b'/')
}

/// Whether a quoted value is the first word of a phrase: the quote that
/// opened it (`quote`, the byte before the value) closes later on the line,
/// past a space and another word (`'password_empty' => 'Make sure …'`, a
/// translation). A secret has no spaces; `after` is what follows the
/// value.
pub fn opens_a_phrase(quote: Option<u8>, after: &[u8]) -> bool {
    let Some(q @ (b'"' | b'\'' | b'`')) = quote else {
        return false;
    };
    let line = &after[..memchr::memchr(b'\n', after).unwrap_or(after.len())];
    line.first() == Some(&b' ')
        && line
            .get(1)
            .is_some_and(|&b| !b.is_ascii_whitespace() && b != q)
        && line[1..].contains(&q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_in_another_language_is_a_placeholder() {
        for word in [
            "contrasena",
            "Contraseña",
            "Passwort1",
            "senha123",
            "hasło",
            "Contrasenya",
            "Passwörter",
            "password",
            "Password123",
            "SomeRandomStringWith32Characters",
            "whatever",
            "Something1",
            "yourcoverallsprojectrepositorytoken",
            "my_api_key",
        ] {
            assert!(is_placeholder(word.as_bytes()), "{word}");
        }
        for value in ["contrasena-Xq7v", "Senha#Rk2vLm9", "parolaccia"] {
            assert!(!is_placeholder(value.as_bytes()), "{value}");
        }
    }

    #[test]
    fn a_slot_in_braces_is_a_reference_and_a_braced_value_is_not() {
        for slot in [
            &b"{user_name}"[..],
            b"{{ password }}",
            b"{0}",
            b"{}",
            b"{AWS_SECRET_KEY_2}",
        ] {
            assert!(is_env_reference(slot), "{}", String::from_utf8_lossy(slot));
        }
        // Jenkins' encrypted secrets are braced base64, some without `+`,
        // `/` or padding.
        let jenkins =
            b"{AQAAABAAAAAgajsArEymUEmaVkOge4hIPJo7I6YSbojLbZdhHUcdaa4c1NrGfY8YvpTH27LXEa2W}";
        assert!(!is_env_reference(jenkins));
    }

    #[test]
    fn a_keyword_counts_only_as_a_word_of_the_name() {
        let kw = |k: &str| vec![k.as_bytes().to_vec()];
        for name in [
            "GITHUB_TOKEN=",
            "this.authToken = \"",
            "accesstoken: ",
            "\"token\": \"",
            "x-auth-token: ",
            "TOKENS=",
            "tokens: ",
            "token2=",
            "CSRFTOKEN=",
        ] {
            assert!(keyword_is_a_word(name.as_bytes(), &kw("token")), "{name}");
        }
        for name in [
            "tokenizer = ",
            "notiktoken==",
            "TIKTOKEN_VERSION=",
            "detokenize: ",
            "tokenset=",
        ] {
            assert!(!keyword_is_a_word(name.as_bytes(), &kw("token")), "{name}");
        }
        assert!(!keyword_is_a_word(
            b"\"timePasswordChanged\": ",
            &kw("password")
        ));
        for name in [
            "token.style = ",
            "nacl.box.secretKeyLength = ",
            "TOKEN_URL=",
            "password_min_length: ",
        ] {
            let kws = [b"token".to_vec(), b"secret".to_vec(), b"password".to_vec()];
            assert!(!keyword_is_a_word(name.as_bytes(), &kws), "{name}");
        }
        assert!(keyword_is_a_word(b"secret_key_base: ", &kw("secret")));
        assert!(keyword_is_a_word(b"DB_PASSWORD=", &kw("password")));
        assert!(keyword_is_a_word(b"dbpassword=", &kw("password")));
        assert!(!keyword_is_a_word(b"onepasswordcli=", &kw("password")));
        assert!(keyword_is_a_word(b"x-api-key: ", &kw("api-key")));
        // Cursors and other tokens that grant nothing.
        for name in [
            "?PageToken=",
            "\"nextPageToken\": \"",
            "NextToken: ",
            "next_token=",
            "continuation-token: ",
            "SYNC_TOKEN=",
            "cancellationToken = \"",
            "Postman-Token: ",
            "'PurchaseToken': '",
        ] {
            assert!(!keyword_is_a_word(name.as_bytes(), &kw("token")), "{name}");
        }
        assert!(keyword_is_a_word(b"pageAccessToken=", &kw("token")));
    }

    #[test]
    fn numbers_versions_paths_and_expansion_tails_are_not_secret_values() {
        for v in [
            "1515902314887",
            "3600s",
            "512Mi",
            "2024-01-31T10:00:00",
            "==4.0.3",
            "v1.2.3-rc.1",
            "^10.4.2",
            "1:4.5-1ubuntu2.5",
            "2.36-9+deb12u4",
            "config/db/prod.yml",
            "src/Main/resources",
            "+has-password}",
            "+has-password}\\n",
            "RealtimeSessionClientSecret",
            "CustomerPaymentTokenService",
            "AsyncAzureADTokenProvider",
            "_AzureTokenProviderT",
            "_api_key_explicitly_provided",
            "_X509_SUBJECT_TOKEN_TYPE",
            "OAuthFlowPassword",
            "$dbPassword",
            "eyJhbGciOiJSUzI1NiJ9.{",
            ".basic_auth__password",
            ".input_apiKey_entry",
            "e.AbstractMmlNode=e.indentAttributes=e.TEXCLASS",
            "True|False",
            "admin</w:t></w:r></w:p><w:p",
            "VCAP_APP_HOST=0.0.0.0",
            "uid:gid:gecos:home:shell",
            "keyword.control.actionscript.2",
            "random_password.db-password.result",
            "azurerm_kubernetes_cluster.main.kube_config.0.password",
            "required|string|min:8|confirmed",
            "nullable|required_with:password|current_password",
            "sometimes|nullable|min:8",
            "Auth\\PasswordController",
            "Illuminate\\Support\\Facades\\Password::class",
            "\\App\\Http\\Middleware\\RequirePassword",
            "0xff970a61a04b1ca14834a43f5de4533ebddb5cc8",
            "before{content:",
            "-ms-clear{display:",
            "same:confirm-password",
            "different:old_password",
        ] {
            assert!(is_not_a_secret_value(v.as_bytes(), true), "{v}");
        }
        for v in [
            "273Du2m2PEr8spNY",
            "kYpIygfdM7ENA8d5/vFldPGYYJvW5hANsbEvrSFag",
            "1.2.3abc-XYZ9q",
            "12345:4.5-x",
            "a1:4.5-x",
            "v2Fk93kdl.2kd",
            // Random, or words without a credential word.
            "tGN0bIwXnHdwOa85VABjPdSn8nWY7G7I",
            "Tr0ub4dorSecret9x",
            "CorrectHorseBatteryStaple",
            "hunter2_Secret_xQ9",
            ".Tr0ub4dor&3",
            "sv=2022-11-02&ss=b&sig=Qx7Lm2Kp9Zt4Vn8Rw3Yc6Bd1Hf5Jg0Ns",
            "dGhpcyBpcyBhIHRlc3Q=",
            "Kq9|xW2|Lm7",
            "QUJDREVG==",
            "QUJD=",
            "x9K2.mq7z.p3lw",
            "s3cr3t.k3y",
            // Near the shapes above, but values.
            "Kq9|xW2:L%m7",
            "Tr0ub\\4dor",
            "A\\\\\\B",
            "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318",
            "Xq{9v:Lm2K}",
            "admin:Tr0ub4dor",
            "svc:pass-Xq7Lm2",
        ] {
            assert!(!is_not_a_secret_value(v.as_bytes(), true), "{v}");
        }
        // A name in code; in a data format, the value written.
        for v in ["UberSecretPassword", "_X509_SUBJECT_TOKEN_TYPE"] {
            assert!(is_not_a_secret_value(v.as_bytes(), true), "{v}");
            assert!(!is_not_a_secret_value(v.as_bytes(), false), "{v}");
        }
    }

    #[test]
    fn repeated_filler_is_told_from_random_text() {
        assert!(is_mostly_repetition(b"GR134894112312312312312312"));
        assert!(is_mostly_repetition(b"abababababababab"));
        let token = ["GR1348941", "yJ3kD9xQ2mZ7pL4vB8nC"].concat();
        assert!(!is_mostly_repetition(token.as_bytes()));
        assert!(!is_mostly_repetition(
            b"kYpIygfdM7ENA8d5vFldPGYYJvW5hANsbEvrSFag"
        ));
        // An OpenSSH key's header holds a run of `A`s: a small part of it.
        let key = format!(
            "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAB{}",
            "lwAAAAdzc2gtcnNhAAAAAwEAAQAAAYEAu5kY3mQ9pZ7xT2vB8nC4rJ6wH1sD0fG3kL5mN7pQ9"
        );
        assert!(!is_mostly_repetition(key.as_bytes()));
    }

    #[test]
    fn a_token_shape_inside_a_base64_blob_is_part_of_it() {
        let blob = |mid: &str| {
            format!("url(data:font/woff2;base64,d09GMgABAAAAA+gT/xQ{mid}/Zk9+Lm2Qx7Rt4Vw8Yp3Kd6Nf1Hb5Jc0Gs)")
        };
        let shape = "EAAECBAgQIECg0gJ3G8mnz07nq5fmk4fHk2ZZ6Xk0T4A";
        let at = |hay: &str| {
            let s = hay.find(shape).unwrap();
            s..s + shape.len()
        };
        let hay = blob(shape);
        assert!(is_inside_base64_blob(hay.as_bytes(), at(&hay)));
        // Written in text, or as a segment of a URL's path.
        for hay in [
            format!("FB_TOKEN={shape}\n"),
            format!("https://graph.facebook.com/v19.0/{shape}/accounts"),
            format!("a/b+c {shape}/x"),
        ] {
            assert!(!is_inside_base64_blob(hay.as_bytes(), at(&hay)), "{hay}");
        }
    }

    #[test]
    fn a_quoted_value_that_opens_a_phrase_is_prose() {
        assert!(opens_a_phrase(Some(b'\''), b" completat parola.',\n"));
        assert!(opens_a_phrase(Some(b'"'), b" password\","));
        // Not quoted, not followed by a word, or the quote closed first.
        assert!(!opens_a_phrase(Some(b'='), b" password',"));
        assert!(!opens_a_phrase(None, b" two words'"));
        assert!(!opens_a_phrase(Some(b'"'), b"\" # the prod one"));
        assert!(!opens_a_phrase(Some(b'"'), b"  \"x\""));
        assert!(!opens_a_phrase(Some(b'\''), b" words\nand a quote'"));
    }

    #[test]
    fn an_asset_file_name_is_not_a_secret() {
        assert!(is_file_name_stem(b".png\")"));
        assert!(is_file_name_stem(b".WOFF2 "));
        assert!(!is_file_name_stem(b".example.com"));
        assert!(!is_file_name_stem(b"\" "));
        assert!(!is_file_name_stem(b"."));
    }

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
            "not_a_real_password",
            "mypassword",
            "test-$RANDOM-password",
            "some_password",
            "supersecretpassword",
            "SomeKindOfPassword123!@#",
            "PassWordMustBeAtLeast6Chars.",
            "eyJ2IjoiMSIsInMiOjEsImMiOi...",
            "%7BENCODED_PASSWORD%7D",
            "%25%21%2A%27%28%29%3B%3A%40%26",
            // RFC 6749's example access token.
            "2YotnFZFEjr1zCsicMWpAA",
            "[Filtered]",
            "[FILTERED]",
            "[masked value]",
            "wrongpass",
            "wrong_password",
            "invalidPassword",
            "BadPassword1!",
            "incorrect-pwd",
        ] {
            assert!(is_placeholder(p.as_bytes()), "{p}");
        }
        let jwt_io = [
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9",
            "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ",
            "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
        ]
        .join(".");
        assert!(is_placeholder(jwt_io.as_bytes()));
        for s in [
            "kQ3vN8sLw2XzR5tYb7Mf",
            "[Kq9xZ2mPw4]",
            "Badger-Pass-2291",
            "passwrong",
            "$apr1$Jd8/a$k2mZ",
            "hunter2!Qx",
            "p%40ss%3Aw0rd-Kq9x",
            "Password123!",
            "P@ssw0rd",
            "AdminPassword1",
            "petclinicpassword",
            "customPassword",
        ] {
            assert!(!is_placeholder(s.as_bytes()), "{s}");
        }
    }
}
