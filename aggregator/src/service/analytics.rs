//! `ldp.v1.Analytics`: estimates with standard errors, confidence intervals and
//! the guarantee behind them. Requires the bearer token.
//!
//! Estimates are CPU work proportional to the metric's statistics (an OLH
//! transform, a RAPPOR decode with a dense Gram matrix in the candidates), so
//! every estimate runs on tokio's blocking pool ([`tokio::task::spawn_blocking`])
//! and never stalls the async runtime that serves ingest. RAPPOR decodes also
//! take one of [`CONCURRENT_RAPPOR_DECODES`] permits before loading their
//! statistics, which bounds their memory.

use std::sync::Arc;

use ldp_proto::v1 as pb;
use ldp_sdk::mechanism::Mechanism;
use tokio::sync::Semaphore;
use tonic::{Request, Response, Status};

use super::State;
use crate::error::ServiceError;
use crate::estimate;
use crate::rappor::RapporError;
use crate::rappor::counts::CohortCounts;
use crate::rappor::decode::{DecodeOptions, decode};
use crate::rappor::wire::{correction_from_proto, decoding_to_proto};

/// The most candidates one `DecodeRappor` request may carry. The decoder's
/// normal equations are a dense (candidates + 1)^2 matrix of `f64`, 134 MB at
/// this cap, and its non-negative fit costs O(candidates^2) per step.
pub const MAX_RAPPOR_CANDIDATES: usize = 4_096;

/// The most (candidate, cohort) pairs one `DecodeRappor` request may ask for:
/// the decoder hashes every candidate into every cohort and keeps its Bloom
/// bits there (about 56 bytes a pair, 235 MB at this cap), e.g. 4,096
/// candidates over 1,024 cohorts.
pub const MAX_RAPPOR_MAP_ENTRIES: usize = 1 << 22;

/// RAPPOR decodes that may run at once; further requests wait for a permit.
pub const CONCURRENT_RAPPOR_DECODES: usize = 2;

/// Error rate of the RAPPOR detection test when a request leaves it at 0.
pub const DEFAULT_RAPPOR_ALPHA: f64 = 0.05;

/// The Analytics service.
#[derive(Debug, Clone)]
pub struct Analytics {
    state: Arc<State>,
    rappor_permits: Arc<Semaphore>,
}

impl Analytics {
    /// An Analytics service on shared state.
    pub fn new(state: Arc<State>) -> Self {
        Self {
            state,
            rappor_permits: Arc::new(Semaphore::new(CONCURRENT_RAPPOR_DECODES)),
        }
    }
}

/// Runs CPU-heavy estimation work on the blocking pool.
async fn blocking<T, F>(work: F) -> Result<T, ServiceError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ServiceError> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ServiceError::Internal(format!("estimation task failed: {e}")))?
}

/// Checks the shape of a `DecodeRappor` request; returns the decoder's options
/// (alpha 0 and an unspecified correction mean the defaults).
fn check_decode_request(r: &pb::DecodeRapporRequest) -> Result<DecodeOptions, ServiceError> {
    let correction = pb::RapporCorrection::try_from(r.correction)
        .map_err(|_| ServiceError::InvalidArgument(format!("unknown correction {}", r.correction)))
        .map(|c| correction_from_proto(c).unwrap_or_default())?;
    if r.candidates.is_empty() {
        return Err(ServiceError::InvalidArgument(
            "the candidate list is empty".into(),
        ));
    }
    if r.candidates.len() > MAX_RAPPOR_CANDIDATES {
        return Err(ServiceError::InvalidArgument(format!(
            "{} candidates, at most {MAX_RAPPOR_CANDIDATES} per request",
            r.candidates.len()
        )));
    }
    let alpha = match r.alpha {
        0.0 => DEFAULT_RAPPOR_ALPHA,
        a if a > 0.0 && a < 1.0 => a,
        a => {
            return Err(ServiceError::InvalidArgument(format!(
                "alpha {a} is not in (0, 1)"
            )));
        }
    };
    Ok(DecodeOptions {
        alpha,
        correction,
        ..DecodeOptions::default()
    })
}

