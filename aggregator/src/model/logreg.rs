//! Logistic regression: the model every logistic pipeline (non-private, DP-SGD,
//! LDP-SGD) produces, its gradient, and non-private training.
//!
//! The model is `P(>50K | x) = sigmoid(w . x)` over a [`FeatureSpec`] encoding whose
//! last coordinate is the constant intercept feature.
//!
//! # Non-private training
//! Mini-batch SGD on the mean logistic loss with a small L2 penalty, a learning rate
//! decaying as `lr / sqrt(1 + epoch)`, and the shuffle drawn from a seeded
//! generator (so a seed fixes the model). Defaults chosen on the tuning split (see
//! [`super`]): batch 64, lr 0.5, 20 epochs, L2 1e-5 (batch 32/128, lr 0.1/1.0 and
//! 10/40 epochs were within 0.002 of each other).

use ldp_sdk::LdpRng;
use rand::RngExt;

use super::features::{Encoded, FeatureSpec};
use super::{Classifier, ModelError};
use crate::dataset::adult::Record;

/// A logistic regression model over a feature encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct LogisticModel {
    /// The encoding the weights refer to.
    pub spec: FeatureSpec,
    /// One weight per coordinate of `spec`, the intercept last.
    pub weights: Vec<f64>,
}

/// The logistic function.
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

impl LogisticModel {
    /// All-zero weights.
    pub fn zeros(spec: FeatureSpec) -> Self {
        let weights = vec![0.0; spec.dim()];
        Self { spec, weights }
    }

    /// `w . x` for an encoded row.
    pub fn margin(&self, x: &[f64]) -> f64 {
        self.weights.iter().zip(x).map(|(w, v)| w * v).sum()
    }

    /// Writes the gradient of the logistic loss at one example into `out`:
    /// `(sigmoid(w . x) - y) x`. With `x` in [0, 1]^d every coordinate is in [-1, 1].
    pub fn gradient_into(&self, x: &[f64], y: bool, out: &mut [f64]) {
        let r = sigmoid(self.margin(x)) - f64::from(u8::from(y));
        for (o, v) in out.iter_mut().zip(x) {
            *o = r * v;
        }
    }

    /// Accuracy on an encoded data set.
    pub fn accuracy_encoded(&self, data: &Encoded) -> f64 {
        if data.is_empty() {
            return 0.0;
        }
        let right = (0..data.len())
            .filter(|&i| (self.margin(data.row(i)) > 0.0) == data.y[i])
            .count();
        right as f64 / data.len() as f64
    }
}

impl Classifier for LogisticModel {
    fn predict(&self, record: &Record) -> bool {
        self.margin(&self.spec.encode(record)) > 0.0
    }
}

/// Hyperparameters of non-private training.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Examples per step.
    pub batch: usize,
    /// Initial learning rate.
    pub lr: f64,
    /// Passes over the data.
    pub epochs: usize,
    /// L2 penalty on the non-intercept weights.
    pub l2: f64,
}

impl Default for Params {
    /// The values chosen on the tuning split (see the module docs).
    fn default() -> Self {
        Self {
            batch: 64,
            lr: 0.5,
            epochs: 20,
            l2: 1e-5,
        }
    }
}

/// Non-private mini-batch SGD. Deterministic given `seed` (the shuffles come from
/// a simulation generator; nothing private depends on them).
pub fn train(
    spec: FeatureSpec,
    train: &[Record],
    params: Params,
    seed: u64,
) -> Result<LogisticModel, ModelError> {
    if train.is_empty() {
        return Err(ModelError::EmptyData);
    }
    if params.batch == 0 || !(params.lr > 0.0 && params.lr.is_finite()) {
        return Err(ModelError::InvalidParameter {
            name: "params",
            reason: format!("{params:?}: batch and lr must be positive"),
        });
    }
    let data = spec.encode_all(train);
    let mut model = LogisticModel::zeros(spec);
    let d = data.dim;
    let mut rng = LdpRng::seeded_for_simulation(seed);
    let mut order: Vec<usize> = (0..data.len()).collect();
    let mut grad = vec![0.0; d];
    let mut sum = vec![0.0; d];
    for epoch in 0..params.epochs {
        shuffle(&mut order, &mut rng);
        let lr = params.lr / ((1 + epoch) as f64).sqrt();
        for chunk in order.chunks(params.batch) {
            sum.iter_mut().for_each(|s| *s = 0.0);
            for &i in chunk {
                model.gradient_into(data.row(i), data.y[i], &mut grad);
                sum.iter_mut().zip(&grad).for_each(|(s, g)| *s += g);
            }
            let scale = lr / chunk.len() as f64;
            for (j, (w, s)) in model.weights.iter_mut().zip(&sum).enumerate() {
                let penalty = if j + 1 < d { params.l2 * *w } else { 0.0 };
                *w -= scale * s + lr * penalty;
            }
        }
    }
    Ok(model)
}

/// Fisher-Yates shuffle with unbiased integer draws.
pub(crate) fn shuffle<T>(items: &mut [T], rng: &mut LdpRng) {
    for i in (1..items.len()).rev() {
        let j = rng.random_range(0..=i);
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::adult;

    #[test]
    fn gradient_coordinates_are_bounded_by_one() {
        let spec = FeatureSpec::full();
        let mut model = LogisticModel::zeros(spec.clone());
        model
            .weights
            .iter_mut()
            .enumerate()
            .for_each(|(i, w)| *w = (i as f64).sin() * 50.0);
        let root = adult::repo_root();
        let train = adult::load(&adult::train_path(&root)).unwrap();
        let mut g = vec![0.0; spec.dim()];
        for r in &train[..2000] {
            model.gradient_into(&spec.encode(r), r.high_income(), &mut g);
            assert!(g.iter().all(|v| v.abs() <= 1.0));
        }
    }

    #[test]
    fn same_seed_same_model() {
        let root = adult::repo_root();
        let train = adult::load(&adult::train_path(&root)).unwrap();
        let params = Params {
            epochs: 2,
            ..Params::default()
        };
        let a = super::train(FeatureSpec::compact(), &train[..3000], params, 7).unwrap();
        let b = super::train(FeatureSpec::compact(), &train[..3000], params, 7).unwrap();
        assert_eq!(a, b);
    }
}
