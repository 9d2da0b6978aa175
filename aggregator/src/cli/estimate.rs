//! `ldp estimate --metric NAME`: frequency estimates (categorical metrics) or the
//! mean (numeric metrics), each with its standard error, confidence interval,
//! n, mechanism and epsilon; the Norm-Sub consistent column is printed beside
//! the unbiased estimate.
//!
//! A metric without reports in the requested epochs has no estimate (n = 0 is
//! not an estimate of zero): the table says "no reports", the CSV has its header
//! and no rows (and a note on standard error), and the JSON document has
//! `"status": "no_reports"` with empty `values` (or a `null` mean) instead of
//! `"status": "ok"`. The exit status is 0 in every case.

use anyhow::Context;
use comfy_table::Table;
use ldp_proto::v1 as pb;
use ldp_sdk::wire;
use serde_json::json;

use super::connect::ConnectArgs;
use super::metric::mechanism_label;
use super::{Format, csv_field};

/// Options of `ldp estimate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Connection.
    #[command(flatten)]
    pub conn: ConnectArgs,
    /// Metric name.
    #[arg(long)]
    pub metric: String,
    /// Metric version (0 = the latest).
    #[arg(long, default_value_t = 0)]
    pub version: u32,
    /// Epochs to pool, comma separated (default: all).
    #[arg(long, value_delimiter = ',')]
    pub epochs: Vec<u64>,
    /// Confidence level of the intervals, strictly between 0 and 1.
    #[arg(long, default_value_t = 0.95, value_parser = parse_confidence, allow_negative_numbers = true)]
    pub confidence: f64,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// Runs `ldp estimate`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut analytics = args.conn.analytics().await?;
    let request = pb::EstimateRequest {
        metric: args.metric.clone(),
        version: args.version,
        epochs: args.epochs.clone(),
        confidence: args.confidence,
    };
    let metrics = analytics
        .list_metrics(pb::ListMetricsRequest { all_versions: true })
        .await?
        .into_inner()
        .metrics;
    let spec = metrics
        .into_iter()
        .filter(|m| m.name == args.metric && (args.version == 0 || m.version == args.version))
        .max_by_key(|m| m.version)
        .with_context(|| match args.version {
            0 => format!("no metric named {:?} (see `ldp metric list`)", args.metric),
            v => format!("metric {:?} has no version {v}", args.metric),
        })?;
    let spec = wire::metric_from_proto(spec)?;
    let label = mechanism_label(&spec.mechanism);
    if matches!(
        spec.mechanism,
        ldp_sdk::mechanism::MechanismSpec::Rappor { .. }
    ) {
        anyhow::bail!(
            "{} is a RAPPOR metric: decode it against candidate strings with \
             `ldp rappor decode --metric {} --candidates FILE`",
            spec.name,
            spec.name
        );
    }
    let numeric = spec.mechanism()?.domain_size().is_none();
    let outcome = if numeric {
        analytics.estimate_mean(request).await.map(|m| {
            Some(m.into_inner())
                .filter(|m| m.reports > 0)
                .map(Estimate::Mean)
        })
    } else {
        analytics.estimate_frequencies(request).await.map(|f| {
            Some(f.into_inner())
                .filter(|f| f.reports > 0)
                .map(Estimate::Frequencies)
        })
    };
    match outcome {
        Ok(Some(Estimate::Mean(m))) => print_mean(&m, &label, args.format),
        Ok(Some(Estimate::Frequencies(f))) => print_frequencies(&f, &label, args.format),
        Ok(None) => print_no_reports(&args, &spec, &label, numeric),
        Err(status) if is_no_reports(&status) => print_no_reports(&args, &spec, &label, numeric),
        Err(status) => Err(status.into()),
    }
}

enum Estimate {
    Frequencies(pb::FrequencyEstimate),
    Mean(pb::MeanEstimate),
}

/// Parses `--confidence`: a level strictly between 0 and 1 (the server reads 0
/// as "the default", so 0 must never be sent by accident).
fn parse_confidence(s: &str) -> Result<f64, String> {
    let level: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    if level > 0.0 && level < 1.0 {
        Ok(level)
    } else {
        Err(format!(
            "{s} is not strictly between 0 and 1 (for example 0.95)"
        ))
    }
}

/// Whether the server refused an estimate because there are no reports: the
/// mean of no reports is undefined, and the SDK's refusal says "no reports".
fn is_no_reports(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::FailedPrecondition | tonic::Code::InvalidArgument
    ) && status.message().contains("no reports")
}

