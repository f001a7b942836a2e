//! The state the events build and its queries; `apply` (in `state/apply.rs`) is the only code
//! that mutates it.

use crate::event::Event;
use crate::policy::Policy;
use crate::schedule::Schedule;
use crate::spill::{Settle, Spills};
use crate::types::{
    AccountId, BodyDigest, DeliveryId, DisabledReason, EventId, IdempotencyKey, Plan, Timestamp,
    WebhookId,
};
use crate::webhook::{PreviousSecret, SealedSecret, WebhookConfig};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

mod apply;
mod invariants;
mod snapshot;
mod spill;
pub use snapshot::{FromSnapshot, SnapshotForm};

/// An account (tenant).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Its id.
    pub id: AccountId,
    /// Its display name.
    pub name: String,
    /// Its plan.
    pub plan: Plan,
    /// Hash of its API key.
    pub api_key_hash: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// Its live webhooks, oldest first.
    pub webhooks: Vec<WebhookId>,
    /// The key it had before the last rotation, while a grace period keeps it valid.
    pub previous_key: Option<PreviousKey>,
}

/// An account key replaced by a rotation with a grace period: valid until `until`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousKey {
    /// Its hash.
    pub hash: String,
    /// When it stops working.
    pub until: Timestamp,
}

/// A live (not deleted) webhook. Its open attempts are counted by the schedule
/// ([`State::in_flight_of`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    /// Its id.
    pub id: WebhookId,
    /// Its account.
    pub account_id: AccountId,
    /// What the user configured.
    pub config: WebhookConfig,
    /// The current signing secret.
    pub secret: SealedSecret,
    /// The secret the last rotation replaced, if it gave it a grace; it signs (after the
    /// current one) only while [`PreviousSecret::signs_at`] the send time, and stays here
    /// until the next rotation or reseal.
    pub previous_secret: Option<PreviousSecret>,
    /// Whether real deliveries go to it.
    pub enabled: bool,
    /// Why it is disabled, when it is.
    pub disabled_reason: Option<DisabledReason>,
    /// Failed non-test attempts since the last success or re-enable.
    pub consecutive_failures: u32,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

/// An attempt the engine decided to send and has not recorded an outcome for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenAttempt {
    /// Its number, from 1.
    pub attempt: u32,
    /// When it started.
    pub started_at: Timestamp,
    /// When it counts as timed out if still unreported.
    pub deadline: Timestamp,
}

/// A delivery that is not finished: waiting for its next attempt, or with one open.
/// Finished deliveries leave the state; their history lives in the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Its id.
    pub id: DeliveryId,
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
    /// Attempts started so far (including an open one).
    pub attempts_made: u32,
    /// Attempts it may make in all.
    pub max_attempts: u32,
    /// When its next attempt is due (meaningful while none is open).
    pub due: Timestamp,
    /// The open attempt, if any.
    pub open: Option<OpenAttempt>,
    /// Cancelled while an attempt was open: that attempt's outcome is recorded, nothing more.
    pub cancelled: bool,
}

/// What an earlier publish of an event id answered, and what its body was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// Deliveries it scheduled.
    pub deliveries: u32,
    /// When it was published.
    pub at: Timestamp,
    /// Its body's digest: a repeat with another body is a conflict, not a repeat.
    pub digest: BodyDigest,
}

impl Published {
    /// What a publish event makes remembered, under its id's key (`None` for other events):
    /// the one definition memory, the stores and the tests share.
    pub fn of(event: &Event) -> Option<(IdempotencyKey, Published)> {
        match event {
            Event::EventPublished {
                account_id,
                event_id,
                deliveries,
                digest,
                at,
                ..
            } => Some((
                IdempotencyKey::of(account_id, event_id),
                Published {
                    deliveries: deliveries.len() as u32,
                    at: *at,
                    digest: *digest,
                },
            )),
            _ => None,
        }
    }
}

/// The whole state of the engine, built only by [`State::apply`]. Its encodings are in
/// `state/snapshot.rs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    policy: Policy,
    accounts: BTreeMap<AccountId, Account>,
    webhooks: BTreeMap<WebhookId, Webhook>,
    deliveries: HashMap<DeliveryId, Delivery>,
    /// When each of `deliveries` is next due or times out, and which webhooks can start one.
    schedule: Schedule,
    /// Published event ids within the idempotency window, by their key (not the ids: one
    /// entry per publish, the largest part of a state whose backlog is spilled).
    published: HashMap<IdempotencyKey, Published>,
    published_order: BTreeSet<(Timestamp, IdempotencyKey)>,
    /// Accounts by the hash of their API key (keys are random, so the hash is a fine index).
    key_hashes: HashMap<String, AccountId>,
    /// Waiting deliveries kept in the store rather than in memory (see `crate::spill`).
    spills: Spills,
}

impl State {
    /// An empty state under `policy`.
    pub fn new(policy: Policy) -> Self {
        State {
            accounts: BTreeMap::new(),
            webhooks: BTreeMap::new(),
            deliveries: HashMap::new(),
            schedule: Schedule::new(policy.max_open_per_webhook()),
            published: HashMap::new(),
            published_order: BTreeSet::new(),
            key_hashes: HashMap::new(),
            spills: Spills::default(),
            policy,
        }
    }

    /// The rules' numbers.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// An account.
    pub fn account(&self, id: &AccountId) -> Option<&Account> {
        self.accounts.get(id)
    }

