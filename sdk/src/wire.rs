//! Conversions between the `ldp.v1` protobuf messages and the SDK's types.
//!
//! This module is the only place where protobuf [`MetricSpec`](pb::MetricSpec)s,
//! [`Mechanism`](pb::Mechanism)s and [`Report`](pb::Report)s turn into
//! [`metric::MetricSpec`], [`MechanismSpec`] and [`Report`] and back. The device
//! client and the aggregator both go through it, so they cannot disagree on
//! what a field means.
//!
//! Conversions from the wire are strict: a missing or unknown mechanism or
//! payload, a hash family other than the one the SDK implements, or a field that
//! the mechanism does not use being set, is an error, never a silent default.
//!
//! ```
//! use ldp_sdk::{Epsilon, metric::MetricSpec, mechanism::MechanismSpec, wire};
//! let spec = MetricSpec::new("m", Epsilon::new(1.0)?, MechanismSpec::Grr { domain_size: 4 });
//! let back = wire::metric_from_proto(wire::metric_to_proto(&spec)?)?;
//! assert_eq!(spec, back);
//! # Ok::<(), ldp_sdk::Error>(())
//! ```

use ldp_proto::v1 as pb;
use pb::mechanism::Kind;
use pb::report::Payload;

use crate::budget::BudgetPolicy;
use crate::mechanism::{MechanismSpec, Report};
use crate::{Epsilon, Error, Result, metric};

/// Where a report belongs: the metric, the parameter version that encoded it,
/// and its collection epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReportHeader {
    /// `MetricSpec::metric_id` of the metric.
    pub metric_id: u32,
    /// `MetricSpec::version` whose parameters encoded the report.
    pub metric_version: u32,
    /// Collection epoch.
    pub epoch: u64,
}

/// Converts a published spec to its protobuf form.
///
/// Fails only for a mechanism that has no wire representation yet.
pub fn metric_to_proto(spec: &metric::MetricSpec) -> Result<pb::MetricSpec> {
    Ok(pb::MetricSpec {
        metric_id: spec.metric_id,
        name: spec.name.clone(),
        version: spec.version,
        description: spec.description.clone(),
        epsilon: spec.epsilon.get(),
        mechanism: Some(mechanism_to_proto(&spec.mechanism)?),
        categories: spec.categories.clone(),
        epoch_seconds: spec.epoch_seconds,
        created_at: spec.created_at,
        memoize: spec.memoize,
    })
}

/// Converts a protobuf spec to the SDK's type. Checks epsilon and the mechanism's
/// shape; call [`metric::MetricSpec::validate`] for the full parameter check.
pub fn metric_from_proto(spec: pb::MetricSpec) -> Result<metric::MetricSpec> {
    let mechanism = spec
        .mechanism
        .ok_or_else(|| invalid("mechanism", "missing".into()))?;
    Ok(metric::MetricSpec {
        name: spec.name,
        metric_id: spec.metric_id,
        version: spec.version,
        description: spec.description,
        epsilon: Epsilon::new(spec.epsilon)?,
        mechanism: mechanism_from_proto(mechanism)?,
        categories: spec.categories,
        epoch_seconds: spec.epoch_seconds,
        memoize: spec.memoize,
        created_at: spec.created_at,
    })
}

/// Converts a metric's device budget to its protobuf form.
pub fn device_budget_to_proto(metric: &str, policy: &BudgetPolicy) -> pb::DeviceBudget {
    pb::DeviceBudget {
        metric: metric.to_owned(),
        window_epsilon: policy.window_epsilon,
        window_seconds: policy.window_seconds,
        lifetime_epsilon: policy.lifetime_epsilon,
    }
}

/// Converts a published device budget to (metric name, validated policy).
pub fn device_budget_from_proto(budget: &pb::DeviceBudget) -> Result<(String, BudgetPolicy)> {
    let policy = BudgetPolicy::new(
        budget.window_epsilon,
        budget.window_seconds,
        budget.lifetime_epsilon,
    )?;
    Ok((budget.metric.clone(), policy))
}

