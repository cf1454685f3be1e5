//! Archives are scanned member by member: zip, tar, gzip and bzip2 (alone
//! or around a tar) and archives nested in them, with a member reported as
//! `archive!member`, in a directory walk and in history; the depth and
//! decompressed-size bounds, encrypted members and broken archives are
//! reported, never passed over.

use std::io::{Cursor, Write};
use std::path::Path;
use std::process::Command;

use keyburn_scanner::engine::decode::ArchiveOptions;
use keyburn_scanner::engine::{Engine, EngineBuilder};
use keyburn_scanner::finding::{Finding, Source};
use keyburn_scanner::rules::RuleSet;
use keyburn_scanner::sources::{self, Event, HistoryOptions, SkipReason, Strategy, WalkOptions};
use proptest::prelude::*;
use support::aws_key;

mod support;

fn env_file(n: u32) -> Vec<u8> {
    format!("# deploy\nAWS_ACCESS_KEY_ID={}\n", aws_key(n)).into_bytes()
}

fn zip(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in members {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn tar(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn bzip2(data: &[u8]) -> Vec<u8> {
    let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn engine(archives: ArchiveOptions) -> Engine {
    EngineBuilder::new(RuleSet::builtin())
        .archives(archives)
        .build()
        .unwrap()
}

/// Everything a walk of `dir` reports.
fn walk(engine: &Engine, dir: &Path) -> Vec<Event> {
    let mut events = Vec::new();
    let opts = WalkOptions {
        threads: 1,
        ..Default::default()
    };
    sources::walk(engine, &[dir.to_path_buf()], &opts, |e| events.push(e));
    events
}

fn findings(events: &[Event]) -> Vec<&Finding> {
    let mut out: Vec<&Finding> = events
        .iter()
        .filter_map(|e| match e {
            Event::Finding(f) => Some(&**f),
            _ => None,
        })
        .collect();
    out.sort_by(|a, b| (&a.path, a.location.line).cmp(&(&b.path, b.location.line)));
    out
}

/// (path, secret) of every AWS key id found, relative to `dir`.
fn keys(events: &[Event], dir: &Path) -> Vec<(String, String)> {
    let prefix = format!("{}/", dir.display());
    findings(events)
        .into_iter()
        .filter(|f| f.rule_id == "aws-access-key-id")
        .map(|f| {
            let path = f.path.strip_prefix(&prefix).unwrap_or(&f.path).to_string();
            (path, f.secret.clone())
        })
        .collect()
}

fn skipped(events: &[Event]) -> Vec<(String, SkipReason)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Skipped { path, reason } => Some((path.clone(), reason.clone())),
            _ => None,
        })
        .collect()
}

fn errors(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Error { path, message } => Some(format!("{path}: {message}")),
            _ => None,
        })
        .collect()
}

fn base(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, b)| b)
}

#[test]
fn members_of_every_format_are_scanned_under_archive_bang_member() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let jar = zip(&[
        ("META-INF/MANIFEST.MF", b"Manifest-Version: 1.0\n"),
        ("application.properties", &env_file(3)),
    ]);
    let files: Vec<(&str, Vec<u8>)> = vec![
        (
            "release.zip",
            zip(&[
                ("README.md", b"hello\n"),
                ("config/.env.prod", &env_file(1)),
            ]),
        ),
        ("site.tar", tar(&[("etc/app.env", &env_file(2))])),
        (
            "bundle.tar.gz",
            gzip(&tar(&[("lib/inner.jar", &jar), ("notes", b"none\n")])),
        ),
        ("backup.tgz", gzip(&tar(&[("./home/.env", &env_file(4))]))),
        ("logs.tar.bz2", bzip2(&tar(&[("var/ci.log", &env_file(5))]))),
        ("dump.env.gz", gzip(&env_file(6))),
        ("dump.env.bz2", bzip2(&env_file(7))),
    ];
    for (name, data) in &files {
        std::fs::write(d.join(name), data).unwrap();
    }
    let engine = engine(ArchiveOptions::default());
    let events = walk(&engine, d);
    assert!(errors(&events).is_empty(), "{:?}", errors(&events));
    let got = keys(&events, d);
    let want = vec![
        ("backup.tgz!home/.env".to_string(), aws_key(4)),
        (
            "bundle.tar.gz!lib/inner.jar!application.properties".to_string(),
            aws_key(3),
        ),
        ("dump.env.bz2!dump.env".to_string(), aws_key(7)),
        ("dump.env.gz!dump.env".to_string(), aws_key(6)),
        ("logs.tar.bz2!var/ci.log".to_string(), aws_key(5)),
        ("release.zip!config/.env.prod".to_string(), aws_key(1)),
        ("site.tar!etc/app.env".to_string(), aws_key(2)),
    ];
    assert_eq!(got, want);
    // Lines and columns are the member's own.
    let f = findings(&events)
        .into_iter()
        .find(|f| {
            f.path.ends_with("release.zip!config/.env.prod") && f.rule_id == "aws-access-key-id"
        })
        .unwrap();
    assert_eq!((f.location.line, f.location.column), (2, 19));
    assert_eq!(f.source, Source::File);
}

