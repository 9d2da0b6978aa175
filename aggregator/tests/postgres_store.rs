//! The [`Store`] contract, run with the same test bodies against SQLite and
//! against a real PostgreSQL, so the two implementations are pinned to one
//! behaviour: metrics versioned and idempotent, a batch id counted once (also
//! when repeated inside one commit group), statistics pooled and per epoch,
//! statements larger than PostgreSQL's 65,535 bound parameters, closed epochs,
//! raw-report purge, the privacy ledger (refusals change nothing, idempotent
//! by release id, concurrent releases never both spend a budget only one
//! fits), commit groups racing over shared batch ids, opening read-only
//! without migrating (and refusing another schema version), the one-server
//! lock and its loss, the schema pinned at open, Admin writes waiting on a
//! lock not holding up group commits, Admin names with control characters
//! refused alike, a commit cut off by a restart answered as retryable (and
//! the retry counted once), and a server over gRPC on PostgreSQL.
//!
//! PostgreSQL comes from `LDP_TEST_POSTGRES_URL` (a database the tests may
//! create schemas in; `.ci/run` starts a throwaway cluster and sets it). Each
//! test works in a schema of its own, dropped afterwards. Without the variable
//! the PostgreSQL half is skipped with a message on stderr naming the
//! PostgreSQL-only tests ([`PG_ONLY_TESTS`]) that then check nothing, unless
//! `LDP_REQUIRE_POSTGRES=1`, which makes a missing URL a failure.

use std::io::Write;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use ldp_aggregator::accountant::AccountantError;
use ldp_aggregator::accountant::ledger::{Budget, PrivacyLedger, Release};
use ldp_aggregator::cli::connect::ConnectArgs;
use ldp_aggregator::cli::privacy_report;
use ldp_aggregator::server::{Config, RunningServer, Server};
use ldp_aggregator::service::auth::Token;
use ldp_aggregator::store::postgres::{PostgresStore, ServerLock};
use ldp_aggregator::store::sqlite::SqliteStore;
use ldp_aggregator::store::{BatchDelta, Database, Delta, StatsKey, Store, StoreError};
use ldp_proto::v1 as pb;
use ldp_sdk::budget::BudgetPolicy;
use ldp_sdk::mechanism::{Mechanism, MechanismSpec};
use ldp_sdk::metric::MetricSpec;
use ldp_sdk::wire::{self, ReportHeader};
use ldp_sdk::{Epsilon, LdpRng};
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

// ---------------------------------------------------------------- backends

/// The tests that run only on PostgreSQL, and so check nothing without it.
const PG_ONLY_TESTS: &[&str] = &[
    "one_server_lock_per_schema",
    "server_lock_check_fails_once_its_backend_is_gone",
    "serve_stops_when_its_lock_is_lost",
    "writes_are_read_committed_whatever_the_session_default",
    "admin_writes_waiting_on_a_lock_do_not_hold_up_commits",
    "privacy_report_needs_only_select",
    "server_over_grpc_on_postgres",
    "the_schema_is_pinned_at_open",
    "the_store_serves_the_schema_its_lock_names",
    "server_lock_check_fails_once_its_session_releases_it",
    "a_commit_cut_off_by_a_restart_is_retryable_and_counts_once",
];

/// A PostgreSQL schema of its own for one test, dropped when this is dropped
/// (also when the test fails).
struct PgSchema {
    admin: PgConnectOptions,
    name: String,
    /// Connects with the schema first in `search_path`.
    options: PgConnectOptions,
    /// The same as a URL, for `ldp --db`.
    url: String,
}

impl PgSchema {
    /// `None` (after saying so) when no PostgreSQL is configured; panics when
    /// one is required (`LDP_REQUIRE_POSTGRES=1`) but missing.
    async fn create() -> Option<Self> {
        let Ok(url) = std::env::var("LDP_TEST_POSTGRES_URL") else {
            assert!(
                std::env::var("LDP_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "LDP_REQUIRE_POSTGRES=1 but LDP_TEST_POSTGRES_URL is not set"
            );
            // Once per run, past the test harness's capture of `eprintln!`.
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "postgres_store: skipping the PostgreSQL half (LDP_TEST_POSTGRES_URL is not \
                     set); running the SQLite half only. These PostgreSQL-only tests pass \
                     without checking anything: {}",
                    PG_ONLY_TESTS.join(", ")
                );
            });
            return None;
        };
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "ldp_test_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let admin = PgConnectOptions::from_str(&url).expect("LDP_TEST_POSTGRES_URL is a URL");
        let mut conn = admin
            .connect()
            .await
            .expect("connecting to LDP_TEST_POSTGRES_URL");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        let options = admin.clone().options([("search_path", name.as_str())]);
        let sep = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{sep}options=-c%20search_path%3D{name}");
        Some(Self {
            admin,
            name,
            options,
            url,
        })
    }
}

impl PgSchema {
    /// A schema name `<this schema>_<suffix>` (not created) and connect options
    /// whose `search_path` puts it in front of this schema: they resolve to
    /// this schema until that one is created.
    fn behind(&self, suffix: &str) -> (String, PgConnectOptions) {
        let front = format!("{}_{suffix}", self.name);
        let path = format!("{front}, {}", self.name);
        let options = self.admin.clone().options([("search_path", path.as_str())]);
        (front, options)
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop runs inside the test's runtime, which cannot block on itself.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let mut conn = admin.connect().await?;
                // A test that failed may leave a transaction open in a pool
                // this thread waits for: give up rather than hang.
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "SET lock_timeout = '10s'; DROP SCHEMA {name} CASCADE"
                )))
                .execute(&mut conn)
                .await?;
                conn.close().await
            })
            .map_err(std::io::Error::other)
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test schema {}: {dropped:?}", self.name);
        }
    }
}

/// One store under test and what keeps its database alive.
struct Backend {
    name: &'static str,
    store: Arc<dyn Store>,
    reopen: Database,
    _sqlite_dir: Option<tempfile::TempDir>,
    _pg_schema: Option<PgSchema>,
}

