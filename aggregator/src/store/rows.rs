//! What the SQL stores share besides whole statements: turning a commit group
//! into rows, the multi-row statements that write them, and the checks on what
//! is read back (see also [`super::portable`], which runs them).
//!
//! Keeping this in one place keeps the guarantees of [`Store`](super::Store)
//! (a batch id counted once, also when repeated in one group; counters as
//! per-key upserts; corrupt rows refused, never a panic) identical on both
//! backends.
//!
//! The statement builders are generic over the sqlx [`Database`]: the SQL is
//! identical on SQLite and PostgreSQL (`INSERT ... ON CONFLICT ... DO UPDATE SET
//! n = t.n + excluded.n`, `ON CONFLICT DO NOTHING RETURNING`), and sqlx writes
//! each backend's placeholders.

use std::collections::{BTreeMap, HashMap};

use ldp_sdk::budget::BudgetPolicy;
use ldp_sdk::estimate::Stats;
use ldp_sdk::metric::MetricSpec;
use sqlx::{Database, Encode, QueryBuilder, Type};

use super::{BatchDelta, Delta, StatsKey, StoreError, from_i64, to_i64};
use crate::accountant::ledger::{Budget, PrivacyLedger, Release};

/// Rows of `columns` parameters each that fit in one statement with at most
/// `max_binds` bound parameters (at least one row).
pub(crate) fn rows_per_statement(max_binds: usize, columns: usize) -> usize {
    (max_binds / columns.max(1)).max(1)
}

/// Which batches of a commit group may be new, and how to read back which were.
///
/// The first occurrence of each id in the group is a candidate; later repeats
/// are duplicates of it whatever the database says. Candidates are ordered by
/// id, so concurrent commits lock the rows of the `batches` index in one order.
#[derive(Debug)]
pub(crate) struct CommitPlan<'a> {
    first: HashMap<&'a [u8], usize>,
    /// Indexes of the candidate batches, ordered by batch id.
    pub(crate) candidates: Vec<usize>,
}

impl<'a> CommitPlan<'a> {
    /// Plans the commit of `batches`.
    pub(crate) fn new(batches: &'a [BatchDelta]) -> Self {
        let mut first: HashMap<&[u8], usize> = HashMap::with_capacity(batches.len());
        for (i, b) in batches.iter().enumerate() {
            first.entry(b.batch_id.as_slice()).or_insert(i);
        }
        let mut candidates: Vec<usize> = first.values().copied().collect();
        candidates.sort_unstable_by_key(|&i| batches[i].batch_id.as_slice());
        Self { first, candidates }
    }

    /// Marks as fresh the batches whose ids the database just inserted.
    pub(crate) fn mark(&self, stored: &[Vec<u8>], fresh: &mut [bool]) -> Result<(), StoreError> {
        for id in stored {
            let i = self.first.get(id.as_slice()).copied().ok_or_else(|| {
                StoreError::Corrupt("database returned an unknown batch id".into())
            })?;
            fresh[i] = true;
        }
        Ok(())
    }
}

/// `INSERT INTO batches ... ON CONFLICT DO NOTHING RETURNING batch_id` for the
/// candidates `chunk` (3 parameters per row).
pub(crate) fn insert_batches<'a, DB>(
    batches: &'a [BatchDelta],
    chunk: &[usize],
    now: i64,
) -> QueryBuilder<DB>
where
    DB: Database,
    i64: Encode<'a, DB> + Type<DB>,
    &'a [u8]: Encode<'a, DB> + Type<DB>,
{
    let mut qb = QueryBuilder::<DB>::new("INSERT INTO batches (batch_id, received_at, reports) ");
    qb.push_values(chunk, |mut row, &i| {
        row.push_bind(batches[i].batch_id.as_slice())
            .push_bind(now)
            .push_bind(i64::from(batches[i].reports));
    });
    qb.push(" ON CONFLICT (batch_id) DO NOTHING RETURNING batch_id");
    qb
}

/// A statistics key as stored: (metric_id, version, epoch).
type KeyRow = (i64, i64, i64);

/// One `totals` upsert: key, reports, sum, sum of squares (6 parameters).
pub(crate) type TotalRow = (KeyRow, i64, f64, f64);

/// One `cell_counts` upsert: key, cell, count (5 parameters).
pub(crate) type CellRow = (KeyRow, i64, i64);

/// The statistic upserts of a commit group: the deltas of its fresh batches,
/// merged per key and per cell, so each counter is written once.
#[derive(Debug, Default)]
pub(crate) struct StatRows {
    /// Per-key totals, in key order.
    pub(crate) totals: Vec<TotalRow>,
    /// Per-cell counts, in (key, cell) order.
    pub(crate) cells: Vec<CellRow>,
}

