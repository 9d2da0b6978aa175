//! Typed record schemas: which attributes a device reports, their public domains,
//! and the metric (mechanism and epsilon) that randomizes each one.
//!
//! A [`Schema`] is a list of [`Attribute`]s. A categorical attribute declares its
//! string domain (the labels are public: they are part of the metric); a numeric
//! attribute declares its bounds `[lo, hi]`. Each attribute is bound to one
//! [`MetricSpec`]: its name, [`MechanismSpec`] and [`Epsilon`].
//!
//! [`Schema::encode`] turns one record (attribute name -> label or number) into one
//! randomized report per attribute, or, with [`Schema::with_sampling`], into
//! reports for `k` attributes drawn uniformly without replacement.
//!
//! # Privacy
//! Every report satisfies epsilon-LDP with the epsilon of its attribute's metric
//! ("epsilon per report"). Reports of one device about one record compose: the
//! device's total loss for the record is the **sum** of the epsilons of the
//! attributes it actually reports ([`Schema::epsilon_per_record`] gives the worst
//! case over the sampled subsets). Which attributes are sampled is drawn
//! independently of the record's values, so sampling leaks nothing by itself.
//!
//! On a device, [`Schema::encode_on_device`] adds the two device-side guards:
//! the [`DeviceLedger`] is debited for every fresh report before it is
//! randomized, and attributes of memoized metrics ([`MetricSpec::memoize`])
//! go through a [`Memo`]: an unchanged value gets its earlier report back
//! (marked [`AttributeReport::reused`], not charged again), so repeated
//! reporting never averages the noise away; a new value costs its epsilon.
//! See [`crate::memo`] for what memoization does and does not protect.
//!
//! # Bad input
//! An unknown attribute, a missing attribute, an unknown category label, a
//! non-finite number, or (by default) a number outside `[lo, hi]` is a typed
//! [`SchemaError`]; nothing is silently dropped or changed. Every value is
//! checked, also those of attributes that sampling leaves out, before any
//! randomness is drawn or budget spent. With
//! [`Schema::with_clamping`], out-of-range numbers are clamped to the bounds and
//! every clamp is listed in [`EncodedRecord::clamped`].
//!
//! ```
//! use ldp_sdk::{Epsilon, LdpRng, mechanism::MechanismSpec};
//! use ldp_sdk::schema::{Attribute, Record, Schema};
//! let eps = Epsilon::new(1.0)?;
//! let schema = Schema::new(vec![
//!     Attribute::categorical("color", ["red", "green", "blue"], "app.color",
//!                            MechanismSpec::Grr { domain_size: 3 }, eps)?,
//! ])?;
//! let record = Record::new().with("color", "green");
//! let encoded = schema.encode(&record, &mut LdpRng::from_os())?;
//! assert_eq!(encoded.reports.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;

use rand::RngExt;

use crate::budget::DeviceLedger;
use crate::mechanism::{Mechanism, MechanismSpec, Report};
use crate::memo::Memo;
use crate::metric::MetricSpec;
use crate::{Epsilon, LdpRng};

/// Everything that can go wrong when building a schema or encoding a record.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// Two attributes (or two metrics) share a name.
    #[error("duplicate {what} name {name:?}")]
    Duplicate {
        /// "attribute" or "metric".
        what: &'static str,
        /// The repeated name.
        name: String,
    },
    /// A schema needs at least one attribute.
    #[error("a schema needs at least one attribute")]
    Empty,
    /// The sampling parameter is not in `[1, number of attributes]`.
    #[error("cannot sample {k} of {attributes} attributes")]
    InvalidSampling {
        /// Requested attributes per record.
        k: usize,
        /// Attributes in the schema.
        attributes: usize,
    },
    /// The record names an attribute the schema does not have.
    #[error("unknown attribute {0:?}")]
    UnknownAttribute(String),
    /// The record lacks an attribute of the schema.
    #[error("missing attribute {0:?}")]
    MissingAttribute(String),
    /// The record gives the same attribute twice.
    #[error("attribute {0:?} given twice")]
    RepeatedAttribute(String),
    /// A label outside the attribute's declared domain.
    #[error("attribute {attribute:?}: unknown category {value:?}")]
    UnknownCategory {
        /// The attribute.
        attribute: String,
        /// The rejected label (or index as text).
        value: String,
    },
    /// A number outside the attribute's bounds (and clamping is off).
    #[error("attribute {attribute:?}: {value} is outside [{lo}, {hi}]")]
    OutOfRange {
        /// The attribute.
        attribute: String,
        /// The rejected number.
        value: f64,
        /// Lower bound.
        lo: f64,
        /// Upper bound.
        hi: f64,
    },
    /// NaN or an infinity.
    #[error("attribute {attribute:?}: {value} is not a finite number")]
    NotFinite {
        /// The attribute.
        attribute: String,
        /// The rejected number.
        value: f64,
    },
    /// A number for a categorical attribute or a label for a numeric one.
    #[error("attribute {attribute:?} is {expected}, the record gives a {given}")]
    WrongKind {
        /// The attribute.
        attribute: String,
        /// "categorical" or "numeric".
        expected: &'static str,
        /// What the record gave.
        given: &'static str,
    },
    /// The attribute's domain and its metric's mechanism disagree.
    #[error("attribute {attribute:?}: {reason}")]
    Mismatch {
        /// The attribute.
        attribute: String,
        /// What disagrees.
        reason: String,
    },
    /// A memoized metric's attribute was encoded without a [`Memo`]: use
    /// [`Schema::encode_on_device`].
    #[error("attribute {0:?} is reported through a memoized metric: encode it with a memo")]
    NeedsMemo(String),
    /// The device's ledger refused the record's debit (typically
    /// [`crate::Error::BudgetExhausted`]) or could not persist it; nothing was
    /// randomized.
    #[error("device privacy budget: {0}")]
    Budget(crate::Error),
    /// [`Schema::bind`] found no published metric for an attribute.
    #[error("metric {0:?} is not published by the server")]
    NotPublished(String),
    /// The mechanism or metric rejected its parameters.
    #[error(transparent)]
    Sdk(#[from] crate::Error),
}

