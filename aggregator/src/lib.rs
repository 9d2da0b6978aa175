//! ldp-aggregator

pub mod accountant;
pub mod dataset;
