//! The HTTP API v1 (the contract in the design's `HTTP_API.md`), on axum.

mod bodies;
pub mod openapi;

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

/// What the routes share.
#[derive(Clone)]
pub struct AppState {
    /// The engine.
    pub engine: EngineHandle,
    /// The admin token (host scope).
    pub admin_token: String,
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
        .add::<__path_healthz, _, _>(healthz)
        .add::<__path_readyz, _, _>(readyz)
        .add::<__path_metrics, _, _>(metrics)
        .add::<openapi::__path_openapi_json, _, _>(openapi::openapi_json)
        .add::<__path_create_account, _, _>(create_account)
        .add::<__path_get_account, _, _>(get_account)
        .add::<__path_update_account, _, _>(update_account)
        .add::<__path_create_webhook, _, _>(create_webhook)
        .add::<__path_list_webhooks, _, _>(list_webhooks)
        .add::<__path_get_webhook, _, _>(get_webhook)
        .add::<__path_update_webhook, _, _>(update_webhook)
        .add::<__path_delete_webhook, _, _>(delete_webhook)
        .add::<__path_rotate_secret, _, _>(rotate_secret)
        .add::<__path_send_test, _, _>(send_test)
        .add::<__path_list_deliveries, _, _>(list_deliveries)
        .add::<__path_get_delivery, _, _>(get_delivery)
        .add::<__path_retry_delivery, _, _>(retry_delivery)
        .add::<__path_publish, _, _>(publish)
        .add::<__path_recover_deliveries, _, _>(recover_deliveries)
        .add::<__path_replay_event, _, _>(replay_event)
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

fn respond(status: StatusCode, body: impl Serialize) -> Response {
    (status, Json(body)).into_response()
}

/// Liveness: whether the engine still takes commands.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses(
        (status = 200, description = "The engine runs: `{\"status\":\"ok\"}`", body = Health),
        (status = 503, description = "The engine stopped: `{\"status\":\"unavailable\"}`", body = Health)
    )
)]
async fn healthz(State(state): State<AppState>) -> Response {
    if state.engine.is_running() {
        respond(
            StatusCode::OK,
            Health {
                status: "ok".into(),
            },
        )
    } else {
        respond(
            StatusCode::SERVICE_UNAVAILABLE,
            Health {
                status: "unavailable".into(),
            },
        )
    }
}

/// Readiness: whether the engine takes work; a load balancer sends traffic only on 200.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready: `{\"status\":\"ready\"}`", body = Health),
        (status = 503, description = "Not taking work: `{\"status\":\"unavailable\"}`", body = Health)
    )
)]
async fn readyz(State(state): State<AppState>) -> Response {
    if state.engine.is_running() {
        respond(
            StatusCode::OK,
            Health {
                status: "ready".into(),
            },
        )
    } else {
        respond(
            StatusCode::SERVICE_UNAVAILABLE,
            Health {
                status: "unavailable".into(),
            },
        )
    }
}

/// Prometheus text by default; OpenMetrics for a scraper that asks for it.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text 0.0.4, or OpenMetrics when `Accept` asks for `application/openmetrics-text`", content_type = "text/plain")
    )
)]
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let live = state.engine.live_metrics();
    let openmetrics = headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let (content_type, text) = if openmetrics {
        (OPENMETRICS_CONTENT_TYPE, live.encode_openmetrics())
    } else {
        (PROMETHEUS_CONTENT_TYPE, live.encode())
    };
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, content_type)],
        text,
    )
        .into_response()
}

/// Creates an account; its API key is in this answer only.
#[utoipa::path(
    post,
    path = "/v1/accounts",
    tag = "accounts",
    security(("bearer" = [])),
    request_body = NewAccountBody,
    responses(
        (status = 201, description = "The account and its key (shown once)", body = CreatedAccount),
        (status = 400, description = "`invalid_request`: malformed JSON, a wrong type or an unknown field", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: an account key", body = ErrorBody),
        (status = 409, description = "`conflict`: the id exists", body = ErrorBody),
        (status = 422, description = "`validation_failed`: a missing or bad field", body = ErrorBody)
    )
)]
async fn create_account(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    authorize_admin(&state, &headers, None).await?;
    let b: NewAccountBody = json_body(body).await?;
    let id = required(b.id, "id")?;
    let name = required(b.name, "name")?;
    let plan = required(plan(b.plan)?, "plan")?;
    let (account, api_key) = state
        .engine
        .create_account(&AccountId::from(id), &name, plan)
        .await?;
    Ok(respond(
        StatusCode::CREATED,
        CreatedAccount {
            account: AccountView::of(&account),
            api_key,
        },
    ))
}

