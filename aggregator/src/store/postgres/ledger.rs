//! [`LedgerStore`] on PostgreSQL: the tables of migration `0002_privacy_ledger`.
//!
//! Writes take `LOCK TABLE dataset_budgets, central_releases IN SHARE ROW
//! EXCLUSIVE MODE` first, then load the whole ledger, let [`PrivacyLedger`]
//! decide and write only what it admitted: two writers never interleave, and
//! each loads what the previous one committed. Readers are not blocked.

use ldp_sdk::budget::BudgetPolicy;
use sqlx::PgConnection;

use super::PostgresStore;
use crate::accountant::ledger::{Budget, PrivacyLedger, Release};
use crate::store::ledger::{LedgerOutcome, LedgerStore};
use crate::store::rows::{LedgerReader, ReleasePlan, device_policy};
use crate::store::{StoreError, StoreFuture, to_i64};

/// Reads every budget and release.
async fn load(conn: &mut PgConnection) -> Result<PrivacyLedger, StoreError> {
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

/// Serializes ledger writers (see the module docs).
async fn lock(conn: &mut PgConnection) -> Result<(), StoreError> {
    sqlx::query("LOCK TABLE dataset_budgets, central_releases IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl PostgresStore {
    async fn set_dataset_budget_impl(
        &self,
        dataset: &str,
        budget: Budget,
        now: i64,
    ) -> Result<LedgerOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        lock(&mut tx).await?;
        let mut ledger = load(&mut tx).await?;
        if let Err(refused) = ledger.set_budget(dataset, budget) {
            return Ok(Err(refused));
        }
        sqlx::query(
            "INSERT INTO dataset_budgets (dataset, epsilon, delta, updated_at) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (dataset) DO UPDATE SET epsilon = excluded.epsilon, \
             delta = excluded.delta, updated_at = excluded.updated_at",
        )
        .bind(dataset)
        .bind(budget.epsilon)
        .bind(budget.delta)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ledger.spent(dataset, budget.delta))
    }

    async fn record_release_impl(
        &self,
        release: &Release,
        now: i64,
    ) -> Result<LedgerOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        lock(&mut tx).await?;
        let (json, spent) = match ReleasePlan::new(load(&mut tx).await?, release)? {
            ReleasePlan::Answer(outcome) => return Ok(outcome),
            ReleasePlan::Insert { json, spent } => (json, spent),
        };
        sqlx::query(
            "INSERT INTO central_releases (release_id, dataset, release, recorded_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(&release.id)
        .bind(&release.dataset)
        .bind(json)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Ok(spent))
    }
}

impl LedgerStore for PostgresStore {
    fn load_ledger(&self) -> StoreFuture<'_, PrivacyLedger> {
        Box::pin(async move {
            // One snapshot: budgets and releases as of the same instant.
            let mut tx = self
                .pool
                .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await?;
            let ledger = load(&mut tx).await?;
            tx.commit().await?;
            Ok(ledger)
        })
    }

    fn set_dataset_budget<'a>(
        &'a self,
        dataset: &'a str,
        budget: Budget,
        now: i64,
    ) -> StoreFuture<'a, LedgerOutcome> {
        Box::pin(self.set_dataset_budget_impl(dataset, budget, now))
    }

    fn record_release<'a>(
        &'a self,
        release: &'a Release,
        now: i64,
    ) -> StoreFuture<'a, LedgerOutcome> {
        Box::pin(self.record_release_impl(release, now))
    }

    fn set_device_budget<'a>(
        &'a self,
        metric: &'a str,
        policy: BudgetPolicy,
        now: i64,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO device_budgets \
                 (metric, window_epsilon, window_seconds, lifetime_epsilon, updated_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (metric) DO UPDATE SET \
                 window_epsilon = excluded.window_epsilon, \
                 window_seconds = excluded.window_seconds, \
                 lifetime_epsilon = excluded.lifetime_epsilon, updated_at = excluded.updated_at",
            )
            .bind(metric)
            .bind(policy.window_epsilon)
            .bind(to_i64(policy.window_seconds, "window_seconds")?)
            .bind(policy.lifetime_epsilon)
            .bind(now)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
    }

    fn device_budgets(&self) -> StoreFuture<'_, Vec<(String, BudgetPolicy)>> {
        Box::pin(async move {
            let rows: Vec<(String, f64, i64, f64)> = sqlx::query_as(
                "SELECT metric, window_epsilon, window_seconds, lifetime_epsilon \
                 FROM device_budgets ORDER BY metric COLLATE \"C\"",
            )
            .fetch_all(&self.pool)
            .await?;
            rows.into_iter()
                .map(|(metric, window, seconds, lifetime)| {
                    Ok((metric, device_policy(window, seconds, lifetime)?))
                })
                .collect()
        })
    }
}
