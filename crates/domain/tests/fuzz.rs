//! Fuzzing the parsers that take outside input (proptest over arbitrary and structured bytes,
//! as cargo-fuzz needs a nightly toolchain): the publish body (`envelope::prepare`) and the
//! signature header (`signature::parse` / `verify`). Nothing panics; what is accepted builds a
//! well-formed envelope; what is well-formed is accepted.
//!
//! Each property runs a bounded number of cases (a few seconds in a debug build); set
//! `PROPTEST_CASES` to run more. `tests/signature.rs` already covers arbitrary strings,
//! header-like strings and sign/verify round trips; the shapes here are different ones.

use hallway_domain::envelope::{envelope, prepare};
use hallway_domain::signature::{compute, parse, sign, verify, VerifyError, MAX_HEADER_BYTES};
use hallway_domain::SESSION_PROCESSING_COMPLETED as TYPE;
use hallway_domain::{AccountId, EventId, Policy, Rejection, Timestamp, API_VERSION};
use proptest::prelude::*;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;
use std::fmt;

fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const ENGINE_KEYS: [&str; 5] = ["id", "type", "created_at", "api_version", "account"];

/// A JSON object's keys in document order (values are checked for grammar, then skipped).
struct Keys(Vec<String>);

impl<'de> Deserialize<'de> for Keys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Keys;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
                let mut keys = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    map.next_value::<IgnoredAny>()?;
                    keys.push(k);
                }
                Ok(Keys(keys))
            }
        }
        d.deserialize_map(V)
    }
}

/// Checks what `prepare` returned for `raw`: never a panic (the caller got here), and when
/// accepted, an envelope that is a JSON object starting with the engine's five keys and then
/// exactly the host's other keys in the order posted.
fn check_prepare(raw: &[u8], policy: &Policy) -> Result<(), TestCaseError> {
    let result = prepare(raw, policy);
    if raw.len() > policy.max_payload_bytes {
        prop_assert!(
            matches!(result, Err(Rejection::PayloadTooLarge { .. })),
            "an oversized body gave {:?}",
            result
        );
        return Ok(());
    }
    let Ok(p) = result else {
        return Ok(());
    };
    prop_assert!(policy.knows_event_type(&p.event_type));
    prop_assert!(!p.project_id.as_str().trim().is_empty());
    let id = p
        .event_id
        .clone()
        .unwrap_or_else(|| EventId::from("evt_fresh"));
    let name = "Acme \"Research\" \u{2713}\n";
    let body = envelope(
        &id,
        &p.event_type,
        Timestamp(1_768_059_000_123),
        &AccountId::from("acc_1"),
        name,
        &p.fields_json,
    );
    let keys: Keys = serde_json::from_str(&body)
        .map_err(|e| TestCaseError::fail(format!("the envelope is not JSON ({e}): {body}")))?;
    prop_assert_eq!(&keys.0[..5], &ENGINE_KEYS[..]);
    let posted: Keys = serde_json::from_slice(raw).expect("prepare accepted it, so it parses");
    let host: Vec<String> = posted
        .0
        .into_iter()
        .filter(|k| !ENGINE_KEYS.contains(&k.as_str()))
        .collect();
    prop_assert_eq!(&keys.0[5..], &host[..]);
    // Whenever the posted body is strict JSON, so is the envelope, with the engine's values.
    if serde_json::from_slice::<Value>(raw).is_ok() {
        let v: Value = serde_json::from_str(&body)
            .map_err(|e| TestCaseError::fail(format!("strict parse failed ({e}): {body}")))?;
        prop_assert_eq!(v["id"].as_str(), Some(id.as_str()));
        prop_assert_eq!(v["type"].as_str(), Some(p.event_type.as_str()));
        prop_assert_eq!(v["api_version"].as_str(), Some(API_VERSION));
        prop_assert_eq!(v["created_at"].as_str(), Some("2026-01-10T15:30:00.123Z"));
        prop_assert_eq!(
            &v["account"],
            &serde_json::json!({"id": "acc_1", "name": name})
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Generators of publish bodies.

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "id", "type", "project", "account", "created_at", "api_version", "session", "_test",
        ])
        .prop_map(str::to_owned),
        3 => "[a-z_]{1,8}",
        1 => any::<String>(),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        "[a-z0-9 _-]{0,12}".prop_map(Value::String),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// The members of a publish body, in order (duplicates allowed): usually a valid `type` and
/// `project`, sometimes not; an `id` of any shape or none; any other fields.
fn members() -> impl Strategy<Value = Vec<(String, Value)>> {
    let type_ = prop_oneof![
        6 => Just(Some(Value::from(TYPE))),
        1 => Just(None),
        1 => json_value().prop_map(Some),
    ];
    let project = prop_oneof![
        4 => "[a-zA-Z0-9_]{1,12}".prop_map(|id| Some(serde_json::json!({"id": id, "name": "P"}))),
        1 => any::<String>().prop_map(|id| Some(serde_json::json!({"id": id}))),
        1 => Just(None),
        1 => json_value().prop_map(Some),
    ];
    let id = prop_oneof![
        3 => Just(None),
        3 => "[a-zA-Z0-9_.:-]{1,40}".prop_map(|s| Some(Value::from(s))),
        1 => json_value().prop_map(Some),
        1 => any::<String>().prop_map(|s| Some(Value::from(s))),
    ];
    let extra = prop::collection::vec((key(), json_value()), 0..6);
    (type_, project, id, extra)
        .prop_map(|(t, p, id, extra)| {
            let mut m: Vec<(String, Value)> = extra;
            for (k, v) in [("type", t), ("project", p), ("id", id)] {
                if let Some(v) = v {
                    m.push((k.to_owned(), v));
                }
            }
            m
        })
        .prop_shuffle()
}

fn render(members: &[(String, Value)]) -> String {
    let parts: Vec<String> = members
        .iter()
        .map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), v))
        .collect();
    format!("{{{}}}", parts.join(","))
}

