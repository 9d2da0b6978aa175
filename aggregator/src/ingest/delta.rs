//! Per-batch statistics deltas whose size follows the batch, not the metric.
//!
//! A batch names a few reports of a metric that may keep millions of counters
//! (GRR or OLH over a large domain, RAPPOR with many cohorts). [`DeltaBuilder`]
//! therefore keeps a dense [`Stats`] table only when the metric's table is small
//! ([`DENSE_MAX_CELLS`]) or when every report carries one bit per counter anyway
//! (SUE and OUE, and the numeric mechanisms, which keep no counters); otherwise
//! it records the counters each report touches ([`Mechanism::for_each_cell`],
//! the SDK's sparse form of [`Mechanism::accumulate`], so the counter layout
//! has one source) and sorts them into a sparse [`Delta`]. Both paths validate
//! every report through the SDK.

use ldp_sdk::estimate::Stats;
use ldp_sdk::mechanism::{Mechanism, Report};

use crate::store::Delta;

/// Largest counter table built densely for every batch: 2^16 counters (512
/// KiB), cheap to allocate and scan next to the cost of one gRPC call.
pub const DENSE_MAX_CELLS: usize = 1 << 16;

/// Most dense counters one batch builds for mechanisms that also have a sparse
/// form (four tables of [`DENSE_MAX_CELLS`], 2 MiB): further keys of the batch
/// go sparse, so a small batch naming a new epoch in every report costs one
/// counter per report, not one table.
pub const DENSE_BATCH_CELLS: usize = 4 * DENSE_MAX_CELLS;

/// Accumulates the reports of one batch for one statistics key.
#[derive(Debug)]
pub enum DeltaBuilder {
    /// A full counter table (small metrics, unary and numeric mechanisms).
    Dense(Stats),
    /// The counters touched so far, one entry per increment.
    Sparse {
        /// Reports added.
        reports: u64,
        /// Touched counters, with repeats; sorted and counted by [`DeltaBuilder::finish`].
        touched: Vec<u32>,
    },
}

impl DeltaBuilder {
    /// An empty builder for `mechanism`, the first of its batch.
    pub fn new(mechanism: &Mechanism) -> Self {
        Self::for_batch(mechanism, 0)
    }

    /// An empty builder for `mechanism` in a batch whose builders already hold
    /// `dense_so_far` dense counters: dense only within [`DENSE_BATCH_CELLS`]
    /// (or when the mechanism has no sparse form).
    pub fn for_batch(mechanism: &Mechanism, dense_so_far: usize) -> Self {
        let cells = mechanism.stats_len();
        if !has_cells(mechanism)
            || (cells <= DENSE_MAX_CELLS && dense_so_far.saturating_add(cells) <= DENSE_BATCH_CELLS)
        {
            Self::Dense(mechanism.new_stats())
        } else {
            Self::Sparse {
                reports: 0,
                touched: Vec::new(),
            }
        }
    }

    /// Counters this builder holds in memory before any report (what a batch
    /// must budget for it).
    pub fn dense_cells(&self) -> usize {
        match self {
            Self::Dense(stats) => stats.counts.len(),
            Self::Sparse { .. } => 0,
        }
    }

    /// Validates `report` against `mechanism` and adds it; on error nothing changes.
    pub fn add(&mut self, mechanism: &Mechanism, report: &Report) -> ldp_sdk::Result<()> {
        match self {
            Self::Dense(stats) => mechanism.accumulate(stats, report),
            Self::Sparse { reports, touched } => {
                // A sparse delta keeps no sums: a numeric or unary mechanism
                // here would lose data (the constructors never do this).
                if !has_cells(mechanism) {
                    return Err(ldp_sdk::Error::InvalidReport(
                        "a sparse delta holds only GRR, OLH, Hadamard or RAPPOR reports".into(),
                    ));
                }
                // Counter indices are below `stats_len() <= 2^24`, so they fit u32.
                mechanism.for_each_cell(report, |cell| touched.push(cell as u32))?;
                *reports += 1;
                Ok(())
            }
        }
    }

    /// The delta: only the non-zero counters, in increasing cell order.
    pub fn finish(self) -> Delta {
        match self {
            Self::Dense(stats) => Delta {
                reports: stats.reports,
                sum: stats.sum,
                sum_sq: stats.sum_sq,
                cells: (0..).zip(stats.counts).filter(|&(_, n)| n > 0).collect(),
            },
            Self::Sparse {
                reports,
                mut touched,
            } => {
                touched.sort_unstable();
                let mut cells: Vec<(u32, u64)> = Vec::new();
                for cell in touched {
                    match cells.last_mut() {
                        Some((last, n)) if *last == cell => *n += 1,
                        _ => cells.push((cell, 1)),
                    }
                }
                Delta {
                    reports,
                    cells,
                    ..Delta::default()
                }
            }
        }
    }
}

/// Whether the mechanism's reports touch a few counters each (so a sparse
/// delta pays off); unary reports set about half their bits and numeric ones
/// keep only sums.
fn has_cells(mechanism: &Mechanism) -> bool {
    matches!(
        mechanism,
        Mechanism::Grr(_) | Mechanism::Olh(_) | Mechanism::Hadamard(_) | Mechanism::Rappor(_)
    )
}

#[cfg(test)]
mod tests {
    use ldp_sdk::mechanism::MechanismSpec;
    use ldp_sdk::{Epsilon, LdpRng};
    use rand::RngExt;

    use super::*;

    /// Epsilon 2 covers every spec below (the RAPPOR one has eps_1 = 1.07).
    fn mechanism(spec: MechanismSpec) -> Mechanism {
        Mechanism::new(spec, Epsilon::new(2.0).unwrap()).unwrap()
    }

