//! `ldp demo rappor`: simulated devices report English words with RAPPOR over
//! gRPC, and the analyst decodes the server's counts against a candidate list.
//!
//! [`run`] starts an aggregator in-process (ephemeral loopback port, temporary
//! SQLite database), creates a RAPPOR metric through the Admin service, and
//! simulates `devices` devices. Each device has its own [`DeviceSecret`], draws
//! one word from the `support` most frequent words of
//! `data/words/en_words_top10k.tsv` (in proportion to their frequency), and
//! sends one report (cohort and IRR bits, derived as on a real device) through
//! the Collector service in batches. The analyst then asks the server, over
//! gRPC like any analyst without file access, to decode the stored per-cohort
//! counts against the `candidates` most frequent words
//! (`Analytics.DecodeRappor`, which runs [`super::decode`]); every detected
//! word is compared with the devices' true shares.
//!
//! # What the numbers mean
//! - eps_1 is the loss of one report, eps_inf the lifetime loss of an unchanged
//!   word (the memoized PRR), both for the implemented f.
//! - Detected words passed a one-sided Bonferroni test at alpha over all
//!   candidates; intervals are 95% normal intervals from the fit.
//! - False positives are detected words that no device holds; the total
//!   variation distance counts every undetected word at 0.
//!
//! # Reproducibility
//! With a seed, device secrets, words and IRRs come from
//! [`LdpRng::seeded_for_simulation`]: the same seed prints the same numbers.
//! Seeded reports carry no privacy. Without a seed everything is drawn from the
//! operating system.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ldp_proto::v1 as pb;
use ldp_sdk::mechanism::MechanismSpec;
use ldp_sdk::mechanism::rappor::{DeviceSecret, RapporEncoder, RapporParams};
use ldp_sdk::metric::MetricSpec;
use ldp_sdk::wire::{self, ReportHeader};
use ldp_sdk::{Epsilon, LdpRng};
use rand::{Rng, RngExt};
use serde::Serialize;

use super::decode::Decoded;
use super::wire::decoded_from_proto;
use crate::cli::connect::ConnectArgs;
use crate::server::{Config, Server};
use crate::service::auth::Token;

/// Settings of the RAPPOR demo. The defaults are the shared `words-small` case:
/// k = 16, h = 2, m = 64, f = 0.5, p = 0.5, q = 0.75, 100,000 devices, the top
/// 200 words held, the top 300 as candidates.
#[derive(Debug, Clone)]
pub struct RapporDemoConfig {
    /// The word list (`word<TAB>frequency`, with a header, most frequent first).
    pub words: PathBuf,
    /// Number of simulated devices (one report each).
    pub devices: u64,
    /// Devices draw from this many most frequent words.
    pub support: usize,
    /// The analyst decodes against this many most frequent words.
    pub candidates: usize,
    /// RAPPOR parameters of the metric.
    pub params: RapporParams,
    /// Family-wise error rate of the detection test.
    pub alpha: f64,
    /// Seed for a reproducible simulation (no privacy); `None` uses the OS.
    pub seed: Option<u64>,
    /// Reports per Submit call.
    pub batch_size: usize,
}

