//! The privacy-budget RPCs: `Analytics.Budget` (what each data set has spent)
//! and `Admin.SetDatasetBudget` / `Admin.SetDeviceBudget` / `Admin.RecordRelease`. The handlers in
//! [`analytics`](super::analytics) and [`admin`](super::admin) delegate here.
//!
//! Spend comes from the stored [`PrivacyLedger`]: every composition method's
//! total, the tightest valid one, and the releases. A refused budget change is
//! `FAILED_PRECONDITION` and changes nothing. Data set names and release ids
//! must be 1 to [`MAX_NAME_BYTES`] bytes without control characters, else
//! `INVALID_ARGUMENT`, on either store.

use ldp_proto::v1 as pb;
use ldp_sdk::budget::BudgetPolicy;

use super::State;
use crate::accountant::AccountantError;
use crate::accountant::ledger::{Budget, Method, PrivacyLedger, Release, Spent};
use crate::accountant::rdp::SubsampledGaussian;
use crate::error::ServiceError;
use crate::ingest::unix_now;

/// Delta at which the spend of a data set without a budget is reported.
pub const DEFAULT_SPENT_DELTA: f64 = 1e-5;

/// Longest accepted data set name or release id, in bytes.
pub const MAX_NAME_BYTES: usize = 256;

/// Checks an Admin-supplied data set name or release id: not empty, at most
/// [`MAX_NAME_BYTES`] bytes, no control characters (NUL included). Both are
/// stored as text, and PostgreSQL's `TEXT` refuses NUL: without this check
/// SQLite stored what PostgreSQL failed on with INTERNAL.
fn check_name(what: &str, value: &str) -> Result<(), ServiceError> {
    if value.is_empty() {
        return Err(ServiceError::InvalidArgument(format!("{what} is empty")));
    }
    if value.len() > MAX_NAME_BYTES {
        return Err(ServiceError::InvalidArgument(format!(
            "{what} is {} bytes long, at most {MAX_NAME_BYTES} are allowed",
            value.len()
        )));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(ServiceError::InvalidArgument(format!(
            "{what} {value:?} contains the control character {c:?}"
        )));
    }
    Ok(())
}

/// The accountant's refusals as service errors: a budget that is missing or
/// too small is `FAILED_PRECONDITION`; anything else is a bad argument.
pub fn accountant_error(err: AccountantError) -> ServiceError {
    match err {
        AccountantError::NoBudget(_) | AccountantError::BudgetExceeded { .. } => {
            ServiceError::FailedPrecondition(err.to_string())
        }
        other => ServiceError::InvalidArgument(other.to_string()),
    }
}

/// `Analytics.Budget`: one entry per data set (or the requested one).
pub async fn budget(
    state: &State,
    request: pb::BudgetRequest,
) -> Result<pb::BudgetResponse, ServiceError> {
    let ledger = state.store.load_ledger().await?;
    let names = match request.dataset.as_str() {
        "" => ledger.datasets(),
        one if ledger.datasets().iter().any(|d| d == one) => vec![one.to_owned()],
        unknown => {
            return Err(ServiceError::NotFound(format!(
                "data set {unknown:?} has no budget and no release"
            )));
        }
    };
    let datasets = names
        .iter()
        .map(|name| dataset_budget(&ledger, name))
        .collect::<Result<_, _>>()?;
    Ok(pb::BudgetResponse { datasets })
}

/// `Admin.SetDatasetBudget`.
pub async fn set_dataset_budget(
    state: &State,
    request: pb::SetDatasetBudgetRequest,
) -> Result<pb::DatasetBudget, ServiceError> {
    check_name("dataset", &request.dataset)?;
    let budget = Budget::new(request.epsilon, request.delta).map_err(accountant_error)?;
    state
        .store
        .set_dataset_budget(&request.dataset, budget, unix_now())
        .await?
        .map_err(accountant_error)?;
    tracing::info!(
        dataset = %request.dataset,
        epsilon = budget.epsilon,
        delta = budget.delta,
        "data set budget set"
    );
    let ledger = state.store.load_ledger().await?;
    dataset_budget(&ledger, &request.dataset)
}

