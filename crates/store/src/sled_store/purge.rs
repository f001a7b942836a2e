//! Purging a deleted account: the history of its webhooks and its events' bodies go at once
//! rather than with retention, a chunk per transaction, so appends wait at most one chunk.
//! Deliveries still pending (an attempt under way when the account went) are left to
//! retention: their outcome is still to be recorded.

use super::entries;
use super::projection::{body_ref_writes, count_of, load_bucket, Chunk, TimeChunk};
use super::{encode_unless_empty, keys, put_or_remove, Op, SledStore};
use crate::codec;
use crate::history::DeliveryStatus;
use crate::Seq;
use crate::StoreError;
use hallway_domain::{AccountId, DeliveryId, Timestamp, WebhookId};
use sled::transaction::{ConflictableTransactionResult, Transactional};
use sled::IVec;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::convert::Infallible;
use std::ops::Bound;

/// History chunks (or payload references) one transaction of a purge handles.
const PURGE_CHUNK: usize = 256;

/// Removes the history of `webhooks` and the bodies of `account`'s events, except what
/// pending deliveries still need; returns how many deliveries went.
pub(super) fn purge_account(
    store: &SledStore,
    account: &AccountId,
    webhooks: &[WebhookId],
) -> Result<u64, StoreError> {
    let mut removed = 0;
    for webhook in webhooks {
        let mut resume_after = None;
        loop {
            let (n, more) = history_chunk(store, webhook, &mut resume_after)?;
            removed += n;
            if !more {
                break;
            }
        }
    }
    let mut resume_after = None;
    while payload_chunk(store, account, &mut resume_after)? {}
    Ok(removed)
}

/// One transaction's worth of a webhook's history: its chunks and their finished records.
fn history_chunk(
    store: &SledStore,
    webhook: &WebhookId,
    resume_after: &mut Option<IVec>,
) -> Result<(u64, bool), StoreError> {
    let t = &store.trees;
    let mut writer = store.writer();
    // Chunks this rewrites may include the webhook's open one.
    writer.open_chunks.remove(webhook);
    let prefix = keys::history_prefix(webhook);
    let start = match resume_after.take() {
        Some(k) => Bound::Excluded(k),
        None => Bound::Included(IVec::from(prefix.clone())),
    };
    let mut chunks: Vec<(IVec, Chunk)> = Vec::new();
    let mut more = false;
    for item in t.history.range::<IVec, _>((start, Bound::Unbounded)) {
        let (key, value) = item.op("read a webhook's history")?;
        if !key.starts_with(&prefix) {
            break;
        }
        if chunks.len() == PURGE_CHUNK {
            more = true;
            break;
        }
        let chunk: Chunk = codec::decode(keys::HISTORY, || keys::show_history_key(&key), &value)?;
        chunks.push((key, chunk));
    }
    *resume_after = chunks.last().map(|(k, _)| k.clone());
    // The buckets these chunks' deliveries are in, without the finished ones; and where each
    // removed record's by-time entry is (its creation time and the append that listed it).
    let mut buckets: HashMap<Vec<u8>, (super::projection::Bucket, usize)> = HashMap::new();
    let mut gone: HashSet<DeliveryId> = HashSet::new();
    let mut timed: HashSet<(Timestamp, Seq)> = HashSet::new();
    for (_, chunk) in &chunks {
        for (_, id) in chunk {
            let key = keys::bucket_key(id).to_vec();
            let (records, _) = match buckets.entry(key) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let records = load_bucket(t, e.key())?;
                    let len = records.len();
                    e.insert((records, len))
                }
            };
            let before = records.len();
            records.retain(|s| {
                let purged = &s.record.id == id && s.record.status != DeliveryStatus::Pending;
                if purged {
                    timed.insert((s.record.created_at, s.listed));
                }
                !purged
            });
            if records.len() < before {
                gone.insert(id.clone());
            }
        }
    }
    let mut history_writes: Vec<(IVec, Option<IVec>)> = Vec::new();
    for (key, mut chunk) in chunks {
        let len = chunk.len();
        chunk.retain(|(_, id)| !gone.contains(id));
        if chunk.len() != len {
            history_writes.push((key, encode_unless_empty(&chunk)?));
        }
    }
    let time_writes = by_time_writes(store, &timed, &buckets)?;
    let mut bucket_writes: Vec<(IVec, Option<IVec>)> = Vec::new();
    for (key, (records, len)) in &buckets {
        if records.len() != *len {
            bucket_writes.push((IVec::from(key.as_slice()), encode_unless_empty(records)?));
        }
    }
    (&t.history, &t.deliveries, &t.by_time)
        .transaction(
            |(history, deliveries, by_time)| -> ConflictableTransactionResult<(), Infallible> {
                for (k, v) in &history_writes {
                    put_or_remove(history, k, v)?;
                }
                for (k, v) in &bucket_writes {
                    put_or_remove(deliveries, k, v)?;
                }
                for (k, v) in &time_writes {
                    put_or_remove(by_time, k, v)?;
                }
                Ok(())
            },
        )
        .op("purge a deleted account's history")?;
    // Committed: cached buckets must not bring purged records back.
    let mut cache = store.buckets(&writer);
    for (key, (records, len)) in buckets {
        if records.len() != len {
            cache.keep_committed(key, records, false);
        }
    }
    drop(cache);
    drop(writer);
    store.wrote();
    Ok((gone.len() as u64, more))
}

