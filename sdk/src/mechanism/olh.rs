//! Optimized local hashing (OLH) over an exactly pairwise-universal public
//! hash family.
//!
//! The device holds v in `[0, d)`. It picks a seed index s uniformly in `[0, S)`,
//! hashes v into g buckets with the public function `h_s`, and reports
//! `(s, b)` where b = h_s(v) with probability p = e^eps / (e^eps + g - 1) and
//! each of the other g - 1 buckets with probability 1 / (e^eps + g - 1).
//!
//! # The hash family (normative; clients in any language must match it)
//! g is a prime and k = ceil(log_g d) (at least 1), the number of base-g
//! digits of a value. The family is the set of all digit vectors
//! a in Z_g^k, so S = g^k:
//! ```text
//! v       = sum_i v_i g^i        (base-g digits v_0 .. v_{k-1}, least significant first)
//! s       = sum_i a_i g^i        (the seed index encodes the vector a, 0 <= s < g^k)
//! h_s(v)  = (sum_i a_i v_i) mod g
//! ```
//! For u != v the digit vector u - v is nonzero mod the prime g, so exactly
//! g^(k-1) of the g^k vectors a satisfy a . (u - v) = 0 mod g: the collision
//! fraction K_uv is exactly 1/g for every pair (the family is exactly pairwise
//! universal; [`Olh::collisions`] counts them). No hashing library is needed.
//! Golden vectors (also checked by a unit test):
//!
//! | g | s | v | digits of s | digits of v | h_s(v) |
//! |---|---|---|---|---|---|
//! | 2 | 0 | 0 | () | () | 0 |
//! | 2 | 11 | 6 | (1,1,0,1) | (0,1,1) | 1 |
//! | 3 | 5 | 7 | (2,1) | (1,2) | 1 |
//! | 5 | 17 | 23 | (2,3) | (3,4) | 3 |
//! | 7 | 100 | 1000 | (2,0,2) | (6,2,6,2) | 3 |
//! | 11 | 120 | 119 | (10,10) | (9,10) | 3 |
//!
//! # Parameters
//! `buckets == 0` picks g among the two primes bracketing e^eps + 1 (Wang et
//! al.'s continuous optimum) the one with the smaller per-user variance
//! V(g) = (e^eps + g - 1)^2 / ((g - 1)(e^eps - 1)^2). Writing g - 1 = r e^eps,
//! V(g) / V(e^eps + 1) = (1 + r)^2 / (4 r); over the prime gaps this costs at
//! most (1 + 1/sqrt 2)^2 sqrt 2 / 4 - 1 = 3.03% (at e^eps = sqrt 2 and
//! 2 sqrt 2, where g = 2 | 3 and g = 3 | 5 tie), under 1.7% once e^eps > 5,
//! and shrinks further as the relative prime gaps narrow.
//! A caller-given `buckets` must be a prime (typed error otherwise).
//! `seed_count` is derived, not free: it must be 0 or exactly g^k (typed
//! error otherwise). The counters S * g = g^(k+1) are capped at
//! [`MAX_CELLS`] = 2^24; beyond that (large d with large eps) use GRR, OUE or
//! Hadamard instead.
//!
//! # Aggregation
//! Counters per (s, b): S * g of them, independent of n. The support count
//! `C_v = sum_s counts[s][h_s(v)]` is computed exactly in integers, either
//! directly in O(S d k) digit operations (used when d <= g^2) or with a
//! digit-by-digit transform over Z_g^k in O(k S g^2) operations: after
//! processing digits 0..i, `M[(v_0..v_i, a_{i+1}..)][c] = sum_{a_0..a_i}
//! counts[a][c + sum_{l <= i} a_l v_l]`, and `C_v = M[v][0]` (the integer
//! counterpart of the k-dimensional DFT; a unit test checks both agree).
//!
//! # Privacy
//! The seed index is independent of v; given it, the bucket is g-ary randomized
//! response: ratio p / q = e^eps, epsilon-LDP per report, nothing memoized. The
//! truth coin is an integer threshold rounded down, the lie exactly uniform.
//!
//! # Utility
//! A user holding u != v supports v with probability
//! K_uv p + (1 - K_uv)(1 - p)/(g - 1) = 1/g exactly (K_uv = 1/g), and a user
//! holding v with probability p, exactly as under a fully random hash. So
//! c_v = (C_v - n/g) / (p - 1/g) is exactly unbiased for the fixed public
//! family, with Var = n q*(1-q*)/(p-q*)^2 + c_v (1-p-q*)/(p-q*), q* = 1/g; per
//! user (e^eps + g - 1)^2 / ((g - 1)(e^eps - 1)^2), within the few percent
//! stated above of Wang et al.'s 4 e^eps / (e^eps - 1)^2.
//!
//! Citation: Wang, Blocki, Li, Jha 2017 ("Locally differentially private
//! protocols for frequency estimation", USENIX Security); Carter and Wegman
//! 1979 (universal classes of hash functions: the inner-product family over a
//! prime field).