/// `Admin.SetDeviceBudget`: the metric must exist.
pub async fn set_device_budget(
    state: &State,
    request: pb::SetDeviceBudgetRequest,
) -> Result<pb::SetDeviceBudgetResponse, ServiceError> {
    let metric = state.registry.by_name(&request.metric, 0)?;
    let policy = BudgetPolicy::new(
        request.window_epsilon,
        request.window_seconds,
        request.lifetime_epsilon,
    )?;
    state
        .store
        .set_device_budget(&metric.spec.name, policy, unix_now())
        .await?;
    state.registry.set_device_budget(&metric.spec.name, policy);
    tracing::info!(metric = %metric.spec.name, ?policy, "device budget set");
    Ok(pb::SetDeviceBudgetResponse {})
}

/// Records a central release (a model trained through the server, noisy
/// counts): the hook for code that releases on a data set the server holds.
/// Refused with `FAILED_PRECONDITION` if it does not fit the budget.
pub async fn record_release(state: &State, release: &Release) -> Result<Spent, ServiceError> {
    let spent = state
        .store
        .record_release(release, unix_now())
        .await?
        .map_err(accountant_error)?;
    tracing::info!(
        release = %release.id,
        dataset = %release.dataset,
        epsilon = release.guarantee.epsilon,
        delta = release.guarantee.delta,
        "central release recorded"
    );
    Ok(spent)
}

/// `Admin.RecordRelease`: the release's guarantee is computed here from its
/// accounting parameters, never taken from the caller.
pub async fn record_release_rpc(
    state: &State,
    request: pb::RecordReleaseRequest,
) -> Result<pb::DatasetBudget, ServiceError> {
    let release = release_from_proto(request)?;
    record_release(state, &release).await?;
    let ledger = state.store.load_ledger().await?;
    dataset_budget(&ledger, &release.dataset)
}

/// Builds and validates a [`Release`] from its wire form.
pub fn release_from_proto(r: pb::RecordReleaseRequest) -> Result<Release, ServiceError> {
    use pb::record_release_request::Accounting;
    if r.id.is_empty() || r.dataset.is_empty() || r.mechanism.is_empty() {
        return Err(ServiceError::InvalidArgument(
            "id, dataset and mechanism must not be empty".into(),
        ));
    }
    check_name("id", &r.id)?;
    check_name("dataset", &r.dataset)?;
    let mut parameters = match r.parameters_json.as_str() {
        "" => serde_json::Value::Object(Default::default()),
        text => serde_json::from_str(text).map_err(|e| {
            ServiceError::InvalidArgument(format!("parameters_json is not JSON: {e}"))
        })?,
    };
    let object = parameters.as_object_mut().ok_or_else(|| {
        ServiceError::InvalidArgument("parameters_json must be a JSON object".into())
    })?;
    let release = match r.accounting {
        Some(Accounting::Pure(p)) => {
            object.insert("epsilon".into(), p.epsilon.into());
            Release::pure(r.id, r.dataset, r.mechanism, p.epsilon, parameters)
        }
        Some(Accounting::SubsampledGaussian(g)) => {
            object.insert("noise_multiplier".into(), g.noise_multiplier.into());
            object.insert("sample_rate".into(), g.sample_rate.into());
            object.insert("steps".into(), g.steps.into());
            object.insert("delta".into(), g.delta.into());
            let mech = SubsampledGaussian::new(g.noise_multiplier, g.sample_rate)
                .map_err(accountant_error)?;
            Release::subsampled_gaussian(
                r.id,
                r.dataset,
                r.mechanism,
                mech,
                g.steps,
                g.delta,
                parameters,
            )
        }
        None => {
            return Err(ServiceError::InvalidArgument(
                "accounting (pure or subsampled_gaussian) is missing".into(),
            ));
        }
    };
    release.map_err(accountant_error)
}

