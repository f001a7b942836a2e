//! The sled 0.34 backend: one data directory, one process at a time.
//!
//! Trees (see [`keys`] for their layouts): `log`, `meta`, `published`, `history_chunks`,
//! `deliveries`, `bucket_time_chunks`, `spilled`; event bodies are in segment files beside
//! them (`bodies`).
//! An append writes its bodies (durably) first, then its log record and every projection
//! update in one sled transaction over the data trees and `meta`, so a crash leaves all of
//! them or none, and nothing committed points at a body that is not on disk.
//! One mutex serialises writers (append, snapshot, truncation, pruning): sequence numbers
//! are handed out under it, and projection records are read outside the transaction
//! because nothing else can change them meanwhile.
//!
//! One module per job: [`open`] (opening, options), [`log`] (append, flush, read),
//! [`truncate`], [`snapshot`], [`retention`], [`reads`] (the read model's queries),
//! [`check`] (the consistency check), beside [`projection`], [`spill`] (the spill index),
//! [`bodies`] and [`keys`].

mod bodies;
mod bucket_cache;
mod check;
mod entries;
mod idempotency;
pub(crate) mod keys;
mod log;
mod open;
mod projection;
mod purge;
mod reads;
mod retention;
mod snapshot;
mod spill;
mod truncate;

pub use open::StoreOptions;
pub use snapshot::SNAPSHOT_FILE;

use crate::history::{DeliveryFilter, DeliveryRecord, Page};
use crate::{
    EventLog, LogRecords, PublishedIds, ReadModel, Seq, SnapshotDraft, StoreError, Truncation,
};
use bodies::BodyFiles;
use bucket_cache::BucketCache;
use hallway_domain::{
    AccountId, DeliveryId, Event, EventId, IdempotencyKey, Published, SpilledDelivery, State,
    Timestamp, WebhookId,
};
use projection::OpenChunks;
use sled::transaction::TransactionError;
use sled::IVec;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The sled trees, opened once.
pub(crate) struct Trees {
    log: sled::Tree,
    meta: sled::Tree,
    history: sled::Tree,
    deliveries: sled::Tree,
    by_time: sled::Tree,
    spilled: sled::Tree,
    published: sled::Tree,
}

/// What only writers change, guarded by one mutex (see [`WriterGuard`]).
struct Writer {
    /// The sequence the next append gets.
    next_seq: Seq,
    /// The latest snapshot's sequence, 0 without one.
    snapshot_seq: Seq,
    /// The last sequence truncation removed, 0 if none.
    truncated_through: Seq,
    /// The sequence appends truncate toward, a few records each ([`Truncation::WithAppends`]).
    truncate_target: Seq,
    /// How many payload references point into each body segment, as committed.
    body_refs: BTreeMap<u64, u64>,
    /// Segments nothing refers to any more, with the write (a value of `written`) that
    /// dropped their last reference: deleted once a flush has made that write durable.
    doomed: Vec<(u64, u64)>,
    /// Each webhook's newest history chunk while it can gather more deliveries.
    open_chunks: OpenChunks,
    /// Each spill generation's last run.
    open_runs: spill::OpenRuns,
}

/// The writer lock, held. Only a holder can take the bucket cache
/// ([`SledStore::buckets`]), so the two are always taken in that order.
struct WriterGuard<'a>(MutexGuard<'a, Writer>);

impl std::ops::Deref for WriterGuard<'_> {
    type Target = Writer;
    fn deref(&self) -> &Writer {
        &self.0
    }
}

impl std::ops::DerefMut for WriterGuard<'_> {
    fn deref_mut(&mut self) -> &mut Writer {
        &mut self.0
    }
}

