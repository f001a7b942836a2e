//! The JSON shapes of the HTTP API, exactly as the contract names their fields. Each is the
//! type the API serialises and the schema the OpenAPI document shows, so the two cannot
//! differ.

use hallway_domain::{Account, AttemptError, Timestamp, Webhook};
use hallway_store::{AttemptRecord, DeliveryRecord, DeliveryStatus};
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// An RFC 3339 UTC time with milliseconds.
fn ts(t: Timestamp) -> String {
    t.to_rfc3339()
}

/// An account: `{"id","name","plan","created_at"}`.
#[derive(Serialize, ToSchema)]
#[schema(as = Account)]
pub struct AccountView {
    /// The host's id for the account.
    pub id: String,
    /// Its display name (the payload's `account.name`).
    pub name: String,
    /// `free` or `pro`; webhooks need `pro`.
    pub plan: PlanName,
    /// When it was created (RFC 3339).
    pub created_at: String,
}

/// A plan as the API spells it.
#[derive(Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = Plan)]
pub enum PlanName {
    /// No webhooks.
    Free,
    /// Webhooks included.
    Pro,
}

impl From<hallway_domain::Plan> for PlanName {
    fn from(p: hallway_domain::Plan) -> Self {
        match p {
            hallway_domain::Plan::Free => PlanName::Free,
            hallway_domain::Plan::Pro => PlanName::Pro,
        }
    }
}

impl AccountView {
    /// The view of an account.
    pub fn of(a: &Account) -> Self {
        AccountView {
            id: a.id.to_string(),
            name: a.name.clone(),
            plan: a.plan.into(),
            created_at: ts(a.created_at),
        }
    }
}

/// A new account with its API key, shown only in this answer.
#[derive(Serialize, ToSchema)]
pub struct CreatedAccount {
    /// The account.
    #[serde(flatten)]
    pub account: AccountView,
    /// The account's key (`Authorization: Bearer ...` on its own routes); shown once.
    pub api_key: String,
}

/// Why a webhook is disabled.
#[derive(Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = DisabledReason)]
pub enum DisabledReasonName {
    /// Switched off by a person.
    Manual,
    /// Switched off after too many consecutive failed attempts.
    ConsecutiveFailures,
}

/// A webhook, never with its secret.
#[derive(Serialize, ToSchema)]
#[schema(as = Webhook)]
pub struct WebhookView {
    /// Its id (`wh_...`).
    pub id: String,
    /// Its account.
    pub account_id: String,
    /// A friendly name.
    pub name: String,
    /// The endpoint deliveries are POSTed to.
    pub url: String,
    /// Optional notes.
    pub description: Option<String>,
    /// Subscribed event types.
    pub events: Vec<String>,
    /// Projects it fires for; empty means every project.
    pub project_ids: Vec<String>,
    /// Whether real deliveries go to it.
    pub enabled: bool,
    /// Why it is disabled, when it is.
    pub disabled_reason: Option<DisabledReasonName>,
    /// Failed attempts since the last success or re-enable.
    pub consecutive_failures: u32,
    /// How deliveries are signed: `hallway` (`X-Hallway-Signature`) or `standard` (Standard
    /// Webhooks).
    pub signature_scheme: String,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When it last changed (RFC 3339).
    pub updated_at: String,
}

impl WebhookView {
    /// The view of a webhook.
    pub fn of(w: &Webhook) -> Self {
        WebhookView {
            id: w.id.to_string(),
            account_id: w.account_id.to_string(),
            name: w.config.name.clone(),
            url: w.config.url.clone(),
            description: w.config.description.clone(),
            events: w.config.events.clone(),
            project_ids: w.config.project_ids.iter().map(|p| p.to_string()).collect(),
            enabled: w.enabled,
            disabled_reason: w.disabled_reason.map(|r| match r {
                hallway_domain::DisabledReason::Manual => DisabledReasonName::Manual,
                hallway_domain::DisabledReason::ConsecutiveFailures => {
                    DisabledReasonName::ConsecutiveFailures
                }
            }),
            consecutive_failures: w.consecutive_failures,
            signature_scheme: w.config.signature_scheme.as_str().to_owned(),
            created_at: ts(w.created_at),
            updated_at: ts(w.updated_at),
        }
    }
}

/// A new webhook with its signing secret, shown only in this answer.
#[derive(Serialize, ToSchema)]
pub struct CreatedWebhook {
    /// The webhook.
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// The signing secret; shown once.
    pub secret: String,
}

/// Where a delivery stands.
#[derive(Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = DeliveryStatus)]
pub enum DeliveryStatusName {
    /// More attempts will be made (or one is under way).
    Pending,
    /// An attempt got a 2xx in time.
    Succeeded,
    /// Every attempt failed.
    Failed,
    /// Stopped because the webhook was deleted.
    Cancelled,
    /// Recorded while its webhook was disabled; nothing is sent until a recover.
    Paused,
}

