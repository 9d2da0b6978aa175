//! RAPPOR: a Bloom filter of the value, a permanent randomized response (PRR)
//! memoized per value, and a fresh instantaneous randomized response (IRR) per
//! report (Erlingsson, Pihur, Korolova, "RAPPOR: Randomized Aggregatable
//! Privacy-Preserving Ordinal Response", CCS 2014).
//!
//! A device holding a string `v`:
//! 1. **Bloom** (public): `d = MD5(uint32_be(cohort) || v)`; for hash i in `0..h`
//!    bit `d[i] mod k` is set. Two hashes may hit the same bit.
//! 2. **PRR** (memoized): the Bloom filter as an integer `B` (bit i is worth 2^i)
//!    keys a pseudo-random byte stream `D = HMAC-SHA256(key, be(B))`; for bit i,
//!    `u_i = D[i] & 1`, `fmask_i = (D[i] >> 1) < ceil(128 f)`, and
//!    `prr_i = fmask_i ? u_i : bloom_i`. The same value always gives the same PRR,
//!    without storing anything but the device secret, so an averaging attack over
//!    many reports learns at most the PRR.
//! 3. **IRR** (fresh per report): `irr_i = 1` with probability `q` if `prr_i = 1`
//!    and `p` if `prr_i = 0`, from [`LdpRng`] with 64-bit integer-threshold coins.
//!
//! Reports are the cohort and the k IRR bits packed least significant bit first.
//!
//! ## Warning: the names p and q
//! This module follows the RAPPOR paper and the reference code:
//! **p = P(IRR bit 1 | PRR bit 0), q = P(IRR bit 1 | PRR bit 1)**. Most later LDP
//! papers (unary encoding, OUE) use the opposite names (p = P(1 | 1)). The combined
//! probabilities are [`RapporParams::prob_one_given_bloom_one`]
//! `q* = q (1 - f/2) + p f/2` and [`RapporParams::prob_one_given_bloom_zero`]
//! `p* = p (1 - f/2) + q f/2`.
//!
//! ## Interoperability with the reference implementation (google/rappor)
//! For `k <= 32` the Bloom hash, the PRR construction (`be(B)` is `uint32_be(B)`),
//! the f quantisation to 1/128 and the bit order are those of the reference
//! Python client, so [`RapporEncoder::reference`] (key = the client secret bytes,
//! cohort given) reproduces its `bloom` and `prr` columns bit for bit.
//!
//! **Extension for k > 32** (documented here; the reference stops at 32 bits):
//! `be(B)` is `B` big-endian in `4 * ceil(k/32)` bytes (for `k <= 32` exactly
//! `uint32_be(B)`), and the byte stream is `D = HMAC(key, be(B)) ||
//! HMAC(key, be(B) || uint32_be(1)) || HMAC(key, be(B) || uint32_be(2)) ...`, so the
//! first 32 bytes are the reference's. `k` is at most [`MAX_BITS`] = 256 (one
//! MD5 byte per hash) and `h` at most [`MAX_HASHES`] = 16 (the MD5 digest length).
//!
//! ## Device secret, cohort and PRR key
//! [`RapporEncoder::new`] derives, from one persistent [`DeviceSecret`] and the
//! metric **name**:
//! - the PRR key `HMAC-SHA256(secret, "ldp/rappor/v1/prr-key\0" || name)`;
//! - the cohort `u64_be(HMAC-SHA256(secret, "ldp/rappor/v1/cohort\0" || name)[0..8]) mod m`
//!   (modulo bias at most m / 2^64).
//!
//! Different metric names therefore get independent PRRs and cohorts (HMAC is a
//! PRF), and a restarted device with the same secret reproduces them exactly. New
//! versions of one metric share the key: an unchanged Bloom filter keeps its PRR.
//!
//! # Privacy
//! With `q* = P(IRR 1 | Bloom 1)` and `p* = P(IRR 1 | Bloom 0)` (paper, Theorem 2):
//! - one report: `eps_1 = h * |ln(q* (1 - p*) / (p* (1 - q*)))|`;
//! - any number of reports of one unchanged value (the PRR is the memoized
//!   worst case): `eps_inf = 2 h ln((1 - f/2) / (f/2))`.
//!
//! Both are computed with the **implemented** f, `ceil(128 f) / 128` (the f-mask
//! coin compares a 7-bit integer), which is >= the nominal f, so the reported
//! epsilons are those of the coins actually flipped. The IRR coins are 64-bit
//! integer thresholds: the implemented p and q differ from the nominal ones by
//! at most 2^-65. The PRR is only as private as the device secret is secret, and
//! a value that changes over time composes: each distinct Bloom filter costs up
//! to `eps_inf`. The cohort is also revealed with every report.
//!
//! # Utility
//! The aggregator keeps per cohort c the report count `N_c` and the IRR one-counts
//! `Y_{c,i}`; `(Y_{c,i} - p* N_c) / (q* - p*)` is an unbiased estimate of the
//! number of reports whose Bloom bit i is set, with variance
//! `N_c pi (1 - pi) / (q* - p*)^2` (pi = the expected IRR rate). Frequencies of
//! strings come from regressing these on the candidates' Bloom bits
//! (`ldp_aggregator::rappor`), not from this module.

