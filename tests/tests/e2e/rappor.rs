//! `Analytics.DecodeRappor` over real gRPC: SDK-encoded RAPPOR reports of a
//! known distribution are submitted to a RAPPOR metric, and the server decodes
//! its stored per-cohort counts against candidate strings.
//!
//! Invariants checked:
//! - the heavy strings are detected and each 95% interval is consistent with
//!   the realized share within 4 standard errors (a 4-SE band per string:
//!   with 3 strings a false alarm has probability about 3 x 6e-5);
//! - no candidate that nobody holds is detected (Bonferroni at alpha = 0.001
//!   over the candidates bounds that probability by 0.001);
//! - the decoding equals the in-process decode of the same counts, field by
//!   field, and carries the metric's eps_1 and eps_inf;
//! - bad requests get INVALID_ARGUMENT (not RAPPOR, empty, oversized or
//!   duplicated candidates, alpha outside (0, 1)), NOT_FOUND (unknown metric
//!   or version) or UNAUTHENTICATED (no token), and a metric without reports
//!   decodes to `reports = 0`.

use ldp_aggregator::rappor::counts::CohortCounts;
use ldp_aggregator::rappor::decode::{DecodeOptions, decode};
use ldp_aggregator::rappor::wire::decoded_from_proto;
use ldp_aggregator::service::analytics::MAX_RAPPOR_CANDIDATES;
use ldp_proto::v1 as pb;
use ldp_sdk::mechanism::MechanismSpec;
use ldp_sdk::mechanism::rappor::{DeviceSecret, RapporEncoder, RapporParams};
use ldp_sdk::metric::MetricSpec;
use ldp_sdk::wire::{self, ReportHeader};
use ldp_sdk::{Epsilon, LdpRng};
use ldp_tests::{TestServer, batch_id};
use tonic::Code;

fn rappor_spec(name: &str, params: &RapporParams) -> anyhow::Result<MetricSpec> {
    Ok(MetricSpec::new(
        name,
        Epsilon::new(params.epsilon_one())?,
        MechanismSpec::Rappor {
            num_bits: params.num_bits(),
            num_hashes: params.num_hashes(),
            num_cohorts: params.num_cohorts(),
            f: params.f(),
            p: params.p(),
            q: params.q(),
        },
    ))
}

