//! Helpers shared by the end-to-end tests: an in-process aggregator on an
//! ephemeral loopback port with its own temporary directory, authenticated
//! clients for it, and report encoding with the SDK.
//!
//! Every [`TestServer`] is independent (own port, own database), so tests run
//! in parallel without interfering.

use std::path::{Path, PathBuf};

use ldp_aggregator::cli::connect::{AdminClient, AnalyticsClient};
use ldp_aggregator::server::{Config, DEFAULT_MAX_MESSAGE_BYTES, RunningServer, Server};
use ldp_aggregator::service::auth::{ClientAuth, Token};
use ldp_proto::v1 as pb;
use ldp_sdk::metric::MetricSpec;
use ldp_sdk::wire::{self, ReportHeader};
use ldp_sdk::{LdpRng, mechanism::Mechanism};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

/// The bearer token every test server accepts.
pub const TEST_TOKEN: &str = "e2e-test-token";

/// An aggregator running in this process.
#[derive(Debug)]
pub struct TestServer {
    running: RunningServer,
    /// The database file.
    pub db: PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// For a TLS server: the CA to trust; helpers then connect to
    /// `https://localhost:PORT`.
    ca_pem: Option<Vec<u8>>,
}

impl TestServer {
    /// Starts a server with default limits on a fresh database in `dir`.
    pub async fn start(dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(dir, |_| {}).await
    }

    /// Starts a server on `dir/ldp.db` after letting `configure` change the config.
    pub async fn start_with(
        dir: &Path,
        configure: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Self> {
        let db = dir.join("ldp.db");
        let mut config = Config::new("127.0.0.1:0".parse()?, db.clone(), &token());
        configure(&mut config);
        let running = Server::start(config).await?;
        let url = running.url();
        Ok(Self {
            running,
            db,
            url,
            ca_pem: None,
        })
    }

    /// Makes the helpers connect over TLS, trusting `ca_pem`.
    pub fn trusting(mut self, ca_pem: Vec<u8>) -> Self {
        self.ca_pem = Some(ca_pem);
        self
    }

    /// The server's port.
    pub fn port(&self) -> &str {
        self.url.rsplit(':').next().unwrap_or_default()
    }

    /// Graceful shutdown.
    pub async fn stop(self) -> anyhow::Result<()> {
        Ok(self.running.shutdown().await?)
    }

    /// A fresh connection.
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        let Some(pem) = &self.ca_pem else {
            return Ok(Channel::from_shared(self.url.clone())?.connect().await?);
        };
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(pem))
            .domain_name("localhost");
        let url = format!("https://localhost:{}", self.port());
        Ok(Channel::from_shared(url)?
            .tls_config(tls)?
            .connect()
            .await?)
    }

    /// An authenticated Admin client.
    pub async fn admin(&self) -> anyhow::Result<AdminClient> {
        Ok(pb::admin_client::AdminClient::with_interceptor(
            self.channel().await?,
            ClientAuth::new(&token()),
        ))
    }

    /// An authenticated Analytics client.
    pub async fn analytics(&self) -> anyhow::Result<AnalyticsClient> {
        Ok(pb::analytics_client::AnalyticsClient::with_interceptor(
            self.channel().await?,
            ClientAuth::new(&token()),
        ))
    }

    /// A Collector client (no token) with the same message limits as the server.
    pub async fn collector(
        &self,
    ) -> anyhow::Result<pb::collector_client::CollectorClient<Channel>> {
        Ok(
            pb::collector_client::CollectorClient::new(self.channel().await?)
                .max_decoding_message_size(DEFAULT_MAX_MESSAGE_BYTES)
                .max_encoding_message_size(DEFAULT_MAX_MESSAGE_BYTES),
        )
    }

    /// Creates `spec` through Admin and returns the stored spec.
    pub async fn create_metric(&self, spec: &MetricSpec) -> anyhow::Result<MetricSpec> {
        let response = self
            .admin()
            .await?
            .create_metric(pb::CreateMetricRequest {
                spec: Some(wire::metric_to_proto(spec)?),
            })
            .await?
            .into_inner();
        let metric = response
            .metric
            .ok_or_else(|| anyhow::anyhow!("no metric in response"))?;
        Ok(wire::metric_from_proto(metric)?)
    }

    /// Frequency estimates of `name` over all epochs.
    pub async fn frequencies(&self, name: &str) -> anyhow::Result<pb::FrequencyEstimate> {
        Ok(self
            .analytics()
            .await?
            .estimate_frequencies(pb::EstimateRequest {
                metric: name.into(),
                ..Default::default()
            })
            .await?
            .into_inner())
    }
}

/// The test token.
pub fn token() -> Token {
    Token::new(TEST_TOKEN).expect("constant token is valid")
}

/// A 16-byte batch id derived from `n` (distinct `n`, distinct ids).
pub fn batch_id(n: u64) -> Vec<u8> {
    let mut id = b"e2e-batch-".to_vec();
    id.extend_from_slice(&n.to_le_bytes());
    id
}

/// Encodes each of `values` with the metric's mechanism into epoch `epoch`.
pub fn encode_indices(
    spec: &MetricSpec,
    values: &[u32],
    epoch: u64,
    rng: &mut LdpRng,
) -> anyhow::Result<Vec<pb::Report>> {
    let mechanism: Mechanism = spec.mechanism()?;
    let header = ReportHeader {
        metric_id: spec.metric_id,
        metric_version: spec.version,
        epoch,
    };
    values
        .iter()
        .map(|&v| {
            Ok(wire::report_to_proto(
                header,
                &mechanism.encode_index(v, rng)?,
            )?)
        })
        .collect()
}