#[test]
fn rules_limited_to_some_paths_judge_the_member_path() {
    let dir = tempfile::tempdir().unwrap();
    let netrc = b"machine api.example.org login deploy password Vr7#kq2Lx9pW\n";
    std::fs::write(dir.path().join("home.zip"), zip(&[(".netrc", netrc)])).unwrap();
    // The same bytes under a name no such rule takes.
    std::fs::write(dir.path().join("misc.zip"), zip(&[("notes.txt", netrc)])).unwrap();
    let events = walk(&engine(ArchiveOptions::default()), dir.path());
    let paths: Vec<&str> = findings(&events)
        .iter()
        .filter(|f| f.rule_id == "netrc-password")
        .map(|f| base(&f.path))
        .collect();
    assert_eq!(paths, ["home.zip!.netrc"]);
}

#[test]
fn an_allow_listed_archive_is_left_out_whole() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("vendor")).unwrap();
    let z = zip(&[("app.env", &env_file(1))]);
    std::fs::write(dir.path().join("vendor/r.zip"), &z).unwrap();
    std::fs::write(dir.path().join("r.zip"), &z).unwrap();
    let mut rules = RuleSet::builtin();
    rules.allow.paths.push("(^|/)vendor/".into());
    let engine = EngineBuilder::new(rules).build().unwrap();
    let events = walk(&engine, dir.path());
    let got: Vec<String> = keys(&events, dir.path()).into_iter().map(|k| k.0).collect();
    assert_eq!(got, ["r.zip!app.env"]);
}

#[test]
fn archives_off_skips_them_as_binary() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("release.zip"),
        zip(&[("config/.env", &env_file(1))]),
    )
    .unwrap();
    let off = ArchiveOptions {
        depth: 0,
        ..Default::default()
    };
    let events = walk(&engine(off), dir.path());
    assert!(keys(&events, dir.path()).is_empty());
    let skips = skipped(&events);
    assert_eq!(skips.len(), 1);
    assert_eq!(skips[0].1, SkipReason::Binary);
}

#[test]
fn nesting_past_the_depth_is_reported_not_opened() {
    let dir = tempfile::tempdir().unwrap();
    let inner = zip(&[("app.env", &env_file(1))]);
    let outer = zip(&[("lib/inner.zip", &inner), ("top.env", &env_file(2))]);
    std::fs::write(dir.path().join("outer.zip"), outer).unwrap();
    let one = ArchiveOptions {
        depth: 1,
        ..Default::default()
    };
    let events = walk(&engine(one), dir.path());
    let got: Vec<String> = keys(&events, dir.path()).into_iter().map(|k| k.0).collect();
    assert_eq!(got, ["outer.zip!top.env"]);
    let skips = skipped(&events);
    assert_eq!(skips.len(), 1, "{skips:?}");
    assert!(skips[0].0.ends_with("outer.zip!lib/inner.zip"));
    assert_eq!(skips[0].1, SkipReason::ArchiveDepth { limit: 1 });
    // One level more opens it.
    let two = ArchiveOptions {
        depth: 2,
        ..Default::default()
    };
    let events = walk(&engine(two), dir.path());
    assert_eq!(keys(&events, dir.path()).len(), 2);
    assert!(skipped(&events).is_empty());
}

