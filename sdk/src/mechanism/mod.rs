//! The local randomizers.
//!
//! A [`MechanismSpec`] names a mechanism and its public parameters (what a metric
//! publishes); [`Mechanism::new`] validates it together with an [`Epsilon`] and
//! derives the mechanism's probabilities. A [`Mechanism`] then
//! - encodes one value into a [`Report`] on the device (`encode_index`, `encode_value`),
//! - validates a report on the server ([`Mechanism::validate`]),
//! - folds reports into fixed-size [`Stats`] ([`Mechanism::accumulate`]),
//! - and turns statistics into unbiased estimates with standard errors
//!   ([`Mechanism::estimate_frequencies`], [`Mechanism::estimate_mean`]).
//!
//! Every mechanism satisfies pure epsilon-LDP per report: for any two inputs and
//! any output, the output probabilities differ by at most a factor e^epsilon.
//!
//! Mechanisms: [`grr`] (binary and k-ary randomized response), [`unary`] (SUE,
//! OUE), [`olh`], [`hadamard`], [`numeric`] (Laplace, Duchi, Piecewise, Hybrid)
//! and [`rappor`]. Each module states its epsilon per report (`# Privacy`) and
//! its estimator's variance (`# Utility`). Privacy-critical coins compare
//! integers ([`sampling`]); parameter limits are in [`limits`].

pub mod grr;
pub mod hadamard;
pub mod limits;
pub mod multidim;
pub mod numeric;
pub mod olh;
mod oracle;
pub mod rappor;
pub mod sampling;
pub mod unary;

use serde::{Deserialize, Serialize};

use crate::estimate::{Estimate, Stats};
use crate::{Epsilon, Error, LdpRng, Result};

/// A mechanism and its public parameters, as a metric publishes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum MechanismSpec {
    /// Binary randomized response on {0, 1}.
    Binary,
    /// k-ary (generalized) randomized response over `[0, domain_size)`.
    Grr {
        /// Domain size d >= 2.
        domain_size: u32,
    },
    /// Symmetric unary encoding (basic one-time RAPPOR).
    Sue {
        /// Domain size d >= 2.
        domain_size: u32,
    },
    /// Optimized unary encoding.
    Oue {
        /// Domain size d >= 2.
        domain_size: u32,
    },
    /// Optimized local hashing with a finite public seed family.
    Olh {
        /// Domain size d >= 2.
        domain_size: u32,
        /// Buckets g >= 2 (0 = the optimum round(e^eps) + 1).
        buckets: u32,
        /// Size S of the public seed family (0 = default).
        seed_count: u32,
    },
    /// Hadamard response.
    Hadamard {
        /// Domain size d >= 2.
        domain_size: u32,
    },
    /// Laplace on a power-of-two grid with discrete (geometric) noise.
    Laplace {
        /// Lower bound of the range.
        lo: f64,
        /// Upper bound of the range.
        hi: f64,
        /// The grid is 2^granularity_log2 (0 = chosen from the range).
        granularity_log2: i32,
    },
    /// Duchi et al.'s one-bit numeric mechanism.
    Duchi {
        /// Lower bound of the range.
        lo: f64,
        /// Upper bound of the range.
        hi: f64,
    },
    /// Wang et al.'s Piecewise mechanism.
    Piecewise {
        /// Lower bound of the range.
        lo: f64,
        /// Upper bound of the range.
        hi: f64,
    },
    /// Wang et al.'s Hybrid of Piecewise and Duchi.
    Hybrid {
        /// Lower bound of the range.
        lo: f64,
        /// Upper bound of the range.
        hi: f64,
    },
    /// RAPPOR (see [`rappor`]). Naming of the RAPPOR paper: p = P(1 | PRR bit 0),
    /// q = P(1 | PRR bit 1), the reverse of most later papers.
    Rappor {
        /// Bloom filter size k in [1, 256].
        num_bits: u32,
        /// Bloom hashes h in [1, 16].
        num_hashes: u32,
        /// Cohorts m >= 1.
        num_cohorts: u32,
        /// PRR noise probability (implemented as ceil(128 f) / 128).
        f: f64,
        /// P(IRR bit 1 | PRR bit 0).
        p: f64,
        /// P(IRR bit 1 | PRR bit 1).
        q: f64,
    },
}

