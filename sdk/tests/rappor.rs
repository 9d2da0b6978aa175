//! RAPPOR encoder tests: memoization of the PRR (across reports, restarts and
//! metrics), IRR bit frequencies, and bit-exact interoperability with the
//! reference client on the shared `words-small` case.

use ldp_sdk::mechanism::rappor::{DeviceSecret, RapporEncoder, RapporParams};
use ldp_sdk::mechanism::{Mechanism, MechanismSpec, Report};
use ldp_sdk::{Epsilon, LdpRng};

fn params() -> RapporParams {
    RapporParams::new(16, 2, 64, 0.5, 0.5, 0.75).unwrap()
}

fn bit(bytes: &[u8], i: usize) -> u8 {
    (bytes[i / 8] >> (i % 8)) & 1
}

fn report_bits(report: &Report) -> &[u8] {
    match report {
        Report::Rappor { bits, .. } => bits,
        other => panic!("not a RAPPOR report: {other:?}"),
    }
}

#[test]
fn prr_is_identical_across_10000_encodings_and_a_restart() {
    let mut rng = LdpRng::seeded_for_simulation(1);
    let secret = DeviceSecret::generate(&mut rng);
    let enc = RapporEncoder::new(params(), &secret, "words");
    let prr = enc.prr(b"hello");
    // Recover the PRR from the IRRs alone: per bit the rate is q = 0.75 if the PRR
    // bit is 1 and p = 0.5 if 0; with n = 10,000 the SE is <= 0.005, so the midpoint
    // 0.625 is 25 SE from either rate and the recovery is exact unless memoization fails.
    let n = 10_000;
    let mut ones = [0u32; 16];
    for _ in 0..n {
        let report = enc.encode(b"hello", &mut rng);
        for (i, one) in ones.iter_mut().enumerate() {
            *one += u32::from(bit(report_bits(&report), i));
        }
    }
    for (i, &one) in ones.iter().enumerate() {
        let recovered = u8::from(f64::from(one) / f64::from(n) > 0.625);
        assert_eq!(recovered, bit(&prr, i), "bit {i}: {one} ones of {n}");
    }
    // A restart: a new encoder from the persisted secret bytes.
    let restored = DeviceSecret::from_bytes(secret.expose_bytes()).unwrap();
    let again = RapporEncoder::new(params(), &restored, "words");
    assert_eq!(again.cohort(), enc.cohort());
    for value in ["hello", "world", "the", ""] {
        assert_eq!(again.prr(value.as_bytes()), enc.prr(value.as_bytes()));
    }
}

#[test]
fn prrs_of_different_metrics_are_independent() {
    // Same secret, two metric names. With f = 1/2 a PRR bit equals the Bloom bit
    // with probability 3/4; for independent keys two PRR bits agree with
    // probability (3/4)^2 + (1/4)^2 = 0.625 (identical keys: 1). Over 2,000 values
    // x 16 bits the SE is sqrt(0.625 * 0.375 / 32,000) = 0.0027; tolerance 5 SE.
    let secret = DeviceSecret::from_bytes(b"device-7").unwrap();
    let (a, b) = (
        RapporEncoder::new(params(), &secret, "metric.a"),
        RapporEncoder::new(params(), &secret, "metric.b"),
    );
    let (mut agree, mut total) = (0u32, 0u32);
    for v in 0..2_000 {
        let value = format!("value-{v}");
        // The same Bloom filter under both keys: only the keys differ.
        let bloom = params().bloom(value.as_bytes(), 0);
        let (pa, pb) = (a.prr_of_bloom(&bloom), b.prr_of_bloom(&bloom));
        for i in 0..16 {
            agree += u32::from(bit(&pa, i) == bit(&pb, i));
            total += 1;
        }
    }
    let rate = f64::from(agree) / f64::from(total);
    assert!((rate - 0.625).abs() < 5.0 * 0.0027, "agreement {rate}");
}

#[test]
fn irr_bit_frequencies_match_p_and_q() {
    // A fixed PRR pattern; every IRR bit is 1 with probability q = 0.75 where the
    // PRR bit is 1 and p = 0.5 where it is 0. n = 200,000 reports: the SE of a
    // rate is sqrt(r (1 - r) / n) <= 0.00112; tolerance 5 SE per bit (32 checks,
    // false-alarm probability about 32 * 5.7e-7).
    let params = RapporParams::new(16, 2, 64, 0.5, 0.5, 0.75).unwrap();
    let prr: Vec<u8> = vec![0b1010_0110, 0b0101_1001];
    let mut rng = LdpRng::seeded_for_simulation(7);
    let n = 200_000u32;
    let mut ones = [0u32; 16];
    for _ in 0..n {
        let irr = params.irr(&prr, &mut rng);
        for (i, one) in ones.iter_mut().enumerate() {
            *one += u32::from(bit(&irr, i));
        }
    }
    for (i, &one) in ones.iter().enumerate() {
        let expected = if bit(&prr, i) == 1 {
            params.q()
        } else {
            params.p()
        };
        let se = (expected * (1.0 - expected) / f64::from(n)).sqrt();
        let rate = f64::from(one) / f64::from(n);
        assert!(
            (rate - expected).abs() < 5.0 * se,
            "bit {i}: rate {rate}, expected {expected}"
        );
    }
}

