//! `ldp`: the aggregator's command line (see `ldp --help`).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use ldp_aggregator::cli::{Cli, run};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    quiet_on_broken_pipe();
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
        .with_writer(std::io::stderr)
        .with_ansi(colour_logs());
    if cli.log_json {
        logs.json().init();
    } else {
        logs.init();
    }
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        // `writeln!` to a stdout whose reader has gone (`ldp ... | head -1`):
        // stop quietly, as `println!` does through the panic hook below.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        // One line with the whole cause chain; no backtrace for user errors.
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// The cause chain joined by ": ", with gRPC statuses as `<code>: <message>`
/// rather than tonic's debug-like rendering. Many errors print their source
/// inside their own message; a cause already contained in the one before it
/// is left out, so nothing is said twice.
fn describe(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut previous = String::new();
    for cause in e.chain() {
        let text = match cause.downcast_ref::<tonic::Status>() {
            Some(status) => format!("{:?}: {}", status.code(), status.message()),
            None => cause.to_string(),
        };
        if !previous.contains(&text) {
            parts.push(text.clone());
        }
        previous = text;
    }
    parts.join(": ")
}

/// Whether `e` comes from writing to a closed pipe.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Colour log lines only on a terminal, and never when `NO_COLOR` is set to a
/// non-empty value (no-color.org): escape codes in a log file or a pipe are noise.
fn colour_logs() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// `println!` panics with "failed printing to stdout: <error>" when stdout is a
/// pipe whose reader has gone (`ldp metric list | head -1`). Like other Unix
/// tools, the command then stops quietly with success instead of printing a
/// panic and a backtrace; every other panic keeps the default report.
fn quiet_on_broken_pipe() {
    /// EPIPE on Linux, macOS and the BSDs.
    const EPIPE: i32 = 32;
    let broken_pipe = std::io::Error::from_raw_os_error(EPIPE).to_string();
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info.payload_as_str().unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.ends_with(&broken_pipe) {
            std::process::exit(0);
        }
        default(info);
    }));
}