/// An event log and its read model in a sled database: one data directory, one process at
/// a time.
pub struct SledStore {
    db: sled::Db,
    trees: Trees,
    writer: Mutex<Writer>,
    /// Counts committed writes; bumped after each commit is visible in sled.
    written: AtomicU64,
    /// The value of `written` the last finished flush covered. Flushers queue on this lock,
    /// and one that finds its writes covered returns at once: that is the group commit.
    durable: Mutex<u64>,
    /// Buckets with a pending delivery, as committed (taken only through [`SledStore::buckets`]).
    buckets: Mutex<BucketCache>,
    /// The event bodies, in segment files beside sled's.
    bodies: Arc<BodyFiles>,
    /// sled's data file, synced by `flush` (absent for temporary stores).
    data_file: Option<std::fs::File>,
    path: PathBuf,
}

/// A store dropped with nothing left writing (the engine stopped, its handles gone) leaves
/// sled a recovery snapshot of its page table, so the next open reads only what is logged
/// after it: sled 0.34 otherwise snapshots only when it opens, and reads back everything
/// logged since, which is most of the data file after a long run (`docs/decisions.md`). A
/// snapshot that cannot be written costs nothing but that read; a crash skips it the same.
impl Drop for SledStore {
    fn drop(&mut self) {
        if self.data_file.is_some() {
            let _ = self.db.snapshot_at_rest();
        }
    }
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.path)
            .finish()
    }
}

/// Recovers a guard from a poisoned mutex. Writers update the guarded numbers only after
/// their sled write has committed, with nothing that can panic in between, so the numbers
/// are consistent even if a writer panicked.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Names the operation a sled call was part of, for [`StoreError::Backend`].
trait Op<T> {
    /// The result, with a failure as [`StoreError::Backend`] doing `op`.
    fn op(self, op: &'static str) -> Result<T, StoreError>;
}

impl<T> Op<T> for sled::Result<T> {
    fn op(self, op: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Backend { op, source })
    }
}

impl<T> Op<T> for Result<T, TransactionError<Infallible>> {
    fn op(self, op: &'static str) -> Result<T, StoreError> {
        self.map_err(|e| match e {
            TransactionError::Storage(source) => StoreError::Backend { op, source },
            TransactionError::Abort(never) => match never {},
        })
    }
}

/// A list's encoded value, or `None` (remove the key) when it is empty.
fn encode_unless_empty<T: serde::Serialize>(items: &[T]) -> Result<Option<IVec>, StoreError> {
    if items.is_empty() {
        return Ok(None);
    }
    Ok(Some(IVec::from(crate::codec::encode(items)?)))
}

/// Writes `value` under `key` in a transaction, or removes the key for `None`.
fn put_or_remove(
    tree: &sled::transaction::TransactionalTree,
    key: &IVec,
    value: &Option<IVec>,
) -> Result<(), sled::transaction::UnabortableTransactionError> {
    match value {
        Some(v) => tree.insert_blind(key.clone(), v.clone())?,
        None => tree.remove_blind(key.clone())?,
    };
    Ok(())
}

impl SledStore {
    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes the store takes on disk: sled's files and the body segments.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        let bodies: u64 = self.bodies.segments()?.values().sum();
        Ok(self.db.size_on_disk().op("measure its size")? + bodies)
    }

    /// Pages sled holds a state in memory for, cached or not: what its memory grows with
    /// beyond its cache. A scan of sled's page table.
    pub fn page_count(&self) -> u64 {
        self.db.page_count()
    }

    /// The underlying sled database, for tests that must write around the store (to
    /// simulate corruption, for instance).
    #[doc(hidden)]
    pub fn raw_db(&self) -> &sled::Db {
        &self.db
    }

    /// Delivery records the writer keeps decoded for the outcomes about to arrive (for tests
    /// of what the cache holds).
    #[doc(hidden)]
    pub fn cached_records(&self) -> usize {
        lock(&self.buckets).records()
    }

    /// Takes the writer lock.
    fn writer(&self) -> WriterGuard<'_> {
        WriterGuard(lock(&self.writer))
    }

    /// Takes the bucket cache; the writer guard proves the lock order (writer, then buckets).
    fn buckets(&self, _writer: &WriterGuard<'_>) -> MutexGuard<'_, BucketCache> {
        lock(&self.buckets)
    }

    /// Counts a committed write and takes the reference counts of body segments it changed.
    /// A segment nothing refers to any more is deleted only after a flush: until the write
    /// that removed its last reference is durable, a crash could bring the references back.
    fn committed(&self, writer: &mut WriterGuard<'_>, counts: BTreeMap<u64, u64>) {
        let write = self.wrote();
        for (segment, n) in counts {
            if n == 0 {
                writer.body_refs.remove(&segment);
                writer.doomed.push((write, segment));
            } else {
                writer.body_refs.insert(segment, n);
            }
        }
    }

    /// Counts a committed write, for the next flush to cover; returns its number.
    fn wrote(&self) -> u64 {
        self.written.fetch_add(1, Ordering::AcqRel) + 1
    }
}

