//! Fast deterministic tests of the randomizers: golden parameter values, report
//! formats and validation, typed errors for bad input, the Laplace grid, and
//! property tests that no input makes any public function panic.
//!
//! The heavy statistical tests (unbiasedness, variance, privacy ratios) live in
//! `statistical.rs` and run in release mode.

use ldp_sdk::estimate::Stats;
use ldp_sdk::mechanism::numeric::Range;
use ldp_sdk::mechanism::olh::Olh;
use ldp_sdk::mechanism::{Mechanism, MechanismSpec, Report, sampling};
use ldp_sdk::{Epsilon, Error, LdpRng};
use proptest::prelude::*;

fn eps(e: f64) -> Epsilon {
    Epsilon::new(e).unwrap()
}

fn mech(spec: MechanismSpec, e: f64) -> Mechanism {
    Mechanism::new(spec, eps(e)).unwrap()
}

/// Golden values are the closed forms of the papers evaluated independently
/// here; the implementation rounds coins to 2^-64, far below the 1e-12 tolerance.
#[test]
fn golden_probabilities() {
    for &(e, d) in &[(0.5, 2u32), (1.0, 64), (4.0, 1000), (2.0_f64.ln(), 3)] {
        let ee = f64::exp(e);
        let Mechanism::Grr(m) = mech(MechanismSpec::Grr { domain_size: d }, e) else {
            unreachable!()
        };
        assert!((m.p() - ee / (ee + f64::from(d) - 1.0)).abs() < 1e-12);
        assert!((m.q() - 1.0 / (ee + f64::from(d) - 1.0)).abs() < 1e-12);

        let Mechanism::Unary(m) = mech(MechanismSpec::Sue { domain_size: d }, e) else {
            unreachable!()
        };
        let h = (e / 2.0).exp();
        assert!((m.p() - h / (h + 1.0)).abs() < 1e-12);
        assert!((m.q() - 1.0 / (h + 1.0)).abs() < 1e-12);

        let Mechanism::Unary(m) = mech(MechanismSpec::Oue { domain_size: d }, e) else {
            unreachable!()
        };
        assert_eq!(m.p(), 0.5);
        assert!((m.q() - 1.0 / (ee + 1.0)).abs() < 1e-12);

        let spec = MechanismSpec::Hadamard { domain_size: d };
        let Mechanism::Hadamard(m) = mech(spec, e) else {
            unreachable!()
        };
        assert!((m.c() - (ee + 1.0) / (ee - 1.0)).abs() < 1e-9 * m.c());
        assert_eq!(m.padded_size(), (d + 1).next_power_of_two());
    }
    // Hand-computed: eps = ln 3, d = 4 -> p = 3/6, q = 1/6.
    let Mechanism::Grr(m) = mech(MechanismSpec::Grr { domain_size: 4 }, 3.0_f64.ln()) else {
        unreachable!()
    };
    assert!((m.p() - 0.5).abs() < 1e-12 && (m.q() - 1.0 / 6.0).abs() < 1e-12);
}

#[test]
fn golden_olh_buckets_and_defaults() {
    // g = the prime next to e^eps + 1 with the smaller per-user variance:
    // eps 0.5 (2.65) -> 3, 1 (3.72) -> 3, 2 (8.39) -> 7, 4 (55.6) -> 53; and
    // S = g^k with k = ceil(log_g 100): 3^5, 3^5, 7^3, 53^2.
    for &(e, g, s) in &[
        (0.5, 3u32, 243u32),
        (1.0, 3, 243),
        (2.0, 7, 343),
        (4.0, 53, 2809),
    ] {
        let spec = MechanismSpec::Olh {
            domain_size: 100,
            buckets: 0,
            seed_count: 0,
        };
        let Mechanism::Olh(m) = mech(spec, e) else {
            unreachable!()
        };
        assert_eq!(m.buckets(), g);
        assert_eq!(m.seed_count(), s);
        let ee = f64::exp(e);
        assert!((m.p() - ee / (ee + f64::from(g) - 1.0)).abs() < 1e-12);
        assert_eq!(m.q(), 1.0 / f64::from(g));
        // Per-user variance (Wang et al. 2017):
        // (e^eps + g - 1)^2 / ((g - 1)(e^eps - 1)^2), leading term of count_variance;
        // within 3.04% of the continuous optimum 4 e^eps / (e^eps - 1)^2.
        let per_user =
            (ee + f64::from(g) - 1.0).powi(2) / ((f64::from(g) - 1.0) * (ee - 1.0).powi(2));
        assert!((m.count_variance(1.0, 0.0) - per_user).abs() < 1e-9 * per_user);
        let optimum = 4.0 * ee / (ee - 1.0).powi(2);
        assert!(
            per_user <= 1.031 * optimum,
            "eps {e}: {per_user} vs {optimum}"
        );
    }
}

