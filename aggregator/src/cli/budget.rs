//! `ldp budget`: central privacy budgets over gRPC.
//!
//! - `ldp budget show [--dataset D]`: per data set its budget, the spend under
//!   every composition method and the tightest, and its releases
//!   (`Analytics.Budget`);
//! - `ldp budget set --dataset D --epsilon E --delta d`: sets or changes a data
//!   set's budget (`Admin.SetDatasetBudget`; refused when the spend exceeds it);
//! - `ldp budget device --metric M --window-epsilon E --window-seconds S
//!   --lifetime-epsilon L`: publishes a metric's device budget
//!   (`Admin.SetDeviceBudget`): devices receive it with the metric specs and
//!   their ledgers enforce it (never loosening a stricter local budget); it is
//!   shown in `ldp privacy-report` and bounds `reports_per_device` in estimates;
//! - `ldp budget record --id I --dataset D --mechanism M (--epsilon E |
//!   --noise-multiplier s --sample-rate q --steps T --delta d)`: records a
//!   central release made outside the server (e.g. by `ldp train --privacy
//!   central`) *before* publishing it (`Admin.RecordRelease`); a refusal means
//!   the release must not be published.

use anyhow::Context;
use comfy_table::Table;
use ldp_proto::v1 as pb;
use serde_json::json;

use super::Format;
use super::connect::ConnectArgs;
use crate::accountant::rdp;
use crate::model::dpsgd;
use crate::model::features::NbAttribute;
use crate::model::noise::DiscreteLaplace;

/// The `ldp budget` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Show budgets, spend (every composition method and the tightest) and releases.
    Show {
        /// Connection.
        #[command(flatten)]
        conn: ConnectArgs,
        /// One data set (default: all).
        #[arg(long, default_value = "")]
        dataset: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Set or change a data set's central budget: total epsilon at delta.
    Set {
        /// Connection.
        #[command(flatten)]
        conn: ConnectArgs,
        /// Data set name.
        #[arg(long)]
        dataset: String,
        /// Total epsilon allowed.
        #[arg(long)]
        epsilon: f64,
        /// The delta at which the total is measured.
        #[arg(long, default_value_t = 1e-5)]
        delta: f64,
    },
    /// Publish the device budget of a metric: devices' ledgers enforce it.
    Device {
        /// Connection.
        #[command(flatten)]
        conn: ConnectArgs,
        /// Metric name.
        #[arg(long)]
        metric: String,
        /// Most epsilon a device spends within any window.
        #[arg(long)]
        window_epsilon: f64,
        /// Window length in seconds.
        #[arg(long, default_value_t = 86_400)]
        window_seconds: u64,
        /// Most epsilon a device ever spends on the metric.
        #[arg(long)]
        lifetime_epsilon: f64,
    },
    /// Record a central release before publishing it (refused if over budget).
    Record {
        /// Connection.
        #[command(flatten)]
        conn: ConnectArgs,
        /// Release id (idempotency key).
        #[arg(long)]
        id: String,
        /// Data set name.
        #[arg(long)]
        dataset: String,
        /// Mechanism, e.g. `laplace_counts` or `dp_sgd`.
        #[arg(long)]
        mechanism: String,
        /// Pure epsilon-DP release: its epsilon.
        #[arg(long, conflicts_with_all = ["noise_multiplier", "sample_rate", "steps"])]
        epsilon: Option<f64>,
        /// Subsampled Gaussian: noise multiplier (sigma / sensitivity).
        #[arg(long, requires_all = ["sample_rate", "steps"])]
        noise_multiplier: Option<f64>,
        /// Subsampled Gaussian: Poisson sampling rate (1 = no subsampling).
        #[arg(long)]
        sample_rate: Option<f64>,
        /// Subsampled Gaussian: number of steps.
        #[arg(long)]
        steps: Option<u64>,
        /// Subsampled Gaussian: delta of the release's own guarantee.
        #[arg(long, default_value_t = 1e-5)]
        delta: f64,
        /// Further parameters for the audit report, as a JSON object.
        #[arg(long, default_value = "")]
        parameters: String,
    },
}

