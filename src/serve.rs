//! `keyburn serve`, `keyburn jobs`, `keyburn audit`: the responder's
//! commands. The work is in the keyburn-responder crate.

use anyhow::{Context, Result};
use keyburn_responder::config::Config;
use keyburn_responder::queue::{now_ms, Job, Queue, State};
use keyburn_responder::worker::Responder;

use crate::cli::{
    AuditVerifyArgs, ConfigArg, JobArgs, JobStateArg, JobsListArgs, JobsPruneArgs, JobsRetryArgs,
    LogFormat, ServeArgs,
};

fn load(c: &ConfigArg) -> Result<Config> {
    Ok(Config::load(c.config.as_deref())?)
}

pub fn serve(args: ServeArgs) -> Result<u8> {
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KEYBURN_LOG")
                .unwrap_or_else(|_| "info".into()),
        );
    match args.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().with_ansi(false).init(),
    }
    let cfg = load(&args.config)?;
    if args.check_config {
        return check_config(&cfg);
    }
    let listen = cfg.server.listen.clone();
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async move {
        let (responder, notes) = Responder::new(cfg).context("cannot start the responder")?;
        for n in notes {
            tracing::warn!("{n}");
        }
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        tracing::info!(
            "keyburn serve: listening on http://{}, data in {}",
            listener.local_addr()?,
            responder.cfg.server.data_dir.display()
        );
        keyburn_responder::server::serve(responder, listener, shutdown()).await?;
        tracing::info!("keyburn serve: stopped");
        Ok(0)
    })
}

/// `keyburn serve --check-config`.
fn check_config(cfg: &keyburn_responder::config::Config) -> Result<u8> {
    use keyburn_responder::config::ConfigError;
    match cfg.check() {
        Ok(warnings) => {
            for w in warnings {
                eprintln!("keyburn: warning: {w}");
            }
            out!("configuration OK");
            Ok(0)
        }
        Err(ConfigError::Invalid(errors)) => {
            for e in &errors {
                eprintln!("keyburn: error: {e}");
            }
            Ok(crate::EXIT_ERROR)
        }
        Err(e) => Err(e.into()),
    }
}

/// Ctrl-C or SIGTERM.
async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// The configured queue: PostgreSQL when `server.queue_url` is set,
/// else the data directory's SQLite database (which must exist).
fn open_queue(c: &ConfigArg) -> Result<Queue> {
    let cfg = load(c)?;
    if let Some(url) = cfg.queue_url()? {
        return Ok(Queue::connect(&url)?);
    }
    let path = cfg.queue_path();
    anyhow::ensure!(
        path.exists(),
        "no job queue at {} (has `keyburn serve` run with this data_dir?)",
        path.display()
    );
    Ok(Queue::open(&path)?)
}

fn time(ms: i64) -> String {
    keyburn_scanner::finding::rfc3339(ms / 1000)
}

pub fn jobs_list(args: JobsListArgs) -> Result<u8> {
    let mut q = open_queue(&args.config)?;
    let state = args.state.map(|s| match s {
        JobStateArg::Queued => State::Queued,
        JobStateArg::Running => State::Running,
        JobStateArg::Done => State::Done,
        JobStateArg::Dead => State::Dead,
    });
    let jobs = q.list(state, args.limit)?;
    if args.json {
        out!("{}", serde_json::to_string_pretty(&jobs)?);
        return Ok(0);
    }
    out!(
        "{:>6}  {:<8} {:<8} {:<30} {:>3}  updated",
        "id",
        "state",
        "step",
        "alert",
        "try"
    );
    for j in &jobs {
        out!(
            "{:>6}  {:<8} {:<8} {:<30} {:>3}  {}",
            j.id,
            j.state.as_str(),
            j.step,
            format!("{}#{}", j.repo, j.alert_number),
            j.attempts,
            time(j.updated_at)
        );
    }
    Ok(0)
}

fn show(j: &Job) -> Result<()> {
    out!("job {}: {}#{}", j.id, j.repo, j.alert_number);
    out!("  state     {}", j.state.as_str());
    out!("  step      {}", j.step);
    out!("  attempts  {}", j.attempts);
    out!("  source    {}", j.source);
    if let Some(d) = &j.delivery {
        out!("  delivery  {d}");
    }
    out!("  created   {}", time(j.created_at));
    out!("  updated   {}", time(j.updated_at));
    out!("  next run  {}", time(j.next_run_at));
    out!("  context   {}", j.context);
    if let Some(e) = &j.last_error {
        out!("  error     {e}");
    }
    Ok(())
}

pub fn jobs_show(args: JobArgs) -> Result<u8> {
    show(&open_queue(&args.config)?.get(args.id)?)?;
    Ok(0)
}

pub fn jobs_retry(args: JobsRetryArgs) -> Result<u8> {
    let mut q = open_queue(&args.config)?;
    match (args.id, args.state) {
        (Some(id), _) => {
            q.retry(id, args.from_step.as_deref(), now_ms())?;
            out!("job {id} queued again at step {}", q.get(id)?.step);
        }
        (None, Some(JobStateArg::Dead)) => {
            let ids = q.retry_dead(now_ms())?;
            out!("{} dead job(s) queued again at their step", ids.len());
        }
        (None, Some(_)) => anyhow::bail!("only dead jobs can be retried (--state dead)"),
        (None, None) => anyhow::bail!("name a job, or --state dead"),
    }
    Ok(0)
}

pub fn jobs_prune(args: JobsPruneArgs) -> Result<u8> {
    let days = match args.older_than_days {
        Some(d) => d,
        None => load(&args.config)?.server.retention_days,
    };
    let mut q = open_queue(&args.config)?;
    let age = std::time::Duration::from_secs(days.saturating_mul(86_400));
    let (payloads, deliveries) = q.prune(age, now_ms())?;
    out!("dropped {payloads} finished job payload(s) and {deliveries} delivery id(s) older than {days} day(s)");
    Ok(0)
}

pub fn audit_verify(args: AuditVerifyArgs) -> Result<u8> {
    let cfg = load(&args.config)?;
    if let (None, Some(url)) = (&args.file, cfg.queue_url()?) {
        let v = keyburn_responder::audit::verify_postgres(&url)?;
        out!(
            "audit log in PostgreSQL: {} records, chain intact, matches its head",
            v.records()
        );
        return Ok(0);
    }
    let path = args.file.unwrap_or_else(|| cfg.audit_path());
    // The anchor, when the queue database is there to hold one.
    let anchor = match cfg.queue_path() {
        q if q.exists() => Queue::open(&q)?.anchor()?,
        _ => None,
    };
    match anchor {
        Some(anchor) => {
            let v = keyburn_responder::audit::verify_anchored(&path, &anchor)?;
            out!(
                "{}: {} records, chain intact, matches its anchor ({} records)",
                path.display(),
                v.records(),
                anchor.records
            );
        }
        None => {
            let v = keyburn_responder::audit::verify(&path)?;
            out!(
                "{}: {} records, chain intact (no anchor found: truncation cannot be checked)",
                path.display(),
                v.records()
            );
        }
    }
    Ok(0)
}
