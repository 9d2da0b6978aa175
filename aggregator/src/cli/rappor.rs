//! `ldp rappor`: RAPPOR data in the reference implementation's formats.
//!
//! - `ldp rappor decode --params params.csv (--reports reports.csv | --counts counts.csv)
//!   --candidates candidates.txt [--map map.csv] [--format table|csv|json]`: decodes
//!   offline ([`crate::rappor::decode`]); the output columns are those of the
//!   reference `results.csv` plus `z`.
//! - `ldp rappor decode --metric NAME --candidates candidates.txt [--connect URL]
//!   [--format table|csv|json]`: asks a running server to decode a stored RAPPOR
//!   metric (`Analytics.DecodeRappor`, bearer token as for `ldp estimate`); the
//!   output has the same columns, plus the metric's epsilons.
//! - `ldp rappor ingest --metric NAME --params params.csv --reports reports.csv`:
//!   sends the `cohort` and `irr` columns of a reference `reports.csv` to a RAPPOR
//!   metric of a running server. Batch ids are digests of the batch's rows, so
//!   running the same ingest twice stores the reports once.
//! - `ldp rappor demo [--seed N]`: the simulation of [`crate::rappor::demo`].

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use comfy_table::Table;
use ldp_proto::v1 as pb;
use ldp_sdk::mechanism::MechanismSpec;
use ldp_sdk::wire::{self, ReportHeader};
use sha2::{Digest, Sha256};

use super::connect::ConnectArgs;
use super::{Format, csv_field};
use crate::rappor::decode::{Correction, DecodeOptions, Decoded, decode, decode_with_map};
use crate::rappor::demo::{RapporDemoConfig, render_text};
use crate::rappor::reference;
use crate::rappor::wire::{correction_to_proto, decoded_from_proto};

/// The `ldp rappor` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Decode reference-format RAPPOR reports or counts against candidate strings.
    Decode(DecodeArgs),
    /// Send a reference `reports.csv` to a RAPPOR metric of a running server.
    Ingest(IngestArgs),
    /// Simulated devices report words with RAPPOR over gRPC; decode and compare with the truth.
    Demo(DemoArgs),
}

/// Options of `ldp rappor decode`: files (`--params` and `--reports` or
/// `--counts`) or a stored metric (`--metric`, decoded by the server).
#[derive(Debug, clap::Args)]
pub struct DecodeArgs {
    /// A RAPPOR metric of a running server to decode (instead of files).
    #[arg(long, conflicts_with_all = ["params", "reports", "counts", "map"])]
    pub metric: Option<String>,
    /// With `--metric`: its version (0 = the latest).
    #[arg(long, default_value_t = 0, requires = "metric")]
    pub version: u32,
    /// With `--metric`: epochs to pool, comma separated (default: all).
    #[arg(long, value_delimiter = ',', requires = "metric")]
    pub epochs: Vec<u64>,
    /// With `--metric`: the connection.
    #[command(flatten)]
    pub conn: ConnectArgs,
    /// The reference `params.csv` (header `k,h,m,p,q,f`; p = P(1 | PRR 0), q = P(1 | PRR 1)).
    #[arg(long, required_unless_present = "metric")]
    pub params: Option<PathBuf>,
    /// Reports in the reference `reports.csv` format (summed per cohort).
    #[arg(
        long,
        conflicts_with = "counts",
        required_unless_present_any = ["counts", "metric"]
    )]
    pub reports: Option<PathBuf>,
    /// Per-cohort counts in the reference `counts.csv` format.
    #[arg(long)]
    pub counts: Option<PathBuf>,
    /// Candidate strings, one per line.
    #[arg(long)]
    pub candidates: PathBuf,
    /// A reference `map.csv`; it must equal the candidates' Bloom hashes.
    #[arg(long)]
    pub map: Option<PathBuf>,
    /// Error rate of the detection test: family-wise (bonferroni) or false
    /// discovery rate (fdr).
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    /// Multiple-testing correction over the candidates.
    #[arg(long, value_enum, default_value_t = Correction::default())]
    pub correction: Correction,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// Options of `ldp rappor ingest`.
#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Connection.
    #[command(flatten)]
    pub conn: ConnectArgs,
    /// Name of an existing RAPPOR metric whose parameters equal `--params`.
    #[arg(long)]
    pub metric: String,
    /// The reference `params.csv`.
    #[arg(long)]
    pub params: PathBuf,
    /// The reference `reports.csv`.
    #[arg(long)]
    pub reports: PathBuf,
    /// Reports per Submit call.
    #[arg(long, default_value_t = 5_000)]
    pub batch_size: usize,
}

