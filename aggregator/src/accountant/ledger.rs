//! The server's privacy ledger: every central release on a data set, recorded with
//! its (epsilon, delta) and, where it has one, its RDP curve; per-data-set budgets
//! that refuse any release that would exceed them.
//!
//! # Guarantee
//! [`PrivacyLedger::record`] admits a release only if the data set has a budget and
//! the total spent *including the new release*, under the tightest composition
//! method that is valid for the releases recorded, is within the budget's epsilon at
//! the budget's delta. Each method's total is a valid upper bound on its own
//! (basic, advanced, RDP, exact pure-DP composition), so their minimum is too.
//! Release parameters are fixed before a release runs, and refusal depends only on
//! recorded parameters, never on data.
//!
//! Persistence is not this module's business: the type is `serde`-serializable and
//! the store saves it; no SQL here.
//!
//! ```
//! use ldp_aggregator::accountant::ledger::{Budget, PrivacyLedger, Release};
//! let mut ledger = PrivacyLedger::default();
//! ledger.set_budget("adult", Budget::new(1.0, 1e-5)?)?;
//! ledger.record(Release::pure("counts-1", "adult", "laplace_counts", 0.6, serde_json::json!({}))?)?;
//! let refused = ledger.record(Release::pure("counts-2", "adult", "laplace_counts", 0.6, serde_json::json!({}))?);
//! assert!(refused.is_err());
//! # Ok::<(), ldp_aggregator::accountant::AccountantError>(())
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::composition::{self, DpGuarantee};
use super::gaussian::analytic_gaussian_epsilon;
use super::rdp::{Conversion, RdpCurve, SubsampledGaussian, default_orders};
use super::{AccountantError, Result, check_delta, check_epsilon};

/// A data set's privacy budget: the total epsilon allowed at a fixed delta.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// Total epsilon allowed.
    pub epsilon: f64,
    /// The delta at which the total is measured.
    pub delta: f64,
}

impl Budget {
    /// Validates epsilon (finite, > 0) and delta (in (0, 1)).
    pub fn new(epsilon: f64, delta: f64) -> Result<Self> {
        check_epsilon("epsilon", epsilon)?;
        check_delta(delta)?;
        Ok(Self { epsilon, delta })
    }
}

/// One central release: what ran, with which parameters, and its guarantee.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    /// Unique id of the release; recording the same release twice is idempotent.
    pub id: String,
    /// The data set it ran on.
    pub dataset: String,
    /// The mechanism, e.g. `laplace_counts` or `dp_sgd`.
    pub mechanism: String,
    /// The mechanism's parameters, for the audit report.
    pub parameters: serde_json::Value,
    /// The release's own (epsilon, delta) guarantee.
    pub guarantee: DpGuarantee,
    /// The release's RDP curve, when it has one (Gaussian mechanisms).
    pub rdp: Option<RdpCurve>,
}

impl Release {
    /// A pure epsilon-DP release (e.g. Laplace-noised counts). Its RDP curve is the
    /// exact one of epsilon-DP ([`RdpCurve::pure_dp`]).
    pub fn pure(
        id: impl Into<String>,
        dataset: impl Into<String>,
        mechanism: impl Into<String>,
        epsilon: f64,
        parameters: serde_json::Value,
    ) -> Result<Self> {
        check_epsilon("epsilon", epsilon)?;
        Ok(Self {
            id: id.into(),
            dataset: dataset.into(),
            mechanism: mechanism.into(),
            parameters,
            guarantee: DpGuarantee::new(epsilon, 0.0)?,
            rdp: Some(RdpCurve::pure_dp(epsilon, &default_orders())?),
        })
    }

    /// An (epsilon, delta)-DP release with no RDP curve.
    pub fn approximate(
        id: impl Into<String>,
        dataset: impl Into<String>,
        mechanism: impl Into<String>,
        epsilon: f64,
        delta: f64,
        parameters: serde_json::Value,
    ) -> Result<Self> {
        check_epsilon("epsilon", epsilon)?;
        check_delta(delta)?;
        Ok(Self {
            id: id.into(),
            dataset: dataset.into(),
            mechanism: mechanism.into(),
            parameters,
            guarantee: DpGuarantee::new(epsilon, delta)?,
            rdp: None,
        })
    }

