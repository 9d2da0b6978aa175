//! The PostgreSQL [`Store`]: the same tables, statements and guarantees as
//! [`SqliteStore`](super::sqlite::SqliteStore), on a database that must exist.
//!
//! [`PostgresStore::open`] applies the migrations in
//! `aggregator/migrations/postgres` (embedded in the binary) to the first
//! existing schema of the connection's `search_path`, so one database can hold
//! several aggregators in separate schemas
//! (`postgres://host/db?options=-c%20search_path%3Dname`);
//! [`PostgresStore::open_read_only`] migrates nothing and refuses a schema at
//! other migrations than this binary's.
//!
//! The schema is resolved once, at open (`SELECT current_schema()`), and every
//! connection of the store is then pinned to it (`search_path` set to that
//! schema alone). Without the pin every unqualified statement would resolve
//! `search_path` anew, and a schema created later (the default `"$user",
//! public` picks up `CREATE SCHEMA AUTHORIZATION ldp`) would silently move a
//! running server's writes to other tables. A `search_path` that names no
//! existing schema is refused, and so is a schema whose name holds whitespace
//! other than a space (it cannot be passed as a startup option). Every connection runs with
//! `synchronous_commit=on` (a commit that returned is in the server's
//! write-ahead log on disk) and `default_transaction_isolation=read
//! committed`, whatever the role or database sets: the reasoning below needs
//! READ COMMITTED, and under REPEATABLE READ or SERIALIZABLE concurrent
//! upserts of one counter would fail with serialization errors.
//!
//! TLS follows the URL's `sslmode` (rustls with the WebPKI roots;
//! `sslrootcert` names another CA). Only `sslmode=verify-full` authenticates
//! the server (certificate chain and host name); `verify-ca` checks the chain
//! but not the name, and `require` and `prefer` (the default) encrypt without
//! checking either, so an attacker on the path can pose as the server. Use
//! `verify-full` (with `sslrootcert=` for a private CA) anywhere but loopback.
//! Keep the password out of the URL (a command line shows in `ps`): sqlx reads
//! `PGPASSWORD` and `~/.pgpass`.
//!
//! # How the guarantees are kept
//! - [`Store::commit_batches`] is one transaction; batch ids go through
//!   `INSERT ... ON CONFLICT (batch_id) DO NOTHING RETURNING batch_id`, so an id
//!   stored by a concurrent transaction waits for it and then counts as a
//!   duplicate. Multi-row statements stay under PostgreSQL's 65,535 bound
//!   parameters.
//! - Writes that decide from what they read (a metric's next version, a
//!   release against its budget) first take `LOCK TABLE ... IN SHARE ROW
//!   EXCLUSIVE MODE`, which conflicts with itself but not with readers: two
//!   such writers run one after the other, and the second reads what the first
//!   committed (each statement of a READ COMMITTED transaction sees the commits
//!   before it started).
//! - Reads that span two statements ([`Store::load_stats`],
//!   [`LedgerStore::load_ledger`]) run in one `REPEATABLE READ` snapshot.
//! - The writer task's group commits and epoch closes have a pool of their
//!   own ([`COMMIT_POOL_SIZE`]); Admin writes and the raw-report purge use
//!   another ([`WRITE_POOL_SIZE`]), and reads a third ([`READ_POOL_SIZE`]). So
//!   however many slow Analytics reads or Admin writes waiting on a table lock
//!   run, a group commit never waits for a connection behind them.
//!
//! # One server per schema
//! The server caches metrics, device budgets and closed epochs in memory, so
//! `ldp serve` takes [`ServerLock`]: a session-level advisory lock keyed by the
//! schema, held on its own connection for the life of the process.

use std::time::Duration;

use ldp_sdk::estimate::Stats;
use ldp_sdk::metric::MetricSpec;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Postgres, QueryBuilder};

mod ledger;

use super::portable;
use super::rows::{EpochFilter, StatsReader};
use super::{BatchDelta, Store, StoreError, StoreFuture};

#[cfg(doc)]
use super::ledger::LedgerStore;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// Most bound parameters in one statement (PostgreSQL's protocol limit).
const MAX_BINDS: usize = 65_535;

/// First key of the advisory lock [`ServerLock`] takes (`ldp` in ASCII); the
/// second is a hash of the schema.
const SERVER_LOCK_CLASS: i32 = 0x006c_6470;