fn request(metric: &str, candidates: &[String]) -> pb::DecodeRapporRequest {
    pb::DecodeRapporRequest {
        metric: metric.into(),
        candidates: candidates.to_vec(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decode_rappor_finds_the_heavy_strings_with_intervals_covering_the_truth()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    let params = RapporParams::new(32, 2, 16, 0.25, 0.25, 0.75)?;
    let metric = server
        .create_metric(&rappor_spec("e2e.rappor.words", &params)?)
        .await?;
    let header = ReportHeader {
        metric_id: metric.metric_id,
        metric_version: metric.version,
        epoch: 0,
    };

    // 20,000 devices: "alpha" 40%, "beta" 25%, "gamma" 15%, and 20% spread over
    // 40 strings that are not candidates (the background).
    let devices = 20_000u64;
    let value = |j: u64| match j % 20 {
        0..8 => "alpha".to_string(),
        8..13 => "beta".to_string(),
        13..16 => "gamma".to_string(),
        _ => format!("tail-{}", j % 40),
    };
    let mut rng = LdpRng::seeded_for_simulation(20_261_203);
    let mut local = CohortCounts::new(params.clone());
    let mut collector = server.collector().await?;
    let mut batch = Vec::new();
    for j in 0..devices {
        let device = RapporEncoder::new(
            params.clone(),
            &DeviceSecret::generate(&mut rng),
            &metric.name,
        );
        let report = device.encode(value(j).as_bytes(), &mut rng);
        local.add_report(&report)?;
        batch.push(wire::report_to_proto(header, &report)?);
        if batch.len() == 2_000 {
            collector
                .submit(pb::SubmitRequest {
                    batch_id: batch_id(j),
                    reports: std::mem::take(&mut batch),
                })
                .await?;
        }
    }
    let mut candidates: Vec<String> = ["alpha", "beta", "gamma"].map(String::from).to_vec();
    candidates.extend((0..30).map(|i| format!("nobody-{i}")));

    let mut req = request(&metric.name, &candidates);
    req.alpha = 0.001;
    let decoding = server
        .analytics()
        .await?
        .decode_rappor(req)
        .await?
        .into_inner();
    assert_eq!(decoding.reports, devices);
    assert_eq!((decoding.cohorts, decoding.cohorts_with_reports), (16, 16));
    assert_eq!(decoding.candidates, 33);
    assert_eq!(decoding.alpha, 0.001);
    assert_eq!(decoding.confidence, 0.95);
    let guarantee = decoding.guarantee.clone().unwrap();
    assert!((guarantee.epsilon_per_report - params.epsilon_one()).abs() < 1e-12);
    assert!((guarantee.epsilon_lifetime - params.epsilon_inf()).abs() < 1e-12);
    assert_eq!(guarantee.model, "local");

    let found: Vec<&str> = decoding
        .detections
        .iter()
        .map(|d| d.value.as_str())
        .collect();
    assert_eq!(found, ["alpha", "beta", "gamma"], "{decoding:?}");
    for (word, share) in [("alpha", 0.40), ("beta", 0.25), ("gamma", 0.15)] {
        let d = decoding
            .detections
            .iter()
            .find(|d| d.value == word)
            .unwrap();
        // Shares are exact by construction (j mod 20). 4-SE band, see the module docs.
        assert!(
            (d.proportion - share).abs() < 4.0 * d.prop_std_error,
            "{word}: {} ± {} vs {share}",
            d.proportion,
            d.prop_std_error
        );
        assert!(d.ci_low < d.proportion && d.proportion < d.ci_high);
        assert!((d.estimate - d.proportion * devices as f64).abs() < 1e-6 * devices as f64);
        assert!(d.z > decoding.z_threshold);
    }
    // The background (non-candidate strings, 20%) is estimated, not allocated.
    assert!((decoding.allocated_mass + decoding.background_mass - 1.0).abs() < 1e-9);

    // The server's answer is the in-process decode of the same counts.
    let options = DecodeOptions {
        alpha: 0.001,
        ..DecodeOptions::default()
    };
    assert_eq!(
        decoded_from_proto(&decoding),
        decode(&local, &candidates, &options)?
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decode_rappor_rejects_bad_requests_with_their_status_codes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    let params = RapporParams::new(16, 2, 4, 0.5, 0.5, 0.75)?;
    let metric = server
        .create_metric(&rappor_spec("e2e.rappor.empty", &params)?)
        .await?;
    server
        .create_metric(&MetricSpec::new(
            "e2e.oue",
            Epsilon::new(1.0)?,
            MechanismSpec::Oue { domain_size: 4 },
        ))
        .await?;
    let mut analytics = server.analytics().await?;
    let ok = vec!["a".to_string(), "b".to_string()];

    // A metric without reports decodes to nothing, not an error.
    let empty = analytics
        .decode_rappor(request(&metric.name, &ok))
        .await?
        .into_inner();
    assert_eq!(empty.reports, 0);
    assert!(empty.detections.is_empty());
    assert_eq!(empty.alpha, 0.05, "alpha 0 means the default");

    let too_many: Vec<String> = (0..=MAX_RAPPOR_CANDIDATES)
        .map(|i| format!("c{i}"))
        .collect();
    let duplicated = vec!["a".to_string(), "a".to_string()];
    let mut bad_alpha = request(&metric.name, &ok);
    bad_alpha.alpha = 1.5;
    let mut unknown_version = request(&metric.name, &ok);
    unknown_version.version = 7;
    let cases = [
        ("not RAPPOR", request("e2e.oue", &ok), Code::InvalidArgument),
        (
            "no candidates",
            request(&metric.name, &[]),
            Code::InvalidArgument,
        ),
        (
            "too many candidates",
            request(&metric.name, &too_many),
            Code::InvalidArgument,
        ),
        (
            "duplicate candidates",
            request(&metric.name, &duplicated),
            Code::InvalidArgument,
        ),
        ("alpha 1.5", bad_alpha, Code::InvalidArgument),
        ("unknown metric", request("e2e.nope", &ok), Code::NotFound),
        ("unknown version", unknown_version, Code::NotFound),
    ];
    for (what, req, code) in cases {
        let status = analytics.decode_rappor(req).await.unwrap_err();
        assert_eq!(status.code(), code, "{what}: {status:?}");
    }
    // Analytics needs the bearer token.
    let status = pb::analytics_client::AnalyticsClient::new(server.channel().await?)
        .decode_rappor(request(&metric.name, &ok))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    server.stop().await
}