impl From<DeliveryStatus> for DeliveryStatusName {
    fn from(s: DeliveryStatus) -> Self {
        match s {
            DeliveryStatus::Pending => DeliveryStatusName::Pending,
            DeliveryStatus::Succeeded => DeliveryStatusName::Succeeded,
            DeliveryStatus::Failed => DeliveryStatusName::Failed,
            DeliveryStatus::Cancelled => DeliveryStatusName::Cancelled,
            DeliveryStatus::Paused => DeliveryStatusName::Paused,
        }
    }
}

/// How an attempt failed.
#[derive(Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = AttemptError)]
pub enum AttemptErrorName {
    /// No response head within the attempt timeout.
    Timeout,
    /// The connection could not be made.
    Connect,
    /// The TLS handshake failed.
    Tls,
    /// A response arrived with a status other than 2xx.
    HttpStatus,
    /// The target resolved to a refused address.
    BlockedTarget,
    /// The answer was not valid HTTP.
    InvalidResponse,
}

impl From<hallway_domain::AttemptError> for AttemptErrorName {
    fn from(e: hallway_domain::AttemptError) -> Self {
        use hallway_domain::AttemptError as E;
        match e {
            E::Timeout => AttemptErrorName::Timeout,
            E::Connect => AttemptErrorName::Connect,
            E::Tls => AttemptErrorName::Tls,
            E::HttpStatus => AttemptErrorName::HttpStatus,
            E::BlockedTarget => AttemptErrorName::BlockedTarget,
            E::InvalidResponse => AttemptErrorName::InvalidResponse,
        }
    }
}

/// One attempt of a delivery.
#[derive(Serialize, ToSchema)]
#[schema(as = Attempt)]
pub struct AttemptView {
    /// Its number, from 1.
    pub attempt: u32,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// How long it took.
    pub duration_ms: u64,
    /// The HTTP status received, if any.
    pub status_code: Option<u16>,
    /// How it failed, if it did.
    pub error: Option<AttemptErrorName>,
    /// Why it failed, in words: what the sender saw, or what its class and status say.
    pub error_message: Option<String>,
    /// The request's headers as sent (the signature included); `null` if never reported.
    pub request_headers: Option<BTreeMap<String, String>>,
    /// The response's headers; `null` when no response came.
    pub response_headers: Option<BTreeMap<String, String>>,
    /// The response body's first 4 KiB (as text, invalid UTF-8 replaced); `null` when no
    /// response came.
    pub response_body: Option<String>,
    /// Whether the response body was longer than what is kept.
    pub response_body_truncated: bool,
}

impl AttemptView {
    /// The view of an attempt: `null` where nothing is known (no response came, or the
    /// attempt was never reported).
    pub fn of(a: &AttemptRecord) -> Self {
        let detail = a.detail.as_deref();
        let answered = a.status_code.is_some() && detail.is_some();
        AttemptView {
            attempt: a.attempt,
            started_at: ts(a.started_at),
            duration_ms: a.duration_ms,
            status_code: a.status_code,
            error: a.error.map(Into::into),
            error_message: error_words(a),
            request_headers: detail
                .filter(|d| !d.request_headers.is_empty())
                .map(|d| header_object(&d.request_headers)),
            response_headers: detail
                .filter(|_| answered)
                .map(|d| header_object(&d.response_headers)),
            response_body: detail.filter(|_| answered).map(|d| d.response_body.clone()),
            response_body_truncated: detail.is_some_and(|d| answered && d.response_body_truncated),
        }
    }
}

/// Headers as an object; a repeated name's values joined with ", " (as HTTP allows).
fn header_object(headers: &[(String, String)]) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        out.entry(name.clone())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(value);
            })
            .or_insert_with(|| value.clone());
    }
    out
}

/// A delivery with every attempt.
#[derive(Serialize, ToSchema)]
#[schema(as = Delivery)]
pub struct DeliveryView {
    /// Its id (`dlv_...`).
    pub id: String,
    /// Its webhook.
    pub webhook_id: String,
    /// The event it carries.
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// Whether it is a test send.
    pub test: bool,
    /// Where it stands.
    pub status: DeliveryStatusName,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When the next attempt is due, while pending and not under way.
    pub next_attempt_at: Option<String>,
    /// Recorded attempts, oldest first.
    pub attempts: Vec<AttemptView>,
}

impl DeliveryView {
    /// The view of a delivery.
    pub fn of(d: &DeliveryRecord) -> Self {
        DeliveryView {
            id: d.id.to_string(),
            webhook_id: d.webhook_id.to_string(),
            event_id: d.event_id.to_string(),
            event_type: d.event_type.clone(),
            test: d.test,
            status: d.status.into(),
            created_at: ts(d.created_at),
            next_attempt_at: d.next_attempt_at.map(ts),
            attempts: d.attempts.iter().map(AttemptView::of).collect(),
        }
    }
}

/// A list of webhooks, oldest first.
#[derive(Serialize, ToSchema)]
pub struct WebhookList {
    /// The webhooks.
    pub data: Vec<WebhookView>,
}

