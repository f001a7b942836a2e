//! An in-memory backend of both traits, for the deterministic simulator and fast tests. It
//! never blocks, keeps the read model with the sled backend's rules, encodes snapshots with
//! the same codec, and can simulate a crash: records appended since the last flush are lost
//! (all, or all but a prefix that reached the disk on its own), everything flushed stays.

mod projection;

use crate::codec;
use crate::history::{DeliveryFilter, DeliveryRecord, Page, SCAN_MAX};
use crate::sled_store::keys;
use crate::{
    EventLog, LogRecords, PublishedIds, ReadModel, Seq, SnapshotDraft, StoreError, Truncation,
};
use hallway_domain::{AccountId, DeliveryId, Event, EventId, FromSnapshot, SnapshotForm, State};
use hallway_domain::{IdempotencyKey, Published, SpilledDelivery, Timestamp, WebhookId};
use projection::Undo;
use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

/// See the module documentation. Cheap to share behind an `Arc`; every call takes one lock.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    log: BTreeMap<Seq, Vec<Event>>,
    /// The last sequence handed out (records are numbered from 1, also after truncation).
    last_seq: Seq,
    /// Records up to here were removed by truncation.
    truncated_through: Seq,
    /// The installed snapshot: its sequence and its encoding.
    snapshot: Option<(Seq, Vec<u8>)>,
    read_model: projection::ReadModel,
    /// Appends since the last flush, oldest first: their sequence and what they changed.
    unflushed: Vec<(Seq, Undo)>,
}

/// An event as the log keeps it: attempt detail is history's, not the log's (as in sled).
fn as_logged(event: &Event) -> Event {
    let mut event = event.clone();
    if let Event::AttemptSucceeded { detail, .. } | Event::AttemptFailed { detail, .. } = &mut event
    {
        *detail = None;
    }
    event
}

/// What a [`SnapshotDraft`] of this backend holds: the encoded snapshot.
struct Draft(Vec<u8>);

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves no half-applied change visible to anyone
        // who could tell: the simulator stops at the first panic.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many appended records are not flushed yet.
    pub fn unflushed(&self) -> usize {
        self.lock().unflushed.len()
    }

    /// Simulates a crash and the restart's view of the disk: of the records appended since
    /// the last flush, the first `survivors` are kept (they reached the disk on their own,
    /// whole, as a database's own buffer writes do) and the rest are lost with everything
    /// they changed. Flushed records, installed snapshots and truncations stay.
    pub fn crash(&self, survivors: usize) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let kept = survivors.min(inner.unflushed.len());
        let lost = inner.unflushed.split_off(kept);
        for (seq, undo) in lost.into_iter().rev() {
            inner.log.remove(&seq);
            inner.read_model.undo(undo);
            inner.last_seq = seq - 1;
        }
        inner.unflushed.clear();
    }
}

impl EventLog for MemoryStore {
    fn append(&self, events: &[Event]) -> Result<Seq, StoreError> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let seq = inner.last_seq + 1;
        let undo = inner.read_model.apply(seq, events);
        inner
            .log
            .insert(seq, events.iter().map(as_logged).collect());
        inner.last_seq = seq;
        inner.unflushed.push((seq, undo));
        Ok(seq)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.lock().unflushed.clear();
        Ok(())
    }

    fn never_blocks(&self) -> bool {
        true
    }

    fn last_seq(&self) -> Result<Seq, StoreError> {
        Ok(self.lock().last_seq)
    }

    fn read_log(&self, from: Seq) -> LogRecords<'_> {
        let inner = self.lock();
        if from <= inner.truncated_through {
            let first_kept = inner.truncated_through + 1;
            return Box::new(std::iter::once(Err(StoreError::Truncated {
                from,
                first_kept,
            })));
        }
        let records: Vec<Result<(Seq, Vec<Event>), StoreError>> = inner
            .log
            .range(from..)
            .map(|(seq, events)| Ok((*seq, events.clone())))
            .collect();
        Box::new(records.into_iter())
    }

    fn write_snapshot(&self, seq: Seq, state: &State) -> Result<SnapshotDraft, StoreError> {
        {
            let inner = self.lock();
            if seq > inner.last_seq || seq < inner.truncated_through {
                return Err(StoreError::Invalid(format!(
                    "snapshot at seq {seq} outside the log ({}..={})",
                    inner.truncated_through, inner.last_seq
                )));
            }
        }
        let bytes = codec::encode(&(seq, SnapshotForm(state)))?;
        Ok(SnapshotDraft::new(seq, Draft(bytes)))
    }

    fn install_snapshot(&self, draft: SnapshotDraft) -> Result<(), StoreError> {
        let seq = draft.seq();
        let Draft(bytes) = draft.into_backend::<Draft>()?;
        let mut inner = self.lock();
        if inner.snapshot.as_ref().is_some_and(|(s, _)| *s > seq) {
            return Ok(());
        }
        inner.snapshot = Some((seq, bytes));
        Ok(())
    }

    fn load_snapshot(&self) -> Result<Option<(Seq, State)>, StoreError> {
        let inner = self.lock();
        let Some((_, bytes)) = &inner.snapshot else {
            return Ok(None);
        };
        let (seq, state): (Seq, FromSnapshot) =
            codec::decode("snapshot", || "memory".to_owned(), bytes)?;
        Ok(Some((seq, state.0)))
    }

    fn truncate(&self, through: Seq, when: Truncation) -> Result<u64, StoreError> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let limit = through.min(inner.snapshot.as_ref().map_or(0, |(s, _)| *s));
        if limit <= inner.truncated_through {
            return Ok(0);
        }
        let kept = inner.log.split_off(&(limit + 1));
        let removed = std::mem::replace(&mut inner.log, kept).len() as u64;
        inner.truncated_through = limit;
        Ok(match when {
            Truncation::Now => removed,
            Truncation::WithAppends => 0,
        })
    }
}