/// The output for a metric without reports in the requested epochs.
fn print_no_reports(
    args: &Args,
    spec: &ldp_sdk::metric::MetricSpec,
    mechanism: &str,
    numeric: bool,
) -> anyhow::Result<()> {
    let scope = match args.epochs.as_slice() {
        [] => String::new(),
        [one] => format!(" in epoch {one}"),
        many => format!(" in the {} requested epochs", many.len()),
    };
    let what = format!(
        "{} version {}: no reports{scope}, so there is no estimate",
        spec.name, spec.version
    );
    match args.format {
        Format::Json => {
            let mut doc = json!({"metric": spec.name, "version": spec.version,
                "status": "no_reports", "reports": 0, "mechanism": mechanism,
                "epsilon": spec.epsilon.get(), "confidence": args.confidence, "epochs": [],
                "requested_epochs": args.epochs});
            if numeric {
                for field in ["mean", "std_error", "ci_low", "ci_high"] {
                    doc[field] = serde_json::Value::Null;
                }
            } else {
                doc["values"] = json!([]);
            }
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Format::Csv => {
            println!(
                "{}",
                if numeric {
                    MEAN_CSV_HEADER
                } else {
                    FREQUENCY_CSV_HEADER
                }
            );
            eprintln!("note: {what}; the CSV has no rows");
        }
        Format::Table => println!("{what}"),
    }
    Ok(())
}

const FREQUENCY_CSV_HEADER: &str =
    "value,index,estimate,std_error,ci_low,ci_high,consistent,n,mechanism,epsilon";
const MEAN_CSV_HEADER: &str = "mean,std_error,ci_low,ci_high,n,mechanism,epsilon";

fn epsilon(g: Option<&pb::Guarantee>) -> f64 {
    g.map_or(0.0, |g| g.epsilon_per_report)
}

fn print_frequencies(
    f: &pb::FrequencyEstimate,
    mechanism: &str,
    format: Format,
) -> anyhow::Result<()> {
    let name = f.metric.as_ref().map_or("", |m| m.name.as_str());
    let eps = epsilon(f.guarantee.as_ref());
    match format {
        Format::Json => {
            let values: Vec<_> = f
                .values
                .iter()
                .map(|v| {
                    json!({"value": v.value, "index": v.index, "estimate": v.estimate,
                        "std_error": v.std_error, "ci_low": v.ci_low, "ci_high": v.ci_high,
                        "consistent": v.consistent})
                })
                .collect();
            let version = f.metric.as_ref().map_or(0, |m| m.version);
            let doc = json!({"metric": name, "version": version, "status": "ok",
                "reports": f.reports, "mechanism": mechanism, "epsilon": eps,
                "confidence": f.confidence, "epochs": f.epochs, "values": values});
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Format::Csv => {
            println!("{FREQUENCY_CSV_HEADER}");
            for v in &f.values {
                println!(
                    "{},{},{},{},{},{},{},{},\"{}\",{}",
                    csv_field(&v.value),
                    v.index,
                    v.estimate,
                    v.std_error,
                    v.ci_low,
                    v.ci_high,
                    v.consistent,
                    f.reports,
                    mechanism.replace('"', "\"\""),
                    eps
                );
            }
        }
        Format::Table => {
            println!(
                "{name}: n = {}, {mechanism}, epsilon = {eps}, {:.0}% confidence intervals",
                f.reports,
                f.confidence * 100.0
            );
            let mut table = Table::new();
            table.set_header([
                "value",
                "estimate",
                "std error",
                "ci low",
                "ci high",
                "consistent",
            ]);
            for v in &f.values {
                table.add_row([
                    v.value.clone(),
                    format!("{:.1}", v.estimate),
                    format!("{:.1}", v.std_error),
                    format!("{:.1}", v.ci_low),
                    format!("{:.1}", v.ci_high),
                    format!("{:.1}", v.consistent),
                ]);
            }
            println!("{table}");
        }
    }
    Ok(())
}

fn print_mean(m: &pb::MeanEstimate, mechanism: &str, format: Format) -> anyhow::Result<()> {
    let name = m.metric.as_ref().map_or("", |s| s.name.as_str());
    let eps = epsilon(m.guarantee.as_ref());
    match format {
        Format::Json => {
            let version = m.metric.as_ref().map_or(0, |s| s.version);
            let doc = json!({"metric": name, "version": version, "status": "ok",
                "reports": m.reports, "mechanism": mechanism, "epsilon": eps,
                "confidence": m.confidence, "epochs": m.epochs, "mean": m.mean,
                "std_error": m.std_error, "ci_low": m.ci_low, "ci_high": m.ci_high});
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Format::Csv => {
            println!("{MEAN_CSV_HEADER}");
            println!(
                "{},{},{},{},{},\"{}\",{}",
                m.mean,
                m.std_error,
                m.ci_low,
                m.ci_high,
                m.reports,
                mechanism.replace('"', "\"\""),
                eps
            );
        }
        Format::Table => {
            println!(
                "{name}: n = {}, {mechanism}, epsilon = {eps}\nmean {:.4} (std error {:.4}), {:.0}% CI [{:.4}, {:.4}]",
                m.reports,
                m.mean,
                m.std_error,
                m.confidence * 100.0,
                m.ci_low,
                m.ci_high
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    fn confidence(value: &str) -> Result<f64, clap::Error> {
        let cli = Cli::try_parse_from(["ldp", "estimate", "--metric", "m", "--confidence", value])?;
        match cli.command {
            Command::Estimate(args) => Ok(args.confidence),
            other => panic!("parsed as {other:?}"),
        }
    }

    /// Regression: `--confidence 0` reached the server, which reads 0 as "the
    /// default" and answered with 95% intervals.
    #[test]
    fn confidence_outside_the_open_unit_interval_is_refused() {
        for bad in ["0", "-0", "1", "1.5", "-0.5", "NaN", "inf", "ninety"] {
            let err = confidence(bad).expect_err(bad).to_string();
            assert!(err.contains("--confidence"), "{bad}: {err}");
        }
        assert_eq!(confidence("0.9").unwrap(), 0.9);
        let default = Cli::try_parse_from(["ldp", "estimate", "--metric", "m"]).unwrap();
        assert!(matches!(default.command, Command::Estimate(a) if a.confidence == 0.95));
    }
}
