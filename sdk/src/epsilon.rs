//! The privacy parameter as a validated type.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A privacy-loss parameter epsilon: finite and strictly positive.
///
/// Every mechanism takes an `Epsilon`, never a loose `f64`, so an invalid value
/// is rejected once, at construction.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Epsilon(f64);

impl Epsilon {
    /// Validates `eps`: rejects NaN, infinities, zero and negative values.
    pub fn new(eps: f64) -> Result<Self> {
        if eps.is_finite() && eps > 0.0 {
            Ok(Self(eps))
        } else {
            Err(Error::InvalidEpsilon(eps))
        }
    }

    /// The value in nats.
    pub fn get(self) -> f64 {
        self.0
    }

    /// `e^epsilon`.
    pub fn exp(self) -> f64 {
        self.0.exp()
    }
}

impl TryFrom<f64> for Epsilon {
    type Error = Error;
    fn try_from(eps: f64) -> Result<Self> {
        Self::new(eps)
    }
}

impl From<Epsilon> for f64 {
    fn from(eps: Epsilon) -> f64 {
        eps.0
    }
}

impl std::fmt::Display for Epsilon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}
