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
/// an error never repeats the value (clap's own message would quote it whole, and
/// with it any password, to stderr and so to the logs). The value that failed is
/// most likely a URL with an unencoded special character in its password, so no
/// part of it is shown: only its scheme, and the parser's reason unless that
/// quotes a possible password ([`possible_passwords`]).
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
        let flag = arg
            .and_then(clap::Arg::get_long)
            .map_or_else(|| "--db".to_owned(), |long| format!("--{long}"));
        let invalid = |message: String| {
            clap::Error::raw(clap::error::ErrorKind::ValueValidation, message).with_cmd(cmd)
        };
        let Some(text) = value.to_str() else {
            return Err(invalid(format!("the value of {flag} is not UTF-8\n")));
        };
        text.parse().map_err(|e: crate::store::StoreError| {
            // Only a `scheme://` value can fail to parse.
            let scheme = text.find("://").map_or("", |i| &text[..i]);
            let mut reason = e.to_string();
            if possible_passwords(text).any(|p| reason.contains(&p)) {
                reason = "the reason is not shown either: it quotes part of the value".into();
            }
            invalid(format!(
                "invalid {flag} value ({scheme}://..., not shown: it may hold a password): \
                 {reason}\n"
            ))
        })
    }
}

/// Every part of the URL `url` that may be a password, raw and
/// percent-decoded: the user info's password, read generously (from the first
/// `:` after `://` to the *last* `@` of the whole string, as an unencoded `/`,
/// `?` or `#` in the password ends the URL's authority early), and the value
/// of every `password=` query pair.
fn possible_passwords(url: &str) -> impl Iterator<Item = String> + '_ {
    let rest = url.find("://").map_or("", |i| &url[i + 3..]);
    let user_info = rest
        .rfind('@')
        .and_then(|at| rest[..at].split_once(':'))
        .map(|(_, password)| password);
    let query = rest.split_once('?').map_or("", |(_, query)| query);
    let query = query.split('#').next().unwrap_or_default();
    let pairs = query
        .split('&')
        .filter_map(|pair| pair.strip_prefix("password="));
    user_info
        .into_iter()
        .chain(pairs)
        .filter(|p| !p.is_empty())
        .flat_map(|p| [p.to_owned(), percent_decode(p)])
}

/// `s` with `%XX` escapes (and `+`, as in a query) decoded; invalid UTF-8
/// becomes U+FFFD.
fn percent_decode(s: &str) -> String {
    let mut bytes = Vec::with_capacity(s.len());
    let mut rest = s.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        let hex = tail.get(..2).and_then(|h| std::str::from_utf8(h).ok());
        match (b, hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(decoded)) => {
                bytes.push(decoded);
                rest = &tail[2..];
            }
            _ => {
                bytes.push(if b == b'+' { b' ' } else { b });
                rest = tail;
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
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
    fn possible_passwords_are_found_in_urls() {
        for (url, expected) in [
            ("postgres://u:pw@h/db", &["pw"][..]),
            ("postgres://u:p@w@h:1/db", &["p@w"]),
            ("postgres://u:pa/ss@h/db", &["pa/ss"]),
            ("postgres://u:pa#ss@h/db", &["pa#ss"]),
            ("postgres://u:pa?ss@h/db", &["pa?ss"]),
            ("postgres://u:p%40ss@h/db", &["p%40ss", "p@ss"]),
            (
                "postgres://u@h/db?password=hunter2&sslmode=verify_full",
                &["hunter2"],
            ),
            ("postgres://u@h/db?x=1&password=a%2Bb#f", &["a%2Bb", "a+b"]),
            ("postgres://u:@h/db", &[]),
            ("postgres://u@h/db", &[]),
            ("ldp.db", &[]),
        ] {
            let mut found: Vec<String> = possible_passwords(url).collect();
            found.dedup();
            assert_eq!(found, expected, "{url}");
        }
    }

    /// Regression: a `--db` URL that failed to parse was quoted whole in
    /// clap's error, password included; then, redacted, it still showed a
    /// password holding `/`, `#` or `?` (the URL parser ends the authority
    /// there, so no `user:password@` was found) and any `password=` pair.
    #[test]
    fn db_parse_errors_do_not_show_the_password() {
        for (url, password, reason) in [
            (
                "postgres://u:hunter2@h:bad/db",
                "hunter2",
                "invalid port number",
            ),
            ("postgres://u:pa/ss@h/db", "pa/ss", "invalid port number"),
            ("postgres://u:pa#ss@h/db", "pa#ss", "invalid port number"),
            ("postgres://u:pa?ss@h/db", "pa?ss", "invalid port number"),
            (
                "postgres://u@h/db?password=hunter2&sslmode=verify_full",
                "hunter2",
                "verify_full",
            ),
            // The reason quotes the password itself: withheld, not garbled.
            (
                "postgres://u:hunter2@h/db?sslmode=hunter2",
                "hunter2",
                "the reason is not shown either",
            ),
            (
                "postgres://u:e@h:bad/db",
                "e@h",
                "the reason is not shown either",
            ),
        ] {
            for args in [
                vec!["ldp", "serve", "--db", url],
                vec!["ldp", "privacy-report", "--out", "x", "--db", url],
            ] {
                let err = Cli::try_parse_from(&args).unwrap_err();
                assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
                let text = err.render().to_string();
                let shown =
                    "invalid --db value (postgres://..., not shown: it may hold a password)";
                assert!(text.contains(shown), "{text}");
                assert!(text.contains(reason), "{text}");
                let after_scheme = &url["postgres://".len()..];
                for hidden in [password, after_scheme, &after_scheme[..4]] {
                    assert!(!text.contains(hidden), "{hidden:?} shown: {text}");
                }
            }
        }
    }
}