/// The public domain of an attribute.
#[derive(Debug, Clone, PartialEq)]
pub enum Domain {
    /// A categorical domain: value i has label `labels[i]`.
    Categorical(Vec<String>),
    /// A numeric domain `[lo, hi]`, finite with lo < hi.
    Numeric {
        /// Lower bound.
        lo: f64,
        /// Upper bound.
        hi: f64,
    },
}

/// One attribute of a record, bound to the metric that randomizes it.
#[derive(Debug, Clone)]
pub struct Attribute {
    name: String,
    domain: Domain,
    metric: MetricSpec,
    mechanism: Mechanism,
    label_index: HashMap<String, u32>,
}

impl Attribute {
    /// A categorical attribute with the declared `labels`, randomized by `mechanism`
    /// (a frequency oracle whose domain size equals the number of labels) under
    /// `epsilon`, and published as metric `metric_name`.
    pub fn categorical<I, S>(
        name: impl Into<String>,
        labels: I,
        metric_name: impl Into<String>,
        mechanism: MechanismSpec,
        epsilon: Epsilon,
    ) -> Result<Self, SchemaError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let labels: Vec<String> = labels.into_iter().map(Into::into).collect();
        let metric = MetricSpec::new(metric_name, epsilon, mechanism).with_categories(labels);
        Self::from_metric(name, metric)
    }

    /// A numeric attribute on `[lo, hi]`, randomized by a numeric `mechanism` whose
    /// declared range must be exactly `[lo, hi]`.
    pub fn numeric(
        name: impl Into<String>,
        (lo, hi): (f64, f64),
        metric_name: impl Into<String>,
        mechanism: MechanismSpec,
        epsilon: Epsilon,
    ) -> Result<Self, SchemaError> {
        let name = name.into();
        match numeric_bounds(&mechanism) {
            Some(bounds) if bounds == (lo, hi) => {}
            Some((mlo, mhi)) => {
                return Err(SchemaError::Mismatch {
                    attribute: name,
                    reason: format!(
                        "declared bounds [{lo}, {hi}] but the mechanism's range is [{mlo}, {mhi}]"
                    ),
                });
            }
            None => {
                return Err(SchemaError::Mismatch {
                    attribute: name,
                    reason: "a numeric attribute needs a numeric mechanism".into(),
                });
            }
        }
        Self::from_metric(name, MetricSpec::new(metric_name, epsilon, mechanism))
    }

    /// An attribute reported through the published `metric`: categorical when its
    /// mechanism is a frequency oracle (labels from the metric's categories, or
    /// the indices `0..d` as text when it has none), numeric otherwise (bounds
    /// from the mechanism). Validates the metric. A memoized metric
    /// (`memoize = true`) can only be encoded with a [`Memo`]
    /// ([`Schema::encode_on_device`]), which keeps its published eps_inf.
    pub fn from_metric(name: impl Into<String>, metric: MetricSpec) -> Result<Self, SchemaError> {
        let name = name.into();
        metric.validate()?;
        let mechanism = metric.mechanism()?;
        let domain = match (mechanism.domain_size(), numeric_bounds(&metric.mechanism)) {
            (Some(d), _) => {
                let labels = if metric.categories.is_empty() {
                    (0..d).map(|i| i.to_string()).collect()
                } else {
                    metric.categories.clone()
                };
                Domain::Categorical(labels)
            }
            (None, Some((lo, hi))) => {
                if !(lo.is_finite() && hi.is_finite() && lo < hi) {
                    return Err(SchemaError::Mismatch {
                        attribute: name,
                        reason: format!("bounds [{lo}, {hi}] must be finite with lo < hi"),
                    });
                }
                Domain::Numeric { lo, hi }
            }
            (None, None) => {
                return Err(SchemaError::Mismatch {
                    attribute: name,
                    reason: "the mechanism is neither a frequency oracle nor numeric".into(),
                });
            }
        };
        let label_index = match &domain {
            Domain::Categorical(labels) => labels
                .iter()
                .enumerate()
                .map(|(i, l)| (l.clone(), i as u32))
                .collect(),
            Domain::Numeric { .. } => HashMap::new(),
        };
        Ok(Self {
            name,
            domain,
            metric,
            mechanism,
            label_index,
        })
    }

    /// Sets the metric's description (free text for analysts; it is part of the
    /// published parameters that [`Schema::bind`] compares).
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.metric.description = description.into();
        self
    }

    /// The attribute's name in records.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The declared public domain.
    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// The metric this attribute is reported as (ids and version are set by
    /// [`Schema::bind`]).
    pub fn metric(&self) -> &MetricSpec {
        &self.metric
    }

    /// The validated mechanism.
    pub fn mechanism(&self) -> &Mechanism {
        &self.mechanism
    }

    /// Epsilon of one report of this attribute.
    pub fn epsilon(&self) -> Epsilon {
        self.metric.epsilon
    }

    /// Whether the attribute's metric asks for memoized responses.
    pub fn memoized(&self) -> bool {
        self.metric.memoize
    }

    /// Randomizes a validated value.
    fn randomize(&self, value: Canonical, rng: &mut LdpRng) -> crate::Result<Report> {
        match value {
            Canonical::Index(i) => self.mechanism.encode_index(i, rng),
            Canonical::Number(x) => self.mechanism.encode_value(x, rng),
        }
    }

    /// The memo's name for this attribute's metric: name and version, so a new
    /// version (new parameters) never reuses a report made under the old one.
    fn memo_metric(&self) -> String {
        format!("{}@v{}", self.metric.name, self.metric.version)
    }

    /// Validates `value` against the domain (clamping numbers if `clamp`).
    fn canonical(
        &self,
        value: &Value,
        clamp: bool,
        clamped: &mut Vec<Clamped>,
    ) -> Result<Canonical, SchemaError> {
        match (&self.domain, value) {
            (Domain::Categorical(labels), Value::Index(i)) => {
                if (*i as usize) < labels.len() {
                    Ok(Canonical::Index(*i))
                } else {
                    Err(self.unknown_category(i.to_string()))
                }
            }
            (Domain::Categorical(_), Value::Label(label)) => {
                let i = *self
                    .label_index
                    .get(label.as_str())
                    .ok_or_else(|| self.unknown_category(label.clone()))?;
                Ok(Canonical::Index(i))
            }
            (&Domain::Numeric { lo, hi }, &Value::Number(x)) => {
                if !x.is_finite() {
                    return Err(SchemaError::NotFinite {
                        attribute: self.name.clone(),
                        value: x,
                    });
                }
                let mut v = x;
                if !(lo..=hi).contains(&x) {
                    if !clamp {
                        return Err(SchemaError::OutOfRange {
                            attribute: self.name.clone(),
                            value: x,
                            lo,
                            hi,
                        });
                    }
                    v = x.clamp(lo, hi);
                    clamped.push(Clamped {
                        attribute: self.name.clone(),
                        value: x,
                        clamped_to: v,
                    });
                }
                Ok(Canonical::Number(v))
            }
            (Domain::Categorical(_), Value::Number(_)) => Err(self.wrong_kind("number")),
            (Domain::Numeric { .. }, Value::Label(_)) => Err(self.wrong_kind("label")),
            (Domain::Numeric { .. }, Value::Index(_)) => Err(self.wrong_kind("category index")),
        }
    }

    fn unknown_category(&self, value: String) -> SchemaError {
        SchemaError::UnknownCategory {
            attribute: self.name.clone(),
            value,
        }
    }

    fn wrong_kind(&self, given: &'static str) -> SchemaError {
        let expected = match self.domain {
            Domain::Categorical(_) => "categorical",
            Domain::Numeric { .. } => "numeric",
        };
        SchemaError::WrongKind {
            attribute: self.name.clone(),
            expected,
            given,
        }
    }
}