#[test]
fn a_bomb_costs_at_most_the_budget_and_says_what_it_left_out() {
    let dir = tempfile::tempdir().unwrap();
    // 8 MiB of one letter deflate to about 8 KiB (text: a binary member
    // is known by its first bytes and not decompressed further).
    let filler = vec![b'a'; 8 << 20];
    let bomb = zip(&[
        ("a.env", &env_file(1)),
        ("filler.txt", &filler),
        ("z.env", &env_file(2)),
    ]);
    assert!(bomb.len() < 1 << 20);
    std::fs::write(dir.path().join("bomb.zip"), bomb).unwrap();
    let small = ArchiveOptions {
        max_bytes: 1 << 20,
        ..Default::default()
    };
    let events = walk(&engine(small), dir.path());
    let got: Vec<String> = keys(&events, dir.path()).into_iter().map(|k| k.0).collect();
    assert_eq!(got, ["bomb.zip!a.env"]);
    let skips = skipped(&events);
    assert_eq!(skips.len(), 1, "{skips:?}");
    assert!(skips[0].0.ends_with("bomb.zip!filler.txt"));
    assert_eq!(skips[0].1, SkipReason::ArchiveBudget { limit: 1 << 20 });
    // Within a larger budget the member is read, and the one after it.
    let events = walk(&engine(ArchiveOptions::default()), dir.path());
    assert_eq!(keys(&events, dir.path()).len(), 2);
}

/// A tar member header written field by field, so that names the `tar`
/// crate's builder refuses (`..`, absolute paths) can be stored, as an
/// attacker's archive would store them.
fn raw_tar_member(out: &mut Vec<u8>, name: &str, kind: tar::EntryType, link: &str, data: &[u8]) {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(512), 0);
}

#[test]
fn a_hostile_tar_is_read_in_place_never_extracted_and_its_links_not_followed() {
    let root = tempfile::tempdir().unwrap();
    let scanned = root.path().join("a/b");
    std::fs::create_dir_all(&scanned).unwrap();
    // Beside the scanned directory, where a link member points: a scan that
    // followed the link would report this key.
    std::fs::write(root.path().join("a/outside.env"), env_file(9)).unwrap();
    let mut evil = Vec::new();
    let file = tar::EntryType::Regular;
    raw_tar_member(&mut evil, "../../etc/escape.env", file, "", &env_file(1));
    raw_tar_member(&mut evil, "/abs/path.env", file, "", &env_file(2));
    raw_tar_member(
        &mut evil,
        "link.env",
        tar::EntryType::Symlink,
        "../outside.env",
        b"",
    );
    raw_tar_member(
        &mut evil,
        "hard.env",
        tar::EntryType::Link,
        "../../etc/escape.env",
        b"",
    );
    raw_tar_member(&mut evil, "last.env", file, "", &env_file(3));
    evil.extend_from_slice(&[0; 1024]);
    std::fs::write(scanned.join("evil.tar"), &evil).unwrap();

    let events = walk(&engine(ArchiveOptions::default()), &scanned);
    assert!(errors(&events).is_empty(), "{:?}", errors(&events));
    // The files are scanned under the names they carry (a leading `/`
    // dropped), the links have no content of their own and are passed
    // over, and what follows them is still read.
    let got = keys(&events, &scanned);
    assert_eq!(
        got,
        [
            ("evil.tar!../../etc/escape.env".to_string(), aws_key(1)),
            ("evil.tar!abs/path.env".to_string(), aws_key(2)),
            ("evil.tar!last.env".to_string(), aws_key(3)),
        ]
    );
    // Nothing was written anywhere: the tree is as it was made.
    let mut tree: Vec<String> = walkdir(root.path());
    tree.sort();
    assert_eq!(tree, ["a", "a/b", "a/b/evil.tar", "a/outside.env"]);
    assert!(!Path::new("/abs/path.env").exists());
}

