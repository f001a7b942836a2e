//! Fresh ids, secrets and API keys from the operating system's secure random source.

use hallway_domain::Timestamp;
use sha2::{Digest, Sha256};

/// `n` random bytes as lowercase hex.
fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    // The OS random source failing is not recoverable: ids and secrets must not be guessable.
    getrandom::getrandom(&mut buf).expect("the operating system's random source failed");
    hex::encode(buf)
}

/// A new webhook id (`wh_` + 96 random bits).
pub fn webhook_id() -> String {
    format!("wh_{}", random_hex(12))
}

/// A new event id (`evt_` + 96 random bits).
pub fn event_id() -> String {
    format!("evt_{}", random_hex(12))
}

/// A new delivery id (`dlv_` + 96 random bits).
pub fn delivery_id() -> String {
    format!("dlv_{}", random_hex(12))
}

/// Seed of a fan-out's delivery ids: the time in ms (11 hex digits), then 80 random bits; the
/// domain appends the index. Time first, so a fan-out's records land next to the newest ones
/// in the store (where its outcomes soon update them), not at a random place in a large tree.
pub fn delivery_id_seed(now: Timestamp) -> String {
    format!("{:011x}{}", now.0, random_hex(10))
}

/// A new signing secret: `whsec_` and 192 random bits in base64, as Standard Webhooks (and
/// Svix) show them, so the same secret serves either signature scheme.
pub fn secret() -> String {
    let mut key = [0u8; 24];
    getrandom::getrandom(&mut key).expect("the operating system's random source failed");
    hallway_domain::signature::standard::secret_from_key(&key)
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
    fn a_secret_is_whsec_and_24_random_bytes_in_base64() {
        let (a, b) = (secret(), secret());
        assert_ne!(a, b);
        assert_eq!(a.len(), "whsec_".len() + 32, "{a}");
        let key = hallway_domain::signature::standard::key(&a).expect("base64");
        assert_eq!(key.len(), 24);
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
