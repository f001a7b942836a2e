//! Standard Webhooks (<https://www.standardwebhooks.com/>), symmetric signatures: headers
//! `webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64>`, the HMAC-SHA256 of
//! `"{id}.{timestamp}.{body}"` under the secret's bytes, the secret shown as `whsec_` followed
//! by those bytes in base64. Several signatures are separated by spaces (a rotation's grace).
//!
//! Parsing is total (never panics); verification compares in constant time.

use super::{judge, mac_of, unix_seconds, HmacSha256, VerifyError, MAX_HEADER_BYTES};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::Mac;

/// The message id header: the event id, the same on every attempt and every replay.
pub const ID_HEADER: &str = "webhook-id";
/// The attempt's time, Unix seconds.
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// The signatures, space-separated, each `v1,<base64>`.
pub const SIGNATURE_HEADER: &str = "webhook-signature";

/// The prefix that marks a secret as a webhook signing secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// A secret that is not `whsec_` (optional) followed by standard base64.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the secret is not whsec_ followed by base64, as Standard Webhooks requires")]
pub struct InvalidSecret;

/// The HMAC key a secret stands for: its base64 after the optional `whsec_` prefix, decoded
/// (the reference libraries accept the secret with or without the prefix).
pub fn key(secret: &str) -> Result<Vec<u8>, InvalidSecret> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    match BASE64.decode(encoded) {
        Ok(key) if !key.is_empty() => Ok(key),
        _ => Err(InvalidSecret),
    }
}

/// A secret as shown to users: `whsec_` and the key's bytes in base64.
pub fn secret_from_key(key: &[u8]) -> String {
    format!("{SECRET_PREFIX}{}", BASE64.encode(key))
}

fn mac(key: &[u8], msg_id: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
    mac_of(key, &[msg_id.as_bytes(), timestamp.as_bytes(), body])
}

/// One signature, `v1,<base64>`, of `body` sent as message `msg_id` at `timestamp` (Unix
/// seconds).
pub fn sign(
    secret: &str,
    msg_id: &str,
    timestamp: u64,
    body: &[u8],
) -> Result<String, InvalidSecret> {
    let key = key(secret)?;
    let digest = mac(&key, msg_id, &timestamp.to_string(), body)
        .finalize()
        .into_bytes();
    Ok(format!("v1,{}", BASE64.encode(digest)))
}

/// Verifies the three headers' values against the raw body and secret, with `now_s` (Unix
/// seconds) and a tolerance in seconds: the form, then the time, then the MAC. Any `v1`
/// entry that matches is enough; entries of other versions (`v1a,...`) are ignored.
pub fn verify(
    secret: &str,
    msg_id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now_s: u64,
    tolerance_s: u64,
) -> Result<(), VerifyError> {
    if signatures.len() > MAX_HEADER_BYTES || msg_id.len() > MAX_HEADER_BYTES {
        return Err(VerifyError::Malformed("header too long"));
    }
    if msg_id.is_empty() {
        return Err(VerifyError::Malformed("webhook-id is empty"));
    }
    let t = unix_seconds(timestamp).ok_or(VerifyError::Malformed(
        "webhook-timestamp is not a Unix timestamp",
    ))?;
    let mut given = Vec::new();
    for entry in signatures.split(' ').filter(|e| !e.is_empty()) {
        let Some((version, value)) = entry.split_once(',') else {
            return Err(VerifyError::Malformed("signature without ','"));
        };
        if version != "v1" {
            continue;
        }
        match BASE64.decode(value) {
            Ok(sig) if sig.len() == 32 => given.push(sig),
            _ => return Err(VerifyError::Malformed("v1 is not base64 of 32 bytes")),
        }
    }
    if given.is_empty() {
        return Err(VerifyError::Malformed("no v1 signature"));
    }
    judge(t, now_s, tolerance_s, &given, || {
        Ok(mac(&key(secret)?, msg_id, timestamp, body))
    })
}
