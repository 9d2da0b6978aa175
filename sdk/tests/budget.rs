//! The device ledger under crashes, restarts, several processes and many threads.
//!
//! Invariants checked:
//! - a debit that returned `Ok` survives a crash (the process aborts right after
//!   it, before "sending"): no refund; a retried report is charged again, and the
//!   total never exceeds the budget (no double spend of one debit, no overspend);
//! - a crash in the middle of a write (a stale `<path>.tmp`) leaves the last
//!   durable state;
//! - a second process cannot open a ledger another process owns;
//! - 8 threads debiting concurrently never exceed the budget, and exactly the
//!   successful debits are on disk after a restart.
//!
//! The crash tests re-run this test binary as a child process (selected by an
//! environment variable) that aborts without unwinding or running destructors.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use ldp_sdk::budget::{BudgetPolicy, DeviceLedger};
use ldp_sdk::{Epsilon, Error};

const DAY: u64 = 86_400;
const T0: u64 = 1_700_000_000;
const CHILD_ENV: &str = "LDP_BUDGET_TEST_CHILD";

fn eps(x: f64) -> Epsilon {
    Epsilon::new(x).unwrap()
}

/// Runs `test` of this binary in a child process with `CHILD_ENV=action:path`.
fn run_child(test: &str, action: &str, path: &Path) -> std::process::Output {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{action}:{}", path.display()))
        .output()
        .unwrap()
}

/// The child side of the crash tests; a no-op in a normal test run.
#[test]
fn child_process() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (action, path) = spec.split_once(':').unwrap();
    match action {
        "debit_then_crash" => {
            let ledger = DeviceLedger::open(path).unwrap();
            ledger
                .register("m", BudgetPolicy::new(1.0, DAY, 10.0).unwrap())
                .unwrap();
            let receipt = ledger.debit("m", eps(0.4), T0).unwrap();
            println!("debited {}", receipt.epsilon());
            // Crash between the debit and the send: no destructor, no flush.
            std::process::abort();
        }
        "open" => match DeviceLedger::open(path) {
            Ok(_) => println!("opened"),
            Err(e) => println!("refused: {e}"),
        },
        other => panic!("unknown child action {other}"),
    }
}

#[test]
fn crash_between_debit_and_send_keeps_the_debit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.json");
    let out = run_child("child_process", "debit_then_crash", &path);
    assert!(!out.status.success(), "the child must have crashed");
    assert!(String::from_utf8_lossy(&out.stdout).contains("debited 0.4"));

    // After the restart the debit is there (no refund). The app retries the report
    // it never sent: that is a new report and is charged again.
    let ledger = DeviceLedger::open(&path).unwrap();
    assert_eq!(ledger.usage("m", T0).unwrap().window_spent, 0.4);
    ledger.debit("m", eps(0.4), T0 + 1).unwrap();
    // 0.8 of the 1.0 window is spent: one more 0.4 would overspend.
    assert!(matches!(
        ledger.debit("m", eps(0.4), T0 + 2),
        Err(Error::BudgetExhausted(_))
    ));
    assert_eq!(ledger.usage("m", T0 + 2).unwrap().window_spent, 0.8);
}

#[test]
fn crash_during_a_write_leaves_the_last_durable_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.json");
    {
        let ledger = DeviceLedger::open(&path).unwrap();
        ledger
            .register("m", BudgetPolicy::new(1.0, DAY, 10.0).unwrap())
            .unwrap();
        ledger.debit("m", eps(0.25), T0).unwrap();
    }
    // A write that died before its rename leaves a partial temporary file.
    std::fs::write(
        dir.path().join("ledger.json.tmp"),
        b"{\"version\":1,\"max_ti",
    )
    .unwrap();
    let ledger = DeviceLedger::open(&path).unwrap();
    assert_eq!(ledger.usage("m", T0).unwrap().lifetime_spent, 0.25);
    ledger.debit("m", eps(0.25), T0).unwrap();
    drop(ledger);
    let ledger = DeviceLedger::open(&path).unwrap();
    assert_eq!(ledger.usage("m", T0).unwrap().lifetime_spent, 0.5);
}

#[test]
fn another_process_cannot_open_an_owned_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.json");
    let ledger = DeviceLedger::open(&path).unwrap();
    let out = run_child("child_process", "open", &path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("refused") && stdout.contains("in use"),
        "{stdout}"
    );
    drop(ledger);
    let out = run_child("child_process", "open", &path);
    assert!(String::from_utf8_lossy(&out.stdout).contains("opened"));
}

