//! The aggregator as a library: start a complete server in-process.
//!
//! [`Server::start`] opens the store (running migrations), loads metrics and
//! closed epochs, starts the group-commit writer, binds the listener (port 0
//! picks an ephemeral port) and serves Collector, Analytics, Admin, the standard
//! health service and server reflection. It returns a [`RunningServer`] with the
//! bound address and a graceful [`RunningServer::shutdown`]: stop accepting,
//! finish in-flight calls, drain the writer (every queued batch is committed and
//! acknowledged), close the database. `ldp serve`, the demo and the end-to-end
//! tests all start servers this way.
//!
//! ```no_run
//! # async fn run() -> Result<(), ldp_aggregator::server::ServerError> {
//! use std::path::PathBuf;
//! use ldp_aggregator::{server::{Config, Server}, service::auth::Token};
//! let token = Token::new("secret").unwrap();
//! let running = Server::start(Config::new("127.0.0.1:0".parse().unwrap(), PathBuf::from("ldp.db"), &token)).await?;
//! println!("listening on {}", running.local_addr());
//! running.shutdown().await?;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ldp_proto::v1 as pb;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;

use crate::ingest::{self, IngestConfig, unix_now};
use crate::registry::{ClosedEpochs, Registry};
use crate::service::auth::{BearerAuth, Token, TokenHash};
use crate::service::observe::Observed;
use crate::service::{State, admin, analytics, collector};
use crate::store::{Database, Store, StoreError};
use crate::telemetry::Telemetry;

/// Default limit on one gRPC message, both directions: 16 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Everything a server needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on (port 0 = ephemeral).
    pub listen: SocketAddr,
    /// The database: a SQLite file (created if missing) or a PostgreSQL URL.
    pub db: Database,
    /// Digest of the bearer token for Analytics and Admin.
    pub token_hash: TokenHash,
    /// Ingest limits.
    pub ingest: IngestConfig,
    /// Largest accepted (and sent) gRPC message in bytes; larger requests get
    /// `RESOURCE_EXHAUSTED`.
    pub max_message_bytes: usize,
    /// How long raw reports are kept; `None` keeps none.
    pub raw_retention: Option<Duration>,
    /// PEM certificate chain and private key for TLS; `None` serves plaintext.
    pub tls: Option<TlsFiles>,
}

/// Paths of a PEM certificate chain and its private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
}

impl Config {
    /// Defaults: 10,000 reports per batch, 16 MiB messages, no raw retention, no TLS.
    pub fn new(listen: SocketAddr, db: impl Into<Database>, token: &Token) -> Self {
        Self {
            listen,
            db: db.into(),
            token_hash: TokenHash::of(token),
            ingest: IngestConfig::default(),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            raw_retention: None,
            tls: None,
        }
    }
}

/// Why a server could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The database could not be opened, migrated or read.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    /// A stored metric could not be loaded.
    #[error("loading metrics: {0}")]
    Load(String),
    /// Binding the listener or reading TLS files failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The transport failed (TLS setup, serving).
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Reflection could not be built from the descriptor set.
    #[error("reflection: {0}")]
    Reflection(String),
    /// The serving task panicked.
    #[error("server task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// Entry point of the library server.
#[derive(Debug)]
pub struct Server;

/// A started server.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl RunningServer {
    /// The bound address (with the actual port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr` (or `https://` is up to the caller with TLS).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Graceful shutdown: stop accepting, finish in-flight calls, commit and
    /// acknowledge every queued batch, close the database.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await?
    }
}

