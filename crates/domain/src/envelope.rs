//! The delivered payload: the host's event wrapped in the spec's envelope, and the sample
//! payload of test sends.

use crate::policy::{Policy, API_VERSION};
use crate::rejection::Rejection;
use crate::types::{AccountId, EventId, ProjectId, Timestamp};
use serde::Deserialize;
use std::borrow::Cow;

/// Longest event id a host may give, in bytes.
pub const MAX_EVENT_ID_BYTES: usize = 255;

/// Fields the engine sets itself; a host's values for them are replaced.
const ENGINE_FIELDS: [&str; 5] = ["id", "type", "created_at", "api_version", "account"];

/// A host's event, checked and reduced to what the envelope needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedEvent {
    /// The host's idempotency id, if it gave one.
    pub event_id: Option<EventId>,
    /// The event type.
    pub event_type: String,
    /// `project.id`, which webhook filters match on.
    pub project_id: ProjectId,
    /// The host's other fields, serialised in their original order, each preceded by a comma.
    pub fields_json: String,
    /// What a repeat of this event's id is compared by.
    pub digest: crate::types::BodyDigest,
}

/// Checks a published body (raw JSON as posted) and prepares it for the envelope.
///
/// Malformed JSON and wrong types are `InvalidRequest`; a missing or unknown `type`, a missing
/// `project.id` or a bad `id` are field rejections; an oversized body is `PayloadTooLarge`.
pub fn prepare(raw: &[u8], policy: &Policy) -> Result<PreparedEvent, Rejection> {
    if raw.len() > policy.max_payload_bytes {
        return Err(Rejection::PayloadTooLarge {
            size: raw.len(),
            max: policy.max_payload_bytes,
        });
    }
    // Checked as strictly as a full parse: raw values alone check only the grammar, while
    // receivers' strict parsers also refuse deep nesting, numbers out of range and lone
    // surrogates, and parsers disagree on which of two repeated members wins.
    let members = crate::json::object_members(raw)
        .map_err(|e| Rejection::InvalidRequest(format!("invalid JSON body: {e}")))?;
    let field = |name: &str| members.iter().find(|(k, _)| k.0 == name).map(|(_, v)| *v);
    let event_type: String = match field("type") {
        None => return Err(Rejection::MissingField("type")),
        Some(v) => string_field(v, "type")?,
    };
    if event_type.is_empty() {
        return Err(Rejection::MissingField("type"));
    }
    if !policy.knows_event_type(&event_type) {
        return Err(Rejection::UnknownPublishedType(event_type));
    }
    let event_id = match field("id") {
        None | Some("null") => None,
        Some(v) => {
            let id = string_field(v, "id")?;
            if id.is_empty()
                || id.len() > MAX_EVENT_ID_BYTES
                || id.chars().any(|c| c.is_control() || c.is_whitespace())
            {
                return Err(Rejection::InvalidField {
                    field: "id",
                    message: format!("must be 1 to {MAX_EVENT_ID_BYTES} bytes without whitespace"),
                });
            }
            Some(EventId::from(id))
        }
    };
    let project_id = match field("project") {
        // Without the project rule, an event without a project matches only webhooks
        // without a project filter (no filter lists the empty id).
        None | Some("null") if !policy.require_project => ProjectId::from(""),
        None | Some("null") => return Err(Rejection::MissingField("project.id")),
        Some(v) => {
            #[derive(Deserialize)]
            struct Project {
                id: Option<String>,
            }
            let p: Project = serde_json::from_str(v).map_err(|e| {
                Rejection::InvalidRequest(format!(
                    "project: must be an object with a string id: {e}"
                ))
            })?;
            match p.id {
                Some(id) if !id.trim().is_empty() => ProjectId::from(id),
                None if !policy.require_project => ProjectId::from(""),
                _ => return Err(Rejection::MissingField("project.id")),
            }
        }
    };
    let mut fields_json = String::with_capacity(raw.len() + 16);
    for (k, v) in &members {
        if ENGINE_FIELDS.contains(&k.0.as_ref()) {
            continue;
        }
        fields_json.push(',');
        match &k.0 {
            // Borrowed means written without escapes: the posted text is already its JSON.
            Cow::Borrowed(name) => {
                fields_json.push('"');
                fields_json.push_str(name);
                fields_json.push('"');
            }
            Cow::Owned(name) => push_json_string(&mut fields_json, name),
        }
        fields_json.push(':');
        fields_json.push_str(v);
    }
    let digest = crate::types::BodyDigest::of(&event_type, &fields_json);
    Ok(PreparedEvent {
        event_id,
        event_type,
        project_id,
        fields_json,
        digest,
    })
}

