//! keyburn: find leaked credentials and burn them.
//!
//! The binary only parses arguments, resolves them into configuration and
//! wires the `keyburn-scanner` library together; see DESIGN.md.

/// `println!` that returns the write error instead of panicking, so that
/// a closed pipe (`keyburn rules list | head -1`) ends the command quietly.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

mod cli;
mod hook;
mod incident;
mod report_cmd;
mod revoke;
mod rules_cmd;
mod scan;
mod serve;
mod sweep;
mod validate;

use std::process::ExitCode;

use clap::Parser;

/// Exit status when the run itself failed (bad config, nothing scannable).
pub const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let result = match args.command {
        cli::Command::Scan(a) => scan::run(*a),
        cli::Command::Rules(cli::RulesCommand::List(a)) => rules_cmd::list(a),
        cli::Command::Rules(cli::RulesCommand::Check(a)) => rules_cmd::check(a),
        cli::Command::Hook(cli::HookCommand::Install(a)) => hook::install(a),
        cli::Command::Hook(cli::HookCommand::Uninstall(a)) => hook::uninstall(a),
        cli::Command::Validate(a) => validate::run(*a),
        cli::Command::Revoke(a) => revoke::run(*a),
        cli::Command::Serve(a) => serve::serve(a),
        cli::Command::Jobs(cli::JobsCommand::List(a)) => serve::jobs_list(a),
        cli::Command::Jobs(cli::JobsCommand::Show(a)) => serve::jobs_show(a),
        cli::Command::Jobs(cli::JobsCommand::Retry(a)) => serve::jobs_retry(a),
        cli::Command::Jobs(cli::JobsCommand::Prune(a)) => serve::jobs_prune(a),
        cli::Command::Audit(cli::AuditCommand::Verify(a)) => serve::audit_verify(a),
        cli::Command::Incident(a) => incident::run(*a),
        cli::Command::Report(cli::ReportCommand::Merge(a)) => report_cmd::merge(a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        // Whoever read the output stopped reading: not an error to report.
        Err(e) if broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyburn: error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
