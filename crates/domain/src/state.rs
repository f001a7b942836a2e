//! The state the events build, the only code that mutates it (`apply`), and its queries.

use crate::event::Event;
use crate::policy::Policy;
use crate::schedule::Schedule;
use crate::types::{AccountId, DeliveryId, DisabledReason, EventId, Plan, Timestamp, WebhookId};
use crate::webhook::{SealedSecret, WebhookConfig};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

mod invariants;
mod snapshot;
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

/// What an earlier publish of an event id answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// Deliveries it scheduled.
    pub deliveries: u32,
    /// When it was published.
    pub at: Timestamp,
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
    published: HashMap<(AccountId, EventId), Published>,
    published_order: BTreeSet<(Timestamp, AccountId, EventId)>,
    /// Accounts by the hash of their API key (keys are random, so the hash is a fine index).
    key_hashes: HashMap<String, AccountId>,
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

    /// The account whose API key hashes to `hash`.
    pub fn account_by_key_hash(&self, hash: &str) -> Option<&Account> {
        self.key_hashes
            .get(hash)
            .and_then(|id| self.accounts.get(id))
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

    /// Every unfinished delivery, in no particular order.
    pub fn deliveries(&self) -> impl Iterator<Item = &Delivery> {
        self.deliveries.values()
    }

    /// The number of unfinished deliveries.
    pub fn pending_count(&self) -> usize {
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
            .get(&(account.clone(), event.clone()))
            .copied()
    }

    /// The oldest remembered publish time, if any.
    pub fn oldest_published(&self) -> Option<Timestamp> {
        self.published_order.first().map(|(t, _, _)| *t)
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

    /// Applies one fact. Total: it never fails, and the same events always build the same state.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::AccountCreated {
                account_id,
                name,
                plan,
                api_key_hash,
                at,
            } => {
                self.key_hashes
                    .insert(api_key_hash.clone(), account_id.clone());
                self.accounts.insert(
                    account_id.clone(),
                    Account {
                        id: account_id.clone(),
                        name: name.clone(),
                        plan: *plan,
                        api_key_hash: api_key_hash.clone(),
                        created_at: *at,
                        updated_at: *at,
                        webhooks: Vec::new(),
                    },
                );
            }
            Event::AccountUpdated {
                account_id,
                name,
                plan,
                at,
            } => {
                if let Some(a) = self.accounts.get_mut(account_id) {
                    a.name = name.clone();
                    a.plan = *plan;
                    a.updated_at = *at;
                }
            }
            Event::WebhookCreated {
                webhook_id,
                account_id,
                config,
                secret,
                at,
            } => {
                if let Some(a) = self.accounts.get_mut(account_id) {
                    a.webhooks.push(webhook_id.clone());
                }
                self.webhooks.insert(
                    webhook_id.clone(),
                    Webhook {
                        id: webhook_id.clone(),
                        account_id: account_id.clone(),
                        config: config.clone(),
                        secret: secret.clone(),
                        enabled: true,
                        disabled_reason: None,
                        consecutive_failures: 0,
                        created_at: *at,
                        updated_at: *at,
                    },
                );
                self.schedule.add_webhook(webhook_id);
            }
            Event::WebhookUpdated {
                webhook_id,
                config,
                at,
            } => {
                if let Some(w) = self.webhooks.get_mut(webhook_id) {
                    w.config = config.clone();
                    w.updated_at = *at;
                }
            }
            Event::WebhookEnabled { webhook_id, at } => {
                if let Some(w) = self.webhooks.get_mut(webhook_id) {
                    w.enabled = true;
                    w.disabled_reason = None;
                    w.consecutive_failures = 0;
                    w.updated_at = *at;
                }
            }
            Event::WebhookDisabled {
                webhook_id,
                reason,
                at,
            } => {
                if let Some(w) = self.webhooks.get_mut(webhook_id) {
                    w.enabled = false;
                    w.disabled_reason = Some(*reason);
                    w.updated_at = *at;
                }
            }
            Event::WebhookDeleted { webhook_id, .. } => {
                // `decide` cancels a webhook's deliveries before deleting it, so none wait.
                for orphan in self.schedule.remove_webhook(webhook_id) {
                    self.deliveries.remove(&orphan);
                }
                if let Some(w) = self.webhooks.remove(webhook_id) {
                    if let Some(a) = self.accounts.get_mut(&w.account_id) {
                        a.webhooks.retain(|id| id != webhook_id);
                    }
                }
            }
            Event::SecretRotated {
                webhook_id,
                secret,
                at,
            } => {
                if let Some(w) = self.webhooks.get_mut(webhook_id) {
                    w.secret = secret.clone();
                    w.updated_at = *at;
                }
            }
            Event::EventPublished {
                account_id,
                event_id,
                event_type,
                deliveries,
                first_due,
                at,
                ..
            } => {
                let key = (account_id.clone(), event_id.clone());
                self.published.insert(
                    key,
                    Published {
                        deliveries: deliveries.len() as u32,
                        at: *at,
                    },
                );
                self.published_order
                    .insert((*at, account_id.clone(), event_id.clone()));
                self.enqueue_fan_out(
                    account_id, event_id, event_type, deliveries, *at, *first_due,
                );
            }
            Event::TestDeliveryCreated {
                delivery_id,
                webhook_id,
                account_id,
                event_id,
                at,
                ..
            } => {
                self.enqueue_new(Delivery {
                    id: delivery_id.clone(),
                    webhook_id: webhook_id.clone(),
                    account_id: account_id.clone(),
                    event_id: event_id.clone(),
                    event_type: crate::policy::SESSION_PROCESSING_COMPLETED.to_owned(),
                    test: true,
                    created_at: *at,
                    attempts_made: 0,
                    max_attempts: 1,
                    due: *at,
                    open: None,
                    cancelled: false,
                });
            }
            Event::AttemptStarted {
                delivery_id,
                attempt,
                deadline,
                at,
            } => {
                let Some(d) = self.deliveries.get_mut(delivery_id) else {
                    debug_assert!(false, "attempt started for unknown delivery");
                    return;
                };
                // Panics if the delivery is not waiting in its queue (one attempt at a time).
                self.schedule
                    .start(&d.webhook_id, d.due, delivery_id, *deadline);
                d.attempts_made = *attempt;
                d.open = Some(OpenAttempt {
                    attempt: *attempt,
                    started_at: *at,
                    deadline: *deadline,
                });
            }
            Event::AttemptSucceeded { delivery_id, .. } => {
                if let Some(d) = self.close_attempt(delivery_id) {
                    if !d.test && !d.cancelled {
                        if let Some(w) = self.webhooks.get_mut(&d.webhook_id) {
                            w.consecutive_failures = 0;
                        }
                    }
                    self.deliveries.remove(delivery_id);
                }
            }
            Event::AttemptFailed {
                delivery_id,
                next_due,
                ..
            } => {
                if let Some(d) = self.close_attempt(delivery_id) {
                    if !d.test && !d.cancelled {
                        if let Some(w) = self.webhooks.get_mut(&d.webhook_id) {
                            w.consecutive_failures += 1;
                        }
                    }
                    match next_due {
                        Some(due) if !d.cancelled => self.requeue(delivery_id, *due),
                        _ => {
                            self.deliveries.remove(delivery_id);
                        }
                    }
                }
            }
            Event::AttemptAbandoned {
                delivery_id,
                attempt,
                at,
            } => {
                if let Some(d) = self.close_attempt(delivery_id) {
                    if d.cancelled {
                        self.deliveries.remove(delivery_id);
                    } else {
                        if let Some(d) = self.deliveries.get_mut(delivery_id) {
                            d.attempts_made = attempt.saturating_sub(1);
                        }
                        self.requeue(delivery_id, *at);
                    }
                }
            }
            // A paused delivery leaves the state as a cancelled one does: history keeps it (and
            // its body) for a recover.
            Event::DeliveryCancelled { delivery_id, .. }
            | Event::DeliveryPaused { delivery_id, .. } => {
                let Some(d) = self.deliveries.get_mut(delivery_id) else {
                    return;
                };
                if d.open.is_some() {
                    d.cancelled = true;
                    return;
                }
                self.schedule.dequeue(&d.webhook_id, d.due, delivery_id);
                self.deliveries.remove(delivery_id);
            }
            Event::DeliveryRetried { delivery, at } => {
                self.enqueue_new(Delivery {
                    id: delivery.delivery_id.clone(),
                    webhook_id: delivery.webhook_id.clone(),
                    account_id: delivery.account_id.clone(),
                    event_id: delivery.event_id.clone(),
                    event_type: delivery.event_type.clone(),
                    test: delivery.test,
                    created_at: delivery.created_at,
                    attempts_made: delivery.attempts_made,
                    max_attempts: delivery.attempts_made + 1,
                    due: *at,
                    open: None,
                    cancelled: false,
                });
            }
            Event::DeliveriesPaused { .. } | Event::AlertRaised { .. } => {}
            Event::EventReplayed {
                account_id,
                event_id,
                event_type,
                deliveries,
                first_due,
                at,
            } => {
                self.enqueue_fan_out(
                    account_id, event_id, event_type, deliveries, *at, *first_due,
                );
            }
            Event::DeliveriesRecovered {
                deliveries,
                first_due,
                ..
            } => {
                for delivery in deliveries {
                    // `decide` skips pending ones; a duplicate here must not reset one.
                    if self.deliveries.contains_key(&delivery.delivery_id) {
                        continue;
                    }
                    self.enqueue_new(Delivery {
                        id: delivery.delivery_id.clone(),
                        webhook_id: delivery.webhook_id.clone(),
                        account_id: delivery.account_id.clone(),
                        event_id: delivery.event_id.clone(),
                        event_type: delivery.event_type.clone(),
                        test: delivery.test,
                        created_at: delivery.created_at,
                        attempts_made: delivery.attempts_made,
                        max_attempts: delivery.attempts_made + self.policy.max_attempts(),
                        due: *first_due,
                        open: None,
                        cancelled: false,
                    });
                }
            }
            Event::IdempotencyKeysExpired { before, .. } => {
                while let Some(first) = self.published_order.first() {
                    if first.0 >= *before {
                        break;
                    }
                    if let Some((_, acc, evt)) = self.published_order.pop_first() {
                        self.published.remove(&(acc, evt));
                    }
                }
            }
        }
    }

    /// Queues a fresh delivery of an event to each webhook of a fan-out (a publish or a replay).
    fn enqueue_fan_out(
        &mut self,
        account_id: &AccountId,
        event_id: &EventId,
        event_type: &str,
        deliveries: &[(DeliveryId, WebhookId)],
        at: Timestamp,
        first_due: Timestamp,
    ) {
        for (delivery_id, webhook_id) in deliveries {
            self.enqueue_new(Delivery {
                id: delivery_id.clone(),
                webhook_id: webhook_id.clone(),
                account_id: account_id.clone(),
                event_id: event_id.clone(),
                event_type: event_type.to_owned(),
                test: false,
                created_at: at,
                attempts_made: 0,
                max_attempts: self.policy.max_attempts(),
                due: first_due,
                open: None,
                cancelled: false,
            });
        }
    }

    /// Inserts a new waiting delivery and queues it.
    fn enqueue_new(&mut self, delivery: Delivery) {
        // Every event that creates a delivery names a live webhook (`decide` checks).
        if !self
            .schedule
            .enqueue(&delivery.webhook_id, delivery.due, &delivery.id)
        {
            debug_assert!(false, "delivery {} for a dead webhook", delivery.id);
            return;
        }
        let id = delivery.id.clone();
        let replaced = self.deliveries.insert(id, delivery);
        // A replaced delivery would leave its old queue entry or deadline behind.
        assert!(replaced.is_none(), "a delivery id was created twice");
    }

    /// Puts an existing delivery (with no open attempt) back in its queue, due at `due`.
    fn requeue(&mut self, id: &DeliveryId, due: Timestamp) {
        let Some(d) = self.deliveries.get_mut(id) else {
            return;
        };
        d.due = due;
        if !self.schedule.enqueue(&d.webhook_id, due, id) {
            // Deleting a webhook cancels its attempts, so none comes back for a retry.
            debug_assert!(false, "delivery {id} requeued for a dead webhook");
            self.deliveries.remove(id);
        }
    }

    /// Closes a delivery's open attempt, returning a copy of the delivery as it was.
    fn close_attempt(&mut self, id: &DeliveryId) -> Option<Delivery> {
        let d = self.deliveries.get_mut(id)?;
        let open = d.open.take()?;
        self.schedule.finish(&d.webhook_id, id, open.deadline);
        Some(d.clone())
    }

    /// The same state under another policy (a restart with changed settings): derived
    /// indexes that depend on the policy are rebuilt.
    pub fn with_policy(mut self, policy: Policy) -> State {
        self.schedule.set_limit(policy.max_open_per_webhook());
        self.policy = policy;
        self
    }
}