fn string_field(raw: &str, name: &'static str) -> Result<String, Rejection> {
    serde_json::from_str::<String>(raw)
        .map_err(|_| Rejection::InvalidRequest(format!("{name}: must be a string")))
}

/// Appends `s` as a JSON string, escaped exactly as serde_json escapes it (quotes,
/// backslashes and control characters; nothing else).
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    let mut plain = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[plain..i]);
        if escape.is_empty() {
            out.push_str(&format!("\\u{b:04x}"));
        } else {
            out.push_str(escape);
        }
        plain = i + 1;
    }
    out.push_str(&s[plain..]);
    out.push('"');
}

/// The body delivered for an event: `id`, `type`, `created_at`, `api_version`, `account`,
/// then the host's fields in the order posted.
pub fn envelope(
    event_id: &EventId,
    event_type: &str,
    created_at: Timestamp,
    account_id: &AccountId,
    account_name: &str,
    fields_json: &str,
) -> String {
    let mut out = String::with_capacity(fields_json.len() + 200);
    out.push_str("{\"id\":");
    push_json_string(&mut out, event_id.as_str());
    out.push_str(",\"type\":");
    push_json_string(&mut out, event_type);
    out.push_str(",\"created_at\":");
    push_json_string(&mut out, &created_at.to_rfc3339());
    out.push_str(",\"api_version\":");
    push_json_string(&mut out, API_VERSION);
    out.push_str(",\"account\":{\"id\":");
    push_json_string(&mut out, account_id.as_str());
    out.push_str(",\"name\":");
    push_json_string(&mut out, account_name);
    out.push('}');
    out.push_str(fields_json);
    out.push('}');
    out
}