impl Server {
    /// Opens the store and starts serving; see the module docs.
    ///
    /// It takes no one-server-per-database lock: the server keeps metrics,
    /// device budgets and closed epochs in memory, so a second server on the
    /// same database (SQLite file or PostgreSQL schema) would miss what the
    /// first changes. `ldp serve` takes that lock (`<db>.lock`, or a PostgreSQL
    /// advisory lock checked every `--lock-check-seconds`) before calling this;
    /// an embedder must ensure the same itself.
    pub async fn start(config: Config) -> Result<RunningServer, ServerError> {
        let store: Arc<dyn Store> = config.db.open().await?;
        let registry = Arc::new(Registry::default());
        for spec in store.load_metrics().await? {
            registry
                .insert(spec)
                .map_err(|e| ServerError::Load(e.to_string()))?;
        }
        for (name, policy) in store.device_budgets().await? {
            registry.set_device_budget(&name, policy);
        }
        let closed = Arc::new(ClosedEpochs::default());
        for (metric_id, epoch) in store.closed_epochs().await? {
            closed.insert(metric_id, epoch);
        }
        let telemetry = Arc::new(Telemetry::default());
        let mut ingest_config = config.ingest.clone();
        ingest_config.retain_raw = config.raw_retention.is_some();
        let (ingest, writer) = ingest::start(
            ingest_config,
            store.clone(),
            registry.clone(),
            closed,
            telemetry.clone(),
        );
        let state = Arc::new(State {
            store: store.clone(),
            registry,
            ingest,
            telemetry: telemetry.clone(),
        });

        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let router = build_router(&config, state, &telemetry).await?;
        let retention = config.raw_retention.map(|period| {
            let store = store.clone();
            tokio::spawn(purge_raw_reports(store, period))
        });

        let (stop, stopped) = oneshot::channel::<()>();
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let task = tokio::spawn(async move {
            let served = router
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await;
            tracing::info!("listener closed; draining the writer");
            if let Some(r) = retention {
                r.abort();
            }
            writer.stop().await;
            store.close().await?;
            tracing::info!("database closed");
            served.map_err(ServerError::from)
        });
        tracing::info!(%addr, db = %config.db, tls = config.tls.is_some(), "serving");
        Ok(RunningServer {
            addr,
            stop: Some(stop),
            task,
        })
    }
}

async fn build_router(
    config: &Config,
    state: Arc<State>,
    telemetry: &Arc<Telemetry>,
) -> Result<tonic::transport::server::Router, ServerError> {
    let limit = config.max_message_bytes;
    let auth = BearerAuth::new(config.token_hash.clone());
    let collector =
        pb::collector_server::CollectorServer::new(collector::Collector::new(state.clone()))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit);
    let analytics = InterceptedService::new(
        pb::analytics_server::AnalyticsServer::new(analytics::Analytics::new(state.clone()))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
        auth.clone(),
    );
    let admin = InterceptedService::new(
        pb::admin_server::AdminServer::new(admin::Admin::new(state))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
        auth,
    );
    let (health, health_service) = tonic_health::server::health_reporter();
    for name in ["ldp.v1.Collector", "ldp.v1.Analytics", "ldp.v1.Admin"] {
        health
            .set_service_status(name, tonic_health::ServingStatus::Serving)
            .await;
    }
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServerError::Reflection(e.to_string()))?;

    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &config.tls {
        let cert = tokio::fs::read(&tls.cert).await?;
        let key = tokio::fs::read(&tls.key).await?;
        let identity = tonic::transport::Identity::from_pem(cert, key);
        builder =
            builder.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?;
    }
    let t = |_: ()| telemetry.clone();
    Ok(builder
        .add_service(Observed::new(collector, t(())))
        .add_service(Observed::new(analytics, t(())))
        .add_service(Observed::new(admin, t(())))
        .add_service(health_service)
        .add_service(reflection))
}

/// Deletes raw reports older than `period`, checking every tenth of it (at
/// least every second, at most every minute).
async fn purge_raw_reports(store: Arc<dyn Store>, period: Duration) {
    let every = (period / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let cutoff = unix_now().saturating_sub(i64::try_from(period.as_secs()).unwrap_or(i64::MAX));
        match store.purge_raw(cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(batches = n, "purged raw reports past retention"),
            Err(e) => tracing::warn!(error = %e, "raw report purge failed"),
        }
    }
}
