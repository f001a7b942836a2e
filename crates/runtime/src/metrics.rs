//! Counters the engine keeps for `/metrics`.

use hallway_domain::AttemptError;
use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters, updated by the actor and read by anyone.
#[derive(Debug, Default)]
pub struct Metrics {
    published: AtomicU64,
    duplicate_publishes: AtomicU64,
    succeeded: AtomicU64,
    failed: [AtomicU64; 6],
    pending: AtomicU64,
    in_flight: AtomicU64,
    batches: AtomicU64,
    events_logged: AtomicU64,
}

/// Every error class, in a fixed order for the `failed` counters.
pub const ERROR_CLASSES: [AttemptError; 6] = [
    AttemptError::Timeout,
    AttemptError::Connect,
    AttemptError::Tls,
    AttemptError::HttpStatus,
    AttemptError::BlockedTarget,
    AttemptError::InvalidResponse,
];

fn error_index(e: AttemptError) -> usize {
    ERROR_CLASSES.iter().position(|c| *c == e).unwrap_or(0)
}

/// A copy of the counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Events published (first publishes only).
    pub published: u64,
    /// Publishes answered from the idempotency record.
    pub duplicate_publishes: u64,
    /// Attempts that succeeded.
    pub attempts_succeeded: u64,
    /// Failed attempts by error class, in [`ERROR_CLASSES`] order.
    pub attempts_failed: Vec<(AttemptError, u64)>,
    /// Unfinished deliveries.
    pub pending: u64,
    /// Attempts under way.
    pub in_flight: u64,
    /// Log records committed.
    pub batches: u64,
    /// Events logged.
    pub events_logged: u64,
}

impl Metrics {
    pub(crate) fn published(&self) {
        self.published.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn duplicate_publish(&self) {
        self.duplicate_publishes.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn succeeded(&self) {
        self.succeeded.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn failed(&self, e: AttemptError) {
        self.failed[error_index(e)].fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn committed(&self, events: usize) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.events_logged
            .fetch_add(events as u64, Ordering::Relaxed);
    }
    pub(crate) fn gauges(&self, pending: usize, in_flight: usize) {
        self.pending.store(pending as u64, Ordering::Relaxed);
        self.in_flight.store(in_flight as u64, Ordering::Relaxed);
    }

    /// A copy of every counter.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            published: self.published.load(Ordering::Relaxed),
            duplicate_publishes: self.duplicate_publishes.load(Ordering::Relaxed),
            attempts_succeeded: self.succeeded.load(Ordering::Relaxed),
            attempts_failed: ERROR_CLASSES
                .iter()
                .zip(&self.failed)
                .map(|(c, n)| (*c, n.load(Ordering::Relaxed)))
                .collect(),
            pending: self.pending.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            events_logged: self.events_logged.load(Ordering::Relaxed),
        }
    }
}