use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use rand::Rng;
use sha2::Sha256;

use crate::mechanism::Report;
use crate::{Epsilon, Error, LdpRng, Result};

/// Largest supported Bloom filter size: one MD5 byte selects a bit.
pub const MAX_BITS: u32 = 256;
/// Largest supported number of hashes: one MD5 byte per hash.
pub const MAX_HASHES: u32 = 16;

type HmacSha256 = Hmac<Sha256>;

/// Validated RAPPOR parameters (names as in the RAPPOR paper, see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct RapporParams {
    num_bits: u32,
    num_hashes: u32,
    num_cohorts: u32,
    f: f64,
    p: f64,
    q: f64,
    f_threshold: u32,
}

impl RapporParams {
    /// Validates `1 <= k <= 256`, `1 <= h <= 16`, `m >= 1` with
    /// `m (k + 1) <= 2^24` statistics counters, `f, p, q` in `[0, 1]`,
    /// `f < 1` and `q > p` (`p = q` carries no information; `q < p` is almost
    /// always a swapped parameter file, RAPPOR's names being the reverse of later papers).
    pub fn new(
        num_bits: u32,
        num_hashes: u32,
        num_cohorts: u32,
        f: f64,
        p: f64,
        q: f64,
    ) -> Result<Self> {
        if !(1..=MAX_BITS).contains(&num_bits) {
            return Err(invalid(
                "num_bits",
                format!("{num_bits} outside [1, {MAX_BITS}]"),
            ));
        }
        if !(1..=MAX_HASHES).contains(&num_hashes) {
            return Err(invalid(
                "num_hashes",
                format!("{num_hashes} outside [1, {MAX_HASHES}]"),
            ));
        }
        if num_cohorts == 0 {
            return Err(invalid("num_cohorts", "0 < 1".into()));
        }
        // The aggregator keeps num_cohorts x (k + 1) counters: the same bound as
        // every other mechanism's statistics.
        let cells = u64::from(num_cohorts) * (u64::from(num_bits) + 1);
        if cells > u64::from(crate::mechanism::limits::MAX_DOMAIN_SIZE) {
            return Err(invalid(
                "num_cohorts",
                format!(
                    "{num_cohorts} cohorts x ({num_bits} + 1) counters exceed {}",
                    crate::mechanism::limits::MAX_DOMAIN_SIZE
                ),
            ));
        }
        for (name, x) in [("f", f), ("p", p), ("q", q)] {
            if !(0.0..=1.0).contains(&x) {
                return Err(invalid(name, format!("{x} outside [0, 1]")));
            }
        }
        if f == 1.0 {
            return Err(invalid(
                "f",
                "f = 1: reports would carry no information".into(),
            ));
        }
        if p == q {
            return Err(invalid(
                "q",
                format!("q = p = {p}: reports would carry no information"),
            ));
        }
        if q < p {
            // Almost always a swapped parameter file: RAPPOR's names are the
            // reverse of most later papers.
            return Err(invalid(
                "q",
                format!(
                    "q = {q} < p = {p}: in RAPPOR q = P(report 1 | PRR bit 1) and \
                     p = P(report 1 | PRR bit 0), so q > p; are p and q swapped?"
                ),
            ));
        }
        // (byte >> 1) < 128 f for a 7-bit integer is (byte >> 1) < ceil(128 f).
        let f_threshold = (128.0 * f).ceil() as u32;
        Ok(Self {
            num_bits,
            num_hashes,
            num_cohorts,
            f,
            p,
            q,
            f_threshold,
        })
    }

