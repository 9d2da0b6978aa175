//! The SDK's error type.

/// Everything that can go wrong in the SDK. Every variant is a caller error or an
/// environment failure; no function of this crate panics on bad input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Epsilon was NaN, infinite, zero or negative.
    #[error("invalid epsilon {0:?}: must be finite and > 0")]
    InvalidEpsilon(f64),
    /// A mechanism parameter is out of its valid range.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter {
        /// The parameter's name.
        name: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// A categorical value outside `[0, d)` or an unknown category label.
    #[error("value {value} is outside the domain of size {domain_size}")]
    OutOfDomain {
        /// The rejected value (index or label).
        value: String,
        /// The domain size.
        domain_size: u32,
    },
    /// A numeric value was NaN or infinite.
    #[error("value {0} is not a finite number")]
    NotFinite(f64),
    /// A report does not match the mechanism (wrong payload kind, length or range).
    #[error("invalid report: {0}")]
    InvalidReport(String),
    /// The operation needs a different kind of mechanism (e.g. a mean of a categorical metric).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Sufficient statistics do not match the mechanism they are estimated with.
    #[error("statistics do not match the mechanism: {0}")]
    StatsMismatch(String),
    /// The privacy budget does not allow this report.
    #[error("privacy budget exhausted: {0}")]
    BudgetExhausted(String),
    /// A persistence (file) operation failed.
    #[error("i/o error: {0}")]
    Io(String),
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
