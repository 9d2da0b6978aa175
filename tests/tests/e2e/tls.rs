//! TLS: a server started with a certificate and key serves gRPC over rustls;
//! a client trusting the test CA connects, a plaintext client does not.

use std::path::PathBuf;

use ldp_aggregator::server::TlsFiles;
use ldp_proto::v1 as pb;
use ldp_tests::TestServer;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("data/tls")
        .join(name)
}

#[tokio::test]
async fn tls_server_accepts_a_client_that_trusts_its_ca() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start_with(dir.path(), |c| {
        c.tls = Some(TlsFiles {
            cert: fixture("server.pem"),
            key: fixture("server.key"),
        });
    })
    .await?;
    let port = server
        .url
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_string();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(fixture("ca.pem"))?))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://localhost:{port}"))?
        .tls_config(tls)?
        .connect()
        .await?;
    pb::collector_client::CollectorClient::new(channel)
        .get_metrics(pb::GetMetricsRequest::default())
        .await?;

    // Plaintext HTTP/2 against the TLS port fails.
    let plain = Channel::from_shared(format!("http://127.0.0.1:{port}"))?
        .connect()
        .await;
    if let Ok(channel) = plain {
        let result = pb::collector_client::CollectorClient::new(channel)
            .get_metrics(pb::GetMetricsRequest::default())
            .await;
        assert!(result.is_err(), "plaintext request succeeded on a TLS port");
    }
    server.stop().await
}
