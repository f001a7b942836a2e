//! The memory budget (`Config::memory_budget_bytes`, the `--memory-budget` flag) and its
//! shares, in one place. The engine sizes five things it holds by choice from it: the store's
//! page cache, the store's decoded records of deliveries about to have an outcome, the bodies
//! of recent publishes, the waiting deliveries kept in memory (the rest of a backlog is
//! spilled to the store) and the filter in front of the store's published ids.
//! What it does not size is the remainder: the store's table of its pages (which grows with
//! what is on disk), the attempts under way and their connections, the last seconds'
//! idempotency keys, and what the allocator keeps.
//!
//! | share | of the budget | bounds |
//! |---|---|---|
//! | the store's page cache | a sixteenth | 4 MiB to the store's default |
//! | the store's records awaiting an outcome | a thirty-second, at 1 KiB a record | 1,024 to 65,536 records |
//! | recent publishes' bodies | a thirty-second | 1 to 16 MiB |
//! | waiting deliveries in memory | an eighth, split evenly between live webhooks | per webhook: twice the open limit to 16,384 |
//! | the filter in front of the store's published ids | a sixty-fourth | 1 to 16 MiB |

use hallway_store::StoreOptions;

/// The share of the budget the store's page cache may use.
const STORE_CACHE_SHARE: u64 = 16;

/// The smallest store page cache, whatever the budget: less makes every read of a recent
/// delivery a disk read.
const STORE_CACHE_MIN: u64 = 4 * 1024 * 1024;

/// The share of the budget the store's decoded records awaiting an outcome may use.
const BUCKET_CACHE_SHARE: u64 = 32;

/// What the budget counts for one decoded record: its ids and strings, and an attempt's
/// headers and response once it has one.
const BYTES_PER_CACHED_RECORD: u64 = 1024;

/// The store's records awaiting an outcome, whatever the budget: fewer makes outcomes read
/// their bucket back at modest rates, more holds no more than the attempts in flight.
const BUCKET_CACHE_MIN: usize = 1024;
const BUCKET_CACHE_MAX: usize = 64 * 1024;

/// The share of the budget recent publishes' bodies may use.
const RECENT_BODIES_SHARE: u64 = 32;

/// The fewest bytes of recent bodies kept, whatever the budget.
const RECENT_BODIES_MIN: usize = 1024 * 1024;

/// Most bytes of recent bodies kept, whatever the budget: seconds of publishes even at tens
/// of thousands a second.
const RECENT_BODIES_MAX: usize = 16 * 1024 * 1024;

/// The share of the budget the published ids' filter uses.
const PUBLISHED_FILTER_SHARE: u64 = 64;

/// The published ids' filter's bounds: at 10 bits an id, 1 MiB answers for ~170,000 ids a
/// generation (a third of the retention window), 16 MiB for ~2.7 million.
const PUBLISHED_FILTER_MIN: usize = 1024 * 1024;
const PUBLISHED_FILTER_MAX: usize = 16 * 1024 * 1024;

/// The share of the budget waiting deliveries in memory may use.
const WAITING_SHARE: u64 = 8;

/// What the budget counts for one waiting delivery in memory: the state's entry, its queue
/// entry and its ids, with the deliveries map's room to grow (about 800 bytes in a heap
/// profile of the backlog benchmark), rounded up.
const BYTES_PER_WAITING: u64 = 1024;

/// Most waiting deliveries of one webhook kept in memory however large the budget: more buys
/// nothing but fewer loads, and a queue this long drains for minutes.
const KEEP_MAX: usize = 16_384;

/// A memory budget, in bytes, and what each share of it comes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget(u64);

impl Budget {
    /// A budget of `bytes`.
    pub fn new(bytes: u64) -> Budget {
        Budget(bytes)
    }

    /// The store's page cache: a sixteenth, from 4 MiB up to the store's default (which a
    /// 512 MiB budget gets).
    pub fn store_cache_bytes(self) -> u64 {
        let default = StoreOptions::default().cache_capacity_bytes;
        (self.0 / STORE_CACHE_SHARE).clamp(STORE_CACHE_MIN, default.max(STORE_CACHE_MIN))
    }

