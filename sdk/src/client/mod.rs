//! The device's network client (feature `grpc`): fetches the published metric
//! specs, randomizes records on the device through a [`Schema`], batches the
//! reports, keeps them in an on-disk queue, and delivers them over gRPC with
//! retries.
//!
//! # Guarantees
//! - **Nothing raw leaves the device, or is written to its disk**: a record is
//!   randomized by [`Schema::encode`] before it is queued; the queue holds only
//!   protobuf `Report`s.
//! - **Nothing is lost** by an offline period or a process crash: every record's
//!   reports are in the queue's write-ahead log before [`Client::record`]
//!   returns, and a batch leaves the queue only when the server has acknowledged
//!   it (the server acknowledges after its commit). See the `queue` module docs
//!   for the one power-loss window.
//! - **Nothing is counted twice**: a batch id (16 random bytes from the OS
//!   generator) is assigned when the batch is sealed and stored with it; every
//!   retry, including one by a new process after a crash between send and
//!   acknowledgement, reuses it, and the server acknowledges a known id without
//!   counting it again.
//!
//! # Batching and retries
//! The open batch is sealed when it holds at least [`ClientConfig::batch_size`]
//! reports (records are never split across batches) or when its first report is
//! older than [`ClientConfig::batch_interval`]. One background task sends sealed
//! batches oldest first, one at a time. `UNAVAILABLE`, `DEADLINE_EXCEEDED` and
//! `ABORTED` are retried with exponential backoff and jitter ([`RetryPolicy`])
//! for as long as it takes. `RESOURCE_EXHAUSTED` is retried the same way (a
//! server may be over quota for a while), but only
//! [`RetryPolicy::max_exhausted`] times for one batch: a batch larger
//! than the server's limits never fits, and must not block the queue forever.
//! Such a batch, and one refused with any other status (for example
//! `INVALID_ARGUMENT`: retrying cannot help), is moved to the queue's
//! `rejected/` folder (the newest 64 are kept) and counted in
//! [`ClientStats::batches_rejected`].
//!
//! # Privacy
//! Each report has its attribute's epsilon; a record costs the sum over the
//! attributes reported (see [`crate::schema`]). With a
//! [`ClientConfig::device_ledger`], that cost is debited from the device's
//! [`DeviceLedger`] (one all-or-nothing durable write per record) *before*
//! anything is randomized or queued; a refused debit is [`ClientError::Budget`]
//! and queues nothing. The operator's device budgets published with the metrics
//! (`Admin.SetDeviceBudget`) are registered in the ledger at connect and again
//! every [`ClientConfig::budget_refresh`] (an hour by default) while the client
//! runs; the ledger keeps the tighter of a stored and a published budget, so a
//! server can tighten but never loosen what the device enforces, and a
//! tightened budget reaches a long-running device within one refresh period.
//!
//! Metrics published with `memoize = true` need a [`ClientConfig::memo`]: an
//! unchanged value is sent again as its memoized report (free: nothing new is
//! revealed), a new value gets a fresh, charged report that is memoized
//! durably before it is queued (see [`crate::memo`] for what this protects). [`Client::connect`] draws all
//! randomness from [`LdpRng::from_os`]; [`Client::connect_with_rng`] exists for
//! simulations with [`LdpRng::seeded_for_simulation`].
//!
//! ```no_run
//! # async fn demo(schema: ldp_sdk::schema::Schema) -> Result<(), ldp_sdk::client::ClientError> {
//! use ldp_sdk::{Client, client::ClientConfig, schema::Record};
//! let config = ClientConfig::new("http://127.0.0.1:50051", "/var/lib/app/ldp-queue");
//! let client = Client::connect(config, schema).await?;
//! client.record(&Record::new().with("color", "green"))?;
//! client.flush().await?;
//! # Ok(()) }
//! ```

mod queue;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ldp_proto::v1 as pb;
use pb::collector_client::CollectorClient;
use rand::RngExt;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::LdpRng;
use crate::budget::DeviceLedger;
use crate::memo::Memo;
use crate::metric::MetricSpec;
use crate::schema::{Clamped, Device, EncodedRecord, Record, Schema, SchemaError, Value};
use crate::wire::{self, ReportHeader};
use queue::Queue;