impl RapporDemoConfig {
    /// The words-small setup, reading `data/words/en_words_top10k.tsv` under `repo_root`.
    pub fn new(repo_root: &Path) -> Self {
        Self {
            words: repo_root.join("data/words/en_words_top10k.tsv"),
            devices: 100_000,
            support: 200,
            candidates: 300,
            params: RapporParams::new(16, 2, 64, 0.5, 0.5, 0.75)
                .expect("the words-small parameters are valid"),
            alpha: 0.05,
            seed: None,
            batch_size: 5_000,
        }
    }
}

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RapporDemoError {
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    Config(String),
    /// The word list could not be read.
    #[error("word list {file}: {reason}")]
    Words {
        /// The file.
        file: String,
        /// What went wrong.
        reason: String,
    },
    /// The server failed.
    #[error(transparent)]
    Server(#[from] crate::server::ServerError),
    /// SDK error (parameters, wire conversion).
    #[error(transparent)]
    Sdk(#[from] ldp_sdk::Error),
    /// A gRPC call failed.
    #[error("{call}: {status}")]
    Rpc {
        /// The call.
        call: String,
        /// Its status.
        status: tonic::Status,
    },
    /// Setting up the temporary directory or the connection failed.
    #[error("{0}")]
    Setup(String),
}

/// One detected word.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WordResult {
    /// The word.
    pub word: String,
    /// Its true share among the devices (0 for a false positive).
    pub true_share: f64,
    /// The decoded share.
    pub estimate: f64,
    /// Standard error of the decoded share.
    pub std_error: f64,
    /// 95% interval of the decoded share.
    pub ci: (f64, f64),
}

impl WordResult {
    /// Whether no device holds the word.
    pub fn false_positive(&self) -> bool {
        self.true_share == 0.0
    }

    /// Whether the 95% interval covers the true share.
    pub fn covered(&self) -> bool {
        self.ci.0 <= self.true_share && self.true_share <= self.ci.1
    }
}

/// Parameters and privacy of the demo metric, for display.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParamsSummary {
    /// Bloom bits k.
    pub num_bits: u32,
    /// Hashes h.
    pub num_hashes: u32,
    /// Cohorts m.
    pub num_cohorts: u32,
    /// Implemented f.
    pub f: f64,
    /// P(IRR 1 | PRR 0) (RAPPOR naming).
    pub p: f64,
    /// P(IRR 1 | PRR 1) (RAPPOR naming).
    pub q: f64,
    /// Loss of one report.
    pub epsilon_one: f64,
    /// Lifetime loss of an unchanged value.
    pub epsilon_inf: f64,
}

/// Everything the demo measured (serializable for the HTML report).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RapporOutcome {
    /// The metric's parameters and epsilons.
    pub params: ParamsSummary,
    /// Devices simulated (= reports).
    pub devices: u64,
    /// Devices drew from this many most frequent words.
    pub support: usize,
    /// Distinct words actually held.
    pub held: usize,
    /// Number of candidates decoded against.
    pub candidates: usize,
    /// The seed, if any.
    pub seed: Option<u64>,
    /// Server URL used.
    pub server: String,
    /// Detected words, largest estimate first.
    pub detected: Vec<WordResult>,
    /// The most frequent held words that were not detected (up to 10), with true shares.
    pub missed: Vec<(String, f64)>,
    /// Detected words no device holds.
    pub false_positives: usize,
    /// 1/2 sum |decoded - true| over all words (undetected words decode to 0).
    pub tv_distance: f64,
    /// True share of the words that were not detected.
    pub undetected_mass: f64,
    /// The decoder's full output.
    pub decoded: Decoded,
    /// Seconds to simulate and send every report.
    pub collect_seconds: f64,
    /// Seconds of the `Analytics.DecodeRappor` call (the server decodes its stored counts).
    pub decode_seconds: f64,
}

/// Runs the demo; see the module docs.
pub async fn run(config: RapporDemoConfig) -> Result<RapporOutcome, RapporDemoError> {
    if config.devices == 0 || config.batch_size == 0 || config.support == 0 {
        return Err(RapporDemoError::Config(
            "devices, batch size and support must be > 0".into(),
        ));
    }
    let words = load_words(&config.words, config.support.max(config.candidates))?;
    if words.len() < config.support {
        return Err(RapporDemoError::Config(format!(
            "the word list has {} words, support needs {}",
            words.len(),
            config.support
        )));
    }
    let support = &words[..config.support];
    let candidates: Vec<String> = words
        .iter()
        .take(config.candidates)
        .map(|w| w.0.clone())
        .collect();
    let work = tempfile::tempdir().map_err(|e| RapporDemoError::Setup(format!("temp dir: {e}")))?;
    let db = work.path().join("ldp-rappor-demo.db");
    let token = Token::generate();
    let listen = "127.0.0.1:0".parse().expect("a valid socket address");
    let server = Server::start(Config::new(listen, db, &token)).await?;
    let url = server.url();
    let started = Instant::now();
    let result = async {
        let (metric, truth) = collect(&config, support, &url, &token).await?;
        let collect_time = started.elapsed();
        let decode_start = Instant::now();
        let decoded = decode_over_grpc(&config, &metric, candidates, &url, &token).await?;
        Ok::<_, RapporDemoError>((truth, collect_time, decode_start.elapsed(), decoded))
    }
    .await;
    server.shutdown().await?;
    let (truth, collect_time, decode_time, decoded) = result?;
    if decoded.num_reports != config.devices {
        return Err(RapporDemoError::Setup(format!(
            "the server decoded {} of {} reports",
            decoded.num_reports, config.devices
        )));
    }
    Ok(outcome(
        &config,
        url,
        decoded,
        &truth,
        collect_time,
        decode_time,
    ))
}

