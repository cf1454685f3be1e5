//! Command-line arguments, as typed. `scan::ScanConfig` resolves them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "keyburn",
    version,
    about = "Find leaked credentials in files and git history, and burn them."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Scan files and directories (or `-` for stdin) for secrets.
    Scan(Box<ScanArgs>),
    /// List or check detection rules.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Install keyburn as a git pre-commit hook.
    #[command(subcommand)]
    Hook(HookCommand),
    /// Ask a secret's provider whether it is live (exit 0 active, 1
    /// inactive, 2 when it could not tell).
    Validate(Box<ValidateArgs>),
    /// Revoke secrets through their providers' APIs, and confirm they are
    /// dead (exit 0 only when every one ended revoked or not_found).
    Revoke(Box<RevokeArgs>),
    /// Run the responder: GitHub secret-scanning webhook -> revoked key.
    Serve(ServeArgs),
    /// Inspect and retry the responder's jobs.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Check the responder's audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Run the leaked-secret playbook: find every occurrence, revoke,
    /// confirm, rotate, resolve GitHub alerts, plan the purge, notify,
    /// record. Resumable: run the same command again to continue.
    Incident(Box<IncidentArgs>),
    /// Work with scan reports.
    #[command(subcommand)]
    Report(ReportCommand),
}

#[derive(Args)]
pub struct IncidentArgs {
    /// The leaked secret, or `-` to read secrets from stdin, one a line.
    #[arg(required_unless_present = "report", conflicts_with = "report")]
    pub secret: Option<String>,
    /// The secret's rule (default: inferred from its shape).
    #[arg(long, value_name = "ID", conflicts_with = "report")]
    pub rule: Option<String>,
    /// Every secret of a keyburn report (`scan -f json`, not redacted).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// A part of a multi-part credential. Repeatable.
    #[arg(long = "part", value_name = "NAME=VALUE", value_parser = parse_pair)]
    pub parts: Vec<(String, String)>,
    /// A repository to search (history of every ref, and work tree).
    /// Repeatable; default: the current directory, when a repository.
    #[arg(long = "repo", value_name = "PATH")]
    pub repos_given: Vec<PathBuf>,
    /// Repositories to search, one path or clone URL a line.
    #[arg(long, value_name = "FILE")]
    pub repos: Option<PathBuf>,
    /// Where clone URLs are mirrored (default: the cache directory's).
    #[arg(long, value_name = "DIR")]
    pub clone_dir: Option<PathBuf>,
    /// The incident's directory: state, occurrences.json, purge/,
    /// incident.md, audit.jsonl. The same --out continues an incident
    /// (default: keyburn-incident-<hash of the secrets>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Inventory and plan only: revoke nothing, resolve no alert, send
    /// no notice.
    #[arg(long)]
    pub dry_run: bool,
    /// Organisations whose open GitHub alerts for the secret are resolved
    /// (besides the configuration's). Repeatable.
    #[arg(long = "github-org", value_name = "ORG")]
    pub github_orgs: Vec<String>,
    /// Repositories (`owner/name`) whose open alerts are resolved.
    /// Repeatable.
    #[arg(long = "github-repo", value_name = "OWNER/NAME")]
    pub github_repos: Vec<String>,
    /// GitHub's API (default: the configuration's, or KEYBURN_GITHUB_API).
    #[arg(long, value_name = "URL")]
    pub github_api: Option<String>,
    /// A Slack incoming webhook to notify.
    #[arg(long, value_name = "URL", env = "KEYBURN_SLACK_WEBHOOK")]
    pub slack_webhook: Option<String>,
    /// A URL that receives each notice as JSON.
    #[arg(long, value_name = "URL")]
    pub notify_webhook: Option<String>,
    /// Append audit records here instead of OUT/audit.jsonl.
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub providers: ProviderArgs,
    /// Add rules (and provider checks) from a TOML file. Repeatable.
    #[arg(short = 'r', long = "rules", value_name = "FILE")]
    pub rules: Vec<PathBuf>,
}

