//! The exact (epsilon, delta) curve of the Gaussian mechanism without subsampling
//! (Balle & Wang 2018, "Improving the Gaussian Mechanism for Differential Privacy:
//! Analytical Calibration and Optimal Denoising", Theorem 8).
//!
//! With sensitivity 1 and noise N(0, sigma^2), the mechanism is (epsilon, delta)-DP
//! if and only if
//! `Phi(1/(2 sigma) - epsilon sigma) - e^epsilon Phi(-1/(2 sigma) - epsilon sigma) <= delta`.
//! T compositions of it are exactly one Gaussian with sigma / sqrt(T) (the privacy
//! loss is Gaussian and adds), so this is the exact answer for DP-SGD with q = 1,
//! which RDP can only upper-bound.
//!
//! [`analytic_gaussian_epsilon`] bisects for the smallest epsilon meeting delta,
//! evaluating the left side in log space, and rounds up: it moves its upper end only
//! to points whose computed delta is below `delta (1 - 1e-9)` (the log-space
//! evaluation errs by ~1e-13 relative) and adds 1e-9 relative,
//! so the result is never below the exact epsilon (it matches Google's
//! dp-accounting to ~1e-9 relative on `tests/data/accounting/dpsgd_epsilon.csv`).

use super::{AccountantError, Result, check_delta, check_epsilon, log_half_erfc, smallest_epsilon};

/// `log Phi(x)` for the standard normal CDF, accurate far into the lower tail.
fn log_ndtr(x: f64) -> f64 {
    log_half_erfc(-x / std::f64::consts::SQRT_2)
}

/// The exact delta of the Gaussian mechanism (sensitivity 1, noise `sigma`) at `epsilon`.
pub fn analytic_gaussian_delta(sigma: f64, epsilon: f64) -> Result<f64> {
    check_epsilon("sigma", sigma)?;
    if !(epsilon.is_finite() && epsilon >= 0.0) {
        return Err(AccountantError::InvalidParameter {
            name: "epsilon",
            reason: format!("{epsilon} must be finite and >= 0"),
        });
    }
    let a = 0.5 / sigma;
    let b = epsilon * sigma;
    let first = log_ndtr(a - b);
    let second = epsilon + log_ndtr(-a - b);
    // first >= second always (delta >= 0); rounding may cross at delta ~ 0.
    if second >= first {
        return Ok(0.0);
    }
    Ok(first.exp() * (-(second - first).exp()).ln_1p().exp())
}

/// The smallest epsilon (rounded up) at which the Gaussian mechanism with noise
/// `sigma` (sensitivity 1) is (epsilon, delta)-DP; `steps` compositions use
/// `sigma / sqrt(steps)`.
pub fn analytic_gaussian_epsilon(sigma: f64, steps: u64, delta: f64) -> Result<f64> {
    check_epsilon("sigma", sigma)?;
    check_delta(delta)?;
    if steps == 0 {
        return Ok(0.0);
    }
    let s = sigma / (steps as f64).sqrt();
    let target = delta * (1.0 - 1e-9);
    // Bracket: delta(eps) decreases to 0; grow hi until it meets the target.
    let mut hi = 1.0;
    while analytic_gaussian_delta(s, hi)? > target {
        hi *= 2.0;
        if hi > 1e12 {
            return Err(AccountantError::Numerical(format!(
                "no epsilon up to 1e12 meets delta {delta} for sigma {s}"
            )));
        }
    }
    smallest_epsilon(0.0, hi, target, |eps| analytic_gaussian_delta(s, eps))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_decreases_and_epsilon_rounds_up() {
        let mut prev = 1.0;
        for k in 0..50 {
            let d = analytic_gaussian_delta(1.0, f64::from(k) * 0.2).unwrap();
            assert!(d <= prev && d >= 0.0);
            prev = d;
        }
        let eps = analytic_gaussian_epsilon(1.0, 1, 1e-5).unwrap();
        assert!(analytic_gaussian_delta(1.0, eps).unwrap() <= 1e-5);
        assert!(analytic_gaussian_epsilon(0.0, 1, 1e-5).is_err());
        assert!(analytic_gaussian_epsilon(1.0, 1, 0.0).is_err());
    }
}
