//! The Laplace mechanism made floating-point safe: randomized rounding to a
//! power-of-two grid, then exact discrete Laplace noise in grid units.
//!
//! `x + an f64 Laplace sample` leaks x through the low-order bits of the sum
//! (Mironov 2012). Here every report is an integer k and its value is k * gamma
//! with gamma = 2^granularity_log2, so the set of possible outputs does not
//! depend on x.
//!
//! 1. The grid: gamma = 2^granularity_log2, or, when the spec says 0,
//!    2^floor(log2((hi - lo) / 1024)) (about 1024 to 2048 grid steps over the
//!    range). lo is snapped down and hi up to the grid: k_lo = floor(lo/gamma),
//!    k_hi = ceil(hi/gamma), Delta = k_hi - k_lo grid steps (at most 2^32).
//! 2. Randomized rounding: x/gamma = k + r with 0 <= r < 1 becomes k + 1 with
//!    probability r (integer threshold floor(r 2^64)) and k otherwise, so the
//!    rounded value is unbiased (to 2^-64 of a step) and lies in [k_lo, k_hi].
//! 3. Noise: the report is k + Z with Z discrete Laplace,
//!    P(Z = z) proportional to exp(-|z| eps' / Delta), sampled exactly with
//!    integers ([`sampling::discrete_laplace`], Canonne, Kamath, Steinke 2020).
//!    eps' = floor(eps 2^20) / 2^20 <= eps is the rational epsilon implemented.
//!
//! # Privacy
//! Any two inputs round to grid points at most Delta apart, and shifting the
//! centre of the discrete Laplace by Delta changes every output probability by
//! at most exp(eps') <= e^eps: epsilon-LDP per report (the rounding happens
//! before the noise, on the device); nothing is memoized.
//!
//! # Utility
//! Unbiased. Per report, with alpha = exp(-eps'/Delta), on the metric's scale:
//! Var = gamma^2 (2 alpha / (1 - alpha)^2 + r (1 - r)), close to the continuous
//! 2 ((hi' - lo') / eps)^2, i.e. 8 / eps^2 on the [-1, 1] scale.
//!
//! Citation: Dwork, McSherry, Nissim, Smith 2006; Mironov 2012 ("On significance
//! of the least significant bits for differential privacy", CCS); Canonne,
//! Kamath, Steinke 2020 ("The discrete Gaussian for differential privacy").

use crate::estimate::{Estimate, Stats};
use crate::mechanism::limits::check_epsilon;
use crate::mechanism::numeric::{Range, mean_estimate};
use crate::mechanism::sampling;
use crate::{Epsilon, Error, LdpRng, Result};

/// Denominator of the rational epsilon implemented: eps' = floor(eps 2^20) / 2^20.
pub const EPSILON_DENOMINATOR: u64 = 1 << 20;

/// Largest number of grid steps Delta over the range.
pub const MAX_GRID_STEPS: u64 = 1 << 32;

/// Largest |k| of a grid point or report (integers stay exact in an f64).
pub const MAX_GRID_INDEX: i64 = 1 << 52;

/// Discrete Laplace on a power-of-two grid over [lo, hi].
#[derive(Debug, Clone, PartialEq)]
pub struct Laplace {
    range: Range,
    epsilon: Epsilon,
    granularity_log2: i32,
    gamma: f64,
    k_lo: i64,
    k_hi: i64,
    eps_numerator: u64,
}

fn invalid(name: &'static str, reason: String) -> Error {
    Error::InvalidParameter { name, reason }
}

impl Laplace {
    /// Validates the range, epsilon and grid; `granularity_log2 == 0` chooses
    /// 2^floor(log2((hi - lo) / 1024)).
    pub fn new(lo: f64, hi: f64, granularity_log2: i32, epsilon: Epsilon) -> Result<Self> {
        let range = Range::new(lo, hi)?;
        check_epsilon(epsilon)?;
        let g = if granularity_log2 == 0 {
            ((hi - lo) / 1024.0).log2().floor() as i32
        } else {
            granularity_log2
        };
        if !(-1022..=1023).contains(&g) {
            return Err(invalid(
                "granularity_log2",
                format!("2^{g} is not a normal f64"),
            ));
        }
        // Exactly 2^g, built from its exponent bits.
        let gamma = f64::from_bits(((g + 1023) as u64) << 52);
        let (k_lo, k_hi) = ((lo / gamma).floor(), (hi / gamma).ceil());
        let limit = MAX_GRID_INDEX as f64;
        if !(k_lo.abs() <= limit && k_hi.abs() <= limit) {
            return Err(invalid(
                "granularity_log2",
                format!("grid 2^{g} is too fine for [{lo}, {hi}]"),
            ));
        }
        let (k_lo, k_hi) = (k_lo as i64, k_hi as i64);
        if (k_hi - k_lo) as u64 > MAX_GRID_STEPS {
            return Err(invalid(
                "granularity_log2",
                format!("grid 2^{g} gives more than 2^32 steps over [{lo}, {hi}]"),
            ));
        }
        // eps >= 2^-20 (limits), so the numerator is at least 1.
        let eps_numerator = (epsilon.get() * EPSILON_DENOMINATOR as f64) as u64;
        Ok(Self {
            range,
            epsilon,
            granularity_log2: g,
            gamma,
            k_lo,
            k_hi,
            eps_numerator,
        })
    }

    /// Nominal epsilon per report.
    pub fn epsilon(&self) -> Epsilon {
        self.epsilon
    }

    /// The epsilon implemented, floor(eps 2^20) / 2^20 <= epsilon.
    pub fn implemented_epsilon(&self) -> f64 {
        self.eps_numerator as f64 / EPSILON_DENOMINATOR as f64
    }