    /// The account whose API key hashes to `hash` at `now`: its current key, or the one
    /// before it while its grace period lasts.
    pub fn account_by_key_hash(&self, hash: &str, now: Timestamp) -> Option<&Account> {
        let account = self.accounts.get(self.key_hashes.get(hash)?)?;
        let valid = account.api_key_hash == hash
            || account
                .previous_key
                .as_ref()
                .is_some_and(|p| p.hash == hash && now < p.until);
        valid.then_some(account)
    }

    /// Every account, by id.
    pub fn accounts(&self) -> impl Iterator<Item = &Account> {
        self.accounts.values()
    }

    /// A live webhook.
    pub fn webhook(&self, id: &WebhookId) -> Option<&Webhook> {
        self.webhooks.get(id)
    }

    /// How many live webhooks there are.
    pub fn webhook_count(&self) -> usize {
        self.webhooks.len()
    }

    /// A live webhook, only if it belongs to `account`.
    pub fn webhook_of(&self, account: &AccountId, id: &WebhookId) -> Option<&Webhook> {
        self.webhooks.get(id).filter(|w| &w.account_id == account)
    }

    /// An account's live webhooks, oldest first.
    pub fn webhooks_of(&self, account: &AccountId) -> Vec<&Webhook> {
        self.accounts
            .get(account)
            .map(|a| {
                a.webhooks
                    .iter()
                    .filter_map(|w| self.webhooks.get(w))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// An unfinished delivery.
    pub fn delivery(&self, id: &DeliveryId) -> Option<&Delivery> {
        self.deliveries.get(id)
    }

    /// Every unfinished delivery in memory (not the spilled ones), in no particular order.
    pub fn deliveries(&self) -> impl Iterator<Item = &Delivery> {
        self.deliveries.values()
    }

    /// The number of unfinished deliveries, spilled ones included.
    pub fn pending_count(&self) -> usize {
        self.deliveries.len() + self.spills.total as usize
    }

    /// The number of unfinished deliveries in memory.
    pub fn in_memory_count(&self) -> usize {
        self.deliveries.len()
    }

    /// The number of open attempts.
    pub fn in_flight_count(&self) -> usize {
        self.schedule.open_count()
    }

    /// Open attempts to a live webhook right now (0 for an unknown one).
    pub fn in_flight_of(&self, webhook: &WebhookId) -> u32 {
        self.schedule.in_flight(webhook)
    }

    /// Open attempts with their deliveries, by deadline.
    pub fn in_flight(&self) -> impl Iterator<Item = (&Delivery, OpenAttempt)> {
        self.open_deliveries().filter_map(|d| Some((d, d.open?)))
    }

    /// What an earlier publish of this event id answered, within the idempotency window.
    pub fn published(&self, account: &AccountId, event: &EventId) -> Option<Published> {
        self.published
            .get(&IdempotencyKey::of(account, event))
            .copied()
    }

    /// How many published event ids memory holds.
    pub fn remembered_count(&self) -> usize {
        self.published.len()
    }

    /// The oldest remembered publish time, if any.
    pub fn oldest_published(&self) -> Option<Timestamp> {
        self.published_order.first().map(|(t, _)| *t)
    }

    /// Waiting deliveries whose next attempt is due at `now`, ignoring capacity limits.
    pub fn due_at(&self, now: Timestamp) -> Vec<&Delivery> {
        let mut out: Vec<&Delivery> = self
            .schedule
            .all_due(now)
            .filter_map(|id| self.deliveries.get(id))
            .collect();
        out.sort_by(|a, b| (a.due, &a.id).cmp(&(b.due, &b.id)));
        out
    }

    /// The earliest time an attempt can start (a webhook below its in-flight limit has one due).
    pub fn next_start(&self) -> Option<Timestamp> {
        self.schedule.next_start()
    }

    /// The earliest deadline of an open attempt.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.schedule.next_deadline()
    }

    /// When a `Tick` next has work: the sooner of [`State::next_start`] and
    /// [`State::next_deadline`].
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        match (self.next_start(), self.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Ready webhook queue heads due at `now`, in order (used by `decide`).
    pub(crate) fn ready_at(&self, now: Timestamp) -> impl Iterator<Item = &WebhookId> {
        self.schedule.ready_at(now)
    }

    /// A webhook's waiting deliveries due at `now`, in order.
    pub(crate) fn queue_due(
        &self,
        webhook: &WebhookId,
        now: Timestamp,
    ) -> impl Iterator<Item = &DeliveryId> {
        self.schedule.queue_due(webhook, now)
    }

    /// A webhook's unfinished deliveries that are not cancelled already.
    pub(crate) fn live_deliveries_of(&self, webhook: &WebhookId) -> Vec<&Delivery> {
        let waiting = self.schedule.waiting(webhook).map(|(_, id)| id);
        waiting
            .chain(self.schedule.open())
            .filter_map(|id| self.deliveries.get(id))
            .filter(|d| &d.webhook_id == webhook && !d.cancelled)
            .collect()
    }

    /// The first open attempt whose deadline has passed at `now`.
    pub(crate) fn first_expired(&self, now: Timestamp) -> Option<&Delivery> {
        self.deliveries.get(self.schedule.first_expired(now)?)
    }

    /// Every open attempt's delivery, by deadline.
    pub(crate) fn open_deliveries(&self) -> impl Iterator<Item = &Delivery> {
        self.schedule
            .open()
            .filter_map(|id| self.deliveries.get(id))
    }

    /// The same state under another policy (a restart with changed settings): derived
    /// indexes that depend on the policy are rebuilt.
    pub fn with_policy(mut self, policy: Policy) -> State {
        self.schedule.set_limit(policy.max_open_per_webhook());
        self.policy = policy;
        self
    }
}
