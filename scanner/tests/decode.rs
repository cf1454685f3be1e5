//! Secrets in encoded text: base64 (Kubernetes Secret data), nested
//! base64, percent-encoding, hex and escaped PEM blocks are decoded and
//! scanned again; a finding points at the encoded text and names the
//! decodings.

use keyburn_scanner::engine::decode::{DecodeOptions, Encoding};
use keyburn_scanner::engine::EngineBuilder;
use keyburn_scanner::finding::{Finding, LineIndex};
use keyburn_scanner::rules::RuleSet;

fn b64(s: &str) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in s.as_bytes().chunks(3) {
        let n = c
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= c.len() {
                A[(n >> (18 - 6 * i) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

fn findings(text: &str, depth: u8) -> Vec<Finding> {
    findings_with(
        text,
        DecodeOptions {
            depth,
            ..Default::default()
        },
    )
}

fn findings_with(text: &str, decode: DecodeOptions) -> Vec<Finding> {
    let engine = EngineBuilder::new(RuleSet::builtin())
        .decode(decode)
        .build()
        .unwrap();
    let mut lines = LineIndex::new();
    let mut out = Vec::new();
    engine.scan_into(
        Some("deploy/secret.yaml"),
        text.as_bytes(),
        &mut Default::default(),
        &mut out,
    );
    // Context rules only lend parts; a scan never reports them.
    out.iter()
        .filter(|m| !engine.rules()[m.rule].context)
        .map(|m| {
            Finding::new(
                &engine.rules()[m.rule],
                "deploy/secret.yaml",
                text.as_bytes(),
                m,
                &mut lines,
            )
        })
        .collect()
}

/// A Slack bot token, assembled so that none sits in this file.
fn slack() -> String {
    [
        "xoxb",
        "2847561938",
        "7391846205",
        "Qm7Zp2Lx9Vr4Tn8Kc3Wd6Yh1",
    ]
    .join("-")
}

#[test]
fn a_kubernetes_secret_s_data_is_decoded_with_its_key_name() {
    let text = format!(
        "apiVersion: v1\nkind: Secret\ndata:\n  db_password: {}\n  slack: {}\n",
        b64("Tr0ub4dor-prod-2024"),
        b64(&slack())
    );
    let found = findings(&text, 2);
    let pw = found
        .iter()
        .find(|f| f.rule_id == "kubernetes-secret-string-data")
        .unwrap();
    assert_eq!(pw.secret, "Tr0ub4dor-prod-2024");
    assert_eq!(pw.decoded_from, [Encoding::Base64]);
    assert_eq!(
        (pw.location.line, pw.location.column),
        (4, 16),
        "at the encoded text"
    );
    let token = found
        .iter()
        .find(|f| f.rule_id == "slack-bot-token")
        .unwrap();
    assert_eq!(token.secret, slack());
    // The base64 itself is not reported as a generic token as well.
    assert!(
        !found.iter().any(|f| f.decoded_from.is_empty()),
        "{found:#?}"
    );
}

/// A short value (a password under 12 bytes encodes to under 16
/// characters) is told from a word by its padding, and decoded too.
#[test]
fn short_padded_base64_is_decoded_and_a_bare_word_is_not() {
    let text = format!(
        "apiVersion: v1\nkind: Secret\ndata:\n  password: {}\n  username: {}\n",
        b64("h4rd2Guess"),
        b64("admin")
    );
    let found = findings(&text, 2);
    let secrets: Vec<(&str, &[Encoding])> = found
        .iter()
        .map(|f| (f.secret.as_str(), f.decoded_from.as_slice()))
        .collect();
    assert_eq!(secrets, [("h4rd2Guess", &[Encoding::Base64][..])]);
    // Unpadded, a short mixed-case word is left alone: no decoding runs
    // on every identifier.
    let plain = "apiVersion: v1\nkind: Secret\nstringData:\n  password: Hunter2Go\n";
    let found = findings(plain, 2);
    assert!(
        found.iter().all(|f| f.decoded_from.is_empty()),
        "{found:#?}"
    );
    assert_eq!(found.len(), 1, "{found:#?}");
}

#[test]
fn nested_base64_is_found_to_the_configured_depth_and_no_deeper() {
    let text = format!(
        "blob = \"{}\"\n",
        b64(&b64(&format!("SLACK_TOKEN={}", slack())))
    );
    let found = findings(&text, 2);
    let f = found
        .iter()
        .find(|f| f.rule_id == "slack-bot-token")
        .unwrap();
    assert_eq!(f.decoded_from, [Encoding::Base64, Encoding::Base64]);
    assert!(findings(&text, 1)
        .iter()
        .all(|f| f.rule_id != "slack-bot-token"));
    assert!(findings(&text, 0).is_empty());
}

#[test]
fn percent_encoded_and_hex_encoded_secrets_are_found() {
    let url = "postgres%3A%2F%2Fetl%3ApNcTa6XA5OHVZPp2bPVl%40db.internal.acme.io%3A5432%2Fapp";
    let found = findings(&format!("DATABASE_URL={url}\n"), 2);
    let f = found
        .iter()
        .find(|f| f.rule_id == "postgres-url-password")
        .unwrap();
    assert_eq!(f.secret, "pNcTa6XA5OHVZPp2bPVl");
    assert_eq!(f.decoded_from, [Encoding::Percent]);

    let hex: String = format!("token={}", slack())
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect();
    let found = findings(&format!("payload: {hex}\n"), 2);
    let f = found
        .iter()
        .find(|f| f.rule_id == "slack-bot-token")
        .unwrap();
    assert_eq!(f.decoded_from, [Encoding::Hex]);
}

#[test]
fn a_private_key_written_on_one_line_with_escapes_is_found() {
    let body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\\nMzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\\nNMoSfm76oqFvAp8Gy0iz5sxjZmSnXyCdPEovGhLa0VzMaQ8s+CLOyS56YyCFGeJZ";
    let text = format!(
        "{{\"private_key\": \"-----BEGIN\\x20PRIVATE\\x20KEY-----\\n{body}\\n-----END\\x20PRIVATE\\x20KEY-----\\n\"}}\n"
    );
    let found = findings(&text, 2);
    let f = found
        .iter()
        .find(|f| f.rule_id.starts_with("private-key"))
        .unwrap_or_else(|| panic!("{found:#?}"));
    assert_eq!(f.decoded_from, [Encoding::Escape]);
}

/// Decoding costs at most its budget of decoded bytes per input, whatever
/// the input holds: runs past the budget stay encoded (the text itself is
/// still scanned), and one enormous run (an embedded bundle or image) is
/// not decoded at all.
#[test]
fn decoding_is_bounded_by_its_budget_and_an_enormous_run_stays_encoded() {
    // 40 encoded secrets, each run decoding to under 80 bytes.
    let lines: Vec<String> = (0..40)
        .map(|i| format!("blob{i} = \"{}\"", b64(&format!("SLACK_TOKEN={}", slack()))))
        .collect();
    let text = lines.join("\n") + "\n";
    let decoded = |budget: usize| {
        findings_with(&text, DecodeOptions { depth: 2, budget })
            .iter()
            .filter(|f| f.rule_id == "slack-bot-token")
            .count()
    };
    assert_eq!(decoded(1 << 20), 40);
    let few = decoded(400);
    assert!((1..=8).contains(&few), "{few} decoded within 400 bytes");

    // A secret encoded inside 4 MiB of base64 on one line is past the
    // longest run decoded; the plain secret after it is found.
    let mut big = String::from("bundle = \"");
    let filler = b64(&"x".repeat(3 << 20));
    big.push_str(&filler[..filler.len() - 4]);
    big.push_str(&b64(&format!("SLACK_TOKEN={}", slack())));
    big.push_str("\"\n");
    big.push_str(&format!("SLACK_TOKEN={}\n", slack()));
    let found = findings(&big, 2);
    let slack_found: Vec<&Finding> = found
        .iter()
        .filter(|f| f.rule_id == "slack-bot-token")
        .collect();
    assert_eq!(slack_found.len(), 1, "{found:#?}");
    assert!(slack_found[0].decoded_from.is_empty());
    assert_eq!(slack_found[0].location.line, 2);
}