    /// A DP-SGD run (or any Poisson-subsampled Gaussian; q = 1 and one step is the
    /// plain Gaussian mechanism): its RDP curve over the default orders and its own
    /// guarantee at `delta` (improved conversion, or for q = 1 the exact analytic
    /// Gaussian epsilon when smaller).
    pub fn subsampled_gaussian(
        id: impl Into<String>,
        dataset: impl Into<String>,
        mechanism: impl Into<String>,
        mech: SubsampledGaussian,
        steps: u64,
        delta: f64,
        parameters: serde_json::Value,
    ) -> Result<Self> {
        let curve = RdpCurve::subsampled_gaussian(mech, steps, &default_orders())?;
        let mut eps = curve.epsilon(delta, Conversion::Improved)?.epsilon;
        if mech.sample_rate() == 1.0 {
            eps = eps.min(analytic_gaussian_epsilon(
                mech.noise_multiplier(),
                steps,
                delta,
            )?);
        }
        Ok(Self {
            id: id.into(),
            dataset: dataset.into(),
            mechanism: mechanism.into(),
            parameters,
            guarantee: DpGuarantee::new(eps, delta)?,
            rdp: Some(curve),
        })
    }
}

/// A composition method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Epsilons and deltas add.
    Basic,
    /// Dwork-Rothblum-Vadhan advanced composition.
    AdvancedDrv,
    /// Kairouz-Oh-Viswanath's closed-form bound.
    AdvancedKov,
    /// RDP curves add; improved conversion (Balle et al. 2020).
    Rdp,
    /// Exact optimal composition; pure-DP releases only (exact for up to
    /// [`composition::MAX_EXACT_SUPPORT`] loss points, else at the largest epsilon).
    ExactPure,
}

/// The total under one method.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodTotal {
    /// The method.
    pub method: Method,
    /// Total epsilon at the requested delta; `None` when the method does not apply.
    pub epsilon: Option<f64>,
    /// Why the method does not apply, if it does not.
    pub not_applicable: Option<String>,
}

/// What a data set has spent, under every method, and the tightest valid total.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spent {
    /// The data set.
    pub dataset: String,
    /// The delta the totals are measured at.
    pub delta: f64,
    /// Number of releases composed.
    pub releases: usize,
    /// The total under each method.
    pub methods: Vec<MethodTotal>,
    /// The method giving the smallest total, if any applies.
    pub tightest: Option<Method>,
    /// The smallest total epsilon; `None` (unbounded) if no method applies.
    pub epsilon: Option<f64>,
}

/// The server's record of central releases and per-data-set budgets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PrivacyLedger {
    budgets: BTreeMap<String, Budget>,
    releases: Vec<Release>,
}

impl PrivacyLedger {
    /// Rebuilds a ledger from stored budgets and releases (in recording order)
    /// without re-checking them: the store only ever writes states that
    /// [`PrivacyLedger::set_budget`] and [`PrivacyLedger::record`] admitted.
    pub fn restore(budgets: BTreeMap<String, Budget>, releases: Vec<Release>) -> Self {
        Self { budgets, releases }
    }

    /// Every release, in recording order.
    pub fn all_releases(&self) -> &[Release] {
        &self.releases
    }

    /// Sets (or changes) a data set's budget. Refused if what is already spent
    /// exceeds the new budget.
    pub fn set_budget(&mut self, dataset: &str, budget: Budget) -> Result<()> {
        let spent = self.spent(dataset, budget.delta)?;
        ensure_within(dataset, &spent, budget)?;
        self.budgets.insert(dataset.to_owned(), budget);
        Ok(())
    }

    /// The budget of a data set, if it has one.
    pub fn budget(&self, dataset: &str) -> Option<Budget> {
        self.budgets.get(dataset).copied()
    }

    /// Every data set with a budget or a release.
    pub fn datasets(&self) -> Vec<String> {
        let mut names: Vec<String> = self.budgets.keys().cloned().collect();
        for r in &self.releases {
            if !names.contains(&r.dataset) {
                names.push(r.dataset.clone());
            }
        }
        names.sort();
        names
    }

    /// The releases recorded on a data set, in order.
    pub fn releases(&self, dataset: &str) -> impl Iterator<Item = &Release> {
        self.releases.iter().filter(move |r| r.dataset == dataset)
    }

    /// What the data set has spent at `delta`, under every method.
    pub fn spent(&self, dataset: &str, delta: f64) -> Result<Spent> {
        check_delta(delta)?;
        let releases: Vec<&Release> = self.releases(dataset).collect();
        Ok(totals(dataset, &releases, delta))
    }

