//! `keyburn scan`: resolve arguments, build the engine, walk, report.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use keyburn_scanner::engine::EngineKind;
use keyburn_scanner::finding::ValidationStatus;
use keyburn_scanner::report::{self, Baseline, Format, HumanOptions, Notice, NoticeLevel, Report};
use keyburn_scanner::sources::{self, Event, HistoryOptions, SkipReason, Strategy, WalkOptions};
use keyburn_scanner::{Engine, EngineBuilder};

use crate::cli::{ColorChoice, EngineChoice, OutputFormat, ScanArgs, StrategyChoice};
use crate::rules_cmd::load_rules;
use crate::EXIT_ERROR;

/// Where the bytes come from.
enum Mode {
    Files,
    /// History, and with `worktree` the work tree's changes against HEAD
    /// (the default at a repository's root).
    History {
        repo: PathBuf,
        opts: HistoryOptions,
        worktree: bool,
    },
    Staged(PathBuf),
    /// `--repos`: many repositories, each like `History` at its root.
    Sweep {
        list: PathBuf,
        shard: Option<crate::sweep::Shard>,
        clone_dir: Option<PathBuf>,
        opts: HistoryOptions,
    },
}

/// Everything a scan needs, with every default settled.
struct ScanConfig {
    mode: Mode,
    paths: Vec<PathBuf>,
    stdin: bool,
    format: Format,
    output: Option<PathBuf>,
    human: HumanOptions,
    redact: bool,
    walk: WalkOptions,
    exit_code: u8,
    verbose: bool,
    quiet: bool,
    progress: bool,
}

/// The history options the arguments ask for.
fn history_options(a: &ScanArgs) -> HistoryOptions {
    HistoryOptions {
        branch: a.branch.clone(),
        since: a.since.clone(),
        all_refs: a.all_refs,
        range: a.range.clone(),
        all_commits: a.all_commits,
        all_objects: a.all_objects,
        strategy: match a.history_strategy {
            StrategyChoice::Auto => Strategy::Auto,
            StrategyChoice::Packs => Strategy::Packs,
            StrategyChoice::Diff => Strategy::Diff,
        },
        max_file_size: a.max_file_size.unwrap_or(u64::MAX),
        threads: a.threads,
    }
}

impl ScanConfig {
    fn resolve(a: &ScanArgs) -> ScanConfig {
        let stdin = a.paths.iter().any(|p| p.as_os_str() == "-");
        let paths: Vec<PathBuf> = a
            .paths
            .iter()
            .filter(|p| p.as_os_str() != "-")
            .cloned()
            .collect();
        let format = match a.format {
            OutputFormat::Human => Format::Human,
            OutputFormat::Json => Format::Json,
            OutputFormat::Jsonl => Format::Jsonl,
            OutputFormat::Sarif => Format::Sarif,
            OutputFormat::Gitleaks => Format::Gitleaks,
            OutputFormat::Csv => Format::Csv,
            OutputFormat::Junit => Format::Junit,
        };
        let color = match a.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                a.output.is_none()
                    && std::io::stdout().is_terminal()
                    && std::env::var_os("NO_COLOR").is_none()
            }
        };
        let mode = if a.staged {
            Mode::Staged(a.paths.first().cloned().unwrap_or_else(|| ".".into()))
        } else {
            // Any history-only option asks for history, wherever PATH is.
            let history_asked = a.history
                || a.all_commits
                || a.all_objects
                || a.since.is_some()
                || a.range.is_some()
                || a.branch.is_some();
            // A work tree's root, or a bare repository, that really opens.
            let auto =
                !a.no_history && paths.len() == 1 && !stdin && sources::is_repository(&paths[0]);
            if let Some(list) = &a.repos {
                Mode::Sweep {
                    list: list.clone(),
                    shard: a.shard,
                    clone_dir: a.clone_dir.clone(),
                    opts: history_options(a),
                }
            } else if history_asked || auto {
                Mode::History {
                    repo: paths.first().cloned().unwrap_or_else(|| ".".into()),
                    worktree: !history_asked,
                    opts: history_options(a),
                }
            } else {
                Mode::Files
            }
        };
        ScanConfig {
            mode,
            paths,
            stdin,
            format,
            output: a.output.clone(),
            human: HumanOptions {
                color,
                show_secrets: a.show_secrets,
            },
            redact: a.redact,
            walk: WalkOptions {
                no_ignore: a.no_ignore,
                follow_links: a.follow,
                max_file_size: a.max_file_size.unwrap_or(u64::MAX),
                chunk: a
                    .chunk_size
                    .map_or(sources::CHUNK, |c| usize::try_from(c).unwrap_or(usize::MAX)),
                threads: a.threads,
            },
            exit_code: a.exit_code,
            verbose: a.verbose > 0,
            quiet: a.quiet,
            progress: !a.no_progress && !a.quiet && std::io::stderr().is_terminal(),
        }
    }
}

