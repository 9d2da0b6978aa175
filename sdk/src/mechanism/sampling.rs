//! Exact integer samplers behind every privacy-critical coin.
//!
//! A probability that decides what a report reveals is held as a 64-bit
//! threshold `T` and a coin is `next_u64() < T`, so it comes up with probability
//! exactly `T / 2^64`. Thresholds are rounded in the direction that can only
//! *lower* the implemented epsilon ([`threshold_down`] for the probability of
//! telling the truth, [`threshold_up`] for the probability of a lie): the
//! implemented probabilities differ from the nominal ones by less than 2^-64 and
//! the privacy ratio never exceeds the nominal e^epsilon because of rounding.
//!
//! Uniform integers use Lemire's multiply-and-reject method, which is exactly
//! uniform for every range (no modulo bias). [`discrete_laplace`] is the exact
//! sampler of Canonne, Kamath and Steinke (NeurIPS 2020, "The discrete Gaussian
//! for differential privacy", Algorithms 1 and 2), using integer arithmetic only.
//!
//! ```
//! use ldp_sdk::{LdpRng, mechanism::sampling};
//! let mut rng = LdpRng::seeded_for_simulation(1);
//! let t = sampling::threshold_down(0.25);
//! assert_eq!(t, 1 << 62);
//! let _heads: bool = sampling::coin(&mut rng, t);
//! ```

use rand::Rng;
use rand_chacha::ChaCha12Rng;

use crate::LdpRng;

// The samplers take the generator inside `LdpRng` once per call, so that its
// `next_u64` inlines into their loops.

const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;

/// `floor(p * 2^64)`, saturating: 0 for p <= 0 or NaN, `u64::MAX` for p >= 1.
/// A coin with this threshold has probability at most `p`.
pub fn threshold_down(p: f64) -> u64 {
    if p.is_nan() || p <= 0.0 {
        return 0;
    }
    // `as` truncates toward zero and saturates at u64::MAX; the product by a
    // power of two is exact.
    (p * TWO_POW_64) as u64
}

/// `ceil(p * 2^64)`, saturating: 0 for p <= 0 or NaN, `u64::MAX` for p >= 1.
/// A coin with this threshold has probability at least `min(p, 1 - 2^-64)`.
pub fn threshold_up(p: f64) -> u64 {
    if p.is_nan() || p <= 0.0 {
        return 0;
    }
    let x = p * TWO_POW_64;
    let f = x as u64;
    // Below 2^53 both `x` and `f as f64` are exact; above, `x` is an integer.
    if x > f as f64 { f.saturating_add(1) } else { f }
}

/// The probability `threshold / 2^64` a coin with this threshold implements.
pub fn threshold_probability(threshold: u64) -> f64 {
    threshold as f64 / TWO_POW_64
}

/// True with probability exactly `threshold / 2^64`.
#[inline]
pub fn coin(rng: &mut LdpRng, threshold: u64) -> bool {
    rng.inner().next_u64() < threshold
}

/// Exactly uniform in `[0, n)` (Lemire 2019, "Fast random integer generation in
/// an interval", with rejection). Returns 0 for `n == 0`.
#[inline]
pub fn uniform_below(rng: &mut LdpRng, n: u64) -> u64 {
    uniform_below_in(rng.inner(), n)
}

#[inline]
fn uniform_below_in(rng: &mut ChaCha12Rng, n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    if let Ok(n32) = u32::try_from(n) {
        return u64::from(uniform_below_u32(rng, n32));
    }
    let mut m = u128::from(rng.next_u64()) * u128::from(n);
    if (m as u64) < n {
        let reject_below = n.wrapping_neg() % n;
        while (m as u64) < reject_below {
            m = u128::from(rng.next_u64()) * u128::from(n);
        }
    }
    (m >> 64) as u64
}

