//! Ingest and estimates over real gRPC (issue 4).
//!
//! Invariants checked: estimates of SDK-encoded reports are within 4 standard
//! errors of the truth; a restarted server gives bit-identical estimates; every
//! bad batch gets its status code and changes nothing; a batch id submitted
//! concurrently from 8 tasks is counted once (a count of 2x the batch would
//! mean a replay was stored).

use ldp_aggregator::server::Config;
use ldp_proto::v1 as pb;
use ldp_sdk::mechanism::MechanismSpec;
use ldp_sdk::metric::MetricSpec;
use ldp_sdk::{Epsilon, LdpRng};
use ldp_tests::{TestServer, batch_id, encode_indices};
use tonic::Code;

/// True counts of the 4 values: n = 20,000.
const TRUTH: [u32; 4] = [8_000, 6_000, 4_000, 2_000];

fn grr_spec(name: &str) -> MetricSpec {
    MetricSpec::new(
        name,
        Epsilon::new(1.0).expect("valid"),
        MechanismSpec::Grr { domain_size: 4 },
    )
    .with_categories(["a", "b", "c", "d"])
}

fn true_values() -> Vec<u32> {
    TRUTH
        .iter()
        .enumerate()
        .flat_map(|(v, &n)| std::iter::repeat_n(v as u32, n as usize))
        .collect()
}

/// Submits `values` encoded with `spec` in batches of 1,000 (ids from `first_id`).
async fn submit_all(
    server: &TestServer,
    spec: &MetricSpec,
    values: &[u32],
    first_id: u64,
    seed: u64,
) -> anyhow::Result<()> {
    let mut rng = LdpRng::seeded_for_simulation(seed);
    let mut collector = server.collector().await?;
    for (i, chunk) in values.chunks(1_000).enumerate() {
        let reports = encode_indices(spec, chunk, 0, &mut rng)?;
        let ack = collector
            .submit(pb::SubmitRequest {
                batch_id: batch_id(first_id + i as u64),
                reports,
            })
            .await?
            .into_inner();
        assert_eq!(ack.accepted as usize, chunk.len());
        assert!(!ack.duplicate);
    }
    Ok(())
}

#[tokio::test]
async fn round_trip_within_four_standard_errors_and_identical_after_restart() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    let spec = server.create_metric(&grr_spec("rt.grr")).await?;
    submit_all(&server, &spec, &true_values(), 0, 42).await?;
    let est = server.frequencies("rt.grr").await?;
    assert_eq!(est.reports, 20_000);
    assert_eq!(est.values.len(), 4);
    let g = est.guarantee.clone().expect("guarantee");
    assert_eq!((g.epsilon_per_report, g.model.as_str()), (1.0, "local"));
    for (v, &truth) in est.values.iter().zip(&TRUTH) {
        // The GRR estimator is unbiased with the SDK's closed-form variance;
        // |error| <= 4 SE fails with probability < 1e-4 per value (normal approx.).
        let err = (v.estimate - f64::from(truth)).abs();
        assert!(
            err <= 4.0 * v.std_error,
            "{}: estimate {} truth {truth} se {}",
            v.value,
            v.estimate,
            v.std_error
        );
        assert!(v.ci_low < v.estimate && v.estimate < v.ci_high);
        assert!(v.consistent >= 0.0);
    }
    let consistent_total: f64 = est.values.iter().map(|v| v.consistent).sum();
    assert!((consistent_total - 20_000.0).abs() < 1e-6);

    server.stop().await?;
    let restarted = TestServer::start(dir.path()).await?;
    let after = restarted.frequencies("rt.grr").await?;
    assert_eq!(after, est, "estimates changed across a restart");
    restarted.stop().await
}

