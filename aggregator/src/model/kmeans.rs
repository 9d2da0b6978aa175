//! k-means segmentation of Adult devices (stretch goal of issue 7): Lloyd's
//! algorithm on age, hours per week and education-num (centered into [-1, 1]
//! by their public bounds), without privacy, with central DP (trusted curator)
//! and with local DP.
//!
//! All three start from the same public, data-independent centroids (spread on
//! the diagonal of the cube) and run `iterations` Lloyd steps.
//!
//! - Central (DP-Lloyd, Blum, Dwork, McSherry, Nissim 2005 "SuLQ"): per step,
//!   the per-cluster counts and coordinate sums, with every coordinate snapped to
//!   a public grid of `1 / GRID` (integers), get discrete Laplace noise; the
//!   centroid is the noisy sum over the noisy count.
//! - Local: devices are split into one disjoint group per step. A device of the
//!   group finds its nearest published centroid c and randomizes the vector
//!   holding `(x, 1)` in block c and zeros elsewhere (dimension k (d + 1)) with
//!   the SDK's [`MultiDim`] (Piecewise, dimension sampling); the aggregator's
//!   per-coordinate means give, per cluster, the mean of `x 1[c]` and of `1[c]`,
//!   whose ratio is the new centroid.
//!
//! # Privacy
//! - Central: adding or removing one record changes one count by 1 and one
//!   cluster's sums by at most `d GRID` in L1 per step; with `epsilon / (2T)`
//!   for counts and for sums in each of the `T` steps, the release is
//!   epsilon-DP by basic composition (δ = 0).
//! - Local: each device reports in exactly one step, one [`MultiDim`] vector:
//!   epsilon-LDP.
//!
//! # Utility
//! Mean squared distance of test records to their nearest centroid (lower is
//! better), k = 4, 5 steps, epsilon 1: public start 0.426, none 0.156, central
//! 0.152 to 0.161, local 0.297 to 0.383 (seeds 1-5).

use ldp_sdk::LdpRng;
use ldp_sdk::mechanism::multidim::{MultiDim, NumericBase};

use super::features::{Feature, FeatureSpec, Scale};
use super::logreg::shuffle;
use super::noise::DiscreteLaplace;
use super::{ModelError, PrivacyModel, Spent};
use crate::dataset::adult::Record;

/// Grid of the central sums: coordinates are snapped to multiples of 1/GRID.
const GRID: f64 = 64.0;

/// k-means hyperparameters (public).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Number of clusters (>= 2).
    pub k: usize,
    /// Lloyd steps (central, none) or rounds (local).
    pub iterations: usize,
}

impl Default for Params {
    /// 4 segments, 5 steps.
    fn default() -> Self {
        Self {
            k: 4,
            iterations: 5,
        }
    }
}

/// The features clustered: age, hours per week, education-num, in [-1, 1].
pub fn features() -> FeatureSpec {
    FeatureSpec::new(vec![
        Feature::Numeric(0, Scale::Linear),
        Feature::Numeric(1, Scale::Linear),
        Feature::Numeric(2, Scale::Linear),
    ])
    .expect("valid Adult features")
    .centered()
}

/// The points of `records` (the encoding without its intercept).
fn points(records: &[Record]) -> Vec<Vec<f64>> {
    let spec = features();
    records
        .iter()
        .map(|r| {
            let mut x = spec.encode(r);
            x.pop();
            x
        })
        .collect()
}

/// A set of centroids.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeans {
    /// One centroid per cluster, each of length 3.
    pub centroids: Vec<Vec<f64>>,
}

impl KMeans {
    /// The public starting centroids: `k` points evenly spread on the diagonal
    /// from -0.5 to 0.5 in every coordinate (independent of the data).
    pub fn initial(k: usize) -> Self {
        let d = features().dim() - 1;
        let centroids = (0..k)
            .map(|j| vec![-0.5 + j as f64 / (k - 1).max(1) as f64; d])
            .collect();
        Self { centroids }
    }

