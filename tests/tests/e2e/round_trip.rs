//! Round trip of every SDK mechanism over real gRPC: create the metric, encode
//! known values with the SDK, submit, and check each estimate is within 4
//! standard errors of the truth (the SE is the SDK's closed-form one, so a
//! miss means the server's counting or the wire conversion is wrong, not bad
//! luck: |error| > 4 SE has probability below 1e-4 per estimate).

use ldp_proto::v1 as pb;
use ldp_sdk::mechanism::MechanismSpec;
use ldp_sdk::metric::MetricSpec;
use ldp_sdk::wire::{self, ReportHeader};
use ldp_sdk::{Epsilon, LdpRng};
use ldp_tests::{TestServer, batch_id, encode_indices};

const N: usize = 20_000;

/// Value i of N: a skewed distribution over 8 categories.
fn category(i: usize) -> u32 {
    [0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 0][i % 12]
}

async fn submit(
    server: &TestServer,
    reports: Vec<pb::Report>,
    first_id: u64,
) -> anyhow::Result<()> {
    let mut collector = server.collector().await?;
    for (i, chunk) in reports.chunks(2_000).enumerate() {
        collector
            .submit(pb::SubmitRequest {
                batch_id: batch_id(first_id + i as u64),
                reports: chunk.to_vec(),
            })
            .await?;
    }
    Ok(())
}

#[tokio::test]
async fn every_frequency_oracle_is_within_four_standard_errors() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    let mechanisms = [
        ("sue", MechanismSpec::Sue { domain_size: 8 }),
        ("oue", MechanismSpec::Oue { domain_size: 8 }),
        (
            "olh",
            MechanismSpec::Olh {
                domain_size: 8,
                buckets: 0,
                seed_count: 0,
            },
        ),
        ("hadamard", MechanismSpec::Hadamard { domain_size: 8 }),
    ];
    let values: Vec<u32> = (0..N).map(category).collect();
    let mut truth = [0f64; 8];
    for &v in &values {
        truth[v as usize] += 1.0;
    }
    for (k, (name, mechanism)) in mechanisms.into_iter().enumerate() {
        let spec = server
            .create_metric(&MetricSpec::new(
                format!("rt.{name}"),
                Epsilon::new(2.0)?,
                mechanism,
            ))
            .await?;
        let mut rng = LdpRng::seeded_for_simulation(100 + k as u64);
        let reports = encode_indices(&spec, &values, 0, &mut rng)?;
        submit(&server, reports, 1_000 * k as u64).await?;
        let est = server.frequencies(&spec.name).await?;
        assert_eq!(est.reports, N as u64, "{name}");
        assert_eq!(est.values.len(), 8, "{name}");
        for (v, &t) in est.values.iter().zip(&truth) {
            assert!(
                (v.estimate - t).abs() <= 4.0 * v.std_error,
                "{name} value {}: estimate {} truth {t} se {}",
                v.value,
                v.estimate,
                v.std_error
            );
        }
    }
    server.stop().await
}

#[tokio::test]
async fn every_numeric_mechanism_mean_is_within_four_standard_errors() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    let (lo, hi) = (0.0, 10.0);
    let mechanisms = [
        (
            "laplace",
            MechanismSpec::Laplace {
                lo,
                hi,
                granularity_log2: 0,
            },
        ),
        ("duchi", MechanismSpec::Duchi { lo, hi }),
        ("piecewise", MechanismSpec::Piecewise { lo, hi }),
        ("hybrid", MechanismSpec::Hybrid { lo, hi }),
    ];
    // Values 0.0, 0.5, ..., 10.0 repeated; a skew towards small values.
    let values: Vec<f64> = (0..N).map(|i| ((i * i) % 21) as f64 * 0.5).collect();
    let truth = values.iter().sum::<f64>() / N as f64;
    for (k, (name, mechanism)) in mechanisms.into_iter().enumerate() {
        let spec = server
            .create_metric(&MetricSpec::new(
                format!("rt.{name}"),
                Epsilon::new(1.0)?,
                mechanism,
            ))
            .await?;
        let m = spec.mechanism()?;
        let header = ReportHeader {
            metric_id: spec.metric_id,
            metric_version: spec.version,
            epoch: 0,
        };
        let mut rng = LdpRng::seeded_for_simulation(200 + k as u64);
        let reports = values
            .iter()
            .map(|&x| {
                Ok(wire::report_to_proto(
                    header,
                    &m.encode_value(x, &mut rng)?,
                )?)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        submit(&server, reports, 1_000 * k as u64).await?;
        let mean = server
            .analytics()
            .await?
            .estimate_mean(pb::EstimateRequest {
                metric: spec.name.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        assert_eq!(mean.reports, N as u64, "{name}");
        assert!(
            (mean.mean - truth).abs() <= 4.0 * mean.std_error,
            "{name}: mean {} truth {truth} se {}",
            mean.mean,
            mean.std_error
        );
        assert!(
            mean.ci_low < mean.mean && mean.mean < mean.ci_high,
            "{name}"
        );
    }
    server.stop().await
}

/// A metric without reports has no estimate: `EstimateFrequencies` answers
/// n = 0 with no values (never a table of zeros), `EstimateMean`
/// FAILED_PRECONDITION "no reports"; asking for the wrong kind stays
/// INVALID_ARGUMENT.
#[tokio::test]
async fn no_reports_means_no_estimate() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    let eps = Epsilon::new(1.0)?;
    server
        .create_metric(&MetricSpec::new(
            "empty.color",
            eps,
            MechanismSpec::Oue { domain_size: 8 },
        ))
        .await?;
    server
        .create_metric(&MetricSpec::new(
            "empty.age",
            eps,
            MechanismSpec::Duchi { lo: 0.0, hi: 100.0 },
        ))
        .await?;
    let f = server.frequencies("empty.color").await?;
    assert_eq!((f.reports, f.values.len()), (0, 0));
    assert!(f.guarantee.is_some());
    let mut analytics = server.analytics().await?;
    let request = |metric: &str| pb::EstimateRequest {
        metric: metric.into(),
        ..Default::default()
    };
    let err = analytics
        .estimate_mean(request("empty.age"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("no reports"), "{err:?}");
    let err = analytics
        .estimate_mean(request("empty.color"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    let err = analytics
        .estimate_frequencies(request("empty.age"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    server.stop().await
}
