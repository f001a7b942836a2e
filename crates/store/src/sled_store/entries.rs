//! One record per published event in the `published` tree, keyed by its idempotency key: the
//! publish the idempotency window remembers and where the body is while retention keeps it.
//! The two parts have their own lifetimes (the window, retention), so each path that ends one
//! clears its part and removes the record only when the other is gone too.
//!
//! They share one record because every publish writes both, sled's cost is per key, and keys
//! that land at random places in a growing tree cost it most (`docs/decisions.md`, one entry
//! per published event).

use super::projection::PayloadRef;
use super::{keys, Op};
use crate::codec;
use crate::StoreError;
use hallway_domain::Published;
use serde::{Deserialize, Serialize};
use sled::IVec;

/// What the store keeps of one published event.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct EventEntry {
    /// Its latest publish, until the idempotency window forgets it.
    pub published: Option<Published>,
    /// Where its body is, until retention removes its deliveries.
    pub payload: Option<PayloadRef>,
}

impl EventEntry {
    /// The entry as its key's new value: encoded, or `None` (remove the key) when neither
    /// part is left.
    pub fn encoded(&self) -> Result<Option<IVec>, StoreError> {
        if self.published.is_none() && self.payload.is_none() {
            return Ok(None);
        }
        Ok(Some(IVec::from(codec::encode(self)?)))
    }
}

/// Decodes an entry read under `key`.
pub(crate) fn decode(key: &[u8], value: &[u8]) -> Result<EventEntry, StoreError> {
    codec::decode(keys::PUBLISHED, || keys::show_entry_key(key), value)
}

/// Reads the entry under `key`, if any.
pub(crate) fn load(tree: &sled::Tree, key: &[u8]) -> Result<Option<EventEntry>, StoreError> {
    match tree.get(key).op("read a published event's entry")? {
        Some(bytes) => Ok(Some(decode(key, &bytes)?)),
        None => Ok(None),
    }
}

/// Reads the body's reference under `key`, if the entry still has one.
pub(crate) fn load_payload_ref(
    tree: &sled::Tree,
    key: &[u8],
) -> Result<Option<PayloadRef>, StoreError> {
    Ok(load(tree, key)?.and_then(|e| e.payload))
}