/// Connections of the commit pool: the writer task's group commits and epoch
/// closes ([`Store::commit_batches`], [`Store::close_epoch`]) and nothing else.
/// The writer task runs one at a time, so one connection is enough, and no
/// read or Admin write can make a commit wait (and time out) for one.
const COMMIT_POOL_SIZE: u32 = 1;

/// Connections of the write pool: Admin writes (metrics, the privacy ledger,
/// device budgets) and the raw-report purge, never a group commit, so Admin
/// writes queued behind a ledger lock cannot hold up ingestion.
const WRITE_POOL_SIZE: u32 = 3;

/// Connections of the read pool: concurrent Analytics reads, and the loads
/// at start.
const READ_POOL_SIZE: u32 = 8;

/// `application_name` of the [`ServerLock`] connection, so an operator can
/// find it in `pg_stat_activity`.
pub const SERVER_LOCK_APPLICATION_NAME: &str = "ldp server lock";

/// A [`Store`] on one PostgreSQL schema.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    /// Group commits and epoch closes (see [`COMMIT_POOL_SIZE`]).
    commit: PgPool,
    /// Every other write (see [`WRITE_POOL_SIZE`]).
    write: PgPool,
    /// Every read (see [`READ_POOL_SIZE`]).
    read: PgPool,
    schema: String,
}

/// `postgres://user@host:port/database`: an address without its password, for
/// logs and error messages; with ` (schema NAME)` when the schema is known.
pub(crate) fn describe(options: &PgConnectOptions, schema: Option<&str>) -> String {
    let mut out = format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or_default()
    );
    if let Some(schema) = schema {
        out.push_str(&format!(" (schema {schema})"));
    }
    out
}

/// The schema unqualified names resolve to on `conn` (`current_schema()`: the
/// first existing schema of its `search_path`); refused when there is none.
async fn current_schema(
    conn: &mut PgConnection,
    options: &PgConnectOptions,
) -> Result<String, StoreError> {
    let schema: Option<String> = sqlx::query_scalar("SELECT current_schema()")
        .fetch_one(&mut *conn)
        .await?;
    schema.ok_or_else(|| {
        StoreError::Schema(format!(
            "the search_path of {} names no existing schema; create the schema or set \
             search_path (options=-c%20search_path%3Dname in the URL)",
            describe(options, None)
        ))
    })
}

/// Resolves the schema of `options` once (see the module docs) and returns it
/// with `options` pinned to it ([`pinned`]).
async fn pin_schema(options: PgConnectOptions) -> Result<(PgConnectOptions, String), StoreError> {
    let mut conn = durable(options.clone()).connect().await?;
    let schema = current_schema(&mut conn, &options).await;
    conn.close().await?;
    let schema = schema?;
    let options = pinned(options, &schema)?;
    tracing::info!(
        db = %describe(&options, Some(&schema)),
        "PostgreSQL schema resolved; every connection is pinned to it"
    );
    Ok((options, schema))
}

/// `options` with `search_path` set to `schema` alone (quoted, so its case and
/// any special characters survive). The pin comes after the URL's own options,
/// so it wins.
///
/// A name holding whitespace other than a space (tab, line feed, carriage
/// return, vertical tab, form feed) is refused with [`StoreError::Schema`]:
/// PostgreSQL splits the `options` startup parameter on any of them, but sqlx
/// escapes only spaces, so every connection would fail to start.
fn pinned(options: PgConnectOptions, schema: &str) -> Result<PgConnectOptions, StoreError> {
    if schema.contains(['\t', '\n', '\r', '\u{b}', '\u{c}']) {
        return Err(StoreError::Schema(format!(
            "schema {schema:?} of {} holds a tab, line break, vertical tab or form feed, \
             which a PostgreSQL connection cannot be pinned to; rename the schema or \
             choose another in search_path",
            describe(&options, None)
        )));
    }
    let quoted = format!("\"{}\"", schema.replace('"', "\"\""));
    Ok(options.options([("search_path", quoted)]))
}

/// The options every connection of the store uses: durable commits, READ
/// COMMITTED unless a transaction asks otherwise (these come after the URL's
/// own `options`, and startup options override role and database defaults),
/// and no notices below warnings (migrations re-checking their table say
/// "already exists, skipping" on every start).
fn durable(options: PgConnectOptions) -> PgConnectOptions {
    options
        .options([
            ("synchronous_commit", "on"),
            ("default_transaction_isolation", "read committed"),
            ("client_min_messages", "warning"),
        ])
        .application_name("ldp")
}

