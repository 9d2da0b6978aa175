//! ldp-aggregator
