//! `X-Hallway-Signature`: `t={unix seconds},v1={hex HMAC-SHA256(secret, "{t}.{body}")}`, the
//! default scheme, and [`standard`] (Standard Webhooks), the scheme a webhook may choose.
//!
//! The HMAC key is the secret string's bytes, exactly as the spec's Node example uses it.
//! Parsing is total (never panics); verification compares in constant time.

pub mod standard;

use crate::webhook::SignatureScheme;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::borrow::Cow;

type HmacSha256 = Hmac<Sha256>;

/// The name of the header deliveries carry.
pub const HEADER_NAME: &str = "X-Hallway-Signature";

/// The header every delivery carries its event id in, whatever its scheme, so that a
/// receiver can drop a duplicate before reading the body.
pub const EVENT_ID_HEADER: &str = "X-Hallway-Event-Id";

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
    /// The secret cannot be a Standard Webhooks secret (`whsec_` and base64).
    #[error(transparent)]
    InvalidSecret(#[from] standard::InvalidSecret),
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

/// The HMAC-SHA256 under `key` of `parts` joined by `.`, as both schemes sign.
fn mac_of(key: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    // HMAC takes keys of any length, so this cannot fail.
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            m.update(b".");
        }
        m.update(part);
    }
    m
}

fn mac(secret: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
    mac_of(secret.as_bytes(), &[timestamp.as_bytes(), body])
}

/// A timestamp as both schemes write it: 1 to 19 decimal digits, Unix seconds.
fn unix_seconds(text: &str) -> Option<u64> {
    let digits = !text.is_empty() && text.len() <= 19 && text.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| text.parse().ok()).flatten()
}

/// The last two steps of either scheme's verification: the time against the tolerance, then
/// the MAC (built only if the time passes) against every given signature, in constant time.
fn judge<S: AsRef<[u8]>>(
    timestamp: u64,
    now_s: u64,
    tolerance_s: u64,
    given: &[S],
    expected: impl FnOnce() -> Result<HmacSha256, VerifyError>,
) -> Result<(), VerifyError> {
    let age_s = now_s.abs_diff(timestamp);
    if age_s > tolerance_s {
        return Err(VerifyError::Stale { age_s });
    }
    let expected = expected()?;
    if given
        .iter()
        .any(|sig| expected.clone().verify_slice(sig.as_ref()).is_ok())
    {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
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

/// The header value signed by the current secret and, during a rotation's grace, the previous
/// one too: `t=..,v1={current},v1={previous}`. The current secret comes first, so a receiver
/// that reads only the first `v1` (as the spec's Node example does) passes with the new one.
pub fn sign_with(current: &str, previous: Option<&str>, timestamp: u64, body: &[u8]) -> String {
    let mut header = sign(current, timestamp, body);
    if let Some(previous) = previous {
        header.push_str(",v1=");
        header.push_str(&compute(previous, timestamp, body));
    }
    header
}

/// An event id as a header value: every byte outside visible ASCII, and `%` itself, is
/// percent-encoded (`.` too, when `escape_dot`), so any id the host chose is a valid header
/// value and reads back exactly. Ids the engine makes (`evt_` and hex) are unchanged.
pub fn header_id(id: &str, escape_dot: bool) -> Cow<'_, str> {
    let plain = |b: u8| (0x21..=0x7e).contains(&b) && b != b'%' && !(escape_dot && b == b'.');
    if id.bytes().all(plain) {
        return Cow::Borrowed(id);
    }
    let mut out = String::with_capacity(id.len() + 8);
    for b in id.bytes() {
        if plain(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Cow::Owned(out)
}

/// The headers that sign and identify one attempt of `event_id`'s body sent at `timestamp`
/// (Unix seconds) under `scheme`: its signature headers, then [`EVENT_ID_HEADER`]. The
/// previous secret signs too while a rotation's grace lasts (the caller decides that).
pub fn headers(
    scheme: SignatureScheme,
    event_id: &str,
    current: &str,
    previous: Option<&str>,
    timestamp: u64,
    body: &[u8],
) -> Result<Vec<(&'static str, String)>, standard::InvalidSecret> {
    let mut out = Vec::with_capacity(4);
    match scheme {
        SignatureScheme::Hallway => {
            out.push((HEADER_NAME, sign_with(current, previous, timestamp, body)));
        }
        SignatureScheme::Standard => {
            // The spec asks that the signed id hold no `.`, which separates the signed parts.
            let msg_id = header_id(event_id, true);
            let mut signatures = standard::sign(current, &msg_id, timestamp, body)?;
            if let Some(previous) = previous {
                signatures.push(' ');
                signatures.push_str(&standard::sign(previous, &msg_id, timestamp, body)?);
            }
            out.push((standard::ID_HEADER, msg_id.into_owned()));
            out.push((standard::TIMESTAMP_HEADER, timestamp.to_string()));
            out.push((standard::SIGNATURE_HEADER, signatures));
        }
    }
    out.push((EVENT_ID_HEADER, header_id(event_id, false).into_owned()));
    Ok(out)
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
                let parsed = unix_seconds(value)
                    .ok_or(VerifyError::Malformed("t= is not a Unix timestamp"))?;
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
    judge(
        parsed.timestamp,
        now_s,
        tolerance_s,
        &parsed.signatures,
        || Ok(mac(secret, &parsed.timestamp_text, body)),
    )
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