    /// Bloom filter size k.
    pub fn num_bits(&self) -> u32 {
        self.num_bits
    }

    /// Number of Bloom hashes h.
    pub fn num_hashes(&self) -> u32 {
        self.num_hashes
    }

    /// Number of cohorts m.
    pub fn num_cohorts(&self) -> u32 {
        self.num_cohorts
    }

    /// The nominal f (as published).
    pub fn f(&self) -> f64 {
        self.f
    }

    /// The f the coins implement: `ceil(128 f) / 128`, exactly as the reference client.
    pub fn effective_f(&self) -> f64 {
        f64::from(self.f_threshold) / 128.0
    }

    /// p = P(IRR bit 1 | PRR bit 0). Note the RAPPOR naming.
    pub fn p(&self) -> f64 {
        self.p
    }

    /// q = P(IRR bit 1 | PRR bit 1). Note the RAPPOR naming.
    pub fn q(&self) -> f64 {
        self.q
    }

    /// Bytes of a packed report: `ceil(k / 8)`.
    pub fn report_bytes(&self) -> usize {
        self.num_bits.div_ceil(8) as usize
    }

    /// `q* = P(IRR 1 | Bloom 1) = q (1 - f/2) + p f/2`, with the effective f.
    pub fn prob_one_given_bloom_one(&self) -> f64 {
        let half_f = self.effective_f() / 2.0;
        self.q * (1.0 - half_f) + self.p * half_f
    }

    /// `p* = P(IRR 1 | Bloom 0) = p (1 - f/2) + q f/2`, with the effective f.
    pub fn prob_one_given_bloom_zero(&self) -> f64 {
        let half_f = self.effective_f() / 2.0;
        self.p * (1.0 - half_f) + self.q * half_f
    }

    /// eps_1, the privacy loss of one report:
    /// `h |ln(q* (1 - p*) / (p* (1 - q*)))|` (RAPPOR paper, Theorem 2).
    /// Infinite when a combined probability is 0 or 1.
    pub fn epsilon_one(&self) -> f64 {
        let (qs, ps) = (
            self.prob_one_given_bloom_one(),
            self.prob_one_given_bloom_zero(),
        );
        let ratio = (qs * (1.0 - ps)) / (ps * (1.0 - qs));
        f64::from(self.num_hashes) * ratio.ln().abs()
    }

    /// eps_inf, the lifetime privacy loss of an unchanged value (the PRR):
    /// `2 h ln((1 - f/2) / (f/2))` with the effective f; infinite for f = 0.
    pub fn epsilon_inf(&self) -> f64 {
        let half_f = self.effective_f() / 2.0;
        2.0 * f64::from(self.num_hashes) * ((1.0 - half_f) / half_f).ln()
    }

    /// The h Bloom bit positions of `value` in `cohort` (with repeats if two
    /// hashes collide), from `MD5(uint32_be(cohort) || value)`.
    pub fn bloom_positions(&self, value: &[u8], cohort: u32) -> Vec<u32> {
        let mut md5 = Md5::new();
        md5.update(cohort.to_be_bytes());
        md5.update(value);
        let digest = md5.finalize();
        digest[..self.num_hashes as usize]
            .iter()
            .map(|&b| u32::from(b) % self.num_bits)
            .collect()
    }

    /// The Bloom filter of `value` in `cohort`, packed least significant bit first.
    pub fn bloom(&self, value: &[u8], cohort: u32) -> Vec<u8> {
        let mut bits = vec![0u8; self.report_bytes()];
        for i in self.bloom_positions(value, cohort) {
            bits[(i / 8) as usize] |= 1 << (i % 8);
        }
        bits
    }

