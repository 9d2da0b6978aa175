//! Composition of (epsilon, delta)-DP mechanisms: basic, advanced and exact.
//!
//! Each function returns an (epsilon, delta) guarantee for running every given
//! mechanism on the same data set, each possibly chosen after seeing the outputs of
//! the previous ones (adaptive composition) as long as the *privacy parameters*
//! are fixed in advance (the ledger records them before the release runs).
//!
//! - [`basic`]: epsilons and deltas add (Dwork, McSherry, Nissim, Smith 2006).
//! - [`advanced_drv`]: Dwork, Rothblum, Vadhan 2010, Theorem III.3, in its
//!   heterogeneous form: `sqrt(2 ln(1/delta') sum eps_i^2) + sum eps_i (e^eps_i - 1)`.
//! - [`advanced_kov`]: Kairouz, Oh, Viswanath 2015 ("The Composition Theorem for
//!   Differential Privacy"), Theorem 3.5: the minimum of `sum eps_i` and
//!   `sum eps_i (e^eps_i - 1)/(e^eps_i + 1) + sqrt(2 sum eps_i^2 log(e + sqrt(sum eps_i^2)/delta'))`
//!   and the same with `log(1/delta')`; always at least as tight as DRV.
//! - [`optimal_pure_epsilon`]: the exact optimum for k mechanisms that are each
//!   eps0-DP (KOV 2015 Theorem 3.3; Murtagh & Vadhan 2016 on its computation). The
//!   worst case is k-fold randomized response, whose privacy loss is
//!   `(k - 2l) eps0` with `l ~ Binomial(k, 1/(1 + e^eps0))`, so
//!   `delta(eps) = sum_{l: (k-2l) eps0 > eps} C(k,l) (e^((k-l) eps0) - e^(eps + l eps0)) / (1 + e^eps0)^k`
//!   exactly; the answer is the smallest eps with `delta(eps) <= delta`, found by
//!   bisection that only moves its upper end to points where the computed delta is
//!   below `delta (1 - 1e-8)`, a margin larger than the rounding error of the sum,
//!   and then rounds the result up by a further 1e-9 relative, so the returned
//!   epsilon is never below the true optimum (nor below reference values that were
//!   themselves rounded up by ~1e-12) and is within 2e-9 relative above it.
//!
//! ```
//! use ldp_aggregator::accountant::composition::{optimal_pure_epsilon, basic, DpGuarantee};
//! let exact = optimal_pure_epsilon(1.0, 100, 1e-5)?;
//! assert!(exact >= 79.8413 && exact < 79.8414); // basic composition says 100
//! # Ok::<(), ldp_aggregator::accountant::AccountantError>(())
//! ```

use serde::{Deserialize, Serialize};
use statrs::function::gamma::ln_gamma;

use super::{AccountantError, Result, check_delta, check_epsilon, log_add, smallest_epsilon};

/// An (epsilon, delta)-DP guarantee; delta = 0 is pure DP.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DpGuarantee {
    /// Epsilon (>= 0).
    pub epsilon: f64,
    /// Delta in [0, 1).
    pub delta: f64,
}

impl DpGuarantee {
    /// Validates epsilon (finite, >= 0) and delta (in [0, 1)).
    pub fn new(epsilon: f64, delta: f64) -> Result<Self> {
        if !(epsilon.is_finite() && epsilon >= 0.0) {
            return Err(AccountantError::InvalidParameter {
                name: "epsilon",
                reason: format!("{epsilon} must be finite and >= 0"),
            });
        }
        if !(delta.is_finite() && (0.0..1.0).contains(&delta)) {
            return Err(AccountantError::InvalidParameter {
                name: "delta",
                reason: format!("{delta} must be in [0, 1)"),
            });
        }
        Ok(Self { epsilon, delta })
    }
}

/// Basic composition: epsilons add and deltas add.
pub fn basic(parts: &[DpGuarantee]) -> DpGuarantee {
    DpGuarantee {
        epsilon: parts.iter().map(|p| p.epsilon).sum(),
        delta: parts.iter().map(|p| p.delta).sum(),
    }
}

