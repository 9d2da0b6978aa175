//! Connection options shared by every client subcommand: server URL, bearer
//! token and, for TLS servers, the CA certificate to trust.

use std::path::PathBuf;

use anyhow::Context;
use ldp_proto::v1 as pb;
use ldp_sdk::client::tls_endpoint;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::server::DEFAULT_MAX_MESSAGE_BYTES;
use crate::service::auth::{ClientAuth, Token};

/// An authenticated Admin client.
pub type AdminClient = pb::admin_client::AdminClient<InterceptedService<Channel, ClientAuth>>;
/// An authenticated Analytics client.
pub type AnalyticsClient =
    pb::analytics_client::AnalyticsClient<InterceptedService<Channel, ClientAuth>>;

/// Where the server is and how to authenticate.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// Server URL (`https://` for a TLS server).
    #[arg(long, env = "LDP_CONNECT", default_value = "http://127.0.0.1:50051")]
    pub connect: String,
    /// Bearer token for Analytics and Admin.
    #[arg(long, env = "LDP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the bearer token (e.g. the `<db>.token` file `ldp serve`
    /// wrote); it takes precedence over `--token` and `LDP_TOKEN`.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// PEM CA certificate to verify a TLS server with.
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
}

impl ConnectArgs {
    /// Connects (TLS for an `https://` URL): with `--ca-cert` only that CA is
    /// trusted, otherwise the bundled Mozilla roots (webpki-roots); `--ca-cert`
    /// with an `http://` URL is refused. The SDK's [`tls_endpoint`], as devices
    /// connect.
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        if !self.connect.contains("://") {
            anyhow::bail!(
                "--connect {:?} needs a scheme: http://{} (or https:// for a TLS server)",
                self.connect,
                self.connect
            );
        }
        let ca_pem = match &self.ca_cert {
            Some(ca) => {
                Some(std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?)
            }
            None => None,
        };
        let endpoint = tls_endpoint(&self.connect, ca_pem.as_deref())
            .with_context(|| format!("--connect {:?}", self.connect))?;
        endpoint
            .connect()
            .await
            .with_context(|| format!("connecting to {}", self.connect))
    }

    /// The token from `--token-file`, else `--token` or `LDP_TOKEN`. (A file
    /// named on the command line wins, so an exported `LDP_TOKEN` never makes
    /// `--token-file` an error.)
    pub fn token(&self) -> anyhow::Result<Token> {
        let raw = match (&self.token_file, &self.token) {
            (Some(path), _) => std::fs::read_to_string(path)
                .with_context(|| format!("reading token file {}", path.display()))?,
            (None, Some(t)) => t.clone(),
            (None, None) => anyhow::bail!("give --token, LDP_TOKEN or --token-file"),
        };
        Token::new(&raw).map_err(anyhow::Error::msg)
    }

    /// An Admin client.
    pub async fn admin(&self) -> anyhow::Result<AdminClient> {
        let auth = ClientAuth::new(&self.token()?);
        Ok(
            pb::admin_client::AdminClient::with_interceptor(self.channel().await?, auth)
                .max_decoding_message_size(DEFAULT_MAX_MESSAGE_BYTES),
        )
    }

    /// An Analytics client.
    pub async fn analytics(&self) -> anyhow::Result<AnalyticsClient> {
        let auth = ClientAuth::new(&self.token()?);
        Ok(
            pb::analytics_client::AnalyticsClient::with_interceptor(self.channel().await?, auth)
                .max_decoding_message_size(DEFAULT_MAX_MESSAGE_BYTES),
        )
    }

    /// A Collector client (no token needed).
    pub async fn collector(
        &self,
    ) -> anyhow::Result<pb::collector_client::CollectorClient<Channel>> {
        Ok(
            pb::collector_client::CollectorClient::new(self.channel().await?)
                .max_decoding_message_size(DEFAULT_MAX_MESSAGE_BYTES)
                .max_encoding_message_size(DEFAULT_MAX_MESSAGE_BYTES),
        )
    }
}
