//! The HTTP API v1 (the contract in the design's `HTTP_API.md`), on axum.

use crate::views;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hallway_domain::{
    types::Echo, AccountId, DeliveryId, EventId, Plan, Rejection, RejectionKind, Timestamp,
    WebhookChanges, WebhookId,
};
use hallway_runtime::{EngineError, EngineHandle, MetricsSnapshot, NewWebhook};
use serde_json::{json, Map, Value};
use std::fmt::Write as _;

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
            EngineError::Storage(m) | EngineError::Config(m) => {
                tracing::error!(error = %m, "engine failure");
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
        .with_state(state)
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
async fn authorize_admin(
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

async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body is larger than {limit} bytes"),
        )
    })
}

/// Reads a management body as a JSON object.
async fn json_object(body: Body) -> Result<Map<String, Value>, ApiError> {
    let bytes = read_body(body, MAX_MANAGEMENT_BODY_BYTES).await?;
    // serde_json keeps the last of two repeated members; other parsers keep the first.
    hallway_domain::json::check(&bytes)
        .map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::invalid("the body must be a JSON object")),
    }
}

/// A string field: `Ok(None)` when absent, 400 for a wrong type.
fn opt_string(obj: &Map<String, Value>, field: &str) -> Result<Option<String>, ApiError> {
    match obj.get(field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::invalid(format!("{field}: must be a string"))),
    }
}

fn req_string(obj: &Map<String, Value>, field: &str) -> Result<String, ApiError> {
    opt_string(obj, field)?.ok_or_else(|| ApiError::validation(format!("{field}: is required")))
}

/// A nullable string field: absent → `None`, `null` → `Some(None)`.
fn opt_nullable_string(
    obj: &Map<String, Value>,
    field: &str,
) -> Result<Option<Option<String>>, ApiError> {
    match obj.get(field) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
        Some(_) => Err(ApiError::invalid(format!(
            "{field}: must be a string or null"
        ))),
    }
}