impl EventLog for SledStore {
    fn append(&self, events: &[Event]) -> Result<Seq, StoreError> {
        log::append(self, events)
    }

    fn flush(&self) -> Result<(), StoreError> {
        log::flush(self)
    }

    fn last_seq(&self) -> Result<Seq, StoreError> {
        Ok(self.writer().next_seq - 1)
    }

    fn read_log(&self, from: Seq) -> LogRecords<'_> {
        log::read(self, from, true)
    }

    fn replay_log(&self, from: Seq) -> LogRecords<'_> {
        log::read(self, from, false)
    }

    fn write_snapshot(&self, seq: Seq, state: &State) -> Result<SnapshotDraft, StoreError> {
        snapshot::write(self, seq, state)
    }

    fn install_snapshot(&self, draft: SnapshotDraft) -> Result<(), StoreError> {
        snapshot::install(self, draft)
    }

    fn load_snapshot(&self) -> Result<Option<(Seq, State)>, StoreError> {
        snapshot::load(self)
    }

    fn truncate(&self, through: Seq, when: Truncation) -> Result<u64, StoreError> {
        match when {
            Truncation::Now => truncate::now(self, through),
            Truncation::WithAppends => {
                truncate::with_appends(self, through);
                Ok(0)
            }
        }
    }
}

impl ReadModel for SledStore {
    fn payload(
        &self,
        account: &AccountId,
        event: &EventId,
    ) -> Result<Option<Arc<str>>, StoreError> {
        reads::payload(self, account, event)
    }

    fn delivery(
        &self,
        webhook: &WebhookId,
        delivery: &DeliveryId,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        reads::delivery(self, webhook, delivery)
    }

    fn deliveries_where(
        &self,
        webhook: &WebhookId,
        filter: &DeliveryFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, StoreError> {
        reads::deliveries(self, webhook, filter, limit, cursor)
    }

    fn published(&self, key: &IdempotencyKey) -> Result<Option<Published>, StoreError> {
        idempotency::lookup(&self.trees, key)
    }

    fn published_ids(
        &self,
        after: Option<[u8; 24]>,
        limit: usize,
    ) -> Result<Option<PublishedIds>, StoreError> {
        idempotency::list(&self.trees, after, limit).map(Some)
    }

    fn prune(&self, before: Timestamp) -> Result<u64, StoreError> {
        let removed = retention::prune(self, before)?;
        idempotency::prune(self, before)?;
        Ok(removed)
    }

    fn spilled(
        &self,
        webhook: &WebhookId,
        generation: u32,
        limit: usize,
    ) -> Result<Vec<SpilledDelivery>, StoreError> {
        spill::read(self, webhook, generation, limit)
    }

    fn purge_account(
        &self,
        account: &AccountId,
        webhooks: &[WebhookId],
    ) -> Result<u64, StoreError> {
        let removed = purge::purge_account(self, account, webhooks)?;
        idempotency::purge(self, account)?;
        Ok(removed)
    }
}
