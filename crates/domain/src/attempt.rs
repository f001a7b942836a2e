//! What an attempt sent and what came back, as delivery history keeps it for debugging. The
//! state machine never reads it: it rides on the outcome's event into the history record.

use serde::{Deserialize, Serialize};

/// Most bytes of a response body kept per attempt.
pub const MAX_RESPONSE_BODY_BYTES: usize = 4096;
/// Most bytes of response headers (names and values) kept per attempt; later ones are left out.
pub const MAX_RESPONSE_HEADER_BYTES: usize = 4096;
/// Most bytes of an error's description kept per attempt.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 512;

/// One attempt's request and response, bounded by the limits above (at most about 9 KiB
/// with the request's headers).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptDetail {
    /// Why no usable response came, in words ("tcp connect error: Connection refused (os
    /// error 111)"); `None` when a response arrived.
    pub error_message: Option<String>,
    /// The request's headers as sent, the signature included, in order (names lowercase).
    pub request_headers: Vec<(String, String)>,
    /// The response's headers, in order (names lowercase).
    pub response_headers: Vec<(String, String)>,
    /// The start of the response body, as text (bytes that are not UTF-8 are replaced).
    pub response_body: String,
    /// Whether the body went on past what is kept (or was not read to its end).
    pub response_body_truncated: bool,
}

impl AttemptDetail {
    /// Cuts every part to its limit, at character boundaries.
    pub fn bounded(mut self) -> AttemptDetail {
        if let Some(m) = &mut self.error_message {
            cut(m, MAX_ERROR_MESSAGE_BYTES);
        }
        if self.response_body.len() > MAX_RESPONSE_BODY_BYTES {
            cut(&mut self.response_body, MAX_RESPONSE_BODY_BYTES);
            self.response_body_truncated = true;
        }
        let mut used = 0;
        self.response_headers.retain(|(name, value)| {
            used += name.len() + value.len();
            used <= MAX_RESPONSE_HEADER_BYTES
        });
        self
    }
}

/// Shortens `text` to at most `max` bytes, at a character boundary.
fn cut(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_cuts_each_part_to_its_limit_at_character_boundaries() {
        let detail = AttemptDetail {
            error_message: Some("é".repeat(400)),
            request_headers: vec![("x-hallway-event-id".into(), "evt_1".into())],
            response_headers: (0..100)
                .map(|i| (format!("x-h{i}"), "v".repeat(100)))
                .collect(),
            response_body: "ü".repeat(3000),
            response_body_truncated: false,
        }
        .bounded();
        let m = detail.error_message.as_deref().unwrap_or("");
        assert!(m.len() <= MAX_ERROR_MESSAGE_BYTES && m.len() >= MAX_ERROR_MESSAGE_BYTES - 1);
        assert!(detail.response_body.len() <= MAX_RESPONSE_BODY_BYTES);
        assert!(detail.response_body_truncated);
        let header_bytes: usize = detail
            .response_headers
            .iter()
            .map(|(n, v)| n.len() + v.len())
            .sum();
        assert!(header_bytes <= MAX_RESPONSE_HEADER_BYTES);
        assert_eq!(
            detail.response_headers.len(),
            39,
            "whole headers only, in order"
        );
        assert_eq!(
            detail.request_headers.len(),
            1,
            "what was sent is kept whole"
        );
        let small = AttemptDetail {
            response_body: "ok".into(),
            ..AttemptDetail::default()
        };
        assert_eq!(small.clone().bounded(), small);
    }
}
