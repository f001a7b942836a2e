//! When memory may forget published event ids. A publish reads the store for its id before
//! the actor decides it, and memory is what catches a repeat the store cannot show yet. So
//! memory keeps an id until its record is durable (an expiry waits while a batch holding a
//! publish older than its cutoff is open or committing), and a publish whose store read came
//! before an expiry reads the store again when it is decided (the expiry count it read at).
//! Neither depends on how long a commit or a read takes, so memory's window can be short.
//! An expiry is due when the oldest id memory holds may be forgotten, never while it holds
//! none, so an engine that publishes nothing is not woken for it.

use hallway_domain::{
    decide, Command, CommandKind, DurationMs, Event, IdempotencyKey, Policy, State, Timestamp,
};
use hallway_store::{EventStore, StoreError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The least time between two expiries: a small fraction of `Policy::idempotency_memory`'s
/// default, so memory holds little more than that window, and each expiry forgets the ids of
/// several seconds at once.
const EXPIRY_EVERY: DurationMs = DurationMs::from_secs(5);

/// How soon an expiry held back by a batch not yet durable is tried again.
const EXPIRY_RETRY: DurationMs = DurationMs::from_secs(1);

/// The count of expiries memory has applied, shared with the handles that read the store.
#[derive(Clone, Default)]
pub(crate) struct Expiries(Arc<AtomicU64>);

impl Expiries {
    /// The count now: read before a store read, and compared when the publish is decided.
    pub(crate) fn current(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// The actor's side: when the next expiry is due, the oldest publish not yet durable, and
/// the expiry count.
pub(crate) struct IdMemory {
    expiries: Expiries,
    /// When memory may next forget an id.
    next_expiry: Timestamp,
    /// When the earliest publish of the open batch was decided.
    open_since: Option<Timestamp>,
    /// When the earliest publish of the batch in flight was decided.
    committing_since: Option<Timestamp>,
}

impl IdMemory {
    /// Memory over `expiries`, nothing open, an expiry due at `now` (for the ids a replay
    /// left in memory).
    pub(crate) fn new(expiries: Expiries, now: Timestamp) -> Self {
        IdMemory {
            expiries,
            next_expiry: now,
            open_since: None,
            committing_since: None,
        }
    }

    /// A publish decided into the open batch at `now`: the batch holds expiries back from its
    /// earliest publish (not its first: the wall clock may step back), and an expiry is due
    /// when this id may be forgotten.
    pub(crate) fn published(&mut self, now: Timestamp, policy: &Policy) {
        self.open_since = Some(self.open_since.map_or(now, |since| since.min(now)));
        self.next_expiry = self.next_expiry.min(policy.idempotency_memory_end(now));
    }

    /// When the next expiry is due.
    pub(crate) fn next_expiry(&self) -> Timestamp {
        self.next_expiry
    }

    /// Forgets the ids memory need not keep, if an expiry is due and none of them waits for
    /// its batch to be durable: decided and applied here, returned to be logged.
    pub(crate) fn expire(&mut self, now: Timestamp, state: &mut State) -> Vec<Event> {
        if now < self.next_expiry {
            return Vec::new();
        }
        if !self.may_forget_before(state.policy().idempotency_memory_start(now)) {
            self.next_expiry = now.plus(EXPIRY_RETRY);
            return Vec::new();
        }
        let events = decide(state, Command::new(now, CommandKind::ExpireIdempotencyKeys))
            .unwrap_or_default();
        for e in &events {
            state.apply(e);
        }
        if !events.is_empty() {
            self.expired();
        }
        self.next_expiry = match state.oldest_published() {
            Some(oldest) => state
                .policy()
                .idempotency_memory_end(oldest)
                .max(now.plus(EXPIRY_EVERY)),
            None => Timestamp(u64::MAX),
        };
        events
    }

    /// A publish whose store read came before memory last forgot ids may have missed one
    /// that memory held then: it reads the store again (which has every id memory forgot).
    /// Whatever the first read found: an older record (outside the window, or of an account
    /// since deleted) does not count, and the newer one is what memory forgot.
    pub(crate) fn read_again_if_stale(
        &self,
        store: &dyn EventStore,
        kind: &mut CommandKind,
        read: Option<u64>,
    ) -> Result<(), StoreError> {
        let Some(read_at) = read else { return Ok(()) };
        if self.read_stands(read_at) {
            return Ok(());
        }
        if let CommandKind::Publish {
            account_id,
            event,
            remembered,
            ..
        } = kind
        {
            if let Some(id) = &event.event_id {
                *remembered = store.published(&IdempotencyKey::of(account_id, id))?;
            }
        }
        Ok(())
    }

    /// The open batch started its commit.
    pub(crate) fn commit_started(&mut self) {
        self.committing_since = self.open_since.take();
    }

    /// The batch in flight is durable (and readable in the store).
    pub(crate) fn committed(&mut self) {
        self.committing_since = None;
    }

    /// Whether memory may forget the ids published before `before`: none of them is in a
    /// batch that is not durable yet.
    fn may_forget_before(&self, before: Timestamp) -> bool {
        [self.open_since, self.committing_since]
            .into_iter()
            .flatten()
            .all(|since| since >= before)
    }

    /// Memory forgot ids: store reads made before now may have missed them.
    fn expired(&self) {
        self.expiries.0.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether a store read made at expiry count `read_at` still stands (no expiry since).
    fn read_stands(&self, read_at: u64) -> bool {
        self.expiries.current() == read_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_a_batch_not_yet_durable_are_kept_until_it_is() {
        let mut m = IdMemory::new(Expiries::default(), Timestamp(0));
        assert!(m.may_forget_before(Timestamp(100)), "nothing open");
        m.published(Timestamp(10), &Policy::default());
        m.published(Timestamp(20), &Policy::default());
        assert!(
            !m.may_forget_before(Timestamp(11)),
            "the open batch's first"
        );
        assert!(m.may_forget_before(Timestamp(10)));
        m.commit_started();
        m.published(Timestamp(30), &Policy::default());
        assert!(!m.may_forget_before(Timestamp(11)), "the batch committing");
        m.committed();
        assert!(m.may_forget_before(Timestamp(30)));
        assert!(
            !m.may_forget_before(Timestamp(31)),
            "the next batch, still open"
        );
        m.commit_started();
        m.committed();
        assert!(m.may_forget_before(Timestamp(1_000)));
    }

    #[test]
    fn a_batch_is_held_by_its_earliest_publish_when_the_clock_steps_back() {
        let mut m = IdMemory::new(Expiries::default(), Timestamp(0));
        m.published(Timestamp(100), &Policy::default());
        m.published(Timestamp(60), &Policy::default());
        assert!(!m.may_forget_before(Timestamp(61)));
        m.commit_started();
        assert!(!m.may_forget_before(Timestamp(61)), "while it commits");
        m.committed();
        assert!(m.may_forget_before(Timestamp(61)));
    }

    #[test]
    fn a_read_stands_until_the_next_expiry() {
        let expiries = Expiries::default();
        let m = IdMemory::new(expiries.clone(), Timestamp(0));
        let read_at = expiries.current();
        assert!(m.read_stands(read_at));
        m.expired();
        assert!(!m.read_stands(read_at));
        assert!(m.read_stands(expiries.current()));
    }
}
