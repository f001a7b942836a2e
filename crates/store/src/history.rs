//! The delivery history projection's records.

use hallway_domain::{
    AccountId, AttemptDetail, AttemptError, DeliveryId, EventId, Timestamp, WebhookId,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Where a delivery stands, as history shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// More attempts will be made (or one is under way).
    Pending,
    /// An attempt got a 2xx in time.
    Succeeded,
    /// Every attempt failed.
    Failed,
    /// Stopped because the webhook was deleted (or, before pausing existed, disabled).
    Cancelled,
    /// Recorded while its webhook was disabled: nothing more is sent until a recover.
    Paused,
}

/// One recorded attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// Its number, from 1.
    pub attempt: u32,
    /// When it started.
    pub started_at: Timestamp,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// The HTTP status received, if any.
    pub status_code: Option<u16>,
    /// How it failed, if it did.
    pub error: Option<AttemptError>,
    /// What was sent and received (bounded, see [`hallway_domain::attempt`]); `None` for an
    /// attempt nobody reported (its deadline passed).
    pub detail: Option<Arc<AttemptDetail>>,
}

/// A delivery with every attempt, as the history API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// Its id.
    pub id: DeliveryId,
    /// Its webhook.
    pub webhook_id: WebhookId,
    /// The webhook's account.
    pub account_id: AccountId,
    /// The event.
    pub event_id: EventId,
    /// The event's type.
    pub event_type: String,
    /// Whether it is a test send.
    pub test: bool,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// When it was created.
    pub created_at: Timestamp,
    /// When the next attempt is due, while pending and not under way.
    pub next_attempt_at: Option<Timestamp>,
    /// Recorded attempts, oldest first.
    pub attempts: Vec<AttemptRecord>,
}

/// Deliveries a filtered page examines at most before it stops early (with a cursor to go
/// on), in every backend: a filter that matches little must not read a whole history in one
/// request.
pub(crate) const SCAN_MAX: usize = 10_000;

/// Which of a webhook's deliveries a page lists; every field left `None` lists them all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryFilter {
    /// Only deliveries in this status.
    pub status: Option<DeliveryStatus>,
    /// Only deliveries of this event type.
    pub event_type: Option<String>,
    /// Only deliveries created at or after this time.
    pub since: Option<Timestamp>,
    /// Only deliveries created before this time.
    pub until: Option<Timestamp>,
}

impl DeliveryFilter {
    /// Whether a delivery created at `at` is in the time range.
    pub fn in_range(&self, at: Timestamp) -> bool {
        self.since.is_none_or(|s| at >= s) && self.until.is_none_or(|u| at < u)
    }

    /// Whether the filter reads only creation times (no record needs loading to judge).
    pub fn by_time_only(&self) -> bool {
        self.status.is_none() && self.event_type.is_none()
    }

    /// Whether `record` passes every condition.
    pub fn matches(&self, record: &DeliveryRecord) -> bool {
        self.in_range(record.created_at)
            && self.status.is_none_or(|s| record.status == s)
            && self
                .event_type
                .as_deref()
                .is_none_or(|t| record.event_type == t)
    }
}

/// One page of a webhook's deliveries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// Newest first.
    pub data: Vec<DeliveryRecord>,
    /// Pass as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}
