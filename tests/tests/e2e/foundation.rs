//! The protocol foundation (issue 2): a server started on an ephemeral port
//! creates a metric through Admin, serves it back through Collector.GetMetrics,
//! answers SERVING on the standard health service, and lists its services
//! through reflection; Analytics and Admin refuse requests without the token.

use ldp_proto::v1 as pb;
use ldp_sdk::mechanism::MechanismSpec;
use ldp_sdk::metric::MetricSpec;
use ldp_sdk::{Epsilon, wire};
use ldp_tests::TestServer;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

#[tokio::test]
async fn create_metric_then_get_metrics_and_health() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    let spec = MetricSpec::new(
        "app.color",
        Epsilon::new(1.5)?,
        MechanismSpec::Grr { domain_size: 3 },
    )
    .with_categories(["red", "green", "blue"])
    .with_description("favourite colour");
    let stored = server.create_metric(&spec).await?;
    assert!(spec.same_parameters(&stored));
    assert_eq!((stored.metric_id, stored.version), (1, 1));
    assert!(stored.created_at > 0);

    let got = server
        .collector()
        .await?
        .get_metrics(pb::GetMetricsRequest::default())
        .await?
        .into_inner();
    assert!(got.server_time > 0);
    let metrics = got
        .metrics
        .into_iter()
        .map(wire::metric_from_proto)
        .collect::<Result<Vec<_>, _>>()?;
    assert_eq!(metrics, vec![stored.clone()]);

    // Identical parameters again: no new version.
    let again = server.create_metric(&spec).await?;
    assert_eq!(again, stored);

    let mut health = HealthClient::new(server.channel().await?);
    for service in ["", "ldp.v1.Collector", "ldp.v1.Analytics", "ldp.v1.Admin"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await?
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "service {service:?}");
    }
    server.stop().await
}

#[tokio::test]
async fn reflection_lists_every_service() -> anyhow::Result<()> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    let mut reflection = ServerReflectionClient::new(server.channel().await?);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await?
        .into_inner();
    let response = responses
        .message()
        .await?
        .ok_or_else(|| anyhow::anyhow!("no reflection response"))?;
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        anyhow::bail!("unexpected reflection response {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "ldp.v1.Collector",
        "ldp.v1.Analytics",
        "ldp.v1.Admin",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    drop(responses);
    server.stop().await
}

#[tokio::test]
async fn analytics_and_admin_require_the_token() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    let channel = server.channel().await?;
    let mut admin = pb::admin_client::AdminClient::new(channel.clone());
    let err = admin
        .list_metrics(pb::AdminListMetricsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let mut analytics = pb::analytics_client::AnalyticsClient::with_interceptor(
        channel.clone(),
        |mut r: tonic::Request<()>| {
            r.metadata_mut()
                .insert("authorization", "Bearer wrong".parse().unwrap());
            Ok(r)
        },
    );
    let err = analytics
        .list_metrics(pb::ListMetricsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    // The Collector is open.
    pb::collector_client::CollectorClient::new(channel)
        .get_metrics(pb::GetMetricsRequest::default())
        .await?;
    server.stop().await
}
