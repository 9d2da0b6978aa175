//! Accuracy bars of issue 7 on the Adult test file (release builds only: these
//! train full models, too slow unoptimized; run with
//! `cargo test --release -p ldp-aggregator --test model_accuracy`).
//!
//! Only bars that are stable across seeds are asserted. Measured over seeds 1-5
//! (see the report in `model::demo`): the spread of a single run is ~0.0005
//! (DP-SGD), ~0.0013 (central Naive Bayes), ~0.013 (local Naive Bayes, sampled
//! attribute, epsilon 1) and ~0.003 (LDP-SGD, epsilon 4). Single-run bars are
//! used where the margin exceeds 3 such spreads; the local models are asserted
//! on the mean of 5 seeds, whose spread is the single-run spread / sqrt(5).
//! LDP-SGD at epsilon 1 (single runs 0.778 to 0.801, mean 0.794, majority class
//! 0.764) is asserted on the mean of 5 seeds only.
#![cfg(not(debug_assertions))]

use ldp_aggregator::dataset::adult::{self, Record};
use ldp_aggregator::model::features::{FeatureSpec, NbAttribute};
use ldp_aggregator::model::nb::{LocalParams, LocalVariant};
use ldp_aggregator::model::{Classifier, dpsgd, ldpsgd, logreg, nb};
use ldp_sdk::LdpRng;

fn data() -> (Vec<Record>, Vec<Record>) {
    let root = adult::repo_root();
    (
        adult::load(&adult::train_path(&root)).expect("train"),
        adult::load(&adult::test_path(&root)).expect("test"),
    )
}

fn mean_over_seeds(f: impl Fn(&mut LdpRng) -> f64) -> f64 {
    (1..=5u64)
        .map(|s| f(&mut LdpRng::seeded_for_simulation(s)))
        .sum::<f64>()
        / 5.0
}

#[test]
fn non_private_logistic_regression_reaches_085() {
    let (train, test) = data();
    let m = logreg::train(FeatureSpec::full(), &train, logreg::Params::default(), 1).unwrap();
    // Measured 0.851-0.852 over seeds; margin 0.002 = 4 spreads.
    assert!(m.accuracy(&test) >= 0.85, "{}", m.accuracy(&test));
}

#[test]
fn central_dp_sgd_reaches_085_at_epsilon_1() {
    let (train, test) = data();
    let mut rng = LdpRng::seeded_for_simulation(1);
    let (m, spent) = dpsgd::train(
        FeatureSpec::full(),
        &train,
        1.0,
        1e-5,
        dpsgd::Params::default(),
        &mut rng,
    )
    .unwrap();
    assert!(spent.epsilon <= 1.0 && spent.delta == 1e-5);
    // Measured 0.8512-0.8522; margin >= 0.0012 = 2.4 spreads of 0.0005 below
    // the worst seed.
    assert!(m.accuracy(&test) >= 0.85, "{}", m.accuracy(&test));
}

#[test]
fn central_naive_bayes_reaches_0815_at_epsilon_1() {
    let (train, test) = data();
    let mut rng = LdpRng::seeded_for_simulation(1);
    let (m, spent) = nb::train_central(&NbAttribute::all(), &train, 1.0, &mut rng).unwrap();
    assert!(spent.epsilon <= 1.0);
    // Measured 0.8171-0.8204; margin 0.0038 = 3 spreads.
    assert!(m.accuracy(&test) >= 0.815, "{}", m.accuracy(&test));
}

#[test]
fn local_naive_bayes_reaches_079_at_epsilon_1_on_average() {
    let (train, test) = data();
    let params = LocalParams::tuned(LocalVariant::Sample);
    let acc = mean_over_seeds(|rng| {
        nb::train_local(&params, &train, 1.0, rng)
            .unwrap()
            .0
            .accuracy(&test)
    });
    // Mean of 5 measured 0.816; its spread 0.013 / sqrt(5) = 0.006; margin
    // 0.026 = 4.3 spreads.
    assert!(acc >= 0.79, "{acc}");
}

#[test]
fn local_logistic_regression_reaches_082_at_epsilon_4_on_average() {
    let (train, test) = data();
    let params = ldpsgd::Params::for_epsilon(4.0);
    let acc = mean_over_seeds(|rng| {
        ldpsgd::train_local(&params, &train, 4.0, rng, |_, _| {})
            .unwrap()
            .0
            .accuracy(&test)
    });
    // Mean of 5 measured 0.834; spread 0.003 / sqrt(5); margin 0.014.
    assert!(acc >= 0.82, "{acc}");
}

#[test]
fn local_logistic_regression_beats_the_majority_class_at_epsilon_1_on_average() {
    let (train, test) = data();
    let majority = test.iter().filter(|r| !r.high_income()).count() as f64 / test.len() as f64;
    let params = ldpsgd::Params::for_epsilon(1.0);
    let acc = mean_over_seeds(|rng| {
        ldpsgd::train_local(&params, &train, 1.0, rng, |_, _| {})
            .unwrap()
            .0
            .accuracy(&test)
    });
    // Mean of 5 measured 0.794; single-run spread ~0.009, so the mean's is
    // ~0.004; margin 0.030 = 7 spreads.
    assert!(acc > majority, "{acc} vs majority {majority}");
}
