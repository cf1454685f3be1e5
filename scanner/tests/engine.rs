//! The engine through its public API: filters, requirements, windows,
//! overlaps, allow lists, and robustness on arbitrary bytes.

use std::sync::OnceLock;

use keyburn_scanner::engine::{EngineKind, Scratch};
use keyburn_scanner::{Engine, EngineBuilder, RawMatch, RuleSet};
use proptest::prelude::*;

/// The engine under test: `KEYBURN_ENGINE` (rust or hyperscan) picks it, so
/// that CI runs this whole file once per engine.
fn build(set: RuleSet) -> Engine {
    let kind: EngineKind = std::env::var("KEYBURN_ENGINE")
        .ok()
        .filter(|k| k != "auto")
        .map_or(EngineKind::Rust, |k| k.parse().unwrap());
    EngineBuilder::new(set).kind(kind).build().unwrap()
}

fn builtin() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| build(RuleSet::builtin()))
}

fn ids(engine: &Engine, found: &[RawMatch]) -> Vec<String> {
    found
        .iter()
        .map(|m| engine.rules()[m.rule].id.clone())
        .collect()
}

fn scan_ids(engine: &Engine, text: &str) -> Vec<String> {
    ids(engine, &engine.scan(text.as_bytes()))
}

/// 40 characters of base64 alphabet with high entropy, assembled at run time.
fn aws_secret() -> String {
    [
        "kq7Z", "p2Xw", "9LmB", "rT4s", "Vd8N", "c1Yh", "Gf6J", "u3Qe", "Wa5K", "o0Ri",
    ]
    .concat()
}

fn aws_key_id() -> String {
    format!("{}{}", "AKIA", "Q7XK2M4PZ6RB3TVN")
}

#[test]
fn engine_is_shareable_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Engine>();
}

#[test]
fn a_wrong_checksum_silences_generic_rules_too() {
    let engine = builtin();
    // ghp_ + 36 alphanumerics whose last six are not the CRC of the rest.
    let token = format!("{}{}", "ghp_", "Zx8Kq2Lm7Vb4Nc1Rt6Yw3Ps9Dh5Gf0JaAAAA");
    assert_eq!(
        scan_ids(engine, &format!("token: {token}\n")),
        Vec::<String>::new()
    );
}

#[test]
fn a_paired_secret_key_needs_its_key_id_nearby() {
    let engine = builtin();
    let alone = format!("value,{}\n", aws_secret());
    assert!(!scan_ids(engine, &alone).contains(&"aws-secret-access-key-paired".to_string()));
    let paired = format!("{},{}\n", aws_key_id(), aws_secret());
    let found = scan_ids(engine, &paired);
    assert!(
        found.contains(&"aws-access-key-id".to_string()),
        "{found:?}"
    );
    assert!(
        found.contains(&"aws-secret-access-key-paired".to_string()),
        "{found:?}"
    );
    let far = format!("{}\n{}\n{}\n", aws_key_id(), "#".repeat(2000), aws_secret());
    assert!(!scan_ids(engine, &far).contains(&"aws-secret-access-key-paired".to_string()));
}

#[test]
fn context_rules_only_fire_near_their_keyword() {
    let engine = builtin();
    let token = format!(
        "{}.{}.{}",
        "MTk4NjIyNDgzNDcxOTI1MjQ4", "Cl2FMQ", "ZnCjm1XVW7vRze4b7Cq4se7kKWs-abD2F3Y7d"
    );
    let near = format!("DISCORD_BOT_TOKEN={token}\n");
    assert_eq!(scan_ids(engine, &near), ["discord-bot-token"]);
    let far = format!("discord\n{}\nvalue={token}\n", "x ".repeat(2000));
    assert!(!scan_ids(engine, &far).contains(&"discord-bot-token".to_string()));
}

#[test]
fn one_secret_yields_one_match_and_provider_rules_win_ties() {
    let engine = builtin();
    let key = format!("{}_{}_{}", "sk", "test", "4eC39HqLyjWDarjtT1zdp7dc");
    let found = scan_ids(engine, &format!("stripe.api_key = \"{key}\"\n"));
    assert_eq!(found, ["stripe-test-key"]);
}

#[test]
fn keywordless_user_rules_run_on_every_buffer() {
    let set = RuleSet::from_toml(
        "[[rule]]\nid = \"ticket\"\nname = \"Ticket\"\nregex = '''TKT-[0-9]{6}'''\n",
        "user.toml",
    )
    .unwrap();
    let engine = build(set);
    assert_eq!(
        scan_ids(&engine, "see TKT-123456 and TKT-654321"),
        ["ticket", "ticket"]
    );
}

/// A keyword inside every match lets a rule search only the longest
/// match around each hit; a keyword beside the token (a name before it)
/// still gets the wider window that reaches the token.
#[test]
fn keywords_inside_the_token_and_beside_it_both_find_it() {
    let set = RuleSet::from_toml(
        r#"
[[rule]]
id = "inside"
name = "Keyword inside"
regex = '''\b(?P<secret>(?i:tkn)_[a-z0-9]{30})\b'''
keywords = ["tkn_"]

[[rule]]
id = "beside"
name = "Keyword beside"
regex = '''\b(?P<secret>[A-Z0-9]{24})\b'''
keywords = ["acme"]
"#,
        "user.toml",
    )
    .unwrap();
    let engine = build(set);
    let inside = "k3m9x7q2p8w4n6v1b5z0c8r2t4y6u1";
    let beside = "Q7XK2M4PZ6RB3TVN8HJ5LW9C";
    let text = format!(
        "{}\nTKN_{inside} and again tkn_{inside}\nacme: the deploy key for production is {beside}\n",
        "filler ".repeat(100)
    );
    assert_eq!(scan_ids(&engine, &text), ["inside", "inside", "beside"]);
}

