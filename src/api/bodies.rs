//! Reading requests: management bodies into strict serde structs (an unknown field, a wrong
//! type or a repeated member answers 400 naming it; a missing required field 422), query
//! strings through axum's `Query`, and the size limits.

use super::{ApiError, MAX_MANAGEMENT_BODY_BYTES};
use axum::body::Body;
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::StatusCode;
use hallway_domain::{DurationMs, Plan, SignatureScheme, Timestamp};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use utoipa::{IntoParams, ToSchema};

pub(super) async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body is larger than {limit} bytes"),
        )
    })
}

/// Reads a management body into `T`, whose fields are all optional so that a missing required
/// field can answer 422 (`validation_failed`) while a malformed body, a wrong type or an
/// unknown field answers 400 (`invalid_request`); each message names the field.
pub(super) async fn json_body<T: DeserializeOwned>(body: Body) -> Result<T, ApiError> {
    let bytes = read_body(body, MAX_MANAGEMENT_BODY_BYTES).await?;
    json_bytes(&bytes)
}

/// Like [`json_body`], for a body that may be left out: none (or only whitespace) is
/// `T::default()`.
pub(super) async fn optional_json_body<T: DeserializeOwned + Default>(
    body: Body,
) -> Result<T, ApiError> {
    let bytes = read_body(body, MAX_MANAGEMENT_BODY_BYTES).await?;
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(T::default());
    }
    json_bytes(&bytes)
}

fn json_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde_json keeps the last of two repeated members; other parsers keep the first.
    hallway_domain::json::check(bytes)
        .map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))?;
    // A derived struct also takes a JSON array of its fields in order; the contract's bodies
    // are objects only.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::invalid("the body must be a JSON object"));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(body_error)?;
    de.end()
        .map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))?;
    Ok(value)
}

/// The 400 for a body that does not deserialise, naming the field where serde stopped.
pub(super) fn body_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    use serde_json::error::Category;
    let path = e.path().to_string();
    let inner = e.into_inner();
    match inner.classify() {
        // Nothing to name at the root: serde's own text says what is wrong.
        Category::Data if path == "." => ApiError::invalid(inner.to_string()),
        Category::Data => ApiError::invalid(format!("{path}: {inner}")),
        Category::Io | Category::Syntax | Category::Eof => {
            ApiError::invalid(format!("invalid JSON body: {inner}"))
        }
    }
}

/// A field that may be absent but, when present, must hold a `T` (`null` is a wrong type).
pub(super) fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// A nullable field: absent → `None`, `null` → `Some(None)`, a `T` → `Some(Some(t))`.
pub(super) fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

pub(super) fn required<T>(value: Option<T>, field: &str) -> Result<T, ApiError> {
    value.ok_or_else(|| ApiError::validation(format!("{field}: is required")))
}

pub(super) fn plan(value: Option<String>) -> Result<Option<Plan>, ApiError> {
    match value.as_deref() {
        None => Ok(None),
        Some("free") => Ok(Some(Plan::Free)),
        Some("pro") => Ok(Some(Plan::Pro)),
        Some(other) => Err(ApiError::validation(format!(
            "plan: must be \"free\" or \"pro\", not {other:?}"
        ))),
    }
}

/// A `signature_scheme` field, 422 naming it when it is not one the API knows.
pub(super) fn scheme(value: Option<String>) -> Result<Option<SignatureScheme>, ApiError> {
    match value {
        None => Ok(None),
        Some(text) => SignatureScheme::parse(&text).map(Some).ok_or_else(|| {
            ApiError::validation(format!(
                "signature_scheme: must be \"hallway\" or \"standard\", not {:?}",
                hallway_domain::types::Echo(&text).to_string()
            ))
        }),
    }
}

/// A rotation's `grace` (`"24h"`, `"90m"`, `"1d"`), 422 naming it when it does not parse;
/// its cap is the domain's rule.
pub(super) fn grace(value: Option<String>) -> Result<Option<DurationMs>, ApiError> {
    let Some(text) = value else {
        return Ok(None);
    };
    let bad = || {
        ApiError::validation(format!(
            "grace: must be a duration such as \"24h\", \"90m\" or \"1d\", not {:?}",
            hallway_domain::types::Echo(&text).to_string()
        ))
    };
    let d = humantime::parse_duration(text.trim()).map_err(|_| bad())?;
    let ms = u64::try_from(d.as_millis()).map_err(|_| bad())?;
    Ok(Some(DurationMs(ms)))
}

