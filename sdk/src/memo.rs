//! Memoized responses: a device that reports an unchanged value again sends the
//! same randomized report, so repeated reporting does not average the noise away
//! (the permanent randomized response of RAPPOR, Erlingsson et al. 2014, applied to
//! any mechanism's report: GRR, unary, hashed, numeric).
//!
//! A [`Memo`] maps (metric, value) to the first report made for that value. The
//! key is `HMAC-SHA256(k, "ldp/memo/v1\0" || metric || 0x00 || value)` with `k`
//! derived from the device's [`DeviceSecret`]; values themselves are never
//! stored. New entries are persisted (atomic, durable write, as in
//! [`crate::budget`]) before the report is returned, so a restarted device reuses
//! the memoized report instead of drawing a fresh one.
//!
//! Typical use, with the budget: the fresh path debits the ledger (durably) and
//! randomizes; the memoized path costs nothing more.
//! ```
//! use ldp_sdk::{Epsilon, LdpRng, budget::{BudgetPolicy, DeviceLedger}, memo::Memo};
//! use ldp_sdk::mechanism::{Mechanism, MechanismSpec, rappor::DeviceSecret};
//! let dir = std::env::temp_dir().join(format!("ldp-doc-memo-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let mut rng = LdpRng::from_os();
//! let ledger = DeviceLedger::open(dir.join("ledger.json"))?;
//! ledger.register("color", BudgetPolicy::new(1.0, 86_400, 4.0)?)?;
//! let memo = Memo::open(dir.join("memo.json"), &DeviceSecret::generate(&mut rng))?;
//! let eps = Epsilon::new(1.0)?;
//! let mech = Mechanism::new(MechanismSpec::Grr { domain_size: 4 }, eps)?;
//! let value = 2u32;
//! let first = memo.report_with("color", &value.to_le_bytes(), eps, 1_700_000_000, || {
//!     ledger.debit("color", eps, 1_700_000_000)?; // durable before the report exists
//!     mech.encode_index(value, &mut rng)
//! })?;
//! let again = memo.report_with("color", &value.to_le_bytes(), eps, 1_700_000_100, || unreachable!())?;
//! assert!(!first.reused && again.reused && first.report == again.report);
//! # drop((ledger, memo)); std::fs::remove_dir_all(&dir).unwrap();
//! # Ok::<(), ldp_sdk::Error>(())
//! ```
//!
//! # Privacy
//! - **Protected:** any number of reports of one unchanged value reveal no more
//!   than the first: eps_inf of a memoized metric is the per-report epsilon of the
//!   memoized response, charged once per distinct value.
//! - **Not protected:** a change of value is visible (a new, independent report
//!   appears, although it may coincide with the old one); each distinct value costs
//!   its own epsilon, and the budget ledger must pay for it. A memoized report is a
//!   stable, linkable fingerprint of the device over time unless a fresh layer is
//!   added on top (RAPPOR's IRR). The times at which values change are revealed.
//! - **On the device:** without the secret, the memo file reveals the number of
//!   distinct values per metric and their (already randomized) reports; with the
//!   secret, anyone can test candidate values against it. Keep the secret in the
//!   platform's key store.
//! - The memo only grows; [`Memo::forget_metric`] drops a metric's entries (e.g.
//!   after the metric's definition changed). Forgetting allows fresh reports of old
//!   values, each charged again to the ledger.
//! - **Cost.** Every new value adds an entry and rewrites the whole file durably,
//!   so memoize metrics whose values repeat (categories, bucketed numbers), not
//!   continuous measurements: there every report is a new value, is charged
//!   anyway, and only grows the file. Numbers are memoized by exact value
//!   (`-0.0` as `0.0`).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::budget::{lock_exclusive, write_atomic};
use crate::mechanism::Report;
use crate::mechanism::rappor::DeviceSecret;
use crate::{Epsilon, Error, Result};

type HmacSha256 = Hmac<Sha256>;

/// A memoized report and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoEntry {
    /// The metric.
    pub metric: String,
    /// The memoized randomized report.
    pub report: Report,
    /// The epsilon of the memoized response (the metric's eps_inf per distinct value).
    pub epsilon: f64,
    /// When it was first made (seconds since the Unix epoch).
    pub created_at: u64,
}

/// The outcome of [`Memo::report_with`].
#[derive(Debug, Clone, PartialEq)]
pub struct Memoized {
    /// The report to send.
    pub report: Report,
    /// `true` if it is the memoized report of an earlier call (nothing new revealed).
    pub reused: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct MemoFile {
    version: u32,
    /// Hex HMAC tag -> entry.
    entries: BTreeMap<String, MemoEntry>,
}

/// The memo store (see the module doc). Thread-safe; one process owns the file.
pub struct Memo {
    path: PathBuf,
    key: [u8; 32],
    state: Mutex<MemoFile>,
    _lock: File,
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memo")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Memo {
    /// Opens (or starts) the memo at `path`, keyed by `secret`, taking the
    /// exclusive lock on `<path>.lock`.
    pub fn open(path: impl Into<PathBuf>, secret: &DeviceSecret) -> Result<Self> {
        let path = path.into();
        let lock = lock_exclusive(&path)?;
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::Io(format!("memo {} is corrupt: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => MemoFile {
                version: 1,
                ..MemoFile::default()
            },
            Err(e) => return Err(Error::Io(format!("{}: {e}", path.display()))),
        };
        let mut mac = HmacSha256::new_from_slice(secret.expose_bytes()).map_err(|e| {
            Error::InvalidParameter {
                name: "secret",
                reason: e.to_string(),
            }
        })?;
        mac.update(b"ldp/memo/v1/key");
        Ok(Self {
            path,
            key: mac.finalize().into_bytes().into(),
            state: Mutex::new(state),
            _lock: lock,
        })
    }

