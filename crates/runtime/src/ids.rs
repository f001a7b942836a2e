//! Fresh ids, secrets and API keys, from a [`RandomSource`]: the operating system's secure
//! source unless the engine's `Config::random` names another.

use hallway_domain::Timestamp;
use sha2::{Digest, Sha256};

/// Where fresh ids, secrets, API keys and sealing nonces come from. A seam beside `Clock`:
/// production reads the operating system ([`OsRandom`]); a deterministic simulation plugs in
/// a seeded generator so that a run replays exactly. Anything else must be a
/// cryptographically secure source: secrets and API keys come from it.
pub trait RandomSource: Send + Sync + 'static {
    /// Fills `buf` with random bytes.
    fn fill(&self, buf: &mut [u8]);
}

/// The operating system's secure random source (`getrandom`).
#[derive(Clone, Copy, Debug, Default)]
pub struct OsRandom;

impl RandomSource for OsRandom {
    fn fill(&self, buf: &mut [u8]) {
        // The OS random source failing is not recoverable: ids and secrets must not be
        // guessable.
        getrandom::getrandom(buf).expect("the operating system's random source failed");
    }
}

/// `n` random bytes as lowercase hex.
fn random_hex(random: &dyn RandomSource, n: usize) -> String {
    let mut buf = vec![0u8; n];
    random.fill(&mut buf);
    hex::encode(buf)
}

/// A new webhook id (`wh_` + 96 random bits).
pub fn webhook_id(random: &dyn RandomSource) -> String {
    format!("wh_{}", random_hex(random, 12))
}

/// A new event id (`evt_` + 96 random bits).
pub fn event_id(random: &dyn RandomSource) -> String {
    format!("evt_{}", random_hex(random, 12))
}

/// A new delivery id (`dlv_` + 96 random bits).
pub fn delivery_id(random: &dyn RandomSource) -> String {
    format!("dlv_{}", random_hex(random, 12))
}

/// Seed of a fan-out's delivery ids: the time in ms (11 hex digits), then 80 random bits; the
/// domain appends the index. Time first, so a fan-out's records land next to the newest ones
/// in the store (where its outcomes soon update them), not at a random place in a large tree.
pub fn delivery_id_seed(random: &dyn RandomSource, now: Timestamp) -> String {
    format!("{:011x}{}", now.0, random_hex(random, 10))
}

/// A new signing secret (`whsec_` + 192 random bits).
pub fn secret(random: &dyn RandomSource) -> String {
    format!("whsec_{}", random_hex(random, 24))
}

/// A new account API key (`hwk_` + 256 random bits).
pub fn api_key(random: &dyn RandomSource) -> String {
    format!("hwk_{}", random_hex(random, 32))
}

/// The stored form of an API key: SHA-256, hex. Keys are 256 random bits, so a fast hash is
/// enough (no password stretching is needed).
pub fn hash_api_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_starts_with_the_time_so_later_fan_outs_sort_after_earlier_ones() {
        let now = Timestamp(1_790_000_000_000);
        let a = delivery_id_seed(&OsRandom, now);
        let b = delivery_id_seed(&OsRandom, Timestamp(now.0 + 1));
        assert!(a < b);
        assert_ne!(
            a[11..],
            delivery_id_seed(&OsRandom, now)[11..],
            "80 random bits follow"
        );
        // The store names a fan-out's bucket by this length (`keys::TIMED_ID_LEN`).
        assert_eq!(format!("dlv_{a}00").len(), 37);
    }
}
