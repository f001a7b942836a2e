//! The in-memory read model: delivery history and payloads, updated event by event with the
//! same rules as the sled backend's projection, and with what each append changed kept
//! until it is flushed, so that a simulated crash can take the change back.

use crate::history::rules::{self, SpillChange};
use crate::history::{DeliveryRecord, DeliveryStatus};
use crate::Seq;
use hallway_domain::{
    AccountId, DeliveryId, DeliverySummary, Event, EventId, IdempotencyKey, Published,
    SpilledDelivery, Timestamp, WebhookId,
};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// An event's body, stored once, with the deliveries that send it.
#[derive(Clone, Debug)]
pub(super) struct Payload {
    pub created_at: Timestamp,
    pub deliveries: Vec<DeliveryId>,
    pub body: Arc<str>,
}

/// A delivery's record and the append that listed it in its webhook's history.
#[derive(Clone, Debug)]
pub(super) struct Listed {
    pub record: DeliveryRecord,
    pub listed: Seq,
}

/// Where a delivery appears in its webhook's history: the appends newest first, then the
/// newest creation time, ties by id (the sled backend's page order).
pub(super) type ListKey = (Reverse<Seq>, Reverse<Timestamp>, DeliveryId);

/// A spilled delivery's place in the spill index: its webhook and spill generation, then its
/// queue order (the sled backend's key order).
pub(super) type SpillKey = (WebhookId, u32, Timestamp, DeliveryId);

/// One value as it was before an append changed it.
#[derive(Clone, Debug)]
enum Before {
    Record(DeliveryId, Option<Listed>),
    Listing(WebhookId, ListKey),
    Payload((AccountId, EventId), Option<Payload>),
    Spilled(SpillKey, Option<SpilledDelivery>),
    Published(IdempotencyKey, Option<Published>),
}

/// What one unflushed append changed, to take back in a crash.
#[derive(Clone, Debug, Default)]
pub(super) struct Undo(Vec<Before>);

/// Delivery history by webhook and payloads by event.
#[derive(Clone, Debug, Default)]
pub(super) struct ReadModel {
    pub records: HashMap<DeliveryId, Listed>,
    pub listings: BTreeMap<WebhookId, BTreeSet<ListKey>>,
    pub payloads: HashMap<(AccountId, EventId), Payload>,
    /// The spill index, written in the append that spills, loads or settles.
    pub spilled: BTreeMap<SpillKey, SpilledDelivery>,
    /// Every published id since the last prune, written in the append that publishes.
    pub published: HashMap<IdempotencyKey, Published>,
}

impl ReadModel {
    /// Applies one append's events; returns what they changed.
    pub fn apply(&mut self, seq: Seq, events: &[Event]) -> Undo {
        let mut batch = Batch {
            model: self,
            seq,
            undo: Undo::default(),
            unsent: HashMap::new(),
        };
        for e in events {
            batch.apply(e);
        }
        batch.undo
    }

    /// Takes back what an append changed (newest change first).
    pub fn undo(&mut self, undo: Undo) {
        for before in undo.0.into_iter().rev() {
            match before {
                Before::Record(id, Some(listed)) => {
                    self.records.insert(id, listed);
                }
                Before::Record(id, None) => {
                    self.records.remove(&id);
                }
                Before::Listing(webhook, key) => {
                    if let Some(list) = self.listings.get_mut(&webhook) {
                        list.remove(&key);
                        if list.is_empty() {
                            self.listings.remove(&webhook);
                        }
                    }
                }
                Before::Payload(key, Some(p)) => {
                    self.payloads.insert(key, p);
                }
                Before::Payload(key, None) => {
                    self.payloads.remove(&key);
                }
                Before::Spilled(key, Some(d)) => {
                    self.spilled.insert(key, d);
                }
                Before::Spilled(key, None) => {
                    self.spilled.remove(&key);
                }
                Before::Published(key, Some(p)) => {
                    self.published.insert(key, p);
                }
                Before::Published(key, None) => {
                    self.published.remove(&key);
                }
            }
        }
    }

    /// Removes finished deliveries created before `before`, and the payloads of those that
    /// are old and no pending delivery needs; returns how many deliveries went.
    pub fn prune(&mut self, before: Timestamp) -> u64 {
        self.published.retain(|_, p| p.at >= before);
        let gone: Vec<DeliveryId> = self
            .records
            .values()
            .filter(|l| l.record.created_at < before && l.record.status != DeliveryStatus::Pending)
            .map(|l| l.record.id.clone())
            .collect();
        let mut payload_keys = BTreeSet::new();
        for id in &gone {
            if let Some(l) = self.records.remove(id) {
                let r = &l.record;
                if let Some(list) = self.listings.get_mut(&r.webhook_id) {
                    list.remove(&(Reverse(l.listed), Reverse(r.created_at), r.id.clone()));
                    if list.is_empty() {
                        self.listings.remove(&r.webhook_id);
                    }
                }
                payload_keys.insert((r.account_id.clone(), r.event_id.clone()));
            }
        }
        for key in payload_keys {
            let Some(p) = self.payloads.get(&key) else {
                continue;
            };
            let needed = p.created_at >= before
                || p.deliveries.iter().any(|d| {
                    self.records
                        .get(d)
                        .is_some_and(|l| l.record.status == DeliveryStatus::Pending)
                });
            if !needed {
                self.payloads.remove(&key);
            }
        }
        gone.len() as u64
    }
}

