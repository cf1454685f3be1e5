//! Sweeps across many repositories: `scan --repos`, `--shard`, clone URLs
//! (`file://`), and `report merge`. Fake keys are assembled at run time.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use assert_cmd::Command;
use common::git;
use serde_json::Value;
use tempfile::TempDir;

/// A distinct fake AWS access key id per repository.
fn key(n: usize) -> String {
    let body: String = "Q7XK2M4PZ6RB3TVN"
        .chars()
        .cycle()
        .skip(n)
        .take(16)
        .collect();
    format!("{}{}", "AKIA", body)
}

/// A repository at `dir/name` whose history holds `key(n)`.
fn make_repo(dir: &Path, name: &str, n: usize) {
    let repo = dir.join(name);
    fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    fs::write(
        repo.join("config.env"),
        format!("AWS_ACCESS_KEY_ID={}\n", key(n)),
    )
    .unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "config"]);
    fs::write(repo.join("config.env"), "AWS_ACCESS_KEY_ID=${AWS_KEY}\n").unwrap();
    git(&repo, &["commit", "-q", "-am", "use the environment"]);
}

fn scan(args: &[&str], cache: &Path) -> (Value, i32, String) {
    let out = Command::cargo_bin("keyburn")
        .unwrap()
        .arg("scan")
        .args(args)
        .args(["-f", "json", "--no-progress"])
        .env("KEYBURN_CACHE_DIR", cache)
        .output()
        .unwrap();
    (
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// (repository, secret, commit) of each finding.
fn found(doc: &Value) -> BTreeSet<(String, String, String)> {
    doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["repository"].as_str().unwrap().to_string(),
                f["secret"].as_str().unwrap().to_string(),
                f["commit"]["id"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

struct Org {
    dir: TempDir,
    cache: TempDir,
    list: std::path::PathBuf,
    names: Vec<String>,
}

/// Five local repositories and two clone URLs (`file://`).
fn org() -> Org {
    let dir = TempDir::new().unwrap();
    let mut names = Vec::new();
    for n in 0..7 {
        let name = format!("repo{n}");
        make_repo(dir.path(), &name, n);
        names.push(if n < 5 {
            dir.path().join(&name).display().to_string()
        } else {
            format!("file://{}", dir.path().join(&name).display())
        });
    }
    let list = dir.path().join("repos.txt");
    fs::write(&list, format!("# the org\n{}\n", names.join("\n"))).unwrap();
    Org {
        dir,
        cache: TempDir::new().unwrap(),
        list,
        names,
    }
}

#[test]
fn a_sweep_names_each_findings_repository_and_clones_urls() {
    let o = org();
    let (doc, code, err) = scan(&["--repos", o.list.to_str().unwrap()], o.cache.path());
    assert_eq!(code, 1, "{err}");
    let got = found(&doc);
    let repos: BTreeSet<&str> = got.iter().map(|(r, _, _)| r.as_str()).collect();
    let want: BTreeSet<&str> = o.names.iter().map(String::as_str).collect();
    assert_eq!(repos, want);
    for (n, name) in o.names.iter().enumerate() {
        assert!(
            got.iter()
                .any(|(r, s, c)| r == name && *s == key(n) && !c.is_empty()),
            "{name}: {got:?}"
        );
    }
    assert_eq!(doc["stats"]["repositories"], 7);
    // The clones are kept, and the next sweep fetches into them.
    let mirrors = fs::read_dir(o.cache.path().join("repos")).unwrap().count();
    assert_eq!(mirrors, 2);
    let (again, code, err) = scan(&["--repos", o.list.to_str().unwrap()], o.cache.path());
    assert_eq!(code, 1, "{err}");
    assert_eq!(found(&again), got);
}

#[test]
fn shards_cover_the_list_and_their_merge_equals_one_run() {
    let o = org();
    let list = o.list.to_str().unwrap();
    let (whole, _, _) = scan(&["--repos", list], o.cache.path());
    let mut reports = Vec::new();
    let mut per_shard = Vec::new();
    for k in 0..3 {
        let out = o.dir.path().join(format!("shard{k}.json"));
        let shard = format!("{k}/3");
        let (doc, code, err) = scan(
            &[
                "--repos",
                list,
                "--shard",
                &shard,
                "-o",
                out.to_str().unwrap(),
            ],
            o.cache.path(),
        );
        assert!(code == 0 || code == 1, "{err}");
        assert_eq!(doc, Value::Null, "the report went to -o");
        let doc: Value = serde_json::from_slice(&fs::read(&out).unwrap()).unwrap();
        per_shard.push(found(&doc));
        reports.push(out);
    }
    // No repository is in two shards.
    for a in 0..3 {
        for b in a + 1..3 {
            assert!(per_shard[a].is_disjoint(&per_shard[b]));
        }
    }
    let merged = o.dir.path().join("all.json");
    let out = Command::cargo_bin("keyburn")
        .unwrap()
        .args(["report", "merge"])
        .args(&reports)
        .arg("-o")
        .arg(&merged)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "findings: exit 1");
    let merged: Value = serde_json::from_slice(&fs::read(&merged).unwrap()).unwrap();
    assert_eq!(found(&merged), found(&whole));
    assert_eq!(
        merged["findings"], whole["findings"],
        "same order, same fields"
    );
    assert_eq!(merged["stats"]["repositories"], 7);
    assert_eq!(merged["stats"]["commits"], whole["stats"]["commits"]);
}

#[test]
fn a_bad_entry_fails_the_sweep_and_the_rest_is_scanned() {
    let o = org();
    let not_repo = o.dir.path().join("plain");
    fs::create_dir_all(&not_repo).unwrap();
    let list = o.dir.path().join("bad.txt");
    fs::write(
        &list,
        format!(
            "{}\n{}\nfile://{}/nowhere.git\n",
            o.names[0],
            not_repo.display(),
            o.dir.path().display()
        ),
    )
    .unwrap();
    let (doc, code, err) = scan(&["--repos", list.to_str().unwrap()], o.cache.path());
    assert_eq!(code, 2, "never a silent pass: {err}");
    assert!(err.contains("not a git repository"), "{err}");
    assert!(err.contains("cannot clone"), "{err}");
    assert!(err.contains("2 repositories were not scanned"), "{err}");
    assert_eq!(found(&doc).len(), 1, "the good repository was scanned");
    assert_eq!(
        doc["stats"]["failed_repositories"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Nothing half-cloned is left for the next sweep to take.
    let left: Vec<_> = fs::read_dir(o.cache.path().join("repos"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn merge_refuses_what_is_not_a_keyburn_report() {
    let d = TempDir::new().unwrap();
    let p = d.path().join("gitleaks.json");
    fs::write(&p, "[]").unwrap();
    let out = Command::cargo_bin("keyburn")
        .unwrap()
        .args(["report", "merge"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a keyburn report"));
}