fn opt_string_list(obj: &Map<String, Value>, field: &str) -> Result<Option<Vec<String>>, ApiError> {
    match obj.get(field) {
        None => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(ApiError::invalid(format!(
                    "{field}: must be a list of strings"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(ApiError::invalid(format!(
            "{field}: must be a list of strings"
        ))),
    }
}

fn opt_bool(obj: &Map<String, Value>, field: &str) -> Result<Option<bool>, ApiError> {
    match obj.get(field) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::invalid(format!("{field}: must be true or false"))),
    }
}

fn opt_plan(obj: &Map<String, Value>) -> Result<Option<Plan>, ApiError> {
    match opt_string(obj, "plan")?.as_deref() {
        None => Ok(None),
        Some("free") => Ok(Some(Plan::Free)),
        Some("pro") => Ok(Some(Plan::Pro)),
        Some(other) => Err(ApiError::validation(format!(
            "plan: must be \"free\" or \"pro\", not {other:?}"
        ))),
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

async fn metrics(State(state): State<AppState>) -> Response {
    let text = prometheus_text(&state.engine.metrics());
    (
        StatusCode::OK,
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// The counters in Prometheus' text format.
pub fn prometheus_text(m: &MetricsSnapshot) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, lines: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, v) in lines {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    metric(
        "hallway_events_published_total",
        "counter",
        "Events published (first publishes).",
        &[(String::new(), m.published)],
    );
    metric(
        "hallway_duplicate_publishes_total",
        "counter",
        "Publishes of an already published event id.",
        &[(String::new(), m.duplicate_publishes)],
    );
    let mut attempts = vec![("{outcome=\"succeeded\"}".to_owned(), m.attempts_succeeded)];
    for (error, n) in &m.attempts_failed {
        attempts.push((
            format!("{{outcome=\"failed\",error=\"{}\"}}", error.as_str()),
            *n,
        ));
    }
    metric(
        "hallway_attempts_total",
        "counter",
        "Delivery attempts by outcome.",
        &attempts,
    );
    metric(
        "hallway_deliveries_pending",
        "gauge",
        "Deliveries not finished.",
        &[(String::new(), m.pending)],
    );
    metric(
        "hallway_attempts_in_flight",
        "gauge",
        "Attempts under way.",
        &[(String::new(), m.in_flight)],
    );
    metric(
        "hallway_log_batches_total",
        "counter",
        "Batches committed to the log.",
        &[(String::new(), m.batches)],
    );
    metric(
        "hallway_log_events_total",
        "counter",
        "Events committed to the log.",
        &[(String::new(), m.events_logged)],
    );
    out
}

async fn create_account(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    authorize_admin(&state, &headers, None).await?;
    let obj = json_object(body).await?;
    let id = req_string(&obj, "id")?;
    let name = req_string(&obj, "name")?;
    let plan = opt_plan(&obj)?.ok_or_else(|| ApiError::validation("plan: is required"))?;
    let (account, api_key) = state.engine.create_account(&id, &name, plan).await?;
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
    let obj = json_object(body).await?;
    let name = opt_string(&obj, "name")?;
    let plan = opt_plan(&obj)?;
    let account = state
        .engine
        .update_account(&AccountId::from(acc), name, plan)
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
    let obj = json_object(body).await?;
    let input = NewWebhook {
        name: req_string(&obj, "name")?,
        url: req_string(&obj, "url")?,
        description: opt_nullable_string(&obj, "description")?.flatten(),
        events: opt_string_list(&obj, "events")?
            .ok_or_else(|| ApiError::validation("events: is required"))?,
        project_ids: opt_string_list(&obj, "project_ids")?.unwrap_or_default(),
    };
    let (webhook, secret) = state.engine.create_webhook(&acc, input).await?;
    let mut v = views::webhook(&webhook);
    v["secret"] = Value::String(secret.0);
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
    let obj = json_object(body).await?;
    let changes = WebhookChanges {
        name: opt_string(&obj, "name")?,
        url: opt_string(&obj, "url")?,
        description: opt_nullable_string(&obj, "description")?,
        events: opt_string_list(&obj, "events")?,
        project_ids: opt_string_list(&obj, "project_ids")?
            .map(|ps| ps.into_iter().map(Into::into).collect()),
        enabled: opt_bool(&obj, "enabled")?,
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
    Ok(respond(StatusCode::OK, json!({ "secret": secret.0 })))
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

/// Parses `limit` and `cursor` from the query string.
fn page_params(query: Option<&str>) -> Result<(usize, Option<String>), ApiError> {
    let mut limit = PAGE_LIMIT_DEFAULT;
    let mut cursor = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "limit" => {
                limit = v
                    .parse::<usize>()
                    .map_err(|_| ApiError::invalid("limit: must be an integer"))?;
                if !(1..=PAGE_LIMIT_MAX).contains(&limit) {
                    return Err(ApiError::validation(format!(
                        "limit: must be between 1 and {PAGE_LIMIT_MAX}"
                    )));
                }
            }
            "cursor" if !v.is_empty() => cursor = Some(v.to_owned()),
            _ => {}
        }
    }
    Ok((limit, cursor))
}

async fn list_deliveries(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath((acc, wh)): ApiPath<(String, String)>,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let acc = authorize(&state, &headers, &acc).await?;
    let (limit, cursor) = page_params(query.as_deref())?;
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
    let receipt = state.engine.publish(&AccountId::from(acc), &bytes).await?;
    let status = if receipt.duplicate {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok(respond(
        status,
        json!({ "id": receipt.event_id.as_str(), "deliveries": receipt.deliveries }),
    ))
}

/// A required or optional RFC 3339 time field.
fn opt_time(obj: &Map<String, Value>, field: &str) -> Result<Option<Timestamp>, ApiError> {
    match opt_string(obj, field)? {
        None => Ok(None),
        Some(text) => Timestamp::parse_rfc3339(&text).map(Some).ok_or_else(|| {
            ApiError::validation(format!(
                "{field}: must be an RFC 3339 UTC time such as 2026-01-10T15:30:00.000Z"
            ))
        }),
    }
}

async fn recover_deliveries(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath((acc, wh)): ApiPath<(String, String)>,
    body: Body,
) -> ApiResult {
    let acc = authorize(&state, &headers, &acc).await?;
    let obj = json_object(body).await?;
    if let Some(unknown) = obj
        .keys()
        .find(|k| !["since", "until"].contains(&k.as_str()))
    {
        return Err(ApiError::validation(format!(
            "{unknown}: unknown field; a recover takes since and until"
        )));
    }
    let since =
        opt_time(&obj, "since")?.ok_or_else(|| ApiError::validation("since: is required"))?;
    let until = opt_time(&obj, "until")?;
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
    let obj = json_object(body).await?;
    if let Some(unknown) = obj.keys().find(|k| k.as_str() != "webhook_ids") {
        return Err(ApiError::validation(format!(
            "{unknown}: unknown field; a replay takes webhook_ids"
        )));
    }
    let webhook_ids = opt_string_list(&obj, "webhook_ids")?
        .map(|ids| ids.into_iter().map(WebhookId::from).collect());
    let n = state
        .engine
        .replay(&AccountId::from(acc), &EventId::from(evt), webhook_ids)
        .await?;
    Ok(respond(StatusCode::ACCEPTED, json!({ "deliveries": n })))
}