/// The declared range of a numeric mechanism, `None` for frequency oracles.
fn numeric_bounds(spec: &MechanismSpec) -> Option<(f64, f64)> {
    match *spec {
        MechanismSpec::Laplace { lo, hi, .. }
        | MechanismSpec::Duchi { lo, hi }
        | MechanismSpec::Piecewise { lo, hi }
        | MechanismSpec::Hybrid { lo, hi } => Some((lo, hi)),
        _ => None,
    }
}

/// A value checked against its attribute's domain, ready to randomize.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Canonical {
    Index(u32),
    Number(f64),
}

impl Canonical {
    /// The bytes a [`Memo`] keys the value by (a tag and the exact bits, with
    /// -0.0 taken as 0.0, so equal values, and only equal values, share a
    /// memoized report).
    fn memo_key(self) -> [u8; 9] {
        let mut key = [0u8; 9];
        match self {
            Self::Index(i) => {
                key[0] = b'i';
                key[1..5].copy_from_slice(&i.to_le_bytes());
            }
            Self::Number(x) => {
                // -0.0 == 0.0, and every numeric mechanism randomizes both alike.
                let x = if x == 0.0 { 0.0 } else { x };
                key[0] = b'n';
                key[1..].copy_from_slice(&x.to_bits().to_le_bytes());
            }
        }
        key
    }
}

/// One attribute value of a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A category label of a categorical attribute.
    Label(String),
    /// A category by its index in the declared domain (no string lookup).
    Index(u32),
    /// A number of a numeric attribute.
    Number(f64),
}

impl From<&str> for Value {
    fn from(label: &str) -> Self {
        Self::Label(label.to_string())
    }
}

impl From<String> for Value {
    fn from(label: String) -> Self {
        Self::Label(label)
    }
}

impl From<f64> for Value {
    fn from(x: f64) -> Self {
        Self::Number(x)
    }
}

/// A record: attribute name -> value. Raw values stay on the device: only the
/// reports [`Schema::encode`] produces from it may leave.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    values: Vec<(String, Value)>,
}

impl Record {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `name = value`.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.values.push((name.into(), value.into()));
        self
    }

    /// Adds `name = value`.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<Value>) {
        self.values.push((name.into(), value.into()));
    }
}

/// A numeric value that was clamped to its bounds (only with clamping enabled).
#[derive(Debug, Clone, PartialEq)]
pub struct Clamped {
    /// The attribute.
    pub attribute: String,
    /// The value the record gave.
    pub value: f64,
    /// The bound it was replaced by before randomization.
    pub clamped_to: f64,
}

/// What a device keeps across records (see [`Schema::encode_on_device`]).
#[derive(Debug, Clone, Copy)]
pub struct Device<'a> {
    /// Pays for every fresh report before it is randomized; `None` charges nothing.
    pub ledger: Option<&'a DeviceLedger>,
    /// Holds the memoized reports of memoized metrics (required if the schema
    /// has one).
    pub memo: Option<&'a Memo>,
    /// The time of the record, seconds since the Unix epoch (for the ledger's
    /// windows and the memo's entries).
    pub now: u64,
}

