//! The Hyperscan engine reports exactly what the pure-Rust engine reports.
//! Only built with `--features hyperscan`.
#![cfg(feature = "hyperscan")]

use std::sync::OnceLock;

use keyburn_scanner::engine::EngineKind;
use keyburn_scanner::{Engine, EngineBuilder, RuleSet};
use proptest::prelude::*;

fn pair(set: RuleSet) -> (Engine, Engine) {
    let rust = EngineBuilder::new(set.clone()).build().unwrap();
    let hs = EngineBuilder::new(set)
        .kind(EngineKind::Hyperscan)
        .build()
        .unwrap();
    assert_eq!(hs.kind(), EngineKind::Hyperscan);
    (rust, hs)
}

fn builtin_pair() -> &'static (Engine, Engine) {
    static PAIR: OnceLock<(Engine, Engine)> = OnceLock::new();
    PAIR.get_or_init(|| pair(RuleSet::builtin()))
}

fn assert_same(rust: &Engine, hs: &Engine, hay: &[u8]) {
    let a = rust.scan(hay);
    let b = hs.scan(hay);
    assert_eq!(
        a,
        b,
        "engines disagree on {:?}",
        String::from_utf8_lossy(hay)
    );
}

/// Every example and counterexample of every rule, and variants of each
/// that sit just beside the format: one byte changed, cut short, case
/// flipped, glued to word characters.
fn texts_and_near_misses() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for rule in RuleSet::builtin().rules() {
        for t in rule.examples.iter().chain(&rule.counterexamples) {
            let b = t.as_bytes().to_vec();
            let mid = b.len() / 2;
            let mut changed = b.clone();
            changed[mid] = if changed[mid] == b'x' { b'y' } else { b'x' };
            let mut flipped = b.clone();
            flipped.iter_mut().for_each(|c| {
                *c = if c.is_ascii_lowercase() {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            });
            let glued = [b"Zz9".as_slice(), &b, b"9zZ"].concat();
            out.extend([b[..mid].to_vec(), changed, flipped, glued, b]);
        }
    }
    out
}

#[test]
fn rule_examples_and_near_misses_give_the_same_findings() {
    let (rust, hs) = builtin_pair();
    let texts = texts_and_near_misses();
    let mut found = 0;
    for t in &texts {
        assert_same(rust, hs, t);
        found += usize::from(!rust.scan(t).is_empty());
    }
    // The comparison means something only if many texts have findings.
    assert!(found > texts.len() / 5, "{found} of {}", texts.len());
}

/// Regex features the Hyperscan translation must widen, not narrow:
/// look-around, Unicode classes over non-ASCII text, counts far above the
/// translation's cap, an alternation with an empty branch, and a rule with
/// no keyword, which Hyperscan gates over the whole buffer.
#[test]
fn tricky_user_rules_give_the_same_findings() {
    let set = RuleSet::from_toml(
        r#"
[[rule]]
id = "unicode-word"
name = "Unicode word after a key"
regex = '''(?u)\bkey:(?P<secret>\w{3,8})\b'''
keywords = ["key:"]

[[rule]]
id = "long-run"
name = "A long counted run"
regex = '''blob=(?P<secret>[a-f0-9]{40,400})(?:;|$)'''
keywords = ["blob="]

[[rule]]
id = "optional-branch"
name = "Alternation with an empty branch"
regex = '''(?:tok|)_(?P<secret>[A-Z]{5})(?:\s|$)'''
keywords = ["_"]

[[rule]]
id = "no-keyword"
name = "Keyword-less ticket id"
regex = '''TKT-[0-9]{6}\b'''
"#,
        "tricky.toml",
    )
    .unwrap();
    let (rust, hs) = pair(set);
    let hex = "ab12".repeat(30);
    // One case per buffer: a finding elsewhere in the same window would
    // keep the window open and hide a narrowed translation.
    let cases = [
        "key:héllo".to_string(),
        "key:日本語".to_string(),
        "key:abc and key:ab".to_string(),
        format!("blob={hex};"),
        format!("blob={hex}x; blob={}", &hex[..39]),
        "tok_ABCDE x_FGHIJ y_abcde _KLMNO\n".to_string(),
        "TKT-123456 TKT-1234567 xTKT-654321".to_string(),
    ];
    let mut found = 0;
    for c in &cases {
        assert_same(&rust, &hs, c.as_bytes());
        found += rust.scan(c.as_bytes()).len();
    }
    assert!(found >= 8, "only {found} findings: the cases test nothing");
}

#[test]
fn the_database_is_cached_and_a_corrupt_cache_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let build = || {
        EngineBuilder::new(RuleSet::builtin())
            .kind(EngineKind::Hyperscan)
            .cache_dir(Some(dir.path().to_path_buf()))
            .build()
            .unwrap()
    };
    let first = build();
    assert!(
        first.hyperscan_notes()[0].contains("compiled"),
        "{:?}",
        first.hyperscan_notes()
    );
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let second = build();
    assert!(
        second.hyperscan_notes()[0].contains("loaded from"),
        "{:?}",
        second.hyperscan_notes()
    );

    std::fs::write(&files[0], b"[]\nnot a database").unwrap();
    let third = build();
    assert!(
        third.hyperscan_notes()[0].contains("compiled"),
        "{:?}",
        third.hyperscan_notes()
    );
    let hay = format!("aws_access_key_id = {}{}", "AKIA", "Q7XK2M4PZ6RB3TVN");
    assert_eq!(third.scan(hay.as_bytes()), first.scan(hay.as_bytes()));
    assert_eq!(first.scan(hay.as_bytes()).len(), 1);
}

/// A fragment of generated input: random bytes, a rule's text or a near
/// miss, a keyword, or separators.
fn fragment() -> impl Strategy<Value = Vec<u8>> {
    let texts = texts_and_near_misses();
    let keywords: Vec<Vec<u8>> = RuleSet::builtin()
        .rules()
        .iter()
        .flat_map(|r| r.keywords.iter().map(|k| k.as_bytes().to_vec()))
        .collect();
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        "[ -~]{0,80}".prop_map(String::into_bytes),
        proptest::sample::select(texts),
        proptest::sample::select(keywords),
        proptest::sample::select(vec![
            b"\n".to_vec(),
            b" = ".to_vec(),
            b"\"".to_vec(),
            b": ".to_vec(),
            b"\r\n".to_vec(),
        ]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn both_engines_report_exactly_the_same_findings(
        parts in proptest::collection::vec(fragment(), 1..24)
    ) {
        let (rust, hs) = builtin_pair();
        let hay = parts.concat();
        prop_assert_eq!(rust.scan(&hay), hs.scan(&hay));
    }
}
