//! `keyburn incident`: the leaked-secret playbook from one command.
//!
//! Inventory (every occurrence in the given repositories' histories and
//! work trees), validate, revoke once, confirm, rotation steps, GitHub
//! alerts resolved, a purge plan (never run), notification, audit records
//! and a human timeline, all under `--out`.
//!
//! Every step is recorded in `OUT/state.json` (written whole or not at
//! all) as it happens, so the same command run again continues where the
//! last run stopped. A revocation is preceded by a recorded intent; a run
//! that finds an intent or an outcome that may have acted (`unknown`,
//! `accepted`, `manual`) asks the provider first, and calls again only
//! when the provider says the secret still works. The state never holds a
//! secret: secrets are named by their HMAC under the audit key, as the
//! audit log names them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use keyburn_responder::audit::{AuditLog, Record};
use keyburn_responder::config::Config;
use keyburn_responder::github::GitHub;
use keyburn_responder::http::Http;
use keyburn_responder::notify::{Notice, Notifier};
use keyburn_responder::providers::{Checker, Registry, Secret, Validity};
use keyburn_scanner::finding::{mask, Finding, Source};
use keyburn_scanner::sources::{self, Event, HistoryOptions, WalkOptions};
use keyburn_scanner::{Engine, RuleSet};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Digest as _;

use crate::cli::IncidentArgs;
use crate::revoke::{call, confirm, dry_run_outcome, Outcome};
use crate::sweep::{Location, Repo};
use crate::validate::{load_rules, read_secrets, registry, rule_for, runtime};

/// One secret of the incident, as given.
struct Target {
    value: String,
    parts: BTreeMap<String, String>,
    /// Its rule, or why none could be settled.
    rule: std::result::Result<String, String>,
}