/// One randomized report of one attribute, tagged with its metric.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeReport {
    /// Position of the attribute in the schema.
    pub attribute: usize,
    /// `MetricSpec::metric_id` of the attribute's metric (0 until bound).
    pub metric_id: u32,
    /// `MetricSpec::version` whose parameters encoded the report (0 until bound).
    pub metric_version: u32,
    /// The mechanism's output.
    pub report: Report,
    /// `true` when this is the memoized report of an earlier record with the
    /// same value: it reveals nothing new and was not charged again.
    pub reused: bool,
}

/// The reports made from one record.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedRecord {
    /// One report per reported attribute, in schema order.
    pub reports: Vec<AttributeReport>,
    /// Values clamped to their bounds (always empty unless clamping is enabled).
    pub clamped: Vec<Clamped>,
}

impl EncodedRecord {
    /// Sum of the epsilons of the fresh (not reused) reports: this record's
    /// privacy loss.
    pub fn epsilon_spent(&self, schema: &Schema) -> f64 {
        self.reports
            .iter()
            .filter(|r| !r.reused)
            .map(|r| schema.attributes[r.attribute].epsilon().get())
            .sum()
    }
}

/// A validated list of attributes and how records are encoded.
#[derive(Debug, Clone)]
pub struct Schema {
    attributes: Vec<Attribute>,
    by_name: HashMap<String, usize>,
    sample: Option<usize>,
    clamp: bool,
}

impl Schema {
    /// A schema reporting every attribute of every record. Attribute names and
    /// metric names must be unique.
    pub fn new(attributes: Vec<Attribute>) -> Result<Self, SchemaError> {
        if attributes.is_empty() {
            return Err(SchemaError::Empty);
        }
        let mut by_name = HashMap::with_capacity(attributes.len());
        let mut metrics = std::collections::HashSet::new();
        for (i, a) in attributes.iter().enumerate() {
            if by_name.insert(a.name.clone(), i).is_some() {
                return Err(SchemaError::Duplicate {
                    what: "attribute",
                    name: a.name.clone(),
                });
            }
            if !metrics.insert(a.metric.name.as_str()) {
                return Err(SchemaError::Duplicate {
                    what: "metric",
                    name: a.metric.name.clone(),
                });
            }
        }
        Ok(Self {
            attributes,
            by_name,
            sample: None,
            clamp: false,
        })
    }

    /// Reports only `k` attributes per record, chosen uniformly at random without
    /// replacement (independently of the values). Each report keeps its
    /// attribute's epsilon; the record's total is the sum over the k reported.
    pub fn with_sampling(mut self, k: usize) -> Result<Self, SchemaError> {
        if k == 0 || k > self.attributes.len() {
            return Err(SchemaError::InvalidSampling {
                k,
                attributes: self.attributes.len(),
            });
        }
        self.sample = (k < self.attributes.len()).then_some(k);
        Ok(self)
    }

    /// Clamps out-of-range numbers to their bounds instead of rejecting them;
    /// every clamp is reported in [`EncodedRecord::clamped`]. NaN and infinities
    /// are still errors.
    pub fn with_clamping(mut self) -> Self {
        self.clamp = true;
        self
    }

    /// The attributes, in order.
    pub fn attributes(&self) -> &[Attribute] {
        &self.attributes
    }

    /// The position of the attribute called `name`.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// Attributes reported per record (all, or `k` under sampling).
    pub fn reports_per_record(&self) -> usize {
        self.sample.unwrap_or(self.attributes.len())
    }

    /// The worst-case privacy loss of one record: the sum of the largest
    /// [`Schema::reports_per_record`] attribute epsilons.
    pub fn epsilon_per_record(&self) -> f64 {
        let mut eps: Vec<f64> = self.attributes.iter().map(|a| a.epsilon().get()).collect();
        eps.sort_by(|a, b| b.total_cmp(a));
        eps.iter().take(self.reports_per_record()).sum()
    }

    /// The metric specs of all attributes, in order (to register them).
    pub fn metrics(&self) -> Vec<MetricSpec> {
        self.attributes.iter().map(|a| a.metric.clone()).collect()
    }

    /// Binds every attribute to its published version: for each attribute, finds
    /// the metric of the same name in `published` (the latest version if several),
    /// checks that its parameters are exactly the schema's, and takes its
    /// `metric_id`, `version` and `created_at`.
    pub fn bind(&mut self, published: &[MetricSpec]) -> Result<(), SchemaError> {
        for a in &mut self.attributes {
            let found = published
                .iter()
                .filter(|m| m.name == a.metric.name)
                .max_by_key(|m| m.version)
                .ok_or_else(|| SchemaError::NotPublished(a.metric.name.clone()))?;
            if !found.same_parameters(&a.metric) {
                return Err(SchemaError::Mismatch {
                    attribute: a.name.clone(),
                    reason: format!(
                        "published metric {:?} version {} has other parameters",
                        found.name, found.version
                    ),
                });
            }
            a.metric = found.clone();
        }
        Ok(())
    }

    /// Encodes a record given by attribute name. Every attribute of the schema
    /// must be present exactly once and no other; see the module docs for errors.
    /// A schema with a memoized attribute needs [`Schema::encode_on_device`].
    pub fn encode(&self, record: &Record, rng: &mut LdpRng) -> Result<EncodedRecord, SchemaError> {
        let values = self.order(record)?;
        self.encode_with(|i| values[i], rng, None)
    }

    /// Encodes a record given positionally: `values[i]` is the value of
    /// attribute `i`. The fast path for simulations (no name lookups).
    pub fn encode_values(
        &self,
        values: &[Value],
        rng: &mut LdpRng,
    ) -> Result<EncodedRecord, SchemaError> {
        self.check_len(values)?;
        self.encode_with(|i| &values[i], rng, None)
    }

