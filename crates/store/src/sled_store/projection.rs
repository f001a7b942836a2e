//! The projections of one appended batch: delivery history and payloads, computed in memory
//! so that each touched record is read once and written once however many events touch it.

use super::keys;
use super::Trees;
use crate::codec;
use crate::history::{AttemptRecord, DeliveryRecord, DeliveryStatus};
use crate::{Seq, StoreError};
use hallway_domain::{
    AccountId, DeliveryId, Event, EventId, Timestamp, WebhookId, SESSION_PROCESSING_COMPLETED,
};
use serde::{Deserialize, Serialize};
use sled::IVec;
use std::collections::HashMap;

/// An event's body with what retention needs to know about it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PayloadRecord {
    /// When the event was published (all its deliveries share this creation time).
    pub created_at: Timestamp,
    /// Every delivery that sends this body; the payload lives while one of them is pending.
    pub deliveries: Vec<DeliveryId>,
    /// The exact bytes every attempt sends.
    pub body: String,
}

/// A delivery record as its bucket holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Stored {
    pub record: DeliveryRecord,
    /// The append whose history chunk lists the delivery (see [`keys::history_key`]).
    pub listed: Seq,
}

/// The records of one bucket (see [`keys::bucket_key`]), in creation order.
pub(crate) type Bucket = Vec<Stored>;

/// A history chunk: one webhook's deliveries created by one append, newest first.
pub(crate) type Chunk = Vec<(Timestamp, DeliveryId)>;

/// Sorts a chunk newest first, ties by id, the order pages show.
pub(crate) fn sort_chunk(chunk: &mut Chunk) {
    chunk.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
}

/// A bucket as the batch sees it.
struct Slot {
    records: Bucket,
    dirty: bool,
}

/// Key-value pairs to write, per tree.
#[derive(Default)]
pub(crate) struct Writes {
    pub payloads: Vec<(IVec, IVec)>,
    pub history: Vec<(IVec, IVec)>,
    pub deliveries: Vec<(IVec, IVec)>,
    pub by_time: Vec<(IVec, IVec)>,
}

impl Writes {
    /// Whether nothing but the log record is written.
    pub fn is_empty(&self) -> bool {
        self.payloads.is_empty()
            && self.history.is_empty()
            && self.deliveries.is_empty()
            && self.by_time.is_empty()
    }
}

/// Buckets holding a pending delivery, as last committed, by bucket key: an outcome usually
/// arrives within milliseconds of the write that created its record, and reading the bucket
/// back would cost a lookup and a decode.
pub(crate) type BucketCache = HashMap<Vec<u8>, Bucket>;

/// Most buckets [`BucketCache`] holds; beyond it buckets are read from the tree.
pub(crate) const BUCKET_CACHE_MAX: usize = 8 * 1024;

/// A bucket a batch read or wrote, for refreshing the [`BucketCache`] once it is committed.
pub(crate) struct Written {
    pub key: Vec<u8>,
    pub records: Bucket,
}

/// The projection updates of one batch, built by [`Projection::apply`] for each event.
pub(crate) struct Projection<'a> {
    trees: &'a Trees,
    /// Buckets are taken out (not copied) on first touch; the append puts back what it
    /// commits, and a failed append leaves them to be read from the tree again.
    cache: &'a mut BucketCache,
    /// The sequence of the append being built.
    seq: Seq,
    buckets: HashMap<Vec<u8>, Slot>,
    payloads: HashMap<Vec<u8>, PayloadRecord>,
    /// Each webhook's history chunk of this append.
    chunks: HashMap<WebhookId, Chunk>,
    /// New by-time keys (their values are markers).
    by_time: Vec<Vec<u8>>,
}

/// Reads a bucket, empty if there is none.
pub(crate) fn load_bucket(trees: &Trees, key: &[u8]) -> Result<Bucket, StoreError> {
    match trees.deliveries.get(key)? {
        Some(bytes) => codec::decode(keys::DELIVERIES, || keys::show_text(key), &bytes),
        None => Ok(Bucket::new()),
    }
}

/// Reads one delivery's record from its bucket.
pub(crate) fn load_delivery(
    trees: &Trees,
    id: &DeliveryId,
) -> Result<Option<DeliveryRecord>, StoreError> {
    Ok(load_bucket(trees, keys::bucket_key(id))?
        .into_iter()
        .find(|s| &s.record.id == id)
        .map(|s| s.record))
}

impl<'a> Projection<'a> {
    /// An empty set of updates over `trees`.
    pub fn new(trees: &'a Trees, cache: &'a mut BucketCache, seq: Seq) -> Self {
        Projection {
            trees,
            cache,
            seq,
            buckets: HashMap::new(),
            payloads: HashMap::new(),
            chunks: HashMap::new(),
            by_time: Vec::new(),
        }
    }