/// [`uniform_below_in`] for `0 < n < 2^32`: the same exact rejection method on
/// 32-bit words, so small ranges (the Bernoulli(1/k) coins of the discrete
/// Laplace sampler) take half as much generator output.
#[inline]
fn uniform_below_u32(rng: &mut ChaCha12Rng, n: u32) -> u32 {
    let mut m = u64::from(rng.next_u32()) * u64::from(n);
    if (m as u32) < n {
        let reject_below = n.wrapping_neg() % n;
        while (m as u32) < reject_below {
            m = u64::from(rng.next_u32()) * u64::from(n);
        }
    }
    (m >> 32) as u32
}

/// 64 independent coins, each set with probability exactly `threshold / 2^64`,
/// as the bits of one word.
///
/// Bit-sliced lazy comparison: lane i compares its own uniform 64-bit number,
/// drawn most significant bit first, against `threshold` and stops at the first
/// differing bit. One random word serves all undecided lanes per round; half of
/// them decide each round, so about log2(64) + 2 = 8 words are drawn for 64 coins
/// (instead of 64), with no floating point.
#[inline]
pub fn bernoulli_word(rng: &mut LdpRng, threshold: u64) -> u64 {
    let rng = rng.inner();
    let mut undecided = u64::MAX;
    let mut ones = 0u64;
    for bit in (0..64).rev() {
        if undecided == 0 {
            break;
        }
        let w = rng.next_u64();
        // All ones if the threshold's bit is 1. Then lanes drawing 0 are below
        // the threshold (decided 1) and lanes drawing 1 stay undecided; if it is
        // 0, lanes drawing 1 are above it (decided 0) and lanes drawing 0 stay.
        let t = ((threshold >> bit) & 1).wrapping_neg();
        ones |= undecided & !w & t;
        undecided &= !(w ^ t);
    }
    // Lanes still undecided drew exactly `threshold`: not below it, so 0.
    ones
}

/// Rounds every word runs on its own in [`bernoulli_words`] before its still
/// undecided lanes are pooled.
const SOLO_ROUNDS: u32 = 4;

/// Fills `out` with independent coins, each bit set with probability exactly
/// `threshold / 2^64`: the same lazy comparison as [`bernoulli_word`], with
/// about half the randomness for long vectors.
///
/// Each word runs the first 4 rounds alone (deciding 15/16 of its lanes). All
/// lanes still undecided, in any word, are then at the same threshold bit, so
/// they are gathered into groups of 64 and finish the comparison together,
/// bit-sliced, from that bit on. Every lane still consumes one fresh random bit
/// per round, so the result has exactly the distribution of independent
/// 64-bit comparisons. Cost for 1024 coins: about 80 random words instead of 134.
pub fn bernoulli_words(rng: &mut LdpRng, threshold: u64, out: &mut [u64]) {
    let rng = rng.inner();
    let mut group = [0u32; 64];
    let mut len = 0;
    for i in 0..out.len() {
        let mut undecided = u64::MAX;
        let mut ones = 0u64;
        for bit in (64 - SOLO_ROUNDS..64).rev() {
            let w = rng.next_u64();
            let t = ((threshold >> bit) & 1).wrapping_neg();
            ones |= undecided & !w & t;
            undecided &= !(w ^ t);
        }
        out[i] = ones;
        while undecided != 0 {
            group[len] = (i as u32) * 64 + undecided.trailing_zeros();
            undecided &= undecided - 1;
            len += 1;
            if len == 64 {
                finish_group(rng, threshold, &group, out);
                len = 0;
            }
        }
    }
    finish_group(rng, threshold, &group[..len], out);
}

/// Finishes the comparison of the pooled `lanes` (bit indices into `out`) from
/// threshold bit `63 - SOLO_ROUNDS` down, and sets the bits that come out 1.
fn finish_group(rng: &mut ChaCha12Rng, threshold: u64, lanes: &[u32], out: &mut [u64]) {
    if lanes.is_empty() {
        return;
    }
    let mut undecided = u64::MAX >> (64 - lanes.len());
    let mut ones = 0u64;
    for bit in (0..64 - SOLO_ROUNDS).rev() {
        if undecided == 0 {
            break;
        }
        let w = rng.next_u64();
        let t = ((threshold >> bit) & 1).wrapping_neg();
        ones |= undecided & !w & t;
        undecided &= !(w ^ t);
    }
    while ones != 0 {
        let lane = lanes[ones.trailing_zeros() as usize];
        out[(lane / 64) as usize] |= 1 << (lane % 64);
        ones &= ones - 1;
    }
}

