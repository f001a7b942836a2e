//! The webhooks list (the spec's Settings → Integrations → Webhooks section), the Add
//! Webhook dialog, the edit page and the confirmation pages.

use super::form::{self, FormErrors, WebhookForm};
use super::layout::{badge, count, csrf_field, page, time};
use super::session::{Flash, Session};
use hallway_domain::{Account, AttemptError, DisabledReason, Plan, Timestamp, Webhook};
use maud::{html, Markup};

/// The latest failed attempt, shown beside an auto-disabled webhook.
#[derive(Clone, Debug)]
pub struct LastError {
    /// When the attempt started.
    pub at: Timestamp,
    /// Its error class.
    pub error: Option<AttemptError>,
    /// The status received, if any.
    pub status_code: Option<u16>,
}

/// Everything the list page shows.
pub struct ListView<'a> {
    /// The signed-in session.
    pub session: &'a Session,
    /// Its account.
    pub account: &'a Account,
    /// The account's webhooks with, for auto-disabled ones, their last error.
    pub webhooks: &'a [(Webhook, Option<LastError>)],
    /// A secret to show once.
    pub flash: Option<Flash>,
    /// A short confirmation of the last action.
    pub notice: Option<&'static str>,
    /// The webhook limit per account.
    pub max_webhooks: u32,
    /// The engine's event types.
    pub event_types: &'a [String],
    /// The host's billing page.
    pub billing_url: Option<&'a str>,
    /// A create that the engine refused: the dialog opens again with it.
    pub rejected_add: Option<(WebhookForm, FormErrors)>,
}

/// The confirmation text of a finished action, by its key in `?done=`.
pub fn notice(key: &str) -> Option<&'static str> {
    Some(match key {
        "updated" => "Webhook saved.",
        "deleted" => "Webhook deleted.",
        "paused" => "Deliveries paused. Turn the toggle on to resume them.",
        "enabled" => "Deliveries enabled.",
        _ => return None,
    })
}

fn status_badge(w: &Webhook) -> Markup {
    match (w.enabled, w.disabled_reason) {
        (true, _) => badge("ok", "Active"),
        (false, Some(DisabledReason::ConsecutiveFailures)) => badge("bad", "Auto-disabled"),
        (false, _) => badge("muted", "Paused"),
    }
}

/// Why the Add Webhook button is disabled, if it is.
fn add_blocked(v: &ListView) -> Option<String> {
    if v.account.plan == Plan::Free {
        return Some("Webhooks are available on the Pro plan only.".into());
    }
    if v.webhooks.len() as u32 >= v.max_webhooks {
        return Some(format!(
            "You have {}, the maximum per account. Delete one to add another.",
            count(v.max_webhooks, "webhook")
        ));
    }
    None
}

/// The list page.
pub fn list_page(v: ListView) -> Markup {
    let blocked = add_blocked(&v);
    let body = html! {
        div.page-head {
            div {
                h1 { "Webhooks" }
                p.lead { "Receive automatic notifications when events occur in " (v.account.name) "." }
            }
            div.add {
                @if let Some(reason) = &blocked {
                    button.btn.primary type="button" disabled aria-describedby="add-reason" { "Add Webhook" }
                    p.hint #add-reason { (reason) }
                } @else {
                    a.btn.primary href="/portal/webhooks/new" data-dialog="add-webhook" { "Add Webhook" }
                }
            }
        }
        @if let Some(n) = v.notice {
            p.notice role="status" { (n) }
        }
        @if blocked.is_some() {
            // The dialog is not on the page, so a refused create shows its reason here.
            @if let Some((_, e)) = &v.rejected_add {
                @for m in e.general.iter().chain(e.fields.iter().map(|(_, m)| m)) {
                    p.form-error role="alert" { (m) }
                }
            }
        }
        @if v.account.plan == Plan::Free {
            section.plan aria-labelledby="plan-title" {
                h2 #plan-title { "Pro plan only" }
                p { "Webhooks are available exclusively on the Pro plan. Free users can upgrade in "
                    strong { "Settings → Billing" } "." }
                @if let Some(url) = v.billing_url {
                    a.btn href=(url) target="_top" { "Upgrade in Settings → Billing" }
                }
            }
        }
        @if let Some(f) = &v.flash {
            (secret_box(f))
        }
        @if v.webhooks.is_empty() {
            p.empty { "No webhooks yet." }
        } @else {
            ul.webhooks {
                @for (w, last) in v.webhooks {
                    (card(v.session, w, last.as_ref()))
                }
            }
        }
        @if blocked.is_none() {
            (add_dialog(&v))
        }
    };
    page("Webhooks", Some(v.session), body)
}

fn secret_box(f: &Flash) -> Markup {
    html! {
        section.secret aria-labelledby="secret-title" data-secret-for=(f.webhook.as_str()) {
            h2 #secret-title {
                @if f.rotated { "New signing secret for " } @else { "Signing secret for " }
                (f.name)
            }
            p.warn {
                strong { "Copy and save this secret immediately. It will only be shown once." }
                " You need it to verify webhook signatures."
                @if f.rotated {
                    " The old secret is already invalidated: update your endpoint now."
                }
            }
            div.copy {
                label.visually-hidden for="secret-value" { "Signing secret" }
                input #secret-value type="text" readonly value=(f.secret) spellcheck="false";
                button.btn type="button" data-copy="secret-value" { "Copy" }
            }
            p.copy-status aria-live="polite" {}
        }
    }
}

