//! `keyburn hook install` and `uninstall`: a plain git pre-commit hook that
//! runs `keyburn scan --staged`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::cli::HookArgs;

/// Marks hooks keyburn wrote, so reinstalling may replace them.
const MARKER: &str = "# installed by keyburn hook install";

fn hook_script() -> String {
    format!(
        r#"#!/bin/sh
{MARKER}
# Blocks a commit whose staged changes add a secret. Bypass once: git commit --no-verify
if ! command -v keyburn >/dev/null 2>&1; then
  echo "keyburn pre-commit hook: keyburn is not on PATH, so the staged changes were not scanned." >&2
  echo "  install it: cargo install --locked --git https://github.com/keyburn/keyburn keyburn" >&2
  echo "  or download a release binary: https://github.com/keyburn/keyburn/releases" >&2
  echo "  remove the hook: keyburn hook uninstall (or delete $0); commit once without it: git commit --no-verify" >&2
  exit 1
fi
exec keyburn scan --staged --no-progress
"#
    )
}

/// The hooks directory: core.hooksPath if set, else the common git dir's
/// hooks/ (shared by linked worktrees).
fn hooks_dir(repo: &Path) -> Result<PathBuf> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["rev-parse", "--git-path", "hooks"])
        .output()
        .context("cannot run git to locate the hooks directory")?;
    if !out.status.success() {
        bail!("{} is not a git repository", repo.display());
    }
    let rel = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dir = PathBuf::from(&rel);
    Ok(if dir.is_absolute() {
        dir
    } else {
        repo.join(dir)
    })
}

pub fn install(args: HookArgs) -> Result<u8> {
    let dir = hooks_dir(&args.repo)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let hook = dir.join("pre-commit");
    if let Ok(existing) = std::fs::read_to_string(&hook) {
        if !existing.contains(MARKER) && !args.force {
            bail!(
                "{} exists and was not written by keyburn; use --force to replace it",
                hook.display()
            );
        }
    }
    std::fs::write(&hook, hook_script())
        .with_context(|| format!("cannot write {}", hook.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))?;
    }
    out!("installed {}", hook.display());
    Ok(0)
}

pub fn uninstall(args: HookArgs) -> Result<u8> {
    let hook = hooks_dir(&args.repo)?.join("pre-commit");
    let existing = match std::fs::read_to_string(&hook) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            out!("no pre-commit hook at {}", hook.display());
            return Ok(0);
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", hook.display())),
    };
    if !existing.contains(MARKER) && !args.force {
        bail!(
            "{} was not written by keyburn; use --force to remove it anyway",
            hook.display()
        );
    }
    std::fs::remove_file(&hook).with_context(|| format!("cannot remove {}", hook.display()))?;
    out!("removed {}", hook.display());
    Ok(0)
}