/// A decode error on a validated request: bad candidates are the caller's
/// fault; anything else means the stored statistics or the solver failed.
fn rappor_error(err: RapporError) -> ServiceError {
    match err {
        RapporError::Candidates(_) | RapporError::Sdk(_) => {
            ServiceError::InvalidArgument(err.to_string())
        }
        other => ServiceError::Internal(format!("RAPPOR decode: {other}")),
    }
}

#[tonic::async_trait]
impl pb::analytics_server::Analytics for Analytics {
    async fn list_metrics(
        &self,
        request: Request<pb::ListMetricsRequest>,
    ) -> Result<Response<pb::ListMetricsResponse>, Status> {
        let all = request.into_inner().all_versions;
        let metrics = self.state.registry.list_protos(all);
        Ok(Response::new(pb::ListMetricsResponse { metrics }))
    }

    async fn estimate_frequencies(
        &self,
        request: Request<pb::EstimateRequest>,
    ) -> Result<Response<pb::FrequencyEstimate>, Status> {
        let r = request.into_inner();
        let confidence = estimate::confidence(r.confidence)?;
        let metric = self.state.registry.by_name(&r.metric, r.version)?;
        let (stats, epochs) = self.state.stats(&metric, &r.epochs).await?;
        let response =
            blocking(move || estimate::frequencies(&metric, &stats, epochs, confidence)).await?;
        Ok(Response::new(response))
    }

    async fn estimate_mean(
        &self,
        request: Request<pb::EstimateRequest>,
    ) -> Result<Response<pb::MeanEstimate>, Status> {
        let r = request.into_inner();
        let confidence = estimate::confidence(r.confidence)?;
        let metric = self.state.registry.by_name(&r.metric, r.version)?;
        let (stats, epochs) = self.state.stats(&metric, &r.epochs).await?;
        let response =
            blocking(move || estimate::mean(&metric, &stats, epochs, confidence)).await?;
        Ok(Response::new(response))
    }

    async fn budget(
        &self,
        request: Request<pb::BudgetRequest>,
    ) -> Result<Response<pb::BudgetResponse>, Status> {
        Ok(Response::new(
            super::budget::budget(&self.state, request.into_inner()).await?,
        ))
    }