#[test]
fn olh_default_bucket_cost_is_at_most_three_percent() {
    // V(g) / V(e^eps + 1) = (1 + r)^2 / (4 r) with g - 1 = r e^eps; the worst
    // case over prime gaps is (1 + 1/sqrt 2)^2 sqrt 2 / 4 = 1.03033, at
    // e^eps = sqrt 2 and 2 sqrt 2 (module docs).
    let mut worst = 1.0f64;
    for i in 1..=4000 {
        let e = f64::from(i) * 0.002; // eps in (0, 8]
        let ee = e.exp();
        let Ok(m) = Olh::new(2, 0, 0, eps(e)) else {
            continue;
        };
        let r = (f64::from(m.buckets()) - 1.0) / ee;
        worst = worst.max((1.0 + r).powi(2) / (4.0 * r));
    }
    assert!(worst > 1.0 && worst <= 1.030_34, "worst ratio {worst}");
}

#[test]
fn olh_family_is_exactly_pairwise_universal() {
    // K_uv = (number of colliding seeds) / S must equal 1/g exactly for every
    // u != v: checked on 200 sampled pairs per (d, g), g from 2 to 61 and
    // k = 1 to 4 digits. A non-universal family (e.g. any fixed
    // set of pseudo-random hashes) fails this almost surely.
    let cases = [
        (10u32, 2u32),
        (30, 3),
        (100, 5),
        (1000, 7),
        (1000, 53),
        (60, 61),
    ];
    for (d, g) in cases {
        let Mechanism::Olh(m) = mech(
            MechanismSpec::Olh {
                domain_size: d,
                buckets: g,
                seed_count: 0,
            },
            1.0,
        ) else {
            unreachable!()
        };
        let s = u64::from(m.seed_count());
        assert_eq!(s % u64::from(g), 0);
        let mut x = 12345u64;
        for _ in 0..200 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = ((x >> 33) % u64::from(d)) as u32;
            let v = ((x >> 13) % u64::from(d)) as u32;
            let hits = m.collisions(u, v);
            if u == v {
                assert_eq!(hits, s);
            } else {
                assert_eq!(hits * u64::from(g), s, "d {d} g {g}: K({u}, {v}) != 1/g");
            }
        }
    }
}

#[test]
fn olh_rejects_non_prime_buckets_and_free_seed_counts() {
    let olh = |buckets, seed_count| MechanismSpec::Olh {
        domain_size: 100,
        buckets,
        seed_count,
    };
    for bad in [olh(4, 0), olh(1, 0), olh(9, 0), olh(3, 1024), olh(3, 242)] {
        assert!(matches!(
            Mechanism::new(bad, eps(1.0)),
            Err(Error::InvalidParameter { .. })
        ));
    }
    assert!(Mechanism::new(olh(3, 243), eps(1.0)).is_ok());
    // Too many counters: e^16 + 1 far above 4096 buckets, and a large domain
    // with a large prime (101^4 seeds x 101 buckets > 2^24).
    assert!(matches!(
        Mechanism::new(olh(0, 0), eps(16.0)),
        Err(Error::InvalidParameter { .. })
    ));
    let big = MechanismSpec::Olh {
        domain_size: 1 << 24,
        buckets: 101,
        seed_count: 0,
    };
    assert!(matches!(
        Mechanism::new(big, eps(1.0)),
        Err(Error::InvalidParameter { .. })
    ));
}