/// Options of `ldp rappor demo` (defaults: the words-small setup).
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Devices to simulate.
    #[arg(long, default_value_t = 100_000)]
    pub devices: u64,
    /// Seed for a reproducible simulation (reports then carry no privacy).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Word list (`word<TAB>frequency`); default `data/words/en_words_top10k.tsv`.
    #[arg(long)]
    pub words: Option<PathBuf>,
    /// Write the outcome as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Runs `ldp rappor ...`.
pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Decode(args) => run_decode(args).await,
        Command::Ingest(args) => run_ingest(args).await,
        Command::Demo(args) => run_demo(args).await,
    }
}

async fn run_decode(args: DecodeArgs) -> anyhow::Result<()> {
    match &args.metric {
        Some(metric) => run_decode_metric(metric, &args).await,
        None => run_decode_files(args),
    }
}

/// `--metric`: the server decodes its stored counts.
async fn run_decode_metric(metric: &str, args: &DecodeArgs) -> anyhow::Result<()> {
    let candidates = reference::read_candidates(&args.candidates)?;
    let mut analytics = args.conn.analytics().await?;
    let started = Instant::now();
    let decoding = analytics
        .decode_rappor(pb::DecodeRapporRequest {
            metric: metric.to_string(),
            version: args.version,
            epochs: args.epochs.clone(),
            candidates,
            alpha: args.alpha,
            correction: correction_to_proto(args.correction).into(),
        })
        .await
        .with_context(|| format!("DecodeRappor {metric}"))?
        .into_inner();
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        "decoded by the server"
    );
    let decoded = decoded_from_proto(&decoding);
    if decoding.reports == 0 && args.format == Format::Table {
        println!("{metric}: no reports in the requested epochs, so nothing to decode");
        return Ok(());
    }
    let privacy = Privacy {
        epsilon_per_report: decoding.guarantee.as_ref().map(|g| g.epsilon_per_report),
        epsilon_lifetime: decoding.guarantee.as_ref().map(|g| g.epsilon_lifetime),
    };
    if args.format == Format::Table {
        let name = decoding.metric.as_ref().map_or(metric, |m| m.name.as_str());
        let version = decoding.metric.as_ref().map_or(0, |m| m.version);
        let epsilon = match &decoding.guarantee {
            Some(g) => format!(
                "epsilon {:.4} per report, eps_inf {:.4} for an unchanged value",
                g.epsilon_per_report, g.epsilon_lifetime
            ),
            None => "the server sent no privacy guarantee".into(),
        };
        println!(
            "{name} v{version}: {} reports in {} of {} cohorts, {epsilon}",
            decoding.reports, decoding.cohorts_with_reports, decoding.cohorts,
        );
    }
    print_decoded(&decoded, privacy, args.format)
}

/// Reference-format files, decoded in this process.
fn run_decode_files(args: DecodeArgs) -> anyhow::Result<()> {
    let params_file = args.params.as_ref().context("--params is required")?;
    let params = reference::read_params(params_file)?;
    let counts = match (&args.reports, &args.counts) {
        (Some(reports), None) => reference::counts_from_reports(reports, params.clone())?,
        (None, Some(counts)) => reference::read_counts(counts, params.clone())?,
        _ => bail!("give exactly one of --reports and --counts"),
    };
    let candidates = reference::read_candidates(&args.candidates)?;
    let options = DecodeOptions {
        alpha: args.alpha,
        correction: args.correction,
        ..DecodeOptions::default()
    };
    let started = Instant::now();
    let decoded = match &args.map {
        Some(map) => {
            let map = reference::read_map(map, &params)?;
            if map.candidates() != candidates.as_slice() {
                bail!("the map's strings differ from the candidates (order included)");
            }
            decode_with_map(&counts, &map, &options)?
        }
        None => decode(&counts, &candidates, &options)?,
    };
    let elapsed = started.elapsed();
    let privacy = Privacy {
        epsilon_per_report: Some(params.epsilon_one()),
        epsilon_lifetime: Some(params.epsilon_inf()),
    };
    if args.format == Format::Table {
        println!(
            "{} reports in {} cohorts (k {}, h {}, f {}, p {}, q {}): eps_1 {:.4} per report, \
             eps_inf {:.4} for an unchanged value",
            counts.total_reports(),
            params.num_cohorts(),
            params.num_bits(),
            params.num_hashes(),
            params.f(),
            params.p(),
            params.q(),
            params.epsilon_one(),
            params.epsilon_inf()
        );
    }
    print_decoded(&decoded, privacy, args.format)?;
    tracing::info!(seconds = elapsed.as_secs_f64(), "decoded");
    Ok(())
}