/// A fresh SQLite store, and a fresh PostgreSQL one when configured.
async fn backends() -> Vec<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("contract.db");
    let mut all = vec![Backend {
        name: "sqlite",
        store: Arc::new(SqliteStore::open(&path).await.unwrap()),
        reopen: Database::Sqlite(path),
        _sqlite_dir: Some(dir),
        _pg_schema: None,
    }];
    if let Some(schema) = PgSchema::create().await {
        all.push(Backend {
            name: "postgres",
            store: Arc::new(PostgresStore::open(schema.options.clone()).await.unwrap()),
            reopen: Database::Postgres(Box::new(schema.options.clone())),
            _sqlite_dir: None,
            _pg_schema: Some(schema),
        });
    }
    all
}

// ---------------------------------------------------------------- helpers

fn key(epoch: u64) -> StatsKey {
    StatsKey {
        metric_id: 1,
        version: 1,
        epoch,
    }
}

fn batch(id: &[u8], epoch: u64, counts: &[u64]) -> BatchDelta {
    let reports = counts.iter().sum::<u64>();
    BatchDelta {
        batch_id: id.to_vec(),
        reports: u32::try_from(reports).unwrap(),
        deltas: vec![(
            key(epoch),
            Delta {
                reports,
                sum: reports as f64,
                sum_sq: 2.0 * reports as f64,
                cells: (0..)
                    .zip(counts.iter().copied())
                    .filter(|(_, n)| *n > 0)
                    .collect(),
            },
        )],
        raw: None,
    }
}

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

// ---------------------------------------------------------------- contract bodies

async fn metrics_are_versioned_and_idempotent(b: &Backend) {
    let store = &b.store;
    let eps = Epsilon::new(1.0).unwrap();
    let a = MetricSpec::new("a", eps, MechanismSpec::Grr { domain_size: 3 });
    let (a1, created) = store.create_metric(a.clone(), 10).await.unwrap();
    assert!(created, "{}", b.name);
    assert_eq!(
        (a1.metric_id, a1.version, a1.created_at),
        (1, 1, 10),
        "{}",
        b.name
    );
    let (same, created) = store.create_metric(a, 11).await.unwrap();
    assert!(!created, "{}: identical spec created a version", b.name);
    assert_eq!(same, a1, "{}", b.name);
    let a2 = MetricSpec::new("a", eps, MechanismSpec::Grr { domain_size: 4 });
    let (a2, created) = store.create_metric(a2, 12).await.unwrap();
    assert!(created, "{}", b.name);
    assert_eq!((a2.metric_id, a2.version), (1, 2), "{}", b.name);
    let other = MetricSpec::new("b", eps, MechanismSpec::Binary);
    let (other, _) = store.create_metric(other, 13).await.unwrap();
    assert_eq!((other.metric_id, other.version), (2, 1), "{}", b.name);
    let stored = store.load_metrics().await.unwrap();
    assert_eq!(stored, vec![a1, a2, other], "{}", b.name);
}

async fn batches_count_once(b: &Backend) {
    let store = &b.store;
    let group = [
        batch(b"a", 0, &[1, 2]),
        batch(b"a", 0, &[1, 2]), // repeated inside the group
        batch(b"b", 1, &[0, 5]),
    ];
    assert_eq!(
        store.commit_batches(&group, 1).await.unwrap(),
        [true, false, true],
        "{}",
        b.name
    );
    let again = [
        batch(b"b", 1, &[0, 5]), // stored by the earlier group
        batch(b"c", 1, &[3, 0]),
        batch(b"c", 1, &[3, 0]),
    ];
    assert_eq!(
        store.commit_batches(&again, 2).await.unwrap(),
        [false, true, false],
        "{}",
        b.name
    );
    let (all, epochs) = store.load_stats(1, 1, None, 2).await.unwrap();
    assert_eq!(
        (all.reports, all.counts.clone(), epochs),
        (11, vec![4, 7], vec![0, 1]),
        "{}",
        b.name
    );
    assert_eq!((all.sum, all.sum_sq), (11.0, 22.0), "{}", b.name);
    let (one, epochs) = store.load_stats(1, 1, Some(&[1]), 2).await.unwrap();
    assert_eq!(
        (one.reports, one.counts, epochs),
        (8, vec![3, 5], vec![1]),
        "{}",
        b.name
    );
    // Any number of epochs (regression: more than 32766 failed on SQLite's
    // bind limit); epochs that cannot be stored match nothing; an unknown
    // version is empty.
    let mut many: Vec<u64> = (1..70_000).collect();
    many.extend([1, u64::MAX, i64::MAX as u64 + 1]);
    let (some, epochs) = store.load_stats(1, 1, Some(&many), 2).await.unwrap();
    assert_eq!((some.reports, epochs), (8, vec![1]), "{}", b.name);
    let (none, epochs) = store.load_stats(1, 1, Some(&[u64::MAX]), 2).await.unwrap();
    assert_eq!((none.reports, epochs), (0, vec![]), "{}", b.name);
    let (other, _) = store.load_stats(1, 2, None, 2).await.unwrap();
    assert_eq!(other.reports, 0, "{}", b.name);
    // A stored counter outside the metric's cells is corruption, not a panic.
    assert!(store.load_stats(1, 1, None, 1).await.is_err(), "{}", b.name);
}

/// More rows than one statement may bind on PostgreSQL (65,535 parameters):
/// 30,000 batch ids (3 parameters each, with repeats) and 20,000 cells (5 each)
/// and 12,000 totals (6 each) in one commit.
async fn large_groups_fit_the_bind_limit(b: &Backend) {
    let store = &b.store;
    let mut group: Vec<BatchDelta> = (0u32..30_000)
        .map(|i| batch(&i.to_be_bytes(), u64::from(i % 12_000), &[1]))
        .collect();
    group.push(batch(&7u32.to_be_bytes(), 7, &[1]));
    let mut wide = batch(b"wide", 0, &[]);
    wide.deltas[0].1 = Delta {
        reports: 1,
        cells: (0..20_000).map(|c| (c, 1)).collect(),
        ..Delta::default()
    };
    group.push(wide);
    let fresh = store.commit_batches(&group, 1).await.unwrap();
    assert_eq!(fresh.iter().filter(|f| **f).count(), 30_001, "{}", b.name);
    assert!(!fresh[30_000], "{}: the repeated id was counted", b.name);
    let (stats, epochs) = store.load_stats(1, 1, None, 20_000).await.unwrap();
    assert_eq!(stats.reports, 30_001, "{}", b.name);
    assert_eq!(epochs.len(), 12_000, "{}", b.name);
    assert_eq!(stats.counts[0], 30_001, "{}", b.name);
    assert!(stats.counts[1..].iter().all(|&n| n == 1), "{}", b.name);
}