use crate::estimate::{Estimate, Stats};
use crate::mechanism::limits::{check_domain_size, check_epsilon, out_of_domain};
use crate::mechanism::{oracle, pure_oracle_variance, sampling};
use crate::{Epsilon, Error, LdpRng, Result};

/// Largest number of counters S * g (2^24).
pub const MAX_CELLS: u64 = 1 << 24;

/// Whether `n` is a prime (trial division; n is at most a few million here).
pub fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut f = 2u64;
    while f * f <= n {
        if n.is_multiple_of(f) {
            return false;
        }
        f += 1;
    }
    true
}

/// Per-user OLH variance (e^eps + g - 1)^2 / ((g - 1)(e^eps - 1)^2).
fn per_user_variance(ee: f64, g: f64) -> f64 {
    (ee + g - 1.0).powi(2) / ((g - 1.0) * (ee - 1.0).powi(2))
}

/// The default bucket count for `epsilon`: of the largest prime <= e^eps + 1
/// and the smallest prime >= e^eps + 1, the one with the smaller per-user
/// variance (see the module docs). Errors when it would exceed the counter cap.
pub fn default_buckets(epsilon: Epsilon) -> Result<u32> {
    let ee = epsilon.exp();
    let x = ee + 1.0;
    // S * g >= g^2, so g <= sqrt(MAX_CELLS) = 4096.
    let limit = 4096.0;
    if x > limit {
        return Err(Error::InvalidParameter {
            name: "buckets",
            reason: format!(
                "e^eps + 1 = {x:.0} needs more than {MAX_CELLS} OLH counters; use GRR, OUE or Hadamard"
            ),
        });
    }
    let mut lo = x.floor() as u64;
    while !is_prime(lo) {
        lo -= 1; // x > 2, so lo >= 2 and the loop stops at 2 at the latest
    }
    let mut hi = x.ceil() as u64;
    while !is_prime(hi) {
        hi += 1;
    }
    let g = if per_user_variance(ee, hi as f64) < per_user_variance(ee, lo as f64) {
        hi
    } else {
        lo
    };
    Ok(g as u32)
}

/// The public hash `h_s(v) = (sum_i a_i v_i) mod g` over the base-g digits of
/// the seed index s (the vector a) and of v. Requires g >= 2.
#[inline]
pub fn bucket(seed_index: u32, value: u32, g: u32) -> u32 {
    let g = u64::from(g);
    let (mut s, mut v) = (u64::from(seed_index), u64::from(value));
    let mut acc = 0u64;
    while s != 0 && v != 0 {
        acc = (acc + (s % g) * (v % g)) % g;
        s /= g;
        v /= g;
    }
    acc as u32
}

/// OLH over `[0, d)` with a prime number g of buckets and the S = g^k public
/// seeds of the inner-product family.
#[derive(Debug, Clone, PartialEq)]
pub struct Olh {
    d: u32,
    g: u32,
    digits: u32,
    seeds: u32,
    epsilon: Epsilon,
    keep: u64,
    p: f64,
}