    /// Index of the centroid nearest to `x` (ties to the lowest index).
    pub fn nearest(&self, x: &[f64]) -> usize {
        let dist = |c: &Vec<f64>| c.iter().zip(x).map(|(a, b)| (a - b) * (a - b)).sum::<f64>();
        (0..self.centroids.len())
            .min_by(|&a, &b| dist(&self.centroids[a]).total_cmp(&dist(&self.centroids[b])))
            .unwrap_or(0)
    }

    /// Mean squared distance of `records` to their nearest centroid.
    pub fn cost(&self, records: &[Record]) -> f64 {
        let pts = points(records);
        let total: f64 = pts
            .iter()
            .map(|x| {
                let c = &self.centroids[self.nearest(x)];
                c.iter().zip(x).map(|(a, b)| (a - b) * (a - b)).sum::<f64>()
            })
            .sum();
        total / pts.len().max(1) as f64
    }
}

fn check(params: Params, records: &[Record]) -> Result<(), ModelError> {
    if records.is_empty() {
        return Err(ModelError::EmptyData);
    }
    if params.k < 2 || params.iterations == 0 || records.len() < params.iterations {
        return Err(ModelError::InvalidParameter {
            name: "kmeans params",
            reason: format!("{params:?} with {} records", records.len()),
        });
    }
    Ok(())
}

/// Non-private Lloyd's algorithm from the public start.
pub fn train_plain(train: &[Record], params: Params) -> Result<KMeans, ModelError> {
    check(params, train)?;
    let pts = points(train);
    let mut model = KMeans::initial(params.k);
    for _ in 0..params.iterations {
        let d = model.centroids[0].len();
        let mut sums = vec![vec![0.0; d]; params.k];
        let mut counts = vec![0.0; params.k];
        for x in &pts {
            let c = model.nearest(x);
            counts[c] += 1.0;
            sums[c].iter_mut().zip(x).for_each(|(s, v)| *s += v);
        }
        for (c, centroid) in model.centroids.iter_mut().enumerate() {
            if counts[c] > 0.0 {
                *centroid = sums[c].iter().map(|s| s / counts[c]).collect();
            }
        }
    }
    Ok(model)
}

/// Central DP Lloyd (trusted curator): discrete Laplace on integer counts and
/// grid-snapped sums, epsilon split evenly over steps and over counts/sums.
pub fn train_central(
    train: &[Record],
    params: Params,
    epsilon: f64,
    rng: &mut LdpRng,
) -> Result<(KMeans, Spent), ModelError> {
    check(params, train)?;
    let per_release = super::check_epsilon(epsilon)?.get() / (2 * params.iterations) as f64;
    let pts = points(train);
    let mut model = KMeans::initial(params.k);
    let d = model.centroids[0].len();
    let count_noise = DiscreteLaplace::for_counts(1, per_release)?;
    let sum_noise = DiscreteLaplace::for_counts((d as f64 * GRID) as u32, per_release)?;
    for _ in 0..params.iterations {
        let mut sums = vec![vec![0i64; d]; params.k];
        let mut counts = vec![0i64; params.k];
        for x in &pts {
            let c = model.nearest(x);
            counts[c] += 1;
            // |round(v GRID)| <= GRID for v in [-1, 1].
            sums[c]
                .iter_mut()
                .zip(x)
                .for_each(|(s, v)| *s += (v * GRID).round() as i64);
        }
        for (c, centroid) in model.centroids.iter_mut().enumerate() {
            let n = counts[c] + count_noise.sample(rng);
            let noisy: Vec<f64> = sums[c]
                .iter()
                .map(|s| (s + sum_noise.sample(rng)) as f64 / GRID)
                .collect();
            if n >= 1 {
                *centroid = noisy
                    .iter()
                    .map(|s| (s / n as f64).clamp(-1.0, 1.0))
                    .collect();
            }
        }
    }
    let spent = Spent {
        model: PrivacyModel::Central,
        epsilon: 2.0
            * params.iterations as f64
            * count_noise
                .epsilon(1)
                .max(sum_noise.epsilon((d as f64 * GRID) as u32)),
        delta: 0.0,
    };
    Ok((model, spent))
}

