//! Time for the engine: the system clock in production, a manual clock in tests.

use hallway_domain::Timestamp;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// Longest single sleep on the system clock, in milliseconds.
const MAX_SYSTEM_SLEEP_MS: u64 = 1_000;

/// A boxed future that sleeps.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Where the engine gets `now` from, and how it waits for a deadline.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
    /// A future that completes once `now() >= deadline`, or earlier (callers re-check `now`).
    fn sleep_until(&self, deadline: Timestamp) -> Sleep;
}

/// Wall-clock time.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Timestamp(ms)
    }

    fn sleep_until(&self, deadline: Timestamp) -> Sleep {
        // Waits are capped so that a wall-clock step (NTP) delays a due attempt by at most
        // a second: the caller re-reads the clock and sleeps again.
        let wait = deadline
            .0
            .saturating_sub(self.now().0)
            .min(MAX_SYSTEM_SLEEP_MS);
        Box::pin(tokio::time::sleep(Duration::from_millis(wait)))
    }
}

/// A clock that moves only when a test moves it; sleepers wake when it passes their deadline.
#[derive(Clone, Debug)]
pub struct ManualClock {
    now: Arc<watch::Sender<u64>>,
}

impl ManualClock {
    /// A manual clock showing `start`.
    pub fn new(start: Timestamp) -> Self {
        ManualClock {
            now: Arc::new(watch::Sender::new(start.0)),
        }
    }

    /// Moves the clock forward by `ms` milliseconds.
    pub fn advance_ms(&self, ms: u64) {
        self.now.send_modify(|t| *t = t.saturating_add(ms));
    }

    /// The time now, in Unix seconds (what signatures carry).
    pub fn now_secs(&self) -> u64 {
        self.now().as_unix_seconds()
    }

    /// Sets the clock to `t` (never backwards).
    pub fn set(&self, t: Timestamp) {
        self.now.send_modify(|now| *now = (*now).max(t.0));
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(*self.now.borrow())
    }

    fn sleep_until(&self, deadline: Timestamp) -> Sleep {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            // The sender lives as long as the clock; if it is gone, time never moves again.
            let _ = rx.wait_for(|now| *now >= deadline.0).await;
        })
    }
}
