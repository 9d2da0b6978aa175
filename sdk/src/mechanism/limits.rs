//! Parameter limits shared by every mechanism.
//!
//! They keep the derived probabilities representable (no 0 or 1 coins, no
//! overflowing e^epsilon) and the statistics of bounded size. Out-of-range
//! parameters are a typed [`Error::InvalidParameter`], never a panic.

use crate::{Epsilon, Error, Result};

/// Smallest epsilon any mechanism accepts (2^-20): below it, estimator variances
/// exceed 10^12 per report and the integer coins lose their resolution.
pub const MIN_EPSILON: f64 = 1.0 / 1_048_576.0;

/// Largest epsilon any mechanism accepts: e^50 is still far from overflow and a
/// lie still has a nonzero 64-bit threshold. Larger values give no privacy.
pub const MAX_EPSILON: f64 = 50.0;

/// Largest categorical domain (2^24): per-value statistics stay below 128 MiB.
pub const MAX_DOMAIN_SIZE: u32 = 1 << 24;

/// Checks `MIN_EPSILON <= epsilon <= MAX_EPSILON`.
pub fn check_epsilon(epsilon: Epsilon) -> Result<()> {
    let e = epsilon.get();
    if (MIN_EPSILON..=MAX_EPSILON).contains(&e) {
        Ok(())
    } else {
        Err(Error::InvalidParameter {
            name: "epsilon",
            reason: format!("{e:?} outside [{MIN_EPSILON}, {MAX_EPSILON}]"),
        })
    }
}

/// Checks `2 <= d <= MAX_DOMAIN_SIZE`.
pub fn check_domain_size(d: u32) -> Result<()> {
    if (2..=MAX_DOMAIN_SIZE).contains(&d) {
        Ok(())
    } else {
        Err(Error::InvalidParameter {
            name: "domain_size",
            reason: format!("{d} outside [2, {MAX_DOMAIN_SIZE}]"),
        })
    }
}

/// The typed error for a categorical value outside `[0, d)`.
pub(crate) fn out_of_domain(value: u32, d: u32) -> Error {
    Error::OutOfDomain {
        value: value.to_string(),
        domain_size: d,
    }
}