impl ReadModel {
    /// Removes the finished deliveries of a deleted account's `webhooks`, and the account's
    /// payloads no pending delivery needs (the sled backend's purge); returns how many
    /// deliveries went.
    pub fn purge_account(&mut self, account: &AccountId, webhooks: &[WebhookId]) -> u64 {
        self.published.retain(|key, _| !key.is_of(account));
        let mut removed = 0;
        for webhook in webhooks {
            let Some(list) = self.listings.get_mut(webhook) else {
                continue;
            };
            list.retain(|(_, _, id)| {
                let finished = self
                    .records
                    .get(id)
                    .is_some_and(|l| l.record.status != DeliveryStatus::Pending);
                if finished {
                    self.records.remove(id);
                    removed += 1;
                }
                !finished
            });
            if list.is_empty() {
                self.listings.remove(webhook);
            }
        }
        let records = &self.records;
        self.payloads.retain(|(owner, _), p| {
            owner != account
                || p.deliveries.iter().any(|d| {
                    records
                        .get(d)
                        .is_some_and(|l| l.record.status == DeliveryStatus::Pending)
                })
        });
        removed
    }
}

/// One append being applied.
struct Batch<'m> {
    model: &'m mut ReadModel,
    seq: Seq,
    undo: Undo,
    /// Bodies of this append's publishes that no enabled webhook receives, for the paused
    /// deliveries that may follow them.
    unsent: HashMap<(AccountId, EventId), (Arc<str>, Timestamp)>,
}

