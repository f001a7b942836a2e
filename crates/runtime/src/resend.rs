//! What a host asks for by hand, beyond managing accounts and webhooks: test sends, manual
//! retries, recovers and replays (each a request to a customer's endpoint, so rate-limited or
//! capped), and the stream of alerts about webhooks.

use crate::alerts::{self, AlertCursor};
use crate::{ids, EngineError, EngineHandle};
use hallway_domain::{
    AccountId, CommandKind, DeliveryId, DeliverySummary, Event, EventId, RecoverCandidate,
    Rejection, Timestamp, WebhookId,
};
use hallway_store::{DeliveryStatus, EventStore};

/// Deliveries one recover may send again unless configured.
pub const DEFAULT_MAX_RECOVER: usize = 100_000;

/// Deliveries one logged decision of a recover carries: each chunk is one log record, so a
/// large recover never makes one huge record, and the actor answers others between chunks.
const RECOVER_CHUNK: usize = 5_000;

impl EngineHandle {
    /// Sends the catalog's example of the webhook's (first) event type, marked
    /// `"_test": true`, to a webhook once, also while disabled.
    pub async fn send_test(
        &self,
        account: &AccountId,
        webhook: &WebhookId,
    ) -> Result<DeliveryId, EngineError> {
        let w = self.webhook(account, webhook).await?;
        // A webhook subscribes to catalog types only; one whose types all left the catalog
        // (a restart with another catalog) has no example to send.
        let example = w
            .config
            .events
            .iter()
            .find_map(|name| self.catalog.get(name))
            .ok_or_else(|| Rejection::InvalidField {
                field: "events",
                message: "none of the webhook's event types is in the catalog any more".into(),
            })?;
        self.take_manual(account)?;
        let delivery_id = ids::test_delivery_id(&*self.random, self.now());
        self.exec(
            CommandKind::SendTest {
                account_id: account.clone(),
                webhook_id: webhook.clone(),
                delivery_id: delivery_id.clone(),
                event_id: EventId::from(ids::event_id(&*self.random)),
                event_type: example.name.clone(),
                example_fields: example.example_fields().to_owned(),
            },
            |_, _| (),
        )
        .await?;
        Ok(delivery_id)
    }

    /// Makes one more attempt of a finished delivery now, within the policy's cap on attempts
    /// and the account's rate of manual actions.
    pub async fn retry_delivery(
        &self,
        account: &AccountId,
        webhook: &WebhookId,
        delivery: &DeliveryId,
    ) -> Result<(), EngineError> {
        self.take_manual(account)?;
        let _resend = self.resend.lock().await;
        let record = self.delivery(account, webhook, delivery).await?;
        let summary = DeliverySummary {
            delivery_id: record.id,
            webhook_id: record.webhook_id,
            account_id: record.account_id,
            event_id: record.event_id,
            event_type: record.event_type,
            test: record.test,
            created_at: record.created_at,
            attempts_made: record.attempts.len() as u32,
        };
        self.exec(
            CommandKind::RetryDelivery {
                account_id: account.clone(),
                delivery: summary,
            },
            |_, _| (),
        )
        .await
    }

    /// Every alert after `after` (all for `None`), those in the log first, then new ones as
    /// they commit. Pair with [`EngineHandle::hold_alerts`] so the log keeps what a subscriber
    /// has not read yet across snapshots and restarts.
    pub fn alerts(&self, after: Option<AlertCursor>) -> alerts::AlertStream {
        alerts::subscribe(&self.alerts, self.store.clone(), after)
    }

    /// Keeps the log from `after`'s record on (every record for `None`): snapshots truncate
    /// nothing a subscriber has not read. Call again as the subscriber's cursor advances.
    pub fn hold_alerts(&self, after: Option<AlertCursor>) {
        self.hold_log_from(after.map_or(1, AlertCursor::next_record));
    }

    /// Keeps the log from record `seq` on.
    pub fn hold_log_from(&self, seq: u64) {
        self.alerts
            .floor
            .store(seq.max(1), std::sync::atomic::Ordering::Release);
    }

