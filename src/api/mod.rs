//! The HTTP API v1 (the contract in the design's `HTTP_API.md`), on axum.

mod bodies;

use crate::views;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bodies::*;
use hallway_domain::{
    types::Echo, AccountChanges, AccountId, DeliveryId, EventId, Rejection, RejectionKind,
    WebhookChanges, WebhookId,
};
use hallway_runtime::metrics::{OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE};
use hallway_runtime::{EngineError, EngineHandle, NewWebhook};
use serde_json::{json, Value};

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

/// The router with every route of the contract.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/accounts", post(create_account))
        .route("/v1/accounts/{acc}", get(get_account).patch(update_account))
        .route(
            "/v1/accounts/{acc}/webhooks",
            post(create_webhook).get(list_webhooks),
        )
        .route(
            "/v1/accounts/{acc}/webhooks/{wh}",
            get(get_webhook)
                .patch(update_webhook)
                .delete(delete_webhook),
        )
        .route(
            "/v1/accounts/{acc}/webhooks/{wh}/rotate-secret",
            post(rotate_secret),
        )
        .route("/v1/accounts/{acc}/webhooks/{wh}/test", post(send_test))
        .route(
            "/v1/accounts/{acc}/webhooks/{wh}/deliveries",
            get(list_deliveries),
        )
        .route(
            "/v1/accounts/{acc}/webhooks/{wh}/deliveries/{dlv}",
            get(get_delivery),
        )
        .route(
            "/v1/accounts/{acc}/webhooks/{wh}/deliveries/{dlv}/retry",
            post(retry_delivery),
        )
        .route("/v1/accounts/{acc}/events", post(publish))
        .route(
            "/v1/accounts/{acc}/webhooks/{wh}/recover",
            post(recover_deliveries),
        )
        .route("/v1/accounts/{acc}/events/{evt}/replay", post(replay_event))
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

fn respond(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

async fn healthz(State(state): State<AppState>) -> Response {
    if state.engine.is_running() {
        respond(StatusCode::OK, json!({"status": "ok"}))
    } else {
        respond(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "unavailable"}),
        )
    }
}

/// Readiness: whether the engine takes work; a load balancer sends traffic only on 200.
async fn readyz(State(state): State<AppState>) -> Response {
    if state.engine.is_running() {
        respond(StatusCode::OK, json!({"status": "ready"}))
    } else {
        respond(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "unavailable"}),
        )
    }
}

/// Prometheus text by default; OpenMetrics for a scraper that asks for it.
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
    let mut v = views::account(&account);
    v["api_key"] = Value::String(api_key);
    Ok(respond(StatusCode::CREATED, v))
}

async fn get_account(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(acc): ApiPath<String>,
) -> ApiResult {
    let acc = authorize(&state, &headers, &acc).await?;
    let account = state.engine.account(&acc).await?;
    Ok(respond(StatusCode::OK, views::account(&account)))
}

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
    Ok(respond(StatusCode::OK, views::account(&account)))
}

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
    let mut v = views::webhook(&webhook);
    v["secret"] = Value::String(secret.expose().to_owned());
    Ok(respond(StatusCode::CREATED, v))
}

async fn list_webhooks(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(acc): ApiPath<String>,
) -> ApiResult {
    let acc = authorize(&state, &headers, &acc).await?;
    let list = state.engine.list_webhooks(&acc).await?;
    let data: Vec<Value> = list.iter().map(views::webhook).collect();
    Ok(respond(StatusCode::OK, json!({ "data": data })))
}

async fn get_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath((acc, wh)): ApiPath<(String, String)>,
) -> ApiResult {
    let acc = authorize(&state, &headers, &acc).await?;
    let w = state.engine.webhook(&acc, &WebhookId::from(wh)).await?;
    Ok(respond(StatusCode::OK, views::webhook(&w)))
}

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
    Ok(respond(StatusCode::OK, views::webhook(&w)))
}

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
        json!({ "secret": secret.expose() }),
    ))
}

async fn send_test(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath((acc, wh)): ApiPath<(String, String)>,
) -> ApiResult {
    let acc = authorize(&state, &headers, &acc).await?;
    let id = state.engine.send_test(&acc, &WebhookId::from(wh)).await?;
    Ok(respond(
        StatusCode::ACCEPTED,
        json!({ "delivery_id": id.as_str() }),
    ))
}

/// Checks a page's `limit` and `cursor`: an empty cursor is the first page.
fn page_params(q: PageQuery) -> Result<(usize, Option<String>), ApiError> {
    let limit = q.limit.unwrap_or(PAGE_LIMIT_DEFAULT);
    if !(1..=PAGE_LIMIT_MAX).contains(&limit) {
        return Err(ApiError::validation(format!(
            "limit: must be between 1 and {PAGE_LIMIT_MAX}"
        )));
    }
    Ok((limit, q.cursor.filter(|c| !c.is_empty())))
}

async fn list_deliveries(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath((acc, wh)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult {
    let acc = authorize(&state, &headers, &acc).await?;
    let (limit, cursor) = page_params(query)?;
    let page = state
        .engine
        .deliveries(&acc, &WebhookId::from(wh), limit, cursor.as_deref())
        .await?;
    let data: Vec<Value> = page.data.iter().map(views::delivery).collect();
    Ok(respond(
        StatusCode::OK,
        json!({ "data": data, "next_cursor": page.next_cursor }),
    ))
}

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
    Ok(respond(StatusCode::OK, views::delivery(&d)))
}

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
        json!({ "delivery_id": dlv.as_str(), "status": "pending" }),
    ))
}

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
    // The hottest answer of the API, written directly rather than through a `Value`.
    let body = format!(
        r#"{{"id":{},"deliveries":{}}}"#,
        Value::from(receipt.event_id.as_str()),
        receipt.deliveries
    );
    Ok((
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

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
    Ok(respond(StatusCode::ACCEPTED, json!({ "deliveries": n })))
}

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
    Ok(respond(StatusCode::ACCEPTED, json!({ "deliveries": n })))
}
