//! The sled 0.34 implementation of [`EventStore`].
//!
//! Trees (see [`keys`] for their layouts): `log`, `meta`, `payload_refs`, `history_chunks`,
//! `deliveries`, `bucket_time_chunks`; event bodies are in segment files beside them (`bodies`).
//! An append writes its bodies (durably) first, then its log record and every projection
//! update in one sled transaction over the data trees and `meta`, so a crash leaves all of
//! them or none, and nothing committed points at a body that is not on disk.
//! One mutex serialises writers (append, snapshot, truncation, pruning): sequence numbers
//! are handed out under it, and projection records are read outside the transaction
//! because nothing else can change them meanwhile.

mod bodies;
mod keys;
mod migrate;
mod projection;

use crate::codec;
use crate::history::{DeliveryRecord, DeliveryStatus, Page};
use crate::{EventStore, LogRecords, Seq, SnapshotDraft, StoreError};
use bodies::BodyFiles;
use hallway_domain::{
    AccountId, DeliveryId, Event, EventId, FromSnapshot, SnapshotForm, State, Timestamp, WebhookId,
};
use projection::{
    body_ref_writes, count_of, load_bucket, load_delivery, load_payload_ref, Bucket, BucketCache,
    Chunk, PayloadRef, Projection, Stored, TimeChunk, BUCKET_CACHE_MAX,
};
use sled::transaction::{ConflictableTransactionResult, TransactionError, Transactional};
use sled::IVec;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::convert::Infallible;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Log records an eager truncation removes per step, each step under the writer lock once.
const TRUNCATE_CHUNK: u64 = 256;

/// Log records an append removes, at most, when a truncation was asked for later: the log
/// gains one record per append, so this catches up within an eighth of the appends between
/// two snapshots, and costs each append only a few removals.
const APPEND_TRUNCATE: u64 = 8;

/// Expired deliveries examined per transaction when pruning; appends wait at most one chunk.
const PRUNE_CHUNK: usize = 1024;

/// How a [`SledStore`] is opened.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// The size of sled's page cache, in bytes.
    pub cache_capacity_bytes: u64,
    /// Remove the data when the store is dropped (tests and benchmarks).
    pub temporary: bool,
    /// How long to retry while the directory is locked before answering
    /// [`StoreError::Locked`]. A store dropped in this process may keep its lock for a
    /// moment (sled finishes background writes after the drop; we measured up to a
    /// quarter of a millisecond), which a reopen must not mistake for another process.
    pub lock_wait: Duration,
    /// Event bodies go to a new segment file once the current one is this long.
    pub body_segment_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            // The log is write-only and history is read back soon after it is written, so a
            // modest cache serves the hot set; sled overshoots its budget, so keep it small.
            cache_capacity_bytes: 32 * 1024 * 1024,
            temporary: false,
            lock_wait: Duration::from_millis(250),
            // Retention deletes a segment once its last body goes: small enough that
            // little is kept for long, large enough that files stay few.
            body_segment_bytes: 64 * 1024 * 1024,
        }
    }
}

/// The sled trees, opened once.
pub(crate) struct Trees {
    log: sled::Tree,
    meta: sled::Tree,
    payloads: sled::Tree,
    history: sled::Tree,
    deliveries: sled::Tree,
    by_time: sled::Tree,
}

/// The file sled 0.34 keeps its log and pages in, inside the store's directory.
const SLED_DATA_FILE: &str = "db";

/// The latest snapshot of the state, in the store's directory, in the state's snapshot form
/// (`hallway_domain::SnapshotForm`).
pub const SNAPSHOT_FILE: &str = "hallway-state";

/// The snapshot file of earlier layouts, the state's full encoding: read if there is no
/// [`SNAPSHOT_FILE`], and removed once one is installed.
pub const LEGACY_SNAPSHOT_FILE: &str = "hallway-snapshot";

/// What only writers change, guarded by one mutex.
struct Writer {
    /// The sequence the next append gets.
    next_seq: Seq,
    /// The latest snapshot's sequence, 0 without one.
    snapshot_seq: Seq,
    /// The last sequence truncation removed, 0 if none.
    truncated_through: Seq,
    /// The sequence appends truncate toward, a few records each (`truncate_log_later`).
    truncate_target: Seq,
    /// How many payload references point into each body segment, as committed.
    body_refs: BTreeMap<u64, u64>,
    /// Segments nothing refers to any more, with the write (a value of `written`) that
    /// dropped their last reference: deleted once a flush has made that write durable.
    doomed: Vec<(u64, u64)>,
}

/// An [`EventStore`] in a sled database: one data directory, one process at a time.
pub struct SledStore {
    db: sled::Db,
    trees: Trees,
    writer: Mutex<Writer>,
    /// Counts committed writes; bumped after each commit is visible in sled.
    written: AtomicU64,
    /// The value of `written` the last finished flush covered. Flushers queue on this lock,
    /// and one that finds its writes covered returns at once: that is the group commit.
    durable: Mutex<u64>,
    /// Buckets with a pending delivery, as committed (taken after `writer`, never before).
    buckets: Mutex<BucketCache>,
    /// The event bodies, in segment files beside sled's.
    bodies: Arc<BodyFiles>,
    /// sled's data file, synced by `flush` (absent for temporary stores).
    data_file: Option<std::fs::File>,
    path: PathBuf,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.path)
            .finish()
    }
}