/// Largest gRPC message the client encodes or decodes.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Everything that can go wrong in the client.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A record did not fit the schema, or the published metrics do not match it.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// A spec or report could not be converted (e.g. an unknown mechanism).
    #[error(transparent)]
    Sdk(#[from] crate::Error),
    /// The endpoint is not a valid URI.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    Endpoint {
        /// The endpoint given.
        endpoint: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The server could not be reached and no metric specs were cached.
    #[error("server unavailable and no cached metric specs: {0}")]
    Unavailable(String),
    /// The server answered with a permanent error status.
    #[error("server error {code:?}: {message}")]
    Status {
        /// The gRPC status code.
        code: Code,
        /// The status message.
        message: String,
    },
    /// [`Client::flush`] gave up waiting; the batches stay queued and are sent later.
    #[error("{batches} batches ({reports} reports) still queued; last error: {last_error}")]
    Pending {
        /// Sealed batches not yet acknowledged.
        batches: usize,
        /// Reports in them.
        reports: usize,
        /// The last send error, if any.
        last_error: String,
    },
    /// A queue file operation failed.
    #[error("queue i/o error on {path}: {reason}")]
    Io {
        /// The file or folder.
        path: String,
        /// The operating system's message.
        reason: String,
    },
    /// A queue file could not be decoded.
    #[error("corrupt queue file: {0}")]
    Corrupt(String),
    /// The background sender stopped (the runtime is shutting down).
    #[error("the client's sender task has stopped")]
    Stopped,
    /// The device ledger refused the record's debit (typically
    /// [`crate::Error::BudgetExhausted`], or a metric without a registered
    /// budget) or could not persist it; none of the record's reports were queued.
    #[error("device privacy budget: {0}")]
    Budget(crate::Error),
}

/// Exponential backoff with jitter: before retry `n` (0-based) the client waits a
/// uniform time in `[b/2, b]` with `b = min(max, initial * 2^n)`; half of the wait
/// is fixed so it always grows, half is random so devices do not retry in step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Base delay before the first retry.
    pub initial: Duration,
    /// Cap on the delay.
    pub max: Duration,
    /// `RESOURCE_EXHAUSTED` answers to one batch after which it is
    /// treated as permanently refused.
    pub max_exhausted: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
            max_exhausted: 10,
        }
    }
}

impl RetryPolicy {
    /// The wait before retry `attempt` (0-based), jittered with `rng`.
    pub fn delay(&self, attempt: u32, rng: &mut LdpRng) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(31));
        let bound = self.initial.saturating_mul(factor).min(self.max);
        let half = bound / 2;
        let jitter_ns = rng.random_range(0..=u64::try_from(half.as_nanos()).unwrap_or(u64::MAX));
        half + Duration::from_nanos(jitter_ns)
    }
}

/// Whether a failed call with this status is retried (transient overload or
/// unreachability) rather than treated as a permanent refusal.
pub fn is_retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::ResourceExhausted | Code::DeadlineExceeded | Code::Aborted
    )
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The aggregator's Collector endpoint, e.g. `http://127.0.0.1:50051`.
    pub endpoint: String,
    /// Folder of the on-disk queue (one per device or process; not shared).
    pub queue_dir: PathBuf,
    /// Seal a batch once it holds at least this many reports.
    pub batch_size: usize,
    /// Seal a batch once its first report is this old.
    pub batch_interval: Duration,
    /// Backoff between retries.
    pub retry: RetryPolicy,
    /// Timeout of one gRPC call.
    pub request_timeout: Duration,
    /// How long [`Client::flush`] waits for acknowledgements before reporting
    /// [`ClientError::Pending`] (the batches stay queued either way).
    pub flush_timeout: Duration,
    /// The device's privacy-budget ledger: when set, every record's reports are
    /// debited (durably) before they are queued, and a refused debit queues
    /// nothing. Every metric of the schema needs a registered budget.
    pub device_ledger: Option<Arc<DeviceLedger>>,
    /// The device's memo of responses, required when a metric of the schema is
    /// memoized.
    pub memo: Option<Arc<Memo>>,
    /// PEM certificate(s) of the CA that signed the server's certificate. With
    /// it, TLS trusts only this CA (pinning a private deployment; the endpoint
    /// must be `https://`, else connecting fails); without it, an `https://`
    /// endpoint is verified against the bundled Mozilla roots (webpki-roots).
    /// `http://` endpoints are plaintext (tests, loopback).
    pub tls_ca_pem: Option<Vec<u8>>,
    /// How often a client with a [`ClientConfig::device_ledger`] fetches the
    /// published device budgets again (`GetMetrics`) and registers them; `None`
    /// fetches them only at connect. A failed fetch is retried at the next period.
    pub budget_refresh: Option<Duration>,
}

