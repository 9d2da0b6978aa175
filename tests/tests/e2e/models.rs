//! Models (issue 7): the local logistic-regression pipeline (LDP-SGD) over real
//! gRPC on a subsample of Adult.
//!
//! Invariant checked: the rounds driven through Admin, Collector and Analytics
//! of a real server produce the same model as the in-process transport with the
//! same seed (the protocol code path is shared; only float summation order in
//! the server's statistics may differ), every device reports in exactly one
//! round, and the reported epsilon is the per-device budget.

use ldp_aggregator::dataset::adult;
use ldp_aggregator::model::grpc::GrpcRounds;
use ldp_aggregator::model::ldpsgd::{self, InProcess, Params};
use ldp_aggregator::model::{Classifier, PrivacyModel};
use ldp_proto::v1 as pb;
use ldp_sdk::LdpRng;
use ldp_tests::TestServer;

#[tokio::test]
async fn ldp_sgd_over_grpc_matches_the_in_process_protocol() -> anyhow::Result<()> {
    let root = adult::repo_root();
    let devices = adult::load(&adult::train_path(&root))?;
    let devices = &devices[..3_000];
    let params = Params {
        rounds: 4,
        ..Params::for_epsilon(4.0)
    };

    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    let mut grpc = GrpcRounds::new(
        server.admin().await?,
        server.analytics().await?,
        server.collector().await?,
        "e2e.ldpsgd",
    );
    let mut rng = LdpRng::seeded_for_simulation(17);
    let mut rounds_seen = 0;
    let (over_grpc, spent) =
        ldpsgd::train_over(&mut grpc, &params, devices, 4.0, &mut rng, |r, _| {
            rounds_seen = r;
        })
        .await?;

    let mut rng = LdpRng::seeded_for_simulation(17);
    let (in_process, _) = ldpsgd::train_over(
        &mut InProcess::default(),
        &params,
        devices,
        4.0,
        &mut rng,
        |_, _| {},
    )
    .await?;

    assert_eq!(rounds_seen, 4);
    assert_eq!(spent.model, PrivacyModel::Local);
    assert_eq!(spent.epsilon, 4.0);
    for (a, b) in over_grpc.weights.iter().zip(&in_process.weights) {
        // Same reports, same estimator; only the order of float additions in
        // the stored sums may differ (relative error ~1e-15 per addition).
        assert!((a - b).abs() <= 1e-9 * (1.0 + b.abs()), "{a} vs {b}");
    }

    // Every device reported exactly once: one report per device per round
    // (k = 1 at epsilon 4), summed over the round's coordinate metrics.
    let mut analytics = server.analytics().await?;
    let mut reports = 0;
    for round in 0..4 {
        for j in 0..params.features.dim() {
            reports += analytics
                .estimate_mean(pb::EstimateRequest {
                    metric: format!("e2e.ldpsgd.r{round}.c{j}"),
                    ..Default::default()
                })
                .await?
                .into_inner()
                .reports;
        }
    }
    assert_eq!(reports, devices.len() as u64);

    // The model is usable: it scores a held-out slice without panicking and
    // beats a coin flip (a loose sanity bar on 3,000 devices and 4 rounds).
    let held_out = &adult::load(&adult::test_path(&root))?[..2_000];
    assert!(over_grpc.accuracy(held_out) > 0.5);
    server.stop().await?;
    Ok(())
}
