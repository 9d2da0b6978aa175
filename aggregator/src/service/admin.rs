//! `ldp.v1.Admin`: metric creation (immutable versions), epoch closing and
//! server statistics. Requires the bearer token.

use std::sync::Arc;

use ldp_proto::v1 as pb;
use ldp_sdk::wire;
use tonic::{Request, Response, Status};

use super::State;
use crate::error::ServiceError;
use crate::ingest::unix_now;

/// The Admin service.
#[derive(Debug, Clone)]
pub struct Admin {
    state: Arc<State>,
}

impl Admin {
    /// An Admin service on shared state.
    pub fn new(state: Arc<State>) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl pb::admin_server::Admin for Admin {
    async fn create_metric(
        &self,
        request: Request<pb::CreateMetricRequest>,
    ) -> Result<Response<pb::CreateMetricResponse>, Status> {
        let spec = request
            .into_inner()
            .spec
            .ok_or_else(|| ServiceError::InvalidArgument("spec is missing".into()))?;
        let spec = wire::metric_from_proto(spec).map_err(ServiceError::from)?;
        spec.validate().map_err(ServiceError::from)?;
        let (stored, created) = self
            .state
            .store
            .create_metric(spec, unix_now())
            .await
            .map_err(ServiceError::from)?;
        let published = self.state.registry.insert(stored)?;
        if created {
            tracing::info!(
                metric = %published.spec.name,
                version = published.spec.version,
                "metric created"
            );
        }
        Ok(Response::new(pb::CreateMetricResponse {
            metric: Some(published.proto.clone()),
            created,
        }))
    }

    async fn list_metrics(
        &self,
        request: Request<pb::AdminListMetricsRequest>,
    ) -> Result<Response<pb::AdminListMetricsResponse>, Status> {
        let all = request.into_inner().all_versions;
        let metrics = self.state.registry.list_protos(all);
        Ok(Response::new(pb::AdminListMetricsResponse { metrics }))
    }

    async fn get_metric(
        &self,
        request: Request<pb::GetMetricRequest>,
    ) -> Result<Response<pb::MetricSpec>, Status> {
        let r = request.into_inner();
        let metric = self.state.registry.by_name(&r.name, r.version)?;
        Ok(Response::new(metric.proto.clone()))
    }

    async fn close_epoch(
        &self,
        request: Request<pb::CloseEpochRequest>,
    ) -> Result<Response<pb::CloseEpochResponse>, Status> {
        let r = request.into_inner();
        let metric = self.state.registry.by_name(&r.metric, 0)?;
        self.state
            .ingest
            .close_epoch(metric.spec.metric_id, r.epoch)
            .await?;
        tracing::info!(metric = %r.metric, epoch = r.epoch, "epoch closed");
        Ok(Response::new(pb::CloseEpochResponse {}))
    }

    async fn get_stats(
        &self,
        _request: Request<pb::GetStatsRequest>,
    ) -> Result<Response<pb::GetStatsResponse>, Status> {
        Ok(Response::new(self.state.telemetry.snapshot()))
    }

    async fn set_dataset_budget(
        &self,
        request: Request<pb::SetDatasetBudgetRequest>,
    ) -> Result<Response<pb::DatasetBudget>, Status> {
        Ok(Response::new(
            super::budget::set_dataset_budget(&self.state, request.into_inner()).await?,
        ))
    }

    async fn set_device_budget(
        &self,
        request: Request<pb::SetDeviceBudgetRequest>,
    ) -> Result<Response<pb::SetDeviceBudgetResponse>, Status> {
        Ok(Response::new(
            super::budget::set_device_budget(&self.state, request.into_inner()).await?,
        ))
    }

    async fn record_release(
        &self,
        request: Request<pb::RecordReleaseRequest>,
    ) -> Result<Response<pb::DatasetBudget>, Status> {
        Ok(Response::new(
            super::budget::record_release_rpc(&self.state, request.into_inner()).await?,
        ))
    }
}
