//! The statements both SQL stores run unchanged, written once, generic over
//! the sqlx [`Database`] and run on a connection or transaction the store
//! opened (and, where it matters, locked) its own way.
//!
//! Placeholders are `$1, $2, ...`, which PostgreSQL and SQLite both accept, or
//! come from [`QueryBuilder`](sqlx::QueryBuilder). What is not here differs
//! between the backends: how a write transaction starts and what it locks, and
//! how a list of epochs is bound.

use ldp_sdk::budget::BudgetPolicy;
use ldp_sdk::estimate::Stats;
use ldp_sdk::metric::MetricSpec;
use sqlx::database::HasStatementCache;
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, QueryBuilder, Type};

use super::ledger::LedgerOutcome;
use super::rows::{
    self, CommitPlan, LedgerReader, MetricPlan, ReleasePlan, StatRows, StatsReader, device_policy,
    parse_spec, rows_per_statement,
};
use super::{BatchDelta, StoreError, from_i64, to_i64};
use crate::accountant::ledger::{Budget, PrivacyLedger, Release};

/// Commits `batches` on `conn`, which the caller holds in a write transaction
/// (and commits): see [`Store::commit_batches`](super::Store::commit_batches).
/// `max_binds` is the backend's limit on bound parameters per statement.
pub(crate) async fn commit_batches<DB>(
    conn: &mut DB::Connection,
    batches: &[BatchDelta],
    now: i64,
    max_binds: usize,
) -> Result<Vec<bool>, StoreError>
where
    DB: Database + HasStatementCache,
    for<'e> &'e mut DB::Connection: Executor<'e, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> f64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'r> (Vec<u8>,): FromRow<'r, DB::Row>,
{
    // The multi-row statements below are not kept as prepared statements
    // (`persistent(false)`): each row count is another statement text, so
    // caching them would only churn the connection's statement cache and keep
    // plans of statements with up to 65,535 parameters.
    let plan = CommitPlan::new(batches);
    let mut fresh = vec![false; batches.len()];
    for chunk in plan.candidates.chunks(rows_per_statement(max_binds, 3)) {
        let stored: Vec<Vec<u8>> = rows::insert_batches::<DB>(batches, chunk, now)
            .build_query_scalar()
            .persistent(false)
            .fetch_all(&mut *conn)
            .await?;
        plan.mark(&stored, &mut fresh)?;
    }
    let stats = StatRows::merge(batches, &fresh)?;
    for chunk in stats.totals.chunks(rows_per_statement(max_binds, 6)) {
        rows::upsert_totals::<DB>(chunk)
            .build()
            .persistent(false)
            .execute(&mut *conn)
            .await?;
    }
    for chunk in stats.cells.chunks(rows_per_statement(max_binds, 5)) {
        rows::upsert_cells::<DB>(chunk)
            .build()
            .persistent(false)
            .execute(&mut *conn)
            .await?;
    }
    let raw = rows::raw_rows(batches, &fresh);
    for chunk in raw.chunks(rows_per_statement(max_binds, 3)) {
        rows::insert_raw::<DB>(chunk, now)
            .build()
            .persistent(false)
            .execute(&mut *conn)
            .await?;
    }
    Ok(fresh)
}

/// Every stored metric version, ordered by (metric_id, version).
pub(crate) async fn load_metrics<DB>(
    conn: &mut DB::Connection,
) -> Result<Vec<MetricSpec>, StoreError>
where
    DB: Database,
    for<'e> &'e mut DB::Connection: Executor<'e, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'r> (String,): FromRow<'r, DB::Row>,
{
    let rows: Vec<String> =
        sqlx::query_scalar("SELECT spec FROM metrics ORDER BY metric_id, version")
            .fetch_all(&mut *conn)
            .await?;
    rows.iter().map(|json| parse_spec(json)).collect()
}

/// [`Store::create_metric`](super::Store::create_metric) on `conn`, which the
/// caller holds in a write transaction that locks out other metric writers
/// (and commits).
pub(crate) async fn create_metric<DB>(
    conn: &mut DB::Connection,
    spec: MetricSpec,
    now: i64,
) -> Result<(MetricSpec, bool), StoreError>
where
    DB: Database,
    for<'e> &'e mut DB::Connection: Executor<'e, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'r> (i64, i64, String): FromRow<'r, DB::Row>,
    for<'r> (i64,): FromRow<'r, DB::Row>,
{
    let latest: Option<(i64, i64, String)> = sqlx::query_as(
        "SELECT metric_id, version, spec FROM metrics WHERE name = $1 \
         ORDER BY version DESC LIMIT 1",
    )
    .bind(spec.name.clone())
    .fetch_optional(&mut *conn)
    .await?;
    let next_id: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(metric_id), 0) + 1 FROM metrics")
        .fetch_one(&mut *conn)
        .await?;
    let (spec, json) = match MetricPlan::new(spec, latest, next_id, now)? {
        MetricPlan::Existing(existing) => return Ok((existing, false)),
        MetricPlan::Insert { spec, json } => (spec, json),
    };
    sqlx::query(
        "INSERT INTO metrics (metric_id, version, name, spec, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(i64::from(spec.metric_id))
    .bind(i64::from(spec.version))
    .bind(spec.name.clone())
    .bind(json)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok((spec, true))
}

