//! Sweeps across many repositories: `scan --repos FILE [--shard K/N]`
//! and `report merge`.
//!
//! A repository list holds one local path or clone URL a line. Clone URLs
//! are mirrored (bare, every ref) into a cache directory and fetched again
//! on the next sweep. A shard is picked by a hash of each repository's
//! name, so N jobs that each take `--shard K/N` cover the list exactly,
//! without talking to each other, whatever order the list is in.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// One line of a repository list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    /// The name findings carry (`repository`): the line as written, less
    /// a trailing `/` or `.git`.
    pub name: String,
    pub location: Location,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    /// Cloned (mirrored) before it is scanned.
    Remote(String),
}

/// `K/N`: this job's shard, K from 0 to N-1 (a Kubernetes Indexed Job's
/// `JOB_COMPLETION_INDEX`, a CI matrix's job index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = || format!("--shard {s:?}: not K/N with 0 <= K < N (e.g. 0/4)");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (u64, u64) = (
            k.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    /// Whether the repository named `name` belongs to this shard.
    pub fn holds(&self, name: &str) -> bool {
        shard_of(name, self.count) == self.index
    }
}

/// The shard (of `count`) a repository name falls in: the first 8 bytes
/// of its SHA-256, modulo `count`. Stable across runs, machines and
/// versions: it is part of the contract of `--shard`.
pub fn shard_of(name: &str, count: u64) -> u64 {
    let digest = Sha256::digest(name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) % count.max(1)
}

/// Whether a list entry is a clone URL rather than a path.
fn is_url(entry: &str) -> bool {
    // `scheme://…`, or scp-like `user@host:path`.
    entry.contains("://")
        || entry
            .split_once(':')
            .is_some_and(|(host, _)| host.contains('@') && !host.contains('/'))
}

/// Parse a repository list: one path or clone URL a line; blank lines and
/// lines starting with `#` are skipped. Duplicates (by name) are dropped.
pub fn parse_list(text: &str) -> Vec<Repo> {
    let mut seen = std::collections::HashSet::new();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|entry| {
            let name = entry
                .trim_end_matches('/')
                .trim_end_matches(".git")
                .trim_end_matches('/')
                .to_string();
            let location = if is_url(entry) {
                Location::Remote(entry.to_string())
            } else {
                Location::Local(PathBuf::from(entry))
            };
            seen.insert(name.clone()).then_some(Repo { name, location })
        })
        .collect()
}

/// Read `--repos FILE` (`-`: stdin).
pub fn read_list(file: &Path) -> Result<Vec<Repo>> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read the repository list")?
    } else {
        std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the repository list {}", file.display()))?
    };
    let repos = parse_list(&text);
    if repos.is_empty() {
        bail!("{}: no repositories listed", file.display());
    }
    Ok(repos)
}

/// Where mirrors of clone URLs are kept: `--clone-dir`, else
/// `KEYBURN_CACHE_DIR/repos` or the XDG cache directory's.
pub fn clone_dir(given: Option<&Path>, cache: Option<PathBuf>) -> Result<PathBuf> {
    match given
        .map(Path::to_path_buf)
        .or_else(|| cache.map(|c| c.join("repos")))
    {
        Some(d) => Ok(d),
        None => bail!("no cache directory for clones (set HOME, or give --clone-dir)"),
    }
}

/// The directory a URL is mirrored in.
fn mirror_path(dir: &Path, url: &str) -> PathBuf {
    dir.join(mirror_name(url))
}

