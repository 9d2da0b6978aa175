//! Statistical tests of every randomizer against its theory. Heavy: run in
//! release mode, `cargo test --release -p ldp-sdk --test statistical`
//! (under a minute on 2 cores).
//!
//! Every test uses a fixed seed and a tolerance derived from the known sampling
//! distribution of the statistic it checks, stated next to the assertion:
//! - unbiasedness: the mean of R >= 200 independent estimates lies within 4
//!   standard errors sqrt(Var / R) of the truth (Var from the closed form);
//! - variance: empirical over theoretical in [0.9, 1.1] for every mechanism at
//!   eps in {0.5, 1, 4} and d in {2, 64, 1000};
//! - privacy: for every output (or output bin, or bit of a unary report), its
//!   frequency under one input is at most e^eps times its frequency under
//!   another, up to 4 standard errors of the difference;
//! - floating-point-safe Laplace: the low-order bits of the output do not depend
//!   on the input.
//!
//! Compiled only with optimizations (`#![cfg(not(debug_assertions))]`): in a debug
//! build these repetitions take many minutes, so CI runs them as their own release
//! step (`.ci/run`).
#![cfg(not(debug_assertions))]

use std::collections::HashMap;
use std::hash::Hash;

use ldp_sdk::mechanism::{Mechanism, MechanismSpec, Report};
use ldp_sdk::{Epsilon, LdpRng};

const EPSILONS: [f64; 3] = [0.5, 1.0, 4.0];
const DOMAINS: [u32; 3] = [2, 64, 1000];

fn mech(spec: MechanismSpec, e: f64) -> Mechanism {
    Mechanism::new(spec, Epsilon::new(e).unwrap()).unwrap()
}

/// Users per repetition and repetitions R per domain size.
///
/// The relative standard error of a sample variance from R repetitions is
/// sqrt((2 + kappa) / (R - 1)) for an estimator with excess kurtosis kappa
/// (here below 0.3: counts of n >= 1000 reports are close to normal). The
/// variance test pools the d per-value variances, which are uncorrelated for
/// unary encoding, Hadamard response and OLH (over the hash family) and have
/// correlation about -1/(d-1) for GRR. Worst case, d = 2 with fully correlated
/// values (GRR): R = 4000 gives 2.3%, so the band [0.9, 1.1] is 4.3 standard
/// errors. d = 64, R = 1000: about 0.6%; d = 1000, R = 200: about 0.35%.
fn plan(d: u32) -> (usize, usize) {
    match d {
        2 => (1000, 4000),
        64 => (2000, 1000),
        _ => (5000, 200),
    }
}

/// A skewed population: value floor(d u^2) for u evenly spread in (0, 1), so
/// some values are frequent, some rare.
fn population(d: u32, n: usize) -> Vec<u32> {
    (0..n)
        .map(|i| {
            let u = (i as f64 + 0.5) / n as f64;
            ((u * u * f64::from(d)) as u32).min(d - 1)
        })
        .collect()
}

fn frequency_specs(d: u32) -> Vec<(&'static str, MechanismSpec)> {
    let mut specs = vec![
        ("grr", MechanismSpec::Grr { domain_size: d }),
        ("sue", MechanismSpec::Sue { domain_size: d }),
        ("oue", MechanismSpec::Oue { domain_size: d }),
        (
            "olh",
            MechanismSpec::Olh {
                domain_size: d,
                buckets: 0,
                seed_count: 0,
            },
        ),
        ("hadamard", MechanismSpec::Hadamard { domain_size: d }),
    ];
    if d == 2 {
        specs.push(("binary", MechanismSpec::Binary));
    }
    specs
}