#[test]
fn global_allow_paths_and_rule_paths_are_honoured() {
    let mut set = RuleSet::from_toml(
        "[[rule]]\nid = \"only-env\"\nname = \"Only in .env\"\nregex = '''zq[0-9]{8}'''\nkeywords = [\"zq\"]\npaths = ['''\\.env$''']\n",
        "user.toml",
    )
    .unwrap();
    set.allow.paths.push("^vendor/".into());
    let engine = build(set);
    let scan = |path: &str| {
        let mut out = Vec::new();
        engine.scan_into(
            Some(path),
            b"k=zq12345678",
            &mut Scratch::default(),
            &mut out,
        );
        out.len()
    };
    assert_eq!(scan("app/.env"), 1);
    assert_eq!(scan("app/main.py"), 0);
    assert_eq!(scan("vendor/x/.env"), 0);
}

#[test]
fn secret_group_selects_the_reported_span() {
    let set = RuleSet::from_toml(
        "[[rule]]\nid = \"kv\"\nname = \"KV\"\nregex = '''pw=(?P<secret>[a-z0-9]{10})'''\nkeywords = [\"pw=\"]\n",
        "user.toml",
    )
    .unwrap();
    let engine = build(set);
    let hay = b"x pw=k3j4h5g6f7 y";
    let m = &engine.scan(hay)[0];
    assert_eq!(&hay[m.start..m.end], b"k3j4h5g6f7");
    assert_eq!(&hay[m.match_start..m.match_end], b"pw=k3j4h5g6f7");
}

#[test]
fn invalid_user_regex_is_reported_with_file_and_rule() {
    let err = RuleSet::from_toml(
        "[[rule]]\nid = \"bad\"\nname = \"Bad\"\nregex = '''a{2,1}'''\nkeywords = [\"a\"]\n",
        "team-rules.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("team-rules.toml") && err.contains("\"bad\""),
        "{err}"
    );
}

#[test]
fn a_rule_requiring_an_unknown_rule_is_rejected() {
    let mut set = RuleSet::default();
    let other = RuleSet::from_toml(
        "[[rule]]\nid = \"a\"\nname = \"A\"\nregex = 'x'\nkeywords = [\"x\"]\nrequires = { rule = \"missing\" }\n",
        "f.toml",
    )
    .unwrap();
    let err = set.merge(other).unwrap_err().to_string();
    assert!(err.contains("missing"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Arbitrary bytes never panic the engine, and every reported span lies
    /// inside the buffer with the secret inside its match.
    #[test]
    fn arbitrary_bytes_never_break_the_engine(hay in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let engine = builtin();
        for m in engine.scan(&hay) {
            prop_assert!(m.match_start <= m.start && m.start < m.end && m.end <= m.match_end);
            prop_assert!(m.match_end <= hay.len());
        }
    }

    /// Keyword hits come every one and sorted by start, whatever the
    /// order stage one meets them in (each keyword is probed at its own
    /// offset): the history scan moves a delta's hits from its base's by
    /// binary search.
    #[test]
    fn keyword_hits_are_every_occurrence_sorted_by_start(
        picks in proptest::collection::vec(any::<prop::sample::Index>(), 1..200),
        cut in any::<prop::sample::Index>(),
    ) {
        let engine = builtin();
        let mut keywords: Vec<String> = engine.rules().iter().flat_map(|r| r.keywords.clone()).collect();
        keywords.sort();
        keywords.dedup();
        // Keywords back to back overlap each other's neighbours; a suffix
        // of one starts a line so probes at every offset happen.
        let text: String = picks.iter().map(|p| keywords[p.index(keywords.len())].as_str()).collect();
        let hay = &text.as_bytes()[cut.index(text.len().min(8) + 1).min(text.len())..];
        let mut hits = Vec::new();
        engine.keyword_hits(hay, 0..hay.len(), &mut hits);
        prop_assert!(hits.windows(2).all(|w| w[0].start <= w[1].start), "unsorted: {hits:?}");
        let lower = &hay.to_ascii_lowercase();
        let mut expected: Vec<(usize, usize)> = keywords
            .iter()
            .flat_map(|k| {
                let k = k.to_ascii_lowercase().into_bytes();
                let n = k.len();
                (0..=lower.len().saturating_sub(k.len()))
                    .filter(move |&i| lower[i..].starts_with(&k))
                    .map(move |i| (i, i + n))
            })
            .collect();
        expected.sort();
        expected.dedup();
        let mut got: Vec<(usize, usize)> = hits.iter().map(|h| (h.start, h.end)).collect();
        got.sort();
        got.dedup();
        prop_assert_eq!(got, expected);
    }

    /// A rule's example is found wherever it sits in a file: surrounded by
    /// random text on its own line, at any offset.
    #[test]
    fn examples_are_found_anywhere_in_a_file(
        before in "[ -~\n]{0,3000}",
        after in "[ -~\n]{0,3000}",
        pick in any::<prop::sample::Index>(),
    ) {
        let engine = builtin();
        let rules: Vec<_> = engine
            .rules()
            .iter()
            .enumerate()
            // Whole-file rules (a key file) are not found inside others.
            .filter(|(_, r)| !r.is_generic() && r.requires.is_none() && !r.regex.starts_with(r"\A"))
            .collect();
        let (i, rule) = rules[pick.index(rules.len())];
        let example = &rule.examples[0];
        let text = format!("{before}\n{example}\n{after}");
        let mut found = Vec::new();
        engine.scan_into(rule.example_path.as_deref(), text.as_bytes(), &mut Default::default(), &mut found);
        prop_assert!(found.iter().any(|m| m.rule == i), "{} lost its example", rule.id);
    }
}
