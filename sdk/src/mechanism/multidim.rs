//! Multi-dimensional numeric vectors by dimension sampling (Wang et al. 2019,
//! Algorithm 4), built on the one-dimensional Duchi, Piecewise or Hybrid
//! mechanisms.
//!
//! A device holding x in [-1, 1]^d draws k distinct coordinates uniformly (public
//! coins, independent of x) and reports each of them through the 1-D mechanism
//! on [-1, 1] at epsilon / k; the other coordinates are not reported. The
//! aggregator keeps one [`Stats`] per coordinate and estimates coordinate j by the
//! mean of the reports of j. Wang et al. scale each report by d / k and divide by
//! the number of devices n; dividing by the realized number of reports of j
//! instead (a ratio estimator) has the same expectation given at least one report
//! and a smaller variance, since it does not add the variance of that number.
//! With k = max(1, min(d, floor(epsilon / 2.5))) ([`MultiDim::optimal_k`]), the
//! choice of the paper for Piecewise and Hybrid.
//!
//! Every coordinate is published as its own 1-D metric
//! ([`MultiDim::coordinate_spec`]), so a server validates and aggregates the
//! reports with the 1-D mechanism's code.
//!
//! # Privacy
//! k reports, each epsilon/k-LDP, about one vector: epsilon-LDP by basic
//! composition. The sampled coordinates are independent of the data.
//!
//! # Utility
//! Coordinate j gets about n k / d reports, so its mean has variance about
//! `d / (n k) Var_1D(epsilon / k, x_j)`, where `Var_1D` is the 1-D mechanism's
//! per-report variance (Wang et al. 2019, Lemma 5 for the d/k-scaled form).
//!
//! Citation: Wang, Xiao, Yang, Zhao, Hu, Shin, Yu 2019 ("Collecting and analyzing
//! multidimensional data with local differential privacy", ICDE), Algorithm 4.
//!
//! ```
//! use ldp_sdk::{Epsilon, LdpRng};
//! use ldp_sdk::mechanism::multidim::{MultiDim, NumericBase};
//! let md = MultiDim::new(NumericBase::Piecewise, 10, Epsilon::new(4.0)?)?;
//! assert_eq!(md.k(), 1);
//! let mut rng = LdpRng::seeded_for_simulation(1);
//! let reports = md.encode(&[0.5; 10], &mut rng)?;
//! assert_eq!(reports.len(), 1);
//! # Ok::<(), ldp_sdk::Error>(())
//! ```

use crate::estimate::{Estimate, Stats};
use crate::mechanism::{Mechanism, MechanismSpec, Report, sampling};
use crate::{Epsilon, Error, LdpRng, Result};

/// The 1-D mechanism used for each sampled coordinate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumericBase {
    /// Duchi et al.'s two-output mechanism.
    Duchi,
    /// Wang et al.'s Piecewise mechanism.
    Piecewise,
    /// Wang et al.'s Hybrid of the two.
    Hybrid,
}

impl NumericBase {
    /// The 1-D spec on [-1, 1].
    pub fn spec(self) -> MechanismSpec {
        let (lo, hi) = (-1.0, 1.0);
        match self {
            Self::Duchi => MechanismSpec::Duchi { lo, hi },
            Self::Piecewise => MechanismSpec::Piecewise { lo, hi },
            Self::Hybrid => MechanismSpec::Hybrid { lo, hi },
        }
    }
}

/// A d-dimensional mechanism reporting k sampled coordinates.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiDim {
    dim: u32,
    k: u32,
    epsilon: Epsilon,
    spec: MechanismSpec,
    coordinate: Mechanism,
}

impl MultiDim {
    /// `k = max(1, min(d, floor(epsilon / 2.5)))` (Wang et al. 2019).
    pub fn optimal_k(dim: u32, epsilon: Epsilon) -> u32 {
        ((epsilon.get() / 2.5).floor() as u32).clamp(1, dim.max(1))
    }

    /// Dimension `dim >= 1` with [`MultiDim::optimal_k`] coordinates per report.
    pub fn new(base: NumericBase, dim: u32, epsilon: Epsilon) -> Result<Self> {
        Self::with_k(base, dim, Self::optimal_k(dim, epsilon), epsilon)
    }

    /// Dimension `dim >= 1` with `k` in `[1, dim]` coordinates per report.
    pub fn with_k(base: NumericBase, dim: u32, k: u32, epsilon: Epsilon) -> Result<Self> {
        if dim == 0 || k == 0 || k > dim {
            return Err(Error::InvalidParameter {
                name: "k",
                reason: format!("need 1 <= k <= dim, got k = {k}, dim = {dim}"),
            });
        }
        let spec = base.spec();
        let per_coordinate = Epsilon::new(epsilon.get() / f64::from(k))?;
        let coordinate = Mechanism::new(spec.clone(), per_coordinate)?;
        Ok(Self {
            dim,
            k,
            epsilon,
            spec,
            coordinate,
        })
    }

    /// Dimension d.
    pub fn dim(&self) -> u32 {
        self.dim
    }

    /// Coordinates reported per vector.
    pub fn k(&self) -> u32 {
        self.k
    }

    /// Epsilon of one vector (all k reports together).
    pub fn epsilon(&self) -> Epsilon {
        self.epsilon
    }

    /// The 1-D spec every coordinate is published with (range [-1, 1]).
    pub fn coordinate_spec(&self) -> &MechanismSpec {
        &self.spec
    }

    /// The 1-D mechanism of every coordinate, at epsilon / k.
    pub fn coordinate_mechanism(&self) -> &Mechanism {
        &self.coordinate
    }