impl ClientConfig {
    /// Defaults: batches of 500 reports or 5 seconds, 10-second calls, flushes
    /// that wait up to a minute, the default [`RetryPolicy`], and published
    /// device budgets fetched again every hour.
    pub fn new(endpoint: impl Into<String>, queue_dir: impl Into<PathBuf>) -> Self {
        Self {
            endpoint: endpoint.into(),
            queue_dir: queue_dir.into(),
            batch_size: 500,
            batch_interval: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(10),
            flush_timeout: Duration::from_secs(60),
            device_ledger: None,
            memo: None,
            tls_ca_pem: None,
            budget_refresh: Some(Duration::from_secs(3600)),
        }
    }

    /// Debits every record from `ledger` before queueing it (see
    /// [`ClientConfig::device_ledger`]).
    pub fn with_device_ledger(mut self, ledger: Arc<DeviceLedger>) -> Self {
        self.device_ledger = Some(ledger);
        self
    }

    /// Memoizes the responses of memoized metrics in `memo` (see
    /// [`ClientConfig::memo`]).
    pub fn with_memo(mut self, memo: Arc<Memo>) -> Self {
        self.memo = Some(memo);
        self
    }

    /// Verifies the server with this CA only (see [`ClientConfig::tls_ca_pem`]).
    pub fn with_tls_ca(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_ca_pem = Some(pem.into());
        self
    }
}

/// Counters of one client since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Records encoded and queued.
    pub records: u64,
    /// Reports queued.
    pub reports: u64,
    /// Batches acknowledged by the server (including duplicates).
    pub batches_acked: u64,
    /// Reports the server newly stored.
    pub reports_accepted: u64,
    /// Acknowledged batches the server had already stored (a retry after a lost ack).
    pub batches_duplicate: u64,
    /// Batches refused permanently (kept in `rejected/`).
    pub batches_rejected: u64,
    /// Failed attempts that were retried.
    pub retries: u64,
    /// Periodic fetches of the published device budgets that were registered.
    pub budget_refreshes: u64,
    /// Periodic fetches of the published device budgets that failed (the
    /// server unreachable, or a malformed budget; see [`Client::budget_refresh_error`]).
    pub budget_refresh_failures: u64,
}

/// What recording one record did.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// Reports queued for it.
    pub reports: usize,
    /// Its privacy loss: the sum of the epsilons of the fresh reports (what the
    /// ledger was charged).
    pub epsilon: f64,
    /// Reports that are memoized reports of unchanged values (free).
    pub reused: usize,
    /// Numbers clamped to their bounds (only with clamping enabled in the schema).
    pub clamped: Vec<Clamped>,
}

struct Encoder {
    schema: Schema,
    rng: LdpRng,
    clock_offset: i64,
}

struct Outbox {
    queue: Queue,
    opened_at: Option<Instant>,
}

#[derive(Default)]
struct Status {
    stats: ClientStats,
    last_error: String,
    refresh_error: Option<String>,
}

struct Shared {
    config: ClientConfig,
    /// The bound specs, in schema order (fixed after connecting).
    metrics: Vec<MetricSpec>,
    encoder: Mutex<Encoder>,
    outbox: Mutex<Outbox>,
    status: Mutex<Status>,
    wake: Notify,
    progress: watch::Sender<u64>,
}

