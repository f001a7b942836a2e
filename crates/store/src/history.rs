//! The delivery history projection's records.

use hallway_domain::{
    AccountId, AttemptDetail, AttemptError, DeliveryId, DeliverySummary, Event, EventId, Timestamp,
    WebhookId,
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

/// What logged events do to delivery records, the same in every backend (each keeps its own
/// indexes and payloads around these).
pub(crate) mod rules {
    use super::*;

    /// The records an event creates: a publish's and a replay's pending deliveries, a test
    /// send's, and the paused ones of a disabled webhook.
    pub(crate) fn created(event: &Event) -> Vec<DeliveryRecord> {
        let (account, event_id, event_type, deliveries, test, status, next, at) = match event {
            Event::EventPublished {
                account_id,
                event_id,
                event_type,
                deliveries,
                first_due,
                at,
                ..
            }
            | Event::EventReplayed {
                account_id,
                event_id,
                event_type,
                deliveries,
                first_due,
                at,
            } => (
                account_id,
                event_id,
                event_type,
                deliveries.as_slice(),
                false,
                DeliveryStatus::Pending,
                Some(*first_due),
                *at,
            ),
            Event::DeliveriesPaused {
                account_id,
                event_id,
                event_type,
                deliveries,
                at,
            } => (
                account_id,
                event_id,
                event_type,
                deliveries.as_slice(),
                false,
                DeliveryStatus::Paused,
                None,
                *at,
            ),
            Event::TestDeliveryCreated {
                delivery_id,
                webhook_id,
                account_id,
                event_id,
                event_type,
                at,
                ..
            } => {
                return vec![DeliveryRecord {
                    id: delivery_id.clone(),
                    webhook_id: webhook_id.clone(),
                    account_id: account_id.clone(),
                    event_id: event_id.clone(),
                    event_type: event_type.clone(),
                    test: true,
                    status: DeliveryStatus::Pending,
                    created_at: *at,
                    next_attempt_at: Some(*at),
                    attempts: Vec::new(),
                }]
            }
            _ => return Vec::new(),
        };
        deliveries
            .iter()
            .map(|(id, webhook)| DeliveryRecord {
                id: id.clone(),
                webhook_id: webhook.clone(),
                account_id: account.clone(),
                event_id: event_id.clone(),
                event_type: event_type.clone(),
                test,
                status,
                created_at: at,
                next_attempt_at: next,
                attempts: Vec::new(),
            })
            .collect()
    }

    /// The one existing record an event changes, if it is of that kind.
    pub(crate) fn updated(event: &Event) -> Option<&DeliveryId> {
        match event {
            Event::AttemptStarted { delivery_id, .. }
            | Event::AttemptSucceeded { delivery_id, .. }
            | Event::AttemptFailed { delivery_id, .. }
            | Event::AttemptAbandoned { delivery_id, .. }
            | Event::DeliveryCancelled { delivery_id, .. }
            | Event::DeliveryPaused { delivery_id, .. } => Some(delivery_id),
            _ => None,
        }
    }

    /// Changes the record [`updated`] names.
    pub(crate) fn update(r: &mut DeliveryRecord, event: &Event) {
        match event {
            Event::AttemptStarted { .. } => r.next_attempt_at = None,
            Event::AttemptSucceeded {
                attempt,
                status_code,
                duration,
                started_at,
                detail,
                ..
            } => {
                r.attempts.push(AttemptRecord {
                    attempt: *attempt,
                    started_at: *started_at,
                    duration_ms: duration.0,
                    status_code: Some(*status_code),
                    error: None,
                    detail: detail.clone(),
                });
                r.next_attempt_at = None;
                // A paused delivery whose open attempt got through did arrive: a recover must
                // not send it again.
                if r.status != DeliveryStatus::Cancelled {
                    r.status = DeliveryStatus::Succeeded;
                }
            }
            Event::AttemptFailed {
                attempt,
                status_code,
                error,
                duration,
                started_at,
                next_due,
                detail,
                ..
            } => {
                r.attempts.push(AttemptRecord {
                    attempt: *attempt,
                    started_at: *started_at,
                    duration_ms: duration.0,
                    status_code: *status_code,
                    error: Some(*error),
                    detail: detail.clone(),
                });
                // A cancelled or paused delivery records its open attempt's outcome and stops.
                if matches!(r.status, DeliveryStatus::Cancelled | DeliveryStatus::Paused) {
                    r.next_attempt_at = None;
                    return;
                }
                r.next_attempt_at = *next_due;
                if next_due.is_none() {
                    r.status = DeliveryStatus::Failed;
                }
            }
            Event::AttemptAbandoned { at, .. } if r.status == DeliveryStatus::Pending => {
                r.next_attempt_at = Some(*at);
            }
            Event::DeliveryCancelled { .. } => stop(r, DeliveryStatus::Cancelled),
            Event::DeliveryPaused { .. } => stop(r, DeliveryStatus::Paused),
            _ => {}
        }
    }

    fn stop(r: &mut DeliveryRecord, status: DeliveryStatus) {
        if r.status == DeliveryStatus::Pending {
            r.status = status;
            r.next_attempt_at = None;
        }
    }

    /// A retried or recovered delivery: pending again, due at `due`.
    pub(crate) fn requeue(r: &mut DeliveryRecord, due: Timestamp) {
        r.status = DeliveryStatus::Pending;
        r.next_attempt_at = Some(due);
    }

    /// The record of a retried or recovered delivery that retention removed meanwhile.
    pub(crate) fn recreated(d: &DeliverySummary, due: Timestamp) -> DeliveryRecord {
        DeliveryRecord {
            id: d.delivery_id.clone(),
            webhook_id: d.webhook_id.clone(),
            account_id: d.account_id.clone(),
            event_id: d.event_id.clone(),
            event_type: d.event_type.clone(),
            test: d.test,
            status: DeliveryStatus::Pending,
            created_at: d.created_at,
            next_attempt_at: Some(due),
            attempts: Vec::new(),
        }
    }
}
