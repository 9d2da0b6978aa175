//! `ldp metric create|list|show`: the Admin API from the command line.
//!
//! `create` builds an [`ldp_sdk::metric::MetricSpec`], validates it locally with
//! the SDK (the server validates again) and sends it. Creating a metric whose
//! parameters equal its latest version changes nothing; any difference makes a
//! new version.

use std::path::PathBuf;

use anyhow::Context;
use comfy_table::Table;
use ldp_proto::v1 as pb;
use ldp_sdk::Epsilon;
use ldp_sdk::mechanism::MechanismSpec;
use ldp_sdk::mechanism::rappor::RapporParams;
use ldp_sdk::metric::MetricSpec;
use ldp_sdk::wire;

use super::connect::ConnectArgs;
use super::{Format, csv_field};

/// `ldp metric ...`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a metric (or a new version of it).
    Create(CreateArgs),
    /// List metrics.
    List(ListArgs),
    /// Show one metric's full spec.
    Show(ShowArgs),
}

/// Mechanism names accepted by `--mechanism`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MechanismName {
    /// Binary randomized response.
    Binary,
    /// Generalized (k-ary) randomized response.
    Grr,
    /// Symmetric unary encoding.
    Sue,
    /// Optimized unary encoding.
    Oue,
    /// Optimized local hashing.
    Olh,
    /// Hadamard response.
    Hadamard,
    /// Discrete Laplace on a grid (numeric).
    Laplace,
    /// Duchi et al. (numeric).
    Duchi,
    /// Piecewise mechanism (numeric).
    Piecewise,
    /// Hybrid mechanism (numeric).
    Hybrid,
    /// RAPPOR: Bloom filter, memoized PRR and fresh IRR (strings decoded
    /// against candidates with `ldp rappor decode`).
    Rappor,
}

/// Options of `ldp metric create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Connection.
    #[command(flatten)]
    pub conn: ConnectArgs,
    /// Metric name (letters, digits, '.', '_', '-').
    #[arg(long)]
    pub name: String,
    /// The randomizer.
    #[arg(long, value_enum)]
    pub mechanism: MechanismName,
    /// Epsilon per report (for RAPPOR: default and minimum the parameters' eps_1).
    #[arg(
        long,
        required_unless_present = "num_bits",
        allow_negative_numbers = true
    )]
    pub epsilon: Option<f64>,
    /// Domain size of a categorical metric (default: the number of --categories).
    #[arg(long)]
    pub domain_size: Option<u32>,
    /// Category labels, comma separated.
    #[arg(long, value_delimiter = ',')]
    pub categories: Vec<String>,
    /// File with one category label per line.
    #[arg(long, conflicts_with = "categories")]
    pub categories_file: Option<PathBuf>,
    /// Lower bound of a numeric metric (may be negative: `--lo -40`).
    #[arg(long, allow_negative_numbers = true)]
    pub lo: Option<f64>,
    /// Upper bound of a numeric metric.
    #[arg(long, allow_negative_numbers = true)]
    pub hi: Option<f64>,
    /// OLH buckets (0 = optimal).
    #[arg(long, default_value_t = 0)]
    pub buckets: u32,
    /// OLH seed family size (0 = default).
    #[arg(long, default_value_t = 0)]
    pub seed_count: u32,
    /// Laplace grid exponent (0 = chosen from the range).
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub granularity_log2: i32,
    /// RAPPOR Bloom filter bits k.
    #[arg(long, help_heading = "RAPPOR")]
    pub num_bits: Option<u32>,
    /// RAPPOR hash functions h.
    #[arg(long, default_value_t = 2, help_heading = "RAPPOR")]
    pub num_hashes: u32,
    /// RAPPOR cohorts m.
    #[arg(long, default_value_t = 64, help_heading = "RAPPOR")]
    pub num_cohorts: u32,
    /// RAPPOR permanent randomized response f.
    #[arg(long, default_value_t = 0.5, help_heading = "RAPPOR")]
    pub prr_f: f64,
    /// RAPPOR IRR P(1 | PRR bit 0) (the RAPPOR paper's p).
    #[arg(long, default_value_t = 0.25, help_heading = "RAPPOR")]
    pub irr_p: f64,
    /// RAPPOR IRR P(1 | PRR bit 1) (the RAPPOR paper's q).
    #[arg(long, default_value_t = 0.75, help_heading = "RAPPOR")]
    pub irr_q: f64,
    /// Epoch length in seconds (0 = one epoch forever).
    #[arg(long, default_value_t = 0)]
    pub epoch_seconds: u64,
    /// Devices memoize their response for an unchanged value.
    #[arg(long)]
    pub memoize: bool,
    /// Description for analysts.
    #[arg(long, default_value = "")]
    pub description: String,
}