/// Every path under `dir`, relative to it.
fn walkdir(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

#[test]
fn a_binary_member_is_skipped_from_its_first_bytes() {
    let dir = tempfile::tempdir().unwrap();
    // 64 MiB of zeros: were it decompressed, the 1 MiB budget would stop
    // the walk before the member after it.
    let zeros = vec![0u8; 64 << 20];
    let z = zip(&[("zeros.bin", &zeros), ("app.env", &env_file(1))]);
    std::fs::write(dir.path().join("r.zip"), z).unwrap();
    let small = ArchiveOptions {
        max_bytes: 1 << 20,
        ..Default::default()
    };
    let events = walk(&engine(small), dir.path());
    let got: Vec<String> = keys(&events, dir.path()).into_iter().map(|k| k.0).collect();
    assert_eq!(got, ["r.zip!app.env"]);
    let skips = skipped(&events);
    assert!(
        matches!(&skips[..], [(p, SkipReason::Binary)] if p.ends_with("r.zip!zeros.bin")),
        "{skips:?}"
    );
}

#[test]
fn a_member_over_the_file_size_limit_is_skipped_and_the_rest_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let big = vec![b'x'; 4096];
    let z = zip(&[("big.txt", &big), ("app.env", &env_file(1))]);
    std::fs::write(dir.path().join("r.zip"), z).unwrap();
    let engine = engine(ArchiveOptions::default());
    let mut events = Vec::new();
    let opts = WalkOptions {
        threads: 1,
        max_file_size: 1024,
        ..Default::default()
    };
    sources::walk(&engine, &[dir.path().to_path_buf()], &opts, |e| {
        events.push(e)
    });
    let got: Vec<String> = keys(&events, dir.path()).into_iter().map(|k| k.0).collect();
    assert_eq!(got, ["r.zip!app.env"]);
    let skips = skipped(&events);
    assert!(
        matches!(&skips[..], [(p, SkipReason::TooLarge { limit: 1024, .. })] if p.ends_with("r.zip!big.txt")),
        "{skips:?}"
    );
}

/// Set the "encrypted" flag of every member of a stored zip, in its local
/// and central headers.
fn mark_encrypted(mut z: Vec<u8>) -> Vec<u8> {
    let mut i = 0;
    while i + 10 <= z.len() {
        match &z[i..i + 4] {
            [b'P', b'K', 3, 4] => z[i + 6] |= 1,
            [b'P', b'K', 1, 2] => z[i + 8] |= 1,
            _ => {}
        }
        i += 1;
    }
    z
}

#[test]
fn an_encrypted_member_is_reported_as_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    w.start_file("secret.env", stored).unwrap();
    w.write_all(b"opaque bytes").unwrap();
    let z = mark_encrypted(w.finish().unwrap().into_inner());
    std::fs::write(dir.path().join("locked.zip"), z).unwrap();
    let events = walk(&engine(ArchiveOptions::default()), dir.path());
    let skips = skipped(&events);
    assert!(
        matches!(&skips[..], [(p, SkipReason::Encrypted)] if p.ends_with("locked.zip!secret.env")),
        "{skips:?}"
    );
}

#[test]
fn a_broken_archive_is_reported_not_wholly_scanned_and_the_walk_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut broken = b"PK\x03\x04".to_vec();
    broken.extend_from_slice(&[0xAB; 300]);
    std::fs::write(dir.path().join("broken.zip"), broken).unwrap();
    let mut truncated = gzip(&tar(&[("a.env", &env_file(1))]));
    truncated.truncate(truncated.len() / 2);
    std::fs::write(dir.path().join("cut.tar.gz"), truncated).unwrap();
    std::fs::write(dir.path().join("ok.env"), env_file(2)).unwrap();
    let events = walk(&engine(ArchiveOptions::default()), dir.path());
    assert!(errors(&events).is_empty(), "{:?}", errors(&events));
    let mut broken: Vec<String> = skipped(&events)
        .into_iter()
        .filter(|(_, r)| matches!(r, SkipReason::BrokenArchive { .. }))
        .map(|(p, _)| base(&p).to_string())
        .collect();
    broken.sort();
    // Once each: at the archive, or at the member where the stream broke
    // (where depends on how much the decompressor yields before the cut).
    assert_eq!(broken.len(), 2, "{broken:?}");
    assert!(broken[0].starts_with("broken.zip"), "{broken:?}");
    assert!(broken[1].starts_with("cut.tar.gz"), "{broken:?}");
    let got: Vec<String> = keys(&events, dir.path()).into_iter().map(|k| k.0).collect();
    assert_eq!(got, ["ok.env"]);
}