/// The slack delta' left for an advanced bound when the composition may spend
/// `total_delta` and the parts already spend their own deltas.
fn slack(parts: &[DpGuarantee], total_delta: f64) -> Result<f64> {
    check_delta(total_delta)?;
    let own: f64 = parts.iter().map(|p| p.delta).sum();
    let slack = total_delta - own;
    if slack > 0.0 {
        Ok(slack)
    } else {
        Err(AccountantError::InvalidParameter {
            name: "delta",
            reason: format!("{total_delta} leaves no slack after the parts' own deltas ({own})"),
        })
    }
}

/// Advanced composition (Dwork, Rothblum, Vadhan 2010), heterogeneous form, at
/// total delta `total_delta` (the parts' deltas plus the slack delta').
pub fn advanced_drv(parts: &[DpGuarantee], total_delta: f64) -> Result<DpGuarantee> {
    let delta_slack = slack(parts, total_delta)?;
    let sum_sq: f64 = parts.iter().map(|p| p.epsilon * p.epsilon).sum();
    let drift: f64 = parts.iter().map(|p| p.epsilon * p.epsilon.exp_m1()).sum();
    Ok(DpGuarantee {
        epsilon: (2.0 * sum_sq * (1.0 / delta_slack).ln()).sqrt() + drift,
        delta: total_delta,
    })
}

/// Kairouz-Oh-Viswanath's closed-form bound (Theorem 3.5), at total delta
/// `total_delta`. Uses the union bound `1 - (1-d')prod(1-d_i) <= d' + sum d_i`.
pub fn advanced_kov(parts: &[DpGuarantee], total_delta: f64) -> Result<DpGuarantee> {
    let delta_slack = slack(parts, total_delta)?;
    let sum: f64 = parts.iter().map(|p| p.epsilon).sum();
    let sum_sq: f64 = parts.iter().map(|p| p.epsilon * p.epsilon).sum();
    // (e^x - 1)/(e^x + 1) = tanh(x/2).
    let drift: f64 = parts
        .iter()
        .map(|p| p.epsilon * (p.epsilon / 2.0).tanh())
        .sum();
    let a =
        drift + (2.0 * sum_sq * (std::f64::consts::E + sum_sq.sqrt() / delta_slack).ln()).sqrt();
    let b = drift + (2.0 * sum_sq * (1.0 / delta_slack).ln()).sqrt();
    Ok(DpGuarantee {
        epsilon: sum.min(a).min(b),
        delta: total_delta,
    })
}

/// Largest k for the exact computation (rounding of the binomial terms grows with k).
pub const MAX_EXACT_K: u64 = 100_000;

/// The exact optimal delta at `epsilon` of the k-fold composition of eps0-DP
/// mechanisms (see the module doc), computed in log space.
pub fn optimal_pure_delta(eps0: f64, k: u64, epsilon: f64) -> Result<f64> {
    check_epsilon("eps0", eps0)?;
    check_k(k)?;
    if !(epsilon.is_finite() && epsilon >= 0.0) {
        return Err(AccountantError::InvalidParameter {
            name: "epsilon",
            reason: format!("{epsilon} must be finite and >= 0"),
        });
    }
    let kf = k as f64;
    let log_norm = kf * eps0.exp().ln_1p();
    let log_k_fact = ln_gamma(kf + 1.0);
    let mut acc = f64::NEG_INFINITY;
    for l in 0..=k {
        let lf = l as f64;
        let loss = (kf - 2.0 * lf) * eps0;
        if loss <= epsilon {
            break;
        }
        let log_binom = log_k_fact - ln_gamma(lf + 1.0) - ln_gamma(kf - lf + 1.0);
        let log_gap = log_one_minus_exp(epsilon - loss);
        acc = log_add(acc, log_binom + (kf - lf) * eps0 - log_norm + log_gap);
    }
    Ok(acc.exp())
}

/// The smallest epsilon (rounded up, see the module doc) such that k-fold
/// composition of eps0-DP mechanisms is (epsilon, delta)-DP. Never below the exact
/// optimum; never above `k * eps0`.
pub fn optimal_pure_epsilon(eps0: f64, k: u64, delta: f64) -> Result<f64> {
    check_delta(delta)?;
    check_k(k)?;
    smallest_epsilon(0.0, k as f64 * eps0, delta * (1.0 - 1e-8), |eps| {
        optimal_pure_delta(eps0, k, eps)
    })
}