/// The analyst's step: `Analytics.DecodeRappor` on the stored counts.
async fn decode_over_grpc(
    config: &RapporDemoConfig,
    metric: &MetricSpec,
    candidates: Vec<String>,
    url: &str,
    token: &Token,
) -> Result<Decoded, RapporDemoError> {
    let mut analytics = connect_args(url, token)
        .analytics()
        .await
        .map_err(|e| RapporDemoError::Setup(e.to_string()))?;
    let decoding = analytics
        .decode_rappor(pb::DecodeRapporRequest {
            metric: metric.name.clone(),
            version: metric.version,
            epochs: Vec::new(),
            candidates,
            alpha: config.alpha,
            ..Default::default()
        })
        .await
        .map_err(|status| RapporDemoError::Rpc {
            call: "DecodeRappor".into(),
            status,
        })?
        .into_inner();
    Ok(decoded_from_proto(&decoding))
}

fn connect_args(url: &str, token: &Token) -> ConnectArgs {
    ConnectArgs {
        connect: url.to_string(),
        token: Some(token.expose().to_string()),
        token_file: None,
        ca_cert: None,
    }
}

/// Creates the metric and sends one report per device; returns the stored
/// metric and the true share of every held word.
async fn collect(
    config: &RapporDemoConfig,
    support: &[(String, f64)],
    url: &str,
    token: &Token,
) -> Result<(MetricSpec, HashMap<String, f64>), RapporDemoError> {
    let params = &config.params;
    let eps = Epsilon::new(params.epsilon_one())?;
    let spec = MetricSpec::new(
        "demo.rappor.words",
        eps,
        MechanismSpec::Rappor {
            num_bits: params.num_bits(),
            num_hashes: params.num_hashes(),
            num_cohorts: params.num_cohorts(),
            f: params.f(),
            p: params.p(),
            q: params.q(),
        },
    )
    .with_description("English words, RAPPOR (demo)");
    let connect = connect_args(url, token);
    let setup = |e: anyhow::Error| RapporDemoError::Setup(e.to_string());
    let mut admin = connect.admin().await.map_err(setup)?;
    let mut collector = connect.collector().await.map_err(setup)?;
    let created = admin
        .create_metric(pb::CreateMetricRequest {
            spec: Some(wire::metric_to_proto(&spec)?),
        })
        .await
        .map_err(|status| RapporDemoError::Rpc {
            call: "CreateMetric".into(),
            status,
        })?
        .into_inner();
    let metric = wire::metric_from_proto(
        created
            .metric
            .ok_or_else(|| RapporDemoError::Setup("CreateMetric returned no metric".into()))?,
    )?;
    let header = ReportHeader {
        metric_id: metric.metric_id,
        metric_version: metric.version,
        epoch: 0,
    };

    let total: f64 = support.iter().map(|w| w.1).sum();
    let mut cdf = Vec::with_capacity(support.len());
    let mut acc = 0.0;
    for (_, f) in support {
        acc += f / total;
        cdf.push(acc);
    }
    let mut rng = match config.seed {
        Some(seed) => LdpRng::seeded_for_simulation(seed),
        None => LdpRng::from_os(),
    };
    let mut held = vec![0u64; support.len()];
    let mut batch = Vec::with_capacity(config.batch_size);
    for device in 0..config.devices {
        let secret = DeviceSecret::generate(&mut rng);
        let encoder = RapporEncoder::new(params.clone(), &secret, &metric.name);
        let u: f64 = rng.random();
        let index = cdf.partition_point(|&c| c <= u).min(support.len() - 1);
        held[index] += 1;
        let report = encoder.encode(support[index].0.as_bytes(), &mut rng);
        batch.push(wire::report_to_proto(header, &report)?);
        if batch.len() == config.batch_size || device + 1 == config.devices {
            let mut batch_id = vec![0u8; 16];
            rng.fill_bytes(&mut batch_id);
            let reports = std::mem::take(&mut batch);
            collector
                .submit(pb::SubmitRequest { batch_id, reports })
                .await
                .map_err(|status| RapporDemoError::Rpc {
                    call: "Submit".into(),
                    status,
                })?;
        }
    }
    let n = config.devices as f64;
    let truth = support
        .iter()
        .zip(&held)
        .filter(|(_, c)| **c > 0)
        .map(|((w, _), &c)| (w.clone(), c as f64 / n))
        .collect();
    Ok((metric, truth))
}

