//! Generalized (k-ary) randomized response, also called direct encoding; binary
//! randomized response is the case d = 2.
//!
//! The device reports its value v with probability p = e^eps / (e^eps + d - 1) and
//! each other value with probability q = 1 / (e^eps + d - 1).
//!
//! # Privacy
//! p / q = e^eps exactly: epsilon-LDP per report. The coin is drawn as an integer
//! comparison against a 64-bit threshold, so the implemented ratio differs from
//! e^eps by at most 2^-64 relative.
//!
//! # Utility
//! Count estimate c_v = (C_v - n q) / (p - q), unbiased, with
//! Var = n q(1-q)/(p-q)^2 + c_v (1-p-q)/(p-q); per user, the leading term is
//! (d - 2 + e^eps) / (e^eps - 1)^2.
//!
//! Citation: Warner 1965; Kairouz, Bonawitz, Ramage 2016; Wang et al. 2017
//! ("Locally differentially private protocols for frequency estimation").

use rand::RngExt;

use crate::estimate::{Estimate, Stats};
use crate::mechanism::pure_oracle_variance;
use crate::{Epsilon, Error, LdpRng, Result};

/// k-ary randomized response over `[0, d)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Grr {
    d: u32,
    epsilon: Epsilon,
    p: f64,
    q: f64,
}

impl Grr {
    /// Validates d >= 2.
    pub fn new(d: u32, epsilon: Epsilon) -> Result<Self> {
        if d < 2 {
            return Err(Error::InvalidParameter {
                name: "domain_size",
                reason: format!("{d} < 2"),
            });
        }
        let e = epsilon.exp();
        let denom = e + f64::from(d) - 1.0;
        Ok(Self {
            d,
            epsilon,
            p: e / denom,
            q: 1.0 / denom,
        })
    }

    /// Epsilon per report.
    pub fn epsilon(&self) -> Epsilon {
        self.epsilon
    }

    /// Domain size d.
    pub fn domain_size(&self) -> u32 {
        self.d
    }

    /// P(report = v | value = v).
    pub fn p(&self) -> f64 {
        self.p
    }

    /// P(report = u | value = v) for u != v.
    pub fn q(&self) -> f64 {
        self.q
    }

    /// Randomizes `value`.
    pub fn encode(&self, value: u32, rng: &mut LdpRng) -> Result<u32> {
        self.validate(value).map_err(|_| Error::OutOfDomain {
            value: value.to_string(),
            domain_size: self.d,
        })?;
        if rng.random::<f64>() < self.p {
            return Ok(value);
        }
        // Uniform over the d - 1 other values.
        let other = rng.random_range(0..self.d - 1);
        Ok(if other >= value { other + 1 } else { other })
    }

    /// Checks that `index` is in the domain.
    pub fn validate(&self, index: u32) -> Result<()> {
        if index < self.d {
            Ok(())
        } else {
            Err(Error::InvalidReport(format!(
                "index {index} outside [0, {})",
                self.d
            )))
        }
    }

    /// Unbiased count estimates from per-value counts.
    pub fn estimate(&self, stats: &Stats) -> Vec<Estimate> {
        let n = stats.reports as f64;
        stats
            .counts
            .iter()
            .map(|&c| {
                let value = (c as f64 - n * self.q) / (self.p - self.q);
                let var = pure_oracle_variance(n, value, self.p, self.q);
                Estimate {
                    value,
                    std_error: var.sqrt(),
                }
            })
            .collect()
    }
}