/// Local DP k-means over rounds (simulated in process with the SDK's
/// randomizers): one disjoint group of devices per round.
pub fn train_local(
    train: &[Record],
    params: Params,
    epsilon: f64,
    rng: &mut LdpRng,
) -> Result<(KMeans, Spent), ModelError> {
    check(params, train)?;
    let eps = super::check_epsilon(epsilon)?;
    let pts = points(train);
    let mut model = KMeans::initial(params.k);
    let d = model.centroids[0].len();
    let width = d + 1;
    let mech = MultiDim::new(NumericBase::Piecewise, (params.k * width) as u32, eps)?;
    let mut order: Vec<usize> = (0..pts.len()).collect();
    shuffle(&mut order, rng);
    for t in 0..params.iterations {
        let group =
            &order[t * order.len() / params.iterations..(t + 1) * order.len() / params.iterations];
        let mut stats = mech.new_stats();
        let mut v = vec![0.0; params.k * width];
        for &i in group {
            let x = &pts[i];
            let c = model.nearest(x);
            v.iter_mut().for_each(|e| *e = 0.0);
            v[c * width..c * width + d].copy_from_slice(x);
            v[c * width + d] = 1.0;
            for (j, report) in mech.encode(&v, rng)? {
                mech.accumulate(&mut stats, j, &report)?;
            }
        }
        let means = mech.estimate_means(&stats)?;
        for (c, centroid) in model.centroids.iter_mut().enumerate() {
            let share = means[c * width + d].map_or(0.0, |e| e.value);
            // Keep the old centroid when the cluster's estimated share is not
            // clearly positive (its ratio would be noise).
            if share > 0.02 {
                *centroid = (0..d)
                    .map(|j| {
                        let m = means[c * width + j].map_or(0.0, |e| e.value);
                        (m / share).clamp(-1.0, 1.0)
                    })
                    .collect();
            }
        }
    }
    let spent = Spent {
        model: PrivacyModel::Local,
        epsilon: eps.get(),
        delta: 0.0,
    };
    Ok((model, spent))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::adult;

    #[test]
    fn kmeans_at_epsilon_1_local_central_and_none() {
        let root = adult::repo_root();
        let train = adult::load(&adult::train_path(&root)).unwrap();
        let test = adult::load(&adult::test_path(&root)).unwrap();
        let p = Params::default();
        let start = KMeans::initial(p.k).cost(&test);
        let plain = train_plain(&train, p).unwrap().cost(&test);
        let mut rng = LdpRng::seeded_for_simulation(1);
        let (central, spent_c) = train_central(&train, p, 1.0, &mut rng).unwrap();
        let (local, spent_l) = train_local(&train, p, 1.0, &mut rng).unwrap();
        let (central, local) = (central.cost(&test), local.cost(&test));
        eprintln!(
            "kmeans cost: start {start:.4} none {plain:.4} central {central:.4} local {local:.4}"
        );
        // Measured: start 0.426, none 0.156; over seeds 1-5 central 0.152-0.161
        // and local 0.297-0.383. Asserted: each model improves on the public
        // start (local's worst seed still by 0.04, 2x its seed-to-seed spread);
        // central DP at n = 32,561 costs almost nothing, local DP a lot.
        assert!(spent_c.epsilon <= 1.0 && spent_l.epsilon == 1.0);
        assert!(plain < start);
        assert!(central < start);
        assert!(local < start);
        let mut rng = LdpRng::seeded_for_simulation(1);
        let (again, _) = train_central(&train, p, 1.0, &mut rng).unwrap();
        assert_eq!(again.cost(&test), central);
    }
}