#[test]
fn golden_variances() {
    // Leading per-user terms from the issue, checked through count_variance(1, 0).
    for &e in &[0.5, 1.0, 4.0] {
        let ee = f64::exp(e);
        let d = 64u32;
        let grr = mech(MechanismSpec::Grr { domain_size: d }, e);
        let want = (f64::from(d) - 2.0 + ee) / (ee - 1.0).powi(2);
        assert!((grr.count_variance(1.0, 0.0).unwrap() - want).abs() < 1e-9 * want);
        let sue = mech(MechanismSpec::Sue { domain_size: d }, e);
        let h = (e / 2.0).exp();
        let want = h / (h - 1.0).powi(2);
        assert!((sue.count_variance(1.0, 0.0).unwrap() - want).abs() < 1e-9 * want);
        let oue = mech(MechanismSpec::Oue { domain_size: d }, e);
        let want = 4.0 * ee / (ee - 1.0).powi(2);
        assert!((oue.count_variance(1.0, 0.0).unwrap() - want).abs() < 1e-9 * want);
        let hr = mech(MechanismSpec::Hadamard { domain_size: d }, e);
        let c = (ee + 1.0) / (ee - 1.0);
        assert!((hr.count_variance(1.0, 0.0).unwrap() - c * c).abs() < 1e-9 * c * c);
        // Numeric on [-1, 1] at t = 0.5.
        let t = 0.5;
        let duchi = mech(MechanismSpec::Duchi { lo: -1.0, hi: 1.0 }, e);
        assert!((duchi.report_variance(t).unwrap() - (c * c - t * t)).abs() < 1e-9 * c * c);
        let pm = mech(MechanismSpec::Piecewise { lo: -1.0, hi: 1.0 }, e);
        let want = t * t / (h - 1.0) + (h + 3.0) / (3.0 * (h - 1.0).powi(2));
        assert!((pm.report_variance(t).unwrap() - want).abs() < 1e-9 * want);
        // Discrete Laplace on [-1, 1] (Delta = 1024 steps of 2^-9... at most 2048):
        // within 0.1% of the continuous 8 / eps^2 plus rounding (<= gamma^2 / 4).
        let lap = mech(
            MechanismSpec::Laplace {
                lo: -1.0,
                hi: 1.0,
                granularity_log2: 0,
            },
            e,
        );
        let got = lap.report_variance(t).unwrap();
        assert!((got / (8.0 / (e * e)) - 1.0).abs() < 1e-3, "{got}");
    }
}

#[test]
fn bad_parameters_are_typed_errors() {
    let e = eps(1.0);
    for d in [0u32, 1, (1 << 24) + 1] {
        for spec in [
            MechanismSpec::Grr { domain_size: d },
            MechanismSpec::Sue { domain_size: d },
            MechanismSpec::Oue { domain_size: d },
            MechanismSpec::Hadamard { domain_size: d },
            MechanismSpec::Olh {
                domain_size: d,
                buckets: 0,
                seed_count: 0,
            },
        ] {
            assert!(matches!(
                Mechanism::new(spec, e),
                Err(Error::InvalidParameter { .. })
            ));
        }
    }
    for (lo, hi) in [
        (1.0, 1.0),
        (2.0, 1.0),
        (f64::NAN, 1.0),
        (0.0, f64::INFINITY),
        (-f64::MAX, f64::MAX),
        // Beyond 2^53: the server's sums of squared reports could overflow.
        (0.0, 1e152),
        (-1e16, 0.0),
    ] {
        for spec in [
            MechanismSpec::Duchi { lo, hi },
            MechanismSpec::Piecewise { lo, hi },
            MechanismSpec::Hybrid { lo, hi },
            MechanismSpec::Laplace {
                lo,
                hi,
                granularity_log2: 0,
            },
        ] {
            assert!(Mechanism::new(spec, e).is_err());
        }
    }
    // The widest accepted range.
    let widest = MechanismSpec::Duchi {
        lo: -Range::MAX_ABS,
        hi: Range::MAX_ABS,
    };
    assert!(Mechanism::new(widest, e).is_ok());
    // Epsilon beyond the limits.
    assert!(Mechanism::new(MechanismSpec::Binary, eps(51.0)).is_err());
    assert!(Mechanism::new(MechanismSpec::Binary, eps(1e-9)).is_err());
    // OLH: g = 1, too many cells.
    let olh_spec = |buckets, seed_count| MechanismSpec::Olh {
        domain_size: 10,
        buckets,
        seed_count,
    };
    assert!(Mechanism::new(olh_spec(1, 0), e).is_err());
    assert!(Mechanism::new(olh_spec(4, 1 << 21), e).is_err());
    // Laplace: a grid too fine for the range.
    let fine = MechanismSpec::Laplace {
        lo: 0.0,
        hi: 1e6,
        granularity_log2: -30,
    };
    assert!(Mechanism::new(fine, e).is_err());
}

