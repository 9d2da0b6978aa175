//! Real data sets the demo, the models and the benchmarks read.
//!
//! Category lists and numeric bounds come from the data sets' public documentation,
//! never from the data, so that private pipelines can use them without spending
//! privacy budget.

pub mod adult;

/// Errors reading a data set.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatasetError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A line does not follow the documented format.
    #[error("{path}:{line}: {reason}")]
    Format {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}
