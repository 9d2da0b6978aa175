//! The `ldp.v1` wire protocol: the protobuf messages devices, analysts and
//! operators exchange with the aggregator, and the gRPC services
//! ([`v1::collector_server`], [`v1::analytics_server`], [`v1::admin_server`] and
//! their clients).
//!
//! This crate is the wire and nothing else: no validation, no math. Code is
//! generated at build time from `proto/ldp/v1/*.proto` by `protox` and
//! `tonic-prost-build`, so building needs nothing but cargo.

/// Messages and services of package `ldp.v1`.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("ldp.v1");

    /// Encoded `FileDescriptorSet` of every `ldp.v1` file, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("ldp_v1_descriptor");
}
