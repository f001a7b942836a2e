//! The event catalog: the event types webhooks may subscribe to and hosts may publish, each
//! with a description and an example of its own fields. It is configuration (a host declares
//! its types), read from JSON text here and from a file by the host; the spec's one type,
//! `session.processing.completed`, is the default.

use crate::envelope;
use crate::policy::{Policy, SESSION_PROCESSING_COMPLETED};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Longest event type name, in bytes.
pub const MAX_NAME_BYTES: usize = 100;

/// Most event types one catalog may declare.
pub const MAX_TYPES: usize = 200;

/// One event type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventType {
    /// Its name, as events' `type` and webhooks' `events` spell it.
    pub name: String,
    /// What it means, for the people choosing what to subscribe to.
    pub description: String,
    /// An example of the event's own fields (a JSON object, as a host publishes it without
    /// `type` and `id`), in its members' order: what test sends deliver, inside the envelope.
    pub example: String,
    /// The example's members as the envelope appends them (each preceded by a comma).
    fields: String,
}

impl EventType {
    /// The example's members as the envelope appends them (each preceded by a comma).
    pub fn example_fields(&self) -> &str {
        &self.fields
    }

    /// The type with its example checked as a publish of it under `policy`'s rules.
    fn new(
        name: String,
        description: String,
        example: String,
        policy: &Policy,
    ) -> Result<EventType, String> {
        if !example.starts_with('{') {
            return Err("example must be a JSON object".into());
        }
        let raw = if example == "{}" {
            format!("{{\"type\":{}}}", quote(&name))
        } else {
            format!("{{\"type\":{},{}", quote(&name), &example[1..])
        };
        let mut rules = policy.clone();
        rules.event_types = vec![name.clone()];
        let prepared = envelope::prepare(raw.as_bytes(), &rules)
            .map_err(|r| format!("example does not publish: {r}"))?;
        Ok(EventType {
            name,
            description,
            example,
            fields: prepared.fields_json,
        })
    }
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// The event types a deployment declares, in the order declared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Catalog {
    types: Vec<EventType>,
}

/// A catalog entry as the JSON file holds it.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    description: String,
    example: Box<RawValue>,
}

/// The spec's example payload without the engine's fields: what the default catalog shows.
const SPEC_EXAMPLE: &str = r#"{
  "project": {"id": "prj_xyz789", "name": "Customer Discovery Q1", "status": "active"},
  "session": {
    "id": "ses_def456",
    "respondent_name": "Jane Doe",
    "respondent_email": "jane.doe@example.com",
    "duration_seconds": 342,
    "completed_at": "2026-01-10T15:25:00.000Z"
  },
  "respondent_attributes": [
    {"category_name": "Department", "option_value": "Engineering"},
    {"category_name": "Role", "option_value": "Manager"}
  ],
  "transcript": {
    "id": "trx_ghi789",
    "full_text": "Interviewer: Hello and welcome...\n\nRespondent: Thank you for having me...",
    "word_count": 1240
  },
  "insights": {"count": 8, "objectives_covered": 3},
  "links": {
    "session": "https://app.hallwayai.com/projects/prj_xyz789/sessions/ses_def456",
    "project": "https://app.hallwayai.com/projects/prj_xyz789"
  }
}"#;

impl Default for Catalog {
    /// The spec's catalog: `session.processing.completed` with the spec's example payload.
    fn default() -> Self {
        let name = SESSION_PROCESSING_COMPLETED.to_owned();
        let description =
            "An interview session was fully processed: its transcript and insights are ready."
                .to_owned();
        let example = crate::json::minify(SPEC_EXAMPLE);
        // The spec's example publishes (a unit test says so); should it ever not, the type is
        // still declared, with its fields shown and none delivered by test sends.
        let fields = EventType::new(
            name.clone(),
            description.clone(),
            example.clone(),
            &Policy::default(),
        )
        .map(|t| t.fields)
        .unwrap_or_default();
        Catalog {
            types: vec![EventType {
                name,
                description,
                example,
                fields,
            }],
        }
    }
}

