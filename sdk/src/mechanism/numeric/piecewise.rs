//! Wang et al.'s Piecewise mechanism, sampled on a fixed grid.
//!
//! With t in [-1, 1], h = e^(eps/2), C = (h + 1) / (h - 1),
//! l(t) = (C + 1) t / 2 - (C - 1) / 2 and r(t) = l(t) + C - 1, the continuous
//! mechanism outputs a uniform point of [l(t), r(t)] with probability h / (h + 1)
//! and a uniform point of [-C, l(t)) U (r(t), C] otherwise.
//!
//! # Fixed-grid sampling
//! A float output computed from t (e.g. `l + (r - l) u`) would leak t through
//! its low-order bits. Instead the output range [-C, C] is cut into 2^52 equal
//! sub-cells; l(t) is rounded to a sub-cell boundary L and the high interval is
//! the W = round(2^52 (C - 1) / (2C)) sub-cells from L (W does not depend on
//! t). A sub-cell is drawn exactly with integer arithmetic (a threshold coin for
//! high/low, then a uniform integer), and the report is the midpoint of its
//! *cell*, one of 2^20 equal cells of [-C, C] (a fixed set of outputs).
//!
//! # Privacy
//! Every sub-cell has probability P_h / W (high) or (1 - P_h) / (2^52 - W)
//! (low); P_h is set so that their ratio is e^eps exactly up to the 2^-64
//! threshold rounding (rounded down), and a cell's probability is a sum of
//! sub-cell probabilities, so any two inputs give every output probabilities
//! within e^eps: epsilon-LDP per report, nothing memoized.
//!
//! # Utility
//! Unbiased up to the grid rounding: reporting cell midpoints biases only the
//! two cells cut by l(t) and r(t), by at most w^2 / (C - 1) <= 4C / 2^40 on the
//! [-1, 1] scale (3e-11 at eps = 0.5). Per report, on
//! the [-1, 1] scale, Var = t^2 / (h - 1) + (h + 3) / (3 (h - 1)^2), plus at most
//! w^2 / 12 for the cell width w = 2C / 2^20.
//!
//! Citation: Wang, Xiao, Yang, Zhao, Hu, Shin, Yu 2019 ("Collecting and
//! analyzing multidimensional data with local differential privacy", ICDE).

use crate::estimate::{Estimate, Stats};
use crate::mechanism::limits::check_epsilon;
use crate::mechanism::numeric::{Range, mean_estimate};
use crate::mechanism::sampling;
use crate::{Epsilon, Error, LdpRng, Result};

const SUB_CELLS_LOG2: u32 = 52;
const CELLS_LOG2: u32 = 20;
const SUB_CELLS: u64 = 1 << SUB_CELLS_LOG2;

/// The Piecewise mechanism on [lo, hi].
#[derive(Debug, Clone, PartialEq)]
pub struct Piecewise {
    range: Range,
    epsilon: Epsilon,
    c: f64,
    h: f64,
    width: u64,
    high: u64,
}

impl Piecewise {
    /// Validates the range and epsilon.
    pub fn new(lo: f64, hi: f64, epsilon: Epsilon) -> Result<Self> {
        let range = Range::new(lo, hi)?;
        check_epsilon(epsilon)?;
        let h = (epsilon.get() / 2.0).exp();
        let c = (h + 1.0) / (h - 1.0);
        let width =
            ((SUB_CELLS as f64 * (c - 1.0) / (2.0 * c)).round() as u64).clamp(1, SUB_CELLS - 1);
        let rho = epsilon.exp() * width as f64 / (SUB_CELLS - width) as f64;
        Ok(Self {
            range,
            epsilon,
            c,
            h,
            width,
            high: sampling::threshold_down(rho / (1.0 + rho)),
        })
    }

    /// Epsilon per report.
    pub fn epsilon(&self) -> Epsilon {
        self.epsilon
    }

    /// The declared range.
    pub fn range(&self) -> Range {
        self.range
    }

    /// C = (e^(eps/2) + 1) / (e^(eps/2) - 1): outputs lie in [-C, C] (unit scale).
    pub fn c(&self) -> f64 {
        self.c
    }

    /// Randomizes t in [-1, 1]; the output is a cell midpoint on the unit scale.
    pub(crate) fn encode_unit(&self, t: f64, rng: &mut LdpRng) -> f64 {
        let l = (self.c + 1.0) / 2.0 * t - (self.c - 1.0) / 2.0;
        let start = (((l + self.c) / (2.0 * self.c) * SUB_CELLS as f64).round() as u64)
            .min(SUB_CELLS - self.width);
        let sub = if sampling::coin(rng, self.high) {
            start + sampling::uniform_below(rng, self.width)
        } else {
            let v = sampling::uniform_below(rng, SUB_CELLS - self.width);
            if v < start { v } else { v + self.width }
        };
        let cell = sub >> (SUB_CELLS_LOG2 - CELLS_LOG2);
        let cell_width = 2.0 * self.c / f64::from(1u32 << CELLS_LOG2);
        -self.c + (cell as f64 + 0.5) * cell_width
    }

    /// Randomizes `x` in [lo, hi]; the report is on the metric's scale.
    pub fn encode(&self, x: f64, rng: &mut LdpRng) -> Result<f64> {
        let t = self.range.to_unit(x)?;
        Ok(self.range.from_unit(self.encode_unit(t, rng)))
    }

    /// Checks that `value` is finite and within the output range.
    pub fn validate(&self, value: f64) -> Result<()> {
        let y = self.range.unit_of(value);
        if value.is_finite() && y.abs() <= self.c * (1.0 + 1e-9) {
            Ok(())
        } else {
            Err(Error::InvalidReport(format!(
                "{value} outside the Piecewise output range"
            )))
        }
    }

    /// Per-report variance on the unit scale at t.
    pub(crate) fn unit_variance(&self, t: f64) -> f64 {
        let h = self.h;
        t * t / (h - 1.0) + (h + 3.0) / (3.0 * (h - 1.0).powi(2))
    }

    /// Per-report variance on the metric's scale at the true value `x`.
    pub fn variance(&self, x: f64) -> Result<f64> {
        let t = self.range.to_unit(x)?;
        Ok(self.range.half().powi(2) * self.unit_variance(t))
    }

    /// Mean estimate from sum and sum of squares.
    pub fn estimate_mean(&self, stats: &Stats) -> Result<Estimate> {
        mean_estimate(stats, self.range.half().powi(2) * self.unit_variance(1.0))
    }
}