/// The body a test send delivers: an example event (its own fields from the catalog) in the
/// envelope, marked `"_test": true`.
pub fn test_payload(
    event_id: &EventId,
    event_type: &str,
    created_at: Timestamp,
    account_id: &AccountId,
    account_name: &str,
    example_fields: &str,
) -> String {
    let fields = format!("{example_fields},\"_test\":true");
    envelope(
        event_id,
        event_type,
        created_at,
        account_id,
        account_name,
        &fields,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::SESSION_PROCESSING_COMPLETED;

    #[test]
    fn json_strings_are_escaped_exactly_as_serde_json_escapes_them() {
        let mut every_control: String = (0u8..0x20).map(char::from).collect();
        every_control.push_str("\"\\/é\u{7f}\u{2028}😀 plain");
        for s in ["", "plain", "a\"b", "\\", every_control.as_str()] {
            let mut out = String::new();
            push_json_string(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn envelope_puts_engine_fields_first_and_keeps_host_order() {
        let raw = br#"{"type":"session.processing.completed","id":"evt_1","project":{"id":"prj_1","name":"P"},"zeta":1,"alpha":[1,2]}"#;
        let p = prepare(raw, &Policy::default()).unwrap();
        assert_eq!(p.event_id, Some(EventId::from("evt_1")));
        assert_eq!(p.project_id, ProjectId::from("prj_1"));
        let body = envelope(
            &EventId::from("evt_1"),
            &p.event_type,
            Timestamp(1_768_059_000_000),
            &AccountId::from("acc_1"),
            "Acme \"Research\"",
            &p.fields_json,
        );
        assert_eq!(
            body,
            r#"{"id":"evt_1","type":"session.processing.completed","created_at":"2026-01-10T15:30:00.000Z","api_version":"2026-01-01","account":{"id":"acc_1","name":"Acme \"Research\""},"project":{"id":"prj_1","name":"P"},"zeta":1,"alpha":[1,2]}"#
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["account"]["name"], "Acme \"Research\"");
    }

    #[test]
    fn engine_fields_posted_by_the_host_are_replaced() {
        let raw = br#"{"type":"session.processing.completed","project":{"id":"p"},"account":{"id":"evil"},"api_version":"1999","created_at":"x"}"#;
        let p = prepare(raw, &Policy::default()).unwrap();
        assert_eq!(p.fields_json, r#","project":{"id":"p"}"#);
    }

    #[test]
    fn publish_body_rules() {
        let policy = Policy::default();
        type Case = (&'static [u8], fn(&Rejection) -> bool);
        let cases: [Case; 9] = [
            (b"not json", |r| matches!(r, Rejection::InvalidRequest(_))),
            (b"[1,2]", |r| matches!(r, Rejection::InvalidRequest(_))),
            (br#"{"project":{"id":"p"}}"#, |r| {
                *r == Rejection::MissingField("type")
            }),
            (br#"{"type":7,"project":{"id":"p"}}"#, |r| {
                matches!(r, Rejection::InvalidRequest(_))
            }),
            (br#"{"type":"nope","project":{"id":"p"}}"#, |r| {
                matches!(r, Rejection::UnknownPublishedType(_))
            }),
            (br#"{"type":"session.processing.completed"}"#, |r| {
                *r == Rejection::MissingField("project.id")
            }),
            (
                br#"{"type":"session.processing.completed","project":{"name":"x"}}"#,
                |r| *r == Rejection::MissingField("project.id"),
            ),
            (
                br#"{"type":"session.processing.completed","project":"p"}"#,
                |r| matches!(r, Rejection::InvalidRequest(_)),
            ),
            (
                br#"{"type":"session.processing.completed","project":{"id":"p"},"id":""}"#,
                |r| matches!(r, Rejection::InvalidField { field: "id", .. }),
            ),
        ];
        for (raw, ok) in cases {
            let r = prepare(raw, &policy).unwrap_err();
            assert!(ok(&r), "{}: {r:?}", String::from_utf8_lossy(raw));
        }
        let dup = br#"{"type":"session.processing.completed","project":{"id":"p"},"a":1,"a":2}"#;
        assert!(matches!(
            prepare(dup, &policy),
            Err(Rejection::InvalidRequest(_))
        ));
    }

    #[test]
    fn oversized_payload_is_rejected() {
        let policy = Policy {
            max_payload_bytes: 64,
            ..Policy::default()
        };
        let raw = format!(
            r#"{{"type":"session.processing.completed","project":{{"id":"p"}},"pad":"{}"}}"#,
            "x".repeat(64)
        );
        assert!(matches!(
            prepare(raw.as_bytes(), &policy),
            Err(Rejection::PayloadTooLarge { max: 64, .. })
        ));
    }

    #[test]
    fn a_test_payload_is_the_catalog_example_marked_test() {
        let catalog = crate::catalog::Catalog::default();
        let t = &catalog.types()[0];
        let body = test_payload(
            &EventId::from("evt_t"),
            &t.name,
            Timestamp(1_768_059_000_000),
            &AccountId::from("acc_1"),
            "Acme",
            t.example_fields(),
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["_test"], true);
        assert_eq!(v["id"], "evt_t");
        assert_eq!(v["type"], SESSION_PROCESSING_COMPLETED);
        assert_eq!(v["api_version"], API_VERSION);
        for key in [
            "project",
            "session",
            "respondent_attributes",
            "transcript",
            "insights",
            "links",
        ] {
            assert!(!v[key].is_null(), "{key}");
        }
        assert!(body.starts_with(r#"{"id":"evt_t","type":"#));
        assert!(body.ends_with(r#","_test":true}"#));
    }
}