/// A device's connection to an aggregator. See the module docs for guarantees.
///
/// Dropping the client stops its sender; queued batches stay on disk and are
/// sent by the next client opened on the same queue folder.
pub struct Client {
    shared: Arc<Shared>,
    sender: JoinHandle<()>,
    refresher: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.shared.config.endpoint)
            .field("queue_dir", &self.shared.config.queue_dir)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Opens the queue (recovering what a previous process left), fetches the
    /// schema's metric specs with `GetMetrics` and binds the schema to them, and
    /// starts the background sender. When the server is unreachable, the specs
    /// saved by the last successful fetch are used, so a device can record
    /// offline; without them this is [`ClientError::Unavailable`].
    /// Randomness comes from [`LdpRng::from_os`]. Must run inside a tokio runtime.
    pub async fn connect(config: ClientConfig, schema: Schema) -> Result<Self, ClientError> {
        Self::connect_with_rng(config, schema, LdpRng::from_os()).await
    }

    /// [`Client::connect`] with a caller-supplied generator for the randomizers:
    /// for simulations with [`LdpRng::seeded_for_simulation`] only (seeded
    /// reports carry no privacy). Batch ids and jitter still come from the OS.
    pub async fn connect_with_rng(
        config: ClientConfig,
        mut schema: Schema,
        rng: LdpRng,
    ) -> Result<Self, ClientError> {
        let queue = Queue::open(&config.queue_dir)?;
        let channel = endpoint(&config)?
            .connect_timeout(config.request_timeout)
            .connect_lazy();
        let mut grpc = CollectorClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let names = schema.metrics().into_iter().map(|m| m.name).collect();
        let mut request = tonic::Request::new(pb::GetMetricsRequest { names });
        request.set_timeout(config.request_timeout);
        let (published, clock_offset) = match grpc.get_metrics(request).await {
            Ok(response) => {
                let response = response.into_inner();
                queue.save_metrics(&response)?;
                let offset = response.server_time.saturating_sub(unix_now());
                (response, offset)
            }
            Err(status) if is_retryable(status.code()) => match queue.load_metrics()? {
                Some(cached) => (cached, 0),
                None => return Err(ClientError::Unavailable(status.to_string())),
            },
            Err(status) => {
                return Err(ClientError::Status {
                    code: status.code(),
                    message: status.message().to_string(),
                });
            }
        };
        let specs = published
            .metrics
            .into_iter()
            .map(wire::metric_from_proto)
            .collect::<Result<Vec<MetricSpec>, _>>()?;
        schema.bind(&specs)?;
        if config.memo.is_none()
            && let Some(a) = schema.attributes().iter().find(|a| a.memoized())
        {
            return Err(SchemaError::NeedsMemo(a.name().to_owned()).into());
        }
        if let Some(ledger) = &config.device_ledger {
            register_budgets(ledger, &schema, &published.device_budgets)?;
        }
        let (progress, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            config,
            metrics: schema.metrics(),
            encoder: Mutex::new(Encoder {
                schema,
                rng,
                clock_offset,
            }),
            outbox: Mutex::new(Outbox {
                queue,
                opened_at: None,
            }),
            status: Mutex::new(Status::default()),
            wake: Notify::new(),
            progress,
        });
        let refresher =
            match (&shared.config.device_ledger, shared.config.budget_refresh) {
                (Some(_), Some(period)) if !period.is_zero() => Some(tokio::spawn(
                    run_budget_refresh(Arc::clone(&shared), grpc.clone(), period),
                )),
                _ => None,
            };
        let sender = tokio::spawn(run_sender(Arc::clone(&shared), grpc));
        Ok(Self {
            shared,
            sender,
            refresher,
        })
    }

    /// The metric specs the schema is bound to (with server ids and versions).
    pub fn metrics(&self) -> &[MetricSpec] {
        &self.shared.metrics
    }

    /// Randomizes `record` and queues its reports. Returns once they are in the
    /// queue's log; sending happens in the background.
    pub fn record(&self, record: &Record) -> Result<Recorded, ClientError> {
        self.encode_and_enqueue(|schema, rng, device| schema.encode_on_device(record, rng, device))
    }

    /// [`Client::record`] with the values in schema order (no name lookups).
    pub fn record_values(&self, values: &[Value]) -> Result<Recorded, ClientError> {
        self.encode_and_enqueue(|schema, rng, device| {
            schema.encode_values_on_device(values, rng, device)
        })
    }

    /// Encodes under the encoder lock (debiting the ledger and consulting the
    /// memo for one record at a time), then queues the reports.
    fn encode_and_enqueue(
        &self,
        encode: impl FnOnce(&Schema, &mut LdpRng, &Device<'_>) -> Result<EncodedRecord, SchemaError>,
    ) -> Result<Recorded, ClientError> {
        let config = &self.shared.config;
        let mut enc = lock(&self.shared.encoder);
        let Encoder {
            schema,
            rng,
            clock_offset,
        } = &mut *enc;
        let unix_time = unix_now() + *clock_offset;
        let device = Device {
            ledger: config.device_ledger.as_deref(),
            memo: config.memo.as_deref(),
            now: u64::try_from(unix_now()).unwrap_or(0),
        };
        let encoded = encode(schema, rng, &device).map_err(|e| match e {
            SchemaError::Budget(e) => ClientError::Budget(e),
            e => ClientError::Schema(e),
        })?;
        let epsilon = encoded.epsilon_spent(schema);
        drop(enc);
        self.enqueue(encoded, epsilon, unix_time)
    }

    fn enqueue(
        &self,
        encoded: EncodedRecord,
        epsilon: f64,
        unix_time: i64,
    ) -> Result<Recorded, ClientError> {
        let mut reports = Vec::with_capacity(encoded.reports.len());
        for r in &encoded.reports {
            let spec = &self.shared.metrics[r.attribute];
            let header = ReportHeader {
                metric_id: r.metric_id,
                metric_version: r.metric_version,
                epoch: spec.epoch_at(unix_time),
            };
            reports.push(wire::report_to_proto(header, &r.report)?);
        }
        let n = reports.len();
        let reused = encoded.reports.iter().filter(|r| r.reused).count();
        let sealed = {
            let mut outbox = lock(&self.shared.outbox);
            outbox.queue.append(reports)?;
            outbox.opened_at.get_or_insert_with(Instant::now);
            if outbox.queue.open_len() >= self.shared.config.batch_size {
                outbox.opened_at = None;
                outbox.queue.seal()?.is_some()
            } else {
                false
            }
        };
        {
            let mut status = lock(&self.shared.status);
            status.stats.records += 1;
            status.stats.reports += n as u64;
        }
        if sealed {
            self.shared.wake.notify_one();
        }
        Ok(Recorded {
            reports: n,
            epsilon,
            reused,
            clamped: encoded.clamped,
        })
    }

    /// Seals the open batch and waits until every queued batch is acknowledged (or
    /// rejected), up to [`ClientConfig::flush_timeout`]. On timeout the batches stay
    /// queued and keep being retried: [`ClientError::Pending`].
    pub async fn flush(&self) -> Result<ClientStats, ClientError> {
        let mut progress = self.shared.progress.subscribe();
        {
            let mut outbox = lock(&self.shared.outbox);
            outbox.opened_at = None;
            outbox.queue.seal()?;
        }
        self.shared.wake.notify_one();
        let deadline = tokio::time::Instant::now() + self.shared.config.flush_timeout;
        loop {
            let (batches, reports) = lock(&self.shared.outbox).queue.pending();
            if batches == 0 {
                return Ok(self.stats());
            }
            match tokio::time::timeout_at(deadline, progress.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(ClientError::Stopped),
                Err(_) => {
                    return Err(ClientError::Pending {
                        batches,
                        reports,
                        last_error: lock(&self.shared.status).last_error.clone(),
                    });
                }
            }
        }
    }

    /// Why the last periodic device-budget fetch failed; `None` after a
    /// success (or before the first fetch).
    pub fn budget_refresh_error(&self) -> Option<String> {
        lock(&self.shared.status).refresh_error.clone()
    }

    /// Counters since this client was created.
    pub fn stats(&self) -> ClientStats {
        lock(&self.shared.status).stats
    }

    /// Sealed batches and reports not yet acknowledged, and reports in the open batch.
    pub fn pending(&self) -> (usize, usize, usize) {
        let outbox = lock(&self.shared.outbox);
        let (batches, reports) = outbox.queue.pending();
        (batches, reports, outbox.queue.open_len())
    }

    /// Flushes, then stops the sender.
    pub async fn close(self) -> Result<ClientStats, ClientError> {
        self.flush().await
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.sender.abort();
        if let Some(refresher) = &self.refresher {
            refresher.abort();
        }
    }
}