/// Options of `ldp metric list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Connection.
    #[command(flatten)]
    pub conn: ConnectArgs,
    /// Every version, not only the latest.
    #[arg(long)]
    pub all_versions: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// Options of `ldp metric show`.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// Connection.
    #[command(flatten)]
    pub conn: ConnectArgs,
    /// Metric name.
    pub name: String,
    /// Version (0 = the latest).
    #[arg(long, default_value_t = 0)]
    pub version: u32,
}

/// Runs `ldp metric ...`.
pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Create(args) => create(args).await,
        Command::List(args) => list(args).await,
        Command::Show(args) => show(args).await,
    }
}

impl CreateArgs {
    /// The spec these options describe, validated by the SDK.
    pub fn spec(&self) -> anyhow::Result<MetricSpec> {
        let categories = match &self.categories_file {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect(),
            None => self.categories.clone(),
        };
        let domain_size = match (self.domain_size, categories.len()) {
            (Some(d), _) => d,
            (None, n) if n > 0 => u32::try_from(n)?,
            (None, _) => 0,
        };
        let categorical = matches!(
            self.mechanism,
            MechanismName::Grr
                | MechanismName::Sue
                | MechanismName::Oue
                | MechanismName::Olh
                | MechanismName::Hadamard
        );
        if categorical && domain_size == 0 {
            anyhow::bail!(
                "a {} metric needs its values: give --categories, --categories-file or --domain-size",
                format!("{:?}", self.mechanism).to_lowercase()
            );
        }
        let range = || -> anyhow::Result<(f64, f64)> {
            match (self.lo, self.hi) {
                (Some(lo), Some(hi)) => Ok((lo, hi)),
                _ => anyhow::bail!("a numeric mechanism needs --lo and --hi"),
            }
        };
        let mechanism = match self.mechanism {
            MechanismName::Binary => MechanismSpec::Binary,
            MechanismName::Grr => MechanismSpec::Grr { domain_size },
            MechanismName::Sue => MechanismSpec::Sue { domain_size },
            MechanismName::Oue => MechanismSpec::Oue { domain_size },
            MechanismName::Olh => MechanismSpec::Olh {
                domain_size,
                buckets: self.buckets,
                seed_count: self.seed_count,
            },
            MechanismName::Hadamard => MechanismSpec::Hadamard { domain_size },
            MechanismName::Laplace => {
                let (lo, hi) = range()?;
                MechanismSpec::Laplace {
                    lo,
                    hi,
                    granularity_log2: self.granularity_log2,
                }
            }
            MechanismName::Duchi => {
                let (lo, hi) = range()?;
                MechanismSpec::Duchi { lo, hi }
            }
            MechanismName::Piecewise => {
                let (lo, hi) = range()?;
                MechanismSpec::Piecewise { lo, hi }
            }
            MechanismName::Hybrid => {
                let (lo, hi) = range()?;
                MechanismSpec::Hybrid { lo, hi }
            }
            MechanismName::Rappor => MechanismSpec::Rappor {
                num_bits: self.num_bits.context("a RAPPOR metric needs --num-bits")?,
                num_hashes: self.num_hashes,
                num_cohorts: self.num_cohorts,
                f: self.prr_f,
                p: self.irr_p,
                q: self.irr_q,
            },
        };
        let epsilon = match (self.epsilon, &mechanism) {
            (Some(eps), _) => eps,
            (
                None,
                &MechanismSpec::Rappor {
                    num_bits,
                    num_hashes,
                    num_cohorts,
                    f,
                    p,
                    q,
                },
            ) => RapporParams::new(num_bits, num_hashes, num_cohorts, f, p, q)?.epsilon_one(),
            (None, _) => anyhow::bail!("give --epsilon"),
        };
        let mut spec = MetricSpec::new(&self.name, Epsilon::new(epsilon)?, mechanism)
            .with_categories(categories)
            .with_description(&self.description)
            .with_epoch_seconds(self.epoch_seconds);
        spec.memoize = self.memoize;
        spec.validate()?;
        Ok(spec)
    }
}

