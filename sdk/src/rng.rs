//! The randomness every randomizer draws from.
//!
//! Production code uses [`LdpRng::from_os`]: ChaCha12 seeded by the operating
//! system. [`LdpRng::seeded_for_simulation`] exists for tests and simulations
//! only; its name says so wherever it is used. There is no global or
//! thread-local generator.

use rand::{Rng, SeedableRng, TryRng};
use rand_chacha::ChaCha12Rng;

/// A cryptographically strong random generator for randomizers.
pub struct LdpRng(ChaCha12Rng);

impl LdpRng {
    /// ChaCha12 seeded from the operating system's entropy source.
    pub fn from_os() -> Self {
        Self(rand::make_rng())
    }

    /// A reproducible generator for simulations and tests. Reports made with it
    /// carry **no privacy**: anyone who knows the seed can invert them.
    pub fn seeded_for_simulation(seed: u64) -> Self {
        Self(ChaCha12Rng::seed_from_u64(seed))
    }

    /// The underlying generator, for the `rand` API.
    pub fn inner(&mut self) -> &mut ChaCha12Rng {
        &mut self.0
    }
}

impl std::fmt::Debug for LdpRng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LdpRng(..)")
    }
}

impl TryRng for LdpRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.0.next_u32())
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(self.0.next_u64())
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.0.fill_bytes(dst);
        Ok(())
    }
}