/// The local privacy behind a decoding: eps_1 of one report and eps_inf of an
/// unchanged value's memoized reports.
/// `None` when the server sent no guarantee (printed as an empty CSV field or
/// JSON `null`, never as 0, which would read as perfect privacy).
#[derive(Debug, Clone, Copy, serde::Serialize)]
struct Privacy {
    epsilon_per_report: Option<f64>,
    epsilon_lifetime: Option<f64>,
}

/// A decoding with the epsilon that backs it (the JSON output).
#[derive(serde::Serialize)]
struct WithPrivacy<'a> {
    #[serde(flatten)]
    privacy: Privacy,
    #[serde(flatten)]
    decoded: &'a Decoded,
}

fn print_decoded(decoded: &Decoded, privacy: Privacy, format: Format) -> anyhow::Result<()> {
    write_decoded(&mut std::io::stdout().lock(), decoded, privacy, format)
}

fn write_decoded(
    out: &mut dyn Write,
    decoded: &Decoded,
    privacy: Privacy,
    format: Format,
) -> anyhow::Result<()> {
    let field = |e: Option<f64>| e.map_or_else(String::new, |e| e.to_string());
    match format {
        Format::Json => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&WithPrivacy { privacy, decoded })?
        )?,
        Format::Csv => {
            writeln!(
                out,
                "string,estimate,std_error,proportion,prop_std_error,prop_low_95,prop_high_95,z,\
                 epsilon_per_report,epsilon_lifetime"
            )?;
            for d in &decoded.detections {
                writeln!(
                    out,
                    "{},{:.0},{:.0},{},{},{},{},{:.3},{},{}",
                    csv_field(&d.string),
                    d.estimate,
                    d.std_error,
                    d.proportion,
                    d.prop_std_error,
                    d.prop_low_95,
                    d.prop_high_95,
                    d.z,
                    field(privacy.epsilon_per_report),
                    field(privacy.epsilon_lifetime)
                )?;
            }
        }
        Format::Table => {
            let mut table = Table::new();
            table.set_header([
                "string",
                "estimate",
                "std error",
                "share",
                "95% interval",
                "z",
            ]);
            for d in &decoded.detections {
                table.add_row([
                    d.string.clone(),
                    format!("{:.0}", d.estimate),
                    format!("{:.0}", d.std_error),
                    format!("{:.4}", d.proportion),
                    format!("[{:.4}, {:.4}]", d.prop_low_95, d.prop_high_95),
                    format!("{:.1}", d.z),
                ]);
            }
            writeln!(out, "{table}")?;
            writeln!(
                out,
                "{} reports, {} candidates: {} detected (z > {:.2}, {} alpha {}), \
                 allocated mass {:.4}, rest {:.4}, {} aliased candidates",
                decoded.num_reports,
                decoded.num_candidates,
                decoded.detections.len(),
                decoded.z_threshold,
                match decoded.correction {
                    Correction::Bonferroni => "Bonferroni, family-wise error rate",
                    Correction::FalseDiscoveryRate => "Benjamini-Hochberg, false discovery rate",
                },
                decoded.alpha,
                decoded.allocated_mass,
                decoded.background_mass.unwrap_or(f64::NAN),
                decoded.aliased.len()
            )?;
        }
    }
    Ok(())
}

