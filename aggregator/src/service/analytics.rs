//! `ldp.v1.Analytics`: estimates with standard errors, confidence intervals and
//! the guarantee behind them. Requires the bearer token.

use std::sync::Arc;

use ldp_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::State;
use crate::estimate;

/// The Analytics service.
#[derive(Debug, Clone)]
pub struct Analytics {
    state: Arc<State>,
}

impl Analytics {
    /// An Analytics service on shared state.
    pub fn new(state: Arc<State>) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl pb::analytics_server::Analytics for Analytics {
    async fn list_metrics(
        &self,
        request: Request<pb::ListMetricsRequest>,
    ) -> Result<Response<pb::ListMetricsResponse>, Status> {
        let all = request.into_inner().all_versions;
        let metrics = self
            .state
            .registry
            .list(all)
            .iter()
            .map(|p| p.proto.clone())
            .collect();
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
        Ok(Response::new(estimate::frequencies(
            &metric, &stats, epochs, confidence,
        )?))
    }

    async fn estimate_mean(
        &self,
        request: Request<pb::EstimateRequest>,
    ) -> Result<Response<pb::MeanEstimate>, Status> {
        let r = request.into_inner();
        let confidence = estimate::confidence(r.confidence)?;
        let metric = self.state.registry.by_name(&r.metric, r.version)?;
        let (stats, epochs) = self.state.stats(&metric, &r.epochs).await?;
        Ok(Response::new(estimate::mean(
            &metric, &stats, epochs, confidence,
        )?))
    }

    async fn budget(
        &self,
        request: Request<pb::BudgetRequest>,
    ) -> Result<Response<pb::BudgetResponse>, Status> {
        Ok(Response::new(
            super::budget::budget(&self.state, request.into_inner()).await?,
        ))
    }
}