/// An account.
#[utoipa::path(
    get,
    path = "/v1/accounts/{acc}",
    tag = "accounts",
    security(("bearer" = [])),
    params(("acc" = String, Path, description = "The account's id")),
    responses(
        (status = 200, description = "The account", body = AccountView),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody)
    )
)]
async fn get_account(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(acc): ApiPath<String>,
) -> ApiResult {
    let acc = authorize(&state, &headers, &acc).await?;
    let account = state.engine.account(&acc).await?;
    Ok(respond(StatusCode::OK, AccountView::of(&account)))
}

/// Changes an account's name or plan (admin).
#[utoipa::path(
    patch,
    path = "/v1/accounts/{acc}",
    tag = "accounts",
    security(("bearer" = [])),
    params(("acc" = String, Path, description = "The account's id")),
    request_body = AccountChangesBody,
    responses(
        (status = 200, description = "The account now", body = AccountView),
        (status = 400, description = "`invalid_request`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: an account key", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 422, description = "`validation_failed`", body = ErrorBody)
    )
)]
async fn update_account(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(acc): ApiPath<String>,
    body: Body,
) -> ApiResult {
    authorize_admin(&state, &headers, Some(&acc)).await?;
    let b: AccountChangesBody = json_body(body).await?;
    let changes = AccountChanges {
        name: b.name,
        plan: plan(b.plan)?,
    };
    let account = state
        .engine
        .update_account(&AccountId::from(acc), changes)
        .await?;
    Ok(respond(StatusCode::OK, AccountView::of(&account)))
}

/// Registers a webhook; its signing secret is in this answer only.
#[utoipa::path(
    post,
    path = "/v1/accounts/{acc}/webhooks",
    tag = "webhooks",
    security(("bearer" = [])),
    params(("acc" = String, Path, description = "The account's id")),
    request_body = NewWebhookBody,
    responses(
        (status = 201, description = "The webhook and its secret (shown once)", body = CreatedWebhook),
        (status = 400, description = "`invalid_request`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`plan_required`: the account is on the free plan", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`limit_reached`: the account has the most webhooks it may have", body = ErrorBody),
        (status = 422, description = "`validation_failed`: a bad or refused URL, an unknown event type, an empty name", body = ErrorBody)
    )
)]
async fn create_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(acc): ApiPath<String>,
    body: Body,
) -> ApiResult {
    let acc = authorize(&state, &headers, &acc).await?;
    let b: NewWebhookBody = json_body(body).await?;
    let input = NewWebhook {
        name: required(b.name, "name")?,
        url: required(b.url, "url")?,
        description: b.description.flatten(),
        events: required(b.events, "events")?,
        project_ids: b.project_ids.unwrap_or_default(),
    };
    let (webhook, secret) = state.engine.create_webhook(&acc, input).await?;
    Ok(respond(
        StatusCode::CREATED,
        CreatedWebhook {
            webhook: WebhookView::of(&webhook),
            secret: secret.expose().to_owned(),
        },
    ))
}

/// An account's webhooks, oldest first.
#[utoipa::path(
    get,
    path = "/v1/accounts/{acc}/webhooks",
    tag = "webhooks",
    security(("bearer" = [])),
    params(("acc" = String, Path, description = "The account's id")),
    responses(
        (status = 200, description = "The webhooks", body = WebhookList),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody)
    )
)]
async fn list_webhooks(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(acc): ApiPath<String>,
) -> ApiResult {
    let acc = authorize(&state, &headers, &acc).await?;
    let list = state.engine.list_webhooks(&acc).await?;
    let data = list.iter().map(WebhookView::of).collect();
    Ok(respond(StatusCode::OK, WebhookList { data }))
}

