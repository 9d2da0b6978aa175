//! Duchi, Jordan and Wainwright's mechanism for one bounded number.
//!
//! With t in [-1, 1] the scaled input and C = (e^eps + 1) / (e^eps - 1), the
//! device reports +C with probability 1/2 + t (e^eps - 1) / (2 (e^eps + 1)) and
//! -C otherwise (both mapped back to the metric's scale: mid +- half C).
//!
//! # Privacy
//! The probability of +C ranges over [1/(e^eps+1), e^eps/(e^eps+1)], so any two
//! inputs give output probabilities within a factor e^eps: epsilon-LDP per
//! report, nothing memoized. Implemented with integer thresholds: with
//! `T_p = floor(2^64 e^eps / (e^eps + 1))` and `T_q = 2^64 - T_p`, the coin for
//! +C has threshold `T_q + floor((T_p - T_q) (1 + t) / 2)`, always in
//! [T_q, T_p], so the implemented ratio is at most T_p / T_q <= e^eps. The
//! reported magnitude is the implemented C = 2^64 / (T_p - T_q), which keeps the
//! output unbiased for the coin actually flipped.
//!
//! # Utility
//! Unbiased; per report Var = C^2 - t^2 on the [-1, 1] scale (times half^2 on
//! the metric's scale).
//!
//! Citation: Duchi, Jordan, Wainwright 2018 ("Minimax optimal procedures for
//! locally private estimation", JASA); Wang et al. 2019 (ICDE), Section III.

use crate::estimate::{Estimate, Stats};
use crate::mechanism::limits::check_epsilon;
use crate::mechanism::numeric::{Range, mean_estimate};
use crate::mechanism::sampling;
use crate::{Epsilon, Error, LdpRng, Result};

/// Duchi et al.'s mechanism on [lo, hi].
#[derive(Debug, Clone, PartialEq)]
pub struct Duchi {
    range: Range,
    epsilon: Epsilon,
    low: u64,
    span: u64,
    c: f64,
}

impl Duchi {
    /// Validates the range and epsilon.
    pub fn new(lo: f64, hi: f64, epsilon: Epsilon) -> Result<Self> {
        let range = Range::new(lo, hi)?;
        check_epsilon(epsilon)?;
        let e = epsilon.exp();
        let high = sampling::threshold_down(e / (e + 1.0));
        let low = high.wrapping_neg(); // 2^64 - T_p; T_p > 2^63 for eps >= MIN_EPSILON
        let span = high - low;
        Ok(Self {
            range,
            epsilon,
            low,
            span,
            c: 1.0 / sampling::threshold_probability(span),
        })
    }

    /// Epsilon per report.
    pub fn epsilon(&self) -> Epsilon {
        self.epsilon
    }

    /// The declared range.
    pub fn range(&self) -> Range {
        self.range
    }

    /// C = (e^eps + 1) / (e^eps - 1), as implemented.
    pub fn c(&self) -> f64 {
        self.c
    }

    /// Randomizes t in [-1, 1] into +-C (unit scale).
    pub(crate) fn encode_unit(&self, t: f64, rng: &mut LdpRng) -> f64 {
        let offset = ((self.span as f64 * (1.0 + t) / 2.0) as u64).min(self.span);
        if sampling::coin(rng, self.low + offset) {
            self.c
        } else {
            -self.c
        }
    }

    /// Randomizes `x` in [lo, hi]; the report is on the metric's scale.
    pub fn encode(&self, x: f64, rng: &mut LdpRng) -> Result<f64> {
        let t = self.range.to_unit(x)?;
        Ok(self.range.from_unit(self.encode_unit(t, rng)))
    }

    /// Checks that `value` is one of the two outputs.
    pub fn validate(&self, value: f64) -> Result<()> {
        if value == self.range.from_unit(self.c) || value == self.range.from_unit(-self.c) {
            Ok(())
        } else {
            Err(Error::InvalidReport(format!(
                "{value} is not a Duchi output"
            )))
        }
    }

    /// Per-report variance on the metric's scale at the true value `x`.
    pub fn variance(&self, x: f64) -> Result<f64> {
        let t = self.range.to_unit(x)?;
        Ok(self.range.half().powi(2) * (self.c * self.c - t * t))
    }

    /// Mean estimate from sum and sum of squares.
    pub fn estimate_mean(&self, stats: &Stats) -> Result<Estimate> {
        mean_estimate(stats, self.range.half().powi(2) * self.c * self.c)
    }
}
