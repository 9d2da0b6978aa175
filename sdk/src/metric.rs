//! Metric specifications: the single source of truth for what a metric is.
//!
//! A [`MetricSpec`] names a metric and fixes everything a device needs to
//! randomize a value (mechanism, its parameters, epsilon, epoch length) and
//! everything the aggregator needs to validate and debias reports. The device,
//! the aggregator and the wire conversions ([`crate::wire`], feature `grpc`) all
//! use this type, so device and server cannot disagree on a parameter.
//!
//! A metric is immutable once published: changing any parameter makes a new
//! version with the same `metric_id` (see [`MetricSpec::same_parameters`]).
//!
//! ```
//! use ldp_sdk::{Epsilon, metric::MetricSpec, mechanism::MechanismSpec};
//! let spec = MetricSpec::new("app.color", Epsilon::new(1.0)?, MechanismSpec::Grr { domain_size: 3 })
//!     .with_categories(["red", "green", "blue"]);
//! spec.validate()?;
//! assert_eq!(spec.category_index("green")?, 1);
//! # Ok::<(), ldp_sdk::Error>(())
//! ```

use serde::{Deserialize, Serialize};

use crate::mechanism::{Mechanism, MechanismSpec};
use crate::{Epsilon, Error, Result};

/// Longest accepted metric name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Longest accepted description, in bytes.
pub const MAX_DESCRIPTION_LEN: usize = 4096;

/// One published metric: a (name, version) pair with fixed parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSpec {
    /// Unique human-readable name: ASCII letters, digits, `.`, `_`, `-`.
    pub name: String,
    /// Server-assigned id of the name, shared by all its versions (0 before creation).
    pub metric_id: u32,
    /// Version of the parameters, starting at 1 (0 before creation).
    pub version: u32,
    /// Free text for analysts.
    pub description: String,
    /// Privacy loss of one report.
    pub epsilon: Epsilon,
    /// The randomizer and its public parameters.
    pub mechanism: MechanismSpec,
    /// Labels of a categorical domain (index i is value i); empty means plain indices.
    pub categories: Vec<String>,
    /// Length of a collection epoch in seconds; 0 means a single epoch 0 forever.
    pub epoch_seconds: u64,
    /// Whether devices memoize their response for an unchanged value.
    pub memoize: bool,
    /// Creation time, seconds since the Unix epoch (set by the server; 0 before).
    pub created_at: i64,
}

impl MetricSpec {
    /// A spec with no description, no category labels, a single epoch and no
    /// memoization; ids, version and creation time are left for the server.
    pub fn new(name: impl Into<String>, epsilon: Epsilon, mechanism: MechanismSpec) -> Self {
        Self {
            name: name.into(),
            metric_id: 0,
            version: 0,
            description: String::new(),
            epsilon,
            mechanism,
            categories: Vec::new(),
            epoch_seconds: 0,
            memoize: false,
            created_at: 0,
        }
    }

