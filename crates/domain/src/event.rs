//! Events: the facts the log records. Applying them is the only way state changes.

use crate::alert::Alert;
use crate::attempt::AttemptDetail;
use crate::command::DeliverySummary;
use crate::spill::SpilledDelivery;
use crate::types::{
    AccountId, AttemptError, BodyDigest, DeliveryId, DisabledReason, DurationMs, EventId, Plan,
    ProjectId, Timestamp, WebhookId,
};
use crate::webhook::{PreviousSecret, SealedSecret, WebhookConfig};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A fact, stamped with the time it was decided at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// An account was created.
    AccountCreated {
        /// The account.
        account_id: AccountId,
        /// Its display name.
        name: String,
        /// Its plan.
        plan: Plan,
        /// Hash of its API key.
        api_key_hash: String,
        /// When.
        at: Timestamp,
    },
    /// An account's name or plan changed (both fields hold the new values).
    AccountUpdated {
        /// The account.
        account_id: AccountId,
        /// The name now.
        name: String,
        /// The plan now.
        plan: Plan,
        /// When.
        at: Timestamp,
    },
    /// A webhook was registered (enabled, with a zero failure counter).
    WebhookCreated {
        /// The webhook.
        webhook_id: WebhookId,
        /// Its account.
        account_id: AccountId,
        /// Its validated configuration.
        config: WebhookConfig,
        /// Its signing secret.
        secret: SealedSecret,
        /// When.
        at: Timestamp,
    },
    /// A webhook's configuration was replaced by a validated one.
    WebhookUpdated {
        /// The webhook.
        webhook_id: WebhookId,
        /// The configuration now.
        config: WebhookConfig,
        /// When.
        at: Timestamp,
    },
    /// A webhook was enabled; its failure counter is reset.
    WebhookEnabled {
        /// The webhook.
        webhook_id: WebhookId,
        /// When.
        at: Timestamp,
    },
    /// A webhook was disabled, by hand or by the failure rule.
    WebhookDisabled {
        /// The webhook.
        webhook_id: WebhookId,
        /// Why.
        reason: DisabledReason,
        /// When.
        at: Timestamp,
    },
    /// A webhook was deleted for good.
    WebhookDeleted {
        /// The webhook.
        webhook_id: WebhookId,
        /// When.
        at: Timestamp,
    },
    /// A webhook's secret was replaced (or sealed again).
    SecretRotated {
        /// The webhook.
        webhook_id: WebhookId,
        /// The new secret.
        secret: SealedSecret,
        /// The replaced secret and the end of its grace, if it goes on signing for a while;
        /// `None`: it signs nothing from now on.
        previous: Option<PreviousSecret>,
        /// When.
        at: Timestamp,
    },
    /// An event was published and fanned out to these deliveries, each due at once
    /// plus the policy's first delay.
    EventPublished {
        /// The publishing account.
        account_id: AccountId,
        /// The event.
        event_id: EventId,
        /// Its type.
        event_type: String,
        /// Its project.
        project_id: ProjectId,
        /// What a repeat of its id is compared by.
        digest: BodyDigest,
        /// The exact body every attempt sends.
        body: String,
        /// One delivery per matching webhook.
        deliveries: Vec<(DeliveryId, WebhookId)>,
        /// The first attempt's due time.
        first_due: Timestamp,
        /// When.
        at: Timestamp,
    },
    /// A test send was created: one attempt, due now.
    TestDeliveryCreated {
        /// The delivery.
        delivery_id: DeliveryId,
        /// The webhook.
        webhook_id: WebhookId,
        /// Its account.
        account_id: AccountId,
        /// The sample event's id.
        event_id: EventId,
        /// The sample's event type (the webhook's own, from the catalog).
        event_type: String,
        /// The sample body.
        body: String,
        /// When.
        at: Timestamp,
    },
    /// The engine decided to send an attempt; it must be reported by `deadline`.
    AttemptStarted {
        /// The delivery.
        delivery_id: DeliveryId,
        /// The attempt number, from 1.
        attempt: u32,
        /// When an unreported attempt counts as timed out.
        deadline: Timestamp,
        /// When.
        at: Timestamp,
    },
    /// An attempt got a 2xx within the timeout; the delivery succeeded.
    AttemptSucceeded {
        /// The delivery.
        delivery_id: DeliveryId,
        /// The attempt number.
        attempt: u32,
        /// The status received.
        status_code: u16,
        /// How long the attempt took.
        duration: DurationMs,
        /// When the attempt started.
        started_at: Timestamp,
        /// What was sent and received, kept by history only: log records leave it out, so an
        /// event read back from the log has `None`.
        detail: Option<Arc<AttemptDetail>>,
        /// When.
        at: Timestamp,
    },
    /// An attempt failed; `next_due` is the next attempt's time, or `None` when none follows.
    AttemptFailed {
        /// The delivery.
        delivery_id: DeliveryId,
        /// The attempt number.
        attempt: u32,
        /// The status received, if any.
        status_code: Option<u16>,
        /// The classified failure.
        error: AttemptError,
        /// How long the attempt took.
        duration: DurationMs,
        /// When the attempt started.
        started_at: Timestamp,
        /// When the next attempt is due, if one follows.
        next_due: Option<Timestamp>,
        /// What was sent and received, kept by history only: log records leave it out, so an
        /// event read back from the log has `None`. `None` too for an attempt nobody reported.
        detail: Option<Arc<AttemptDetail>>,
        /// When.
        at: Timestamp,
    },
    /// An attempt open at a crash was given up unrecorded; it will be sent again now.
    AttemptAbandoned {
        /// The delivery.
        delivery_id: DeliveryId,
        /// The attempt number, which the resend reuses.
        attempt: u32,
        /// When.
        at: Timestamp,
    },
    /// A pending delivery was cancelled (webhook disabled or deleted); no further attempts.
    DeliveryCancelled {
        /// The delivery.
        delivery_id: DeliveryId,
        /// When.
        at: Timestamp,
    },
    /// A finished delivery was reopened by hand for one more attempt, due now.
    DeliveryRetried {
        /// The delivery as history knew it.
        delivery: DeliverySummary,
        /// When.
        at: Timestamp,
    },
    /// Memory forgot the published event ids from before `before` (the store keeps them
    /// until the retention window passes).
    IdempotencyKeysExpired {
        /// The cut-off.
        before: Timestamp,
        /// When.
        at: Timestamp,
    },
    /// Deliveries of a publish (logged right after its `EventPublished`) recorded for webhooks
    /// that are disabled: nothing is sent, and a recover can send them later.
    DeliveriesPaused {
        /// The publishing account.
        account_id: AccountId,
        /// The event.
        event_id: EventId,
        /// Its type.
        event_type: String,
        /// One paused delivery per matching disabled webhook.
        deliveries: Vec<(DeliveryId, WebhookId)>,
        /// When.
        at: Timestamp,
    },
    /// A pending delivery was paused because its webhook was disabled; it keeps its attempts
    /// and no further attempts follow until a recover.
    DeliveryPaused {
        /// The delivery.
        delivery_id: DeliveryId,
        /// When.
        at: Timestamp,
    },
    /// Finished or paused deliveries of a webhook were sent again, each with a fresh retry
    /// schedule whose first attempt is due at `first_due`.
    DeliveriesRecovered {
        /// The webhook.
        webhook_id: WebhookId,
        /// The deliveries as history knew them, oldest first.
        deliveries: Vec<DeliverySummary>,
        /// The first attempt's due time.
        first_due: Timestamp,
        /// When.
        at: Timestamp,
    },
    /// A published event was sent again as new deliveries of the same body and event id.
    EventReplayed {
        /// The publishing account.
        account_id: AccountId,
        /// The event.
        event_id: EventId,
        /// Its type.
        event_type: String,
        /// One new delivery per webhook it is sent to.
        deliveries: Vec<(DeliveryId, WebhookId)>,
        /// The first attempt's due time.
        first_due: Timestamp,
        /// When.
        at: Timestamp,
    },
    /// An operational alert for the host, decided with the facts that caused it.
    AlertRaised {
        /// The alert.
        alert: Alert,
        /// When.
        at: Timestamp,
    },
    /// An account was given a new API key; the old one works until `previous_valid_until`,
    /// or stops at once when that is `None`.
    AccountKeyRotated {
        /// The account.
        account_id: AccountId,
        /// Hash of its new key.
        api_key_hash: String,
        /// When the previous key stops working, if a grace period keeps it for a while.
        previous_valid_until: Option<Timestamp>,
        /// When.
        at: Timestamp,
    },
    /// An account was deleted, after its webhooks (logged before it in the same batch).
    AccountDeleted {
        /// The account.
        account_id: AccountId,
        /// When.
        at: Timestamp,
    },
    /// Waiting deliveries of a webhook moved from memory to the store's spill index, as the
    /// tail of its queue (see `spill`), in queue order.
    DeliveriesSpilled {
        /// The webhook.
        webhook_id: WebhookId,
        /// Its spill generation.
        generation: u32,
        /// The deliveries, as the store keeps them.
        deliveries: Vec<SpilledDelivery>,
        /// When.
        at: Timestamp,
    },
    /// A webhook's first spilled deliveries moved back to memory, in queue order.
    DeliveriesLoaded {
        /// The webhook.
        webhook_id: WebhookId,
        /// Its spill generation.
        generation: u32,
        /// The deliveries, as the store kept them.
        deliveries: Vec<SpilledDelivery>,
        /// The first delivery still spilled after them (its due time and id), if any.
        next: Option<(Timestamp, DeliveryId)>,
        /// When.
        at: Timestamp,
    },
    /// One chunk of the spilled deliveries of a webhook's former generation (from before it
    /// was disabled or deleted) settled as the disable or delete did those in memory. Keys are
    /// due time and id, as the spill index orders them.
    SpilledDeliveriesSettled {
        /// The webhook.
        webhook_id: WebhookId,
        /// The former generation.
        generation: u32,
        /// Paused (real deliveries of a disabled webhook).
        paused: Vec<(Timestamp, DeliveryId)>,
        /// Cancelled (those of a deleted webhook).
        cancelled: Vec<(Timestamp, DeliveryId)>,
        /// Test sends of a disabled webhook, which go on: back to memory.
        kept: Vec<SpilledDelivery>,
        /// When.
        at: Timestamp,
    },
}