/// One webhook.
#[utoipa::path(
    get,
    path = "/v1/accounts/{acc}/webhooks/{wh}",
    tag = "webhooks",
    security(("bearer" = [])),
    params(
        ("acc" = String, Path, description = "The account's id"),
        ("wh" = String, Path, description = "The webhook's id")
    ),
    responses(
        (status = 200, description = "The webhook", body = WebhookView),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody)
    )
)]
async fn get_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath((acc, wh)): ApiPath<(String, String)>,
) -> ApiResult {
    let acc = authorize(&state, &headers, &acc).await?;
    let w = state.engine.webhook(&acc, &WebhookId::from(wh)).await?;
    Ok(respond(StatusCode::OK, WebhookView::of(&w)))
}

/// Changes a webhook; `"enabled": true` re-enables it and resets its failure counter.
#[utoipa::path(
    patch,
    path = "/v1/accounts/{acc}/webhooks/{wh}",
    tag = "webhooks",
    security(("bearer" = [])),
    params(
        ("acc" = String, Path, description = "The account's id"),
        ("wh" = String, Path, description = "The webhook's id")
    ),
    request_body = WebhookChangesBody,
    responses(
        (status = 200, description = "The webhook now", body = WebhookView),
        (status = 400, description = "`invalid_request`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 422, description = "`validation_failed`", body = ErrorBody)
    )
)]
async fn update_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath((acc, wh)): ApiPath<(String, String)>,
    body: Body,
) -> ApiResult {
    let acc = authorize(&state, &headers, &acc).await?;
    let b: WebhookChangesBody = json_body(body).await?;
    let changes = WebhookChanges {
        name: b.name,
        url: b.url,
        description: b.description,
        events: b.events,
        project_ids: b
            .project_ids
            .map(|ps| ps.into_iter().map(Into::into).collect()),
        enabled: b.enabled,
    };
    let w = state
        .engine
        .update_webhook(&acc, &WebhookId::from(wh), changes)
        .await?;
    Ok(respond(StatusCode::OK, WebhookView::of(&w)))
}

/// Deletes a webhook for good, cancelling what it had pending.
#[utoipa::path(
    delete,
    path = "/v1/accounts/{acc}/webhooks/{wh}",
    tag = "webhooks",
    security(("bearer" = [])),
    params(
        ("acc" = String, Path, description = "The account's id"),
        ("wh" = String, Path, description = "The webhook's id")
    ),
    responses(
        (status = 204, description = "Deleted; later calls on it answer 404"),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody)
    )
)]
async fn delete_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath((acc, wh)): ApiPath<(String, String)>,
) -> ApiResult {
    let acc = authorize(&state, &headers, &acc).await?;
    state
        .engine
        .delete_webhook(&acc, &WebhookId::from(wh))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Replaces a webhook's secret; the old one signs nothing from then on.
#[utoipa::path(
    post,
    path = "/v1/accounts/{acc}/webhooks/{wh}/rotate-secret",
    tag = "webhooks",
    security(("bearer" = [])),
    params(
        ("acc" = String, Path, description = "The account's id"),
        ("wh" = String, Path, description = "The webhook's id")
    ),
    responses(
        (status = 200, description = "The new secret (shown once)", body = SecretView),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody)
    )
)]
async fn rotate_secret(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath((acc, wh)): ApiPath<(String, String)>,
) -> ApiResult {
    let acc = authorize(&state, &headers, &acc).await?;
    let secret = state
        .engine
        .rotate_secret(&acc, &WebhookId::from(wh))
        .await?;
    Ok(respond(
        StatusCode::OK,
        SecretView {
            secret: secret.expose().to_owned(),
        },
    ))
}

/// Sends the example payload of the webhook's event type, marked `"_test": true`, once (also
/// while disabled).
#[utoipa::path(
    post,
    path = "/v1/accounts/{acc}/webhooks/{wh}/test",
    tag = "webhooks",
    security(("bearer" = [])),
    params(
        ("acc" = String, Path, description = "The account's id"),
        ("wh" = String, Path, description = "The webhook's id")
    ),
    responses(
        (status = 202, description = "The test delivery was created", body = TestSent),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many retries and test sends; see `Retry-After`", body = ErrorBody)
    )
)]
async fn send_test(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath((acc, wh)): ApiPath<(String, String)>,
) -> ApiResult {
    let acc = authorize(&state, &headers, &acc).await?;
    let id = state.engine.send_test(&acc, &WebhookId::from(wh)).await?;
    Ok(respond(
        StatusCode::ACCEPTED,
        TestSent {
            delivery_id: id.to_string(),
        },
    ))
}

