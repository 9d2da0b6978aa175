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

use super::rows::{
    self, CommitPlan, EpochFilter, MetricPlan, StatRows, StatsReader, parse_spec,
    rows_per_statement,
};
use super::{BatchDelta, Store, StoreError, StoreFuture, from_i64, to_i64};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// Most bound parameters in one statement (SQLite allows 32766; fewer keeps
/// statements small).
const MAX_BINDS: usize = 6000;

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
        spec: MetricSpec,
        now: i64,
    ) -> Result<(MetricSpec, bool), StoreError> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        let latest: Option<(i64, i64, String)> = sqlx::query_as(
            "SELECT metric_id, version, spec FROM metrics WHERE name = ? ORDER BY version DESC LIMIT 1",
        )
        .bind(&spec.name)
        .fetch_optional(&mut *tx)
        .await?;
        let next_id: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(metric_id), 0) + 1 FROM metrics")
                .fetch_one(&mut *tx)
                .await?;
        let (spec, json) = match MetricPlan::new(spec, latest, next_id, now)? {
            MetricPlan::Existing(existing) => return Ok((existing, false)),
            MetricPlan::Insert { spec, json } => (spec, json),
        };
        sqlx::query(
            "INSERT INTO metrics (metric_id, version, name, spec, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(i64::from(spec.metric_id))
        .bind(i64::from(spec.version))
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
        let plan = CommitPlan::new(batches);
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        let mut fresh = vec![false; batches.len()];
        for chunk in plan.candidates.chunks(rows_per_statement(MAX_BINDS, 3)) {
            let stored: Vec<Vec<u8>> = rows::insert_batches::<Sqlite>(batches, chunk, now)
                .build_query_scalar()
                .fetch_all(&mut *tx)
                .await?;
            plan.mark(&stored, &mut fresh)?;
        }
        let stats = StatRows::merge(batches, &fresh)?;
        for chunk in stats.totals.chunks(rows_per_statement(MAX_BINDS, 6)) {
            rows::upsert_totals::<Sqlite>(chunk)
                .build()
                .execute(&mut *tx)
                .await?;
        }
        for chunk in stats.cells.chunks(rows_per_statement(MAX_BINDS, 5)) {
            rows::upsert_cells::<Sqlite>(chunk)
                .build()
                .execute(&mut *tx)
                .await?;
        }
        let raw = rows::raw_rows(batches, &fresh);
        for chunk in raw.chunks(rows_per_statement(MAX_BINDS, 3)) {
            rows::insert_raw::<Sqlite>(chunk, now)
                .build()
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(fresh)
    }

    async fn load_stats_impl(
        &self,
        metric_id: u32,
        version: u32,
        epochs: Option<&[u64]>,
        cells: usize,
    ) -> Result<(Stats, Vec<u64>), StoreError> {
        // The epoch list is bound as one JSON array, however long: an `IN (?, ?, ...)`
        // list would hit SQLite's limit of bound parameters.
        let mut reader = StatsReader::new(cells);
        let epoch_list = match EpochFilter::new(epochs) {
            EpochFilter::All => None,
            EpochFilter::Nothing => return Ok(reader.finish()),
            EpochFilter::Only(list) => {
                Some(serde_json::to_string(&list).map_err(|e| StoreError::Corrupt(e.to_string()))?)
            }
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
        let totals: Vec<(i64, i64, f64, f64)> = qb.build_query_as().fetch_all(&mut *tx).await?;
        for (epoch, reports, sum, sum_sq) in totals {
            reader.add_total(epoch, reports, sum, sum_sq)?;
        }
        let mut qb = QueryBuilder::<Sqlite>::new(
            "SELECT cell, CAST(SUM(n) AS BIGINT) AS n FROM cell_counts",
        );
        epoch_filter(&mut qb);
        qb.push(" GROUP BY cell");
        let counts: Vec<(i64, i64)> = qb.build_query_as().fetch_all(&mut *tx).await?;
        for (cell, n) in counts {
            reader.set_cell(cell, n)?;
        }
        tx.commit().await?;
        Ok(reader.finish())
    }
}

impl Store for SqliteStore {
    fn load_metrics(&self) -> StoreFuture<'_, Vec<MetricSpec>> {
        Box::pin(async move {
            let rows: Vec<String> =
                sqlx::query_scalar("SELECT spec FROM metrics ORDER BY metric_id, version")
                    .fetch_all(&self.read)
                    .await?;
            rows.iter().map(|json| parse_spec(json)).collect()
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
    use crate::store::{Delta, StatsKey};

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