/// Every `period`, fetches the published device budgets and registers them in
/// the ledger (tighter wins). Failures are counted
/// ([`ClientStats::budget_refresh_failures`], [`Client::budget_refresh_error`])
/// and retried at the next period; the budgets already registered stay in force.
async fn run_budget_refresh(
    shared: Arc<Shared>,
    mut grpc: CollectorClient<Channel>,
    period: Duration,
) {
    let Some(ledger) = shared.config.device_ledger.clone() else {
        return;
    };
    let names: Vec<String> = shared.metrics.iter().map(|m| m.name.clone()).collect();
    loop {
        tokio::time::sleep(period).await;
        let mut request = tonic::Request::new(pb::GetMetricsRequest {
            names: names.clone(),
        });
        request.set_timeout(shared.config.request_timeout);
        let outcome = match grpc.get_metrics(request).await {
            Ok(response) => {
                let response = response.into_inner();
                let registered = {
                    let encoder = lock(&shared.encoder);
                    register_budgets(&ledger, &encoder.schema, &response.device_budgets)
                };
                // A later offline start then uses these budgets too.
                registered.and_then(|()| lock(&shared.outbox).queue.save_metrics(&response))
            }
            Err(status) => Err(ClientError::Status {
                code: status.code(),
                message: status.message().to_string(),
            }),
        };
        let mut status = lock(&shared.status);
        match outcome {
            Ok(()) => {
                status.stats.budget_refreshes += 1;
                status.refresh_error = None;
            }
            Err(e) => {
                status.stats.budget_refresh_failures += 1;
                status.refresh_error = Some(e.to_string());
            }
        }
    }
}