#[derive(Subcommand)]
pub enum ReportCommand {
    /// Combine keyburn JSON (or JSONL) reports, the shards of a sweep, into
    /// one: findings deduplicated by fingerprint, repository, commit and line,
    /// stats added up. Exit 0 with no findings, 1 with some, 2 on error.
    Merge(MergeArgs),
}

#[derive(Args)]
pub struct MergeArgs {
    /// The reports (`scan -f json` or `-f jsonl`).
    #[arg(required = true)]
    pub reports: Vec<PathBuf>,
    /// Write the merged report to FILE instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[arg(short, long, value_enum, default_value = "json")]
    pub format: MergeFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MergeFormat {
    Json,
    Jsonl,
}

#[derive(Args)]
pub struct ConfigArg {
    /// Responder configuration (default: built-in defaults and the
    /// KEYBURN_* environment variables).
    #[arg(short, long, value_name = "FILE", env = "KEYBURN_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Check the configuration and exit: 0 when it would start (warnings
    /// on stderr), 2 with every problem listed when it would not.
    #[arg(long)]
    pub check_config: bool,
    /// Log lines as text, or as one JSON object per line for a log
    /// pipeline. Colour only on a terminal.
    #[arg(long, value_enum, default_value = "text", env = "KEYBURN_LOG_FORMAT")]
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum JobsCommand {
    /// List jobs, newest first.
    List(JobsListArgs),
    /// Show one job with its step, attempts and last error.
    Show(JobArgs),
    /// Put a dead job back in the queue at the step where it died (or an
    /// earlier one), or every dead job with `--state dead`.
    Retry(JobsRetryArgs),
    /// Drop finished jobs' payloads and old delivery ids (the server does
    /// this hourly past `server.retention_days`).
    Prune(JobsPruneArgs),
}

#[derive(Args)]
pub struct JobsPruneArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Days to keep (default: `server.retention_days`).
    #[arg(long, value_name = "DAYS")]
    pub older_than_days: Option<u64>,
}

#[derive(Args)]
pub struct JobsListArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Only jobs in this state.
    #[arg(long, value_enum)]
    pub state: Option<JobStateArg>,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum JobStateArg {
    Queued,
    Running,
    Done,
    Dead,
}

#[derive(Args)]
pub struct JobArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    pub id: i64,
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["id", "state"]))]
pub struct JobsRetryArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The job to retry.
    pub id: Option<i64>,
    /// Retry every job in this state (only `dead` can be retried).
    #[arg(long, value_enum, conflicts_with_all = ["id", "from_step"])]
    pub state: Option<JobStateArg>,
    /// Start again at this step (e.g. `revoke` for a job that died at
    /// `confirm`): its recorded intent is dropped, so the call is made
    /// again.
    #[arg(long, value_name = "STEP", requires = "id",
          value_parser = clap::builder::PossibleValuesParser::new(keyburn_responder::worker::STEPS))]
    pub from_step: Option<String>,
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Verify the audit log's hash chain.
    Verify(AuditVerifyArgs),
}

#[derive(Args)]
pub struct AuditVerifyArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The log (default: the configured one).
    pub file: Option<PathBuf>,
}

/// How keyburn reaches providers (`validate`, `revoke`, `scan --verify`).
#[derive(Args, Clone)]
pub struct ProviderArgs {
    /// Send a provider's requests to URL instead of its public API: GitHub
    /// Enterprise (`github=https://ghe.example/api/v3`), a self-hosted
    /// GitLab, a test server. Trusted as given. Repeatable.
    #[arg(long = "endpoint", value_name = "PROVIDER=URL", value_parser = parse_pair)]
    pub endpoints: Vec<(String, String)>,
    /// Contact hosts a secret names (database URLs, self-hosted servers)
    /// even when they resolve to loopback, private or link-local addresses.
    #[arg(long)]
    pub allow_internal: bool,
    /// Requests per second to a provider (`github=5`), or to each provider
    /// (`5`). Repeatable.
    #[arg(long = "rate", value_name = "[PROVIDER=]N")]
    pub rates: Vec<String>,
    /// Seconds before a provider's answer is given up on.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub provider_timeout: u64,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum TableFormat {
    Human,
    Json,
}

