//! The HTTP API v1 (the contract in the design's `HTTP_API.md`), on axum.

mod accounts;
mod bodies;
mod deliveries;
mod events;
pub mod openapi;
mod operations;
mod webhooks;

use crate::views::*;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use bodies::*;
use hallway_domain::{
    types::Echo, AccountChanges, AccountId, DeliveryId, EventId, Rejection, RejectionKind,
    WebhookChanges, WebhookId,
};
use hallway_runtime::metrics::{OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE};
use hallway_runtime::{EngineError, EngineHandle, NewWebhook};
use openapi::Routes;
use serde::Serialize;
use serde_json::json;

/// Largest management request body (everything but publishing), in bytes.
pub const MAX_MANAGEMENT_BODY_BYTES: usize = 64 * 1024;

/// Default and largest `limit` of a deliveries page.
const PAGE_LIMIT_DEFAULT: usize = 50;
const PAGE_LIMIT_MAX: usize = 100;

/// What the routes share, behind one `Arc`: axum clones the state for every request (and
/// the engine's handle is a dozen reference counts).
#[derive(Clone)]
pub struct AppState(std::sync::Arc<Shared>);

/// What [`AppState`] holds.
pub struct Shared {
    /// The engine.
    pub engine: EngineHandle,
    /// The admin token (host scope).
    pub admin_token: String,
}

impl AppState {
    /// The state of the routes over `engine`, with the host's `admin_token`.
    pub fn new(engine: EngineHandle, admin_token: String) -> AppState {
        AppState(std::sync::Arc::new(Shared {
            engine,
            admin_token,
        }))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// An error answer: a status and `{"error":{"code","message"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after_secs: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after_secs: None,
        }
    }
    fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or invalid bearer token",
        )
    }
    fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }
    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
    fn validation(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            message,
        )
    }
    fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this route needs the admin token",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static(r#"Bearer realm="hallway-webhooks""#),
            );
        }
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Rejected(r) => rejection(r),
            EngineError::Closed => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the engine is shutting down",
            ),
            EngineError::RateLimited { retry_after_secs } => ApiError {
                retry_after_secs: Some(retry_after_secs),
                ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", e.to_string())
            },
            // Storage, task and configuration failures, and whatever a later version adds.
            e => {
                tracing::error!(error = %e, "engine failure");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error",
                )
            }
        }
    }
}

fn rejection(r: Rejection) -> ApiError {
    let message = r.to_string();
    let (status, code) = match r.kind() {
        RejectionKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        RejectionKind::Conflict | RejectionKind::Duplicate => (StatusCode::CONFLICT, "conflict"),
        RejectionKind::PlanRequired => (StatusCode::FORBIDDEN, "plan_required"),
        RejectionKind::LimitReached => (StatusCode::CONFLICT, "limit_reached"),
        RejectionKind::InvalidRequest => (StatusCode::BAD_REQUEST, "invalid_request"),
        RejectionKind::Validation => (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        RejectionKind::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
    };
    ApiError::new(status, code, message)
}

type ApiResult = Result<Response, ApiError>;

/// An error answer in the contract's shape, for layers outside the router.
pub fn error_response(status: StatusCode, code: &'static str, message: &str) -> Response {
    ApiError::new(status, code, message).into_response()
}

/// The router with every route of the JSON API, each at the path and methods its OpenAPI
/// annotation names (so the document and the routes cannot differ).
pub fn router(state: AppState) -> Router {
    routes()
        .into_router()
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take this method",
            )
        })
        .layer(axum::middleware::from_fn(access_log))
        .with_state(state)
}