    /// What the data set would have spent with `release` added, at its budget's
    /// delta, and whether that fits: `Ok` if it does. Does not record anything.
    pub fn check(&self, release: &Release) -> Result<Spent> {
        let budget = self
            .budget(&release.dataset)
            .ok_or_else(|| AccountantError::NoBudget(release.dataset.clone()))?;
        let mut releases: Vec<&Release> = self.releases(&release.dataset).collect();
        releases.push(release);
        let spent = totals(&release.dataset, &releases, budget.delta);
        ensure_within(&release.dataset, &spent, budget)?;
        Ok(spent)
    }

    /// Records `release` if it fits the data set's budget ([`PrivacyLedger::check`]);
    /// recording an identical release again (same id) changes nothing; a different
    /// release under an existing id is an error.
    pub fn record(&mut self, release: Release) -> Result<Spent> {
        if let Some(existing) = self.releases.iter().find(|r| r.id == release.id) {
            if *existing != release {
                return Err(AccountantError::InvalidParameter {
                    name: "id",
                    reason: format!(
                        "release {:?} is already recorded with other parameters",
                        release.id
                    ),
                });
            }
            let delta = self.budget(&release.dataset).map_or(1e-5, |b| b.delta);
            return self.spent(&release.dataset, delta);
        }
        let spent = self.check(&release)?;
        self.releases.push(release);
        Ok(spent)
    }
}

fn ensure_within(dataset: &str, spent: &Spent, budget: Budget) -> Result<()> {
    match spent.epsilon {
        Some(eps) if eps <= budget.epsilon => Ok(()),
        other => Err(AccountantError::BudgetExceeded {
            dataset: dataset.to_owned(),
            would_spend: other.unwrap_or(f64::INFINITY),
            delta: budget.delta,
            budget: budget.epsilon,
        }),
    }
}

/// The totals of `releases` at `delta` under every method.
fn totals(dataset: &str, releases: &[&Release], delta: f64) -> Spent {
    let parts: Vec<DpGuarantee> = releases.iter().map(|r| r.guarantee).collect();
    let methods = vec![
        total(Method::Basic, basic_total(&parts, delta)),
        total(
            Method::AdvancedDrv,
            composition::advanced_drv(&parts, delta).map(|g| g.epsilon),
        ),
        total(
            Method::AdvancedKov,
            composition::advanced_kov(&parts, delta).map(|g| g.epsilon),
        ),
        total(Method::Rdp, rdp_total(releases, delta)),
        total(Method::ExactPure, exact_total(&parts, delta)),
    ];
    let best = methods
        .iter()
        .filter_map(|m| m.epsilon.map(|e| (m.method, e)))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    Spent {
        dataset: dataset.to_owned(),
        delta,
        releases: releases.len(),
        methods,
        tightest: best.map(|b| b.0),
        epsilon: best.map(|b| b.1),
    }
}

fn total(method: Method, result: Result<f64>) -> MethodTotal {
    match result {
        Ok(eps) => MethodTotal {
            method,
            epsilon: Some(eps),
            not_applicable: None,
        },
        Err(e) => MethodTotal {
            method,
            epsilon: None,
            not_applicable: Some(e.to_string()),
        },
    }
}

fn basic_total(parts: &[DpGuarantee], delta: f64) -> Result<f64> {
    let sum = composition::basic(parts);
    if sum.delta <= delta {
        Ok(sum.epsilon)
    } else {
        Err(AccountantError::InvalidParameter {
            name: "delta",
            reason: format!("the releases' deltas sum to {} > {delta}", sum.delta),
        })
    }
}

fn rdp_total(releases: &[&Release], delta: f64) -> Result<f64> {
    let mut curve = RdpCurve::zero(&default_orders())?;
    for r in releases {
        let own = r
            .rdp
            .as_ref()
            .ok_or_else(|| AccountantError::InvalidParameter {
                name: "rdp",
                reason: format!("release {:?} has no rdp curve", r.id),
            })?;
        curve = curve.compose(own)?;
    }
    Ok(curve.epsilon(delta, Conversion::Improved)?.epsilon)
}