#[test]
fn prr_bit_frequencies_match_f() {
    // Over many device secrets, a PRR bit is flipped away from its Bloom bit with
    // probability f/2 = 0.25. n = 20,000 secrets x 16 bits = 320,000 bits:
    // SE = sqrt(0.25 * 0.75 / 320,000) = 0.00077; tolerance 5 SE.
    let params = params();
    let bloom = params.bloom(b"some", 1);
    let mut rng = LdpRng::seeded_for_simulation(11);
    let (mut flipped, mut total) = (0u32, 0u32);
    for _ in 0..20_000 {
        let enc = RapporEncoder::new(params.clone(), &DeviceSecret::generate(&mut rng), "m");
        let prr = enc.prr_of_bloom(&bloom);
        for i in 0..16 {
            flipped += u32::from(bit(&prr, i) != bit(&bloom, i));
            total += 1;
        }
    }
    let rate = f64::from(flipped) / f64::from(total);
    assert!((rate - 0.25).abs() < 5.0 * 0.00077, "flip rate {rate}");
}

#[test]
fn reports_validate_and_accumulate_per_cohort() {
    let spec = MechanismSpec::Rappor {
        num_bits: 16,
        num_hashes: 2,
        num_cohorts: 64,
        f: 0.5,
        p: 0.5,
        q: 0.75,
    };
    let mech = Mechanism::new(spec.clone(), Epsilon::new(1.1).unwrap()).unwrap();
    assert_eq!(mech.stats_len(), 64 * 17);
    let mut stats = mech.new_stats();
    let good = Report::Rappor {
        cohort: 3,
        bits: vec![0b0000_0101, 0b1000_0000],
    };
    mech.accumulate(&mut stats, &good).unwrap();
    assert_eq!(stats.counts[3 * 17], 1);
    assert_eq!(stats.counts[3 * 17 + 1], 1); // bit 0
    assert_eq!(stats.counts[3 * 17 + 2], 0); // bit 1
    assert_eq!(stats.counts[3 * 17 + 3], 1); // bit 2
    assert_eq!(stats.counts[3 * 17 + 16], 1); // bit 15
    assert_eq!(stats.reports, 1);
    // Mismatches: cohort out of range, wrong bit length, wrong payload kind.
    let before = stats.clone();
    for bad in [
        Report::Rappor {
            cohort: 64,
            bits: vec![0, 0],
        },
        Report::Rappor {
            cohort: 0,
            bits: vec![0, 0, 0],
        },
        Report::Rappor {
            cohort: 0,
            bits: vec![0],
        },
        Report::Index(1),
    ] {
        assert!(mech.accumulate(&mut stats, &bad).is_err(), "{bad:?}");
    }
    assert_eq!(stats, before);
    // Padding bits must be zero when k is not a multiple of 8.
    let spec12 = MechanismSpec::Rappor {
        num_bits: 12,
        num_hashes: 2,
        num_cohorts: 4,
        f: 0.5,
        p: 0.5,
        q: 0.75,
    };
    let mech12 = Mechanism::new(spec12, Epsilon::new(1.1).unwrap()).unwrap();
    assert!(
        mech12
            .validate(&Report::Rappor {
                cohort: 0,
                bits: vec![0, 0x10]
            })
            .is_err()
    );
    assert!(
        mech12
            .validate(&Report::Rappor {
                cohort: 0,
                bits: vec![0, 0x08]
            })
            .is_ok()
    );
    // A declared epsilon below eps_1 = 1.0743 is rejected; frequencies need the decoder.
    assert!(Mechanism::new(spec, Epsilon::new(1.0).unwrap()).is_err());
    assert!(mech.estimate_frequencies(&stats).is_err());
}

#[test]
fn wide_filters_extend_the_reference_construction() {
    // k > 32: the first 32 PRR bytes come from HMAC(key, be(B)) as for k <= 32, further
    // ones from counter blocks; check determinism and the flip rate over all 128 bits.
    let params = RapporParams::new(128, 4, 8, 0.5, 0.25, 0.75).unwrap();
    let mut rng = LdpRng::seeded_for_simulation(3);
    let (mut flipped, mut total) = (0u32, 0u32);
    for _ in 0..2_000 {
        let enc = RapporEncoder::new(params.clone(), &DeviceSecret::generate(&mut rng), "wide");
        let bloom = enc.bloom(b"x");
        let prr = enc.prr(b"x");
        assert_eq!(prr, enc.prr(b"x"));
        for i in 0..128 {
            flipped += u32::from(bit(&prr, i) != bit(&bloom, i));
            total += 1;
        }
    }
    // 256,000 bits, flip probability 1/4: SE = 0.00086; tolerance 5 SE.
    let rate = f64::from(flipped) / f64::from(total);
    assert!((rate - 0.25).abs() < 5.0 * 0.000_86, "flip rate {rate}");
}

/// A parameter file with RAPPOR's p and q swapped (q = P(1 | PRR 1) below
/// p = P(1 | PRR 0)) used to decode silently to nothing; it is now a typed error
/// that names the likely swap.
#[test]
fn swapped_p_and_q_are_rejected() {
    let err = RapporParams::new(16, 2, 64, 0.5, 0.75, 0.5).unwrap_err();
    assert!(err.to_string().contains("swapped"), "{err}");
}
