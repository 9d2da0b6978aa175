//! Durable ingest: validation of a `Submit` batch and the group-commit writer.
//!
//! # Validation ([`Ingest::validate`])
//! A batch is checked whole before anything is written: size limit
//! (`RESOURCE_EXHAUSTED`), batch id length, then every report in order: a known
//! (metric id, version), an epoch that is not closed (`FAILED_PRECONDITION`) and
//! is plausible (0 for single-epoch metrics; otherwise not before the metric's
//! creation and at most one epoch ahead of the server clock), and a payload that
//! the metric's SDK [`Mechanism`](ldp_sdk::mechanism::Mechanism) accepts. The
//! first bad report fails the whole batch with its index and reason; the
//! batch's statistics are aggregated in memory into one [`Delta`](crate::store::Delta)
//! per (metric, version, epoch) holding only the counters the batch touched
//! ([`delta`]), so neither memory nor storage work grows with the metric's
//! table: a one-report batch of an OLH metric with millions of counters costs
//! one counter. Dense per-key tables are kept for unary mechanisms and for the
//! first few keys of small metrics ([`delta::DENSE_BATCH_CELLS`]); unary ones
//! may hold at most [`MAX_BATCH_CELLS`] counters per batch
//! (`RESOURCE_EXHAUSTED`), so memory does not grow with reports x epochs.
//!
//! # Group commit ([`writer`])
//! A single writer task owns all statistics writes. It takes the first queued
//! batch, drains whatever else is queued (up to a configured group size),
//! re-checks closed epochs, commits the group in one transaction
//! ([`Store::commit_batches`]) and only then acknowledges every batch in it.
//! Dedup by batch id is exact: ids are checked inside the transaction against
//! the `batches` table, and a repeat inside one group counts once. Closing an
//! epoch goes through the same queue, so no batch validated before a close can
//! be committed after it.
//!
//! A batch retried after its epoch was closed gets `FAILED_PRECONDITION`, even if
//! an earlier attempt had been stored.
//!
//! # Memory
//! Validated batches waiting for the writer hold their deltas in memory. Each
//! holds permits of a semaphore worth [`QUEUED_DELTA_BYTES`] (one per MiB of
//! cells, at least one) from validation until its acknowledgement; when they
//! are used up, further `Submit`s wait (back-pressure) instead of queueing more,
//! so a stream of large unary batches cannot grow the server's memory without
//! bound. Validation itself runs on the blocking pool, one batch per core at a
//! time, so it neither stalls the async workers nor holds more than one
//! batch's tables per core.

use std::collections::HashMap;
use std::sync::Arc;

use ldp_proto::v1 as pb;
use ldp_sdk::wire;
use prost::Message;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::error::ServiceError;
use crate::registry::{ClosedEpochs, Registry};
use crate::store::{BatchDelta, StatsKey, Store, StoreError};
use crate::telemetry::Telemetry;
use delta::DeltaBuilder;

pub mod delta;

/// Shortest accepted batch id, in bytes.
pub const MIN_BATCH_ID_LEN: usize = 16;
/// Longest accepted batch id, in bytes.
pub const MAX_BATCH_ID_LEN: usize = 64;
/// Most counters of dense per-key tables one batch may allocate, summed over
/// its distinct (metric, version, epoch) keys: 2^25 counters, 256 MiB, i.e. two
/// keys of the largest metric (every mechanism keeps at most 2^24 counters), so
/// a batch straddling one epoch boundary always fits. Dense tables are built
/// for small metrics and unary mechanisms ([`delta::DeltaBuilder`]); without
/// this bound a batch naming a different epoch in every report would allocate
/// reports x counters. Larger batches get `RESOURCE_EXHAUSTED`.
pub const MAX_BATCH_CELLS: usize = 1 << 25;

/// Bytes of validated deltas that may wait for the writer at once (1 GiB).
pub const QUEUED_DELTA_BYTES: usize = 1 << 30;
const PERMIT_BYTES: usize = 1 << 20;

/// Limits and options of the ingest path.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Most reports accepted in one batch.
    pub max_batch_reports: usize,
    /// Most batches committed in one transaction.
    pub max_group_batches: usize,
    /// Keep the encoded reports of every batch (see `raw_batches`).
    pub retain_raw: bool,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_batch_reports: 10_000,
            max_group_batches: 256,
            retain_raw: false,
        }
    }
}

