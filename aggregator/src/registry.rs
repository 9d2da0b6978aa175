//! The in-memory view of published metrics and closed epochs.
//!
//! Loaded from the [`Store`](crate::store::Store) at start and updated after
//! every committed change, so the ingest path validates reports without a
//! database round trip. Each [`Published`] metric carries its validated SDK
//! [`Mechanism`] (built once) and its protobuf form (converted once).
//!
//! With one aggregator process per database this view is exact. (When several
//! processes share a PostgreSQL database, a metric created elsewhere is unknown
//! here until restart; reports for it get `INVALID_ARGUMENT`.)

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use ldp_proto::v1 as pb;
use ldp_sdk::budget::BudgetPolicy;
use ldp_sdk::mechanism::Mechanism;
use ldp_sdk::metric::MetricSpec;
use ldp_sdk::wire;

use crate::error::ServiceError;

/// A published metric version with its derived forms.
#[derive(Debug)]
pub struct Published {
    /// The spec as stored.
    pub spec: MetricSpec,
    /// The validated mechanism built from the spec.
    pub mechanism: Mechanism,
    /// The spec in protobuf form.
    pub proto: pb::MetricSpec,
    /// The operator's device budget for the metric's name (shared by its versions).
    device_budget: RwLock<Option<BudgetPolicy>>,
}

impl Published {
    /// Builds the derived forms; fails if the SDK rejects the stored spec.
    pub fn new(spec: MetricSpec) -> Result<Self, ServiceError> {
        let mechanism = spec.mechanism().map_err(|e| {
            ServiceError::Internal(format!("stored metric {} is invalid: {e}", spec.name))
        })?;
        let proto = wire::metric_to_proto(&spec)
            .map_err(|e| ServiceError::Internal(format!("metric {}: {e}", spec.name)))?;
        Ok(Self {
            spec,
            mechanism,
            proto,
            device_budget: RwLock::new(None),
        })
    }

    /// The device budget set for the metric's name, if any.
    pub fn device_budget(&self) -> Option<BudgetPolicy> {
        *self.device_budget.read().unwrap_or_else(|e| e.into_inner())
    }

    fn set_device_budget(&self, policy: Option<BudgetPolicy>) {
        *self
            .device_budget
            .write()
            .unwrap_or_else(|e| e.into_inner()) = policy;
    }
}

/// Published metrics by (id, version) and by name.
#[derive(Debug, Default)]
pub struct Registry {
    inner: RwLock<Inner>,
}

/// The registry's maps, readable under one lock for a whole batch.
#[derive(Debug, Default)]
pub struct Inner {
    by_id: HashMap<(u32, u32), Arc<Published>>,
    /// Versions of each name, ascending.
    by_name: BTreeMap<String, Vec<Arc<Published>>>,
    /// Device budgets by metric name (also for names not loaded yet).
    device_budgets: HashMap<String, BudgetPolicy>,
}

impl Inner {
    /// The metric version a report names.
    pub fn get(&self, metric_id: u32, version: u32) -> Option<&Arc<Published>> {
        self.by_id.get(&(metric_id, version))
    }
}

impl Registry {
    /// Adds a stored metric version (idempotent).
    pub fn insert(&self, spec: MetricSpec) -> Result<Arc<Published>, ServiceError> {
        let published = Arc::new(Published::new(spec)?);
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let key = (published.spec.metric_id, published.spec.version);
        if let Some(existing) = inner.by_id.get(&key) {
            return Ok(existing.clone());
        }
        published.set_device_budget(inner.device_budgets.get(&published.spec.name).copied());
        inner.by_id.insert(key, published.clone());
        let versions = inner
            .by_name
            .entry(published.spec.name.clone())
            .or_default();
        versions.push(published.clone());
        versions.sort_by_key(|p| p.spec.version);
        Ok(published)
    }

    /// Records the (stored) device budget of every version of `name`.
    pub fn set_device_budget(&self, name: &str, policy: BudgetPolicy) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.device_budgets.insert(name.to_owned(), policy);
        for version in inner.by_name.get(name).into_iter().flatten() {
            version.set_device_budget(Some(policy));
        }
    }

    /// A read guard for validating a whole batch under one lock.
    pub fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Version `version` of `name` (0 = the latest).
    pub fn by_name(&self, name: &str, version: u32) -> Result<Arc<Published>, ServiceError> {
        let inner = self.read();
        let versions = inner
            .by_name
            .get(name)
            .ok_or_else(|| ServiceError::NotFound(format!("no metric named {name:?}")))?;
        let found = if version == 0 {
            versions.last()
        } else {
            versions.iter().find(|p| p.spec.version == version)
        };
        found.cloned().ok_or_else(|| {
            ServiceError::NotFound(format!("metric {name:?} has no version {version}"))
        })
    }

    /// [`Registry::list`] in protobuf form.
    pub fn list_protos(&self, all_versions: bool) -> Vec<pb::MetricSpec> {
        self.list(all_versions)
            .iter()
            .map(|p| p.proto.clone())
            .collect()
    }

    /// Every metric (latest versions only unless `all_versions`), ordered by name and version.
    pub fn list(&self, all_versions: bool) -> Vec<Arc<Published>> {
        let inner = self.read();
        inner
            .by_name
            .values()
            .flat_map(|versions| {
                let skip = if all_versions { 0 } else { versions.len() - 1 };
                versions.iter().skip(skip).cloned()
            })
            .collect()
    }
}

/// The set of closed (metric_id, epoch) pairs.
#[derive(Debug, Default)]
pub struct ClosedEpochs {
    inner: RwLock<HashSet<(u32, u64)>>,
}

impl ClosedEpochs {
    /// Whether `epoch` of `metric_id` is closed.
    pub fn contains(&self, metric_id: u32, epoch: u64) -> bool {
        self.read().contains(&(metric_id, epoch))
    }

    /// Marks an epoch closed.
    pub fn insert(&self, metric_id: u32, epoch: u64) {
        self.inner
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert((metric_id, epoch));
    }

    /// A read guard for checking a whole batch under one lock.
    pub fn read(&self) -> RwLockReadGuard<'_, HashSet<(u32, u64)>> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }
}
