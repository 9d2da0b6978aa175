//! Wang et al.'s Hybrid mechanism: Piecewise with probability alpha, Duchi
//! otherwise, both at the full epsilon.
//!
//! alpha = 1 - e^(-eps/2) for eps > 0.61 and 0 below (where Duchi alone is
//! better), the choice that minimizes the worst-case variance.
//!
//! # Privacy
//! The choice is independent of the input and each branch is epsilon-LDP, so
//! the mixture is epsilon-LDP per report; nothing is memoized. The branch coin
//! is an integer threshold (its exact value does not affect privacy).
//!
//! # Utility
//! Both branches are unbiased, hence so is the mixture; per report on the
//! [-1, 1] scale Var = alpha Var_PM(t) + (1 - alpha) (C_D^2 - t^2).
//!
//! Citation: Wang, Xiao, Yang, Zhao, Hu, Shin, Yu 2019 ("Collecting and
//! analyzing multidimensional data with local differential privacy", ICDE).

use crate::estimate::{Estimate, Stats};
use crate::mechanism::numeric::duchi::Duchi;
use crate::mechanism::numeric::piecewise::Piecewise;
use crate::mechanism::numeric::{Range, mean_estimate};
use crate::mechanism::sampling;
use crate::{Epsilon, Error, LdpRng, Result};

/// Below this epsilon Hybrid is pure Duchi.
pub const DUCHI_ONLY_BELOW: f64 = 0.61;

/// The Hybrid mechanism on [lo, hi].
#[derive(Debug, Clone, PartialEq)]
pub struct Hybrid {
    piecewise: Piecewise,
    duchi: Duchi,
    use_piecewise: u64,
    alpha: f64,
}

impl Hybrid {
    /// Validates the range and epsilon.
    pub fn new(lo: f64, hi: f64, epsilon: Epsilon) -> Result<Self> {
        let piecewise = Piecewise::new(lo, hi, epsilon)?;
        let duchi = Duchi::new(lo, hi, epsilon)?;
        let alpha = if epsilon.get() > DUCHI_ONLY_BELOW {
            1.0 - (-epsilon.get() / 2.0).exp()
        } else {
            0.0
        };
        let use_piecewise = sampling::threshold_down(alpha);
        Ok(Self {
            piecewise,
            duchi,
            use_piecewise,
            alpha: sampling::threshold_probability(use_piecewise),
        })
    }

    /// Epsilon per report.
    pub fn epsilon(&self) -> Epsilon {
        self.duchi.epsilon()
    }

    /// The declared range.
    pub fn range(&self) -> Range {
        self.duchi.range()
    }

    /// Probability of the Piecewise branch, as implemented.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// Randomizes `x` in [lo, hi]; the report is on the metric's scale.
    pub fn encode(&self, x: f64, rng: &mut LdpRng) -> Result<f64> {
        let range = self.range();
        let t = range.to_unit(x)?;
        let y = if sampling::coin(rng, self.use_piecewise) {
            self.piecewise.encode_unit(t, rng)
        } else {
            self.duchi.encode_unit(t, rng)
        };
        Ok(range.from_unit(y))
    }

    /// Checks that `value` is a possible output of either branch.
    pub fn validate(&self, value: f64) -> Result<()> {
        if self.duchi.validate(value).is_ok() || self.piecewise.validate(value).is_ok() {
            Ok(())
        } else {
            Err(Error::InvalidReport(format!(
                "{value} is not a Hybrid output"
            )))
        }
    }

    fn unit_variance(&self, t: f64) -> f64 {
        let c = self.duchi.c();
        self.alpha * self.piecewise.unit_variance(t) + (1.0 - self.alpha) * (c * c - t * t)
    }

    /// Per-report variance on the metric's scale at the true value `x`.
    pub fn variance(&self, x: f64) -> Result<f64> {
        let range = self.range();
        let t = range.to_unit(x)?;
        Ok(range.half().powi(2) * self.unit_variance(t))
    }

    /// Mean estimate from sum and sum of squares.
    pub fn estimate_mean(&self, stats: &Stats) -> Result<Estimate> {
        let worst = self.unit_variance(0.0).max(self.unit_variance(1.0));
        mean_estimate(stats, self.range().half().powi(2) * worst)
    }
}
