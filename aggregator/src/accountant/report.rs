//! The privacy report an auditor reads (`ldp privacy-report`): every metric with
//! its mechanism, parameters, epsilon per report, eps_inf and device budgets, and
//! every central release with its accountant, parameters and (epsilon, delta),
//! with each data set's budget and spend under every composition method.
//!
//! This module builds the report from values the caller loaded from the database
//! (metric specs as stored, the [`PrivacyLedger`] as stored) and renders it as
//! JSON and as a self-contained HTML page; it reads no configuration and does no
//! I/O, so what it shows is what the server recorded.
//!
//! eps_inf (the privacy loss of any number of reports of one unchanged value):
//! - RAPPOR: the memoized PRR's `2 h ln((1 - f/2)/(f/2))` (Erlingsson et al. 2014);
//! - other memoized metrics: the memoized response's epsilon per report;
//! - not memoized: every report composes, so only the device's lifetime budget
//!   bounds it (shown when known, otherwise "unbounded").

use ldp_sdk::budget::BudgetPolicy;
use ldp_sdk::mechanism::{Mechanism, MechanismSpec};
use ldp_sdk::metric::MetricSpec;
use serde::{Deserialize, Serialize};

use super::Result;
use super::composition::DpGuarantee;
use super::ledger::{Budget, PrivacyLedger, Spent};
use crate::report::escape;

/// One metric's local privacy guarantee.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricPrivacy {
    /// Metric name.
    pub name: String,
    /// Metric id.
    pub metric_id: u32,
    /// Parameter version.
    pub version: u32,
    /// The mechanism and its public parameters.
    pub mechanism: MechanismSpec,
    /// Epsilon of one report (local DP, pure).
    pub epsilon_per_report: f64,
    /// Whether devices memoize their response per value.
    pub memoized: bool,
    /// Privacy loss of any number of reports of one unchanged value, if bounded.
    pub eps_inf: Option<f64>,
    /// Where `eps_inf` comes from.
    pub eps_inf_basis: String,
    /// Collection epoch length in seconds (0 = one epoch).
    pub epoch_seconds: u64,
    /// The device budget for the metric, when the server knows it.
    pub device_budget: Option<BudgetPolicy>,
    /// The most fresh reports a device enforcing `device_budget` sends per
    /// epoch ([`BudgetPolicy::max_reports`]); `None` without a budget.
    pub reports_per_device: Option<u64>,
}

/// One central release, as the report shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseSummary {
    /// Release id.
    pub id: String,
    /// Mechanism.
    pub mechanism: String,
    /// Mechanism parameters.
    pub parameters: serde_json::Value,
    /// How its own guarantee was accounted.
    pub accountant: String,
    /// Its own (epsilon, delta).
    pub guarantee: DpGuarantee,
}

/// One data set's central privacy: budget, spend and releases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetPrivacy {
    /// Data set name.
    pub name: String,
    /// Its budget, if it has one.
    pub budget: Option<Budget>,
    /// The spend at the budget's delta (or 1e-5 without a budget), every method.
    pub spent: Spent,
    /// The releases, in order.
    pub releases: Vec<ReleaseSummary>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrivacyReport {
    /// When it was generated (seconds since the Unix epoch).
    pub generated_at: i64,
    /// Local (per-device) guarantees, one entry per metric version.
    pub metrics: Vec<MetricPrivacy>,
    /// Central (trusted-curator) releases, per data set.
    pub datasets: Vec<DatasetPrivacy>,
}

/// Delta used to report spend on a data set without a budget.
const DEFAULT_REPORT_DELTA: f64 = 1e-5;

