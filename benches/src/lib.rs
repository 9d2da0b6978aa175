//! Shared helpers of the benchmarks and the load generator.