/// True with probability exactly `exp(-num / den)`, for `num <= den`, `den > 0`
/// (Canonne, Kamath, Steinke 2020, Algorithm 1, case gamma in [0, 1]).
fn bernoulli_exp_neg_le1(rng: &mut ChaCha12Rng, num: u64, den: u64) -> bool {
    // For gamma = 1 the first coin A_1 ~ Bernoulli(1) is certain: skip it.
    let mut k: u64 = if num == den { 2 } else { 1 };
    // A_k ~ Bernoulli(gamma / k); stop at the first failure; the result is the
    // parity of k. `den * k` saturates only for k > 2^11 (den <= 2^53), an event
    // of probability below 1/2048!.
    while uniform_below_in(rng, den.saturating_mul(k)) < num {
        k += 1;
    }
    k % 2 == 1
}

/// Independent fair coins, 32 from each generator word (its bits are
/// independent and uniform), for samplers that need many of them.
struct FairCoins {
    word: u32,
    left: u32,
}

impl FairCoins {
    fn new() -> Self {
        Self { word: 0, left: 0 }
    }

    #[inline]
    fn flip(&mut self, rng: &mut ChaCha12Rng) -> bool {
        if self.left == 0 {
            self.word = rng.next_u32();
            self.left = 32;
        }
        let heads = self.word & 1 == 1;
        self.word >>= 1;
        self.left -= 1;
        heads
    }
}

/// True with probability exactly `exp(-1)`: [`bernoulli_exp_neg_le1`] for
/// gamma = 1, with its Bernoulli(1/2) step taken from `coins`.
fn bernoulli_exp_neg_one(rng: &mut ChaCha12Rng, coins: &mut FairCoins) -> bool {
    // A_1 ~ Bernoulli(1) is certain; A_2 ~ Bernoulli(1/2).
    if !coins.flip(rng) {
        return false;
    }
    let mut k: u64 = 3;
    while uniform_below_in(rng, k) < 1 {
        k += 1;
    }
    k % 2 == 1
}

