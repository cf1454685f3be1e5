//! keyburn: find leaked credentials and burn them.
//!
//! The binary only parses arguments, resolves them into configuration and
//! wires the `keyburn-scanner` library together; see DESIGN.md.

mod cli;
mod hook;
mod rules_cmd;
mod scan;
mod serve;

use std::process::ExitCode;

use clap::Parser;

/// Exit status when the run itself failed (bad config, nothing scannable).
pub const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let result = match args.command {
        cli::Command::Scan(a) => scan::run(a),
        cli::Command::Rules(cli::RulesCommand::List(a)) => rules_cmd::list(a),
        cli::Command::Rules(cli::RulesCommand::Check(a)) => rules_cmd::check(a),
        cli::Command::Hook(cli::HookCommand::Install(a)) => hook::install(a),
        cli::Command::Serve(a) => serve::serve(a),
        cli::Command::Jobs(cli::JobsCommand::List(a)) => serve::jobs_list(a),
        cli::Command::Jobs(cli::JobsCommand::Show(a)) => serve::jobs_show(a),
        cli::Command::Jobs(cli::JobsCommand::Retry(a)) => serve::jobs_retry(a),
        cli::Command::Audit(cli::AuditCommand::Verify(a)) => serve::audit_verify(a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("keyburn: error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}
