//! Privacy accounting for central releases: how much (epsilon, delta) the server
//! has spent on a data set, and whether the next release still fits its budget.
//!
//! - [`rdp`]: Rényi DP of the Poisson-subsampled Gaussian mechanism (DP-SGD),
//!   composition over steps, conversion to (epsilon, delta), and a noise-multiplier
//!   search that never returns a sigma whose epsilon exceeds the target.
//! - [`gaussian`]: the exact (epsilon, delta) of the Gaussian mechanism without
//!   subsampling (analytic Gaussian), tighter than RDP for q = 1.
//! - [`composition`]: basic, advanced (Dwork-Rothblum-Vadhan, Kairouz-Oh-Viswanath)
//!   and exact optimal composition of pure-DP mechanisms.
//! - [`ledger`]: the server's record of every central release and the per-data-set
//!   budgets that refuse releases exceeding them; it reports the total under every
//!   valid composition method and uses the tightest.
//! - [`report`]: the auditor's privacy report (JSON and HTML) built from stored
//!   metric specs and the stored ledger.
//!
//! Every number this module reports is an upper bound on the privacy loss: where a
//! computation has to round, it rounds towards larger epsilon.
//!
//! ```
//! use ldp_aggregator::accountant::rdp::{RdpAccountant, SubsampledGaussian, Conversion};
//! let mut acc = RdpAccountant::default();
//! acc.compose(SubsampledGaussian::new(1.1, 0.01)?, 1000)?;
//! let spent = acc.epsilon(1e-5, Conversion::Improved)?;
//! assert!(spent.epsilon > 1.70 && spent.epsilon < 1.72);
//! # Ok::<(), ldp_aggregator::accountant::AccountantError>(())
//! ```

pub mod composition;
pub mod gaussian;
pub mod ledger;
pub mod rdp;
pub mod report;

/// Everything that can go wrong in the accountant.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AccountantError {
    /// A Rényi order was not a finite number strictly greater than 1.
    #[error("invalid rényi order {0}: orders must be finite and > 1")]
    InvalidOrder(f64),
    /// A parameter (noise multiplier, sampling rate, delta, epsilon, ...) is out of range.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter {
        /// The parameter's name.
        name: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// A numerical computation could not produce a trustworthy (conservative) value.
    #[error("numerical failure: {0}")]
    Numerical(String),
    /// The noise-multiplier search found no sigma in its range meeting the target.
    #[error("no noise multiplier up to {max_sigma} reaches epsilon {target_epsilon}")]
    NoiseSearchFailed {
        /// The target epsilon.
        target_epsilon: f64,
        /// The largest sigma tried.
        max_sigma: f64,
    },
    /// The data set has no budget, so no release is allowed on it.
    #[error("data set {0:?} has no privacy budget")]
    NoBudget(String),
    /// The release would make the data set's spent epsilon exceed its budget.
    #[error(
        "release refused on data set {dataset:?}: epsilon would be {would_spend} at delta {delta}, budget is {budget}"
    )]
    BudgetExceeded {
        /// The data set.
        dataset: String,
        /// The tightest total epsilon including the refused release.
        would_spend: f64,
        /// The budget's delta at which epsilon is measured.
        delta: f64,
        /// The budget's epsilon.
        budget: f64,
    },
}

/// Shorthand for results of this module.
pub type Result<T, E = AccountantError> = std::result::Result<T, E>;

/// Validates a delta in (0, 1).
pub(crate) fn check_delta(delta: f64) -> Result<()> {
    if delta.is_finite() && delta > 0.0 && delta < 1.0 {
        Ok(())
    } else {
        Err(AccountantError::InvalidParameter {
            name: "delta",
            reason: format!("{delta} must be in (0, 1)"),
        })
    }
}

/// Validates a finite, strictly positive epsilon.
pub(crate) fn check_epsilon(name: &'static str, eps: f64) -> Result<()> {
    if eps.is_finite() && eps > 0.0 {
        Ok(())
    } else {
        Err(AccountantError::InvalidParameter {
            name,
            reason: format!("{eps} must be finite and > 0"),
        })
    }
}

/// `log(exp(a) + exp(b))` without overflow.
pub(crate) fn log_add(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        return hi;
    }
    hi + (lo - hi).exp().ln_1p()
}

/// `log(erfc(x) / 2)`, accurate far into the tail.
pub(crate) fn log_half_erfc(x: f64) -> f64 {
    if x < 25.0 {
        return (0.5 * statrs::function::erf::erfc(x)).ln();
    }
    // Asymptotic expansion: erfc(x) = exp(-x^2)/(x sqrt(pi)) * (1 - 1/(2x^2) + 3/(2x^2)^2 - ...);
    // at x >= 25 the terms shrink by a factor of at least 1250 / (2k - 1).
    let inv = 1.0 / (2.0 * x * x);
    let (mut sum, mut term) = (1.0, 1.0);
    for k in 1..12 {
        term *= -f64::from(2 * k - 1) * inv;
        sum += term;
    }
    -x * x - x.ln() - 0.5 * std::f64::consts::PI.ln() + sum.ln() - std::f64::consts::LN_2
}

/// The smallest epsilon in `[lo, hi]` whose computed delta is <= `target`, rounded
/// up: the search only moves its upper end to points that meet the target, stops
/// at 1e-12 relative width, and adds 1e-9 relative to the result. `delta_at` must
/// be (up to rounding) decreasing, and `delta_at(hi) <= target` must hold.
pub(crate) fn smallest_epsilon(
    mut lo: f64,
    mut hi: f64,
    target: f64,
    delta_at: impl Fn(f64) -> Result<f64>,
) -> Result<f64> {
    if delta_at(lo)? <= target {
        return Ok(lo);
    }
    for _ in 0..200 {
        if hi - lo <= 1e-12 * hi {
            break;
        }
        let mid = 0.5 * (lo + hi);
        if delta_at(mid)? <= target {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(hi * (1.0 + 1e-9))
}
