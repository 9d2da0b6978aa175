//! `ldp.v1.Collector`: devices fetch specs and submit reports. Open to anyone:
//! nothing it returns is derived from other devices' reports.

use std::sync::Arc;

use ldp_proto::v1 as pb;
use ldp_sdk::wire;
use tonic::{Request, Response, Status};

use super::State;
use crate::error::ServiceError;
use crate::ingest::unix_now;

/// The Collector service.
#[derive(Debug, Clone)]
pub struct Collector {
    state: Arc<State>,
}

impl Collector {
    /// A Collector on shared state.
    pub fn new(state: Arc<State>) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl pb::collector_server::Collector for Collector {
    async fn get_metrics(
        &self,
        request: Request<pb::GetMetricsRequest>,
    ) -> Result<Response<pb::GetMetricsResponse>, Status> {
        let names = request.into_inner().names;
        let registry = &self.state.registry;
        let published = if names.is_empty() {
            registry.list(false)
        } else {
            names
                .iter()
                .map(|name| registry.by_name(name, 0))
                .collect::<Result<Vec<_>, ServiceError>>()?
        };
        let device_budgets = published
            .iter()
            .filter_map(|p| {
                p.device_budget()
                    .map(|b| wire::device_budget_to_proto(&p.spec.name, &b))
            })
            .collect();
        Ok(Response::new(pb::GetMetricsResponse {
            metrics: published.iter().map(|p| p.proto.clone()).collect(),
            server_time: unix_now(),
            device_budgets,
        }))
    }

    async fn submit(
        &self,
        request: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let response = self
            .state
            .ingest
            .submit(request.into_inner(), unix_now())
            .await?;
        Ok(Response::new(response))
    }
}