enum Command {
    Commit {
        batch: BatchDelta,
        ack: oneshot::Sender<Result<bool, ServiceError>>,
    },
    Close {
        metric_id: u32,
        epoch: u64,
        ack: oneshot::Sender<Result<(), ServiceError>>,
    },
    Stop,
}

/// The ingest front end shared by the Collector and Admin services (cheap to
/// clone: the clones share everything).
#[derive(Debug, Clone)]
pub struct Ingest {
    config: IngestConfig,
    registry: Arc<Registry>,
    closed: Arc<ClosedEpochs>,
    telemetry: Arc<Telemetry>,
    queue: mpsc::Sender<Command>,
    /// Permits of [`QUEUED_DELTA_BYTES`], one per MiB of queued deltas.
    memory: Arc<Semaphore>,
    /// Validations running at once on the blocking pool (one per core).
    validating: Arc<Semaphore>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Commit { batch, .. } => write!(f, "Commit({} reports)", batch.reports),
            Self::Close {
                metric_id, epoch, ..
            } => write!(f, "Close({metric_id}, {epoch})"),
            Self::Stop => f.write_str("Stop"),
        }
    }
}

/// Handle to the running writer task.
#[derive(Debug)]
pub struct Writer {
    queue: mpsc::Sender<Command>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    /// Processes every command queued so far, then stops; returns when it has.
    pub async fn stop(self) {
        // If the task is already gone the send fails; either way we wait for it.
        let _ = self.queue.send(Command::Stop).await;
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "writer task failed");
        }
    }
}

/// Starts the writer task on `store` and returns the ingest front end and the writer handle.
pub fn start(
    config: IngestConfig,
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    closed: Arc<ClosedEpochs>,
    telemetry: Arc<Telemetry>,
) -> (Ingest, Writer) {
    // Bounded: back-pressure on clients when the disk cannot keep up.
    let (queue, rx) = mpsc::channel(4 * config.max_group_batches.max(1));
    let task = tokio::spawn(writer(
        store,
        closed.clone(),
        telemetry.clone(),
        rx,
        config.max_group_batches.max(1),
    ));
    let ingest = Ingest {
        config,
        registry,
        closed,
        telemetry,
        queue: queue.clone(),
        memory: Arc::new(Semaphore::new(QUEUED_DELTA_BYTES / PERMIT_BYTES)),
        validating: Arc::new(Semaphore::new(validators())),
    };
    (ingest, Writer { queue, task })
}

