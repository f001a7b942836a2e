//! Commands: what the outside world asks for, carrying everything it knows (time, fresh ids,
//! fresh secrets, observed outcomes) so that deciding needs nothing else.

use crate::attempt::AttemptDetail;
use crate::envelope::PreparedEvent;
use crate::spill::SpilledDelivery;
use crate::state::Published;
use crate::types::{
    AccountId, DeliveryId, DurationMs, EventId, FanOutId, Outcome, Plan, ProjectId, Timestamp,
    WebhookId,
};
use crate::webhook::{SealedSecret, SignatureScheme, WebhookConfig};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One request to the state machine, stamped with the time it is decided at.
#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    /// The time of the decision; events record it as `at`.
    pub now: Timestamp,
    /// What is asked.
    pub kind: CommandKind,
}

impl Command {
    /// A command decided at `now`.
    pub fn new(now: Timestamp, kind: CommandKind) -> Self {
        Command { now, kind }
    }
}

/// The partial change an account update asks for; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountChanges {
    /// A new name.
    pub name: Option<String>,
    /// A new plan.
    pub plan: Option<Plan>,
}

/// The partial change a webhook update asks for; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookChanges {
    /// A new name.
    pub name: Option<String>,
    /// A new URL.
    pub url: Option<String>,
    /// A new description; `Some(None)` clears it.
    pub description: Option<Option<String>>,
    /// New subscribed event types.
    pub events: Option<Vec<String>>,
    /// A new project filter; empty means every project.
    pub project_ids: Option<Vec<ProjectId>>,
    /// Enable (resetting the failure counter) or disable (manually).
    pub enabled: Option<bool>,
    /// A new signature scheme (the secret stays: see [`SignatureScheme`]).
    pub signature_scheme: Option<SignatureScheme>,
}

/// What the caller knows of a finished delivery it wants retried (loaded from history).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliverySummary {
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// Its webhook.
    pub webhook_id: WebhookId,
    /// The webhook's account.
    pub account_id: AccountId,
    /// The event it carries.
    pub event_id: EventId,
    /// The event's type.
    pub event_type: String,
    /// Whether it is a test send.
    pub test: bool,
    /// When it was created.
    pub created_at: Timestamp,
    /// Attempts recorded so far.
    pub attempts_made: u32,
}

/// A delivery a recover may send again, as history shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoverCandidate {
    /// What history says of the delivery.
    pub delivery: DeliverySummary,
    /// Whether history shows it succeeded (then it is never sent again).
    pub succeeded: bool,
}

