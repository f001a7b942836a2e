//! The projections of one appended batch: delivery history and payloads, computed in memory
//! so that each touched record is read once and written once however many events touch it.

use super::bodies::{BodyAt, BodyFiles};
use super::bucket_cache::BucketCache;
use super::entries::{self, EventEntry};
use super::keys;
use super::spill::{LastRun, OpenRuns, RunChanges, SpillWrites};
use super::{Op, Trees};
use crate::codec;
use crate::history::rules::{self, SpillChange};
use crate::history::DeliveryRecord;
use crate::{Seq, StoreError};
use hallway_domain::{
    AccountId, DeliveryId, DeliverySummary, Event, EventId, Published, Timestamp, WebhookId,
};
use serde::{Deserialize, Serialize};
use sled::IVec;
use std::collections::{BTreeMap, HashMap};

/// Where an event's body is, with what retention needs to know about it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PayloadRef {
    /// When the event was published (all its deliveries share this creation time).
    pub created_at: Timestamp,
    /// Every delivery that sends this body; the payload lives while one of them is pending.
    pub deliveries: Vec<DeliveryId>,
    /// The exact bytes every attempt sends, in a body segment.
    pub body: BodyAt,
}

/// A payload an append writes: its body goes to a segment first.
struct NewPayload<'e> {
    created_at: Timestamp,
    deliveries: Vec<DeliveryId>,
    body: &'e str,
    /// The segment of the body this one replaces (a republish), whose count drops.
    replaced: Option<u64>,
    /// The entry's publish as stored (the append's own publish, if any, replaces it).
    published: Option<Published>,
}

/// A segment's reference count as a write changes it, starting from the committed one.
pub(crate) fn count_of<'c>(
    changed: &'c mut BTreeMap<u64, u64>,
    committed: &BTreeMap<u64, u64>,
    segment: u64,
) -> &'c mut u64 {
    changed
        .entry(segment)
        .or_insert_with(|| committed.get(&segment).copied().unwrap_or(0))
}

/// The meta writes that set body segments' reference counts: a count of 0 removes its key.
pub(crate) fn body_ref_writes(
    counts: &BTreeMap<u64, u64>,
) -> Result<Vec<(IVec, Option<IVec>)>, StoreError> {
    let mut out = Vec::with_capacity(counts.len());
    for (&segment, &n) in counts {
        let value = match n {
            0 => None,
            n => Some(IVec::from(codec::encode(&n)?)),
        };
        out.push((IVec::from(keys::body_refs_key(segment)), value));
    }
    Ok(out)
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

/// A by-time chunk: the buckets one append created records in, with their creation times,
/// oldest first.
pub(crate) type TimeChunk = Vec<(Timestamp, Vec<u8>)>;

/// A history chunk: one webhook's deliveries created by one append, or by consecutive ones
/// while the chunk had room ([`GATHER_MAX`]), newest first.
pub(crate) type Chunk = Vec<(Timestamp, DeliveryId)>;

/// Most deliveries a history chunk gathers across appends. A webhook whose appends each
/// bring a delivery or two (a backlog's fill, a steady trickle) would otherwise cost a key,
/// and sled a page in memory every dozen keys, for each delivery; a larger chunk makes each
/// rewrite of it larger.
pub(crate) const GATHER_MAX: usize = 32;

/// Most webhooks whose open chunk [`OpenChunks`] keeps; past it a webhook starts a new one.
pub(crate) const OPEN_CHUNKS_MAX: usize = 4096;

/// A webhook's newest history chunk as last committed, while it has room to gather the next
/// append's deliveries: the append it was first written by, and its entries.
pub(crate) type OpenChunk = (Seq, Chunk);

/// Open chunks by webhook, kept by the writer: appends refresh them, and retention and
/// purges, which rewrite chunks, drop them all.
pub(crate) type OpenChunks = HashMap<WebhookId, OpenChunk>;

/// The history chunks an append writes, by webhook, for [`keep_open`] once it commits.
pub(crate) type Gathered = Vec<(WebhookId, OpenChunk)>;

/// Keeps a webhook's chunk as just committed open while it has room, or forgets it.
pub(crate) fn keep_open(open: &mut OpenChunks, webhook: WebhookId, chunk: OpenChunk) {
    if chunk.1.len() >= GATHER_MAX {
        open.remove(&webhook);
    } else if open.len() < OPEN_CHUNKS_MAX || open.contains_key(&webhook) {
        open.insert(webhook, chunk);
    }
}

/// Reads the chunk that lists a delivery its record says append `listed` created: the newest
/// chunk of `webhook` first written by that append or before it (chunks of one webhook hold
/// consecutive appends), if any.
pub(crate) fn load_listing_chunk(
    trees: &Trees,
    webhook: &WebhookId,
    listed: Seq,
) -> Result<Option<(IVec, Chunk)>, StoreError> {
    let prefix = keys::history_prefix(webhook);
    let Some(item) = trees
        .history
        .range(keys::history_key(webhook, listed)..)
        .next()
    else {
        return Ok(None);
    };
    let (key, value) = item.op("read a history chunk")?;
    if !key.starts_with(&prefix) {
        return Ok(None);
    }
    let chunk = codec::decode(keys::HISTORY, || keys::show_history_key(&key), &value)?;
    Ok(Some((key, chunk)))
}

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
    /// Event entries whose body reference changes, keyed as in the `published` tree; the
    /// append adds its publishes to them (see `idempotency::PublishedWrites::encoded`).
    pub payloads: Vec<([u8; 24], EventEntry)>,
    /// The new reference counts of the body segments this batch changes.
    pub body_refs: BTreeMap<u64, u64>,
    pub history: Vec<(IVec, IVec)>,
    pub deliveries: Vec<(IVec, IVec)>,
    pub by_time: Vec<(IVec, IVec)>,
    /// The spill index's changes: a value, or `None` to remove the key.
    pub spilled: RunChanges,
    /// The published ids the append records.
    pub published: super::idempotency::Encoded,
    /// The spill generations' last runs once the append commits (see `spill::keep_last`).
    pub spill_lasts: Vec<LastRun>,
}

