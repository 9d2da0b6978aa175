//! The embedded SQLite [`Store`]: one database file, created on first start.
//!
//! The file is opened in WAL mode with `synchronous=FULL`, so a commit that
//! returned survives a process crash and a power loss. Writes go through a pool
//! of exactly one connection (SQLite has one writer; `BEGIN IMMEDIATE` takes the
//! write lock up front so a transaction never fails half-way on a lock upgrade);
//! reads use a separate pool and see the last committed state.
//!
//! The schema is versioned with the migrations in `aggregator/migrations/sqlite`,
//! embedded in the binary and applied at open.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use ldp_sdk::estimate::Stats;
use ldp_sdk::metric::MetricSpec;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};

mod ledger;

use super::{BatchDelta, Delta, StatsKey, Store, StoreError, StoreFuture, from_i64, to_i64};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// Rows per multi-row statement (SQLite allows 32766 bound parameters).
const ROWS_PER_STATEMENT: usize = 1000;

/// A [`Store`] on one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    write: SqlitePool,
    read: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `path` and applies pending migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30));
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        Ok(Self { write, read })
    }

    async fn create_metric_impl(
        &self,
        mut spec: MetricSpec,
        now: i64,
    ) -> Result<(MetricSpec, bool), StoreError> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        let latest = sqlx::query(
            "SELECT metric_id, version, spec FROM metrics WHERE name = ? ORDER BY version DESC LIMIT 1",
        )
        .bind(&spec.name)
        .fetch_optional(&mut *tx)
        .await?;
        let (metric_id, version) = match latest {
            Some(row) => {
                let existing = parse_spec(row.try_get("spec")?)?;
                if existing.same_parameters(&spec) {
                    return Ok((existing, false));
                }
                let id: i64 = row.try_get("metric_id")?;
                let version: i64 = row.try_get("version")?;
                (id, version + 1)
            }
            None => {
                let next: i64 =
                    sqlx::query_scalar("SELECT COALESCE(MAX(metric_id), 0) + 1 FROM metrics")
                        .fetch_one(&mut *tx)
                        .await?;
                (next, 1)
            }
        };
        spec.metric_id = from_i64(metric_id, "metric_id")?;
        spec.version = u32::try_from(version)
            .map_err(|_| StoreError::OutOfRange(format!("version {version}")))?;
        spec.created_at = now;
        let json = serde_json::to_string(&spec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query(
            "INSERT INTO metrics (metric_id, version, name, spec, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(metric_id)
        .bind(version)
        .bind(&spec.name)
        .bind(json)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((spec, true))
    }

    async fn commit_batches_impl(
        &self,
        batches: &[BatchDelta],
        now: i64,
    ) -> Result<Vec<bool>, StoreError> {
        // The first occurrence of each id in the group is a candidate; later
        // repeats are duplicates of it whatever the database says.
        let mut first: HashMap<&[u8], usize> = HashMap::with_capacity(batches.len());
        for (i, b) in batches.iter().enumerate() {
            first.entry(b.batch_id.as_slice()).or_insert(i);
        }
        let mut candidates: Vec<usize> = first.values().copied().collect();
        candidates.sort_unstable();

        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        let mut fresh = vec![false; batches.len()];
        for chunk in candidates.chunks(ROWS_PER_STATEMENT) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO batches (batch_id, received_at, reports) ",
            );
            qb.push_values(chunk, |mut row, &i| {
                row.push_bind(batches[i].batch_id.as_slice())
                    .push_bind(now)
                    .push_bind(i64::from(batches[i].reports));
            });
            qb.push(" ON CONFLICT (batch_id) DO NOTHING RETURNING batch_id");
            let stored: Vec<Vec<u8>> = qb.build_query_scalar().fetch_all(&mut *tx).await?;
            for id in stored {
                let i = first.get(id.as_slice()).copied().ok_or_else(|| {
                    StoreError::Corrupt("database returned an unknown batch id".into())
                })?;
                fresh[i] = true;
            }
        }

        let mut merged: BTreeMap<StatsKey, Pooled> = BTreeMap::new();
        for (b, _) in batches.iter().zip(&fresh).filter(|(_, f)| **f) {
            for (key, delta) in &b.deltas {
                merged.entry(*key).or_default().add(delta)?;
            }
        }
        self.upsert_stats(&mut tx, &merged).await?;

        let raw: Vec<(&[u8], &[u8])> = batches
            .iter()
            .zip(&fresh)
            .filter(|(_, f)| **f)
            .filter_map(|(b, _)| b.raw.as_deref().map(|r| (b.batch_id.as_slice(), r)))
            .collect();
        for chunk in raw.chunks(ROWS_PER_STATEMENT) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO raw_batches (batch_id, received_at, reports) ",
            );
            qb.push_values(chunk, |mut row, (id, reports)| {
                row.push_bind(*id).push_bind(now).push_bind(*reports);
            });
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(fresh)
    }

    async fn upsert_stats(
        &self,
        tx: &mut sqlx::Transaction<'static, Sqlite>,
        merged: &BTreeMap<StatsKey, Pooled>,
    ) -> Result<(), StoreError> {
        let mut totals = Vec::with_capacity(merged.len());
        let mut cells = Vec::new();
        for (key, stats) in merged {
            let k = (
                i64::from(key.metric_id),
                i64::from(key.version),
                to_i64(key.epoch, "epoch")?,
            );
            totals.push((
                k,
                to_i64(stats.reports, "reports")?,
                stats.sum,
                stats.sum_sq,
            ));
            for (&cell, &n) in &stats.cells {
                cells.push((k, i64::from(cell), to_i64(n, "count")?));
            }
        }
        for chunk in totals.chunks(ROWS_PER_STATEMENT) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO totals AS t (metric_id, version, epoch, reports, sum, sum_sq) ",
            );
            qb.push_values(chunk, |mut row, ((m, v, e), n, s, s2)| {
                row.push_bind(*m)
                    .push_bind(*v)
                    .push_bind(*e)
                    .push_bind(*n)
                    .push_bind(*s)
                    .push_bind(*s2);
            });
            qb.push(
                " ON CONFLICT (metric_id, version, epoch) DO UPDATE SET \
                 reports = t.reports + excluded.reports, \
                 sum = t.sum + excluded.sum, sum_sq = t.sum_sq + excluded.sum_sq",
            );
            qb.build().execute(&mut **tx).await?;
        }
        for chunk in cells.chunks(ROWS_PER_STATEMENT) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO cell_counts AS t (metric_id, version, epoch, cell, n) ",
            );
            qb.push_values(chunk, |mut row, ((m, v, e), cell, n)| {
                row.push_bind(*m)
                    .push_bind(*v)
                    .push_bind(*e)
                    .push_bind(*cell)
                    .push_bind(*n);
            });
            qb.push(
                " ON CONFLICT (metric_id, version, epoch, cell) DO UPDATE SET n = t.n + excluded.n",
            );
            qb.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    async fn load_stats_impl(
        &self,
        metric_id: u32,
        version: u32,
        epochs: Option<&[u64]>,
        cells: usize,
    ) -> Result<(Stats, Vec<u64>), StoreError> {
        // The epoch list is bound as one JSON array, however long: an `IN (?, ?, ...)`
        // list would hit SQLite's limit of 32766 bound parameters. Epochs above
        // i64::MAX cannot be stored, so they match nothing.
        let mut stats = Stats::new(cells);
        let epoch_list = match epochs {
            Some(epochs) => {
                let mut list: Vec<i64> = epochs
                    .iter()
                    .filter_map(|&e| i64::try_from(e).ok())
                    .collect();
                if list.is_empty() {
                    return Ok((stats, Vec::new()));
                }
                list.sort_unstable();
                list.dedup();
                Some(serde_json::to_string(&list).map_err(|e| StoreError::Corrupt(e.to_string()))?)
            }
            None => None,
        };
        let epoch_filter = |qb: &mut QueryBuilder<Sqlite>| {
            qb.push(" WHERE metric_id = ")
                .push_bind(i64::from(metric_id))
                .push(" AND version = ")
                .push_bind(i64::from(version));
            if let Some(list) = &epoch_list {
                qb.push(" AND epoch IN (SELECT value FROM json_each(")
                    .push_bind(list.clone())
                    .push("))");
            }
        };
        // One read transaction: totals and counters come from the same snapshot
        // even when a commit lands between the two queries.
        let mut tx = self.read.begin().await?;
        let mut qb = QueryBuilder::<Sqlite>::new("SELECT epoch, reports, sum, sum_sq FROM totals");
        epoch_filter(&mut qb);
        qb.push(" ORDER BY epoch");
        let mut present = Vec::new();
        for row in qb.build().fetch_all(&mut *tx).await? {
            present.push(from_i64(row.try_get("epoch")?, "epoch")?);
            stats.reports += from_i64::<u64>(row.try_get("reports")?, "reports")?;
            stats.sum += row.try_get::<f64, _>("sum")?;
            stats.sum_sq += row.try_get::<f64, _>("sum_sq")?;
        }
        let mut qb = QueryBuilder::<Sqlite>::new(
            "SELECT cell, CAST(SUM(n) AS BIGINT) AS n FROM cell_counts",
        );
        epoch_filter(&mut qb);
        qb.push(" GROUP BY cell");
        for row in qb.build().fetch_all(&mut *tx).await? {
            let cell: usize = from_i64(row.try_get("cell")?, "cell")?;
            let n: u64 = from_i64(row.try_get("n")?, "count")?;
            let slot = stats.counts.get_mut(cell).ok_or_else(|| {
                StoreError::Corrupt(format!("cell {cell} of a metric with {cells} cells"))
            })?;
            *slot = n;
        }
        tx.commit().await?;
        Ok((stats, present))
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

fn parse_spec(json: String) -> Result<MetricSpec, StoreError> {
    serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(format!("metric spec: {e}")))
}

