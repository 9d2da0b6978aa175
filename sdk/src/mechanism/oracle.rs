//! The estimator shared by pure frequency oracles (Wang et al. 2017,
//! "Locally differentially private protocols for frequency estimation", USENIX
//! Security): a report *supports* value v with probability p if the user holds v
//! and q otherwise, independently of which other value the user holds.
//!
//! From the support count C_v of n reports, `c_v = (C_v - n q) / (p - q)` is
//! unbiased and its exact variance is
//! `n q (1-q) / (p-q)^2 + c_v (1 - p - q) / (p - q)`
//! ([`crate::mechanism::pure_oracle_variance`], with the estimate plugged in for
//! the unknown c_v).

use crate::estimate::Estimate;
use crate::mechanism::pure_oracle_variance;

/// Unbiased count estimates and standard errors from support counts.
pub(crate) fn estimates(
    support: impl IntoIterator<Item = f64>,
    n: f64,
    p: f64,
    q: f64,
) -> Vec<Estimate> {
    support
        .into_iter()
        .map(|c| {
            let value = (c - n * q) / (p - q);
            Estimate {
                value,
                std_error: pure_oracle_variance(n, value, p, q).sqrt(),
            }
        })
        .collect()
}
