//! Estimates for analysts, built from stored statistics with the SDK's math.
//!
//! The aggregator computes nothing itself: point estimates and standard errors
//! come from [`Mechanism::estimate_frequencies`](ldp_sdk::mechanism::Mechanism::estimate_frequencies)
//! and [`Mechanism::estimate_mean`](ldp_sdk::mechanism::Mechanism::estimate_mean),
//! intervals from [`Estimate::interval`], and the consistent column from
//! [`norm_sub`]. This module only assembles the response: per value the
//! unbiased estimate, its standard error, the normal confidence interval, the
//! Norm-Sub consistent estimate beside it (never instead of it), n, and the
//! privacy [`pb::Guarantee`] behind the numbers.

use ldp_proto::v1 as pb;
use ldp_sdk::estimate::{Estimate, Stats, norm_sub};

use crate::accountant::report::MetricPrivacy;
use crate::error::ServiceError;
use crate::registry::Published;

/// Confidence level used when a request leaves it at 0.
pub const DEFAULT_CONFIDENCE: f64 = 0.95;

/// Checks a requested confidence level: 0 means [`DEFAULT_CONFIDENCE`], otherwise in (0, 1).
pub fn confidence(requested: f64) -> Result<f64, ServiceError> {
    if requested == 0.0 {
        return Ok(DEFAULT_CONFIDENCE);
    }
    if requested > 0.0 && requested < 1.0 {
        Ok(requested)
    } else {
        Err(ServiceError::InvalidArgument(format!(
            "confidence {requested} is not in (0, 1)"
        )))
    }
}

/// The local-DP guarantee of a metric's reports. `epsilon_lifetime` is the
/// eps_inf of memoized reports from [`MetricPrivacy::of`] (RAPPOR's PRR bound,
/// or the memoized response's epsilon), 0 when reports are not memoized.
/// `reports_per_device` is the most fresh reports per epoch that the device
/// budget published for the metric lets a device's ledger send
/// ([`ldp_sdk::budget::BudgetPolicy::max_reports`]); 0 (unknown) without one:
/// the server cannot tell devices apart. It holds for devices that run the
/// SDK's ledger and have fetched the current budget (a tightened budget reaches
/// a device at its next connect or budget refresh, hourly by default).
pub fn guarantee(metric: &Published) -> pb::Guarantee {
    let local = MetricPrivacy::of(&metric.spec, metric.device_budget());
    pb::Guarantee {
        epsilon_per_report: local.epsilon_per_report,
        epsilon_lifetime: if local.memoized {
            local.eps_inf.unwrap_or(0.0)
        } else {
            0.0
        },
        reports_per_device: local
            .reports_per_device
            .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
        central_epsilon: 0.0,
        central_delta: 0.0,
        model: "local".into(),
    }
}

/// Frequency estimates of every value of a categorical metric; no values
/// (and `reports` = 0) when there are no reports.
pub fn frequencies(
    metric: &Published,
    stats: &Stats,
    epochs: Vec<u64>,
    confidence: f64,
) -> Result<pb::FrequencyEstimate, ServiceError> {
    let estimates = if stats.reports == 0 {
        // Checks the metric's kind all the same (a numeric metric is refused).
        metric.mechanism.estimate_frequencies(stats)?;
        Vec::new()
    } else {
        metric.mechanism.estimate_frequencies(stats)?
    };
    let unbiased: Vec<f64> = estimates.iter().map(|e| e.value).collect();
    let consistent = norm_sub(&unbiased, stats.reports as f64);
    let values = estimates
        .iter()
        .zip(consistent)
        .enumerate()
        .map(|(i, (e, consistent))| {
            let (ci_low, ci_high) = e.interval(confidence);
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            pb::ValueEstimate {
                value: metric.spec.category_label(index),
                index,
                estimate: e.value,
                std_error: e.std_error,
                ci_low,
                ci_high,
                consistent,
            }
        })
        .collect();
    Ok(pb::FrequencyEstimate {
        metric: Some(metric.proto.clone()),
        reports: stats.reports,
        values,
        guarantee: Some(guarantee(metric)),
        confidence,
        epochs,
    })
}

/// The mean of a numeric metric; `FAILED_PRECONDITION` when there are no
/// reports (the mean is undefined).
pub fn mean(
    metric: &Published,
    stats: &Stats,
    epochs: Vec<u64>,
    confidence: f64,
) -> Result<pb::MeanEstimate, ServiceError> {
    // Only numeric mechanisms keep no counters (`stats_len` 0); RAPPOR has no
    // fixed domain either, but its mean is the wrong kind (INVALID_ARGUMENT).
    if stats.reports == 0 && metric.mechanism.stats_len() == 0 {
        return Err(ServiceError::FailedPrecondition(format!(
            "no reports for metric {:?} version {} in the requested epochs: the mean is undefined",
            metric.spec.name, metric.spec.version
        )));
    }
    let e: Estimate = metric.mechanism.estimate_mean(stats)?;
    let (ci_low, ci_high) = e.interval(confidence);
    Ok(pb::MeanEstimate {
        metric: Some(metric.proto.clone()),
        reports: stats.reports,
        mean: e.value,
        std_error: e.std_error,
        ci_low,
        ci_high,
        guarantee: Some(guarantee(metric)),
        confidence,
        epochs,
    })
}

#[cfg(test)]
mod tests {
    use ldp_sdk::Epsilon;
    use ldp_sdk::mechanism::MechanismSpec;
    use ldp_sdk::metric::MetricSpec;

    use super::*;

    fn published(mechanism: MechanismSpec) -> Published {
        Published::new(MetricSpec::new("m", Epsilon::new(2.0).unwrap(), mechanism)).unwrap()
    }

    /// Regression: the mean of a metric with no reports was FAILED_PRECONDITION
    /// ("the mean is undefined") for every metric without a fixed domain,
    /// RAPPOR included, while the mean of a RAPPOR metric with reports is
    /// INVALID_ARGUMENT (wrong kind). The kind is checked first now.
    #[test]
    fn mean_of_a_categorical_metric_is_the_wrong_kind_with_or_without_reports() {
        let rappor = published(MechanismSpec::Rappor {
            num_bits: 16,
            num_hashes: 2,
            num_cohorts: 4,
            f: 0.5,
            p: 0.5,
            q: 0.75,
        });
        let grr = published(MechanismSpec::Grr { domain_size: 4 });
        for metric in [&rappor, &grr] {
            let empty = metric.mechanism.new_stats();
            let err = mean(metric, &empty, Vec::new(), 0.95).unwrap_err();
            assert!(matches!(err, ServiceError::InvalidArgument(_)), "{err}");
        }
        let duchi = published(MechanismSpec::Duchi { lo: 0.0, hi: 1.0 });
        let err = mean(&duchi, &duchi.mechanism.new_stats(), Vec::new(), 0.95).unwrap_err();
        assert!(matches!(err, ServiceError::FailedPrecondition(_)), "{err}");
    }
}
