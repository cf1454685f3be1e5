//! The range logic of the GitHub Action and of CI
//! (`.github/scripts/scan-range.sh`), on repositories built with git: which
//! commits a push or a pull request scans.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::git;
use tempfile::TempDir;

fn commit(dir: &Path, name: &str) -> String {
    std::fs::write(dir.join(name), name).unwrap();
    git(dir, &["add", name]);
    git(dir, &["commit", "-q", "-m", name]);
    git(dir, &["rev-parse", "HEAD"])
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".github/scripts/scan-range.sh")
}

/// The script's output for `env`, run in `dir`.
fn range(dir: &Path, env: &[(&str, &str)]) -> Vec<String> {
    let mut cmd = Command::new("bash");
    cmd.arg(script()).current_dir(dir);
    for k in ["EVENT", "BEFORE", "BASE_SHA", "DEFAULT_BRANCH", "FULL"] {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// A clone of a repository with `main` (two commits) and a feature branch
/// (two more), checked out on the feature branch.
fn clone_on_feature() -> (TempDir, PathBuf, String, String) {
    let tmp = TempDir::new().unwrap();
    let origin = tmp.path().join("origin");
    std::fs::create_dir(&origin).unwrap();
    git(&origin, &["init", "-q", "-b", "main"]);
    commit(&origin, "a");
    let main_tip = commit(&origin, "b");
    let clone = tmp.path().join("clone");
    git(
        tmp.path(),
        &["clone", "-q", origin.to_str().unwrap(), "clone"],
    );
    git(&clone, &["checkout", "-q", "-b", "feature"]);
    let first = commit(&clone, "c");
    commit(&clone, "d");
    (tmp, clone, main_tip, first)
}

#[test]
fn a_push_scans_the_pushed_commits() {
    let (_tmp, clone, _, first) = clone_on_feature();
    assert_eq!(
        range(&clone, &[("EVENT", "push"), ("BEFORE", &first)]),
        ["--range", &format!("{first}..HEAD")]
    );
}

#[test]
fn a_first_push_or_a_lost_old_tip_scans_from_the_default_branch() {
    let (_tmp, clone, _, _) = clone_on_feature();
    let want = ["--range", "origin/main..HEAD"];
    let zeros = "0".repeat(40);
    let gone = "1234567890123456789012345678901234567890";
    for before in [zeros.as_str(), gone] {
        let env = [
            ("EVENT", "push"),
            ("BEFORE", before),
            ("DEFAULT_BRANCH", "main"),
        ];
        assert_eq!(range(&clone, &env), want, "before {before}");
    }
}

#[test]
fn the_first_push_of_the_default_branch_scans_everything() {
    let (_tmp, clone, _, _) = clone_on_feature();
    git(&clone, &["checkout", "-q", "main"]);
    let env = [
        ("EVENT", "push"),
        ("BEFORE", "0000000000000000000000000000000000000000"),
        ("DEFAULT_BRANCH", "main"),
    ];
    assert!(range(&clone, &env).is_empty());
}

#[test]
fn a_pull_request_scans_from_the_merge_base() {
    let (_tmp, clone, main_tip, _) = clone_on_feature();
    // main moves on after the branch was cut: the merge base is still the
    // old tip, not the new one.
    git(&clone, &["checkout", "-q", "main"]);
    let new_main = commit(&clone, "e");
    git(&clone, &["checkout", "-q", "feature"]);
    let env = [("EVENT", "pull_request"), ("BASE_SHA", new_main.as_str())];
    assert_eq!(
        range(&clone, &env),
        ["--range", &format!("{main_tip}..HEAD")]
    );
}

#[test]
fn full_history_overrides_every_event() {
    let (_tmp, clone, _, first) = clone_on_feature();
    let env = [
        ("EVENT", "push"),
        ("BEFORE", first.as_str()),
        ("FULL", "true"),
    ];
    assert!(range(&clone, &env).is_empty());
}