    /// Sends again every paused, failed or cancelled (never a succeeded, pending or test)
    /// delivery of a webhook created in `[since, until)`, oldest first, each with a fresh retry
    /// schedule. Refused while the webhook is disabled, and when the range holds more than the
    /// configured maximum. Answers how many deliveries were sent again.
    ///
    /// Each chunk of the recover is one logged decision: once this answers, every delivery is
    /// pending in the log and survives a crash; a crash before leaves a part done, and asking
    /// again sends the rest (pending and succeeded ones are skipped).
    pub async fn recover(
        &self,
        account: &AccountId,
        webhook: &WebhookId,
        since: Timestamp,
        until: Option<Timestamp>,
    ) -> Result<u64, EngineError> {
        if let Some(until) = until {
            if until <= since {
                return Err(Rejection::InvalidField {
                    field: "until",
                    message: "must be after since".into(),
                }
                .into());
            }
        }
        let _resend = self.resend.lock().await;
        let w = self.webhook(account, webhook).await?;
        if !w.enabled {
            return Err(Rejection::WebhookDisabled(webhook.clone()).into());
        }
        let store = self.store.clone();
        let (webhook_id, max) = (webhook.clone(), self.max_recover);
        let candidates = crate::store_calls::spawn(&*self.store, move || {
            recover_candidates(&*store, &webhook_id, since, until, max)
        })
        .await
        .map_err(EngineError::from)??;
        let Some(candidates) = candidates else {
            return Err(Rejection::TooManyToRecover { max: max as u64 }.into());
        };
        let mut sent = 0u64;
        let mut candidates = candidates.into_iter().peekable();
        while candidates.peek().is_some() {
            let chunk: Vec<RecoverCandidate> = candidates.by_ref().take(RECOVER_CHUNK).collect();
            sent += self
                .exec(
                    CommandKind::RecoverDeliveries {
                        account_id: account.clone(),
                        webhook_id: webhook.clone(),
                        candidates: chunk,
                    },
                    |events, _| {
                        events
                            .iter()
                            .map(|e| match e {
                                Event::DeliveriesRecovered { deliveries, .. } => {
                                    deliveries.len() as u64
                                }
                                _ => 0,
                            })
                            .sum::<u64>()
                    },
                )
                .await?;
        }
        Ok(sent)
    }

    /// Sends a published event again, as new deliveries of the same body and event id, to
    /// `webhook_ids` (each must be enabled) or else to every enabled webhook it matches now.
    /// Answers how many deliveries were created.
    pub async fn replay(
        &self,
        account: &AccountId,
        event: &EventId,
        webhook_ids: Option<Vec<WebhookId>>,
    ) -> Result<u64, EngineError> {
        let not_found = || EngineError::from(Rejection::EventNotFound(event.clone()));
        let body = self.store.payload(account, event)?.ok_or_else(not_found)?;
        // The envelope the engine wrote: its type and project decide the fan-out.
        let parsed: serde_json::Value = serde_json::from_str(&body).map_err(|_| not_found())?;
        let event_type = parsed["type"].as_str().ok_or_else(not_found)?.to_owned();
        let project_id = parsed["project"]["id"].as_str().unwrap_or_default();
        if parsed.get("_test").is_some() {
            return Err(not_found());
        }
        self.exec(
            CommandKind::ReplayEvent {
                account_id: account.clone(),
                event_id: event.clone(),
                event_type,
                project_id: project_id.into(),
                webhook_ids,
                fan_out: ids::fan_out(&*self.random, self.now()),
            },
            |events, _| {
                events
                    .iter()
                    .map(|e| match e {
                        Event::EventReplayed { deliveries, .. } => deliveries.len() as u64,
                        _ => 0,
                    })
                    .sum::<u64>()
            },
        )
        .await
    }
}

/// A webhook's deliveries a recover of `[since, until)` may send again, oldest first; `None`
/// when there are more than `max`. History lists newest first, so reading stops at the first
/// delivery created before `since`.
fn recover_candidates(
    store: &dyn EventStore,
    webhook: &WebhookId,
    since: Timestamp,
    until: Option<Timestamp>,
    max: usize,
) -> Result<Option<Vec<RecoverCandidate>>, EngineError> {
    let mut out: Vec<RecoverCandidate> = Vec::new();
    let mut cursor: Option<String> = None;
    'pages: loop {
        let page = store.deliveries(webhook, 1024, cursor.as_deref())?;
        for r in page.data {
            if r.created_at < since {
                break 'pages;
            }
            if until.is_some_and(|u| r.created_at >= u) || r.test {
                continue;
            }
            let resendable = matches!(
                r.status,
                DeliveryStatus::Paused | DeliveryStatus::Failed | DeliveryStatus::Cancelled
            );
            if !resendable {
                continue;
            }
            if out.len() == max {
                return Ok(None);
            }
            out.push(RecoverCandidate {
                succeeded: r.status == DeliveryStatus::Succeeded,
                delivery: DeliverySummary {
                    attempts_made: r.attempts.len() as u32,
                    delivery_id: r.id,
                    webhook_id: r.webhook_id,
                    account_id: r.account_id,
                    event_id: r.event_id,
                    event_type: r.event_type,
                    test: r.test,
                    created_at: r.created_at,
                },
            });
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    out.sort_by(|a, b| {
        (a.delivery.created_at, &a.delivery.delivery_id)
            .cmp(&(b.delivery.created_at, &b.delivery.delivery_id))
    });
    Ok(Some(out))
}
