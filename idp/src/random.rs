//! Where the provider's randomness comes from: codes, tokens, session ids, salts.

use std::fmt;
use std::sync::Mutex;

use ring::rand::SecureRandom as _;

use crate::IdpError;

/// A source of random bytes. Servers use [`OsRandom`]; tests may use a seeded one.
pub trait Random: Send + Sync + fmt::Debug {
    /// Fills `dest` with random bytes.
    fn fill(&self, dest: &mut [u8]) -> Result<(), IdpError>;
}

/// The operating system's random number generator (through `ring`).
#[derive(Debug)]
pub struct OsRandom(ring::rand::SystemRandom);

impl OsRandom {
    /// The system generator.
    pub fn new() -> Self {
        Self(ring::rand::SystemRandom::new())
    }
}

impl Default for OsRandom {
    fn default() -> Self {
        Self::new()
    }
}

impl Random for OsRandom {
    fn fill(&self, dest: &mut [u8]) -> Result<(), IdpError> {
        self.0
            .fill(dest)
            .map_err(|_| IdpError::Internal("random number generator"))
    }
}

/// `N` random bytes.
pub(crate) fn bytes<const N: usize>(rng: &dyn Random) -> Result<[u8; N], IdpError> {
    let mut out = [0u8; N];
    rng.fill(&mut out)?;
    Ok(out)
}

/// A deterministic generator (SHA-256 in counter mode over a seed): the same seed gives the same
/// bytes, so tests are repeatable. Never use it in a server.
pub struct SeededRandom {
    seed: [u8; 32],
    counter: Mutex<u64>,
}

impl SeededRandom {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        let mut s = [0u8; 32];
        let digest = ring::digest::digest(&ring::digest::SHA256, &seed.to_be_bytes());
        s.copy_from_slice(digest.as_ref());
        Self {
            seed: s,
            counter: Mutex::new(0),
        }
    }
}

impl fmt::Debug for SeededRandom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SeededRandom")
    }
}

impl Random for SeededRandom {
    fn fill(&self, dest: &mut [u8]) -> Result<(), IdpError> {
        let mut counter = self
            .counter
            .lock()
            .map_err(|_| IdpError::Internal("random number generator"))?;
        for chunk in dest.chunks_mut(32) {
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            ctx.update(&self.seed);
            ctx.update(&counter.to_be_bytes());
            *counter = counter.wrapping_add(1);
            let block = ctx.finish();
            for (d, s) in chunk.iter_mut().zip(block.as_ref()) {
                *d = *s;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_is_repeatable_and_seeds_differ() {
        let a = bytes::<40>(&SeededRandom::new(1)).unwrap();
        assert_eq!(a, bytes::<40>(&SeededRandom::new(1)).unwrap());
        assert_ne!(a, bytes::<40>(&SeededRandom::new(2)).unwrap());
        let r = SeededRandom::new(1);
        assert_ne!(bytes::<32>(&r).unwrap(), bytes::<32>(&r).unwrap());
        let os = OsRandom::new();
        assert_ne!(bytes::<32>(&os).unwrap(), bytes::<32>(&os).unwrap());
    }
}
