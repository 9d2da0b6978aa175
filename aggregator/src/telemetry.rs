//! Operational counters and per-RPC latency histograms.
//!
//! Every gRPC call is timed by [`crate::service::observe`] and recorded here in an
//! HDR histogram per method (microseconds, 3 significant digits); ingest updates
//! the batch counters. [`Telemetry::snapshot`] is what `Admin.GetStats` and
//! `ldp stats` show.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ldp_proto::v1 as pb;

/// Most methods with their own latency histogram (about 190 KB each); the
/// services have about 20.
pub const MAX_METHODS: usize = 64;
/// The entry that records the calls of methods beyond [`MAX_METHODS`].
pub const OTHER_METHODS: &str = "(other methods)";

/// Counters and histograms of one server.
#[derive(Debug)]
pub struct Telemetry {
    started: Instant,
    rpcs: Mutex<BTreeMap<String, RpcRecord>>,
    /// Reports stored (duplicates excluded).
    pub reports_accepted: AtomicU64,
    /// Batches stored.
    pub batches_accepted: AtomicU64,
    /// Batches acknowledged as duplicates.
    pub batches_duplicate: AtomicU64,
    /// Batches refused (invalid, closed epoch, too large).
    pub batches_rejected: AtomicU64,
    /// Group-commit transactions of the ingest writer.
    pub group_commits: AtomicU64,
}

#[derive(Debug)]
struct RpcRecord {
    calls: u64,
    errors: u64,
    latency_us: Histogram<u64>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            rpcs: Mutex::default(),
            reports_accepted: AtomicU64::new(0),
            batches_accepted: AtomicU64::new(0),
            batches_duplicate: AtomicU64::new(0),
            batches_rejected: AtomicU64::new(0),
            group_commits: AtomicU64::new(0),
        }
    }
}

impl Telemetry {
    /// Records one call of `method` that took `elapsed`. At most
    /// [`MAX_METHODS`] methods get their own entry; calls of further ones are
    /// recorded under [`OTHER_METHODS`], so made-up method paths cannot grow the
    /// map without bound.
    pub fn record(&self, method: &str, elapsed: Duration, error: bool) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let mut rpcs = self.rpcs.lock().unwrap_or_else(|e| e.into_inner());
        let method = if rpcs.len() >= MAX_METHODS && !rpcs.contains_key(method) {
            OTHER_METHODS
        } else {
            method
        };
        let record = match rpcs.get_mut(method) {
            Some(r) => r,
            None => rpcs.entry(method.to_string()).or_insert_with(|| RpcRecord {
                calls: 0,
                errors: 0,
                // 1 us to 1 hour at 3 significant digits; `saturating_record` clamps beyond.
                latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                    .expect("constant histogram bounds are valid"),
            }),
        };
        record.calls += 1;
        record.errors += u64::from(error);
        record.latency_us.saturating_record(us.max(1));
    }

    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The current counters and latency quantiles.
    pub fn snapshot(&self) -> pb::GetStatsResponse {
        let rpcs = self.rpcs.lock().unwrap_or_else(|e| e.into_inner());
        pb::GetStatsResponse {
            rpcs: rpcs
                .iter()
                .map(|(method, r)| pb::RpcStats {
                    method: method.clone(),
                    calls: r.calls,
                    errors: r.errors,
                    p50_us: r.latency_us.value_at_quantile(0.5),
                    p99_us: r.latency_us.value_at_quantile(0.99),
                    p999_us: r.latency_us.value_at_quantile(0.999),
                    max_us: r.latency_us.max(),
                })
                .collect(),
            reports_accepted: self.reports_accepted.load(Ordering::Relaxed),
            batches_accepted: self.batches_accepted.load(Ordering::Relaxed),
            batches_duplicate: self.batches_duplicate.load(Ordering::Relaxed),
            batches_rejected: self.batches_rejected.load(Ordering::Relaxed),
            uptime_seconds: self.started.elapsed().as_secs(),
            group_commits: self.group_commits.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_beyond_the_limit_share_one_entry() {
        let telemetry = Telemetry::default();
        for i in 0..MAX_METHODS + 50 {
            telemetry.record(&format!("/svc/M{i}"), Duration::from_micros(5), false);
        }
        telemetry.record("/svc/M0", Duration::from_micros(5), true);
        let rpcs = telemetry.snapshot().rpcs;
        assert_eq!(rpcs.len(), MAX_METHODS + 1);
        let calls = |name: &str| rpcs.iter().find(|r| r.method == name).map(|r| r.calls);
        assert_eq!(calls(OTHER_METHODS), Some(50));
        assert_eq!(calls("/svc/M0"), Some(2));
    }
}
