//! Durable storage of metrics, batch ids and sufficient statistics.
//!
//! The [`Store`] trait is all the server needs from a database; [`sqlite`] is the
//! embedded implementation (the default) and [`postgres`] the PostgreSQL one.
//! Both run the same statements (`INSERT ... ON CONFLICT ... DO UPDATE SET n =
//! t.n + excluded.n` and the rest, written once, generic over the sqlx
//! database) with the same conversions and checks; only how their
//! transactions start and what they lock, the epoch filter of
//! [`Store::load_stats`], their bind limits, their read and write pools, and
//! the migration folders differ. [`Database`] names which one to open:
//!
//! ```
//! use ldp_aggregator::store::Database;
//! let pg: Database = "postgres://ldp@db.internal/ldp".parse().unwrap();
//! assert!(matches!(pg, Database::Postgres(_)));
//! let file: Database = "ldp.db".parse().unwrap();
//! assert!(matches!(file, Database::Sqlite(_)));
//! // `From` takes paths only; a string may be a URL, so it is parsed.
//! assert!(matches!(Database::from(std::path::Path::new("x.db")), Database::Sqlite(_)));
//! ```
//!
//! # Guarantees every implementation keeps
//! - [`Store::commit_batches`] is one transaction: either every new batch of the
//!   group and its statistics are durable when it returns `Ok`, or nothing is.
//! - A batch id is counted at most once, ever: a batch whose id is already
//!   stored, or that repeats an earlier id of the same group, is reported as a
//!   duplicate and its statistics are not added.
//! - Statistics are per-batch deltas merged in memory and written as upserts of
//!   (metric, version, epoch, cell) counters, so the tables grow with the number
//!   of cells, not the number of reports.
//! - Metrics are immutable: a row of `metrics` is never updated.
//!
//! All SQL of the aggregator lives under this module.

pub mod ledger;
mod portable;
pub mod postgres;
mod rows;
pub mod sqlite;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;

use ldp_sdk::estimate::Stats;
use ldp_sdk::metric::MetricSpec;

/// A boxed future returned by [`Store`] methods (keeps the trait object-safe).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Storage failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A schema migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored row could not be decoded (corruption or a newer schema).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// A value does not fit the database's integer type.
    #[error("value out of range for storage: {0}")]
    OutOfRange(String),
    /// A database address could not be parsed.
    #[error("invalid database address: {0}")]
    Address(String),
    /// The database schema cannot be used: opening without migrating found one
    /// other than this binary's migrations build (older, newer, edited, or not
    /// an ldp database), or a PostgreSQL `search_path` names no usable schema.
    #[error("database schema: {0}")]
    Schema(String),
    /// A server lock's session is alive but no longer holds the lock (it was
    /// released behind the holder's back).
    #[error("server lock lost: {0}")]
    LockLost(String),
}

impl StoreError {
    /// Whether the failure lies in the database's state at the time rather
    /// than in the work asked of it: unreachable, restarting or failing over,
    /// out of connections, space or memory, busy, a lost serialization race.
    /// The same work may then succeed when retried; anything else (a value the
    /// database refuses, corrupt rows, a schema mismatch) would fail again.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Database(e) => sqlx_error_is_transient(e),
            Self::LockLost(_) => true,
            Self::Migrate(_)
            | Self::Corrupt(_)
            | Self::OutOfRange(_)
            | Self::Address(_)
            | Self::Schema(_) => false,
        }
    }
}

fn sqlx_error_is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => true,
        sqlx::Error::Database(db) => {
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                // SQLSTATE classes 08 (connection), 53 (insufficient
                // resources), 57P (shutdown, restart); serialization failure,
                // deadlock, read-only transaction (a standby after failover),
                // lock not available, I/O error.
                let code = pg.code();
                code.starts_with("08")
                    || code.starts_with("53")
                    || code.starts_with("57P")
                    || matches!(code, "40001" | "40P01" | "25006" | "55P03" | "58030")
            } else if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // The primary result code is the low byte of the extended one:
                // BUSY, LOCKED, NOMEM, READONLY, IOERR, FULL, CANTOPEN.
                db.code()
                    .and_then(|c| c.parse::<i32>().ok())
                    .is_some_and(|c| matches!(c & 0xff, 5 | 6 | 7 | 8 | 10 | 13 | 14))
            } else {
                false
            }
        }
        _ => false,
    }
}