    /// The PRR of a packed Bloom filter under `key` (see the module docs).
    pub fn prr(&self, key: &[u8], bloom: &[u8]) -> Vec<u8> {
        let words = self.num_bits.div_ceil(32) as usize;
        // be(B): the integer B big-endian in 4 * ceil(k/32) bytes.
        let mut message = vec![0u8; 4 * words];
        let len = message.len();
        for (j, &byte) in bloom.iter().enumerate() {
            message[len - 1 - j] = byte;
        }
        let mut prr = vec![0u8; self.report_bytes()];
        let mut block = Vec::new();
        for i in 0..self.num_bits as usize {
            if i % 32 == 0 {
                block = hmac(key, &[&message, &counter_suffix(i / 32)]);
            }
            let d = block[i % 32];
            let bit = if u32::from(d >> 1) < self.f_threshold {
                d & 1
            } else {
                (bloom[i / 8] >> (i % 8)) & 1
            };
            prr[i / 8] |= bit << (i % 8);
        }
        prr
    }

    /// The IRR of a packed PRR: bit i is 1 with probability q if `prr_i = 1`, p if 0.
    /// Each coin is one uniform u64 compared with an integer threshold.
    pub fn irr(&self, prr: &[u8], rng: &mut LdpRng) -> Vec<u8> {
        let (p_thr, q_thr) = (threshold(self.p), threshold(self.q));
        let mut irr = vec![0u8; self.report_bytes()];
        for i in 0..self.num_bits as usize {
            let thr = if (prr[i / 8] >> (i % 8)) & 1 == 1 {
                q_thr
            } else {
                p_thr
            };
            let one = u128::from(rng.next_u64()) < thr;
            irr[i / 8] |= u8::from(one) << (i % 8);
        }
        irr
    }

    /// Checks a report's cohort and bit length (padding bits must be zero).
    pub fn validate(&self, cohort: u32, bits: &[u8]) -> Result<()> {
        if cohort >= self.num_cohorts {
            return Err(Error::InvalidReport(format!(
                "cohort {cohort} outside [0, {})",
                self.num_cohorts
            )));
        }
        if bits.len() != self.report_bytes() {
            return Err(Error::InvalidReport(format!(
                "{} bytes of bits, {} bits need {}",
                bits.len(),
                self.num_bits,
                self.report_bytes()
            )));
        }
        let used = self.num_bits % 8;
        if used != 0 && bits[bits.len() - 1] >> used != 0 {
            return Err(Error::InvalidReport(format!(
                "padding bits above bit {} are set",
                self.num_bits - 1
            )));
        }
        Ok(())
    }
}

/// `P = thr / 2^64` for a u64 draw `x < thr`; exact for p = 0 and p = 1.
fn threshold(p: f64) -> u128 {
    // p in [0, 1] is validated; the product is exact up to rounding to 2^-65 relative.
    (p * 18_446_744_073_709_551_616.0).round() as u128
}

fn counter_suffix(block: usize) -> Vec<u8> {
    if block == 0 {
        Vec::new()
    } else {
        (block as u32).to_be_bytes().to_vec()
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC accepts keys of any length; the error branch is unreachable for HMAC.
    let mut mac =
        <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

fn invalid(name: &'static str, reason: String) -> Error {
    Error::InvalidParameter { name, reason }
}

/// A persistent per-device secret. It is the only state a device keeps for RAPPOR:
/// cohorts and PRRs are derived from it. Its `Debug` output shows nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceSecret(Box<[u8]>);

impl DeviceSecret {
    /// A fresh 32-byte secret from `rng` (use [`LdpRng::from_os`] in production).
    pub fn generate(rng: &mut LdpRng) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        Self(Box::new(bytes))
    }

    /// A secret restored from storage (or, for the reference format, the client
    /// string). Rejects an empty secret.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.is_empty() {
            return Err(invalid("device_secret", "empty".into()));
        }
        Ok(Self(bytes.into()))
    }

    /// The raw bytes, for persisting the secret. Handle with care.
    pub fn expose_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for DeviceSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceSecret(..)")
    }
}

/// A device's RAPPOR encoder for one metric: its cohort and PRR key are fixed,
/// its IRR is fresh per report.
#[derive(Clone)]
pub struct RapporEncoder {
    params: RapporParams,
    prr_key: DeviceSecret,
    cohort: u32,
}

impl std::fmt::Debug for RapporEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RapporEncoder")
            .field("params", &self.params)
            .field("cohort", &self.cohort)
            .finish_non_exhaustive()
    }
}

