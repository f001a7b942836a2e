//! A store wrapper that times the engine's appends and flushes, so a run can say how much of
//! the actor's time goes to the store (encoding and sled inserts, then the durable flush).

use crate::util::now_ns;
use hallway_domain::{AccountId, DeliveryId, Event, EventId, State, Timestamp, WebhookId};
use hallway_store::{DeliveryRecord, EventStore, Page, Seq, SledStore, StoreError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Times of the store calls on the commit path.
#[derive(Default)]
struct Counters {
    append_ns: AtomicU64,
    flushes: AtomicU64,
    flush_ns: AtomicU64,
    first_ns: AtomicU64,
    last_ns: AtomicU64,
    flush_samples: Mutex<Vec<u64>>,
}

/// What the store calls cost during a window.
#[derive(Clone, Debug, Default)]
pub struct StoreTimes {
    /// Total time in `append` (encoding, sled inserts of the record and projections).
    pub append_ms: f64,
    /// Flushes.
    pub flushes: u64,
    /// Total time in `flush` (sled's durable flush).
    pub flush_ms: f64,
    /// From the first append to the end of the last flush.
    pub window_ms: f64,
    /// Median flush.
    pub flush_p50_ms: f64,
    /// Slowest flush.
    pub flush_max_ms: f64,
}

/// A [`SledStore`] whose appends and flushes are timed.
pub struct TimedStore {
    inner: Arc<SledStore>,
    c: Counters,
}

impl TimedStore {
    /// Wraps a store.
    pub fn new(inner: Arc<SledStore>) -> Self {
        TimedStore {
            inner,
            c: Counters::default(),
        }
    }

    /// Starts a new measuring window.
    pub fn reset(&self) {
        for a in [
            &self.c.append_ns,
            &self.c.flushes,
            &self.c.flush_ns,
            &self.c.first_ns,
            &self.c.last_ns,
        ] {
            a.store(0, Ordering::Relaxed);
        }
        self.c
            .flush_samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// The times since the last reset.
    pub fn times(&self) -> StoreTimes {
        let ms = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64 / 1e6;
        let mut samples = self
            .c
            .flush_samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        samples.sort_unstable();
        let first = self.c.first_ns.load(Ordering::Relaxed);
        let last = self.c.last_ns.load(Ordering::Relaxed);
        StoreTimes {
            append_ms: ms(&self.c.append_ns),
            flushes: self.c.flushes.load(Ordering::Relaxed),
            flush_ms: ms(&self.c.flush_ns),
            window_ms: last.saturating_sub(first) as f64 / 1e6,
            flush_p50_ms: crate::util::quantile_ms(&samples, 0.5).unwrap_or(0.0),
            flush_max_ms: crate::util::quantile_ms(&samples, 1.0).unwrap_or(0.0),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<SledStore> {
        &self.inner
    }
}

impl EventStore for TimedStore {
    fn append(&self, events: &[Event]) -> Result<Seq, StoreError> {
        let t = now_ns();
        let _ = self
            .c
            .first_ns
            .compare_exchange(0, t, Ordering::Relaxed, Ordering::Relaxed);
        let r = self.inner.append(events);
        self.c.append_ns.fetch_add(now_ns() - t, Ordering::Relaxed);
        r
    }

    fn flush(&self) -> Result<(), StoreError> {
        let t = now_ns();
        let r = self.inner.flush();
        let end = now_ns();
        self.c.flush_ns.fetch_add(end - t, Ordering::Relaxed);
        self.c.flushes.fetch_add(1, Ordering::Relaxed);
        self.c.last_ns.fetch_max(end, Ordering::Relaxed);
        self.c
            .flush_samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(end - t);
        r
    }

    fn last_seq(&self) -> Result<Seq, StoreError> {
        self.inner.last_seq()
    }

    fn read_log(
        &self,
        from: Seq,
    ) -> Box<dyn Iterator<Item = Result<(Seq, Vec<Event>), StoreError>> + '_> {
        self.inner.read_log(from)
    }

    fn save_snapshot(&self, seq: Seq, state: &State) -> Result<(), StoreError> {
        self.inner.save_snapshot(seq, state)
    }

    fn load_snapshot(&self) -> Result<Option<(Seq, State)>, StoreError> {
        self.inner.load_snapshot()
    }

    fn truncate_log(&self, through: Seq) -> Result<u64, StoreError> {
        self.inner.truncate_log(through)
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

    fn deliveries(
        &self,
        webhook: &WebhookId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, StoreError> {
        self.inner.deliveries(webhook, limit, cursor)
    }

    fn prune(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.inner.prune(before)
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.inner.size_on_disk()
    }
}