#[test]
fn bad_values_are_typed_errors() {
    let mut rng = LdpRng::seeded_for_simulation(1);
    let e = 1.0;
    for spec in [
        MechanismSpec::Grr { domain_size: 5 },
        MechanismSpec::Sue { domain_size: 5 },
        MechanismSpec::Oue { domain_size: 5 },
        MechanismSpec::Hadamard { domain_size: 5 },
        MechanismSpec::Olh {
            domain_size: 5,
            buckets: 0,
            seed_count: 0,
        },
    ] {
        let m = mech(spec, e);
        assert!(matches!(
            m.encode_index(5, &mut rng),
            Err(Error::OutOfDomain { .. })
        ));
        assert!(matches!(
            m.encode_value(0.5, &mut rng),
            Err(Error::Unsupported(_))
        ));
        assert!(matches!(
            m.estimate_mean(&m.new_stats()),
            Err(Error::Unsupported(_))
        ));
    }
    for spec in [
        MechanismSpec::Duchi { lo: 0.0, hi: 1.0 },
        MechanismSpec::Piecewise { lo: 0.0, hi: 1.0 },
        MechanismSpec::Hybrid { lo: 0.0, hi: 1.0 },
        MechanismSpec::Laplace {
            lo: 0.0,
            hi: 1.0,
            granularity_log2: 0,
        },
    ] {
        let m = mech(spec, e);
        assert!(matches!(
            m.encode_value(f64::NAN, &mut rng),
            Err(Error::NotFinite(_))
        ));
        assert!(matches!(
            m.encode_value(f64::INFINITY, &mut rng),
            Err(Error::NotFinite(_))
        ));
        // Out of range: rejected, never clamped.
        assert!(matches!(
            m.encode_value(1.5, &mut rng),
            Err(Error::InvalidParameter { name: "value", .. })
        ));
        assert!(m.encode_value(-0.01, &mut rng).is_err());
        assert!(matches!(
            m.encode_index(0, &mut rng),
            Err(Error::Unsupported(_))
        ));
        assert!(m.estimate_frequencies(&m.new_stats()).is_err());
        // No reports: the mean is undefined, a typed error.
        assert!(m.estimate_mean(&m.new_stats()).is_err());
    }
}

#[test]
fn unary_reports_pack_lsb_first_with_zero_padding() {
    let mut rng = LdpRng::seeded_for_simulation(2);
    for d in [2u32, 7, 8, 9, 13, 64, 65, 1000] {
        // Large epsilon: the true bit is set with probability 1/2 (OUE) and other
        // bits almost never, so a set bit v shows where v is packed.
        let m = mech(MechanismSpec::Oue { domain_size: d }, 40.0);
        let mut seen = false;
        for _ in 0..64 {
            let Report::Bits(bits) = m.encode_index(d - 1, &mut rng).unwrap() else {
                unreachable!()
            };
            assert_eq!(bits.len(), (d as usize).div_ceil(8));
            m.validate(&Report::Bits(bits.clone())).unwrap();
            let last = bits[((d - 1) / 8) as usize] >> ((d - 1) % 8) & 1;
            seen |= last == 1;
            // All other bits are 0 with probability 1 - 2^-57 each at eps = 40.
            let ones: u32 = bits.iter().map(|b| b.count_ones()).sum();
            assert_eq!(ones, u32::from(last));
        }
        assert!(seen, "bit d-1 never set in 64 draws (probability 2^-64)");
        if d % 8 != 0 {
            let mut bad = vec![0u8; (d as usize).div_ceil(8)];
            *bad.last_mut().unwrap() = 0x80;
            assert!(
                m.validate(&Report::Bits(bad)).is_err(),
                "padding accepted, d = {d}"
            );
        }
        assert!(
            m.validate(&Report::Bits(vec![0; d as usize / 8 + 2]))
                .is_err()
        );
    }
}