    /// Folds one event's effect on the projections into the pending updates.
    pub fn apply(&mut self, event: &Event) -> Result<(), StoreError> {
        match event {
            Event::EventPublished {
                account_id,
                event_id,
                event_type,
                body,
                deliveries,
                first_due,
                at,
                ..
            } => {
                // An event nobody receives needs no body kept: the log has it anyway.
                if deliveries.is_empty() {
                    return Ok(());
                }
                let ids = deliveries.iter().map(|(d, _)| d.clone()).collect();
                self.put_payload(account_id, event_id, *at, ids, body)?;
                for (delivery_id, webhook_id) in deliveries {
                    self.create(DeliveryRecord {
                        id: delivery_id.clone(),
                        webhook_id: webhook_id.clone(),
                        account_id: account_id.clone(),
                        event_id: event_id.clone(),
                        event_type: event_type.clone(),
                        test: false,
                        status: DeliveryStatus::Pending,
                        created_at: *at,
                        next_attempt_at: Some(*first_due),
                        attempts: Vec::new(),
                    })?;
                }
            }
            Event::TestDeliveryCreated {
                delivery_id,
                webhook_id,
                account_id,
                event_id,
                body,
                at,
            } => {
                self.put_payload(account_id, event_id, *at, vec![delivery_id.clone()], body)?;
                self.create(DeliveryRecord {
                    id: delivery_id.clone(),
                    webhook_id: webhook_id.clone(),
                    account_id: account_id.clone(),
                    event_id: event_id.clone(),
                    // Test sends deliver the sample of the one event type the product has.
                    event_type: SESSION_PROCESSING_COMPLETED.to_owned(),
                    test: true,
                    status: DeliveryStatus::Pending,
                    created_at: *at,
                    next_attempt_at: Some(*at),
                    attempts: Vec::new(),
                })?;
            }
            Event::AttemptStarted { delivery_id, .. } => {
                self.update(delivery_id, |r| r.next_attempt_at = None)?;
            }
            Event::AttemptSucceeded {
                delivery_id,
                attempt,
                status_code,
                duration,
                started_at,
                ..
            } => {
                self.update(delivery_id, |r| {
                    r.attempts.push(AttemptRecord {
                        attempt: *attempt,
                        started_at: *started_at,
                        duration_ms: duration.0,
                        status_code: Some(*status_code),
                        error: None,
                    });
                    r.next_attempt_at = None;
                    if r.status != DeliveryStatus::Cancelled {
                        r.status = DeliveryStatus::Succeeded;
                    }
                })?;
            }
            Event::AttemptFailed {
                delivery_id,
                attempt,
                status_code,
                error,
                duration,
                started_at,
                next_due,
                ..
            } => {
                self.update(delivery_id, |r| {
                    r.attempts.push(AttemptRecord {
                        attempt: *attempt,
                        started_at: *started_at,
                        duration_ms: duration.0,
                        status_code: *status_code,
                        error: Some(*error),
                    });
                    // A cancelled delivery records its open attempt's outcome and stops.
                    if r.status == DeliveryStatus::Cancelled {
                        r.next_attempt_at = None;
                        return;
                    }
                    r.next_attempt_at = *next_due;
                    if next_due.is_none() {
                        r.status = DeliveryStatus::Failed;
                    }
                })?;
            }
            Event::AttemptAbandoned {
                delivery_id, at, ..
            } => {
                self.update(delivery_id, |r| {
                    if r.status == DeliveryStatus::Pending {
                        r.next_attempt_at = Some(*at);
                    }
                })?;
            }
            Event::DeliveryCancelled { delivery_id, .. } => {
                self.update(delivery_id, |r| {
                    if r.status == DeliveryStatus::Pending {
                        r.status = DeliveryStatus::Cancelled;
                        r.next_attempt_at = None;
                    }
                })?;
            }
            Event::DeliveryRetried { delivery, at } => {
                let found = self.update(&delivery.delivery_id, |r| {
                    r.status = DeliveryStatus::Pending;
                    r.next_attempt_at = Some(*at);
                })?;
                if !found {
                    // Retention removed the record between the caller reading it and the
                    // retry being decided: recreate it from what the caller knew.
                    self.create(DeliveryRecord {
                        id: delivery.delivery_id.clone(),
                        webhook_id: delivery.webhook_id.clone(),
                        account_id: delivery.account_id.clone(),
                        event_id: delivery.event_id.clone(),
                        event_type: delivery.event_type.clone(),
                        test: delivery.test,
                        status: DeliveryStatus::Pending,
                        created_at: delivery.created_at,
                        next_attempt_at: Some(*at),
                        attempts: Vec::new(),
                    })?;
                }
            }
            Event::AccountCreated { .. }
            | Event::AccountUpdated { .. }
            | Event::WebhookCreated { .. }
            | Event::WebhookUpdated { .. }
            | Event::WebhookEnabled { .. }
            | Event::WebhookDisabled { .. }
            // A deleted webhook's history stays until retention removes it: nothing reaches
            // it through the API any more, and deleting it here would make the batch unbounded.
            | Event::WebhookDeleted { .. }
            | Event::SecretRotated { .. }
            | Event::IdempotencyKeysExpired { .. } => {}
        }
        Ok(())
    }