    /// The memoized report of `value` for `metric`, if there is one.
    pub fn lookup(&self, metric: &str, value: &[u8]) -> Option<Report> {
        let tag = self.tag(metric, value);
        self.lock().entries.get(&tag).map(|e| e.report.clone())
    }

    /// The memoized report of `value`, or, if there is none, the report made by
    /// `fresh` (which should debit the budget ledger, then randomize), persisted
    /// before it is returned. If `fresh` fails nothing is stored. The internal lock
    /// is held while `fresh` runs, so one value is never randomized twice.
    pub fn report_with(
        &self,
        metric: &str,
        value: &[u8],
        epsilon: Epsilon,
        now: u64,
        fresh: impl FnOnce() -> Result<Report>,
    ) -> Result<Memoized> {
        let tag = self.tag(metric, value);
        let mut state = self.lock();
        if let Some(entry) = state.entries.get(&tag) {
            return Ok(Memoized {
                report: entry.report.clone(),
                reused: true,
            });
        }
        let report = fresh()?;
        state.entries.insert(
            tag.clone(),
            MemoEntry {
                metric: metric.to_owned(),
                report: report.clone(),
                epsilon: epsilon.get(),
                created_at: now,
            },
        );
        if let Err(e) = self.persist(&state) {
            state.entries.remove(&tag);
            return Err(e);
        }
        Ok(Memoized {
            report,
            reused: false,
        })
    }

    /// Number of memoized values of `metric`.
    pub fn len(&self, metric: &str) -> usize {
        self.lock()
            .entries
            .values()
            .filter(|e| e.metric == metric)
            .count()
    }

    /// Whether `metric` has no memoized value.
    pub fn is_empty(&self, metric: &str) -> bool {
        self.len(metric) == 0
    }

    /// Drops every memoized report of `metric`; returns how many were dropped.
    pub fn forget_metric(&self, metric: &str) -> Result<usize> {
        let mut state = self.lock();
        let before = state.entries.len();
        let kept: BTreeMap<String, MemoEntry> = state
            .entries
            .iter()
            .filter(|(_, e)| e.metric != metric)
            .map(|(k, e)| (k.clone(), e.clone()))
            .collect();
        let dropped = before - kept.len();
        if dropped > 0 {
            let next = MemoFile {
                version: state.version,
                entries: kept,
            };
            self.persist(&next)?;
            *state = next;
        }
        Ok(dropped)
    }

    fn tag(&self, metric: &str, value: &[u8]) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(b"ldp/memo/v1\0");
        mac.update(metric.as_bytes());
        mac.update(&[0]);
        mac.update(value);
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn persist(&self, state: &MemoFile) -> Result<()> {
        let bytes = serde_json::to_vec(state)
            .map_err(|e| Error::Io(format!("cannot serialize the memo: {e}")))?;
        write_atomic(&self.path, &bytes)
    }

    fn lock(&self) -> MutexGuard<'_, MemoFile> {
        // Entries are removed again if persisting fails, so poisoning is harmless.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LdpRng;

    fn secret(seed: u64) -> DeviceSecret {
        DeviceSecret::generate(&mut LdpRng::seeded_for_simulation(seed))
    }

    #[test]
    fn unchanged_value_reuses_changed_value_is_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memo.json");
        let eps = Epsilon::new(1.0).unwrap();
        let memo = Memo::open(&path, &secret(1)).unwrap();
        let a = memo
            .report_with("m", b"red", eps, 1, || Ok(Report::Index(3)))
            .unwrap();
        let b = memo
            .report_with("m", b"red", eps, 2, || Ok(Report::Index(0)))
            .unwrap();
        assert_eq!(
            (a.reused, b.reused, b.report),
            (false, true, Report::Index(3))
        );
        let c = memo
            .report_with("m", b"blue", eps, 3, || Ok(Report::Index(1)))
            .unwrap();
        assert!(!c.reused);
        // Same value under another metric is independent.
        assert!(memo.lookup("other", b"red").is_none());
        // A failing fresh path stores nothing.
        assert!(
            memo.report_with("m", b"green", eps, 4, || Err(Error::BudgetExhausted(
                "x".into()
            )))
            .is_err()
        );
        assert_eq!(memo.len("m"), 2);
        // The file holds no raw value.
        drop(memo);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("red") && !text.contains("blue"));
        // Survives a restart with the same secret; another secret finds nothing.
        let memo = Memo::open(&path, &secret(1)).unwrap();
        assert_eq!(memo.lookup("m", b"red"), Some(Report::Index(3)));
        drop(memo);
        let memo = Memo::open(&path, &secret(2)).unwrap();
        assert_eq!(memo.lookup("m", b"red"), None);
        assert_eq!(memo.forget_metric("m").unwrap(), 2);
    }
}
