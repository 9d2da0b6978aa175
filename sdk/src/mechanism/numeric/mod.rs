//! Numeric mechanisms: a value x on a declared range [lo, hi] is randomized into
//! an unbiased report on the metric's own scale.
//!
//! - [`laplace`]: discrete Laplace noise on a power-of-two grid (floating-point safe);
//! - [`duchi`]: Duchi, Jordan, Wainwright's two-output mechanism;
//! - [`piecewise`]: Wang et al.'s Piecewise mechanism, sampled on a fixed grid;
//! - [`hybrid`]: Wang et al.'s mixture of the two previous ones.
//!
//! Duchi, Piecewise and Hybrid work on t = (x - mid) / half in [-1, 1], where
//! mid = (lo + hi) / 2 and half = (hi - lo) / 2, and report mid + half * y for
//! an unbiased y. Values outside [lo, hi] are rejected with a typed error (never
//! clamped); NaN and infinities are always rejected.
//!
//! # Statistics and the standard error of a mean
//! Every numeric mechanism aggregates `reports`, `sum` and `sum_sq` of the
//! reported values (no counters): the mean estimate is `sum / n`, unbiased. Its
//! standard error is `sqrt(s^2 / n)` with s^2 the sample variance from `sum_sq`.
//! Users hold different values, so the per-report variance differs between
//! users; the sample variance estimates the average per-report variance plus the
//! spread of the true values, which is exactly the variance of one report of a
//! randomly drawn user: the SE is consistent for the population mean under
//! random sampling of users (and conservative for the mean of the fixed users).
//! With a single report the mechanism's worst-case closed-form variance is used.

pub mod duchi;
pub mod hybrid;
pub mod laplace;
pub mod piecewise;

use crate::estimate::{Estimate, Stats};
use crate::{Error, Result};

/// A validated range [lo, hi] with lo < hi and both within
/// [`Range::MAX_ABS`] in magnitude.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    lo: f64,
    hi: f64,
    mid: f64,
    half: f64,
}

impl Range {
    /// The largest magnitude of a bound: 2^53, beyond which doubles no longer
    /// hold every integer. It keeps the server's running sums of reports and
    /// of their squares far from the float range (a report is the range
    /// scaled by at most ~2/epsilon), which PostgreSQL refuses to overflow.
    pub const MAX_ABS: f64 = 9_007_199_254_740_992.0;

    /// Validates the bounds.
    pub fn new(lo: f64, hi: f64) -> Result<Self> {
        if !lo.is_finite() {
            return Err(Error::NotFinite(lo));
        }
        if !hi.is_finite() {
            return Err(Error::NotFinite(hi));
        }
        if lo.abs() > Self::MAX_ABS || hi.abs() > Self::MAX_ABS {
            return Err(Error::InvalidParameter {
                name: "range",
                reason: format!("[{lo}, {hi}]: bounds must lie within ±2^53"),
            });
        }
        let width = hi - lo;
        if !(width > 0.0 && width.is_finite()) {
            return Err(Error::InvalidParameter {
                name: "range",
                reason: format!("[{lo}, {hi}] must have lo < hi and a finite width"),
            });
        }
        Ok(Self {
            lo,
            hi,
            mid: lo + width / 2.0,
            half: width / 2.0,
        })
    }

    /// Lower bound.
    pub fn lo(&self) -> f64 {
        self.lo
    }

    /// Upper bound.
    pub fn hi(&self) -> f64 {
        self.hi
    }

    /// Half the width: one unit of the [-1, 1] scale on the metric's scale.
    pub fn half(&self) -> f64 {
        self.half
    }

    /// Checks `x` is finite and within [lo, hi].
    pub fn check(&self, x: f64) -> Result<()> {
        if !x.is_finite() {
            return Err(Error::NotFinite(x));
        }
        if x < self.lo || x > self.hi {
            return Err(Error::InvalidParameter {
                name: "value",
                reason: format!("{x} outside [{}, {}]", self.lo, self.hi),
            });
        }
        Ok(())
    }

    /// Maps a checked x in [lo, hi] to t in [-1, 1]. The final clamp only
    /// absorbs floating-point rounding of in-range values (at most 1 ulp).
    pub fn to_unit(&self, x: f64) -> Result<f64> {
        self.check(x)?;
        Ok(((x - self.mid) / self.half).clamp(-1.0, 1.0))
    }

    /// Maps t back to the metric's scale: mid + half * t.
    pub fn from_unit(&self, t: f64) -> f64 {
        self.mid + self.half * t
    }

    /// Maps a metric-scale value to the unit scale (no range check).
    pub fn unit_of(&self, value: f64) -> f64 {
        (value - self.mid) / self.half
    }
}

/// The mean estimate from `sum`/`sum_sq` (see the module docs for the SE);
/// `worst_case_variance` is the per-report variance used when n = 1.
pub(crate) fn mean_estimate(stats: &Stats, worst_case_variance: f64) -> Result<Estimate> {
    if stats.reports == 0 {
        return Err(Error::InvalidParameter {
            name: "stats",
            reason: "no reports: the mean is undefined".into(),
        });
    }
    if !(stats.sum.is_finite() && stats.sum_sq.is_finite()) {
        return Err(Error::StatsMismatch(
            "non-finite sum or sum of squares".into(),
        ));
    }
    let n = stats.reports as f64;
    let mean = stats.sum / n;
    let variance = if stats.reports == 1 {
        worst_case_variance
    } else {
        ((stats.sum_sq - stats.sum * mean) / (n - 1.0)).max(0.0)
    };
    Ok(Estimate {
        value: mean,
        std_error: (variance / n).sqrt(),
    })
}
