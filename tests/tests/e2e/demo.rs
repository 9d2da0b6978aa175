//! `ldp demo` at a smaller scale, through the same library function the CLI uses
//! ([`ldp_aggregator::demo::run`]): 5,000 resampled Adult devices, 13 reports
//! each, through the SDK client and real gRPC into an in-process aggregator.
//!
//! Invariants checked:
//! - every report arrives exactly once (each metric pools exactly 5,000 reports);
//! - interval coverage: with K intervals (112 category shares and 3 means), the
//!   number covering the truth is about Binomial(K, 0.95) (treating the
//!   intervals as independent); it must be at least the 4-standard-error lower
//!   bound `0.95 K - 4 sqrt(K 0.95 0.05)` (about 100 of 115);
//! - each attribute's total variation distance is at most its expectation
//!   `0.5 sum sqrt(2/pi) se_v` plus 4 times the bound on its standard deviation
//!   `0.5 sum sqrt(1 - 2/pi) se_v` (normal approximation of each estimate);
//! - the same seed prints the same numbers twice.

use ldp_aggregator::demo::{self, DemoConfig, Target};
use ldp_aggregator::server::{Config, Server};
use ldp_aggregator::service::auth::Token;

fn config(devices: u64, seed: u64) -> DemoConfig {
    let mut c = DemoConfig::new();
    c.devices = Some(devices);
    c.seed = Some(seed);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adult_demo_matches_the_truth_within_its_intervals_and_is_reproducible() {
    let first = demo::run(config(5_000, 20_261_203)).await.unwrap();
    assert_eq!(first.devices, 5_000);
    for c in &first.categorical {
        assert_eq!(c.reports, 5_000, "{}", c.name);
    }
    for n in &first.numeric {
        assert_eq!(n.reports, 5_000, "{}", n.name);
    }

    let k = first.intervals() as f64;
    let lower = 0.95 * k - 4.0 * (k * 0.95 * 0.05).sqrt();
    assert_eq!(first.intervals(), 115);
    assert!(
        first.covered() as f64 >= lower,
        "{} of {k} intervals cover the truth; 4-SE lower bound {lower:.1}",
        first.covered()
    );

    for c in &first.categorical {
        let bound = c.expected_tv() + 4.0 * c.tv_sd_bound();
        assert!(
            c.tv_distance() <= bound,
            "{}: TV {:.4} above {bound:.4}",
            c.name,
            c.tv_distance()
        );
    }

    let html = demo::html_report(&first).to_html();
    assert_eq!(html.matches("<svg").count(), first.categorical.len() + 1);

    let second = demo::run(config(5_000, 20_261_203)).await.unwrap();
    assert_eq!(
        demo::render_tables(&first),
        demo::render_tables(&second),
        "a seeded demo must print the same numbers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_against_a_running_server_uses_fresh_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let token = Token::generate();
    let server = Server::start(Config::new(
        "127.0.0.1:0".parse().unwrap(),
        dir.path().join("ldp.db"),
        &token,
    ))
    .await
    .unwrap();
    let mut c = config(1_000, 7);
    c.target = Target::Connect {
        url: server.url(),
        token: token.clone(),
    };
    let outcome = demo::run(c).await.unwrap();
    assert!(outcome.server.contains(&server.url()));
    for c in &outcome.categorical {
        assert_eq!(c.reports, 1_000, "{}", c.name);
    }
    server.shutdown().await.unwrap();
}