impl PrivacyReport {
    /// Builds the report from stored metric specs (each with the device budget
    /// the server knows for it, if any) and the stored ledger.
    pub fn build(
        metrics: &[(MetricSpec, Option<BudgetPolicy>)],
        ledger: &PrivacyLedger,
        generated_at: i64,
    ) -> Result<Self> {
        let metrics = metrics
            .iter()
            .map(|(spec, budget)| MetricPrivacy::of(spec, *budget))
            .collect();
        let mut datasets = Vec::new();
        for name in ledger.datasets() {
            let budget = ledger.budget(&name);
            let delta = budget.map_or(DEFAULT_REPORT_DELTA, |b| b.delta);
            let releases = ledger
                .releases(&name)
                .map(|r| ReleaseSummary {
                    id: r.id.clone(),
                    mechanism: r.mechanism.clone(),
                    parameters: r.parameters.clone(),
                    accountant: match (&r.rdp, r.guarantee.delta > 0.0) {
                        (Some(c), _) => {
                            format!("rdp ({} orders) + own (epsilon, delta)", c.orders().len())
                        }
                        (None, true) => "(epsilon, delta) as declared".into(),
                        (None, false) => "pure epsilon-DP".into(),
                    },
                    guarantee: r.guarantee,
                })
                .collect();
            datasets.push(DatasetPrivacy {
                spent: ledger.spent(&name, delta)?,
                name,
                budget,
                releases,
            });
        }
        Ok(Self {
            generated_at,
            metrics,
            datasets,
        })
    }

    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report contains only serializable values")
    }

    /// The report as a self-contained HTML page (every value escaped).
    pub fn to_html(&self) -> String {
        let mut h = String::from(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>ldp privacy report</title>\n\
             <style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:2em}\
             td,th{border:1px solid #999;padding:4px 8px;text-align:left;vertical-align:top}\
             th{background:#eee}code{font-size:90%}</style></head><body>\n",
        );
        h += "<h1>Privacy report</h1>\n";
        h += &format!(
            "<p>Generated at {} ({} Unix seconds), from the server's database. Epoch 0 \
             seconds means one collection epoch forever.</p>\n",
            utc_text(self.generated_at),
            self.generated_at
        );
        h += "<h2>Local differential privacy (per device)</h2>\n<table><tr><th>Metric</th><th>Version</th>\
              <th>Mechanism and parameters</th><th>&epsilon; per report</th><th>Memoized</th>\
              <th>&epsilon;<sub>&infin;</sub></th><th>Epoch (s)</th><th>Device budget</th></tr>\n";
        for m in &self.metrics {
            let budget = m.device_budget.map_or("not recorded".to_owned(), |b| {
                format!(
                    "{} per {} s, lifetime {}; at most {} fresh reports per device per epoch",
                    b.window_epsilon,
                    b.window_seconds,
                    b.lifetime_epsilon,
                    m.reports_per_device.unwrap_or(0)
                )
            });
            h += &format!(
                "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{} <br><small>{}</small></td><td>{}</td><td>{}</td></tr>\n",
                escape(&m.name),
                m.version,
                escape(&serde_json::to_string(&m.mechanism).unwrap_or_default()),
                m.epsilon_per_report,
                if m.memoized { "yes" } else { "no" },
                m.eps_inf
                    .map_or("unbounded".to_owned(), |e| format!("{e:.6}")),
                escape(&m.eps_inf_basis),
                m.epoch_seconds,
                escape(&budget),
            );
        }
        h += "</table>\n<h2>Central differential privacy (trusted curator)</h2>\n";
        if self.datasets.is_empty() {
            h += "<p>No central releases.</p>\n";
        }
        for d in &self.datasets {
            h += &format!("<h3>Data set {}</h3>\n", escape(&d.name));
            h += &match d.budget {
                Some(b) => format!(
                    "<p>Budget: &epsilon; = {} at &delta; = {}.</p>\n",
                    b.epsilon, b.delta
                ),
                None => "<p>No budget: releases are refused.</p>\n".to_owned(),
            };
            h += &format!(
                "<p>Spent at &delta; = {}: <b>&epsilon; = {}</b> ({}, tightest valid method).</p>\n",
                d.spent.delta,
                d.spent
                    .epsilon
                    .map_or("unbounded".to_owned(), |e| format!("{e:.6}")),
                d.spent
                    .tightest
                    .map_or("none".to_owned(), |m| format!("{m:?}")),
            );
            h += "<table><tr><th>Composition method</th><th>Total &epsilon;</th></tr>\n";
            for m in &d.spent.methods {
                let total = match (m.epsilon, &m.not_applicable) {
                    (Some(e), _) => format!("{e:.6}"),
                    (None, Some(why)) => format!("not applicable: {why}"),
                    (None, None) => "not applicable".to_owned(),
                };
                h += &format!(
                    "<tr><td>{:?}</td><td>{}</td></tr>\n",
                    m.method,
                    escape(&total)
                );
            }
            h += "</table>\n<table><tr><th>Release</th><th>Mechanism</th><th>Parameters</th>\
                  <th>Accountant</th><th>&epsilon;</th><th>&delta;</th></tr>\n";
            for r in &d.releases {
                h += &format!(
                    "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{:.6}</td><td>{}</td></tr>\n",
                    escape(&r.id),
                    escape(&r.mechanism),
                    escape(&r.parameters.to_string()),
                    escape(&r.accountant),
                    r.guarantee.epsilon,
                    r.guarantee.delta,
                );
            }
            h += "</table>\n";
        }
        h += "</body></html>\n";
        h
    }
}

