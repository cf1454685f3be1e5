//! `keyburn incident` as a process, against the mock GitHub of
//! `keyburn_responder::mock` (tokens in its `active` set work; a revoked
//! one stops working; open alerts are listed and resolved). Repositories
//! are built with `git` in temporary directories; tokens are generated.

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::git;
use keyburn_responder::mock::{fake_github_token, start_mock, wait_for, Shared};
use serde_json::Value;

/// A repository whose first commit adds `token` to `config/app.env` and
/// whose second takes it out again; a `release` branch keeps the first.
/// Returns the commit that added it.
fn leaky_repo(dir: &Path, token: &str) -> String {
    git(dir, &["init", "-q", "-b", "main"]);
    fs::create_dir_all(dir.join("config")).unwrap();
    fs::write(
        dir.join("config/app.env"),
        format!("APP=1\nDEBUG=0\nGITHUB_TOKEN={token}\n"),
    )
    .unwrap();
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "config"]);
    let added = git(dir, &["rev-parse", "HEAD"]);
    git(dir, &["branch", "release"]);
    fs::write(dir.join("config/app.env"), "APP=1\nDEBUG=0\n").unwrap();
    git(dir, &["commit", "-q", "-am", "no token in the repository"]);
    added
}

/// Start keyburn with `input` on stdin, outside any configuration.
fn start(args: &[String], input: &str, env: &[(&str, String)]) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyburn"))
        .args(args)
        .env_remove("KEYBURN_AUDIT_HMAC_KEY")
        .env_remove("KEYBURN_GITHUB_TOKEN")
        .env_remove("KEYBURN_CONFIG")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child
}