async fn create(args: CreateArgs) -> anyhow::Result<()> {
    let spec = wire::metric_to_proto(&args.spec()?)?;
    let mut admin = args.conn.admin().await?;
    let response = admin
        .create_metric(pb::CreateMetricRequest { spec: Some(spec) })
        .await?
        .into_inner();
    let metric = response.metric.context("server returned no metric")?;
    let verb = if response.created {
        "created"
    } else {
        "unchanged"
    };
    println!(
        "{verb}: {} version {} (metric id {}), epsilon {:.4} per report",
        metric.name, metric.version, metric.metric_id, metric.epsilon
    );
    Ok(())
}

async fn list(args: ListArgs) -> anyhow::Result<()> {
    let mut admin = args.conn.admin().await?;
    let metrics = admin
        .list_metrics(pb::AdminListMetricsRequest {
            all_versions: args.all_versions,
        })
        .await?
        .into_inner()
        .metrics;
    let specs = metrics
        .into_iter()
        .map(wire::metric_from_proto)
        .collect::<Result<Vec<_>, _>>()?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&specs)?),
        Format::Csv => {
            println!("name,version,metric_id,mechanism,epsilon,epoch_seconds");
            for s in &specs {
                // The mechanism label holds commas: quote it.
                println!(
                    "{},{},{},{},{},{}",
                    csv_field(&s.name),
                    s.version,
                    s.metric_id,
                    csv_field(&mechanism_label(&s.mechanism)),
                    s.epsilon,
                    s.epoch_seconds
                );
            }
        }
        Format::Table => {
            let mut table = Table::new();
            table.set_header(["name", "version", "id", "mechanism", "epsilon", "epoch s"]);
            for s in &specs {
                table.add_row([
                    s.name.clone(),
                    s.version.to_string(),
                    s.metric_id.to_string(),
                    mechanism_label(&s.mechanism),
                    s.epsilon.to_string(),
                    s.epoch_seconds.to_string(),
                ]);
            }
            println!("{table}");
        }
    }
    Ok(())
}

async fn show(args: ShowArgs) -> anyhow::Result<()> {
    let mut admin = args.conn.admin().await?;
    let metric = admin
        .get_metric(pb::GetMetricRequest {
            name: args.name,
            version: args.version,
        })
        .await?
        .into_inner();
    let spec = wire::metric_from_proto(metric)?;
    println!("{}", serde_json::to_string_pretty(&spec)?);
    Ok(())
}

/// A short description of a mechanism and its parameters.
pub fn mechanism_label(m: &MechanismSpec) -> String {
    serde_json::to_value(m)
        .ok()
        .and_then(|v| {
            let obj = v.as_object()?;
            let kind = obj.get("kind")?.as_str()?.to_string();
            let params: Vec<String> = obj
                .iter()
                .filter(|(k, _)| *k != "kind")
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            Some(if params.is_empty() {
                kind
            } else {
                format!("{kind}({})", params.join(", "))
            })
        })
        .unwrap_or_else(|| format!("{m:?}"))
}
