//! The actor's one timer: armed for the deadline its parts poll, re-armed only when that
//! deadline changes, so a busy loop does not build a sleep per turn and an idle one sleeps
//! until something is due.

use crate::clock::{Clock, Sleep};
use hallway_domain::Timestamp;
use std::sync::Arc;

/// See the module documentation.
pub(crate) struct Timer {
    clock: Arc<dyn Clock>,
    deadline: Option<Timestamp>,
    sleep: Option<Sleep>,
}

impl Timer {
    /// A timer armed for nothing.
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Self {
        Timer {
            clock,
            deadline: None,
            sleep: None,
        }
    }

    /// Arms the timer for `deadline` (none: never), keeping the sleep under way if it is the
    /// same deadline.
    pub(crate) fn set(&mut self, deadline: Option<Timestamp>) {
        if deadline == self.deadline && (deadline.is_none() || self.sleep.is_some()) {
            return;
        }
        self.deadline = deadline;
        self.sleep = deadline.map(|t| self.clock.sleep_until(t));
    }

    /// Completes once the clock reaches the deadline; then the timer is spent until `set`
    /// arms it again. A clock may end a sleep early (the system clock caps its sleeps, to
    /// notice wall-clock steps): the timer then sleeps again without waking its owner.
    /// Cancel-safe: the sleep under way is kept.
    pub(crate) async fn fired(&mut self) {
        loop {
            let (Some(deadline), Some(sleep)) = (self.deadline, self.sleep.as_mut()) else {
                return std::future::pending().await;
            };
            sleep.await;
            if self.clock.now() >= deadline {
                self.sleep = None;
                return;
            }
            self.sleep = Some(self.clock.sleep_until(deadline));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::time::Duration;

    #[tokio::test]
    async fn fires_at_its_deadline_and_not_before() {
        let clock = ManualClock::new(Timestamp(0));
        let mut timer = Timer::new(Arc::new(clock.clone()));
        timer.set(Some(Timestamp(10)));
        clock.advance_ms(5);
        let early = tokio::time::timeout(Duration::from_millis(20), timer.fired()).await;
        assert!(early.is_err(), "not due yet");
        clock.advance_ms(5);
        let due = tokio::time::timeout(Duration::from_secs(5), timer.fired()).await;
        assert!(due.is_ok());
        let spent = tokio::time::timeout(Duration::from_millis(20), timer.fired()).await;
        assert!(spent.is_err(), "a spent timer waits for set");
        timer.set(Some(Timestamp(10)));
        let again = tokio::time::timeout(Duration::from_secs(5), timer.fired()).await;
        assert!(
            again.is_ok(),
            "re-armed for a passed deadline, it fires at once"
        );
    }

    #[tokio::test]
    async fn without_a_deadline_it_never_fires() {
        let clock = ManualClock::new(Timestamp(0));
        let mut timer = Timer::new(Arc::new(clock.clone()));
        timer.set(None);
        clock.advance_ms(1_000_000);
        let never = tokio::time::timeout(Duration::from_millis(20), timer.fired()).await;
        assert!(never.is_err());
    }
}