/// One randomized report. Nothing in it is a raw value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Report {
    /// Binary RR and GRR: the reported index.
    Index(u32),
    /// SUE and OUE: d bits packed least significant bit first.
    Bits(Vec<u8>),
    /// OLH: seed index in `[0, S)` and bucket in `[0, g)`.
    Hashed {
        /// Index into the public seed family.
        seed_index: u32,
        /// Reported bucket.
        bucket: u32,
    },
    /// Hadamard response: coefficient index and reported sign.
    Hadamard {
        /// Coefficient index in `[0, D)`.
        coefficient: u32,
        /// The reported sign.
        positive: bool,
    },
    /// Laplace: the output as an integer multiple of the grid.
    Grid(i64),
    /// Duchi, Piecewise, Hybrid: the unbiased output on the metric's scale.
    Numeric(f64),
    /// RAPPOR: the cohort and k IRR bits packed least significant bit first.
    Rappor {
        /// Cohort in `[0, m)`.
        cohort: u32,
        /// The IRR bits, `ceil(k / 8)` bytes, padding bits zero.
        bits: Vec<u8>,
    },
}

/// A validated mechanism with its derived parameters.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Mechanism {
    /// Binary RR and GRR.
    Grr(grr::Grr),
    /// RAPPOR (server side: validation and per-cohort bit counts).
    Rappor(rappor::Rappor),
    /// SUE and OUE.
    Unary(unary::Unary),
    /// Optimized local hashing.
    Olh(olh::Olh),
    /// Hadamard response.
    Hadamard(hadamard::Hadamard),
    /// Discrete Laplace on a power-of-two grid.
    Laplace(numeric::laplace::Laplace),
    /// Duchi et al.'s two-output mechanism.
    Duchi(numeric::duchi::Duchi),
    /// Wang et al.'s Piecewise mechanism.
    Piecewise(numeric::piecewise::Piecewise),
    /// Wang et al.'s Hybrid mechanism.
    Hybrid(numeric::hybrid::Hybrid),
}

impl Mechanism {
    /// Validates `spec` and `epsilon` and derives the mechanism's parameters.
    pub fn new(spec: MechanismSpec, epsilon: Epsilon) -> Result<Self> {
        match spec {
            MechanismSpec::Binary => Ok(Self::Grr(grr::Grr::new(2, epsilon)?)),
            MechanismSpec::Grr { domain_size } => {
                Ok(Self::Grr(grr::Grr::new(domain_size, epsilon)?))
            }
            MechanismSpec::Rappor {
                num_bits,
                num_hashes,
                num_cohorts,
                f,
                p,
                q,
            } => {
                let params = rappor::RapporParams::new(num_bits, num_hashes, num_cohorts, f, p, q)?;
                Ok(Self::Rappor(rappor::Rappor::new(params, epsilon)?))
            }
            MechanismSpec::Sue { domain_size } => Ok(Self::Unary(unary::Unary::new(
                unary::UnaryKind::Symmetric,
                domain_size,
                epsilon,
            )?)),
            MechanismSpec::Oue { domain_size } => Ok(Self::Unary(unary::Unary::new(
                unary::UnaryKind::Optimized,
                domain_size,
                epsilon,
            )?)),
            MechanismSpec::Olh {
                domain_size,
                buckets,
                seed_count,
            } => Ok(Self::Olh(olh::Olh::new(
                domain_size,
                buckets,
                seed_count,
                epsilon,
            )?)),
            MechanismSpec::Hadamard { domain_size } => Ok(Self::Hadamard(hadamard::Hadamard::new(
                domain_size,
                epsilon,
            )?)),
            MechanismSpec::Laplace {
                lo,
                hi,
                granularity_log2,
            } => Ok(Self::Laplace(numeric::laplace::Laplace::new(
                lo,
                hi,
                granularity_log2,
                epsilon,
            )?)),
            MechanismSpec::Duchi { lo, hi } => {
                Ok(Self::Duchi(numeric::duchi::Duchi::new(lo, hi, epsilon)?))
            }
            MechanismSpec::Piecewise { lo, hi } => Ok(Self::Piecewise(
                numeric::piecewise::Piecewise::new(lo, hi, epsilon)?,
            )),
            MechanismSpec::Hybrid { lo, hi } => {
                Ok(Self::Hybrid(numeric::hybrid::Hybrid::new(lo, hi, epsilon)?))
            }
        }
    }

