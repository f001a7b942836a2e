//! The read model's queries: payloads by event, deliveries by webhook with cursor paging.

use super::entries::load_payload_ref;
use super::projection::{load_delivery, Chunk};
use super::{keys, Op, SledStore};
use crate::codec;
use crate::history::{DeliveryFilter, DeliveryRecord, Page, SCAN_MAX};
use crate::Seq;
use crate::StoreError;
use hallway_domain::{AccountId, DeliveryId, EventId, Timestamp, WebhookId};
use std::sync::Arc;

/// The body of an event, stored once per event.
pub(super) fn payload(
    store: &SledStore,
    account: &AccountId,
    event: &EventId,
) -> Result<Option<Arc<str>>, StoreError> {
    let key = keys::entry_key(account, event);
    let Some(payload) = load_payload_ref(&store.trees.published, &key)? else {
        return Ok(None);
    };
    match store.bodies.read(&payload.body) {
        Ok(body) => Ok(Some(Arc::from(body))),
        // Retention may have removed the body (and its segment) since the reference was
        // read: then it is gone, which is no damage.
        Err(e) => match load_payload_ref(&store.trees.published, &key)? {
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

/// A webhook's deliveries that pass `filter`, newest first, `limit` at a time after `cursor`.
/// Reading stops at the first delivery created before `filter.since` (history lists newest
/// first), and after [`SCAN_MAX`] deliveries that do not pass.
pub(super) fn deliveries(
    store: &SledStore,
    webhook: &WebhookId,
    filter: &DeliveryFilter,
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
    // The last entry put on the page, and the last one examined (where an early stop resumes).
    let mut last_listed: Option<(Seq, Timestamp, DeliveryId)> = None;
    let mut last_examined: Option<(Seq, Timestamp, DeliveryId)> = None;
    let mut examined = 0usize;
    let mut more = false;
    let mut stopped_early = false;
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
            if filter.since.is_some_and(|since| at < since) {
                break 'chunks;
            }
            if examined == SCAN_MAX {
                stopped_early = true;
                break 'chunks;
            }
            examined += 1;
            let passes_time = filter.in_range(at);
            if passes_time && data.len() == limit && filter.by_time_only() {
                more = true;
                break 'chunks;
            }
            let record = if passes_time {
                // The chunk and the record are written and removed together, so an entry
                // without its record is damage, not a state to tolerate.
                let record =
                    load_delivery(&store.trees, &id)?.ok_or_else(|| StoreError::Corrupt {
                        tree: keys::DELIVERIES,
                        key: keys::show_bucket(&keys::bucket_key(&id)),
                        reason: format!("no record of delivery {id}, though {} lists it", show()),
                    })?;
                Some(record).filter(|r| filter.matches(r))
            } else {
                None
            };
            match record {
                Some(_) if data.len() == limit => {
                    more = true;
                    break 'chunks;
                }
                Some(record) => {
                    last_listed = Some((seq, at, id.clone()));
                    data.push(record);
                }
                None => {}
            }
            last_examined = Some((seq, at, id));
        }
    }
    let resume = if more {
        last_listed
    } else if stopped_early {
        last_examined
    } else {
        None
    };
    let next_cursor = resume.map(|(seq, at, id)| keys::cursor(seq, at, &id));
    Ok(Page { data, next_cursor })
}