pub fn run(args: ScanArgs) -> Result<u8> {
    let start = Instant::now();
    let cfg = ScanConfig::resolve(&args);
    if !matches!(cfg.mode, Mode::Files) && args.paths.len() > 1 {
        anyhow::bail!(
            "history and staged scans take one repository, not {} paths",
            args.paths.len()
        );
    }
    let mut baseline = load_baseline(&args.baseline)?;
    // A team coming from gitleaks keeps its reviewed findings.
    let root = match &cfg.mode {
        Mode::History { repo, .. } | Mode::Staged(repo) => Some(repo.clone()),
        Mode::Files => cfg.paths.first().filter(|p| p.is_dir()).cloned(),
        Mode::Sweep { .. } => None,
    };
    if let Some(file) = root
        .as_ref()
        .map(|r| r.join(".gitleaksignore"))
        .filter(|f| f.is_file())
    {
        baseline.merge(load_baseline(std::slice::from_ref(&file))?);
    }
    let mut rules = load_rules(&args.selection, root.as_deref(), false)?;
    rules.allow.paths.extend(args.allow_paths.iter().cloned());
    let verify_rules = args.verify.then(|| rules.clone());
    let mut builder = EngineBuilder::new(rules);
    if cfg.verbose {
        builder = builder.explain(|d| {
            eprintln!(
                "keyburn: rule {}: a match ({}) was dropped by the {} filter",
                d.rule.id,
                keyburn_scanner::finding::mask(&String::from_utf8_lossy(d.secret)),
                d.filter.as_str()
            )
        });
    }
    // Never dropped: the process ends with the scan, and freeing hundreds
    // of compiled rules would only delay a pre-commit hook's answer.
    let engine = std::mem::ManuallyDrop::new(
        builder
            .decode(keyburn_scanner::engine::decode::DecodeOptions {
                depth: args.decode_depth,
                ..Default::default()
            })
            .archives(keyburn_scanner::engine::decode::ArchiveOptions {
                depth: if args.archives && !args.no_archives {
                    args.archive_depth
                } else {
                    0
                },
                max_bytes: args.archive_max_bytes,
            })
            .min_confidence(args.selection.min_confidence.into())
            .kind(engine_kind(args.engine, &cfg))
            .cache_dir(cache_dir())
            .build()
            .context("cannot build the scan engine")?,
    );

    let mut report = Report {
        root: root.as_deref().and_then(source_root),
        ..Report::default()
    };
    report.stats.rules = engine.rules().len();
    let bar = cfg.progress.then(progress_bar);
    // Why the scan could not look at everything it was asked to.
    let mut incomplete: Option<String> = None;
    let mut covered = keyburn_scanner::report::Stats::default();
    // A path that is not there is an error the report names, not a
    // warning the walker gives and the exit status forgets.
    let (present, missing): (Vec<PathBuf>, Vec<PathBuf>) = cfg
        .paths
        .iter()
        .cloned()
        .partition(|p| p.symlink_metadata().is_ok());
    let mut on_event = |ev: Event| handle_event(ev, &cfg, &mut report, bar.as_ref());
    match &cfg.mode {
        Mode::Staged(repo) => {
            sources::scan_staged(&engine, repo, cfg.walk.max_file_size, &mut on_event)?
        }
        Mode::History {
            repo,
            opts,
            worktree,
        } => {
            incomplete = scan_repository(
                &engine,
                repo,
                opts,
                *worktree,
                &cfg,
                &mut covered,
                &mut on_event,
            )?;
        }
        Mode::Sweep {
            list,
            shard,
            clone_dir,
            opts,
        } => {
            let failed = sweep(
                &engine,
                (list, *shard, clone_dir.as_deref()),
                opts,
                &cfg,
                &mut covered,
                &mut on_event,
            )?;
            if !failed.is_empty() {
                incomplete = Some(format!(
                    "{} repositor{} not scanned (named above): {}",
                    failed.len(),
                    if failed.len() == 1 {
                        "y was"
                    } else {
                        "ies were"
                    },
                    failed.join(", ")
                ));
            }
            report.stats.failed_repositories = failed;
        }
        Mode::Files => {
            if cfg.stdin {
                sources::scan_reader(
                    &engine,
                    "stdin",
                    std::io::stdin().lock(),
                    (cfg.walk.max_file_size, cfg.walk.chunk),
                    &mut on_event,
                );
            }
            for p in &missing {
                on_event(Event::error(
                    p.display().to_string(),
                    "no such file or directory",
                ));
            }
            if !present.is_empty() {
                sources::walk(&engine, &present, &cfg.walk, &mut on_event);
            }
        }
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    if cfg.verbose {
        for note in engine.hyperscan_notes() {
            eprintln!("keyburn: {note}");
        }
    }
    report.stats.missing_paths = missing.iter().map(|p| p.display().to_string()).collect();
    report.stats.commits = covered.commits;
    report.stats.blobs = covered.blobs;
    report.stats.worktree_files = covered.worktree_files;
    report.stats.repositories = covered.repositories;
    report.stats.duration_ms = start.elapsed().as_millis() as u64;
    report.finish();
    let rule_by_id: std::collections::HashMap<&str, &keyburn_scanner::rules::Rule> =
        engine.rules().iter().map(|r| (r.id.as_str(), r)).collect();
    keyburn_scanner::finding::pair_parts(&mut report.findings, |id| rule_by_id.get(id).copied());
    // Commit allow lists (gitleaks' `commits`) accept history findings.
    report.findings.retain(|f| {
        f.commit
            .as_ref()
            .is_none_or(|c| !engine.allows_commit(&f.rule_id, &c.id))
    });
    report.subtract(&baseline);
    if let Some(rules) = &verify_rules {
        let t = Instant::now();
        crate::validate::verify(
            &mut report.findings,
            rules,
            &args.providers,
            args.verify_workers,
        )?;
        let wanted: Vec<ValidationStatus> = if args.only_verified {
            vec![ValidationStatus::Active]
        } else {
            args.verify_status.clone()
        };
        if !wanted.is_empty() {
            report.findings.retain(|f| {
                f.validation
                    .as_ref()
                    .is_some_and(|v| wanted.contains(&v.status))
            });
        }
        if cfg.verbose {
            eprintln!(
                "keyburn: verified {} findings in {:.2} s",
                report.findings.len(),
                t.elapsed().as_secs_f64()
            );
        }
    }
    if cfg.redact {
        report.redact();
    }
    write_report(&cfg, &report, &engine)?;

    if matches!(cfg.mode, Mode::Files) && report.stats.files_scanned == 0 && report.stats.errors > 0
    {
        eprintln!("keyburn: error: nothing could be scanned");
        return Ok(EXIT_ERROR);
    }
    if let Some(why) = &incomplete {
        eprintln!("keyburn: error: {why}");
        return Ok(EXIT_ERROR);
    }
    if !report.stats.missing_paths.is_empty() {
        eprintln!(
            "keyburn: error: not scanned, as they do not exist: {}",
            report.stats.missing_paths.join(", ")
        );
        return Ok(EXIT_ERROR);
    }
    Ok(if report.findings.is_empty() {
        0
    } else {
        cfg.exit_code
    })
}

/// Scan one repository's history and, with `worktree`, its work tree's
/// changes; adds what was covered to `covered`. Returns why the scan is
/// incomplete, if it is.
fn scan_repository(
    engine: &Engine,
    repo: &std::path::Path,
    opts: &HistoryOptions,
    worktree: bool,
    cfg: &ScanConfig,
    covered: &mut keyburn_scanner::report::Stats,
    on_event: &mut dyn FnMut(Event),
) -> Result<Option<String>> {
    let summary = sources::scan_history(engine, repo, opts, &mut *on_event)?;
    let add = |n: Option<u64>, k: usize| Some(n.unwrap_or(0) + k as u64);
    covered.commits = add(covered.commits, summary.commits);
    covered.blobs = add(covered.blobs, summary.blobs);
    if worktree {
        let w = sources::scan_worktree(engine, repo, &cfg.walk, &mut *on_event)?;
        covered.worktree_files = add(covered.worktree_files, w.files);
    }
    if summary.shallow && !cfg.quiet {
        eprintln!(
            "keyburn: warning: {}: a shallow clone; history before its shallow boundary \
             was not scanned (git fetch --unshallow, then scan again)",
            repo.display()
        );
    }
    if summary.commits == 0 && summary.unreadable_commits == 0 && !cfg.quiet {
        eprintln!(
            "keyburn: note: {}: no commits to scan (an empty repository, or an empty range); \
             use --staged for what is staged",
            repo.display()
        );
    }
    if cfg.verbose {
        eprintln!(
            "keyburn: history ({} strategy): {} commits, {} unique blobs, {} of them \
             decoded pack by pack (walk {:.2} s, {} {:.2} s, blob scan {:.2} s)",
            summary.strategy.as_str(),
            summary.commits,
            summary.blobs,
            summary.blobs_from_packs,
            summary.walk.as_secs_f64(),
            match summary.strategy {
                Strategy::Packs => "trees and attribution",
                _ => "tree diffs",
            },
            summary.diff.as_secs_f64(),
            summary.scan.as_secs_f64()
        );
    }
    Ok((summary.unreadable_commits > 0).then(|| {
        format!(
            "{}: {} commit(s) could not be read (named above); their history was not scanned",
            repo.display(),
            summary.unreadable_commits
        )
    }))
}

/// `--repos`: every repository of the list (of this shard), one after the
/// other, each on the whole worker pool; clone URLs are mirrored first, a
/// few at a time. Findings carry their repository. Returns the
/// repositories that could not be scanned (each also an error event).
fn sweep(
    engine: &Engine,
    (list, shard, clone_dir): (
        &std::path::Path,
        Option<crate::sweep::Shard>,
        Option<&std::path::Path>,
    ),
    opts: &HistoryOptions,
    cfg: &ScanConfig,
    covered: &mut keyburn_scanner::report::Stats,
    on_event: &mut dyn FnMut(Event),
) -> Result<Vec<String>> {
    use crate::sweep::Location;
    let mut repos = crate::sweep::read_list(list)?;
    if let Some(s) = shard {
        repos.retain(|r| s.holds(&r.name));
        if !cfg.quiet {
            eprintln!(
                "keyburn: shard {}/{}: {} repositor{}",
                s.index,
                s.count,
                repos.len(),
                if repos.len() == 1 { "y" } else { "ies" }
            );
        }
    }
    let remote: Vec<(usize, String)> = repos
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match &r.location {
            Location::Remote(url) => Some((i, url.clone())),
            Location::Local(_) => None,
        })
        .collect();
    let mut mirrors: std::collections::HashMap<usize, Result<PathBuf>> = Default::default();
    if !remote.is_empty() {
        let dir = crate::sweep::clone_dir(clone_dir, cache_dir())?;
        let next = std::sync::atomic::AtomicUsize::new(0);
        let done = std::sync::Mutex::new(&mut mirrors);
        std::thread::scope(|s| {
            for _ in 0..remote.len().min(4) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((at, url)) = remote.get(i) else {
                        return;
                    };
                    let m = crate::sweep::mirror(&dir, url);
                    done.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(*at, m);
                });
            }
        });
    }
    let mut failed = Vec::new();
    let mut scanned = 0u64;
    for (i, r) in repos.iter().enumerate() {
        let (path, worktree) = match &r.location {
            Location::Local(p) => (p.clone(), true),
            Location::Remote(_) => match mirrors.remove(&i) {
                Some(Ok(p)) => (p, false),
                Some(Err(e)) => {
                    on_event(Event::error(r.name.clone(), format!("{e:#}")));
                    failed.push(r.name.clone());
                    continue;
                }
                None => continue,
            },
        };
        if !sources::is_repository(&path) {
            on_event(Event::error(
                r.name.clone(),
                "not a git repository (a sweep scans repositories; scan a directory on its own)",
            ));
            failed.push(r.name.clone());
            continue;
        }
        let mut tagged = |mut ev: Event| {
            if let Event::Finding(f) = &mut ev {
                f.repository = Some(r.name.clone());
            }
            on_event(ev)
        };
        match scan_repository(engine, &path, opts, worktree, cfg, covered, &mut tagged) {
            Ok(None) => scanned += 1,
            Ok(Some(why)) => {
                on_event(Event::error(r.name.clone(), why));
                failed.push(r.name.clone());
            }
            Err(e) => {
                on_event(Event::error(r.name.clone(), format!("{e:#}")));
                failed.push(r.name.clone());
            }
        }
    }
    covered.repositories = Some(scanned);
    Ok(failed)
}

