//! [`LedgerStore`] on SQLite: the tables of migration `0002_privacy_ledger`.
//!
//! Writes load the whole ledger inside a `BEGIN IMMEDIATE` transaction, let
//! [`PrivacyLedger`] decide, and write only what it admitted, so the check and
//! the write see the same state. Central releases are rare (a handful per data
//! set), so loading them all per write is cheap.

use ldp_sdk::budget::BudgetPolicy;
use sqlx::Sqlite;

use super::SqliteStore;
use crate::accountant::ledger::{Budget, PrivacyLedger, Release};
use crate::store::ledger::{LedgerOutcome, LedgerStore};
use crate::store::portable;
use crate::store::{StoreError, StoreFuture};

impl SqliteStore {
    async fn set_dataset_budget_impl(
        &self,
        dataset: &str,
        budget: Budget,
        now: i64,
    ) -> Result<LedgerOutcome, StoreError> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        let outcome = portable::set_dataset_budget::<Sqlite>(&mut tx, dataset, budget, now).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn record_release_impl(
        &self,
        release: &Release,
        now: i64,
    ) -> Result<LedgerOutcome, StoreError> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        let outcome = portable::record_release::<Sqlite>(&mut tx, release, now).await?;
        tx.commit().await?;
        Ok(outcome)
    }
}

impl LedgerStore for SqliteStore {
    fn load_ledger(&self) -> StoreFuture<'_, PrivacyLedger> {
        Box::pin(async move {
            // One read transaction: budgets and releases from the same snapshot.
            let mut tx = self.read.begin().await?;
            let ledger = portable::load_ledger::<Sqlite>(&mut tx).await?;
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
            portable::set_device_budget::<Sqlite>(&mut conn, metric, policy, now).await
        })
    }

    fn device_budgets(&self) -> StoreFuture<'_, Vec<(String, BudgetPolicy)>> {
        Box::pin(async move {
            portable::device_budgets::<Sqlite>(&mut *self.read.acquire().await?).await
        })
    }
}