/// Every route of the JSON API with its documented operation; the webhooks page's link route
/// lives with the page but is part of the API.
pub(crate) fn routes() -> Routes {
    Routes::new()
        .add::<operations::__path_healthz, _, _>(operations::healthz)
        .add::<operations::__path_readyz, _, _>(operations::readyz)
        .add::<operations::__path_metrics, _, _>(operations::metrics)
        .add::<openapi::__path_openapi_json, _, _>(openapi::openapi_json)
        .add::<accounts::__path_create_account, _, _>(accounts::create_account)
        .add::<accounts::__path_get_account, _, _>(accounts::get_account)
        .add::<accounts::__path_update_account, _, _>(accounts::update_account)
        .add::<accounts::__path_list_accounts, _, _>(accounts::list_accounts)
        .add::<accounts::__path_rotate_account_key, _, _>(accounts::rotate_account_key)
        .add::<accounts::__path_delete_account, _, _>(accounts::delete_account)
        .add::<webhooks::__path_create_webhook, _, _>(webhooks::create_webhook)
        .add::<webhooks::__path_list_webhooks, _, _>(webhooks::list_webhooks)
        .add::<webhooks::__path_get_webhook, _, _>(webhooks::get_webhook)
        .add::<webhooks::__path_update_webhook, _, _>(webhooks::update_webhook)
        .add::<webhooks::__path_delete_webhook, _, _>(webhooks::delete_webhook)
        .add::<webhooks::__path_rotate_secret, _, _>(webhooks::rotate_secret)
        .add::<webhooks::__path_send_test, _, _>(webhooks::send_test)
        .add::<deliveries::__path_list_deliveries, _, _>(deliveries::list_deliveries)
        .add::<deliveries::__path_get_delivery, _, _>(deliveries::get_delivery)
        .add::<deliveries::__path_retry_delivery, _, _>(deliveries::retry_delivery)
        .add::<events::__path_publish, _, _>(events::publish)
        .add::<deliveries::__path_recover_deliveries, _, _>(deliveries::recover_deliveries)
        .add::<events::__path_replay_event, _, _>(events::replay_event)
        .add::<events::__path_list_event_types, _, _>(events::list_event_types)
}

/// One `info` line per API request on the `hallway::access` target: method, route (the
/// matched template, so ids do not multiply log cardinality), status, duration and the
/// account the path names.
async fn access_log(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let account = route
        .as_deref()
        .filter(|r| r.starts_with("/v1/accounts/{acc}"))
        .and_then(|_| request.uri().path().split('/').nth(3))
        .map(|a| Echo(a).to_string());
    let response = next.run(request).await;
    tracing::info!(
        target: "hallway::access",
        method = %method,
        route = route.as_deref().unwrap_or("-"),
        status = response.status().as_u16(),
        duration_ms = started.elapsed().as_micros() as f64 / 1_000.0,
        account = account.as_deref().unwrap_or("-"),
        "request"
    );
    response
}

/// Path parameters whose rejections (such as non-UTF-8 segments) answer the contract's error
/// object rather than axum's plain text.
struct ApiPath<T>(T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(ApiPath(v)),
            Err(e) => Err(ApiError::invalid(e.body_text())),
        }
    }
}

/// Who is calling.
enum Caller {
    Admin,
    Account(AccountId),
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

async fn caller(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let token = bearer(headers).ok_or_else(ApiError::unauthorized)?;
    if hallway_runtime::ids::same_secret(token, &state.admin_token) {
        return Ok(Caller::Admin);
    }
    match state.engine.authenticate(token).await? {
        Some(id) => Ok(Caller::Account(id)),
        None => Err(ApiError::unauthorized()),
    }
}

/// Admin, or the account's own key; another account's key sees 404, as if it did not exist.
async fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    acc: &str,
) -> Result<AccountId, ApiError> {
    match caller(state, headers).await? {
        Caller::Admin => Ok(AccountId::from(acc)),
        Caller::Account(id) if id.as_str() == acc => Ok(id),
        Caller::Account(_) => Err(ApiError::not_found(format!(
            "account {} not found",
            Echo(acc)
        ))),
    }
}

/// Admin only; an account key gets 404 on other accounts and 403 on its own.
pub(crate) async fn authorize_admin(
    state: &AppState,
    headers: &HeaderMap,
    acc: Option<&str>,
) -> Result<(), ApiError> {
    match (caller(state, headers).await?, acc) {
        (Caller::Admin, _) => Ok(()),
        (Caller::Account(id), Some(acc)) if id.as_str() != acc => Err(ApiError::not_found(
            format!("account {} not found", Echo(acc)),
        )),
        (Caller::Account(_), _) => Err(ApiError::forbidden()),
    }
}

/// Checks a page's `limit` and `cursor`: an empty cursor is the first page.
fn page_params(
    limit: Option<usize>,
    cursor: Option<&String>,
) -> Result<(usize, Option<String>), ApiError> {
    let limit = limit.unwrap_or(PAGE_LIMIT_DEFAULT);
    if !(1..=PAGE_LIMIT_MAX).contains(&limit) {
        return Err(ApiError::validation(format!(
            "limit: must be between 1 and {PAGE_LIMIT_MAX}"
        )));
    }
    Ok((limit, cursor.filter(|c| !c.is_empty()).cloned()))
}

fn respond(status: StatusCode, body: impl Serialize) -> Response {
    (status, Json(body)).into_response()
}
