//! Fresh ids, secrets and API keys from the operating system's secure random source.

use hallway_domain::{DeliveryId, FanOutId, Timestamp};
use sha2::{Digest, Sha256};

/// `N` random bytes.
fn random<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // The OS random source failing is not recoverable: ids and secrets must not be guessable.
    getrandom::getrandom(&mut buf).expect("the operating system's random source failed");
    buf
}

/// `N` random bytes as lowercase hex.
fn random_hex<const N: usize>() -> String {
    hex::encode(random::<N>())
}

/// A new webhook id (`wh_` + 96 random bits).
pub fn webhook_id() -> String {
    format!("wh_{}", random_hex::<12>())
}

/// A new event id (`evt_` + 96 random bits).
pub fn event_id() -> String {
    format!("evt_{}", random_hex::<12>())
}

/// A new fan-out made `now`: the time, then 80 random bits. Time first, so its records land
/// next to the newest ones in the store (where its outcomes soon update them), not at a
/// random place in a large tree.
pub fn fan_out(now: Timestamp) -> FanOutId {
    FanOutId::new(now, random())
}

/// A new test send's delivery: the one delivery of a fan-out of its own.
pub fn test_delivery_id(now: Timestamp) -> DeliveryId {
    fan_out(now).delivery(0)
}

/// A new signing secret: `whsec_` and 192 random bits in base64, as Standard Webhooks (and
/// Svix) show them, so the same secret serves either signature scheme.
pub fn secret() -> String {
    hallway_domain::signature::standard::secret_from_key(&random::<24>())
}

/// A new account API key (`hwk_` + 256 random bits).
pub fn api_key() -> String {
    format!("hwk_{}", random_hex::<32>())
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
    fn fan_outs_start_with_the_time_so_later_ones_sort_after_earlier_ones() {
        let now = Timestamp(1_790_000_000_000);
        let a = fan_out(now);
        assert!(a < fan_out(Timestamp(now.0 + 1)));
        assert_ne!(
            a.to_bytes()[6..],
            fan_out(now).to_bytes()[6..],
            "80 random bits follow"
        );
        assert_ne!(test_delivery_id(now), test_delivery_id(now));
    }
}