fn outcome(
    config: &RapporDemoConfig,
    server: String,
    decoded: Decoded,
    truth: &HashMap<String, f64>,
    collect_time: Duration,
    decode_time: Duration,
) -> RapporOutcome {
    let params = &config.params;
    let detected: Vec<WordResult> = decoded
        .detections
        .iter()
        .map(|d| WordResult {
            word: d.string.clone(),
            true_share: truth.get(&d.string).copied().unwrap_or(0.0),
            estimate: d.proportion,
            std_error: d.prop_std_error,
            ci: (d.prop_low_95, d.prop_high_95),
        })
        .collect();
    let is_detected = |w: &str| detected.iter().any(|d| d.word == w);
    let mut missed: Vec<(String, f64)> = truth
        .iter()
        .filter(|(w, _)| !is_detected(w))
        .map(|(w, s)| (w.clone(), *s))
        .collect();
    missed.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let undetected_mass = missed.iter().map(|m| m.1).sum::<f64>();
    let tv_distance = 0.5
        * (detected
            .iter()
            .map(|d| (d.estimate - d.true_share).abs())
            .sum::<f64>()
            + undetected_mass);
    missed.truncate(10);
    RapporOutcome {
        params: ParamsSummary {
            num_bits: params.num_bits(),
            num_hashes: params.num_hashes(),
            num_cohorts: params.num_cohorts(),
            f: params.effective_f(),
            p: params.p(),
            q: params.q(),
            epsilon_one: params.epsilon_one(),
            epsilon_inf: params.epsilon_inf(),
        },
        devices: config.devices,
        support: config.support,
        held: truth.len(),
        candidates: config.candidates,
        seed: config.seed,
        server,
        false_positives: detected.iter().filter(|d| d.false_positive()).count(),
        detected,
        missed,
        tv_distance,
        undetected_mass,
        decoded,
        collect_seconds: collect_time.as_secs_f64(),
        decode_seconds: decode_time.as_secs_f64(),
    }
}