/// Converts a mechanism spec to its protobuf form.
pub fn mechanism_to_proto(spec: &MechanismSpec) -> Result<pb::Mechanism> {
    let range = |lo: f64, hi: f64, granularity_log2: i32| pb::NumericRange {
        lo,
        hi,
        granularity_log2,
    };
    #[allow(unreachable_patterns)] // Variants the SDK adds later fail until wired here.
    let kind = match *spec {
        MechanismSpec::Binary => Kind::Binary(pb::BinaryRandomizedResponse {}),
        MechanismSpec::Grr { domain_size } => Kind::Grr(pb::DirectEncoding { domain_size }),
        MechanismSpec::Sue { domain_size } => Kind::Sue(pb::UnaryEncoding { domain_size }),
        MechanismSpec::Oue { domain_size } => Kind::Oue(pb::UnaryEncoding { domain_size }),
        MechanismSpec::Olh {
            domain_size,
            buckets,
            seed_count,
        } => Kind::Olh(pb::LocalHashing {
            domain_size,
            buckets,
            seed_count,
            hash_family: pb::HashFamily::DigitDotProduct as i32,
        }),
        MechanismSpec::Hadamard { domain_size } => {
            Kind::Hadamard(pb::HadamardResponse { domain_size })
        }
        MechanismSpec::Laplace {
            lo,
            hi,
            granularity_log2,
        } => Kind::Laplace(range(lo, hi, granularity_log2)),
        MechanismSpec::Duchi { lo, hi } => Kind::Duchi(range(lo, hi, 0)),
        MechanismSpec::Piecewise { lo, hi } => Kind::Piecewise(range(lo, hi, 0)),
        MechanismSpec::Hybrid { lo, hi } => Kind::Hybrid(range(lo, hi, 0)),
        MechanismSpec::Rappor {
            num_bits,
            num_hashes,
            num_cohorts,
            f,
            p,
            q,
        } => Kind::Rappor(pb::Rappor {
            num_bits,
            num_hashes,
            num_cohorts,
            f,
            p,
            q,
        }),
        ref other => {
            return Err(Error::Unsupported(format!(
                "mechanism {other:?} has no wire form yet"
            )));
        }
    };
    Ok(pb::Mechanism { kind: Some(kind) })
}

/// Converts a protobuf mechanism to the SDK's spec (shape only; parameter ranges
/// are checked by [`crate::mechanism::Mechanism::new`]).
pub fn mechanism_from_proto(mechanism: pb::Mechanism) -> Result<MechanismSpec> {
    let kind = mechanism
        .kind
        .ok_or_else(|| invalid("mechanism", "no mechanism kind set".into()))?;
    let no_granularity = |r: &pb::NumericRange, name: &str| {
        if r.granularity_log2 == 0 {
            Ok(())
        } else {
            Err(invalid(
                "granularity_log2",
                format!("{name} has no grid; leave it 0"),
            ))
        }
    };
    Ok(match kind {
        Kind::Binary(_) => MechanismSpec::Binary,
        Kind::Grr(m) => MechanismSpec::Grr {
            domain_size: m.domain_size,
        },
        Kind::Sue(m) => MechanismSpec::Sue {
            domain_size: m.domain_size,
        },
        Kind::Oue(m) => MechanismSpec::Oue {
            domain_size: m.domain_size,
        },
        Kind::Olh(m) => {
            if m.hash_family != pb::HashFamily::DigitDotProduct as i32 {
                return Err(invalid(
                    "hash_family",
                    format!("{} is not HASH_FAMILY_DIGIT_DOT_PRODUCT", m.hash_family),
                ));
            }
            MechanismSpec::Olh {
                domain_size: m.domain_size,
                buckets: m.buckets,
                seed_count: m.seed_count,
            }
        }
        Kind::Hadamard(m) => MechanismSpec::Hadamard {
            domain_size: m.domain_size,
        },
        Kind::Laplace(r) => MechanismSpec::Laplace {
            lo: r.lo,
            hi: r.hi,
            granularity_log2: r.granularity_log2,
        },
        Kind::Duchi(r) => {
            no_granularity(&r, "duchi")?;
            MechanismSpec::Duchi { lo: r.lo, hi: r.hi }
        }
        Kind::Piecewise(r) => {
            no_granularity(&r, "piecewise")?;
            MechanismSpec::Piecewise { lo: r.lo, hi: r.hi }
        }
        Kind::Hybrid(r) => {
            no_granularity(&r, "hybrid")?;
            MechanismSpec::Hybrid { lo: r.lo, hi: r.hi }
        }
        Kind::Rappor(r) => MechanismSpec::Rappor {
            num_bits: r.num_bits,
            num_hashes: r.num_hashes,
            num_cohorts: r.num_cohorts,
            f: r.f,
            p: r.p,
            q: r.q,
        },
    })
}

/// Converts a report and its header to the protobuf form.
pub fn report_to_proto(header: ReportHeader, report: &Report) -> Result<pb::Report> {
    #[allow(unreachable_patterns)] // Variants the SDK adds later fail until wired here.
    let payload = match report {
        Report::Index(i) => Payload::Index(*i),
        Report::Bits(bits) => Payload::Bits(bits.clone()),
        Report::Hashed { seed_index, bucket } => Payload::Hashed(pb::HashedReport {
            seed_index: *seed_index,
            bucket: *bucket,
        }),
        Report::Hadamard {
            coefficient,
            positive,
        } => Payload::Hadamard(pb::HadamardReport {
            coefficient: *coefficient,
            positive: *positive,
        }),
        Report::Grid(g) => Payload::GridValue(*g),
        Report::Numeric(x) => Payload::Numeric(*x),
        Report::Rappor { cohort, bits } => Payload::Rappor(pb::RapporReport {
            cohort: *cohort,
            bits: bits.clone(),
        }),
        other => {
            return Err(Error::Unsupported(format!(
                "report {other:?} has no wire form yet"
            )));
        }
    };
    Ok(pb::Report {
        metric_id: header.metric_id,
        metric_version: header.metric_version,
        epoch: header.epoch,
        payload: Some(payload),
    })
}

