//! The decoder on simulated replicates of the words-small setup (k = 16, h = 2,
//! m = 64, f = 0.5, p = 0.5, q = 0.75, 100,000 reports of the top 200 words of
//! `data/words/en_words_top10k.tsv`, the top 300 as candidates), so its
//! accuracy is checked beyond the one shared realization.
//!
//! Each device sends one report, so given the cohort's Bloom counts `n1` every
//! IRR count is `Bin(n1, q*) + Bin(N_c - n1, p*)` (bits are independent given the
//! Bloom filter): the replicates draw exactly that, without encoding 100,000
//! devices one by one.
//!
//! Invariants checked, over 8 replicates with fixed seeds:
//! - false positives: Bonferroni at alpha = 0.05 bounds the chance of any per
//!   replicate by 0.05, so the total is stochastically below Binomial(8, 0.05);
//!   at most 2 (P(>= 3) ~ 0.006);
//! - every detected estimate lies within 4 of its standard errors of the
//!   replicate's true share (about 45 estimates, so a false alarm has
//!   probability about 45 x 6e-5 = 0.003);
//! - the mean total variation distance is below 0.396: the mean over 40
//!   replicates was 0.375 with a per-replicate standard deviation of 0.015, so
//!   the mean of 8 has a standard deviation of 0.0053, and 0.396 is 4 of them
//!   above 0.375.

use std::collections::HashMap;
use std::path::PathBuf;

use ldp_aggregator::rappor::counts::CohortCounts;
use ldp_aggregator::rappor::decode::{CandidateMap, DecodeOptions, decode_with_map};
use ldp_aggregator::rappor::demo::load_words;
use ldp_sdk::LdpRng;
use ldp_sdk::mechanism::rappor::RapporParams;
use rand::RngExt;

const DEVICES: usize = 100_000;
const SUPPORT: usize = 200;
const CANDIDATES: usize = 300;

/// One replicate: its counts and the true share of every held word.
fn replicate(
    params: &RapporParams,
    map: &CandidateMap,
    cdf: &[f64],
    seed: u64,
) -> (CohortCounts, HashMap<String, f64>) {
    let (m, k) = (params.num_cohorts() as usize, params.num_bits() as usize);
    let mut rng = LdpRng::seeded_for_simulation(seed);
    // Cohort = device number mod m, as in the reference case.
    let mut held = vec![vec![0u64; SUPPORT]; m];
    for device in 0..DEVICES {
        let u: f64 = rng.random();
        let word = cdf.partition_point(|&c| c <= u).min(SUPPORT - 1);
        held[device % m][word] += 1;
    }
    let (qs, ps) = (
        params.prob_one_given_bloom_one(),
        params.prob_one_given_bloom_zero(),
    );
    let mut draw = |n: u64, p: f64| binomial(&mut rng, n, p);
    let mut rows = Vec::with_capacity(m);
    for (c, words) in held.iter().enumerate() {
        let nc: u64 = words.iter().sum();
        let mut bloom_ones = vec![0u64; k];
        for (w, &count) in words.iter().enumerate() {
            for &i in map.bits(w, c) {
                bloom_ones[i as usize] += count;
            }
        }
        let mut row = vec![nc];
        row.extend(
            bloom_ones
                .iter()
                .map(|&n1| draw(n1, qs) + draw(nc - n1, ps)),
        );
        rows.push(row);
    }
    let mut truth = HashMap::new();
    for w in 0..SUPPORT {
        let count: u64 = held.iter().map(|h| h[w]).sum();
        if count > 0 {
            truth.insert(map.candidates()[w].clone(), count as f64 / DEVICES as f64);
        }
    }
    (
        CohortCounts::from_rows(params.clone(), &rows).unwrap(),
        truth,
    )
}

/// An exact `Bin(n, p)` draw for `p` a multiple of 2^-16 (here p* = 9/16 and
/// q* = 11/16): four Bernoulli draws from every 64 random bits.
fn binomial(rng: &mut LdpRng, n: u64, p: f64) -> u64 {
    let threshold = p * 65_536.0;
    assert_eq!(threshold.fract(), 0.0, "{p} is not a multiple of 2^-16");
    let threshold = threshold as u64;
    let (mut ones, mut left) = (0, n);
    while left > 0 {
        let mut bits: u64 = rng.random();
        for _ in 0..left.min(4) {
            ones += u64::from(bits & 0xffff < threshold);
            bits >>= 16;
        }
        left -= left.min(4);
    }
    ones
}

#[test]
fn words_small_replicates_meet_the_error_bounds() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let words = load_words(&root.join("data/words/en_words_top10k.tsv"), CANDIDATES).unwrap();
    let candidates: Vec<String> = words.iter().map(|w| w.0.clone()).collect();
    let params = RapporParams::new(16, 2, 64, 0.5, 0.5, 0.75).unwrap();
    let map = CandidateMap::hash(&params, &candidates).unwrap();
    let total: f64 = words[..SUPPORT].iter().map(|w| w.1).sum();
    let cdf: Vec<f64> = words[..SUPPORT]
        .iter()
        .scan(0.0, |acc, w| {
            *acc += w.1 / total;
            Some(*acc)
        })
        .collect();

    let (mut tv_sum, mut false_positives) = (0.0, 0);
    let seeds = 1..=8u64;
    let replicates = seeds.clone().count() as f64;
    for seed in seeds {
        let (counts, truth) = replicate(&params, &map, &cdf, 20_261_203 + seed);
        let decoded = decode_with_map(&counts, &map, &DecodeOptions::default()).unwrap();
        let mut tv: f64 = truth
            .iter()
            .filter(|(w, _)| !decoded.detections.iter().any(|d| &d.string == *w))
            .map(|(_, t)| t)
            .sum();
        for d in &decoded.detections {
            let t = truth.get(&d.string).copied().unwrap_or(0.0);
            false_positives += usize::from(t == 0.0);
            tv += (d.proportion - t).abs();
            assert!(
                (d.proportion - t).abs() < 4.0 * d.prop_std_error,
                "seed {seed}, {}: {} ± {} vs {t}",
                d.string,
                d.proportion,
                d.prop_std_error
            );
        }
        println!(
            "seed {seed}: detected {}, TV {:.4}",
            decoded.detections.len(),
            tv / 2.0
        );
        tv_sum += tv / 2.0;
    }
    let mean_tv = tv_sum / replicates;
    println!("mean TV {mean_tv:.4}, false positives {false_positives}");
    assert!(false_positives <= 2, "{false_positives} false positives");
    assert!(mean_tv < 0.396, "mean total variation {mean_tv}");
}