fn tx_error(e: TransactionError<Infallible>) -> StoreError {
    match e {
        TransactionError::Storage(e) => StoreError::Sled(e),
        TransactionError::Abort(never) => match never {},
    }
}

/// Recovers a guard from a poisoned mutex. Writers update the guarded numbers only after
/// their sled write has committed, with nothing that can panic in between, so the numbers
/// are consistent even if a writer panicked.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The body segments' reference counts as `meta` holds them.
fn read_body_refs(meta: &sled::Tree) -> Result<BTreeMap<u64, u64>, StoreError> {
    let mut counts = BTreeMap::new();
    for item in meta.scan_prefix(keys::META_BODY_REFS) {
        let (key, value) = item?;
        let show = || keys::show_text(&key);
        let segment = keys::parse_body_refs_key(&key).ok_or_else(|| StoreError::Corrupt {
            tree: keys::META,
            key: show(),
            reason: "not a body segment's count".into(),
        })?;
        counts.insert(segment, codec::decode::<u64>(keys::META, show, &value)?);
    }
    Ok(counts)
}

fn read_u64(tree: &sled::Tree, name: &'static str, key: &[u8]) -> Result<u64, StoreError> {
    match tree.get(key)? {
        Some(bytes) => codec::decode(name, || keys::show_text(key), &bytes),
        None => Ok(0),
    }
}