/// A sample of the discrete Laplace distribution on the integers,
/// `P(x) proportional to exp(-|x| * s / t)` (scale `t / s`), exactly, with
/// integer arithmetic only (Canonne, Kamath, Steinke 2020, Algorithm 2).
/// Requires `s >= 1`, `1 <= t <= 2^53`; returns 0 otherwise. The sign and the
/// fair coins of the geometric part share generator words (32 coins a word).
pub fn discrete_laplace(rng: &mut LdpRng, s: u64, t: u64) -> i64 {
    if s == 0 || t == 0 || t > 1 << 53 {
        return 0;
    }
    let rng = rng.inner();
    let mut coins = FairCoins::new();
    loop {
        let u = uniform_below_in(rng, t);
        if !bernoulli_exp_neg_le1(rng, u, t) {
            continue;
        }
        // V ~ Geometric(1 - e^-1) on {0, 1, ...}.
        let mut v: u64 = 0;
        while bernoulli_exp_neg_one(rng, &mut coins) {
            v += 1;
        }
        // X = U + tV is geometric with ratio e^(-1/t); Y = floor(X / s) is
        // geometric with ratio e^(-s/t).
        let x = u.saturating_add(t.saturating_mul(v));
        let y = (x / s).min(i64::MAX as u64) as i64;
        let negative = coins.flip(rng);
        if negative && y == 0 {
            continue;
        }
        return if negative { -y } else { y };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Empirical frequencies of `discrete_laplace(s, t)` against the exact pmf
    /// `P(z) = (1 - a) / (1 + a) a^|z|`, `a = exp(-s/t)`: each of the values
    /// with `P(z) > 1e-3` and both tails beyond them is within 5 standard errors
    /// (sqrt(n P (1 - P))) of its expectation; with 131 cells over all cases,
    /// a false alarm has probability about 131 x 5.7e-7 = 7.5e-5.
    #[test]
    fn discrete_laplace_matches_its_pmf() {
        let mut rng = LdpRng::seeded_for_simulation(20_261_203);
        let n = 200_000;
        for (s, t) in [(1u64, 1u64), (1, 3), (3, 7), (5, 2), (1 << 20, 5 << 20)] {
            let a = (-(s as f64) / t as f64).exp();
            let pmf = |z: i64| (1.0 - a) / (1.0 + a) * a.powi(z.unsigned_abs() as i32);
            let k = (0..).find(|&z| pmf(z) <= 1e-3).unwrap() - 1;
            let mut counts = std::collections::HashMap::new();
            for _ in 0..n {
                let z = discrete_laplace(&mut rng, s, t).clamp(-k - 1, k + 1);
                *counts.entry(z).or_insert(0u64) += 1;
            }
            let tail = a.powi(k as i32 + 1) / (1.0 + a);
            let mut cells: Vec<(i64, f64)> = (-k..=k).map(|z| (z, pmf(z))).collect();
            cells.push((-k - 1, tail));
            cells.push((k + 1, tail));
            for (z, p) in cells {
                let got = counts.get(&z).copied().unwrap_or(0) as f64;
                let want = n as f64 * p;
                let se = (n as f64 * p * (1.0 - p)).sqrt();
                assert!(
                    (got - want).abs() < 5.0 * se,
                    "s {s} t {t} z {z}: {got} against {want:.1} +- {se:.1}"
                );
            }
        }
    }

    #[test]
    fn thresholds_round_in_the_stated_direction() {
        assert_eq!(threshold_down(0.5), 1 << 63);
        assert_eq!(threshold_up(0.5), 1 << 63);
        assert_eq!(threshold_down(1.0), u64::MAX);
        assert_eq!(threshold_down(-1.0), 0);
        assert_eq!(threshold_down(f64::NAN), 0);
        let p = 1.0 / 3.0;
        assert!(threshold_probability(threshold_down(p)) <= p);
        assert!(threshold_up(p) >= threshold_down(p));
        // Tiny probabilities round up to a nonzero threshold.
        assert_eq!(threshold_up(1e-30), 1);
    }

    #[test]
    fn uniform_below_stays_in_range() {
        let mut rng = LdpRng::seeded_for_simulation(3);
        for n in [1u64, 2, 3, 7, 1000, u64::MAX] {
            for _ in 0..100 {
                assert!(uniform_below(&mut rng, n) < n);
            }
        }
        assert_eq!(uniform_below(&mut rng, 0), 0);
    }

    #[test]
    fn bernoulli_words_extremes_and_rate() {
        let mut rng = LdpRng::seeded_for_simulation(5);
        let mut out = vec![0u64; 40];
        bernoulli_words(&mut rng, 0, &mut out);
        assert!(out.iter().all(|&w| w == 0));
        bernoulli_words(&mut rng, u64::MAX, &mut out);
        assert!(out.iter().all(|&w| w == u64::MAX));
        // 100 fills of 2560 coins at 3/8 (threshold with low bits set, so the
        // pooled rounds matter): mean 96000, sd sqrt(256000 * 15/64) = 245; 5 sd.
        let t = threshold_down(0.375) | 0xFFFF;
        let mut ones = 0u64;
        for _ in 0..100 {
            out.fill(0);
            bernoulli_words(&mut rng, t, &mut out);
            ones += out.iter().map(|w| u64::from(w.count_ones())).sum::<u64>();
        }
        assert!((ones as f64 - 96_000.0).abs() < 5.0 * 245.0, "{ones}");
    }

    #[test]
    fn bernoulli_word_extremes() {
        let mut rng = LdpRng::seeded_for_simulation(4);
        assert_eq!(bernoulli_word(&mut rng, 0), 0);
        // Threshold u64::MAX: each lane is 0 only with probability 2^-64.
        assert_eq!(bernoulli_word(&mut rng, u64::MAX), u64::MAX);
    }
}
