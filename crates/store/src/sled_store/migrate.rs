//! Moves data from earlier on-disk layouts: bodies kept inline in sled to body segments
//! ([`old_payloads`]), and delivery history from the first layout (a record per delivery in `history`,
//! an id index, a time entry per delivery) to buckets and history chunks.
//!
//! It runs when a store opens and finds the old `history` tree. The new trees are cleared
//! and written from the old records, then the old trees are dropped, `history` last: a crash
//! part-way leaves `history` in place, and the next open starts the move again.

use super::bodies::BodyFiles;
use super::keys;
use super::projection::{
    body_ref_writes, count_of, load_bucket, sort_chunk, Bucket, Chunk, PayloadRecord, PayloadRef,
    Stored, TimeChunk,
};
use super::{put_or_remove, tx_error, Trees};
use crate::codec;
use crate::history::DeliveryRecord;
use crate::{Seq, StoreError};
use hallway_domain::WebhookId;
use sled::transaction::{ConflictableTransactionResult, Transactional};
use sled::IVec;
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;

/// Most entries of one migrated history chunk, unless a webhook has more deliveries than
/// the log has sequence numbers to give its chunks.
const CHUNK_ENTRIES: usize = 256;

/// Records held before their buckets are written.
const PENDING_RECORDS: usize = 16 * 1024;

/// Whether the database has a tree of that name (opening one would create it).
fn has_tree(db: &sled::Db, name: &str) -> bool {
    db.tree_names()
        .iter()
        .any(|n| n.as_ref() == name.as_bytes())
}

/// Migrates if the old layout is there; returns how many delivery records moved.
pub(crate) fn old_history(db: &sled::Db, trees: &Trees, last_seq: Seq) -> Result<u64, StoreError> {
    if !has_tree(db, keys::OLD_HISTORY) {
        // A move that dropped `history` and then stopped may have left the indexes.
        for name in keys::OLD_INDEXES {
            if has_tree(db, name) {
                db.drop_tree(name)?;
            }
        }
        return Ok(0);
    }
    let old = db.open_tree(keys::OLD_HISTORY)?;
    trees.history.clear()?;
    trees.deliveries.clear()?;
    // Time entries go to the previous by-time layout, which `old_times` then moves on.
    let old_times = db.open_tree(keys::OLD_BY_TIME)?;
    old_times.clear()?;
    let mut moved = 0u64;
    let mut pending: HashMap<Vec<u8>, Bucket> = HashMap::new();
    let mut webhook: Option<WebhookId> = None;
    let mut records: Vec<DeliveryRecord> = Vec::new();
    // The old keys start with the webhook, so each webhook's records come together.
    for item in old.iter() {
        let (key, value) = item?;
        let record: DeliveryRecord = codec::decode(
            keys::OLD_HISTORY,
            || String::from_utf8_lossy(&key).into_owned(),
            &value,
        )?;
        if webhook.as_ref() != Some(&record.webhook_id) {
            moved += move_webhook(
                trees,
                &old_times,
                &mut pending,
                std::mem::take(&mut records),
                last_seq,
            )?;
            webhook = Some(record.webhook_id.clone());
        }
        records.push(record);
    }
    moved += move_webhook(trees, &old_times, &mut pending, records, last_seq)?;
    write_buckets(trees, &mut pending)?;
    db.flush()?;
    for name in keys::OLD_INDEXES {
        if has_tree(db, name) {
            db.drop_tree(name)?;
        }
    }
    db.drop_tree(keys::OLD_HISTORY)?;
    db.flush()?;
    Ok(moved)
}

/// Lists one webhook's records in chunks (the oldest in chunk 1) and queues their buckets.
fn move_webhook(
    trees: &Trees,
    old_times: &sled::Tree,
    pending: &mut HashMap<Vec<u8>, Bucket>,
    mut records: Vec<DeliveryRecord>,
    last_seq: Seq,
) -> Result<u64, StoreError> {
    let Some(first) = records.first() else {
        return Ok(0);
    };
    let webhook = first.webhook_id.clone();
    let n = records.len();
    // Chunk numbers must be real, past sequence numbers: those never get a chunk of their
    // own any more, and pages walk chunks newest (highest) first.
    let size = CHUNK_ENTRIES.max(n.div_ceil(last_seq.max(1) as usize));
    records.sort_unstable_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| a.id.cmp(&b.id))
    });
    let mut batch = sled::Batch::default();
    let mut time_batch = sled::Batch::default();
    for (i, part) in records.rchunks(size).enumerate() {
        let seq = i as Seq + 1;
        let mut chunk: Chunk = part.iter().map(|r| (r.created_at, r.id.clone())).collect();
        sort_chunk(&mut chunk);
        batch.insert(keys::history_key(&webhook, seq), codec::encode(&chunk)?);
        for r in part {
            let bucket = keys::bucket_key(&r.id).to_vec();
            time_batch.insert(keys::time_key(r.created_at, &bucket), &codec::marker()[..]);
            pending.entry(bucket).or_default().push(Stored {
                record: r.clone(),
                listed: seq,
            });
        }
    }
    trees.history.apply_batch(batch)?;
    old_times.apply_batch(time_batch)?;
    if pending.values().map(Vec::len).sum::<usize>() > PENDING_RECORDS {
        write_buckets(trees, pending)?;
    }
    Ok(n as u64)
}

