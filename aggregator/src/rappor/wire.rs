//! A [`Decoded`] on the wire: `ldp.v1.RapporDecoding`, the answer of
//! `Analytics.DecodeRappor`, and back (for clients that print or compare it).
//!
//! The conversion is lossless for every field both sides have: detections keep
//! their order (largest estimate first), intervals are the decoder's 95% normal
//! intervals.

use ldp_proto::v1 as pb;
use ldp_sdk::estimate::normal_quantile;

use super::counts::CohortCounts;
use super::decode::{Correction, DecodeOptions, Decoded, Detection};
use crate::registry::Published;

/// Confidence level of the intervals in a decoding.
pub const DECODE_CONFIDENCE: f64 = 0.95;

/// The response for `metric`. `decoded` is `None` when the metric holds no
/// reports yet: the answer then has `reports = 0`, no detections and the
/// Bonferroni threshold (the strictest either correction can use).
pub fn decoding_to_proto(
    metric: &Published,
    counts: &CohortCounts,
    num_candidates: usize,
    options: &DecodeOptions,
    decoded: Option<&Decoded>,
    guarantee: pb::Guarantee,
    epochs: Vec<u64>,
) -> pb::RapporDecoding {
    let params = counts.params();
    let cohorts_with_reports = (0..params.num_cohorts() as usize)
        .filter(|&c| counts.cohort_reports(c) > 0)
        .count();
    let to_u32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    let mut out = pb::RapporDecoding {
        metric: Some(metric.proto.clone()),
        reports: counts.total_reports(),
        cohorts: params.num_cohorts(),
        cohorts_with_reports: to_u32(cohorts_with_reports),
        candidates: to_u32(num_candidates),
        alpha: options.alpha,
        correction: correction_to_proto(options.correction).into(),
        z_threshold: normal_quantile(1.0 - options.alpha / num_candidates.max(1) as f64),
        guarantee: Some(guarantee),
        confidence: DECODE_CONFIDENCE,
        epochs,
        ..Default::default()
    };
    if let Some(d) = decoded {
        out.z_threshold = d.z_threshold;
        out.detections = d.detections.iter().map(detection_to_proto).collect();
        out.allocated_mass = d.allocated_mass;
        out.background_mass = d.background_mass.unwrap_or(1.0 - d.allocated_mass);
        out.dispersion = d.dispersion;
        out.nnls_selected = to_u32(d.nnls_selected);
        out.regressors = to_u32(d.regressors);
        out.aliased = d.aliased.clone();
    }
    out
}

/// The decoder's view of a `RapporDecoding` (the background is reported, so
/// `background_mass` is always `Some`).
pub fn decoded_from_proto(d: &pb::RapporDecoding) -> Decoded {
    Decoded {
        detections: d.detections.iter().map(detection_from_proto).collect(),
        num_reports: d.reports,
        num_candidates: d.candidates as usize,
        alpha: d.alpha,
        correction: correction_from_proto(d.correction()).unwrap_or_default(),
        z_threshold: d.z_threshold,
        allocated_mass: d.allocated_mass,
        background_mass: Some(d.background_mass),
        dispersion: d.dispersion,
        nnls_selected: d.nnls_selected as usize,
        regressors: d.regressors as usize,
        aliased: d.aliased.clone(),
    }
}

/// The wire name of a correction.
pub fn correction_to_proto(correction: Correction) -> pb::RapporCorrection {
    match correction {
        Correction::Bonferroni => pb::RapporCorrection::Bonferroni,
        Correction::FalseDiscoveryRate => pb::RapporCorrection::FalseDiscoveryRate,
    }
}

/// The correction a wire value names; `None` for UNSPECIFIED (the caller's default).
pub fn correction_from_proto(correction: pb::RapporCorrection) -> Option<Correction> {
    match correction {
        pb::RapporCorrection::Unspecified => None,
        pb::RapporCorrection::Bonferroni => Some(Correction::Bonferroni),
        pb::RapporCorrection::FalseDiscoveryRate => Some(Correction::FalseDiscoveryRate),
    }
}

fn detection_to_proto(d: &Detection) -> pb::RapporStringEstimate {
    pb::RapporStringEstimate {
        value: d.string.clone(),
        estimate: d.estimate,
        std_error: d.std_error,
        proportion: d.proportion,
        prop_std_error: d.prop_std_error,
        ci_low: d.prop_low_95,
        ci_high: d.prop_high_95,
        z: d.z,
    }
}

fn detection_from_proto(d: &pb::RapporStringEstimate) -> Detection {
    Detection {
        string: d.value.clone(),
        estimate: d.estimate,
        std_error: d.std_error,
        proportion: d.proportion,
        prop_std_error: d.prop_std_error,
        prop_low_95: d.ci_low,
        prop_high_95: d.ci_high,
        z: d.z,
    }
}
