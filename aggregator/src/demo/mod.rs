//! `ldp demo`: the UCI Adult census, end to end over real gRPC.
//!
//! [`run`] starts an aggregator in-process (ephemeral loopback port, temporary
//! SQLite database) or uses a running one, registers one metric per Adult
//! attribute, runs every record (or `devices` resampled records) as one device
//! through [`ldp_sdk::Client`] (randomized on the "device", batched, queued on
//! disk, sent over gRPC), then queries the Analytics service and compares every
//! estimate with the ground truth of the simulated devices.
//!
//! # What the numbers mean
//! - Each device sends one report per attribute (13), each with the stated
//!   epsilon per report; a device's total loss is the sum (13 x epsilon).
//! - Categorical estimates are the server's unbiased estimates with 95% normal
//!   intervals from the mechanism's closed-form variance; about 95% of the true
//!   shares should fall inside their interval ([`Outcome::covered`]).
//! - The total variation distance is computed on the unbiased estimates; its
//!   expectation under the normal approximation, `0.5 * sum_v sqrt(2/pi) se_v`,
//!   is shown beside it ([`CategoricalResult::expected_tv`]).
//!
//! # Reproducibility
//! With a seed, every device's randomness comes from
//! [`ldp_sdk::LdpRng::seeded_for_simulation`] (one stream per client task, the
//! devices split among tasks by index) and resampling from another seeded stream,
//! so two runs print the same numbers. Seeded reports carry no privacy; without a
//! seed everything is drawn from the operating system.

pub mod mechanisms;
mod output;
mod simulate;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ldp_proto::v1 as pb;
use ldp_sdk::mechanism::MechanismSpec;
use ldp_sdk::metric::MetricSpec;
use ldp_sdk::schema::{Attribute, Schema};
use ldp_sdk::{Epsilon, wire};

use crate::cli::connect::ConnectArgs;
use crate::dataset::adult;
use crate::server::{Config, Server};
use crate::service::auth::Token;

pub use output::{html_report, render_tables, summary};

/// The numeric attributes the demo reports (names in [`adult::NUMERIC`]).
pub const NUMERIC_ATTRIBUTES: &[&str] = &["age", "hours-per-week", "education-num"];

/// Confidence level of every interval.
pub const CONFIDENCE: f64 = 0.95;

/// Where the aggregator runs.
#[derive(Debug, Clone)]
pub enum Target {
    /// Start one in-process with a temporary database.
    InProcess,
    /// Use a running server.
    Connect {
        /// Its URL.
        url: String,
        /// Its bearer token (for Admin and Analytics).
        token: Token,
    },
}

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// The Adult CSV file.
    pub data: PathBuf,
    /// Devices to simulate by resampling records with replacement; `None` runs
    /// each record once.
    pub devices: Option<u64>,
    /// Epsilon of every report.
    pub epsilon: Epsilon,
    /// Mechanism of the categorical attributes.
    pub categorical: mechanisms::Categorical,
    /// Mechanism of the numeric attributes.
    pub numeric: mechanisms::Numeric,
    /// Seed of a reproducible simulation; `None` uses the OS generator.
    pub seed: Option<u64>,
    /// The aggregator.
    pub target: Target,
    /// Concurrent client tasks (fixed, so a seeded run is reproducible anywhere).
    pub clients: usize,
    /// Reports per batch.
    pub batch_size: usize,
    /// Show a progress bar on a terminal.
    pub progress: bool,
    /// PEM CA certificate to verify a TLS aggregator with (`--connect https://...`).
    pub ca_cert: Option<PathBuf>,
}