fn handle_event(ev: Event, cfg: &ScanConfig, report: &mut Report, bar: Option<&ProgressBar>) {
    let warn = |msg: String| {
        if !cfg.quiet {
            match bar {
                Some(b) => b.suspend(|| eprintln!("{msg}")),
                None => eprintln!("{msg}"),
            }
        }
    };
    match ev {
        Event::Finding(f) => report.findings.push(*f),
        Event::Scanned { files, bytes } => {
            report.stats.files_scanned += files;
            report.stats.bytes_scanned += bytes;
            if let Some(b) = bar {
                b.set_position(report.stats.bytes_scanned);
                b.set_message(format!("{} files", report.stats.files_scanned));
            }
        }
        Event::Skipped { path, reason } => {
            report.stats.files_skipped += 1;
            if reason != SkipReason::Binary {
                report.notices.push(Notice {
                    level: NoticeLevel::Skipped,
                    path: path.clone(),
                    message: reason.to_string(),
                });
            }
            match reason {
                SkipReason::TooLarge { .. } => warn(format!(
                    "keyburn: warning: skipped {path}: {reason} (see --max-file-size)"
                )),
                SkipReason::Binary if cfg.verbose => {
                    warn(format!("keyburn: skipped {path}: {reason}"))
                }
                SkipReason::Binary => {}
                SkipReason::Submodule | SkipReason::Encrypted => {
                    warn(format!("keyburn: note: {path}: {reason}"))
                }
                SkipReason::ArchiveDepth { .. }
                | SkipReason::ArchiveBudget { .. }
                | SkipReason::BrokenArchive { .. } => {
                    warn(format!("keyburn: warning: skipped {path}: {reason}"))
                }
            }
        }
        // Errors are shown even with --quiet: the report is incomplete.
        Event::Error { path, message } => {
            report.stats.errors += 1;
            report.notices.push(Notice {
                level: NoticeLevel::Error,
                path: path.clone(),
                message: message.clone(),
            });
            let msg = if path.is_empty() {
                format!("keyburn: error: {message}")
            } else {
                format!("keyburn: error: {path}: {message}")
            };
            match bar {
                Some(b) => b.suspend(|| eprintln!("{msg}")),
                None => eprintln!("{msg}"),
            }
        }
    }
}