/// A byte-level change that is likely to matter to a JSON parser.
fn damage() -> impl Strategy<Value = (usize, u8, u8)> {
    let byte = prop_oneof![
        prop::sample::select(b"{}[]\",:\\0123456789eE.-+ntfu \t\n".to_vec()),
        any::<u8>(),
    ];
    (any::<usize>(), 0u8..4, byte)
}

fn apply_damage(raw: &mut Vec<u8>, (at, op, byte): (usize, u8, u8)) {
    if raw.is_empty() {
        raw.push(byte);
        return;
    }
    let at = at % raw.len();
    match op {
        0 => raw[at] = byte,
        1 => raw.insert(at, byte),
        2 => {
            raw.remove(at);
        }
        _ => raw.truncate(at),
    }
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn prepare_never_panics_on_arbitrary_bytes(raw in prop::collection::vec(any::<u8>(), 0..1024)) {
        check_prepare(&raw, &Policy::default())?;
    }

    #[test]
    fn prepare_never_panics_on_json_like_bodies(
        members in members(),
        damages in prop::collection::vec(damage(), 0..3),
        small_limit in prop::option::weighted(0.2, 0usize..400),
    ) {
        let mut raw = render(&members).into_bytes();
        for d in damages {
            apply_damage(&mut raw, d);
        }
        let policy = Policy {
            max_payload_bytes: small_limit.unwrap_or(1 << 20),
            ..Policy::default()
        };
        check_prepare(&raw, &policy)?;
    }

    /// No false refusals: an object with a known type, a project with an id, a valid id (or
    /// none) and distinct keys is accepted, whatever else it carries.
    #[test]
    fn well_formed_events_are_accepted(
        project in "[a-zA-Z0-9_]{1,12}",
        id in prop::option::of("[a-zA-Z0-9_.:-]{1,40}"),
        extra in prop::collection::vec(("[a-z_]{1,8}", json_value()), 0..6),
    ) {
        let mut members = vec![
            ("type".to_owned(), Value::from(TYPE)),
            ("project".to_owned(), serde_json::json!({"id": project})),
        ];
        if let Some(id) = &id {
            members.push(("id".to_owned(), Value::from(id.clone())));
        }
        for (k, v) in extra {
            // `id` is the idempotency id: only a string is well formed (with no id given,
            // the generator may pick the name itself).
            if k != "id" && !members.iter().any(|(seen, _)| *seen == k) {
                members.push((k, v));
            }
        }
        let raw = render(&members);
        let p = prepare(raw.as_bytes(), &Policy::default());
        prop_assert!(p.is_ok(), "{} was refused: {:?}", raw, p);
        let p = p.unwrap();
        prop_assert_eq!(p.event_id.map(|e| e.as_str().to_owned()), id);
        prop_assert_eq!(p.project_id.as_str(), project.as_str());
        check_prepare(raw.as_bytes(), &Policy::default())?;
    }
}

// ---------------------------------------------------------------------------------------------
// The signature header.

const SECRET: &str = "whsec_fuzz";
const NOW: u64 = 1_768_059_000;