impl RapporEncoder {
    /// Derives the PRR key and cohort of `metric_name` from `secret` (module docs):
    /// the same secret and name always give the same encoder.
    pub fn new(params: RapporParams, secret: &DeviceSecret, metric_name: &str) -> Self {
        let key = hmac(
            secret.expose_bytes(),
            &[b"ldp/rappor/v1/prr-key\0", metric_name.as_bytes()],
        );
        let c = hmac(
            secret.expose_bytes(),
            &[b"ldp/rappor/v1/cohort\0", metric_name.as_bytes()],
        );
        let word = u64::from_be_bytes(c[..8].try_into().expect("HMAC-SHA256 has 32 bytes"));
        let cohort = (word % u64::from(params.num_cohorts)) as u32;
        Self {
            params,
            prr_key: DeviceSecret(key.into()),
            cohort,
        }
    }

    /// The reference client's encoder: the PRR key is the client secret itself and
    /// the cohort is given (google/rappor assigns it at random and stores it).
    pub fn reference(params: RapporParams, client_secret: &[u8], cohort: u32) -> Result<Self> {
        if cohort >= params.num_cohorts {
            return Err(invalid(
                "cohort",
                format!("{cohort} outside [0, {})", params.num_cohorts),
            ));
        }
        Ok(Self {
            params,
            prr_key: DeviceSecret::from_bytes(client_secret)?,
            cohort,
        })
    }

    /// The parameters.
    pub fn params(&self) -> &RapporParams {
        &self.params
    }

    /// This device's cohort for the metric.
    pub fn cohort(&self) -> u32 {
        self.cohort
    }

    /// The Bloom filter of `value` in this device's cohort (packed LSB first).
    pub fn bloom(&self, value: &[u8]) -> Vec<u8> {
        self.params.bloom(value, self.cohort)
    }

    /// The memoized PRR of `value` (packed LSB first): deterministic.
    pub fn prr(&self, value: &[u8]) -> Vec<u8> {
        self.params
            .prr(self.prr_key.expose_bytes(), &self.bloom(value))
    }

    /// The memoized PRR of a packed Bloom filter under this device's key.
    pub fn prr_of_bloom(&self, bloom: &[u8]) -> Vec<u8> {
        self.params.prr(self.prr_key.expose_bytes(), bloom)
    }

    /// One report of `value`: the cohort and a fresh IRR of the memoized PRR.
    pub fn encode(&self, value: &[u8], rng: &mut LdpRng) -> Report {
        let bits = self.params.irr(&self.prr(value), rng);
        Report::Rappor {
            cohort: self.cohort,
            bits,
        }
    }
}

/// RAPPOR as a [`crate::mechanism::Mechanism`]: validation and per-cohort bit
/// counting on the server. Encoding needs a device secret: use [`RapporEncoder`].
#[derive(Debug, Clone, PartialEq)]
pub struct Rappor {
    params: RapporParams,
    epsilon: Epsilon,
}

impl Rappor {
    /// Checks that the declared per-report `epsilon` covers `eps_1` of `params`
    /// (the metric must not understate its privacy loss).
    pub fn new(params: RapporParams, epsilon: Epsilon) -> Result<Self> {
        let eps_1 = params.epsilon_one();
        // eps_1 is finite or +inf (never NaN: p != q); +inf is always rejected.
        if eps_1 > epsilon.get() * (1.0 + 1e-12) {
            return Err(invalid(
                "epsilon",
                format!("declared {epsilon} is below the parameters' eps_1 = {eps_1}"),
            ));
        }
        Ok(Self { params, epsilon })
    }

    /// The parameters.
    pub fn params(&self) -> &RapporParams {
        &self.params
    }

    /// The declared per-report epsilon (>= [`RapporParams::epsilon_one`]).
    pub fn epsilon(&self) -> Epsilon {
        self.epsilon
    }

    /// Counters: per cohort c, `c (k + 1)` is its report count and
    /// `c (k + 1) + 1 + i` its count of IRR bit i = 1 (the rows of `counts.csv`).
    pub fn stats_len(&self) -> usize {
        self.params.num_cohorts as usize * (self.params.num_bits as usize + 1)
    }