#[test]
fn reports_of_the_wrong_kind_or_range_are_rejected() {
    let m = mech(MechanismSpec::Hadamard { domain_size: 5 }, 1.0);
    assert!(m.validate(&Report::Index(0)).is_err());
    let bad = Report::Hadamard {
        coefficient: 8,
        positive: true,
    };
    assert!(m.validate(&bad).is_err());
    let mut stats = m.new_stats();
    assert!(m.accumulate(&mut stats, &bad).is_err());
    assert_eq!(
        stats,
        m.new_stats(),
        "a rejected report must not change stats"
    );
    let olh = mech(
        MechanismSpec::Olh {
            domain_size: 5,
            buckets: 3,
            seed_count: 9,
        },
        1.0,
    );
    let out = Report::Hashed {
        seed_index: 9,
        bucket: 0,
    };
    assert!(olh.validate(&out).is_err());
    let duchi = mech(MechanismSpec::Duchi { lo: 0.0, hi: 1.0 }, 1.0);
    assert!(duchi.validate(&Report::Numeric(0.5)).is_err());
    assert!(duchi.validate(&Report::Numeric(f64::NAN)).is_err());
    let pm = mech(MechanismSpec::Piecewise { lo: 0.0, hi: 1.0 }, 1.0);
    assert!(pm.validate(&Report::Numeric(1e9)).is_err());
    assert!(pm.validate(&Report::Numeric(f64::INFINITY)).is_err());
    let wrong_len = Stats::new(3);
    assert!(matches!(
        m.estimate_frequencies(&wrong_len),
        Err(Error::StatsMismatch(_))
    ));
}

#[test]
fn laplace_outputs_are_exact_grid_multiples() {
    let mut rng = LdpRng::seeded_for_simulation(3);
    let spec = MechanismSpec::Laplace {
        lo: -3.7,
        hi: 12.2,
        granularity_log2: 0,
    };
    let Mechanism::Laplace(lap) = mech(spec.clone(), 1.0) else {
        unreachable!()
    };
    // (hi - lo) / 1024 = 0.0155 -> gamma = 2^-7.
    assert_eq!(lap.granularity_log2(), -7);
    assert_eq!(lap.granularity(), 1.0 / 128.0);
    let m = mech(spec, 1.0);
    for i in 0..2000 {
        let x = -3.7 + 15.9 * f64::from(i) / 1999.0;
        let Report::Grid(k) = m.encode_value(x, &mut rng).unwrap() else {
            unreachable!()
        };
        let v = lap.value_of(k);
        // Exact: k * 2^-7 has no bits below 2^-7, and maps back to k exactly.
        assert_eq!(v * 128.0, k as f64);
        assert_eq!((v * 128.0).fract(), 0.0);
        assert_eq!(v % lap.granularity(), 0.0);
    }
    // The implemented epsilon is the conservative rational floor(eps 2^20) / 2^20.
    let Mechanism::Laplace(l) = mech(
        MechanismSpec::Laplace {
            lo: 0.0,
            hi: 1.0,
            granularity_log2: 0,
        },
        0.1,
    ) else {
        unreachable!()
    };
    assert!(l.implemented_epsilon() <= 0.1 && l.implemented_epsilon() > 0.1 - 1e-6);
    assert_eq!(l.grid_steps(), 1024);
}

#[test]
fn estimates_of_a_known_stats_vector() {
    // GRR d = 2, eps = ln 3: p = 3/4, q = 1/4. Counts (60, 40) of n = 100:
    // c_0 = (60 - 25) / (1/2) = 70, c_1 = 30.
    let m = mech(MechanismSpec::Binary, 3.0_f64.ln());
    let stats = Stats {
        reports: 100,
        counts: vec![60, 40],
        sum: 0.0,
        sum_sq: 0.0,
    };
    let est = m.estimate_frequencies(&stats).unwrap();
    assert!((est[0].value - 70.0).abs() < 1e-9 && (est[1].value - 30.0).abs() < 1e-9);
    // Var = n q(1-q)/(p-q)^2 + c (1-p-q)/(p-q) = 100 * 3/16 * 4 + 0 = 75.
    assert!((est[0].std_error - 75.0_f64.sqrt()).abs() < 1e-9);
}