/// The absolute directory relative finding paths start from: the
/// repository's root for repository scans (history and work tree paths are
/// relative to it), else the directory scanned.
fn source_root(scanned: &std::path::Path) -> Option<PathBuf> {
    // Findings under an absolute path start with it as given.
    if scanned.is_absolute() {
        Some(scanned.to_path_buf())
    } else {
        std::fs::canonicalize(scanned).ok()
    }
}

/// The union of every `--baseline` file.
fn load_baseline(files: &[PathBuf]) -> Result<Baseline> {
    let mut all = Baseline::default();
    for path in files {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the baseline {}", path.display()))?;
        let one = Baseline::parse(&text)
            .with_context(|| format!("{} is not a baseline", path.display()))?;
        all.merge(one);
    }
    Ok(all)
}

fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} scanning: {binary_bytes} ({binary_bytes_per_sec}), {msg}",
        )
        .expect("static progress template"),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

fn write_report(cfg: &ScanConfig, report: &Report, engine: &Engine) -> Result<()> {
    let write = |out: &mut dyn Write| -> std::io::Result<()> {
        report::write(out, cfg.format, report, engine.rules(), &cfg.human)?;
        out.flush()
    };
    match &cfg.output {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            let mut out = std::io::BufWriter::new(file);
            write(&mut out).with_context(|| format!("cannot write {}", path.display()))
        }
        None => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            match write(&mut out) {
                // A closed pipe (`keyburn scan | head`) is not an error.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                r => r.context("cannot write the report"),
            }
        }
    }
}

/// The engine `--engine` asks for. `auto` leaves small inputs (a staged
/// change, single files, a commit range) to the Rust engine, which starts in
/// milliseconds; directories and whole histories get Hyperscan from the
/// moment its database is ready, when it is compiled in (see the README's
/// figures).
fn engine_kind(choice: EngineChoice, cfg: &ScanConfig) -> EngineKind {
    match choice {
        EngineChoice::Rust => EngineKind::Rust,
        EngineChoice::Hyperscan => EngineKind::Hyperscan,
        EngineChoice::Auto => {
            let small = match &cfg.mode {
                Mode::Staged(_) => true,
                Mode::History { opts: o, .. } | Mode::Sweep { opts: o, .. } => {
                    o.since.is_some() || o.range.is_some()
                }
                Mode::Files => !cfg.paths.iter().any(|p| p.is_dir()),
            };
            if small {
                EngineKind::Rust
            } else {
                EngineKind::Auto
            }
        }
    }
}

/// Where compiled Hyperscan databases are kept: `KEYBURN_CACHE_DIR`, else
/// the XDG cache directory.
pub fn cache_dir() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("KEYBURN_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("keyburn")))
        .or_else(|| env("HOME").map(|d| d.join(".cache").join("keyburn")))
}
