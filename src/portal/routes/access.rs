//! Signing in and out: the admin route that hands out links, spending a link, sign-out.

use super::{see_other, PageResult};
use crate::api::{authorize_admin, ApiError};
use crate::portal::guard::{read_form, PageError};
use crate::portal::layout::{html, message_page};
use crate::portal::session::{clear_cookie, set_cookie, Session};
use crate::portal::Portal;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hallway_domain::AccountId;
use serde_json::json;

/// A single-use link that signs the account's user in to the webhooks page (admin).
#[utoipa::path(
    post,
    path = "/v1/accounts/{acc}/portal-sessions",
    tag = "accounts",
    security(("bearer" = [])),
    params(("acc" = String, Path, description = "The account's id")),
    responses(
        (status = 201, description = "The link and when it expires", body = crate::views::PortalLink),
        (status = 401, description = "`unauthorized`", body = crate::views::ErrorBody),
        (status = 403, description = "`forbidden`: an account key", body = crate::views::ErrorBody),
        (status = 404, description = "`not_found`", body = crate::views::ErrorBody),
        (status = 503, description = "`unavailable`: too many links outstanding", body = crate::views::ErrorBody)
    )
)]
pub(super) async fn create_link(
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
            let body = crate::views::PortalLink {
                url,
                expires_at: expires_at.to_rfc3339(),
            };
            Ok((StatusCode::CREATED, Json(body)).into_response())
        }
        Err(e) => {
            let body = json!({"error": {"code": "unavailable", "message": e.to_string()}});
            Ok((StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response())
        }
    }
}

/// `GET /portal/login/{token}`: spends the link, sets the session cookie, shows the list.
pub(super) async fn login(State(portal): State<Portal>, Path(token): Path<String>) -> PageResult {
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

pub(super) async fn logout(
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
