//! The device's privacy-budget ledger: what this device has spent per metric, in a
//! rolling window and over its lifetime, persisted so that no report leaves the
//! device unless its cost was durably recorded first.
//!
//! # Guarantees
//! - **Debit before send.** [`DeviceLedger::debit`] returns a [`DebitReceipt`] only
//!   after the new state is on disk (written to a temporary file, fsynced, renamed
//!   over the ledger, directory fsynced). Callers randomize and send only after
//!   `Ok`. A crash after the debit and before the send loses that budget (no
//!   refund); a crash during the write leaves the previous state and no receipt,
//!   so nothing was sent.
//! - **Budgets.** Per metric, a [`BudgetPolicy`]: at most `window_epsilon` in any
//!   rolling window of `window_seconds`, and at most `lifetime_epsilon` ever. A
//!   debit that would exceed either is refused with [`Error::BudgetExhausted`] and
//!   changes nothing.
//! - **Clocks.** The ledger keeps the largest time at which it accepted a debit;
//!   debits are dated and windows evaluated at that time or later, never earlier,
//!   so moving the clock back restores nothing. (A refused debit changes nothing,
//!   not even this time: evaluating at an earlier time only keeps more debits in
//!   the window.) Moving it forward ends the current window early
//!   (at most one extra window of spending, then the device is stuck until real
//!   time catches up); the lifetime budget bounds everything.
//! - **Exact arithmetic.** Amounts are stored as integer nano-epsilons: debits are
//!   rounded up and budgets down (both only when more than 1e-12 off the 1e-9
//!   grid), so rounding never lets the device overspend, and ten debits of 0.1 fit a
//!   budget of 1.0 exactly.
//! - **Concurrency.** All operations take `&self` and serialize on an internal
//!   mutex, held across the file write: concurrent debits from many threads never
//!   exceed a budget. One process owns a ledger file: [`DeviceLedger::open`] takes
//!   an exclusive advisory lock on `<path>.lock` for the ledger's lifetime and fails
//!   if another ledger (in this or another process) holds it.
//! - **Restarts.** The state is reloaded from the file; a corrupt file is an error
//!   (the device stops reporting) rather than a reset.
//!
//! What it does not protect: deleting the ledger file (or the app's storage)
//! resets it, as does a device that simply does not run this code. The server's
//! own accounting ([`crate::metric::MetricSpec`] epsilon per report, reports per
//! device) is the second line of defence.
//!
//! ```
//! use ldp_sdk::{Epsilon, budget::{BudgetPolicy, DeviceLedger}};
//! let dir = std::env::temp_dir().join(format!("ldp-doc-ledger-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let ledger = DeviceLedger::open(dir.join("ledger.json"))?;
//! ledger.register("clicks", BudgetPolicy::new(1.0, 86_400, 10.0)?)?;
//! let receipt = ledger.debit("clicks", Epsilon::new(0.5)?, 1_700_000_000)?;
//! // ... randomize and send the report only now ...
//! assert_eq!(receipt.epsilon(), 0.5);
//! # drop(ledger); std::fs::remove_dir_all(&dir).unwrap();
//! # Ok::<(), ldp_sdk::Error>(())
//! ```

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::{Epsilon, Error, Result};

/// Nano-epsilons per epsilon.
const NANOS: f64 = 1e9;
/// Largest epsilon amount the ledger accepts (keeps nano-amounts far from u64 overflow).
const MAX_AMOUNT: f64 = 1e9;

/// A metric's budget: a rolling window and a lifetime cap.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BudgetPolicy {
    /// Most epsilon spendable within any window of `window_seconds`.
    pub window_epsilon: f64,
    /// The window length in seconds (e.g. 86 400 for a day).
    pub window_seconds: u64,
    /// Most epsilon ever spendable on the metric.
    pub lifetime_epsilon: f64,
}

impl BudgetPolicy {
    /// Validates the budgets (finite, > 0, at most 1e9) and the window (> 0 s).
    pub fn new(window_epsilon: f64, window_seconds: u64, lifetime_epsilon: f64) -> Result<Self> {
        let policy = Self {
            window_epsilon,
            window_seconds,
            lifetime_epsilon,
        };
        policy.validate()?;
        Ok(policy)
    }

