//! `ldp estimate --metric NAME`: frequency estimates (categorical metrics) or the
//! mean (numeric metrics), each with its standard error, confidence interval,
//! n, mechanism and epsilon; the Norm-Sub consistent column is printed beside
//! the unbiased estimate.

use anyhow::Context;
use comfy_table::Table;
use ldp_proto::v1 as pb;
use ldp_sdk::wire;
use serde_json::json;

use super::Format;
use super::connect::ConnectArgs;
use super::metric::mechanism_label;

/// Options of `ldp estimate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Connection.
    #[command(flatten)]
    pub conn: ConnectArgs,
    /// Metric name.
    #[arg(long)]
    pub metric: String,
    /// Metric version (default: latest).
    #[arg(long, default_value_t = 0)]
    pub version: u32,
    /// Epochs to pool, comma separated (default: all).
    #[arg(long, value_delimiter = ',')]
    pub epochs: Vec<u64>,
    /// Confidence level of the intervals.
    #[arg(long, default_value_t = 0.95)]
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
        .with_context(|| format!("no metric {:?} version {}", args.metric, args.version))?;
    let spec = wire::metric_from_proto(spec)?;
    if spec.mechanism()?.domain_size().is_none() {
        let mean = analytics.estimate_mean(request).await?.into_inner();
        print_mean(&mean, &mechanism_label(&spec.mechanism), args.format)
    } else {
        let freq = analytics.estimate_frequencies(request).await?.into_inner();
        print_frequencies(&freq, &mechanism_label(&spec.mechanism), args.format)
    }
}

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
            let doc = json!({"metric": name, "reports": f.reports, "mechanism": mechanism,
                "epsilon": eps, "confidence": f.confidence, "epochs": f.epochs, "values": values});
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Format::Csv => {
            println!(
                "value,index,estimate,std_error,ci_low,ci_high,consistent,n,mechanism,epsilon"
            );
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
            let doc = json!({"metric": name, "reports": m.reports, "mechanism": mechanism,
                "epsilon": eps, "confidence": m.confidence, "epochs": m.epochs, "mean": m.mean,
                "std_error": m.std_error, "ci_low": m.ci_low, "ci_high": m.ci_high});
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Format::Csv => {
            println!("mean,std_error,ci_low,ci_high,n,mechanism,epsilon");
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

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
