//! Fresh ids, secrets and API keys from the operating system's secure random source.

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

/// Seed of a fan-out's delivery ids (80 random bits; the domain appends the index).
pub fn delivery_id_seed() -> String {
    random_hex(10)
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
