//! Rejections: each broken rule, with a message a person can act on.

use crate::types::{AccountId, DeliveryId, Echo, EventId, WebhookId};

/// The broad class of a rejection, which the HTTP layer maps to a status and error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectionKind {
    /// The named thing does not exist (or belongs to someone else).
    NotFound,
    /// The request conflicts with the current state.
    Conflict,
    /// The account's plan does not include webhooks.
    PlanRequired,
    /// A count limit would be exceeded.
    LimitReached,
    /// The request is not well-formed (bad JSON, wrong types).
    InvalidRequest,
    /// A field breaks a rule.
    Validation,
    /// The body is larger than allowed.
    PayloadTooLarge,
    /// The request repeats an earlier one; the caller treats it as success.
    Duplicate,
}

/// Why a command was refused. Nothing changes when a command is rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// No such account.
    #[error("account {} not found", Echo(.0.as_str()))]
    AccountNotFound(AccountId),
    /// An account with this id exists already.
    #[error("account {} already exists", Echo(.0.as_str()))]
    AccountExists(AccountId),
    /// Webhooks are a Pro feature.
    #[error("webhooks require the Pro plan; account {} is on the free plan", Echo(.0.as_str()))]
    PlanRequired(AccountId),
    /// The account has as many webhooks as it may have.
    #[error("account {} already has the maximum of {max} webhooks", Echo(account.as_str()))]
    LimitReached {
        /// The account.
        account: AccountId,
        /// The limit.
        max: u32,
    },
    /// No such webhook in this account (or it was deleted).
    #[error("webhook {} not found", Echo(.0.as_str()))]
    WebhookNotFound(WebhookId),
    /// No such delivery for this webhook.
    #[error("delivery {0} not found")]
    DeliveryNotFound(DeliveryId),
    /// Only finished deliveries can be retried by hand.
    #[error("delivery {0} is still pending; only finished deliveries can be retried")]
    DeliveryNotFinished(DeliveryId),
    /// The delivery has had every attempt it may have, manual retries included.
    #[error("delivery {delivery_id} has had {max} attempts, the most one delivery may have, and cannot be retried again")]
    AttemptsExhausted {
        /// The delivery.
        delivery_id: DeliveryId,
        /// The cap.
        max: u32,
    },
    /// Real deliveries are not sent to a disabled webhook.
    #[error("webhook {} is disabled; enable it first", Echo(.0.as_str()))]
    WebhookDisabled(WebhookId),
    /// An event with this id was published before; nothing was scheduled again.
    #[error("event {} was already published", Echo(event_id.as_str()))]
    EventExists {
        /// The event.
        event_id: EventId,
        /// How many deliveries the first publish scheduled.
        deliveries: u32,
    },
    /// An event with this id was published before with another body; nothing was scheduled.
    #[error("event {} was already published with a different body; publish a new event under a new id", Echo(.0.as_str()))]
    EventConflict(EventId),
    /// The payload is over the size limit.
    #[error("payload is {size} bytes; the maximum is {max}")]
    PayloadTooLarge {
        /// The payload's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Malformed JSON or a value of the wrong type.
    #[error("{0}")]
    InvalidRequest(String),
    /// The webhook name is empty.
    #[error("name: must not be empty")]
    EmptyName,
    /// The URL cannot be parsed or uses a scheme other than https/http.
    #[error("url: {0}")]
    InvalidUrl(String),
    /// The URL is `http://` and only HTTPS is allowed.
    #[error("url: must use https://")]
    HttpsRequired,
    /// The URL points at a loopback, private, link-local or otherwise refused address.
    #[error("url: target {0} is a private or reserved address and is refused")]
    TargetRefused(String),
    /// The webhook subscribes to nothing.
    #[error("events: at least one event type is required")]
    NoEventTypes,
    /// An event type that does not exist.
    #[error("events: unknown event type \"{}\"", Echo(.0))]
    UnknownEventType(String),
    /// A published event's `type` that does not exist.
    #[error("type: unknown event type \"{}\"", Echo(.0))]
    UnknownPublishedType(String),
    /// A project filter entry is empty.
    #[error("project_ids: project ids must not be empty")]
    EmptyProjectId,
    /// A text field is longer than allowed.
    #[error("{field}: longer than {max} characters")]
    TooLong {
        /// The field.
        field: &'static str,
        /// The limit.
        max: usize,
    },
    /// A list field has more entries than allowed.
    #[error("{field}: more than {max} entries")]
    TooMany {
        /// The field.
        field: &'static str,
        /// The limit.
        max: usize,
    },
    /// A required field is missing or empty.
    #[error("{0}: is required")]
    MissingField(&'static str),
    /// A field's value breaks a rule.
    #[error("{field}: {message}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// No published event with this id has a body kept (never published, or past retention).
    #[error("event {} not found (never published, or older than the retention window)", Echo(.0.as_str()))]
    EventNotFound(EventId),
    /// A recover's range holds more deliveries than one recover may send.
    #[error("the range holds more than {max} deliveries to recover, the most one recover may send; recover a shorter range (set until)")]
    TooManyToRecover {
        /// The cap.
        max: u64,
    },
    /// The reported attempt is not the delivery's open attempt (late or duplicate report).
    #[error("attempt {attempt} of delivery {delivery_id} is not open")]
    AttemptNotOpen {
        /// The delivery.
        delivery_id: DeliveryId,
        /// The attempt reported.
        attempt: u32,
    },
}

impl Rejection {
    /// The broad class, for mapping to a protocol status.
    pub fn kind(&self) -> RejectionKind {
        use Rejection::*;
        match self {
            AccountNotFound(_) | WebhookNotFound(_) | DeliveryNotFound(_) | EventNotFound(_) => {
                RejectionKind::NotFound
            }
            AccountExists(_) | DeliveryNotFinished(_) | WebhookDisabled(_) => {
                RejectionKind::Conflict
            }
            AttemptNotOpen { .. } | EventConflict(_) => RejectionKind::Conflict,
            PlanRequired(_) => RejectionKind::PlanRequired,
            LimitReached { .. } | AttemptsExhausted { .. } | TooManyToRecover { .. } => {
                RejectionKind::LimitReached
            }
            EventExists { .. } => RejectionKind::Duplicate,
            PayloadTooLarge { .. } => RejectionKind::PayloadTooLarge,
            InvalidRequest(_) => RejectionKind::InvalidRequest,
            EmptyName
            | InvalidUrl(_)
            | HttpsRequired
            | TargetRefused(_)
            | NoEventTypes
            | UnknownEventType(_)
            | UnknownPublishedType(_)
            | EmptyProjectId
            | TooLong { .. }
            | TooMany { .. }
            | MissingField(_)
            | InvalidField { .. } => RejectionKind::Validation,
        }
    }
}