#[test]
fn a_large_archive_is_read_from_the_file_not_memory() {
    // Larger than the chunk a file is read whole below.
    let dir = tempfile::tempdir().unwrap();
    let filler: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let z = zip(&[("filler.bin", &filler), ("deploy/app.env", &env_file(9))]);
    std::fs::write(dir.path().join("big.zip"), z).unwrap();
    let engine = engine(ArchiveOptions::default());
    let mut events = Vec::new();
    let opts = WalkOptions {
        threads: 1,
        chunk: 4096,
        ..Default::default()
    };
    sources::walk(&engine, &[dir.path().to_path_buf()], &opts, |e| {
        events.push(e)
    });
    let got: Vec<String> = keys(&events, dir.path()).into_iter().map(|k| k.0).collect();
    assert_eq!(got, ["big.zip!deploy/app.env"]);
}

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

#[test]
fn archives_in_history_are_scanned_where_each_commit_put_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    git(d, &["init", "-q"]);
    std::fs::write(d.join("release.zip"), zip(&[("config/.env", &env_file(1))])).unwrap();
    git(d, &["add", "."]);
    git(d, &["commit", "-q", "-m", "release"]);
    std::fs::create_dir(d.join("dist")).unwrap();
    let tgz = gzip(&tar(&[("app/settings.env", &env_file(2))]));
    std::fs::write(d.join("dist/site.tgz"), tgz).unwrap();
    git(d, &["add", "."]);
    git(d, &["commit", "-q", "-m", "site"]);
    git(d, &["gc", "-q"]);
    let engine = engine(ArchiveOptions::default());
    for strategy in [Strategy::Packs, Strategy::Diff] {
        let opts = HistoryOptions {
            strategy,
            threads: 1,
            ..Default::default()
        };
        let mut events = Vec::new();
        sources::scan_history(&engine, d, &opts, |e| events.push(e)).unwrap();
        assert!(
            errors(&events).is_empty(),
            "{strategy:?}: {:?}",
            errors(&events)
        );
        let found: Vec<(String, String, String)> = findings(&events)
            .into_iter()
            .filter(|f| f.rule_id == "aws-access-key-id")
            .map(|f| {
                assert_eq!(f.source, Source::History);
                let c = f.commit.as_ref().expect("a commit");
                (
                    f.path.clone(),
                    f.secret.clone(),
                    c.message.trim().to_string(),
                )
            })
            .collect();
        let want = vec![
            (
                "dist/site.tgz!app/settings.env".to_string(),
                aws_key(2),
                "site".to_string(),
            ),
            (
                "release.zip!config/.env".to_string(),
                aws_key(1),
                "release".to_string(),
            ),
        ];
        assert_eq!(found, want, "{strategy:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever follows an archive's magic bytes, opening it never panics
    /// and never runs away: it is scanned, skipped or an error.
    #[test]
    fn garbage_behind_archive_magic_never_panics(
        magic in prop::sample::select(vec![
            b"PK\x03\x04".to_vec(),
            vec![0x1f, 0x8b, 8],
            b"BZh91AY&SY".to_vec(),
        ]),
        tail in prop::collection::vec(any::<u8>(), 0..2048),
        cut in 0usize..4096,
    ) {
        let engine = engine(ArchiveOptions::default());
        let dir = tempfile::tempdir().unwrap();
        let mut data = magic;
        data.extend_from_slice(&tail);
        std::fs::write(dir.path().join("x.bin"), &data).unwrap();
        // And a real archive cut short anywhere.
        let mut real = zip(&[("a.env", &env_file(1)), ("b.txt", &tail)]);
        real.truncate(cut.min(real.len()));
        std::fs::write(dir.path().join("y.zip"), &real).unwrap();
        let events = walk(&engine, dir.path());
        prop_assert!(!events.is_empty());
    }
}
