//! Privacy budgets and the audit report (issue 8) over real gRPC: a data set's
//! central budget refuses a release that would exceed it and the refusal
//! changes nothing; the ledger survives a restart; `ldp privacy-report` built
//! from the database lists every metric (mechanism, parameters, epsilon per
//! report, eps_inf, device window budget) and every central release (accountant,
//! parameters, (epsilon, delta)); estimate responses carry their local guarantee.

use ldp_aggregator::cli::privacy_report;
use ldp_proto::v1 as pb;
use ldp_sdk::mechanism::MechanismSpec;
use ldp_sdk::metric::MetricSpec;
use ldp_sdk::{Epsilon, LdpRng};
use ldp_tests::{TestServer, batch_id, encode_indices};
use pb::record_release_request::Accounting;
use tonic::Code;

fn pure(id: &str, epsilon: f64) -> pb::RecordReleaseRequest {
    pb::RecordReleaseRequest {
        id: id.into(),
        dataset: "adult".into(),
        mechanism: "laplace_counts".into(),
        parameters_json: r#"{"attributes": 14}"#.into(),
        accounting: Some(Accounting::Pure(pb::PureRelease { epsilon })),
    }
}

fn dp_sgd(id: &str) -> pb::RecordReleaseRequest {
    pb::RecordReleaseRequest {
        id: id.into(),
        dataset: "adult".into(),
        mechanism: "dp_sgd".into(),
        parameters_json: r#"{"clip_norm": 1.0}"#.into(),
        accounting: Some(Accounting::SubsampledGaussian(
            pb::SubsampledGaussianRelease {
                noise_multiplier: 1.1,
                sample_rate: 0.01,
                steps: 1000,
                delta: 1e-5,
            },
        )),
    }
}

async fn budget(server: &TestServer) -> anyhow::Result<pb::BudgetResponse> {
    Ok(server
        .analytics()
        .await?
        .budget(pb::BudgetRequest::default())
        .await?
        .into_inner())
}