#[test]
fn coins_with_integer_thresholds() {
    assert_eq!(sampling::threshold_down(0.75), 3 << 62);
    let mut rng = LdpRng::seeded_for_simulation(9);
    // 64 * 1000 coins at 1/4: mean 16000, sd sqrt(64000 * 3/16) = 110; 5 sd.
    let ones: u32 = (0..1000)
        .map(|_| sampling::bernoulli_word(&mut rng, 1 << 62).count_ones())
        .sum();
    assert!((f64::from(ones) - 16_000.0).abs() < 5.0 * 110.0, "{ones}");
}

fn any_spec() -> impl Strategy<Value = MechanismSpec> {
    let d = prop_oneof![0u32..70, Just(1000u32), Just(u32::MAX)];
    let num = prop_oneof![
        any::<f64>(),
        -10.0f64..10.0,
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(0.0)
    ];
    prop_oneof![
        Just(MechanismSpec::Binary),
        d.clone()
            .prop_map(|domain_size| MechanismSpec::Grr { domain_size }),
        d.clone()
            .prop_map(|domain_size| MechanismSpec::Sue { domain_size }),
        d.clone()
            .prop_map(|domain_size| MechanismSpec::Oue { domain_size }),
        d.clone()
            .prop_map(|domain_size| MechanismSpec::Hadamard { domain_size }),
        (d, 0u32..70, prop_oneof![0u32..40, Just(u32::MAX)]).prop_map(
            |(domain_size, buckets, seed_count)| MechanismSpec::Olh {
                domain_size,
                buckets,
                seed_count
            }
        ),
        (num.clone(), num.clone(), -1100i32..1100).prop_map(|(lo, hi, granularity_log2)| {
            MechanismSpec::Laplace {
                lo,
                hi,
                granularity_log2,
            }
        }),
        (num.clone(), num.clone()).prop_map(|(lo, hi)| MechanismSpec::Duchi { lo, hi }),
        (num.clone(), num.clone()).prop_map(|(lo, hi)| MechanismSpec::Piecewise { lo, hi }),
        (num.clone(), num).prop_map(|(lo, hi)| MechanismSpec::Hybrid { lo, hi }),
    ]
}

fn any_report() -> impl Strategy<Value = Report> {
    prop_oneof![
        any::<u32>().prop_map(Report::Index),
        proptest::collection::vec(any::<u8>(), 0..200).prop_map(Report::Bits),
        (any::<u32>(), any::<u32>())
            .prop_map(|(seed_index, bucket)| Report::Hashed { seed_index, bucket }),
        (any::<u32>(), any::<bool>()).prop_map(|(coefficient, positive)| Report::Hadamard {
            coefficient,
            positive
        }),
        any::<i64>().prop_map(Report::Grid),
        any::<f64>().prop_map(Report::Numeric),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// No spec, epsilon, value or report makes any public function panic.
    #[test]
    fn no_input_panics(
        spec in any_spec(),
        e in prop_oneof![any::<f64>(), 0.0f64..60.0],
        index in prop_oneof![0u32..80, any::<u32>()],
        value in prop_oneof![any::<f64>(), -20.0f64..20.0],
        reports in proptest::collection::vec(any_report(), 0..8),
        seed in any::<u64>(),
    ) {
        let Ok(e) = Epsilon::new(e) else { return Ok(()) };
        let Ok(m) = Mechanism::new(spec, e) else { return Ok(()) };
        let mut rng = LdpRng::seeded_for_simulation(seed);
        let mut stats = m.new_stats();
        let mut all = reports;
        if let Ok(r) = m.encode_index(index, &mut rng) { all.push(r) }
        if let Ok(r) = m.encode_value(value, &mut rng) { all.push(r) }
        for r in &all {
            if m.validate(r).is_ok() {
                m.accumulate(&mut stats, r).unwrap();
            } else {
                prop_assert!(m.accumulate(&mut stats, r).is_err());
            }
        }
        let _ = m.estimate_frequencies(&stats);
        let _ = m.estimate_mean(&stats);
        let _ = m.count_variance(stats.reports as f64, 1.0);
        let _ = m.report_variance(value);
        let _ = m.estimate_frequencies(&Stats::new(3));
    }
}
