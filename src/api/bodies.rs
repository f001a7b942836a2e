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

/// `POST /v1/accounts`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewAccountBody {
    #[serde(default, deserialize_with = "present")]
    pub(super) id: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub(super) name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub(super) plan: Option<String>,
}

/// `PATCH /v1/accounts/{acc}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AccountChangesBody {
    #[serde(default, deserialize_with = "present")]
    pub(super) name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub(super) plan: Option<String>,
}

/// `POST /v1/accounts/{acc}/webhooks`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewWebhookBody {
    #[serde(default, deserialize_with = "present")]
    pub(super) name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub(super) url: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub(super) description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub(super) events: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    pub(super) project_ids: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    pub(super) signature_scheme: Option<String>,
}

/// `PATCH /v1/accounts/{acc}/webhooks/{wh}`: absent fields keep their value; a `null`
/// description clears it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WebhookChangesBody {
    #[serde(default, deserialize_with = "present")]
    pub(super) name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub(super) url: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub(super) description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub(super) events: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    pub(super) project_ids: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    pub(super) enabled: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    pub(super) signature_scheme: Option<String>,
}

/// `POST /v1/accounts/{acc}/webhooks/{wh}/rotate-secret`: the body is optional (none, or an
/// empty one, rotates without a grace).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RotateBody {
    #[serde(default, deserialize_with = "present")]
    pub(super) grace: Option<String>,
}

/// The query of a deliveries page.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PageQuery {
    pub(super) limit: Option<usize>,
    pub(super) cursor: Option<String>,
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

/// `POST /v1/accounts/{acc}/webhooks/{wh}/recover`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RecoverBody {
    #[serde(default, deserialize_with = "present")]
    pub(super) since: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub(super) until: Option<String>,
}

/// `POST /v1/accounts/{acc}/events/{evt}/replay`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReplayBody {
    #[serde(default, deserialize_with = "present")]
    pub(super) webhook_ids: Option<Vec<String>>,
}