impl Store for SqliteStore {
    fn load_metrics(&self) -> StoreFuture<'_, Vec<MetricSpec>> {
        Box::pin(async move {
            let rows: Vec<String> =
                sqlx::query_scalar("SELECT spec FROM metrics ORDER BY metric_id, version")
                    .fetch_all(&self.read)
                    .await?;
            rows.into_iter().map(parse_spec).collect()
        })
    }

    fn create_metric(&self, spec: MetricSpec, now: i64) -> StoreFuture<'_, (MetricSpec, bool)> {
        Box::pin(self.create_metric_impl(spec, now))
    }

    fn commit_batches<'a>(
        &'a self,
        batches: &'a [BatchDelta],
        now: i64,
    ) -> StoreFuture<'a, Vec<bool>> {
        Box::pin(self.commit_batches_impl(batches, now))
    }

    fn load_stats<'a>(
        &'a self,
        metric_id: u32,
        version: u32,
        epochs: Option<&'a [u64]>,
        cells: usize,
    ) -> StoreFuture<'a, (Stats, Vec<u64>)> {
        Box::pin(self.load_stats_impl(metric_id, version, epochs, cells))
    }

    fn close_epoch(&self, metric_id: u32, epoch: u64, now: i64) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO closed_epochs (metric_id, epoch, closed_at) VALUES (?, ?, ?) \
                 ON CONFLICT (metric_id, epoch) DO NOTHING",
            )
            .bind(i64::from(metric_id))
            .bind(to_i64(epoch, "epoch")?)
            .bind(now)
            .execute(&self.write)
            .await?;
            Ok(())
        })
    }

    fn closed_epochs(&self) -> StoreFuture<'_, Vec<(u32, u64)>> {
        Box::pin(async move {
            let rows = sqlx::query("SELECT metric_id, epoch FROM closed_epochs")
                .fetch_all(&self.read)
                .await?;
            rows.into_iter()
                .map(|row| {
                    Ok((
                        from_i64(row.try_get("metric_id")?, "metric_id")?,
                        from_i64(row.try_get("epoch")?, "epoch")?,
                    ))
                })
                .collect()
        })
    }

    fn purge_raw(&self, before: i64) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let done = sqlx::query("DELETE FROM raw_batches WHERE received_at < ?")
                .bind(before)
                .execute(&self.write)
                .await?;
            Ok(done.rows_affected())
        })
    }

    fn close(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.read.close().await;
            self.write.close().await;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use ldp_sdk::Epsilon;
    use ldp_sdk::mechanism::MechanismSpec;

    use super::*;

    fn delta(id: &[u8], epoch: u64, counts: Vec<u64>) -> BatchDelta {
        let reports = counts.iter().sum::<u64>();
        BatchDelta {
            batch_id: id.to_vec(),
            reports: reports as u32,
            deltas: vec![(
                StatsKey {
                    metric_id: 1,
                    version: 1,
                    epoch,
                },
                Delta {
                    reports,
                    cells: (0..).zip(counts).filter(|(_, n)| *n > 0).collect(),
                    ..Delta::default()
                },
            )],
            raw: None,
        }
    }

    #[tokio::test]
    async fn duplicates_count_once_within_and_across_groups() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        let group = [
            delta(b"a", 0, vec![1, 2]),
            delta(b"a", 0, vec![1, 2]),
            delta(b"b", 1, vec![0, 5]),
        ];
        assert_eq!(
            store.commit_batches(&group, 1).await.unwrap(),
            [true, false, true]
        );
        let again = [delta(b"b", 1, vec![0, 5]), delta(b"c", 1, vec![3, 0])];
        assert_eq!(
            store.commit_batches(&again, 2).await.unwrap(),
            [false, true]
        );
        let (all, epochs) = store.load_stats(1, 1, None, 2).await.unwrap();
        assert_eq!(
            (all.reports, all.counts, epochs),
            (11, vec![4, 7], vec![0, 1])
        );
        let (one, _) = store.load_stats(1, 1, Some(&[1]), 2).await.unwrap();
        assert_eq!(one.counts, vec![3, 5]);
    }

    /// Regression: an estimate over more than 32766 epochs failed with INTERNAL
    /// (SQLite's limit of bound parameters in `epoch IN (?, ...)`), and an epoch
    /// above i64::MAX failed the conversion; now any list works and epochs that
    /// cannot be stored match nothing.
    #[tokio::test]
    async fn stats_over_any_number_of_epochs() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        let group = [
            delta(b"a", 3, vec![1, 2]),
            delta(b"b", 39_999, vec![0, 5]),
            delta(b"c", 50_000, vec![7, 0]),
        ];
        store.commit_batches(&group, 1).await.unwrap();
        let mut epochs: Vec<u64> = (0..40_000).collect();
        epochs.extend([3, u64::MAX, i64::MAX as u64 + 1]);
        let (stats, present) = store.load_stats(1, 1, Some(&epochs), 2).await.unwrap();
        assert_eq!((stats.reports, stats.counts), (8, vec![1, 7]));
        assert_eq!(present, vec![3, 39_999]);
        let (none, present) = store.load_stats(1, 1, Some(&[u64::MAX]), 2).await.unwrap();
        assert_eq!((none.reports, present), (0, vec![]));
    }

    #[tokio::test]
    async fn raw_reports_are_kept_until_purged() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        let mut old = delta(b"old", 0, vec![1, 0]);
        old.raw = Some(vec![1, 2, 3]);
        let mut new = delta(b"new", 0, vec![0, 1]);
        new.raw = Some(vec![4]);
        store.commit_batches(&[old], 100).await.unwrap();
        store.commit_batches(&[new], 200).await.unwrap();
        assert_eq!(store.purge_raw(150).await.unwrap(), 1);
        assert_eq!(store.purge_raw(150).await.unwrap(), 0);
        assert_eq!(store.purge_raw(201).await.unwrap(), 1);
        // Purging raw reports never touches the statistics.
        assert_eq!(store.load_stats(1, 1, None, 2).await.unwrap().0.reports, 2);
    }

    #[tokio::test]
    async fn closed_epochs_persist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = SqliteStore::open(&path).await.unwrap();
        store.close_epoch(3, 7, 1).await.unwrap();
        store.close_epoch(3, 7, 2).await.unwrap();
        store.close().await.unwrap();
        let reopened = SqliteStore::open(&path).await.unwrap();
        assert_eq!(reopened.closed_epochs().await.unwrap(), vec![(3, 7)]);
    }

    #[tokio::test]
    async fn metrics_get_versions_and_identical_specs_are_no_ops() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        let eps = Epsilon::new(1.0).unwrap();
        let a = MetricSpec::new("a", eps, MechanismSpec::Grr { domain_size: 3 });
        let (a1, created) = store.create_metric(a.clone(), 10).await.unwrap();
        assert!(created);
        assert_eq!((a1.metric_id, a1.version, a1.created_at), (1, 1, 10));
        let (same, created) = store.create_metric(a.clone(), 11).await.unwrap();
        assert!(!created);
        assert_eq!(same, a1);
        let a2 = MetricSpec::new("a", eps, MechanismSpec::Grr { domain_size: 4 });
        let (a2, _) = store.create_metric(a2, 12).await.unwrap();
        assert_eq!((a2.metric_id, a2.version), (1, 2));
        let b = MetricSpec::new("b", eps, MechanismSpec::Binary);
        let (b, _) = store.create_metric(b, 13).await.unwrap();
        assert_eq!((b.metric_id, b.version), (2, 1));
        assert_eq!(store.load_metrics().await.unwrap().len(), 3);
    }
}