/// Checks a page's `limit` and `cursor`: an empty cursor is the first page.
fn page_params(q: &PageQuery) -> Result<(usize, Option<String>), ApiError> {
    let limit = q.limit.unwrap_or(PAGE_LIMIT_DEFAULT);
    if !(1..=PAGE_LIMIT_MAX).contains(&limit) {
        return Err(ApiError::validation(format!(
            "limit: must be between 1 and {PAGE_LIMIT_MAX}"
        )));
    }
    Ok((limit, q.cursor.clone().filter(|c| !c.is_empty())))
}

/// A webhook's deliveries, newest first.
#[utoipa::path(
    get,
    path = "/v1/accounts/{acc}/webhooks/{wh}/deliveries",
    tag = "deliveries",
    security(("bearer" = [])),
    params(
        ("acc" = String, Path, description = "The account's id"),
        ("wh" = String, Path, description = "The webhook's id"),
        PageQuery
    ),
    responses(
        (status = 200, description = "A page of deliveries", body = DeliveryPage),
        (status = 400, description = "`invalid_request`: an unknown, repeated or mistyped parameter", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 422, description = "`validation_failed`: `limit` out of range, or a cursor this list did not hand out", body = ErrorBody)
    )
)]
async fn list_deliveries(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath((acc, wh)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult {
    let acc = authorize(&state, &headers, &acc).await?;
    let (limit, cursor) = page_params(&query)?;
    let page = state
        .engine
        .deliveries(&acc, &WebhookId::from(wh), limit, cursor.as_deref())
        .await?;
    let data = page.data.iter().map(DeliveryView::of).collect();
    Ok(respond(
        StatusCode::OK,
        DeliveryPage {
            data,
            next_cursor: page.next_cursor,
        },
    ))
}

/// One delivery with every attempt.
#[utoipa::path(
    get,
    path = "/v1/accounts/{acc}/webhooks/{wh}/deliveries/{dlv}",
    tag = "deliveries",
    security(("bearer" = [])),
    params(
        ("acc" = String, Path, description = "The account's id"),
        ("wh" = String, Path, description = "The webhook's id"),
        ("dlv" = String, Path, description = "The delivery's id")
    ),
    responses(
        (status = 200, description = "The delivery", body = DeliveryView),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody)
    )
)]
async fn get_delivery(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath((acc, wh, dlv)): ApiPath<(String, String, String)>,
) -> ApiResult {
    let acc = authorize(&state, &headers, &acc).await?;
    let d = state
        .engine
        .delivery(&acc, &WebhookId::from(wh), &DeliveryId::from(dlv))
        .await?;
    Ok(respond(StatusCode::OK, DeliveryView::of(&d)))
}

/// Makes one more attempt of a finished delivery now, recorded in the same delivery.
#[utoipa::path(
    post,
    path = "/v1/accounts/{acc}/webhooks/{wh}/deliveries/{dlv}/retry",
    tag = "deliveries",
    security(("bearer" = [])),
    params(
        ("acc" = String, Path, description = "The account's id"),
        ("wh" = String, Path, description = "The webhook's id"),
        ("dlv" = String, Path, description = "The delivery's id")
    ),
    responses(
        (status = 202, description = "The attempt is under way or due now", body = RetryQueued),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`conflict` while the delivery is pending or its webhook disabled; `limit_reached` past its attempts cap", body = ErrorBody),
        (status = 429, description = "`rate_limited`; see `Retry-After`", body = ErrorBody)
    )
)]
async fn retry_delivery(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath((acc, wh, dlv)): ApiPath<(String, String, String)>,
) -> ApiResult {
    let acc = authorize(&state, &headers, &acc).await?;
    let dlv = DeliveryId::from(dlv);
    state
        .engine
        .retry_delivery(&acc, &WebhookId::from(wh), &dlv)
        .await?;
    Ok(respond(
        StatusCode::ACCEPTED,
        RetryQueued {
            delivery_id: dlv.to_string(),
            status: DeliveryStatusName::Pending,
        },
    ))
}