    /// [`Schema::encode`] on a device that keeps a privacy-budget ledger and a
    /// memo (see [`Device`]): memoized attributes reuse the report of an
    /// unchanged value; the fresh reports are debited from the ledger, all or
    /// nothing and durably, *before* anything is randomized. A refused debit is
    /// [`SchemaError::Budget`] and changes nothing; every error leaves the
    /// ledger and memo as they were, except a failure to persist the memo after
    /// a successful debit (budget lost, nothing revealed).
    pub fn encode_on_device(
        &self,
        record: &Record,
        rng: &mut LdpRng,
        device: &Device<'_>,
    ) -> Result<EncodedRecord, SchemaError> {
        let values = self.order(record)?;
        self.encode_with(|i| values[i], rng, Some(device))
    }

    /// [`Schema::encode_on_device`] with the values in schema order.
    pub fn encode_values_on_device(
        &self,
        values: &[Value],
        rng: &mut LdpRng,
        device: &Device<'_>,
    ) -> Result<EncodedRecord, SchemaError> {
        self.check_len(values)?;
        self.encode_with(|i| &values[i], rng, Some(device))
    }

    /// The record's values in schema order.
    fn order<'r>(&self, record: &'r Record) -> Result<Vec<&'r Value>, SchemaError> {
        let mut ordered: Vec<Option<&Value>> = vec![None; self.attributes.len()];
        for (name, value) in &record.values {
            let i = self
                .position(name)
                .ok_or_else(|| SchemaError::UnknownAttribute(name.clone()))?;
            if ordered[i].replace(value).is_some() {
                return Err(SchemaError::RepeatedAttribute(name.clone()));
            }
        }
        let mut values = Vec::with_capacity(ordered.len());
        for (a, v) in self.attributes.iter().zip(ordered) {
            values.push(v.ok_or_else(|| SchemaError::MissingAttribute(a.name.clone()))?);
        }
        Ok(values)
    }

    fn check_len(&self, values: &[Value]) -> Result<(), SchemaError> {
        if values.len() == self.attributes.len() {
            return Ok(());
        }
        Err(SchemaError::Mismatch {
            attribute: String::new(),
            reason: format!(
                "{} values for {} attributes",
                values.len(),
                self.attributes.len()
            ),
        })
    }

    /// Validates every value (sampled or not), then chooses the attributes,
    /// looks up memoized reports, debits the fresh ones and randomizes them.
    fn encode_with<'v>(
        &self,
        value_of: impl Fn(usize) -> &'v Value,
        rng: &mut LdpRng,
        device: Option<&Device<'_>>,
    ) -> Result<EncodedRecord, SchemaError> {
        let memo = device.and_then(|d| d.memo);
        let mut canonical = Vec::with_capacity(self.attributes.len());
        let mut clamps = Vec::new();
        for (i, a) in self.attributes.iter().enumerate() {
            if a.memoized() && memo.is_none() {
                return Err(SchemaError::NeedsMemo(a.name.clone()));
            }
            let mut clamped = Vec::new();
            canonical.push(a.canonical(value_of(i), self.clamp, &mut clamped)?);
            clamps.extend(clamped.into_iter().map(|c| (i, c)));
        }
        let chosen = self.choose(rng);
        let mut prior = Vec::with_capacity(chosen.len());
        for &i in &chosen {
            let a = &self.attributes[i];
            prior.push(match memo {
                Some(memo) if a.memoized() => {
                    memo.lookup(&a.memo_metric(), &canonical[i].memo_key())
                }
                _ => None,
            });
        }
        if let Some(ledger) = device.and_then(|d| d.ledger) {
            let debits: Vec<(&str, Epsilon)> = chosen
                .iter()
                .zip(&prior)
                .filter(|(_, p)| p.is_none())
                .map(|(&i, _)| {
                    let a = &self.attributes[i];
                    (a.metric.name.as_str(), a.epsilon())
                })
                .collect();
            if !debits.is_empty() {
                let now = device.map_or(0, |d| d.now);
                ledger
                    .debit_all(&debits, now)
                    .map_err(SchemaError::Budget)?;
            }
        }
        let mut reports = Vec::with_capacity(chosen.len());
        for (&i, prior) in chosen.iter().zip(prior) {
            let a = &self.attributes[i];
            let (report, reused) = match (prior, memo) {
                (Some(report), _) => (report, true),
                (None, Some(memo)) if a.memoized() => {
                    let now = device.map_or(0, |d| d.now);
                    let key = canonical[i].memo_key();
                    let m = memo.report_with(&a.memo_metric(), &key, a.epsilon(), now, || {
                        a.randomize(canonical[i], rng)
                    })?;
                    (m.report, m.reused)
                }
                _ => (a.randomize(canonical[i], rng)?, false),
            };
            reports.push(AttributeReport {
                attribute: i,
                metric_id: a.metric.metric_id,
                metric_version: a.metric.version,
                report,
                reused,
            });
        }
        let clamped = clamps
            .into_iter()
            .filter(|(i, _)| chosen.binary_search(i).is_ok())
            .map(|(_, c)| c)
            .collect();
        Ok(EncodedRecord { reports, clamped })
    }

    /// The attributes to report, in schema order.
    fn choose(&self, rng: &mut LdpRng) -> Vec<usize> {
        let n = self.attributes.len();
        let Some(k) = self.sample else {
            return (0..n).collect();
        };
        // Partial Fisher-Yates: the first k entries are a uniform k-subset.
        let mut idx: Vec<usize> = (0..n).collect();
        for i in 0..k {
            let j = rng.random_range(i..n);
            idx.swap(i, j);
        }
        idx.truncate(k);
        idx.sort_unstable();
        idx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps(x: f64) -> Epsilon {
        Epsilon::new(x).unwrap()
    }

    fn color() -> Attribute {
        Attribute::categorical(
            "color",
            ["red", "green", "blue"],
            "app.color",
            MechanismSpec::Grr { domain_size: 3 },
            eps(1.0),
        )
        .unwrap()
    }

    fn size() -> Attribute {
        Attribute::categorical(
            "size",
            ["S", "M", "L", "XL"],
            "app.size",
            MechanismSpec::Grr { domain_size: 4 },
            eps(0.5),
        )
        .unwrap()
    }

    fn flag(name: &str) -> Attribute {
        Attribute::categorical(
            name,
            ["no", "yes"],
            format!("app.{name}"),
            MechanismSpec::Binary,
            eps(0.25),
        )
        .unwrap()
    }

    fn schema() -> Schema {
        Schema::new(vec![color(), size()]).unwrap()
    }

    #[test]
    fn encodes_one_report_per_attribute_in_schema_order() {
        let mut rng = LdpRng::seeded_for_simulation(1);
        let record = Record::new().with("size", "XL").with("color", "red");
        let out = schema().encode(&record, &mut rng).unwrap();
        assert_eq!(out.reports.len(), 2);
        assert_eq!(out.reports[0].attribute, 0);
        assert_eq!(out.reports[1].attribute, 1);
        assert!(matches!(out.reports[1].report, Report::Index(i) if i < 4));
        assert!(out.clamped.is_empty());
        assert!((out.epsilon_spent(&schema()) - 1.5).abs() < 1e-12);
    }

    #[test]
    fn unknown_missing_repeated_and_wrong_kind_are_typed_errors() {
        let s = schema();
        let mut rng = LdpRng::seeded_for_simulation(2);
        let base = Record::new().with("color", "red");
        let cases = [
            (
                base.clone().with("size", "XXL"),
                SchemaError::UnknownCategory {
                    attribute: "size".into(),
                    value: "XXL".into(),
                },
            ),
            (base.clone(), SchemaError::MissingAttribute("size".into())),
            (
                base.clone().with("size", "S").with("shape", "round"),
                SchemaError::UnknownAttribute("shape".into()),
            ),
            (
                base.clone().with("size", "S").with("color", "blue"),
                SchemaError::RepeatedAttribute("color".into()),
            ),
            (
                base.clone().with("size", 3.0),
                SchemaError::WrongKind {
                    attribute: "size".into(),
                    expected: "categorical",
                    given: "number",
                },
            ),
        ];
        for (record, expected) in cases {
            assert_eq!(s.encode(&record, &mut rng).unwrap_err(), expected);
        }
        let err = s
            .encode_values(&[Value::Index(3), Value::Index(0)], &mut rng)
            .unwrap_err();
        assert!(matches!(err, SchemaError::UnknownCategory { .. }), "{err}");
    }

    #[test]
    fn duplicate_names_and_bad_sampling_are_rejected() {
        assert!(matches!(
            Schema::new(vec![color(), color()]),
            Err(SchemaError::Duplicate { .. })
        ));
        assert!(matches!(Schema::new(vec![]), Err(SchemaError::Empty)));
        assert!(schema().with_sampling(0).is_err());
        assert!(schema().with_sampling(3).is_err());
        assert_eq!(schema().with_sampling(2).unwrap().reports_per_record(), 2);
    }

    #[test]
    fn categorical_labels_must_match_the_domain() {
        let err = Attribute::categorical(
            "c",
            ["a", "b"],
            "m.c",
            MechanismSpec::Grr { domain_size: 3 },
            eps(1.0),
        )
        .unwrap_err();
        assert!(matches!(err, SchemaError::Sdk(_)), "{err}");
    }

    #[test]
    fn numeric_attribute_needs_matching_numeric_mechanism() {
        let err = Attribute::numeric(
            "age",
            (0.0, 100.0),
            "m.age",
            MechanismSpec::Grr { domain_size: 3 },
            eps(1.0),
        )
        .unwrap_err();
        assert!(matches!(err, SchemaError::Mismatch { .. }), "{err}");
        let err = Attribute::numeric(
            "age",
            (0.0, 100.0),
            "m.age",
            MechanismSpec::Piecewise { lo: 0.0, hi: 90.0 },
            eps(1.0),
        )
        .unwrap_err();
        assert!(matches!(err, SchemaError::Mismatch { .. }), "{err}");
    }

    fn age() -> Attribute {
        Attribute::numeric(
            "age",
            (17.0, 90.0),
            "app.age",
            MechanismSpec::Piecewise { lo: 17.0, hi: 90.0 },
            eps(1.0),
        )
        .unwrap()
    }

    #[test]
    fn out_of_range_numbers_are_rejected_unless_clamping_is_on_and_then_reported() {
        let mut rng = LdpRng::seeded_for_simulation(4);
        let strict = Schema::new(vec![age()]).unwrap();
        let old = Record::new().with("age", 120.0);
        assert_eq!(
            strict.encode(&old, &mut rng).unwrap_err(),
            SchemaError::OutOfRange {
                attribute: "age".into(),
                value: 120.0,
                lo: 17.0,
                hi: 90.0
            }
        );
        let clamping = Schema::new(vec![age()]).unwrap().with_clamping();
        let out = clamping.encode(&old, &mut rng).unwrap();
        assert_eq!(
            out.clamped,
            vec![Clamped {
                attribute: "age".into(),
                value: 120.0,
                clamped_to: 90.0
            }]
        );
        assert!(matches!(out.reports[0].report, Report::Numeric(_)));
        let inside = clamping
            .encode(&Record::new().with("age", 40.0), &mut rng)
            .unwrap();
        assert!(inside.clamped.is_empty());
        for bad in [f64::NAN, f64::INFINITY] {
            let err = clamping
                .encode(&Record::new().with("age", bad), &mut rng)
                .unwrap_err();
            assert!(matches!(err, SchemaError::NotFinite { .. }), "{err}");
        }
        let err = clamping
            .encode(&Record::new().with("age", "forty"), &mut rng)
            .unwrap_err();
        assert!(matches!(err, SchemaError::WrongKind { .. }), "{err}");
    }

    #[test]
    fn sampling_reports_k_attributes_uniformly() {
        // 4 binary attributes, k = 2: each attribute is reported with probability
        // 1/2. Over n = 20,000 records a count is Binomial(n, 1/2): SE = 70.7;
        // we allow 5 SE (354).
        let attrs = ["a", "b", "c", "d"].map(flag).to_vec();
        let s = Schema::new(attrs).unwrap().with_sampling(2).unwrap();
        assert!((s.epsilon_per_record() - 0.5).abs() < 1e-12);
        let mut rng = LdpRng::seeded_for_simulation(3);
        let values = vec![Value::Index(1); 4];
        let n = 20_000;
        let mut counts = [0u32; 4];
        for _ in 0..n {
            let out = s.encode_values(&values, &mut rng).unwrap();
            assert_eq!(out.reports.len(), 2);
            assert!(out.reports[0].attribute < out.reports[1].attribute);
            for r in out.reports {
                counts[r.attribute] += 1;
            }
        }
        for c in counts {
            assert!((f64::from(c) - 10_000.0).abs() < 354.0, "{counts:?}");
        }
    }

    #[test]
    fn bind_takes_ids_and_rejects_changed_parameters() {
        let mut s = schema();
        let mut published = s.metrics();
        for (i, m) in published.iter_mut().enumerate() {
            m.metric_id = 10 + i as u32;
            m.version = 1;
        }
        let mut newer = published[0].clone();
        newer.version = 2;
        published.push(newer);
        s.bind(&published).unwrap();
        assert_eq!(s.attributes()[0].metric().metric_id, 10);
        assert_eq!(s.attributes()[0].metric().version, 2);
        let out = s
            .encode_values(&[Value::Index(0), Value::Index(0)], &mut LdpRng::from_os())
            .unwrap();
        assert_eq!(
            (out.reports[1].metric_id, out.reports[1].metric_version),
            (11, 1)
        );

        let mut changed = s.metrics();
        changed[1].epsilon = eps(2.0);
        assert!(matches!(
            schema().bind(&changed),
            Err(SchemaError::Mismatch { .. })
        ));
        assert!(matches!(
            schema().bind(&published[..1]),
            Err(SchemaError::NotPublished(_))
        ));
    }

    /// Regression: a metric published with `memoize = true` was encoded with a
    /// fresh response for every record, while the server reports eps_inf =
    /// epsilon per report for it: repeated reports of one value averaged the
    /// noise away under a false claim. Without a memo it is now refused.
    #[test]
    fn memoized_metrics_need_a_memo() {
        let mut spec = MetricSpec::new("m", eps(1.0), MechanismSpec::Grr { domain_size: 3 });
        spec.memoize = true;
        let s = Schema::new(vec![Attribute::from_metric("a", spec).unwrap(), size()]).unwrap();
        let record = Record::new().with("a", Value::Index(1)).with("size", "M");
        let mut rng = LdpRng::seeded_for_simulation(3);
        let err = s.encode(&record, &mut rng).unwrap_err();
        assert_eq!(err, SchemaError::NeedsMemo("a".into()));
        let device = Device {
            ledger: None,
            memo: None,
            now: 0,
        };
        assert_eq!(
            s.encode_on_device(&record, &mut rng, &device).unwrap_err(),
            err
        );
    }

    struct OnDevice {
        _dir: tempfile::TempDir,
        ledger: crate::budget::DeviceLedger,
        memo: crate::memo::Memo,
        memo_path: std::path::PathBuf,
    }

    fn on_device(lifetime: f64) -> OnDevice {
        use crate::budget::{BudgetPolicy, DeviceLedger};
        let dir = tempfile::tempdir().unwrap();
        let ledger = DeviceLedger::open(dir.path().join("ledger.json")).unwrap();
        for m in ["app.pick", "app.size", "app.score"] {
            ledger
                .register(m, BudgetPolicy::new(lifetime, 86_400, lifetime).unwrap())
                .unwrap();
        }
        let memo_path = dir.path().join("memo.json");
        let memo = crate::memo::Memo::open(&memo_path, &secret()).unwrap();
        OnDevice {
            _dir: dir,
            ledger,
            memo,
            memo_path,
        }
    }

    fn secret() -> crate::mechanism::rappor::DeviceSecret {
        crate::mechanism::rappor::DeviceSecret::generate(&mut LdpRng::seeded_for_simulation(99))
    }

    /// A memoized GRR metric (d = 64) and a numeric one beside a fresh one.
    fn memo_schema() -> Schema {
        let mut pick =
            MetricSpec::new("app.pick", eps(1.0), MechanismSpec::Grr { domain_size: 64 });
        pick.memoize = true;
        let mut score = MetricSpec::new(
            "app.score",
            eps(1.0),
            MechanismSpec::Duchi { lo: 0.0, hi: 1.0 },
        );
        score.memoize = true;
        Schema::new(vec![
            Attribute::from_metric("pick", pick).unwrap(),
            size(),
            Attribute::from_metric("score", score).unwrap(),
        ])
        .unwrap()
    }

    #[test]
    fn unchanged_values_reuse_their_report_and_are_charged_once() {
        let d = on_device(1e6);
        let s = memo_schema();
        let mut rng = LdpRng::seeded_for_simulation(5);
        let device = Device {
            ledger: Some(&d.ledger),
            memo: Some(&d.memo),
            now: 1_700_000_000,
        };
        let record = |pick: u32, score: f64| {
            Record::new()
                .with("pick", Value::Index(pick))
                .with("size", "M")
                .with("score", score)
        };
        let first = s
            .encode_on_device(&record(7, 0.25), &mut rng, &device)
            .unwrap();
        assert!(first.reports.iter().all(|r| !r.reused));
        assert_eq!(first.epsilon_spent(&s), 2.5);
        // 10,000 further records with the same values: GRR at eps = 1 over 64
        // values keeps the true value with probability e / (e + 63) ~ 0.04, so
        // fresh responses would differ from the first with probability ~0.96
        // each; memoized ones never do.
        // (The loop runs without the ledger: each charged record is an fsync.)
        let memo_only = Device {
            ledger: None,
            ..device
        };
        for i in 0..10_000 {
            let device = if i < 2 { &device } else { &memo_only };
            let again = s
                .encode_on_device(&record(7, 0.25), &mut rng, device)
                .unwrap();
            assert_eq!(again.reports[0].report, first.reports[0].report);
            assert_eq!(again.reports[2].report, first.reports[2].report);
            assert!(again.reports[0].reused && again.reports[2].reused);
            assert!(!again.reports[1].reused);
            assert_eq!(again.epsilon_spent(&s), 0.5);
        }
        let now = 1_700_000_000;
        assert_eq!(d.ledger.usage("app.pick", now).unwrap().lifetime_spent, 1.0);
        assert_eq!(
            d.ledger.usage("app.score", now).unwrap().lifetime_spent,
            1.0
        );
        assert_eq!(d.ledger.usage("app.size", now).unwrap().lifetime_spent, 1.5);
        // A changed value is fresh and charged; the exact bits of a number count.
        let changed = s
            .encode_on_device(&record(8, 0.25 + 1e-12), &mut rng, &device)
            .unwrap();
        assert!(!changed.reports[0].reused && !changed.reports[2].reused);
        assert_eq!(d.ledger.usage("app.pick", now).unwrap().lifetime_spent, 2.0);
        // The memo survives a restart (same device secret).
        let OnDevice {
            _dir,
            ledger,
            memo,
            memo_path,
        } = d;
        drop(memo);
        let memo = crate::memo::Memo::open(&memo_path, &secret()).unwrap();
        let device = Device {
            ledger: Some(&ledger),
            memo: Some(&memo),
            now,
        };
        let after = s
            .encode_on_device(&record(7, 0.25), &mut rng, &device)
            .unwrap();
        assert_eq!(after.reports[0].report, first.reports[0].report);
        assert!(after.reports[0].reused);
    }

    #[test]
    fn a_refused_debit_changes_nothing() {
        // Lifetime 1.5 per metric: the first record (pick 1.0 + size 0.5 + score
        // 1.0) fits; a second with new values needs pick 1.0 more: refused.
        let d = on_device(1.5);
        let s = memo_schema();
        let mut rng = LdpRng::seeded_for_simulation(6);
        let device = Device {
            ledger: Some(&d.ledger),
            memo: Some(&d.memo),
            now: 10,
        };
        let record = |pick: u32| {
            Record::new()
                .with("pick", Value::Index(pick))
                .with("size", "S")
                .with("score", 0.5)
        };
        s.encode_on_device(&record(1), &mut rng, &device).unwrap();
        let before = std::fs::read(&d.memo_path).unwrap();
        let err = s
            .encode_on_device(&record(2), &mut rng, &device)
            .unwrap_err();
        assert!(
            matches!(err, SchemaError::Budget(crate::Error::BudgetExhausted(_))),
            "{err}"
        );
        assert_eq!(std::fs::read(&d.memo_path).unwrap(), before);
        assert_eq!(d.memo.len("app.pick@v0"), 1);
        assert_eq!(d.ledger.usage("app.size", 10).unwrap().lifetime_spent, 0.5);
        // Bad input anywhere, even in an attribute sampling leaves out, spends nothing.
        let sampled = memo_schema().with_sampling(1).unwrap();
        for _ in 0..20 {
            let bad = Record::new()
                .with("pick", Value::Index(1))
                .with("size", "XXL")
                .with("score", 0.5);
            assert!(matches!(
                sampled.encode_on_device(&bad, &mut rng, &device),
                Err(SchemaError::UnknownCategory { .. })
            ));
        }
        assert_eq!(d.ledger.usage("app.size", 10).unwrap().lifetime_spent, 0.5);
    }

    /// Regression: the memo keyed numbers by their bits, so 0.0 and -0.0 (one
    /// value, randomized identically by every numeric mechanism) got two
    /// independent memoized reports: two draws of the same value's noise.
    #[test]
    fn signed_zeros_share_one_memoized_report() {
        let d = on_device(1e6);
        let s = memo_schema();
        let mut rng = LdpRng::seeded_for_simulation(8);
        let device = Device {
            ledger: Some(&d.ledger),
            memo: Some(&d.memo),
            now: 20,
        };
        let record = |score: f64| {
            Record::new()
                .with("pick", Value::Index(3))
                .with("size", "L")
                .with("score", score)
        };
        let plus = s.encode_on_device(&record(0.0), &mut rng, &device).unwrap();
        let minus = s
            .encode_on_device(&record(-0.0), &mut rng, &device)
            .unwrap();
        assert!(minus.reports[2].reused);
        assert_eq!(minus.reports[2].report, plus.reports[2].report);
        assert_eq!(d.memo.len("app.score@v0"), 1);
        assert_eq!(d.ledger.usage("app.score", 20).unwrap().lifetime_spent, 1.0);
    }
}
