//! The two traits a backend implements: the event log (the source of truth) and the read
//! model derived from it. Neither mentions a database, a file or a path.

use crate::history::{DeliveryFilter, DeliveryRecord, Page};
use crate::StoreError;
use hallway_domain::{
    AccountId, DeliveryId, Event, EventId, IdempotencyKey, Published, SpilledDelivery, State,
    Timestamp, WebhookId,
};
use std::any::Any;
use std::sync::Arc;

/// A position in the log: the sequence number of one committed batch, from 1.
pub type Seq = u64;

/// The log read in order: each committed batch with its sequence number, or the error
/// that ended the read.
pub type LogRecords<'a> = Box<dyn Iterator<Item = Result<(Seq, Vec<Event>), StoreError>> + 'a>;

/// A snapshot encoded by [`EventLog::write_snapshot`] and not yet installed. What the
/// backend keeps in it is its own; only the backend that wrote it can install it.
pub struct SnapshotDraft {
    seq: Seq,
    backend: Box<dyn Any + Send>,
}

impl SnapshotDraft {
    /// A draft covering record `seq`, holding what the backend needs to install it.
    pub fn new(seq: Seq, backend: impl Any + Send) -> SnapshotDraft {
        SnapshotDraft {
            seq,
            backend: Box::new(backend),
        }
    }

    /// The record the snapshot covers.
    pub fn seq(&self) -> Seq {
        self.seq
    }

    /// What the backend put in the draft; [`StoreError::Invalid`] if another backend (a
    /// different type) wrote it.
    pub fn into_backend<T: Any>(self) -> Result<T, StoreError> {
        self.backend
            .downcast::<T>()
            .map(|b| *b)
            .map_err(|_| StoreError::Invalid("a snapshot draft of another backend".into()))
    }
}

impl std::fmt::Debug for SnapshotDraft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotDraft")
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

/// When a truncation removes the records it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Truncation {
    /// Before the call returns, a step at a time beside the appends (each step waits for
    /// at most one append): for a log no appends will follow, as at shutdown.
    Now,
    /// A few records inside each append that follows, so that removing old records never
    /// stalls an append: for a running engine. A read of those records while appends remove
    /// them may end in a [`StoreError::Gap`]; reads from after the snapshot (what startup
    /// replays) are never affected. A restart goes on with it.
    WithAppends,
}

/// The event log: the source of truth, one record per committed batch of events.
pub trait EventLog: Send + Sync + 'static {
    /// Appends one batch of events as the next log record, atomically (with the read
    /// model's updates, where the backend keeps both). Not durable until
    /// [`EventLog::flush`] returns. Returns its sequence number.
    fn append(&self, events: &[Event]) -> Result<Seq, StoreError>;

    /// Makes every record appended so far durable.
    fn flush(&self) -> Result<(), StoreError>;

    /// Whether every call returns at once, never blocking on I/O (an in-memory backend). The
    /// runtime calls a store that may block on tokio's blocking pool, and one that never
    /// blocks on its own tasks.
    fn never_blocks(&self) -> bool {
        false
    }

    /// The sequence number of the last record, 0 for an empty log.
    fn last_seq(&self) -> Result<Seq, StoreError>;

    /// Reads the log from `from` (inclusive) in order, checking that it has no gaps.
    /// Reading from before a truncation point yields [`StoreError::Truncated`]; after an
    /// error the iterator ends.
    fn read_log(&self, from: Seq) -> LogRecords<'_>;

    /// Reads the log like [`EventLog::read_log`] for rebuilding the state: event bodies,
    /// which applying never needs, may be left empty (they are not read back).
    fn replay_log(&self, from: Seq) -> LogRecords<'_> {
        self.read_log(from)
    }

    /// Encodes a snapshot of the state as of record `seq`, not yet current: the caller
    /// encodes where it owns the state and installs (the slow, syncing part) elsewhere. A
    /// `seq` ahead of the log or behind its truncation point is [`StoreError::Invalid`].
    fn write_snapshot(&self, seq: Seq, state: &State) -> Result<SnapshotDraft, StoreError>;

    /// Makes a written snapshot durable and current.
    fn install_snapshot(&self, draft: SnapshotDraft) -> Result<(), StoreError>;

    /// Writes and installs a snapshot of the state as of record `seq`.
    fn save_snapshot(&self, seq: Seq, state: &State) -> Result<(), StoreError> {
        let draft = self.write_snapshot(seq, state)?;
        self.install_snapshot(draft)
    }

    /// The latest snapshot and the sequence it covers, if any.
    fn load_snapshot(&self) -> Result<Option<(Seq, State)>, StoreError>;

    /// Removes log records up to and including `through`, but never past the latest
    /// snapshot (the records after it are what rebuilds the state), `when` says. Returns
    /// how many records this call removed (none with [`Truncation::WithAppends`]).
    fn truncate(&self, through: Seq, when: Truncation) -> Result<u64, StoreError>;
}