impl SledStore {
    /// Opens (creating if needed) the store in `dir` with default options.
    ///
    /// Fails with [`StoreError::Locked`] within [`StoreOptions::lock_wait`] if another
    /// process (or another open store in this one) holds the directory.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        Self::open_with(dir, &StoreOptions::default())
    }

    /// Opens (creating if needed) the store in `dir`.
    pub fn open_with(dir: &Path, options: &StoreOptions) -> Result<SledStore, StoreError> {
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(options.cache_capacity_bytes)
            .temporary(options.temporary);
        let give_up = Instant::now() + options.lock_wait;
        let db = loop {
            match config.open().map_err(|e| map_open_error(e, dir)) {
                Err(StoreError::Locked { .. }) if Instant::now() < give_up => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                other => break other?,
            }
        };
        let trees = Trees {
            log: db.open_tree(keys::LOG)?,
            meta: db.open_tree(keys::META)?,
            payloads: db.open_tree(keys::PAYLOADS)?,
            history: db.open_tree(keys::HISTORY)?,
            deliveries: db.open_tree(keys::DELIVERIES)?,
            by_time: db.open_tree(keys::BY_TIME)?,
        };
        let snapshot_seq = read_u64(&trees.meta, keys::META, keys::META_SNAPSHOT_SEQ)?;
        let truncated_through = read_u64(&trees.meta, keys::META, keys::META_TRUNCATED_THROUGH)?;
        let last_logged = match trees.log.last()? {
            Some((key, _)) => keys::parse_seq(&key).ok_or_else(|| StoreError::Corrupt {
                tree: keys::LOG,
                key: keys::show_seq(&key),
                reason: "a log key must be 8 bytes".into(),
            })?,
            None => 0,
        };
        // After truncating everything up to the snapshot the log can be empty; numbering
        // must still go on from where it was.
        let last = last_logged.max(snapshot_seq).max(truncated_through);
        // A data directory of the first layout is moved to the current one, once.
        migrate::old_history(&db, &trees, last)?;
        migrate::old_times(&db, &trees)?;
        let mut body_refs = read_body_refs(&trees.meta)?;
        let bodies = BodyFiles::open(
            dir,
            &body_refs,
            !options.temporary,
            options.body_segment_bytes,
        )?;
        // Bodies kept inline in sled (the layouts before segments) move to segments, once.
        migrate::old_payloads(&db, &trees, &bodies, &mut body_refs)?;
        // Snapshots written but never installed (a crash in between) are of no use.
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                let snapshot =
                    name.starts_with(SNAPSHOT_FILE) || name.starts_with(LEGACY_SNAPSHOT_FILE);
                if snapshot && name.ends_with(".tmp") {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(SledStore {
            db,
            trees,
            writer: Mutex::new(Writer {
                next_seq: last + 1,
                snapshot_seq,
                truncated_through,
                // A truncation asked for before a restart (or cut short by a crash) goes on:
                // everything before a durable snapshot may go, and nothing after it.
                truncate_target: snapshot_seq,
                body_refs,
                doomed: Vec::new(),
            }),
            bodies: Arc::new(bodies),
            written: AtomicU64::new(0),
            durable: Mutex::new(0),
            buckets: Mutex::new(BucketCache::new()),
            data_file: if options.temporary {
                None
            } else {
                Some(
                    std::fs::File::open(dir.join(SLED_DATA_FILE))
                        .map_err(|e| StoreError::Sled(sled::Error::Io(e)))?,
                )
            },
            path: dir.to_path_buf(),
        })
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many entries each tree holds, by tree name (for tests and operations). Each
    /// count is a full scan of its tree: not for hot paths.
    pub fn tree_lens(&self) -> Vec<(&'static str, usize)> {
        let t = &self.trees;
        vec![
            (keys::LOG, t.log.len()),
            (keys::META, t.meta.len()),
            (keys::PAYLOADS, t.payloads.len()),
            (keys::HISTORY, t.history.len()),
            (keys::DELIVERIES, t.deliveries.len()),
            (keys::BY_TIME, t.by_time.len()),
        ]
    }

    /// Checks that the delivery projections agree with each other: every listed delivery
    /// has its record, every record is listed and has its by-time entry, and every by-time
    /// entry has a record created at its time; every body reads back whole and each body
    /// segment's count is its references. Returns how many delivery records there are.
    /// A full scan of the trees and bodies: for tests and operations, not for hot paths.
    pub fn check_projections(&self) -> Result<usize, StoreError> {
        let t = &self.trees;
        let writer = lock(&self.writer);
        let damage = |tree: &'static str, key: String, reason: String| StoreError::Corrupt {
            tree,
            key,
            reason,
        };
        let mut records = 0usize;
        // Every (creation time, bucket) the by-time chunks list, and those records need.
        let mut listed_times: HashSet<(Timestamp, Vec<u8>)> = HashSet::new();
        for item in t.by_time.iter() {
            let (key, value) = item?;
            let chunk: TimeChunk =
                codec::decode(keys::BY_TIME, || keys::show_time_chunk_key(&key), &value)?;
            if chunk.is_empty() {
                return Err(damage(
                    keys::BY_TIME,
                    keys::show_time_chunk_key(&key),
                    "empty chunk".into(),
                ));
            }
            listed_times.extend(chunk);
        }
        let mut time_keys = HashSet::new();
        let mut chunks: HashMap<Vec<u8>, Chunk> = HashMap::new();
        for item in t.deliveries.iter() {
            let (key, value) = item?;
            let bucket: Bucket = codec::decode(keys::DELIVERIES, || keys::show_text(&key), &value)?;
            if bucket.is_empty() {
                return Err(damage(
                    keys::DELIVERIES,
                    keys::show_text(&key),
                    "empty bucket".into(),
                ));
            }
            for stored in &bucket {
                let r = &stored.record;
                records += 1;
                if keys::bucket_key(&r.id) != &key[..] {
                    return Err(damage(
                        keys::DELIVERIES,
                        keys::show_text(&key),
                        format!("holds {}, of another bucket", r.id),
                    ));
                }
                let listed = keys::history_key(&r.webhook_id, stored.listed);
                if !chunks.contains_key(&listed) {
                    let chunk = match t.history.get(&listed)? {
                        Some(bytes) => codec::decode(
                            keys::HISTORY,
                            || keys::show_history_key(&listed),
                            &bytes,
                        )?,
                        None => Chunk::new(),
                    };
                    chunks.insert(listed.clone(), chunk);
                }
                if !chunks[&listed].contains(&(r.created_at, r.id.clone())) {
                    return Err(damage(
                        keys::HISTORY,
                        keys::show_history_key(&listed),
                        format!("does not list {}", r.id),
                    ));
                }
                let timed = (r.created_at, key.to_vec());
                if !listed_times.contains(&timed) {
                    return Err(damage(
                        keys::BY_TIME,
                        keys::show_time_key(&keys::time_key(r.created_at, &key)),
                        "missing for a record".into(),
                    ));
                }
                time_keys.insert(timed);
            }
        }
        let mut listed = 0usize;
        for item in t.history.iter() {
            let (key, value) = item?;
            let chunk: Chunk =
                codec::decode(keys::HISTORY, || keys::show_history_key(&key), &value)?;
            listed += chunk.len();
        }
        if listed != records {
            return Err(damage(
                keys::HISTORY,
                String::new(),
                format!("{listed} listed, {records} records"),
            ));
        }
        if listed_times.len() != time_keys.len() {
            return Err(damage(
                keys::BY_TIME,
                String::new(),
                format!("{} entries, {} needed", listed_times.len(), time_keys.len()),
            ));
        }
        // Every body reads back whole, and each segment's count is its references.
        let mut refs: BTreeMap<u64, u64> = BTreeMap::new();
        for item in t.payloads.iter() {
            let (key, value) = item?;
            let payload: PayloadRef =
                codec::decode(keys::PAYLOADS, || keys::show_payload_key(&key), &value)?;
            self.bodies.read(&payload.body)?;
            *refs.entry(payload.body.segment).or_default() += 1;
        }
        let counted = &writer.body_refs;
        let stored = read_body_refs(&t.meta)?;
        if refs != stored || &stored != counted {
            return Err(damage(
                keys::META,
                String::from_utf8_lossy(keys::META_BODY_REFS).into_owned(),
                format!(
                    "body segments referenced {refs:?}, counted {stored:?} (in memory {counted:?})"
                ),
            ));
        }
        Ok(records)
    }

    /// The underlying sled database, for tests that must write around the store (to
    /// simulate corruption, for instance).
    #[doc(hidden)]
    pub fn raw_db(&self) -> &sled::Db {
        &self.db
    }

    /// Counts a committed write and takes the reference counts of body segments it changed.
    /// A segment nothing refers to any more is deleted only after a flush: until the write
    /// that removed its last reference is durable, a crash could bring the references back.
    fn committed(&self, writer: &mut Writer, counts: BTreeMap<u64, u64>) {
        let write = self.written.fetch_add(1, Ordering::AcqRel) + 1;
        for (segment, n) in counts {
            if n == 0 {
                writer.body_refs.remove(&segment);
                writer.doomed.push((write, segment));
            } else {
                writer.body_refs.insert(segment, n);
            }
        }
    }

    fn wrote(&self) {
        self.written.fetch_add(1, Ordering::AcqRel);
    }

    /// One chunk of pruning; returns (deliveries removed, whether more expired entries remain).
    fn prune_chunk(
        &self,
        before: Timestamp,
        resume_after: &mut Option<IVec>,
    ) -> Result<(u64, bool), StoreError> {
        let t = &self.trees;
        let mut writer = lock(&self.writer);
        let end = Bound::Excluded(IVec::from(&before.0.to_be_bytes()[..]));
        let start = match resume_after.take() {
            Some(k) => Bound::Excluded(k),
            None => Bound::Unbounded,
        };
        // Whole by-time chunks (every bucket one append created) whose earliest entry expired,
        // up to about PRUNE_CHUNK entries in all.
        let mut expired: Vec<(IVec, TimeChunk)> = Vec::new();
        let mut entries = 0;
        let mut more = false;
        for item in t.by_time.range::<IVec, _>((start, end)) {
            if entries >= PRUNE_CHUNK {
                more = true;
                break;
            }
            let (key, value) = item?;
            let chunk: TimeChunk =
                codec::decode(keys::BY_TIME, || keys::show_time_chunk_key(&key), &value)?;
            entries += chunk.len();
            expired.push((key, chunk));
        }
        *resume_after = expired.last().map(|(key, _)| key.clone());

        // The buckets this chunk changes, as they will be, and how many records each had.
        let mut buckets: HashMap<Vec<u8>, (Bucket, usize)> = HashMap::new();
        let mut removed: Vec<Stored> = Vec::new();
        let mut time_writes: Vec<(IVec, Option<IVec>)> = Vec::new();
        for (key, chunk) in expired {
            let before_len = chunk.len();
            let mut kept_entries = TimeChunk::new();
            for (at, bucket) in chunk {
                // Not expired yet (a chunk can list times on both sides of the cut-off).
                if at >= before {
                    kept_entries.push((at, bucket));
                    continue;
                }
                let (records, _) = match buckets.entry(bucket.clone()) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        let records = load_bucket(t, e.key())?;
                        let len = records.len();
                        e.insert((records, len))
                    }
                };
                let (gone, kept): (Bucket, Bucket) =
                    std::mem::take(records).into_iter().partition(|s| {
                        s.record.created_at < before && s.record.status != DeliveryStatus::Pending
                    });
                *records = kept;
                removed.extend(gone);
                // The entry stays while a record created at its time is still pending.
                if records.iter().any(|s| s.record.created_at == at) {
                    kept_entries.push((at, bucket));
                }
            }
            if kept_entries.len() != before_len {
                time_writes.push((key, encode_unless_empty(&kept_entries)?));
            }
        }
        let removed_ids: HashSet<&DeliveryId> = removed.iter().map(|s| &s.record.id).collect();
        let payload_keys: HashSet<Vec<u8>> = removed
            .iter()
            .map(|s| keys::payload_key(&s.record.account_id, &s.record.event_id))
            .collect();
        // The history chunks that list removed deliveries, without them.
        let mut delisted: HashMap<Vec<u8>, HashSet<&DeliveryId>> = HashMap::new();
        for s in &removed {
            delisted
                .entry(keys::history_key(&s.record.webhook_id, s.listed))
                .or_default()
                .insert(&s.record.id);
        }
        let mut history_writes: Vec<(IVec, Option<IVec>)> = Vec::new();
        for (key, ids) in delisted {
            let Some(bytes) = t.history.get(&key)? else {
                continue;
            };
            let mut chunk: Chunk =
                codec::decode(keys::HISTORY, || keys::show_history_key(&key), &bytes)?;
            chunk.retain(|(_, id)| !ids.contains(id));
            history_writes.push((IVec::from(key), encode_unless_empty(&chunk)?));
        }

        // A body goes once it is old and none of its deliveries can send it any more.
        let mut payload_removals = Vec::new();
        let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
        for key in payload_keys {
            let Some(payload) = load_payload_ref(&t.payloads, &key)? else {
                continue;
            };
            if payload.created_at >= before {
                continue;
            }
            let mut needed = false;
            for d in &payload.deliveries {
                if removed_ids.contains(d) {
                    continue;
                }
                let pending = match buckets.get(keys::bucket_key(d)) {
                    Some((records, _)) => records
                        .iter()
                        .any(|s| &s.record.id == d && s.record.status == DeliveryStatus::Pending),
                    None => {
                        load_delivery(t, d)?.is_some_and(|r| r.status == DeliveryStatus::Pending)
                    }
                };
                if pending {
                    needed = true;
                    break;
                }
            }
            if !needed {
                payload_removals.push(IVec::from(key));
                let n = count_of(&mut counts, &writer.body_refs, payload.body.segment);
                *n = n.saturating_sub(1);
            }
        }
        let meta_writes = body_ref_writes(&counts)?;

        let mut bucket_writes: Vec<(IVec, Option<IVec>)> = Vec::new();
        for (key, (records, len)) in &buckets {
            if records.len() != *len {
                bucket_writes.push((IVec::from(key.as_slice()), encode_unless_empty(records)?));
            }
        }
        (&t.history, &t.deliveries, &t.by_time, &t.payloads, &t.meta)
            .transaction(
                |(history, deliveries, by_time, payloads, meta)| -> ConflictableTransactionResult<(), Infallible> {
                    for (k, v) in &meta_writes {
                        put_or_remove(meta, k, v)?;
                    }
                    for (k, v) in &history_writes {
                        put_or_remove(history, k, v)?;
                    }
                    for (k, v) in &bucket_writes {
                        put_or_remove(deliveries, k, v)?;
                    }
                    for (k, v) in &time_writes {
                        put_or_remove(by_time, k, v)?;
                    }
                    for k in &payload_removals {
                        payloads.remove_blind(k.clone())?;
                    }
                    Ok(())
                },
            )
            .map_err(tx_error)?;
        // Committed: cached buckets must not bring pruned records back.
        let mut cache = lock(&self.buckets);
        for (key, (records, len)) in buckets {
            if records.len() != len {
                keep_committed(&mut cache, key, records, false);
            }
        }
        drop(cache);
        self.committed(&mut writer, counts);
        Ok((removed.len() as u64, more))
    }
}