impl DemoConfig {
    /// The defaults of `ldp demo`: every record of `adult.data.csv` once, epsilon
    /// 1, automatic mechanisms, OS randomness, an in-process server, 4 clients.
    pub fn new() -> Self {
        Self {
            data: adult::train_path(&adult::repo_root()),
            devices: None,
            epsilon: Epsilon::new(1.0).expect("1 is a valid epsilon"),
            categorical: mechanisms::Categorical::Auto,
            numeric: mechanisms::Numeric::Auto,
            seed: None,
            target: Target::InProcess,
            clients: 4,
            batch_size: 8_000,
            progress: false,
            ca_cert: None,
        }
    }
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// The data set could not be read.
    #[error(transparent)]
    Data(#[from] crate::dataset::DatasetError),
    /// A setting is invalid.
    #[error("invalid setting: {0}")]
    Config(String),
    /// The in-process server failed.
    #[error(transparent)]
    Server(#[from] crate::server::ServerError),
    /// The SDK rejected a parameter or a report.
    #[error(transparent)]
    Sdk(#[from] ldp_sdk::Error),
    /// The schema rejected a record.
    #[error(transparent)]
    Schema(#[from] ldp_sdk::schema::SchemaError),
    /// The device client failed.
    #[error(transparent)]
    Client(#[from] ldp_sdk::client::ClientError),
    /// An Admin or Analytics call failed.
    #[error("{call}: {status}")]
    Rpc {
        /// The call.
        call: String,
        /// The server's status.
        status: tonic::Status,
    },
    /// Connecting or a temporary directory failed.
    #[error("{0}")]
    Setup(String),
}

/// The result for one categorical value.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueResult {
    /// The category label.
    pub label: String,
    /// Its share among the simulated devices.
    pub true_share: f64,
    /// The unbiased estimate of the share.
    pub estimate: f64,
    /// Standard error of the share estimate.
    pub std_error: f64,
    /// 95% interval of the share.
    pub ci: (f64, f64),
}

impl ValueResult {
    /// Whether the true share lies inside the interval.
    pub fn covered(&self) -> bool {
        self.ci.0 <= self.true_share && self.true_share <= self.ci.1
    }
}

/// The result for one categorical attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct CategoricalResult {
    /// Attribute name.
    pub name: String,
    /// The mechanism's spec.
    pub mechanism: MechanismSpec,
    /// Reports the server pooled.
    pub reports: u64,
    /// One row per value of the domain.
    pub values: Vec<ValueResult>,
}

impl CategoricalResult {
    /// Total variation distance between the unbiased estimates and the truth:
    /// `0.5 * sum_v |estimate_v - true_v|`.
    pub fn tv_distance(&self) -> f64 {
        0.5 * self
            .values
            .iter()
            .map(|v| (v.estimate - v.true_share).abs())
            .sum::<f64>()
    }

    /// Expected TV distance from the standard errors (normal approximation:
    /// `E|X| = sqrt(2/pi) se`).
    pub fn expected_tv(&self) -> f64 {
        0.5 * (2.0 / std::f64::consts::PI).sqrt()
            * self.values.iter().map(|v| v.std_error).sum::<f64>()
    }

    /// An upper bound on the standard deviation of [`Self::tv_distance`]:
    /// `0.5 * sum_v sqrt(1 - 2/pi) se_v` (the SD of a sum is at most the sum of
    /// SDs, whatever the correlations).
    pub fn tv_sd_bound(&self) -> f64 {
        0.5 * (1.0 - 2.0 / std::f64::consts::PI).sqrt()
            * self.values.iter().map(|v| v.std_error).sum::<f64>()
    }

    /// Values whose true share is inside the interval.
    pub fn covered(&self) -> usize {
        self.values.iter().filter(|v| v.covered()).count()
    }
}

/// The result for one numeric attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct NumericResult {
    /// Attribute name.
    pub name: String,
    /// The mechanism's spec.
    pub mechanism: MechanismSpec,
    /// Reports the server pooled.
    pub reports: u64,
    /// Mean over the simulated devices.
    pub true_mean: f64,
    /// The unbiased estimate.
    pub estimate: f64,
    /// Its standard error.
    pub std_error: f64,
    /// 95% interval.
    pub ci: (f64, f64),
}

impl NumericResult {
    /// Whether the true mean lies inside the interval.
    pub fn covered(&self) -> bool {
        self.ci.0 <= self.true_mean && self.true_mean <= self.ci.1
    }
}

/// Everything the demo measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Devices simulated.
    pub devices: u64,
    /// Records in the data file.
    pub records: usize,
    /// Whether devices were resampled.
    pub resampled: bool,
    /// Epsilon per report.
    pub epsilon: Epsilon,
    /// Reports per device.
    pub reports_per_device: usize,
    /// The seed, if the run was a seeded simulation.
    pub seed: Option<u64>,
    /// Where the server ran.
    pub server: String,
    /// Categorical results, in [`adult::CATEGORICAL`] order.
    pub categorical: Vec<CategoricalResult>,
    /// Numeric results, in [`NUMERIC_ATTRIBUTES`] order.
    pub numeric: Vec<NumericResult>,
    /// Time to encode, queue and deliver every report (acknowledged).
    pub collect_time: Duration,
    /// Total wall time of [`run`].
    pub total_time: Duration,
}

impl Outcome {
    /// Intervals checked (every categorical value and every numeric mean).
    pub fn intervals(&self) -> usize {
        self.categorical
            .iter()
            .map(|c| c.values.len())
            .sum::<usize>()
            + self.numeric.len()
    }

