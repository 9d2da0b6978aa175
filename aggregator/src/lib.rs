//! # ldp-aggregator
//!
//! The server side of local differential privacy: durable gRPC collection of
//! randomized reports ([`server`], [`service`], [`ingest`], [`store`]),
//! debiased estimates with confidence intervals ([`estimate`], using the SDK's
//! math), and the `ldp` command line ([`cli`]).
//!
//! Architecture decisions:
//! - the SDK's types are the source of truth: metrics are
//!   [`ldp_sdk::metric::MetricSpec`]s, reports are validated, counted and
//!   estimated by [`ldp_sdk::mechanism::Mechanism`]; protobuf conversions live
//!   only in [`ldp_sdk::wire`];
//! - storage sits behind the [`store::Store`] trait (SQLite or PostgreSQL, portable SQL);
//! - one writer task group-commits batches and acknowledges after the commit;
//! - errors become gRPC statuses in one place ([`error`]).

pub mod accountant;
pub mod cli;
pub mod dataset;
pub mod demo;
pub mod error;
pub mod estimate;
pub mod ingest;
pub mod model;
pub mod rappor;
pub mod registry;
pub mod report;
pub mod server;
pub mod service;
pub mod store;
pub mod telemetry;