/// Which database a server or a report reads: a SQLite file, or a PostgreSQL
/// database named by a `postgres://` or `postgresql://` URL.
///
/// Parsing never fails for a path; a URL with one of those schemes must be a
/// valid PostgreSQL URL (`sslmode`, `options` and the other parameters sqlx
/// understands are kept). `Display` and `Debug` never show a password.
#[derive(Clone)]
pub enum Database {
    /// A SQLite file, created on first open.
    Sqlite(PathBuf),
    /// A PostgreSQL database (which must exist; the tables are created on first open).
    Postgres(Box<sqlx::postgres::PgConnectOptions>),
}

impl Database {
    /// Opens the store, applying pending migrations.
    pub async fn open(&self) -> Result<Arc<dyn Store>, StoreError> {
        Ok(match self {
            Self::Sqlite(path) => Arc::new(sqlite::SqliteStore::open(path).await?),
            Self::Postgres(options) => {
                Arc::new(postgres::PostgresStore::open((**options).clone()).await?)
            }
        })
    }

    /// Opens an existing store for reading only: creates nothing, applies no
    /// migration, and refuses ([`StoreError::Schema`]) a database whose
    /// applied migrations are not exactly this binary's. Every transaction is
    /// read-only, so its writing methods fail; a role that may only read the
    /// tables (PostgreSQL `USAGE` on the schema and `SELECT` on its tables) is
    /// enough.
    pub async fn open_read_only(&self) -> Result<Arc<dyn Store>, StoreError> {
        Ok(match self {
            Self::Sqlite(path) => Arc::new(sqlite::SqliteStore::open_read_only(path).await?),
            Self::Postgres(options) => {
                Arc::new(postgres::PostgresStore::open_read_only((**options).clone()).await?)
            }
        })
    }
}

/// Checks the rows of `_sqlx_migrations` (version, checksum, success), as
/// read by `applied`, against `migrator`: the same versions with the same
/// checksums, all successful.
pub(crate) fn check_applied_migrations(
    migrator: &sqlx::migrate::Migrator,
    applied: Result<Vec<(i64, Vec<u8>, bool)>, sqlx::Error>,
) -> Result<(), StoreError> {
    let applied = applied.map_err(|e| {
        StoreError::Schema(format!(
            "cannot read the applied migrations (_sqlx_migrations); is this a database \
             `ldp serve` has opened, and may this role read it? ({e})"
        ))
    })?;
    let ups: Vec<_> = migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .collect();
    let expected: Vec<i64> = ups.iter().map(|m| m.version).collect();
    let found: Vec<i64> = applied.iter().map(|(v, _, _)| *v).collect();
    if found != expected {
        return Err(StoreError::Schema(format!(
            "the database has migrations {found:?} applied, this ldp expects {expected:?}; \
             open it with the ldp version that wrote it, or let `ldp serve` of this \
             version migrate it first"
        )));
    }
    for ((version, checksum, success), m) in applied.iter().zip(ups) {
        if !success {
            return Err(StoreError::Schema(format!(
                "migration {version} did not complete"
            )));
        }
        if checksum.as_slice() != &*m.checksum {
            return Err(StoreError::Schema(format!(
                "migration {version} was applied from other SQL than this ldp's"
            )));
        }
    }
    Ok(())
}

impl FromStr for Database {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.get(..13).unwrap_or(s).to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            let options = sqlx::postgres::PgConnectOptions::from_str(s)
                .map_err(|e| StoreError::Address(e.to_string()))?;
            return Ok(Self::Postgres(Box::new(options)));
        }
        Ok(Self::Sqlite(PathBuf::from(s)))
    }
}

/// The SQLite file at a path.
impl From<PathBuf> for Database {
    fn from(path: PathBuf) -> Self {
        Self::Sqlite(path)
    }
}

/// The SQLite file at a path.
impl From<&Path> for Database {
    fn from(path: &Path) -> Self {
        Self::Sqlite(path.to_path_buf())
    }
}

