//! Published event ids for the whole idempotency window. Memory keeps only the last
//! seconds of them (`Policy::idempotency_memory`); the `published` tree keeps every one in
//! its event's entry (`entries`), written in the append that logs its publish, and the
//! runtime reads it before a publish is decided. Entries are found by their key's 24 bytes
//! (an account's share a prefix, for its purge); their publishes expire through chunks in
//! `meta` listing each append's keys under its newest publish time, so retention reads only
//! what expired.

use super::entries::{self, EventEntry};
use super::{keys, Op, SledStore, Trees};
use crate::{PublishedIds, StoreError};
use hallway_domain::{AccountId, Event, IdempotencyKey, Published, Timestamp};
use sled::transaction::{ConflictableTransactionResult, Transactional, TransactionalTree};
use sled::IVec;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::convert::Infallible;
use std::ops::Bound;

/// The length of a key in the `published` tree.
const KEY_LEN: usize = 24;

/// Entries one transaction of a prune or purge removes, so appends wait at most that long.
const REMOVE_CHUNK: usize = 1024;

/// The published ids one append records.
#[derive(Default)]
pub(crate) struct PublishedWrites {
    entries: Vec<([u8; KEY_LEN], Published)>,
    newest: Timestamp,
}

impl PublishedWrites {
    /// Records `event`'s id if it is a publish.
    pub fn note(&mut self, event: &Event) {
        if let Some((key, published)) = Published::of(event) {
            self.newest = self.newest.max(published.at);
            self.entries.push((key.to_bytes(), published));
        }
    }

    /// The append's entries and the expiry chunk, encoded for its transaction: `payloads`
    /// (the entries whose body reference the append changes) with the append's publishes
    /// added, and the entries of publishes without a body change read from `tree` so their
    /// stored reference is kept.
    pub fn encoded(
        self,
        seq: crate::Seq,
        payloads: Vec<([u8; KEY_LEN], EventEntry)>,
        tree: &sled::Tree,
    ) -> Result<Encoded, StoreError> {
        let mut all: HashMap<[u8; KEY_LEN], EventEntry> = payloads.into_iter().collect();
        let mut listed = Vec::with_capacity(self.entries.len() * KEY_LEN);
        for (key, published) in &self.entries {
            listed.extend_from_slice(key);
            let entry = match all.entry(*key) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(v) => v.insert(entries::load(tree, key)?.unwrap_or_default()),
            };
            entry.published = Some(*published);
        }
        let mut out = Vec::with_capacity(all.len());
        for (key, entry) in all {
            if let Some(value) = entry.encoded()? {
                out.push((IVec::from(&key[..]), value));
            }
        }
        let chunk = (!self.entries.is_empty()).then(|| {
            (
                IVec::from(keys::published_chunk_key(self.newest, seq)),
                IVec::from(listed),
            )
        });
        Ok(Encoded {
            entries: out,
            chunk,
        })
    }
}

/// What [`PublishedWrites::encoded`] gives an append to write.
#[derive(Default)]
pub(crate) struct Encoded {
    entries: Vec<(IVec, IVec)>,
    chunk: Option<(IVec, IVec)>,
}

impl Encoded {
    /// Whether the append changes no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.chunk.is_none()
    }

    /// Writes the entries to `published` and the chunk to `meta`, inside the transaction.
    pub fn write(
        &self,
        published: &TransactionalTree,
        meta: &TransactionalTree,
    ) -> ConflictableTransactionResult<(), Infallible> {
        for (k, v) in &self.entries {
            published.insert_blind(k.clone(), v.clone())?;
        }
        if let Some((k, v)) = &self.chunk {
            meta.insert_blind(k.clone(), v.clone())?;
        }
        Ok(())
    }
}

/// What the store remembers of a publish of `key`, however old (the domain decides whether
/// it is still inside the window).
pub(crate) fn lookup(t: &Trees, key: &IdempotencyKey) -> Result<Option<Published>, StoreError> {
    Ok(entries::load(&t.published, &key.to_bytes())?.and_then(|e| e.published))
}

/// Up to `limit` published ids after `after` in key order, each with its publish time.
pub(crate) fn list(
    t: &Trees,
    after: Option<[u8; KEY_LEN]>,
    limit: usize,
) -> Result<PublishedIds, StoreError> {
    let range = match after {
        Some(after) => t
            .published
            .range((Bound::Excluded(after), Bound::Unbounded)),
        None => t.published.iter(),
    };
    let mut out = Vec::with_capacity(limit.min(4096));
    for item in range {
        if out.len() == limit {
            break;
        }
        let (key, value) = item.op("list the published ids")?;
        let bytes: [u8; KEY_LEN] = key[..].try_into().map_err(|_| StoreError::Corrupt {
            tree: keys::PUBLISHED,
            key: format!("{key:02x?}"),
            reason: format!("a key of {} bytes, not {KEY_LEN}", key.len()),
        })?;
        // An entry kept only for its body is skipped: its id is out of the window.
        if let Some(p) = entries::decode(&key, &value)?.published {
            out.push((bytes, p.at));
        }
    }
    Ok(out)
}