async fn closed_epochs_and_raw_purge(b: &Backend) {
    let store = &b.store;
    store.close_epoch(3, 7, 1).await.unwrap();
    store.close_epoch(3, 7, 2).await.unwrap();
    store.close_epoch(4, 0, 2).await.unwrap();
    let mut closed = store.closed_epochs().await.unwrap();
    closed.sort_unstable();
    assert_eq!(closed, vec![(3, 7), (4, 0)], "{}", b.name);
    assert!(
        store.close_epoch(3, u64::MAX, 3).await.is_err(),
        "{}",
        b.name
    );

    let mut old = batch(b"old", 0, &[1, 0]);
    old.raw = Some(vec![1, 2, 3]);
    let mut new = batch(b"new", 0, &[0, 1]);
    new.raw = Some(vec![4]);
    store.commit_batches(&[old.clone()], 100).await.unwrap();
    store.commit_batches(&[new, old], 200).await.unwrap();
    assert_eq!(store.purge_raw(150).await.unwrap(), 1, "{}", b.name);
    assert_eq!(store.purge_raw(150).await.unwrap(), 0, "{}", b.name);
    assert_eq!(store.purge_raw(201).await.unwrap(), 1, "{}", b.name);
    // Purging raw reports never touches the statistics.
    let (stats, _) = store.load_stats(1, 1, None, 2).await.unwrap();
    assert_eq!(stats.counts, vec![1, 1], "{}", b.name);

    // What was committed survives closing and reopening.
    store.close().await.unwrap();
    let reopened = b.reopen.open().await.unwrap();
    let mut closed = reopened.closed_epochs().await.unwrap();
    closed.sort_unstable();
    assert_eq!(closed, vec![(3, 7), (4, 0)], "{}", b.name);
    assert_eq!(
        reopened.load_stats(1, 1, None, 2).await.unwrap().0.reports,
        2
    );
    reopened.close().await.unwrap();
}

async fn ledger_refuses_and_is_idempotent(b: &Backend) {
    let store = &b.store;
    let refused = store.record_release(&pure("a", 0.5), 1).await.unwrap();
    assert!(
        matches!(refused, Err(AccountantError::NoBudget(_))),
        "{}",
        b.name
    );
    let budget = Budget::new(1.0, 1e-5).unwrap();
    store
        .set_dataset_budget("adult", budget, 1)
        .await
        .unwrap()
        .unwrap();
    let spent = store
        .record_release(&pure("a", 0.5), 2)
        .await
        .unwrap()
        .unwrap();
    let before = store.load_ledger().await.unwrap();
    let over = store.record_release(&pure("b", 0.6), 3).await.unwrap();
    assert!(
        matches!(over, Err(AccountantError::BudgetExceeded { .. })),
        "{}: {over:?}",
        b.name
    );
    // The same release again: the same spend, nothing written.
    let again = store
        .record_release(&pure("a", 0.5), 4)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again, spent, "{}", b.name);
    // Another release under a stored id: refused.
    assert!(
        store
            .record_release(&pure("a", 0.4), 5)
            .await
            .unwrap()
            .is_err(),
        "{}",
        b.name
    );
    // A budget below the spend: refused.
    let low = Budget::new(0.4, 1e-5).unwrap();
    assert!(
        store
            .set_dataset_budget("adult", low, 6)
            .await
            .unwrap()
            .is_err(),
        "{}",
        b.name
    );
    assert_eq!(store.load_ledger().await.unwrap(), before, "{}", b.name);
    assert_eq!(before.releases("adult").count(), 1, "{}", b.name);
    assert_eq!(before.budget("adult"), Some(budget), "{}", b.name);
    let reopened = b.reopen.open().await.unwrap();
    assert_eq!(
        reopened.load_ledger().await.unwrap(),
        before,
        "{}: reopen",
        b.name
    );
    reopened.close().await.unwrap();

    let p = BudgetPolicy::new(2.0, 86_400, 20.0).unwrap();
    let q = BudgetPolicy::new(1.0, 3_600, 10.0).unwrap();
    store.set_device_budget("color", p, 1).await.unwrap();
    store.set_device_budget("Zeta", p, 1).await.unwrap();
    store.set_device_budget("color", q, 2).await.unwrap();
    assert_eq!(
        store.device_budgets().await.unwrap(),
        vec![("Zeta".to_owned(), p), ("color".to_owned(), q)],
        "{}: device budgets are ordered by name, byte-wise",
        b.name
    );
}

/// Releases racing for one budget: exactly as many are admitted as a
/// sequential in-memory ledger admits. Run with a pair where only one fits,
/// and with 16 where three fit.
async fn concurrent_releases_never_exceed_the_budget(b: &Backend, tasks: usize, eps: f64) {
    let budget = Budget::new(1.0, 1e-5).unwrap();
    b.store
        .set_dataset_budget("adult", budget, 1)
        .await
        .unwrap()
        .unwrap();
    let handles: Vec<_> = (0..tasks)
        .map(|i| {
            let store = Arc::clone(&b.store);
            tokio::spawn(async move {
                store
                    .record_release(&pure(&format!("r{tasks}-{i}"), eps), 2)
                    .await
                    .unwrap()
                    .is_ok()
            })
        })
        .collect();
    let mut admitted = 0;
    for h in handles {
        admitted += usize::from(h.await.unwrap());
    }
    let mut sequential = PrivacyLedger::default();
    sequential.set_budget("adult", budget).unwrap();
    let expected = (0..tasks)
        .take_while(|i| sequential.record(pure(&format!("s{i}"), eps)).is_ok())
        .count();
    assert!(
        expected < tasks,
        "the test needs a budget that refuses some"
    );
    assert_eq!(admitted, expected, "{}", b.name);
    let ledger = b.store.load_ledger().await.unwrap();
    assert_eq!(ledger.releases("adult").count(), expected, "{}", b.name);
    assert!(
        ledger.spent("adult", 1e-5).unwrap().epsilon.unwrap() <= 1.0,
        "{}",
        b.name
    );
}