    /// Intervals that contain the truth.
    pub fn covered(&self) -> usize {
        self.categorical
            .iter()
            .map(CategoricalResult::covered)
            .sum::<usize>()
            + self.numeric.iter().filter(|n| n.covered()).count()
    }
}

/// The demo's schema: the categorical attributes of [`adult::CATEGORICAL`] then
/// [`NUMERIC_ATTRIBUTES`], each as metric `<prefix>.<name>`.
pub fn schema(config: &DemoConfig, prefix: &str) -> Result<Schema, DemoError> {
    let eps = config.epsilon;
    let mut attributes = Vec::new();
    for (name, labels) in adult::CATEGORICAL {
        let spec = config.categorical.spec(labels.len() as u32, eps)?;
        attributes.push(
            Attribute::categorical(
                *name,
                labels.iter().copied(),
                format!("{prefix}.{name}"),
                spec,
                eps,
            )?
            .with_description(format!("ldp demo: UCI Adult attribute {name}")),
        );
    }
    for name in NUMERIC_ATTRIBUTES {
        let bounds = numeric_bounds(name)?;
        let spec = config.numeric.spec(bounds, eps)?;
        attributes.push(
            Attribute::numeric(*name, bounds, format!("{prefix}.{name}"), spec, eps)?
                .with_description(format!("ldp demo: UCI Adult attribute {name}")),
        );
    }
    Ok(Schema::new(attributes)?)
}

fn numeric_bounds(name: &str) -> Result<(f64, f64), DemoError> {
    adult::NUMERIC
        .iter()
        .find(|(n, _)| n == &name)
        .map(|(_, b)| *b)
        .ok_or_else(|| DemoError::Config(format!("no numeric attribute {name:?}")))
}

/// Runs the demo; see the module docs.
pub async fn run(config: DemoConfig) -> Result<Outcome, DemoError> {
    let started = Instant::now();
    if config.clients == 0 || config.batch_size == 0 {
        return Err(DemoError::Config(
            "clients and batch size must be > 0".into(),
        ));
    }
    if config.devices == Some(0) {
        return Err(DemoError::Config("--devices must be > 0".into()));
    }
    let records = adult::load(&config.data)?;
    let work = tempfile::tempdir().map_err(|e| DemoError::Setup(format!("temp dir: {e}")))?;
    let (server, url, token, prefix) = match &config.target {
        Target::InProcess => {
            let token = Token::generate();
            let db = work.path().join("ldp-demo.db");
            let server = Server::start(Config::new(
                "127.0.0.1:0".parse().expect("a valid socket address"),
                db,
                &token,
            ))
            .await?;
            let url = server.url();
            (Some(server), url, token, "adult".to_string())
        }
        Target::Connect { url, token } => {
            // A fresh prefix, so reports of earlier runs are never pooled in.
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            // The random part keeps two runs started in the same second apart.
            let nonce = rand::Rng::next_u32(&mut ldp_sdk::LdpRng::from_os());
            let prefix = format!("adult-{stamp}-{nonce:08x}");
            (None, url.clone(), token.clone(), prefix)
        }
    };
    let result = collect_and_estimate(&config, &records, &url, &token, &prefix, work.path()).await;
    if let Some(server) = server {
        server.shutdown().await?;
    }
    let (categorical, numeric, devices, collect_time) = result?;
    let server = match &config.target {
        Target::InProcess => format!("in-process aggregator at {url} (temporary SQLite database)"),
        Target::Connect { .. } => format!("aggregator at {url} (metrics {prefix}.*)"),
    };
    Ok(Outcome {
        devices,
        records: records.len(),
        resampled: config.devices.is_some(),
        epsilon: config.epsilon,
        reports_per_device: adult::CATEGORICAL.len() + NUMERIC_ATTRIBUTES.len(),
        seed: config.seed,
        server,
        categorical,
        numeric,
        collect_time,
        total_time: started.elapsed(),
    })
}

type Collected = (Vec<CategoricalResult>, Vec<NumericResult>, u64, Duration);

async fn collect_and_estimate(
    config: &DemoConfig,
    records: &[adult::Record],
    url: &str,
    token: &Token,
    prefix: &str,
    work: &std::path::Path,
) -> Result<Collected, DemoError> {
    let connect = ConnectArgs {
        connect: url.to_string(),
        token: Some(token.expose().to_string()),
        token_file: None,
        ca_cert: config.ca_cert.clone(),
    };
    let setup = |e: anyhow::Error| DemoError::Setup(format!("{e:#}"));
    let mut admin = connect.admin().await.map_err(setup)?;
    let mut analytics = connect.analytics().await.map_err(setup)?;
    let schema = schema(config, prefix)?;
    for metric in schema.metrics() {
        let spec = wire::metric_to_proto(&metric)?;
        admin
            .create_metric(pb::CreateMetricRequest { spec: Some(spec) })
            .await
            .map_err(|status| DemoError::Rpc {
                call: "CreateMetric".into(),
                status,
            })?;
    }
    let collect_started = Instant::now();
    let truth = simulate::run(config, records, &schema, url, work).await?;
    let collect_time = collect_started.elapsed();

    let mut categorical = Vec::new();
    let mut numeric = Vec::new();
    for (i, attribute) in schema.attributes().iter().enumerate() {
        let metric: &MetricSpec = attribute.metric();
        let request = pb::EstimateRequest {
            metric: metric.name.clone(),
            version: 0,
            epochs: Vec::new(),
            confidence: CONFIDENCE,
        };
        let rpc = |call: &str| {
            let call = format!("{call} {}", metric.name);
            move |status| DemoError::Rpc { call, status }
        };
        if let Some(counts) = truth.categorical.get(i) {
            let est = analytics
                .estimate_frequencies(request)
                .await
                .map_err(rpc("EstimateFrequencies"))?
                .into_inner();
            categorical.push(categorical_result(attribute, counts, truth.devices, &est));
        } else {
            let est = analytics
                .estimate_mean(request)
                .await
                .map_err(rpc("EstimateMean"))?
                .into_inner();
            let j = i - truth.categorical.len();
            numeric.push(NumericResult {
                name: attribute.name().to_string(),
                mechanism: metric.mechanism.clone(),
                reports: est.reports,
                true_mean: truth.numeric_sums[j] / truth.devices as f64,
                estimate: est.mean,
                std_error: est.std_error,
                ci: (est.ci_low, est.ci_high),
            });
        }
    }
    Ok((categorical, numeric, truth.devices, collect_time))
}

fn categorical_result(
    attribute: &Attribute,
    counts: &[u64],
    devices: u64,
    est: &pb::FrequencyEstimate,
) -> CategoricalResult {
    let n = est.reports.max(1) as f64;
    let values = est
        .values
        .iter()
        .map(|v| ValueResult {
            label: v.value.clone(),
            true_share: counts.get(v.index as usize).copied().unwrap_or(0) as f64 / devices as f64,
            estimate: v.estimate / n,
            std_error: v.std_error / n,
            ci: (v.ci_low / n, v.ci_high / n),
        })
        .collect();
    CategoricalResult {
        name: attribute.name().to_string(),
        mechanism: attribute.metric().mechanism.clone(),
        reports: est.reports,
        values,
    }
}