#[test]
fn frequency_oracles_are_unbiased_with_the_stated_variance() {
    let mut seed = 1000;
    for d in DOMAINS {
        let (n, reps) = plan(d);
        let pop = population(d, n);
        let mut truth = vec![0.0; d as usize];
        for &v in &pop {
            truth[v as usize] += 1.0;
        }
        for e in EPSILONS {
            for (name, spec) in frequency_specs(d) {
                seed += 1;
                let m = mech(spec, e);
                let mut rng = LdpRng::seeded_for_simulation(seed);
                // Sums of (estimate - truth) and its square, per value.
                let mut s1 = vec![0.0; d as usize];
                let mut s2 = vec![0.0; d as usize];
                for _ in 0..reps {
                    let mut stats = m.new_stats();
                    for &v in &pop {
                        let r = m.encode_index(v, &mut rng).unwrap();
                        m.accumulate(&mut stats, &r).unwrap();
                    }
                    let est = m.estimate_frequencies(&stats).unwrap();
                    for (v, x) in est.iter().enumerate() {
                        let dev = x.value - truth[v];
                        s1[v] += dev;
                        s2[v] += dev * dev;
                    }
                }
                let r = reps as f64;
                let theory: Vec<f64> = truth
                    .iter()
                    .map(|&c| m.count_variance(n as f64, c).unwrap())
                    .collect();
                let empirical: Vec<f64> = (0..d as usize)
                    .map(|v| (s2[v] - s1[v] * s1[v] / r) / (r - 1.0))
                    .collect();
                let ratio = empirical.iter().sum::<f64>() / theory.iter().sum::<f64>();
                // Band [0.9, 1.1]: at least 4.3 standard errors of the ratio (see `plan`).
                assert!(
                    (0.9..=1.1).contains(&ratio),
                    "{name} eps={e} d={d}: variance ratio {ratio:.4}"
                );
                let mut checked = vec![0, d as usize / 2, d as usize - 1];
                checked.dedup();
                for v in checked {
                    let mean = truth[v] + s1[v] / r;
                    // Every oracle is exactly unbiased, OLH included: its public
                    // family is exactly pairwise universal (K_uv = 1/g).
                    let target = truth[v];
                    let se = (theory[v] / r).sqrt();
                    // 4 standard errors of a mean of R independent estimates
                    // (two-sided tail 6e-5 per check, about 150 checks).
                    assert!(
                        (mean - target).abs() <= 4.0 * se,
                        "{name} eps={e} d={d} v={v}: mean {mean:.2}, expected {target:.2}, se {se:.3}"
                    );
                }
            }
        }
    }
}

fn numeric_specs(lo: f64, hi: f64) -> Vec<(&'static str, MechanismSpec)> {
    vec![
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
    ]
}

#[test]
fn numeric_means_are_unbiased_with_the_stated_variance() {
    let (lo, hi) = (-3.0, 5.0);
    // n identical users per repetition, R repetitions. The mean of n = 200
    // reports has excess kurtosis at most 50 / 200 (Duchi at |t| = 1, eps = 4),
    // so the relative SE of the empirical variance is sqrt(2.25 / 4999) = 2.1%:
    // [0.9, 1.1] is 4.7 standard errors.
    let (n, reps) = (200usize, 5000usize);
    let mut seed = 5000;
    for e in EPSILONS {
        for (name, spec) in numeric_specs(lo, hi) {
            let m = mech(spec, e);
            for x in [lo, -0.6, hi] {
                seed += 1;
                let mut rng = LdpRng::seeded_for_simulation(seed);
                let (mut s1, mut s2, mut reported_var) = (0.0, 0.0, 0.0);
                for _ in 0..reps {
                    let mut stats = m.new_stats();
                    for _ in 0..n {
                        let r = m.encode_value(x, &mut rng).unwrap();
                        m.accumulate(&mut stats, &r).unwrap();
                    }
                    let est = m.estimate_mean(&stats).unwrap();
                    let dev = est.value - x;
                    s1 += dev;
                    s2 += dev * dev;
                    reported_var += est.std_error * est.std_error;
                }
                let r = reps as f64;
                let theory = m.report_variance(x).unwrap() / n as f64;
                let empirical = (s2 - s1 * s1 / r) / (r - 1.0);
                let ratio = empirical / theory;
                // Band [0.9, 1.1]: 4.7 standard errors (see above).
                assert!(
                    (0.9..=1.1).contains(&ratio),
                    "{name} eps={e} x={x}: variance ratio {ratio:.4}"
                );
                let se = (theory / r).sqrt();
                // 4 standard errors of the mean of R estimates.
                assert!(
                    (s1 / r).abs() <= 4.0 * se,
                    "{name} eps={e} x={x}: bias {:.5}, se {se:.5}",
                    s1 / r
                );
                // The reported SE comes from the sample variance of n reports;
                // its square averaged over R repetitions has relative SE below
                // sqrt((2 + 50) / 200 / 5000) = 0.7%: 5% is 7 standard errors.
                let se_ratio = reported_var / r / theory;
                assert!(
                    (0.95..=1.05).contains(&se_ratio),
                    "{name} eps={e} x={x}: reported variance ratio {se_ratio:.4}"
                );
            }
        }
    }
}