/// Commit groups racing over shared batch ids: task `i` commits the ids `i`
/// and `i + 1` (mod `n`), so every id is in two concurrent groups. Every id
/// must be fresh in exactly one of them and counted once in the statistics
/// (on PostgreSQL the ids are inserted in a fixed order, so the groups wait
/// for each other rather than deadlock).
async fn overlapping_groups_count_each_batch_once(b: &Backend, rounds: u8) {
    const N: u8 = 8;
    // A PostgreSQL store commits one group at a time (its writer task has one
    // connection), so the groups race through several stores on the schema,
    // as two servers would; SQLite has one writer per file anyway.
    let mut stores = vec![Arc::clone(&b.store)];
    if b.name == "postgres" {
        for _ in 1..4 {
            stores.push(b.reopen.open().await.unwrap());
        }
    }
    for round in 0..rounds {
        let id = |i: u8| vec![round, i % N];
        let handles: Vec<_> = (0..N)
            .map(|i| {
                let store = Arc::clone(&stores[usize::from(i) % stores.len()]);
                let group = [batch(&id(i), 0, &[1, 0]), batch(&id(i + 1), 0, &[0, 1])];
                tokio::spawn(async move {
                    let fresh = store.commit_batches(&group, 1).await.unwrap();
                    group
                        .into_iter()
                        .zip(fresh)
                        .map(|(batch, fresh)| (batch.batch_id, fresh))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut fresh_count = std::collections::BTreeMap::new();
        for h in handles {
            for (batch_id, fresh) in h.await.unwrap() {
                *fresh_count.entry(batch_id).or_insert(0) += usize::from(fresh);
            }
        }
        assert_eq!(fresh_count.len(), usize::from(N), "{}", b.name);
        for (batch_id, n) in &fresh_count {
            assert_eq!(*n, 1, "{}: batch {batch_id:?} fresh {n} times", b.name);
        }
    }
    for store in &stores[1..] {
        store.close().await.unwrap();
    }
    // Each id was committed once with one report, to cell 0 or cell 1
    // depending on which group won it; together every batch counts once.
    let (stats, epochs) = b.store.load_stats(1, 1, None, 2).await.unwrap();
    let batches = u64::from(N) * u64::from(rounds);
    assert_eq!(stats.reports, batches, "{}", b.name);
    assert_eq!(stats.counts.iter().sum::<u64>(), batches, "{}", b.name);
    assert_eq!(epochs, vec![0], "{}", b.name);
}

/// Opening read-only: the report's reads work, writes fail, and a database
/// at other migrations than this binary's (a newer one, or none) is refused.
async fn read_only_open_checks_the_schema(b: &Backend) {
    let eps = Epsilon::new(1.0).unwrap();
    let spec = MetricSpec::new("a", eps, MechanismSpec::Binary);
    b.store.create_metric(spec, 1).await.unwrap();
    b.store.close().await.unwrap();
    let reader = b.reopen.open_read_only().await.unwrap();
    assert_eq!(reader.load_metrics().await.unwrap().len(), 1, "{}", b.name);
    assert!(reader.close_epoch(1, 0, 2).await.is_err(), "{}", b.name);
    assert!(
        reader.closed_epochs().await.unwrap().is_empty(),
        "{}",
        b.name
    );
    reader.close().await.unwrap();

    // A newer binary's migration applied: refused, naming the versions.
    run_sql(
        b,
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
         execution_time) SELECT 9999, 'from the future', success, checksum, 0 \
         FROM _sqlx_migrations WHERE version = 1",
    )
    .await;
    let err = b.reopen.open_read_only().await.unwrap_err();
    assert!(
        matches!(err, StoreError::Schema(_)) && err.to_string().contains("9999"),
        "{}: {err}",
        b.name
    );
    // No ldp schema at all.
    run_sql(b, "DROP TABLE _sqlx_migrations").await;
    let err = b.reopen.open_read_only().await.unwrap_err();
    assert!(matches!(err, StoreError::Schema(_)), "{}: {err}", b.name);
}

/// Runs `sql` on the backend's database outside the store.
async fn run_sql(b: &Backend, sql: &'static str) {
    match &b.reopen {
        Database::Sqlite(path) => {
            let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
            let mut conn = options.connect().await.unwrap();
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        }
        Database::Postgres(options) => {
            let mut conn = options.connect().await.unwrap();
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        }
    }
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn metrics_contract() {
    for b in backends().await {
        metrics_are_versioned_and_idempotent(&b).await;
        b.store.close().await.unwrap();
    }
}

#[tokio::test]
async fn batch_contract() {
    for b in backends().await {
        batches_count_once(&b).await;
        b.store.close().await.unwrap();
    }
}

#[tokio::test]
async fn bind_limit_contract() {
    for b in backends().await {
        large_groups_fit_the_bind_limit(&b).await;
        b.store.close().await.unwrap();
    }
}

#[tokio::test]
async fn epochs_and_raw_contract() {
    for b in backends().await {
        closed_epochs_and_raw_purge(&b).await;
        b.store.close().await.unwrap();
    }
}

#[tokio::test]
async fn ledger_contract() {
    for b in backends().await {
        ledger_refuses_and_is_idempotent(&b).await;
        b.store.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_concurrent_releases_only_one_fits() {
    for b in backends().await {
        concurrent_releases_never_exceed_the_budget(&b, 2, 0.6).await;
        b.store.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_releases_fit_the_budget() {
    for b in backends().await {
        concurrent_releases_never_exceed_the_budget(&b, 16, 0.3).await;
        b.store.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_commit_groups_race() {
    for b in backends().await {
        overlapping_groups_count_each_batch_once(&b, 4).await;
        b.store.close().await.unwrap();
    }
}

#[tokio::test]
async fn read_only_open_contract() {
    for b in backends().await {
        read_only_open_checks_the_schema(&b).await;
    }
}

/// Regression: a NUL in an Admin-supplied data set name or release id was
/// stored by SQLite but failed on PostgreSQL's `TEXT` with INTERNAL. Both
/// servers answer INVALID_ARGUMENT and store nothing.
#[tokio::test]
async fn admin_names_with_control_characters_are_invalid_on_both_stores() {
    for b in backends().await {
        b.store.close().await.unwrap();
        let token = Token::generate();
        let server = Server::start(Config::new(
            "127.0.0.1:0".parse().unwrap(),
            b.reopen.clone(),
            &token,
        ))
        .await
        .unwrap();
        let conn = connect_args(&server, &token);
        let mut admin = conn.admin().await.unwrap();
        let budget = |dataset: &str| pb::SetDatasetBudgetRequest {
            dataset: dataset.into(),
            epsilon: 1.0,
            delta: 1e-5,
        };
        let release = |id: &str, dataset: &str| pb::RecordReleaseRequest {
            id: id.into(),
            dataset: dataset.into(),
            mechanism: "laplace_counts".into(),
            accounting: Some(pb::record_release_request::Accounting::Pure(
                pb::PureRelease { epsilon: 0.5 },
            )),
            ..Default::default()
        };
        for dataset in ["a\0b", "tab\t", &"d".repeat(257)] {
            let status = admin.set_dataset_budget(budget(dataset)).await.unwrap_err();
            assert_eq!(
                status.code(),
                tonic::Code::InvalidArgument,
                "{}: {status}",
                b.name
            );
        }
        admin.set_dataset_budget(budget("adult")).await.unwrap();
        for (id, dataset) in [("r\0", "adult"), ("r1", "adu\0lt")] {
            let status = admin
                .record_release(release(id, dataset))
                .await
                .unwrap_err();
            assert_eq!(
                status.code(),
                tonic::Code::InvalidArgument,
                "{}: {status}",
                b.name
            );
        }
        admin.record_release(release("r1", "adult")).await.unwrap();
        server.shutdown().await.unwrap();
        let store = b.reopen.open().await.unwrap();
        let ledger = store.load_ledger().await.unwrap();
        assert_eq!(ledger.datasets(), ["adult"], "{}", b.name);
        assert_eq!(ledger.releases("adult").count(), 1, "{}", b.name);
        store.close().await.unwrap();
    }
}

/// The backend pid holding [`ServerLock`] of `schema` (key: `ldp`, hash of the
/// schema name), if any.
async fn lock_holder(schema: &PgSchema) -> Option<i32> {
    let mut conn = schema.admin.connect().await.unwrap();
    let pid = sqlx::query_scalar(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND classid::bigint = 7103600 AND objsubid = 2 \
         AND objid::bigint = (hashtext($1)::bigint & 4294967295)",
    )
    .bind(&schema.name)
    .fetch_optional(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    pid
}

/// Client settings for `server`, with its bearer token.
fn connect_args(server: &RunningServer, token: &Token) -> ConnectArgs {
    ConnectArgs {
        connect: server.url(),
        token: Some(token.expose().to_string()),
        token_file: None,
        ca_cert: None,
    }
}

/// Creates the GRR metric "color" (3 values) over Admin; returns its
/// mechanism and the header of its reports in epoch 0.
async fn create_color_metric(conn: &ConnectArgs, epsilon: f64) -> (Mechanism, ReportHeader) {
    let spec = MetricSpec::new(
        "color",
        Epsilon::new(epsilon).unwrap(),
        MechanismSpec::Grr { domain_size: 3 },
    );
    let created = conn
        .admin()
        .await
        .unwrap()
        .create_metric(pb::CreateMetricRequest {
            spec: Some(wire::metric_to_proto(&spec).unwrap()),
        })
        .await
        .unwrap()
        .into_inner();
    let spec = wire::metric_from_proto(created.metric.unwrap()).unwrap();
    let header = ReportHeader {
        metric_id: spec.metric_id,
        metric_version: spec.version,
        epoch: 0,
    };
    (spec.mechanism().unwrap(), header)
}

/// Ends the backend `pid` as a restart or `idle_session_timeout` would.
async fn terminate_backend(schema: &PgSchema, pid: i32) {
    let mut conn = schema.admin.connect().await.unwrap();
    let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(ended, "could not terminate backend {pid}");
    conn.close().await.unwrap();
}

#[tokio::test]
async fn server_lock_check_fails_once_its_backend_is_gone() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    let mut lock = ServerLock::try_acquire(&schema.options)
        .await
        .unwrap()
        .expect("a free schema's lock");
    lock.check().await.unwrap();
    let pid = lock_holder(&schema)
        .await
        .expect("the lock shows in pg_locks");
    terminate_backend(&schema, pid).await;
    assert!(lock.check().await.is_err(), "a lost lock passed its check");
    let again = ServerLock::try_acquire(&schema.options).await.unwrap();
    assert!(again.is_some(), "the lost lock was still held");
    again.unwrap().release().await.unwrap();
}

/// Regression: the check ran `SELECT 1`, which passes on a session that no
/// longer holds the lock (released by `pg_advisory_unlock_all()` or a pooler's
/// `DISCARD ALL`). It asks `pg_locks` instead.
#[tokio::test]
async fn server_lock_check_fails_once_its_session_releases_it() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    let mut lock = ServerLock::try_acquire(&schema.options)
        .await
        .unwrap()
        .expect("a free schema's lock");
    lock.check().await.unwrap();
    sqlx::query("SELECT pg_advisory_unlock_all()")
        .execute(lock.session())
        .await
        .unwrap();
    let err = lock.check().await.unwrap_err();
    assert!(matches!(err, StoreError::LockLost(_)), "{err}");
    let other = ServerLock::try_acquire(&schema.options).await.unwrap();
    assert!(other.is_some(), "the released lock was still held");
    other.unwrap().release().await.unwrap();
    lock.release().await.unwrap();
}

/// A child process killed (and reaped) when this is dropped, so a failing test
/// never leaves an `ldp serve` holding its lock and connections (its schema
/// could then not be dropped).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Fails harmlessly when the child has already exited.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `ldp serve` on PostgreSQL whose lock connection is terminated: it notices
/// at its next check, shuts down and exits with an error naming the lock.
#[tokio::test]
async fn serve_stops_when_its_lock_is_lost() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "serve-lock-test-token\n").unwrap();
    #[cfg(unix)]
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut child = KillOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_ldp"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--lock-check-seconds",
                "1",
            ])
            .arg("--db")
            .arg(&schema.url)
            .arg("--token-file")
            .arg(&token)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let child = &mut child.0;
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert!(line.starts_with("listening on"), "{line:?}");
    let pid = lock_holder(&schema).await.expect("serve holds the lock");
    terminate_backend(&schema, pid).await;
    // Bounded wait, so a regression fails instead of hanging the run.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            panic!("ldp serve kept running after losing its lock");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{status:?}: {stderr}");
    assert!(stderr.contains("lost the server lock"), "{stderr}");
    let again = ServerLock::try_acquire(&schema.options).await.unwrap();
    assert!(again.is_some(), "the stopped server's lock was still held");
    again.unwrap().release().await.unwrap();
}

/// Regression: the writer task's group commits shared the write pool with
/// Admin writes, so Admin writes queued behind a ledger table lock held every
/// connection and a commit waited up to the 30 s acquire timeout. Here more
/// Admin writes than the write pool holds wait on a lock the test keeps on
/// `dataset_budgets`, and a group commit must still go through at once.
#[tokio::test]
async fn admin_writes_waiting_on_a_lock_do_not_hold_up_commits() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    let store: Arc<dyn Store> =
        Arc::new(PostgresStore::open(schema.options.clone()).await.unwrap());
    let mut blocker = schema.options.connect().await.unwrap();
    let blocker_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut blocker)
        .await
        .unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE dataset_budgets IN ACCESS EXCLUSIVE MODE")
        .execute(&mut blocker)
        .await
        .unwrap();
    let budget = Budget::new(1.0, 1e-5).unwrap();
    let admin_writes: Vec<_> = (0..6)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .set_dataset_budget(&format!("d{i}"), budget, 1)
                    .await
                    .map(|_| ())
            })
        })
        .collect();
    // Wait until the Admin writes are blocked on the lock (and so hold their
    // connections), then a moment for the rest to queue for the pool.
    let mut watcher = schema.admin.connect().await.unwrap();
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
        )
        .bind(blocker_pid)
        .fetch_one(&mut watcher)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let committed = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        store.commit_batches(&[batch(b"x", 0, &[1])], 1),
    )
    .await;
    let closed = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        store.close_epoch(1, 7, 1),
    )
    .await;
    let still_waiting = admin_writes.iter().all(|h| !h.is_finished());
    sqlx::raw_sql("COMMIT").execute(&mut blocker).await.unwrap();
    blocker.close().await.unwrap();
    watcher.close().await.unwrap();
    for h in admin_writes {
        h.await
            .unwrap()
            .expect("an Admin write failed once the lock was released");
    }
    store.close().await.unwrap();
    let fresh = committed
        .expect("the group commit waited for a connection behind Admin writes")
        .unwrap();
    assert_eq!(fresh, [true]);
    closed
        .expect("closing an epoch waited for a connection behind Admin writes")
        .unwrap();
    assert!(still_waiting, "the Admin writes did not wait on the lock");
}

