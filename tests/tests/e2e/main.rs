//! End-to-end tests: one test binary, one module per area. Each test starts its
//! own in-process server on an ephemeral loopback port with its own temporary
//! directory and talks to it over real gRPC.

mod budget;
mod demo;
mod foundation;
mod ingest;
mod models;
mod rappor;
mod round_trip;
mod tls;