/// Publishes an event (admin): the engine wraps it in the envelope and fans it out.
#[utoipa::path(
    post,
    path = "/v1/accounts/{acc}/events",
    tag = "events",
    security(("bearer" = [])),
    params(("acc" = String, Path, description = "The account's id")),
    request_body = EventBody,
    responses(
        (status = 202, description = "Published and fanned out", body = Published),
        (status = 200, description = "This `id` was published before with the same body: the first answer, nothing sent again", body = Published),
        (status = 400, description = "`invalid_request`: malformed JSON or a wrong type", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: an account key", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 422, description = "`validation_failed`: a missing or unknown `type`, a missing `project.id`, a bad `id`", body = ErrorBody)
    )
)]
async fn publish(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(acc): ApiPath<String>,
    body: Body,
) -> ApiResult {
    authorize_admin(&state, &headers, Some(&acc)).await?;
    let limit = state.engine.policy().max_payload_bytes;
    let bytes = read_body(body, limit).await?;
    // Timed from a complete body, so a slow upload does not count as a slow engine.
    let started = std::time::Instant::now();
    let receipt = state.engine.publish(&AccountId::from(acc), &bytes).await?;
    state
        .engine
        .live_metrics()
        .observe_publish(started.elapsed());
    let status = if receipt.duplicate {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok(respond(
        status,
        Published {
            id: receipt.event_id.to_string(),
            deliveries: receipt.deliveries,
        },
    ))
}

/// Sends again every paused, failed or cancelled delivery created in `[since, until)`.
#[utoipa::path(
    post,
    path = "/v1/accounts/{acc}/webhooks/{wh}/recover",
    tag = "deliveries",
    security(("bearer" = [])),
    params(
        ("acc" = String, Path, description = "The account's id"),
        ("wh" = String, Path, description = "The webhook's id")
    ),
    request_body = RecoverBody,
    responses(
        (status = 202, description = "How many deliveries are sent again", body = DeliveryCount),
        (status = 400, description = "`invalid_request`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`conflict` while the webhook is disabled; `limit_reached` past `--max-recover`", body = ErrorBody),
        (status = 422, description = "`validation_failed`: a missing or malformed `since`, or `until` not after it", body = ErrorBody)
    )
)]
async fn recover_deliveries(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath((acc, wh)): ApiPath<(String, String)>,
    body: Body,
) -> ApiResult {
    let acc = authorize(&state, &headers, &acc).await?;
    let b: RecoverBody = json_body(body).await?;
    let since = required(time(b.since, "since")?, "since")?;
    let until = time(b.until, "until")?;
    let n = state
        .engine
        .recover(&acc, &WebhookId::from(wh), since, until)
        .await?;
    Ok(respond(
        StatusCode::ACCEPTED,
        DeliveryCount { deliveries: n },
    ))
}

/// Sends a published event again (admin), as new deliveries of the same body and event id.
#[utoipa::path(
    post,
    path = "/v1/accounts/{acc}/events/{evt}/replay",
    tag = "events",
    security(("bearer" = [])),
    params(
        ("acc" = String, Path, description = "The account's id"),
        ("evt" = String, Path, description = "The event's id")
    ),
    request_body = ReplayBody,
    responses(
        (status = 202, description = "How many deliveries were created", body = DeliveryCount),
        (status = 400, description = "`invalid_request`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: an account key", body = ErrorBody),
        (status = 404, description = "`not_found`: no such account or webhook, or the event's body is not kept", body = ErrorBody),
        (status = 409, description = "`conflict`: a named webhook is disabled", body = ErrorBody)
    )
)]
async fn replay_event(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath((acc, evt)): ApiPath<(String, String)>,
    body: Body,
) -> ApiResult {
    authorize_admin(&state, &headers, Some(&acc)).await?;
    let b: ReplayBody = json_body(body).await?;
    let webhook_ids = b
        .webhook_ids
        .map(|ids| ids.into_iter().map(WebhookId::from).collect());
    let n = state
        .engine
        .replay(&AccountId::from(acc), &EventId::from(evt), webhook_ids)
        .await?;
    Ok(respond(
        StatusCode::ACCEPTED,
        DeliveryCount { deliveries: n },
    ))
}
