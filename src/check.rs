//! What `listen` and `verify` check: a delivery's signature under either scheme, read from
//! the headers as received (`listen`) or as pasted (`verify`), the secret they check with, and
//! how a failure reads.

use crate::cli::SECRET_ENV;
use hallway_domain::signature::{self, standard, VerifyError};

/// A delivery's signature headers.
#[derive(Debug, PartialEq, Eq)]
pub enum Signed<'a> {
    /// `X-Hallway-Signature`'s value.
    Hallway(&'a str),
    /// Standard Webhooks' three headers' values.
    Standard {
        /// `webhook-id`.
        id: &'a str,
        /// `webhook-timestamp`.
        timestamp: &'a str,
        /// `webhook-signature`.
        signatures: &'a str,
    },
}

impl<'a> Signed<'a> {
    /// The signature headers among `headers` (name, value): Standard Webhooks' when any of
    /// its three is there (all three are then needed), else `X-Hallway-Signature`.
    pub fn find(headers: &[(&str, &'a str)]) -> Result<Signed<'a>, String> {
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v)
        };
        let id = get(standard::ID_HEADER);
        let timestamp = get(standard::TIMESTAMP_HEADER);
        let signatures = get(standard::SIGNATURE_HEADER);
        if id.is_none() && timestamp.is_none() && signatures.is_none() {
            return get(signature::HEADER_NAME)
                .map(Signed::Hallway)
                .ok_or_else(|| format!("missing {} header", signature::HEADER_NAME));
        }
        match (id, timestamp, signatures) {
            (Some(id), Some(timestamp), Some(signatures)) => Ok(Signed::Standard {
                id,
                timestamp,
                signatures,
            }),
            _ => {
                let missing: Vec<&str> = [
                    (standard::ID_HEADER, id),
                    (standard::TIMESTAMP_HEADER, timestamp),
                    (standard::SIGNATURE_HEADER, signatures),
                ]
                .iter()
                .filter(|(_, v)| v.is_none())
                .map(|(n, _)| *n)
                .collect();
                Err(format!("missing {} header", missing.join(" and ")))
            }
        }
    }

    /// Verifies against the raw body and secret at `now_s` (Unix seconds).
    pub fn verify(
        &self,
        secret: &str,
        body: &[u8],
        now_s: u64,
        tolerance_s: u64,
    ) -> Result<(), VerifyError> {
        match *self {
            Signed::Hallway(header) => signature::verify(secret, header, body, now_s, tolerance_s),
            Signed::Standard {
                id,
                timestamp,
                signatures,
            } => standard::verify(secret, id, timestamp, signatures, body, now_s, tolerance_s),
        }
    }
}

/// The secret from `--secret` or the environment, or how to give one.
pub fn require_secret(secret: Option<&str>) -> Result<&str, String> {
    match secret {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(format!(
            "no signing secret: set {SECRET_ENV} (e.g. `read -rs {SECRET_ENV} && export {SECRET_ENV}`) or pass --secret"
        )),
    }
}

/// Names a verification failure as `verify` and `listen` print it.
pub fn reason(e: &VerifyError) -> String {
    match e {
        VerifyError::Malformed(why) => format!("malformed ({why})"),
        VerifyError::Stale { age_s } => format!("stale (timestamp {age_s} s from now)"),
        VerifyError::Mismatch => "mismatch".to_owned(),
        VerifyError::InvalidSecret(e) => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_secret_says_where_to_put_it() {
        assert!(require_secret(None).unwrap_err().contains(SECRET_ENV));
        assert!(require_secret(Some("")).is_err());
        assert_eq!(require_secret(Some("whsec_x")), Ok("whsec_x"));
    }

    #[test]
    fn either_scheme_is_found_and_a_partial_standard_set_names_what_is_missing() {
        assert_eq!(
            Signed::find(&[("X-Hallway-Signature", "t=1,v1=ab")]),
            Ok(Signed::Hallway("t=1,v1=ab"))
        );
        let all = [
            ("webhook-id", "evt_1"),
            ("Webhook-Timestamp", "1"),
            ("webhook-signature", "v1,abc"),
            ("x-hallway-signature", "t=1,v1=ab"),
        ];
        assert_eq!(
            Signed::find(&all),
            Ok(Signed::Standard {
                id: "evt_1",
                timestamp: "1",
                signatures: "v1,abc"
            })
        );
        assert_eq!(
            Signed::find(&all[..1]),
            Err("missing webhook-timestamp and webhook-signature header".into())
        );
        assert_eq!(
            Signed::find(&[]),
            Err("missing X-Hallway-Signature header".into())
        );
    }
}
