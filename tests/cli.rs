//! The `keyburn` binary end to end: what a user runs and what tools parse.
//! Fake credentials are assembled at run time so that no token-shaped
//! literal sits in this file.

use std::fs;
use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;
use tempfile::TempDir;

/// A fake AWS access key id: valid shape, random-looking, never issued.
fn aws_key_id() -> String {
    format!("{}{}", "AKIA", "Q7XK2M4PZ6RB3TVN")
}

/// A fake Stripe live secret key.
fn stripe_key() -> String {
    format!("{}_{}_{}", "sk", "live", "9fTq2LmX7vRb4NcY8wKd1PsZ")
}

fn keyburn() -> Command {
    Command::cargo_bin("keyburn").unwrap()
}

fn write(dir: &Path, rel: &str, content: impl AsRef<[u8]>) {
    let p = dir.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
}

fn json_findings(dir: &Path, args: &[&str]) -> Value {
    let out = keyburn()
        .arg("scan")
        .arg(dir)
        .args(["-f", "json"])
        .args(args)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn rule_ids(doc: &Value) -> Vec<String> {
    doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn scan_reports_a_secret_and_exits_1() {
    let dir = TempDir::new().unwrap();
    write(
        dir.path(),
        "app/config.py",
        format!("KEY = \"{}\"\n", aws_key_id()),
    );
    keyburn()
        .arg("scan")
        .arg(dir.path())
        .assert()
        .code(1)
        .stdout(predicate::str::contains("aws-access-key-id"))
        .stdout(predicate::str::contains("config.py:1:8"));
}

#[test]
fn clean_tree_exits_0() {
    let dir = TempDir::new().unwrap();
    write(dir.path(), "README.md", "nothing to see\n");
    keyburn()
        .arg("scan")
        .arg(dir.path())
        .assert()
        .code(0)
        .stdout(predicate::str::contains("no leaks found"));
}

#[test]
fn exit_code_flag_overrides_the_findings_status() {
    let dir = TempDir::new().unwrap();
    write(dir.path(), "a.env", format!("K={}\n", aws_key_id()));
    keyburn()
        .arg("scan")
        .arg(dir.path())
        .args(["--exit-code", "0"])
        .assert()
        .code(0);
}

#[test]
fn json_output_follows_the_contract() {
    let dir = TempDir::new().unwrap();
    write(
        dir.path(),
        "deploy.sh",
        format!("#!/bin/sh\nexport STRIPE={}\n", stripe_key()),
    );
    let doc = json_findings(dir.path(), &[]);
    assert_eq!(doc["version"], 1);
    let f = &doc["findings"][0];
    for field in [
        "rule_id",
        "rule_name",
        "path",
        "line",
        "column",
        "end_line",
        "end_column",
        "secret",
        "fingerprint",
        "entropy",
        "confidence",
    ] {
        assert!(!f[field].is_null(), "missing {field} in {f}");
    }
    assert_eq!(f["rule_id"], "stripe-secret-key");
    assert_eq!(f["secret"], stripe_key());
    assert_eq!(f["line"], 2);
    assert_eq!(f["column"], 15);
    assert_eq!(f["end_line"], 2);
    assert_eq!(f["end_column"], 14 + stripe_key().len());
    assert_eq!(doc["stats"]["files_scanned"], 1);
}

#[test]
fn every_file_of_a_walk_is_counted() {
    // Walking threads report scanned files in batches: the count must
    // still be exact when the files are not a multiple of a batch, spread
    // over directories (and threads).
    let dir = TempDir::new().unwrap();
    let mut bytes = 0;
    for i in 0..203 {
        let text = "x = 1\n".repeat(i % 7 + 1);
        bytes += text.len();
        write(dir.path(), &format!("d{}/f{i}.txt", i % 5), &text);
    }
    let doc = json_findings(dir.path(), &["--no-progress", "--threads", "2"]);
    assert_eq!(doc["stats"]["files_scanned"], 203);
    assert_eq!(doc["stats"]["bytes_scanned"], bytes);
}

#[test]
fn fingerprints_are_stable_across_runs_and_line_moves() {
    let dir = TempDir::new().unwrap();
    write(dir.path(), "k.txt", format!("{}\n", aws_key_id()));
    let a = json_findings(dir.path(), &[]);
    write(
        dir.path(),
        "k.txt",
        format!("\n\n# moved\n{}\n", aws_key_id()),
    );
    let b = json_findings(dir.path(), &[]);
    assert_eq!(
        a["findings"][0]["fingerprint"],
        b["findings"][0]["fingerprint"]
    );
    assert_ne!(a["findings"][0]["line"], b["findings"][0]["line"]);
}

#[test]
fn a_secret_on_several_lines_is_reported_on_each_with_one_fingerprint() {
    let dir = TempDir::new().unwrap();
    // Twice on line 1 (one place), then on lines 3 and 4.
    let key = aws_key_id();
    write(
        dir.path(),
        "k.txt",
        format!("{key} {key}\n\nid = {key}\nagain: {key}\n"),
    );
    let doc = json_findings(dir.path(), &[]);
    let found = doc["findings"].as_array().unwrap();
    let lines: Vec<_> = found.iter().map(|f| f["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, [1, 3, 4]);
    assert!(found
        .iter()
        .all(|f| f["fingerprint"] == found[0]["fingerprint"]));
}

#[test]
fn jsonl_writes_one_finding_per_line() {
    let dir = TempDir::new().unwrap();
    write(dir.path(), "a.txt", format!("{}\n", aws_key_id()));
    write(dir.path(), "b.txt", format!("{}\n", stripe_key()));
    let out = keyburn()
        .arg("scan")
        .arg(dir.path())
        .args(["-f", "jsonl"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l["rule_id"].is_string()));
}

#[test]
fn human_output_masks_secrets_unless_asked() {
    let dir = TempDir::new().unwrap();
    write(dir.path(), "a.txt", format!("{}\n", stripe_key()));
    keyburn()
        .arg("scan")
        .arg(dir.path())
        .assert()
        .stdout(predicate::str::contains(stripe_key()).not())
        .stdout(predicate::str::contains("sk_l********"));
    keyburn()
        .arg("scan")
        .arg(dir.path())
        .arg("--show-secrets")
        .assert()
        .stdout(predicate::str::contains(stripe_key()));
}

#[test]
fn human_output_shows_the_line_masked_with_a_caret_and_the_fingerprint() {
    let dir = TempDir::new().unwrap();
    // Two secrets on one line: neither may show in clear in the other's
    // context.
    write(
        dir.path(),
        "a.txt",
        format!("x\nkey = '{}' other = '{}'\n", aws_key_id(), stripe_key()),
    );
    let out = keyburn()
        .args(["scan", "--no-history"])
        .arg(dir.path())
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    assert!(!text.contains(&aws_key_id()), "{text}");
    assert!(!text.contains(&stripe_key()), "{text}");
    assert!(
        text.contains("  2 | key = 'AKIA********' other = 'sk_l********'"),
        "{text}"
    );
    assert!(text.contains("    |        ^^^^^^^^^^^^\n"), "{text}");
    let doc = json_findings(dir.path(), &[]);
    let fp = doc["findings"][0]["fingerprint"].as_str().unwrap();
    assert!(text.contains(&format!("fingerprint: {fp}")), "{text}");
    assert!(text.contains("in 1 file;"), "{text}");
    assert!(text.contains("scanned 1 file,"), "{text}");
}

#[test]
fn redact_removes_secrets_from_json() {
    let dir = TempDir::new().unwrap();
    write(dir.path(), "a.txt", format!("token={}\n", stripe_key()));
    let out = keyburn()
        .arg("scan")
        .arg(dir.path())
        .args(["-f", "json", "--redact"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains(&stripe_key()), "{text}");
    assert!(text.contains("REDACTED"));
}

#[test]
fn output_file_receives_the_report() {
    let dir = TempDir::new().unwrap();
    write(dir.path(), "src/a.txt", format!("{}\n", aws_key_id()));
    let out = dir.path().join("report.json");
    keyburn()
        .arg("scan")
        .arg(dir.path().join("src"))
        .args(["-f", "json", "-o"])
        .arg(&out)
        .assert()
        .code(1)
        .stdout(predicate::str::is_empty());
    let doc: Value = serde_json::from_slice(&fs::read(&out).unwrap()).unwrap();
    assert_eq!(rule_ids(&doc), ["aws-access-key-id"]);
}

#[test]
fn sarif_output_validates_against_the_official_schema() {
    let dir = TempDir::new().unwrap();
    write(
        dir.path(),
        "cfg/app.yml",
        format!("aws:\n  key: {}\n", aws_key_id()),
    );
    write(
        dir.path(),
        "dir with space/x.txt",
        format!("{}\n", stripe_key()),
    );
    let out = keyburn()
        .current_dir(dir.path())
        .args(["scan", ".", "-f", "sarif"])
        .output()
        .unwrap();
    let sarif: Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    let uris: Vec<&str> = results
        .iter()
        .map(|r| {
            r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert!(uris.contains(&"cfg/app.yml"), "{uris:?}");
    assert!(uris.contains(&"dir%20with%20space/x.txt"), "{uris:?}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(&aws_key_id()),
        "SARIF must mask secrets"
    );
    validate_sarif(&sarif);
}

/// Validate against the official schema, where ../shared has it.
fn validate_sarif(sarif: &Value) {
    let schema_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/schemas/sarif-schema-2.1.0.json");
    if !schema_path.exists() {
        eprintln!("SARIF schema not found: skipping schema validation");
        return;
    }
    let schema: Value = serde_json::from_slice(&fs::read(&schema_path).unwrap()).unwrap();
    let mut schemas = boon::Schemas::new();
    let mut compiler = boon::Compiler::new();
    compiler.add_resource("sarif-schema.json", schema).unwrap();
    let id = compiler.compile("sarif-schema.json", &mut schemas).unwrap();
    if let Err(e) = schemas.validate(sarif, id) {
        panic!("SARIF does not validate: {e:#}");
    }
}

#[test]
fn sarif_from_an_absolute_path_is_relative_and_lists_what_was_not_scanned() {
    let dir = TempDir::new().unwrap();
    write(
        dir.path(),
        "cfg/app.yml",
        format!("key: {}\n", aws_key_id()),
    );
    write(dir.path(), "big.txt", "x".repeat(4096));
    let out = keyburn()
        .arg("scan")
        .arg(dir.path())
        .arg(dir.path().join("missing"))
        .args(["--no-history", "--max-file-size", "1K", "-f", "sarif"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let sarif: Value = serde_json::from_slice(&out.stdout).unwrap();
    let run = &sarif["runs"][0];
    let loc = &run["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"];
    assert_eq!(loc["uri"], "cfg/app.yml");
    assert_eq!(loc["uriBaseId"], "%SRCROOT%");
    let root = run["originalUriBaseIds"]["%SRCROOT%"]["uri"]
        .as_str()
        .unwrap();
    assert!(
        root.starts_with("file:///") && root.ends_with('/'),
        "{root}"
    );
    assert!(run["results"][0]["message"]["text"]
        .as_str()
        .unwrap()
        .contains("in cfg/app.yml"));
    let inv = &run["invocations"][0];
    assert_eq!(inv["executionSuccessful"], false);
    let notes: Vec<String> = inv["toolExecutionNotifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| format!("{} {}", n["level"], n["message"]["text"]))
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("\"warning\"") && n.contains("big.txt")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("\"error\"") && n.contains("missing")),
        "{notes:?}"
    );
    let rule = run["tool"]["driver"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "aws-access-key-id")
        .unwrap();
    assert!(rule["helpUri"].as_str().unwrap().starts_with("https://"));
    assert!(rule["help"]["markdown"]
        .as_str()
        .unwrap()
        .contains("Revoke"));
    assert!(!rule["help"]["text"].as_str().unwrap().starts_with("A "));
    validate_sarif(&sarif);
}

#[test]
fn stdin_is_scanned_with_a_dash() {
    keyburn()
        .args(["scan", "-", "-f", "jsonl"])
        .write_stdin(format!("key {}\n", aws_key_id()))
        .assert()
        .code(1)
        .stdout(predicate::str::contains("\"path\":\"stdin\""));
}

#[test]
fn binary_stdin_is_skipped_like_a_binary_file() {
    let mut bin = vec![0u8, 1, 2, 3];
    bin.extend_from_slice(format!(" key {}\n", aws_key_id()).as_bytes());
    keyburn()
        .args(["scan", "-", "-f", "jsonl", "-v"])
        .write_stdin(bin)
        .assert()
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains("stdin: binary file"));
}

#[test]
fn gitignored_files_are_skipped_unless_no_ignore() {
    let dir = TempDir::new().unwrap();
    write(dir.path(), ".gitignore", "build/\n");
    write(dir.path(), "build/out.txt", format!("{}\n", aws_key_id()));
    keyburn().arg("scan").arg(dir.path()).assert().code(0);
    keyburn()
        .arg("scan")
        .arg(dir.path())
        .arg("--no-ignore")
        .assert()
        .code(1);
}

#[test]
fn keyburnignore_excludes_paths() {
    let dir = TempDir::new().unwrap();
    write(dir.path(), ".keyburnignore", "fixtures/\n");
    write(
        dir.path(),
        "fixtures/fake.txt",
        format!("{}\n", aws_key_id()),
    );
    keyburn().arg("scan").arg(dir.path()).assert().code(0);
}

#[test]
fn hidden_files_are_scanned_and_dot_git_is_not() {
    let dir = TempDir::new().unwrap();
    write(dir.path(), ".env", format!("AWS_KEY={}\n", aws_key_id()));
    write(
        dir.path(),
        ".git/config",
        format!("token={}\n", stripe_key()),
    );
    let doc = json_findings(dir.path(), &[]);
    let paths: Vec<&str> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths.len(), 1, "{paths:?}");
    assert!(paths[0].ends_with(".env"));
}

#[test]
fn binary_files_are_skipped_and_verbose_says_so() {
    let dir = TempDir::new().unwrap();
    let mut bin = vec![0u8, 1, 2, 3];
    bin.extend_from_slice(aws_key_id().as_bytes());
    write(dir.path(), "blob.bin", &bin);
    keyburn()
        .arg("scan")
        .arg(dir.path())
        .arg("-v")
        .assert()
        .code(0)
        .stderr(predicate::str::contains("blob.bin: binary file"));
}

#[test]
fn files_over_the_size_limit_are_skipped_with_a_warning() {
    let dir = TempDir::new().unwrap();
    write(
        dir.path(),
        "big.txt",
        format!("{}\n{}", aws_key_id(), "x".repeat(4096)),
    );
    keyburn()
        .arg("scan")
        .arg(dir.path())
        .args(["--max-file-size", "1K"])
        .assert()
        .code(0)
        .stderr(predicate::str::contains("big.txt"))
        .stderr(predicate::str::contains("--max-file-size"));
}

#[test]
fn a_missing_path_is_an_error_but_other_paths_are_scanned() {
    let dir = TempDir::new().unwrap();
    write(dir.path(), "ok.txt", format!("{}\n", aws_key_id()));
    // Exit 2 after scanning the rest, the missing path named on stderr and
    // in the report, even with -q.
    let out = keyburn()
        .arg("scan")
        .arg(dir.path().join("ok.txt"))
        .arg(dir.path().join("does-not-exist"))
        .args(["-q", "-f", "json"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("does-not-exist"))
        .get_output()
        .stdout
        .clone();
    let doc: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(doc["findings"].as_array().unwrap().len(), 1);
    let missing = doc["stats"]["missing_paths"].as_array().unwrap();
    assert!(missing[0].as_str().unwrap().ends_with("does-not-exist"));
}

#[test]
fn quiet_hides_warnings_but_never_errors() {
    let dir = TempDir::new().unwrap();
    write(dir.path(), "ok.txt", "clean\n");
    keyburn()
        .arg("scan")
        .arg(dir.path())
        .arg(dir.path().join("gone"))
        .arg("-q")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("gone: no such file or directory"));
}

#[test]
fn nothing_scannable_exits_2() {
    keyburn()
        .args(["scan", "/definitely/not/here"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("/definitely/not/here"))
        .stderr(predicate::str::contains("nothing could be scanned"));
}

#[cfg(unix)]
#[test]
fn symlinks_are_not_followed_unless_asked_and_loops_are_reported() {
    let outside = TempDir::new().unwrap();
    write(outside.path(), "secret.txt", format!("{}\n", aws_key_id()));
    let dir = TempDir::new().unwrap();
    write(dir.path(), "plain.txt", "hello\n");
    std::os::unix::fs::symlink(
        outside.path().join("secret.txt"),
        dir.path().join("link.txt"),
    )
    .unwrap();
    std::os::unix::fs::symlink(dir.path(), dir.path().join("loop")).unwrap();
    keyburn().arg("scan").arg(dir.path()).assert().code(0);
    keyburn()
        .arg("scan")
        .arg(dir.path())
        .arg("--follow")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("symlink loop"));
}

#[test]
fn invalid_utf8_and_crlf_do_not_break_positions() {
    let dir = TempDir::new().unwrap();
    let mut content = b"first line\r\n\xff\xfe garbage\r\nkey: ".to_vec();
    content.extend_from_slice(aws_key_id().as_bytes());
    content.extend_from_slice(b"\r\n");
    write(dir.path(), "mixed.txt", &content);
    let doc = json_findings(dir.path(), &[]);
    let f = &doc["findings"][0];
    assert_eq!(f["line"], 3);
    assert_eq!(f["column"], 6);
    assert_eq!(f["secret"], aws_key_id());
}

#[test]
fn inline_allow_comment_suppresses_a_finding() {
    for marker in [
        "keyburn:allow",
        "gitleaks:allow",
        "betterleaks:allow",
        "trufflehog:ignore",
        "kingfisher:ignore",
    ] {
        let dir = TempDir::new().unwrap();
        write(
            dir.path(),
            "a.py",
            format!("K = '{}'  # {marker}\n", aws_key_id()),
        );
        keyburn().arg("scan").arg(dir.path()).assert().code(0);
    }
    let dir = TempDir::new().unwrap();
    write(
        dir.path(),
        "a.py",
        format!("K = '{}'  # reviewed\n", aws_key_id()),
    );
    keyburn().arg("scan").arg(dir.path()).assert().code(1);
}

#[test]
fn a_malformed_user_rule_names_the_file_rule_and_regex_error() {
    let dir = TempDir::new().unwrap();
    write(
        dir.path(),
        "bad.toml",
        "[[rule]]\nid = \"broken-rule\"\nname = \"Broken\"\nregex = '''(unclosed'''\nkeywords = [\"x\"]\n",
    );
    keyburn()
        .arg("scan")
        .arg(dir.path())
        .arg("--rules")
        .arg(dir.path().join("bad.toml"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("bad.toml"))
        .stderr(predicate::str::contains("broken-rule"))
        .stderr(predicate::str::contains("unclosed group"));
}

#[test]
fn user_rules_in_gitleaks_format_are_accepted() {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/gitleaks.toml");
    let dir = TempDir::new().unwrap();
    write(
        dir.path(),
        "src/x.txt",
        "t = acme_k2m9q8w7e6r5t4y3u2i1o0pz\n",
    );
    write(
        dir.path(),
        "src/zero.txt",
        format!("t = acme_{}\n", "0".repeat(24)),
    );
    write(
        dir.path(),
        "fixtures/y.txt",
        "t = acme_k2m9q8w7e6r5t4y3u2i1o0pz\n",
    );
    let doc = json_findings(
        dir.path(),
        &["--rules", config.to_str().unwrap(), "--no-builtin-rules"],
    );
    assert_eq!(rule_ids(&doc), ["acme-internal-token"]);
    assert!(doc["findings"][0]["path"]
        .as_str()
        .unwrap()
        .ends_with("src/x.txt"));
}

#[test]
fn disable_rule_and_unknown_rule_ids() {
    let dir = TempDir::new().unwrap();
    write(dir.path(), "a.txt", format!("{}\n", aws_key_id()));
    keyburn()
        .arg("scan")
        .arg(dir.path())
        .args(["--disable-rule", "aws-access-key-id"])
        .assert()
        .code(0);
    keyburn()
        .arg("scan")
        .arg(dir.path())
        .args(["--disable-rule", "no-such-rule"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no-such-rule"));
}

#[test]
fn min_confidence_drops_low_confidence_findings() {
    let dir = TempDir::new().unwrap();
    write(
        dir.path(),
        "a.env",
        format!("DB_PASSWORD={}{}\n", "Wq8rT2zL", "p9Xv4kNs"),
    );
    assert_eq!(
        rule_ids(&json_findings(dir.path(), &[])),
        ["generic-password"]
    );
    keyburn()
        .arg("scan")
        .arg(dir.path())
        .args(["--min-confidence", "medium"])
        .assert()
        .code(0);
}

#[test]
fn rules_list_and_check() {
    keyburn()
        .args(["rules", "list"])
        .assert()
        .success()
        .stdout(predicate::str::contains("github-pat"))
        .stdout(predicate::str::is_match(r"\n[1-9][0-9]{2} rules\n").unwrap())
        // What validates and revokes each rule.
        .stdout(predicate::str::is_match(r"(?m)^github-pat +high +github +yes +api ").unwrap())
        .stdout(
            predicate::str::is_match(r"(?m)^stripe-secret-key +high +stripe +yes +manual ")
                .unwrap(),
        );
    let json = keyburn()
        .args(["rules", "list", "--json"])
        .output()
        .unwrap();
    let rules: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let pat = rules
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "github-pat")
        .unwrap();
    assert_eq!(
        (&pat["validate"], &pat["revoke"]),
        (&serde_json::json!(true), &serde_json::json!("api"))
    );
    // The listing shows a rule's cases, which a scan leaves unparsed.
    for cases in ["examples", "counterexamples"] {
        assert!(
            pat[cases].as_array().is_some_and(|a| !a.is_empty()),
            "{cases} missing from {pat}"
        );
    }
    let dir = TempDir::new().unwrap();
    let good = format!(
        "[[rule]]\nid = \"acme\"\nname = \"ACME\"\nregex = '''acme_[a-z0-9]{{8}}'''\nkeywords = [\"acme_\"]\nexamples = ['t = acme_{}']\ncounterexamples = ['t = acme_short']\n",
        "k2m9q8w7"
    );
    write(dir.path(), "good.toml", &good);
    keyburn()
        .args(["rules", "check"])
        .arg(dir.path().join("good.toml"))
        .assert()
        .success()
        .stdout(predicate::str::contains("1 rules, 2 cases, 0 failed"));
    write(
        dir.path(),
        "wrong.toml",
        good.replace("acme_short", "acme_a1b2c3d4"),
    );
    keyburn()
        .args(["rules", "check"])
        .arg(dir.path().join("wrong.toml"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("counterexample detected"));
}

#[cfg(not(feature = "hyperscan"))]
#[test]
fn hyperscan_engine_without_the_feature_says_how_to_get_it() {
    let dir = TempDir::new().unwrap();
    write(dir.path(), "a.txt", "nothing here\n");
    keyburn()
        .args(["scan", "--engine", "hyperscan"])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--features hyperscan"));
}

/// Both engines report the same findings through the CLI, and the
/// Hyperscan database is compiled once, then loaded from the cache.
#[cfg(feature = "hyperscan")]
#[test]
fn hyperscan_engine_caches_its_database_and_finds_the_same() {
    let dir = TempDir::new().unwrap();
    let cache = TempDir::new().unwrap();
    write(
        dir.path(),
        "a/config.py",
        format!("KEY = \"{}\"\n", aws_key_id()),
    );
    write(dir.path(), "b/.env", format!("STRIPE={}\n", stripe_key()));
    let run = |engine: &str| {
        let out = keyburn()
            .env("KEYBURN_CACHE_DIR", cache.path())
            .args([
                "scan",
                "-v",
                "--no-history",
                "-f",
                "json",
                "--engine",
                engine,
            ])
            .arg(dir.path())
            .output()
            .unwrap();
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        (
            rule_ids(&doc),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (rust, _) = run("rust");
    let (first, note1) = run("hyperscan");
    let (second, note2) = run("hyperscan");
    assert_eq!(rust.len(), 2, "{rust:?}");
    assert_eq!(first, rust);
    assert_eq!(second, rust);
    assert!(note1.contains("database compiled"), "{note1}");
    assert!(note2.contains("database loaded from"), "{note2}");
}

/// `auto` leaves a single file to the Rust engine: nothing is compiled.
#[cfg(feature = "hyperscan")]
#[test]
fn auto_engine_does_not_build_hyperscan_for_one_file() {
    let dir = TempDir::new().unwrap();
    let cache = TempDir::new().unwrap();
    write(dir.path(), "a.py", format!("KEY = \"{}\"\n", aws_key_id()));
    keyburn()
        .env("KEYBURN_CACHE_DIR", cache.path())
        .args(["scan", "-v", "--engine", "auto"])
        .arg(dir.path().join("a.py"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("hyperscan").not());
    assert_eq!(fs::read_dir(cache.path()).unwrap().count(), 0);
}

#[test]
fn a_baseline_holds_back_known_findings_and_only_new_ones_fail() {
    let dir = TempDir::new().unwrap();
    let tree = dir.path().join("tree");
    write(&tree, "old.py", format!("KEY = \"{}\"\n", aws_key_id()));
    let out = keyburn()
        .arg("scan")
        .arg(&tree)
        .args(["-f", "json", "--redact"])
        .output()
        .unwrap();
    let report = dir.path().join("baseline.json");
    fs::write(&report, &out.stdout).unwrap();

    // The same tree against its own report: nothing new, exit 0, and the
    // summary says what was held back.
    keyburn()
        .arg("scan")
        .arg(&tree)
        .arg("--baseline")
        .arg(&report)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("1 known in the baseline"));

    // A new leak fails the build; the known one stays out of the report.
    write(&tree, "new.py", format!("S = \"{}\"\n", stripe_key()));
    let doc = json_findings(&tree, &["--baseline", report.to_str().unwrap()]);
    assert_eq!(rule_ids(&doc), ["stripe-secret-key"]);
    assert_eq!(doc["stats"]["baselined"], 1);

    // A plain list of fingerprints works the same, comments allowed.
    let fp = doc["findings"][0]["fingerprint"].as_str().unwrap();
    let list = dir.path().join("accepted.txt");
    fs::write(&list, format!("# reviewed\n{fp}  # fixture\n")).unwrap();
    let doc = json_findings(
        &tree,
        &[
            "--baseline",
            report.to_str().unwrap(),
            "--baseline",
            list.to_str().unwrap(),
        ],
    );
    assert_eq!(doc["findings"].as_array().unwrap().len(), 0);
    assert_eq!(doc["stats"]["baselined"], 2);

    // Garbage is an error naming the file and line, not an empty baseline.
    fs::write(&list, "nope\n").unwrap();
    keyburn()
        .arg("scan")
        .arg(&tree)
        .arg("--baseline")
        .arg(&list)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("accepted.txt is not a baseline"))
        .stderr(predicate::str::contains("line 1"));
}

/// Run keyburn with the reading end of its stdout already closed: what
/// `keyburn ... | head -1` does once head has its line.
#[cfg(unix)]
fn run_with_closed_stdout(args: &[&str], dir: &Path) -> std::process::Output {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_keyburn"))
        .args(args)
        .current_dir(dir)
        .env_remove("KEYBURN_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

#[cfg(unix)]
#[test]
fn a_closed_pipe_ends_every_listing_quietly() {
    use keyburn_responder::queue::{NewJob, Queue};
    let dir = TempDir::new().unwrap();
    std::fs::create_dir(dir.path().join("keyburn-data")).unwrap();
    let mut q = Queue::open(&dir.path().join("keyburn-data/queue.db")).unwrap();
    for n in 0..50 {
        let job = NewJob {
            delivery: None,
            repo: "acme/app",
            alert_number: n,
            source: "test",
            payload: "{}",
            step: "fetch",
        };
        q.enqueue(&job, 0).unwrap();
    }
    drop(q);
    for args in [
        &["rules", "list"][..],
        &["rules", "list", "--json"],
        &["jobs", "list"],
        &["jobs", "list", "--json"],
        &["jobs", "show", "1"],
    ] {
        let out = run_with_closed_stdout(args, dir.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

/// A scan whose reader went away still exits by its findings: a closed
/// pipe must not turn a leak into a pass.
#[cfg(unix)]
#[test]
fn a_closed_pipe_keeps_the_findings_exit_code() {
    let dir = TempDir::new().unwrap();
    write(dir.path(), "a.env", format!("AWS={}\n", aws_key_id()));
    let out = run_with_closed_stdout(&["scan", ".", "--no-history"], dir.path());
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// 65 MiB of text, then a key: past what used to be skipped unread.
fn past_64_mib() -> Vec<u8> {
    let line = b"0123456789 the quick brown fox jumps over the lazy dog 0123456789\n";
    let mut big = Vec::with_capacity((65 << 20) + 100);
    while big.len() < 65 << 20 {
        big.extend_from_slice(line);
    }
    big.extend_from_slice(format!("aws = '{}'\n", aws_key_id()).as_bytes());
    big
}

#[test]
fn a_secret_past_64_mib_is_found_in_a_file_and_on_stdin() {
    let dir = TempDir::new().unwrap();
    let big = past_64_mib();
    let lines = big.iter().filter(|&&b| b == b'\n').count();
    write(dir.path(), "big.log", &big);
    for (args, stdin) in [
        (&["scan", "big.log"][..], None),
        (&["scan", "-"], Some(big)),
    ] {
        let mut cmd = keyburn();
        cmd.current_dir(dir.path()).args(args).args(["-f", "json"]);
        if let Some(input) = stdin {
            cmd.write_stdin(input);
        }
        let out = cmd.assert().code(1).get_output().stdout.clone();
        let doc: Value = serde_json::from_slice(&out).unwrap();
        let found = doc["findings"].as_array().unwrap();
        assert_eq!(found.len(), 1, "{args:?}");
        assert_eq!(found[0]["line"], lines, "{args:?}");
        assert_eq!(found[0]["column"], 8, "{args:?}");
        assert_eq!(doc["stats"]["files_skipped"], 0, "{args:?}");
    }
}

#[test]
fn a_secret_across_a_chunk_border_is_found_once() {
    let dir = TempDir::new().unwrap();
    // Keys every ~100 KB of a 3 MB file: with 256 KiB chunks, some
    // straddle a border.
    // Distinct fake key ids (findings of one secret at one path merge).
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut fake_key = || {
        const B32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let body: String = (0..16)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                B32[(seed >> 59) as usize] as char
            })
            .collect();
        format!("{}{body}", "AKIA")
    };
    let mut text = String::new();
    let mut keys = 0;
    while text.len() < 3 << 20 {
        text.push_str(&"filler line of text\n".repeat(5000));
        text.push_str(&format!("k = '{}' j = '{}'\n", fake_key(), fake_key()));
        keys += 2;
    }
    write(dir.path(), "big.txt", &text);
    let run = |chunk: &str| {
        let out = keyburn()
            .current_dir(dir.path())
            .args(["scan", "big.txt", "-f", "jsonl", "--chunk-size", chunk])
            .assert()
            .code(1)
            .get_output()
            .stdout
            .clone();
        let mut v: Vec<String> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| {
                let f: Value = serde_json::from_str(l).unwrap();
                format!("{}:{}:{}", f["line"], f["column"], f["rule_id"])
            })
            .collect();
        v.sort();
        v
    };
    let whole = run("1G");
    assert_eq!(whole.len(), keys);
    for chunk in ["256K", "100000", "1M"] {
        assert_eq!(run(chunk), whole, "chunk {chunk}");
    }
}

#[test]
fn gitleaks_format_has_gitleaks_fields_and_types() {
    let dir = TempDir::new().unwrap();
    write(dir.path(), "a.env", format!("x\nAWS={}\n", aws_key_id()));
    let out = keyburn()
        .current_dir(dir.path())
        .args(["scan", "--no-history", ".", "-f", "gitleaks"])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let doc: Value = serde_json::from_slice(&out).unwrap();
    let leak = &doc.as_array().unwrap()[0];
    let keys: Vec<&str> = leak
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut want = [
        "RuleID",
        "Description",
        "StartLine",
        "EndLine",
        "StartColumn",
        "EndColumn",
        "Match",
        "Secret",
        "File",
        "SymlinkFile",
        "Commit",
        "Entropy",
        "Author",
        "Email",
        "Date",
        "Message",
        "Tags",
        "Fingerprint",
    ];
    let mut got = keys.clone();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want);
    assert_eq!(leak["RuleID"], "aws-access-key-id");
    assert_eq!(leak["StartLine"], 2);
    assert!(leak["Entropy"].is_f64());
    assert!(leak["Tags"].is_array());
    assert_eq!(leak["Commit"], "");
    assert_eq!(leak["Secret"], aws_key_id());
    assert_eq!(leak["File"], "a.env");
    assert_eq!(leak["Fingerprint"], "a.env:aws-access-key-id:2");

    // That report is a baseline, and so is a .gitleaksignore line.
    let elsewhere = TempDir::new().unwrap();
    let report = elsewhere.path().join("report.json");
    fs::write(&report, &out).unwrap();
    keyburn()
        .current_dir(dir.path())
        .args(["scan", "--no-history", ".", "--baseline"])
        .arg(&report)
        .assert()
        .code(0);
    write(dir.path(), ".gitleaksignore", "a.env:aws-access-key-id:2\n");
    keyburn()
        .current_dir(dir.path())
        .args(["scan", "--no-history", ".", "-f", "json"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("\"baselined\": 1"));
}

#[test]
fn csv_and_junit_reports() {
    let dir = TempDir::new().unwrap();
    write(dir.path(), "a, b.env", format!("AWS={}\n", aws_key_id()));
    let csv = keyburn()
        .current_dir(dir.path())
        .args(["scan", "--no-history", ".", "-f", "csv"])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let csv = String::from_utf8(csv).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("rule_id,rule_name,confidence,path,line,"));
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[1].contains(",\"a, b.env\",1,5,"), "{csv}");
    let junit = keyburn()
        .current_dir(dir.path())
        .args(["scan", "--no-history", ".", "-f", "junit"])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let junit = String::from_utf8(junit).unwrap();
    assert!(junit.contains(r#"failures="1""#), "{junit}");
    assert!(
        junit.contains("<failure type=\"aws-access-key-id\""),
        "{junit}"
    );
    assert!(!junit.contains(&aws_key_id()), "JUnit reports mask secrets");
    fs::remove_file(dir.path().join("a, b.env")).unwrap();
    let clean = keyburn()
        .current_dir(dir.path())
        .args(["scan", "--no-history", ".", "-f", "junit"])
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    assert!(String::from_utf8(clean)
        .unwrap()
        .contains(r#"failures="0""#));
}

/// A gitleaks configuration written with the syntax gitleaks' own default
/// configuration uses (RE2 literal braces, a path-only rule, extend,
/// disabled rules, an allowlist aimed at one rule).
const GITLEAKS_TOML: &str = r#"
title = "team config"

[extend]
useDefault = true
disabledRules = ["stripe-secret-key"]

[[rules]]
id = "custom-token"
description = "Templated token"
regex = '''token\s*=\s*['"]?{{([a-f0-9]{32})}}['"]?'''
secretGroup = 1
keywords = ["token"]

[[rules]]
id = "pkcs12-file"
description = "PKCS #12 keystore"
path = '''(?i)(?:^|/)[^/]+\.p(?:12|fx)$'''

[[allowlists]]
targetRules = ["custom-token"]
regexes = ['''^0{32}$''']
"#;

#[test]
fn a_gitleaks_configuration_is_read_as_gitleaks_reads_it() {
    let dir = TempDir::new().unwrap();
    write(dir.path(), ".gitleaks.toml", GITLEAKS_TOML);
    let hex = "3f9a1c7e5b2d4f608a9c1e3b5d7f9a2c";
    write(dir.path(), "a.txt", format!("token = '{{{{{hex}}}}}'\n"));
    write(
        dir.path(),
        "zero.txt",
        format!("token = '{{{{{}}}}}'\n", "0".repeat(32)),
    );
    write(dir.path(), "keys/store.p12", [0u8, 1, 2, 3, 0x30, 0x82]);
    write(dir.path(), "aws.txt", format!("k = '{}'\n", aws_key_id()));
    write(
        dir.path(),
        "stripe.txt",
        format!("s = '{}'\n", stripe_key()),
    );
    let found = |extra: &[&str], envs: &[(&str, &Path)]| {
        let mut cmd = keyburn();
        cmd.current_dir(dir.path())
            .args(["scan", "--no-history", ".", "-f", "json"])
            .args(extra)
            .env_remove("GITLEAKS_CONFIG");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let doc: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
        let mut v: Vec<String> = doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| format!("{} {} {}", f["rule_id"], f["path"], f["secret"]))
            .collect();
        v.sort();
        v
    };
    // Discovered at the root: its rules, the defaults but the disabled one,
    // the path-only rule on a binary file, the targeted allowlist.
    let want = [
        format!("\"aws-access-key-id\" \"aws.txt\" \"{}\"", aws_key_id()),
        format!("\"custom-token\" \"a.txt\" \"{hex}\""),
        "\"pkcs12-file\" \"keys/store.p12\" \"\"".to_string(),
    ];
    assert_eq!(found(&[], &[]), want);
    // The same file elsewhere, by --config or GITLEAKS_CONFIG.
    let elsewhere = TempDir::new().unwrap();
    let config = elsewhere.path().join("gl.toml");
    fs::rename(dir.path().join(".gitleaks.toml"), &config).unwrap();
    assert_eq!(found(&["--config", config.to_str().unwrap()], &[]), want);
    assert_eq!(found(&[], &[("GITLEAKS_CONFIG", &config)]), want);
    // Without useDefault, its rules alone.
    fs::write(&config, GITLEAKS_TOML.replace("useDefault = true", "")).unwrap();
    let alone = found(&["--config", config.to_str().unwrap()], &[]);
    assert_eq!(alone, want[1..]);
}

#[test]
fn verbose_says_which_filter_dropped_a_user_rules_match() {
    let dir = TempDir::new().unwrap();
    write(
        dir.path(),
        "rules.toml",
        r#"
[[rule]]
id = "team-pw"
name = "Team password"
regex = '''pw=(?P<secret>\S+)'''
keywords = ["pw="]
entropy = 3.0
"#,
    );
    write(dir.path(), "src/a.cfg", "pw=aaaaaaaaaaaa\npw=${PASSWORD}\n");
    let run = |verbose: bool| {
        let mut cmd = keyburn();
        cmd.current_dir(dir.path())
            .args(["scan", "--no-history", "src", "--rules", "rules.toml"]);
        if verbose {
            cmd.arg("-v");
        }
        String::from_utf8(cmd.output().unwrap().stderr).unwrap()
    };
    let said = run(true);
    assert!(
        said.contains("rule team-pw: a match (") && said.contains("entropy filter"),
        "{said}"
    );
    assert!(said.contains("placeholder filter"), "{said}");
    assert!(
        !said.contains("aaaaaaaaaaaa"),
        "the secret is masked: {said}"
    );
    assert!(!run(false).contains("filter"));
}

/// A Kubernetes Secret's stringData: every credential-named entry, and
/// only in a Secret (a ConfigMap's data is configuration).
#[test]
fn kubernetes_secret_string_data_entries_are_each_found() {
    let dir = TempDir::new().unwrap();
    write(
        dir.path(),
        "k8s/db-secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: prod\n\
         type: Opaque\nstringData:\n  DB_PASSWORD: Pg-prod-2024!\n  host: db.internal\n\
         \x20 api-token: \"tok-8f2k1m9x7q\"\n  REDIS_PASSWORD: ${REDIS_PASSWORD}\n",
    );
    write(
        dir.path(),
        "k8s/app-config.yaml",
        "apiVersion: v1\nkind: ConfigMap\ndata:\n  DB_PASSWORD_FILE: /run/secrets/db\n  token_ttl: 3600s\n",
    );
    let doc = json_findings(dir.path(), &["--no-history"]);
    let mut got: Vec<(String, String)> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule_id"] == "kubernetes-secret-string-data")
        .map(|f| {
            let path = Path::new(f["path"].as_str().unwrap());
            (
                path.strip_prefix(dir.path()).unwrap().display().to_string(),
                f["secret"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            (
                "k8s/db-secret.yaml".to_string(),
                "Pg-prod-2024!".to_string()
            ),
            (
                "k8s/db-secret.yaml".to_string(),
                "tok-8f2k1m9x7q".to_string()
            ),
        ],
        "{doc}"
    );
}

/// A zip holding `members`, deflated.
fn zip_of(members: &[(&str, String)]) -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default();
    for (name, text) in members {
        w.start_file(*name, opts).unwrap();
        w.write_all(text.as_bytes()).unwrap();
    }
    w.finish().unwrap().into_inner()
}

#[test]
fn archives_are_opened_by_default_and_name_the_member() {
    let dir = TempDir::new().unwrap();
    let env = format!("AWS_ACCESS_KEY_ID={}\n", aws_key_id());
    write(
        dir.path(),
        "dist/release.zip",
        zip_of(&[("README.md", "hi\n".into()), ("config/.env.prod", env)]),
    );
    let doc = json_findings(dir.path(), &["--no-progress"]);
    let paths: Vec<&str> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule_id"] == "aws-access-key-id")
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    let want = format!("{}/dist/release.zip!config/.env.prod", dir.path().display());
    assert_eq!(paths, [want.as_str()]);
    assert_eq!(doc["stats"]["files_scanned"], 2);
    keyburn()
        .arg("scan")
        .arg(dir.path())
        .arg("--no-progress")
        .assert()
        .code(1);
    // Off, the archive is a binary file: skipped, nothing found.
    for off in ["--no-archives", "--archives=false"] {
        let doc = json_findings(dir.path(), &["--no-progress", off]);
        assert_eq!(rule_ids(&doc), Vec::<String>::new(), "{off}");
        assert_eq!(doc["stats"]["files_skipped"], 1, "{off}");
    }
}

#[test]
fn an_archive_past_its_bound_is_a_notice_in_the_report() {
    let dir = TempDir::new().unwrap();
    let filler = "x".repeat(8192);
    let env = format!("AWS_ACCESS_KEY_ID={}\n", aws_key_id());
    write(
        dir.path(),
        "big.zip",
        zip_of(&[("filler.txt", filler), ("late.env", env)]),
    );
    let out = keyburn()
        .arg("scan")
        .arg(dir.path())
        .args(["--no-progress", "--archive-max-bytes", "4K", "-f", "sarif"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("big.zip!filler.txt") && stderr.contains("--archive-max-bytes"),
        "{stderr}"
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let run = &doc["runs"][0];
    assert_eq!(run["results"].as_array().unwrap().len(), 0);
    let notes = run["invocations"][0]["toolExecutionNotifications"]
        .as_array()
        .unwrap();
    assert!(
        notes.iter().any(|n| n["message"]["text"]
            .as_str()
            .is_some_and(|m| m.contains("big.zip!filler.txt") && m.contains("decompressed"))),
        "{notes:?}"
    );
}

#[test]
fn sarif_locates_an_archive_member_at_its_archive() {
    let dir = TempDir::new().unwrap();
    let env = format!("AWS_ACCESS_KEY_ID={}\n", aws_key_id());
    write(dir.path(), "release.zip", zip_of(&[("config/.env", env)]));
    let out = keyburn()
        .arg("scan")
        .arg(dir.path())
        .args(["--no-progress", "-f", "sarif"])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let result = doc["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ruleId"] == "aws-access-key-id")
        .expect("a result")
        .clone();
    let loc = &result["locations"][0]["physicalLocation"];
    assert_eq!(loc["artifactLocation"]["uri"], "release.zip");
    assert!(loc.get("region").is_none(), "{loc}");
    assert_eq!(result["properties"]["archiveMember"], "config/.env");
}
