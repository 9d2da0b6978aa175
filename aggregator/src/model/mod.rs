//! Simple models on the Adult data set, trained three ways, so that users can see
//! what local differential privacy costs them:
//!
//! - **none**: non-private logistic regression and Naive Bayes, plus the
//!   majority-class baseline ([`baseline`]);
//! - **central (trusted curator)**: a curator holds the raw records and releases a
//!   model with central DP: Naive Bayes from discrete-Laplace-noised counts
//!   ([`nb::train_central`]) and logistic regression by DP-SGD with an RDP
//!   accountant ([`dpsgd`]);
//! - **local**: no one sees a raw record. Naive Bayes from frequency-oracle reports
//!   of (attribute value, income class) pairs ([`nb::train_local`]) and logistic
//!   regression by LDP-SGD over rounds ([`ldpsgd`]).
//!
//! Every private pipeline preprocesses with the public category lists and bounds of
//! [`crate::dataset::adult`] ([`features`]), never with anything computed from the
//! data. Every trained model comes with the privacy it [`Spent`].
//!
//! # Hyperparameter tuning
//! All hyperparameters (learning rates, epochs, rounds, the attribute and feature
//! subsets of the local models) were chosen on a split of the **training** file
//! (first 80% of `adult.data.csv` to train, last 20% to validate; see
//! [`tuning_split`]); the test file was used only for the final accuracies. The
//! chosen values and the alternatives tried are listed in each pipeline's docs
//! ([`logreg`], [`dpsgd`], [`nb`], [`ldpsgd::Params::for_epsilon`]).
//!
//! # Measured (test file, mean of seeds 1-5)
//! | model | none | central, eps 1 | local, eps 1 | local, eps 4 |
//! |---|---|---|---|---|
//! | majority class | 0.764 | | | |
//! | logistic regression | 0.852 | 0.852 (DP-SGD, delta 1e-5) | 0.794 (LDP-SGD) | 0.834 |
//! | Naive Bayes | 0.820 | 0.819 | 0.816 (sampled) / 0.806 (split) | 0.839 / 0.833 |
//!
//! LDP-SGD at epsilon 1 ranges over 0.778 to 0.801 across seeds; at epsilon 0.5
//! it averages 0.760, at the majority class.

pub mod baseline;
pub mod demo;
pub mod dpsgd;
pub mod features;
pub mod grpc;
pub mod kmeans;
pub mod ldpsgd;
pub mod logreg;
pub mod nb;
pub mod noise;

use crate::dataset::adult::Record;

/// Where the privacy protection sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PrivacyModel {
    /// No protection: trained on raw records, released as is.
    None,
    /// Central DP: a trusted curator sees raw records and releases a noisy model.
    Central,
    /// Local DP: every record is randomized on its device before it leaves it.
    Local,
}

impl PrivacyModel {
    /// The label used in tables, reports and the gRPC `Guarantee.model` field.
    pub fn label(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Central => "central (trusted curator)",
            Self::Local => "local",
        }
    }
}

/// The privacy a trained model actually cost: (epsilon, delta) under its model.
///
/// For local models, `epsilon` bounds the privacy loss of each device over all its
/// reports (basic composition over the rounds it joined), and `delta` is 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spent {
    /// Where the protection sits.
    pub model: PrivacyModel,
    /// Epsilon spent (infinite for [`PrivacyModel::None`]).
    pub epsilon: f64,
    /// Delta spent (0 for pure-DP mechanisms, 1 for [`PrivacyModel::None`]).
    pub delta: f64,
}

impl Spent {
    /// No privacy at all.
    pub const NONE: Spent = Spent {
        model: PrivacyModel::None,
        epsilon: f64::INFINITY,
        delta: 1.0,
    };
}

impl Spent {
    /// Delta as text: `0`, scientific notation such as `1e-5`, or
    /// `- (not private)` for [`PrivacyModel::None`].
    pub fn delta_text(&self) -> String {
        if self.model == PrivacyModel::None {
            "- (not private)".into()
        } else if self.delta == 0.0 {
            "0".into()
        } else {
            format!("{:e}", self.delta)
        }
    }
}

/// Errors of model training.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A hyperparameter or privacy parameter is out of range.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter {
        /// The parameter.
        name: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// No training records.
    #[error("no training records")]
    EmptyData,
    /// A local randomizer or estimator failed.
    #[error("local mechanism: {0}")]
    Mechanism(#[from] ldp_sdk::Error),
    /// The privacy accountant failed.
    #[error("accountant: {0}")]
    Accountant(String),
    /// A data set could not be loaded.
    #[error("data set: {0}")]
    Dataset(#[from] crate::dataset::DatasetError),
    /// The round transport (gRPC or in-process) failed.
    #[error("round transport: {0}")]
    Transport(String),
}

/// A binary classifier of income (`true` = `>50K`).
pub trait Classifier {
    /// Predicted income class of `record` (its own label is never read).
    fn predict(&self, record: &Record) -> bool;

    /// Fraction of `data` whose label equals the prediction (0 for empty data).
    fn accuracy(&self, data: &[Record]) -> f64 {
        if data.is_empty() {
            return 0.0;
        }
        let right = data
            .iter()
            .filter(|r| self.predict(r) == r.high_income())
            .count();
        right as f64 / data.len() as f64
    }
}

/// The tuning split of the training file: the first 80% of the records to train,
/// the rest to validate. Hyperparameters are chosen on it, never on the test file.
pub fn tuning_split(train: &[Record]) -> (&[Record], &[Record]) {
    train.split_at(train.len() * 4 / 5)
}

/// Validates a privacy budget (finite, > 0).
pub(crate) fn check_epsilon(epsilon: f64) -> Result<ldp_sdk::Epsilon, ModelError> {
    ldp_sdk::Epsilon::new(epsilon).map_err(|_| ModelError::InvalidParameter {
        name: "epsilon",
        reason: format!("{epsilon} must be finite and > 0"),
    })
}