/// `POST /v1/accounts`: a new account.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewAccount)]
pub(super) struct NewAccountBody {
    /// The host's id for it: 1 to 128 letters, digits, `_` or `-`.
    #[serde(default, deserialize_with = "present")]
    #[schema(required = true, nullable = false)]
    pub(super) id: Option<String>,
    /// Its display name.
    #[serde(default, deserialize_with = "present")]
    #[schema(required = true, nullable = false)]
    pub(super) name: Option<String>,
    /// Its plan.
    #[serde(default, deserialize_with = "present")]
    #[schema(required = true, nullable = false, value_type = crate::views::PlanName)]
    pub(super) plan: Option<String>,
}

/// `PATCH /v1/accounts/{acc}`: absent fields keep their value.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AccountChanges)]
pub(super) struct AccountChangesBody {
    /// A new display name.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub(super) name: Option<String>,
    /// A new plan.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, value_type = Option<crate::views::PlanName>)]
    pub(super) plan: Option<String>,
}

/// `POST /v1/accounts/{acc}/webhooks`: a new webhook.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewWebhook)]
pub(super) struct NewWebhookBody {
    /// A friendly name.
    #[serde(default, deserialize_with = "present")]
    #[schema(required = true, nullable = false)]
    pub(super) name: Option<String>,
    /// The HTTPS endpoint.
    #[serde(default, deserialize_with = "present")]
    #[schema(required = true, nullable = false)]
    pub(super) url: Option<String>,
    /// Optional notes.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub(super) description: Option<Option<String>>,
    /// Event types to subscribe to (at least one, each in the catalog).
    #[serde(default, deserialize_with = "present")]
    #[schema(required = true, nullable = false)]
    pub(super) events: Option<Vec<String>>,
    /// Projects to fire for; absent or empty means every project.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub(super) project_ids: Option<Vec<String>>,
    /// How deliveries are signed: `hallway` (`X-Hallway-Signature`, the default) or
    /// `standard` (Standard Webhooks' `webhook-signature`).
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub(super) signature_scheme: Option<String>,
}

/// `PATCH /v1/accounts/{acc}/webhooks/{wh}`: absent fields keep their value; a `null`
/// description clears it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WebhookChanges)]
pub(super) struct WebhookChangesBody {
    /// A new name.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub(super) name: Option<String>,
    /// A new endpoint.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub(super) url: Option<String>,
    /// New notes; `null` clears them.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub(super) description: Option<Option<String>>,
    /// New subscribed event types.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub(super) events: Option<Vec<String>>,
    /// A new project filter; empty means every project.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub(super) project_ids: Option<Vec<String>>,
    /// `true` re-enables (resetting the failure counter); `false` disables by hand.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub(super) enabled: Option<bool>,
    /// A new signature scheme: `hallway` or `standard`.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub(super) signature_scheme: Option<String>,
}

/// `POST /v1/accounts/{acc}/webhooks/{wh}/rotate-secret`: the body is optional (none, or an
/// empty one, rotates without a grace).
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RotateSecret)]
pub(super) struct RotateBody {
    /// How long the previous secret still signs too (`"24h"`, `"90m"`; at most 7 days);
    /// absent: the previous secret is invalid at once.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub(super) grace: Option<String>,
}

/// `POST /v1/accounts/{acc}/rotate-key`: an optional grace period for the old key.
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RotateKey)]
pub(super) struct RotateKeyBody {
    /// How long the old key keeps working (`24h`, `30m`; at most 7 days); absent: it stops
    /// at once.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub(super) grace: Option<String>,
}

/// The query of a page of accounts.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct AccountsQuery {
    /// Accounts per page, 1 to 100 (50 by default).
    #[param(minimum = 1, maximum = 100)]
    pub(super) limit: Option<usize>,
    /// The previous page's `next_cursor`; absent or empty for the first page.
    pub(super) cursor: Option<String>,
}

/// The query of a deliveries page.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct PageQuery {
    /// Deliveries per page, 1 to 100 (50 by default).
    #[param(minimum = 1, maximum = 100)]
    pub(super) limit: Option<usize>,
    /// The previous page's `next_cursor`; absent or empty for the first page.
    pub(super) cursor: Option<String>,
    /// Only deliveries in this status.
    #[param(value_type = Option<crate::views::DeliveryStatusName>)]
    pub(super) status: Option<String>,
    /// Only deliveries of this event type.
    pub(super) event_type: Option<String>,
    /// Only deliveries created at or after this time (RFC 3339).
    pub(super) since: Option<String>,
    /// Only deliveries created before this time (RFC 3339).
    pub(super) until: Option<String>,
}