impl Ingest {
    /// Validates `request` and aggregates it into one delta per statistics key.
    pub fn validate(
        &self,
        request: pb::SubmitRequest,
        now: i64,
    ) -> Result<BatchDelta, ServiceError> {
        let n = request.reports.len();
        if n > self.config.max_batch_reports {
            return Err(ServiceError::ResourceExhausted(format!(
                "batch of {n} reports exceeds the limit of {}",
                self.config.max_batch_reports
            )));
        }
        let id_len = request.batch_id.len();
        if !(MIN_BATCH_ID_LEN..=MAX_BATCH_ID_LEN).contains(&id_len) {
            return Err(ServiceError::InvalidArgument(format!(
                "batch_id must be {MIN_BATCH_ID_LEN} to {MAX_BATCH_ID_LEN} bytes, got {id_len}"
            )));
        }
        if n == 0 {
            return Err(ServiceError::InvalidArgument("empty batch".into()));
        }
        let raw = self.config.retain_raw.then(|| request.encode_to_vec());
        let registry = self.registry.read();
        let closed = self.closed.read();
        let mut builders: Vec<(StatsKey, DeltaBuilder)> = Vec::with_capacity(1);
        let mut slots: HashMap<StatsKey, usize> = HashMap::new();
        let mut dense_cells = 0usize;
        let mut last = None;
        for (i, report) in request.reports.into_iter().enumerate() {
            let bad = |why: String| ServiceError::InvalidArgument(format!("report {i}: {why}"));
            let (header, report) =
                wire::report_from_proto(report).map_err(|e| bad(e.to_string()))?;
            // Batches usually hold one metric: skip the map lookup on repeats.
            let id = (header.metric_id, header.metric_version);
            let published = match last {
                Some((last_id, p)) if last_id == id => p,
                _ => registry
                    .get(id.0, id.1)
                    .ok_or_else(|| bad(format!("unknown metric id {} version {}", id.0, id.1)))?,
            };
            last = Some((id, published));
            let spec = &published.spec;
            if closed.contains(&(header.metric_id, header.epoch)) {
                return Err(ServiceError::FailedPrecondition(format!(
                    "report {i}: epoch {} of metric {:?} is closed",
                    header.epoch, spec.name
                )));
            }
            let (first, last) = plausible_epochs(spec, now);
            if !(first..=last).contains(&header.epoch) {
                return Err(bad(format!(
                    "epoch {} outside [{first}, {last}] for metric {:?}",
                    header.epoch, spec.name
                )));
            }
            let key = StatsKey {
                metric_id: header.metric_id,
                version: header.metric_version,
                epoch: header.epoch,
            };
            let slot = match builders.last() {
                Some((k, _)) if *k == key => builders.len() - 1,
                _ => match slots.get(&key) {
                    Some(&j) => j,
                    None => {
                        let builder = DeltaBuilder::for_batch(&published.mechanism, dense_cells);
                        dense_cells = dense_cells.saturating_add(builder.dense_cells());
                        if dense_cells > MAX_BATCH_CELLS {
                            return Err(ServiceError::ResourceExhausted(format!(
                                "report {i}: the batch spans {} (metric, epoch) statistics with \
                                 more than {MAX_BATCH_CELLS} counters in all; split it by metric and epoch",
                                builders.len() + 1
                            )));
                        }
                        slots.insert(key, builders.len());
                        builders.push((key, builder));
                        builders.len() - 1
                    }
                },
            };
            builders[slot]
                .1
                .add(&published.mechanism, &report)
                .map_err(|e| bad(e.to_string()))?;
        }
        Ok(BatchDelta {
            batch_id: request.batch_id,
            reports: u32::try_from(n).unwrap_or(u32::MAX),
            deltas: builders
                .into_iter()
                .map(|(key, builder)| (key, builder.finish()))
                .collect(),
            raw,
        })
    }

    /// Validates and durably stores a batch; returns after the commit.
    pub async fn submit(
        &self,
        request: pb::SubmitRequest,
        now: i64,
    ) -> Result<pb::SubmitResponse, ServiceError> {
        let result = self.submit_inner(request, now).await;
        let t = &self.telemetry;
        match &result {
            Ok(r) if r.duplicate => Telemetry::add(&t.batches_duplicate, 1),
            Ok(r) => {
                Telemetry::add(&t.batches_accepted, 1);
                Telemetry::add(&t.reports_accepted, u64::from(r.accepted));
            }
            Err(_) => Telemetry::add(&t.batches_rejected, 1),
        }
        result
    }

    async fn submit_inner(
        &self,
        request: pb::SubmitRequest,
        now: i64,
    ) -> Result<pb::SubmitResponse, ServiceError> {
        // Validation is CPU work (up to MAX_BATCH_CELLS counters): it runs on the
        // blocking pool, at most one per core, so it never stalls the async
        // workers that serve every other RPC (health checks included).
        let batch = {
            let _permit = self.validating.acquire().await.map_err(|_| stopped())?;
            let this = self.clone();
            tokio::task::spawn_blocking(move || this.validate(request, now))
                .await
                .map_err(|e| ServiceError::Internal(format!("validation task failed: {e}")))??
        };
        let reports = batch.reports;
        let bytes: usize = batch
            .deltas
            .iter()
            .map(|(_, d)| d.cells.len() * std::mem::size_of::<(u32, u64)>())
            .sum::<usize>()
            + batch.raw.as_ref().map_or(0, Vec::len);
        let permits = (bytes / PERMIT_BYTES).clamp(1, QUEUED_DELTA_BYTES / PERMIT_BYTES);
        let _memory = Arc::clone(&self.memory)
            .acquire_many_owned(u32::try_from(permits).unwrap_or(u32::MAX))
            .await
            .map_err(|_| stopped())?;
        let (ack, done) = oneshot::channel();
        self.send(Command::Commit { batch, ack }).await?;
        let fresh = done.await.map_err(|_| stopped())??;
        Ok(pb::SubmitResponse {
            accepted: if fresh { reports } else { 0 },
            duplicate: !fresh,
        })
    }