/// Largest support of the composed privacy-loss distribution
/// [`optimal_pure_epsilon_heterogeneous`] enumerates.
pub const MAX_EXACT_SUPPORT: u64 = 200_000;

/// The exact optimal composition of pure-DP mechanisms with different epsilons
/// (Murtagh & Vadhan 2016): each eps_i-DP mechanism is dominated by randomized
/// response with eps_i (KOV 2015), whose privacy loss is +-eps_i, so the composed
/// loss distribution is enumerated exactly over the counts of "-" outcomes per
/// distinct epsilon, and `delta(eps) = E_P[(1 - e^(eps - L))_+]`. Rounded up like
/// [`optimal_pure_epsilon`]. An error when the support exceeds
/// [`MAX_EXACT_SUPPORT`] (the problem is #P-hard in general).
pub fn optimal_pure_epsilon_heterogeneous(epsilons: &[f64], delta: f64) -> Result<f64> {
    check_delta(delta)?;
    let mut sorted = epsilons.to_vec();
    sorted
        .iter()
        .try_for_each(|&e| check_epsilon("epsilon", e))?;
    sorted.sort_by(f64::total_cmp);
    let mut groups: Vec<(f64, u64)> = Vec::new();
    for e in sorted {
        match groups.last_mut() {
            Some((g, k)) if *g == e => *k += 1,
            _ => groups.push((e, 1)),
        }
    }
    match groups.as_slice() {
        [] => return Ok(0.0),
        [(eps0, k)] => return optimal_pure_epsilon(*eps0, *k, delta),
        _ => {}
    }
    let support = groups
        .iter()
        .try_fold(1u64, |acc, (_, k)| acc.checked_mul(k + 1))
        .filter(|s| *s <= MAX_EXACT_SUPPORT)
        .ok_or_else(|| AccountantError::InvalidParameter {
            name: "epsilons",
            reason: format!("the composed loss distribution exceeds {MAX_EXACT_SUPPORT} points"),
        })?;
    // The loss distribution under P: (loss, log probability) pairs.
    let mut pld: Vec<(f64, f64)> = vec![(0.0, 0.0)];
    for &(eps0, k) in &groups {
        let kf = k as f64;
        let log_norm = kf * eps0.exp().ln_1p();
        let log_k_fact = ln_gamma(kf + 1.0);
        let mut next = Vec::with_capacity(usize::try_from(support).unwrap_or(usize::MAX));
        for l in 0..=k {
            let lf = l as f64;
            let log_p = log_k_fact - ln_gamma(lf + 1.0) - ln_gamma(kf - lf + 1.0)
                + (kf - lf) * eps0
                - log_norm;
            let loss = (kf - 2.0 * lf) * eps0;
            next.extend(pld.iter().map(|&(l0, p0)| (l0 + loss, p0 + log_p)));
        }
        pld = next;
    }
    let total: f64 = groups.iter().map(|(e, k)| e * *k as f64).sum();
    smallest_epsilon(0.0, total, delta * (1.0 - 1e-8), |eps| {
        let acc = pld
            .iter()
            .filter(|(loss, _)| *loss > eps)
            .fold(f64::NEG_INFINITY, |acc, &(loss, log_p)| {
                log_add(acc, log_p + log_one_minus_exp(eps - loss))
            });
        Ok(acc.exp())
    })
}

fn check_k(k: u64) -> Result<()> {
    if (1..=MAX_EXACT_K).contains(&k) {
        Ok(())
    } else {
        Err(AccountantError::InvalidParameter {
            name: "k",
            reason: format!("{k} must be in [1, {MAX_EXACT_K}] for the exact computation"),
        })
    }
}

