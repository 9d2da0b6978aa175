//! LDP-SGD rounds over the ldp.v1 gRPC services: the same protocol as
//! [`super::ldpsgd::InProcess`], carried by a real aggregator.
//!
//! - publish: Admin `CreateMetric` of one numeric metric per coordinate,
//!   `<prefix>.r<round>.c<j>`, with the coordinate mechanism (range [-1, 1],
//!   epsilon / k) and the round's model as JSON in the description (public: it
//!   is post-processing of earlier rounds);
//! - fetch: Collector `GetMetrics` of the round's metrics (what a device does);
//! - submit: Collector `Submit` of the devices' randomized reports, one batch id
//!   per call;
//! - collect: Analytics `EstimateMean` of every coordinate metric.
//!
//! Nothing but randomized reports leaves the simulated devices.

use std::collections::HashMap;

use ldp_proto::v1 as pb;
use ldp_sdk::estimate::Estimate;
use ldp_sdk::mechanism::Report;
use ldp_sdk::mechanism::multidim::MultiDim;
use ldp_sdk::metric::MetricSpec;
use ldp_sdk::wire::{self, ReportHeader};
use tonic::transport::Channel;

use super::ModelError;
use super::ldpsgd::{RoundModel, RoundTransport};
use crate::cli::connect::{AdminClient, AnalyticsClient};

/// The gRPC transport of LDP-SGD rounds.
#[derive(Debug)]
pub struct GrpcRounds {
    admin: AdminClient,
    analytics: AnalyticsClient,
    collector: pb::collector_client::CollectorClient<Channel>,
    prefix: String,
    /// Per round: the (metric id, version) of every coordinate, as fetched.
    metrics: HashMap<u32, Vec<ReportHeader>>,
    batches: u64,
}

fn status(e: tonic::Status) -> ModelError {
    ModelError::Transport(format!("{}: {}", e.code(), e.message()))
}

impl GrpcRounds {
    /// A transport over the three clients; metric names start with `prefix`
    /// (ASCII letters, digits, `.`, `_`, `-`; unique per training run).
    pub fn new(
        admin: AdminClient,
        analytics: AnalyticsClient,
        collector: pb::collector_client::CollectorClient<Channel>,
        prefix: impl Into<String>,
    ) -> Self {
        Self {
            admin,
            analytics,
            collector,
            prefix: prefix.into(),
            metrics: HashMap::new(),
            batches: 0,
        }
    }

    fn name(&self, round: u32, coordinate: u32) -> String {
        format!("{}.r{round}.c{coordinate}", self.prefix)
    }

    fn headers(&self, round: u32) -> Result<&Vec<ReportHeader>, ModelError> {
        self.metrics
            .get(&round)
            .ok_or_else(|| ModelError::Transport(format!("round {round} was not fetched")))
    }
}

impl RoundTransport for GrpcRounds {
    async fn publish(
        &mut self,
        mechanism: &MultiDim,
        model: &RoundModel,
    ) -> Result<(), ModelError> {
        let description = serde_json::to_string(model)
            .map_err(|e| ModelError::Transport(format!("model: {e}")))?;
        let per_coordinate = mechanism.coordinate_mechanism().epsilon();
        for j in 0..mechanism.dim() {
            let spec = MetricSpec::new(
                self.name(model.round, j),
                per_coordinate,
                mechanism.coordinate_spec().clone(),
            )
            .with_description(description.clone());
            self.admin
                .create_metric(pb::CreateMetricRequest {
                    spec: Some(wire::metric_to_proto(&spec)?),
                })
                .await
                .map_err(status)?;
        }
        Ok(())
    }

    async fn fetch(&mut self, round: u32) -> Result<RoundModel, ModelError> {
        // The first coordinate's metric names the dimension-independent model;
        // fetch every coordinate of the round by the model's width.
        let first = self.name(round, 0);
        let response = self
            .collector
            .get_metrics(pb::GetMetricsRequest { names: vec![first] })
            .await
            .map_err(status)?
            .into_inner();
        let spec = response
            .metrics
            .into_iter()
            .next()
            .ok_or_else(|| ModelError::Transport(format!("round {round} is not published")))?;
        let model: RoundModel = serde_json::from_str(&spec.description)
            .map_err(|e| ModelError::Transport(format!("published model: {e}")))?;
        let names = (0..model.weights.len() as u32)
            .map(|j| self.name(round, j))
            .collect();
        let all = self
            .collector
            .get_metrics(pb::GetMetricsRequest { names })
            .await
            .map_err(status)?
            .into_inner()
            .metrics;
        let mut headers = Vec::with_capacity(model.weights.len());
        for j in 0..model.weights.len() as u32 {
            let name = self.name(round, j);
            let m = all
                .iter()
                .find(|m| m.name == name)
                .ok_or_else(|| ModelError::Transport(format!("{name} is not published")))?;
            headers.push(ReportHeader {
                metric_id: m.metric_id,
                metric_version: m.version,
                epoch: 0,
            });
        }
        self.metrics.insert(round, headers);
        Ok(model)
    }

    async fn submit(&mut self, round: u32, reports: Vec<(u32, Report)>) -> Result<(), ModelError> {
        let headers = self.headers(round)?;
        let reports = reports
            .iter()
            .map(|(j, r)| {
                let header = headers.get(*j as usize).ok_or_else(|| {
                    ModelError::Transport(format!("coordinate {j} is not in round {round}"))
                })?;
                Ok(wire::report_to_proto(*header, r)?)
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        self.batches += 1;
        let batch_id = format!("{}-batch-{:016}", self.prefix, self.batches).into_bytes();
        self.collector
            .submit(pb::SubmitRequest { batch_id, reports })
            .await
            .map_err(status)?;
        Ok(())
    }

    async fn collect(&mut self, round: u32) -> Result<Vec<Option<Estimate>>, ModelError> {
        let width = self.headers(round)?.len() as u32;
        let mut out = Vec::with_capacity(width as usize);
        for j in 0..width {
            let m = self
                .analytics
                .estimate_mean(pb::EstimateRequest {
                    metric: self.name(round, j),
                    ..Default::default()
                })
                .await
                .map_err(status)?
                .into_inner();
            out.push((m.reports > 0).then_some(Estimate {
                value: m.mean,
                std_error: m.std_error,
            }));
        }
        Ok(out)
    }
}