    /// Closes `epoch` of `metric_id` after every batch queued before it is
    /// committed. An epoch beyond the storage's range (above i64::MAX) is
    /// `INVALID_ARGUMENT`: no report can name it.
    pub async fn close_epoch(&self, metric_id: u32, epoch: u64) -> Result<(), ServiceError> {
        if i64::try_from(epoch).is_err() {
            return Err(ServiceError::InvalidArgument(format!(
                "epoch {epoch} is beyond the largest epoch, {}",
                i64::MAX
            )));
        }
        let (ack, done) = oneshot::channel();
        self.send(Command::Close {
            metric_id,
            epoch,
            ack,
        })
        .await?;
        done.await.map_err(|_| stopped())?
    }

    async fn send(&self, command: Command) -> Result<(), ServiceError> {
        self.queue.send(command).await.map_err(|_| stopped())
    }
}

/// Concurrent validations: the machine's cores.
fn validators() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

fn stopped() -> ServiceError {
    ServiceError::Unavailable("the server is shutting down".into())
}

/// The epochs a report may name at time `now`: only 0 for single-epoch metrics;
/// otherwise from the metric's creation epoch to one epoch past the current one.
fn plausible_epochs(spec: &ldp_sdk::metric::MetricSpec, now: i64) -> (u64, u64) {
    if spec.epoch_seconds == 0 {
        return (0, 0);
    }
    (
        spec.epoch_at(spec.created_at),
        spec.epoch_at(now).saturating_add(1),
    )
}

