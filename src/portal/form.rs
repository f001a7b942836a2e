//! The webhook form (Add Webhook and Edit): its values, the engine's rejections mapped to
//! the field they name, and its markup.

use super::guard::Form;
use super::layout::csrf_field;
use super::session::Session;
use hallway_domain::{Rejection, Webhook, WebhookChanges};
use hallway_runtime::{EngineError, NewWebhook};
use maud::{html, Markup};

/// What the form holds, as typed.
#[derive(Clone, Debug, Default)]
pub struct WebhookForm {
    /// Name.
    pub name: String,
    /// URL.
    pub url: String,
    /// Description (empty: none).
    pub description: String,
    /// Ticked event types.
    pub events: Vec<String>,
    /// Project ids, comma- or space-separated (empty: all projects).
    pub projects: String,
}

impl WebhookForm {
    /// The values posted.
    pub fn from_form(f: &Form) -> WebhookForm {
        WebhookForm {
            name: f.get("name").unwrap_or("").to_owned(),
            url: f.get("url").unwrap_or("").trim().to_owned(),
            description: f.get("description").unwrap_or("").to_owned(),
            events: f.all("events"),
            projects: f.get("project_ids").unwrap_or("").to_owned(),
        }
    }

    /// A webhook's current values, for editing.
    pub fn from_webhook(w: &Webhook) -> WebhookForm {
        WebhookForm {
            name: w.config.name.clone(),
            url: w.config.url.clone(),
            description: w.config.description.clone().unwrap_or_default(),
            events: w.config.events.clone(),
            projects: w
                .config
                .project_ids
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    fn project_ids(&self) -> Vec<String> {
        self.projects
            .split([',', ' ', '\n', '\r', '\t'])
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    fn description(&self) -> Option<String> {
        let d = self.description.trim();
        (!d.is_empty()).then(|| d.to_owned())
    }

    /// The input of a create.
    pub fn to_new(&self) -> NewWebhook {
        NewWebhook {
            name: self.name.clone(),
            url: self.url.clone(),
            description: self.description(),
            events: self.events.clone(),
            project_ids: self.project_ids(),
            signature_scheme: hallway_domain::SignatureScheme::Hallway,
        }
    }

    /// The changes of an edit (every field of the form).
    pub fn to_changes(&self) -> WebhookChanges {
        WebhookChanges {
            name: Some(self.name.clone()),
            url: Some(self.url.clone()),
            description: Some(self.description()),
            events: Some(self.events.clone()),
            project_ids: Some(self.project_ids().into_iter().map(Into::into).collect()),
            enabled: None,
            signature_scheme: None,
        }
    }
}

/// The engine's refusal, next to the field it names, or above the form.
#[derive(Clone, Debug, Default)]
pub struct FormErrors {
    /// `(field, message)` pairs.
    pub fields: Vec<(&'static str, String)>,
    /// A refusal about the whole form (plan, limit).
    pub general: Option<String>,
}

impl FormErrors {
    fn of(&self, field: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, m)| m.as_str())
    }
}

fn field_of(r: &Rejection) -> Option<&'static str> {
    match r {
        Rejection::EmptyName => Some("name"),
        Rejection::InvalidUrl(_) | Rejection::HttpsRequired | Rejection::TargetRefused(_) => {
            Some("url")
        }
        Rejection::NoEventTypes | Rejection::UnknownEventType(_) => Some("events"),
        Rejection::EmptyProjectId => Some("project_ids"),
        Rejection::TooLong { field, .. }
        | Rejection::TooMany { field, .. }
        | Rejection::InvalidField { field, .. }
        | Rejection::MissingField(field) => Some(field),
        _ => None,
    }
}

/// Maps a rejection of a create or edit to the form; other engine errors are not the form's.
pub fn errors_from(e: EngineError) -> Result<FormErrors, EngineError> {
    let EngineError::Rejected(r) = e else {
        return Err(e);
    };
    let message = r.to_string();
    Ok(match field_of(&r) {
        Some(field) => {
            // The engine's message names the field first ("url: must use https://"); next
            // to the field, the name is redundant.
            let text = message
                .strip_prefix(field)
                .and_then(|m| m.strip_prefix(": "))
                .unwrap_or(&message);
            FormErrors {
                fields: vec![(field, capitalised(text))],
                general: None,
            }
        }
        None => FormErrors {
            fields: Vec::new(),
            general: Some(capitalised(&message)),
        },
    })
}

fn capitalised(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn error_line(id: &str, errors: &FormErrors, field: &str) -> Markup {
    html! {
        @if let Some(m) = errors.of(field) {
            p.field-error id={ (id) "-error" } { (m) }
        }
    }
}

fn described_by(id: &str, hint: bool, errors: &FormErrors, field: &str) -> Option<String> {
    let mut ids = Vec::new();
    if hint {
        ids.push(format!("{id}-hint"));
    }
    if errors.of(field).is_some() {
        ids.push(format!("{id}-error"));
    }
    (!ids.is_empty()).then(|| ids.join(" "))
}

/// The form's markup. `in_dialog`: its Cancel closes the dialog (a link back without script).
pub fn render(
    session: &Session,
    action: &str,
    submit: &str,
    values: &WebhookForm,
    errors: &FormErrors,
    event_types: &[String],
    prefix: &str,
) -> Markup {
    let id = |f: &str| format!("{prefix}-{f}");
    let invalid = |f: &str| errors.of(f).map(|_| "true");
    html! {
        form.webhook-form method="post" action=(action) {
            (csrf_field(session))
            @if let Some(g) = &errors.general {
                p.form-error role="alert" { (g) }
            }
            div.field {
                label for=(id("name")) { "Name" }
                input #(id("name")) name="name" type="text" required maxlength="200"
                    autocomplete="off" placeholder="Slack Notifications" value=(values.name)
                    aria-invalid=[invalid("name")]
                    aria-describedby=[described_by(&id("name"), false, errors, "name")];
                (error_line(&id("name"), errors, "name"))
            }
            div.field {
                label for=(id("url")) { "URL" }
                input #(id("url")) name="url" type="url" required inputmode="url"
                    autocomplete="off" placeholder="https://example.com/webhooks/hallway"
                    value=(values.url) aria-invalid=[invalid("url")]
                    aria-describedby=[described_by(&id("url"), true, errors, "url")];
                p.hint id={ (id("url")) "-hint" } { "Your HTTPS endpoint that will receive webhook payloads." }
                (error_line(&id("url"), errors, "url"))
            }
            div.field {
                label for=(id("description")) { "Description " span.optional { "(optional)" } }
                textarea #(id("description")) name="description" rows="2" maxlength="2000"
                    aria-invalid=[invalid("description")]
                    aria-describedby=[described_by(&id("description"), false, errors, "description")] {
                    (values.description)
                }
                (error_line(&id("description"), errors, "description"))
            }
            fieldset.field aria-describedby=[described_by(&id("events"), false, errors, "events")] {
                legend { "Events" }
                @for t in event_types {
                    label.check {
                        input type="checkbox" name="events" value=(t)
                            checked[values.events.contains(t)];
                        code { (t) }
                    }
                }
                (error_line(&id("events"), errors, "events"))
            }
            div.field {
                label for=(id("project_ids")) { "Projects " span.optional { "(optional)" } }
                input #(id("project_ids")) name="project_ids" type="text" autocomplete="off"
                    placeholder="prj_xyz789, prj_abc123" value=(values.projects)
                    aria-invalid=[invalid("project_ids")]
                    aria-describedby=[described_by(&id("project_ids"), true, errors, "project_ids")];
                p.hint id={ (id("project_ids")) "-hint" } { "Project ids, separated by commas. Leave empty to receive events from all projects." }
                (error_line(&id("project_ids"), errors, "project_ids"))
            }
            div.actions {
                button.btn.primary type="submit" { (submit) }
                a.btn href="/portal/" data-close { "Cancel" }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejection_lands_next_to_its_field() {
        let e = errors_from(EngineError::Rejected(Rejection::HttpsRequired)).unwrap();
        assert_eq!(e.fields, vec![("url", "Must use https://".to_owned())]);
        let e = errors_from(EngineError::Rejected(Rejection::LimitReached {
            account: "acc_1".into(),
            max: 5,
        }))
        .unwrap();
        assert!(e.fields.is_empty());
        assert_eq!(
            e.general.as_deref(),
            Some("Account acc_1 already has the maximum of 5 webhooks")
        );
        assert!(errors_from(EngineError::Closed).is_err());
    }

    #[test]
    fn project_ids_split_on_commas_and_spaces() {
        let f = WebhookForm {
            projects: "prj_1, prj_2 prj_3,,".into(),
            ..WebhookForm::default()
        };
        assert_eq!(f.project_ids(), vec!["prj_1", "prj_2", "prj_3"]);
        assert_eq!(f.to_new().description, None);
    }
}