/// A session whose default isolation is SERIALIZABLE (as a role or database
/// may set it): a commit that waits for a concurrent insert of one of its
/// batch ids still succeeds and counts that id as a duplicate, because the
/// store's connections run READ COMMITTED. Under REPEATABLE READ or
/// SERIALIZABLE it fails with "could not serialize access".
#[tokio::test]
async fn writes_are_read_committed_whatever_the_session_default() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    let options = schema
        .options
        .clone()
        .options([("default_transaction_isolation", "serializable")]);
    let store = Arc::new(PostgresStore::open(options).await.unwrap());
    let mut blocker = schema.options.connect().await.unwrap();
    let blocker_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut blocker)
        .await
        .unwrap();
    sqlx::raw_sql(
        "BEGIN; INSERT INTO batches (batch_id, received_at, reports) VALUES ('\\x78', 0, 1)",
    )
    .execute(&mut blocker)
    .await
    .unwrap();
    let committing = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            store
                .commit_batches(&[batch(b"x", 0, &[1]), batch(b"y", 0, &[1])], 1)
                .await
        })
    };
    // Wait until the commit is blocked on the uncommitted id.
    let mut watcher = schema.admin.connect().await.unwrap();
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
        )
        .bind(blocker_pid)
        .fetch_one(&mut watcher)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(!committing.is_finished(), "the commit did not wait");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    watcher.close().await.unwrap();
    sqlx::raw_sql("COMMIT").execute(&mut blocker).await.unwrap();
    blocker.close().await.unwrap();
    let fresh = committing
        .await
        .unwrap()
        .expect("the waiting commit failed");
    assert_eq!(fresh, [false, true]);
    let (stats, _) = store.load_stats(1, 1, None, 2).await.unwrap();
    assert_eq!(stats.reports, 1);
    store.close().await.unwrap();
}