/// The things that can be asked of the engine.
#[derive(Clone, Debug, PartialEq)]
pub enum CommandKind {
    /// Create an account with a plan; its API key's hash comes from the caller.
    CreateAccount {
        /// The host's id for the account.
        account_id: AccountId,
        /// Display name (the payload's `account.name`).
        name: String,
        /// The plan.
        plan: Plan,
        /// Hash of the account's API key; the key itself is never stored.
        api_key_hash: String,
    },
    /// Give an account a new API key; the old one stops at once, or after `grace`.
    RotateAccountKey {
        /// The account.
        account_id: AccountId,
        /// Hash of the new key.
        api_key_hash: String,
        /// How long the old key keeps working (zero: not at all).
        grace: DurationMs,
    },
    /// Delete an account with its webhooks (their pending deliveries are cancelled), its
    /// keys and its remembered event ids.
    DeleteAccount {
        /// The account.
        account_id: AccountId,
    },
    /// Change an account's name or plan.
    UpdateAccount {
        /// The account.
        account_id: AccountId,
        /// A new name.
        name: Option<String>,
        /// A new plan.
        plan: Option<Plan>,
    },
    /// Register a webhook endpoint with a fresh id and secret.
    CreateWebhook {
        /// The owning account.
        account_id: AccountId,
        /// A fresh id.
        webhook_id: WebhookId,
        /// A fresh signing secret.
        secret: SealedSecret,
        /// What the user filled in.
        config: WebhookConfig,
    },
    /// Change a webhook's configuration or enabled flag.
    UpdateWebhook {
        /// The owning account.
        account_id: AccountId,
        /// The webhook.
        webhook_id: WebhookId,
        /// The fields to change.
        changes: WebhookChanges,
    },
    /// Remove a webhook for good, cancelling what it still had pending.
    DeleteWebhook {
        /// The owning account.
        account_id: AccountId,
        /// The webhook.
        webhook_id: WebhookId,
    },
    /// Replace a webhook's secret. Without a grace the old one signs nothing from then on;
    /// with one it signs too (after the new one) until `now + grace`.
    RotateSecret {
        /// The owning account.
        account_id: AccountId,
        /// The webhook.
        webhook_id: WebhookId,
        /// A fresh signing secret.
        secret: SealedSecret,
        /// How long the replaced secret goes on signing; at most [`crate::MAX_SECRET_GRACE`].
        grace: Option<DurationMs>,
    },
    /// Seal a webhook's secrets again (under a new master key): the same secrets, and the
    /// same grace for the previous one if it is still signing.
    ResealSecret {
        /// The owning account.
        account_id: AccountId,
        /// The webhook.
        webhook_id: WebhookId,
        /// The current secret, sealed again.
        secret: SealedSecret,
        /// The previous secret, sealed again, if it has one.
        previous: Option<SealedSecret>,
    },
    /// Publish an event: wrap it in the envelope and fan it out to matching webhooks.
    Publish {
        /// The publishing account.
        account_id: AccountId,
        /// The event as validated by [`crate::envelope::prepare`].
        event: PreparedEvent,
        /// The id to use when the host gave none.
        fresh_event_id: EventId,
        /// The fan-out its deliveries belong to: numbers `first_index`, `first_index + 1`, ...
        /// of it (a store keeps a fan-out's deliveries together, so the runtime gives the
        /// consecutive publishes of one batch one fan-out).
        fan_out: FanOutId,
        /// The number of its first delivery in `fan_out`: 0 for a fresh fan-out, past the
        /// earlier publishes' deliveries in a shared one.
        first_index: u32,
        /// What the store remembers of a publish of the host's event id, read before this
        /// command: memory keeps ids for `Policy::idempotency_memory` only, the store for
        /// `Policy::retention` (`None` when the host gave no id or the store has none).
        remembered: Option<Published>,
    },
    /// Send an example event (with `"_test": true`) to one webhook, once.
    SendTest {
        /// The owning account.
        account_id: AccountId,
        /// The webhook.
        webhook_id: WebhookId,
        /// A fresh delivery id.
        delivery_id: DeliveryId,
        /// A fresh event id for the sample.
        event_id: EventId,
        /// The example's event type: one the webhook subscribes to.
        event_type: String,
        /// The example's own fields as the envelope appends them (from the catalog:
        /// `crate::catalog::EventType::example_fields`).
        example_fields: String,
    },
    /// Make one more attempt of a finished delivery now.
    RetryDelivery {
        /// The owning account.
        account_id: AccountId,
        /// What history says of the delivery.
        delivery: DeliverySummary,
        /// Whether history shows it pending: a spilled delivery is pending but not in memory.
        pending: bool,
    },
    /// Start due attempts (at most `max_starts`) and time out attempts past their deadline.
    Tick {
        /// How many attempts the dispatcher can take now.
        max_starts: usize,
    },
    /// Report what happened to an attempt.
    RecordOutcome {
        /// The delivery.
        delivery_id: DeliveryId,
        /// The attempt number (1-based) being reported.
        attempt: u32,
        /// What the dispatcher observed.
        outcome: Outcome,
        /// What was sent and received, for history; deciding never reads it.
        detail: Option<Arc<AttemptDetail>>,
    },
    /// An open attempt the runtime gave up before sending it (it waited for its webhook's
    /// other requests until its deadline was near): it is started again and counts as none.
    AbandonAttempt {
        /// The delivery.
        delivery_id: DeliveryId,
        /// The attempt number (1-based) given up.
        attempt: u32,
    },
    /// After a restart: attempts open in the log may or may not have been sent; send them again.
    Resume,
    /// Forget, in memory, published event ids older than `Policy::idempotency_memory` (the
    /// store keeps them for the retention window).
    ExpireIdempotencyKeys,
    /// Send again a webhook's paused, failed or cancelled deliveries (one chunk of a recover),
    /// oldest first, each with a fresh retry schedule.
    RecoverDeliveries {
        /// The owning account.
        account_id: AccountId,
        /// The webhook.
        webhook_id: WebhookId,
        /// What history holds in the recovered range, oldest first.
        candidates: Vec<RecoverCandidate>,
    },
    /// Send a published event again, as new deliveries of the same body and event id, to the
    /// given webhooks or else to every enabled webhook it matches now.
    ReplayEvent {
        /// The publishing account.
        account_id: AccountId,
        /// The event (its body is in the store; the caller checked it is still there).
        event_id: EventId,
        /// Its type, read from its body.
        event_type: String,
        /// Its project, read from its body.
        project_id: ProjectId,
        /// The webhooks to send it to; `None` for every enabled one it matches.
        webhook_ids: Option<Vec<WebhookId>>,
        /// A fresh fan-out: the deliveries are its numbers 0, 1, ...
        fan_out: FanOutId,
    },
    /// Move the waiting real deliveries of each webhook beyond the first `keep` of its queue,
    /// and any that sort after its spilled ones, to the store's spill index.
    Spill {
        /// How many waiting deliveries of one webhook memory holds.
        keep: usize,
    },
    /// Load a webhook's first spilled deliveries back into memory, as the store's spill index
    /// lists them (read while nothing was being committed, so the index was the log's).
    LoadSpilled {
        /// The webhook.
        webhook_id: WebhookId,
        /// Its current spill generation.
        generation: u32,
        /// The first spilled deliveries, in order.
        deliveries: Vec<SpilledDelivery>,
        /// The key of the one after them, if any is left.
        next: Option<(Timestamp, DeliveryId)>,
    },
    /// Settle a chunk of the spilled deliveries of a webhook's former generation, as the
    /// store's spill index lists them.
    SettleSpilled {
        /// The webhook.
        webhook_id: WebhookId,
        /// The former generation.
        generation: u32,
        /// The deliveries, in order.
        deliveries: Vec<SpilledDelivery>,
    },
}
