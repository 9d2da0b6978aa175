//! Generalized (k-ary) randomized response, also called direct encoding; binary
//! randomized response is the case d = 2.
//!
//! The device reports its value v with probability p = e^eps / (e^eps + d - 1) and
//! each other value with probability q = 1 / (e^eps + d - 1).
//!
//! # Privacy
//! p / q = e^eps: epsilon-LDP per report; nothing is memoized. The truth coin
//! compares a uniform 64-bit integer against `floor(p * 2^64)` and the lie is
//! exactly uniform over the d - 1 other values (Lemire's method), so the
//! implemented p is at most 2^-64 below the nominal one, the implemented q at
//! most that much above, and the implemented epsilon never exceeds the nominal.
//!
//! # Utility
//! Count estimate c_v = (C_v - n q) / (p - q), unbiased, with
//! Var = n q(1-q)/(p-q)^2 + c_v (1-p-q)/(p-q); per user, the leading term is
//! (d - 2 + e^eps) / (e^eps - 1)^2.
//!
//! Citation: Warner 1965; Kairouz, Bonawitz, Ramage 2016; Wang et al. 2017
//! ("Locally differentially private protocols for frequency estimation").

use crate::estimate::{Estimate, Stats};
use crate::mechanism::limits::{check_domain_size, check_epsilon, out_of_domain};
use crate::mechanism::{oracle, sampling};
use crate::{Epsilon, Error, LdpRng, Result};

/// k-ary randomized response over `[0, d)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Grr {
    d: u32,
    epsilon: Epsilon,
    keep: u64,
    p: f64,
    q: f64,
}

impl Grr {
    /// Validates `2 <= d <= MAX_DOMAIN_SIZE` and epsilon within the limits.
    pub fn new(d: u32, epsilon: Epsilon) -> Result<Self> {
        check_domain_size(d)?;
        check_epsilon(epsilon)?;
        let e = epsilon.exp();
        let keep = sampling::threshold_down(e / (e + f64::from(d) - 1.0));
        let p = sampling::threshold_probability(keep);
        Ok(Self {
            d,
            epsilon,
            keep,
            p,
            q: (1.0 - p) / f64::from(d - 1),
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

    /// P(report = v | value = v), as implemented.
    pub fn p(&self) -> f64 {
        self.p
    }

    /// P(report = u | value = v) for u != v, as implemented.
    pub fn q(&self) -> f64 {
        self.q
    }

    /// Randomizes `value` in `[0, d)`.
    pub fn encode(&self, value: u32, rng: &mut LdpRng) -> Result<u32> {
        if value >= self.d {
            return Err(out_of_domain(value, self.d));
        }
        if sampling::coin(rng, self.keep) {
            return Ok(value);
        }
        // Exactly uniform over the d - 1 other values.
        let other = sampling::uniform_below(rng, u64::from(self.d - 1)) as u32;
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

    /// Exact variance of the count estimate of a value with true count `count`
    /// among `n` reports.
    pub fn count_variance(&self, n: f64, count: f64) -> f64 {
        crate::mechanism::pure_oracle_variance(n, count, self.p, self.q)
    }

    /// Unbiased count estimates from per-value counts.
    pub fn estimate(&self, stats: &Stats) -> Vec<Estimate> {
        let n = stats.reports as f64;
        oracle::estimates(stats.counts.iter().map(|&c| c as f64), n, self.p, self.q)
    }
}