    /// The epsilon of one report.
    pub fn epsilon(&self) -> Epsilon {
        match self {
            Self::Grr(m) => m.epsilon(),
            Self::Rappor(m) => m.epsilon(),
            Self::Unary(m) => m.epsilon(),
            Self::Olh(m) => m.epsilon(),
            Self::Hadamard(m) => m.epsilon(),
            Self::Laplace(m) => m.epsilon(),
            Self::Duchi(m) => m.epsilon(),
            Self::Piecewise(m) => m.epsilon(),
            Self::Hybrid(m) => m.epsilon(),
        }
    }

    /// Domain size of a categorical mechanism, `None` for numeric ones.
    pub fn domain_size(&self) -> Option<u32> {
        match self {
            Self::Grr(m) => Some(m.domain_size()),
            // Strings, decoded against a candidate list: no fixed domain.
            Self::Rappor(_) => None,
            Self::Unary(m) => Some(m.domain_size()),
            Self::Olh(m) => Some(m.domain_size()),
            Self::Hadamard(m) => Some(m.domain_size()),
            Self::Laplace(_) | Self::Duchi(_) | Self::Piecewise(_) | Self::Hybrid(_) => None,
        }
    }

    /// Randomizes the categorical value `value` in `[0, d)`.
    pub fn encode_index(&self, value: u32, rng: &mut LdpRng) -> Result<Report> {
        match self {
            Self::Grr(m) => m.encode(value, rng).map(Report::Index),
            Self::Unary(m) => m.encode(value, rng).map(Report::Bits),
            Self::Olh(m) => m
                .encode(value, rng)
                .map(|(seed_index, bucket)| Report::Hashed { seed_index, bucket }),
            Self::Hadamard(m) => {
                m.encode(value, rng)
                    .map(|(coefficient, positive)| Report::Hadamard {
                        coefficient,
                        positive,
                    })
            }
            Self::Laplace(_) | Self::Duchi(_) | Self::Piecewise(_) | Self::Hybrid(_) => {
                Err(Error::Unsupported(format!(
                    "{value}: a numeric mechanism encodes numbers, not indices"
                )))
            }
            Self::Rappor(_) => Err(Error::Unsupported(format!(
                "{value}: RAPPOR encodes strings with a device secret, use rappor::RapporEncoder"
            ))),
        }
    }

    /// Randomizes the numeric value `value` (numeric mechanisms only).
    pub fn encode_value(&self, value: f64, rng: &mut LdpRng) -> Result<Report> {
        match self {
            Self::Laplace(m) => m.encode(value, rng).map(Report::Grid),
            Self::Duchi(m) => m.encode(value, rng).map(Report::Numeric),
            Self::Piecewise(m) => m.encode(value, rng).map(Report::Numeric),
            Self::Hybrid(m) => m.encode(value, rng).map(Report::Numeric),
            Self::Grr(_) | Self::Unary(_) | Self::Olh(_) | Self::Hadamard(_) => {
                Err(Error::Unsupported(format!(
                    "{value}: a categorical mechanism encodes indices, not numbers"
                )))
            }
            Self::Rappor(_) => Err(Error::Unsupported(format!(
                "{value}: RAPPOR encodes strings with a device secret, use rappor::RapporEncoder"
            ))),
        }
    }