fn card(session: &Session, w: &Webhook, last: Option<&LastError>) -> Markup {
    let id = w.id.as_str();
    let base = format!("/portal/webhooks/{id}");
    html! {
        li.card #(id) {
            div.card-head {
                div.card-title {
                    h2 { (w.config.name) }
                    (status_badge(w))
                }
                div.card-actions {
                    form.toggle method="post" action={ (base) "/enabled" } {
                        (csrf_field(session))
                        input type="hidden" name="enabled" value=(if w.enabled { "false" } else { "true" });
                        button.switch type="submit" role="switch" aria-checked=(w.enabled)
                            aria-label={ "Deliveries to " (w.config.name) } {
                            span.track aria-hidden="true" { span.thumb {} }
                            span.switch-text { @if w.enabled { "On" } @else { "Off" } }
                        }
                    }
                    details.menu {
                        summary.btn.icon aria-label={ "More options for " (w.config.name) } { "⋯" }
                        ul.menu-items {
                            li {
                                form method="post" action={ (base) "/test" } {
                                    (csrf_field(session))
                                    button type="submit" { "Send test" }
                                }
                            }
                            li { a href={ (base) "/deliveries" } { "View delivery history" } }
                            li { a href={ (base) "/edit" } { "Edit" } }
                            li { a href={ (base) "/rotate" } { "Rotate secret" } }
                            li { a.danger href={ (base) "/delete" } { "Delete" } }
                        }
                    }
                }
            }
            dl.facts {
                dt { "URL" }
                dd { code.url { (w.config.url) } }
                dt { "Events" }
                dd { @for e in &w.config.events { code { (e) } " " } }
                dt { "Projects" }
                dd {
                    @if w.config.project_ids.is_empty() { "All projects" }
                    @else { @for p in &w.config.project_ids { code { (p.as_str()) } " " } }
                }
                @if let Some(d) = &w.config.description {
                    dt { "Description" }
                    dd { (d) }
                }
            }
            @if w.disabled_reason == Some(DisabledReason::ConsecutiveFailures) {
                div.alert {
                    p {
                        "Auto-disabled at " (time(w.updated_at)) " after "
                        (count(w.consecutive_failures, "consecutive failure"))
                        ". Nothing is sent until you re-enable it; events published meanwhile are kept as paused deliveries in its history."
                    }
                    @if let Some(l) = last {
                        p {
                            "Last error: " strong { (l.error.map(|e| e.as_str()).unwrap_or("none")) }
                            @if let Some(c) = l.status_code { " (HTTP " (c) ")" }
                            " at " (time(l.at)) "."
                        }
                    }
                    form method="post" action={ (base) "/enabled" } {
                        (csrf_field(session))
                        input type="hidden" name="enabled" value="true";
                        button.btn type="submit" { "Re-enable" }
                    }
                }
            }
        }
    }
}

fn add_dialog(v: &ListView) -> Markup {
    let empty = (
        WebhookForm {
            events: v.event_types.first().cloned().into_iter().collect(),
            ..WebhookForm::default()
        },
        FormErrors::default(),
    );
    let (values, errors) = v.rejected_add.as_ref().unwrap_or(&empty);
    let reopen = v.rejected_add.is_some();
    html! {
        dialog #add-webhook aria-labelledby="add-title" open[reopen] data-open[reopen] {
            h2 #add-title { "Add Webhook" }
            (form::render(v.session, "/portal/webhooks", "Create Webhook", values, errors, v.event_types, "add"))
        }
    }
}

/// The page of a form outside the dialog (Add without script, and Edit).
pub fn form_page(
    session: &Session,
    title: &str,
    action: &str,
    submit: &str,
    values: &WebhookForm,
    errors: &FormErrors,
    event_types: &[String],
) -> Markup {
    page(
        title,
        Some(session),
        html! {
            p.back { a href="/portal/" { "← Webhooks" } }
            h1 { (title) }
            (form::render(session, action, submit, values, errors, event_types, "f"))
        },
    )
}

/// "Are you sure?" before rotating or deleting.
pub fn confirm_page(session: &Session, w: &Webhook, what: Confirm) -> Markup {
    let (title, text, button, path) = match what {
        Confirm::Rotate => (
            format!("Rotate the secret of {}?", w.config.name),
            "A new secret will be generated. After rotating, the old secret is immediately invalidated: deliveries signed with it stop verifying. Update your endpoint with the new secret right away.",
            "Rotate secret",
            "rotate",
        ),
        Confirm::Delete => (
            format!("Delete {}?", w.config.name),
            "The webhook is removed permanently, with its pending deliveries. This cannot be undone.",
            "Delete webhook",
            "delete",
        ),
    };
    page(
        &title,
        Some(session),
        html! {
            p.back { a href="/portal/" { "← Webhooks" } }
            h1 { (title) }
            p { (text) }
            p { code.url { (w.config.url) } }
            form method="post" action={ "/portal/webhooks/" (w.id.as_str()) "/" (path) } {
                (csrf_field(session))
                div.actions {
                    button.btn.danger type="submit" { (button) }
                    a.btn href="/portal/" { "Cancel" }
                }
            }
        },
    )
}

/// Which action a confirmation page is for.
#[derive(Clone, Copy, Debug)]
pub enum Confirm {
    /// Rotate the secret.
    Rotate,
    /// Delete the webhook.
    Delete,
}