#[test]
fn restart_keeps_state_and_the_max_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.json");
    {
        let ledger = DeviceLedger::open(&path).unwrap();
        ledger
            .register("m", BudgetPolicy::new(1.0, DAY, 3.0).unwrap())
            .unwrap();
        ledger.debit("m", eps(1.0), T0 + DAY).unwrap();
    }
    let ledger = DeviceLedger::open(&path).unwrap();
    assert_eq!(ledger.max_time_seen(), T0 + DAY);
    // The clock set back after the restart still restores nothing.
    assert!(ledger.debit("m", eps(0.1), T0).is_err());
    let u = ledger.usage("m", T0).unwrap();
    assert_eq!(
        (u.window_spent, u.lifetime_spent, u.available),
        (1.0, 1.0, 0.0)
    );
}

#[test]
fn concurrent_debits_never_exceed_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.json");
    let ledger = Arc::new(DeviceLedger::open(&path).unwrap());
    // Window 2.0, lifetime 100: the window binds. 8 threads x 10 attempts of 0.1
    // (8.0 requested) against 2.0: exactly 20 succeed.
    ledger
        .register("m", BudgetPolicy::new(2.0, DAY, 100.0).unwrap())
        .unwrap();
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let ledger = Arc::clone(&ledger);
            std::thread::spawn(move || {
                (0..10)
                    .filter(|i| match ledger.debit("m", eps(0.1), T0 + t * 10 + i) {
                        Ok(_) => true,
                        Err(Error::BudgetExhausted(_)) => false,
                        Err(e) => panic!("{e}"),
                    })
                    .count()
            })
        })
        .collect();
    let ok: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(ok, 20);
    drop(ledger);
    let ledger = DeviceLedger::open(&path).unwrap();
    assert_eq!(ledger.usage("m", T0 + 100).unwrap().lifetime_spent, 2.0);
}

mod model_based {
    //! Random sequences of debits with a clock that jumps forwards and backwards,
    //! against a plain model of the rules: every debit is accepted exactly when
    //! the model says it fits, and the accepted debits, dated as the ledger dated
    //! them, never exceed any window or the lifetime.

    use super::*;
    use proptest::prelude::*;

    const WINDOW: u64 = 100;
    /// Budgets in nano-epsilons: window 1.0, lifetime 3.0.
    const WINDOW_NANOS: u64 = 1_000_000_000;
    const LIFETIME_NANOS: u64 = 3_000_000_000;

    proptest! {
        // Each case does up to 40 durable (fsynced) writes: keep the case count small.
        #![proptest_config(ProptestConfig {
            cases: 24,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]
        #[test]
        fn ledger_follows_the_model(ops in prop::collection::vec((-150i64..200, 1u64..6), 1..40)) {
            let dir = tempfile::tempdir().unwrap();
            let ledger = DeviceLedger::open(dir.path().join("ledger.json")).unwrap();
            ledger.register("m", BudgetPolicy::new(1.0, WINDOW, 3.0).unwrap()).unwrap();
            let mut clock: i64 = 1_000;
            let mut max_seen: u64 = 0;
            let mut accepted: Vec<(u64, u64)> = Vec::new();
            for (jump, tenths) in ops {
                clock = (clock + jump).max(0);
                let now = clock as u64;
                let nanos = tenths * 100_000_000;
                let at = max_seen.max(now);
                let in_window: u64 = accepted.iter().filter(|(t, _)| t + WINDOW > at).map(|(_, n)| n).sum();
                let lifetime: u64 = accepted.iter().map(|(_, n)| n).sum();
                let fits = in_window + nanos <= WINDOW_NANOS && lifetime + nanos <= LIFETIME_NANOS;
                match ledger.debit("m", eps(tenths as f64 / 10.0), now) {
                    Ok(r) => {
                        prop_assert!(fits, "accepted a debit the model refuses");
                        prop_assert_eq!(r.at(), at);
                        accepted.push((at, nanos));
                        // Only accepted debits advance the ledger's time (a refusal
                        // changes nothing, which is the conservative choice).
                        max_seen = at;
                    }
                    Err(Error::BudgetExhausted(_)) => prop_assert!(!fits, "refused a debit that fits"),
                    Err(e) => return Err(TestCaseError::fail(e.to_string())),
                }
            }
            // Safety, independently of the model: every window ending at a debit.
            for &(t, _) in &accepted {
                let sum: u64 = accepted.iter().filter(|(s, _)| *s <= t && s + WINDOW > t).map(|(_, n)| n).sum();
                prop_assert!(sum <= WINDOW_NANOS);
            }
            prop_assert!(accepted.iter().map(|(_, n)| n).sum::<u64>() <= LIFETIME_NANOS);
        }
    }
}