/// Run keyburn to its end, off the async threads.
async fn keyburn(args: Vec<String>, input: &str, env: Vec<(&str, String)>) -> Output {
    let child = start(&args, input, &env);
    tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The incident command line against the mock at `url`.
fn incident_args(repo: &Path, out: &Path, url: &str) -> Vec<String> {
    [
        "incident",
        "-",
        "--repo",
        repo.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--endpoint",
        &format!("github={url}"),
        "--github-api",
        url,
        "--github-org",
        "acme",
        "--notify-webhook",
        &format!("{url}/notify"),
        "--allow-internal",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaked_github_token_ends_revoked_confirmed_resolved_planned_and_recorded() {
    let (mock, url) = start_mock().await;
    let token = fake_github_token();
    mock.lock()
        .unwrap()
        .leak("acme/app", 7, "github_personal_access_token", &token);
    let repo = tempfile::tempdir().unwrap();
    let added = leaky_repo(repo.path(), &token);
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("inc");
    let env = || vec![("KEYBURN_GITHUB_TOKEN", "gh-admin".to_string())];

    let run = keyburn(incident_args(repo.path(), &out, &url), &token, env()).await;
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    {
        let m = mock.lock().unwrap();
        assert!(!m.active.contains(&token), "the token is dead");
        assert_eq!(m.revoke_calls, 1);
        assert_eq!(m.patches.len(), 1);
        assert_eq!(m.patches[0]["resolution"], "revoked");
        assert!(m.patches[0]["resolution_comment"]
            .as_str()
            .unwrap()
            .contains("keyburn incident inc"));
        assert_eq!(m.notices.len(), 1, "{}", stderr(&run));
        assert_eq!(m.notices[0]["incident"], "inc");
        assert_eq!(m.notices[0]["outcome"], "revoked");
        assert!(!m.notices[0].to_string().contains(&token));
    }

    // Inventory: the commit that added it, where, and what still holds it.
    let occ = read_json(&out.join("occurrences.json"));
    let found = occ["secrets"][0]["occurrences"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{occ}");
    assert_eq!(found[0]["commit"], added.as_str());
    assert_eq!(found[0]["path"], "config/app.env");
    assert_eq!(found[0]["line"], 3);
    assert_eq!(found[0]["author"], "Dev");
    let refs: Vec<&str> = found[0]["refs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(refs, ["refs/heads/main", "refs/heads/release"]);
    assert_eq!(occ["secrets"][0]["rule_id"], "github-pat");
    assert!(occ["secrets"][0]["first_seen"].is_string());
    assert!(!occ.to_string().contains(&token));

    // The purge plan: filter-repo's replace-text, and the commands.
    let replace = fs::read_to_string(out.join("purge/replace-text.txt")).unwrap();
    assert_eq!(replace, format!("{token}==>***REMOVED***\n"));
    let sh = fs::read_to_string(out.join("purge/commands.sh")).unwrap();
    assert!(sh.contains("filter-repo --replace-text"), "{sh}");
    assert!(sh.contains("rewritten in place"), "no remote: {sh}");
    assert!(sh.contains("forks"), "{sh}");
    assert!(!sh.contains(&token));

    // The record: a timeline for people, an audit log for machines.
    let md = fs::read_to_string(out.join("incident.md")).unwrap();
    assert!(!md.contains(&token));
    assert!(md.contains("**revoked**"), "{md}");
    assert!(md.contains(&added[..12]), "{md}");
    assert!(md.contains("acme/app#7"), "{md}");
    assert!(md.contains("## Rotate"), "{md}");
    assert!(md.contains("github.com/settings/tokens"), "{md}");
    let audit = fs::read_to_string(out.join("audit.jsonl")).unwrap();
    assert!(!audit.contains(&token));
    for event in [
        "incident.opened",
        "incident.inventory",
        "incident.revoke.intent",
        "incident.revoke",
        "incident.alert.resolve",
        "incident.purge.plan",
        "incident.notify",
    ] {
        assert!(
            audit.contains(&format!("\"event\":\"{event}\"")),
            "{event}: {audit}"
        );
    }
    let verify = keyburn(
        vec![
            "audit".into(),
            "verify".into(),
            out.join("audit.jsonl").display().to_string(),
        ],
        "",
        vec![],
    )
    .await;
    assert_eq!(verify.status.code(), Some(0), "{}", stderr(&verify));

    // The same command again: nothing is repeated.
    let again = keyburn(incident_args(repo.path(), &out, &url), &token, env()).await;
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    let m = mock.lock().unwrap();
    assert_eq!(m.revoke_calls, 1);
    assert_eq!(m.patches.len(), 1);
    assert_eq!(m.notices.len(), 1);
}

/// The process dies while its revocation call is in flight; the provider
/// acts on it anyway. The next run checks first and does not call again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cut_short_mid_revocation_is_checked_not_repeated() {
    let (mock, url) = start_mock().await;
    let token = fake_github_token();
    {
        let mut m = mock.lock().unwrap();
        m.active.insert(token.clone());
        m.revoke_delay = Duration::from_secs(3);
    }
    let repo = tempfile::tempdir().unwrap();
    leaky_repo(repo.path(), &token);
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("inc");
    let mut child = start(&incident_args(repo.path(), &out, &url), &token, &[]);
    let m2: Shared = mock.clone();
    wait_for("the revocation call", move || {
        m2.lock().unwrap().revoke_calls == 1
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let state = read_json(&out.join("state.json"));
    assert!(
        state["secrets"][0]["revoke_intent"].is_string(),
        "the intent was recorded before the call: {state}"
    );
    let (m2, t2) = (mock.clone(), token.clone());
    wait_for("the provider to act", move || {
        !m2.lock().unwrap().active.contains(&t2)
    })
    .await;
    let again = keyburn(incident_args(repo.path(), &out, &url), &token, vec![]).await;
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_eq!(mock.lock().unwrap().revoke_calls, 1, "not called again");
    let state = read_json(&out.join("state.json"));
    assert_eq!(state["secrets"][0]["outcome"], "revoked");
    assert!(state["secrets"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("earlier revocation took effect"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_named_and_the_rest_goes_on() {
    let (_mock, url) = start_mock().await;
    let token = fake_github_token();
    let repo = tempfile::tempdir().unwrap();
    leaky_repo(repo.path(), &token);
    let not_repo = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();

    // A secret no rule knows, and a path that is not a repository: both
    // named, the inventory and the plan still made, the exit non-zero.
    let out = work.path().join("odd");
    let mut args = incident_args(repo.path(), &out, &url);
    args.extend(["--repo".into(), not_repo.path().display().to_string()]);
    let odd = "zq8Hv2LmP4xT9wRk";
    let run = keyburn(args, odd, vec![]).await;
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    let err = stderr(&run);
    assert!(
        err.contains("no rule with a provider check recognises"),
        "{err}"
    );
    assert!(err.contains("not a git repository"), "{err}");
    let occ = read_json(&out.join("occurrences.json"));
    assert_eq!(occ["repositories"][0]["scanned"], true);
    assert_eq!(occ["repositories"][1]["scanned"], false);
    assert!(out.join("purge/replace-text.txt").is_file());
    let state = read_json(&out.join("state.json"));
    assert!(
        state["inventory"].is_null(),
        "an incomplete inventory is not done"
    );

    // An --out that holds another incident.
    let other = keyburn(incident_args(repo.path(), &out, &url), &token, vec![]).await;
    assert_eq!(other.status.code(), Some(2));
    assert!(
        stderr(&other).contains("holds another incident"),
        "{}",
        stderr(&other)
    );

    // A directory of something else.
    let foreign = work.path().join("foreign");
    fs::create_dir_all(&foreign).unwrap();
    fs::write(foreign.join("notes.txt"), "mine").unwrap();
    let f = keyburn(incident_args(repo.path(), &foreign, &url), &token, vec![]).await;
    assert_eq!(f.status.code(), Some(2));
    assert!(stderr(&f).contains("not an incident's"), "{}", stderr(&f));

    // A report from another tool.
    let gl = work.path().join("gitleaks.json");
    fs::write(&gl, "[]").unwrap();
    let r = keyburn(
        vec![
            "incident".into(),
            "--report".into(),
            gl.display().to_string(),
            "--out".into(),
            work.path().join("r").display().to_string(),
        ],
        "",
        vec![],
    )
    .await;
    assert_eq!(r.status.code(), Some(2));
    assert!(
        stderr(&r).contains("not a keyburn report"),
        "{}",
        stderr(&r)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_from_a_scan_report_changes_nothing_and_plans_everything() {
    let (mock, url) = start_mock().await;
    let token = fake_github_token();
    mock.lock()
        .unwrap()
        .leak("acme/app", 9, "github_personal_access_token", &token);
    let repo = tempfile::tempdir().unwrap();
    leaky_repo(repo.path(), &token);
    git(
        repo.path(),
        &[
            "remote",
            "add",
            "origin",
            "https://git.example/acme/app.git",
        ],
    );
    let work = tempfile::tempdir().unwrap();
    let report = work.path().join("report.json");
    let scan = keyburn(
        vec![
            "scan".into(),
            repo.path().display().to_string(),
            "-f".into(),
            "json".into(),
            "-o".into(),
            report.display().to_string(),
        ],
        "",
        vec![],
    )
    .await;
    assert_eq!(scan.status.code(), Some(1), "{}", stderr(&scan));
    let out = work.path().join("dry");
    let mut args = incident_args(repo.path(), &out, &url);
    args[1] = "--report".into();
    args.insert(2, report.display().to_string());
    args.push("--dry-run".into());
    let run = keyburn(
        args,
        "",
        vec![("KEYBURN_GITHUB_TOKEN", "gh-admin".to_string())],
    )
    .await;
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let m = mock.lock().unwrap();
    assert!(m.active.contains(&token));
    assert_eq!(
        (m.revoke_calls, m.patches.len(), m.notices.len()),
        (0, 0, 0)
    );
    let state = read_json(&out.join("state.json"));
    assert_eq!(state["secrets"][0]["outcome"], "dry_run");
    assert_eq!(state["secrets"][0]["rule_id"], "github-pat");
    let occ = read_json(&out.join("occurrences.json"));
    assert_eq!(
        occ["secrets"][0]["occurrences"].as_array().unwrap().len(),
        1
    );
    let replace = fs::read_to_string(out.join("purge/replace-text.txt")).unwrap();
    assert_eq!(replace, format!("{token}==>***REMOVED***\n"));
    // A clone with an origin: the plan rewrites a mirror of the origin and
    // force-pushes it there.
    let sh = fs::read_to_string(out.join("purge/commands.sh")).unwrap();
    assert!(
        sh.contains("push --force --mirror 'https://git.example/acme/app.git'"),
        "{sh}"
    );
}
