//! `ldp demo`: the Adult census end to end over gRPC (see [`crate::demo`]).
//!
//! With no arguments: an in-process aggregator, every record of
//! `data/adult/adult.data.csv` as one device, epsilon 1 per report, automatic
//! mechanisms, OS randomness; prints every estimate against the truth and writes
//! `ldp-demo-report.html`. `ldp demo models` runs [`crate::model::demo`], `ldp demo
//! rappor` runs [`crate::rappor::demo`] (as `ldp rappor demo` does).

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use ldp_sdk::Epsilon;

use crate::demo::{self, DemoConfig, Target, mechanisms};
use crate::report::Report;
use crate::service::auth::Token;

/// `ldp demo [models|rappor]`: with no subcommand, the Adult census demo.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    /// Another demo instead of the Adult census one.
    #[command(subcommand)]
    pub command: Option<Demo>,
    /// Options of the Adult census demo.
    #[command(flatten)]
    pub adult: AdultArgs,
}

/// The other demos.
#[derive(Debug, clap::Subcommand)]
pub enum Demo {
    /// Every model under no, central and local DP on Adult, for several epsilons:
    /// test accuracy and the (epsilon, delta) spent.
    Models(ModelsArgs),
    /// Simulated devices report words with RAPPOR over gRPC; decode and compare
    /// with the truth (the same as `ldp rappor demo`).
    Rappor(super::rappor::DemoArgs),
}

/// Options of `ldp demo models`.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelsArgs {
    /// Epsilons of the private rows.
    #[arg(long, value_delimiter = ',', default_values_t = crate::model::demo::EPSILONS)]
    pub epsilons: Vec<f64>,
    /// Delta of DP-SGD.
    #[arg(long, default_value_t = 1e-5)]
    pub delta: f64,
    /// Seed for a reproducible simulation (seeded reports are not private).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where to write the HTML report.
    #[arg(long, default_value = "ldp-demo-models.html")]
    pub report: PathBuf,
}

/// Options of the Adult census demo.
#[derive(Debug, Clone, clap::Args)]
pub struct AdultArgs {
    /// Simulate N devices by resampling records with replacement (default: each
    /// record once).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub devices: Option<u64>,
    /// Epsilon of every report (each device sends 13 reports).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub epsilon: f64,
    /// Mechanism of the categorical attributes (auto: smallest variance per attribute).
    #[arg(long, value_enum, default_value_t = mechanisms::Categorical::Auto)]
    pub mechanism: mechanisms::Categorical,
    /// Mechanism of the numeric attributes (auto: smallest worst-case variance).
    #[arg(long, value_enum, default_value_t = mechanisms::Numeric::Auto)]
    pub numeric_mechanism: mechanisms::Numeric,
    /// Seed for a reproducible simulation (seeded reports are not private).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Use a running aggregator at this URL instead of an in-process one.
    #[arg(long, value_name = "URL")]
    pub connect: Option<String>,
    /// Bearer token of the running aggregator (Admin and Analytics).
    #[arg(long, env = "LDP_TOKEN", hide_env_values = true, requires = "connect")]
    pub token: Option<String>,
    /// File holding the bearer token.
    #[arg(long, requires = "connect", conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
    /// PEM CA certificate to verify a TLS aggregator with (`--connect https://...`;
    /// without it the bundled Mozilla roots are trusted).
    #[arg(long, requires = "connect")]
    pub ca_cert: Option<PathBuf>,
    /// Concurrent device clients.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub clients: u64,
    /// Reports per batch.
    #[arg(long, default_value_t = 8_000, value_parser = clap::value_parser!(u64).range(1..=9_000))]
    pub batch_size: u64,
    /// The Adult CSV file (default: data/adult/adult.data.csv of this repository).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Where to write the HTML report.
    #[arg(long, default_value = "ldp-demo-report.html")]
    pub report: PathBuf,
}

/// Runs `ldp demo`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Some(Demo::Models(models)) => run_models(models).await,
        Some(Demo::Rappor(rappor)) => {
            super::rappor::run(super::rappor::Command::Demo(rappor)).await
        }
        None => run_adult(args.adult).await,
    }
}

/// Refuses a report path whose folder does not exist, before any work is done.
fn check_report_path(path: &std::path::Path) -> anyhow::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => anyhow::bail!(
            "--report {}: the folder {} does not exist",
            path.display(),
            dir.display()
        ),
        _ => Ok(()),
    }
}

async fn run_models(args: ModelsArgs) -> anyhow::Result<()> {
    check_report_path(&args.report)?;
    let options = crate::model::demo::DemoOptions {
        epsilons: args.epsilons,
        delta: args.delta,
        seed: args.seed,
        progress: std::io::stderr().is_terminal(),
        ..Default::default()
    };
    let result = tokio::task::spawn_blocking(move || crate::model::demo::run(&options))
        .await
        .context("the models demo panicked")??;
    println!("{}", result.table());
    let mut report = Report::new("ldp demo models: local vs central DP on Adult");
    report.add_section(result.section());
    report
        .write(&args.report)
        .with_context(|| format!("writing {}", args.report.display()))?;
    println!("report: {}", args.report.display());
    Ok(())
}

async fn run_adult(args: AdultArgs) -> anyhow::Result<()> {
    let mut config = DemoConfig::new();
    if let Some(data) = args.data {
        config.data = data;
    }
    config.devices = args.devices;
    config.epsilon = Epsilon::new(args.epsilon).context("--epsilon")?;
    config.categorical = args.mechanism;
    config.numeric = args.numeric_mechanism;
    config.seed = args.seed;
    config.clients = args.clients as usize;
    config.batch_size = args.batch_size as usize;
    config.progress = std::io::stderr().is_terminal();
    config.ca_cert = args.ca_cert;
    if let Some(url) = args.connect {
        let raw = match (args.token, args.token_file) {
            (Some(t), _) => t,
            (None, Some(path)) => std::fs::read_to_string(&path)
                .with_context(|| format!("reading token file {}", path.display()))?,
            (None, None) => anyhow::bail!("--connect needs --token, LDP_TOKEN or --token-file"),
        };
        config.target = Target::Connect {
            url,
            token: Token::new(&raw).map_err(anyhow::Error::msg)?,
        };
    }
    check_report_path(&args.report)?;
    let outcome = demo::run(config).await?;
    println!("{}", demo::summary(&outcome));
    println!("{}", demo::render_tables(&outcome));
    demo::html_report(&outcome)
        .write(&args.report)
        .with_context(|| format!("writing {}", args.report.display()))?;
    println!("report: {}", args.report.display());
    Ok(())
}
