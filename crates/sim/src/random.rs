//! Seeded randomness: every source of chance in a run derives from its one seed.

use hallway_runtime::RandomSource;
use hallway_testkit::rng::Rng;
use std::sync::Mutex;

/// A stream of the run's randomness, independent of the others (`splitmix64` of the seed
/// and the stream's number), so that adding draws to one stream leaves the others alone.
pub fn stream(seed: u64, n: u64) -> Rng {
    let mut z = seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    Rng::new(z ^ (z >> 31))
}

/// The engine's ids, secrets and nonces from a seeded stream (never for production: they
/// are guessable from the seed).
pub struct SeededRandom(Mutex<Rng>);

impl SeededRandom {
    /// A source drawing from `rng`.
    pub fn new(rng: Rng) -> SeededRandom {
        SeededRandom(Mutex::new(rng))
    }
}

impl RandomSource for SeededRandom {
    fn fill(&self, buf: &mut [u8]) {
        let mut rng = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for chunk in buf.chunks_mut(8) {
            let bytes = rng.next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// Draws with a few conveniences over [`Rng`].
pub trait Draw {
    /// `true` with probability `percent`/100.
    fn chance(&mut self, percent: u64) -> bool;
    /// A number in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64;
    /// One of `items` (which must not be empty).
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T;
}

impl Draw for Rng {
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}
