//! The server's error type and its one mapping to gRPC statuses.
//!
//! Every RPC handler returns [`ServiceError`]; the `From<ServiceError> for
//! tonic::Status` impl below is the only place where errors become status codes:
//!
//! | variant | code |
//! |---|---|
//! | `InvalidArgument` (bad report, bad spec, unknown metric id/version in a report) | `INVALID_ARGUMENT` |
//! | `NotFound` (unknown metric name in Analytics/Admin) | `NOT_FOUND` |
//! | `FailedPrecondition` (closed epoch; the mean of no reports) | `FAILED_PRECONDITION` |
//! | `ResourceExhausted` (batch too large) | `RESOURCE_EXHAUSTED` |
//! | `Unavailable` (shutting down; the database could not commit a valid batch) | `UNAVAILABLE` |
//! | `Store`, `Internal` | `INTERNAL` (details only in the log) |
//!
//! Unauthenticated requests never reach a handler: the interceptor in
//! [`crate::service::auth`] answers `UNAUTHENTICATED` itself, and oversized
//! messages are rejected by tonic's decoder and rewritten to `RESOURCE_EXHAUSTED`
//! by [`crate::service::observe`].

use crate::store::StoreError;

/// Why an RPC failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The request is malformed or does not match the metric.
    #[error("{0}")]
    InvalidArgument(String),
    /// A named metric does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is valid but the system state refuses it (closed epoch).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The request exceeds a configured limit.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The server is shutting down, or the database could not commit a valid
    /// batch: the client should retry.
    #[error("{0}")]
    Unavailable(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A bug or an unexpected state.
    #[error("{0}")]
    Internal(String),
}

impl From<ServiceError> for tonic::Status {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::InvalidArgument(m) => Self::invalid_argument(m),
            ServiceError::NotFound(m) => Self::not_found(m),
            ServiceError::FailedPrecondition(m) => Self::failed_precondition(m),
            ServiceError::ResourceExhausted(m) => Self::resource_exhausted(m),
            ServiceError::Unavailable(m) => Self::unavailable(m),
            ServiceError::Store(e) => {
                tracing::error!(error = %e, "storage failure");
                Self::internal("storage failure")
            }
            ServiceError::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                Self::internal("internal error")
            }
        }
    }
}

/// An SDK error on client-supplied input (a spec, a report, a request).
impl From<ldp_sdk::Error> for ServiceError {
    fn from(err: ldp_sdk::Error) -> Self {
        Self::InvalidArgument(err.to_string())
    }
}