impl PostgresStore {
    /// Connects to the database of `options`, pins its schema (see the module
    /// docs) and applies pending migrations there.
    pub async fn open(options: PgConnectOptions) -> Result<Self, StoreError> {
        let (options, schema) = pin_schema(options).await?;
        let options = durable(options);
        let write = PgPoolOptions::new()
            .max_connections(WRITE_POOL_SIZE)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&write).await?;
        let commit = PgPoolOptions::new()
            .max_connections(COMMIT_POOL_SIZE)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await?;
        let read = PgPoolOptions::new()
            .max_connections(READ_POOL_SIZE)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        Ok(Self {
            commit,
            write,
            read,
            schema,
        })
    }

    /// Connects to an existing store for reading only: applies no migration
    /// (so it needs no `CREATE` privilege), refuses with
    /// [`StoreError::Schema`] a schema whose `_sqlx_migrations` rows differ
    /// from this binary's migrations, and runs every transaction read-only
    /// (`default_transaction_read_only=on`), so writes through it fail.
    pub async fn open_read_only(options: PgConnectOptions) -> Result<Self, StoreError> {
        let (options, schema) = pin_schema(options).await?;
        let options = durable(options).options([("default_transaction_read_only", "on")]);
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        let applied = sqlx::query_as(
            "SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version",
        )
        .fetch_all(&pool)
        .await;
        if let Err(e) = super::check_applied_migrations(&MIGRATOR, applied) {
            pool.close().await;
            return Err(e);
        }
        Ok(Self {
            commit: pool.clone(),
            write: pool.clone(),
            read: pool,
            schema,
        })
    }

    /// The schema this store is pinned to.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// `postgres://user@host:port/database (schema NAME)`, without the
    /// password.
    pub fn describe(&self) -> String {
        describe(&self.read.connect_options(), Some(&self.schema))
    }

    async fn create_metric_impl(
        &self,
        spec: MetricSpec,
        now: i64,
    ) -> Result<(MetricSpec, bool), StoreError> {
        let mut tx = self.write.begin().await?;
        sqlx::query("LOCK TABLE metrics IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        let created = portable::create_metric::<Postgres>(&mut tx, spec, now).await?;
        tx.commit().await?;
        Ok(created)
    }

    async fn commit_batches_impl(
        &self,
        batches: &[BatchDelta],
        now: i64,
    ) -> Result<Vec<bool>, StoreError> {
        let mut tx = self.commit.begin().await?;
        let fresh = portable::commit_batches::<Postgres>(&mut tx, batches, now, MAX_BINDS).await?;
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
        // The epoch list is bound as one array parameter, however long.
        let list = match EpochFilter::new(epochs) {
            EpochFilter::All => None,
            EpochFilter::Nothing => return Ok(StatsReader::new(cells).finish()),
            EpochFilter::Only(list) => Some(list),
        };
        let only = |qb: &mut QueryBuilder<Postgres>| {
            if let Some(list) = &list {
                qb.push(" AND epoch = ANY(")
                    .push_bind(list.clone())
                    .push(")");
            }
        };
        let mut tx = self
            .read
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
        let stats =
            portable::load_stats::<Postgres>(&mut tx, metric_id, version, cells, &only).await?;
        tx.commit().await?;
        Ok(stats)
    }
}

impl Store for PostgresStore {
    fn load_metrics(&self) -> StoreFuture<'_, Vec<MetricSpec>> {
        Box::pin(async move {
            portable::load_metrics::<Postgres>(&mut *self.read.acquire().await?).await
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
            let mut conn = self.commit.acquire().await?;
            portable::close_epoch::<Postgres>(&mut conn, metric_id, epoch, now).await
        })
    }

    fn closed_epochs(&self) -> StoreFuture<'_, Vec<(u32, u64)>> {
        Box::pin(async move {
            portable::closed_epochs::<Postgres>(&mut *self.read.acquire().await?).await
        })
    }

    fn purge_raw(&self, before: i64) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            portable::purge_raw::<Postgres>(&mut *self.write.acquire().await?, before).await
        })
    }

    fn close(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.commit.close().await;
            self.write.close().await;
            self.read.close().await;
            Ok(())
        })
    }
}

