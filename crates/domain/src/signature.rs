//! `X-Hallway-Signature`: `t={unix seconds},v1={hex HMAC-SHA256(secret, "{t}.{body}")}`.
//!
//! The HMAC key is the secret string's bytes, exactly as the spec's Node example uses it.
//! Parsing is total (never panics); verification compares in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The name of the header deliveries carry.
pub const HEADER_NAME: &str = "X-Hallway-Signature";

/// Longest header accepted by the parser, in bytes; anything longer is malformed.
pub const MAX_HEADER_BYTES: usize = 4096;

/// Why a signature does not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The header cannot be parsed: missing `t=` or `v1=`, bad number, bad hex.
    #[error("malformed signature header: {0}")]
    Malformed(&'static str),
    /// The timestamp is further from now than the tolerance.
    #[error("signature timestamp is outside the tolerance ({age_s} s away)")]
    Stale {
        /// Seconds between the header's `t` and now.
        age_s: u64,
    },
    /// No `v1` signature matches the body and secret.
    #[error("signature mismatch")]
    Mismatch,
}

/// A parsed header: its timestamp and every `v1` signature in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedHeader {
    /// Unix seconds.
    pub timestamp: u64,
    /// The `t` value exactly as written: the MAC covers this text, as the spec's Node
    /// example signs `${timestamp}.${payload}` with the header's own digits.
    pub timestamp_text: String,
    /// The `v1` MACs, decoded.
    pub signatures: Vec<[u8; 32]>,
}

fn mac(secret: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length, so this cannot fail.
    let mut m = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    m.update(timestamp.as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// The lowercase hex HMAC-SHA256 of `"{timestamp}.{body}"` under `secret`.
pub fn compute(secret: &str, timestamp: u64, body: &[u8]) -> String {
    hex::encode(
        mac(secret, &timestamp.to_string(), body)
            .finalize()
            .into_bytes(),
    )
}

/// The full header value for a body sent at `timestamp` (Unix seconds).
pub fn sign(secret: &str, timestamp: u64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", compute(secret, timestamp, body))
}

/// Parses a header strictly: exactly one `t=` of decimal digits, one or more `v1=` of 64 hex
/// digits; entries of other schemes (`v0=`, `v2=`, ...) are ignored.
pub fn parse(header: &str) -> Result<ParsedHeader, VerifyError> {
    if header.len() > MAX_HEADER_BYTES {
        return Err(VerifyError::Malformed("header too long"));
    }
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let part = part.trim();
        let Some((key, value)) = part.split_once('=') else {
            return Err(VerifyError::Malformed("entry without '='"));
        };
        match key {
            "t" => {
                if timestamp.is_some() {
                    return Err(VerifyError::Malformed("more than one t="));
                }
                if value.is_empty()
                    || value.len() > 19
                    || !value.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(VerifyError::Malformed("t= is not a Unix timestamp"));
                }
                let parsed = value
                    .parse::<u64>()
                    .map_err(|_| VerifyError::Malformed("t= is not a Unix timestamp"))?;
                timestamp = Some((parsed, value.to_owned()));
            }
            "v1" => {
                let mut sig = [0u8; 32];
                if value.len() != 64 || hex::decode_to_slice(value, &mut sig).is_err() {
                    return Err(VerifyError::Malformed("v1= is not 64 hex digits"));
                }
                signatures.push(sig);
            }
            _ if !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric()) => {}
            _ => return Err(VerifyError::Malformed("unknown entry")),
        }
    }
    let (timestamp, timestamp_text) = timestamp.ok_or(VerifyError::Malformed("missing t="))?;
    if signatures.is_empty() {
        return Err(VerifyError::Malformed("missing v1="));
    }
    Ok(ParsedHeader {
        timestamp,
        timestamp_text,
        signatures,
    })
}

/// Verifies a header against the raw body and secret, with `now_s` (Unix seconds) and a
/// tolerance in seconds. Checks the form, then the time, then the MAC (constant time).
pub fn verify(
    secret: &str,
    header: &str,
    body: &[u8],
    now_s: u64,
    tolerance_s: u64,
) -> Result<(), VerifyError> {
    let parsed = parse(header)?;
    let age_s = now_s.abs_diff(parsed.timestamp);
    if age_s > tolerance_s {
        return Err(VerifyError::Stale { age_s });
    }
    let expected = mac(secret, &parsed.timestamp_text, body);
    let ok = parsed
        .signatures
        .iter()
        .any(|sig| expected.clone().verify_slice(sig).is_ok());
    if ok {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mac_covers_the_timestamp_digits_as_written() {
        // A sender that zero-pads `t` signs its own digits, as the spec's Node example does.
        let body = b"{}";
        let padded = "01768059000";
        let mac_hex = hex::encode(mac("whsec_x", padded, body).finalize().into_bytes());
        let header = format!("t={padded},v1={mac_hex}");
        assert_eq!(verify("whsec_x", &header, body, 1_768_059_000, 300), Ok(()));
        let unpadded = sign("whsec_x", 1_768_059_000, body);
        assert_eq!(
            verify("whsec_x", &unpadded, body, 1_768_059_000, 300),
            Ok(())
        );
        assert_ne!(unpadded, header);
    }
}