proptest! {
    #![proptest_config(config(1024))]

    /// A valid header changed a little verifies only if its `t` digits and its MAC survived:
    /// no change to the text can make a different header pass.
    #[test]
    fn damaged_headers_verify_only_when_t_and_mac_survive(
        body in prop::collection::vec(any::<u8>(), 0..64),
        skew in 0u64..=300,
        damages in prop::collection::vec(damage(), 1..4),
    ) {
        let header = sign(SECRET, NOW, &body);
        let mut bytes = header.clone().into_bytes();
        for d in damages {
            apply_damage(&mut bytes, d);
        }
        let Ok(h) = String::from_utf8(bytes) else { return Ok(()) };
        let parsed = parse(&h);
        let verified = verify(SECRET, &h, &body, NOW + skew, 300);
        if verified.is_ok() {
            let p = parsed.expect("verified headers parse");
            prop_assert_eq!(p.timestamp_text, NOW.to_string());
            let mac = compute(SECRET, NOW, &body);
            prop_assert!(p.signatures.iter().any(|s| hex::encode(s) == mac));
        }
    }

    /// Lookalikes of the header's syntax from other scripts (full-width digits and signs,
    /// Arabic-Indic digits, invisible and non-breaking spaces, combining marks) are never
    /// taken for it.
    #[test]
    fn unicode_lookalikes_are_not_syntax(
        pieces in prop::collection::vec(
            prop::sample::select(vec![
                "t=", "v1=", ",", "=", " ", "1768059000", "\u{FF54}=", "v\u{FF11}=", "\u{FF0C}",
                "\u{FF1D}", "\u{0661}\u{0667}\u{0666}\u{0668}", "\u{FF11}\u{FF17}", "\u{00A0}",
                "\u{200B}", "\u{2007}", "\u{3000}", "t\u{0301}=", "\u{FEFF}", "\u{1D7CF}",
                "e537e4c858fdb8207f199e8974478e7a36067a4fbf3b56837e7ae141ef9afc0f",
                "\u{0435}537e4c858fdb8207f199e8974478e7a36067a4fbf3b56837e7ae141ef9afc0f",
            ]),
            0..10,
        ),
    ) {
        let h = pieces.concat();
        if let Ok(p) = parse(&h) {
            prop_assert!(!p.timestamp_text.is_empty());
            prop_assert!(p.timestamp_text.bytes().all(|b| b.is_ascii_digit()), "{:?}", h);
            prop_assert!(!p.signatures.is_empty());
        }
        let _ = verify(SECRET, &h, b"{}", NOW, 300);
    }

    /// Headers around the length limit, made of many valid entries: parsed whole below the
    /// limit, refused above it, never panicking either side.
    #[test]
    fn headers_near_the_length_limit(
        entries in 0usize..80,
        pad in 0usize..70,
        extra_scheme in any::<bool>(),
    ) {
        let mac = compute(SECRET, NOW, b"{}");
        let mut h = format!("t={NOW}");
        for _ in 0..entries {
            h.push_str(",v1=");
            h.push_str(&mac);
        }
        if extra_scheme {
            h.push_str(",v0=");
            h.push_str(&"a".repeat(pad));
        }
        let parsed = parse(&h);
        if h.len() > MAX_HEADER_BYTES {
            prop_assert_eq!(parsed, Err(VerifyError::Malformed("header too long")));
        } else if entries == 0 {
            prop_assert_eq!(parsed, Err(VerifyError::Malformed("missing v1=")));
        } else {
            let p = parsed.expect("a valid header under the limit parses");
            prop_assert_eq!(p.signatures.len(), entries);
            prop_assert_eq!(verify(SECRET, &h, b"{}", NOW, 0), Ok(()));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Regressions of bugs this suite found.

/// Host fields are kept as raw JSON text, which alone checks only the grammar; `prepare` also
/// refuses what strict JSON parsers refuse: nesting 100,000 deep (serde_json's limit is 128),
/// a number out of every float's range, a lone UTF-16 surrogate. Every attempt of such an event
/// would fail at a receiver that parses it.
#[test]
fn prepare_refuses_what_strict_json_parsers_refuse() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let valid = format!(r#""type":"{TYPE}","project":{{"id":"p"}}"#);
    let cases = [
        format!(r#"{{{valid},"session":{deep}}}"#),
        format!(r#"{{"type":"{TYPE}","project":{{"id":"p","x":{deep}}}}}"#),
        format!(r#"{{{valid},"n":1e999999}}"#),
        format!(r#"{{{valid},"s":"\ud800"}}"#),
    ];
    let mut accepted = Vec::new();
    for raw in &cases {
        assert!(
            serde_json::from_str::<Value>(raw).is_err(),
            "strict parsers refuse it"
        );
        if prepare(raw.as_bytes(), &Policy::default()).is_ok() {
            accepted.push(raw.chars().take(80).collect::<String>());
        }
    }
    assert!(accepted.is_empty(), "accepted: {accepted:#?}");
}

/// Many fields are accepted, and a duplicate at the very end is still found.
#[test]
fn prepare_handles_many_fields_and_finds_a_late_duplicate() {
    let mut raw = format!(r#"{{"type":"{TYPE}","project":{{"id":"p"}}"#);
    for i in 0..50_000 {
        raw.push_str(&format!(r#","f{i}":0"#));
    }
    let unique = format!("{raw}}}");
    assert!(prepare(unique.as_bytes(), &Policy::default()).is_ok());
    let duplicated = format!(r#"{raw},"f7":1}}"#);
    assert!(matches!(
        prepare(duplicated.as_bytes(), &Policy::default()),
        Err(Rejection::InvalidRequest(_))
    ));
}