/// Runs `ldp budget`.
pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Show {
            conn,
            dataset,
            format,
        } => {
            let response = conn
                .analytics()
                .await?
                .budget(pb::BudgetRequest { dataset })
                .await?
                .into_inner();
            print(&response.datasets, format);
        }
        Command::Set {
            conn,
            dataset,
            epsilon,
            delta,
        } => {
            let set = conn
                .admin()
                .await?
                .set_dataset_budget(pb::SetDatasetBudgetRequest {
                    dataset,
                    epsilon,
                    delta,
                })
                .await?
                .into_inner();
            print(&[set], Format::Table);
        }
        Command::Device {
            conn,
            metric,
            window_epsilon,
            window_seconds,
            lifetime_epsilon,
        } => {
            conn.admin()
                .await?
                .set_device_budget(pb::SetDeviceBudgetRequest {
                    metric: metric.clone(),
                    window_epsilon,
                    window_seconds,
                    lifetime_epsilon,
                })
                .await?;
            println!(
                "device budget of {metric}: {window_epsilon} per {window_seconds} s, lifetime {lifetime_epsilon}"
            );
        }
        Command::Record {
            conn,
            id,
            dataset,
            mechanism,
            epsilon,
            noise_multiplier,
            sample_rate,
            steps,
            delta,
            parameters,
        } => {
            use pb::record_release_request::Accounting;
            let accounting = match (epsilon, noise_multiplier, sample_rate, steps) {
                (Some(epsilon), None, None, None) => Accounting::Pure(pb::PureRelease { epsilon }),
                (None, Some(noise_multiplier), Some(sample_rate), Some(steps)) => {
                    Accounting::SubsampledGaussian(pb::SubsampledGaussianRelease {
                        noise_multiplier,
                        sample_rate,
                        steps,
                        delta,
                    })
                }
                _ => anyhow::bail!(
                    "give --epsilon, or --noise-multiplier, --sample-rate and --steps"
                ),
            };
            let request = pb::RecordReleaseRequest {
                id,
                dataset,
                mechanism,
                parameters_json: parameters,
                accounting: Some(accounting),
            };
            let after = record(&conn, request).await?;
            print(&[after], Format::Table);
        }
    }
    Ok(())
}

/// The ledger entry of central Naive Bayes (`ldp train --model nb --privacy
/// central`): discrete Laplace counts over every Adult attribute, at the
/// epsilon the sampler actually implements ([`DiscreteLaplace::for_counts`]).
/// Record it with [`record`] *before* training; publish only if it is admitted.
pub fn central_nb_release(
    id: &str,
    dataset: &str,
    epsilon: f64,
) -> anyhow::Result<pb::RecordReleaseRequest> {
    let attributes = u32::try_from(NbAttribute::all().len())?;
    let lap = DiscreteLaplace::for_counts(attributes, epsilon)?;
    Ok(pb::RecordReleaseRequest {
        id: id.into(),
        dataset: dataset.into(),
        mechanism: "laplace_counts".into(),
        parameters_json: json!({
            "model": "naive_bayes",
            "noise": "discrete_laplace",
            "sensitivity": attributes,
            "scale": lap.scale(),
        })
        .to_string(),
        accounting: Some(pb::record_release_request::Accounting::Pure(
            pb::PureRelease {
                epsilon: lap.epsilon(attributes),
            },
        )),
    })
}

/// The ledger entry of DP-SGD (`ldp train --model logreg --privacy central`):
/// the noise multiplier [`dpsgd::train`] will use, from the same RDP noise
/// search, with the sampling rate and step count of `params`. Record it with
/// [`record`] *before* training; publish only if it is admitted.
pub fn dp_sgd_release(
    id: &str,
    dataset: &str,
    params: &dpsgd::Params,
    epsilon: f64,
    delta: f64,
) -> anyhow::Result<pb::RecordReleaseRequest> {
    let steps = params.steps();
    let sigma = rdp::noise_multiplier_for_target(
        epsilon,
        delta,
        params.sample_rate,
        steps,
        &rdp::default_orders(),
    )?
    .noise_multiplier;
    Ok(pb::RecordReleaseRequest {
        id: id.into(),
        dataset: dataset.into(),
        mechanism: "dp_sgd".into(),
        parameters_json: json!({
            "model": "logistic_regression",
            "clip_norm": params.clip_norm,
            "epochs": params.epochs,
            "lr": params.lr,
            "target_epsilon": epsilon,
        })
        .to_string(),
        accounting: Some(pb::record_release_request::Accounting::SubsampledGaussian(
            pb::SubsampledGaussianRelease {
                noise_multiplier: sigma,
                sample_rate: params.sample_rate,
                steps,
                delta,
            },
        )),
    })
}

/// Records a central release through `Admin.RecordRelease`; an error (e.g.
/// `FAILED_PRECONDITION`, over budget) means it must not be published.
pub async fn record(
    conn: &ConnectArgs,
    request: pb::RecordReleaseRequest,
) -> anyhow::Result<pb::DatasetBudget> {
    let id = request.id.clone();
    Ok(conn
        .admin()
        .await?
        .record_release(request)
        .await
        .with_context(|| format!("recording release {id:?}"))?
        .into_inner())
}