impl StatRows {
    /// Merges the deltas of the batches marked `fresh`.
    pub(crate) fn merge(batches: &[BatchDelta], fresh: &[bool]) -> Result<Self, StoreError> {
        let mut merged: BTreeMap<StatsKey, Pooled> = BTreeMap::new();
        for (b, _) in batches.iter().zip(fresh).filter(|(_, f)| **f) {
            for (key, delta) in &b.deltas {
                merged.entry(*key).or_default().add(delta)?;
            }
        }
        let mut rows = Self::default();
        for (key, stats) in merged {
            let k = (
                i64::from(key.metric_id),
                i64::from(key.version),
                to_i64(key.epoch, "epoch")?,
            );
            rows.totals.push((
                k,
                to_i64(stats.reports, "reports")?,
                stats.sum,
                stats.sum_sq,
            ));
            for (cell, n) in stats.cells {
                rows.cells.push((k, i64::from(cell), to_i64(n, "count")?));
            }
        }
        Ok(rows)
    }
}

/// The deltas of one key in a commit group, pooled.
#[derive(Debug, Default)]
struct Pooled {
    reports: u64,
    sum: f64,
    sum_sq: f64,
    cells: BTreeMap<u32, u64>,
}

impl Pooled {
    fn add(&mut self, delta: &Delta) -> Result<(), StoreError> {
        let overflow = || StoreError::OutOfRange("counter overflow in one commit".into());
        self.reports = self
            .reports
            .checked_add(delta.reports)
            .ok_or_else(overflow)?;
        self.sum += delta.sum;
        self.sum_sq += delta.sum_sq;
        for &(cell, n) in &delta.cells {
            let slot = self.cells.entry(cell).or_insert(0);
            *slot = slot.checked_add(n).ok_or_else(overflow)?;
        }
        Ok(())
    }
}

/// Upserts of `totals` rows, adding to what is stored.
pub(crate) fn upsert_totals<'a, DB>(chunk: &'a [TotalRow]) -> QueryBuilder<DB>
where
    DB: Database,
    i64: Encode<'a, DB> + Type<DB>,
    f64: Encode<'a, DB> + Type<DB>,
{
    let mut qb = QueryBuilder::<DB>::new(
        "INSERT INTO totals AS t (metric_id, version, epoch, reports, sum, sum_sq) ",
    );
    qb.push_values(chunk, |mut row, &((m, v, e), n, s, s2)| {
        row.push_bind(m)
            .push_bind(v)
            .push_bind(e)
            .push_bind(n)
            .push_bind(s)
            .push_bind(s2);
    });
    qb.push(
        " ON CONFLICT (metric_id, version, epoch) DO UPDATE SET \
         reports = t.reports + excluded.reports, \
         sum = t.sum + excluded.sum, sum_sq = t.sum_sq + excluded.sum_sq",
    );
    qb
}

/// Upserts of `cell_counts` rows, adding to what is stored.
pub(crate) fn upsert_cells<'a, DB>(chunk: &'a [CellRow]) -> QueryBuilder<DB>
where
    DB: Database,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut qb = QueryBuilder::<DB>::new(
        "INSERT INTO cell_counts AS t (metric_id, version, epoch, cell, n) ",
    );
    qb.push_values(chunk, |mut row, &((m, v, e), cell, n)| {
        row.push_bind(m)
            .push_bind(v)
            .push_bind(e)
            .push_bind(cell)
            .push_bind(n);
    });
    qb.push(" ON CONFLICT (metric_id, version, epoch, cell) DO UPDATE SET n = t.n + excluded.n");
    qb
}

/// `(batch_id, encoded reports)` of the fresh batches that carry raw reports.
pub(crate) fn raw_rows<'a>(batches: &'a [BatchDelta], fresh: &[bool]) -> Vec<(&'a [u8], &'a [u8])> {
    batches
        .iter()
        .zip(fresh)
        .filter(|(_, f)| **f)
        .filter_map(|(b, _)| b.raw.as_deref().map(|r| (b.batch_id.as_slice(), r)))
        .collect()
}

