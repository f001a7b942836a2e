//! When memory may forget published event ids. A publish reads the store for its id before
//! the actor decides it, and memory is what catches a repeat the store cannot show yet. So
//! memory keeps an id until its record is durable (an expiry waits while a batch holding a
//! publish older than its cutoff is open or committing), and a publish whose store read came
//! before an expiry reads the store again when it is decided (the expiry count it read at).
//! Neither depends on how long a commit or a read takes, so memory's window can be short.

use hallway_domain::Timestamp;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The count of expiries memory has applied, shared with the handles that read the store.
#[derive(Clone, Default)]
pub(crate) struct Expiries(Arc<AtomicU64>);

impl Expiries {
    /// The count now: read before a store read, and compared when the publish is decided.
    pub(crate) fn current(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// The actor's side: the oldest publish not yet durable, and the expiry count.
pub(crate) struct IdMemory {
    expiries: Expiries,
    /// When the earliest publish of the open batch was decided.
    open_since: Option<Timestamp>,
    /// When the earliest publish of the batch in flight was decided.
    committing_since: Option<Timestamp>,
}

impl IdMemory {
    /// Memory over `expiries`, nothing open.
    pub(crate) fn new(expiries: Expiries) -> Self {
        IdMemory {
            expiries,
            open_since: None,
            committing_since: None,
        }
    }

    /// A publish decided into the open batch at `now`. The earliest, not the first: the
    /// wall clock may step back.
    pub(crate) fn published(&mut self, now: Timestamp) {
        self.open_since = Some(self.open_since.map_or(now, |since| since.min(now)));
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
    pub(crate) fn may_forget_before(&self, before: Timestamp) -> bool {
        [self.open_since, self.committing_since]
            .into_iter()
            .flatten()
            .all(|since| since >= before)
    }

    /// Memory forgot ids: store reads made before now may have missed them.
    pub(crate) fn expired(&self) {
        self.expiries.0.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether a store read made at expiry count `read_at` still stands (no expiry since).
    pub(crate) fn read_stands(&self, read_at: u64) -> bool {
        self.expiries.current() == read_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_a_batch_not_yet_durable_are_kept_until_it_is() {
        let mut m = IdMemory::new(Expiries::default());
        assert!(m.may_forget_before(Timestamp(100)), "nothing open");
        m.published(Timestamp(10));
        m.published(Timestamp(20));
        assert!(
            !m.may_forget_before(Timestamp(11)),
            "the open batch's first"
        );
        assert!(m.may_forget_before(Timestamp(10)));
        m.commit_started();
        m.published(Timestamp(30));
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
        let mut m = IdMemory::new(Expiries::default());
        m.published(Timestamp(100));
        m.published(Timestamp(60));
        assert!(!m.may_forget_before(Timestamp(61)));
        m.commit_started();
        assert!(!m.may_forget_before(Timestamp(61)), "while it commits");
        m.committed();
        assert!(m.may_forget_before(Timestamp(61)));
    }

    #[test]
    fn a_read_stands_until_the_next_expiry() {
        let expiries = Expiries::default();
        let m = IdMemory::new(expiries.clone());
        let read_at = expiries.current();
        assert!(m.read_stands(read_at));
        m.expired();
        assert!(!m.read_stands(read_at));
        assert!(m.read_stands(expiries.current()));
    }
}