fn spent_text(d: &pb::DatasetBudget) -> String {
    if d.spent_bounded {
        format!("{:.6}", d.spent_epsilon)
    } else {
        "unbounded".into()
    }
}

fn print(datasets: &[pb::DatasetBudget], format: Format) {
    match format {
        Format::Json => {
            let all: Vec<_> = datasets.iter().map(to_json).collect();
            println!("{}", serde_json::Value::Array(all));
        }
        Format::Csv => {
            println!(
                "dataset,budget_epsilon,budget_delta,spent_epsilon,spent_delta,tightest,releases"
            );
            for d in datasets {
                println!(
                    "{},{},{},{},{},{},{}",
                    d.dataset,
                    d.budget_epsilon,
                    d.budget_delta,
                    spent_text(d),
                    d.spent_delta,
                    d.tightest_method,
                    d.releases.len()
                );
            }
        }
        Format::Table => {
            if datasets.is_empty() {
                println!("no data set has a budget or a release");
            }
            for d in datasets {
                let budget = if d.has_budget {
                    format!("epsilon {} at delta {}", d.budget_epsilon, d.budget_delta)
                } else {
                    "none (releases are refused)".into()
                };
                println!("data set {}: budget {budget}", d.dataset);
                println!(
                    "spent: epsilon {} at delta {} (tightest: {})",
                    spent_text(d),
                    d.spent_delta,
                    if d.tightest_method.is_empty() {
                        "none"
                    } else {
                        &d.tightest_method
                    }
                );
                let mut methods = Table::new();
                methods.set_header(["method", "total epsilon"]);
                for t in &d.totals {
                    let total = if t.applicable {
                        format!("{:.6}", t.epsilon)
                    } else {
                        format!("n/a: {}", t.not_applicable_reason)
                    };
                    methods.add_row([t.method.clone(), total]);
                }
                println!("{methods}");
                let mut releases = Table::new();
                releases.set_header(["release", "mechanism", "epsilon", "delta", "parameters"]);
                for r in &d.releases {
                    releases.add_row([
                        r.id.clone(),
                        r.mechanism.clone(),
                        format!("{:.6}", r.epsilon),
                        format!("{:e}", r.delta),
                        r.parameters_json.clone(),
                    ]);
                }
                println!("{releases}\n");
            }
        }
    }
}

fn to_json(d: &pb::DatasetBudget) -> serde_json::Value {
    json!({
        "dataset": d.dataset,
        "budget": d.has_budget.then(|| json!({"epsilon": d.budget_epsilon, "delta": d.budget_delta})),
        "spent": {
            "epsilon": d.spent_bounded.then_some(d.spent_epsilon),
            "delta": d.spent_delta,
            "tightest": d.tightest_method,
            "methods": d.totals.iter().map(|t| json!({
                "method": t.method,
                "epsilon": t.applicable.then_some(t.epsilon),
                "not_applicable": (!t.applicable).then_some(&t.not_applicable_reason),
            })).collect::<Vec<_>>(),
        },
        "releases": d.releases.iter().map(|r| json!({
            "id": r.id,
            "mechanism": r.mechanism,
            "epsilon": r.epsilon,
            "delta": r.delta,
            "rdp_curve": r.has_rdp_curve,
            "parameters": serde_json::from_str::<serde_json::Value>(&r.parameters_json)
                .unwrap_or(serde_json::Value::String(r.parameters_json.clone())),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::budget::release_from_proto;

    /// The recorded DP-SGD release is accounted at no more than the target
    /// epsilon (the noise search never undershoots sigma), and central NB at
    /// the epsilon the sampler implements, never above the requested one.
    #[test]
    fn training_releases_account_at_most_the_target() {
        let params = dpsgd::Params::default();
        let sgd =
            release_from_proto(dp_sgd_release("s", "adult", &params, 1.0, 1e-5).unwrap()).unwrap();
        assert!(sgd.guarantee.epsilon <= 1.0 && sgd.guarantee.epsilon > 0.99);
        assert_eq!(sgd.guarantee.delta, 1e-5);
        assert_eq!(sgd.parameters["steps"], params.steps());
        let nb = release_from_proto(central_nb_release("n", "adult", 0.3).unwrap()).unwrap();
        assert!(nb.guarantee.epsilon <= 0.3 && nb.guarantee.epsilon > 0.3 - 1e-5);
        assert_eq!(nb.guarantee.delta, 0.0);
    }
}
