use std::path::Path;
use std::process::Command;

use super::plumbing::PANIC_MARKER;
use super::*;
use crate::rules::RuleSet;

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=T", "-c", "user.email=t@example.org"])
        .args(["-c", "init.defaultBranch=main", "-c", "gc.auto=0"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {out:?}");
}

/// A repository whose second commit adds a file holding the panic marker,
/// packed or left as loose objects.
fn repository(packed: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q"]);
    for (name, text) in [
        ("a.txt", b"plain\n".to_vec()),
        ("b.txt", PANIC_MARKER.to_vec()),
    ] {
        std::fs::write(dir.path().join(name), text).unwrap();
        git(dir.path(), &["add", name]);
        git(dir.path(), &["commit", "-q", "-m", name]);
    }
    if packed {
        git(dir.path(), &["gc", "-q", "--aggressive"]);
    }
    dir
}

/// A worker that panics must fail the scan, with every strategy and
/// whether objects are read from whole packs or one by one.
#[test]
fn a_panicking_worker_fails_the_scan() {
    let engine = Engine::new(RuleSet::builtin()).unwrap();
    for packed in [false, true] {
        let repo = repository(packed);
        for strategy in [Strategy::Diff, Strategy::Packs] {
            if strategy == Strategy::Packs && !packed {
                continue; // loose objects are read on the calling thread
            }
            let opts = HistoryOptions {
                max_file_size: 1 << 20,
                threads: 2,
                strategy,
                ..Default::default()
            };
            let res = scan_history(&engine, repo.path(), &opts, |_| {});
            match res {
                Err(GitError::Worker(e)) => {
                    let text = e.to_string();
                    assert!(text.contains("test marker read"), "{text}");
                }
                other => panic!("{strategy:?}, packed {packed}: {other:?}"),
            }
        }
    }
}

/// Without the marker the same repositories scan cleanly: the test above
/// fails because of the panic, not the repository.
#[test]
fn the_same_repository_without_the_marker_scans() {
    let engine = Engine::new(RuleSet::builtin()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q"]);
    std::fs::write(dir.path().join("a.txt"), b"plain\n").unwrap();
    git(dir.path(), &["add", "a.txt"]);
    git(dir.path(), &["commit", "-q", "-m", "a"]);
    git(dir.path(), &["gc", "-q"]);
    for strategy in [Strategy::Diff, Strategy::Packs] {
        let opts = HistoryOptions {
            max_file_size: 1 << 20,
            strategy,
            ..Default::default()
        };
        let summary = scan_history(&engine, dir.path(), &opts, |_| {}).unwrap();
        assert_eq!(summary.commits, 1);
    }
}