/// One page of a webhook's deliveries, newest first.
#[derive(Serialize, ToSchema)]
pub struct DeliveryPage {
    /// The deliveries.
    pub data: Vec<DeliveryView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// A webhook's new signing secret, shown only in this answer.
#[derive(Serialize, ToSchema)]
#[schema(as = Secret)]
pub struct SecretView {
    /// The new secret.
    pub secret: String,
    /// When a rotation's grace ends and the previous secret stops signing; `null` without one.
    pub previous_secret_expires_at: Option<String>,
}

/// The delivery a test send created.
#[derive(Serialize, ToSchema)]
pub struct TestSent {
    /// The test delivery's id.
    pub delivery_id: String,
}

/// A delivery reopened for one more attempt.
#[derive(Serialize, ToSchema)]
pub struct RetryQueued {
    /// The delivery.
    pub delivery_id: String,
    /// Always `pending`: the attempt is under way or due now.
    pub status: DeliveryStatusName,
}

/// What a publish answered.
#[derive(Serialize, ToSchema)]
pub struct Published {
    /// The event's id (the host's `id`, or a fresh `evt_...`).
    pub id: String,
    /// Deliveries scheduled (by the first publish, for a repeat).
    pub deliveries: u32,
}

/// How many deliveries a recover or replay created.
#[derive(Serialize, ToSchema)]
pub struct DeliveryCount {
    /// The number of deliveries.
    pub deliveries: u64,
}

/// A single-use sign-in link to the webhooks page.
#[derive(Serialize, ToSchema)]
pub struct PortalLink {
    /// The link; spent on its first use.
    pub url: String,
    /// When it stops working (RFC 3339).
    pub expires_at: String,
}

/// `/healthz` and `/readyz`.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `ready` when the engine takes work, `unavailable` when it does not.
    pub status: String,
}

/// An error answer's body.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable snake_case code (`not_found`, `validation_failed`, ...).
    pub code: String,
    /// A sentence for people; names the field at fault where there is one.
    pub message: String,
}

/// An event type of the catalog.
#[derive(Serialize, ToSchema)]
#[schema(as = EventType)]
pub struct EventTypeView {
    /// Its name, as events' `type` and webhooks' `events` spell it.
    pub name: String,
    /// What it means.
    pub description: String,
    /// An example of the event's own fields, as a host publishes them (receivers get them
    /// inside the envelope: `id`, `type`, `created_at`, `api_version`, `account` first). Test
    /// sends deliver it.
    #[schema(value_type = Object)]
    pub example: RawJson,
}

/// JSON text serialised as it is (members in their order), not as a string.
pub struct RawJson(pub String);

impl Serialize for RawJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let raw: &serde_json::value::RawValue =
            serde_json::from_str(&self.0).map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

impl EventTypeView {
    /// The view of a catalog entry.
    pub fn of(t: &hallway_domain::EventType) -> Self {
        EventTypeView {
            name: t.name.clone(),
            description: t.description.clone(),
            example: RawJson(t.example.clone()),
        }
    }
}

/// The event catalog, in the order declared.
#[derive(Serialize, ToSchema)]
pub struct EventTypeList {
    /// The event types.
    pub data: Vec<EventTypeView>,
}

/// Why an attempt failed, in words: what the sender saw, or what its class and status say.
pub fn error_words(a: &AttemptRecord) -> Option<String> {
    let error = a.error?;
    if let Some(message) = a.detail.as_deref().and_then(|d| d.error_message.clone()) {
        return Some(message);
    }
    let answered = |code: u16| {
        let reason = axum::http::StatusCode::from_u16(code)
            .ok()
            .and_then(|s| s.canonical_reason())
            .map(|r| format!(" {r}"))
            .unwrap_or_default();
        format!("HTTP {code}{reason}")
    };
    Some(match (error, a.status_code) {
        (AttemptError::HttpStatus, Some(code)) => {
            format!("the endpoint answered {}", answered(code))
        }
        (AttemptError::Timeout, Some(code)) => format!(
            "the endpoint answered {} after {} ms, past the attempt timeout",
            answered(code),
            a.duration_ms
        ),
        (AttemptError::Timeout, None) => {
            "no outcome was reported by the attempt's deadline".to_owned()
        }
        (AttemptError::HttpStatus, None) => "the endpoint's answer was not 2xx".to_owned(),
        (AttemptError::Connect, _) => "could not connect to the endpoint".to_owned(),
        (AttemptError::Tls, _) => "the TLS handshake failed".to_owned(),
        (AttemptError::BlockedTarget, _) => "the target is a refused address".to_owned(),
        (AttemptError::InvalidResponse, _) => "the answer was not valid HTTP".to_owned(),
    })
}

/// A page of accounts, by id.
#[derive(Serialize, ToSchema)]
pub struct AccountList {
    /// The accounts.
    pub data: Vec<AccountView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// An account's new API key, shown only in this answer.
#[derive(Serialize, ToSchema)]
pub struct KeyRotated {
    /// The new key.
    pub api_key: String,
    /// When the previous key stops working (RFC 3339); `null`: it already has.
    pub previous_key_expires_at: Option<String>,
}
