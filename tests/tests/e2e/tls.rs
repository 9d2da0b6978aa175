//! TLS: a server started with a certificate and key serves gRPC over rustls;
//! the CLI and the SDK client trusting the test CA connect, a plaintext client
//! and a client trusting only the public roots do not.

use std::path::PathBuf;

use ldp_aggregator::cli::connect::ConnectArgs;
use ldp_aggregator::server::TlsFiles;
use ldp_proto::v1 as pb;
use ldp_tests::TestServer;
use tonic::transport::Channel;

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
    // The analyst CLI's connection (`--connect https://... --ca-cert ca.pem`).
    let cli = ConnectArgs {
        connect: format!("https://localhost:{port}"),
        token: None,
        token_file: None,
        ca_cert: Some(fixture("ca.pem")),
    };
    pb::collector_client::CollectorClient::new(cli.channel().await?)
        .get_metrics(pb::GetMetricsRequest::default())
        .await?;

    // A CA with an http:// URL would connect in plaintext: refused before
    // connecting, in the CLI and in the SDK.
    let downgrade = ConnectArgs {
        connect: format!("http://localhost:{port}"),
        ..cli.clone()
    };
    let err = downgrade.channel().await.unwrap_err();
    assert!(format!("{err:#}").contains("not https://"), "{err:#}");
    let sdk = ldp_sdk::client::tls_endpoint(&format!("http://localhost:{port}"), Some(b"pem"));
    assert!(sdk.is_err());

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

/// The SDK's device client over TLS: pinned to the test CA it connects and
/// delivers; with the default trust (bundled Mozilla roots) the same server's
/// certificate, signed by a private CA, is refused and nothing is sent.
#[tokio::test]
async fn sdk_client_verifies_the_server_certificate() -> anyhow::Result<()> {
    use ldp_sdk::client::{ClientConfig, ClientError};
    use ldp_sdk::mechanism::MechanismSpec;
    use ldp_sdk::schema::{Attribute, Record, Schema};
    use ldp_sdk::{Epsilon, LdpRng};

    let dir = tempfile::tempdir()?;
    let server = TestServer::start_with(dir.path(), |c| {
        c.tls = Some(TlsFiles {
            cert: fixture("server.pem"),
            key: fixture("server.key"),
        });
    })
    .await?
    .trusting(std::fs::read(fixture("ca.pem"))?);
    let url = format!("https://localhost:{}", server.port());
    let schema = || -> anyhow::Result<Schema> {
        Ok(Schema::new(vec![Attribute::categorical(
            "color",
            ["red", "green", "blue"],
            "app.color",
            MechanismSpec::Grr { domain_size: 3 },
            Epsilon::new(1.0)?,
        )?])?)
    };
    server.create_metric(&schema()?.metrics()[0]).await?;

    let untrusting = ClientConfig::new(url.clone(), dir.path().join("queue-a"));
    let err = ldp_sdk::Client::connect(untrusting, schema()?)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Unavailable(_)), "{err:?}");

    let pinned = ClientConfig::new(url, dir.path().join("queue-b"))
        .with_tls_ca(std::fs::read(fixture("ca.pem"))?);
    let client =
        ldp_sdk::Client::connect_with_rng(pinned, schema()?, LdpRng::seeded_for_simulation(4))
            .await?;
    for _ in 0..10 {
        client.record(&Record::new().with("color", "blue"))?;
    }
    client.flush().await?;
    client.close().await?;
    assert_eq!(server.frequencies("app.color").await?.reports, 10);
    server.stop().await
}