impl Catalog {
    /// Reads a catalog from JSON text: an array of `{"name","description","example"}`.
    /// Each name must be 1 to 100 bytes of lowercase letters, digits, `.`, `_` or `-`, and
    /// unique; each example an object that publishes under `policy`'s rules (with
    /// `project.id` while the project rule is on). The message says what is wrong and where.
    pub fn from_json(text: &str, policy: &Policy) -> Result<Catalog, String> {
        crate::json::check(text.as_bytes()).map_err(|e| format!("not valid JSON: {e}"))?;
        let entries: Vec<Entry> = serde_json::from_str(text).map_err(|e| {
            format!("must be an array of {{\"name\",\"description\",\"example\"}}: {e}")
        })?;
        if entries.is_empty() || entries.len() > MAX_TYPES {
            return Err(format!("must declare 1 to {MAX_TYPES} event types"));
        }
        let mut types: Vec<EventType> = Vec::with_capacity(entries.len());
        for (i, e) in entries.into_iter().enumerate() {
            let at = format!(
                "entry {} ({:?})",
                i + 1,
                crate::types::Echo(&e.name).to_string()
            );
            let valid_char = |b: u8| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_' || b == b'-'
            };
            if e.name.is_empty() || e.name.len() > MAX_NAME_BYTES || !e.name.bytes().all(valid_char)
            {
                return Err(format!(
                    "{at}: name must be 1 to {MAX_NAME_BYTES} bytes of lowercase letters, digits, '.', '_' or '-'"
                ));
            }
            if types.iter().any(|t| t.name == e.name) {
                return Err(format!("{at}: name is declared twice"));
            }
            // What a host would publish: the example must pass the same checks.
            let example = crate::json::minify(e.example.get());
            let description = e.description.trim().to_owned();
            let t = EventType::new(e.name, description, example, policy)
                .map_err(|why| format!("{at}: {why}"))?;
            types.push(t);
        }
        Ok(Catalog { types })
    }

    /// Every type, in the order declared.
    pub fn types(&self) -> &[EventType] {
        &self.types
    }

    /// A type by name.
    pub fn get(&self, name: &str) -> Option<&EventType> {
        self.types.iter().find(|t| t.name == name)
    }

    /// The names, in the order declared (what [`Policy::event_types`] holds).
    pub fn names(&self) -> Vec<String> {
        self.types.iter().map(|t| t.name.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_the_spec_s_type_with_its_example() {
        let c = Catalog::default();
        assert_eq!(c.names(), vec![SESSION_PROCESSING_COMPLETED.to_owned()]);
        let t = &c.types()[0];
        let v: serde_json::Value = serde_json::from_str(&t.example).unwrap();
        assert_eq!(v["project"]["id"], "prj_xyz789");
        assert_eq!(v["transcript"]["word_count"], 1240);
        // Order kept, whitespace inside strings kept.
        assert!(t.example.starts_with(r#"{"project":{"id":"prj_xyz789""#));
        assert!(t.example.contains("Hello and welcome...\\n\\nRespondent"));
        assert!(t.example_fields().starts_with(r#","project":{"#));
        assert!(t
            .example_fields()
            .ends_with(r#""project":"https://app.hallwayai.com/projects/prj_xyz789"}"#));
    }

    #[test]
    fn a_file_declares_types_and_bad_ones_are_named() {
        let policy = Policy::default();
        let c = Catalog::from_json(
            r#"[{"name":"invoice.paid","description":"Paid.","example":{"project":{"id":"p"},"amount":3}},
                {"name":"user.created","description":"New user.","example":{"project":{"id":"p"}}}]"#,
            &policy,
        )
        .unwrap();
        assert_eq!(c.names(), vec!["invoice.paid", "user.created"]);
        assert_eq!(
            c.get("invoice.paid").unwrap().example,
            r#"{"project":{"id":"p"},"amount":3}"#
        );
        for (text, says) in [
            ("[]", "1 to 200"),
            ("{}", "must be an array"),
            (
                r#"[{"name":"A","description":"","example":{}}]"#,
                "entry 1 (\"A\"): name",
            ),
            (
                r#"[{"name":"a","description":"","example":[]}]"#,
                "must be a JSON object",
            ),
            (
                r#"[{"name":"a","description":"","example":{}}]"#,
                "project.id",
            ),
            (
                r#"[{"name":"a","description":"","example":{"project":{"id":"p"}}},{"name":"a","description":"","example":{"project":{"id":"p"}}}]"#,
                "declared twice",
            ),
            (
                r#"[{"name":"a","description":"","example":{"project":{"id":"p"}},"extra":1}]"#,
                "unknown field",
            ),
            (
                r#"[{"name":"a","name":"b","description":"","example":{}}]"#,
                "not valid JSON",
            ),
        ] {
            let e = Catalog::from_json(text, &policy).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn without_the_project_rule_an_example_needs_no_project() {
        let policy = Policy {
            require_project: false,
            ..Policy::default()
        };
        let c =
            Catalog::from_json(r#"[{"name":"a","description":"","example":{}}]"#, &policy).unwrap();
        assert_eq!(c.get("a").unwrap().example_fields(), "");
    }
}