impl Event {
    /// When the event was decided.
    pub fn at(&self) -> Timestamp {
        use Event::*;
        match self {
            AccountCreated { at, .. }
            | AccountUpdated { at, .. }
            | WebhookCreated { at, .. }
            | WebhookUpdated { at, .. }
            | WebhookEnabled { at, .. }
            | WebhookDisabled { at, .. }
            | WebhookDeleted { at, .. }
            | SecretRotated { at, .. }
            | EventPublished { at, .. }
            | TestDeliveryCreated { at, .. }
            | AttemptStarted { at, .. }
            | AttemptSucceeded { at, .. }
            | AttemptFailed { at, .. }
            | AttemptAbandoned { at, .. }
            | DeliveryCancelled { at, .. }
            | DeliveryRetried { at, .. }
            | IdempotencyKeysExpired { at, .. }
            | DeliveriesPaused { at, .. }
            | DeliveryPaused { at, .. }
            | DeliveriesRecovered { at, .. }
            | EventReplayed { at, .. }
            | AlertRaised { at, .. }
            | AccountKeyRotated { at, .. }
            | AccountDeleted { at, .. }
            | DeliveriesSpilled { at, .. }
            | DeliveriesLoaded { at, .. }
            | SpilledDeliveriesSettled { at, .. } => *at,
        }
    }
}