/// Proof that this process is the only server of a PostgreSQL schema: a
/// session-level advisory lock keyed by the schema's name, held on a connection
/// of its own until [`ServerLock::release`] or the process ends (PostgreSQL
/// releases it when the connection closes, also after a crash).
///
/// If the connection is lost while the server runs (the database restarted,
/// `idle_session_timeout`, a NAT or firewall dropped it), the lock is gone and
/// a second server could start: a holder must call [`ServerLock::check`]
/// periodically and stop serving when it fails (`ldp serve` does). Between a
/// loss and the next check two servers may overlap; the lock guards against
/// starting two servers by mistake, not against every failure.
#[derive(Debug)]
pub struct ServerLock {
    conn: PgConnection,
    schema: String,
}

impl ServerLock {
    /// Takes the lock of the schema `options` connects to (resolved once, as
    /// [`PostgresStore::open`] does; a `search_path` with no existing schema
    /// is refused); `None` when another session holds it. The connection's
    /// `application_name` is [`SERVER_LOCK_APPLICATION_NAME`].
    pub async fn try_acquire(options: &PgConnectOptions) -> Result<Option<Self>, StoreError> {
        let mut conn = durable(options.clone())
            .application_name(SERVER_LOCK_APPLICATION_NAME)
            .connect()
            .await?;
        let schema = match current_schema(&mut conn, options).await {
            Ok(schema) => schema,
            Err(e) => {
                conn.close().await?;
                return Err(e);
            }
        };
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext($2))")
            .bind(SERVER_LOCK_CLASS)
            .bind(&schema)
            .fetch_one(&mut conn)
            .await?;
        if locked {
            tracing::info!(
                db = %describe(options, Some(&schema)),
                "took the server lock"
            );
            return Ok(Some(Self { conn, schema }));
        }
        // The caller's error names the URL; this names the schema it resolved to.
        tracing::warn!(
            db = %describe(options, Some(&schema)),
            "the server lock of this schema is held by another session"
        );
        conn.close().await?;
        Ok(None)
    }

    /// The schema this lock is keyed by.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// `options` pinned to this lock's schema (`search_path` set to it alone),
    /// so that a store opened with them resolves exactly the schema this lock
    /// guards, even if `options`' own `search_path` now resolves elsewhere; a
    /// store opened with them fails if the schema no longer exists.
    pub fn pinned(&self, options: PgConnectOptions) -> Result<PgConnectOptions, StoreError> {
        pinned(options, &self.schema)
    }

    /// Checks that the lock's session still holds the lock, by asking
    /// `pg_locks` on its connection: a lost connection fails the query, and a
    /// lock released on a live session (`pg_advisory_unlock_all()`, a pooler's
    /// `DISCARD ALL`) is [`StoreError::LockLost`]. An error means the lock may
    /// be gone.
    pub async fn check(&mut self) -> Result<(), StoreError> {
        let held: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = pg_backend_pid() \
             AND locktype = 'advisory' AND granted AND objsubid = 2 \
             AND classid::bigint = $1 AND objid::bigint = (hashtext($2)::bigint & 4294967295))",
        )
        .bind(i64::from(SERVER_LOCK_CLASS))
        .bind(&self.schema)
        .fetch_one(&mut self.conn)
        .await?;
        if held {
            Ok(())
        } else {
            Err(StoreError::LockLost(format!(
                "the session no longer holds the advisory lock of schema {}",
                self.schema
            )))
        }
    }

    /// The lock's own session, for tests that release the lock behind its
    /// back as a pooler's reset would.
    #[doc(hidden)]
    pub fn session(&mut self) -> &mut PgConnection {
        &mut self.conn
    }

    /// Releases the lock by closing its connection.
    pub async fn release(self) -> Result<(), StoreError> {
        self.conn.close().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> PgConnectOptions {
        "postgres://ldp@localhost/ldp".parse().unwrap()
    }

    /// Regression: a schema whose name held a tab or a line break was
    /// "pinned", and every connection then failed with a startup error.
    #[test]
    fn schemas_with_whitespace_other_than_a_space_are_not_pinned() {
        for schema in ["a\tb", "a\nb", "a\rb", "a\u{b}b", "a\u{c}b"] {
            let err = pinned(options(), schema).unwrap_err();
            assert!(matches!(err, StoreError::Schema(_)), "{schema:?}: {err}");
            assert!(err.to_string().contains(&format!("{schema:?}")), "{err}");
        }
        for (schema, sent) in [
            ("a b", r#"-c search_path="a\ b""#),
            ("A\"b", r#"-c search_path="A""b""#),
            ("a\\b", r#"-c search_path="a\\b""#),
        ] {
            let options = pinned(options(), schema).unwrap();
            assert_eq!(options.get_options(), Some(sent), "{schema:?}");
        }
    }
}