/// The writer task: group commit, then acknowledgements.
async fn writer(
    store: Arc<dyn Store>,
    closed: Arc<ClosedEpochs>,
    telemetry: Arc<Telemetry>,
    mut rx: mpsc::Receiver<Command>,
    max_group: usize,
) {
    let mut next: Option<Command> = None;
    loop {
        let command = match next.take() {
            Some(c) => c,
            None => match rx.recv().await {
                Some(c) => c,
                None => return,
            },
        };
        match command {
            Command::Stop => return,
            Command::Close {
                metric_id,
                epoch,
                ack,
            } => {
                let result = store
                    .close_epoch(metric_id, epoch, unix_now())
                    .await
                    .map(|()| closed.insert(metric_id, epoch))
                    .map_err(ServiceError::from);
                let _ = ack.send(result);
            }
            Command::Commit { batch, ack } => {
                let mut group = vec![(batch, ack)];
                while group.len() < max_group {
                    match rx.try_recv() {
                        Ok(Command::Commit { batch, ack }) => group.push((batch, ack)),
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                if commit_group(store.as_ref(), &closed, group).await {
                    Telemetry::add(&telemetry.group_commits, 1);
                }
            }
        }
    }
}

type Pending = (BatchDelta, oneshot::Sender<Result<bool, ServiceError>>);

/// Commits what is open of `group` and acknowledges every batch; returns
/// whether a transaction was committed.
async fn commit_group(store: &dyn Store, closed: &ClosedEpochs, group: Vec<Pending>) -> bool {
    let (open, refused): (Vec<Pending>, Vec<Pending>) = group.into_iter().partition(|(b, _)| {
        b.deltas
            .iter()
            .all(|(k, _)| !closed.contains(k.metric_id, k.epoch))
    });
    for (batch, ack) in refused {
        let key = batch
            .deltas
            .iter()
            .find(|(k, _)| closed.contains(k.metric_id, k.epoch))
            .map(|(k, _)| *k);
        let message = match key {
            Some(k) => format!("epoch {} of metric id {} is closed", k.epoch, k.metric_id),
            None => "epoch closed".into(),
        };
        let _ = ack.send(Err(ServiceError::FailedPrecondition(message)));
    }
    if open.is_empty() {
        return false;
    }
    let (batches, acks): (Vec<BatchDelta>, Vec<_>) = open.into_iter().unzip();
    let now = unix_now();
    match store.commit_batches(&batches, now).await {
        Ok(fresh) => {
            for (ack, fresh) in acks.into_iter().zip(fresh) {
                let _ = ack.send(Ok(fresh));
            }
            true
        }
        Err(e) if batches.len() > 1 && !e.is_transient() => {
            // One batch of the group may be one the database refuses every
            // time (say, a sum beyond its float range): commit each alone, so
            // that it cannot take the others down with it, now and at every
            // retry.
            tracing::warn!(error = %e, batches = batches.len(),
                "group commit failed; committing its batches one by one");
            let mut committed = false;
            for (batch, ack) in batches.iter().zip(acks) {
                let result = store.commit_batches(std::slice::from_ref(batch), now).await;
                committed |= result.is_ok();
                let _ = ack.send(match result {
                    Ok(fresh) => Ok(fresh.first().copied().unwrap_or(false)),
                    Err(e) => Err(commit_failed(&e, 1)),
                });
            }
            committed
        }
        Err(e) => {
            for ack in acks {
                let _ = ack.send(Err(commit_failed(&e, batches.len())));
            }
            false
        }
    }
}

/// The answer to batches whose commit failed with `e`. A transient failure
/// (the database restarting, unreachable, out of space) is UNAVAILABLE: the
/// batches are valid, and the device keeps them and retries (their reports
/// are already randomized and paid for; the batch id makes a retry count once
/// even if the failed commit did land). A batch the database refuses by
/// itself for any other reason is INTERNAL, which devices do not retry, so it
/// cannot block their queue forever.
fn commit_failed(e: &StoreError, batches: usize) -> ServiceError {
    if e.is_transient() {
        tracing::error!(error = %e, batches, "commit failed; the devices will retry");
        ServiceError::Unavailable("the database could not commit the batch now; retry it".into())
    } else {
        tracing::error!(error = %e, batches, "the database refused the batch");
        ServiceError::Internal("the database refused the batch".into())
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ldp_sdk::Epsilon;
    use ldp_sdk::mechanism::{MechanismSpec, Report};
    use ldp_sdk::metric::MetricSpec;
    use ldp_sdk::wire::{ReportHeader, report_to_proto};

    fn ingest_with(spec: MetricSpec) -> Ingest {
        let registry = Arc::new(Registry::default());
        registry.insert(spec).unwrap();
        Ingest {
            config: IngestConfig::default(),
            registry,
            closed: Arc::default(),
            telemetry: Arc::default(),
            queue: mpsc::channel(1).0,
            memory: Arc::new(Semaphore::new(QUEUED_DELTA_BYTES / PERMIT_BYTES)),
            validating: Arc::new(Semaphore::new(validators())),
        }
    }

    fn request(report: &Report, epochs: impl Iterator<Item = u64>) -> pb::SubmitRequest {
        let reports = epochs
            .map(|epoch| {
                let header = ReportHeader {
                    metric_id: 1,
                    metric_version: 1,
                    epoch,
                };
                report_to_proto(header, report).unwrap()
            })
            .collect();
        pb::SubmitRequest {
            batch_id: vec![7; 16],
            reports,
        }
    }

    fn spec_with_epochs(mechanism: MechanismSpec) -> MetricSpec {
        let mut spec =
            MetricSpec::new("big", Epsilon::new(1.0).unwrap(), mechanism).with_epoch_seconds(1);
        (spec.metric_id, spec.version, spec.created_at) = (1, 1, 1_000_000);
        spec
    }

    /// Regression: a failed group commit answered INTERNAL, which devices
    /// treat as a permanent refusal: they dropped already-randomized batches
    /// whenever the database was briefly unreachable. A commit failure is
    /// UNAVAILABLE (retried by the SDK client), and nothing is acknowledged.
    #[tokio::test]
    async fn a_failed_commit_is_unavailable_so_devices_retry() {
        let ingest = ingest_with(spec_with_epochs(MechanismSpec::Grr { domain_size: 4 }));
        let batch = ingest
            .validate(
                request(&Report::Index(1), [1_000_050].into_iter()),
                1_000_100,
            )
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::sqlite::SqliteStore::open(&dir.path().join("t.db"))
            .await
            .unwrap();
        store.close().await.unwrap(); // the database is gone
        let (ack, done) = oneshot::channel();
        let committed = commit_group(&store, &ClosedEpochs::default(), vec![(batch, ack)]).await;
        assert!(!committed);
        let err = done.await.unwrap().unwrap_err();
        assert!(matches!(err, ServiceError::Unavailable(_)), "{err}");
        let code = tonic::Status::from(err).code();
        assert!(ldp_sdk::client::is_retryable(code), "{code:?}");
    }

    /// Regression (review): with every failed commit answered UNAVAILABLE, a
    /// batch the database refuses every time failed the whole group it landed
    /// in, at every retry of every device. A group that fails for a reason
    /// other than the database's state is committed batch by batch: the
    /// refused batch alone is INTERNAL (not retried), the others are stored.
    #[tokio::test]
    async fn a_batch_the_database_always_refuses_fails_alone() {
        let ingest = ingest_with(spec_with_epochs(MechanismSpec::Grr { domain_size: 4 }));
        let batch = |id: u8| {
            let mut request = request(&Report::Index(1), [1_000_050].into_iter());
            request.batch_id = vec![id; 16];
            ingest.validate(request, 1_000_100).unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = crate::store::sqlite::SqliteStore::open(&path)
            .await
            .unwrap();
        let mut conn = sqlx::ConnectOptions::connect(
            &sqlx::sqlite::SqliteConnectOptions::new().filename(&path),
        )
        .await
        .unwrap();
        sqlx::raw_sql(
            "CREATE TRIGGER poison BEFORE INSERT ON batches WHEN NEW.batch_id = zeroblob(16) \
             BEGIN SELECT RAISE(ABORT, 'poisoned batch'); END",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::Connection::close(conn).await.unwrap();

        let (acks, dones): (Vec<_>, Vec<_>) = (0..3).map(|_| oneshot::channel()).unzip();
        let group = [batch(1), batch(0), batch(2)]
            .into_iter()
            .zip(acks)
            .collect();
        assert!(commit_group(&store, &ClosedEpochs::default(), group).await);
        let mut results = Vec::new();
        for done in dones {
            results.push(done.await.unwrap());
        }
        assert!(matches!(results[0], Ok(true)), "{:?}", results[0]);
        assert!(
            matches!(results[1], Err(ServiceError::Internal(_))),
            "{:?}",
            results[1]
        );
        assert!(matches!(results[2], Ok(true)), "{:?}", results[2]);
        let code = tonic::Status::from(results.remove(1).unwrap_err()).code();
        assert!(!ldp_sdk::client::is_retryable(code), "{code:?}");
        // The two good batches are stored (a repeat is a duplicate); the
        // refused one is not.
        let again = store
            .commit_batches(&[batch(1), batch(2)], 0)
            .await
            .unwrap();
        assert_eq!(again, [false, false]);
        let (stats, _) = store.load_stats(1, 1, None, 4).await.unwrap();
        assert_eq!(stats.reports, 2);
    }

    /// Regression: Admin.CloseEpoch with epoch 2^64 - 1 reached the store, whose
    /// conversion to SQLite's signed integer failed: INTERNAL.
    #[tokio::test]
    async fn closing_an_epoch_beyond_storage_is_invalid_argument() {
        let ingest = ingest_with(spec_with_epochs(MechanismSpec::Grr { domain_size: 4 }));
        for epoch in [u64::MAX, i64::MAX as u64 + 1] {
            let err = ingest.close_epoch(1, epoch).await.unwrap_err();
            assert!(matches!(err, ServiceError::InvalidArgument(_)), "{err}");
        }
    }

    /// Regression: an unauthenticated Submit whose reports each name a different
    /// plausible epoch made the server allocate one dense statistics delta per
    /// epoch (10,000 x the metric's counters: terabytes for a large domain).
    /// Unary metrics still build dense tables, so the limit applies to them.
    #[test]
    fn batch_spread_over_many_epochs_of_a_large_unary_metric_is_refused() {
        let d = 1 << 20;
        let ingest = ingest_with(spec_with_epochs(MechanismSpec::Oue { domain_size: d }));
        let zeros = Report::Bits(vec![0; d as usize / 8]);
        let now = 1_000_100;
        // 40 epochs x 2^20 counters = 40 x 8 MiB: over the per-batch limit.
        let err = ingest
            .validate(request(&zeros, 1_000_000..1_000_040), now)
            .unwrap_err();
        assert!(matches!(err, ServiceError::ResourceExhausted(_)), "{err}");
        // A batch straddling one epoch boundary is still accepted.
        let ok = ingest.validate(request(&zeros, [1_000_050, 1_000_051].into_iter()), now);
        assert_eq!(ok.unwrap().deltas.len(), 2);
    }

    /// Regression: a Submit of 600 one-byte GRR reports, each naming another
    /// plausible epoch of a metric with 2^16 counters, built 512 dense tables of
    /// 2^16 counters (256 MiB to allocate and scan for a request of a few KB)
    /// before hitting RESOURCE_EXHAUSTED. Mechanisms with a sparse form now
    /// build dense tables for the first few keys only; the batch is accepted
    /// with one counter per key.
    #[test]
    fn batch_spread_over_many_epochs_of_a_small_grr_metric_stays_sparse() {
        let ingest = ingest_with(spec_with_epochs(MechanismSpec::Grr {
            domain_size: 1 << 16,
        }));
        let now = 1_000_700;
        let spread = ingest
            .validate(request(&Report::Index(7), 1_000_000..1_000_600), now)
            .unwrap();
        assert_eq!(spread.deltas.len(), 600);
        assert!(
            spread
                .deltas
                .iter()
                .all(|(_, d)| d.reports == 1 && d.cells == [(7, 1)])
        );
    }

    /// Regression: every batch of a metric with a large counter table carried a
    /// dense copy of the whole table (2^24 counters, 128 MiB, for one report),
    /// through the writer queue and the commit. Now a batch's delta holds one
    /// counter per touched cell, whatever the metric's size and epoch spread.
    #[test]
    fn deltas_of_large_metrics_grow_with_the_batch_not_the_table() {
        let ingest = ingest_with(spec_with_epochs(MechanismSpec::Grr {
            domain_size: ldp_sdk::mechanism::limits::MAX_DOMAIN_SIZE,
        }));
        let now = 1_000_100;
        let one = ingest
            .validate(request(&Report::Index(9), [1_000_050].into_iter()), now)
            .unwrap();
        assert_eq!(one.deltas[0].1.cells, vec![(9, 1)]);
        // 100 epochs of the largest metric in one batch: 100 counters in all.
        let spread = ingest
            .validate(request(&Report::Index(7), 1_000_000..1_000_100), now)
            .unwrap();
        assert_eq!(spread.deltas.len(), 100);
        assert!(spread.deltas.iter().all(|(_, d)| d.cells == [(7, 1)]));
    }

    /// While validated deltas fill the queued-memory budget, a further Submit
    /// waits (back-pressure) instead of adding to it; it proceeds once memory
    /// is released. (This test's ingest has no writer, so the released submit
    /// ends in UNAVAILABLE.)
    #[tokio::test]
    async fn submits_wait_while_queued_deltas_fill_the_memory_budget() {
        let ingest = Arc::new(ingest_with(spec_with_epochs(MechanismSpec::Grr {
            domain_size: 16,
        })));
        let all = Arc::clone(&ingest.memory)
            .acquire_many_owned((QUEUED_DELTA_BYTES / PERMIT_BYTES) as u32)
            .await
            .unwrap();
        let submit = tokio::spawn({
            let ingest = Arc::clone(&ingest);
            async move {
                ingest
                    .submit(
                        request(&Report::Index(3), [1_000_000].into_iter()),
                        1_000_100,
                    )
                    .await
            }
        });
        // Validating one report takes microseconds (on the blocking pool); give
        // it 100 ms. A slow machine can only make this pass, never fail.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(!submit.is_finished(), "submit did not wait for memory");
        drop(all);
        let result = submit.await.unwrap();
        assert!(
            matches!(result, Err(ServiceError::Unavailable(_))),
            "{result:?}"
        );
    }
}