/// [`Store::close_epoch`](super::Store::close_epoch).
pub(crate) async fn close_epoch<DB>(
    conn: &mut DB::Connection,
    metric_id: u32,
    epoch: u64,
    now: i64,
) -> Result<(), StoreError>
where
    DB: Database,
    for<'e> &'e mut DB::Connection: Executor<'e, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    sqlx::query(
        "INSERT INTO closed_epochs (metric_id, epoch, closed_at) VALUES ($1, $2, $3) \
         ON CONFLICT (metric_id, epoch) DO NOTHING",
    )
    .bind(i64::from(metric_id))
    .bind(to_i64(epoch, "epoch")?)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// [`Store::load_stats`](super::Store::load_stats) on `conn`, which the caller
/// holds in a read transaction, so that totals and counters come from one
/// snapshot even when a commit lands between the two queries. `only_epochs`
/// appends the backend's `AND epoch ...` clause, or nothing for every epoch
/// (the two bind a list differently).
pub(crate) async fn load_stats<DB>(
    conn: &mut DB::Connection,
    metric_id: u32,
    version: u32,
    cells: usize,
    only_epochs: &(dyn Fn(&mut QueryBuilder<DB>) + Sync),
) -> Result<(Stats, Vec<u64>), StoreError>
where
    DB: Database,
    for<'e> &'e mut DB::Connection: Executor<'e, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'r> (i64, i64, f64, f64): FromRow<'r, DB::Row>,
    for<'r> (i64, i64): FromRow<'r, DB::Row>,
{
    let filter = |qb: &mut QueryBuilder<DB>| {
        qb.push(" WHERE metric_id = ")
            .push_bind(i64::from(metric_id))
            .push(" AND version = ")
            .push_bind(i64::from(version));
        only_epochs(qb);
    };
    let mut reader = StatsReader::new(cells);
    let mut qb = QueryBuilder::<DB>::new("SELECT epoch, reports, sum, sum_sq FROM totals");
    filter(&mut qb);
    qb.push(" ORDER BY epoch");
    let totals: Vec<(i64, i64, f64, f64)> = qb.build_query_as().fetch_all(&mut *conn).await?;
    for (epoch, reports, sum, sum_sq) in totals {
        reader.add_total(epoch, reports, sum, sum_sq)?;
    }
    let mut qb =
        QueryBuilder::<DB>::new("SELECT cell, CAST(SUM(n) AS BIGINT) AS n FROM cell_counts");
    filter(&mut qb);
    qb.push(" GROUP BY cell");
    let counts: Vec<(i64, i64)> = qb.build_query_as().fetch_all(&mut *conn).await?;
    for (cell, n) in counts {
        reader.set_cell(cell, n)?;
    }
    Ok(reader.finish())
}

/// [`Store::closed_epochs`](super::Store::closed_epochs).
pub(crate) async fn closed_epochs<DB>(
    conn: &mut DB::Connection,
) -> Result<Vec<(u32, u64)>, StoreError>
where
    DB: Database,
    for<'e> &'e mut DB::Connection: Executor<'e, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'r> (i64, i64): FromRow<'r, DB::Row>,
{
    let rows: Vec<(i64, i64)> = sqlx::query_as("SELECT metric_id, epoch FROM closed_epochs")
        .fetch_all(&mut *conn)
        .await?;
    rows.into_iter()
        .map(|(metric_id, epoch)| {
            Ok((from_i64(metric_id, "metric_id")?, from_i64(epoch, "epoch")?))
        })
        .collect()
}

/// [`Store::purge_raw`](super::Store::purge_raw).
pub(crate) async fn purge_raw<DB>(conn: &mut DB::Connection, before: i64) -> Result<u64, StoreError>
where
    DB: Database,
    for<'e> &'e mut DB::Connection: Executor<'e, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    DB::QueryResult: RowsAffected,
{
    let done = sqlx::query("DELETE FROM raw_batches WHERE received_at < $1")
        .bind(before)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected())
}

/// The number of rows a statement changed (sqlx has no common trait for it).
pub(crate) trait RowsAffected {
    /// Rows inserted, updated or deleted.
    fn rows_affected(&self) -> u64;
}

impl RowsAffected for sqlx::sqlite::SqliteQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}

impl RowsAffected for sqlx::postgres::PgQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}