    /// Calls `add(cell)` for the counters a validated report adds one to: its
    /// cohort's report count and the cohort's counter of every set IRR bit.
    pub(crate) fn for_each_cell(&self, cohort: u32, bits: &[u8], mut add: impl FnMut(usize)) {
        let k = self.params.num_bits as usize;
        let row = cohort as usize * (k + 1);
        add(row);
        for i in (0..k).filter(|i| (bits[i / 8] >> (i % 8)) & 1 == 1) {
            add(row + 1 + i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words_small() -> RapporParams {
        RapporParams::new(16, 2, 64, 0.5, 0.5, 0.75).unwrap()
    }

    #[test]
    fn epsilon_golden_values() {
        let params = words_small();
        // eps_inf = 2h ln((1 - f/2)/(f/2)) = 4 ln 3 for h = 2, f = 1/2.
        assert!((params.epsilon_inf() - 4.0 * 3f64.ln()).abs() < 1e-12);
        // q* = 11/16, p* = 9/16: eps_1 = 2 ln((11/16)(7/16) / ((9/16)(5/16))) = 2 ln(77/45)
        // = 1.0743 (the paper's example value for these parameters).
        assert!((params.epsilon_one() - 2.0 * (77.0f64 / 45.0).ln()).abs() < 1e-12);
        assert!((params.epsilon_one() - 1.0743).abs() < 1e-4);
    }

    #[test]
    fn f_is_quantised_like_the_reference_client() {
        let params = RapporParams::new(16, 2, 64, 0.45, 0.5, 0.75).unwrap();
        assert_eq!(params.effective_f(), 58.0 / 128.0);
    }

    #[test]
    fn worked_example_of_the_reference_readme() {
        // "some" in cohort 1 sets bits 13 and 4 (MD5 bytes 0xcd, 0x04).
        assert_eq!(words_small().bloom_positions(b"some", 1), vec![13, 4]);
    }

    #[test]
    fn invalid_parameters_are_rejected() {
        assert!(RapporParams::new(0, 2, 64, 0.5, 0.5, 0.75).is_err());
        assert!(RapporParams::new(257, 2, 64, 0.5, 0.5, 0.75).is_err());
        assert!(RapporParams::new(16, 17, 64, 0.5, 0.5, 0.75).is_err());
        assert!(RapporParams::new(16, 2, 0, 0.5, 0.5, 0.75).is_err());
        assert!(RapporParams::new(16, 2, 64, 1.5, 0.5, 0.75).is_err());
        assert!(RapporParams::new(16, 2, 64, 0.5, 0.5, 0.5).is_err());
        assert!(RapporParams::new(16, 2, 64, 1.0, 0.5, 0.75).is_err());
        assert!(RapporParams::new(16, 2, 64, f64::NAN, 0.5, 0.75).is_err());
    }

    /// Regression: `num_cohorts` was unbounded, so an Admin `CreateMetric` with
    /// 2^32 - 1 cohorts was accepted and the server's first report or estimate
    /// for it allocated num_cohorts x (k + 1) counters (8.8 TB): an abort.
    #[test]
    fn cohort_count_is_bounded_by_the_statistics_limit() {
        use crate::mechanism::limits::MAX_DOMAIN_SIZE;
        assert!(RapporParams::new(256, 2, u32::MAX, 0.5, 0.5, 0.75).is_err());
        // 65,281 x 257 = 2^24 + 1 counters: one too many; 65,280 x 257 fits.
        assert!(RapporParams::new(256, 2, 65_281, 0.5, 0.5, 0.75).is_err());
        let params = RapporParams::new(256, 2, 65_280, 0.5, 0.5, 0.75).unwrap();
        let eps = Epsilon::new(params.epsilon_one()).unwrap();
        let rappor = Rappor::new(params, eps).unwrap();
        assert!(rappor.stats_len() <= MAX_DOMAIN_SIZE as usize);
    }

    #[test]
    fn debug_of_secrets_prints_nothing() {
        let secret = DeviceSecret::from_bytes(b"hunter2").unwrap();
        assert_eq!(format!("{secret:?}"), "DeviceSecret(..)");
        let enc = RapporEncoder::new(words_small(), &secret, "m");
        assert!(!format!("{enc:?}").contains("hunter2"));
    }
}
