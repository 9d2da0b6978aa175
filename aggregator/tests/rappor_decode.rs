//! RAPPOR decoder robustness: recovery of a known distribution, rank-deficient
//! designs, nothing to detect, and parameter mismatches as typed errors.

use ldp_aggregator::rappor::RapporError;
use ldp_aggregator::rappor::counts::CohortCounts;
use ldp_aggregator::rappor::decode::{DecodeOptions, decode};
use ldp_aggregator::rappor::reference;
use ldp_sdk::LdpRng;
use ldp_sdk::mechanism::Report;
use ldp_sdk::mechanism::rappor::{DeviceSecret, RapporEncoder, RapporParams};

/// Counts of `n` simulated devices; device j holds `values[j % values.len()]`.
fn simulate(params: &RapporParams, values: &[&str], n: usize, seed: u64) -> CohortCounts {
    let mut rng = LdpRng::seeded_for_simulation(seed);
    let mut counts = CohortCounts::new(params.clone());
    for j in 0..n {
        let secret = DeviceSecret::generate(&mut rng);
        let device = RapporEncoder::new(params.clone(), &secret, "test.metric");
        let report = device.encode(values[j % values.len()].as_bytes(), &mut rng);
        counts.add_report(&report).unwrap();
    }
    counts
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn recovers_a_known_distribution_within_four_standard_errors() {
    // Shares 1/2, 1/4, 1/4 among 20,000 devices; 20 candidates, 17 held by nobody.
    let params = RapporParams::new(32, 2, 16, 0.25, 0.25, 0.75).unwrap();
    let values = ["alpha", "alpha", "beta", "gamma"];
    let counts = simulate(&params, &values, 20_000, 5);
    let mut candidates = strings(&["alpha", "beta", "gamma"]);
    candidates.extend((0..17).map(|i| format!("nobody-{i}")));
    let decoded = decode(&counts, &candidates, &DecodeOptions::default()).unwrap();
    let found: Vec<&str> = decoded
        .detections
        .iter()
        .map(|d| d.string.as_str())
        .collect();
    assert_eq!(found.len(), 3, "{found:?}");
    for (word, share) in [("alpha", 0.5), ("beta", 0.25), ("gamma", 0.25)] {
        let d = decoded
            .detections
            .iter()
            .find(|d| d.string == word)
            .unwrap();
        // 4 SE per estimate: a false alarm has probability ~6e-5 per word.
        assert!(
            (d.proportion - share).abs() < 4.0 * d.prop_std_error,
            "{d:?}"
        );
        assert!(d.prop_low_95 < d.proportion && d.proportion < d.prop_high_95);
    }
    assert!((decoded.allocated_mass - 1.0).abs() < 0.1);
}

#[test]
fn more_candidates_than_rows_is_handled() {
    // One cohort of 16 bits: 16 rows for 300 candidates. At most 16 columns are
    // identifiable; the others are reported as aliased and nothing panics.
    let params = RapporParams::new(16, 2, 1, 0.25, 0.25, 0.75).unwrap();
    let counts = simulate(&params, &["w0", "w1"], 5_000, 9);
    let candidates: Vec<String> = (0..300).map(|i| format!("w{i}")).collect();
    let decoded = decode(&counts, &candidates, &DecodeOptions::default()).unwrap();
    assert!(decoded.nnls_selected <= 16);
    assert!(decoded.detections.len() <= 16);
    for d in &decoded.detections {
        assert!(d.proportion.is_finite() && d.prop_std_error.is_finite() && d.prop_std_error > 0.0);
    }
}

#[test]
fn nothing_detected_is_an_empty_result_not_an_error() {
    // Every device holds a string that is not a candidate: the background takes
    // the mass; Bonferroni at alpha = 0.05 makes any detection unlikely (<= 5%).
    let params = RapporParams::new(16, 2, 32, 0.5, 0.5, 0.75).unwrap();
    let held: Vec<String> = (0..500).map(|i| format!("held-{i}")).collect();
    let held_refs: Vec<&str> = held.iter().map(String::as_str).collect();
    let counts = simulate(&params, &held_refs, 10_000, 3);
    let candidates: Vec<String> = (0..50).map(|i| format!("candidate-{i}")).collect();
    let decoded = decode(&counts, &candidates, &DecodeOptions::default()).unwrap();
    assert!(decoded.detections.is_empty(), "{:?}", decoded.detections);
    assert_eq!(decoded.allocated_mass, 0.0);
    assert_eq!(decoded.background_mass, Some(1.0));
}

#[test]
fn mismatched_parameters_are_typed_errors() {
    let params = RapporParams::new(16, 2, 4, 0.5, 0.5, 0.75).unwrap();
    // Wrong number of cohorts, wrong row width, more ones than reports.
    let row = |n: u64| {
        std::iter::once(n)
            .chain(std::iter::repeat_n(1, 16))
            .collect::<Vec<u64>>()
    };
    let rows3 = vec![row(10); 3];
    assert!(matches!(
        CohortCounts::from_rows(params.clone(), &rows3),
        Err(RapporError::CountsMismatch(_))
    ));
    let mut wide = vec![row(10); 4];
    wide[2].push(0);
    assert!(matches!(
        CohortCounts::from_rows(params.clone(), &wide),
        Err(RapporError::CountsMismatch(_))
    ));
    let too_many = vec![row(0); 4];
    assert!(matches!(
        CohortCounts::from_rows(params.clone(), &too_many),
        Err(RapporError::CountsMismatch(_))
    ));
    // Reports: cohort out of range, bit length for another k.
    let mut counts = CohortCounts::new(params.clone());
    let bad_cohort = Report::Rappor {
        cohort: 4,
        bits: vec![0, 0],
    };
    assert!(matches!(
        counts.add_report(&bad_cohort),
        Err(RapporError::Sdk(_))
    ));
    let bad_len = Report::Rappor {
        cohort: 0,
        bits: vec![0, 0, 0, 0],
    };
    assert!(matches!(
        counts.add_report(&bad_len),
        Err(RapporError::Sdk(_))
    ));
    assert!(matches!(
        reference::parse_report_row("c1,1,0000,0000,0000", &params),
        Err(RapporError::BitLength(_))
    ));
    assert!(matches!(
        reference::parse_report_row(
            "c1,9,0000000000000000,0000000000000000,0000000000000000",
            &params
        ),
        Err(RapporError::Cohort {
            cohort: 9,
            num_cohorts: 4
        })
    ));
    // No reports, empty and duplicate candidates.
    assert!(matches!(
        decode(&counts, &strings(&["a"]), &DecodeOptions::default()),
        Err(RapporError::NoReports)
    ));
    counts
        .add_report(&Report::Rappor {
            cohort: 0,
            bits: vec![1, 0],
        })
        .unwrap();
    assert!(matches!(
        decode(&counts, &[], &DecodeOptions::default()),
        Err(RapporError::Candidates(_))
    ));
    assert!(matches!(
        decode(&counts, &strings(&["a", "a"]), &DecodeOptions::default()),
        Err(RapporError::Candidates(_))
    ));
    let bad_alpha = DecodeOptions {
        alpha: 1.5,
        ..DecodeOptions::default()
    };
    assert!(decode(&counts, &strings(&["a"]), &bad_alpha).is_err());
}

#[test]
fn reference_files_with_other_parameters_are_rejected() {
    // words-small counts.csv / map.csv read with k = 32 or m = 32 must fail.
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/rappor/words-small");
    let k32 = RapporParams::new(32, 2, 64, 0.5, 0.5, 0.75).unwrap();
    let m32 = RapporParams::new(16, 2, 32, 0.5, 0.5, 0.75).unwrap();
    assert!(matches!(
        reference::read_counts(&dir.join("counts.csv"), k32.clone()),
        Err(RapporError::CountsMismatch(_))
    ));
    assert!(matches!(
        reference::read_counts(&dir.join("counts.csv"), m32.clone()),
        Err(RapporError::CountsMismatch(_))
    ));
    assert!(matches!(
        reference::read_map(&dir.join("map.csv"), &m32),
        Err(RapporError::MapMismatch(_))
    ));
    assert!(matches!(
        reference::read_map(&dir.join("map.csv"), &k32),
        Err(RapporError::MapMismatch(_))
    ));
    assert!(reference::read_reports(&dir.join("reports.csv"), &k32).is_err());
}

#[test]
fn bit_strings_are_most_significant_bit_first() {
    // Bit 0 is the last character; packed bytes are LSB first.
    assert_eq!(
        reference::parse_bit_string("0010000000010000", 16).unwrap(),
        vec![0x10, 0x20]
    );
    assert_eq!(
        reference::format_bit_string(&[0x10, 0x20], 16),
        "0010000000010000"
    );
    assert_eq!(
        reference::parse_bit_string("100000000001", 12).unwrap(),
        vec![0x01, 0x08]
    );
    assert!(reference::parse_bit_string("00x0", 4).is_err());
}