/// Puts a bucket as committed back into the cache, or drops it once nothing in it is pending
/// (outcomes are what the cache is for). A bucket not cached yet is added only with
/// `may_add` and while there is room.
fn keep_committed(cache: &mut BucketCache, key: Vec<u8>, records: Bucket, may_add: bool) {
    let pending = records
        .iter()
        .any(|s| s.record.status == DeliveryStatus::Pending);
    if !pending {
        cache.remove(&key);
    } else if cache.contains_key(&key) || (may_add && cache.len() < BUCKET_CACHE_MAX) {
        cache.insert(key, records);
    }
}

/// A list's encoded value, or `None` (remove the key) when it is empty.
fn encode_unless_empty<T: serde::Serialize>(items: &[T]) -> Result<Option<IVec>, StoreError> {
    if items.is_empty() {
        return Ok(None);
    }
    Ok(Some(IVec::from(codec::encode(items)?)))
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

/// sled 0.34 reports a held lock as an I/O error of kind `Other` whose text starts with
/// "could not acquire lock" (config.rs, `try_lock`); that text is the only signal it gives.
fn map_open_error(e: sled::Error, dir: &Path) -> StoreError {
    match &e {
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
            StoreError::Locked {
                path: dir.display().to_string(),
            }
        }
        _ => StoreError::Sled(e),
    }
}