/// Writes queued records into their buckets, adding to what an earlier write put there.
fn write_buckets(trees: &Trees, pending: &mut HashMap<Vec<u8>, Bucket>) -> Result<(), StoreError> {
    let mut batch = sled::Batch::default();
    for (key, records) in pending.drain() {
        let mut bucket = load_bucket(trees, &key)?;
        bucket.extend(records);
        batch.insert(key, codec::encode(&bucket)?);
    }
    trees.deliveries.apply_batch(batch)?;
    Ok(())
}

/// Legacy bodies moved per transaction.
const PAYLOAD_CHUNK: usize = 256;

/// Moves bodies kept inline in the `payloads` tree (every layout before body segments) to
/// body segments. Each chunk's bodies are written, durably, first; then one transaction adds
/// their references and counts and removes the old records. A crash part-way leaves every
/// body in exactly one place, and the next open goes on. Returns how many bodies moved.
pub(crate) fn old_payloads(
    db: &sled::Db,
    trees: &Trees,
    bodies: &BodyFiles,
    counts: &mut BTreeMap<u64, u64>,
) -> Result<u64, StoreError> {
    if !has_tree(db, keys::OLD_PAYLOADS) {
        return Ok(0);
    }
    let old = db.open_tree(keys::OLD_PAYLOADS)?;
    let mut moved = 0u64;
    loop {
        let mut chunk = Vec::with_capacity(PAYLOAD_CHUNK);
        for item in old.iter().take(PAYLOAD_CHUNK) {
            let (key, value) = item?;
            let record: PayloadRecord =
                codec::decode(keys::OLD_PAYLOADS, || keys::show_payload_key(&key), &value)?;
            chunk.push((key, record));
        }
        if chunk.is_empty() {
            break;
        }
        let texts: Vec<&str> = chunk.iter().map(|(_, r)| r.body.as_str()).collect();
        let places = bodies.write(&texts)?;
        let mut changed: BTreeMap<u64, u64> = BTreeMap::new();
        let mut refs = Vec::with_capacity(chunk.len());
        for ((key, record), at) in chunk.into_iter().zip(places) {
            *count_of(&mut changed, counts, at.segment) += 1;
            let payload = PayloadRef {
                created_at: record.created_at,
                deliveries: record.deliveries,
                body: at,
            };
            refs.push((key, IVec::from(codec::encode(&payload)?)));
        }
        let meta_writes = body_ref_writes(&changed)?;
        (&old, &trees.payloads, &trees.meta)
            .transaction(
                |(old, new, meta)| -> ConflictableTransactionResult<(), Infallible> {
                    for (k, v) in &refs {
                        new.insert(k.clone(), v.clone())?;
                        old.remove(k.clone())?;
                    }
                    for (k, v) in &meta_writes {
                        put_or_remove(meta, k, v)?;
                    }
                    Ok(())
                },
            )
            .map_err(tx_error)?;
        counts.extend(changed);
        moved += refs.len() as u64;
    }
    db.drop_tree(keys::OLD_PAYLOADS)?;
    Ok(moved)
}

/// Old by-time entries per chunk when they are moved.
const TIME_CHUNK_ENTRIES: usize = 256;

/// Moves by-time entries from one key per bucket (`bucket_times`) to one chunk per append
/// (`bucket_time_chunks`). The new tree is cleared and written whole from the old one, then
/// the old one is dropped: an interrupted move starts again. Moved chunks are numbered from 0,
/// below every sequence an append will use. Returns how many entries moved.
pub(crate) fn old_times(db: &sled::Db, trees: &Trees) -> Result<u64, StoreError> {
    if !has_tree(db, keys::OLD_BY_TIME) {
        return Ok(0);
    }
    let old = db.open_tree(keys::OLD_BY_TIME)?;
    trees.by_time.clear()?;
    let mut batch = sled::Batch::default();
    let mut chunk = TimeChunk::new();
    let mut chunks = 0u64;
    let mut moved = 0u64;
    let mut put = |chunk: &mut TimeChunk, batch: &mut sled::Batch| -> Result<(), StoreError> {
        if let Some((earliest, _)) = chunk.first() {
            batch.insert(
                &keys::time_chunk_key(*earliest, chunks)[..],
                codec::encode(&*chunk)?,
            );
            chunks += 1;
            chunk.clear();
        }
        Ok(())
    };
    // In key order, so oldest first: each chunk's first entry is its earliest.
    for item in old.iter() {
        let (key, value) = item?;
        codec::check_marker(keys::OLD_BY_TIME, || keys::show_time_key(&key), &value)?;
        let Some((at, bucket)) = keys::parse_time_key(&key) else {
            return Err(StoreError::Corrupt {
                tree: keys::OLD_BY_TIME,
                key: keys::show_time_key(&key),
                reason: "not a time key".into(),
            });
        };
        chunk.push((at, bucket.as_bytes().to_vec()));
        moved += 1;
        if chunk.len() == TIME_CHUNK_ENTRIES {
            put(&mut chunk, &mut batch)?;
        }
    }
    put(&mut chunk, &mut batch)?;
    trees.by_time.apply_batch(batch)?;
    db.drop_tree(keys::OLD_BY_TIME)?;
    Ok(moved)
}
