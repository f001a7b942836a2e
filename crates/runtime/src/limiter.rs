//! A per-account token bucket for manual actions (retries and test sends), each of which is a
//! request to the customer's endpoint that nothing else bounds.

use hallway_domain::{AccountId, Timestamp};
use std::collections::HashMap;
use std::sync::Mutex;

/// One token, in the bucket's units (milliseconds in a minute).
const UNITS_PER_TOKEN: u64 = 60_000;

/// Accounts tracked before full buckets are forgotten (a full bucket is the same as none).
const TRACKED_MAX: usize = 10_000;

/// Allows `per_minute` actions a minute per account, in bursts of up to `per_minute`.
pub(crate) struct ManualLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<AccountId, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    /// Tokens in 60,000ths: at `per_minute` tokens a minute the bucket then gains exactly
    /// `per_minute` units a millisecond, with nothing lost to rounding.
    units: u64,
    at: Timestamp,
}

impl ManualLimiter {
    /// A limiter; `per_minute == 0` allows everything.
    pub(crate) fn new(per_minute: u32) -> Self {
        ManualLimiter {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `account` at `now`, or says how many seconds until one is back.
    pub(crate) fn take(&self, account: &AccountId, now: Timestamp) -> Result<(), u64> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let rate = u64::from(self.per_minute);
        let capacity = rate * UNITS_PER_TOKEN;
        let refill = |b: Bucket| {
            let elapsed = now.0.saturating_sub(b.at.0);
            Bucket {
                units: b
                    .units
                    .saturating_add(elapsed.saturating_mul(rate))
                    .min(capacity),
                at: now,
            }
        };
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= TRACKED_MAX {
            buckets.retain(|_, b| refill(*b).units < capacity);
        }
        let bucket = buckets.entry(account.clone()).or_insert(Bucket {
            units: capacity,
            at: now,
        });
        *bucket = refill(*bucket);
        if bucket.units >= UNITS_PER_TOKEN {
            bucket.units -= UNITS_PER_TOKEN;
            return Ok(());
        }
        let missing_ms = (UNITS_PER_TOKEN - bucket.units).div_ceil(rate);
        Err(missing_ms.div_ceil(1000).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_one_action_per_refill() {
        let l = ManualLimiter::new(60);
        let a = AccountId::from("acc_1");
        for _ in 0..60 {
            assert_eq!(l.take(&a, Timestamp(0)), Ok(()));
        }
        assert_eq!(l.take(&a, Timestamp(0)), Err(1));
        assert_eq!(l.take(&a, Timestamp(500)), Err(1));
        assert_eq!(l.take(&a, Timestamp(1000)), Ok(()));
        assert_eq!(l.take(&a, Timestamp(1000)), Err(1));
        // Other accounts have their own bucket.
        assert_eq!(l.take(&AccountId::from("acc_2"), Timestamp(1000)), Ok(()));
    }

    #[test]
    fn a_slow_rate_says_when_to_come_back() {
        let l = ManualLimiter::new(2);
        let a = AccountId::from("acc_1");
        assert_eq!(l.take(&a, Timestamp(0)), Ok(()));
        assert_eq!(l.take(&a, Timestamp(0)), Ok(()));
        assert_eq!(l.take(&a, Timestamp(0)), Err(30));
        assert_eq!(l.take(&a, Timestamp(29_000)), Err(1));
        assert_eq!(l.take(&a, Timestamp(30_000)), Ok(()));
    }

    #[test]
    fn zero_means_no_limit() {
        let l = ManualLimiter::new(0);
        for _ in 0..10_000 {
            assert_eq!(l.take(&AccountId::from("acc_1"), Timestamp(0)), Ok(()));
        }
    }
}
