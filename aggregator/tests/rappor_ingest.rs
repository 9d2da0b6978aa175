//! Ingest of reference-format RAPPOR reports into a metric: `ldp rappor ingest`
//! against an in-process server stores exactly the counts of the reference
//! `counts.csv`, and running it twice stores nothing twice; `DecodeRappor` (and
//! `ldp rappor decode --metric`) on the stored counts gives the offline decode.

use std::path::PathBuf;

use ldp_aggregator::cli::Format;
use ldp_aggregator::cli::connect::ConnectArgs;
use ldp_aggregator::cli::rappor::{Command, DecodeArgs, IngestArgs, run};
use ldp_aggregator::rappor::counts::CohortCounts;
use ldp_aggregator::rappor::decode::{Correction, DecodeOptions, decode};
use ldp_aggregator::rappor::reference;
use ldp_aggregator::rappor::wire::decoded_from_proto;
use ldp_aggregator::server::{Config, Server};
use ldp_aggregator::service::auth::Token;
use ldp_aggregator::store::Store;
use ldp_aggregator::store::sqlite::SqliteStore;
use ldp_proto::v1 as pb;
use ldp_sdk::mechanism::{Mechanism, MechanismSpec};
use ldp_sdk::metric::MetricSpec;
use ldp_sdk::{Epsilon, wire};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/rappor/words-small")
}

#[test]
fn reference_reports_accumulate_to_the_reference_counts() {
    // The server-side path without the network: every reports.csv row becomes a
    // Report::Rappor that Mechanism::Rappor validates and counts like sum_bits.py.
    let params = reference::read_params(&dir().join("params.csv")).unwrap();
    let spec = MechanismSpec::Rappor {
        num_bits: 16,
        num_hashes: 2,
        num_cohorts: 64,
        f: 0.5,
        p: 0.5,
        q: 0.75,
    };
    let mech = Mechanism::new(spec, Epsilon::new(params.epsilon_one()).unwrap()).unwrap();
    let mut stats = mech.new_stats();
    for row in reference::read_reports(&dir().join("reports.csv"), &params).unwrap() {
        mech.accumulate(&mut stats, &row.report).unwrap();
    }
    let expected = reference::read_counts(&dir().join("counts.csv"), params.clone()).unwrap();
    assert_eq!(CohortCounts::from_stats(params, &stats).unwrap(), expected);
}

#[tokio::test]
async fn ingest_over_grpc_is_exact_and_idempotent() {
    let work = tempfile::tempdir().unwrap();
    let db = work.path().join("ingest.db");
    let token = Token::generate();
    let server = Server::start(Config::new(
        "127.0.0.1:0".parse().unwrap(),
        db.clone(),
        &token,
    ))
    .await
    .unwrap();
    let conn = ConnectArgs {
        connect: server.url(),
        token: Some(token.expose().to_string()),
        token_file: None,
        ca_cert: None,
    };
    let params = reference::read_params(&dir().join("params.csv")).unwrap();
    let spec = MetricSpec::new(
        "words.small",
        Epsilon::new(params.epsilon_one()).unwrap(),
        MechanismSpec::Rappor {
            num_bits: 16,
            num_hashes: 2,
            num_cohorts: 64,
            f: 0.5,
            p: 0.5,
            q: 0.75,
        },
    );
    let created = conn
        .admin()
        .await
        .unwrap()
        .create_metric(pb::CreateMetricRequest {
            spec: Some(wire::metric_to_proto(&spec).unwrap()),
        })
        .await
        .unwrap()
        .into_inner();
    let metric = wire::metric_from_proto(created.metric.unwrap()).unwrap();
    let ingest = || {
        Command::Ingest(IngestArgs {
            conn: conn.clone(),
            metric: "words.small".into(),
            params: dir().join("params.csv"),
            reports: dir().join("reports.csv"),
            batch_size: 10_000,
        })
    };
    run(ingest()).await.unwrap();
    run(ingest()).await.unwrap(); // every batch is a duplicate the second time
    // Parameters that differ from the metric's are rejected before sending.
    let other = work.path().join("params.csv");
    std::fs::write(&other, "k,h,m,p,q,f\n16,2,32,0.5,0.75,0.5\n").unwrap();
    let mismatch = Command::Ingest(IngestArgs {
        conn: conn.clone(),
        metric: "words.small".into(),
        params: other,
        reports: dir().join("reports.csv"),
        batch_size: 10_000,
    });
    assert!(run(mismatch).await.is_err());

    // The analyst's path without files: the server decodes the stored counts,
    // which equal counts.csv, so the answer is the offline decode, field by field.
    let candidates = reference::read_candidates(&dir().join("candidates.txt")).unwrap();
    let decoding = conn
        .analytics()
        .await
        .unwrap()
        .decode_rappor(pb::DecodeRapporRequest {
            metric: "words.small".into(),
            candidates: candidates.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let counts = reference::read_counts(&dir().join("counts.csv"), params.clone()).unwrap();
    assert_eq!(
        decoded_from_proto(&decoding),
        decode(&counts, &candidates, &DecodeOptions::default()).unwrap()
    );
    assert_eq!((decoding.cohorts, decoding.cohorts_with_reports), (64, 64));
    assert_eq!(decoding.correction(), pb::RapporCorrection::Bonferroni);
    // The false-discovery-rate correction reaches the decoder; an unknown
    // correction is refused.
    let decode_with = |correction: i32| {
        let conn = conn.clone();
        let candidates = candidates.clone();
        async move {
            conn.analytics()
                .await
                .unwrap()
                .decode_rappor(pb::DecodeRapporRequest {
                    metric: "words.small".into(),
                    candidates,
                    correction,
                    ..Default::default()
                })
                .await
        }
    };
    let fdr = decode_with(pb::RapporCorrection::FalseDiscoveryRate.into())
        .await
        .unwrap()
        .into_inner();
    let fdr_options = DecodeOptions {
        correction: Correction::FalseDiscoveryRate,
        ..DecodeOptions::default()
    };
    assert_eq!(
        decoded_from_proto(&fdr),
        decode(&counts, &candidates, &fdr_options).unwrap()
    );
    assert_eq!(fdr.correction(), pb::RapporCorrection::FalseDiscoveryRate);
    let unknown = decode_with(7).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::InvalidArgument, "{unknown:?}");
    // `ldp rappor decode --metric` prints it; an unknown metric is an error.
    let cli_decode = |metric: &str| {
        Command::Decode(DecodeArgs {
            metric: Some(metric.into()),
            version: 0,
            epochs: Vec::new(),
            conn: conn.clone(),
            params: None,
            reports: None,
            counts: None,
            candidates: dir().join("candidates.txt"),
            map: None,
            alpha: 0.05,
            correction: Correction::FalseDiscoveryRate,
            format: Format::Csv,
        })
    };
    run(cli_decode("words.small")).await.unwrap();
    assert!(run(cli_decode("no.such.metric")).await.is_err());
    server.shutdown().await.unwrap();

    let store = SqliteStore::open(&db).await.unwrap();
    let (stats, _) = store
        .load_stats(metric.metric_id, metric.version, None, 64 * 17)
        .await
        .unwrap();
    store.close().await.unwrap();
    let expected = reference::read_counts(&dir().join("counts.csv"), params.clone()).unwrap();
    assert_eq!(stats.reports, 100_000);
    assert_eq!(CohortCounts::from_stats(params, &stats).unwrap(), expected);
}