/// `log(1 - exp(x))` for x < 0, accurate near 0 and far below it.
fn log_one_minus_exp(x: f64) -> f64 {
    if x > -std::f64::consts::LN_2 {
        (-x.exp_m1()).ln()
    } else {
        (-x.exp()).ln_1p()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn homogeneous(eps0: f64, k: usize) -> Vec<DpGuarantee> {
        vec![DpGuarantee::new(eps0, 0.0).unwrap(); k]
    }

    #[test]
    fn single_mechanism_has_the_closed_form() {
        // k = 1: delta(eps) = (e^eps0 - e^eps)/(1 + e^eps0), so eps = ln(e^eps0 - delta (1 + e^eps0)).
        for eps0 in [0.1_f64, 1.0, 4.0] {
            let want = (eps0.exp() - 1e-5 * (1.0 + eps0.exp())).ln();
            let got = optimal_pure_epsilon(eps0, 1, 1e-5).unwrap();
            assert!(
                got >= want && got - want < 3e-9 * want,
                "{eps0}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn ordering_of_the_bounds() {
        for (eps0, k) in [(0.1, 100), (0.5, 1000), (1.0, 10)] {
            let parts = homogeneous(eps0, k);
            let exact = optimal_pure_epsilon(eps0, k as u64, 1e-5).unwrap();
            let kov = advanced_kov(&parts, 1e-5).unwrap().epsilon;
            let drv = advanced_drv(&parts, 1e-5).unwrap().epsilon;
            let b = basic(&parts).epsilon;
            assert!(exact <= kov + 1e-12 && kov <= drv && kov <= b, "{eps0} {k}");
        }
    }

    /// Brute force over all 2^k outcomes of the dominating randomized-response
    /// pairs: delta(eps) = sum_o max(0, P(o) - e^eps Q(o)).
    fn brute_force_delta(epsilons: &[f64], eps: f64) -> f64 {
        let k = epsilons.len();
        (0..1u32 << k)
            .map(|mask| {
                let (mut p, mut q) = (1.0, 1.0);
                for (i, e) in epsilons.iter().enumerate() {
                    let hi = e.exp() / (1.0 + e.exp());
                    let (pi, qi) = if mask >> i & 1 == 1 {
                        (hi, 1.0 - hi)
                    } else {
                        (1.0 - hi, hi)
                    };
                    p *= pi;
                    q *= qi;
                }
                (p - eps.exp() * q).max(0.0)
            })
            .sum()
    }

    #[test]
    fn heterogeneous_exact_matches_brute_force() {
        let parts = [0.3, 0.5, 0.5, 1.0, 1.0, 1.0, 0.3, 0.7];
        let delta = 1e-3;
        let got = optimal_pure_epsilon_heterogeneous(&parts, delta).unwrap();
        // Rounded up: its delta meets the target, and a 1e-6 smaller epsilon does not.
        assert!(brute_force_delta(&parts, got) <= delta);
        assert!(brute_force_delta(&parts, got * (1.0 - 1e-6)) > delta);
        // Between the homogeneous bounds at the smallest and largest epsilon.
        let lower = optimal_pure_epsilon(0.3, 8, delta).unwrap();
        let upper = optimal_pure_epsilon(1.0, 8, delta).unwrap();
        assert!(lower < got && got < upper, "{lower} {got} {upper}");
        // One group is the homogeneous computation.
        let same = optimal_pure_epsilon_heterogeneous(&[0.5; 20], 1e-5).unwrap();
        assert_eq!(same, optimal_pure_epsilon(0.5, 20, 1e-5).unwrap());
        assert!(
            optimal_pure_epsilon_heterogeneous(
                &[
                    0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7,
                    1.8, 1.9
                ],
                1e-5
            )
            .is_err()
        );
    }

    #[test]
    fn deltas_are_validated() {
        let parts = vec![DpGuarantee::new(1.0, 1e-5).unwrap(); 3];
        assert!(advanced_kov(&parts, 2e-5).is_err());
        assert!(advanced_kov(&parts, 4e-5).is_ok());
        assert!(optimal_pure_epsilon(1.0, 10, 0.0).is_err());
        assert!(optimal_pure_epsilon(1.0, 0, 1e-5).is_err());
        assert!(DpGuarantee::new(-1.0, 0.0).is_err());
        assert!(DpGuarantee::new(1.0, 1.0).is_err());
    }
}