/// Inserts of `raw_batches` rows (3 parameters per row).
pub(crate) fn insert_raw<'a, DB>(chunk: &[(&'a [u8], &'a [u8])], now: i64) -> QueryBuilder<DB>
where
    DB: Database,
    i64: Encode<'a, DB> + Type<DB>,
    &'a [u8]: Encode<'a, DB> + Type<DB>,
{
    let mut qb =
        QueryBuilder::<DB>::new("INSERT INTO raw_batches (batch_id, received_at, reports) ");
    qb.push_values(chunk, |mut row, &(id, reports)| {
        row.push_bind(id).push_bind(now).push_bind(reports);
    });
    qb
}

/// The epochs a [`Store::load_stats`](super::Store::load_stats) call asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum EpochFilter {
    /// Every epoch.
    All,
    /// These stored epochs, sorted and without repeats (never empty).
    Only(Vec<i64>),
    /// No epoch that can be stored: the answer is empty without a query.
    Nothing,
}

impl EpochFilter {
    /// Epochs above `i64::MAX` cannot be stored, so they match nothing.
    pub(crate) fn new(epochs: Option<&[u64]>) -> Self {
        let Some(epochs) = epochs else {
            return Self::All;
        };
        let mut list: Vec<i64> = epochs
            .iter()
            .filter_map(|&e| i64::try_from(e).ok())
            .collect();
        if list.is_empty() {
            return Self::Nothing;
        }
        list.sort_unstable();
        list.dedup();
        Self::Only(list)
    }
}

/// Pooled statistics being read back, checked row by row.
#[derive(Debug)]
pub(crate) struct StatsReader {
    stats: Stats,
    present: Vec<u64>,
}

impl StatsReader {
    /// Empty statistics with `cells` counters.
    pub(crate) fn new(cells: usize) -> Self {
        Self {
            stats: Stats::new(cells),
            present: Vec::new(),
        }
    }

    /// Adds one `totals` row (rows come in epoch order).
    pub(crate) fn add_total(
        &mut self,
        epoch: i64,
        reports: i64,
        sum: f64,
        sum_sq: f64,
    ) -> Result<(), StoreError> {
        self.present.push(from_i64(epoch, "epoch")?);
        let reports: u64 = from_i64(reports, "reports")?;
        self.stats.reports = self
            .stats
            .reports
            .checked_add(reports)
            .ok_or_else(|| StoreError::Corrupt("report count overflow".into()))?;
        self.stats.sum += sum;
        self.stats.sum_sq += sum_sq;
        Ok(())
    }

    /// Sets one cell's count, summed over the epochs.
    pub(crate) fn set_cell(&mut self, cell: i64, n: i64) -> Result<(), StoreError> {
        let cells = self.stats.counts.len();
        let cell: usize = from_i64(cell, "cell")?;
        let n: u64 = from_i64(n, "count")?;
        let slot = self.stats.counts.get_mut(cell).ok_or_else(|| {
            StoreError::Corrupt(format!("cell {cell} of a metric with {cells} cells"))
        })?;
        *slot = n;
        Ok(())
    }

    /// The pooled statistics and the epochs that had any report.
    pub(crate) fn finish(self) -> (Stats, Vec<u64>) {
        (self.stats, self.present)
    }
}

/// Decodes a stored metric spec.
pub(crate) fn parse_spec(json: &str) -> Result<MetricSpec, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("metric spec: {e}")))
}

/// What [`Store::create_metric`](super::Store::create_metric) does, decided
/// from the latest stored version of the name.
#[derive(Debug)]
pub(crate) enum MetricPlan {
    /// The latest version has the same parameters: return it unchanged.
    Existing(MetricSpec),
    /// Store `spec` (stamped with id, version and creation time) as `json`.
    Insert {
        /// The spec as it will be stored.
        spec: MetricSpec,
        /// Its JSON.
        json: String,
    },
}

impl MetricPlan {
    /// `latest` is the latest stored version of the name as
    /// `(metric_id, version, spec JSON)`; `next_id` the id a new name gets.
    pub(crate) fn new(
        mut spec: MetricSpec,
        latest: Option<(i64, i64, String)>,
        next_id: i64,
        now: i64,
    ) -> Result<Self, StoreError> {
        let (metric_id, version) = match latest {
            Some((id, version, json)) => {
                let existing = parse_spec(&json)?;
                if existing.same_parameters(&spec) {
                    return Ok(Self::Existing(existing));
                }
                (id, version + 1)
            }
            None => (next_id, 1),
        };
        spec.metric_id = from_i64(metric_id, "metric_id")?;
        spec.version = u32::try_from(version)
            .map_err(|_| StoreError::OutOfRange(format!("version {version}")))?;
        spec.created_at = now;
        let json = serde_json::to_string(&spec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(Self::Insert { spec, json })
    }
}

/// A ledger being read back: budgets and releases, checked.
#[derive(Debug, Default)]
pub(crate) struct LedgerReader {
    budgets: BTreeMap<String, Budget>,
    releases: Vec<Release>,
}

impl LedgerReader {
    /// Adds one `dataset_budgets` row.
    pub(crate) fn budget(
        &mut self,
        dataset: String,
        epsilon: f64,
        delta: f64,
    ) -> Result<(), StoreError> {
        let budget = Budget::new(epsilon, delta)
            .map_err(|e| StoreError::Corrupt(format!("dataset budget: {e}")))?;
        self.budgets.insert(dataset, budget);
        Ok(())
    }

