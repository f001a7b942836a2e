//! Simulated time: the engine's `Clock` on tokio's clock, which the simulation's runtime keeps
//! paused, so it moves only when every task waits, straight to the next deadline.

use hallway_domain::Timestamp;
use hallway_runtime::clock::Sleep;
use hallway_runtime::Clock;
use std::time::Duration;
use tokio::time::Instant;

/// The simulated wall clock: `epoch` at `base`, then tokio's (paused) time since.
#[derive(Clone, Copy, Debug)]
pub struct SimClock {
    epoch: Timestamp,
    base: Instant,
}

impl SimClock {
    /// A clock showing `epoch` now; call inside the simulation's runtime.
    pub fn start(epoch: Timestamp) -> SimClock {
        SimClock {
            epoch,
            base: Instant::now(),
        }
    }

    /// Milliseconds since the simulation started.
    pub fn elapsed_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    /// The tokio instant of a timestamp (timestamps before the start map to the start).
    pub fn instant_of(&self, t: Timestamp) -> Instant {
        self.base + Duration::from_millis(t.0.saturating_sub(self.epoch.0))
    }
}

impl Clock for SimClock {
    fn now(&self) -> Timestamp {
        self.epoch
            .plus(hallway_domain::DurationMs(self.elapsed_ms()))
    }

    fn sleep_until(&self, deadline: Timestamp) -> Sleep {
        Box::pin(tokio::time::sleep_until(self.instant_of(deadline)))
    }
}