    fn validate(&self) -> Result<()> {
        check_amount("window_epsilon", self.window_epsilon)?;
        check_amount("lifetime_epsilon", self.lifetime_epsilon)?;
        if self.window_seconds == 0 {
            return Err(invalid("window_seconds", "must be > 0".into()));
        }
        Ok(())
    }

    /// The most reports of `epsilon` each that a ledger enforcing this policy
    /// lets out within any interval of `seconds` (`0` = the device's whole
    /// lifetime), with the ledger's own rounding. Every rolling window of
    /// `window_seconds` holds at most `floor(window_epsilon / epsilon)` debits
    /// and an interval of L seconds is covered by `ceil(L / window_seconds)`
    /// windows; the lifetime budget caps the total. Invalid `epsilon` gives 0.
    pub fn max_reports(&self, epsilon: f64, seconds: u64) -> u64 {
        if check_amount("epsilon", epsilon).is_err() {
            return 0;
        }
        let cost = debit_nanos(epsilon).max(1);
        let lifetime = budget_nanos(self.lifetime_epsilon) / cost;
        if seconds == 0 {
            return lifetime;
        }
        let per_window = budget_nanos(self.window_epsilon) / cost;
        per_window
            .saturating_mul(seconds.div_ceil(self.window_seconds))
            .min(lifetime)
    }

    /// The tighter of two policies, field by field (smaller budgets, longer window).
    fn tightest(&self, other: &Self) -> Self {
        Self {
            window_epsilon: self.window_epsilon.min(other.window_epsilon),
            window_seconds: self.window_seconds.max(other.window_seconds),
            lifetime_epsilon: self.lifetime_epsilon.min(other.lifetime_epsilon),
        }
    }
}

/// Proof that a debit was durably recorded. Deliberately neither `Clone` nor
/// `Copy`: one receipt pays for one report.
#[derive(Debug, PartialEq)]
pub struct DebitReceipt {
    metric: String,
    nanos: u64,
    at: u64,
    sequence: u64,
}

impl DebitReceipt {
    /// The metric debited.
    pub fn metric(&self) -> &str {
        &self.metric
    }

    /// The epsilon charged (the request rounded up to the 1e-9 grid).
    pub fn epsilon(&self) -> f64 {
        self.nanos as f64 / NANOS
    }

    /// The time the debit is dated at (the largest time the ledger has seen).
    pub fn at(&self) -> u64 {
        self.at
    }

    /// The ledger's sequence number of this debit (strictly increasing).
    pub fn sequence(&self) -> u64 {
        self.sequence
    }
}