impl PageQuery {
    /// The filter the query asks for; a bad value is 400 naming its parameter.
    pub(super) fn filter(&self) -> Result<hallway_store::DeliveryFilter, ApiError> {
        use hallway_store::DeliveryStatus as S;
        let status = match self.status.as_deref() {
            None => None,
            Some("pending") => Some(S::Pending),
            Some("succeeded") => Some(S::Succeeded),
            Some("failed") => Some(S::Failed),
            Some("cancelled") => Some(S::Cancelled),
            Some("paused") => Some(S::Paused),
            Some(other) => {
                return Err(ApiError::invalid(format!(
                    "status: must be pending, succeeded, failed, cancelled or paused, not {:?}",
                    hallway_domain::types::Echo(other).to_string()
                )))
            }
        };
        let time = |value: &Option<String>, name: &str| match value.as_deref() {
            None => Ok(None),
            Some(text) => Timestamp::parse_rfc3339(text).map(Some).ok_or_else(|| {
                ApiError::invalid(format!(
                    "{name}: must be an RFC 3339 time such as 2026-01-10T15:30:00.000Z"
                ))
            }),
        };
        let since = time(&self.since, "since")?;
        let until = time(&self.until, "until")?;
        if let (Some(s), Some(u)) = (since, until) {
            if u <= s {
                return Err(ApiError::invalid("until: must be after since"));
            }
        }
        if self.event_type.as_deref() == Some("") {
            return Err(ApiError::invalid("event_type: must not be empty"));
        }
        Ok(hallway_store::DeliveryFilter {
            status,
            event_type: self.event_type.clone(),
            since,
            until,
        })
    }
}

/// Query parameters whose rejections (an unknown parameter, a wrong type) answer the
/// contract's error object naming the parameter, rather than axum's plain text.
pub(super) struct ApiQuery<T>(pub(super) T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(ApiQuery(v)),
            Err(e) => {
                let text = e.body_text();
                let why = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text);
                Err(ApiError::invalid(format!("invalid query: {why}")))
            }
        }
    }
}

/// An RFC 3339 time field, 422 naming it when it does not parse.
pub(super) fn time(value: Option<String>, field: &str) -> Result<Option<Timestamp>, ApiError> {
    match value {
        None => Ok(None),
        Some(text) => Timestamp::parse_rfc3339(&text).map(Some).ok_or_else(|| {
            ApiError::validation(format!(
                "{field}: must be an RFC 3339 UTC time such as 2026-01-10T15:30:00.000Z"
            ))
        }),
    }
}

/// `POST /v1/accounts/{acc}/webhooks/{wh}/recover`: the range of creation times.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Recover)]
pub(super) struct RecoverBody {
    /// From this time (RFC 3339), inclusive.
    #[serde(default, deserialize_with = "present")]
    #[schema(required = true, nullable = false)]
    pub(super) since: Option<String>,
    /// Up to this time (RFC 3339), exclusive; absent: up to now.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub(super) until: Option<String>,
}

/// `POST /v1/accounts/{acc}/events/{evt}/replay`: where to send the event again.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Replay)]
pub(super) struct ReplayBody {
    /// These webhooks (each enabled), whatever their filters; absent: every enabled webhook
    /// the event matches now.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub(super) webhook_ids: Option<Vec<String>>,
}

/// A published event, as the host posts it: `type` and `project.id` are required, and every
/// other field goes to receivers as posted (`id`, `created_at`, `api_version` and `account`
/// are the engine's). Not read through this type: the engine checks the raw body.
#[derive(ToSchema)]
#[schema(as = Event)]
#[allow(dead_code)]
pub(super) struct EventBody {
    /// The event type; must be in the catalog (`GET /v1/event-types`).
    r#type: String,
    /// The idempotency id: publishing it again with the same body answers the first answer
    /// and sends nothing; with another body, 409 `conflict`.
    id: Option<String>,
    /// The project the event belongs to; webhooks' project filters match its `id`.
    project: EventProject,
}

/// An event's project.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct EventProject {
    /// The project's id.
    id: String,
}