    /// Checks that `report` could have been produced by this mechanism.
    pub fn validate(&self, report: &Report) -> Result<()> {
        match (self, report) {
            (Self::Grr(m), Report::Index(i)) => m.validate(*i),
            (Self::Unary(m), Report::Bits(bits)) => m.validate(bits),
            (Self::Olh(m), Report::Hashed { seed_index, bucket }) => {
                m.validate(*seed_index, *bucket)
            }
            (Self::Hadamard(m), Report::Hadamard { coefficient, .. }) => m.validate(*coefficient),
            (Self::Laplace(m), Report::Grid(k)) => m.validate(*k),
            (Self::Duchi(m), Report::Numeric(v)) => m.validate(*v),
            (Self::Piecewise(m), Report::Numeric(v)) => m.validate(*v),
            (Self::Hybrid(m), Report::Numeric(v)) => m.validate(*v),
            (Self::Rappor(m), Report::Rappor { cohort, bits }) => {
                m.params().validate(*cohort, bits)
            }
            (_, other) => Err(Error::InvalidReport(format!(
                "payload {} does not match the mechanism",
                kind_name(other)
            ))),
        }
    }

    /// Number of counters in this mechanism's [`Stats`].
    pub fn stats_len(&self) -> usize {
        match self {
            Self::Grr(m) => m.domain_size() as usize,
            Self::Rappor(m) => m.stats_len(),
            Self::Unary(m) => m.domain_size() as usize,
            Self::Olh(m) => m.stats_len(),
            Self::Hadamard(m) => m.stats_len(),
            // Numeric mechanisms keep only `sum` and `sum_sq`.
            Self::Laplace(_) | Self::Duchi(_) | Self::Piecewise(_) | Self::Hybrid(_) => 0,
        }
    }

    /// Empty statistics for this mechanism.
    pub fn new_stats(&self) -> Stats {
        Stats::new(self.stats_len())
    }

    /// Validates `report` and adds it to `stats`; on error `stats` is unchanged.
    pub fn accumulate(&self, stats: &mut Stats, report: &Report) -> Result<()> {
        self.check_stats(stats)?;
        match (self, report) {
            (Self::Laplace(m), Report::Grid(k)) => {
                m.validate(*k)?;
                add_value(stats, m.value_of(*k));
            }
            (Self::Duchi(_) | Self::Piecewise(_) | Self::Hybrid(_), Report::Numeric(v)) => {
                self.validate(report)?;
                add_value(stats, *v);
            }
            _ => {
                let counts = &mut stats.counts;
                self.for_each_cell(report, |cell| counts[cell] += 1)?;
            }
        }
        stats.reports += 1;
        Ok(())
    }

    /// Validates `report` and calls `add(cell)` once for every counter of
    /// [`Stats::counts`] that [`Mechanism::accumulate`] adds one to (none for
    /// the numeric mechanisms, which keep only sums). Nothing is called for an
    /// invalid report. This is the sparse form of `accumulate`: a collector can
    /// record the few counters a report touches instead of a whole table, with
    /// the same layout (documented in [`crate::estimate`]).
    pub fn for_each_cell(&self, report: &Report, mut add: impl FnMut(usize)) -> Result<()> {
        self.validate(report)?;
        match (self, report) {
            (Self::Grr(_), Report::Index(i)) => add(*i as usize),
            (Self::Unary(m), Report::Bits(bits)) => m.for_each_cell(bits, add),
            (Self::Olh(m), Report::Hashed { seed_index, bucket }) => {
                add(m.cell(*seed_index, *bucket))
            }
            (
                Self::Hadamard(m),
                Report::Hadamard {
                    coefficient,
                    positive,
                },
            ) => add(m.cell(*coefficient, *positive)),
            (Self::Rappor(m), Report::Rappor { cohort, bits }) => {
                m.for_each_cell(*cohort, bits, add)
            }
            (Self::Laplace(_) | Self::Duchi(_) | Self::Piecewise(_) | Self::Hybrid(_), _) => {}
            _ => unreachable!("validate() accepted a mismatched payload"),
        }
        Ok(())
    }