    /// Randomizes `x` (length d, every entry in [-1, 1]; anything else is an error,
    /// never clamped): k (coordinate, report) pairs with distinct coordinates.
    pub fn encode(&self, x: &[f64], rng: &mut LdpRng) -> Result<Vec<(u32, Report)>> {
        if x.len() != self.dim as usize {
            return Err(Error::InvalidParameter {
                name: "vector",
                reason: format!("length {} != dimension {}", x.len(), self.dim),
            });
        }
        if let Some(bad) = x.iter().find(|v| !(-1.0..=1.0).contains(*v)) {
            return Err(Error::InvalidParameter {
                name: "vector",
                reason: format!("entry {bad} outside [-1, 1]"),
            });
        }
        // Partial Fisher-Yates: the first k entries are a uniform k-subset.
        let mut coords: Vec<u32> = (0..self.dim).collect();
        for i in 0..self.k as usize {
            let j = i + sampling::uniform_below(rng, (coords.len() - i) as u64) as usize;
            coords.swap(i, j);
        }
        coords[..self.k as usize]
            .iter()
            .map(|&j| Ok((j, self.coordinate.encode_value(x[j as usize], rng)?)))
            .collect()
    }

    /// Empty statistics, one per coordinate.
    pub fn new_stats(&self) -> Vec<Stats> {
        (0..self.dim).map(|_| self.coordinate.new_stats()).collect()
    }

    /// Validates `report` for `coordinate` and adds it to `stats`.
    pub fn accumulate(&self, stats: &mut [Stats], coordinate: u32, report: &Report) -> Result<()> {
        if stats.len() != self.dim as usize {
            return Err(Error::StatsMismatch(format!(
                "{} coordinate statistics for dimension {}",
                stats.len(),
                self.dim
            )));
        }
        let s = stats
            .get_mut(coordinate as usize)
            .ok_or_else(|| Error::OutOfDomain {
                value: coordinate.to_string(),
                domain_size: self.dim,
            })?;
        self.coordinate.accumulate(s, report)
    }

    /// Per coordinate, the mean of its reports (an estimate of the mean of x_j over
    /// the devices), or `None` when no device reported that coordinate.
    pub fn estimate_means(&self, stats: &[Stats]) -> Result<Vec<Option<Estimate>>> {
        if stats.len() != self.dim as usize {
            return Err(Error::StatsMismatch(format!(
                "{} coordinate statistics for dimension {}",
                stats.len(),
                self.dim
            )));
        }
        stats
            .iter()
            .map(|s| {
                if s.reports == 0 {
                    Ok(None)
                } else {
                    self.coordinate.estimate_mean(s).map(Some)
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optimal_k_follows_the_paper() {
        let e = |x| Epsilon::new(x).unwrap();
        assert_eq!(MultiDim::optimal_k(10, e(1.0)), 1);
        assert_eq!(MultiDim::optimal_k(10, e(4.0)), 1);
        assert_eq!(MultiDim::optimal_k(10, e(8.0)), 3);
        assert_eq!(MultiDim::optimal_k(2, e(8.0)), 2);
    }

    #[test]
    fn rejects_bad_vectors() {
        let md = MultiDim::new(NumericBase::Duchi, 3, Epsilon::new(1.0).unwrap()).unwrap();
        let mut rng = LdpRng::seeded_for_simulation(1);
        assert!(md.encode(&[0.0, 0.0], &mut rng).is_err());
        assert!(md.encode(&[0.0, 1.5, 0.0], &mut rng).is_err());
        assert!(md.encode(&[0.0, f64::NAN, 0.0], &mut rng).is_err());
        assert!(MultiDim::with_k(NumericBase::Duchi, 3, 4, Epsilon::new(1.0).unwrap()).is_err());
    }

    #[test]
    fn means_are_unbiased_and_coordinates_distinct() {
        let eps = Epsilon::new(8.0).unwrap();
        for base in [
            NumericBase::Duchi,
            NumericBase::Piecewise,
            NumericBase::Hybrid,
        ] {
            let md = MultiDim::new(base, 5, eps).unwrap();
            assert_eq!(md.k(), 3);
            let x = [-1.0, -0.5, 0.0, 0.25, 1.0];
            let mut rng = LdpRng::seeded_for_simulation(9);
            let mut stats = md.new_stats();
            let n = 20_000;
            for _ in 0..n {
                let reports = md.encode(&x, &mut rng).unwrap();
                let mut seen: Vec<u32> = reports.iter().map(|(j, _)| *j).collect();
                seen.sort_unstable();
                seen.dedup();
                assert_eq!(seen.len(), 3);
                for (j, r) in &reports {
                    md.accumulate(&mut stats, *j, r).unwrap();
                }
            }
            let est = md.estimate_means(&stats).unwrap();
            for (j, e) in est.iter().enumerate() {
                let e = e.expect("every coordinate was reported");
                // Each coordinate gets about n k / d = 12,000 reports; 5 standard
                // errors of the (sample-variance based) SE of the 1-D mean.
                assert!(
                    (e.value - x[j]).abs() < 5.0 * e.std_error,
                    "{base:?} coordinate {j}: {} vs {}",
                    e.value,
                    x[j]
                );
                let share = stats[j].reports as f64 / n as f64;
                // P(j sampled) = k/d = 0.6; binomial SE sqrt(0.24 / n), 5 SE.
                assert!((share - 0.6).abs() < 5.0 * (0.24 / n as f64).sqrt());
            }
        }
    }
}