/// Splits a protobuf report into its header and the SDK report. Fails when the
/// payload is missing or has no SDK counterpart; whether the payload fits the
/// metric is [`crate::mechanism::Mechanism::validate`]'s job.
pub fn report_from_proto(report: pb::Report) -> Result<(ReportHeader, Report)> {
    let header = ReportHeader {
        metric_id: report.metric_id,
        metric_version: report.metric_version,
        epoch: report.epoch,
    };
    let payload = report
        .payload
        .ok_or_else(|| Error::InvalidReport("no payload".into()))?;
    let report = match payload {
        Payload::Index(i) => Report::Index(i),
        Payload::Bits(bits) => Report::Bits(bits),
        Payload::Hashed(h) => Report::Hashed {
            seed_index: h.seed_index,
            bucket: h.bucket,
        },
        Payload::Hadamard(h) => Report::Hadamard {
            coefficient: h.coefficient,
            positive: h.positive,
        },
        Payload::GridValue(g) => Report::Grid(g),
        Payload::Numeric(x) => Report::Numeric(x),
        Payload::Rappor(r) => Report::Rappor {
            cohort: r.cohort,
            bits: r.bits,
        },
    };
    Ok((header, report))
}

fn invalid(name: &'static str, reason: String) -> Error {
    Error::InvalidParameter { name, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_specs() -> Vec<MechanismSpec> {
        vec![
            MechanismSpec::Binary,
            MechanismSpec::Grr { domain_size: 5 },
            MechanismSpec::Sue { domain_size: 5 },
            MechanismSpec::Oue { domain_size: 5 },
            MechanismSpec::Olh {
                domain_size: 5,
                buckets: 3,
                seed_count: 1024,
            },
            MechanismSpec::Hadamard { domain_size: 5 },
            MechanismSpec::Laplace {
                lo: -1.0,
                hi: 2.0,
                granularity_log2: -8,
            },
            MechanismSpec::Duchi { lo: 0.0, hi: 1.0 },
            MechanismSpec::Piecewise { lo: 0.0, hi: 1.0 },
            MechanismSpec::Hybrid { lo: 0.0, hi: 1.0 },
        ]
    }

    #[test]
    fn mechanisms_round_trip() {
        for spec in all_specs() {
            let back = mechanism_from_proto(mechanism_to_proto(&spec).unwrap()).unwrap();
            assert_eq!(back, spec);
        }
    }

    #[test]
    fn metric_round_trips_with_every_field() {
        let mut spec = metric::MetricSpec::new(
            "a.b",
            Epsilon::new(0.5).unwrap(),
            MechanismSpec::Grr { domain_size: 2 },
        )
        .with_categories(["no", "yes"])
        .with_description("d")
        .with_epoch_seconds(60);
        spec.metric_id = 3;
        spec.version = 2;
        spec.memoize = true;
        spec.created_at = 1_700_000_000;
        let back = metric_from_proto(metric_to_proto(&spec).unwrap()).unwrap();
        assert_eq!(back, spec);
    }

    #[test]
    fn strict_on_missing_and_foreign_fields() {
        let mut pb_spec = metric_to_proto(&metric::MetricSpec::new(
            "a",
            Epsilon::new(1.0).unwrap(),
            MechanismSpec::Duchi { lo: 0.0, hi: 1.0 },
        ))
        .unwrap();
        pb_spec.epsilon = 0.0;
        assert!(metric_from_proto(pb_spec.clone()).is_err());
        pb_spec.epsilon = 1.0;
        pb_spec.mechanism = None;
        assert!(metric_from_proto(pb_spec.clone()).is_err());
        let duchi = pb::Mechanism {
            kind: Some(Kind::Duchi(pb::NumericRange {
                lo: 0.0,
                hi: 1.0,
                granularity_log2: 3,
            })),
        };
        assert!(mechanism_from_proto(duchi).is_err());
        let olh = pb::Mechanism {
            kind: Some(Kind::Olh(pb::LocalHashing {
                domain_size: 4,
                buckets: 3,
                seed_count: 8,
                hash_family: pb::HashFamily::Unspecified as i32,
            })),
        };
        assert!(mechanism_from_proto(olh).is_err());
    }

    #[test]
    fn reports_round_trip() {
        let header = ReportHeader {
            metric_id: 1,
            metric_version: 2,
            epoch: 3,
        };
        let reports = [
            Report::Index(4),
            Report::Bits(vec![1, 2]),
            Report::Hashed {
                seed_index: 5,
                bucket: 1,
            },
            Report::Hadamard {
                coefficient: 7,
                positive: true,
            },
            Report::Grid(-9),
            Report::Numeric(0.25),
        ];
        for r in reports {
            let (h, back) = report_from_proto(report_to_proto(header, &r).unwrap()).unwrap();
            assert_eq!((h, back), (header, r));
        }
        let empty = pb::Report {
            metric_id: 1,
            metric_version: 1,
            epoch: 0,
            payload: None,
        };
        assert!(report_from_proto(empty).is_err());
    }
}
