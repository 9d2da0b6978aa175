//! The embedded SQLite [`Store`]: one database file, created on first start.
//!
//! The file is opened in WAL mode with `synchronous=FULL`, so a commit that
//! returned survives a process crash and a power loss. Writes go through a pool
//! of exactly one connection (SQLite has one writer; `BEGIN IMMEDIATE` takes the
//! write lock up front so a transaction never fails half-way on a lock upgrade);
//! reads use a separate pool and see the last committed state.
//!
//! The schema is versioned with the migrations in `aggregator/migrations/sqlite`,
//! embedded in the binary and applied by [`SqliteStore::open`];
//! [`SqliteStore::open_read_only`] opens an existing file read-only, migrates
//! nothing and refuses a file at other migrations than this binary's.

use std::path::Path;
use std::time::Duration;

use ldp_sdk::estimate::Stats;
use ldp_sdk::metric::MetricSpec;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite};

mod ledger;

use super::portable;
use super::rows::{EpochFilter, StatsReader};
use super::{BatchDelta, Store, StoreError, StoreFuture};

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

    /// Opens the existing database at `path` read-only (SQLite's
    /// `SQLITE_OPEN_READONLY`): creates nothing, applies no migration, and
    /// refuses with [`StoreError::Schema`] a file whose `_sqlx_migrations`
    /// rows differ from this binary's migrations. Writes through it fail.
    pub async fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .busy_timeout(Duration::from_secs(30));
        let read = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await?;
        let applied = sqlx::query_as(
            "SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version",
        )
        .fetch_all(&read)
        .await;
        if let Err(e) = super::check_applied_migrations(&MIGRATOR, applied) {
            read.close().await;
            return Err(e);
        }
        Ok(Self {
            write: read.clone(),
            read,
        })
    }

    async fn create_metric_impl(
        &self,
        spec: MetricSpec,
        now: i64,
    ) -> Result<(MetricSpec, bool), StoreError> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        let created = portable::create_metric::<Sqlite>(&mut tx, spec, now).await?;
        tx.commit().await?;
        Ok(created)
    }

    async fn commit_batches_impl(
        &self,
        batches: &[BatchDelta],
        now: i64,
    ) -> Result<Vec<bool>, StoreError> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        let fresh = portable::commit_batches::<Sqlite>(&mut tx, batches, now, MAX_BINDS).await?;
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
        let list = match EpochFilter::new(epochs) {
            EpochFilter::All => None,
            EpochFilter::Nothing => return Ok(StatsReader::new(cells).finish()),
            EpochFilter::Only(list) => {
                Some(serde_json::to_string(&list).map_err(|e| StoreError::Corrupt(e.to_string()))?)
            }
        };
        let only = |qb: &mut QueryBuilder<Sqlite>| {
            if let Some(list) = &list {
                qb.push(" AND epoch IN (SELECT value FROM json_each(")
                    .push_bind(list.clone())
                    .push("))");
            }
        };
        let mut tx = self.read.begin().await?;
        let stats =
            portable::load_stats::<Sqlite>(&mut tx, metric_id, version, cells, &only).await?;
        tx.commit().await?;
        Ok(stats)
    }
}

impl Store for SqliteStore {
    fn load_metrics(&self) -> StoreFuture<'_, Vec<MetricSpec>> {
        Box::pin(
            async move { portable::load_metrics::<Sqlite>(&mut *self.read.acquire().await?).await },
        )
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
            let mut conn = self.write.acquire().await?;
            portable::close_epoch::<Sqlite>(&mut conn, metric_id, epoch, now).await
        })
    }

    fn closed_epochs(&self) -> StoreFuture<'_, Vec<(u32, u64)>> {
        Box::pin(async move {
            portable::closed_epochs::<Sqlite>(&mut *self.read.acquire().await?).await
        })
    }

    fn purge_raw(&self, before: i64) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            portable::purge_raw::<Sqlite>(&mut *self.write.acquire().await?, before).await
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
