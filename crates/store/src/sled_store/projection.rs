//! The projections of one appended batch: delivery history and payloads, computed in memory
//! so that each touched record is read once and written once however many events touch it.

use super::keys;
use super::Trees;
use crate::codec;
use crate::history::{AttemptRecord, DeliveryRecord, DeliveryStatus};
use crate::StoreError;
use hallway_domain::{
    AccountId, DeliveryId, Event, EventId, Timestamp, SESSION_PROCESSING_COMPLETED,
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

/// A delivery record as the batch sees it.
struct Slot {
    key: Vec<u8>,
    record: DeliveryRecord,
    /// Not in the store yet: its index entries must be written too.
    new: bool,
    dirty: bool,
}

/// Key-value pairs to write, per tree.
#[derive(Default)]
pub(crate) struct Writes {
    pub payloads: Vec<(IVec, IVec)>,
    pub history: Vec<(IVec, IVec)>,
    pub dlv_index: Vec<(IVec, IVec)>,
    pub by_time: Vec<(IVec, IVec)>,
}

impl Writes {
    /// Whether nothing but the log record is written.
    pub fn is_empty(&self) -> bool {
        self.payloads.is_empty()
            && self.history.is_empty()
            && self.dlv_index.is_empty()
            && self.by_time.is_empty()
    }
}

/// Records of pending deliveries as last committed, by id, with their history keys: an
/// outcome usually arrives within milliseconds of the write that created its record, and
/// reading it back through the index would cost two lookups and a decode.
pub(crate) type RecordCache = HashMap<DeliveryId, (Vec<u8>, DeliveryRecord)>;

/// Most records [`RecordCache`] holds; beyond it records are read from the trees.
pub(crate) const RECORD_CACHE_MAX: usize = 8 * 1024;

/// A record a batch wrote, for refreshing the [`RecordCache`] once the batch is committed.
pub(crate) struct Written {
    pub id: DeliveryId,
    pub key: Vec<u8>,
    pub record: DeliveryRecord,
}

/// The projection updates of one batch, built by [`Projection::apply`] for each event.
pub(crate) struct Projection<'a> {
    trees: &'a Trees,
    cache: &'a RecordCache,
    /// `None` remembers that a delivery has no record (pruned), so it is looked up once.
    deliveries: HashMap<DeliveryId, Option<Slot>>,
    payloads: HashMap<Vec<u8>, PayloadRecord>,
}

/// Reads a delivery's history key and record through the index.
pub(crate) fn load_delivery(
    trees: &Trees,
    id: &DeliveryId,
) -> Result<Option<(IVec, DeliveryRecord)>, StoreError> {
    let Some(indexed) = trees.dlv_index.get(id.as_str())? else {
        return Ok(None);
    };
    let key = codec::decode_raw(keys::DLV_INDEX, || id.to_string(), &indexed)?;
    let key = IVec::from(key);
    // The index and the record are written and removed together, so a dangling index entry
    // is damage, not a state to tolerate.
    let Some(bytes) = trees.history.get(&key)? else {
        return Err(StoreError::Corrupt {
            tree: keys::HISTORY,
            key: keys::show_history_key(&key),
            reason: format!(
                "missing, though {} indexes delivery {id} there",
                keys::DLV_INDEX
            ),
        });
    };
    let record = codec::decode(keys::HISTORY, || keys::show_history_key(&key), &bytes)?;
    Ok(Some((key, record)))
}

impl<'a> Projection<'a> {
    /// An empty set of updates over `trees`.
    pub fn new(trees: &'a Trees, cache: &'a RecordCache) -> Self {
        Projection {
            trees,
            cache,
            deliveries: HashMap::new(),
            payloads: HashMap::new(),
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
                    });
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
                });
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
                    });
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

    fn create(&mut self, record: DeliveryRecord) {
        let key = keys::history_key(&record.webhook_id, record.created_at, &record.id);
        self.deliveries.insert(
            record.id.clone(),
            Some(Slot {
                key,
                record,
                new: true,
                dirty: true,
            }),
        );
    }

    /// Changes a delivery's record, loading it on first touch. Returns whether it exists;
    /// a delivery retention already removed has nothing left to update.
    fn update(
        &mut self,
        id: &DeliveryId,
        change: impl FnOnce(&mut DeliveryRecord),
    ) -> Result<bool, StoreError> {
        if !self.deliveries.contains_key(id) {
            let loaded = match self.cache.get(id) {
                Some((key, record)) => Some((IVec::from(key.as_slice()), record.clone())),
                None => load_delivery(self.trees, id)?,
            };
            let slot = loaded.map(|(key, record)| Slot {
                key: key.to_vec(),
                record,
                new: false,
                dirty: false,
            });
            self.deliveries.insert(id.clone(), slot);
        }
        match self.deliveries.get_mut(id) {
            Some(Some(slot)) => {
                change(&mut slot.record);
                slot.dirty = true;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The encoded writes, one per touched record, and the records written.
    pub fn into_writes(self) -> Result<(Writes, Vec<Written>), StoreError> {
        let mut writes = Writes::default();
        let mut written = Vec::new();
        for (key, payload) in self.payloads {
            writes
                .payloads
                .push((IVec::from(key), IVec::from(codec::encode(&payload)?)));
        }
        for slot in self.deliveries.into_values().flatten() {
            if !slot.dirty {
                continue;
            }
            let record = &slot.record;
            if slot.new {
                writes.dlv_index.push((
                    IVec::from(record.id.as_str()),
                    IVec::from(codec::encode_raw(&slot.key)),
                ));
                writes.by_time.push((
                    IVec::from(keys::time_key(record.created_at, &record.id)),
                    IVec::from(&codec::marker()[..]),
                ));
            }
            writes.history.push((
                IVec::from(slot.key.as_slice()),
                IVec::from(codec::encode(record)?),
            ));
            written.push(Written {
                id: slot.record.id.clone(),
                key: slot.key,
                record: slot.record,
            });
        }
        Ok((writes, written))
    }
}