/// The wire form of one data set's budget, spend and releases.
pub fn dataset_budget(
    ledger: &PrivacyLedger,
    name: &str,
) -> Result<pb::DatasetBudget, ServiceError> {
    let budget = ledger.budget(name);
    let delta = budget.map_or(DEFAULT_SPENT_DELTA, |b| b.delta);
    let spent = ledger.spent(name, delta).map_err(accountant_error)?;
    let totals = spent
        .methods
        .iter()
        .map(|m| pb::CompositionTotal {
            method: method_name(m.method).into(),
            applicable: m.epsilon.is_some(),
            epsilon: m.epsilon.unwrap_or(0.0),
            not_applicable_reason: m.not_applicable.clone().unwrap_or_default(),
        })
        .collect();
    let releases = ledger
        .releases(name)
        .map(|r| pb::CentralRelease {
            id: r.id.clone(),
            mechanism: r.mechanism.clone(),
            parameters_json: r.parameters.to_string(),
            epsilon: r.guarantee.epsilon,
            delta: r.guarantee.delta,
            has_rdp_curve: r.rdp.is_some(),
        })
        .collect();
    Ok(pb::DatasetBudget {
        dataset: name.to_owned(),
        has_budget: budget.is_some(),
        budget_epsilon: budget.map_or(0.0, |b| b.epsilon),
        budget_delta: budget.map_or(0.0, |b| b.delta),
        spent_delta: spent.delta,
        spent_epsilon: spent.epsilon.unwrap_or(0.0),
        spent_bounded: spent.epsilon.is_some(),
        tightest_method: spent.tightest.map(method_name).unwrap_or_default().into(),
        totals,
        releases,
    })
}

/// The method's name on the wire (its serde name).
pub fn method_name(method: Method) -> &'static str {
    match method {
        Method::Basic => "basic",
        Method::AdvancedDrv => "advanced_drv",
        Method::AdvancedKov => "advanced_kov",
        Method::Rdp => "rdp",
        Method::ExactPure => "exact_pure",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(id: &str, dataset: &str) -> pb::RecordReleaseRequest {
        pb::RecordReleaseRequest {
            id: id.into(),
            dataset: dataset.into(),
            mechanism: "laplace_counts".into(),
            accounting: Some(pb::record_release_request::Accounting::Pure(
                pb::PureRelease { epsilon: 0.5 },
            )),
            ..Default::default()
        }
    }

    /// Regression: a NUL in a data set name or release id was stored by
    /// SQLite but failed on PostgreSQL's `TEXT` as INTERNAL. Such names, and
    /// overlong ones, are INVALID_ARGUMENT before any store sees them.
    #[test]
    fn dataset_names_and_release_ids_are_checked() {
        let longest = "d".repeat(MAX_NAME_BYTES);
        assert!(check_name("dataset", &longest).is_ok());
        assert!(check_name("dataset", "adult census, 2024 (é)").is_ok());
        let too_long = "d".repeat(MAX_NAME_BYTES + 1);
        for bad in [
            "", "a\0b", "tab\tbed", "line\n", "\u{7f}", "\u{85}", &too_long,
        ] {
            let err = check_name("dataset", bad).unwrap_err();
            assert!(
                matches!(err, ServiceError::InvalidArgument(_)),
                "{bad:?}: {err}"
            );
        }
        assert!(release_from_proto(release("r1", "adult")).is_ok());
        for (id, dataset) in [("r\0", "adult"), ("r1", "adu\0lt"), ("r1", &too_long)] {
            let err = release_from_proto(release(id, dataset)).unwrap_err();
            assert!(
                matches!(err, ServiceError::InvalidArgument(_)),
                "{id:?} {dataset:?}: {err}"
            );
        }
    }
}