    /// Sets the category labels (validated by [`MetricSpec::validate`]).
    pub fn with_categories<I, S>(mut self, labels: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.categories = labels.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the description.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Sets the epoch length in seconds (0 = one epoch forever).
    pub fn with_epoch_seconds(mut self, seconds: u64) -> Self {
        self.epoch_seconds = seconds;
        self
    }

    /// Checks every parameter: a valid name, a mechanism that [`Mechanism::new`]
    /// accepts with this epsilon, category labels that are unique, non-empty and
    /// exactly as many as the domain size (none for numeric mechanisms).
    pub fn validate(&self) -> Result<()> {
        validate_name(&self.name)?;
        if self.description.len() > MAX_DESCRIPTION_LEN {
            return Err(invalid(
                "description",
                format!("longer than {MAX_DESCRIPTION_LEN} bytes"),
            ));
        }
        let mechanism = self.mechanism()?;
        if self.categories.is_empty() {
            return Ok(());
        }
        let Some(d) = mechanism.domain_size() else {
            return Err(invalid(
                "categories",
                "a numeric metric has no category labels".into(),
            ));
        };
        if self.categories.len() != d as usize {
            return Err(invalid(
                "categories",
                format!("{} labels for a domain of size {d}", self.categories.len()),
            ));
        }
        let mut seen = std::collections::HashSet::with_capacity(self.categories.len());
        for label in &self.categories {
            if label.is_empty() {
                return Err(invalid("categories", "empty label".into()));
            }
            if !seen.insert(label.as_str()) {
                return Err(invalid("categories", format!("duplicate label {label:?}")));
            }
        }
        Ok(())
    }

    /// The validated mechanism of this metric.
    pub fn mechanism(&self) -> Result<Mechanism> {
        Mechanism::new(self.mechanism.clone(), self.epsilon)
    }

    /// True when `other` has the same parameters (everything except `metric_id`,
    /// `version` and `created_at`): re-creating it would change nothing.
    pub fn same_parameters(&self, other: &MetricSpec) -> bool {
        self.name == other.name
            && self.description == other.description
            && self.epsilon == other.epsilon
            && self.mechanism == other.mechanism
            && self.categories == other.categories
            && self.epoch_seconds == other.epoch_seconds
            && self.memoize == other.memoize
    }

    /// The collection epoch containing `unix_seconds`: `floor(t / epoch_seconds)`,
    /// or 0 for single-epoch metrics and for times before 1970.
    pub fn epoch_at(&self, unix_seconds: i64) -> u64 {
        if self.epoch_seconds == 0 || unix_seconds < 0 {
            return 0;
        }
        unix_seconds as u64 / self.epoch_seconds
    }

    /// The index of category `label`, or the label parsed as an index when the
    /// metric has no labels.
    pub fn category_index(&self, label: &str) -> Result<u32> {
        let domain_size = self
            .mechanism()?
            .domain_size()
            .ok_or_else(|| Error::Unsupported("categories of a numeric metric".into()))?;
        let index = if self.categories.is_empty() {
            label.parse::<u32>().ok()
        } else {
            self.categories
                .iter()
                .position(|c| c == label)
                .map(|i| i as u32)
        };
        index
            .filter(|&i| i < domain_size)
            .ok_or_else(|| Error::OutOfDomain {
                value: label.to_string(),
                domain_size,
            })
    }

    /// The label of value `index` (its decimal form when the metric has no labels).
    pub fn category_label(&self, index: u32) -> String {
        self.categories
            .get(index as usize)
            .cloned()
            .unwrap_or_else(|| index.to_string())
    }
}

fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(invalid(
            "name",
            format!("must be 1 to {MAX_NAME_LEN} bytes long"),
        ));
    }
    let ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !ok {
        return Err(invalid(
            "name",
            format!("{name:?} may contain only ASCII letters, digits, '.', '_' and '-'"),
        ));
    }
    Ok(())
}

fn invalid(name: &'static str, reason: String) -> Error {
    Error::InvalidParameter { name, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grr(d: u32) -> MetricSpec {
        MetricSpec::new(
            "m.x",
            Epsilon::new(1.0).unwrap(),
            MechanismSpec::Grr { domain_size: d },
        )
    }

    #[test]
    fn categories_must_match_the_domain_size() {
        assert!(grr(3).with_categories(["a", "b", "c"]).validate().is_ok());
        assert!(grr(3).with_categories(["a", "b"]).validate().is_err());
        assert!(grr(2).with_categories(["a", "a"]).validate().is_err());
        assert!(grr(2).with_categories(["a", ""]).validate().is_err());
        assert!(grr(3).validate().is_ok());
    }

    #[test]
    fn names_are_restricted() {
        let mut spec = grr(2);
        for bad in ["", "a b", "é", &"x".repeat(MAX_NAME_LEN + 1)] {
            spec.name = bad.to_string();
            assert!(spec.validate().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn same_parameters_ignores_server_fields() {
        let a = grr(3);
        let mut b = a.clone();
        b.metric_id = 7;
        b.version = 2;
        b.created_at = 99;
        assert!(a.same_parameters(&b));
        b.epsilon = Epsilon::new(2.0).unwrap();
        assert!(!a.same_parameters(&b));
    }

    #[test]
    fn category_index_and_label() {
        let spec = grr(3).with_categories(["a", "b", "c"]);
        assert_eq!(spec.category_index("c").unwrap(), 2);
        assert!(spec.category_index("z").is_err());
        assert_eq!(spec.category_label(1), "b");
        let plain = grr(3);
        assert_eq!(plain.category_index("2").unwrap(), 2);
        assert!(plain.category_index("3").is_err());
        assert_eq!(plain.category_label(2), "2");
    }

    #[test]
    fn epoch_at_floors() {
        let spec = grr(2).with_epoch_seconds(3600);
        assert_eq!(spec.epoch_at(7199), 1);
        assert_eq!(spec.epoch_at(-5), 0);
        assert_eq!(grr(2).epoch_at(1_000_000), 0);
    }
}
