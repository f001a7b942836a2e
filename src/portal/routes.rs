//! The page's routes: each handler reads through the session's account, calls the engine
//! as the JSON API does, and answers a page or a redirect (post/redirect/get).

use super::charts::day_stats;
use super::deliveries::{detail_page, history_page, DetailView, HistoryView};
use super::form::{errors_from, FormErrors, WebhookForm};
use super::guard::{read_form, security_headers, PageError};
use super::layout::{html, message_page};
use super::session::{clear_cookie, set_cookie, Flash, Session};
use super::webhooks::{self, confirm_page, form_page, Confirm, LastError, ListView};
use super::{assets, Portal};
use crate::api::{authorize_admin, ApiError};
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{middleware, Json, Router};
use hallway_domain::{AccountId, DeliveryId, DisabledReason, Webhook, WebhookChanges, WebhookId};
use hallway_runtime::EngineHandle;
use serde_json::json;

type PageResult = Result<Response, PageError>;

/// Deliveries per history page.
const HISTORY_PAGE: usize = 25;

/// The page's routes under `/portal/`, and the admin route that hands out sign-in links.
pub fn router(portal: Portal) -> Router {
    let pages = Router::new()
        .route("/portal", get(|| async { see_other("/portal/") }))
        .route("/portal/", get(list))
        .route("/portal/login/{token}", get(login))
        .route("/portal/logout", post(logout))
        .route("/portal/assets/portal.css", get(assets::css))
        .route("/portal/assets/portal.js", get(assets::js))
        .route("/portal/webhooks", post(create))
        .route("/portal/webhooks/new", get(new_form))
        .route("/portal/webhooks/{wh}/edit", get(edit_form).post(edit))
        .route("/portal/webhooks/{wh}/enabled", post(set_enabled))
        .route(
            "/portal/webhooks/{wh}/rotate",
            get(confirm_rotate).post(rotate),
        )
        .route(
            "/portal/webhooks/{wh}/delete",
            get(confirm_delete).post(delete),
        )
        .route("/portal/webhooks/{wh}/test", post(send_test))
        .route("/portal/webhooks/{wh}/deliveries", get(history))
        .route("/portal/webhooks/{wh}/deliveries/{dlv}", get(detail))
        .route("/portal/webhooks/{wh}/deliveries/{dlv}/retry", post(retry))
        .route("/portal/{*rest}", any(|| async { PageError::NotFound }))
        .layer(middleware::from_fn_with_state(
            portal.clone(),
            security_headers,
        ))
        .with_state(portal.clone());
    let links = Router::new()
        .route("/v1/accounts/{acc}/portal-sessions", post(create_link))
        .with_state(portal);
    pages.merge(links)
}

fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()
}

fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// `POST /v1/accounts/{acc}/portal-sessions` (admin): a single-use sign-in link.
async fn create_link(
    State(portal): State<Portal>,
    headers: HeaderMap,
    Path(acc): Path<String>,
) -> Result<Response, ApiError> {
    authorize_admin(portal.api(), &headers, Some(&acc)).await?;
    let account = portal.engine().account(&AccountId::from(acc)).await?;
    let now = portal.engine().now();
    match portal.sessions().issue_link(account.id, now) {
        Ok((token, expires_at)) => {
            let url = format!("{}/portal/login/{token}", portal.config().public_url);
            let body = json!({"url": url, "expires_at": expires_at.to_rfc3339()});
            Ok((StatusCode::CREATED, Json(body)).into_response())
        }
        Err(e) => {
            let body = json!({"error": {"code": "unavailable", "message": e.to_string()}});
            Ok((StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response())
        }
    }
}

/// `GET /portal/login/{token}`: spends the link, sets the session cookie, shows the list.
async fn login(State(portal): State<Portal>, Path(token): Path<String>) -> PageResult {
    let now = portal.engine().now();
    let cookie = match portal.sessions().exchange(&token, now) {
        Ok(Some(cookie)) => cookie,
        Ok(None) => return Err(PageError::LinkRefused),
        Err(e) => return Err(PageError::BadRequest(e.to_string())),
    };
    let config = portal.config();
    let set = set_cookie(
        &cookie,
        portal.sessions().session_ttl(),
        config.secure_cookies,
        !config.frame_ancestors.is_empty(),
    );
    let mut resp = see_other("/portal/");
    if let Ok(v) = set.parse() {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

async fn logout(
    State(portal): State<Portal>,
    session: Session,
    headers: HeaderMap,
    body: Body,
) -> PageResult {
    read_form(&session, &headers, body).await?;
    portal.sessions().end(&session);
    let page = message_page(
        "Signed out",
        "You are signed out of the webhooks page. Open it again from your app's Settings → Integrations.",
    );
    let mut resp = html(page);
    if let Ok(v) = clear_cookie(portal.config().secure_cookies).parse() {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

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

async fn list(
    State(portal): State<Portal>,
    session: Session,
    RawQuery(query): RawQuery,
) -> PageResult {
    let notice = query_value(query.as_deref(), "done").and_then(|k| webhooks::notice(&k));
    render_list(&portal, &session, notice, None).await
}

async fn new_form(State(portal): State<Portal>, session: Session) -> PageResult {
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

async fn create(
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
                secret: secret.0,
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

async fn edit_form(
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

async fn edit(
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

async fn set_enabled(
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

async fn confirm_rotate(
    State(portal): State<Portal>,
    session: Session,
    Path(wh): Path<String>,
) -> PageResult {
    confirm(&portal, &session, wh, Confirm::Rotate).await
}

async fn confirm_delete(
    State(portal): State<Portal>,
    session: Session,
    Path(wh): Path<String>,
) -> PageResult {
    confirm(&portal, &session, wh, Confirm::Delete).await
}

async fn rotate(
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
        secret: secret.0,
        rotated: true,
    };
    portal.sessions().set_flash(&session, flash);
    Ok(see_other("/portal/"))
}

async fn delete(
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

async fn send_test(
    State(portal): State<Portal>,
    session: Session,
    Path(wh): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> PageResult {
    read_form(&session, &headers, body).await?;
    let wh = WebhookId::from(wh);
    let dlv = portal.engine().send_test(&session.account, &wh).await?;
    Ok(see_other(&format!(
        "/portal/webhooks/{}/deliveries/{}",
        wh.as_str(),
        dlv.as_str()
    )))
}

async fn history(
    State(portal): State<Portal>,
    session: Session,
    Path(wh): Path<String>,
    RawQuery(query): RawQuery,
) -> PageResult {
    let engine = portal.engine();
    let w = engine
        .webhook(&session.account, &WebhookId::from(wh))
        .await?;
    let cursor = query_value(query.as_deref(), "cursor").filter(|c| !c.is_empty());
    let page = engine
        .deliveries(&session.account, &w.id, HISTORY_PAGE, cursor.as_deref())
        .await?;
    let stats = match cursor {
        None => Some(day_stats(engine, &session.account, &w.id, engine.now()).await?),
        Some(_) => None,
    };
    Ok(html(history_page(HistoryView {
        session: &session,
        webhook: &w,
        page: &page,
        first: cursor.is_none(),
        stats: stats.as_ref(),
    })))
}

async fn detail(
    State(portal): State<Portal>,
    session: Session,
    Path((wh, dlv)): Path<(String, String)>,
) -> PageResult {
    let engine = portal.engine();
    let w = engine
        .webhook(&session.account, &WebhookId::from(wh))
        .await?;
    let dlv = DeliveryId::from(dlv);
    let d = engine.delivery(&session.account, &w.id, &dlv).await?;
    let body = engine.event_body(&session.account, &d.event_id).await?;
    Ok(html(detail_page(DetailView {
        session: &session,
        webhook: &w,
        delivery: &d,
        body: body.as_deref(),
    })))
}

async fn retry(
    State(portal): State<Portal>,
    session: Session,
    Path((wh, dlv)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> PageResult {
    read_form(&session, &headers, body).await?;
    let (wh, dlv) = (WebhookId::from(wh), DeliveryId::from(dlv));
    portal
        .engine()
        .retry_delivery(&session.account, &wh, &dlv)
        .await?;
    Ok(see_other(&format!(
        "/portal/webhooks/{}/deliveries/{}",
        wh.as_str(),
        dlv.as_str()
    )))
}
