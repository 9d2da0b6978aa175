//! The gRPC services: [`collector`] (devices, open), [`analytics`] and [`admin`]
//! (bearer token, see [`auth`]), and [`observe`], the wrapper that times every
//! call and rewrites oversized-message errors to `RESOURCE_EXHAUSTED`.
//!
//! Handlers are thin: they convert the request, call the registry, the
//! [`Ingest`](crate::ingest::Ingest) path, the [`Store`](crate::store::Store) or
//! [`crate::estimate`], and return [`ServiceError`](crate::error::ServiceError),
//! which becomes a status in one place.

pub mod admin;
pub mod analytics;
pub mod auth;
pub mod budget;
pub mod collector;
pub mod observe;

use std::sync::Arc;

use crate::error::ServiceError;
use crate::ingest::Ingest;
use crate::registry::{Published, Registry};
use crate::store::Store;
use crate::telemetry::Telemetry;

/// What every service shares.
#[derive(Debug)]
pub struct State {
    /// The database.
    pub store: Arc<dyn Store>,
    /// Published metrics.
    pub registry: Arc<Registry>,
    /// The ingest front end (validation and the writer queue).
    pub ingest: Ingest,
    /// Counters and histograms.
    pub telemetry: Arc<Telemetry>,
}

impl State {
    /// Pooled statistics of `metric` over `epochs` (empty = all) and the epochs present.
    pub async fn stats(
        &self,
        metric: &Published,
        epochs: &[u64],
    ) -> Result<(ldp_sdk::estimate::Stats, Vec<u64>), ServiceError> {
        let filter = (!epochs.is_empty()).then_some(epochs);
        let cells = metric.mechanism.stats_len();
        Ok(self
            .store
            .load_stats(metric.spec.metric_id, metric.spec.version, filter, cells)
            .await?)
    }
}