/// `ldp privacy-report` as a role that may only read the schema (`USAGE` and
/// `SELECT`): opening migrates nothing, so it needs no `CREATE`. Opening with
/// migrations as that role fails. Skipped (with a message) when the test
/// URL's user cannot create roles.
#[tokio::test]
async fn privacy_report_needs_only_select() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    let store: Arc<dyn Store> =
        Arc::new(PostgresStore::open(schema.options.clone()).await.unwrap());
    let eps = Epsilon::new(1.0).unwrap();
    store
        .create_metric(MetricSpec::new("a", eps, MechanismSpec::Binary), 1)
        .await
        .unwrap();
    let budget = Budget::new(1.0, 1e-5).unwrap();
    store
        .set_dataset_budget("adult", budget, 1)
        .await
        .unwrap()
        .unwrap();
    store.close().await.unwrap();

    let mut admin = schema.admin.connect().await.unwrap();
    let can_create_roles: bool = sqlx::query_scalar(
        "SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    if !can_create_roles {
        eprintln!("privacy_report_needs_only_select: the test user cannot create roles; skipped");
        return;
    }
    let role = format!("{}_auditor", schema.name);
    let password = Token::generate().expose().to_string();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {role} LOGIN PASSWORD '{password}'; \
         GRANT USAGE ON SCHEMA {schema} TO {role}; \
         GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}",
        schema = schema.name
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    let auditor = Database::Postgres(Box::new(
        schema.options.clone().username(&role).password(&password),
    ));
    let report = privacy_report::from_db(&auditor).await;
    let migrating = auditor.open().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP OWNED BY {role}; DROP ROLE {role}"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    admin.close().await.unwrap();
    let report = report.expect("a read-only role could not build the report");
    assert_eq!((report.metrics.len(), report.datasets.len()), (1, 1));
    assert!(
        migrating.is_err(),
        "a role without CREATE could open with migrations"
    );
}