impl MetricPrivacy {
    /// The local guarantee of a stored metric (see the module doc for eps_inf);
    /// the server's estimate responses use the same values.
    pub fn of(spec: &MetricSpec, device_budget: Option<BudgetPolicy>) -> Self {
        metric_privacy(spec, device_budget)
    }
}

fn metric_privacy(spec: &MetricSpec, device_budget: Option<BudgetPolicy>) -> MetricPrivacy {
    let eps = spec.epsilon.get();
    let rappor_inf = match spec.mechanism() {
        Ok(Mechanism::Rappor(r)) => Some(r.params().epsilon_inf()),
        _ => None,
    };
    let (eps_inf, basis) = match (rappor_inf, spec.memoize, device_budget) {
        (Some(inf), _, _) => (
            Some(inf),
            "RAPPOR memoized PRR, per distinct value".to_owned(),
        ),
        (None, true, _) => (
            Some(eps),
            "memoized response, per distinct value".to_owned(),
        ),
        (None, false, Some(b)) => (
            Some(b.lifetime_epsilon),
            "not memoized: reports compose up to the device lifetime budget".to_owned(),
        ),
        (None, false, None) => (None, "not memoized: every report composes".to_owned()),
    };
    MetricPrivacy {
        name: spec.name.clone(),
        metric_id: spec.metric_id,
        version: spec.version,
        mechanism: spec.mechanism.clone(),
        epsilon_per_report: eps,
        memoized: spec.memoize || rappor_inf.is_some(),
        eps_inf,
        eps_inf_basis: basis,
        epoch_seconds: spec.epoch_seconds,
        device_budget,
        reports_per_device: device_budget.map(|b| b.max_reports(eps, spec.epoch_seconds)),
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` for Unix seconds (proleptic Gregorian calendar,
/// days-from-civil inverted as in H. Hinnant's date algorithms).
fn utc_text(unix: i64) -> String {
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3_600,
        secs % 3_600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accountant::ledger::Release;
    use crate::accountant::rdp::SubsampledGaussian;
    use ldp_sdk::Epsilon;
    use serde_json::json;

    #[test]
    fn report_lists_metrics_and_releases() {
        let grr = MetricSpec::new(
            "color<script>",
            Epsilon::new(1.0).unwrap(),
            MechanismSpec::Grr { domain_size: 4 },
        );
        let mut memo = grr.clone();
        memo.name = "color_memo".into();
        memo.memoize = true;
        let budget = BudgetPolicy::new(2.0, 86_400, 20.0).unwrap();
        let mut ledger = PrivacyLedger::default();
        ledger
            .set_budget("adult", Budget::new(2.0, 1e-5).unwrap())
            .unwrap();
        ledger
            .record(
                Release::pure("nb", "adult", "laplace_counts", 1.0, json!({"scale": 2.0})).unwrap(),
            )
            .unwrap();
        let mech = SubsampledGaussian::new(5.0, 0.01).unwrap();
        ledger
            .record(
                Release::subsampled_gaussian("sgd", "adult", "dp_sgd", mech, 100, 1e-5, json!({}))
                    .unwrap(),
            )
            .unwrap();
        let report =
            PrivacyReport::build(&[(grr, Some(budget)), (memo, None)], &ledger, 1_700_000_000)
                .unwrap();
        assert_eq!(report.metrics[0].eps_inf, Some(20.0));
        assert_eq!(report.metrics[1].eps_inf, Some(1.0));
        assert_eq!(report.datasets.len(), 1);
        assert_eq!(report.datasets[0].releases.len(), 2);
        let spent = report.datasets[0].spent.epsilon.unwrap();
        assert!(spent <= 2.0 && spent > 1.0);
        let json = report.to_json();
        assert_eq!(
            serde_json::from_str::<PrivacyReport>(&json).unwrap(),
            report
        );
        let html = report.to_html();
        assert!(html.contains("color&lt;script&gt;") && !html.contains("<script>"));
        assert!(html.contains("dp_sgd") && html.contains("laplace_counts"));
    }

    #[test]
    fn utc_text_matches_known_dates() {
        assert_eq!(utc_text(0), "1970-01-01 00:00:00 UTC");
        // 2000-02-29 (a leap day of a century leap year) 12:34:56.
        assert_eq!(utc_text(951_827_696), "2000-02-29 12:34:56 UTC");
        // 2026-12-03 16:04:12, the start of this work session.
        assert_eq!(utc_text(1_796_313_852), "2026-12-03 16:04:12 UTC");
        assert_eq!(utc_text(-1), "1969-12-31 23:59:59 UTC");
    }
}