impl Batch<'_> {
    fn apply(&mut self, event: &Event) {
        if let Some(id) = rules::updated(event) {
            self.update(id, |r| rules::update(r, event));
            return;
        }
        match event {
            Event::EventPublished {
                account_id,
                event_id,
                body,
                deliveries,
                at,
                ..
            } => {
                if let Some((id_key, published)) = Published::of(event) {
                    let before = self.model.published.insert(id_key, published);
                    self.undo.0.push(Before::Published(id_key, before));
                }
                let key = (account_id.clone(), event_id.clone());
                if deliveries.is_empty() {
                    self.unsent.insert(key, (Arc::from(body.as_str()), *at));
                    return;
                }
                let ids = deliveries.iter().map(|(d, _)| d.clone()).collect();
                self.put_payload(key, *at, ids, Arc::from(body.as_str()));
            }
            Event::TestDeliveryCreated {
                delivery_id,
                account_id,
                event_id,
                body,
                at,
                ..
            } => {
                let key = (account_id.clone(), event_id.clone());
                self.put_payload(
                    key,
                    *at,
                    vec![delivery_id.clone()],
                    Arc::from(body.as_str()),
                );
            }
            Event::DeliveriesPaused {
                account_id,
                event_id,
                deliveries,
                ..
            } => {
                let key = (account_id.clone(), event_id.clone());
                let ids = deliveries.iter().map(|(d, _)| d.clone()).collect();
                match self.unsent.remove(&key) {
                    Some((body, published)) => self.put_payload(key, published, ids, body),
                    None => self.add_deliveries(key, ids),
                }
            }
            Event::EventReplayed {
                account_id,
                event_id,
                deliveries,
                ..
            } => {
                let key = (account_id.clone(), event_id.clone());
                self.add_deliveries(key, deliveries.iter().map(|(d, _)| d.clone()).collect());
            }
            Event::DeliveryRetried { delivery, at } => self.requeue(delivery, *at),
            Event::DeliveriesRecovered {
                deliveries,
                first_due,
                ..
            } => {
                for d in deliveries {
                    self.requeue(d, *first_due);
                }
            }
            Event::DeliveriesSpilled { .. }
            | Event::DeliveriesLoaded { .. }
            | Event::SpilledDeliveriesSettled { .. } => {
                for change in rules::spill_changes(event) {
                    match change {
                        SpillChange::Put(webhook, generation, d) => {
                            let key = (webhook.clone(), generation, d.due, d.id.clone());
                            self.set_spilled(key, Some(d.clone()));
                        }
                        SpillChange::Remove(webhook, generation, due, id) => {
                            self.set_spilled((webhook.clone(), generation, due, id.clone()), None);
                        }
                    }
                }
                for (id, status) in rules::settled(event) {
                    self.update(id, |r| rules::stop(r, status));
                }
            }
            // Changes to one record, made above.
            Event::AttemptStarted { .. }
            | Event::AttemptSucceeded { .. }
            | Event::AttemptFailed { .. }
            | Event::AttemptAbandoned { .. }
            | Event::DeliveryCancelled { .. }
            | Event::DeliveryPaused { .. }
            // A deleted webhook's history stays until retention removes it, as in sled.
            | Event::AccountCreated { .. }
            | Event::AccountUpdated { .. }
            | Event::AccountKeyRotated { .. }
            | Event::AccountDeleted { .. }
            | Event::WebhookCreated { .. }
            | Event::WebhookUpdated { .. }
            | Event::WebhookEnabled { .. }
            | Event::WebhookDisabled { .. }
            | Event::WebhookDeleted { .. }
            | Event::SecretRotated { .. }
            | Event::AlertRaised { .. }
            | Event::IdempotencyKeysExpired { .. } => {}
        }
        for record in rules::created(event) {
            self.create(record);
        }
    }

    /// Writes (or, with `None`, removes) a spill index entry.
    fn set_spilled(&mut self, key: SpillKey, value: Option<SpilledDelivery>) {
        let old = match value {
            Some(d) => self.model.spilled.insert(key.clone(), d),
            None => self.model.spilled.remove(&key),
        };
        self.undo.0.push(Before::Spilled(key, old));
    }

    /// Stores a body for its event (a republish replaces it), listing its deliveries.
    fn put_payload(
        &mut self,
        key: (AccountId, EventId),
        at: Timestamp,
        deliveries: Vec<DeliveryId>,
        body: Arc<str>,
    ) {
        let old = self.model.payloads.get(&key).cloned();
        let mut all = old
            .as_ref()
            .map(|p| p.deliveries.clone())
            .unwrap_or_default();
        for d in deliveries {
            if !all.contains(&d) {
                all.push(d);
            }
        }
        self.undo.0.push(Before::Payload(key.clone(), old));
        self.model.payloads.insert(
            key,
            Payload {
                created_at: at,
                deliveries: all,
                body,
            },
        );
    }

    /// Lists more deliveries on a stored body (gone already: nothing to keep).
    fn add_deliveries(&mut self, key: (AccountId, EventId), deliveries: Vec<DeliveryId>) {
        let Some(old) = self.model.payloads.get(&key).cloned() else {
            return;
        };
        let mut new = old.clone();
        for d in deliveries {
            if !new.deliveries.contains(&d) {
                new.deliveries.push(d);
            }
        }
        self.undo.0.push(Before::Payload(key.clone(), Some(old)));
        self.model.payloads.insert(key, new);
    }

    /// A finished delivery pending again, due at `due`; made again from what the caller
    /// knew if retention removed its record.
    fn requeue(&mut self, d: &DeliverySummary, due: Timestamp) {
        if !self.update(&d.delivery_id, |r| rules::requeue(r, due)) {
            self.create(rules::recreated(d, due));
        }
    }

    fn create(&mut self, record: DeliveryRecord) {
        let id = record.id.clone();
        let old = self.model.records.get(&id).cloned();
        let listed = match &old {
            // Listed already: only the record changes.
            Some(l) => l.listed,
            None => {
                let key = (Reverse(self.seq), Reverse(record.created_at), id.clone());
                self.model
                    .listings
                    .entry(record.webhook_id.clone())
                    .or_default()
                    .insert(key.clone());
                self.undo
                    .0
                    .push(Before::Listing(record.webhook_id.clone(), key));
                self.seq
            }
        };
        self.undo.0.push(Before::Record(id.clone(), old));
        self.model.records.insert(id, Listed { record, listed });
    }

    /// Changes a delivery's record; whether it exists.
    fn update(&mut self, id: &DeliveryId, change: impl FnOnce(&mut DeliveryRecord)) -> bool {
        let Some(listed) = self.model.records.get_mut(id) else {
            return false;
        };
        self.undo
            .0
            .push(Before::Record(id.clone(), Some(listed.clone())));
        change(&mut listed.record);
        true
    }
}

impl ReadModel {
    /// The first `limit` spilled deliveries of a webhook's generation, in queue order.
    pub fn spilled(
        &self,
        webhook: &WebhookId,
        generation: u32,
        limit: usize,
    ) -> Vec<SpilledDelivery> {
        let from = (
            webhook.clone(),
            generation,
            Timestamp(0),
            hallway_domain::FanOutId::from_bytes([0; 16]).delivery(0),
        );
        self.spilled
            .range(from..)
            .take_while(|((w, g, _, _), _)| w == webhook && *g == generation)
            .take(limit)
            .map(|(_, d)| d.clone())
            .collect()
    }
}