#[tokio::test]
async fn one_server_lock_per_schema() {
    let (Some(one), Some(other)) = (PgSchema::create().await, PgSchema::create().await) else {
        return;
    };
    let first = ServerLock::try_acquire(&one.options).await.unwrap();
    assert!(first.is_some(), "a free schema's lock was refused");
    assert!(
        ServerLock::try_acquire(&one.options)
            .await
            .unwrap()
            .is_none(),
        "two servers got the lock of one schema"
    );
    let elsewhere = ServerLock::try_acquire(&other.options).await.unwrap();
    assert!(elsewhere.is_some(), "another schema's lock was refused");
    first.unwrap().release().await.unwrap();
    let again = ServerLock::try_acquire(&one.options).await.unwrap();
    assert!(again.is_some(), "a released lock could not be taken again");
    again.unwrap().release().await.unwrap();
    elsewhere.unwrap().release().await.unwrap();
}

/// `Server::start` on PostgreSQL: create a metric, Submit a batch (and again:
/// a duplicate), estimate over gRPC; a restarted server sees the same data.
#[tokio::test]
async fn server_over_grpc_on_postgres() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    let token = Token::generate();
    let db = Database::Postgres(Box::new(schema.options.clone()));
    let start = || {
        Server::start(Config::new(
            "127.0.0.1:0".parse().unwrap(),
            db.clone(),
            &token,
        ))
    };
    let server = start().await.unwrap();
    let conn = connect_args(&server, &token);
    let (mechanism, header) = create_color_metric(&conn, 8.0).await;
    let mut rng = LdpRng::seeded_for_simulation(5);
    let reports: Vec<pb::Report> = (0..300)
        .map(|i| {
            let value = u32::from(i % 3 != 0) * 2; // a third 0, two thirds 2
            wire::report_to_proto(header, &mechanism.encode_index(value, &mut rng).unwrap())
                .unwrap()
        })
        .collect();
    let mut collector = pb::collector_client::CollectorClient::connect(server.url())
        .await
        .unwrap();
    let request = pb::SubmitRequest {
        batch_id: b"postgres-e2e-batch-0001".to_vec(),
        reports,
    };
    let first = collector
        .submit(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!((first.accepted, first.duplicate), (300, false));
    let second = collector.submit(request).await.unwrap().into_inner();
    assert_eq!((second.accepted, second.duplicate), (0, true));

    let estimate = || async {
        conn.analytics()
            .await
            .unwrap()
            .estimate_frequencies(pb::EstimateRequest {
                metric: "color".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
    };
    let before = estimate().await;
    assert_eq!((before.reports, before.epochs.clone()), (300, vec![0]));
    // At epsilon 8 a GRR report is truthful with probability 0.9993: the
    // estimates are the true counts 100 / 0 / 200 within a few reports.
    let counts: Vec<f64> = before.values.iter().map(|v| v.estimate).collect();
    assert_eq!(counts.len(), 3);
    assert!((counts[0] - 100.0).abs() < 10.0, "{counts:?}");
    assert!(counts[1].abs() < 10.0, "{counts:?}");
    assert!((counts[2] - 200.0).abs() < 10.0, "{counts:?}");
    server.shutdown().await.unwrap();

    let restarted = start().await.unwrap();
    let conn = ConnectArgs {
        connect: restarted.url(),
        ..conn
    };
    let after = conn
        .analytics()
        .await
        .unwrap()
        .estimate_frequencies(pb::EstimateRequest {
            metric: "color".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.reports, 300);
    assert_eq!(after.values, before.values);
    restarted.shutdown().await.unwrap();
}

/// Regression: the schema was resolved from `search_path` on every statement,
/// so a schema created later in front of it (`"$user", public` meets `CREATE
/// SCHEMA AUTHORIZATION ldp`) moved a running server to other tables. The store
/// and the lock resolve it once, at open, and the store stays on it; a
/// `search_path` with no existing schema is refused.
#[tokio::test]
async fn the_schema_is_pinned_at_open() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    let (later, options) = schema.behind("later");
    let store = PostgresStore::open(options.clone()).await.unwrap();
    assert_eq!(store.schema(), schema.name);
    assert!(
        store.describe().contains(&schema.name),
        "{}",
        store.describe()
    );
    let lock = ServerLock::try_acquire(&options).await.unwrap().unwrap();
    assert_eq!(lock.schema(), schema.name);
    let mut admin = schema.admin.connect().await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE SCHEMA {later}; CREATE TABLE {later}.metrics (LIKE {name}.metrics)",
        name = schema.name
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    let eps = Epsilon::new(1.0).unwrap();
    let created = store
        .create_metric(MetricSpec::new("a", eps, MechanismSpec::Binary), 1)
        .await;
    let counts: (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT (SELECT count(*) FROM {name}.metrics), (SELECT count(*) FROM {later}.metrics)",
        name = schema.name
    )))
    .fetch_one(&mut admin)
    .await
    .unwrap();
    store.close().await.unwrap();
    lock.release().await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {later} CASCADE")))
        .execute(&mut admin)
        .await
        .unwrap();
    created.unwrap();
    assert_eq!(counts, (1, 0), "the write left the pinned schema");

    let nowhere = schema
        .admin
        .clone()
        .options([("search_path", later.as_str())]);
    let err = PostgresStore::open(nowhere.clone()).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Schema(_)) && err.to_string().contains("search_path"),
        "{err}"
    );
    let err = ServerLock::try_acquire(&nowhere).await.unwrap_err();
    assert!(matches!(err, StoreError::Schema(_)), "{err}");
    admin.close().await.unwrap();
}

