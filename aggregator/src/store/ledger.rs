//! Persistence of the server's privacy ledger ([`PrivacyLedger`]) and of the
//! device budgets published per metric.
//!
//! # Guarantees every implementation keeps
//! - [`LedgerStore::record_release`] checks the data set's budget and records
//!   the release in one transaction that holds the write lock, so two
//!   concurrent releases can never both fit a budget only one of them fits.
//!   A refused release changes nothing.
//! - Recording is idempotent by release id: the same release again changes
//!   nothing and returns the current spend; a different release under a stored
//!   id is refused.
//! - A budget change is refused (and changes nothing) when what the data set
//!   has already spent does not fit the new budget.
//! - The budget arithmetic is [`PrivacyLedger`]'s, never restated in SQL.

use ldp_sdk::budget::BudgetPolicy;

use super::StoreFuture;
use crate::accountant::AccountantError;
use crate::accountant::ledger::{Budget, PrivacyLedger, Release, Spent};

/// The outcome of a ledger write: `Ok` with the data set's spend afterwards (at
/// its budget's delta), or the accountant's refusal.
pub type LedgerOutcome = Result<Spent, AccountantError>;

/// Storage of the privacy ledger; every [`Store`](super::Store) implements it.
pub trait LedgerStore: Send + Sync {
    /// The whole ledger as stored: every budget and every release in order.
    fn load_ledger(&self) -> StoreFuture<'_, PrivacyLedger>;

    /// Sets or changes a data set's budget (refused if the spend exceeds it).
    fn set_dataset_budget<'a>(
        &'a self,
        dataset: &'a str,
        budget: Budget,
        now: i64,
    ) -> StoreFuture<'a, LedgerOutcome>;

    /// Records a central release if it fits its data set's budget.
    fn record_release<'a>(
        &'a self,
        release: &'a Release,
        now: i64,
    ) -> StoreFuture<'a, LedgerOutcome>;

    /// Publishes the device budget policy of a metric name (replacing any earlier one).
    fn set_device_budget<'a>(
        &'a self,
        metric: &'a str,
        policy: BudgetPolicy,
        now: i64,
    ) -> StoreFuture<'a, ()>;

    /// Every published device budget, by metric name, ordered by name.
    fn device_budgets(&self) -> StoreFuture<'_, Vec<(String, BudgetPolicy)>>;
}