    /// Records the store keeps decoded for outcomes about to arrive: a thirty-second at
    /// 1 KiB a record (8,192 of the default 256 MiB), from 1,024 to 65,536.
    pub fn bucket_cache_records(self) -> usize {
        let share = self.0 / BUCKET_CACHE_SHARE / BYTES_PER_CACHED_RECORD;
        usize::try_from(share)
            .unwrap_or(usize::MAX)
            .clamp(BUCKET_CACHE_MIN, BUCKET_CACHE_MAX)
    }

    /// Bytes of recent publishes' bodies held in memory: a thirty-second (8 MiB of the
    /// default 256 MiB), from 1 to 16 MiB.
    pub(crate) fn recent_body_bytes(self) -> usize {
        let share = usize::try_from(self.0 / RECENT_BODIES_SHARE).unwrap_or(usize::MAX);
        share.clamp(RECENT_BODIES_MIN, RECENT_BODIES_MAX)
    }

    /// Bytes of the filter in front of the store's published ids: a sixty-fourth (4 MiB of
    /// the default 256 MiB), from 1 to 16 MiB.
    pub(crate) fn published_filter_bytes(self) -> usize {
        let share = usize::try_from(self.0 / PUBLISHED_FILTER_SHARE).unwrap_or(usize::MAX);
        share.clamp(PUBLISHED_FILTER_MIN, PUBLISHED_FILTER_MAX)
    }

    /// How many waiting deliveries of one webhook memory holds: an even share of the
    /// waiting deliveries' eighth among the live webhooks, at least twice the attempts a
    /// webhook may have open (so what may start is always in memory, and a load lands before
    /// the queue runs dry) and at most [`KEEP_MAX`].
    pub(crate) fn waiting_per_webhook(self, webhooks: usize, open_per_webhook: u32) -> usize {
        let total = self.0 / WAITING_SHARE / BYTES_PER_WAITING;
        let share = usize::try_from(total / webhooks.max(1) as u64).unwrap_or(usize::MAX);
        let floor = (open_per_webhook as usize).saturating_mul(2).max(2);
        share.clamp(floor, KEEP_MAX.max(floor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn the_store_cache_is_a_sixteenth_within_bounds() {
        let default = StoreOptions::default().cache_capacity_bytes;
        assert_eq!(Budget::new(256 * MIB).store_cache_bytes(), 16 * MIB);
        assert_eq!(
            Budget::new(MIB).store_cache_bytes(),
            4 * MIB,
            "at least 4 MiB"
        );
        assert_eq!(
            Budget::new(64 * 1024 * MIB).store_cache_bytes(),
            default,
            "capped"
        );
    }

    #[test]
    fn cached_records_are_a_thirty_second_within_bounds() {
        let records = |b: u64| Budget::new(b).bucket_cache_records();
        assert_eq!(records(256 * MIB), 8192);
        assert_eq!(records(MIB), BUCKET_CACHE_MIN, "at least");
        assert_eq!(records(64 * 1024 * MIB), BUCKET_CACHE_MAX, "capped");
    }

    #[test]
    fn recent_bodies_are_a_thirty_second_within_bounds() {
        let bytes = |b: u64| Budget::new(b).recent_body_bytes() as u64;
        assert_eq!(bytes(256 * MIB), 8 * MIB);
        assert_eq!(bytes(512 * MIB), RECENT_BODIES_MAX as u64);
        assert_eq!(bytes(64 * 1024 * MIB), RECENT_BODIES_MAX as u64, "capped");
        assert_eq!(bytes(MIB), MIB, "at least 1 MiB");
    }

    #[test]
    fn waiting_deliveries_share_an_eighth_between_webhooks_within_bounds() {
        let keep = |b: u64, w, open| Budget::new(b).waiting_per_webhook(w, open);
        assert_eq!(keep(512 * MIB, 20, 256), 3276);
        assert_eq!(keep(512 * MIB, 1, 256), KEEP_MAX, "capped");
        assert_eq!(keep(16 * MIB, 1000, 256), 512, "twice the open limit");
        assert_eq!(keep(0, 0, 0), 2);
    }
}
