//! Hadamard response for any domain size.
//!
//! Let D be the smallest power of two >= d + 1 and H the D x D Sylvester
//! Hadamard matrix, `H[r][j] = (-1)^popcount(r & j)`. Value v in `[0, d)` is
//! mapped to row r = v + 1 (row 0, all ones, carries no information and is
//! skipped). The device draws a coefficient j uniformly in `[0, D)` and reports
//! `(j, sign)` where sign = `H[v+1][j]`, flipped with probability 1 / (e^eps + 1).
//!
//! Aggregation keeps 2D counters, one per (j, sign): counter `2j + 1` for
//! positive, `2j` for negative. Estimation applies one fast Walsh-Hadamard
//! transform to y_j = N(j, +) - N(j, -): O(D log D), independent of n.
//!
//! # Privacy
//! j is independent of v; given j, the sign is binary randomized response with
//! ratio e^eps: epsilon-LDP per report, nothing memoized. The keep coin is an
//! integer threshold rounded down (implemented epsilon <= nominal).
//!
//! # Utility
//! With c = (e^eps + 1) / (e^eps - 1), each report contributes
//! `c * sign * H[v+1][j]` to the estimate of v, which has expectation 1 if the
//! user holds v and 0 otherwise (rows are orthogonal). c_v = c (H y)[v+1] is
//! unbiased with Var = n c^2 - c_v; per user c^2.
//!
//! Citation: Acharya, Sun, Zhang 2019 ("Hadamard response: estimating
//! distributions privately, efficiently, and with little communication",
//! AISTATS); Cormode, Kulkarni, Srivastava 2018 ("Marginal release under local
//! differential privacy").

use rand::Rng;

use crate::estimate::{Estimate, Stats};
use crate::mechanism::limits::{MAX_DOMAIN_SIZE, check_domain_size, check_epsilon, out_of_domain};
use crate::mechanism::sampling;
use crate::{Epsilon, Error, LdpRng, Result};

/// Hadamard response over `[0, d)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Hadamard {
    d: u32,
    big_d: u32,
    epsilon: Epsilon,
    keep: u64,
    c: f64,
}

impl Hadamard {
    /// Validates d and epsilon; D = next power of two >= d + 1. The 2D
    /// counters must fit the shared limit (2D <= 2^24, so d < 2^23).
    pub fn new(d: u32, epsilon: Epsilon) -> Result<Self> {
        check_domain_size(d)?;
        check_epsilon(epsilon)?;
        let big_d = (d + 1).next_power_of_two();
        if 2 * u64::from(big_d) > u64::from(MAX_DOMAIN_SIZE) {
            return Err(Error::InvalidParameter {
                name: "domain_size",
                reason: format!(
                    "{d} pads to D = {big_d}: 2D counters exceed {MAX_DOMAIN_SIZE}; use OLH"
                ),
            });
        }
        let e = epsilon.exp();
        let keep = sampling::threshold_down(e / (e + 1.0));
        let p = sampling::threshold_probability(keep);
        Ok(Self {
            d,
            big_d,
            epsilon,
            keep,
            c: 1.0 / (2.0 * p - 1.0),
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

    /// Padded size D (a power of two >= d + 1).
    pub fn padded_size(&self) -> u32 {
        self.big_d
    }

    /// c = (e^eps + 1) / (e^eps - 1), as implemented.
    pub fn c(&self) -> f64 {
        self.c
    }

    /// Number of counters: 2D.
    pub fn stats_len(&self) -> usize {
        2 * self.big_d as usize
    }

    /// Randomizes `value`: returns (coefficient j, positive sign).
    pub fn encode(&self, value: u32, rng: &mut LdpRng) -> Result<(u32, bool)> {
        if value >= self.d {
            return Err(out_of_domain(value, self.d));
        }
        // D is a power of two: masking a uniform word is exactly uniform.
        let j = (rng.inner().next_u64() & u64::from(self.big_d - 1)) as u32;
        let positive = ((value + 1) & j).count_ones().is_multiple_of(2);
        Ok((j, positive == sampling::coin(rng, self.keep)))
    }

    /// Checks the coefficient range.
    pub fn validate(&self, coefficient: u32) -> Result<()> {
        if coefficient < self.big_d {
            Ok(())
        } else {
            Err(Error::InvalidReport(format!(
                "coefficient {coefficient} outside [0, {})",
                self.big_d
            )))
        }
    }

    /// The counter index of a validated report.
    pub fn cell(&self, coefficient: u32, positive: bool) -> usize {
        2 * coefficient as usize + usize::from(positive)
    }

    /// Exact variance of the count estimate: n c^2 - c_v.
    pub fn count_variance(&self, n: f64, count: f64) -> f64 {
        n * self.c * self.c - count.clamp(0.0, n)
    }

    /// Unbiased count estimates, by one fast Walsh-Hadamard transform.
    pub fn estimate(&self, stats: &Stats) -> Vec<Estimate> {
        let n = stats.reports as f64;
        let mut y: Vec<f64> = stats
            .counts
            .chunks_exact(2)
            .map(|pair| pair[1] as f64 - pair[0] as f64)
            .collect();
        fwht(&mut y);
        y[1..=self.d as usize]
            .iter()
            .map(|&z| {
                let value = self.c * z;
                Estimate {
                    value,
                    std_error: self.count_variance(n, value).sqrt(),
                }
            })
            .collect()
    }
}

/// In-place unnormalized Walsh-Hadamard transform; `a.len()` must be a power of two.
fn fwht(a: &mut [f64]) {
    let mut h = 1;
    while h < a.len() {
        for block in a.chunks_exact_mut(2 * h) {
            let (lo, hi) = block.split_at_mut(h);
            for (x, y) in lo.iter_mut().zip(hi.iter_mut()) {
                let (s, t) = (*x + *y, *x - *y);
                *x = s;
                *y = t;
            }
        }
        h *= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fwht_matches_the_matrix() {
        let mut a = vec![1.0, 2.0, 3.0, 4.0];
        fwht(&mut a);
        for (r, &got) in a.iter().enumerate() {
            let want: f64 = (0..4)
                .map(|j| {
                    let s = if (r & j).count_ones().is_multiple_of(2) {
                        1.0
                    } else {
                        -1.0
                    };
                    s * (j + 1) as f64
                })
                .sum();
            assert_eq!(got, want);
        }
    }

    /// Regression: d = 2^24 (the shared domain limit) padded to D = 2^25 and
    /// 2D = 2^26 counters (512 MiB per statistics delta, allocated by the server
    /// for every batch), four times the bound the limits promise.
    #[test]
    fn statistics_stay_within_the_domain_limit() {
        use crate::mechanism::limits::MAX_DOMAIN_SIZE;
        let eps = Epsilon::new(1.0).unwrap();
        assert!(Hadamard::new(MAX_DOMAIN_SIZE, eps).is_err());
        // The largest accepted d: D = 2^23, 2^24 counters.
        let largest = Hadamard::new(MAX_DOMAIN_SIZE / 2 - 1, eps).unwrap();
        assert_eq!(largest.stats_len(), MAX_DOMAIN_SIZE as usize);
        assert!(Hadamard::new(MAX_DOMAIN_SIZE / 2, eps).is_err());
    }
}
