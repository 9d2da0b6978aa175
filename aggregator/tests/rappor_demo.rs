//! The RAPPOR demo end to end over gRPC (in-process server): every report is
//! stored, the decode finds the head of the distribution, a seed reproduces it.

use ldp_aggregator::rappor::demo::{RapporDemoConfig, html_section, render_text, run};

#[tokio::test]
async fn demo_over_grpc_is_reproducible_and_finds_the_top_word() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut config = RapporDemoConfig::new(&root);
    // 20,000 devices: "the" (share ~0.10) has a standard error of about
    // 0.0095 * sqrt(100,000 / 20,000) = 0.021, so z ~ 4.8 > 3.59 in expectation.
    config.devices = 20_000;
    config.seed = Some(42);
    let a = run(config.clone()).await.unwrap();
    let b = run(config).await.unwrap();
    assert_eq!(a.devices, 20_000);
    assert_eq!(a.decoded.num_reports, 20_000);
    assert_eq!(
        a.detected, b.detected,
        "the same seed must give the same result"
    );
    assert!(
        a.detected.iter().any(|d| d.word == "the"),
        "{}",
        render_text(&a)
    );
    assert!(a.false_positives <= 1, "{}", render_text(&a));
    assert!((a.params.epsilon_inf - 4.0 * 3f64.ln()).abs() < 1e-12);
    assert!(html_section(&a).contains("<section id=\"rappor\">"));
    assert!(serde_json::to_string(&a).unwrap().contains("tv_distance"));
}