async fn run_ingest(args: IngestArgs) -> anyhow::Result<()> {
    if args.batch_size == 0 {
        bail!("--batch-size must be > 0");
    }
    let params = reference::read_params(&args.params)?;
    let mut admin = args.conn.admin().await?;
    let spec = admin
        .get_metric(pb::GetMetricRequest {
            name: args.metric.clone(),
            version: 0,
        })
        .await
        .with_context(|| format!("GetMetric {}", args.metric))?
        .into_inner();
    let metric = wire::metric_from_proto(spec)?;
    let expected = MechanismSpec::Rappor {
        num_bits: params.num_bits(),
        num_hashes: params.num_hashes(),
        num_cohorts: params.num_cohorts(),
        f: params.f(),
        p: params.p(),
        q: params.q(),
    };
    if metric.mechanism != expected {
        bail!(
            "metric {} has mechanism {:?}, the params file describes {:?}",
            args.metric,
            metric.mechanism,
            expected
        );
    }
    let rows = reference::read_reports(&args.reports, &params)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let header = ReportHeader {
        metric_id: metric.metric_id,
        metric_version: metric.version,
        epoch: metric.epoch_at(now),
    };
    let mut collector = args.conn.collector().await?;
    let (mut accepted, mut duplicates) = (0u64, 0u64);
    for chunk in rows.chunks(args.batch_size) {
        // The batch id is a digest of the metric and the batch's content:
        // re-running the same ingest is idempotent.
        let mut digest = Sha256::new();
        digest.update(header.metric_id.to_be_bytes());
        digest.update(header.metric_version.to_be_bytes());
        digest.update(header.epoch.to_be_bytes());
        let mut reports = Vec::with_capacity(chunk.len());
        for row in chunk {
            digest.update(row.client.as_bytes());
            digest.update([0]);
            reports.push(wire::report_to_proto(header, &row.report)?);
            if let ldp_sdk::mechanism::Report::Rappor { cohort, bits } = &row.report {
                digest.update(cohort.to_be_bytes());
                digest.update(bits);
            }
        }
        let response = collector
            .submit(pb::SubmitRequest {
                batch_id: digest.finalize().to_vec(),
                reports,
            })
            .await
            .context("Submit")?
            .into_inner();
        accepted += u64::from(response.accepted);
        duplicates += u64::from(response.duplicate);
    }
    println!(
        "{} reports read, {accepted} accepted, {duplicates} batches already stored",
        rows.len()
    );
    Ok(())
}

async fn run_demo(args: DemoArgs) -> anyhow::Result<()> {
    let mut config = RapporDemoConfig::new(&crate::dataset::adult::repo_root());
    config.devices = args.devices;
    config.seed = args.seed;
    if let Some(words) = args.words {
        config.words = words;
    }
    let outcome = crate::rappor::demo::run(config).await?;
    print!("{}", render_text(&outcome));
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_string_pretty(&outcome)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rappor::decode::Detection;

    fn decoded() -> Decoded {
        Decoded {
            detections: vec![Detection {
                string: "a,b".into(),
                estimate: 500.0,
                std_error: 100.0,
                proportion: 0.05,
                prop_std_error: 0.01,
                prop_low_95: 0.03,
                prop_high_95: 0.07,
                z: 5.0,
            }],
            num_reports: 10_000,
            num_candidates: 3,
            alpha: 0.05,
            correction: Correction::Bonferroni,
            z_threshold: 2.4,
            allocated_mass: 0.05,
            background_mass: Some(0.95),
            dispersion: 1.0,
            nnls_selected: 1,
            regressors: 1,
            aliased: Vec::new(),
        }
    }

    fn render(privacy: Privacy, format: Format) -> String {
        let mut out = Vec::new();
        write_decoded(&mut out, &decoded(), privacy, format).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// Every output states the epsilon behind the decoding; an unknown one is
    /// empty (CSV) or null (JSON), never 0.
    #[test]
    fn decodings_carry_their_epsilon() {
        let known = Privacy {
            epsilon_per_report: Some(1.25),
            epsilon_lifetime: Some(4.5),
        };
        let csv = render(known, Format::Csv);
        let mut lines = csv.lines();
        assert!(
            lines
                .next()
                .unwrap()
                .ends_with(",z,epsilon_per_report,epsilon_lifetime")
        );
        assert_eq!(
            lines.next().unwrap(),
            "\"a,b\",500,100,0.05,0.01,0.03,0.07,5.000,1.25,4.5"
        );
        let json: serde_json::Value = serde_json::from_str(&render(known, Format::Json)).unwrap();
        assert_eq!(json["epsilon_per_report"], 1.25);
        assert_eq!(json["epsilon_lifetime"], 4.5);
        assert_eq!(json["detections"][0]["string"], "a,b");

        let unknown = Privacy {
            epsilon_per_report: None,
            epsilon_lifetime: None,
        };
        assert!(
            render(unknown, Format::Csv)
                .lines()
                .nth(1)
                .unwrap()
                .ends_with("5.000,,")
        );
        let json: serde_json::Value = serde_json::from_str(&render(unknown, Format::Json)).unwrap();
        assert!(json["epsilon_per_report"].is_null());
    }
}