    /// The declared range.
    pub fn range(&self) -> Range {
        self.range
    }

    /// log2 of the grid step.
    pub fn granularity_log2(&self) -> i32 {
        self.granularity_log2
    }

    /// The grid step gamma (a power of two).
    pub fn granularity(&self) -> f64 {
        self.gamma
    }

    /// Delta: the number of grid steps between the snapped bounds.
    pub fn grid_steps(&self) -> u64 {
        (self.k_hi - self.k_lo) as u64
    }

    /// The snapped bounds (k_lo, k_hi) in grid units.
    pub fn grid_bounds(&self) -> (i64, i64) {
        (self.k_lo, self.k_hi)
    }

    /// The metric-scale value of grid index k: k * gamma (exact).
    pub fn value_of(&self, k: i64) -> f64 {
        k as f64 * self.gamma
    }

    /// Randomizes `x` in [lo, hi] into a grid index.
    pub fn encode(&self, x: f64, rng: &mut LdpRng) -> Result<i64> {
        self.range.check(x)?;
        let y = x / self.gamma;
        let floor = y.floor();
        let up = sampling::coin(rng, sampling::threshold_down(y - floor));
        let k = (floor as i64 + i64::from(up)).clamp(self.k_lo, self.k_hi);
        let t = EPSILON_DENOMINATOR * self.grid_steps();
        let noise = sampling::discrete_laplace(rng, self.eps_numerator, t);
        Ok(k.saturating_add(noise))
    }

    /// Largest noise magnitude a report is allowed: `ceil(64 Delta / eps')`
    /// grid steps. Honest noise exceeds it with probability below
    /// 2 e^-64 (about 3e-28): P(|Z| > b) <= 2 alpha^b with alpha = e^(-eps'/Delta).
    pub fn noise_bound(&self) -> i64 {
        let b = (64.0 * self.grid_steps() as f64 / self.implemented_epsilon()).ceil();
        (b as i64).min(MAX_GRID_INDEX)
    }

    /// Checks `k_lo - b <= k <= k_hi + b` with b = [`Laplace::noise_bound`] (and
    /// |k| <= 2^52): every report an honest device makes, except with
    /// probability below 3e-28, while a forged report can move the sum by at
    /// most about 64 / eps ranges instead of 2^52 grid steps.
    pub fn validate(&self, k: i64) -> Result<()> {
        let b = self.noise_bound();
        let lo = self.k_lo.saturating_sub(b).max(-MAX_GRID_INDEX);
        let hi = self.k_hi.saturating_add(b).min(MAX_GRID_INDEX);
        if (lo..=hi).contains(&k) {
            Ok(())
        } else {
            Err(Error::InvalidReport(format!(
                "grid index {k} outside [{lo}, {hi}]"
            )))
        }
    }

    /// Variance of the discrete noise on the metric's scale:
    /// gamma^2 * 2 alpha / (1 - alpha)^2, alpha = exp(-eps' / Delta).
    pub fn noise_variance(&self) -> f64 {
        let alpha = (-self.implemented_epsilon() / self.grid_steps() as f64).exp();
        self.gamma * self.gamma * 2.0 * alpha / (1.0 - alpha).powi(2)
    }

    /// Per-report variance on the metric's scale at the true value `x`
    /// (noise plus randomized rounding).
    pub fn variance(&self, x: f64) -> Result<f64> {
        self.range.check(x)?;
        let y = x / self.gamma;
        let r = y - y.floor();
        Ok(self.noise_variance() + self.gamma * self.gamma * r * (1.0 - r))
    }

    /// Mean estimate from sum and sum of squares.
    pub fn estimate_mean(&self, stats: &Stats) -> Result<Estimate> {
        mean_estimate(stats, self.noise_variance() + self.gamma * self.gamma / 4.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: `validate` checked `k.abs() <= 2^52`, and `i64::MIN.abs()`
    /// overflows: a panic with overflow checks (debug builds), and in release it
    /// wraps to `i64::MIN`, which passed the check, so a forged report of
    /// `-2^63` grid steps was accepted and aggregated.
    #[test]
    fn extreme_grid_indices_are_rejected_without_overflow() {
        let lap = Laplace::new(0.0, 1.0, 0, Epsilon::new(1.0).unwrap()).unwrap();
        for k in [
            i64::MIN,
            i64::MIN + 1,
            -MAX_GRID_INDEX - 1,
            MAX_GRID_INDEX + 1,
            i64::MAX,
        ] {
            assert!(lap.validate(k).is_err(), "{k}");
        }
        for k in [0, 1024] {
            assert!(lap.validate(k).is_ok(), "{k}");
        }
    }

    /// Regression: any |k| <= 2^52 was accepted, so one forged report on [0, 1]
    /// (grid 2^-10) could add 2^42 to the sum. Now at most 64 Delta / eps' grid
    /// steps beyond the range: Delta = 1024 steps, eps' = 1, b = 65,536.
    #[test]
    fn reports_beyond_the_noise_bound_are_rejected() {
        let lap = Laplace::new(0.0, 1.0, 0, Epsilon::new(1.0).unwrap()).unwrap();
        assert_eq!(lap.grid_bounds(), (0, 1024));
        assert_eq!(lap.noise_bound(), 65_536);
        assert!(lap.validate(-65_536).is_ok());
        assert!(lap.validate(1024 + 65_536).is_ok());
        assert!(lap.validate(-65_537).is_err());
        assert!(lap.validate(1024 + 65_537).is_err());
        assert!(lap.validate(1 << 42).is_err());
    }
}