impl std::fmt::Display for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "{}", path.display()),
            Self::Postgres(options) => f.write_str(&postgres::describe(options, None)),
        }
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            Self::Postgres(_) => f.debug_tuple("Postgres").field(&self.to_string()).finish(),
        }
    }
}

/// The statistics a group of reports belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatsKey {
    /// Metric id.
    pub metric_id: u32,
    /// Metric version.
    pub version: u32,
    /// Collection epoch.
    pub epoch: u64,
}

/// What one batch adds to the statistics of one [`StatsKey`]: its report
/// count, numeric sums, and only the counters it touched. Its size grows with
/// the batch, never with the metric's number of counters, so a small batch of
/// a metric with millions of counters stays small in the writer queue and in
/// the commit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delta {
    /// Reports added.
    pub reports: u64,
    /// Sum of the reported values (numeric mechanisms only).
    pub sum: f64,
    /// Sum of the squared reported values (numeric mechanisms only).
    pub sum_sq: f64,
    /// `(cell, count)` with `count > 0`, in strictly increasing cell order;
    /// cells index [`Stats::counts`] of the metric's mechanism.
    pub cells: Vec<(u32, u64)>,
}

/// One validated batch, ready to be committed: its id and the statistics its
/// reports add, already aggregated per [`StatsKey`].
#[derive(Debug, Clone)]
pub struct BatchDelta {
    /// The client's idempotency key.
    pub batch_id: Vec<u8>,
    /// Number of reports in the batch.
    pub reports: u32,
    /// Statistics added by the batch, one entry per key.
    pub deltas: Vec<(StatsKey, Delta)>,
    /// Encoded reports, when raw-report retention is on.
    pub raw: Option<Vec<u8>>,
}

/// Storage behind the aggregator. Implementations are shared between tasks; the
/// privacy ledger's storage is the supertrait [`ledger::LedgerStore`].
pub trait Store: ledger::LedgerStore + Send + Sync + 'static {
    /// Every stored metric version, ordered by (metric_id, version).
    fn load_metrics(&self) -> StoreFuture<'_, Vec<MetricSpec>>;

    /// Stores `spec` as a new version of its name, or returns the latest version
    /// unchanged (and `false`) when its parameters are identical. Assigns
    /// `metric_id` (shared by all versions of a name), `version` and `created_at`.
    /// `spec` must already be validated.
    fn create_metric(&self, spec: MetricSpec, now: i64) -> StoreFuture<'_, (MetricSpec, bool)>;

    /// Commits a group of batches in one transaction. Returns, per input batch,
    /// `true` when it was stored now and `false` when its id was already stored
    /// (earlier, or earlier in the same group).
    fn commit_batches<'a>(
        &'a self,
        batches: &'a [BatchDelta],
        now: i64,
    ) -> StoreFuture<'a, Vec<bool>>;

    /// Pooled statistics of one metric version over `epochs` (all epochs when
    /// `None`), with `cells` counters, and the epochs that had any report.
    fn load_stats<'a>(
        &'a self,
        metric_id: u32,
        version: u32,
        epochs: Option<&'a [u64]>,
        cells: usize,
    ) -> StoreFuture<'a, (Stats, Vec<u64>)>;

    /// Marks an epoch of a metric (all versions) closed. Idempotent.
    fn close_epoch(&self, metric_id: u32, epoch: u64, now: i64) -> StoreFuture<'_, ()>;

    /// Every closed (metric_id, epoch).
    fn closed_epochs(&self) -> StoreFuture<'_, Vec<(u32, u64)>>;

    /// Deletes retained raw reports received before `before`; returns how many batches.
    fn purge_raw(&self, before: i64) -> StoreFuture<'_, u64>;

    /// Waits for in-flight operations and closes the database.
    fn close(&self) -> StoreFuture<'_, ()>;
}

impl std::fmt::Debug for dyn Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

/// Converts an unsigned value to the database's signed 64-bit integer.
pub(crate) fn to_i64(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::OutOfRange(format!("{what} {value}")))
}

/// Converts a stored signed integer back, rejecting negative (corrupt) values.
pub(crate) fn from_i64<T: TryFrom<i64>>(value: i64, what: &str) -> Result<T, StoreError> {
    T::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value}")))
}