impl Olh {
    /// Validates the parameters. `buckets == 0` picks [`default_buckets`];
    /// otherwise it must be a prime. `seed_count` must be 0 or g^k with
    /// k = ceil(log_g d), and S * g must not exceed [`MAX_CELLS`].
    pub fn new(d: u32, buckets: u32, seed_count: u32, epsilon: Epsilon) -> Result<Self> {
        check_domain_size(d)?;
        check_epsilon(epsilon)?;
        let g = if buckets == 0 {
            default_buckets(epsilon)?
        } else {
            buckets
        };
        if !is_prime(u64::from(g)) {
            return Err(Error::InvalidParameter {
                name: "buckets",
                reason: format!("{g} is not a prime (the hash family needs a prime field)"),
            });
        }
        // k = ceil(log_g d), at least 1; S = g^k.
        let mut digits = 1u32;
        let mut seeds = u64::from(g);
        while seeds < u64::from(d) {
            digits += 1;
            seeds *= u64::from(g);
        }
        let cells = seeds * u64::from(g);
        if cells > MAX_CELLS {
            return Err(Error::InvalidParameter {
                name: "buckets",
                reason: format!(
                    "{g} buckets over d = {d} need {seeds} seeds x {g} buckets = {cells} counters \
                     (> {MAX_CELLS}); use GRR, OUE or Hadamard"
                ),
            });
        }
        if seed_count != 0 && u64::from(seed_count) != seeds {
            return Err(Error::InvalidParameter {
                name: "seed_count",
                reason: format!(
                    "{seed_count} != {g}^{digits} = {seeds}; the seed family is derived (use 0)"
                ),
            });
        }
        let e = epsilon.exp();
        let keep = sampling::threshold_down(e / (e + f64::from(g) - 1.0));
        Ok(Self {
            d,
            g,
            digits,
            seeds: seeds as u32,
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

    /// Number of buckets g (a prime).
    pub fn buckets(&self) -> u32 {
        self.g
    }

    /// Number k of base-g digits of a value (S = g^k).
    pub fn digits(&self) -> u32 {
        self.digits
    }

    /// Size S = g^k of the seed family.
    pub fn seed_count(&self) -> u32 {
        self.seeds
    }

    /// P(reported bucket = h_s(v) | v), as implemented.
    pub fn p(&self) -> f64 {
        self.p
    }

    /// P(a report supports v | the user holds another value): exactly 1/g for
    /// this family.
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

    /// Number of the S seeds on which u and v hash to the same bucket; exactly
    /// S / g for u != v (pairwise universality).
    pub fn collisions(&self, u: u32, v: u32) -> u64 {
        (0..self.seeds)
            .filter(|&s| bucket(s, u, self.g) == bucket(s, v, self.g))
            .count() as u64
    }

    /// Variance of the count estimate (exact for this family, see module docs).
    pub fn count_variance(&self, n: f64, count: f64) -> f64 {
        pure_oracle_variance(n, count, self.p, self.q())
    }

    /// Support counts C_v for every v, exactly, by the cheaper of the direct
    /// O(S d k) sum and the O(k S g^2) digit transform.
    pub fn support_counts(&self, stats: &Stats) -> Vec<u64> {
        if u64::from(self.d) <= u64::from(self.g) * u64::from(self.g) {
            self.support_counts_direct(stats)
        } else {
            self.support_counts_transform(stats)
        }
    }

    /// C_v = sum_s counts[s][h_s(v)], hashing every (s, v).
    fn support_counts_direct(&self, stats: &Stats) -> Vec<u64> {
        let g = self.g as usize;
        let mut support = vec![0u64; self.d as usize];
        for (s, row) in stats.counts.chunks_exact(g).enumerate() {
            for (v, c) in support.iter_mut().enumerate() {
                *c += row[bucket(s as u32, v as u32, self.g) as usize];
            }
        }
        support
    }

    /// C_v by the digit-by-digit transform of the module docs, in place on a
    /// copy of the counters with a g x g scratch block.
    fn support_counts_transform(&self, stats: &Stats) -> Vec<u64> {
        let g = self.g as usize;
        let seeds = self.seeds as usize;
        let mut m = stats.counts.clone();
        let mut block = vec![0u64; g * g];
        let mut stride = 1usize; // g^i, in seed indices
        for _ in 0..self.digits {
            let span = stride * g;
            for hi in (0..seeds).step_by(span) {
                for lo in 0..stride {
                    let base = hi + lo;
                    // block[vi][c] = sum_j M[base + j stride][(c + j vi) mod g]
                    for vi in 0..g {
                        let out = &mut block[vi * g..(vi + 1) * g];
                        out.fill(0);
                        let mut off = 0usize; // j * vi mod g
                        for j in 0..g {
                            let row = &m[(base + j * stride) * g..(base + j * stride + 1) * g];
                            let (head, tail) = row.split_at(off);
                            // c + off < g: tail[c]; otherwise head[c + off - g].
                            for (o, &x) in out.iter_mut().zip(tail.iter().chain(head)) {
                                *o += x;
                            }
                            off = (off + vi) % g;
                        }
                    }
                    for vi in 0..g {
                        let at = (base + vi * stride) * g;
                        m[at..at + g].copy_from_slice(&block[vi * g..(vi + 1) * g]);
                    }
                }
            }
            stride = span;
        }
        (0..self.d as usize).map(|v| m[v * g]).collect()
    }

    /// Count estimates for every value (exactly unbiased, see module docs).
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

    /// The golden vectors published in the module docs: (g, s, v, h_s(v)).
    const GOLDEN: [(u32, u32, u32, u32); 6] = [
        (2, 0, 0, 0),
        (2, 11, 6, 1),
        (3, 5, 7, 1),
        (5, 17, 23, 3),
        (7, 100, 1000, 3),
        (11, 120, 119, 3),
    ];

    #[test]
    fn hash_family_matches_golden_vectors() {
        for (g, s, v, h) in GOLDEN {
            assert_eq!(bucket(s, v, g), h, "s = {s}, v = {v}, g = {g}");
        }
    }

    #[test]
    fn direct_and_transform_support_counts_agree() {
        // Arbitrary pseudo-random counters; both methods are exact integer sums,
        // so they must agree exactly (stronger than 1e-6 relative).
        for (d, g) in [(50u32, 3u32), (100, 5), (30, 2), (7, 7), (1000, 7)] {
            let eps = Epsilon::new(1.0).unwrap();
            let m = Olh::new(d, g, 0, eps).unwrap();
            let mut stats = Stats::new(m.stats_len());
            let mut x = 0x9E37_79B9_7F4A_7C15u64;
            for c in stats.counts.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *c = x % 1000;
            }
            assert_eq!(
                m.support_counts_direct(&stats),
                m.support_counts_transform(&stats),
                "d = {d}, g = {g}"
            );
        }
    }
}