    /// Adds one `central_releases` row (rows come in recording order).
    pub(crate) fn release(&mut self, json: &str) -> Result<(), StoreError> {
        let release = serde_json::from_str::<Release>(json)
            .map_err(|e| StoreError::Corrupt(format!("central release: {e}")))?;
        self.releases.push(release);
        Ok(())
    }

    /// The restored ledger.
    pub(crate) fn finish(self) -> PrivacyLedger {
        PrivacyLedger::restore(self.budgets, self.releases)
    }
}

/// What [`LedgerStore::record_release`](super::ledger::LedgerStore::record_release)
/// writes, decided by the ledger as loaded under the write lock.
#[derive(Debug)]
pub(crate) enum ReleasePlan {
    /// Refused, or already recorded: write nothing and answer this.
    Answer(super::ledger::LedgerOutcome),
    /// Insert the release as `json`, commit, then answer this spend.
    Insert {
        /// The release's JSON.
        json: String,
        /// The data set's spend once it is recorded.
        spent: crate::accountant::ledger::Spent,
    },
}

impl ReleasePlan {
    /// Lets `ledger` (loaded in the write transaction) decide on `release`.
    pub(crate) fn new(mut ledger: PrivacyLedger, release: &Release) -> Result<Self, StoreError> {
        let known = ledger.all_releases().iter().any(|r| r.id == release.id);
        match ledger.record(release.clone()) {
            Err(refused) => Ok(Self::Answer(Err(refused))),
            Ok(spent) if known => Ok(Self::Answer(Ok(spent))),
            Ok(spent) => {
                let json = serde_json::to_string(release)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok(Self::Insert { json, spent })
            }
        }
    }
}

/// Decodes a stored device budget policy.
pub(crate) fn device_policy(
    window_epsilon: f64,
    window_seconds: i64,
    lifetime_epsilon: f64,
) -> Result<BudgetPolicy, StoreError> {
    BudgetPolicy::new(
        window_epsilon,
        from_i64(window_seconds, "window_seconds")?,
        lifetime_epsilon,
    )
    .map_err(|e| StoreError::Corrupt(format!("device budget: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(id: &[u8]) -> BatchDelta {
        BatchDelta {
            batch_id: id.to_vec(),
            reports: 1,
            deltas: Vec::new(),
            raw: None,
        }
    }

    #[test]
    fn repeated_ids_in_a_group_have_one_candidate_in_id_order() {
        let group = [batch(b"b"), batch(b"a"), batch(b"b")];
        let plan = CommitPlan::new(&group);
        assert_eq!(plan.candidates, vec![1, 0]);
        let mut fresh = vec![false; 3];
        plan.mark(&[b"b".to_vec()], &mut fresh).unwrap();
        assert_eq!(fresh, [true, false, false]);
        assert!(matches!(
            plan.mark(&[b"z".to_vec()], &mut fresh),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn epoch_filters_drop_unstorable_epochs() {
        assert_eq!(EpochFilter::new(None), EpochFilter::All);
        assert_eq!(EpochFilter::new(Some(&[u64::MAX])), EpochFilter::Nothing);
        assert_eq!(
            EpochFilter::new(Some(&[5, 1, 5, u64::MAX])),
            EpochFilter::Only(vec![1, 5])
        );
    }

    #[test]
    fn rows_per_statement_respects_the_bind_limit() {
        assert_eq!(rows_per_statement(65_535, 6), 10_922);
        assert_eq!(rows_per_statement(2, 6), 1);
    }

    #[test]
    fn stored_cells_outside_the_metric_are_corrupt() {
        let mut reader = StatsReader::new(2);
        assert!(reader.set_cell(1, 4).is_ok());
        assert!(matches!(reader.set_cell(2, 1), Err(StoreError::Corrupt(_))));
        assert!(matches!(
            reader.set_cell(0, -1),
            Err(StoreError::Corrupt(_))
        ));
    }
}
