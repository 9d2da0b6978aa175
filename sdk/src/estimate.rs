//! Sufficient statistics and estimates.
//!
//! [`Stats`] is what the aggregator keeps per (metric version, epoch): its size is
//! fixed by the mechanism ([`crate::mechanism::Mechanism::stats_len`]) and never
//! grows with the number of reports. Estimators turn it into [`Estimate`]s: an
//! unbiased point estimate and its standard error from the mechanism's closed-form
//! variance.
//!
//! Layout of [`Stats`] per mechanism (length of `counts` in parentheses):
//!
//! | mechanism | `counts` | `sum`, `sum_sq` |
//! |-----------|----------|-----------------|
//! | Binary, GRR | reports per value (d) | unused |
//! | SUE, OUE | reports with bit i set (d) | unused |
//! | OLH | reports per (seed s, bucket b), index `s * g + b` (S g) | unused |
//! | Hadamard | reports per (coefficient j, sign), index `2 j + positive` (2D) | unused |
//! | Laplace, Duchi, Piecewise, Hybrid | none (0) | of the reported values, metric scale |
//!
//! Frequency estimates carry the standard error of the closed-form variance with
//! the estimate plugged in for the unknown true count. Means carry the standard
//! error from the sample variance of the reports (see
//! [`crate::mechanism::numeric`] for why).

use serde::{Deserialize, Serialize};

/// Aggregated sufficient statistics of one mechanism: a report count, a fixed
/// number of integer counters (per value, per bit, per (seed, bucket), ...) and,
/// for numeric mechanisms, the sum and sum of squares of the reported values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Number of reports aggregated.
    pub reports: u64,
    /// Mechanism-defined counters; the length is `Mechanism::stats_len()`.
    pub counts: Vec<u64>,
    /// Sum of numeric report values (numeric mechanisms only).
    pub sum: f64,
    /// Sum of squared numeric report values (numeric mechanisms only).
    pub sum_sq: f64,
}

impl Stats {
    /// Empty statistics with `cells` counters.
    pub fn new(cells: usize) -> Self {
        Self {
            counts: vec![0; cells],
            ..Self::default()
        }
    }

    /// Adds `other` into `self` (pooling epochs, applying a batch delta).
    /// Counter vectors of different lengths, or a counter overflow, are an
    /// error (and leave `self` unchanged), never a silent truncation or wrap.
    pub fn merge(&mut self, other: &Stats) -> crate::Result<()> {
        if self.counts.len() != other.counts.len() {
            return Err(crate::Error::StatsMismatch(format!(
                "cannot merge {} counters into {}",
                other.counts.len(),
                self.counts.len()
            )));
        }
        // Check every addition first so that an overflow leaves `self` unchanged.
        let overflow = || crate::Error::StatsMismatch("counter overflow".into());
        let reports = self
            .reports
            .checked_add(other.reports)
            .ok_or_else(overflow)?;
        if self
            .counts
            .iter()
            .zip(&other.counts)
            .any(|(a, b)| a.checked_add(*b).is_none())
        {
            return Err(overflow());
        }
        self.reports = reports;
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.sum += other.sum;
        self.sum_sq += other.sum_sq;
        Ok(())
    }
}

/// An unbiased estimate with its standard error.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The unbiased point estimate (a count for frequency oracles, a mean for numeric).
    pub value: f64,
    /// Standard error, from the mechanism's variance formula.
    pub std_error: f64,
}

impl Estimate {
    /// Two-sided normal confidence interval at level `confidence` in (0, 1).
    pub fn interval(&self, confidence: f64) -> (f64, f64) {
        let z = normal_quantile(0.5 + confidence / 2.0);
        (
            self.value - z * self.std_error,
            self.value + z * self.std_error,
        )
    }
}

/// Quantile function of the standard normal distribution (P. J. Acklam's
/// rational approximation; relative error below 1.15e-9 on (0, 1)).
pub fn normal_quantile(p: f64) -> f64 {
    if !(p > 0.0 && p < 1.0) {
        return if p <= 0.0 {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        };
    }
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let p_low = 0.02425;
    if p < p_low {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - p_low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    }
}

/// Norm-Sub consistency post-processing: the closest vector (by shifting all
/// positive entries by one constant) that is non-negative and sums to `total`.
/// Reported beside the unbiased estimates, never instead of them.
pub fn norm_sub(estimates: &[f64], total: f64) -> Vec<f64> {
    if estimates.is_empty() {
        return Vec::new();
    }
    let mut sorted: Vec<f64> = estimates
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .collect();
    sorted.sort_by(|a, b| b.total_cmp(a));
    // Find the shift delta such that sum(max(x - delta, 0)) = total.
    let mut prefix = 0.0;
    let mut delta = 0.0;
    for (i, &x) in sorted.iter().enumerate() {
        prefix += x;
        let candidate = (prefix - total) / (i + 1) as f64;
        let next = sorted.get(i + 1).copied().unwrap_or(f64::NEG_INFINITY);
        if candidate >= next {
            delta = candidate;
            break;
        }
        delta = candidate;
    }
    estimates.iter().map(|&x| (x - delta).max(0.0)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_quantile_matches_known_values() {
        // Reference values of the standard normal quantile; Acklam's relative
        // error bound is 1.15e-9.
        assert!((normal_quantile(0.975) - 1.959_963_984_540_054).abs() < 3e-9);
        assert_eq!(normal_quantile(0.5), 0.0);
        assert!((normal_quantile(0.001) + 3.090_232_306_167_813).abs() < 4e-9);
        assert!((normal_quantile(0.9999) - 3.719_016_485_455_68).abs() < 5e-9);
        assert_eq!(normal_quantile(0.0), f64::NEG_INFINITY);
        assert_eq!(normal_quantile(1.0), f64::INFINITY);
    }

    #[test]
    fn norm_sub_is_nonnegative_and_sums_to_total() {
        let out = norm_sub(&[50.0, -10.0, 30.0, 5.0], 80.0);
        assert!(out.iter().all(|&x| x >= 0.0));
        assert!((out.iter().sum::<f64>() - 80.0).abs() < 1e-9);
        // Order is preserved.
        assert!(out[0] > out[2] && out[2] > out[3]);
    }
}
