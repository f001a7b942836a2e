//! The durable event log of hallway-webhooks on sled.
//!
//! The log is the source of truth: one record per committed batch of events, keyed by a
//! big-endian sequence number. Snapshots of the domain state let startup skip most of it;
//! projections (delivery history by webhook, event payloads stored once per event, their
//! bodies in append-only segment files) are updated in the same atomic batch as the log
//! record they derive from.
//!
//! Durability: [`EventStore::append`] writes a record (and its projection updates)
//! atomically but not durably; [`EventStore::flush`] makes every record appended before it
//! durable. The runtime appends each actor batch, flushes once, and only then answers its
//! callers (group commit). Concurrent `flush` calls share one fsync.
//!
//! Startup, as the runtime does it:
//!
//! ```no_run
//! use hallway_domain::{Policy, State};
//! use hallway_store::{EventStore, SledStore, StoreError};
//!
//! # fn main() -> Result<(), StoreError> {
//! let store = SledStore::open(std::path::Path::new("./hallway-data"))?;
//! let (from, mut state) = match store.load_snapshot()? {
//!     Some((seq, state)) => (seq + 1, state),
//!     None => (1, State::new(Policy::default())),
//! };
//! for record in store.read_log(from) {
//!     let (_seq, events) = record?; // a gap or a corrupt record stops startup, loudly
//!     for e in &events {
//!         state.apply(e);
//!     }
//! }
//! // Then: append each batch, flush, answer; every N batches save_snapshot(seq, &state)
//! // and truncate_log(seq); now and then prune(now - retention).
//! # Ok(()) }
//! ```
//!
//! Records are versioned and checksummed ([`codec`]); a damaged one is
//! [`StoreError::Corrupt`] naming its tree and key. Retention ([`EventStore::prune`]) removes
//! finished deliveries and unneeded bodies older than its cut-off; with snapshots and
//! truncation, disk use stays bounded under steady load.
#![deny(missing_docs)]

pub mod codec;
mod history;
mod sled_store;

pub use history::{AttemptRecord, DeliveryRecord, DeliveryStatus, Page};
pub use sled_store::{SledStore, StoreOptions, LEGACY_SNAPSHOT_FILE, SNAPSHOT_FILE};

use hallway_domain::{AccountId, DeliveryId, Event, EventId, State, Timestamp, WebhookId};
use std::sync::Arc;

/// A position in the log: the sequence number of one committed batch, from 1.
pub type Seq = u64;

/// A snapshot written by [`EventStore::write_snapshot`] and not yet installed.
#[derive(Debug)]
pub struct SnapshotDraft {
    /// The record the snapshot covers.
    pub seq: Seq,
    /// Where the backend wrote it.
    pub path: std::path::PathBuf,
}

/// The log read in order: each committed batch with its sequence number, or the error
/// that ended the read.
pub type LogRecords<'a> = Box<dyn Iterator<Item = Result<(Seq, Vec<Event>), StoreError>> + 'a>;

/// What went wrong in the store. Corruption names the tree and key; nothing is skipped silently.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// sled reported an I/O or internal error.
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    /// A record could not be decoded (corrupt bytes or an unknown format version).
    #[error("corrupt record in tree {tree:?} at key {key}: {reason}")]
    Corrupt {
        /// The sled tree.
        tree: &'static str,
        /// The key, printed readably (a sequence number or an id).
        key: String,
        /// What the decoder said.
        reason: String,
    },
    /// The log has a hole: a record is missing between two others.
    #[error("log gap: expected sequence {expected}, found {found}")]
    Gap {
        /// The sequence that should come next.
        expected: Seq,
        /// The one found instead.
        found: Seq,
    },
    /// Another process has the data directory open.
    #[error("data directory {path} is in use by another process")]
    Locked {
        /// The directory.
        path: String,
    },
    /// The log was truncated (after a snapshot) past the requested start.
    #[error("log truncated: asked from sequence {from}, the first kept is {first_kept}")]
    Truncated {
        /// The sequence asked for.
        from: Seq,
        /// The first sequence still in the log.
        first_kept: Seq,
    },
    /// The caller passed something the store cannot use (a malformed paging cursor, a
    /// snapshot ahead of the log).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Encoding a value failed (a bug: every domain value is encodable).
    #[error("encoding failed: {0}")]
    Encode(String),
}

/// The storage the runtime uses. A second backend (a distributed database) can implement it.
pub trait EventStore: Send + Sync + 'static {
    /// Appends one batch of events as the next log record, with its projection updates,
    /// atomically. Not durable until [`EventStore::flush`] returns. Returns its sequence number.
    fn append(&self, events: &[Event]) -> Result<Seq, StoreError>;

    /// Makes every record appended so far durable.
    fn flush(&self) -> Result<(), StoreError>;

    /// The sequence number of the last record, 0 for an empty log.
    fn last_seq(&self) -> Result<Seq, StoreError>;

    /// Reads the log from `from` (inclusive) in order, checking that it has no gaps.
    /// Reading from before a truncation point yields [`StoreError::Truncated`]; after an
    /// error the iterator ends.
    fn read_log(&self, from: Seq) -> LogRecords<'_>;

    /// Reads the log like [`EventStore::read_log`] for rebuilding the state: event bodies,
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
    /// snapshot (the records after it are what rebuilds the state). Returns how many went.
    fn truncate_log(&self, through: Seq) -> Result<u64, StoreError>;

    /// Asks for the log records up to and including `through` (never past the latest
    /// snapshot) to go a few at a time, inside the appends that follow, instead of all at
    /// once beside them. A read of those records while appends remove them may end in a
    /// `Gap`; reads from after the snapshot (what startup replays) are never affected.
    fn truncate_log_later(&self, through: Seq) -> Result<(), StoreError> {
        self.truncate_log(through).map(|_| ())
    }

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
    ) -> Result<Page, StoreError>;

    /// Removes finished deliveries and payloads created before `before`; returns how many
    /// deliveries went.
    fn prune(&self, before: Timestamp) -> Result<u64, StoreError>;

    /// Bytes the store takes on disk.
    fn size_on_disk(&self) -> Result<u64, StoreError>;
}