    async fn decode_rappor(
        &self,
        request: Request<pb::DecodeRapporRequest>,
    ) -> Result<Response<pb::RapporDecoding>, Status> {
        let r = request.into_inner();
        let options = check_decode_request(&r)?;
        let metric = self.state.registry.by_name(&r.metric, r.version)?;
        let Mechanism::Rappor(rappor) = &metric.mechanism else {
            return Err(ServiceError::InvalidArgument(format!(
                "metric {:?} version {} does not use RAPPOR",
                metric.spec.name, metric.spec.version
            ))
            .into());
        };
        let params = rappor.params().clone();
        let cohorts = params.num_cohorts() as usize;
        if r.candidates.len().saturating_mul(cohorts) > MAX_RAPPOR_MAP_ENTRIES {
            return Err(ServiceError::InvalidArgument(format!(
                "{} candidates x {cohorts} cohorts exceed {MAX_RAPPOR_MAP_ENTRIES} \
                 (candidate, cohort) pairs per request; send at most {} candidates",
                r.candidates.len(),
                MAX_RAPPOR_MAP_ENTRIES / cohorts
            ))
            .into());
        }
        // The permit is taken before the statistics (up to 2^24 counters) are
        // loaded, so waiting requests hold no table; it moves into the task: a
        // cancelled request does not free it before the decode (and its
        // memory) is done.
        let permit = Arc::clone(&self.rappor_permits)
            .acquire_owned()
            .await
            .map_err(|e| ServiceError::Internal(format!("decode permits: {e}")))?;
        let (stats, epochs) = self.state.stats(&metric, &r.epochs).await?;
        let candidates = r.candidates;
        let response = blocking(move || {
            let _permit = permit;
            let counts = CohortCounts::from_stats(params, &stats).map_err(rappor_error)?;
            // No reports yet is an empty decoding (reports = 0), not an error.
            let decoded = match decode(&counts, &candidates, &options) {
                Ok(decoded) => Some(decoded),
                Err(RapporError::NoReports) => None,
                Err(e) => return Err(rappor_error(e)),
            };
            Ok(decoding_to_proto(
                &metric,
                &counts,
                candidates.len(),
                &options,
                decoded.as_ref(),
                estimate::guarantee(&metric),
                epochs,
            ))
        })
        .await?;
        Ok(Response::new(response))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ldp_sdk::Epsilon;
    use ldp_sdk::mechanism::MechanismSpec;
    use ldp_sdk::metric::MetricSpec;
    use pb::analytics_server::Analytics as _;

    use super::*;
    use crate::ingest::{self, IngestConfig};
    use crate::registry::{ClosedEpochs, Registry};
    use crate::store::Store;
    use crate::store::sqlite::SqliteStore;

    /// Regression: the candidate map holds every candidate's Bloom bits in
    /// every cohort (a small vector each), so DecodeRappor with 4,096
    /// candidates on a metric with 2^23 cohorts (num_bits 1, the largest the
    /// SDK accepts) set out to hash and allocate 3.4e10 of them, which
    /// aborts the server. Such a request is refused before anything is loaded
    /// (the closed store shows a load as INTERNAL).
    #[tokio::test]
    async fn decode_rappor_refuses_a_candidate_map_beyond_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let (analytics, store, writer) = service(
            &dir,
            MechanismSpec::Rappor {
                num_bits: 1,
                num_hashes: 1,
                num_cohorts: 1 << 23,
                f: 0.5,
                p: 0.5,
                q: 0.75,
            },
        )
        .await;
        store.close().await.unwrap();
        let request = |n: usize| {
            Request::new(pb::DecodeRapporRequest {
                metric: "words".into(),
                candidates: (0..n).map(|i| i.to_string()).collect(),
                ..Default::default()
            })
        };
        let err = analytics.decode_rappor(request(4_096)).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains("cohorts"), "{err:?}");
        writer.stop().await;
    }

    /// Regression: DecodeRappor loaded the metric's statistics (up to 2^24
    /// counters, 128 MiB) before waiting for a decode permit, so requests queued
    /// behind the permits each held a full table: the permits bounded the
    /// decodes, not their memory. With every permit taken, a request must
    /// touch nothing; it loads only once a permit is free. (The store is closed,
    /// so a load shows as an error at once.)
    #[tokio::test]
    async fn decode_rappor_waits_for_a_permit_before_loading_statistics() {
        let dir = tempfile::tempdir().unwrap();
        let (analytics, store, writer) = service(
            &dir,
            MechanismSpec::Rappor {
                num_bits: 16,
                num_hashes: 2,
                num_cohorts: 4,
                f: 0.5,
                p: 0.5,
                q: 0.75,
            },
        )
        .await;
        store.close().await.unwrap();
        let held = Arc::clone(&analytics.rappor_permits)
            .acquire_many_owned(CONCURRENT_RAPPOR_DECODES as u32)
            .await
            .unwrap();
        let request = || {
            Request::new(pb::DecodeRapporRequest {
                metric: "words".into(),
                candidates: vec!["a".into()],
                ..Default::default()
            })
        };
        let call = analytics.decode_rappor(request());
        let waited = tokio::time::timeout(Duration::from_millis(300), call).await;
        assert!(waited.is_err(), "answered without a permit: {waited:?}");
        drop(held);
        let answered = analytics.decode_rappor(request()).await;
        assert!(answered.is_err(), "the closed store must fail the load");
        writer.stop().await;
    }

    /// An Analytics service over a fresh store with one metric, "words".
    async fn service(
        dir: &tempfile::TempDir,
        mechanism: MechanismSpec,
    ) -> (Analytics, Arc<dyn Store>, ingest::Writer) {
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("t.db")).await.unwrap());
        let registry = Arc::new(Registry::default());
        let mut spec = MetricSpec::new("words", Epsilon::new(2.0).unwrap(), mechanism);
        (spec.metric_id, spec.version) = (1, 1);
        registry.insert(spec).unwrap();
        let telemetry = Arc::new(crate::telemetry::Telemetry::default());
        let (ingest, writer) = ingest::start(
            IngestConfig::default(),
            Arc::clone(&store),
            Arc::clone(&registry),
            Arc::new(ClosedEpochs::default()),
            Arc::clone(&telemetry),
        );
        let analytics = Analytics::new(Arc::new(State {
            store: Arc::clone(&store),
            registry,
            ingest,
            telemetry,
        }));
        (analytics, store, writer)
    }
}