/// What `OUT/state.json` holds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    version: u32,
    id: String,
    opened_at: String,
    secrets: Vec<SecretState>,
    /// Set once every repository was scanned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    inventory: Option<InventoryDone>,
    #[serde(default)]
    github: GitHubState,
    #[serde(default)]
    purge_written: bool,
    #[serde(default)]
    timeline: Vec<Entry>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct SecretState {
    /// `hmac-sha256:…` under the audit key.
    secret_ref: String,
    masked: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rule_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    provider: Option<String>,
    /// A revocation call was started at this time and its outcome not yet
    /// recorded: it may have happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revoke_intent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    outcome: Option<Outcome>,
    #[serde(default)]
    reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rotate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    notify_intent: Option<String>,
    /// `sent`, `error: …`, `unknown`, `not configured`, `dry run`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    notified: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct InventoryDone {
    at: String,
    occurrences: usize,
    repositories: usize,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct GitHubState {
    /// Alerts resolved (`owner/repo#n`).
    #[serde(default)]
    resolved: Vec<String>,
    /// Why the step did not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    skipped: Option<String>,
    /// What failed in its last run (listings, PATCHes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    failed: Vec<String>,
    #[serde(default)]
    done: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    time: String,
    what: String,
}

/// `OUT/occurrences.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Occurrences {
    version: u32,
    secrets: Vec<SecretOccurrences>,
    repositories: Vec<RepoScan>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct SecretOccurrences {
    secret_ref: String,
    masked: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rule_id: Option<String>,
    /// Dates of the oldest and newest commits that added it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    first_seen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_seen: Option<String>,
    occurrences: Vec<Occurrence>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Occurrence {
    repository: String,
    /// `history` (a commit added it) or `worktree` (on disk, uncommitted).
    source: String,
    path: String,
    line: usize,
    column: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    date: Option<String>,
    /// The refs whose history holds the commit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    refs: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RepoScan {
    name: String,
    /// Where it was read (a clone's mirror for a URL).
    path: String,
    /// Whether the name is a clone URL (the purge plan clones it).
    remote: bool,
    scanned: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Everything a run shares.
struct Run {
    out: PathBuf,
    state: State,
    audit: AuditLog,
    actor: String,
    dry_run: bool,
}

impl Run {
    /// Save the state (whole, or not at all).
    fn save(&self) -> Result<()> {
        write_atomic(
            &self.out.join("state.json"),
            &serde_json::to_vec_pretty(&self.state)?,
        )
    }

    /// Note `what` in the timeline and save.
    fn log(&mut self, what: impl Into<String>) -> Result<()> {
        let what = what.into();
        eprintln!("keyburn: incident: {what}");
        self.state.timeline.push(Entry {
            time: keyburn_responder::audit::now(),
            what,
        });
        self.save()
    }

    /// Append an audit record; a failure to record fails the run (an
    /// incident without its record is not done).
    fn audit(
        &self,
        event: &str,
        outcome: &str,
        secret: Option<&str>,
        extra: impl FnOnce(&mut Record),
    ) -> Result<()> {
        let mut r = Record {
            event: format!("incident.{event}"),
            actor: self.actor.clone(),
            outcome: outcome.into(),
            secret: secret.map(str::to_string),
            ..Record::default()
        };
        r.detail
            .insert("incident".into(), self.state.id.clone().into());
        extra(&mut r);
        self.audit
            .append(r)
            .context("cannot write the audit record")
    }
}

/// Write `bytes` to `path` through a temporary file and a rename, so that
/// a crash leaves the old file or the new one, never half of one.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("partial");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

pub fn run(a: IncidentArgs) -> Result<u8> {
    let rules = load_rules(&a.rules)?;
    let targets = targets(&rules, &a)?;
    let cfg = Config::load(a.config.config.as_deref()).context("cannot load the configuration")?;

    // The output directory: given, or named after the secrets so that the
    // same command finds it again.
    let out = a.out.clone().unwrap_or_else(|| {
        let mut values: Vec<&str> = targets.iter().map(|t| t.value.as_str()).collect();
        values.sort_unstable();
        let digest = sha2::Sha256::digest(values.join("\n").as_bytes());
        let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        PathBuf::from(format!("keyburn-incident-{hex}"))
    });
    if out.is_dir() && !out.join("state.json").is_file() {
        let foreign = std::fs::read_dir(&out)
            .with_context(|| format!("cannot read {}", out.display()))?
            .flatten()
            .any(|e| !matches!(e.file_name().to_str(), Some("lock" | "audit.key")));
        if foreign {
            bail!(
                "{} holds files that are not an incident's (no state.json); choose another --out",
                out.display()
            );
        }
    }
    let _lock = keyburn_responder::datadir::DataDir::claim(&out).with_context(|| {
        format!(
            "cannot use {} (another incident running there?)",
            out.display()
        )
    })?;
    let key = match cfg.audit_key()? {
        Some(k) => k,
        None => {
            let (k, created) = keyburn_responder::worker::audit_key_file(&out.join("audit.key"))
                .with_context(|| format!("cannot create an audit key in {}", out.display()))?;
            if created {
                eprintln!(
                    "keyburn: incident: no audit HMAC key configured (KEYBURN_AUDIT_HMAC_KEY): \
                     generated {} (mode 0600)",
                    out.join("audit.key").display()
                );
            }
            k
        }
    };
    let audit_path = a
        .audit_log
        .clone()
        .unwrap_or_else(|| out.join("audit.jsonl"));
    let audit = AuditLog::open(&audit_path, key.as_bytes())
        .with_context(|| format!("cannot open the audit log {}", audit_path.display()))?;
    let refs: Vec<String> = targets.iter().map(|t| audit.secret_ref(&t.value)).collect();
    let id = out
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "incident".into());
    let state = load_state(&out, &refs, &targets, &id)?;
    let resumed = !state.timeline.is_empty();
    let mut run = Run {
        out: out.clone(),
        state,
        audit,
        actor: format!(
            "keyburn-incident ({})",
            std::env::var("USER").unwrap_or_else(|_| "unknown user".into())
        ),
        dry_run: a.dry_run,
    };
    if resumed {
        run.log("run again: continuing from the recorded state")?;
    } else {
        run.log(format!(
            "opened for {} secret(s){}",
            targets.len(),
            if a.dry_run { " (dry run)" } else { "" }
        ))?;
        run.audit("opened", "open", None, |r| {
            r.detail.insert("secrets".into(), json!(refs));
        })?;
    }

    // 1. Inventory.
    let repos = repositories(&a)?;
    let occurrences = inventory(&mut run, &targets, &refs, &repos, &a)?;

    // 2. Validate, revoke, confirm.
    let registry = registry(&rules, &a.providers)?;
    let rt = runtime()?;
    for (i, t) in targets.iter().enumerate() {
        rt.block_on(settle(&mut run, i, t, &registry))?;
    }

    // 3. Rotation steps.
    for (i, t) in targets.iter().enumerate() {
        let rotate = t
            .rule
            .as_ref()
            .ok()
            .and_then(|id| rules.get(id).and_then(|r| rules.rotation(r)));
        run.state.secrets[i].rotate = rotate;
    }
    run.save()?;

    // 4. GitHub alerts.
    let http = Http::new(Duration::from_secs(a.providers.provider_timeout.max(1)))
        .with_max_wait(Duration::from_secs(10));
    rt.block_on(github_step(&mut run, &targets, &refs, &cfg, &a, &http))?;

    // 5. Purge plan.
    purge_plan(&mut run, &targets, &occurrences)?;

    // 6. Notify.
    let slack = a.slack_webhook.clone().or(cfg.slack_webhook()?);
    let webhook = a.notify_webhook.clone().or(cfg.notify.webhook.clone());
    let notifier =
        (slack.is_some() || webhook.is_some()).then(|| Notifier::new(http.clone(), slack, webhook));
    rt.block_on(notify_step(
        &mut run,
        &targets,
        &occurrences,
        notifier.as_ref(),
    ))?;

    // 7. The human record.
    let remaining = remaining(&run, &occurrences);
    let done = remaining.is_empty();
    run.log(if done {
        "closed: every secret is dead and the purge plan is written".to_string()
    } else {
        format!("{} item(s) remain for a person", remaining.len())
    })?;
    run.audit("summary", if done { "closed" } else { "open" }, None, |r| {
        r.detail.insert("remaining".into(), remaining.len().into());
    })?;
    write_atomic(
        &out.join("incident.md"),
        timeline_md(&run, &occurrences, &remaining).as_bytes(),
    )?;
    println!("{}", out.join("incident.md").display());
    if done {
        return Ok(0);
    }
    eprintln!("keyburn: incident: not closed:");
    for r in &remaining {
        eprintln!("  - {r}");
    }
    Ok(1)
}

/// The secrets the arguments name, each with its rule (or why none).
fn targets(rules: &RuleSet, a: &IncidentArgs) -> Result<Vec<Target>> {
    let parts: BTreeMap<String, String> = a.parts.iter().cloned().collect();
    let targets: Vec<Target> = match (&a.report, &a.secret) {
        (Some(path), _) => crate::revoke::from_report(rules, path, false)?
            .into_iter()
            .map(|s| {
                let mut p = s.secret.parts;
                for (k, v) in &parts {
                    p.entry(k.clone()).or_insert_with(|| v.clone());
                }
                Target {
                    value: s.secret.value,
                    parts: p,
                    rule: Ok(s.rule_id),
                }
            })
            .collect(),
        (None, Some(given)) => {
            let engine = Engine::new(rules.clone()).context("cannot build the rule engine")?;
            read_secrets(given)?
                .into_iter()
                .map(|value| Target {
                    rule: rule_for(rules, &engine, a.rule.as_deref(), &value)
                        .map_err(|e| format!("{e:#}")),
                    parts: parts.clone(),
                    value,
                })
                .collect()
        }
        (None, None) => bail!("give a secret, `-`, or --report FILE"),
    };
    if targets.is_empty() {
        bail!("the report holds no secrets");
    }
    for t in &targets {
        if t.value.len() < 6 {
            bail!(
                "{}: too short to be searched for without finding everything",
                mask(&t.value)
            );
        }
        if let Err(e) = &t.rule {
            eprintln!("keyburn: incident: {e} (it is still inventoried and purged)");
        }
    }
    Ok(targets)
}

/// The state in `out`: a new one, or the recorded one when it is about the
/// same secrets. Another incident's state is an error.
fn load_state(out: &Path, refs: &[String], targets: &[Target], id: &str) -> Result<State> {
    let path = out.join("state.json");
    if path.is_file() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let state: State = serde_json::from_str(&text)
            .with_context(|| format!("{} is not an incident's state (damaged?)", path.display()))?;
        let recorded: BTreeSet<&str> = state
            .secrets
            .iter()
            .map(|s| s.secret_ref.as_str())
            .collect();
        let given: BTreeSet<&str> = refs.iter().map(String::as_str).collect();
        if recorded != given {
            bail!(
                "{} holds another incident (about {}); choose another --out",
                out.display(),
                state
                    .secrets
                    .iter()
                    .map(|s| s.masked.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        // The recorded order may differ from this run's: follow this run's.
        let mut by_ref: BTreeMap<String, SecretState> = state
            .secrets
            .into_iter()
            .map(|s| (s.secret_ref.clone(), s))
            .collect();
        let secrets = refs
            .iter()
            .map(|r| by_ref.remove(r).unwrap_or_default())
            .collect();
        return Ok(State { secrets, ..state });
    }
    Ok(State {
        version: 1,
        id: id.to_string(),
        opened_at: keyburn_responder::audit::now(),
        secrets: targets
            .iter()
            .zip(refs)
            .map(|(t, r)| SecretState {
                secret_ref: r.clone(),
                masked: mask(&t.value),
                rule_id: t.rule.as_ref().ok().cloned(),
                ..SecretState::default()
            })
            .collect(),
        ..State::default()
    })
}

/// The repositories to inventory: `--repo`, `--repos`, else the current
/// directory when it is a repository.
fn repositories(a: &IncidentArgs) -> Result<Vec<Repo>> {
    let mut list: Vec<Repo> = a
        .repos_given
        .iter()
        .map(|p| Repo {
            name: p.display().to_string(),
            location: Location::Local(p.clone()),
        })
        .collect();
    if let Some(file) = &a.repos {
        list.extend(crate::sweep::read_list(file)?);
    }
    if list.is_empty() && sources::is_repository(Path::new(".")) {
        list.push(Repo {
            name: ".".into(),
            location: Location::Local(".".into()),
        });
    }
    Ok(list)
}

/// A rule set that finds exactly the given secrets, whatever surrounds
/// them: rule `incident-secret-N` for secret N.
fn literal_rules(targets: &[Target]) -> Result<RuleSet> {
    let mut toml = String::new();
    for (i, t) in targets.iter().enumerate() {
        toml.push_str(&format!(
            "[[rule]]\nid = \"incident-secret-{i}\"\nname = \"incident secret {i}\"\n\
             confidence = \"high\"\nexact = true\nregex = {}\nkeywords = [{}]\n\n",
            toml_string(&regex::escape(&t.value)),
            toml_string(&t.value)
        ));
    }
    RuleSet::from_toml(&toml, "incident").context("cannot search for the secrets")
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Step 1: every occurrence of every secret, in every repository's history
/// (each commit that added it) and work tree. Written to
/// `OUT/occurrences.json`; done once every repository was scanned.
fn inventory(
    run: &mut Run,
    targets: &[Target],
    refs: &[String],
    repos: &[Repo],
    a: &IncidentArgs,
) -> Result<Occurrences> {
    let file = run.out.join("occurrences.json");
    if run.state.inventory.is_some() {
        if let Ok(text) = std::fs::read_to_string(&file) {
            if let Ok(o) = serde_json::from_str::<Occurrences>(&text) {
                return Ok(o);
            }
        }
    }
    if repos.is_empty() {
        run.log(
            "inventory: no repository given (--repo, --repos) and none here: nothing searched",
        )?;
    }
    let engine = Engine::new(literal_rules(targets)?).context("cannot build the search")?;
    let opts = HistoryOptions {
        all_commits: true,
        all_objects: false,
        ..HistoryOptions::default()
    };
    let walk = WalkOptions::default();
    let mut per_secret: Vec<Vec<Occurrence>> = vec![Vec::new(); targets.len()];
    let mut scans = Vec::new();
    for r in repos {
        let (path, remote) = match &r.location {
            Location::Local(p) => (Ok(p.clone()), false),
            Location::Remote(url) => (
                crate::sweep::clone_dir(a.clone_dir.as_deref(), crate::scan::cache_dir())
                    .and_then(|d| crate::sweep::mirror(&d, url)),
                true,
            ),
        };
        let mut scan = RepoScan {
            name: r.name.clone(),
            path: path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            remote,
            scanned: false,
            error: None,
        };
        let found = path.and_then(|p| scan_one(&engine, &p, &opts, &walk, remote));
        match found {
            Ok(findings) => {
                scan.scanned = true;
                let repo_path = PathBuf::from(&scan.path);
                for f in findings {
                    let Some(n) = f
                        .rule_id
                        .strip_prefix("incident-secret-")
                        .and_then(|n| n.parse::<usize>().ok())
                    else {
                        continue;
                    };
                    per_secret[n].push(occurrence(&r.name, &repo_path, f));
                }
            }
            Err(e) => scan.error = Some(format!("{e:#}")),
        }
        scans.push(scan);
    }
    let mut inventory = Occurrences {
        version: 1,
        repositories: scans,
        secrets: Vec::new(),
    };
    for (i, mut occ) in per_secret.into_iter().enumerate() {
        occ.sort_by(|x, y| {
            (&x.repository, &x.date, &x.path, x.line).cmp(&(
                &y.repository,
                &y.date,
                &y.path,
                y.line,
            ))
        });
        let dates: Vec<&String> = occ.iter().filter_map(|o| o.date.as_ref()).collect();
        inventory.secrets.push(SecretOccurrences {
            secret_ref: refs[i].clone(),
            masked: mask(&targets[i].value),
            rule_id: targets[i].rule.as_ref().ok().cloned(),
            first_seen: dates.iter().min().map(|d| d.to_string()),
            last_seen: dates.iter().max().map(|d| d.to_string()),
            occurrences: occ,
        });
    }
    write_atomic(&file, &serde_json::to_vec_pretty(&inventory)?)?;
    let total: usize = inventory.secrets.iter().map(|s| s.occurrences.len()).sum();
    let failed: Vec<String> = inventory
        .repositories
        .iter()
        .filter_map(|r| r.error.as_ref().map(|e| format!("{}: {e}", r.name)))
        .collect();
    for f in &failed {
        eprintln!("keyburn: incident: error: {f}");
    }
    run.log(format!(
        "inventory: {total} occurrence(s) in {} of {} repositories{}",
        inventory.repositories.iter().filter(|r| r.scanned).count(),
        inventory.repositories.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!("; not scanned: {}", failed.join("; "))
        }
    ))?;
    run.audit(
        "inventory",
        if failed.is_empty() {
            "complete"
        } else {
            "incomplete"
        },
        None,
        |r| {
            r.detail.insert("occurrences".into(), total.into());
            r.detail.insert("failed".into(), json!(failed));
        },
    )?;
    if failed.is_empty() {
        run.state.inventory = Some(InventoryDone {
            at: keyburn_responder::audit::now(),
            occurrences: total,
            repositories: inventory.repositories.len(),
        });
        run.save()?;
    }
    Ok(inventory)
}

/// The exact-secret findings of one repository: history, and a local
/// one's work tree.
fn scan_one(
    engine: &Engine,
    path: &Path,
    opts: &HistoryOptions,
    walk: &WalkOptions,
    remote: bool,
) -> Result<Vec<Finding>> {
    if !sources::is_repository(path) {
        bail!("{}: not a git repository", path.display());
    }
    let mut findings = Vec::new();
    let mut errors = Vec::new();
    let mut on_event = |ev: Event| match ev {
        Event::Finding(f) => findings.push(*f),
        Event::Error { path, message } => errors.push(format!("{path}: {message}")),
        _ => {}
    };
    let summary = sources::scan_history(engine, path, opts, &mut on_event)?;
    if !remote {
        sources::scan_worktree(engine, path, walk, &mut on_event)?;
    }
    if summary.unreadable_commits > 0 || !errors.is_empty() {
        bail!(
            "could not read everything ({}): the inventory would be incomplete",
            errors.join("; ")
        );
    }
    Ok(findings)
}

fn occurrence(repo: &str, path: &Path, f: Finding) -> Occurrence {
    let refs = f
        .commit
        .as_ref()
        .map(|c| refs_containing(path, &c.id))
        .unwrap_or_default();
    Occurrence {
        repository: repo.to_string(),
        source: match f.source {
            Source::History => "history",
            Source::Worktree => "worktree",
            Source::File => "file",
        }
        .into(),
        path: f.path,
        line: f.location.line,
        column: f.location.column,
        commit: f.commit.as_ref().map(|c| c.id.clone()),
        author: f.commit.as_ref().map(|c| c.author.clone()),
        email: f.commit.as_ref().map(|c| c.email.clone()),
        date: f.commit.as_ref().map(|c| c.date.clone()),
        refs,
    }
}

/// The refs whose history holds `commit` (`git for-each-ref --contains`).
fn refs_containing(repo: &Path, commit: &str) -> Vec<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["for-each-ref", "--format=%(refname)", "--contains", commit])
        .stdin(std::process::Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// Step 2 for one secret: validate, revoke once, confirm; or, on a run
/// after one that may have acted, check first.
async fn settle(run: &mut Run, i: usize, t: &Target, registry: &Registry) -> Result<()> {
    let secret_ref = run.state.secrets[i].secret_ref.clone();
    let prev = run.state.secrets[i].outcome;
    if matches!(prev, Some(Outcome::Revoked | Outcome::NotFound)) {
        return Ok(());
    }
    let masked = run.state.secrets[i].masked.clone();
    let rule_id = match &t.rule {
        Ok(id) => id.clone(),
        Err(e) => return finish(run, i, Outcome::Error, e.clone()),
    };
    let Some(c) = registry.for_rule(&rule_id).map(Arc::clone) else {
        return finish(
            run,
            i,
            Outcome::Error,
            format!("rule {rule_id} has no provider check (see `keyburn rules list`)"),
        );
    };
    run.state.secrets[i].provider = Some(c.family.clone());
    let secret = Secret {
        value: t.value.clone(),
        parts: t.parts.clone(),
    };
    // An earlier run's call that may have acted.
    let acted = run.state.secrets[i].revoke_intent.is_some()
        || matches!(
            prev,
            Some(Outcome::Unknown | Outcome::Accepted | Outcome::Manual)
        );
    if c.validates() {
        let v = c.validate(&secret).await;
        let said = match &v {
            Ok(v) => format!("{}: {}", v.validity.as_str(), v.reason),
            Err(e) => format!("error: {e}"),
        };
        run.log(format!("{masked}: validated ({said})"))?;
        run.audit("validate", &said, Some(&secret_ref), |r| {
            r.provider = Some(c.family.clone());
        })?;
        match v {
            Ok(v) if v.validity == Validity::Inactive => {
                return if acted {
                    finish(
                        run,
                        i,
                        Outcome::Revoked,
                        format!(
                            "the earlier revocation took effect; confirmed: {}",
                            v.reason
                        ),
                    )
                } else {
                    finish(
                        run,
                        i,
                        Outcome::NotFound,
                        format!("already dead: {}", v.reason),
                    )
                };
            }
            Ok(v) if v.validity == Validity::Active && acted => {
                run.log(format!(
                    "{masked}: the earlier run's revocation did not take effect (still active); revoking"
                ))?;
            }
            Ok(v) if v.validity == Validity::Active => {}
            // A secret keyburn cannot test is still revoked, unless an
            // earlier call may have done it.
            _ if acted => {
                return finish(
                    run,
                    i,
                    prev.unwrap_or(Outcome::Unknown),
                    format!(
                        "an earlier revocation may have acted and nothing can tell ({said}); \
                         not repeated: check {} before revoking again",
                        c.provider_name
                    ),
                );
            }
            _ => {}
        }
    } else if acted {
        // Nothing can check whether it happened: never repeated blind.
        let reason = run.state.secrets[i].reason.clone();
        return finish(
            run,
            i,
            prev.unwrap_or(Outcome::Unknown),
            if reason.is_empty() {
                "an earlier run's revocation call was cut short; nothing can check it: not repeated"
                    .into()
            } else {
                reason
            },
        );
    }
    if run.dry_run {
        let (o, r) = dry_run_outcome(&c);
        return finish(run, i, o, r);
    }
    if !c.revokes_by_api() {
        let (o, r) = dry_run_outcome(&c);
        return finish(run, i, o, r);
    }
    run.state.secrets[i].revoke_intent = Some(keyburn_responder::audit::now());
    run.log(format!(
        "{masked}: revoking through the {} API",
        c.provider_name
    ))?;
    run.audit("revoke.intent", "started", Some(&secret_ref), |r| {
        r.provider = Some(c.family.clone());
    })?;
    let (outcome, reason) = match call(&c, &secret).await {
        Ok(reason) => confirm(&c, &secret, &reason).await,
        Err(ended) => ended,
    };
    finish_with(run, i, outcome, reason, Some(&c))
}

fn finish(run: &mut Run, i: usize, outcome: Outcome, reason: String) -> Result<()> {
    finish_with(run, i, outcome, reason, None)
}

/// Record how a secret's revocation ended (state, timeline, audit).
fn finish_with(
    run: &mut Run,
    i: usize,
    outcome: Outcome,
    reason: String,
    c: Option<&Checker>,
) -> Result<()> {
    let s = &mut run.state.secrets[i];
    s.outcome = Some(outcome);
    s.reason = reason.clone();
    s.revoke_intent = None;
    let (masked, secret_ref) = (s.masked.clone(), s.secret_ref.clone());
    let provider = c.map(|c| c.family.clone()).or(s.provider.clone());
    run.log(format!("{masked}: {} ({reason})", outcome.as_str()))?;
    run.audit("revoke", outcome.as_str(), Some(&secret_ref), |r| {
        r.provider = provider;
        r.detail.insert("reason".into(), reason.into());
    })
}

/// Whether a secret's outcome means it no longer works (or the provider
/// took its revocation).
fn dead(o: Option<Outcome>) -> bool {
    matches!(
        o,
        Some(Outcome::Revoked | Outcome::NotFound | Outcome::Accepted)
    )
}

/// Step 4: open secret-scanning alerts for these secrets, in the
/// configured organisations and repositories, resolved as `revoked`.
async fn github_step(
    run: &mut Run,
    targets: &[Target],
    refs: &[String],
    cfg: &Config,
    a: &IncidentArgs,
    http: &Http,
) -> Result<()> {
    if run.state.github.done {
        return Ok(());
    }
    let mut cfg = cfg.clone();
    cfg.github
        .organizations
        .extend(a.github_orgs.iter().cloned());
    cfg.github
        .repositories
        .extend(a.github_repos.iter().cloned());
    if let Some(api) = &a.github_api {
        cfg.github.api_url = api.clone();
    }
    let configured = cfg.github.app.is_some() || cfg.github_token()?.is_some();
    let scopes: Vec<String> = cfg
        .github
        .organizations
        .iter()
        .map(|o| format!("orgs/{o}"))
        .chain(cfg.github.repositories.iter().map(|r| format!("repos/{r}")))
        .collect();
    let skip = if !configured {
        Some("no GitHub token configured (KEYBURN_GITHUB_TOKEN, or [github] in --config)")
    } else if scopes.is_empty() {
        Some("no organisation or repository to look in (--github-org, --github-repo, or [github] in --config)")
    } else if run.dry_run {
        Some("dry run: alerts left as they are")
    } else {
        None
    };
    if let Some(why) = skip {
        run.state.github.skipped = Some(why.into());
        return run.log(format!("GitHub alerts: skipped: {why}"));
    }
    run.state.github.skipped = None;
    let gh: GitHub = keyburn_responder::worker::github_client(&cfg, http)?;
    let mut failed = Vec::new();
    for scope in scopes {
        let alerts = match gh.open_alerts(&scope).await {
            Ok(a) => a,
            Err(e) => {
                failed.push(format!("{scope}: {e}"));
                continue;
            }
        };
        for (repo, alert) in alerts {
            let Some(i) = targets.iter().position(|t| t.value == alert.secret) else {
                continue;
            };
            let s = &run.state.secrets[i];
            let alert_ref = format!("{repo}#{}", alert.number);
            if !dead(s.outcome) {
                let why = format!(
                    "GitHub alert {alert_ref} left open: the secret is {}",
                    s.outcome.map_or("not revoked", |o| o.as_str())
                );
                run.log(why)?;
                continue;
            }
            let comment = format!(
                "Revoked during keyburn incident {}: {} ({}). Record: {}",
                run.state.id,
                s.outcome.map_or("", |o| o.as_str()),
                s.provider.as_deref().unwrap_or("provider"),
                run.out.join("incident.md").display()
            );
            let secret_ref = refs[i].clone();
            match gh.resolve(&repo, alert.number, &comment).await {
                Ok(()) => {
                    run.state.github.resolved.push(alert_ref.clone());
                    run.log(format!("GitHub alert {alert_ref} resolved as revoked"))?;
                    run.audit("alert.resolve", "resolved", Some(&secret_ref), |r| {
                        r.alert = Some(alert_ref.clone());
                    })?;
                }
                Err(e) => {
                    failed.push(format!("{alert_ref}: {e}"));
                    run.audit("alert.resolve", "error", Some(&secret_ref), |r| {
                        r.alert = Some(alert_ref.clone());
                        r.detail.insert("error".into(), e.to_string().into());
                    })?;
                }
            }
        }
    }
    // Done when every secret is dead (an alert of a live one is looked at
    // again next run) and nothing failed.
    run.state.github.done = failed.is_empty() && run.state.secrets.iter().all(|s| dead(s.outcome));
    run.state.github.failed = failed.clone();
    if !failed.is_empty() {
        run.log(format!("GitHub alerts: failed: {}", failed.join("; ")))?;
    }
    run.save()
}

/// Step 5: the plan to remove the secrets from history (never run here).
fn purge_plan(run: &mut Run, targets: &[Target], inv: &Occurrences) -> Result<()> {
    let dir = run.out.join("purge");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // git filter-repo --replace-text: `literal==>replacement` a line; a
    // secret holding `==>` or a line end is given as a regex instead.
    let mut replace = String::new();
    for t in targets {
        if t.value.contains("==>")
            || t.value.contains('\n')
            || t.value.starts_with("regex:")
            || t.value.starts_with("glob:")
        {
            replace.push_str(&format!(
                "regex:{}==>***REMOVED***\n",
                regex::escape(&t.value).replace('\n', "\\n")
            ));
        } else {
            replace.push_str(&format!("{}==>***REMOVED***\n", t.value));
        }
    }
    write_atomic(&dir.join("replace-text.txt"), replace.as_bytes())?;
    let holding: BTreeSet<&str> = inv
        .secrets
        .iter()
        .flat_map(|s| s.occurrences.iter().map(|o| o.repository.as_str()))
        .collect();
    let mut sh = String::from(
        "#!/bin/sh\n\
         # Purge plan written by `keyburn incident`. keyburn never runs it: read it,\n\
         # run it yourself, repository by repository. It needs git-filter-repo\n\
         # (pip install git-filter-repo).\n\
         #\n\
         # Revoke first (keyburn did, see incident.md): rewriting history does not\n\
         # take the secret back from clones, forks, CI caches, pull-request refs\n\
         # (refs/pull/*, which only GitHub support can purge) or anyone who fetched\n\
         # it. The revocation at the provider is what protects you; this purge only\n\
         # stops the secret from being found again in these repositories.\n\
         #\n\
         # After the force-push: ask collaborators to re-clone (not pull), and ask\n\
         # your Git host to run garbage collection / purge cached views.\n\
         set -eu\n\
         PLAN=\"$(cd \"$(dirname \"$0\")\" && pwd)\"\n\
         WORK=\"${WORK:-$PLAN/work}\"\n\
         mkdir -p \"$WORK\"\n",
    );
    for r in &inv.repositories {
        if !holding.contains(r.name.as_str()) {
            continue;
        }
        let name = r.name.replace('\n', " ");
        // Where the shared history lives: the clone URL, or a local
        // clone's `origin`. A repository with neither is rewritten in place.
        let upstream = if r.remote {
            Some(r.name.clone())
        } else {
            origin_of(Path::new(&r.path))
        };
        match upstream {
            Some(url) => {
                let dirname = crate::sweep::mirror_name(&url);
                let url = shell_quote(&url);
                sh.push_str(&format!(
                    "\n# {name}\n\
                     rm -rf \"$WORK/{dirname}\"\n\
                     git clone --mirror {url} \"$WORK/{dirname}\"\n\
                     git -C \"$WORK/{dirname}\" filter-repo --replace-text \"$PLAN/replace-text.txt\" --force\n\
                     # check before pushing: git -C \"$WORK/{dirname}\" log --all -p | grep -c REMOVED\n\
                     git -C \"$WORK/{dirname}\" push --force --mirror {url}\n"
                ));
            }
            None => {
                let path = shell_quote(&r.path);
                sh.push_str(&format!(
                    "\n# {name} (no remote: rewritten in place; back it up first)\n\
                     git -C {path} filter-repo --replace-text \"$PLAN/replace-text.txt\" --force\n"
                ));
            }
        }
    }
    if holding.is_empty() {
        sh.push_str("\n# The inventory found the secret in no repository: nothing to rewrite.\n");
    }
    write_atomic(&dir.join("commands.sh"), sh.as_bytes())?;
    if !run.state.purge_written {
        run.state.purge_written = true;
        run.log(format!(
            "purge plan written: {} ({} repositor{})",
            dir.display(),
            holding.len(),
            if holding.len() == 1 { "y" } else { "ies" }
        ))?;
        run.audit("purge.plan", "written", None, |r| {
            r.detail.insert("repositories".into(), json!(holding));
        })?;
    }
    Ok(())
}

/// A local repository's `origin` URL, if it has one.
fn origin_of(repo: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["remote", "get-url", "origin"])
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !url.is_empty()).then_some(url)
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Step 6: one notice per secret, sent once (an intent recorded before;
/// a run that finds the intent without an outcome does not send again).
async fn notify_step(
    run: &mut Run,
    targets: &[Target],
    inv: &Occurrences,
    notifier: Option<&Notifier>,
) -> Result<()> {
    for (i, t) in targets.iter().enumerate() {
        let s = &run.state.secrets[i];
        if s.notified
            .as_deref()
            .is_some_and(|n| n == "sent" || n == "unknown")
        {
            continue;
        }
        let (masked, secret_ref) = (s.masked.clone(), s.secret_ref.clone());
        let Some(n) = notifier else {
            run.state.secrets[i].notified = Some("not configured".into());
            continue;
        };
        if run.dry_run {
            run.state.secrets[i].notified = Some("dry run".into());
            continue;
        }
        if s.notify_intent.is_some() {
            run.state.secrets[i].notified = Some("unknown".into());
            run.state.secrets[i].notify_intent = None;
            run.log(format!(
                "{masked}: an earlier run may have sent the notice; not sent again"
            ))?;
            continue;
        }
        let occ = &inv.secrets[i].occurrences;
        let repos: BTreeSet<&str> = occ.iter().map(|o| o.repository.as_str()).collect();
        let notice = Notice {
            repository: repos.iter().copied().collect::<Vec<_>>().join(", "),
            alert_number: 0,
            alert_url: None,
            secret_type: t
                .rule
                .as_ref()
                .map_or("unknown", String::as_str)
                .to_string(),
            outcome: s.outcome.map_or("unknown", |o| o.as_str()).to_string(),
            summary: format!(
                "{} ({}); {} occurrence(s) in {} repositor{}; purge plan in {}",
                s.outcome.map_or("not revoked", |o| o.as_str()),
                s.reason,
                occ.len(),
                repos.len(),
                if repos.len() == 1 { "y" } else { "ies" },
                run.out.join("purge").display()
            ),
            secret_masked: masked.clone(),
            locations: occ
                .iter()
                .take(5)
                .map(|o| match &o.commit {
                    Some(c) => format!("{}:{}@{}", o.path, o.line, &c[..c.len().min(12)]),
                    None => format!("{}:{}", o.path, o.line),
                })
                .collect(),
            incident: Some(run.state.id.clone()),
        };
        run.state.secrets[i].notify_intent = Some(keyburn_responder::audit::now());
        run.save()?;
        let sent = n.send(&notice).await;
        let outcome = match &sent {
            Ok(()) => "sent".to_string(),
            Err(e) if !e.answered() => "unknown".to_string(),
            Err(e) => format!("error: {e}"),
        };
        let s = &mut run.state.secrets[i];
        s.notify_intent = None;
        s.notified = Some(outcome.clone());
        run.log(format!("{masked}: notification {outcome}"))?;
        run.audit(
            "notify",
            outcome.split(':').next().unwrap_or("error"),
            Some(&secret_ref),
            |_| {},
        )?;
    }
    run.save()
}

/// What keeps the incident open: each a sentence for a person.
fn remaining(run: &Run, inv: &Occurrences) -> Vec<String> {
    let mut out = Vec::new();
    for r in &inv.repositories {
        if let Some(e) = &r.error {
            out.push(format!("{} was not searched: {e}", r.name));
        }
    }
    for s in &run.state.secrets {
        let ok = match s.outcome {
            Some(Outcome::Revoked | Outcome::NotFound) => true,
            Some(Outcome::DryRun) => run.dry_run,
            _ => false,
        };
        if !ok {
            out.push(format!(
                "{} is {}: {}",
                s.masked,
                s.outcome.map_or("not revoked", |o| o.as_str()),
                s.reason
            ));
        }
        if let Some(n) = s.notified.as_deref().filter(|n| n.starts_with("error")) {
            out.push(format!("{}: notification failed ({n})", s.masked));
        }
    }
    for f in &run.state.github.failed {
        out.push(format!("GitHub alerts: {f}"));
    }
    if !run.state.purge_written {
        out.push("the purge plan was not written".into());
    }
    out
}

/// `OUT/incident.md`: the timeline and what remains, secrets masked.
fn timeline_md(run: &Run, inv: &Occurrences, remaining: &[String]) -> String {
    let s = &run.state;
    let mut md = format!(
        "# Incident {}\n\nOpened {}{}.\n\n## Secrets\n\n| secret | rule | provider | outcome | detail |\n|---|---|---|---|---|\n",
        s.id,
        s.opened_at,
        if run.dry_run { " (dry run: nothing revoked)" } else { "" }
    );
    for x in &s.secrets {
        md.push_str(&format!(
            "| `{}` | {} | {} | **{}** | {} |\n",
            x.masked,
            x.rule_id.as_deref().unwrap_or("(none)"),
            x.provider.as_deref().unwrap_or(""),
            x.outcome.map_or("not revoked", |o| o.as_str()),
            x.reason.replace('|', "\\|").replace('\n', " ")
        ));
    }
    md.push_str("\n## Where it was found\n\n");
    for (x, occ) in s.secrets.iter().zip(&inv.secrets) {
        md.push_str(&format!(
            "`{}`: {} occurrence(s){}\n\n",
            x.masked,
            occ.occurrences.len(),
            match (&occ.first_seen, &occ.last_seen) {
                (Some(a), Some(b)) => format!(", first added {a}, last added {b}"),
                _ => String::new(),
            }
        ));
        for o in &occ.occurrences {
            md.push_str(&format!(
                "- {} `{}:{}`{}{}\n",
                o.repository,
                o.path,
                o.line,
                o.commit
                    .as_ref()
                    .map_or(" (work tree, not committed)".to_string(), |c| format!(
                        " in commit `{}` by {} on {}",
                        &c[..c.len().min(12)],
                        o.author.as_deref().unwrap_or("?"),
                        o.date.as_deref().unwrap_or("?")
                    )),
                if o.refs.is_empty() {
                    String::new()
                } else {
                    format!(", reachable from {}", o.refs.join(", "))
                }
            ));
        }
        md.push('\n');
    }
    for r in inv.repositories.iter().filter(|r| r.error.is_some()) {
        md.push_str(&format!(
            "- **not searched**: {} ({})\n",
            r.name,
            r.error.as_deref().unwrap_or("")
        ));
    }
    md.push_str("\n## Rotate\n\n");
    for (x, occ) in s.secrets.iter().zip(&inv.secrets) {
        md.push_str(&format!(
            "`{}`: {}\n",
            x.masked,
            x.rotate.as_deref().unwrap_or(
                "no rotation steps are known for this rule: issue a replacement at its provider"
            )
        ));
        let places: BTreeSet<String> = occ
            .occurrences
            .iter()
            .map(|o| format!("{}: `{}`", o.repository, o.path))
            .collect();
        if !places.is_empty() {
            md.push_str("Replace the old value (with a reference to a secret manager) in:\n");
            for p in places {
                md.push_str(&format!("- {p}\n"));
            }
        }
        md.push('\n');
    }
    md.push_str("## GitHub alerts\n\n");
    if s.github.resolved.is_empty() {
        md.push_str("None resolved");
    } else {
        md.push_str(&format!(
            "Resolved as revoked: {}",
            s.github.resolved.join(", ")
        ));
    }
    if let Some(n) = &s.github.skipped {
        md.push_str(&format!(" (skipped: {n})"));
    }
    for f in &s.github.failed {
        md.push_str(&format!("; failed: {f}"));
    }
    md.push_str(
        ".\n\n## Purge\n\n`purge/commands.sh` rewrites each repository holding the secret with \
         git filter-repo and `purge/replace-text.txt` (which holds the secrets in clear: \
         delete it when done), then force-pushes. keyburn did not run it. Clones, forks, \
         caches and pull-request refs keep their copies: the revocation is what protects you.\n\n\
         ## Timeline\n\n",
    );
    for e in &s.timeline {
        md.push_str(&format!("- {} {}\n", e.time, e.what));
    }
    md.push_str("\n## What remains for a person\n\n");
    if remaining.is_empty() {
        md.push_str("- Run (or schedule) the purge plan, and rotate as above.\n");
    } else {
        for r in remaining {
            md.push_str(&format!("- {r}\n"));
        }
        md.push_str("- Then run the purge plan, and rotate as above.\n");
    }
    md
}
