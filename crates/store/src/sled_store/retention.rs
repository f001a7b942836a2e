//! Retention: removing finished deliveries, and the payloads none of the rest needs, once
//! they are older than a cut-off.

use super::entries;
use super::projection::{
    body_ref_writes, count_of, load_bucket, load_delivery, load_listing_chunk, Bucket, Chunk,
    Stored, TimeChunk,
};
use super::{encode_unless_empty, keys, put_or_remove, Op, SledStore};
use crate::codec;
use crate::history::DeliveryStatus;
use crate::{Seq, StoreError};
use hallway_domain::{DeliveryId, Timestamp, WebhookId};
use sled::transaction::{ConflictableTransactionResult, Transactional};
use sled::IVec;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::convert::Infallible;
use std::ops::Bound;

/// Expired deliveries examined per transaction when pruning; appends wait at most one chunk.
const PRUNE_CHUNK: usize = 1024;

/// Removes finished deliveries and payloads created before `before`, a chunk per
/// transaction; returns how many deliveries went.
pub(super) fn prune(store: &SledStore, before: Timestamp) -> Result<u64, StoreError> {
    let mut removed = 0;
    let mut resume_after = None;
    loop {
        let (n, more) = prune_chunk(store, before, &mut resume_after)?;
        removed += n;
        if !more {
            return Ok(removed);
        }
    }
}

/// One chunk of pruning; returns (deliveries removed, whether more expired entries remain).
fn prune_chunk(
    store: &SledStore,
    before: Timestamp,
    resume_after: &mut Option<IVec>,
) -> Result<(u64, bool), StoreError> {
    let t = &store.trees;
    let mut writer = store.writer();
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
        let (key, value) = item.op("read the by-time chunks")?;
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
    let payload_keys: HashSet<[u8; 24]> = removed
        .iter()
        .map(|s| keys::entry_key(&s.record.account_id, &s.record.event_id))
        .collect();
    // The history chunks that list removed deliveries, without them. A chunk this rewrites
    // may be a webhook's open one, so none stays open.
    writer.open_chunks.clear();
    let mut delisted: HashMap<(&WebhookId, Seq), HashSet<&DeliveryId>> = HashMap::new();
    for s in &removed {
        delisted
            .entry((&s.record.webhook_id, s.listed))
            .or_default()
            .insert(&s.record.id);
    }
    let mut chunks: HashMap<IVec, Chunk> = HashMap::new();
    for ((webhook, listed), ids) in delisted {
        let Some((key, chunk)) = load_listing_chunk(t, webhook, listed)? else {
            continue;
        };
        chunks
            .entry(key)
            .or_insert(chunk)
            .retain(|(_, id)| !ids.contains(id));
    }
    let mut history_writes: Vec<(IVec, Option<IVec>)> = Vec::new();
    for (key, chunk) in chunks {
        history_writes.push((key, encode_unless_empty(&chunk)?));
    }

    // A body goes once it is old and none of its deliveries can send it any more.
    let mut payload_removals = Vec::new();
    let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
    for key in payload_keys {
        let Some(mut entry) = entries::load(&t.published, &key)? else {
            continue;
        };
        let Some(payload) = entry.payload.take() else {
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
            let pending = match buckets.get(&keys::bucket_key(d)[..]) {
                Some((records, _)) => records
                    .iter()
                    .any(|s| &s.record.id == d && s.record.status == DeliveryStatus::Pending),
                None => load_delivery(t, d)?.is_some_and(|r| r.status == DeliveryStatus::Pending),
            };
            if pending {
                needed = true;
                break;
            }
        }
        if !needed {
            // The entry stays while the idempotency window remembers its publish.
            payload_removals.push((IVec::from(&key[..]), entry.encoded()?));
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
    (&t.history, &t.deliveries, &t.by_time, &t.published, &t.meta)
            .transaction(
                |(history, deliveries, by_time, published, meta)| -> ConflictableTransactionResult<(), Infallible> {
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
                    for (k, v) in &payload_removals {
                        put_or_remove(published, k, v)?;
                    }
                    Ok(())
                },
            )
            .op("prune expired deliveries")?;
    // Committed: cached buckets must not bring pruned records back.
    let mut cache = store.buckets(&writer);
    for (key, (records, len)) in buckets {
        if records.len() != len {
            cache.keep_committed(key, records, false);
        }
    }
    drop(cache);
    store.committed(&mut writer, counts);
    Ok((removed.len() as u64, more))
}
