//! [`LedgerStore`] on SQLite: the tables of migration `0002_privacy_ledger`.
//!
//! Writes load the whole ledger inside a `BEGIN IMMEDIATE` transaction, let
//! [`PrivacyLedger`] decide, and write only what it admitted, so the check and
//! the write see the same state. Central releases are rare (a handful per data
//! set), so loading them all per write is cheap.

use ldp_sdk::budget::BudgetPolicy;
use sqlx::SqliteConnection;

use super::SqliteStore;
use crate::accountant::ledger::{Budget, PrivacyLedger, Release};
use crate::store::ledger::{LedgerOutcome, LedgerStore};
use crate::store::rows::{LedgerReader, ReleasePlan, device_policy};
use crate::store::{StoreError, StoreFuture, to_i64};

/// Reads every budget and release.
async fn load(conn: &mut SqliteConnection) -> Result<PrivacyLedger, StoreError> {
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

impl SqliteStore {
    async fn set_dataset_budget_impl(
        &self,
        dataset: &str,
        budget: Budget,
        now: i64,
    ) -> Result<LedgerOutcome, StoreError> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        let mut ledger = load(&mut tx).await?;
        if let Err(refused) = ledger.set_budget(dataset, budget) {
            return Ok(Err(refused));
        }
        sqlx::query(
            "INSERT INTO dataset_budgets (dataset, epsilon, delta, updated_at) VALUES (?, ?, ?, ?) \
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
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        let (json, spent) = match ReleasePlan::new(load(&mut tx).await?, release)? {
            ReleasePlan::Answer(outcome) => return Ok(outcome),
            ReleasePlan::Insert { json, spent } => (json, spent),
        };
        sqlx::query(
            "INSERT INTO central_releases (release_id, dataset, release, recorded_at) \
             VALUES (?, ?, ?, ?)",
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

impl LedgerStore for SqliteStore {
    fn load_ledger(&self) -> StoreFuture<'_, PrivacyLedger> {
        Box::pin(async move {
            // One read transaction: budgets and releases from the same snapshot.
            let mut tx = self.read.begin().await?;
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
                 VALUES (?, ?, ?, ?, ?) ON CONFLICT (metric) DO UPDATE SET \
                 window_epsilon = excluded.window_epsilon, \
                 window_seconds = excluded.window_seconds, \
                 lifetime_epsilon = excluded.lifetime_epsilon, updated_at = excluded.updated_at",
            )
            .bind(metric)
            .bind(policy.window_epsilon)
            .bind(to_i64(policy.window_seconds, "window_seconds")?)
            .bind(policy.lifetime_epsilon)
            .bind(now)
            .execute(&self.write)
            .await?;
            Ok(())
        })
    }

    fn device_budgets(&self) -> StoreFuture<'_, Vec<(String, BudgetPolicy)>> {
        Box::pin(async move {
            let rows: Vec<(String, f64, i64, f64)> = sqlx::query_as(
                "SELECT metric, window_epsilon, window_seconds, lifetime_epsilon \
                 FROM device_budgets ORDER BY metric",
            )
            .fetch_all(&self.read)
            .await?;
            rows.into_iter()
                .map(|(metric, window, seconds, lifetime)| {
                    Ok((metric, device_policy(window, seconds, lifetime)?))
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::accountant::AccountantError;
    use crate::accountant::rdp::SubsampledGaussian;
    use crate::store::Store;

    fn pure(id: &str, eps: f64) -> Release {
        Release::pure(
            id,
            "adult",
            "laplace_counts",
            eps,
            json!({"scale": 1.0 / eps}),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn refused_release_changes_nothing_and_reopen_keeps_the_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.db");
        let store = SqliteStore::open(&path).await.unwrap();
        let refused = store.record_release(&pure("a", 0.5), 1).await.unwrap();
        assert!(matches!(refused, Err(AccountantError::NoBudget(_))));
        let budget = Budget::new(1.0, 1e-5).unwrap();
        store
            .set_dataset_budget("adult", budget, 1)
            .await
            .unwrap()
            .unwrap();
        store
            .record_release(&pure("a", 0.5), 2)
            .await
            .unwrap()
            .unwrap();
        let mech = SubsampledGaussian::new(20.0, 0.01).unwrap();
        let sgd =
            Release::subsampled_gaussian("sgd", "adult", "dp_sgd", mech, 100, 1e-5, json!({}))
                .unwrap();
        store.record_release(&sgd, 3).await.unwrap().unwrap();
        let before = store.load_ledger().await.unwrap();
        // Too much: refused, nothing written.
        let over = store.record_release(&pure("b", 0.6), 4).await.unwrap();
        assert!(
            matches!(over, Err(AccountantError::BudgetExceeded { .. })),
            "{over:?}"
        );
        // Same id again: idempotent; same id with other parameters: refused.
        store
            .record_release(&pure("a", 0.5), 5)
            .await
            .unwrap()
            .unwrap();
        assert!(
            store
                .record_release(&pure("a", 0.4), 5)
                .await
                .unwrap()
                .is_err()
        );
        // Lowering the budget below the spend: refused.
        let low = Budget::new(0.4, 1e-5).unwrap();
        assert!(
            store
                .set_dataset_budget("adult", low, 6)
                .await
                .unwrap()
                .is_err()
        );
        assert_eq!(store.load_ledger().await.unwrap(), before);
        store.close().await.unwrap();

        let reopened = SqliteStore::open(&path).await.unwrap();
        let after = reopened.load_ledger().await.unwrap();
        assert_eq!(after, before, "the ledger changed across a reopen");
        assert_eq!(after.releases("adult").count(), 2);
        assert_eq!(after.budget("adult"), Some(budget));
    }

    /// Concurrent releases racing for one budget: exactly as many are admitted
    /// as a sequential in-memory ledger admits, and the spend stays within it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_releases_never_exceed_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(SqliteStore::open(&dir.path().join("c.db")).await.unwrap());
        let budget = Budget::new(1.0, 1e-5).unwrap();
        store
            .set_dataset_budget("adult", budget, 1)
            .await
            .unwrap()
            .unwrap();
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let store = std::sync::Arc::clone(&store);
                tokio::spawn(async move {
                    store
                        .record_release(&pure(&format!("r{i}"), 0.3), 2)
                        .await
                        .unwrap()
                        .is_ok()
                })
            })
            .collect();
        let mut admitted = 0;
        for t in tasks {
            admitted += usize::from(t.await.unwrap());
        }
        let mut sequential = PrivacyLedger::default();
        sequential.set_budget("adult", budget).unwrap();
        let expected = (0..16)
            .take_while(|i| sequential.record(pure(&format!("r{i}"), 0.3)).is_ok())
            .count();
        assert!((3..16).contains(&expected));
        assert_eq!(admitted, expected);
        let ledger = store.load_ledger().await.unwrap();
        assert_eq!(ledger.releases("adult").count(), expected);
        assert!(ledger.spent("adult", 1e-5).unwrap().epsilon.unwrap() <= 1.0);
    }

    #[tokio::test]
    async fn device_budgets_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("d.db")).await.unwrap();
        let p = BudgetPolicy::new(2.0, 86_400, 20.0).unwrap();
        store.set_device_budget("color", p, 1).await.unwrap();
        let q = BudgetPolicy::new(1.0, 3_600, 10.0).unwrap();
        store.set_device_budget("color", q, 2).await.unwrap();
        assert_eq!(
            store.device_budgets().await.unwrap(),
            vec![("color".to_owned(), q)]
        );
    }
}