    /// Unbiased estimates of the count of every value in `[0, d)`.
    pub fn estimate_frequencies(&self, stats: &Stats) -> Result<Vec<Estimate>> {
        self.check_stats(stats)?;
        match self {
            Self::Grr(m) => Ok(m.estimate(stats)),
            Self::Unary(m) => Ok(m.estimate(stats)),
            Self::Olh(m) => Ok(m.estimate(stats)),
            Self::Hadamard(m) => Ok(m.estimate(stats)),
            Self::Laplace(_) | Self::Duchi(_) | Self::Piecewise(_) | Self::Hybrid(_) => Err(
                Error::Unsupported("frequencies of a numeric metric".into()),
            ),
            Self::Rappor(_) => Err(Error::Unsupported(
                "RAPPOR frequencies are decoded against a candidate list: use ldp_aggregator::rappor::decode"
                    .into(),
            )),
        }
    }

    /// Unbiased estimate of the mean (numeric mechanisms only).
    pub fn estimate_mean(&self, stats: &Stats) -> Result<Estimate> {
        self.check_stats(stats)?;
        match self {
            Self::Laplace(m) => m.estimate_mean(stats),
            Self::Duchi(m) => m.estimate_mean(stats),
            Self::Piecewise(m) => m.estimate_mean(stats),
            Self::Hybrid(m) => m.estimate_mean(stats),
            _ => Err(Error::Unsupported(
                "the mean of a categorical metric".into(),
            )),
        }
    }

    /// Closed-form variance of the count estimate of a value whose true count
    /// is `count` among `n` reports (frequency oracles only; exact for OLH's
    /// pairwise-universal public family, see [`olh`]).
    pub fn count_variance(&self, n: f64, count: f64) -> Result<f64> {
        match self {
            Self::Grr(m) => Ok(m.count_variance(n, count)),
            Self::Unary(m) => Ok(m.count_variance(n, count)),
            Self::Olh(m) => Ok(m.count_variance(n, count)),
            Self::Hadamard(m) => Ok(m.count_variance(n, count)),
            _ => Err(Error::Unsupported(
                "count variance of a non-frequency-oracle mechanism".into(),
            )),
        }
    }

    /// Closed-form variance of one report of the true value `value`, on the
    /// metric's scale (numeric mechanisms only).
    pub fn report_variance(&self, value: f64) -> Result<f64> {
        match self {
            Self::Laplace(m) => m.variance(value),
            Self::Duchi(m) => m.variance(value),
            Self::Piecewise(m) => m.variance(value),
            Self::Hybrid(m) => m.variance(value),
            _ => Err(Error::Unsupported(
                "report variance of a categorical mechanism".into(),
            )),
        }
    }

    fn check_stats(&self, stats: &Stats) -> Result<()> {
        if stats.counts.len() == self.stats_len() {
            Ok(())
        } else {
            Err(Error::StatsMismatch(format!(
                "{} counters, the mechanism needs {}",
                stats.counts.len(),
                self.stats_len()
            )))
        }
    }
}

fn add_value(stats: &mut Stats, value: f64) {
    stats.sum += value;
    stats.sum_sq += value * value;
}

