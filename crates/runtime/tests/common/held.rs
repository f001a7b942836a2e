//! A sled store whose appends and published-id reads wait while a test holds them, so a test
//! can put an engine's commits and its publishes' store reads in the order it needs.
#![allow(dead_code)]

use hallway_domain::{
    AccountId, DeliveryId, Event, EventId, IdempotencyKey, Published, SpilledDelivery, State,
    Timestamp, WebhookId,
};
use hallway_store::{
    DeliveryFilter, DeliveryRecord, EventLog, LogRecords, Page, PublishedIds, ReadModel, Seq,
    SledStore, SnapshotDraft, StoreError, Truncation,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// A switch that holds the calls passing it while it is on.
#[derive(Default)]
pub struct Gate {
    held: Mutex<bool>,
    changed: Condvar,
    waiting: AtomicUsize,
}

impl Gate {
    /// Holds (`true`) or lets through (`false`) the calls passing from now on.
    pub fn hold(&self, on: bool) {
        *self.held.lock().unwrap() = on;
        self.changed.notify_all();
    }

    /// Waits while the gate is held.
    fn pass(&self) {
        let mut held = self.held.lock().unwrap();
        self.waiting.fetch_add(1, Ordering::SeqCst);
        while *held {
            held = self.changed.wait(held).unwrap();
        }
        self.waiting.fetch_sub(1, Ordering::SeqCst);
    }

    /// How many calls wait at the gate now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }
}

/// See the module documentation. A held read has already read: it returns what the store
/// held before the gate opened.
pub struct Held {
    inner: SledStore,
    /// Appends wait here before they write.
    pub appends: Gate,
    /// Appends that log a publish wait here too (those of housekeeping, say, do not).
    pub publish_appends: Gate,
    /// Reads of a published id wait here after they read: a handle's, and the actor's own
    /// when it reads again (which holds the actor up while the gate is held).
    pub reads: Gate,
}

impl Held {
    /// A store over a sled directory, nothing held.
    pub fn open(dir: &std::path::Path) -> Arc<Held> {
        Arc::new(Held {
            inner: SledStore::open(dir).unwrap(),
            appends: Gate::default(),
            publish_appends: Gate::default(),
            reads: Gate::default(),
        })
    }
}

impl EventLog for Held {
    fn append(&self, events: &[Event]) -> Result<Seq, StoreError> {
        if events
            .iter()
            .any(|e| matches!(e, Event::EventPublished { .. }))
        {
            self.publish_appends.pass();
        }
        self.appends.pass();
        self.inner.append(events)
    }
    fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush()
    }
    fn last_seq(&self) -> Result<Seq, StoreError> {
        self.inner.last_seq()
    }
    fn read_log(&self, from: Seq) -> LogRecords<'_> {
        self.inner.read_log(from)
    }
    fn write_snapshot(&self, seq: Seq, state: &State) -> Result<SnapshotDraft, StoreError> {
        self.inner.write_snapshot(seq, state)
    }
    fn install_snapshot(&self, draft: SnapshotDraft) -> Result<(), StoreError> {
        self.inner.install_snapshot(draft)
    }
    fn load_snapshot(&self) -> Result<Option<(Seq, State)>, StoreError> {
        self.inner.load_snapshot()
    }
    fn truncate(&self, through: Seq, when: Truncation) -> Result<u64, StoreError> {
        self.inner.truncate(through, when)
    }
}

impl ReadModel for Held {
    fn published(&self, key: &IdempotencyKey) -> Result<Option<Published>, StoreError> {
        let read = self.inner.published(key);
        self.reads.pass();
        read
    }
    fn published_ids(
        &self,
        after: Option<[u8; 24]>,
        limit: usize,
    ) -> Result<Option<PublishedIds>, StoreError> {
        self.inner.published_ids(after, limit)
    }
    fn payload(
        &self,
        account: &AccountId,
        event: &EventId,
    ) -> Result<Option<Arc<str>>, StoreError> {
        self.inner.payload(account, event)
    }
    fn delivery(
        &self,
        webhook: &WebhookId,
        delivery: &DeliveryId,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        self.inner.delivery(webhook, delivery)
    }
    fn deliveries_where(
        &self,
        webhook: &WebhookId,
        filter: &DeliveryFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, StoreError> {
        self.inner.deliveries_where(webhook, filter, limit, cursor)
    }
    fn prune(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.inner.prune(before)
    }
    fn spilled(
        &self,
        webhook: &WebhookId,
        generation: u32,
        limit: usize,
    ) -> Result<Vec<SpilledDelivery>, StoreError> {
        self.inner.spilled(webhook, generation, limit)
    }
    fn purge_account(
        &self,
        account: &AccountId,
        webhooks: &[WebhookId],
    ) -> Result<u64, StoreError> {
        self.inner.purge_account(account, webhooks)
    }
}
