//! # ldp-sdk
//!
//! On-device local differential privacy. Every record is randomized on the
//! device, by a [`mechanism::Mechanism`] built from a validated [`Epsilon`],
//! before anything leaves it. The same crate holds each mechanism's unbiased
//! estimator and its closed-form variance, which the aggregator reuses: device
//! and server cannot disagree on the math.
//!
//! Without default features the crate has no network and no async runtime
//! (WASM, mobile FFI, custom transports). Feature `grpc` adds the network client.
//!
//! ```
//! use ldp_sdk::{Epsilon, LdpRng, mechanism::{Mechanism, MechanismSpec}};
//! let mech = Mechanism::new(MechanismSpec::Grr { domain_size: 4 }, Epsilon::new(1.0)?)?;
//! let mut rng = LdpRng::from_os();
//! let report = mech.encode_index(2, &mut rng)?;
//! mech.validate(&report)?;
//! # Ok::<(), ldp_sdk::Error>(())
//! ```

pub mod budget;
#[cfg(feature = "grpc")]
pub mod client;
mod epsilon;
mod error;
pub mod estimate;
pub mod mechanism;
pub mod memo;
pub mod metric;
mod rng;
pub mod schema;
#[cfg(feature = "grpc")]
pub mod wire;

#[cfg(feature = "grpc")]
pub use client::Client;
pub use epsilon::Epsilon;
pub use error::{Error, Result};
pub use rng::LdpRng;
