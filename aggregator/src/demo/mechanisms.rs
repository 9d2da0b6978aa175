//! Which mechanism randomizes each demo attribute.
//!
//! `auto` picks, per attribute, the mechanism with the smallest estimator
//! variance as the SDK states it: for categorical attributes the per-user count
//! variance of a value with true count 0 among 1 report
//! ([`Mechanism::count_variance`]), among GRR, OUE, OLH and Hadamard response; for
//! numeric attributes the worst case over the range's ends and midpoint of the
//! per-report variance ([`Mechanism::report_variance`]), among Piecewise, Hybrid,
//! Duchi and Laplace. GRR wins for small domains (d - 2 < 3 e^eps), OUE/OLH for
//! larger ones; Hybrid wins for numbers.

use ldp_sdk::Epsilon;
use ldp_sdk::mechanism::{Mechanism, MechanismSpec};

/// The mechanism for categorical attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Categorical {
    /// The smallest variance per attribute.
    Auto,
    /// Generalized randomized response.
    Grr,
    /// Symmetric unary encoding (basic one-time RAPPOR).
    Sue,
    /// Optimized unary encoding.
    Oue,
    /// Optimized local hashing.
    Olh,
    /// Hadamard response.
    Hadamard,
}

/// The mechanism for numeric attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Numeric {
    /// The smallest worst-case variance per attribute.
    Auto,
    /// Laplace on a power-of-two grid with geometric noise.
    Laplace,
    /// Duchi et al.'s one-bit mechanism.
    Duchi,
    /// Wang et al.'s Piecewise mechanism.
    Piecewise,
    /// Wang et al.'s Hybrid mechanism.
    Hybrid,
}

impl Categorical {
    /// The spec for a domain of size `d` under `epsilon`.
    pub fn spec(self, d: u32, epsilon: Epsilon) -> ldp_sdk::Result<MechanismSpec> {
        let fixed = |c: Self| match c {
            Self::Grr | Self::Auto => MechanismSpec::Grr { domain_size: d },
            Self::Sue => MechanismSpec::Sue { domain_size: d },
            Self::Oue => MechanismSpec::Oue { domain_size: d },
            Self::Olh => MechanismSpec::Olh {
                domain_size: d,
                buckets: 0,
                seed_count: 0,
            },
            Self::Hadamard => MechanismSpec::Hadamard { domain_size: d },
        };
        if self != Self::Auto {
            return Ok(fixed(self));
        }
        best(
            [Self::Grr, Self::Oue, Self::Olh, Self::Hadamard].map(fixed),
            epsilon,
            |m| m.count_variance(1.0, 0.0),
        )
    }
}

impl Numeric {
    /// The spec for the range `[lo, hi]` under `epsilon`.
    pub fn spec(self, (lo, hi): (f64, f64), epsilon: Epsilon) -> ldp_sdk::Result<MechanismSpec> {
        let fixed = |c: Self| match c {
            Self::Hybrid | Self::Auto => MechanismSpec::Hybrid { lo, hi },
            Self::Laplace => MechanismSpec::Laplace {
                lo,
                hi,
                granularity_log2: 0,
            },
            Self::Duchi => MechanismSpec::Duchi { lo, hi },
            Self::Piecewise => MechanismSpec::Piecewise { lo, hi },
        };
        if self != Self::Auto {
            return Ok(fixed(self));
        }
        best(
            [Self::Hybrid, Self::Piecewise, Self::Duchi, Self::Laplace].map(fixed),
            epsilon,
            |m| {
                let mut worst = 0.0f64;
                for x in [lo, (lo + hi) / 2.0, hi] {
                    worst = worst.max(m.report_variance(x)?);
                }
                Ok(worst)
            },
        )
    }
}

/// The candidate with the smallest `variance` (the first on ties). Candidates
/// that cannot be built for these parameters (e.g. OLH at a large epsilon,
/// whose counters would exceed the cap) are skipped; if none can, the last
/// construction error is returned.
fn best<const N: usize>(
    candidates: [MechanismSpec; N],
    epsilon: Epsilon,
    variance: impl Fn(&Mechanism) -> ldp_sdk::Result<f64>,
) -> ldp_sdk::Result<MechanismSpec> {
    let mut best: Option<(f64, MechanismSpec)> = None;
    let mut last_error = None;
    for spec in candidates {
        let m = match Mechanism::new(spec.clone(), epsilon) {
            Ok(m) => m,
            Err(e) => {
                last_error = Some(e);
                continue;
            }
        };
        let v = variance(&m)?;
        if best.as_ref().is_none_or(|(b, _)| v < *b) {
            best = Some((v, spec));
        }
    }
    match (best, last_error) {
        (Some((_, s)), _) => Ok(s),
        (None, Some(e)) => Err(e),
        (None, None) => Err(ldp_sdk::Error::Unsupported("no candidate mechanism".into())),
    }
}

/// A short display name: `GRR`, `OUE`, `Hybrid`, ...
pub fn label(spec: &MechanismSpec) -> &'static str {
    match spec {
        MechanismSpec::Binary => "Binary RR",
        MechanismSpec::Grr { .. } => "GRR",
        MechanismSpec::Sue { .. } => "SUE",
        MechanismSpec::Oue { .. } => "OUE",
        MechanismSpec::Olh { .. } => "OLH",
        MechanismSpec::Hadamard { .. } => "Hadamard",
        MechanismSpec::Laplace { .. } => "Laplace",
        MechanismSpec::Duchi { .. } => "Duchi",
        MechanismSpec::Piecewise { .. } => "Piecewise",
        MechanismSpec::Hybrid { .. } => "Hybrid",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_picks_grr_for_small_domains_and_unary_or_hashing_for_large() {
        let eps = Epsilon::new(1.0).unwrap();
        // GRR beats OUE iff d - 2 < 3 e^eps (~10.2 at eps = 1).
        for d in [2, 5, 10] {
            let s = Categorical::Auto.spec(d, eps).unwrap();
            assert_eq!(label(&s), "GRR", "d = {d}");
        }
        for d in [16, 42] {
            let s = Categorical::Auto.spec(d, eps).unwrap();
            assert!(matches!(label(&s), "OUE" | "OLH"), "d = {d}: {s:?}");
        }
        let s = Numeric::Auto.spec((17.0, 90.0), eps).unwrap();
        assert!(matches!(label(&s), "Hybrid" | "Piecewise"), "{s:?}");
        assert_eq!(
            Categorical::Sue.spec(4, eps).unwrap(),
            MechanismSpec::Sue { domain_size: 4 }
        );
    }

    #[test]
    fn auto_skips_mechanisms_that_cannot_be_built() {
        // At eps = 16 OLH would need e^16 + 1 buckets (over its counter cap):
        // auto must skip it rather than fail.
        let eps = Epsilon::new(16.0).unwrap();
        let olh = MechanismSpec::Olh {
            domain_size: 1000,
            buckets: 0,
            seed_count: 0,
        };
        assert!(Mechanism::new(olh, eps).is_err());
        let s = Categorical::Auto.spec(1000, eps).unwrap();
        assert_ne!(label(&s), "OLH", "{s:?}");
    }
}