fn exact_total(parts: &[DpGuarantee], delta: f64) -> Result<f64> {
    if parts.is_empty() {
        return Ok(0.0);
    }
    if parts.iter().any(|p| p.delta > 0.0) {
        return Err(AccountantError::InvalidParameter {
            name: "delta",
            reason: "exact composition covers pure-DP releases only".into(),
        });
    }
    let epsilons: Vec<f64> = parts.iter().map(|p| p.epsilon).collect();
    composition::optimal_pure_epsilon_heterogeneous(&epsilons, delta).or_else(|_| {
        // Too many distinct epsilons to enumerate: every release is also
        // eps_max-DP, and the homogeneous optimum at eps_max is valid.
        let eps_max = epsilons.iter().copied().fold(0.0, f64::max);
        composition::optimal_pure_epsilon(eps_max, parts.len() as u64, delta)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pure(id: &str, eps: f64) -> Release {
        Release::pure(id, "d", "laplace_counts", eps, json!({"eps": eps})).unwrap()
    }

    #[test]
    fn no_budget_no_release() {
        let mut l = PrivacyLedger::default();
        assert!(matches!(
            l.record(pure("a", 0.1)),
            Err(AccountantError::NoBudget(_))
        ));
    }

    #[test]
    fn budget_refuses_and_leaves_state_unchanged() {
        let mut l = PrivacyLedger::default();
        l.set_budget("d", Budget::new(1.0, 1e-5).unwrap()).unwrap();
        l.record(pure("a", 0.5)).unwrap();
        l.record(pure("b", 0.5)).unwrap();
        let before = l.clone();
        let err = l.record(pure("c", 0.01)).unwrap_err();
        assert!(
            matches!(err, AccountantError::BudgetExceeded { .. }),
            "{err}"
        );
        assert_eq!(l, before);
        // Idempotent on id; a different release under the same id is refused.
        l.record(pure("a", 0.5)).unwrap();
        assert_eq!(l.releases("d").count(), 2);
        assert!(l.record(pure("a", 0.4)).is_err());
        // Lowering the budget below what is spent is refused.
        assert!(l.set_budget("d", Budget::new(0.5, 1e-5).unwrap()).is_err());
    }

    /// Many small pure releases: advanced/exact/RDP beat basic, and the ledger
    /// admits more than basic composition would.
    #[test]
    fn tightest_method_is_used() {
        let mut l = PrivacyLedger::default();
        l.set_budget("d", Budget::new(2.0, 1e-5).unwrap()).unwrap();
        let mut n = 0;
        while l.record(pure(&format!("r{n}"), 0.1)).is_ok() {
            n += 1;
        }
        assert!(n > 20, "basic composition alone would admit 20, got {n}");
        let spent = l.spent("d", 1e-5).unwrap();
        assert!(spent.epsilon.unwrap() <= 2.0);
        assert_ne!(spent.tightest, Some(Method::Basic));
        let basic = spent
            .methods
            .iter()
            .find(|m| m.method == Method::Basic)
            .unwrap();
        assert!((basic.epsilon.unwrap() - 0.1 * n as f64).abs() < 1e-9);
    }

    #[test]
    fn dp_sgd_and_counts_compose_by_rdp() {
        let mut l = PrivacyLedger::default();
        l.set_budget("d", Budget::new(2.0, 1e-5).unwrap()).unwrap();
        let mech = SubsampledGaussian::new(1.1, 0.01).unwrap();
        let run = Release::subsampled_gaussian("sgd", "d", "dp_sgd", mech, 1000, 1e-5, json!({}))
            .unwrap();
        // Opacus: 1.7117700912203435 for these parameters.
        assert!((run.guarantee.epsilon / 1.7117700912203435 - 1.0).abs() < 1e-6);
        l.record(run).unwrap();
        let counts = pure("counts", 0.1);
        let spent = l.check(&counts).unwrap();
        assert_eq!(spent.tightest, Some(Method::Rdp));
        // An approximate-DP release without a curve: RDP no longer applies, and the
        // run's delta already uses the whole budget delta, so nothing applies.
        let approx = Release::approximate("x", "d", "gaussian", 0.1, 1e-6, json!({})).unwrap();
        let err = l.check(&approx).unwrap_err();
        assert!(
            matches!(err, AccountantError::BudgetExceeded { .. }),
            "{err}"
        );
        let releases: Vec<&Release> = l.releases("d").chain([&approx]).collect();
        let spent = totals("d", &releases, 1e-4);
        let rdp = spent
            .methods
            .iter()
            .find(|m| m.method == Method::Rdp)
            .unwrap();
        assert!(rdp.epsilon.is_none());
        assert_eq!(spent.tightest, Some(Method::Basic));
        let json = serde_json::to_string(&l).unwrap();
        assert_eq!(serde_json::from_str::<PrivacyLedger>(&json).unwrap(), l);
    }
}