#[tokio::test]
async fn same_batch_from_eight_tasks_is_counted_once() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    let spec = server.create_metric(&grr_spec("dup.grr")).await?;
    let mut rng = LdpRng::seeded_for_simulation(7);
    let reports = encode_indices(&spec, &true_values()[..500], 0, &mut rng)?;
    let request = pb::SubmitRequest {
        batch_id: batch_id(99),
        reports,
    };
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut collector = server.collector().await?;
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            collector
                .submit(request)
                .await
                .map(tonic::Response::into_inner)
        }));
    }
    let mut stored = 0;
    for task in tasks {
        let ack = task.await??;
        if !ack.duplicate {
            stored += 1;
            assert_eq!(ack.accepted, 500);
        } else {
            assert_eq!(ack.accepted, 0);
        }
    }
    assert_eq!(stored, 1, "exactly one submission stores the batch");
    let again = server
        .collector()
        .await?
        .submit(request)
        .await?
        .into_inner();
    assert!(again.duplicate);
    assert_eq!(server.frequencies("dup.grr").await?.reports, 500);
    server.stop().await
}

#[tokio::test]
async fn bad_input_matrix_gets_its_codes_and_changes_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start_with(dir.path(), |c: &mut Config| {
        c.ingest.max_batch_reports = 100;
        c.max_message_bytes = 64 * 1024;
    })
    .await?;
    let spec = server.create_metric(&grr_spec("bad.grr")).await?;
    let closed = server.create_metric(&grr_spec("bad.closed")).await?;
    server
        .admin()
        .await?
        .close_epoch(pb::CloseEpochRequest {
            metric: "bad.closed".into(),
            epoch: 0,
        })
        .await?;
    let mut rng = LdpRng::seeded_for_simulation(3);
    let good = encode_indices(&spec, &[0, 1, 2, 3, 0, 1, 2, 3, 0, 1], 0, &mut rng)?;
    let mut collector = server.collector().await?;
    collector
        .submit(pb::SubmitRequest {
            batch_id: batch_id(1),
            reports: good.clone(),
        })
        .await?;
    let before = server.frequencies("bad.grr").await?;
    let before_closed = server.frequencies("bad.closed").await?;

    let with = |i: usize, f: &dyn Fn(&mut pb::Report)| {
        let mut reports = good.clone();
        f(&mut reports[i]);
        reports
    };
    use pb::report::Payload;
    // (case, batch id, reports, expected code, text the message must contain)
    type Case<'a> = (&'a str, Vec<u8>, Vec<pb::Report>, Code, &'a str);
    let cases: Vec<Case> = vec![
        (
            "index out of range",
            batch_id(10),
            with(7, &|r| r.payload = Some(Payload::Index(4))),
            Code::InvalidArgument,
            "report 7",
        ),
        (
            "payload of another mechanism",
            batch_id(11),
            with(2, &|r| r.payload = Some(Payload::Bits(vec![1]))),
            Code::InvalidArgument,
            "report 2",
        ),
        (
            "missing payload",
            batch_id(12),
            with(0, &|r| r.payload = None),
            Code::InvalidArgument,
            "report 0",
        ),
        (
            "unknown metric id",
            batch_id(13),
            with(5, &|r| r.metric_id = 77),
            Code::InvalidArgument,
            "report 5",
        ),
        (
            "stale or unknown version",
            batch_id(14),
            with(9, &|r| r.metric_version = 2),
            Code::InvalidArgument,
            "report 9",
        ),
        (
            "epoch of a single-epoch metric",
            batch_id(15),
            with(3, &|r| r.epoch = 5),
            Code::InvalidArgument,
            "report 3",
        ),
        (
            "closed epoch",
            batch_id(16),
            with(4, &|r| r.metric_id = closed.metric_id),
            Code::FailedPrecondition,
            "report 4",
        ),
        (
            "batch id too short",
            b"short".to_vec(),
            good.clone(),
            Code::InvalidArgument,
            "batch_id",
        ),
        (
            "empty batch",
            batch_id(17),
            Vec::new(),
            Code::InvalidArgument,
            "empty",
        ),
        (
            "too many reports",
            batch_id(18),
            good.iter().cycle().take(101).cloned().collect(),
            Code::ResourceExhausted,
            "limit",
        ),
        (
            "message over the byte limit",
            batch_id(19),
            (0..70)
                .map(|_| pb::Report {
                    payload: Some(Payload::Bits(vec![0; 1024])),
                    ..good[0].clone()
                })
                .collect(),
            Code::ResourceExhausted,
            "",
        ),
    ];
    for (name, id, reports, code, needle) in cases {
        let err = collector
            .submit(pb::SubmitRequest {
                batch_id: id,
                reports,
            })
            .await
            .expect_err(name);
        assert_eq!(err.code(), code, "{name}: {}", err.message());
        assert!(
            err.message().contains(needle),
            "{name}: {:?} lacks {needle:?}",
            err.message()
        );
    }
    // A bad report changes nothing, not even the other reports of its batch.
    assert_eq!(server.frequencies("bad.grr").await?, before);
    assert_eq!(server.frequencies("bad.closed").await?, before_closed);

    // Unknown names and bad confidence on Analytics.
    let mut analytics = server.analytics().await?;
    let err = analytics
        .estimate_frequencies(pb::EstimateRequest {
            metric: "nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = analytics
        .estimate_frequencies(pb::EstimateRequest {
            metric: "bad.grr".into(),
            confidence: 1.5,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // An invalid spec is refused by Admin.
    let mut bad_spec = grr_spec("bad.spec").with_categories(["only-one"]);
    bad_spec.description.clear();
    let err = server.create_metric(&bad_spec).await.unwrap_err();
    let status = err.downcast_ref::<tonic::Status>().expect("a gRPC status");
    assert_eq!(status.code(), Code::InvalidArgument);
    server.stop().await
}

#[tokio::test]
async fn epochs_are_validated_pooled_on_request_and_closed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    let spec = server
        .create_metric(&grr_spec("ep.grr").with_epoch_seconds(3600))
        .await?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let current = spec.epoch_at(i64::try_from(now.as_secs())?);
    let mut rng = LdpRng::seeded_for_simulation(11);
    let mut collector = server.collector().await?;
    // The current epoch and the next one (clock skew) are accepted.
    for (k, epoch) in [current, current + 1].into_iter().enumerate() {
        let reports = encode_indices(&spec, &[0, 1, 2, 3][..(k + 2)], epoch, &mut rng)?;
        collector
            .submit(pb::SubmitRequest {
                batch_id: batch_id(k as u64),
                reports,
            })
            .await?;
    }
    // Two epochs ahead, or before the metric existed, is not plausible.
    for (k, epoch) in [current + 2, current - 1].into_iter().enumerate() {
        let reports = encode_indices(&spec, &[0], epoch, &mut rng)?;
        let err = collector
            .submit(pb::SubmitRequest {
                batch_id: batch_id(10 + k as u64),
                reports,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "epoch {epoch}");
    }
    let analytics = server.analytics().await?;
    let estimate = |epochs: Vec<u64>| {
        let request = pb::EstimateRequest {
            metric: "ep.grr".into(),
            epochs,
            ..Default::default()
        };
        let mut client = analytics.clone();
        async move { client.estimate_frequencies(request).await }
    };
    let all = estimate(vec![]).await?.into_inner();
    assert_eq!((all.reports, all.epochs), (5, vec![current, current + 1]));
    let one = estimate(vec![current + 1]).await?.into_inner();
    assert_eq!((one.reports, one.epochs), (3, vec![current + 1]));

    server
        .admin()
        .await?
        .close_epoch(pb::CloseEpochRequest {
            metric: "ep.grr".into(),
            epoch: current,
        })
        .await?;
    let reports = encode_indices(&spec, &[1], current, &mut rng)?;
    let err = collector
        .submit(pb::SubmitRequest {
            batch_id: batch_id(20),
            reports,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(estimate(vec![]).await?.into_inner().reports, 5);

    // Epochs no storage can hold: closing one is INVALID_ARGUMENT (it was
    // INTERNAL), estimating over one finds no reports (it was INTERNAL).
    let err = server
        .admin()
        .await?
        .close_epoch(pb::CloseEpochRequest {
            metric: "ep.grr".into(),
            epoch: u64::MAX,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    assert_eq!(estimate(vec![u64::MAX]).await?.into_inner().reports, 0);
    // An estimate over more epochs than SQLite has bound parameters works.
    let many: Vec<u64> = (current..current + 40_000).collect();
    assert_eq!(estimate(many).await?.into_inner().reports, 5);
    server.stop().await
}