    /// Random valid reports of `m` (RAPPOR: random cohort and IRR bits).
    fn reports(m: &Mechanism, n: usize, rng: &mut LdpRng) -> Vec<Report> {
        (0..n)
            .map(|_| match m {
                Mechanism::Rappor(r) => {
                    let p = r.params();
                    let k = p.num_bits() as usize;
                    let mut bits: Vec<u8> = (0..k.div_ceil(8)).map(|_| rng.random()).collect();
                    if !k.is_multiple_of(8) {
                        *bits.last_mut().unwrap() &= (1u8 << (k % 8)) - 1;
                    }
                    Report::Rappor {
                        cohort: rng.random_range(0..p.num_cohorts()),
                        bits,
                    }
                }
                _ => {
                    let d = m.domain_size().unwrap();
                    m.encode_index(rng.random_range(0..d), rng).unwrap()
                }
            })
            .collect()
    }

    /// The sparse path gives exactly the counters of the SDK's dense
    /// `accumulate`, for every mechanism it maps, on tables above the dense limit.
    #[test]
    fn sparse_deltas_equal_the_sdk_accumulate() {
        let big = 1 << 17;
        let specs = [
            MechanismSpec::Grr { domain_size: big },
            MechanismSpec::Olh {
                domain_size: big,
                buckets: 0,
                seed_count: 0,
            },
            MechanismSpec::Hadamard { domain_size: big },
            MechanismSpec::Rappor {
                num_bits: 13,
                num_hashes: 2,
                num_cohorts: 8_000,
                f: 0.5,
                p: 0.5,
                q: 0.75,
            },
        ];
        let mut rng = LdpRng::seeded_for_simulation(5);
        for spec in specs {
            let m = mechanism(spec.clone());
            let mut builder = DeltaBuilder::new(&m);
            assert!(
                matches!(builder, DeltaBuilder::Sparse { .. }),
                "{spec:?} has {} counters",
                m.stats_len()
            );
            let mut dense = m.new_stats();
            for r in reports(&m, 2_000, &mut rng) {
                builder.add(&m, &r).unwrap();
                m.accumulate(&mut dense, &r).unwrap();
            }
            let want = DeltaBuilder::Dense(dense).finish();
            let got = builder.finish();
            assert_eq!(got, want, "{spec:?}");
            assert!(got.cells.len() <= 2_000 * 14, "{spec:?}");
        }
    }

    /// Small tables go sparse once the batch's dense budget is spent, with the
    /// same counters as the SDK's `accumulate`; mechanisms without a sparse
    /// form stay dense.
    #[test]
    fn small_tables_beyond_the_batch_budget_are_sparse_and_exact() {
        let specs = [
            MechanismSpec::Grr { domain_size: 100 },
            MechanismSpec::Olh {
                domain_size: 100,
                buckets: 0,
                seed_count: 0,
            },
            MechanismSpec::Hadamard { domain_size: 100 },
            MechanismSpec::Rappor {
                num_bits: 13,
                num_hashes: 2,
                num_cohorts: 8,
                f: 0.5,
                p: 0.5,
                q: 0.75,
            },
        ];
        let mut rng = LdpRng::seeded_for_simulation(6);
        for spec in specs {
            let m = mechanism(spec.clone());
            assert!(matches!(DeltaBuilder::new(&m), DeltaBuilder::Dense(_)));
            let mut builder = DeltaBuilder::for_batch(&m, DENSE_BATCH_CELLS);
            assert!(matches!(builder, DeltaBuilder::Sparse { .. }), "{spec:?}");
            let mut dense = m.new_stats();
            for r in reports(&m, 500, &mut rng) {
                builder.add(&m, &r).unwrap();
                m.accumulate(&mut dense, &r).unwrap();
            }
            assert_eq!(
                builder.finish(),
                DeltaBuilder::Dense(dense).finish(),
                "{spec:?}"
            );
        }
        let oue = mechanism(MechanismSpec::Oue { domain_size: 64 });
        assert!(matches!(
            DeltaBuilder::for_batch(&oue, DENSE_BATCH_CELLS),
            DeltaBuilder::Dense(_)
        ));
    }

    #[test]
    fn small_unary_and_numeric_metrics_stay_dense() {
        for spec in [
            MechanismSpec::Grr { domain_size: 16 },
            MechanismSpec::Oue {
                domain_size: 1 << 20,
            },
            MechanismSpec::Duchi { lo: 0.0, hi: 1.0 },
        ] {
            let m = mechanism(spec.clone());
            assert!(
                matches!(DeltaBuilder::new(&m), DeltaBuilder::Dense(_)),
                "{spec:?}"
            );
        }
    }

    /// A bad report leaves a sparse builder unchanged.
    #[test]
    fn a_refused_report_changes_nothing() {
        let m = mechanism(MechanismSpec::Grr {
            domain_size: 1 << 20,
        });
        let mut builder = DeltaBuilder::new(&m);
        builder.add(&m, &Report::Index(3)).unwrap();
        assert!(builder.add(&m, &Report::Index(1 << 20)).is_err());
        assert!(builder.add(&m, &Report::Bits(vec![1])).is_err());
        // A numeric mechanism's report never enters a sparse delta.
        let duchi = mechanism(MechanismSpec::Duchi { lo: 0.0, hi: 1.0 });
        let mut rng = LdpRng::seeded_for_simulation(1);
        let numeric = duchi.encode_value(0.5, &mut rng).unwrap();
        assert!(builder.add(&duchi, &numeric).is_err());
        let delta = builder.finish();
        assert_eq!((delta.reports, delta.cells), (1, vec![(3, 1)]));
    }
}