/// Regression: `ldp serve` took the lock and opened the store with the same
/// unpinned `search_path`, each resolving it on its own; a schema created in
/// front in between left the lock on one schema and the server on another.
/// A store opened through [`ServerLock::pinned`] resolves the lock's schema
/// whatever the `search_path` resolves to by then, and fails once it is gone.
#[tokio::test]
async fn the_store_serves_the_schema_its_lock_names() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    let (front, options) = schema.behind("front");
    let lock = ServerLock::try_acquire(&options).await.unwrap().unwrap();
    assert_eq!(lock.schema(), schema.name);
    let mut admin = schema.admin.connect().await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {front}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let unpinned = PostgresStore::open(options.clone()).await;
    let pinned = PostgresStore::open(lock.pinned(options.clone()).unwrap()).await;
    if let Ok(store) = &unpinned {
        store.close().await.unwrap();
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {front} CASCADE")))
        .execute(&mut admin)
        .await
        .unwrap();
    let gone = format!("{}_gone", schema.name);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {gone}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let gone_options = schema
        .admin
        .clone()
        .options([("search_path", gone.as_str())]);
    let gone_lock = ServerLock::try_acquire(&gone_options)
        .await
        .unwrap()
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {gone}")))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
    let after_drop = PostgresStore::open(gone_lock.pinned(gone_options).unwrap()).await;
    gone_lock.release().await.unwrap();
    // Without the pin the store would have gone to the new schema in front.
    assert_eq!(unpinned.unwrap().schema(), front);
    let pinned = pinned.unwrap();
    assert_eq!(pinned.schema(), lock.schema());
    pinned.close().await.unwrap();
    lock.release().await.unwrap();
    let err = after_drop.unwrap_err();
    assert!(matches!(err, StoreError::Schema(_)), "{err}");
}

/// Regression: a failed group commit answered INTERNAL, which devices take as
/// a permanent refusal, so a database that was briefly unusable (a restart, a
/// failover, a lost connection) made them drop batches they had already
/// randomized and paid for. Here the server's commit waits on a lock the test
/// holds on `batches`, and the test then terminates that backend, as a
/// restart would: the Submit fails with UNAVAILABLE (retryable) and stores
/// nothing; the retry is stored, a repeat of it counts once, and nothing
/// acknowledged before is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_cut_off_by_a_restart_is_retryable_and_counts_once() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    let token = Token::generate();
    let server = Server::start(Config::new(
        "127.0.0.1:0".parse().unwrap(),
        Database::Postgres(Box::new(schema.options.clone())),
        &token,
    ))
    .await
    .unwrap();
    let conn = connect_args(&server, &token);
    let (mechanism, header) = create_color_metric(&conn, 1.0).await;
    let mut rng = LdpRng::seeded_for_simulation(9);
    let mut request = |id: &[u8], n: u32| pb::SubmitRequest {
        batch_id: id.to_vec(),
        reports: (0..n)
            .map(|i| {
                let report = mechanism.encode_index(i % 3, &mut rng).unwrap();
                wire::report_to_proto(header, &report).unwrap()
            })
            .collect(),
    };
    let (first, second) = (
        request(b"retry-test-batch-0001", 40),
        request(b"retry-test-batch-0002", 60),
    );
    let mut collector = pb::collector_client::CollectorClient::connect(server.url())
        .await
        .unwrap();
    let ack = collector.submit(first).await.unwrap().into_inner();
    assert_eq!((ack.accepted, ack.duplicate), (40, false));

    let mut holder = schema.options.connect().await.unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE batches IN ACCESS EXCLUSIVE MODE")
        .execute(&mut holder)
        .await
        .unwrap();
    let submit = tokio::spawn({
        let (mut collector, second) = (collector.clone(), second.clone());
        async move { collector.submit(second).await }
    });
    // The server's backend waiting for the lock on this schema's `batches`.
    let waiting = async {
        loop {
            let pid: Option<i32> = sqlx::query_scalar(
                "SELECT pid FROM pg_locks WHERE NOT granted AND relation = 'batches'::regclass",
            )
            .fetch_optional(&mut holder)
            .await
            .unwrap();
            if let Some(pid) = pid {
                return pid;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    let pid = tokio::time::timeout(std::time::Duration::from_secs(30), waiting)
        .await
        .expect("the commit never waited for the lock");
    terminate_backend(&schema, pid).await;
    let status = submit.await.unwrap().unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(ldp_sdk::client::is_retryable(status.code()));
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut holder)
        .await
        .unwrap();
    holder.close().await.unwrap();

    let ack = collector.submit(second.clone()).await.unwrap().into_inner();
    assert_eq!((ack.accepted, ack.duplicate), (60, false));
    let ack = collector.submit(second).await.unwrap().into_inner();
    assert_eq!((ack.accepted, ack.duplicate), (0, true));
    let estimate = conn
        .analytics()
        .await
        .unwrap()
        .estimate_frequencies(pb::EstimateRequest {
            metric: "color".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(estimate.reports, 100);
    server.shutdown().await.unwrap();
}