/// Reads every budget and release (in one snapshot when `conn` is in a
/// transaction that gives one).
pub(crate) async fn load_ledger<DB>(conn: &mut DB::Connection) -> Result<PrivacyLedger, StoreError>
where
    DB: Database,
    for<'e> &'e mut DB::Connection: Executor<'e, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'r> (String, f64, f64): FromRow<'r, DB::Row>,
    for<'r> (String,): FromRow<'r, DB::Row>,
{
    let mut reader = LedgerReader::default();
    let budgets: Vec<(String, f64, f64)> =
        sqlx::query_as("SELECT dataset, epsilon, delta FROM dataset_budgets")
            .fetch_all(&mut *conn)
            .await?;
    for (dataset, epsilon, delta) in budgets {
        reader.budget(dataset, epsilon, delta)?;
    }
    let releases: Vec<String> =
        sqlx::query_scalar("SELECT release FROM central_releases ORDER BY seq")
            .fetch_all(&mut *conn)
            .await?;
    for json in &releases {
        reader.release(json)?;
    }
    Ok(reader.finish())
}

/// [`LedgerStore::set_dataset_budget`](super::ledger::LedgerStore::set_dataset_budget)
/// on `conn`, which the caller holds in a write transaction that locks out
/// other ledger writers (and commits; a refusal wrote nothing).
pub(crate) async fn set_dataset_budget<DB>(
    conn: &mut DB::Connection,
    dataset: &str,
    budget: Budget,
    now: i64,
) -> Result<LedgerOutcome, StoreError>
where
    DB: Database,
    for<'e> &'e mut DB::Connection: Executor<'e, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> f64: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'r> (String, f64, f64): FromRow<'r, DB::Row>,
    for<'r> (String,): FromRow<'r, DB::Row>,
{
    let mut ledger = load_ledger::<DB>(&mut *conn).await?;
    if let Err(refused) = ledger.set_budget(dataset, budget) {
        return Ok(Err(refused));
    }
    sqlx::query(
        "INSERT INTO dataset_budgets (dataset, epsilon, delta, updated_at) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (dataset) DO UPDATE SET epsilon = excluded.epsilon, \
         delta = excluded.delta, updated_at = excluded.updated_at",
    )
    .bind(dataset.to_owned())
    .bind(budget.epsilon)
    .bind(budget.delta)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(ledger.spent(dataset, budget.delta))
}

/// [`LedgerStore::record_release`](super::ledger::LedgerStore::record_release)
/// on `conn`, held like [`set_dataset_budget`]'s.
pub(crate) async fn record_release<DB>(
    conn: &mut DB::Connection,
    release: &Release,
    now: i64,
) -> Result<LedgerOutcome, StoreError>
where
    DB: Database,
    for<'e> &'e mut DB::Connection: Executor<'e, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'r> (String, f64, f64): FromRow<'r, DB::Row>,
    for<'r> (String,): FromRow<'r, DB::Row>,
{
    let (json, spent) = match ReleasePlan::new(load_ledger::<DB>(&mut *conn).await?, release)? {
        ReleasePlan::Answer(outcome) => return Ok(outcome),
        ReleasePlan::Insert { json, spent } => (json, spent),
    };
    sqlx::query(
        "INSERT INTO central_releases (release_id, dataset, release, recorded_at) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(release.id.clone())
    .bind(release.dataset.clone())
    .bind(json)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(Ok(spent))
}

/// [`LedgerStore::set_device_budget`](super::ledger::LedgerStore::set_device_budget).
pub(crate) async fn set_device_budget<DB>(
    conn: &mut DB::Connection,
    metric: &str,
    policy: BudgetPolicy,
    now: i64,
) -> Result<(), StoreError>
where
    DB: Database,
    for<'e> &'e mut DB::Connection: Executor<'e, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> f64: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
{
    sqlx::query(
        "INSERT INTO device_budgets \
         (metric, window_epsilon, window_seconds, lifetime_epsilon, updated_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (metric) DO UPDATE SET \
         window_epsilon = excluded.window_epsilon, \
         window_seconds = excluded.window_seconds, \
         lifetime_epsilon = excluded.lifetime_epsilon, updated_at = excluded.updated_at",
    )
    .bind(metric.to_owned())
    .bind(policy.window_epsilon)
    .bind(to_i64(policy.window_seconds, "window_seconds")?)
    .bind(policy.lifetime_epsilon)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// [`LedgerStore::device_budgets`](super::ledger::LedgerStore::device_budgets),
/// ordered by name byte-wise (sorted here: collations differ between backends).
pub(crate) async fn device_budgets<DB>(
    conn: &mut DB::Connection,
) -> Result<Vec<(String, BudgetPolicy)>, StoreError>
where
    DB: Database,
    for<'e> &'e mut DB::Connection: Executor<'e, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'r> (String, f64, i64, f64): FromRow<'r, DB::Row>,
{
    let rows: Vec<(String, f64, i64, f64)> = sqlx::query_as(
        "SELECT metric, window_epsilon, window_seconds, lifetime_epsilon FROM device_budgets",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut budgets = rows
        .into_iter()
        .map(|(metric, window, seconds, lifetime)| {
            Ok((metric, device_policy(window, seconds, lifetime)?))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    budgets.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(budgets)
}
