//! The read model's queries: payloads by event, deliveries by webhook with cursor paging.

use super::projection::{load_delivery, load_payload_ref, Chunk};
use super::{keys, Op, SledStore};
use crate::codec;
use crate::history::{DeliveryRecord, Page};
use crate::StoreError;
use hallway_domain::{AccountId, DeliveryId, EventId, WebhookId};
use std::sync::Arc;

/// The body of an event, stored once per event.
pub(super) fn payload(
    store: &SledStore,
    account: &AccountId,
    event: &EventId,
) -> Result<Option<Arc<str>>, StoreError> {
    let key = keys::payload_key(account, event);
    let Some(payload) = load_payload_ref(&store.trees.payloads, &key)? else {
        return Ok(None);
    };
    match store.bodies.read(&payload.body) {
        Ok(body) => Ok(Some(Arc::from(body))),
        // Retention may have removed the body (and its segment) since the reference was
        // read: then it is gone, which is no damage.
        Err(e) => match load_payload_ref(&store.trees.payloads, &key)? {
            None => Ok(None),
            Some(_) => Err(e),
        },
    }
}

/// One delivery with all its attempts, if it belongs to `webhook`.
pub(super) fn delivery(
    store: &SledStore,
    webhook: &WebhookId,
    delivery: &DeliveryId,
) -> Result<Option<DeliveryRecord>, StoreError> {
    Ok(load_delivery(&store.trees, delivery)?.filter(|r| &r.webhook_id == webhook))
}

/// A webhook's deliveries, newest first, `limit` at a time after `cursor`.
pub(super) fn deliveries(
    store: &SledStore,
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
    'chunks: for item in store.trees.history.range(start..) {
        let (key, value) = item.op("read a webhook's history")?;
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
                if seq == *after_seq && (at > *after_at || (at == *after_at && id <= *after_id)) {
                    continue;
                }
            }
            if data.len() == limit {
                more = true;
                break 'chunks;
            }
            // The chunk and the record are written and removed together, so an entry
            // without its record is damage, not a state to tolerate.
            let record = load_delivery(&store.trees, &id)?.ok_or_else(|| StoreError::Corrupt {
                tree: keys::DELIVERIES,
                key: keys::show_bucket(&keys::bucket_key(&id)),
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
