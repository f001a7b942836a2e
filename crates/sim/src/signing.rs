//! What signed a request, read back from its headers under either scheme: the timestamp,
//! each signature entry in order, and how a given secret's entry for the same request reads.

use hallway_domain::signature::{self, standard};
use hallway_runtime::transport::OutgoingRequest;

/// A request's signatures.
pub(crate) struct Signed {
    /// `webhook-id` under Standard Webhooks; `None` under the spec's scheme.
    standard_id: Option<String>,
    /// Unix seconds, as signed.
    pub timestamp: u64,
    /// The entries in header order: the current secret's first, then the previous one's.
    pub entries: Vec<String>,
    body: Vec<u8>,
}

impl Signed {
    /// Reads the request's signature headers: exactly one scheme's, well formed.
    pub(crate) fn read(req: &OutgoingRequest) -> Result<Signed, String> {
        let header = |name: &str| {
            req.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let body = req.body.to_vec();
        match (
            header(signature::HEADER_NAME),
            header(standard::SIGNATURE_HEADER),
        ) {
            (Some(value), None) => {
                let parsed = signature::parse(value)
                    .map_err(|e| format!("malformed signature {value:?}: {e}"))?;
                let entries = value
                    .split(',')
                    .filter_map(|part| part.strip_prefix("v1="))
                    .map(str::to_owned)
                    .collect();
                Ok(Signed {
                    standard_id: None,
                    timestamp: parsed.timestamp,
                    entries,
                    body,
                })
            }
            (None, Some(value)) => {
                let id = header(standard::ID_HEADER).ok_or("no webhook-id header")?;
                let timestamp = header(standard::TIMESTAMP_HEADER)
                    .and_then(|t| t.parse().ok())
                    .ok_or("no webhook-timestamp in Unix seconds")?;
                Ok(Signed {
                    standard_id: Some(id.to_owned()),
                    timestamp,
                    entries: value.split(' ').map(str::to_owned).collect(),
                    body,
                })
            }
            (None, None) => Err("no signature header".into()),
            (Some(_), Some(_)) => Err("signature headers of both schemes".into()),
        }
    }

    /// The entry `secret` makes for this request under its scheme.
    pub(crate) fn entry(&self, secret: &str) -> String {
        match &self.standard_id {
            None => signature::compute(secret, self.timestamp, &self.body),
            Some(id) => standard::sign(secret, id, self.timestamp, &self.body).unwrap_or_default(),
        }
    }

    /// Which of `secrets` made entry `i`, if any.
    pub(crate) fn signer<'a>(
        &self,
        i: usize,
        mut secrets: impl Iterator<Item = &'a str>,
    ) -> Option<usize> {
        let entry = self.entries.get(i)?;
        secrets.position(|s| self.entry(s) == *entry)
    }
}
