//! Operational alerts for the host: a webhook disabled, enabled, failing or recovered. They
//! are logged events, decided with the facts that cause them, so replaying the log yields
//! the same alerts in the same places.

use crate::types::{AccountId, AttemptError, DisabledReason, WebhookId};
use serde::{Deserialize, Serialize};

/// What happened to a webhook that its owner should hear about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlertKind {
    /// The webhook was disabled, by hand or by the failure rule (`webhook.disabled`).
    Disabled,
    /// The webhook was enabled again (`webhook.enabled`).
    Enabled,
    /// The webhook reached the warning number of consecutive failures (`webhook.failing`).
    Failing,
    /// The first success after the warning (`webhook.recovered`).
    Recovered,
}

impl AlertKind {
    /// The alert's type as hosts receive it.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Disabled => "webhook.disabled",
            AlertKind::Enabled => "webhook.enabled",
            AlertKind::Failing => "webhook.failing",
            AlertKind::Recovered => "webhook.recovered",
        }
    }
}

/// One alert about one webhook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// What happened.
    pub kind: AlertKind,
    /// The webhook.
    pub webhook_id: WebhookId,
    /// Its account.
    pub account_id: AccountId,
    /// Why it was disabled (`Disabled` only).
    pub reason: Option<DisabledReason>,
    /// The failure that caused it (`Disabled` by the failure rule, and `Failing`).
    pub last_error: Option<AttemptError>,
    /// The webhook's consecutive failures at the time (before the reset, for `Recovered`).
    pub consecutive_failures: u32,
}
