//! The `ldp` command line: one file per subcommand.
//!
//! `ldp serve` runs the server ([`crate::server`]); the other subcommands are
//! clients of a running server (`--connect`, `--token`, see [`connect`]). This
//! module is the binary's front end, so it reports errors with `anyhow`.
//!
//! To add a subcommand: create `cli/<name>.rs` with an `Args` (or a
//! `Subcommand` enum) and an `async fn run(args) -> anyhow::Result<()>`, then add
//! one `mod` line, one [`Command`] variant and one `run` arm below.

pub mod budget;
pub mod connect;
pub mod demo;
pub mod estimate;
pub mod metric;
pub mod privacy_report;
pub mod rappor;
pub mod serve;
pub mod stats;
pub mod train;

use clap::{Parser, Subcommand};

/// Local differential privacy: collect randomized reports, estimate with
/// confidence intervals.
#[derive(Debug, Parser)]
#[command(name = "ldp", version, about, long_about = None)]
pub struct Cli {
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `ldp_aggregator=debug`.
    #[arg(long, global = true, env = "LDP_LOG", default_value = "info")]
    pub log: String,
    /// Log as JSON lines.
    #[arg(long, global = true)]
    pub log_json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The Adult census end to end over gRPC: simulated devices randomize their
    /// records, an in-process aggregator estimates, every estimate is compared
    /// with the truth (also written as an HTML report).
    Demo(demo::Args),
    /// Run the aggregator server (Collector, Analytics, Admin, health, reflection).
    Serve(serve::Args),
    /// Create, list and show metrics.
    #[command(subcommand)]
    Metric(metric::Command),
    /// Frequency or mean estimates with standard errors and confidence intervals.
    Estimate(estimate::Args),
    /// Server counters and per-RPC latency percentiles.
    Stats(stats::Args),
    /// RAPPOR: decode or ingest reference-format data, or run the word demo.
    #[command(subcommand)]
    Rappor(rappor::Command),
    /// Train a model on Adult under local, central (trusted curator) or no DP and
    /// print its test accuracy with the (epsilon, delta) spent.
    Train(train::Args),
    /// Central privacy budgets: show spend per data set, set a budget.
    #[command(subcommand)]
    Budget(budget::Command),
    /// Write the auditor's privacy report (JSON and HTML) from the database.
    PrivacyReport(privacy_report::Args),
    // Subcommands of other modules (demo, rappor, train, budget, privacy-report) go here.
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Demo(args) => demo::run(args).await,
        Command::Serve(args) => serve::run(args).await,
        Command::Metric(command) => metric::run(command).await,
        Command::Estimate(args) => estimate::run(args).await,
        Command::Stats(args) => stats::run(args).await,
        Command::Rappor(command) => rappor::run(command).await,
        Command::Train(args) => train::run(args).await,
        Command::Budget(command) => budget::run(command).await,
        Command::PrivacyReport(args) => privacy_report::run(args).await,
    }
}

/// The value parser of `--db`: [`Database`](crate::store::Database)'s `FromStr`, but
/// an error never repeats a URL's password (clap's own message would quote the
/// whole value, and with it the password, to stderr and so to the logs).
#[derive(Debug, Clone, Copy)]
pub(crate) struct DbValueParser;

impl clap::builder::TypedValueParser for DbValueParser {
    type Value = crate::store::Database;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Self::Value, clap::Error> {
        let flag = arg.map_or_else(|| "--db".to_owned(), ToString::to_string);
        let invalid = |message: String| {
            clap::Error::raw(clap::error::ErrorKind::ValueValidation, message).with_cmd(cmd)
        };
        let Some(text) = value.to_str() else {
            return Err(invalid(format!("the value of '{flag}' is not UTF-8\n")));
        };
        text.parse().map_err(|e: crate::store::StoreError| {
            let (shown, password) = redact_password(text);
            let mut reason = e.to_string();
            if let Some(password) = password {
                reason = reason.replace(password, "***");
            }
            invalid(format!("invalid value '{shown}' for '{flag}': {reason}\n"))
        })
    }
}

/// `url` with the password of its user info (`scheme://user:PASSWORD@host`)
/// replaced by `***`, and that password (`None` when there is none).
fn redact_password(url: &str) -> (String, Option<&str>) {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return (url.to_owned(), None);
    };
    let rest = &url[start..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let Some(at) = authority.rfind('@') else {
        return (url.to_owned(), None);
    };
    let Some(colon) = authority[..at].find(':') else {
        return (url.to_owned(), None);
    };
    let (from, to) = (start + colon + 1, start + at);
    if from == to {
        return (url.to_owned(), None);
    }
    let shown = format!("{}***{}", &url[..from], &url[to..]);
    (shown, Some(&url[from..to]))
}

/// Output formats of the client subcommands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A human-readable table.
    Table,
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON document.
    Json,
}

/// `s` as one CSV field (RFC 4180): quoted when it holds a comma, a quote or a
/// line break, with quotes doubled.
pub(crate) fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_from_urls() {
        for (url, shown, password) in [
            ("postgres://u:pw@h/db", "postgres://u:***@h/db", Some("pw")),
            (
                "postgres://u:p@w@h:1/db",
                "postgres://u:***@h:1/db",
                Some("p@w"),
            ),
            (
                "postgres://u@h/db?x=a:b@c",
                "postgres://u@h/db?x=a:b@c",
                None,
            ),
            ("postgres://u:@h/db", "postgres://u:@h/db", None),
            ("ldp.db", "ldp.db", None),
        ] {
            assert_eq!(redact_password(url), (shown.to_owned(), password), "{url}");
        }
    }

    /// Regression: a `--db` URL that failed to parse was quoted whole in
    /// clap's error, password included.
    #[test]
    fn db_parse_errors_do_not_show_the_password() {
        for args in [
            vec!["ldp", "serve", "--db", "postgres://u:hunter2@h:bad/db"],
            vec![
                "ldp",
                "privacy-report",
                "--out",
                "x",
                "--db",
                "postgres://u:hunter2@h:bad/db",
            ],
        ] {
            let err = Cli::try_parse_from(&args).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
            let text = err.render().to_string();
            assert!(!text.contains("hunter2"), "{text}");
            assert!(
                text.contains("postgres://u:***@h:bad/db") && text.contains("--db"),
                "{text}"
            );
        }
    }
}