/// The by-time chunks holding removed records' entries, without the entries whose bucket no
/// longer has a record created at that time. A record's chunk is keyed by the earliest time
/// of the append that created it and that append's sequence, so it is found by reading back
/// from (its creation time, its sequence) to the first key of that sequence.
fn by_time_writes(
    store: &SledStore,
    timed: &HashSet<(Timestamp, Seq)>,
    buckets: &HashMap<Vec<u8>, (super::projection::Bucket, usize)>,
) -> Result<Vec<(IVec, Option<IVec>)>, StoreError> {
    let t = &store.trees;
    let mut keys_found: HashSet<IVec> = HashSet::new();
    for (at, seq) in timed {
        let upto = IVec::from(&keys::time_chunk_key(*at, *seq)[..]);
        for item in t.by_time.range(..=upto).rev() {
            let (key, _) = item.op("read the by-time chunks")?;
            if key.get(8..).is_some_and(|s| s == seq.to_be_bytes()) {
                keys_found.insert(key);
                break;
            }
        }
    }
    let mut out = Vec::new();
    for key in keys_found {
        let Some(bytes) = t.by_time.get(&key).op("read a by-time chunk")? else {
            continue;
        };
        let mut chunk: TimeChunk =
            codec::decode(keys::BY_TIME, || keys::show_time_chunk_key(&key), &bytes)?;
        let len = chunk.len();
        chunk.retain(|(at, bucket)| match buckets.get(bucket) {
            Some((records, _)) => records.iter().any(|s| s.record.created_at == *at),
            None => true,
        });
        if chunk.len() != len {
            out.push((key, encode_unless_empty(&chunk)?));
        }
    }
    Ok(out)
}

/// One transaction's worth of an account's payload references; returns whether more remain.
fn payload_chunk(
    store: &SledStore,
    account: &AccountId,
    resume_after: &mut Option<IVec>,
) -> Result<bool, StoreError> {
    let t = &store.trees;
    let mut writer = store.writer();
    let prefix = keys::entry_prefix(account);
    let start = match resume_after.take() {
        Some(k) => Bound::Excluded(k),
        None => Bound::Included(IVec::from(&prefix[..])),
    };
    let mut removals: Vec<(IVec, Option<IVec>)> = Vec::new();
    let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
    let mut more = false;
    let range = t.published.range::<IVec, _>((start, Bound::Unbounded));
    for (seen, item) in range.enumerate() {
        let (key, value) = item.op("read an account's payloads")?;
        if !key.starts_with(&prefix) {
            break;
        }
        if seen == PURGE_CHUNK {
            more = true;
            break;
        }
        *resume_after = Some(key.clone());
        let mut entry = entries::decode(&key, &value)?;
        let Some(payload) = entry.payload.take() else {
            continue;
        };
        let mut needed = false;
        for d in &payload.deliveries {
            let pending = load_bucket(t, &keys::bucket_key(d))?
                .iter()
                .any(|s| &s.record.id == d && s.record.status == DeliveryStatus::Pending);
            if pending {
                needed = true;
                break;
            }
        }
        if !needed {
            // The publish, if the entry still has it, goes with the account's published ids.
            removals.push((key, entry.encoded()?));
            let n = count_of(&mut counts, &writer.body_refs, payload.body.segment);
            *n = n.saturating_sub(1);
        }
    }
    let meta_writes = body_ref_writes(&counts)?;
    (&t.published, &t.meta)
        .transaction(
            |(published, meta)| -> ConflictableTransactionResult<(), Infallible> {
                for (k, v) in &meta_writes {
                    put_or_remove(meta, k, v)?;
                }
                for (k, v) in &removals {
                    put_or_remove(published, k, v)?;
                }
                Ok(())
            },
        )
        .op("purge a deleted account's bodies")?;
    store.committed(&mut writer, counts);
    Ok(more)
}
