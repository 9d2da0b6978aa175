//! ldp-aggregator

pub mod dataset;