impl Writes {
    /// Whether nothing but the log record is written.
    pub fn is_empty(&self) -> bool {
        self.payloads.is_empty()
            && self.history.is_empty()
            && self.deliveries.is_empty()
            && self.by_time.is_empty()
            && self.spilled.is_empty()
            && self.published.is_empty()
    }
}

/// A bucket a batch read or wrote, for refreshing the [`BucketCache`] once it is committed.
pub(crate) struct Written {
    pub key: Vec<u8>,
    pub records: Bucket,
}

/// The projection updates of one batch, built by [`Projection::apply`] for each event.
pub(crate) struct Projection<'a, 'e> {
    trees: &'a Trees,
    /// Buckets are taken out (not copied) on first touch; the append puts back what it
    /// commits, and a failed append leaves them to be read from the tree again.
    cache: &'a mut BucketCache,
    /// The sequence of the append being built.
    seq: Seq,
    buckets: HashMap<Vec<u8>, Slot>,
    payloads: HashMap<[u8; 24], NewPayload<'e>>,
    /// Each webhook's history chunk of this append.
    chunks: HashMap<WebhookId, Chunk>,
    /// The buckets this append creates records in, with those records' creation times.
    by_time: TimeChunk,
    /// Bodies of this append's publishes that no enabled webhook receives, for the paused
    /// deliveries that may follow them.
    unsent: HashMap<[u8; 24], (&'e str, Timestamp)>,
    /// Stored entries this append lists more deliveries on, their bodies unchanged.
    extended: HashMap<[u8; 24], EventEntry>,
    /// The spill index's changes.
    spills: SpillWrites,
}

/// Reads a bucket, empty if there is none.
pub(crate) fn load_bucket(trees: &Trees, key: &[u8]) -> Result<Bucket, StoreError> {
    match trees.deliveries.get(key).op("read a delivery bucket")? {
        Some(bytes) => codec::decode(keys::DELIVERIES, || keys::show_bucket(key), &bytes),
        None => Ok(Bucket::new()),
    }
}

/// Reads one delivery's record from its bucket.
pub(crate) fn load_delivery(
    trees: &Trees,
    id: &DeliveryId,
) -> Result<Option<DeliveryRecord>, StoreError> {
    Ok(load_bucket(trees, &keys::bucket_key(id))?
        .into_iter()
        .find(|s| &s.record.id == id)
        .map(|s| s.record))
}

impl<'a, 'e> Projection<'a, 'e> {
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
            unsent: HashMap::new(),
            extended: HashMap::new(),
            spills: SpillWrites::default(),
        }
    }

    /// Folds one event's effect on the projections into the pending updates.
    pub fn apply(&mut self, event: &'e Event) -> Result<(), StoreError> {
        if let Some(id) = rules::updated(event) {
            self.update(id, |r| rules::update(r, event))?;
            return Ok(());
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
                // An event nobody receives needs no body kept: the log has it anyway. One with
                // only paused deliveries keeps it for them, if they follow (`DeliveriesPaused`).
                if deliveries.is_empty() {
                    let key = keys::entry_key(account_id, event_id);
                    self.unsent.insert(key, (body.as_str(), *at));
                    return Ok(());
                }
                let ids = deliveries.iter().map(|(d, _)| d.clone()).collect();
                self.put_payload(account_id, event_id, *at, ids, body)?;
            }
            Event::TestDeliveryCreated {
                delivery_id,
                account_id,
                event_id,
                body,
                at,
                ..
            } => {
                self.put_payload(account_id, event_id, *at, vec![delivery_id.clone()], body)?;
            }
            Event::DeliveriesPaused {
                account_id,
                event_id,
                deliveries,
                ..
            } => {
                let ids = deliveries.iter().map(|(d, _)| d.clone()).collect();
                self.add_payload_deliveries(account_id, event_id, ids)?;
            }
            Event::EventReplayed {
                account_id,
                event_id,
                deliveries,
                ..
            } => {
                let ids = deliveries.iter().map(|(d, _)| d.clone()).collect();
                self.extend_payload(account_id, event_id, ids)?;
            }
            Event::DeliveryRetried { delivery, at } => self.requeue(delivery, *at)?,
            Event::DeliveriesRecovered {
                deliveries,
                first_due,
                ..
            } => {
                for delivery in deliveries {
                    self.requeue(delivery, *first_due)?;
                }
            }
            Event::DeliveriesSpilled { .. }
            | Event::DeliveriesLoaded { .. }
            | Event::SpilledDeliveriesSettled { .. } => {
                for change in rules::spill_changes(event) {
                    match change {
                        SpillChange::Put(webhook, generation, d) => {
                            self.spills.put(webhook, generation, d)
                        }
                        SpillChange::Remove(webhook, generation, due, id) => {
                            self.spills.remove(webhook, generation, due, id)
                        }
                    }
                }
                for (id, status) in rules::settled(event) {
                    self.update(id, |r| rules::stop(r, status))?;
                }
            }
            // Changes to one record, made above.
            Event::AttemptStarted { .. }
            | Event::AttemptSucceeded { .. }
            | Event::AttemptFailed { .. }
            | Event::AttemptAbandoned { .. }
            | Event::DeliveryCancelled { .. }
            | Event::DeliveryPaused { .. }
            // A deleted account's history goes with `ReadModel::purge_account`, in steps,
            // rather than in the append that logs the deletion.
            | Event::AccountCreated { .. }
            | Event::AccountUpdated { .. }
            | Event::AccountKeyRotated { .. }
            | Event::AccountDeleted { .. }
            | Event::WebhookCreated { .. }
            | Event::WebhookUpdated { .. }
            | Event::WebhookEnabled { .. }
            | Event::WebhookDisabled { .. }
            // A deleted webhook's history stays until retention removes it: nothing reaches
            // it through the API any more, and deleting it here would make the batch unbounded.
            | Event::WebhookDeleted { .. }
            | Event::SecretRotated { .. }
            | Event::AlertRaised { .. }
            | Event::IdempotencyKeysExpired { .. } => {}
        }
        for record in rules::created(event) {
            self.create(record)?;
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
        body: &'e str,
    ) -> Result<(), StoreError> {
        let key = keys::entry_key(account, event);
        let (mut all, replaced, published) = match self.payloads.remove(&key) {
            Some(p) => (p.deliveries, p.replaced, p.published),
            None => match entries::load(&self.trees.published, &key)? {
                Some(EventEntry {
                    published,
                    payload: Some(r),
                }) => (r.deliveries, Some(r.body.segment), published),
                Some(EventEntry { published, .. }) => (Vec::new(), None, published),
                None => (Vec::new(), None, None),
            },
        };
        for d in deliveries {
            if !all.contains(&d) {
                all.push(d);
            }
        }
        self.payloads.insert(
            key,
            NewPayload {
                created_at: at,
                deliveries: all,
                body,
                replaced,
                published,
            },
        );
        Ok(())
    }

    /// Lists more deliveries on a payload this batch writes (the publish just before them in
    /// the same batch), so that retention keeps the body for them too.
    fn add_payload_deliveries(
        &mut self,
        account: &AccountId,
        event: &EventId,
        deliveries: Vec<DeliveryId>,
    ) -> Result<(), StoreError> {
        let key = keys::entry_key(account, event);
        if let Some((body, at)) = self.unsent.remove(&key) {
            return self.put_payload(account, event, at, deliveries, body);
        }
        match self.payloads.get_mut(&key) {
            Some(p) => {
                for d in deliveries {
                    if !p.deliveries.contains(&d) {
                        p.deliveries.push(d);
                    }
                }
            }
            None => debug_assert!(false, "paused deliveries without their publish's payload"),
        }
        Ok(())
    }

    /// Lists more deliveries on an event's stored payload without writing its body again (a
    /// replay), so that retention keeps the body while they are pending.
    fn extend_payload(
        &mut self,
        account: &AccountId,
        event: &EventId,
        deliveries: Vec<DeliveryId>,
    ) -> Result<(), StoreError> {
        let key = keys::entry_key(account, event);
        if self.payloads.contains_key(&key) {
            return self.add_payload_deliveries(account, event, deliveries);
        }
        let existing = match self.extended.remove(&key) {
            Some(e) => Some(e),
            None => entries::load(&self.trees.published, &key)?,
        };
        // Gone (retention removed it after the caller checked): the deliveries will find no
        // body and fail, which history shows.
        if let Some(mut e) = existing {
            if let Some(r) = &mut e.payload {
                for d in deliveries {
                    if !r.deliveries.contains(&d) {
                        r.deliveries.push(d);
                    }
                }
                self.extended.insert(key, e);
            }
        }
        Ok(())
    }

    /// The batch's view of a bucket, loaded on first touch.
    fn slot(&mut self, key: &[u8]) -> Result<&mut Slot, StoreError> {
        if !self.buckets.contains_key(key) {
            let records = match self.cache.take(key) {
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

    /// A finished delivery pending again (a manual retry or a recover), due at `due`. If
    /// retention removed its record between the caller reading it and the decision, the record
    /// is made again from what the caller knew.
    fn requeue(&mut self, delivery: &DeliverySummary, due: Timestamp) -> Result<(), StoreError> {
        if self.update(&delivery.delivery_id, |r| rules::requeue(r, due))? {
            return Ok(());
        }
        self.create(rules::recreated(delivery, due))
    }

    fn create(&mut self, record: DeliveryRecord) -> Result<(), StoreError> {
        let bucket = keys::bucket_key(&record.id).to_vec();
        self.by_time.push((record.created_at, bucket.clone()));
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
        let slot = self.slot(&keys::bucket_key(id))?;
        match slot.records.iter_mut().find(|s| &s.record.id == id) {
            Some(stored) => {
                change(&mut stored.record);
                slot.dirty = true;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Writes the batch's new bodies (durably) to `bodies`, then returns the encoded writes
    /// (one per changed bucket, and the body segments' new reference counts from the
    /// committed `counts`) and every bucket the batch read. `open` and `runs` are the
    /// writer's open history chunks and spill runs.
    pub fn into_writes(
        self,
        bodies: &BodyFiles,
        counts: &BTreeMap<u64, u64>,
        open: &OpenChunks,
        runs: &OpenRuns,
    ) -> Result<(Writes, Vec<Written>, Gathered), StoreError> {
        let mut writes = Writes::default();
        let mut written = Vec::new();
        let payloads: Vec<([u8; 24], NewPayload)> = self.payloads.into_iter().collect();
        let texts: Vec<&str> = payloads.iter().map(|(_, p)| p.body).collect();
        let places = bodies.write(&texts)?;
        let mut changed: BTreeMap<u64, u64> = BTreeMap::new();
        for ((key, p), at) in payloads.into_iter().zip(places) {
            *count_of(&mut changed, counts, at.segment) += 1;
            if let Some(old) = p.replaced {
                let n = count_of(&mut changed, counts, old);
                *n = n.saturating_sub(1);
            }
            let record = PayloadRef {
                created_at: p.created_at,
                deliveries: p.deliveries,
                body: at,
            };
            writes.payloads.push((
                key,
                EventEntry {
                    published: p.published,
                    payload: Some(record),
                },
            ));
        }
        writes.body_refs = changed;
        (writes.spilled, writes.spill_lasts) = self.spills.encoded(&self.trees.spilled, runs)?;
        writes.payloads.extend(self.extended);
        let mut chunks = Vec::with_capacity(self.chunks.len());
        for (webhook, new) in self.chunks {
            let (seq, mut chunk) = match open.get(&webhook) {
                Some((seq, old)) if old.len() + new.len() <= GATHER_MAX => {
                    (*seq, old.iter().cloned().chain(new).collect())
                }
                _ => (self.seq, new),
            };
            sort_chunk(&mut chunk);
            writes.history.push((
                IVec::from(keys::history_key(&webhook, seq)),
                IVec::from(codec::encode(&chunk)?),
            ));
            chunks.push((webhook, (seq, chunk)));
        }
        // One key per append, not per bucket: sled's cost is per key. A fan-out's deliveries
        // share a bucket, so it is listed once.
        let mut by_time = self.by_time;
        by_time.sort_unstable();
        by_time.dedup();
        if let Some((earliest, _)) = by_time.first() {
            writes.by_time.push((
                IVec::from(&keys::time_chunk_key(*earliest, self.seq)[..]),
                IVec::from(codec::encode(&by_time)?),
            ));
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
        Ok((writes, written, chunks))
    }
}