/// The background sender: seals batches by age and sends sealed batches in order.
async fn run_sender(shared: Arc<Shared>, mut grpc: CollectorClient<Channel>) {
    let interval = shared.config.batch_interval;
    let mut jitter = LdpRng::from_os();
    loop {
        let front = {
            let mut outbox = lock(&shared.outbox);
            if outbox.opened_at.is_some_and(|t| t.elapsed() >= interval) {
                outbox.opened_at = None;
                if let Err(e) = outbox.queue.seal() {
                    lock(&shared.status).last_error = e.to_string();
                }
            }
            outbox.queue.front()
        };
        let (seq, request) = match front {
            Ok(Some(batch)) => batch,
            Ok(None) => {
                let nap = interval
                    .min(Duration::from_millis(250))
                    .max(Duration::from_millis(1));
                tokio::select! {
                    () = shared.wake.notified() => {}
                    () = tokio::time::sleep(nap) => {}
                }
                continue;
            }
            Err(e) => {
                lock(&shared.status).last_error = e.to_string();
                shared.progress.send_modify(|g| *g += 1);
                tokio::time::sleep(shared.config.retry.max).await;
                continue;
            }
        };
        send_batch(&shared, &mut grpc, &mut jitter, seq, request).await;
        shared.progress.send_modify(|g| *g += 1);
    }
}