#[tokio::test]
async fn budget_refuses_overspend_survives_restart_and_feeds_the_report() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    let mut admin = server.admin().await?;

    // No budget: every release is refused.
    let err = admin.record_release(pure("nb-1", 0.5)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let set = admin
        .set_dataset_budget(pb::SetDatasetBudgetRequest {
            dataset: "adult".into(),
            epsilon: 3.0,
            delta: 1e-5,
        })
        .await?
        .into_inner();
    assert!(set.has_budget && set.releases.is_empty());

    admin.record_release(dp_sgd("sgd-1")).await?;
    let after = admin.record_release(pure("nb-1", 0.5)).await?.into_inner();
    // DP-SGD at sigma 1.1, q 0.01, 1000 steps is 1.7118-DP at 1e-5 (Opacus,
    // pinned in the ledger's unit test); with a 0.5-DP release, RDP composition
    // must be the tightest and no more than basic composition's sum.
    assert_eq!(after.releases.len(), 2);
    assert_eq!(after.tightest_method, "rdp");
    let basic = after.totals.iter().find(|t| t.method == "basic").unwrap();
    assert!(after.spent_bounded && after.spent_epsilon <= basic.epsilon);
    assert!(after.spent_epsilon > 1.7117 && after.spent_epsilon <= 3.0);
    assert!((after.releases[0].epsilon - 1.711_770_091_220_343_5).abs() < 1e-6);

    // Recording the same release again is a no-op.
    let again = admin.record_release(pure("nb-1", 0.5)).await?.into_inner();
    assert_eq!(again, after);

    // A release that would exceed the budget is refused and changes nothing;
    // so is lowering the budget below the spend.
    let before = budget(&server).await?;
    let err = admin.record_release(pure("nb-2", 2.0)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let err = admin
        .set_dataset_budget(pb::SetDatasetBudgetRequest {
            dataset: "adult".into(),
            epsilon: 1.0,
            delta: 1e-5,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    // The same id with other parameters is refused too.
    let err = admin.record_release(pure("nb-1", 0.1)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(budget(&server).await?, before);
    let one = server
        .analytics()
        .await?
        .budget(pb::BudgetRequest {
            dataset: "adult".into(),
        })
        .await?
        .into_inner();
    assert_eq!(one, before);
    let err = server
        .analytics()
        .await?
        .budget(pb::BudgetRequest {
            dataset: "unknown".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    // Local metrics, one memoized, with a published device budget.
    let eps = Epsilon::new(1.0)?;
    let plain = server
        .create_metric(&MetricSpec::new(
            "color",
            eps,
            MechanismSpec::Grr { domain_size: 3 },
        ))
        .await?;
    let mut memo = MetricSpec::new("shade", eps, MechanismSpec::Grr { domain_size: 3 });
    memo.memoize = true;
    let memo = server.create_metric(&memo).await?;
    admin
        .set_device_budget(pb::SetDeviceBudgetRequest {
            metric: "color".into(),
            window_epsilon: 2.0,
            window_seconds: 86_400,
            lifetime_epsilon: 20.0,
        })
        .await?;

    // Estimates carry their local guarantee: eps_inf of the memoized metric is
    // its per-report epsilon; the plain one has none (0).
    let mut rng = LdpRng::seeded_for_simulation(8);
    let mut collector = server.collector().await?;
    for (i, spec) in [&plain, &memo].into_iter().enumerate() {
        let reports = encode_indices(spec, &[0, 1, 2, 0, 1], 0, &mut rng)?;
        collector
            .submit(pb::SubmitRequest {
                batch_id: batch_id(i as u64),
                reports,
            })
            .await?;
    }
    for (name, lifetime) in [("color", 0.0), ("shade", 1.0)] {
        let g = server
            .frequencies(name)
            .await?
            .guarantee
            .expect("guarantee");
        assert_eq!(
            (g.epsilon_per_report, g.epsilon_lifetime, g.model.as_str()),
            (1.0, lifetime, "local"),
            "{name}"
        );
    }

    // Restart: the ledger is unchanged.
    server.stop().await?;
    let server = TestServer::start(dir.path()).await?;
    assert_eq!(
        budget(&server).await?,
        before,
        "ledger changed across a restart"
    );
    server.stop().await?;

    // The audit report, from the database file.
    let report = privacy_report::from_db(&dir.path().join("ldp.db").into()).await?;
    let out = dir.path().join("report");
    let (json_path, html_path) = privacy_report::write(&report, &out)?;
    let names: Vec<&str> = report.metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["color", "shade"]);
    let color = &report.metrics[0];
    assert_eq!(color.epsilon_per_report, 1.0);
    assert_eq!(color.mechanism, MechanismSpec::Grr { domain_size: 3 });
    let window = color.device_budget.expect("device budget of color");
    assert_eq!(
        (
            window.window_epsilon,
            window.window_seconds,
            window.lifetime_epsilon
        ),
        (2.0, 86_400, 20.0)
    );
    // Not memoized: eps_inf is bounded only by the device lifetime budget.
    assert_eq!(color.eps_inf, Some(20.0));
    assert_eq!(
        (report.metrics[1].eps_inf, report.metrics[1].memoized),
        (Some(1.0), true)
    );
    assert_eq!(report.metrics[1].device_budget, None);

    assert_eq!(report.datasets.len(), 1);
    let adult = &report.datasets[0];
    assert_eq!(adult.releases.len(), 2);
    let sgd = &adult.releases[0];
    assert_eq!(
        (sgd.id.as_str(), sgd.mechanism.as_str()),
        ("sgd-1", "dp_sgd")
    );
    assert!(sgd.accountant.starts_with("rdp"), "{}", sgd.accountant);
    assert_eq!(sgd.parameters["noise_multiplier"], 1.1);
    assert_eq!(sgd.parameters["clip_norm"], 1.0);
    assert_eq!(sgd.guarantee.delta, 1e-5);
    let nb = &adult.releases[1];
    assert_eq!((nb.guarantee.epsilon, nb.guarantee.delta), (0.5, 0.0));
    assert_eq!(nb.parameters["attributes"], 14);
    assert_eq!(adult.spent.epsilon, Some(before.datasets[0].spent_epsilon));

    let json = std::fs::read_to_string(json_path)?;
    for needle in [
        "\"eps_inf\"",
        "\"window_epsilon\"",
        "\"epsilon_per_report\"",
        "sgd-1",
        "nb-1",
    ] {
        assert!(
            json.contains(needle),
            "{needle} missing from the JSON report"
        );
    }
    let html = std::fs::read_to_string(html_path)?;
    assert!(html.contains("dp_sgd") && html.contains("shade") && html.contains("86400"));
    Ok(())
}

/// A client with a device ledger debits every record durably before queueing
/// it: once the lifetime budget is spent, `record` is `ClientError::Budget`
/// (wrapping `BudgetExhausted`) and queues nothing, so the server stores only
/// the reports that were paid for; a reopened ledger still refuses.
#[tokio::test]
async fn client_debits_the_device_ledger_before_queueing() -> anyhow::Result<()> {
    use std::sync::Arc;

    use ldp_sdk::budget::{BudgetPolicy, DeviceLedger};
    use ldp_sdk::client::{ClientConfig, ClientError};
    use ldp_sdk::schema::{Attribute, Record, Schema};

    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    let schema = || -> anyhow::Result<Schema> {
        Ok(Schema::new(vec![Attribute::categorical(
            "color",
            ["red", "green", "blue"],
            "app.color",
            MechanismSpec::Grr { domain_size: 3 },
            Epsilon::new(0.5)?,
        )?])?)
    };
    server.create_metric(&schema()?.metrics()[0]).await?;
    let ledger_path = dir.path().join("device-ledger.json");
    let ledger = Arc::new(DeviceLedger::open(&ledger_path)?);
    // Two records of 0.5 fit the lifetime budget of 1.0; the third does not.
    ledger.register("app.color", BudgetPolicy::new(1.0, 86_400, 1.0)?)?;
    let config = ClientConfig::new(server.url.clone(), dir.path().join("queue"))
        .with_device_ledger(Arc::clone(&ledger));
    let client =
        ldp_sdk::Client::connect_with_rng(config, schema()?, LdpRng::seeded_for_simulation(3))
            .await?;
    let record = Record::new().with("color", "green");
    client.record(&record)?;
    client.record(&record)?;
    let refused = client.record(&record).unwrap_err();
    assert!(
        matches!(
            refused,
            ClientError::Budget(ldp_sdk::Error::BudgetExhausted(_))
        ),
        "{refused:?}"
    );
    assert_eq!(client.stats().records, 2);
    client.flush().await?;
    client.close().await?;
    assert_eq!(server.frequencies("app.color").await?.reports, 2);

    // The debits were durable: a reopened ledger still has nothing left.
    drop(ledger);
    let reopened = DeviceLedger::open(&ledger_path)?;
    let err = reopened
        .debit("app.color", Epsilon::new(0.1)?, u64::MAX / 2)
        .unwrap_err();
    assert!(matches!(err, ldp_sdk::Error::BudgetExhausted(_)), "{err:?}");
    server.stop().await
}

/// Issue 8 over real gRPC: the operator's device budget (`SetDeviceBudget`)
/// reaches the device through `GetMetrics` and its ledger enforces it; a
/// memoized metric is sent as the same report for an unchanged value, charged
/// once; estimates state eps_inf and the reports per device that the budget
/// allows.
#[tokio::test]
async fn published_device_budgets_and_memoized_reports() -> anyhow::Result<()> {
    use std::sync::Arc;

    use ldp_sdk::budget::{BudgetPolicy, DeviceLedger};
    use ldp_sdk::client::{ClientConfig, ClientError};
    use ldp_sdk::mechanism::rappor::DeviceSecret;
    use ldp_sdk::memo::Memo;
    use ldp_sdk::schema::{Attribute, Record, Schema, SchemaError};

    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    let mut spec = MetricSpec::new(
        "app.pick",
        Epsilon::new(1.0)?,
        MechanismSpec::Grr { domain_size: 64 },
    )
    .with_epoch_seconds(86_400);
    spec.memoize = true;
    server.create_metric(&spec).await?;
    // Window 2.0 per day, lifetime 3.0: with epsilon 1 per report and daily
    // epochs, a device sends at most floor(2 / 1) * ceil(86400 / 86400) = 2
    // fresh reports per epoch.
    server
        .admin()
        .await?
        .set_device_budget(pb::SetDeviceBudgetRequest {
            metric: "app.pick".into(),
            window_epsilon: 2.0,
            window_seconds: 86_400,
            lifetime_epsilon: 3.0,
        })
        .await?;
    let schema = || -> anyhow::Result<Schema> {
        Ok(Schema::new(vec![Attribute::from_metric(
            "pick",
            spec.clone(),
        )?])?)
    };
    let queue = dir.path().join("queue");

    // A memoized metric without a memo is refused at connect.
    let config = ClientConfig::new(server.url.clone(), &queue);
    let err = ldp_sdk::Client::connect(config, schema()?)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Schema(SchemaError::NeedsMemo(_))),
        "{err:?}"
    );

    // No local budget: the published one is registered and enforced.
    let ledger = Arc::new(DeviceLedger::open(dir.path().join("ledger.json"))?);
    let mut rng = LdpRng::seeded_for_simulation(8);
    let memo = Arc::new(Memo::open(
        dir.path().join("memo.json"),
        &DeviceSecret::generate(&mut rng),
    )?);
    let config = ClientConfig::new(server.url.clone(), &queue)
        .with_device_ledger(Arc::clone(&ledger))
        .with_memo(Arc::clone(&memo));
    let client = ldp_sdk::Client::connect_with_rng(config, schema()?, rng).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    assert_eq!(
        ledger.usage("app.pick", now)?.policy,
        BudgetPolicy::new(2.0, 86_400, 3.0)?
    );
    let pick = |i: u32| Record::new().with("pick", ldp_sdk::schema::Value::Index(i));
    let first = client.record(&pick(5))?;
    assert_eq!((first.epsilon, first.reused), (1.0, 0));
    for _ in 0..50 {
        let again = client.record(&pick(5))?;
        assert_eq!((again.epsilon, again.reused), (0.0, 1));
    }
    client.record(&pick(6))?;
    // A third distinct value would exceed the window budget of 2.0.
    let refused = client.record(&pick(7)).unwrap_err();
    assert!(
        matches!(
            refused,
            ClientError::Budget(ldp_sdk::Error::BudgetExhausted(_))
        ),
        "{refused:?}"
    );
    client.flush().await?;
    client.close().await?;
    assert_eq!(ledger.usage("app.pick", now)?.lifetime_spent, 2.0);

    // 52 reports arrived, and the 51 of value 5 are one memoized report: they
    // all land on one index (fresh GRR reports at eps 1 over 64 values would
    // spread over ~35 indices).
    let estimate = server.frequencies("app.pick").await?;
    assert_eq!(estimate.reports, 52);
    let g = estimate.guarantee.expect("guarantee");
    assert_eq!(
        (
            g.epsilon_per_report,
            g.epsilon_lifetime,
            g.reports_per_device
        ),
        (1.0, 1.0, 2)
    );
    let raw = estimate_counts(&server).await?;
    assert!(raw.iter().any(|&c| c >= 51), "{raw:?}");
    server.stop().await
}

/// The per-index report counts of `app.pick`, recovered from the unbiased
/// GRR estimates (n_v = c_v (p - q) + n q is an integer count).
async fn estimate_counts(server: &TestServer) -> anyhow::Result<Vec<u64>> {
    let estimate = server.frequencies("app.pick").await?;
    let eps: f64 = 1.0;
    let d = 64.0;
    let p = eps.exp() / (eps.exp() + d - 1.0);
    let q = 1.0 / (eps.exp() + d - 1.0);
    let n = estimate.reports as f64;
    Ok(estimate
        .values
        .iter()
        .map(|v| (v.estimate * (p - q) + n * q).round() as u64)
        .collect())
}