/// A directory name for a mirror of `url`: readable (its last path part)
/// and unique (a hash of the whole URL).
pub fn mirror_name(url: &str) -> String {
    let last = url
        .trim_end_matches('/')
        .trim_end_matches(".git")
        .rsplit(['/', ':'])
        .next()
        .unwrap_or("repo");
    let safe: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(60)
        .collect();
    let hash = hex(&Sha256::digest(url.as_bytes())[..6]);
    format!("{safe}-{hash}.git")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Mirror `url` under `dir` (a bare clone with every ref), or bring an
/// existing mirror up to date. Returns the mirror's path. A failed first
/// clone leaves nothing behind that a later sweep would take for a
/// repository.
pub fn mirror(dir: &Path, url: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the clone directory {}", dir.display()))?;
    let path = mirror_path(dir, url);
    if path.join("HEAD").is_file() {
        git(
            Command::new("git").arg("--git-dir").arg(&path).args([
                "fetch",
                "--prune",
                "--quiet",
                "--",
                url,
                "+refs/*:refs/*",
            ]),
            url,
        )?;
        return Ok(path);
    }
    let partial = path.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    let cloned = git(
        Command::new("git")
            .args(["clone", "--mirror", "--quiet", "--", url])
            .arg(&partial),
        url,
    );
    if let Err(e) = cloned {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, &path)
        .with_context(|| format!("cannot move the clone of {url} into place"))?;
    Ok(path)
}

/// Run a git command that reaches a remote; its stderr becomes the error.
/// It never prompts for credentials: a sweep runs unattended.
fn git(cmd: &mut Command, url: &str) -> Result<()> {
    let out = cmd
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        .stdin(std::process::Stdio::null())
        .output()
        .context("cannot run git (needed to clone repositories by URL)")?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        let msg = msg
            .lines()
            .rfind(|l| !l.trim().is_empty())
            .unwrap_or("failed");
        bail!("cannot clone {url}: {}", msg.trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn shard_syntax() {
        assert_eq!("0/4".parse(), Ok(Shard { index: 0, count: 4 }));
        assert_eq!("3/4".parse(), Ok(Shard { index: 3, count: 4 }));
        for bad in ["4/4", "1/0", "1", "a/2", "-1/2", "1/2/3"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn shard_numbers_are_fixed() {
        // Part of the contract: a shard job of one version covers what
        // the same shard of another covered.
        // (SHA-256's first eight bytes, big-endian, modulo N.)
        assert_eq!(shard_of("github.com/acme/app", 7), 2);
        assert_eq!(shard_of("github.com/acme/app", 100), 38);
        assert_eq!(shard_of("https://github.com/acme/api", 7), 6);
        let names = ["a", "b", "c", "d", "e", "f", "g", "h"];
        let spread: std::collections::HashSet<u64> = names.iter().map(|n| shard_of(n, 4)).collect();
        assert!(spread.len() > 1, "eight names in one shard of four");
    }

    #[test]
    fn lists_name_paths_and_urls() {
        let list = parse_list(
            "# org sweep\n\n/srv/git/app.git\nhttps://github.com/acme/api.git\n\
             git@github.com:acme/web.git\nfile:///tmp/x/\n/srv/git/app\n  ./local/  \n",
        );
        let names: Vec<&str> = list.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "/srv/git/app",
                "https://github.com/acme/api",
                "git@github.com:acme/web",
                "file:///tmp/x",
                "./local"
            ]
        );
        assert!(matches!(list[0].location, Location::Local(_)));
        assert!(matches!(list[1].location, Location::Remote(_)));
        assert!(matches!(list[2].location, Location::Remote(_)));
        assert!(matches!(list[3].location, Location::Remote(_)));
        assert!(matches!(list[4].location, Location::Local(_)));
    }

    #[test]
    fn mirrors_of_two_urls_do_not_collide() {
        let d = Path::new("/c");
        let a = mirror_path(d, "https://github.com/a/app.git");
        let b = mirror_path(d, "https://github.com/b/app.git");
        assert_ne!(a, b);
        assert!(a.file_name().unwrap().to_str().unwrap().starts_with("app-"));
        assert!(mirror_path(d, "https://x/../../etc").starts_with(d));
    }

    proptest! {
        #[test]
        fn shards_partition_any_list(
            names in proptest::collection::hash_set("[a-z0-9/._:-]{1,40}", 0..60),
            count in 1u64..12,
        ) {
            for name in &names {
                let holders: Vec<u64> = (0..count)
                    .filter(|&k| Shard { index: k, count }.holds(name))
                    .collect();
                prop_assert_eq!(holders.len(), 1, "{} is in shards {:?}", name, holders);
            }
            let total: usize = (0..count)
                .map(|k| names.iter().filter(|n| Shard { index: k, count }.holds(n)).count())
                .sum();
            prop_assert_eq!(total, names.len());
        }
    }
}