impl ReadModel for MemoryStore {
    fn payload(
        &self,
        account: &AccountId,
        event: &EventId,
    ) -> Result<Option<Arc<str>>, StoreError> {
        let key = (account.clone(), event.clone());
        Ok(self
            .lock()
            .read_model
            .payloads
            .get(&key)
            .map(|p| p.body.clone()))
    }

    fn delivery(
        &self,
        webhook: &WebhookId,
        delivery: &DeliveryId,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        Ok(self
            .lock()
            .read_model
            .records
            .get(delivery)
            .filter(|l| &l.record.webhook_id == webhook)
            .map(|l| l.record.clone()))
    }

    fn deliveries_where(
        &self,
        webhook: &WebhookId,
        filter: &DeliveryFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, StoreError> {
        let limit = limit.max(1);
        let start = match cursor {
            Some(c) => {
                let (seq, at, id) = keys::parse_cursor(c)
                    .ok_or_else(|| StoreError::Invalid(format!("not a paging cursor: {c:?}")))?;
                Bound::Excluded((Reverse(seq), Reverse(at), id))
            }
            None => Bound::Unbounded,
        };
        let inner = self.lock();
        let model = &inner.read_model;
        let mut data = Vec::new();
        let mut last_listed = None;
        let mut next_cursor = None;
        let Some(list) = model.listings.get(webhook) else {
            return Ok(Page { data, next_cursor });
        };
        // The sled backend's rules: stop at the first delivery older than `since` (history is
        // newest first), or after `SCAN_MAX` examined, with a cursor to go on from there.
        for (examined, key) in list.range((start, Bound::Unbounded)).enumerate() {
            let (Reverse(seq), Reverse(at), id) = key;
            if filter.since.is_some_and(|since| *at < since) {
                break;
            }
            if examined == SCAN_MAX {
                next_cursor = Some(keys::cursor(*seq, *at, id));
                break;
            }
            let Some(listed) = model.records.get(id) else {
                continue;
            };
            if !filter.matches(&listed.record) {
                continue;
            }
            if data.len() == limit {
                next_cursor = last_listed.map(|(seq, at, id)| keys::cursor(seq, at, id));
                break;
            }
            data.push(listed.record.clone());
            last_listed = Some((*seq, *at, id));
        }
        Ok(Page { data, next_cursor })
    }

    fn purge_account(
        &self,
        account: &AccountId,
        webhooks: &[WebhookId],
    ) -> Result<u64, StoreError> {
        Ok(self.lock().read_model.purge_account(account, webhooks))
    }

    fn spilled(
        &self,
        webhook: &WebhookId,
        generation: u32,
        limit: usize,
    ) -> Result<Vec<SpilledDelivery>, StoreError> {
        Ok(self.lock().read_model.spilled(webhook, generation, limit))
    }

    fn published(&self, key: &IdempotencyKey) -> Result<Option<Published>, StoreError> {
        Ok(self.lock().read_model.published.get(key).copied())
    }

    fn published_ids(
        &self,
        after: Option<[u8; 24]>,
        limit: usize,
    ) -> Result<Option<PublishedIds>, StoreError> {
        // A map in no order, sorted per call: this backend's stores are small.
        let mut ids: PublishedIds = self
            .lock()
            .read_model
            .published
            .iter()
            .map(|(key, p)| (key.to_bytes(), p.at))
            .filter(|(bytes, _)| after.is_none_or(|a| *bytes > a))
            .collect();
        ids.sort_unstable();
        ids.truncate(limit);
        Ok(Some(ids))
    }

    fn prune(&self, before: Timestamp) -> Result<u64, StoreError> {
        Ok(self.lock().read_model.prune(before))
    }
}
