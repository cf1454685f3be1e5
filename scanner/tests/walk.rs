//! A directory walk reports every file that holds a secret under its own
//! path, copies included: a file with the bytes of one scanned before takes
//! its matches only where the rules judge both paths alike.

use std::path::Path;

use keyburn_scanner::rules::RuleSet;
use keyburn_scanner::sources::{self, Event, WalkOptions};
use keyburn_scanner::EngineBuilder;
use support::aws_key;

mod support;

/// Source-like text longer than the copies the walk remembers, holding a
/// key id, a password and (for `.netrc`) a machine line.
fn content(n: u32) -> String {
    let mut s = String::new();
    for i in 0..120 {
        s.push_str(&format!("value_{i} = compute(value_{}, {i})\n", i / 2));
    }
    s.push_str(&format!("aws_access_key_id = \"{}\"\n", aws_key(n)));
    s.push_str("db_password = \"Pq7-vintage-Lantern-42\"\n");
    s.push_str("machine ftp.example.net login backup password Pq7-vintage-Lantern-42\n");
    s
}

/// (path relative to `dir`, rule, line) of every finding of a walk.
fn walk(dir: &Path) -> Vec<(String, String, usize)> {
    let engine = EngineBuilder::new(RuleSet::builtin()).build().unwrap();
    let mut out = Vec::new();
    let opts = WalkOptions::default();
    sources::walk(&engine, &[dir.to_path_buf()], &opts, |e| {
        if let Event::Finding(f) = e {
            let path = Path::new(&f.path).strip_prefix(dir).unwrap();
            out.push((
                path.display().to_string(),
                f.rule_id.clone(),
                f.location.line,
            ));
        }
    });
    out.sort();
    out
}

fn rules_at<'a>(found: &'a [(String, String, usize)], path: &str) -> Vec<&'a str> {
    found
        .iter()
        .filter(|f| f.0 == path)
        .map(|f| f.1.as_str())
        .collect()
}

#[test]
fn copies_are_each_reported_and_judged_at_their_own_path() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let text = content(1);
    assert!(text.len() > 4096);
    for p in [
        "v1/app/settings.py",
        "v2/app/settings.py",
        "v3/copy.py",
        "v1/Cargo.lock",
        "v1/.netrc",
        "v2/.netrc",
    ] {
        std::fs::create_dir_all(d.join(p).parent().unwrap()).unwrap();
        std::fs::write(d.join(p), &text).unwrap();
    }
    // A file as long as the others that differs only in its key.
    let other = content(2);
    assert_eq!(other.len(), text.len());
    std::fs::write(d.join("v3/other.py"), &other).unwrap();

    let found = walk(d);
    let plain = rules_at(&found, "v1/app/settings.py");
    assert!(plain.contains(&"aws-access-key-id"), "{found:?}");
    assert!(plain.contains(&"generic-password"), "{found:?}");
    assert!(!plain.contains(&"netrc-password"), "{found:?}");
    for copy in ["v2/app/settings.py", "v3/copy.py"] {
        assert_eq!(rules_at(&found, copy), plain, "{copy}");
    }
    // Lockfiles are allowed paths for the generic rules: the copy there
    // keeps the key id and loses the password.
    let lock = rules_at(&found, "v1/Cargo.lock");
    assert!(lock.contains(&"aws-access-key-id"), "{found:?}");
    assert!(!lock.contains(&"generic-password"), "{found:?}");
    // The .netrc rule only reads .netrc files, both copies of them.
    for netrc in ["v1/.netrc", "v2/.netrc"] {
        assert!(
            rules_at(&found, netrc).contains(&"netrc-password"),
            "{found:?}"
        );
    }
    // Each copy reports the same lines; the near copy is scanned for its
    // own key.
    let lines =
        |p: &str| -> Vec<usize> { found.iter().filter(|f| f.0 == p).map(|f| f.2).collect() };
    assert_eq!(lines("v2/app/settings.py"), lines("v1/app/settings.py"));
    assert!(rules_at(&found, "v3/other.py").contains(&"aws-access-key-id"));
}
