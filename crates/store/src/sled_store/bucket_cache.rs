//! The writer's cache of delivery buckets (see [`keys::bucket_key`]) whose records expect an
//! outcome soon: a first attempt is made, and its outcome committed, within milliseconds of
//! the write that created the record, and reading the bucket back would cost a lookup and a
//! decode. A bucket whose pending records all wait for a retry (a minute or more by the
//! spec's schedule) is not kept: in a backlog those are most of the records, and each one
//! decoded, its attempt's headers and response included, is a kilobyte or more held for
//! nothing. What is kept is bounded in records, the unit its memory grows with.
//!
//! [`keys::bucket_key`]: super::keys::bucket_key

use super::projection::Bucket;
use crate::history::{DeliveryRecord, DeliveryStatus};
use std::collections::HashMap;

/// A retry due this long after its record's last attempt ended still counts as soon: the
/// cache is for what comes back within the commits in flight, and a backlog's retries are
/// a minute or more away.
const SOON_MS: u64 = 5_000;

/// Buckets as last committed, by bucket key, holding at most a number of records.
pub(super) struct BucketCache {
    buckets: HashMap<Vec<u8>, Bucket>,
    records: usize,
    max_records: usize,
}

impl BucketCache {
    /// An empty cache that holds at most `max_records` records.
    pub(crate) fn new(max_records: usize) -> BucketCache {
        BucketCache {
            buckets: HashMap::new(),
            records: 0,
            max_records,
        }
    }

    /// Takes a bucket out, for a batch to change; the batch's commit puts it back.
    pub(crate) fn take(&mut self, key: &[u8]) -> Option<Bucket> {
        let bucket = self.buckets.remove(key)?;
        self.records -= bucket.len();
        Some(bucket)
    }

    /// Puts a bucket as committed back, or drops it once none of its records expects an
    /// outcome soon. A bucket not cached yet is added only with `may_add` and while its
    /// records fit: a queue is worked oldest first, so the buckets already kept are the
    /// ones the next outcomes land in.
    pub(crate) fn keep_committed(&mut self, key: Vec<u8>, bucket: Bucket, may_add: bool) {
        let cached = self.take(&key).is_some();
        if !bucket.iter().any(|s| expects_outcome_soon(&s.record)) {
            return;
        }
        if cached || (may_add && self.records + bucket.len() <= self.max_records) {
            self.records += bucket.len();
            self.buckets.insert(key, bucket);
        }
    }

    /// Records held.
    pub(crate) fn records(&self) -> usize {
        self.records
    }
}

/// Whether a record is pending with an attempt under way, its first attempt to make, or a
/// retry due within [`SOON_MS`] of its last attempt's end.
fn expects_outcome_soon(r: &DeliveryRecord) -> bool {
    if r.status != DeliveryStatus::Pending {
        return false;
    }
    let (Some(due), Some(last)) = (r.next_attempt_at, r.attempts.last()) else {
        return true;
    };
    let ended = last.started_at.0.saturating_add(last.duration_ms);
    due.0 <= ended.saturating_add(SOON_MS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::AttemptRecord;
    use crate::sled_store::projection::Stored;
    use hallway_domain::{AccountId, DeliveryId, EventId, FanOutId, Timestamp, WebhookId};

    fn stored(
        n: u64,
        status: DeliveryStatus,
        next: Option<u64>,
        last_start: Option<u64>,
    ) -> Stored {
        let attempts = last_start
            .map(|t| AttemptRecord {
                attempt: 1,
                started_at: Timestamp(t),
                duration_ms: 20,
                status_code: Some(500),
                error: None,
                detail: None,
            })
            .into_iter()
            .collect();
        Stored {
            record: DeliveryRecord {
                id: DeliveryId::new(FanOutId::new(Timestamp(1_000), [7; 10]), n as u32),
                webhook_id: WebhookId::from("wh_1"),
                account_id: AccountId::from("acc_1"),
                event_id: EventId::from(format!("evt_{n}").as_str()),
                event_type: "session.processing.completed".into(),
                test: false,
                status,
                created_at: Timestamp(1_000),
                next_attempt_at: next.map(Timestamp),
                attempts,
            },
            listed: 1,
        }
    }

    #[test]
    fn keeps_records_awaiting_a_first_attempt_or_an_outcome() {
        let mut cache = BucketCache::new(100);
        let first = stored(1, DeliveryStatus::Pending, Some(1_000), None);
        let under_way = stored(2, DeliveryStatus::Pending, None, Some(1_000));
        cache.keep_committed(b"a".to_vec(), vec![first], true);
        cache.keep_committed(b"b".to_vec(), vec![under_way], true);
        assert_eq!(cache.records(), 2);
        assert!(cache.take(b"a").is_some());
        assert!(cache.take(b"b").is_some());
        assert_eq!(cache.records(), 0);
    }

    #[test]
    fn drops_a_bucket_whose_records_wait_for_a_distant_retry_or_are_finished() {
        let mut cache = BucketCache::new(100);
        // Failed at 1,000 (ending 1,020), retried a minute later.
        let retry = stored(1, DeliveryStatus::Pending, Some(61_020), Some(1_000));
        let done = stored(2, DeliveryStatus::Succeeded, None, Some(1_000));
        cache.keep_committed(b"a".to_vec(), vec![retry.clone(), done], true);
        assert_eq!(cache.records(), 0);
        assert!(cache.take(b"a").is_none());
        // A cached bucket whose last record now waits for the retry leaves the cache.
        let first = stored(3, DeliveryStatus::Pending, Some(1_000), None);
        cache.keep_committed(b"b".to_vec(), vec![first], true);
        assert_eq!(cache.records(), 1);
        cache.keep_committed(b"b".to_vec(), vec![retry], false);
        assert_eq!(cache.records(), 0);
        assert!(cache.take(b"b").is_none());
    }

    #[test]
    fn a_retry_due_soon_is_kept() {
        let mut cache = BucketCache::new(100);
        let soon = stored(
            1,
            DeliveryStatus::Pending,
            Some(1_020 + SOON_MS),
            Some(1_000),
        );
        cache.keep_committed(b"a".to_vec(), vec![soon], true);
        assert_eq!(cache.records(), 1);
    }

    #[test]
    fn holds_at_most_its_records_and_refreshes_what_it_holds() {
        let mut cache = BucketCache::new(3);
        let bucket = |from: u64, n: u64| -> Bucket {
            (from..from + n)
                .map(|i| stored(i, DeliveryStatus::Pending, Some(1_000), None))
                .collect()
        };
        cache.keep_committed(b"a".to_vec(), bucket(0, 2), true);
        cache.keep_committed(b"b".to_vec(), bucket(2, 2), true);
        assert_eq!(cache.records(), 2, "the second does not fit");
        assert!(cache.take(b"b").is_none());
        cache.keep_committed(b"c".to_vec(), bucket(4, 1), false);
        assert_eq!(cache.records(), 2, "not added without may_add");
        // A cached bucket is refreshed even past the bound (a batch added to it).
        cache.keep_committed(b"a".to_vec(), bucket(0, 4), false);
        assert_eq!(cache.records(), 4);
        assert_eq!(cache.take(b"a").map(|b| b.len()), Some(4));
        assert_eq!(cache.records(), 0);
    }
}