/// The events as the log records them: bodies, which the payloads tree holds (written in the
/// same transaction), are left out, so log records stay small to write, replay and truncate.
/// Only events with a body are copied; the rest are borrowed (serde encodes a `Cow` as what
/// it holds, so the record's bytes are those of a `Vec<Event>`).
fn log_form(events: &[Event]) -> Vec<std::borrow::Cow<'_, Event>> {
    use std::borrow::Cow;
    events
        .iter()
        .map(|e| match e {
            Event::EventPublished {
                account_id,
                event_id,
                event_type,
                project_id,
                body,
                deliveries,
                first_due,
                at,
            } if !body.is_empty() => Cow::Owned(Event::EventPublished {
                account_id: account_id.clone(),
                event_id: event_id.clone(),
                event_type: event_type.clone(),
                project_id: project_id.clone(),
                body: String::new(),
                deliveries: deliveries.clone(),
                first_due: *first_due,
                at: *at,
            }),
            Event::TestDeliveryCreated {
                delivery_id,
                webhook_id,
                account_id,
                event_id,
                body,
                at,
            } if !body.is_empty() => Cow::Owned(Event::TestDeliveryCreated {
                delivery_id: delivery_id.clone(),
                webhook_id: webhook_id.clone(),
                account_id: account_id.clone(),
                event_id: event_id.clone(),
                body: String::new(),
                at: *at,
            }),
            other => Cow::Borrowed(other),
        })
        .collect()
}

/// Reads the log from a sequence, checking that each record is the next one.
struct LogIter {
    inner: Option<sled::Iter>,
    /// Where bodies left out of log records are read back from; `None` leaves them out.
    payloads: Option<(sled::Tree, Arc<BodyFiles>)>,
    expected: Seq,
    /// An error to report before (instead of) anything else.
    first_error: Option<StoreError>,
}

impl Iterator for LogIter {
    type Item = Result<(Seq, Vec<Event>), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.first_error.take() {
            self.inner = None;
            return Some(Err(e));
        }
        let item = self.inner.as_mut()?.next()?;
        let result = self.decode(item);
        // After an error the rest cannot be trusted to follow on: stop.
        if result.is_err() {
            self.inner = None;
        }
        Some(result)
    }
}

impl LogIter {
    /// Puts back a body [`log_form`] left out, from the payload stored with the record (gone
    /// only once retention removed it, when nothing needs it any more).
    fn restore_body(&self, event: &mut Event) -> Result<(), StoreError> {
        let (account_id, event_id, body) = match event {
            Event::EventPublished {
                account_id,
                event_id,
                body,
                deliveries,
                ..
            } if body.is_empty() && !deliveries.is_empty() => (account_id, event_id, body),
            Event::TestDeliveryCreated {
                account_id,
                event_id,
                body,
                ..
            } if body.is_empty() => (account_id, event_id, body),
            _ => return Ok(()),
        };
        let Some((payloads, bodies)) = &self.payloads else {
            return Ok(());
        };
        let key = keys::payload_key(account_id, event_id);
        if let Some(payload) = load_payload_ref(payloads, &key)? {
            *body = bodies.read(&payload.body)?;
        }
        Ok(())
    }