/// Sends one batch until it is acknowledged or permanently refused.
async fn send_batch(
    shared: &Shared,
    grpc: &mut CollectorClient<Channel>,
    jitter: &mut LdpRng,
    seq: u64,
    request: pb::SubmitRequest,
) {
    let mut attempt = 0;
    let mut exhausted = 0;
    loop {
        let mut call = tonic::Request::new(request.clone());
        call.set_timeout(shared.config.request_timeout);
        match grpc.submit(call).await {
            Ok(response) => {
                let response = response.into_inner();
                if let Err(e) = lock(&shared.outbox).queue.ack(seq) {
                    lock(&shared.status).last_error = e.to_string();
                }
                let mut status = lock(&shared.status);
                status.stats.batches_acked += 1;
                status.stats.reports_accepted += u64::from(response.accepted);
                status.stats.batches_duplicate += u64::from(response.duplicate);
                return;
            }
            Err(e)
                if is_retryable(e.code())
                    && (e.code() != Code::ResourceExhausted || {
                        exhausted += 1;
                        exhausted < shared.config.retry.max_exhausted
                    }) =>
            {
                {
                    let mut status = lock(&shared.status);
                    status.stats.retries += 1;
                    status.last_error = e.to_string();
                }
                shared.progress.send_modify(|g| *g += 1);
                let wait = shared.config.retry.delay(attempt, jitter);
                attempt = attempt.saturating_add(1);
                tokio::select! {
                    () = shared.wake.notified() => {}
                    () = tokio::time::sleep(wait) => {}
                }
            }
            Err(e) => {
                {
                    let mut status = lock(&shared.status);
                    status.stats.batches_rejected += 1;
                    status.last_error = e.to_string();
                }
                if let Err(e) = lock(&shared.outbox).queue.reject(seq) {
                    lock(&shared.status).last_error = e.to_string();
                }
                return;
            }
        }
    }
}

/// The server endpoint, with TLS for `https://` URLs or a pinned CA.
fn endpoint(config: &ClientConfig) -> Result<Endpoint, ClientError> {
    tls_endpoint(&config.endpoint, config.tls_ca_pem.as_deref())
}

/// The gRPC endpoint for `url` as every ldp client connects: `https://` is TLS,
/// trusting only `ca_pem` when given and the bundled Mozilla roots
/// (webpki-roots) otherwise; `http://` is plaintext (loopback, tests). A CA with
/// an `http://` URL is refused: the connection would silently be plaintext.
pub fn tls_endpoint(url: &str, ca_pem: Option<&[u8]>) -> Result<Endpoint, ClientError> {
    let invalid = |e: tonic::transport::Error| ClientError::Endpoint {
        endpoint: url.to_owned(),
        reason: e.to_string(),
    };
    let endpoint = Endpoint::from_shared(url.to_owned()).map_err(invalid)?;
    let https = url
        .get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"));
    let tls = match ca_pem {
        Some(_) if !https => {
            return Err(ClientError::Endpoint {
                endpoint: url.to_owned(),
                reason: "a CA certificate is given but the URL is not https://, so the \
                         connection would not use TLS"
                    .into(),
            });
        }
        Some(pem) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)),
        None if https => ClientTlsConfig::new().with_webpki_roots(),
        None => return Ok(endpoint),
    };
    endpoint.tls_config(tls).map_err(invalid)
}

/// Registers the published device budgets of the schema's metrics in the
/// ledger (which keeps the tighter of a stored and a published budget).
/// Every valid budget is registered even when another one is malformed (which
/// is then the error returned), so one bad entry cannot keep a tighter budget
/// of another metric out of the ledger.
fn register_budgets(
    ledger: &DeviceLedger,
    schema: &Schema,
    published: &[pb::DeviceBudget],
) -> Result<(), ClientError> {
    let mut first_error = None;
    for budget in published {
        let registered = wire::device_budget_from_proto(budget)
            .map_err(ClientError::from)
            .and_then(|(metric, policy)| {
                let ours = schema
                    .attributes()
                    .iter()
                    .any(|a| a.metric().name == metric);
                if ours {
                    ledger
                        .register(&metric, policy)
                        .map_err(ClientError::Budget)?;
                }
                Ok(())
            });
        if let Err(e) = registered {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Locks a mutex; a panic elsewhere cannot corrupt these plain-data states, so a
/// poisoned lock is recovered rather than propagated.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
