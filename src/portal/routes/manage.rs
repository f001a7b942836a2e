//! The list and what changes a webhook: add, edit, the toggle, rotate, delete.

use super::{query_value, see_other, PageResult};
use crate::portal::form::{errors_from, FormErrors, WebhookForm};
use crate::portal::guard::{read_form, PageError};
use crate::portal::layout::html;
use crate::portal::session::{Flash, Session};
use crate::portal::webhooks::{self, confirm_page, form_page, Confirm, LastError, ListView};
use crate::portal::Portal;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use hallway_domain::{AccountId, DisabledReason, Webhook, WebhookChanges, WebhookId};
use hallway_runtime::EngineHandle;

/// The latest failed real attempt of a webhook, from its newest deliveries.
async fn last_error(
    engine: &EngineHandle,
    account: &AccountId,
    w: &Webhook,
) -> Result<Option<LastError>, PageError> {
    let page = engine.deliveries(account, &w.id, 20, None).await?;
    Ok(page
        .data
        .iter()
        .filter(|d| !d.test)
        .flat_map(|d| d.attempts.iter().rev())
        .find(|a| a.error.is_some())
        .map(|a| LastError {
            at: a.started_at,
            error: a.error,
            status_code: a.status_code,
        }))
}

async fn render_list(
    portal: &Portal,
    session: &Session,
    notice: Option<&'static str>,
    rejected_add: Option<(WebhookForm, FormErrors)>,
) -> PageResult {
    let engine = portal.engine();
    let account = engine.account(&session.account).await?;
    let mut rows = Vec::new();
    for w in engine.list_webhooks(&session.account).await? {
        let last = match w.disabled_reason {
            Some(DisabledReason::ConsecutiveFailures) => {
                last_error(engine, &session.account, &w).await?
            }
            _ => None,
        };
        rows.push((w, last));
    }
    let status = if rejected_add.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let page = webhooks::list_page(ListView {
        session,
        account: &account,
        webhooks: &rows,
        flash: portal.sessions().take_flash(session),
        notice,
        max_webhooks: engine.policy().max_webhooks_per_account,
        event_types: &engine.policy().event_types,
        billing_url: portal.config().billing_url.as_deref(),
        rejected_add,
    });
    Ok((status, html(page)).into_response())
}

pub(super) async fn list(
    State(portal): State<Portal>,
    session: Session,
    RawQuery(query): RawQuery,
) -> PageResult {
    let notice = query_value(query.as_deref(), "done").and_then(|k| webhooks::notice(&k));
    render_list(&portal, &session, notice, None).await
}

pub(super) async fn new_form(State(portal): State<Portal>, session: Session) -> PageResult {
    let types = &portal.engine().policy().event_types;
    let values = WebhookForm {
        events: types.first().cloned().into_iter().collect(),
        ..WebhookForm::default()
    };
    let page = form_page(
        &session,
        "Add Webhook",
        "/portal/webhooks",
        "Create Webhook",
        &values,
        &FormErrors::default(),
        types,
    );
    Ok(html(page))
}

pub(super) async fn create(
    State(portal): State<Portal>,
    session: Session,
    headers: HeaderMap,
    body: Body,
) -> PageResult {
    let form = read_form(&session, &headers, body).await?;
    let values = WebhookForm::from_form(&form);
    match portal
        .engine()
        .create_webhook(&session.account, values.to_new())
        .await
    {
        Ok((w, secret)) => {
            let flash = Flash {
                webhook: w.id,
                name: w.config.name,
                secret: secret.expose().to_owned(),
                rotated: false,
            };
            portal.sessions().set_flash(&session, flash);
            Ok(see_other("/portal/"))
        }
        Err(e) => {
            let errors = errors_from(e)?;
            render_list(&portal, &session, None, Some((values, errors))).await
        }
    }
}

pub(super) async fn edit_form(
    State(portal): State<Portal>,
    session: Session,
    Path(wh): Path<String>,
) -> PageResult {
    let w = portal
        .engine()
        .webhook(&session.account, &WebhookId::from(wh))
        .await?;
    let page = form_page(
        &session,
        "Edit webhook",
        &format!("/portal/webhooks/{}/edit", w.id.as_str()),
        "Save changes",
        &WebhookForm::from_webhook(&w),
        &FormErrors::default(),
        &portal.engine().policy().event_types,
    );
    Ok(html(page))
}

pub(super) async fn edit(
    State(portal): State<Portal>,
    session: Session,
    Path(wh): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> PageResult {
    let form = read_form(&session, &headers, body).await?;
    let values = WebhookForm::from_form(&form);
    let wh = WebhookId::from(wh);
    match portal
        .engine()
        .update_webhook(&session.account, &wh, values.to_changes())
        .await
    {
        Ok(_) => Ok(see_other("/portal/?done=updated")),
        Err(e) => {
            let errors = errors_from(e)?;
            let page = form_page(
                &session,
                "Edit webhook",
                &format!("/portal/webhooks/{}/edit", wh.as_str()),
                "Save changes",
                &values,
                &errors,
                &portal.engine().policy().event_types,
            );
            Ok((StatusCode::UNPROCESSABLE_ENTITY, html(page)).into_response())
        }
    }
}

pub(super) async fn set_enabled(
    State(portal): State<Portal>,
    session: Session,
    Path(wh): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> PageResult {
    let form = read_form(&session, &headers, body).await?;
    let enabled = match form.get("enabled") {
        Some("true") => true,
        Some("false") => false,
        _ => {
            return Err(PageError::BadRequest(
                "enabled: must be true or false".into(),
            ))
        }
    };
    let changes = WebhookChanges {
        enabled: Some(enabled),
        ..WebhookChanges::default()
    };
    portal
        .engine()
        .update_webhook(&session.account, &WebhookId::from(wh), changes)
        .await?;
    Ok(see_other(if enabled {
        "/portal/?done=enabled"
    } else {
        "/portal/?done=paused"
    }))
}

async fn confirm(portal: &Portal, session: &Session, wh: String, what: Confirm) -> PageResult {
    let w = portal
        .engine()
        .webhook(&session.account, &WebhookId::from(wh))
        .await?;
    Ok(html(confirm_page(session, &w, what)))
}

pub(super) async fn confirm_rotate(
    State(portal): State<Portal>,
    session: Session,
    Path(wh): Path<String>,
) -> PageResult {
    confirm(&portal, &session, wh, Confirm::Rotate).await
}

pub(super) async fn confirm_delete(
    State(portal): State<Portal>,
    session: Session,
    Path(wh): Path<String>,
) -> PageResult {
    confirm(&portal, &session, wh, Confirm::Delete).await
}

pub(super) async fn rotate(
    State(portal): State<Portal>,
    session: Session,
    Path(wh): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> PageResult {
    read_form(&session, &headers, body).await?;
    let engine = portal.engine();
    let wh = WebhookId::from(wh);
    let w = engine.webhook(&session.account, &wh).await?;
    let secret = engine.rotate_secret(&session.account, &wh).await?;
    let flash = Flash {
        webhook: w.id,
        name: w.config.name,
        secret: secret.expose().to_owned(),
        rotated: true,
    };
    portal.sessions().set_flash(&session, flash);
    Ok(see_other("/portal/"))
}

pub(super) async fn delete(
    State(portal): State<Portal>,
    session: Session,
    Path(wh): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> PageResult {
    read_form(&session, &headers, body).await?;
    portal
        .engine()
        .delete_webhook(&session.account, &WebhookId::from(wh))
        .await?;
    Ok(see_other("/portal/?done=deleted"))
}