/// Reads `word<TAB>frequency` rows (after a header), at most `limit`.
pub fn load_words(path: &Path, limit: usize) -> Result<Vec<(String, f64)>, RapporDemoError> {
    let err = |reason: String| RapporDemoError::Words {
        file: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    text.lines()
        .skip(1)
        .take(limit)
        .enumerate()
        .map(|(i, line)| {
            let (word, freq) = line
                .split_once('\t')
                .ok_or_else(|| err(format!("line {}: no tab", i + 2)))?;
            let freq: f64 = freq
                .trim()
                .parse()
                .map_err(|e| err(format!("line {}: {e}", i + 2)))?;
            if !(freq.is_finite() && freq > 0.0) {
                return Err(err(format!("line {}: frequency {freq}", i + 2)));
            }
            Ok((word.to_string(), freq))
        })
        .collect()
}

/// The outcome as plain text: parameters, detected words, misses, summary.
pub fn render_text(o: &RapporOutcome) -> String {
    let p = &o.params;
    let mut out = format!(
        "RAPPOR demo: {} devices over gRPC ({}), words drawn from the top {} (held: {}), {} candidates\n\
         k={} h={} m={} f={} p={} q={} (p = P(1|PRR 0), q = P(1|PRR 1)): eps_1 = {:.4}, eps_inf = {:.4}\n\n",
        o.devices,
        o.server,
        o.support,
        o.held,
        o.candidates,
        p.num_bits,
        p.num_hashes,
        p.num_cohorts,
        p.f,
        p.p,
        p.q,
        p.epsilon_one,
        p.epsilon_inf
    );
    out.push_str(&format!(
        "{:<14} {:>9} {:>9} {:>21} {:>9}  note\n",
        "word", "estimate", "std err", "95% interval", "true"
    ));
    for d in &o.detected {
        let note = if d.false_positive() {
            "FALSE POSITIVE"
        } else if d.covered() {
            ""
        } else {
            "interval misses truth"
        };
        out.push_str(&format!(
            "{:<14} {:>9.4} {:>9.4} [{:>8.4}, {:>8.4}] {:>9.4}  {note}\n",
            d.word, d.estimate, d.std_error, d.ci.0, d.ci.1, d.true_share
        ));
    }
    if o.detected.is_empty() {
        out.push_str("(nothing detected)\n");
    }
    out.push_str("\nlargest words not detected: ");
    let missed: Vec<String> = o
        .missed
        .iter()
        .map(|(w, s)| format!("{w} {s:.4}"))
        .collect();
    out.push_str(&missed.join(", "));
    out.push_str(&format!(
        "\n\ndetected {}, false positives {}, total variation {:.4} (undetected true mass {:.4}), \
         threshold z > {:.2} (Bonferroni, alpha {} over {} candidates)\n\
         collect {:.2} s, decode {:.3} s (Analytics.DecodeRappor on the server)\n",
        o.detected.len(),
        o.false_positives,
        o.tv_distance,
        o.undetected_mass,
        o.decoded.z_threshold,
        o.decoded.alpha,
        o.candidates,
        o.collect_seconds,
        o.decode_seconds
    ));
    out
}

/// An HTML fragment (a `<section>`) for the demo's HTML report.
pub fn html_section(o: &RapporOutcome) -> String {
    let p = &o.params;
    let mut rows = String::new();
    for d in &o.detected {
        let class = if d.false_positive() {
            " class=\"fp\""
        } else {
            ""
        };
        rows.push_str(&format!(
            "<tr{class}><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>[{:.4}, {:.4}]</td><td>{:.4}</td></tr>\n",
            escape(&d.word),
            d.estimate,
            d.std_error,
            d.ci.0,
            d.ci.1,
            d.true_share
        ));
    }
    format!(
        "<section id=\"rappor\">\n<h2>RAPPOR: English words</h2>\n\
         <p>{} devices, one report each, words drawn from the top {} of the word list; decoded \
         against the top {} words. k={}, h={}, m={}, f={}, p={}, q={} (RAPPOR naming: p = P(1 | PRR 0)); \
         eps_1 = {:.4} per report, eps_inf = {:.4} for an unchanged word.</p>\n\
         <table>\n<tr><th>word</th><th>estimate</th><th>std error</th><th>95% interval</th><th>true share</th></tr>\n{rows}</table>\n\
         <p>Detected {}, false positives {}, total variation distance {:.4} \
         (true mass of undetected words {:.4}); detection threshold z &gt; {:.2} \
         (Bonferroni, alpha {}). Decoded by the server (Analytics.DecodeRappor) in {:.3} s.</p>\n</section>\n",
        o.devices,
        o.support,
        o.candidates,
        p.num_bits,
        p.num_hashes,
        p.num_cohorts,
        p.f,
        p.p,
        p.q,
        p.epsilon_one,
        p.epsilon_inf,
        o.detected.len(),
        o.false_positives,
        o.tv_distance,
        o.undetected_mass,
        o.decoded.z_threshold,
        o.decoded.alpha,
        o.decode_seconds
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
