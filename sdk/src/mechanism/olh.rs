//! Optimized local hashing (OLH) with a finite, public, stable hash family.
//!
//! The device holds v in `[0, d)`. It picks a seed index s uniformly in `[0, S)`,
//! hashes v into g buckets with the public function `h_s`, and reports
//! `(s, b)` where b = h_s(v) with probability p = e^eps / (e^eps + g - 1) and
//! each of the other g - 1 buckets with probability 1 / (e^eps + g - 1).
//! g defaults to round(e^eps) + 1 (Wang et al.'s optimum), S to 1024 (reduced
//! so that S * g <= 2^22 counters).
//!
//! # The hash family (normative; clients in any language must match it)
//! ```text
//! seed(s)      = 0x4F4C_4831_0000_0000 | s            ("OLH1" tag, s < 2^32)
//! x            = xxh3_64(le_bytes_u64(v), seed(s))    (XXH3 64-bit, seeded, 8-byte input)
//! h_s(v)       = (x * g) >> 64                         (128-bit product; "multiply-high")
//! ```
//! Multiply-high maps a uniform 64-bit x to `[0, g)` with bucket probabilities
//! differing by at most 2^-64 relative, i.e. unbiased for every practical g.
//! Golden vectors (also checked by a unit test):
//!
//! | s | v | g | x | h_s(v) |
//! |---|---|---|---|--------|
//! | 0 | 0 | 2 | `0xd8d62ce1b6341b0b` | 1 |
//! | 0 | 1 | 2 | `0x8d03483a0c9dbe0e` | 1 |
//! | 1 | 0 | 4 | `0x7ac62d83f8c1cea5` | 1 |
//! | 7 | 42 | 4 | `0xc8ce9cce06e7e3a0` | 3 |
//! | 1023 | 1000 | 4 | `0x06ad73f1490ba353` | 0 |
//! | 5 | 3 | 56 | `0x6e0b29ece7002a80` | 24 |
//! | 100 | 65535 | 56 | `0xe6b2d63b777ace9a` | 50 |
//! | 4095 | 16777215 | 1024 | `0x8fd1da9072f35a77` | 575 |
//!
//! # Aggregation
//! Counters per (s, b): S * g of them, independent of n. The support count of
//! v is `C_v = sum_s counts[s][h_s(v)]`, which costs O(S * d) hash evaluations
//! at estimation time (10^6 xxh3 calls for S = d = 1024: milliseconds), never
//! O(n * d).
//!
//! # Privacy
//! The seed index is independent of v; given it, the bucket is g-ary randomized
//! response: ratio p / q = e^eps, epsilon-LDP per report, nothing memoized. The
//! truth coin is an integer threshold rounded down, the lie exactly uniform.
//!
//! # Utility
//! Over a random hash family, a report supports v (b = h_s(v)) with probability
//! p if the user holds v and 1/g otherwise, so c_v = (C_v - n/g) / (p - 1/g) is
//! unbiased with Var = n q*(1-q*)/(p-q*)^2 + c_v (1-p-q*)/(p-q*), q* = 1/g; per
//! user (e^eps + g - 1)^2 / ((g - 1)(e^eps - 1)^2), which is
//! 4 e^eps / (e^eps - 1)^2 at the optimal g.
//!
//! Finite-family effect: the family is fixed and public, so for two values u, v
//! the fraction K_uv of seeds on which they collide is not exactly 1/g but
//! 1/g + delta_uv with delta_uv of order sqrt((1/g)(1 - 1/g)/S) (0.0135 for
//! g = 4, S = 1024). Conditional on the family the estimate has the bias
//! `g/(g-1) * sum_{u != v} c_u delta_uv` ([`Olh::collision_fraction`] computes
//! K_uv), whose spread over values is about sqrt(sum_u c_u^2 / ((g-1) S)); the
//! variance is unchanged to first order. It is negligible against the noise
//! sqrt(n Var) when the data are spread out, and it is the price of O(S d)
//! estimation: with S * g < d no unbiased estimator exists for a fixed family.
//! Raise `seed_count` for concentrated data.
//!
//! Citation: Wang, Blocki, Li, Jha 2017 ("Locally differentially private
//! protocols for frequency estimation", USENIX Security); Lemire 2019
//! (multiply-high range reduction); XXH3 by Yann Collet.

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::estimate::{Estimate, Stats};
use crate::mechanism::limits::{check_domain_size, check_epsilon, out_of_domain};
use crate::mechanism::{oracle, pure_oracle_variance, sampling};
use crate::{Epsilon, Error, LdpRng, Result};