/// Removes the ids published before `before`, a chunk at a time; returns how many went. An
/// id published again since (after its window) is left: its entry is the newer publish's.
pub(super) fn prune(store: &SledStore, before: Timestamp) -> Result<u64, StoreError> {
    let t = &store.trees;
    let end = keys::published_chunk_key(before, 0);
    let mut removed = 0;
    loop {
        let _writer = store.writer();
        let mut chunks = Vec::new();
        let mut listed = 0;
        for item in t
            .meta
            .range(keys::META_PUBLISHED_CHUNKS.to_vec()..end.clone())
        {
            let (key, value) = item.op("read the published ids' chunks")?;
            listed += value.len() / KEY_LEN;
            chunks.push((key, value));
            if listed >= REMOVE_CHUNK {
                break;
            }
        }
        if chunks.is_empty() {
            return Ok(removed);
        }
        let mut gone = Vec::new();
        for (_, value) in &chunks {
            for key in value.chunks_exact(KEY_LEN) {
                let Some(mut entry) = entries::load(&t.published, key)? else {
                    continue;
                };
                if entry.published.is_some_and(|p| p.at < before) {
                    entry.published = None;
                    gone.push((IVec::from(key), entry.encoded()?));
                }
            }
        }
        removed += gone.len() as u64;
        forget(t, &gone, chunks.into_iter().map(|(k, _)| k))?;
    }
}

/// Removes every id `account` published, a chunk at a time. Their expiry chunks stay, and
/// find nothing to remove when they expire.
pub(super) fn purge(store: &SledStore, account: &AccountId) -> Result<(), StoreError> {
    let t = &store.trees;
    let prefix = IdempotencyKey::account_prefix(account);
    loop {
        let _writer = store.writer();
        let mut gone = Vec::new();
        for item in t.published.scan_prefix(prefix) {
            let (key, value) = item.op("read an account's published ids")?;
            let mut entry = entries::decode(&key, &value)?;
            if entry.published.take().is_none() {
                // Kept for its body, which the account's purge of bodies removes.
                continue;
            }
            gone.push((key, entry.encoded()?));
            if gone.len() == REMOVE_CHUNK {
                break;
            }
        }
        if gone.is_empty() {
            return Ok(());
        }
        forget(t, &gone, std::iter::empty())?;
    }
}

/// Writes entries without their publish (removing those left empty) and removes expiry
/// chunks, in one transaction.
fn forget(
    t: &Trees,
    entries: &[(IVec, Option<IVec>)],
    chunks: impl Iterator<Item = IVec>,
) -> Result<(), StoreError> {
    let mut batch = sled::Batch::default();
    for (key, value) in entries {
        match value {
            Some(v) => batch.insert(key.clone(), v.clone()),
            None => batch.remove(key.clone()),
        }
    }
    let mut meta = sled::Batch::default();
    for key in chunks {
        meta.remove(key);
    }
    (&t.published, &t.meta)
        .transaction(
            |(published, m)| -> ConflictableTransactionResult<(), Infallible> {
                published.apply_batch(&batch)?;
                m.apply_batch(&meta)?;
                Ok(())
            },
        )
        .op("forget published ids")
}

/// Checks that every published id reads back and is listed by an expiry chunk no older than
/// its publish, so retention will remove it (part of `check_projections`).
pub(super) fn check(t: &Trees) -> Result<(), StoreError> {
    let mut expires: std::collections::HashMap<Vec<u8>, Timestamp> = Default::default();
    for item in t.meta.scan_prefix(keys::META_PUBLISHED_CHUNKS) {
        let (key, value) = item.op("read the published ids' chunks")?;
        let newest = key
            .get(keys::META_PUBLISHED_CHUNKS.len()..keys::META_PUBLISHED_CHUNKS.len() + 8)
            .and_then(|b| b.try_into().ok())
            .map(|b| Timestamp(u64::from_be_bytes(b)));
        let (Some(newest), 0) = (newest, value.len() % KEY_LEN) else {
            return Err(StoreError::Corrupt {
                tree: keys::META,
                key: format!("{key:02x?}"),
                reason: "not a chunk of published ids".into(),
            });
        };
        for id in value.chunks_exact(KEY_LEN) {
            let e = expires.entry(id.to_vec()).or_insert(newest);
            *e = (*e).max(newest);
        }
    }
    for item in t.published.iter() {
        let (key, value) = item.op("read the published ids")?;
        let Some(published) = entries::decode(&key, &value)?.published else {
            continue;
        };
        if expires.get(&key[..]).is_none_or(|e| *e < published.at) {
            return Err(StoreError::Corrupt {
                tree: keys::PUBLISHED,
                key: format!("{key:02x?}"),
                reason: format!(
                    "published at {} but in no chunk to expire it",
                    published.at.0
                ),
            });
        }
    }
    Ok(())
}