    /// Stores a body once for its event. A republish of the same id (after the idempotency
    /// window) adds its deliveries to the existing record so retention keeps the body for all.
    fn put_payload(
        &mut self,
        account: &AccountId,
        event: &EventId,
        at: Timestamp,
        deliveries: Vec<DeliveryId>,
        body: &str,
    ) -> Result<(), StoreError> {
        let key = keys::payload_key(account, event);
        let existing = match self.payloads.remove(&key) {
            Some(p) => Some(p),
            None => match self.trees.payloads.get(&key)? {
                Some(bytes) => Some(codec::decode::<PayloadRecord>(
                    keys::PAYLOADS,
                    || keys::show_payload_key(&key),
                    &bytes,
                )?),
                None => None,
            },
        };
        let mut all = existing.map(|p| p.deliveries).unwrap_or_default();
        for d in deliveries {
            if !all.contains(&d) {
                all.push(d);
            }
        }
        self.payloads.insert(
            key,
            PayloadRecord {
                created_at: at,
                deliveries: all,
                body: body.to_owned(),
            },
        );
        Ok(())
    }

    /// The batch's view of a bucket, loaded on first touch.
    fn slot(&mut self, key: &[u8]) -> Result<&mut Slot, StoreError> {
        if !self.buckets.contains_key(key) {
            let records = match self.cache.remove(key) {
                Some(records) => records,
                None => load_bucket(self.trees, key)?,
            };
            self.buckets.insert(
                key.to_vec(),
                Slot {
                    records,
                    dirty: false,
                },
            );
        }
        match self.buckets.get_mut(key) {
            Some(slot) => Ok(slot),
            None => unreachable!("inserted above"),
        }
    }

    fn create(&mut self, record: DeliveryRecord) -> Result<(), StoreError> {
        let bucket = keys::bucket_key(&record.id).to_vec();
        self.by_time
            .push(keys::time_key(record.created_at, &bucket));
        let seq = self.seq;
        let slot = self.slot(&bucket)?;
        slot.dirty = true;
        if let Some(existing) = slot.records.iter_mut().find(|s| s.record.id == record.id) {
            // Listed already: only the record changes.
            existing.record = record;
            return Ok(());
        }
        let listing = (record.created_at, record.id.clone());
        let webhook = record.webhook_id.clone();
        slot.records.push(Stored {
            record,
            listed: seq,
        });
        self.chunks.entry(webhook).or_default().push(listing);
        Ok(())
    }

    /// Changes a delivery's record. Returns whether it exists; a delivery retention already
    /// removed has nothing left to update.
    fn update(
        &mut self,
        id: &DeliveryId,
        change: impl FnOnce(&mut DeliveryRecord),
    ) -> Result<bool, StoreError> {
        let slot = self.slot(keys::bucket_key(id))?;
        match slot.records.iter_mut().find(|s| &s.record.id == id) {
            Some(stored) => {
                change(&mut stored.record);
                slot.dirty = true;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The encoded writes, one per changed bucket, and every bucket the batch read.
    pub fn into_writes(self) -> Result<(Writes, Vec<Written>), StoreError> {
        let mut writes = Writes::default();
        let mut written = Vec::new();
        for (key, payload) in self.payloads {
            writes
                .payloads
                .push((IVec::from(key), IVec::from(codec::encode(&payload)?)));
        }
        let marker = IVec::from(&codec::marker()[..]);
        for (webhook, mut chunk) in self.chunks {
            sort_chunk(&mut chunk);
            writes.history.push((
                IVec::from(keys::history_key(&webhook, self.seq)),
                IVec::from(codec::encode(&chunk)?),
            ));
        }
        // A fan-out's deliveries share one bucket and so one by-time key: write it once (a
        // transactional insert reads the old value first, so repeats are not free).
        let mut by_time = self.by_time;
        by_time.sort_unstable();
        by_time.dedup();
        for key in by_time {
            writes.by_time.push((IVec::from(key), marker.clone()));
        }
        for (key, slot) in self.buckets {
            // An untouched bucket is still handed back, for the cache it was taken from.
            if slot.dirty {
                writes.deliveries.push((
                    IVec::from(key.as_slice()),
                    IVec::from(codec::encode(&slot.records)?),
                ));
            }
            written.push(Written {
                key,
                records: slot.records,
            });
        }
        Ok((writes, written))
    }
}
