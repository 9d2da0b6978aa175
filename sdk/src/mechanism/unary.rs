//! Unary encoding: SUE (symmetric, the basic one-time RAPPOR) and OUE (optimized).
//!
//! The device holds v in `[0, d)` and reports d bits: bit v is set with
//! probability p, every other bit independently with probability q.
//! - SUE: p = e^(eps/2) / (e^(eps/2) + 1), q = 1 / (e^(eps/2) + 1) = 1 - p.
//! - OUE: p = 1/2, q = 1 / (e^eps + 1).
//!
//! Reports are [`crate::mechanism::Report::Bits`]: ceil(d/8) bytes, bit i in
//! byte i/8 at position i%8 (least significant bit first). Padding bits above d
//! are zero; [`Unary::validate`] rejects reports where they are not.
//!
//! Encoding draws no random number per bit: the q-coins come from
//! [`sampling::bernoulli_words`] (bit-sliced lazy comparison of 64-bit uniform
//! integers against the threshold, with undecided lanes pooled across words:
//! about 5 random words per 64 bits), then bit v is overwritten by its own p-coin. Every bit is therefore an exact, independent
//! coin with probability `T / 2^64` for its threshold T.
//!
//! # Privacy
//! For two inputs v, v' the ratio of the probabilities of any bit vector is at
//! most p(1-q) / ((1-p) q) = e^eps (both variants): epsilon-LDP per report;
//! nothing is memoized (unlike full RAPPOR). Implemented probabilities: p is
//! `floor(p 2^64) / 2^64` and q is `ceil(q 2^64) / 2^64`, which can only lower
//! the ratio; [`Unary::p`] and [`Unary::q`] return them.
//!
//! # Utility
//! Per-bit counts C_i give c_i = (C_i - n q) / (p - q), unbiased, with
//! Var = n q(1-q)/(p-q)^2 + c_i (1-p-q)/(p-q). Per-user leading terms:
//! SUE e^(eps/2) / (e^(eps/2) - 1)^2, OUE 4 e^eps / (e^eps - 1)^2.
//!
//! Citation: Erlingsson, Pihur, Korolova 2014 (RAPPOR); Wang, Blocki, Li, Jha
//! 2017 ("Locally differentially private protocols for frequency estimation").

use crate::estimate::{Estimate, Stats};
use crate::mechanism::limits::{check_domain_size, check_epsilon, out_of_domain};
use crate::mechanism::{oracle, pure_oracle_variance, sampling};
use crate::{Epsilon, Error, LdpRng, Result};

/// Which unary encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryKind {
    /// Symmetric unary encoding (basic one-time RAPPOR).
    Symmetric,
    /// Optimized unary encoding.
    Optimized,
}

/// SUE or OUE over `[0, d)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Unary {
    kind: UnaryKind,
    d: u32,
    epsilon: Epsilon,
    keep: u64,
    flip: u64,
    p: f64,
    q: f64,
}

impl Unary {
    /// Validates d and epsilon and derives p and q.
    pub fn new(kind: UnaryKind, d: u32, epsilon: Epsilon) -> Result<Self> {
        check_domain_size(d)?;
        check_epsilon(epsilon)?;
        let (p, q) = match kind {
            UnaryKind::Symmetric => {
                let h = (epsilon.get() / 2.0).exp();
                (h / (h + 1.0), 1.0 / (h + 1.0))
            }
            UnaryKind::Optimized => (0.5, 1.0 / (epsilon.exp() + 1.0)),
        };
        let keep = sampling::threshold_down(p);
        let flip = sampling::threshold_up(q);
        Ok(Self {
            kind,
            d,
            epsilon,
            keep,
            flip,
            p: sampling::threshold_probability(keep),
            q: sampling::threshold_probability(flip),
        })
    }

    /// SUE or OUE.
    pub fn kind(&self) -> UnaryKind {
        self.kind
    }

    /// Epsilon per report.
    pub fn epsilon(&self) -> Epsilon {
        self.epsilon
    }

    /// Domain size d.
    pub fn domain_size(&self) -> u32 {
        self.d
    }

    /// P(bit v set | value v), as implemented.
    pub fn p(&self) -> f64 {
        self.p
    }

    /// P(bit u set | value v != u), as implemented.
    pub fn q(&self) -> f64 {
        self.q
    }

    /// Length of a report in bytes: ceil(d / 8).
    pub fn report_len(&self) -> usize {
        (self.d as usize).div_ceil(8)
    }

    /// Randomizes `value` into ceil(d/8) bytes, LSB first, zero padding.
    pub fn encode(&self, value: u32, rng: &mut LdpRng) -> Result<Vec<u8>> {
        if value >= self.d {
            return Err(out_of_domain(value, self.d));
        }
        let len = self.report_len();
        let mut words = vec![0u64; len.div_ceil(8)];
        sampling::bernoulli_words(rng, self.flip, &mut words);
        let mut bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        bytes.truncate(len);
        let pad = self.d % 8;
        if pad != 0 {
            bytes[len - 1] &= (1u8 << pad) - 1;
        }
        let (byte, bit) = ((value / 8) as usize, value % 8);
        if sampling::coin(rng, self.keep) {
            bytes[byte] |= 1 << bit;
        } else {
            bytes[byte] &= !(1 << bit);
        }
        Ok(bytes)
    }

    /// Checks the length and that padding bits are zero.
    pub fn validate(&self, bits: &[u8]) -> Result<()> {
        if bits.len() != self.report_len() {
            return Err(Error::InvalidReport(format!(
                "{} bytes, expected {} for d = {}",
                bits.len(),
                self.report_len(),
                self.d
            )));
        }
        let pad = self.d % 8;
        if pad != 0 && bits[bits.len() - 1] >> pad != 0 {
            return Err(Error::InvalidReport("nonzero padding bits".into()));
        }
        Ok(())
    }

    /// Calls `add(i)` for every set bit i of a validated report (its counters).
    pub(crate) fn for_each_cell(&self, bits: &[u8], mut add: impl FnMut(usize)) {
        for (i, &byte) in bits.iter().enumerate() {
            let mut b = byte;
            while b != 0 {
                add(i * 8 + b.trailing_zeros() as usize);
                b &= b - 1;
            }
        }
    }

    /// Exact variance of the count estimate of a value with true count `count`.
    pub fn count_variance(&self, n: f64, count: f64) -> f64 {
        pure_oracle_variance(n, count, self.p, self.q)
    }

    /// Unbiased count estimates from per-bit counts.
    pub fn estimate(&self, stats: &Stats) -> Vec<Estimate> {
        oracle::estimates(
            stats.counts.iter().map(|&c| c as f64),
            stats.reports as f64,
            self.p,
            self.q,
        )
    }
}
