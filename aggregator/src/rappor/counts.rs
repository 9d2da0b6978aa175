//! Per-cohort RAPPOR bit counts: the sufficient statistics of a RAPPOR metric.
//!
//! For cohort c: `N_c`, the number of reports, and `Y_{c,i}`, how many of them
//! have IRR bit i set. The layout of [`CohortCounts::to_stats`] (and of
//! `Mechanism::Rappor`'s stats) is the reference `counts.csv` row by row:
//! `[N_c, Y_{c,0}, ..., Y_{c,k-1}]` for c = 0 .. m-1.

use ldp_sdk::estimate::Stats;
use ldp_sdk::mechanism::Report;
use ldp_sdk::mechanism::rappor::RapporParams;

use super::RapporError;

/// Report and one-counts per cohort, checked against the parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct CohortCounts {
    params: RapporParams,
    reports: Vec<u64>,
    ones: Vec<u64>,
}

impl CohortCounts {
    /// Empty counts for `params`.
    pub fn new(params: RapporParams) -> Self {
        let (m, k) = (params.num_cohorts() as usize, params.num_bits() as usize);
        Self {
            params,
            reports: vec![0; m],
            ones: vec![0; m * k],
        }
    }

    /// Counts from a matrix of m rows `[N_c, Y_{c,0}, ..., Y_{c,k-1}]` (the
    /// reference `counts.csv`). Rejects a wrong number of rows or columns and
    /// one-counts above `N_c`.
    pub fn from_rows(params: RapporParams, rows: &[Vec<u64>]) -> Result<Self, RapporError> {
        let (m, k) = (params.num_cohorts() as usize, params.num_bits() as usize);
        if rows.len() != m {
            return Err(RapporError::CountsMismatch(format!(
                "{} cohort rows, the parameters have {m} cohorts",
                rows.len()
            )));
        }
        let mut counts = Self::new(params);
        for (c, row) in rows.iter().enumerate() {
            if row.len() != k + 1 {
                return Err(RapporError::CountsMismatch(format!(
                    "cohort {c} has {} columns, {k} bits need {}",
                    row.len(),
                    k + 1
                )));
            }
            if let Some((i, y)) = row[1..].iter().enumerate().find(|(_, y)| **y > row[0]) {
                return Err(RapporError::CountsMismatch(format!(
                    "cohort {c} bit {i}: {y} ones in {} reports",
                    row[0]
                )));
            }
            counts.reports[c] = row[0];
            counts.ones[c * k..(c + 1) * k].copy_from_slice(&row[1..]);
        }
        Ok(counts)
    }

    /// Counts from the statistics of a `Mechanism::Rappor` metric.
    pub fn from_stats(params: RapporParams, stats: &Stats) -> Result<Self, RapporError> {
        let width = params.num_bits() as usize + 1;
        let expected = params.num_cohorts() as usize * width;
        if stats.counts.len() != expected {
            return Err(RapporError::CountsMismatch(format!(
                "{} counters, {} cohorts x ({} bits + 1) need {expected}",
                stats.counts.len(),
                params.num_cohorts(),
                params.num_bits()
            )));
        }
        let rows: Vec<Vec<u64>> = stats.counts.chunks(width).map(<[u64]>::to_vec).collect();
        Self::from_rows(params, &rows)
    }

    /// The statistics layout of `Mechanism::Rappor` (the rows concatenated).
    pub fn to_stats(&self) -> Stats {
        let mut stats = Stats::new(0);
        for row in self.rows() {
            stats.counts.extend(row);
        }
        stats.reports = self.total_reports();
        stats
    }

    /// Adds one report after validating its cohort and bit length.
    pub fn add_report(&mut self, report: &Report) -> Result<(), RapporError> {
        let Report::Rappor { cohort, bits } = report else {
            return Err(RapporError::Sdk(ldp_sdk::Error::InvalidReport(
                "not a RAPPOR report".into(),
            )));
        };
        self.params.validate(*cohort, bits)?;
        let k = self.params.num_bits() as usize;
        let c = *cohort as usize;
        self.reports[c] += 1;
        for i in 0..k {
            self.ones[c * k + i] += u64::from((bits[i / 8] >> (i % 8)) & 1);
        }
        Ok(())
    }

    /// The parameters.
    pub fn params(&self) -> &RapporParams {
        &self.params
    }

    /// Reports in cohort `c`.
    pub fn cohort_reports(&self, c: usize) -> u64 {
        self.reports[c]
    }

    /// Reports with IRR bit `i` set in cohort `c`.
    pub fn ones(&self, c: usize, i: usize) -> u64 {
        self.ones[c * self.params.num_bits() as usize + i]
    }

    /// All reports.
    pub fn total_reports(&self) -> u64 {
        self.reports.iter().sum()
    }

    /// The rows `[N_c, Y_{c,0}, ..., Y_{c,k-1}]`, cohort 0 first.
    pub fn rows(&self) -> Vec<Vec<u64>> {
        let k = self.params.num_bits() as usize;
        (0..self.reports.len())
            .map(|c| {
                std::iter::once(self.reports[c])
                    .chain(self.ones[c * k..(c + 1) * k].iter().copied())
                    .collect()
            })
            .collect()
    }
}
