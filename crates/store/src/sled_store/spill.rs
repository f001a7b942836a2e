//! The spill index: waiting deliveries the domain moved out of memory, per webhook and spill
//! generation in queue order (due time, then id). Written from the spill events in the same
//! transaction as their log record, so the index is always the committed log's; read back,
//! in order, to load or settle them.

use super::{keys, Op, SledStore};
use crate::codec;
use crate::StoreError;
use hallway_domain::{DeliveryId, FanOutId, SpilledDelivery, Timestamp, WebhookId};
use sled::IVec;
use std::collections::BTreeMap;

/// The prefix of one webhook's generation in the index.
pub(crate) fn prefix(webhook: &WebhookId, generation: u32) -> Vec<u8> {
    let mut out = keys::history_prefix(webhook);
    out.extend_from_slice(&generation.to_be_bytes());
    out
}

/// A spilled delivery's key: its webhook and generation, then its due time and id, so that a
/// generation's entries sort in queue order.
pub(crate) fn key(
    webhook: &WebhookId,
    generation: u32,
    due: Timestamp,
    id: &DeliveryId,
) -> Vec<u8> {
    let mut out = prefix(webhook, generation);
    out.extend_from_slice(&due.0.to_be_bytes());
    out.extend_from_slice(&id.fan_out().to_bytes());
    out.extend_from_slice(&id.index().to_be_bytes());
    out
}

/// A key's due time and delivery, after its webhook and generation.
fn parse_tail(tail: &[u8]) -> Option<(Timestamp, DeliveryId)> {
    let due = u64::from_be_bytes(tail.get(..8)?.try_into().ok()?);
    let fan_out = FanOutId::from_bytes(tail.get(8..24)?.try_into().ok()?);
    let index = u32::from_be_bytes(tail.get(24..28)?.try_into().ok()?);
    (tail.len() == 28).then(|| (Timestamp(due), fan_out.delivery(index)))
}

/// Prints a key as `webhook/generation/due/delivery`.
pub(crate) fn show_key(key: &[u8]) -> String {
    let Some((webhook, rest)) = keys::split_prefixed(key) else {
        return format!("{key:02x?}");
    };
    match (rest.get(..4), rest.get(4..).and_then(parse_tail)) {
        (Some(g), Some((due, id))) => format!(
            "{webhook}/{}/{}/{id}",
            u32::from_be_bytes(g.try_into().unwrap_or_default()),
            due.0
        ),
        _ => format!("{key:02x?}"),
    }
}

/// The index's changes of one batch, by key: a value to write, or `None` to remove. A key a
/// batch spills and loads again ends as its last event left it.
#[derive(Default)]
pub(crate) struct SpillWrites(BTreeMap<Vec<u8>, Option<SpilledDelivery>>);

impl SpillWrites {
    /// A delivery spilled to the index.
    pub(crate) fn put(&mut self, webhook: &WebhookId, generation: u32, d: &SpilledDelivery) {
        self.0
            .insert(key(webhook, generation, d.due, &d.id), Some(d.clone()));
    }

    /// A delivery gone from the index (loaded or settled).
    pub(crate) fn remove(
        &mut self,
        webhook: &WebhookId,
        generation: u32,
        due: Timestamp,
        id: &DeliveryId,
    ) {
        self.0.insert(key(webhook, generation, due, id), None);
    }

    /// The encoded writes.
    pub(crate) fn encoded(self) -> Result<Vec<(IVec, Option<IVec>)>, StoreError> {
        self.0
            .into_iter()
            .map(|(k, v)| {
                let value = match v {
                    Some(d) => Some(IVec::from(codec::encode(&d)?)),
                    None => None,
                };
                Ok((IVec::from(k), value))
            })
            .collect()
    }
}

/// The first `limit` spilled deliveries of a webhook's generation, in queue order.
pub(super) fn read(
    store: &SledStore,
    webhook: &WebhookId,
    generation: u32,
    limit: usize,
) -> Result<Vec<SpilledDelivery>, StoreError> {
    let mut out = Vec::with_capacity(limit.min(4096));
    for item in store.trees.spilled.scan_prefix(prefix(webhook, generation)) {
        if out.len() == limit {
            break;
        }
        let (k, v) = item.op("read the spill index")?;
        let d: SpilledDelivery = codec::decode(keys::SPILLED, || show_key(&k), &v)?;
        // The pair check: what was written under a key is the delivery the key names.
        if k[..] != key(webhook, generation, d.due, &d.id)[..] {
            return Err(StoreError::Corrupt {
                tree: keys::SPILLED,
                key: show_key(&k),
                reason: format!("holds {} due at {}", d.id, d.due.0),
            });
        }
        out.push(d);
    }
    Ok(out)
}

/// Every entry of the index as (webhook, delivery, due), for the consistency check.
pub(super) fn all(store: &SledStore) -> Result<Vec<(String, DeliveryId, Timestamp)>, StoreError> {
    let mut out = Vec::new();
    for item in store.trees.spilled.iter() {
        let (k, v) = item.op("read the spill index")?;
        let d: SpilledDelivery = codec::decode(keys::SPILLED, || show_key(&k), &v)?;
        let (webhook, rest) = keys::split_prefixed(&k).ok_or_else(|| StoreError::Corrupt {
            tree: keys::SPILLED,
            key: show_key(&k),
            reason: "not a spill key".into(),
        })?;
        match rest.get(4..).and_then(parse_tail) {
            Some((due, id)) if due == d.due && id == d.id => {}
            _ => {
                return Err(StoreError::Corrupt {
                    tree: keys::SPILLED,
                    key: show_key(&k),
                    reason: format!("holds {} due at {}", d.id, d.due.0),
                })
            }
        }
        out.push((webhook.to_owned(), d.id, d.due));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_in_queue_order_within_a_generation_and_print_back() {
        let w = WebhookId::from("wh_1");
        let id = |n: u8, i: u32| FanOutId::from_bytes([n; 16]).delivery(i);
        let early = key(&w, 3, Timestamp(5), &id(9, 0));
        let tie = key(&w, 3, Timestamp(6), &id(1, 0));
        let later = key(&w, 3, Timestamp(6), &id(1, 1));
        assert!(early < tie && tie < later);
        assert!(later.starts_with(&prefix(&w, 3)));
        assert!(!later.starts_with(&prefix(&w, 4)));
        assert!(key(&w, 2, Timestamp(u64::MAX), &id(0xff, 9)) < early);
        assert!(
            !key(&WebhookId::from("wh_10"), 3, Timestamp(0), &id(0, 0)).starts_with(&prefix(&w, 3))
        );
        assert_eq!(show_key(&early), format!("wh_1/3/5/{}", id(9, 0)));
    }
}
