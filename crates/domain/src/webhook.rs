//! Webhook configuration, secrets, and the validation rules for both.

use crate::policy::Policy;
use crate::rejection::Rejection;
use crate::target;
use crate::types::{DurationMs, ProjectId, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A webhook's signing secret as the engine keeps it: sealed by the runtime before it is
/// logged (the domain never sees the plaintext, which only signs requests and is shown to the
/// user once). Debug output is redacted all the same.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret(pub String);

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealedSecret(..)")
    }
}

/// The longest grace a rotation may give the previous secret: a week, as Stripe's longest.
pub const MAX_SECRET_GRACE: DurationMs = DurationMs::from_hours(7 * 24);

/// The secret a rotation replaced, still signing (after the current one) until `until`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousSecret {
    /// The replaced secret.
    pub secret: SealedSecret,
    /// The end of the grace: an attempt sent at or after it is signed by the current secret
    /// alone.
    pub until: Timestamp,
}

impl PreviousSecret {
    /// Whether it still signs an attempt sent at `now`.
    pub fn signs_at(&self, now: Timestamp) -> bool {
        now < self.until
    }
}

/// How a webhook's deliveries are signed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureScheme {
    /// The spec's `X-Hallway-Signature: t=..,v1=<hex>` (the default).
    #[default]
    Hallway,
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>`.
    Standard,
}

impl SignatureScheme {
    /// The scheme as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureScheme::Hallway => "hallway",
            SignatureScheme::Standard => "standard",
        }
    }

    /// The scheme the API spells `text`, if any.
    pub fn parse(text: &str) -> Option<SignatureScheme> {
        match text {
            "hallway" => Some(SignatureScheme::Hallway),
            "standard" => Some(SignatureScheme::Standard),
            _ => None,
        }
    }
}

/// What a user configures on a webhook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookConfig {
    /// A friendly name.
    pub name: String,
    /// The endpoint.
    pub url: String,
    /// Optional notes.
    pub description: Option<String>,
    /// Subscribed event types (at least one).
    pub events: Vec<String>,
    /// Projects to fire for; empty means every project.
    pub project_ids: Vec<ProjectId>,
    /// How its deliveries are signed.
    pub signature_scheme: SignatureScheme,
}

impl WebhookConfig {
    /// Checks every rule and returns the config normalised (trimmed name, deduplicated lists).
    pub fn validated(mut self, policy: &Policy) -> Result<WebhookConfig, Rejection> {
        self.name = self.name.trim().to_owned();
        if self.name.is_empty() {
            return Err(Rejection::EmptyName);
        }
        if self.name.chars().count() > policy.max_name_chars {
            return Err(Rejection::TooLong {
                field: "name",
                max: policy.max_name_chars,
            });
        }
        refuse_hidden_chars("name", &self.name, false)?;
        if let Some(d) = &self.description {
            refuse_hidden_chars("description", d, true)?;
            if d.chars().count() > policy.max_description_chars {
                return Err(Rejection::TooLong {
                    field: "description",
                    max: policy.max_description_chars,
                });
            }
        }
        target::validate_url(&self.url, policy)?;
        if self.events.is_empty() {
            return Err(Rejection::NoEventTypes);
        }
        if let Some(unknown) = self.events.iter().find(|e| !policy.knows_event_type(e)) {
            return Err(Rejection::UnknownEventType(unknown.clone()));
        }
        dedup_keep_order(&mut self.events);
        if self.project_ids.len() > policy.max_project_filters {
            return Err(Rejection::TooMany {
                field: "project_ids",
                max: policy.max_project_filters,
            });
        }
        if self.project_ids.iter().any(|p| p.0.trim().is_empty()) {
            return Err(Rejection::EmptyProjectId);
        }
        for p in &self.project_ids {
            refuse_hidden_chars("project_ids", p.as_str(), false)?;
        }
        dedup_keep_order(&mut self.project_ids);
        Ok(self)
    }

    /// Whether an event of `event_type` in `project` goes to this webhook.
    pub fn matches(&self, event_type: &str, project: &ProjectId) -> bool {
        self.events.iter().any(|e| e == event_type)
            && (self.project_ids.is_empty() || self.project_ids.contains(project))
    }
}

/// Refuses control characters (line breaks and tabs too, unless `multiline`) and the
/// bidirectional embeddings, overrides and isolates, which make text display as something
/// other than what it is (a name that reads "Slack" in a list but is not).
pub fn refuse_hidden_chars(
    field: &'static str,
    text: &str,
    multiline: bool,
) -> Result<(), Rejection> {
    let hidden = |c: char| {
        (c.is_control() && !(multiline && (c == '\n' || c == '\t' || c == '\r')))
            || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    };
    match text.chars().find(|c| hidden(*c)) {
        None => Ok(()),
        Some(c) => Err(Rejection::InvalidField {
            field,
            message: format!(
                "must not contain control characters or bidirectional overrides (found U+{:04X})",
                u32::from(c)
            ),
        }),
    }
}

fn dedup_keep_order<T: PartialEq + Clone>(items: &mut Vec<T>) {
    let mut seen: Vec<T> = Vec::with_capacity(items.len());
    items.retain(|x| {
        if seen.contains(x) {
            false
        } else {
            seen.push(x.clone());
            true
        }
    });
}