#[derive(Args)]
pub struct ValidateArgs {
    /// The secret, or `-` to read secrets from stdin, one per line (which
    /// keeps them out of shell history and process lists).
    pub secret: String,
    /// The rule the secret belongs to (default: inferred from its shape).
    #[arg(long, value_name = "ID")]
    pub rule: Option<String>,
    #[command(flatten)]
    pub common: SecretArgs,
}

#[derive(Args)]
pub struct RevokeArgs {
    /// The secret, or `-` to read secrets from stdin, one per line.
    #[arg(required_unless_present = "report", conflicts_with = "report")]
    pub secret: Option<String>,
    /// The rule the secret belongs to (default: inferred from its shape).
    #[arg(long, value_name = "ID", conflicts_with = "report")]
    pub rule: Option<String>,
    /// Revoke the secrets of a keyburn report (`scan -f json` or `-f
    /// jsonl`, not redacted), each distinct secret once.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// With --report: only findings the scan's --verify found active.
    #[arg(long, requires = "report")]
    pub only_verified: bool,
    /// Say what would be revoked and how; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub common: SecretArgs,
}

/// What `validate` and `revoke` share.
#[derive(Args)]
pub struct SecretArgs {
    /// A part of a multi-part credential (an AWS secret key's key id, a
    /// database URL's host, a Shopify token's shop). Repeatable.
    #[arg(long = "part", value_name = "NAME=VALUE", value_parser = parse_pair)]
    pub parts: Vec<(String, String)>,
    #[arg(short, long, value_enum, default_value = "human")]
    pub format: TableFormat,
    #[command(flatten)]
    pub providers: ProviderArgs,
    /// Add rules (and provider checks) from a TOML file. Repeatable.
    #[arg(short = 'r', long = "rules", value_name = "FILE")]
    pub rules: Vec<PathBuf>,
}

/// `NAME=VALUE`.
pub fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not NAME=VALUE")),
    }
}

#[derive(Subcommand)]
pub enum HookCommand {
    /// Write .git/hooks/pre-commit running `keyburn scan --staged`.
    Install(HookArgs),
    /// Remove the pre-commit hook `keyburn hook install` wrote.
    Uninstall(HookArgs),
}

#[derive(Args)]
pub struct HookArgs {
    /// The repository (default: the current directory).
    #[arg(default_value = ".")]
    pub repo: PathBuf,
    /// Install: replace an existing pre-commit hook that keyburn did not
    /// write. Uninstall: remove it even so.
    #[arg(long)]
    pub force: bool,
}

