//! RAPPOR on the server: per-cohort bit counts, decoding of a string distribution
//! against a candidate list, and the file formats of the RAPPOR reference
//! implementation (google/rappor).
//!
//! - [`counts::CohortCounts`]: the sufficient statistics, `N_c` reports and the
//!   one-counts of every IRR bit per cohort (the SDK's `Mechanism::Rappor` stats,
//!   or the reference `counts.csv`).
//! - [`decode::decode`]: debiasing to Bloom-bit shares, a non-negative least
//!   squares fit of the candidates' Bloom bits (plus a background term for
//!   strings that are not candidates), least squares on the selected candidates
//!   with standard errors, and a Bonferroni-corrected test as the detection
//!   threshold.
//! - [`reference`](mod@reference): reading and writing `params.csv`, `reports.csv`,
//!   `counts.csv`, `map.csv` and `candidates.txt` exactly as the reference tools
//!   do (CRLF, MSB-first bit strings, 1-based map rows), and converting reference
//!   reports into [`ldp_sdk::mechanism::Report::Rappor`].
//! - [`wire`]: a decoding as `ldp.v1.RapporDecoding`, the answer of
//!   `Analytics.DecodeRappor` (served from the stored per-cohort counts).
//! - [`demo`]: a simulation of devices sending RAPPOR reports over gRPC.
//!
//! All RAPPOR math that devices also need (Bloom hashing, the combined
//! probabilities, epsilons) comes from [`ldp_sdk::mechanism::rappor`].
//!
//! ```
//! use ldp_aggregator::rappor::{counts::CohortCounts, decode::{decode, DecodeOptions}};
//! use ldp_sdk::mechanism::rappor::{DeviceSecret, RapporEncoder, RapporParams};
//! use ldp_sdk::LdpRng;
//!
//! let params = RapporParams::new(16, 2, 16, 0.25, 0.25, 0.75)?;
//! let mut rng = LdpRng::seeded_for_simulation(1);
//! let mut counts = CohortCounts::new(params.clone());
//! for i in 0..20_000 {
//!     let value = if i % 2 == 0 { "apple" } else { "pear" };
//!     let device = RapporEncoder::new(params.clone(), &DeviceSecret::generate(&mut rng), "fruit");
//!     counts.add_report(&device.encode(value.as_bytes(), &mut rng))?;
//! }
//! let candidates: Vec<String> = ["apple", "pear", "plum"].map(String::from).to_vec();
//! let decoded = decode(&counts, &candidates, &DecodeOptions::default())?;
//! assert_eq!(decoded.detections.len(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod counts;
pub mod decode;
pub mod demo;
mod linalg;
pub mod reference;
pub mod wire;

/// Everything that can go wrong reading, counting or decoding RAPPOR data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RapporError {
    /// Invalid parameters, or a report that does not match them (from the SDK).
    #[error(transparent)]
    Sdk(#[from] ldp_sdk::Error),
    /// Counts whose shape does not match the parameters (cohorts x (bits + 1)).
    #[error("counts do not match the parameters: {0}")]
    CountsMismatch(String),
    /// A bit string or map row whose length does not match `num_bits` / `num_hashes`.
    #[error("bit length mismatch: {0}")]
    BitLength(String),
    /// A cohort outside `[0, num_cohorts)`.
    #[error("cohort {cohort} outside [0, {num_cohorts})")]
    Cohort {
        /// The cohort found.
        cohort: u64,
        /// The parameters' number of cohorts.
        num_cohorts: u32,
    },
    /// The candidate list is empty or has a duplicate.
    #[error("invalid candidates: {0}")]
    Candidates(String),
    /// No reports were counted, so there is nothing to decode.
    #[error("no reports to decode")]
    NoReports,
    /// A reference `map.csv` that disagrees with the candidates' Bloom hashes.
    #[error("map does not match the candidates and parameters: {0}")]
    MapMismatch(String),
    /// A file that does not have the reference format.
    #[error("{file}:{line}: {reason}")]
    Parse {
        /// The file (as given).
        file: String,
        /// 1-based line number (0: the whole file).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The solver did not converge within its iteration limit.
    #[error("the fit did not converge: {0}")]
    NotConverged(String),
}