fn kind_name(report: &Report) -> &'static str {
    match report {
        Report::Index(_) => "index",
        Report::Bits(_) => "bits",
        Report::Hashed { .. } => "hashed",
        Report::Hadamard { .. } => "hadamard",
        Report::Grid(_) => "grid",
        Report::Numeric(_) => "numeric",
        Report::Rappor { .. } => "rappor",
    }
}

/// Exact variance of a pure frequency oracle's count estimate (Wang et al. 2017):
/// `Var[c_v] = n q(1-q)/(p-q)^2 + c_v (1-p-q)/(p-q)`, where p = P(support | v) and
/// q = P(support | not v). With `c_v` unknown the estimate is plugged in, clamped to [0, n].
pub fn pure_oracle_variance(n: f64, count: f64, p: f64, q: f64) -> f64 {
    let c = count.clamp(0.0, n);
    n * q * (1.0 - q) / ((p - q) * (p - q)) + c * (1.0 - p - q) / (p - q)
}

#[cfg(test)]
mod tests {
    use rand::RngExt;

    use super::*;

    fn specs() -> Vec<MechanismSpec> {
        vec![
            MechanismSpec::Binary,
            MechanismSpec::Grr { domain_size: 50 },
            MechanismSpec::Sue { domain_size: 50 },
            MechanismSpec::Oue { domain_size: 50 },
            MechanismSpec::Olh {
                domain_size: 50,
                buckets: 0,
                seed_count: 0,
            },
            MechanismSpec::Hadamard { domain_size: 50 },
            MechanismSpec::Rappor {
                num_bits: 13,
                num_hashes: 2,
                num_cohorts: 4,
                f: 0.5,
                p: 0.5,
                q: 0.75,
            },
            MechanismSpec::Laplace {
                lo: 0.0,
                hi: 1.0,
                granularity_log2: 0,
            },
            MechanismSpec::Duchi { lo: 0.0, hi: 1.0 },
            MechanismSpec::Piecewise { lo: 0.0, hi: 1.0 },
            MechanismSpec::Hybrid { lo: 0.0, hi: 1.0 },
        ]
    }

    /// A valid report of `m` (RAPPOR: random cohort and IRR bits).
    fn report(m: &Mechanism, rng: &mut LdpRng) -> Report {
        match m {
            Mechanism::Rappor(r) => {
                let bits: Vec<u8> = vec![rng.random(), rng.random::<u8>() & 0x1f];
                Report::Rappor {
                    cohort: rng.random_range(0..r.params().num_cohorts()),
                    bits,
                }
            }
            _ => match m.domain_size() {
                Some(d) => m.encode_index(rng.random_range(0..d), rng).unwrap(),
                None => m.encode_value(rng.random(), rng).unwrap(),
            },
        }
    }

    /// `for_each_cell` is exactly the counter part of `accumulate` for every
    /// mechanism (none for numeric ones), and calls nothing for a bad report.
    #[test]
    fn for_each_cell_is_the_counter_part_of_accumulate() {
        let mut rng = LdpRng::seeded_for_simulation(11);
        for spec in specs() {
            let m = Mechanism::new(spec.clone(), Epsilon::new(2.0).unwrap()).unwrap();
            let mut stats = m.new_stats();
            let mut counts = vec![0u64; m.stats_len()];
            for _ in 0..300 {
                let r = report(&m, &mut rng);
                m.accumulate(&mut stats, &r).unwrap();
                m.for_each_cell(&r, |cell| counts[cell] += 1).unwrap();
            }
            assert_eq!(counts, stats.counts, "{spec:?}");
            assert_eq!(stats.reports, 300, "{spec:?}");
            let wrong = match m {
                Mechanism::Rappor(_) => Report::Index(0),
                _ => Report::Rappor {
                    cohort: 0,
                    bits: vec![0, 0],
                },
            };
            let mut called = false;
            assert!(
                m.for_each_cell(&wrong, |_| called = true).is_err(),
                "{spec:?}"
            );
            assert!(!called, "{spec:?}");
        }
    }
}