#[derive(Subcommand)]
pub enum RulesCommand {
    /// List the rules a scan would use.
    List(ListArgs),
    /// Compile rule files and run their examples and counterexamples.
    Check(CheckArgs),
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum OutputFormat {
    Human,
    Json,
    Jsonl,
    Sarif,
    /// gitleaks' JSON report, for tools that import it.
    Gitleaks,
    Csv,
    /// One failing JUnit test case per finding.
    Junit,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum MinConfidence {
    Low,
    Medium,
    High,
}

#[derive(Args, Clone)]
pub struct RuleSelection {
    /// Add rules from a TOML file (keyburn or gitleaks format). Repeatable.
    #[arg(short = 'r', long = "rules", value_name = "FILE")]
    pub rules: Vec<PathBuf>,
    /// Do not load the built-in rules (use only --rules files).
    #[arg(long)]
    pub no_builtin_rules: bool,
    /// A gitleaks configuration (`.gitleaks.toml`), read as gitleaks reads
    /// it: its rules alone, or added to the built-in rules with `[extend]
    /// useDefault = true` (minus `disabledRules`). Without it and without
    /// --rules, a `.gitleaks.toml` at the scanned root is read.
    #[arg(long, value_name = "FILE", env = "GITLEAKS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Run only these rule ids. Repeatable.
    #[arg(long = "enable-rule", value_name = "ID")]
    pub enable: Vec<String>,
    /// Do not run these rule ids. Repeatable.
    #[arg(long = "disable-rule", value_name = "ID")]
    pub disable: Vec<String>,
    /// Skip rules below this confidence.
    #[arg(long, value_enum, default_value = "low")]
    pub min_confidence: MinConfidence,
}

#[derive(Args)]
pub struct ScanArgs {
    /// Files or directories to scan; `-` reads stdin.
    #[arg(default_value = ".")]
    pub paths: Vec<PathBuf>,
    /// Report format.
    #[arg(short, long, value_enum, default_value = "human")]
    pub format: OutputFormat,
    /// Write the report to FILE instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Show secrets in clear in the human format.
    #[arg(long)]
    pub show_secrets: bool,
    /// Remove secrets from every format (JSON, SARIF, human).
    #[arg(long, conflicts_with = "show_secrets")]
    pub redact: bool,
    #[command(flatten)]
    pub selection: RuleSelection,
    /// Scan the git history of PATH (the default when PATH is the root of a
    /// repository): every blob reachable from every ref, scanned once.
    #[arg(long, conflicts_with = "no_history")]
    pub history: bool,
    /// Scan only the files on disk, even in a repository.
    #[arg(long)]
    pub no_history: bool,
    /// History: only commits since REV, as `git log REV..` (REV..HEAD, or
    /// REV..BRANCH with --branch), e.g. origin/main.
    #[arg(long, value_name = "REV")]
    pub since: Option<String>,
    /// History: with --since, walk every ref's commits not reachable from
    /// REV instead of HEAD's.
    #[arg(long, requires = "since", conflicts_with = "branch")]
    pub all_refs: bool,
    /// History: only commits in A..B.
    #[arg(long, value_name = "A..B", conflicts_with = "since")]
    pub range: Option<String>,
    /// History: only commits reachable from this ref instead of all refs.
    #[arg(long, value_name = "REF", conflicts_with = "range")]
    pub branch: Option<String>,
    /// History: report every commit that introduced a secret, not only the
    /// oldest per path.
    #[arg(long)]
    pub all_commits: bool,
    /// History: also scan blobs that no ref reaches (dangling objects).
    #[arg(long)]
    pub all_objects: bool,
    /// History: how to find what each commit introduced: `packs` scans
    /// every stored blob, then looks up where the few with findings were
    /// introduced (fastest for a whole history); `diff` compares each
    /// commit's trees with its parents' (fastest for a range); `auto`
    /// picks packs unless --since or --range is given or path-only rules
    /// (a gitleaks `path` rule) are loaded. Same findings.
    #[arg(
        long,
        value_enum,
        value_name = "HOW",
        default_value = "auto",
        env = "KEYBURN_HISTORY_STRATEGY"
    )]
    pub history_strategy: StrategyChoice,
    /// Scan many repositories, listed in FILE (`-`: stdin) one local path
    /// or clone URL a line: each one's history (and a local one's work
    /// tree changes), every finding naming its `repository`. Clone URLs
    /// are mirrored into --clone-dir first.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["paths", "staged"])]
    pub repos: Option<PathBuf>,
    /// With --repos: scan only shard K of N (K from 0), picked by a hash
    /// of each repository's name, so N jobs cover the list exactly.
    #[arg(long, value_name = "K/N", requires = "repos")]
    pub shard: Option<crate::sweep::Shard>,
    /// With --repos: where clone URLs are mirrored and kept up to date
    /// (default: the cache directory's `repos`).
    #[arg(long, value_name = "DIR", requires = "repos")]
    pub clone_dir: Option<PathBuf>,
    /// Scan what is staged for commit (added and changed lines only).
    #[arg(long, conflicts_with_all = ["history", "since", "range", "branch", "all_objects"])]
    pub staged: bool,
    /// Leave out findings this file accepts: a previous `-f json`/`-f jsonl`
    /// report or a list of fingerprints, one per line. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub baseline: Vec<PathBuf>,
    /// Ignore files matching this regex (on the path). Repeatable.
    #[arg(long = "allow-path", value_name = "REGEX")]
    pub allow_paths: Vec<String>,
    /// Scan files that .gitignore, .ignore and .keyburnignore exclude.
    #[arg(long)]
    pub no_ignore: bool,
    /// Follow symbolic links.
    #[arg(short = 'L', long)]
    pub follow: bool,
    /// Skip files (and stdin) larger than this (bytes, or with K, M, G
    /// suffix). By default nothing is skipped for its size: large inputs
    /// are scanned in overlapping chunks.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_file_size: Option<u64>,
    /// Bytes scanned at a time in stdin and in files larger than this.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, hide = true)]
    pub chunk_size: Option<u64>,
    /// Exit status when findings are reported.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub exit_code: u8,
    /// Matching engine: `rust` (pure Rust, starts instantly), `hyperscan`
    /// (needs a build with `--features hyperscan`), or `auto` (Hyperscan
    /// where it was measured faster, when compiled in).
    #[arg(long, value_enum, default_value = "auto", env = "KEYBURN_ENGINE")]
    pub engine: EngineChoice,
    /// Worker threads (default: one per core).
    #[arg(short = 'j', long, value_name = "N", default_value_t = 0)]
    pub threads: usize,
    /// Say more: skipped binary files, timing.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Print nothing but the report and errors.
    #[arg(short, long)]
    pub quiet: bool,
    /// Colour in the human format.
    #[arg(long, value_enum, default_value = "auto")]
    pub color: ColorChoice,
    /// Never show a progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Decode base64, hex, percent-encoded and escaped text and scan it
    /// again, this many decodings deep (0: never). A finding there points
    /// at the encoded text and names the decodings (`decoded_from`).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub decode_depth: u8,
    /// Open archives (zip, jar, tar, tar.gz, tgz, tar.bz2, gz, bz2, nested)
    /// and scan them member by member; a finding's path reads
    /// `release.zip!config/.env.prod`. On by default: `--archives=false`
    /// or --no-archives skips them as binary files.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        default_value_t = true,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub archives: bool,
    /// Do not open archives (as --archives=false).
    #[arg(long)]
    pub no_archives: bool,
    /// Archives opened inside each other at most (1: an archive's own
    /// members only).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub archive_depth: u8,
    /// Decompressed bytes read at most from one archive, nested ones
    /// included (K, M, G suffixes); past it, the rest is reported as
    /// skipped.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "256M")]
    pub archive_max_bytes: u64,
    /// After the scan, ask each finding's provider whether its secret is
    /// live (each distinct secret once). Offline without it.
    #[arg(long)]
    pub verify: bool,
    /// With --verify: report only findings whose secret is active.
    #[arg(long, requires = "verify", conflicts_with = "verify_status")]
    pub only_verified: bool,
    /// With --verify: report only findings with these statuses (active,
    /// inactive, unknown, error, skipped).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "STATUS,...",
        requires = "verify"
    )]
    pub verify_status: Vec<keyburn_scanner::finding::ValidationStatus>,
    /// With --verify: validations in flight at once.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub verify_workers: usize,
    #[command(flatten)]
    pub providers: ProviderArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StrategyChoice {
    Auto,
    Packs,
    Diff,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineChoice {
    Auto,
    Rust,
    Hyperscan,
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub selection: RuleSelection,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct CheckArgs {
    /// Rule files to check.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// `64M`, `512K`, `1G`, `1000` (binary multiples).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t.strip_suffix(['B', 'b']).unwrap_or(t);
    let t = t.strip_suffix(['i', 'I']).unwrap_or(t);
    let (num, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m' | 'M') => (&t[..t.len() - 1], 1 << 20),
        Some('g' | 'G') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("invalid size {s:?} (examples: 1000, 512K, 64M, 1G)"))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("2k"), Ok(2048));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999G").is_err());
    }
}
