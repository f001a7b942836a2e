//! The consistency check of the read model: the delivery projections agree with each other,
//! and every body is whole and counted. For tests and operations, not for hot paths.

use super::open::read_body_refs;
use super::projection::{load_delivery, load_listing_chunk, Bucket, Chunk, TimeChunk};
use super::{keys, Op, SledStore};
use crate::codec;
use crate::history::DeliveryStatus;
use crate::StoreError;
use hallway_domain::Timestamp;
use std::collections::{BTreeMap, HashSet};

impl SledStore {
    /// How many entries each tree holds, by tree name (for tests and operations). Each
    /// count is a full scan of its tree: not for hot paths.
    pub fn tree_lens(&self) -> Vec<(&'static str, usize)> {
        let t = &self.trees;
        vec![
            (keys::LOG, t.log.len()),
            (keys::META, t.meta.len()),
            (keys::HISTORY, t.history.len()),
            (keys::DELIVERIES, t.deliveries.len()),
            (keys::BY_TIME, t.by_time.len()),
            (keys::SPILLED, t.spilled.len()),
            (keys::PUBLISHED, t.published.len()),
        ]
    }

    /// How many entries of the `published` tree hold each part: (publishes the idempotency
    /// window remembers, body references retention keeps). A full scan: not for hot paths.
    pub fn entry_counts(&self) -> Result<(usize, usize), StoreError> {
        let (mut published, mut payloads) = (0, 0);
        for item in self.trees.published.iter() {
            let (key, value) = item.op("read the published events' entries")?;
            let entry = super::entries::decode(&key, &value)?;
            published += usize::from(entry.published.is_some());
            payloads += usize::from(entry.payload.is_some());
        }
        Ok((published, payloads))
    }

    /// Checks that the delivery projections agree with each other: every listed delivery
    /// has its record, every record is listed and has its by-time entry, and every by-time
    /// entry has a record created at its time; every body reads back whole and each body
    /// segment's count is its references; every spilled delivery is pending in history and
    /// due when the spill index says; every published id is listed for its expiry. Returns
    /// how many delivery records there are.
    /// A full scan of the trees and bodies: for tests and operations, not for hot paths.
    pub fn check_projections(&self) -> Result<usize, StoreError> {
        let t = &self.trees;
        let writer = self.writer();
        let damage = |tree: &'static str, key: String, reason: String| StoreError::Corrupt {
            tree,
            key,
            reason,
        };
        let mut records = 0usize;
        // Every (creation time, bucket) the by-time chunks list, and those records need.
        let mut listed_times: HashSet<(Timestamp, Vec<u8>)> = HashSet::new();
        for item in t.by_time.iter() {
            let (key, value) = item.op("read the by-time chunks")?;
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
        for item in t.deliveries.iter() {
            let (key, value) = item.op("read the delivery buckets")?;
            let bucket: Bucket =
                codec::decode(keys::DELIVERIES, || keys::show_bucket(&key), &value)?;
            if bucket.is_empty() {
                return Err(damage(
                    keys::DELIVERIES,
                    keys::show_bucket(&key),
                    "empty bucket".into(),
                ));
            }
            for stored in &bucket {
                let r = &stored.record;
                records += 1;
                if keys::bucket_key(&r.id) != key[..] {
                    return Err(damage(
                        keys::DELIVERIES,
                        keys::show_bucket(&key),
                        format!("holds {}, of another bucket", r.id),
                    ));
                }
                let listing = load_listing_chunk(t, &r.webhook_id, stored.listed)?;
                let lists = listing
                    .as_ref()
                    .is_some_and(|(_, c)| c.contains(&(r.created_at, r.id.clone())));
                if !lists {
                    let key = keys::history_key(&r.webhook_id, stored.listed);
                    return Err(damage(
                        keys::HISTORY,
                        keys::show_history_key(&key),
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
            let (key, value) = item.op("read the history chunks")?;
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
        for item in t.published.iter() {
            let (key, value) = item.op("read the payload references")?;
            let Some(payload) = super::entries::decode(&key, &value)?.payload else {
                continue;
            };
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
        // Every spilled delivery waits in history: pending, due when the index says.
        for (webhook, id, due) in super::spill::all(self)? {
            let record = load_delivery(t, &id)?;
            let waiting = record.as_ref().is_some_and(|r| {
                r.webhook_id.as_str() == webhook
                    && r.status == DeliveryStatus::Pending
                    && r.next_attempt_at == Some(due)
            });
            if !waiting {
                return Err(damage(
                    keys::SPILLED,
                    format!("{webhook}/{id}"),
                    format!("spilled, due at {}, but history has {record:?}", due.0),
                ));
            }
        }
        super::idempotency::check(t)?;
        Ok(records)
    }
}
