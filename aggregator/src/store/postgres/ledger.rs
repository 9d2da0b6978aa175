//! [`LedgerStore`] on PostgreSQL: the tables of migration `0002_privacy_ledger`.
//!
//! Writes take `LOCK TABLE dataset_budgets, central_releases IN SHARE ROW
//! EXCLUSIVE MODE` first, then load the whole ledger, let [`PrivacyLedger`]
//! decide and write only what it admitted: two writers never interleave, and
//! each loads what the previous one committed. Readers are not blocked.

use ldp_sdk::budget::BudgetPolicy;
use sqlx::{PgConnection, Postgres};

use super::PostgresStore;
use crate::accountant::ledger::{Budget, PrivacyLedger, Release};
use crate::store::ledger::{LedgerOutcome, LedgerStore};
use crate::store::portable;
use crate::store::{StoreError, StoreFuture};

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
        let mut tx = self.write.begin().await?;
        lock(&mut tx).await?;
        let outcome =
            portable::set_dataset_budget::<Postgres>(&mut tx, dataset, budget, now).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn record_release_impl(
        &self,
        release: &Release,
        now: i64,
    ) -> Result<LedgerOutcome, StoreError> {
        let mut tx = self.write.begin().await?;
        lock(&mut tx).await?;
        let outcome = portable::record_release::<Postgres>(&mut tx, release, now).await?;
        tx.commit().await?;
        Ok(outcome)
    }
}

impl LedgerStore for PostgresStore {
    fn load_ledger(&self) -> StoreFuture<'_, PrivacyLedger> {
        Box::pin(async move {
            // One read transaction: budgets and releases from the same snapshot.
            let mut tx = self
                .read
                .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await?;
            let ledger = portable::load_ledger::<Postgres>(&mut tx).await?;
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
            let mut conn = self.write.acquire().await?;
            portable::set_device_budget::<Postgres>(&mut conn, metric, policy, now).await
        })
    }

    fn device_budgets(&self) -> StoreFuture<'_, Vec<(String, BudgetPolicy)>> {
        Box::pin(async move {
            portable::device_budgets::<Postgres>(&mut *self.read.acquire().await?).await
        })
    }
}