/// Default size S of the seed family.
pub const DEFAULT_SEED_COUNT: u32 = 1024;

/// Largest number of counters S * g.
pub const MAX_CELLS: u64 = 1 << 22;

/// The tag in the high 32 bits of every seed.
pub const SEED_TAG: u64 = 0x4F4C_4831_0000_0000;

/// The xxh3 seed of seed index `s`.
pub fn seed(seed_index: u32) -> u64 {
    SEED_TAG | u64::from(seed_index)
}

/// The public hash `h_s(v)` into `[0, g)`.
#[inline]
pub fn bucket(seed_index: u32, value: u32, g: u32) -> u32 {
    let x = xxh3_64_with_seed(&u64::from(value).to_le_bytes(), seed(seed_index));
    ((u128::from(x) * u128::from(g)) >> 64) as u32
}

/// OLH over `[0, d)` with g buckets and S public seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct Olh {
    d: u32,
    g: u32,
    seeds: u32,
    epsilon: Epsilon,
    keep: u64,
    p: f64,
}

impl Olh {
    /// Validates the parameters; `buckets == 0` means round(e^eps) + 1 and
    /// `seed_count == 0` means min(1024, 2^22 / g).
    pub fn new(d: u32, buckets: u32, seed_count: u32, epsilon: Epsilon) -> Result<Self> {
        check_domain_size(d)?;
        check_epsilon(epsilon)?;
        let g = if buckets == 0 {
            let opt = epsilon.exp().round() + 1.0;
            if opt > MAX_CELLS as f64 {
                return Err(Error::InvalidParameter {
                    name: "buckets",
                    reason: format!("round(e^eps) + 1 = {opt} exceeds {MAX_CELLS}; use GRR"),
                });
            }
            opt as u32
        } else {
            buckets
        };
        if g < 2 || u64::from(g) > MAX_CELLS {
            return Err(Error::InvalidParameter {
                name: "buckets",
                reason: format!("{g} outside [2, {MAX_CELLS}]"),
            });
        }
        let seeds = if seed_count == 0 {
            (MAX_CELLS / u64::from(g)).min(u64::from(DEFAULT_SEED_COUNT)) as u32
        } else {
            seed_count
        };
        if u64::from(seeds) * u64::from(g) > MAX_CELLS {
            return Err(Error::InvalidParameter {
                name: "seed_count",
                reason: format!("{seeds} seeds x {g} buckets exceeds {MAX_CELLS} counters"),
            });
        }
        let e = epsilon.exp();
        let keep = sampling::threshold_down(e / (e + f64::from(g) - 1.0));
        Ok(Self {
            d,
            g,
            seeds,
            epsilon,
            keep,
            p: sampling::threshold_probability(keep),
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

    /// Number of buckets g.
    pub fn buckets(&self) -> u32 {
        self.g
    }

    /// Size S of the seed family.
    pub fn seed_count(&self) -> u32 {
        self.seeds
    }

    /// P(reported bucket = h_s(v) | v), as implemented.
    pub fn p(&self) -> f64 {
        self.p
    }

    /// P(a report supports v | the user holds another value), over a random
    /// family: 1/g.
    pub fn q(&self) -> f64 {
        1.0 / f64::from(self.g)
    }

    /// Number of counters: S * g.
    pub fn stats_len(&self) -> usize {
        self.seeds as usize * self.g as usize
    }

    /// Randomizes `value`: returns (seed index, bucket).
    pub fn encode(&self, value: u32, rng: &mut LdpRng) -> Result<(u32, u32)> {
        if value >= self.d {
            return Err(out_of_domain(value, self.d));
        }
        let s = sampling::uniform_below(rng, u64::from(self.seeds)) as u32;
        let h = bucket(s, value, self.g);
        if sampling::coin(rng, self.keep) {
            return Ok((s, h));
        }
        let other = sampling::uniform_below(rng, u64::from(self.g - 1)) as u32;
        Ok((s, if other >= h { other + 1 } else { other }))
    }

    /// Checks seed index and bucket ranges.
    pub fn validate(&self, seed_index: u32, bucket: u32) -> Result<()> {
        if seed_index < self.seeds && bucket < self.g {
            Ok(())
        } else {
            Err(Error::InvalidReport(format!(
                "(seed {seed_index}, bucket {bucket}) outside [0, {}) x [0, {})",
                self.seeds, self.g
            )))
        }
    }

    /// The counter index of a validated report.
    pub fn cell(&self, seed_index: u32, bucket: u32) -> usize {
        seed_index as usize * self.g as usize + bucket as usize
    }

    /// Fraction of the S seeds on which u and v hash to the same bucket (K_uv).
    pub fn collision_fraction(&self, u: u32, v: u32) -> f64 {
        let hits = (0..self.seeds)
            .filter(|&s| bucket(s, u, self.g) == bucket(s, v, self.g))
            .count();
        hits as f64 / f64::from(self.seeds)
    }

    /// Variance of the count estimate over a random family (see module docs).
    pub fn count_variance(&self, n: f64, count: f64) -> f64 {
        pure_oracle_variance(n, count, self.p, self.q())
    }

    /// Support counts C_v for every v, in O(S * d) hash evaluations.
    pub fn support_counts(&self, stats: &Stats) -> Vec<u64> {
        let g = self.g as usize;
        let mut support = vec![0u64; self.d as usize];
        for (s, row) in stats.counts.chunks_exact(g).enumerate() {
            for (v, c) in support.iter_mut().enumerate() {
                *c += row[bucket(s as u32, v as u32, self.g) as usize];
            }
        }
        support
    }

    /// Count estimates for every value (unbiased over a random family).
    pub fn estimate(&self, stats: &Stats) -> Vec<Estimate> {
        oracle::estimates(
            self.support_counts(stats).into_iter().map(|c| c as f64),
            stats.reports as f64,
            self.p,
            self.q(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The golden vectors published in the module docs: (s, v, g, x, h_s(v)).
    const GOLDEN: [(u32, u32, u32, u64, u32); 8] = [
        (0, 0, 2, 0xd8d62ce1b6341b0b, 1),
        (0, 1, 2, 0x8d03483a0c9dbe0e, 1),
        (1, 0, 4, 0x7ac62d83f8c1cea5, 1),
        (7, 42, 4, 0xc8ce9cce06e7e3a0, 3),
        (1023, 1000, 4, 0x06ad73f1490ba353, 0),
        (5, 3, 56, 0x6e0b29ece7002a80, 24),
        (100, 65535, 56, 0xe6b2d63b777ace9a, 50),
        (4095, 16777215, 1024, 0x8fd1da9072f35a77, 575),
    ];

    #[test]
    fn hash_family_matches_golden_vectors() {
        for (s, v, g, x, h) in GOLDEN {
            assert_eq!(xxh3_64_with_seed(&u64::from(v).to_le_bytes(), seed(s)), x);
            assert_eq!(bucket(s, v, g), h, "s = {s}, v = {v}, g = {g}");
        }
    }
}
