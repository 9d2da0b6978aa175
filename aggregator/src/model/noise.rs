//! Noise for the central (trusted curator) models.
//!
//! - [`DiscreteLaplace`]: exact sampling of the discrete Laplace distribution
//!   `P(x) ∝ exp(-|x| / scale)` on the integers, for noisy counts. Only integer
//!   arithmetic and exact integer coins are used, so there is no floating-point
//!   leakage (Mironov 2012); the scale is a rational rounded *up* from
//!   `sensitivity / epsilon`, and [`DiscreteLaplace::epsilon`] reports the epsilon
//!   actually implemented (never above the request).
//! - [`standard_normal`]: the Gaussian of DP-SGD, by the Box-Muller transform on
//!   53-bit uniforms. Like every DP-SGD implementation we know of (Opacus, TF
//!   Privacy) it uses floating point; the textbook analysis of the Gaussian
//!   mechanism assumes real arithmetic.
//!
//! # Privacy
//! Adding discrete Laplace noise of scale `Δ / ε` to each of a set of integer
//! counts whose vector changes by at most `Δ` in L1 norm between neighbouring data
//! sets is ε-DP (Ghosh, Roughgarden, Sundararajan 2009; Canonne, Kamath, Steinke
//! 2020, "The Discrete Gaussian for Differential Privacy", Algorithms 1 and 2,
//! implemented in the SDK's `mechanism::sampling`).
//!
//! # Utility
//! The variance of discrete Laplace noise with `p = exp(-1/scale)` is
//! `2p / (1-p)^2`, slightly below the continuous `2 scale^2`.

use ldp_sdk::LdpRng;
use ldp_sdk::mechanism::sampling;
use rand::RngExt;

use super::ModelError;

/// Denominator of the rational epsilon: epsilon is rounded down to a multiple of
/// 2^-20, so the implemented scale is never below `sensitivity / epsilon`.
const EPS_DENOMINATOR: u64 = 1 << 20;

/// The discrete Laplace distribution with scale `num / den` (`num`, `den` > 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscreteLaplace {
    num: u64,
    den: u64,
}

impl DiscreteLaplace {
    /// The distribution for counts of L1 sensitivity `sensitivity` at `epsilon`:
    /// scale `sensitivity / epsilon'` where `epsilon'` is `epsilon` rounded down to
    /// a multiple of 2^-20. Rejects epsilon < 2^-20 or above 2^20 and sensitivity 0
    /// (a `u32` sensitivity times 2^20 stays below the sampler's 2^53 limit).
    pub fn for_counts(sensitivity: u32, epsilon: f64) -> Result<Self, ModelError> {
        super::check_epsilon(epsilon)?;
        let den = (epsilon * EPS_DENOMINATOR as f64).floor();
        if !(1.0..=(EPS_DENOMINATOR * EPS_DENOMINATOR) as f64).contains(&den) || sensitivity == 0 {
            return Err(ModelError::InvalidParameter {
                name: "epsilon",
                reason: format!("{epsilon} with sensitivity {sensitivity} is out of range"),
            });
        }
        Ok(Self {
            num: u64::from(sensitivity) * EPS_DENOMINATOR,
            den: den as u64,
        })
    }

    /// The scale `num / den`.
    pub fn scale(&self) -> f64 {
        self.num as f64 / self.den as f64
    }

    /// Standard deviation `sqrt(2p) / (1 - p)`, `p = exp(-1 / scale)`.
    pub fn std_dev(&self) -> f64 {
        let p = (-1.0 / self.scale()).exp();
        (2.0 * p).sqrt() / (1.0 - p)
    }

    /// The epsilon implemented for counts of the given L1 sensitivity.
    pub fn epsilon(&self, sensitivity: u32) -> f64 {
        f64::from(sensitivity) / self.scale()
    }

    /// One exact sample, by the SDK's integer-only sampler
    /// ([`ldp_sdk::mechanism::sampling::discrete_laplace`], scale t/s = num/den).
    pub fn sample(&self, rng: &mut LdpRng) -> i64 {
        sampling::discrete_laplace(rng, self.den, self.num)
    }
}

/// A standard normal sample by the Box-Muller transform on 53-bit uniforms.
pub fn standard_normal(rng: &mut LdpRng) -> f64 {
    // u1 in (0, 1], so ln(u1) is finite.
    let u1 = ((rng.random::<u64>() >> 11) + 1) as f64 / (1u64 << 53) as f64;
    let u2 = (rng.random::<u64>() >> 11) as f64 / (1u64 << 53) as f64;
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discrete_laplace_moments_match_theory() {
        let lap = DiscreteLaplace::for_counts(3, 1.5).unwrap();
        assert!((lap.scale() - 2.0).abs() < 1e-5);
        assert!(lap.epsilon(3) <= 1.5);
        let mut rng = LdpRng::seeded_for_simulation(11);
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| lap.sample(&mut rng) as f64).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| x * x).sum::<f64>() / n as f64;
        let p = (-1.0 / lap.scale()).exp();
        let theory = 2.0 * p / ((1.0 - p) * (1.0 - p));
        // Mean: 5 standard errors of sqrt(var / n). Variance: the fourth moment of
        // this distribution is below 25 var^2, so 5 standard errors of the sample
        // second moment are under 5 * 5 var / sqrt(n).
        assert!(mean.abs() < 5.0 * (theory / n as f64).sqrt(), "mean {mean}");
        assert!(
            (var - theory).abs() < 25.0 * theory / (n as f64).sqrt(),
            "var {var} vs {theory}"
        );
        // P(0) = (1 - p) / (1 + p).
        let zeros = xs.iter().filter(|&&x| x == 0.0).count() as f64 / n as f64;
        let p0 = (1.0 - p) / (1.0 + p);
        assert!((zeros - p0).abs() < 5.0 * (p0 * (1.0 - p0) / n as f64).sqrt());
    }

    #[test]
    fn epsilon_is_never_rounded_up() {
        for eps in [0.1, 0.3, 1.0 / 3.0, 1.0, 2.7] {
            let lap = DiscreteLaplace::for_counts(12, eps).unwrap();
            assert!(lap.epsilon(12) <= eps && lap.epsilon(12) > eps - 1e-5);
        }
        assert!(DiscreteLaplace::for_counts(1, 0.0).is_err());
        assert!(DiscreteLaplace::for_counts(0, 1.0).is_err());
    }

    #[test]
    fn standard_normal_has_unit_variance() {
        let mut rng = LdpRng::seeded_for_simulation(5);
        let n = 100_000;
        let xs: Vec<f64> = (0..n).map(|_| standard_normal(&mut rng)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| x * x).sum::<f64>() / n as f64;
        // 5 standard errors: sd(mean) = 1/sqrt(n), sd(second moment) = sqrt(2/n).
        assert!(mean.abs() < 5.0 / (n as f64).sqrt());
        assert!((var - 1.0).abs() < 5.0 * (2.0 / n as f64).sqrt());
    }
}