    fn decode(
        &mut self,
        item: sled::Result<(IVec, IVec)>,
    ) -> Result<(Seq, Vec<Event>), StoreError> {
        let (key, value) = item?;
        let seq = keys::parse_seq(&key).ok_or_else(|| StoreError::Corrupt {
            tree: keys::LOG,
            key: keys::show_seq(&key),
            reason: "a log key must be 8 bytes".into(),
        })?;
        if seq != self.expected {
            return Err(StoreError::Gap {
                expected: self.expected,
                found: seq,
            });
        }
        let mut events: Vec<Event> = codec::decode(keys::LOG, || format!("seq {seq}"), &value)?;
        for e in &mut events {
            self.restore_body(e)?;
        }
        self.expected = seq + 1;
        Ok((seq, events))
    }
}

impl SledStore {
    fn log_iter(
        &self,
        from: Seq,
        payloads: Option<(sled::Tree, Arc<BodyFiles>)>,
    ) -> LogRecords<'_> {
        let from = from.max(1);
        let truncated_through = lock(&self.writer).truncated_through;
        if from <= truncated_through {
            return Box::new(LogIter {
                inner: None,
                payloads,
                expected: from,
                first_error: Some(StoreError::Truncated {
                    from,
                    first_kept: truncated_through + 1,
                }),
            });
        }
        Box::new(LogIter {
            payloads,
            inner: Some(self.trees.log.range(keys::seq_key(from)..)),
            expected: from,
            first_error: None,
        })
    }

    fn check_snapshot_seq(&self, writer: &Writer, seq: Seq) -> Result<(), StoreError> {
        let last = writer.next_seq - 1;
        if seq > last {
            return Err(StoreError::Invalid(format!(
                "snapshot at seq {seq} is ahead of the log, which ends at {last}"
            )));
        }
        if seq < writer.truncated_through {
            return Err(StoreError::Invalid(format!(
                "snapshot at seq {seq} is behind the truncated log, which starts after {}",
                writer.truncated_through
            )));
        }
        Ok(())
    }
}

impl EventStore for SledStore {
    fn append(&self, events: &[Event]) -> Result<Seq, StoreError> {
        let logged = log_form(events);
        let record = IVec::from(codec::encode(&logged)?);
        // Check the pair: what is written must read back as what was meant (STYLE rule 10).
        // Decoding costs as much as encoding, so release builds skip it.
        #[cfg(debug_assertions)]
        {
            let back: Vec<Event> = codec::decode(keys::LOG, || "(new record)".into(), &record)?;
            debug_assert!(
                back.iter().eq(logged.iter().map(|e| &**e)),
                "a batch must survive its encoding"
            );
        }
        let t = &self.trees;
        let mut writer = lock(&self.writer);
        let seq = writer.next_seq;
        // Old records a truncation asked for: removed in this append's transaction, where
        // sled's write lock is held anyway, rather than beside it by another thread.
        let cut = writer
            .truncate_target
            .min(writer.snapshot_seq)
            .min(writer.truncated_through + APPEND_TRUNCATE);
        let cut = (cut > writer.truncated_through).then_some(cut);
        let doomed: Vec<IVec> = match cut {
            Some(cut) => (writer.truncated_through + 1..=cut)
                .map(|n| IVec::from(&keys::seq_key(n)[..]))
                .collect(),
            None => Vec::new(),
        };
        let marker = cut.map(|cut| codec::encode(&cut)).transpose()?;
        let mut cache = lock(&self.buckets);
        let mut projection = Projection::new(t, &mut cache, seq);
        for event in events {
            projection.apply(event)?;
        }
        let (mut writes, written) = projection.into_writes(&self.bodies, &writer.body_refs)?;
        let counts = std::mem::take(&mut writes.body_refs);
        let meta_writes = body_ref_writes(&counts)?;
        let log_key = IVec::from(&keys::seq_key(seq)[..]);
        if writes.is_empty() && cut.is_none() {
            // One key in one tree is atomic by itself, and cheaper than a transaction.
            t.log.insert(log_key, record)?;
        } else {
            (&t.log, &t.payloads, &t.history, &t.deliveries, &t.by_time, &t.meta)
                .transaction(
                    |(log, payloads, history, deliveries, by_time, meta)| -> ConflictableTransactionResult<(), Infallible> {
                        log.insert_blind(log_key.clone(), record.clone())?;
                        for k in &doomed {
                            log.remove_blind(k.clone())?;
                        }
                        if let Some(marker) = &marker {
                            meta.insert_blind(keys::META_TRUNCATED_THROUGH, marker.clone())?;
                        }
                        for (k, v) in &meta_writes {
                            put_or_remove(meta, k, v)?;
                        }
                        for (k, v) in &writes.payloads {
                            payloads.insert_blind(k.clone(), v.clone())?;
                        }
                        for (k, v) in &writes.history {
                            history.insert_blind(k.clone(), v.clone())?;
                        }
                        for (k, v) in &writes.deliveries {
                            deliveries.insert_blind(k.clone(), v.clone())?;
                        }
                        for (k, v) in &writes.by_time {
                            by_time.insert_blind(k.clone(), v.clone())?;
                        }
                        Ok(())
                    },
                )
                .map_err(tx_error)?;
        }
        // Committed: the cache follows what the trees now hold.
        for w in written {
            keep_committed(&mut cache, w.key, w.records, true);
        }
        drop(cache);
        writer.next_seq = seq + 1;
        if let Some(cut) = cut {
            writer.truncated_through = cut;
        }
        self.committed(&mut writer, counts);
        Ok(seq)
    }