/// The read model: delivery history and payloads, derived from the log (it can be rebuilt
/// by replaying it) and written in the same atomic step as the record that caused it where
/// the backend allows.
pub trait ReadModel: Send + Sync + 'static {
    /// The body of an event (the exact bytes every attempt sends), stored once per event.
    fn payload(&self, account: &AccountId, event: &EventId)
        -> Result<Option<Arc<str>>, StoreError>;

    /// One delivery with all its attempts, if it belongs to `webhook`.
    fn delivery(
        &self,
        webhook: &WebhookId,
        delivery: &DeliveryId,
    ) -> Result<Option<DeliveryRecord>, StoreError>;

    /// A webhook's deliveries, newest first, `limit` at a time; `cursor` is the previous
    /// page's `next_cursor`.
    fn deliveries(
        &self,
        webhook: &WebhookId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, StoreError> {
        self.deliveries_where(webhook, &DeliveryFilter::default(), limit, cursor)
    }

    /// A webhook's deliveries that pass `filter`, newest first, at most `limit` at a time;
    /// `cursor` is the previous page's `next_cursor`. A backend may stop a page early after
    /// examining many deliveries that do not pass (so one page never reads a whole history);
    /// the page then holds fewer than `limit`, possibly none, and `next_cursor` goes on from
    /// where it stopped. `next_cursor` is `None` only when nothing further passes.
    fn deliveries_where(
        &self,
        webhook: &WebhookId,
        filter: &DeliveryFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, StoreError>;

    /// What an earlier publish of an event id answered, for idempotency: every id published
    /// since the last [`ReadModel::prune`], written in the append that logs its publish
    /// (memory keeps only the last seconds of them, `Policy::idempotency_memory`).
    fn published(&self, key: &IdempotencyKey) -> Result<Option<Published>, StoreError>;

    /// Up to `limit` of the ids [`ReadModel::published`] knows, in the order of their bytes
    /// ([`IdempotencyKey::to_bytes`]) after `after`, each with when it was published: what the
    /// runtime's filter in front of `published` is filled from when the engine opens. `None`
    /// from a backend that cannot list them; every publish with an id then reads `published`.
    fn published_ids(
        &self,
        after: Option<[u8; 24]>,
        limit: usize,
    ) -> Result<Option<PublishedIds>, StoreError> {
        let _ = (after, limit);
        Ok(None)
    }

    /// Removes finished deliveries, payloads and published ids from before `before`; returns
    /// how many deliveries went.
    fn prune(&self, before: Timestamp) -> Result<u64, StoreError>;

    /// The spill index: the first `limit` deliveries the domain spilled for `webhook` in spill
    /// `generation` (`Event::DeliveriesSpilled`) and has not loaded or settled since, in
    /// queue order (due time, then id). The index follows the committed log; the runtime
    /// reads it while nothing is being committed.
    fn spilled(
        &self,
        webhook: &WebhookId,
        generation: u32,
        limit: usize,
    ) -> Result<Vec<SpilledDelivery>, StoreError>;

    /// Removes a deleted account's data now rather than with retention: the finished
    /// deliveries of `webhooks`, its published ids, and the bodies of the account's events
    /// that no pending delivery needs (pending ones are left to retention). Returns how many
    /// deliveries went.
    fn purge_account(&self, account: &AccountId, webhooks: &[WebhookId])
        -> Result<u64, StoreError>;
}

/// Published ids as [`ReadModel::published_ids`] lists them: each key's bytes
/// ([`IdempotencyKey::to_bytes`]) and when it was published.
pub type PublishedIds = Vec<([u8; 24], Timestamp)>;

/// A backend: an event log and its read model. The runtime holds an `Arc<dyn EventStore>`.
pub trait EventStore: EventLog + ReadModel {}

impl<T: EventLog + ReadModel> EventStore for T {}
