//! Fresh ids, secrets and API keys from the operating system's secure random source.

use hallway_domain::Timestamp;
use sha2::{Digest, Sha256};
use std::sync::{Mutex, PoisonError};

/// `n` random bytes as lowercase hex, straight from the operating system (secrets and keys).
fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    // The OS random source failing is not recoverable: ids and secrets must not be guessable.
    getrandom::getrandom(&mut buf).expect("the operating system's random source failed");
    hex::encode(buf)
}

/// Random bytes for ids, drawn from the operating system a few kilobytes at a time: a system
/// call for every publish's ids cost about 1 % of a delivery's CPU. The bytes are the same
/// secure random ones; ids are not secrets, and secrets and keys still draw their own.
struct IdBytes {
    bytes: [u8; 4096],
    used: usize,
}

static ID_BYTES: Mutex<IdBytes> = Mutex::new(IdBytes {
    bytes: [0; 4096],
    used: 4096,
});

/// `n` (at most 4,096) random bytes for an id, as lowercase hex.
fn id_hex(n: usize) -> String {
    let mut pool = ID_BYTES.lock().unwrap_or_else(PoisonError::into_inner);
    if pool.used + n > pool.bytes.len() {
        getrandom::getrandom(&mut pool.bytes).expect("the operating system's random source failed");
        pool.used = 0;
    }
    let start = pool.used;
    pool.used += n;
    hex::encode(&pool.bytes[start..start + n])
}

/// A new webhook id (`wh_` + 96 random bits).
pub fn webhook_id() -> String {
    format!("wh_{}", id_hex(12))
}

/// A new event id (`evt_` + 96 random bits).
pub fn event_id() -> String {
    format!("evt_{}", id_hex(12))
}

/// A new delivery id (`dlv_` + 96 random bits).
pub fn delivery_id() -> String {
    format!("dlv_{}", id_hex(12))
}

/// Seed of a fan-out's delivery ids: the time in ms (11 hex digits), then 80 random bits; the
/// domain appends the index. Time first, so a fan-out's records land next to the newest ones
/// in the store (where its outcomes soon update them), not at a random place in a large tree.
pub fn delivery_id_seed(now: Timestamp) -> String {
    format!("{:011x}{}", now.0, id_hex(10))
}

/// A new signing secret (`whsec_` + 192 random bits).
pub fn secret() -> String {
    format!("whsec_{}", random_hex(24))
}

/// A new account API key (`hwk_` + 256 random bits).
pub fn api_key() -> String {
    format!("hwk_{}", random_hex(32))
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
    fn ids_drawn_across_refills_are_all_different() {
        let ids: std::collections::HashSet<String> = (0..2_000).map(|_| event_id()).collect();
        assert_eq!(ids.len(), 2_000);
        assert!(ids
            .iter()
            .all(|id| id.len() == 28 && id.starts_with("evt_")));
    }

    #[test]
    fn a_seed_starts_with_the_time_so_later_fan_outs_sort_after_earlier_ones() {
        let now = Timestamp(1_790_000_000_000);
        let a = delivery_id_seed(now);
        let b = delivery_id_seed(Timestamp(now.0 + 1));
        assert!(a < b);
        assert_ne!(
            a[11..],
            delivery_id_seed(now)[11..],
            "80 random bits follow"
        );
        // The store names a fan-out's bucket by this length (`keys::TIMED_ID_LEN`).
        assert_eq!(format!("dlv_{a}00").len(), 37);
    }
}