    fn flush(&self) -> Result<(), StoreError> {
        let target = self.written.load(Ordering::Acquire);
        let mut durable = lock(&self.durable);
        if *durable >= target {
            // Another caller's flush, started after our writes committed, covered them.
            return Ok(());
        }
        // Everything committed before this load is in sled's buffers and this flush takes it.
        let covered = self.written.load(Ordering::Acquire);
        self.db.flush()?;
        // sled writes its log with `sync_file_range`, which syncs neither the file's size nor
        // the drive's write cache; `fdatasync` does both, so an acknowledged append survives a
        // power cut, not only a crash of the process.
        if let Some(file) = &self.data_file {
            file.sync_data()
                .map_err(|e| StoreError::Sled(sled::Error::Io(e)))?;
        }
        *durable = covered;
        drop(durable);
        // Segments whose last reference went in a write this flush made durable. (Lock order:
        // `durable` is released first; writers never take it.)
        let ready: Vec<u64> = {
            let mut writer = lock(&self.writer);
            let (ready, later) = std::mem::take(&mut writer.doomed)
                .into_iter()
                .partition(|(write, _)| *write <= covered);
            writer.doomed = later;
            ready
                .into_iter()
                .map(|(_, segment)| segment)
                .collect::<Vec<_>>()
        };
        for segment in ready {
            // A failed delete leaves a file no count names; the next open deletes it.
            let _ = self.bodies.remove(segment);
        }
        Ok(())
    }

    fn last_seq(&self) -> Result<Seq, StoreError> {
        Ok(lock(&self.writer).next_seq - 1)
    }