/// Asserts f_a(o) <= e^eps f_b(o) for every output o (both directions), up to
/// 4 standard errors of f_a - e^eps f_b (binomial frequencies of N draws).
fn assert_ratio_bounded<K: Hash + Eq + std::fmt::Debug>(
    what: &str,
    e: f64,
    a: &HashMap<K, u64>,
    b: &HashMap<K, u64>,
    draws: u64,
) {
    let n = draws as f64;
    let ee = e.exp();
    let keys = a.keys().chain(b.keys());
    for k in keys {
        let fa = *a.get(k).unwrap_or(&0) as f64 / n;
        let fb = *b.get(k).unwrap_or(&0) as f64 / n;
        for (x, y) in [(fa, fb), (fb, fa)] {
            // Standard error at the null boundary f_b = f_a / e^eps (plugging in
            // an observed f_b of 0 for a rare output would understate it).
            let y_null = y.max(x / ee);
            let sd = ((x * (1.0 - x) + ee * ee * y_null * (1.0 - y_null)) / n).sqrt();
            // One-sided 4 standard errors: tail 3e-5 per check.
            assert!(
                x <= ee * y + 4.0 * sd + 1e-12,
                "{what} eps={e} output {k:?}: {x:.5} > e^eps * {y:.5} (+4 sd {sd:.5})"
            );
        }
    }
}

fn histogram<K: Hash + Eq>(draws: u64, mut sample: impl FnMut() -> Vec<K>) -> HashMap<K, u64> {
    let mut h = HashMap::new();
    for _ in 0..draws {
        for k in sample() {
            *h.entry(k).or_insert(0) += 1;
        }
    }
    h
}