/// What a metric has spent and has left, at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MetricUsage {
    /// The effective policy.
    pub policy: BudgetPolicy,
    /// Spent within the current window.
    pub window_spent: f64,
    /// Spent over the lifetime.
    pub lifetime_spent: f64,
    /// The largest debit that would be accepted now.
    pub available: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct MetricState {
    policy: Option<BudgetPolicy>,
    lifetime_nanos: u64,
    /// Debits still inside the window: (time, nano-epsilon), in time order.
    window: Vec<(u64, u64)>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct State {
    version: u32,
    max_time_seen: u64,
    sequence: u64,
    metrics: BTreeMap<String, MetricState>,
}

impl MetricState {
    fn window_nanos(&self, now: u64, window_seconds: u64) -> u64 {
        self.window
            .iter()
            .filter(|(t, _)| t.saturating_add(window_seconds) > now)
            .map(|(_, n)| n)
            .sum()
    }

    /// The largest debit, in nanos, that fits both budgets at `now`.
    fn available(&self, policy: &BudgetPolicy, now: u64) -> u64 {
        let window_left = budget_nanos(policy.window_epsilon)
            .saturating_sub(self.window_nanos(now, policy.window_seconds));
        let lifetime_left =
            budget_nanos(policy.lifetime_epsilon).saturating_sub(self.lifetime_nanos);
        window_left.min(lifetime_left)
    }
}

/// The device ledger (see the module doc).
#[derive(Debug)]
pub struct DeviceLedger {
    path: PathBuf,
    state: Mutex<State>,
    _lock: File,
}

impl DeviceLedger {
    /// Opens the ledger at `path` (created on the first debit if absent), taking the
    /// exclusive lock on `<path>.lock`.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let lock = lock_exclusive(&path)?;
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::Io(format!("ledger {} is corrupt: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State {
                version: 1,
                ..State::default()
            },
            Err(e) => return Err(io_error(&path, e)),
        };
        Ok(Self {
            path,
            state: Mutex::new(state),
            _lock: lock,
        })
    }

    /// Registers a metric's budget. A metric already registered keeps the tighter
    /// of its stored policy and `policy`, field by field, so a caller (or a
    /// misbehaving server's configuration) cannot loosen a budget; the effective
    /// policy is returned.
    pub fn register(&self, metric: &str, policy: BudgetPolicy) -> Result<BudgetPolicy> {
        policy.validate()?;
        self.update(|state| {
            let entry = state.metrics.entry(metric.to_owned()).or_default();
            let effective = entry.policy.map_or(policy, |old| old.tightest(&policy));
            entry.policy = Some(effective);
            Ok(effective)
        })
    }

    /// Debits `epsilon` from `metric` at time `now` (seconds since the Unix epoch),
    /// durably, or refuses with [`Error::BudgetExhausted`] and changes nothing.
    pub fn debit(&self, metric: &str, epsilon: Epsilon, now: u64) -> Result<DebitReceipt> {
        let mut receipts = self.debit_all(&[(metric, epsilon)], now)?;
        Ok(receipts.remove(0))
    }

    /// Debits several metrics at once (e.g. the reports of one record): all or
    /// nothing, in one durable write.
    pub fn debit_all(&self, debits: &[(&str, Epsilon)], now: u64) -> Result<Vec<DebitReceipt>> {
        let mut amounts = Vec::with_capacity(debits.len());
        for (metric, eps) in debits {
            check_amount("epsilon", eps.get())?;
            amounts.push((*metric, debit_nanos(eps.get())));
        }
        self.update(|state| {
            let at = state.max_time_seen.max(now);
            state.max_time_seen = at;
            let mut receipts = Vec::with_capacity(amounts.len());
            for &(metric, nanos) in &amounts {
                let entry = state
                    .metrics
                    .get_mut(metric)
                    .ok_or_else(|| invalid("metric", format!("no budget registered for {metric:?}")))?;
                let policy = entry
                    .policy
                    .ok_or_else(|| invalid("metric", format!("no budget registered for {metric:?}")))?;
                entry
                    .window
                    .retain(|(t, _)| t.saturating_add(policy.window_seconds) > at);
                let available = entry.available(&policy, at);
                if nanos > available {
                    return Err(Error::BudgetExhausted(format!(
                        "metric {metric:?}: a debit of {} exceeds the {} left (window {} of {} per {} s, lifetime {} of {})",
                        nanos as f64 / NANOS,
                        available as f64 / NANOS,
                        entry.window_nanos(at, policy.window_seconds) as f64 / NANOS,
                        policy.window_epsilon,
                        policy.window_seconds,
                        entry.lifetime_nanos as f64 / NANOS,
                        policy.lifetime_epsilon,
                    )));
                }
                entry.window.push((at, nanos));
                entry.lifetime_nanos += nanos;
                state.sequence += 1;
                receipts.push(DebitReceipt {
                    metric: metric.to_owned(),
                    nanos,
                    at,
                    sequence: state.sequence,
                });
            }
            Ok(receipts)
        })
    }

    /// A metric's usage at `now` (evaluated at the largest time seen if later).
    /// Reading changes nothing.
    pub fn usage(&self, metric: &str, now: u64) -> Result<MetricUsage> {
        let state = self.lock();
        let at = state.max_time_seen.max(now);
        let entry = state
            .metrics
            .get(metric)
            .ok_or_else(|| invalid("metric", format!("no budget registered for {metric:?}")))?;
        let policy = entry
            .policy
            .ok_or_else(|| invalid("metric", format!("no budget registered for {metric:?}")))?;
        Ok(MetricUsage {
            policy,
            window_spent: entry.window_nanos(at, policy.window_seconds) as f64 / NANOS,
            lifetime_spent: entry.lifetime_nanos as f64 / NANOS,
            available: entry.available(&policy, at) as f64 / NANOS,
        })
    }

    /// The largest time (seconds since the Unix epoch) of an accepted debit.
    pub fn max_time_seen(&self) -> u64 {
        self.lock().max_time_seen
    }

    /// Applies `f` to a copy of the state; persists the copy and makes it current
    /// only if `f` succeeds and the write is durable.
    fn update<T>(&self, f: impl FnOnce(&mut State) -> Result<T>) -> Result<T> {
        let mut current = self.lock();
        let mut next = current.clone();
        let out = f(&mut next)?;
        if next != *current {
            let bytes = serde_json::to_vec(&next)
                .map_err(|e| Error::Io(format!("cannot serialize the ledger: {e}")))?;
            write_atomic(&self.path, &bytes)?;
            *current = next;
        }
        Ok(out)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is only replaced after a successful write, so a panic in
        // another thread cannot leave it half-updated: poisoning is harmless.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A debit in nano-epsilons, rounded up unless within 1e-12 of the grid.
fn debit_nanos(eps: f64) -> u64 {
    (eps * NANOS - 1e-3).ceil().max(0.0) as u64
}

/// A budget in nano-epsilons, rounded down unless within 1e-12 of the grid.
fn budget_nanos(eps: f64) -> u64 {
    (eps * NANOS + 1e-3).floor().max(0.0) as u64
}

fn check_amount(name: &'static str, eps: f64) -> Result<()> {
    if eps.is_finite() && eps > 0.0 && eps <= MAX_AMOUNT {
        Ok(())
    } else {
        Err(invalid(
            name,
            format!("{eps} must be finite, > 0 and <= {MAX_AMOUNT}"),
        ))
    }
}

fn invalid(name: &'static str, reason: String) -> Error {
    Error::InvalidParameter { name, reason }
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::Io(format!("{}: {e}", path.display()))
}

/// Takes an exclusive advisory lock on `<path>.lock`, held while the file lives.
pub(crate) fn lock_exclusive(path: &Path) -> Result<File> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| io_error(&lock_path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(Error::Io(format!(
            "{} is in use by another ledger (one process owns the file)",
            path.display()
        ))),
        Err(TryLockError::Error(e)) => Err(io_error(&lock_path, e)),
    }
}

/// Replaces `path` with `bytes` atomically and durably: write `<path>.tmp`, fsync
/// it, rename it over `path`, fsync the directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut file = File::create(&tmp).map_err(|e| io_error(&tmp, e))?;
        file.write_all(bytes).map_err(|e| io_error(&tmp, e))?;
        file.sync_all().map_err(|e| io_error(&tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| io_error(path, e))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;
    const T0: u64 = 1_700_000_000;

    fn eps(x: f64) -> Epsilon {
        Epsilon::new(x).unwrap()
    }

    fn ledger(dir: &tempfile::TempDir) -> DeviceLedger {
        DeviceLedger::open(dir.path().join("ledger.json")).unwrap()
    }

    #[test]
    fn window_and_lifetime_budgets() {
        let dir = tempfile::tempdir().unwrap();
        let l = ledger(&dir);
        l.register("m", BudgetPolicy::new(1.0, DAY, 2.5).unwrap())
            .unwrap();
        for _ in 0..10 {
            l.debit("m", eps(0.1), T0).unwrap();
        }
        let err = l.debit("m", eps(0.1), T0 + 10).unwrap_err();
        assert!(matches!(err, Error::BudgetExhausted(_)), "{err}");
        // A day later the window has room again; the lifetime caps the total at 2.5.
        l.debit("m", eps(1.0), T0 + DAY).unwrap();
        l.debit("m", eps(0.5), T0 + 2 * DAY).unwrap();
        assert!(l.debit("m", eps(0.1), T0 + 3 * DAY).is_err());
        let u = l.usage("m", T0 + 3 * DAY).unwrap();
        assert_eq!((u.lifetime_spent, u.available), (2.5, 0.0));
        assert!(l.debit("other", eps(0.1), T0).is_err());
    }

    #[test]
    fn max_reports_is_what_a_greedy_device_gets() {
        // A device that tries a report every second: the most it gets into any
        // aligned interval of 250 s must equal the bound (3 per 100 s window,
        // ceil(250 / 100) = 3 windows: 9), and its total must equal the
        // lifetime bound floor(5.0 / 0.3) = 16.
        let dir = tempfile::tempdir().unwrap();
        let l = ledger(&dir);
        let policy = BudgetPolicy::new(1.0, 100, 5.0).unwrap();
        l.register("m", policy).unwrap();
        let mut per_interval = [0u64; 8];
        for t in 0..2_000u64 {
            for _ in 0..4 {
                if l.debit("m", eps(0.3), T0 + t).is_ok() {
                    per_interval[(t / 250) as usize] += 1;
                }
            }
        }
        assert_eq!(
            per_interval.iter().max(),
            Some(&policy.max_reports(0.3, 250))
        );
        assert_eq!(policy.max_reports(0.3, 250), 9);
        assert_eq!(per_interval.iter().sum::<u64>(), policy.max_reports(0.3, 0));
        assert_eq!(policy.max_reports(0.3, 0), 16);
        // Exact multiples fit exactly (the ledger's rounding), nonsense gives 0.
        assert_eq!(policy.max_reports(0.1, 100), 10);
        assert_eq!(policy.max_reports(f64::NAN, 100), 0);
    }

    #[test]
    fn clock_moved_back_restores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let l = ledger(&dir);
        l.register("m", BudgetPolicy::new(1.0, DAY, 100.0).unwrap())
            .unwrap();
        l.debit("m", eps(1.0), T0 + 5 * DAY).unwrap();
        // Earlier times are evaluated at the largest time seen: still exhausted.
        for back in [T0, T0 - 10 * DAY, 0] {
            assert!(matches!(
                l.debit("m", eps(0.01), back),
                Err(Error::BudgetExhausted(_))
            ));
        }
        assert_eq!(l.max_time_seen(), T0 + 5 * DAY);
        // Real time moving on frees the window as usual.
        let r = l.debit("m", eps(0.5), T0 + 6 * DAY).unwrap();
        assert_eq!(r.at(), T0 + 6 * DAY);
    }

    /// Regression: a debit dated with a clock set back must not land "in the past"
    /// and leave the window early.
    #[test]
    fn debits_with_a_backward_clock_are_dated_at_the_max_time() {
        let dir = tempfile::tempdir().unwrap();
        let l = ledger(&dir);
        l.register("m", BudgetPolicy::new(1.0, DAY, 100.0).unwrap())
            .unwrap();
        l.debit("m", eps(0.1), T0 + DAY).unwrap();
        let r = l.debit("m", eps(0.9), T0).unwrap();
        assert_eq!(r.at(), T0 + DAY);
        assert!(l.debit("m", eps(0.1), T0 + DAY + 10).is_err());
    }

    #[test]
    fn policies_only_tighten() {
        let dir = tempfile::tempdir().unwrap();
        let l = ledger(&dir);
        l.register("m", BudgetPolicy::new(1.0, DAY, 5.0).unwrap())
            .unwrap();
        let eff = l
            .register("m", BudgetPolicy::new(3.0, 60, 4.0).unwrap())
            .unwrap();
        assert_eq!(eff, BudgetPolicy::new(1.0, DAY, 4.0).unwrap());
        assert!(BudgetPolicy::new(0.0, DAY, 1.0).is_err());
        assert!(BudgetPolicy::new(1.0, 0, 1.0).is_err());
        assert!(BudgetPolicy::new(1.0, DAY, f64::INFINITY).is_err());
    }

    #[test]
    fn one_owner_per_file() {
        let dir = tempfile::tempdir().unwrap();
        let l = ledger(&dir);
        let second = DeviceLedger::open(dir.path().join("ledger.json"));
        assert!(matches!(second, Err(Error::Io(_))));
        drop(l);
        DeviceLedger::open(dir.path().join("ledger.json")).unwrap();
    }

    #[test]
    fn corrupt_file_is_an_error_not_a_reset() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ledger.json"), b"{not json").unwrap();
        assert!(matches!(
            DeviceLedger::open(dir.path().join("ledger.json")),
            Err(Error::Io(_))
        ));
    }

    #[test]
    fn rounding_is_conservative() {
        assert_eq!(debit_nanos(0.1), 100_000_000);
        assert_eq!(budget_nanos(1.0), 1_000_000_000);
        assert_eq!(debit_nanos(1.0 / 3.0), 333_333_334);
        assert_eq!(budget_nanos(1.0 / 3.0), 333_333_333);
    }
}