    fn read_log(&self, from: Seq) -> LogRecords<'_> {
        self.log_iter(
            from,
            Some((self.trees.payloads.clone(), self.bodies.clone())),
        )
    }

    fn replay_log(&self, from: Seq) -> LogRecords<'_> {
        self.log_iter(from, None)
    }

    fn write_snapshot(&self, seq: Seq, state: &State) -> Result<SnapshotDraft, StoreError> {
        self.check_snapshot_seq(&lock(&self.writer), seq)?;
        // The snapshot is a file next to the trees, streamed without holding it in memory
        // (a large state would double its memory as one encoded value); no lock is held, so
        // appends go on meanwhile.
        let tmp = self.path.join(format!("{SNAPSHOT_FILE}.{seq}.tmp"));
        let io = |e: std::io::Error| StoreError::Encode(format!("{}: {e}", tmp.display()));
        let mut file = std::fs::File::create(&tmp).map_err(io)?;
        codec::encode_to_file(&(seq, SnapshotForm(state)), &mut file)?;
        Ok(SnapshotDraft { seq, path: tmp })
    }

    fn install_snapshot(&self, draft: SnapshotDraft) -> Result<(), StoreError> {
        let tmp = &draft.path;
        let io = |e: std::io::Error| StoreError::Encode(format!("{}: {e}", tmp.display()));
        std::fs::File::open(tmp)
            .and_then(|f| f.sync_all())
            .map_err(io)?;
        if draft.seq < lock(&self.writer).snapshot_seq {
            // A newer snapshot is current already.
            let _ = std::fs::remove_file(tmp);
            return Ok(());
        }
        // Installs are not concurrent (one snapshotter), so no lock is needed while syncing:
        // appends go on.
        std::fs::rename(tmp, self.path.join(SNAPSHOT_FILE)).map_err(io)?;
        if let Ok(dir) = std::fs::File::open(&self.path) {
            // Makes the rename durable; not every platform can sync a directory.
            let _ = dir.sync_all();
        }
        // A snapshot of an earlier layout is older than this one, which opening prefers; a
        // failed removal only leaves it for the next install.
        let _ = std::fs::remove_file(self.path.join(LEGACY_SNAPSHOT_FILE));
        // The sequence in `meta` moves only once the file is durable and in place.
        let mut writer = lock(&self.writer);
        self.check_snapshot_seq(&writer, draft.seq)?;
        // One key is atomic by itself; a batch would take sled's global write lock.
        self.trees
            .meta
            .insert(keys::META_SNAPSHOT_SEQ, codec::encode(&draft.seq)?)?;
        writer.snapshot_seq = draft.seq;
        self.wrote();
        Ok(())
    }

    fn load_snapshot(&self) -> Result<Option<(Seq, State)>, StoreError> {
        let read = |name: &str| {
            let path = self.path.join(name);
            match std::fs::read(&path) {
                Ok(b) => Ok(Some((path, b))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(StoreError::Sled(sled::Error::Io(e))),
            }
        };
        if let Some((path, bytes)) = read(SNAPSHOT_FILE)? {
            let (seq, state): (Seq, FromSnapshot) =
                codec::decode(SNAPSHOT_FILE, || path.display().to_string(), &bytes)?;
            return Ok(Some((seq, state.0)));
        }
        match read(LEGACY_SNAPSHOT_FILE)? {
            Some((path, bytes)) => Ok(Some(codec::decode(
                LEGACY_SNAPSHOT_FILE,
                || path.display().to_string(),
                &bytes,
            )?)),
            None => Ok(None),
        }
    }

    fn truncate_log(&self, through: Seq) -> Result<u64, StoreError> {
        let t = &self.trees;
        let mut removed = 0u64;
        loop {
            // The writer lock is taken per chunk, not across the whole truncation: appends
            // must not wait for old records to be removed (they touch other keys).
            let chunk_end = {
                let mut writer = lock(&self.writer);
                // Records after the snapshot are needed to rebuild the state: keep them
                // whatever `through` says.
                let limit = through.min(writer.snapshot_seq);
                if writer.truncated_through >= limit {
                    break;
                }
                let end = limit.min(writer.truncated_through + TRUNCATE_CHUNK);
                // The marker moves first, with the writer's copy (so an append carrying a
                // later truncation never writes an older marker): from then on the log is
                // the range after it, and records at or below it are garbage that a crash
                // may leave and the next call removes.
                t.meta
                    .insert(keys::META_TRUNCATED_THROUGH, codec::encode(&end)?)?;
                writer.truncated_through = end;
                end
            };
            let mut doomed = Vec::new();
            for key in t.log.range(..=keys::seq_key(chunk_end)).keys() {
                doomed.push(key?);
            }
            // Neither a transaction nor a batch: a transactional remove reads every old value
            // (log records are large) and holds them all until commit, and a batch holds
            // sled's global write lock throughout, stalling every append (so every publish)
            // behind it.
            for k in &doomed {
                t.log.remove(k)?;
            }
            removed += doomed.len() as u64;
            self.wrote();
        }
        Ok(removed)
    }

    fn truncate_log_later(&self, through: Seq) -> Result<(), StoreError> {
        let mut writer = lock(&self.writer);
        writer.truncate_target = writer.truncate_target.max(through);
        Ok(())
    }

    fn payload(
        &self,
        account: &AccountId,
        event: &EventId,
    ) -> Result<Option<Arc<str>>, StoreError> {
        let key = keys::payload_key(account, event);
        let Some(payload) = load_payload_ref(&self.trees.payloads, &key)? else {
            return Ok(None);
        };
        match self.bodies.read(&payload.body) {
            Ok(body) => Ok(Some(Arc::from(body))),
            // Retention may have removed the body (and its segment) since the reference was
            // read: then it is gone, which is no damage.
            Err(e) => match load_payload_ref(&self.trees.payloads, &key)? {
                None => Ok(None),
                Some(_) => Err(e),
            },
        }
    }

    fn delivery(
        &self,
        webhook: &WebhookId,
        delivery: &DeliveryId,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        Ok(load_delivery(&self.trees, delivery)?.filter(|r| &r.webhook_id == webhook))
    }

    fn deliveries(
        &self,
        webhook: &WebhookId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, StoreError> {
        let limit = limit.max(1);
        let prefix = keys::history_prefix(webhook);
        let (start, after) = match cursor {
            Some(c) => {
                let (seq, at, id) = keys::parse_cursor(c)
                    .ok_or_else(|| StoreError::Invalid(format!("not a paging cursor: {c:?}")))?;
                (keys::history_key(webhook, seq), Some((seq, at, id)))
            }
            None => (prefix.clone(), None),
        };
        let mut data: Vec<DeliveryRecord> = Vec::with_capacity(limit.min(1024));
        let mut last_seq = 0;
        let mut more = false;
        'chunks: for item in self.trees.history.range(start..) {
            let (key, value) = item?;
            if !key.starts_with(&prefix) {
                break;
            }
            let show = || keys::show_history_key(&key);
            let Some((_, seq)) = keys::parse_history_key(&key) else {
                return Err(StoreError::Corrupt {
                    tree: keys::HISTORY,
                    key: show(),
                    reason: "not a history key".into(),
                });
            };
            let chunk: Chunk = codec::decode(keys::HISTORY, show, &value)?;
            for (at, id) in chunk {
                if let Some((after_seq, after_at, after_id)) = &after {
                    // Entries up to the cursor's, in page order (newest first, ties by id).
                    if seq == *after_seq && (at > *after_at || (at == *after_at && id <= *after_id))
                    {
                        continue;
                    }
                }
                if data.len() == limit {
                    more = true;
                    break 'chunks;
                }
                // The chunk and the record are written and removed together, so an entry
                // without its record is damage, not a state to tolerate.
                let record =
                    load_delivery(&self.trees, &id)?.ok_or_else(|| StoreError::Corrupt {
                        tree: keys::DELIVERIES,
                        key: keys::show_text(keys::bucket_key(&id)),
                        reason: format!("no record of delivery {id}, though {} lists it", show()),
                    })?;
                data.push(record);
                last_seq = seq;
            }
        }
        let next_cursor = match data.last() {
            Some(last) if more => Some(keys::cursor(last_seq, last.created_at, &last.id)),
            _ => None,
        };
        Ok(Page { data, next_cursor })
    }

    fn prune(&self, before: Timestamp) -> Result<u64, StoreError> {
        let mut removed = 0;
        let mut resume_after = None;
        loop {
            let (n, more) = self.prune_chunk(before, &mut resume_after)?;
            removed += n;
            if !more {
                return Ok(removed);
            }
        }
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        let bodies: u64 = self.bodies.segments()?.values().sum();
        Ok(self.db.size_on_disk()? + bodies)
    }
}