#[test]
fn finite_outputs_respect_the_privacy_ratio() {
    let draws = 200_000u64;
    let mut seed = 9000;
    for e in [0.5, 1.0, 4.0] {
        // Categorical: every output of GRR, OLH (g = 5, so S = 5 seeds) and Hadamard, and the
        // full bit vectors of SUE/OUE at d = 3 (odd: the last byte has padding).
        let specs = [
            ("grr", MechanismSpec::Grr { domain_size: 5 }, 0, 4),
            (
                "olh",
                MechanismSpec::Olh {
                    domain_size: 5,
                    buckets: 5,
                    seed_count: 5,
                },
                0,
                4,
            ),
            ("hadamard", MechanismSpec::Hadamard { domain_size: 5 }, 0, 4),
            ("sue", MechanismSpec::Sue { domain_size: 3 }, 0, 2),
            ("oue", MechanismSpec::Oue { domain_size: 3 }, 2, 1),
        ];
        for (name, spec, va, vb) in specs {
            let m = mech(spec, e);
            seed += 1;
            let mut rng = LdpRng::seeded_for_simulation(seed);
            let mut out = |v| {
                let m = &m;
                histogram(draws, || {
                    vec![format!("{:?}", m.encode_index(v, &mut rng).unwrap())]
                })
            };
            let (a, b) = (out(va), out(vb));
            assert_ratio_bounded(name, e, &a, &b, draws);
        }
        // Every bit position of unary reports at odd d = 13, including the last
        // (bit 12, alone in its byte with 7 padding bits): P(bit i = 1) and
        // P(bit i = 0) under inputs 0 and 12.
        for spec in [
            MechanismSpec::Sue { domain_size: 13 },
            MechanismSpec::Oue { domain_size: 13 },
        ] {
            let m = mech(spec, e);
            seed += 1;
            let mut rng = LdpRng::seeded_for_simulation(seed);
            let mut bits = |v| {
                histogram(draws, || {
                    let Report::Bits(b) = m.encode_index(v, &mut rng).unwrap() else {
                        unreachable!()
                    };
                    assert_eq!(b.len(), 2);
                    assert_eq!(b[1] >> 5, 0, "padding bits must be zero");
                    (0..13)
                        .map(|i| (i, b[i / 8] >> (i % 8) & 1))
                        .collect::<Vec<_>>()
                })
            };
            let (a, b) = (bits(0), bits(12));
            assert_eq!(a.len(), 26, "every bit position takes both values");
            assert_ratio_bounded("unary bits", e, &a, &b, draws);
        }
        // Numeric: Duchi's two outputs; Piecewise and Hybrid in 32 bins of their
        // output range; Laplace in bins of 64 grid steps plus two tails. A bin is
        // a union of outputs, so its probability ratio is bounded too.
        for (name, spec) in numeric_specs(0.0, 1.0) {
            let m = mech(spec, e);
            seed += 1;
            let mut rng = LdpRng::seeded_for_simulation(seed);
            let mut binned = |x: f64| {
                histogram(draws, || {
                    let r = m.encode_value(x, &mut rng).unwrap();
                    let bin = match r {
                        Report::Grid(k) => (k.clamp(-4096, 5120) / 64) as i32,
                        Report::Numeric(v) => ((v + 20.0) * 0.8).floor() as i32,
                        _ => unreachable!(),
                    };
                    vec![bin]
                })
            };
            let (a, b) = (binned(0.0), binned(1.0));
            assert_ratio_bounded(name, e, &a, &b, draws);
        }
    }
}

#[test]
fn laplace_low_order_bits_do_not_depend_on_the_input() {
    // On [0, 1] the grid is 2^-10 (Delta = 1024 steps). Inputs 0 and 1 are grid
    // points 0 and 1024. The report is an integer k, so the f64 value k * 2^-10
    // has no bits below 2^-10; the residues of k modulo 2, 4, 8, 16 must have the
    // same distribution under both inputs.
    let draws = 200_000u64;
    for e in EPSILONS {
        let m = mech(
            MechanismSpec::Laplace {
                lo: 0.0,
                hi: 1.0,
                granularity_log2: 0,
            },
            e,
        );
        let Mechanism::Laplace(lap) = &m else {
            unreachable!()
        };
        assert_eq!(lap.granularity(), 1.0 / 1024.0);
        let mut rng = LdpRng::seeded_for_simulation(77);
        let mut residues = |x: f64| {
            histogram(draws, || {
                let Report::Grid(k) = m.encode_value(x, &mut rng).unwrap() else {
                    unreachable!()
                };
                let v = lap.value_of(k);
                assert_eq!((v * 1024.0).fract(), 0.0, "bits below the grid");
                assert_eq!(v * 1024.0, k as f64);
                (1..=4)
                    .map(|j| (j, k.rem_euclid(1 << j)))
                    .collect::<Vec<_>>()
            })
        };
        let (a, b) = (residues(0.0), residues(1.0));
        for (key, &ca) in &a {
            let cb = *b.get(key).unwrap_or(&0);
            let (fa, fb) = (ca as f64 / draws as f64, cb as f64 / draws as f64);
            let f = (fa + fb) / 2.0;
            let sd = (2.0 * f * (1.0 - f) / draws as f64).sqrt();
            // Two-sample difference within 4.5 standard errors (30 checks per eps).
            assert!(
                (fa - fb).abs() <= 4.5 * sd,
                "eps={e} residue {key:?}: {fa:.5} vs {fb:.5}"
            );
        }
        assert_eq!(a.len(), 2 + 4 + 8 + 16);
    }
}
