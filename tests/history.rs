//! Git history, staged changes and the pre-commit hook, on repositories
//! built with `git` in temporary directories. Fake keys are assembled at run
//! time.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command as Std;

use assert_cmd::Command;
use common::git;
use predicates::prelude::*;
use serde_json::Value;
use tempfile::TempDir;

/// Distinct fake AWS access key ids.
fn key(n: usize) -> String {
    const BODIES: [&str; 4] = [
        "Q7XK2M4PZ6RB3TVN",
        "M3ZQ7KX2P4TB6RVN",
        "T6RB3Q7XZ2M4PKVN",
        "P4TB6RVNM3ZQ7KX2",
    ];
    format!("{}{}", "AKIA", BODIES[n])
}

fn repo() -> TempDir {
    let dir = TempDir::new().unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    dir
}

fn commit_file(dir: &Path, rel: &str, content: &str, msg: &str) -> String {
    let p = dir.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", msg]);
    git(dir, &["rev-parse", "HEAD"])
}

/// Scan `dir` with the default history strategy, checking that both
/// strategies report exactly the same (findings, warnings, exit status).
fn scan_json(dir: &Path, args: &[&str]) -> (Value, i32, String) {
    let run = |strategy: &str| {
        let out = Command::cargo_bin("keyburn")
            .unwrap()
            .arg("scan")
            .arg(dir)
            .args(["-f", "json"])
            .args(args)
            .env("KEYBURN_HISTORY_STRATEGY", strategy)
            .output()
            .unwrap();
        let doc = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (
            doc,
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let comparable = |(doc, code, stderr): &(Value, i32, String)| {
        let mut found: Vec<String> = doc["findings"]
            .as_array()
            .map(|a| a.iter().map(Value::to_string).collect())
            .unwrap_or_default();
        found.sort();
        // All but the -v summary, which names the strategy.
        let mut lines: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.starts_with("keyburn: history ("))
            .collect();
        lines.sort();
        (found, *code, lines.join("\n"))
    };
    let auto = run("auto");
    for strategy in ["diff", "packs"] {
        assert_eq!(
            comparable(&run(strategy)),
            comparable(&auto),
            "{strategy} and auto differ on {args:?}"
        );
    }
    auto
}

fn findings(doc: &Value) -> Vec<(String, String, String)> {
    doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["secret"].as_str().unwrap().to_string(),
                f["commit"]["id"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn a_secret_added_then_removed_is_found_in_its_commit() {
    let dir = repo();
    commit_file(dir.path(), "README", "hello\n", "init");
    let added = commit_file(
        dir.path(),
        "conf/app.py",
        &format!("KEY = '{}'\n", key(0)),
        "add config",
    );
    git(dir.path(), &["rm", "-q", "conf/app.py"]);
    git(dir.path(), &["commit", "-q", "-m", "remove config"]);
    let (doc, code, _) = scan_json(dir.path(), &[]);
    assert_eq!(code, 1);
    assert_eq!(
        findings(&doc),
        [("conf/app.py".into(), key(0), added.clone())]
    );
    let f = &doc["findings"][0];
    assert_eq!(f["commit"]["author"], "Dev");
    assert_eq!(f["commit"]["email"], "dev@example.org");
    assert_eq!(f["commit"]["message"], "add config");
    assert_eq!(f["line"], 1);
    // --no-history looks only at the files on disk, where it is gone.
    let (doc, code, _) = scan_json(dir.path(), &["--no-history"]);
    assert_eq!((findings(&doc).len(), code), (0, 0));
}

#[test]
fn secrets_only_on_a_side_branch_or_only_in_a_tag_are_found() {
    let dir = repo();
    commit_file(dir.path(), "README", "hello\n", "init");
    git(dir.path(), &["checkout", "-q", "-b", "side"]);
    let side = commit_file(
        dir.path(),
        "side.env",
        &format!("K={}\n", key(1)),
        "side work",
    );
    git(dir.path(), &["checkout", "-q", "main"]);
    git(dir.path(), &["checkout", "-q", "--orphan", "tmp"]);
    let tagged = commit_file(
        dir.path(),
        "tagged.txt",
        &format!("{}\n", key(2)),
        "only tagged",
    );
    git(dir.path(), &["tag", "v-secret"]);
    git(dir.path(), &["checkout", "-q", "main"]);
    git(dir.path(), &["branch", "-q", "-D", "tmp"]);
    let (doc, _, _) = scan_json(dir.path(), &[]);
    let mut got = findings(&doc);
    got.sort();
    assert_eq!(
        got,
        [
            ("side.env".into(), key(1), side.clone()),
            ("tagged.txt".into(), key(2), tagged)
        ]
    );
    // --branch restricts the walk to one ref.
    let (doc, _, _) = scan_json(dir.path(), &["--branch", "main"]);
    assert!(findings(&doc).is_empty());
    let (doc, _, _) = scan_json(dir.path(), &["--branch", "side"]);
    assert_eq!(findings(&doc), [("side.env".into(), key(1), side)]);
}

#[test]
fn a_merge_reports_only_what_its_resolution_introduced() {
    let dir = repo();
    commit_file(dir.path(), "c.txt", "base\n", "init");
    git(dir.path(), &["checkout", "-q", "-b", "feature"]);
    commit_file(dir.path(), "c.txt", "feature side\n", "feature");
    git(dir.path(), &["checkout", "-q", "main"]);
    commit_file(dir.path(), "c.txt", "main side\n", "main");
    // The merge conflicts (exit 1); its resolution adds the secret.
    let merged = Std::new("git")
        .arg("-C")
        .arg(dir.path())
        .args([
            "-c",
            "user.name=Dev",
            "-c",
            "user.email=dev@example.org",
            "merge",
            "-q",
            "feature",
        ])
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(!merged.status.success());
    assert!(dir.path().join(".git/MERGE_HEAD").exists());
    fs::write(dir.path().join("c.txt"), format!("resolved {}\n", key(3))).unwrap();
    git(dir.path(), &["add", "c.txt"]);
    git(dir.path(), &["commit", "-q", "-m", "merge feature"]);
    assert_eq!(
        git(dir.path(), &["rev-list", "--parents", "-n1", "HEAD"])
            .split(' ')
            .count(),
        3
    );
    let merge = git(dir.path(), &["rev-parse", "HEAD"]);
    let (doc, _, _) = scan_json(dir.path(), &[]);
    assert_eq!(findings(&doc), [("c.txt".into(), key(3), merge)]);
}

#[test]
fn a_renamed_file_keeps_the_commit_that_introduced_the_secret() {
    let dir = repo();
    let added = commit_file(dir.path(), "old.cfg", &format!("k={}\n", key(0)), "add");
    git(dir.path(), &["mv", "old.cfg", "new.cfg"]);
    git(dir.path(), &["commit", "-q", "-m", "rename"]);
    let (doc, _, _) = scan_json(dir.path(), &["-v"]);
    let got = findings(&doc);
    assert!(got.contains(&("old.cfg".into(), key(0), added)), "{got:?}");
    // One blob, scanned once, whatever the number of paths it lived at.
    assert_eq!(doc["stats"]["files_scanned"], 1);
}

#[test]
fn since_and_range_limit_the_scan_to_new_commits() {
    let dir = repo();
    let first = commit_file(dir.path(), "a.txt", &format!("{}\n", key(0)), "old secret");
    let second = commit_file(dir.path(), "b.txt", "clean\n", "clean");
    let third = commit_file(dir.path(), "c.txt", &format!("{}\n", key(1)), "new secret");
    let (doc, _, _) = scan_json(dir.path(), &["--since", &second]);
    assert_eq!(findings(&doc), [("c.txt".into(), key(1), third.clone())]);
    // Annotated tags name their commit.
    git(dir.path(), &["tag", "-a", "-m", "release", "v1", &second]);
    let (doc, _, _) = scan_json(dir.path(), &["--range", "v1..HEAD"]);
    assert_eq!(findings(&doc), [("c.txt".into(), key(1), third)]);
    let (doc, code, _) = scan_json(dir.path(), &["--range", &format!("{first}..{second}")]);
    assert_eq!((findings(&doc).len(), code), (0, 0));
    let (doc, _, _) = scan_json(dir.path(), &["--since", "no-such-rev"]);
    assert!(doc.is_null());
}

#[test]
fn a_corrupt_object_is_reported_and_the_scan_goes_on() {
    let dir = repo();
    commit_file(dir.path(), "good.txt", &format!("{}\n", key(0)), "good");
    commit_file(
        dir.path(),
        "bad.txt",
        "this blob will be corrupted\n",
        "bad",
    );
    let blob = git(dir.path(), &["rev-parse", "HEAD:bad.txt"]);
    let obj = dir
        .path()
        .join(".git/objects")
        .join(&blob[..2])
        .join(&blob[2..]);
    let mut perms = fs::metadata(&obj).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    fs::set_permissions(&obj, perms).unwrap();
    fs::write(&obj, b"not zlib at all").unwrap();
    let (doc, code, stderr) = scan_json(dir.path(), &[]);
    assert!(stderr.contains(&blob), "{stderr}");
    assert_eq!(code, 1);
    assert_eq!(findings(&doc)[0].1, key(0));
}

/// `git pack-objects` of the objects `rev-list` lists for `revs`, written
/// as `.git/objects/pack/<name>-<hash>.pack`; returns the pack's hash.
fn pack_objects(d: &Path, revs: &[&str], name: &str, keep: impl Fn(&str) -> bool) -> String {
    let mut args = vec!["rev-list", "--objects"];
    args.extend_from_slice(revs);
    let ids: String = git(d, &args)
        .lines()
        .filter_map(|l| l.split(' ').next())
        .filter(|id| keep(id))
        .map(|id| format!("{id}\n"))
        .collect();
    let mut pack = Std::new("git")
        .arg("-C")
        .arg(d)
        .args(["pack-objects", "-q", "--window=50", "--depth=50"])
        .arg(format!(".git/objects/pack/{name}"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    pack.stdin
        .take()
        .unwrap()
        .write_all(ids.as_bytes())
        .unwrap();
    let out = pack.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn objects_stored_in_two_packs_give_the_same_findings() {
    let dir = repo();
    let d = dir.path();
    // A file that shrinks, so that git stores newer versions as deltas of
    // older (larger) ones, with a secret from version 5 on; and a larger
    // file full of keywords, whose delta tree is decoded first.
    let mut notes = String::new();
    for i in 0..30 {
        let lines: String = (i..40)
            .map(|n| format!("option_{n} = {}\n", n * 3))
            .collect();
        let secret = if i >= 5 {
            format!("aws_key = '{}'\n", key(1))
        } else {
            String::new()
        };
        notes.push_str(&format!("key token secret api_key password line {i}\n").repeat(20));
        fs::write(d.join("notes.txt"), &notes).unwrap();
        commit_file(
            d,
            "app/config.py",
            &format!("{secret}{lines}"),
            &format!("v{i}"),
        );
    }
    let (loose, code, _) = scan_json(d, &["-j", "1"]);
    assert_eq!((findings(&loose).len(), code), (25, 1));
    // The first pack (by name) holds the first 20 versions; the second
    // holds everything again, its newer versions as deltas of objects the
    // first pack already has.
    pack_objects(d, &["HEAD~10"], "pack-0", |_| true);
    pack_objects(d, &["--all"], "pack-1", |_| true);
    git(d, &["prune-packed"]);
    assert!(git(d, &["count-objects", "-v"]).starts_with("count: 0\n"));
    let (packed, code, _) = scan_json(d, &["-j", "1"]);
    assert_eq!(code, 1);
    let sorted = |doc: &Value| {
        let mut f = findings(doc);
        f.sort();
        f
    };
    assert_eq!(sorted(&packed), sorted(&loose));
}

#[test]
fn a_blob_missing_from_a_pack_is_reported_with_its_path() {
    let dir = repo();
    let d = dir.path();
    commit_file(d, "keep.txt", &format!("{}\n", key(0)), "keep");
    commit_file(d, "lost/gone.txt", "this blob will be left out\n", "gone");
    commit_file(d, "more.txt", "more\n", "more");
    let lost = git(d, &["rev-parse", "HEAD:lost/gone.txt"]);
    // Pack every object but that blob (as a partial clone would), then
    // drop the loose copies.
    pack_objects(d, &["--all"], "pack", |id| id != lost);
    git(d, &["prune-packed"]);
    fs::remove_file(d.join(".git/objects").join(&lost[..2]).join(&lost[2..])).unwrap();
    let (doc, code, stderr) = scan_json(d, &[]);
    assert!(
        stderr.contains(&format!(
            "lost/gone.txt: blob {lost} is missing from the object database"
        )),
        "{stderr}"
    );
    assert_eq!(code, 1);
    assert_eq!(findings(&doc)[0].1, key(0));
}

#[test]
fn a_corrupt_object_in_a_pack_is_reported_and_the_scan_goes_on() {
    let dir = repo();
    let d = dir.path();
    commit_file(d, "good.txt", &format!("{}\n", key(0)), "good");
    commit_file(
        d,
        "bad.txt",
        &"this blob will be corrupted\n".repeat(4),
        "bad",
    );
    let bad = git(d, &["rev-parse", "HEAD:bad.txt"]);
    git(d, &["repack", "-q", "-a", "-d"]);
    git(d, &["prune-packed"]);
    // Overwrite the middle of that blob's compressed data.
    let pack_dir = d.join(".git/objects/pack");
    let idx = fs::read_dir(&pack_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "idx"))
        .unwrap();
    let out = Std::new("git")
        .arg("show-index")
        .stdin(fs::File::open(&idx).unwrap())
        .output()
        .unwrap();
    let offset: usize = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.contains(&bad))
        .and_then(|l| l.split(' ').next()?.parse().ok())
        .unwrap();
    let pack = idx.with_extension("pack");
    let mut bytes = fs::read(&pack).unwrap();
    bytes[offset + 6..offset + 14].fill(0xff);
    let mut perms = fs::metadata(&pack).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    fs::set_permissions(&pack, perms).unwrap();
    fs::write(&pack, bytes).unwrap();
    let (doc, code, stderr) = scan_json(d, &[]);
    assert!(
        stderr.contains(&format!("bad.txt: blob {bad} cannot be read")),
        "{stderr}"
    );
    assert_eq!(code, 1);
    assert_eq!(findings(&doc)[0].1, key(0));
}

#[test]
fn all_objects_finds_blobs_no_ref_reaches() {
    let dir = repo();
    commit_file(dir.path(), "README", "hi\n", "init");
    let dangling = dir.path().join("dangling.txt");
    fs::write(&dangling, format!("{}\n", key(3))).unwrap();
    let id = git(
        dir.path(),
        &["hash-object", "-w", dangling.to_str().unwrap()],
    );
    fs::remove_file(&dangling).unwrap();
    let (doc, code, _) = scan_json(dir.path(), &[]);
    assert_eq!((findings(&doc).len(), code), (0, 0));
    let (doc, code, _) = scan_json(dir.path(), &["--all-objects"]);
    assert_eq!(code, 1);
    let got = findings(&doc);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, format!("(unreachable blob {id})"));
    assert_eq!(got[0].2, "", "no commit introduced it");
    // A history-only option asks for history even from a subdirectory.
    fs::create_dir(dir.path().join("sub")).unwrap();
    let (doc, _, _) = scan_json(&dir.path().join("sub"), &["--all-objects"]);
    assert_eq!(findings(&doc).len(), 1);
}

#[test]
fn submodules_are_named_as_separate_and_big_blobs_are_skipped_with_a_note() {
    let sub = repo();
    commit_file(sub.path(), "inner.txt", &format!("{}\n", key(2)), "inner");
    let dir = repo();
    commit_file(
        dir.path(),
        "big.txt",
        &format!("{}\n{}", key(0), "x".repeat(4096)),
        "big",
    );
    git(
        dir.path(),
        &[
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "add",
            "-q",
            sub.path().to_str().unwrap(),
            "vendor/lib",
        ],
    );
    git(dir.path(), &["commit", "-q", "-m", "add submodule"]);
    let (doc, code, stderr) = scan_json(dir.path(), &["--max-file-size", "1K"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(findings(&doc).is_empty());
    assert!(stderr.contains("vendor/lib: submodule"), "{stderr}");
    assert!(
        stderr.contains("big.txt") && stderr.contains("--max-file-size"),
        "{stderr}"
    );
}

#[test]
fn a_path_that_is_not_a_repository_is_a_clear_error() {
    let dir = TempDir::new().unwrap();
    Command::cargo_bin("keyburn")
        .unwrap()
        .args(["scan", "--history"])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not a git repository"));
}

#[test]
fn history_mode_takes_one_repository() {
    let a = repo();
    let b = repo();
    Command::cargo_bin("keyburn")
        .unwrap()
        .args(["scan", "--history"])
        .arg(a.path())
        .arg(b.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("one repository"));
}

#[test]
fn an_empty_repository_is_reported_clean() {
    let dir = repo();
    let (doc, code, stderr) = scan_json(dir.path(), &[]);
    assert_eq!(code, 0);
    assert!(findings(&doc).is_empty());
    assert!(stderr.contains("no commits to scan"), "{stderr}");
}

#[test]
fn bare_and_shallow_clones_are_scanned() {
    let dir = repo();
    commit_file(dir.path(), "a.txt", &format!("{}\n", key(0)), "one");
    commit_file(dir.path(), "b.txt", &format!("{}\n", key(1)), "two");
    let clones = TempDir::new().unwrap();
    let bare = clones.path().join("bare.git");
    let url = format!("file://{}", dir.path().display());
    git(
        clones.path(),
        &["clone", "-q", "--bare", &url, bare.to_str().unwrap()],
    );
    let (doc, _, _) = scan_json(&bare, &["--history"]);
    assert_eq!(findings(&doc).len(), 2);
    let shallow = clones.path().join("shallow");
    git(
        clones.path(),
        &[
            "clone",
            "-q",
            "--depth",
            "1",
            &url,
            shallow.to_str().unwrap(),
        ],
    );
    let (doc, code, stderr) = scan_json(&shallow, &[]);
    assert_eq!(code, 1, "{stderr}");
    // The shallow boundary commit holds both files: both are in its tree.
    assert_eq!(findings(&doc).len(), 2);
    assert!(
        stderr.contains("shallow clone") && stderr.contains("not scanned"),
        "{stderr}"
    );
}

fn sources_of(doc: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["source"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_repository_scan_covers_modified_staged_and_untracked_files() {
    let dir = repo();
    let d = dir.path();
    commit_file(d, ".gitignore", "build/\n", "ignore build");
    commit_file(d, "a.txt", "clean\n", "a");
    commit_file(d, "old.txt", &format!("{}\n", key(3)), "an old secret");
    // Modified, not staged; staged, then edited clean on disk; untracked;
    // ignored.
    fs::write(d.join("a.txt"), format!("clean\n{}\n", key(0))).unwrap();
    fs::write(d.join("b.txt"), format!("{}\n", key(1))).unwrap();
    git(d, &["add", "b.txt"]);
    fs::write(d.join("b.txt"), "clean again\n").unwrap();
    fs::write(d.join("c.txt"), format!("{}\n", key(2))).unwrap();
    fs::create_dir(d.join("build")).unwrap();
    fs::write(d.join("build/out.txt"), format!("{}\n", key(2))).unwrap();

    let (doc, code, stderr) = scan_json(d, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        sources_of(&doc),
        [
            ("a.txt".into(), "worktree".into()),
            ("b.txt".into(), "worktree".into()),
            ("c.txt".into(), "worktree".into()),
            ("old.txt".into(), "history".into()),
        ]
    );
    // a.txt, c.txt, b.txt on disk and its staged blob; files equal to
    // HEAD's are not scanned.
    assert_eq!(doc["stats"]["worktree_files"], 4);
    assert_eq!(doc["stats"]["commits"], 3);

    // --history alone: history only.
    let (doc, _, _) = scan_json(d, &["--history"]);
    assert_eq!(sources_of(&doc), [("old.txt".into(), "history".into())]);
    assert!(doc["stats"]["worktree_files"].is_null());

    // --no-history: every file on disk (named as reached), as files.
    let (doc, _, _) = scan_json(d, &["--no-history"]);
    let names: Vec<(String, String)> = sources_of(&doc)
        .into_iter()
        .map(|(p, s)| (p.rsplit('/').next().unwrap().to_string(), s))
        .collect();
    assert_eq!(
        names,
        [
            ("a.txt".into(), "file".into()),
            ("c.txt".into(), "file".into()),
            ("old.txt".into(), "file".into()),
        ]
    );
}

#[test]
fn since_alone_means_since_to_head_and_all_refs_widens_it() {
    let dir = repo();
    let d = dir.path();
    let base = commit_file(d, "a.txt", "clean\n", "base");
    git(d, &["checkout", "-q", "-b", "side"]);
    commit_file(d, "side.txt", &format!("{}\n", key(0)), "side secret");
    git(d, &["checkout", "-q", "main"]);
    commit_file(d, "main.txt", &format!("{}\n", key(1)), "main secret");
    let (doc, _, _) = scan_json(d, &["--since", &base]);
    assert_eq!(sources_of(&doc), [("main.txt".into(), "history".into())]);
    assert_eq!(doc["stats"]["commits"], 1);
    let (doc, _, _) = scan_json(d, &["--since", &base, "--all-refs"]);
    assert_eq!(
        sources_of(&doc),
        [
            ("main.txt".into(), "history".into()),
            ("side.txt".into(), "history".into()),
        ]
    );
}

#[test]
fn a_damaged_pack_is_an_error_not_an_empty_repository() {
    let dir = repo();
    let d = dir.path();
    commit_file(d, "a.txt", &format!("{}\n", key(0)), "one");
    commit_file(d, "b.txt", "clean\n", "two");
    git(d, &["gc", "-q"]);
    let pack_dir = d.join(".git/objects/pack");
    let pack = fs::read_dir(&pack_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "pack"))
        .unwrap();
    let mut bytes = fs::read(&pack).unwrap();
    let end = bytes.len() - 20;
    bytes[12..end].fill(0xff);
    let mut perms = fs::metadata(&pack).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    fs::set_permissions(&pack, perms).unwrap();
    fs::write(&pack, bytes).unwrap();
    let (doc, code, stderr) = scan_json(d, &["--history"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(doc.is_null() || findings(&doc).is_empty());
    assert!(stderr.contains("cannot read"), "{stderr}");
    assert!(!stderr.contains("no commits to scan"), "{stderr}");
}

#[test]
fn staged_scan_reports_added_lines_only_with_staged_line_numbers() {
    let dir = repo();
    // First commit: HEAD is unborn, everything staged is new.
    fs::write(
        dir.path().join("app.py"),
        format!("import os\nKEY = '{}'\n", key(0)),
    )
    .unwrap();
    git(dir.path(), &["add", "app.py"]);
    let (doc, code, _) = scan_json(dir.path(), &["--staged"]);
    assert_eq!(code, 1);
    assert_eq!(doc["findings"][0]["line"], 2);
    git(dir.path(), &["commit", "-q", "-m", "init"]);
    // Editing another line of the file does not re-report the old secret.
    fs::write(
        dir.path().join("app.py"),
        format!("import os, sys\nKEY = '{}'\n", key(0)),
    )
    .unwrap();
    git(dir.path(), &["add", "app.py"]);
    let (doc, code, _) = scan_json(dir.path(), &["--staged"]);
    assert_eq!((findings(&doc).len(), code), (0, 0));
    // A new secret is reported at its line in the staged file; unstaged
    // changes are not looked at.
    fs::write(
        dir.path().join("app.py"),
        format!(
            "import os, sys\nKEY = '{}'\n\nOTHER = '{}'\n",
            key(0),
            key(1)
        ),
    )
    .unwrap();
    git(dir.path(), &["add", "app.py"]);
    fs::write(dir.path().join("unstaged.txt"), format!("{}\n", key(2))).unwrap();
    let (doc, code, _) = scan_json(dir.path(), &["--staged"]);
    assert_eq!(code, 1);
    let got = findings(&doc);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, key(1));
    assert_eq!(doc["findings"][0]["line"], 4);
}

#[test]
fn staged_scan_works_in_a_linked_worktree() {
    let dir = repo();
    commit_file(dir.path(), "README", "hi\n", "init");
    let wt = TempDir::new().unwrap();
    let wt_path = wt.path().join("wt");
    git(
        dir.path(),
        &["worktree", "add", "-q", wt_path.to_str().unwrap()],
    );
    fs::write(wt_path.join("x.env"), format!("K={}\n", key(2))).unwrap();
    git(&wt_path, &["add", "x.env"]);
    let (doc, code, _) = scan_json(&wt_path, &["--staged"]);
    assert_eq!(code, 1);
    assert_eq!(findings(&doc)[0].0, "x.env");
}

#[test]
fn hook_install_writes_a_pre_commit_hook_and_respects_foreign_ones() {
    let dir = repo();
    let hook = dir.path().join(".git/hooks/pre-commit");
    fs::create_dir_all(hook.parent().unwrap()).unwrap();
    fs::write(&hook, "#!/bin/sh\necho mine\n").unwrap();
    let install = || {
        let mut c = Command::cargo_bin("keyburn").unwrap();
        c.args(["hook", "install"]).arg(dir.path());
        c
    };
    install()
        .assert()
        .failure()
        .stderr(predicate::str::contains("--force"));
    assert!(fs::read_to_string(&hook).unwrap().contains("echo mine"));
    install().arg("--force").assert().success();
    let text = fs::read_to_string(&hook).unwrap();
    assert!(text.contains("keyburn scan --staged"), "{text}");
    // Reinstalling over our own hook needs no --force.
    install().assert().success();

    // Without keyburn on PATH the hook says how to get it and blocks.
    let run = Std::new("/bin/sh")
        .arg(&hook)
        .env("PATH", "/nonexistent")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{said}");
    assert!(
        said.contains("not on PATH") && said.contains("install"),
        "{said}"
    );

    // Uninstall removes our hook, and refuses a foreign one without --force.
    let uninstall = || {
        let mut c = Command::cargo_bin("keyburn").unwrap();
        c.args(["hook", "uninstall"]).arg(dir.path());
        c
    };
    uninstall().assert().success();
    assert!(!hook.exists());
    uninstall()
        .assert()
        .success()
        .stdout(predicate::str::contains("no pre-commit hook"));
    fs::write(&hook, "#!/bin/sh\necho mine\n").unwrap();
    uninstall()
        .assert()
        .failure()
        .stderr(predicate::str::contains("--force"));
    assert!(hook.exists());
    uninstall().arg("--force").assert().success();
    assert!(!hook.exists());
}

#[test]
fn packed_and_loose_repositories_give_the_same_findings() {
    let dir = repo();
    let d = dir.path();
    // Many versions of the same files, so that packing stores deltas.
    let mut body = String::new();
    for i in 0..40 {
        body.push_str(&format!("setting_{i} = {}\n", i * 7));
        let secret = match i {
            5 => format!("aws_key = '{}'\n", key(0)),
            17 => format!("backup_key = '{}'\n", key(1)),
            _ => String::new(),
        };
        commit_file(
            d,
            "conf/settings.py",
            &format!("{body}{secret}"),
            &format!("v{i}"),
        );
        commit_file(
            d,
            &format!("notes/{}.txt", i % 5),
            &body,
            &format!("notes {i}"),
        );
    }
    git(d, &["checkout", "-q", "-b", "side", "HEAD~30"]);
    commit_file(d, "side.env", &format!("KEY={}\n", key(2)), "side");
    git(d, &["checkout", "-q", "main"]);

    let (loose, code, _) = scan_json(d, &[]);
    assert_eq!(code, 1);
    let mut expected = findings(&loose);
    expected.sort();
    assert_eq!(expected.len(), 3, "{expected:?}");

    git(
        d,
        &[
            "repack",
            "-q",
            "-a",
            "-d",
            "-f",
            "--depth=50",
            "--window=50",
        ],
    );
    git(d, &["prune-packed"]);
    assert!(git(d, &["count-objects", "-v"]).starts_with("count: 0\n"));
    let out = Command::cargo_bin("keyburn")
        .unwrap()
        .args(["scan", "-v", "-f", "json"])
        .arg(d)
        .output()
        .unwrap();
    let packed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Every blob came from decoding the pack whole.
    let blobs = loose["stats"]["files_scanned"].as_u64().unwrap()
        + loose["stats"]["files_skipped"].as_u64().unwrap();
    assert!(
        stderr.contains(&format!(
            "{blobs} unique blobs, {blobs} of them decoded pack by pack"
        )),
        "{stderr}"
    );
    let mut got = findings(&packed);
    got.sort();
    assert_eq!(got, expected);
    let lines = |doc: &Value| {
        let mut l: Vec<_> = doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["fingerprint"].to_string(), f["line"].as_u64()))
            .collect();
        l.sort();
        l
    };
    assert_eq!(lines(&packed), lines(&loose));
    assert_eq!(
        packed["stats"]["files_scanned"],
        loose["stats"]["files_scanned"]
    );
}

#[test]
fn gitleaksignore_takes_commit_fingerprints_in_history() {
    let dir = repo();
    let d = dir.path();
    let first = commit_file(d, "a.txt", &format!("x\n{}\n", key(0)), "one");
    commit_file(d, "b.txt", &format!("{}\n", key(1)), "two");
    let out = Command::cargo_bin("keyburn")
        .unwrap()
        .arg("scan")
        .arg(d)
        .args(["-f", "gitleaks", "--history"])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let prints: Vec<&str> = doc
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["Fingerprint"].as_str().unwrap())
        .collect();
    assert!(
        prints.contains(&format!("{first}:a.txt:aws-access-key-id:2").as_str()),
        "{prints:?}"
    );
    fs::write(
        d.join(".gitleaksignore"),
        format!("{first}:a.txt:aws-access-key-id:2\n"),
    )
    .unwrap();
    let (doc, code, _) = scan_json(d, &["--history"]);
    assert_eq!(code, 1);
    assert_eq!(
        findings(&doc).into_iter().map(|f| f.0).collect::<Vec<_>>(),
        ["b.txt"]
    );
    assert_eq!(doc["stats"]["baselined"], 1);
}

#[test]
fn sarif_names_the_commit_of_a_history_finding() {
    let dir = repo();
    let id = commit_file(dir.path(), "a.txt", &format!("{}\n", key(0)), "one");
    let out = Command::cargo_bin("keyburn")
        .unwrap()
        .arg("scan")
        .arg(dir.path())
        .args(["--history", "-f", "sarif"])
        .output()
        .unwrap();
    let sarif: Value = serde_json::from_slice(&out.stdout).unwrap();
    let result = &sarif["runs"][0]["results"][0];
    let text = result["message"]["text"].as_str().unwrap();
    assert!(
        text.contains(&format!("in a.txt at commit {}", &id[..7])),
        "{text}"
    );
    assert_eq!(result["properties"]["commitSha"], id);
    assert!(result["partialFingerprints"]["keyburn/commit/v1"]
        .as_str()
        .unwrap()
        .ends_with(&id));
    assert_eq!(
        sarif["runs"][0]["invocations"][0]["executionSuccessful"],
        true
    );
}

#[test]
fn path_only_rules_report_a_committed_keystore_at_its_commit() {
    let dir = repo();
    let d = dir.path();
    commit_file(d, "a.txt", "clean\n", "one");
    fs::create_dir_all(d.join("keys")).unwrap();
    fs::write(d.join("keys/store.p12"), [0u8, 1, 2, 0x30, 0x82]).unwrap();
    git(d, &["add", "-A"]);
    git(d, &["commit", "-q", "-m", "add a keystore"]);
    let added = git(d, &["rev-parse", "HEAD"]);
    fs::write(d.join("keys/store.p12"), [0u8, 9, 9]).unwrap();
    let changed = commit_file(d, "b.txt", "clean\n", "change it");
    let config = TempDir::new().unwrap();
    let file = config.path().join("gitleaks.toml");
    fs::write(
        &file,
        "[extend]\nuseDefault = true\n\n[[rules]]\nid = \"pkcs12-file\"\n\
         description = \"PKCS #12 keystore\"\npath = '''(?i)(?:^|/)[^/]+\\.p(?:12|fx)$'''\n",
    )
    .unwrap();
    let (doc, code, stderr) = scan_json(d, &["--history", "--config", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    // Each version of the keystore, at the commit that introduced it.
    let mut got = findings(&doc);
    got.sort();
    let mut want = vec![
        ("keys/store.p12".to_string(), String::new(), added),
        ("keys/store.p12".to_string(), String::new(), changed),
    ];
    want.sort();
    assert_eq!(got, want);
    // The same from packs (every strategy is compared by scan_json).
    git(d, &["gc", "-q"]);
    let (doc, _, _) = scan_json(d, &["--history", "--config", file.to_str().unwrap()]);
    let mut got = findings(&doc);
    got.sort();
    assert_eq!(got, want);
}

#[test]
fn gitleaks_commit_allowlists_accept_history_findings_of_those_commits() {
    let dir = repo();
    let d = dir.path();
    let first = commit_file(d, "a.txt", &format!("{}\n", key(0)), "one");
    let second = commit_file(d, "b.txt", &format!("{}\ntok-3fa9c1e7\n", key(1)), "two");
    let config = TempDir::new().unwrap();
    let file = config.path().join("gitleaks.toml");
    fs::write(
        &file,
        format!(
            "[extend]\nuseDefault = true\n\n\
             [[rules]]\nid = \"team-token\"\nregex = '''tok-[a-f0-9]{{8}}'''\nkeywords = [\"tok-\"]\n\
             [[rules.allowlists]]\ncommits = [\"{}\"]\n\n\
             [[allowlists]]\ncommits = [\"{}\"]\n",
            &second[..10],
            first
        ),
    )
    .unwrap();
    let (doc, _, stderr) = scan_json(d, &["--history", "--config", file.to_str().unwrap()]);
    // The first commit is accepted for every rule, the second for the
    // team's rule only.
    assert_eq!(
        findings(&doc),
        [("b.txt".into(), key(1), second.clone())],
        "{stderr}"
    );
}

/// Rules limited to some paths (`.netrc`, `config/master.key`) find their
/// secrets in history whichever the strategy, and only at those paths:
/// the packs strategy scans blobs before it knows their paths, then again
/// the ones found where such a rule may take them.
#[test]
fn credential_file_rules_find_history_secrets_only_at_their_paths() {
    let dir = repo();
    let netrc = "machine api.acme.io login deploy password Winter2024\n";
    let master = "3f9a0c7e5b2d4186a9f0e3c7b5d2a418\n";
    commit_file(dir.path(), "home/.netrc", netrc, "netrc");
    commit_file(dir.path(), "docs/netrc-example.txt", netrc, "docs");
    commit_file(dir.path(), "config/master.key", master, "key");
    let stray = commit_file(dir.path(), "backup/master.key", master, "stray");
    git(
        dir.path(),
        &["rm", "-q", "home/.netrc", "config/master.key"],
    );
    git(dir.path(), &["commit", "-q", "-m", "remove"]);
    let (doc, code, _) = scan_json(dir.path(), &["--all-commits"]);
    assert_eq!(code, 1);
    let mut got: Vec<(String, String)> = findings(&doc)
        .into_iter()
        .map(|(path, secret, _)| (path, secret))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("config/master.key".to_string(), master.trim().to_string()),
            ("home/.netrc".to_string(), "Winter2024".to_string()),
        ],
        "{doc}"
    );
    assert!(!findings(&doc).iter().any(|(_, _, c)| *c == stray));
}
