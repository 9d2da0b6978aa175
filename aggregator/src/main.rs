//! `ldp`: the aggregator's command line (see `ldp --help`).

use std::process::ExitCode;

use clap::Parser;
use ldp_aggregator::cli::{Cli, run};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match EnvFilter::try_new(&cli.log) {
        Ok(filter) => filter,
        Err(e) => {
            eprintln!("error: invalid --log filter {:?}: {e}", cli.log);
            return ExitCode::FAILURE;
        }
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_json {
        logs.json().init();
    } else {
        logs.init();
    }
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        // One line with the whole cause chain; no backtrace for user errors.
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// The cause chain joined by ": ", with gRPC statuses as `<code>: <message>`
/// rather than tonic's debug-like rendering.
fn describe(e: &anyhow::Error) -> String {
    e.chain()
        .map(|cause| match cause.downcast_ref::<tonic::Status>() {
            Some(status) => format!("{:?}: {}", status.code(), status.message()),
            None => cause.to_string(),
        })
        .collect::<Vec<_>>()
        .join(": ")
}
