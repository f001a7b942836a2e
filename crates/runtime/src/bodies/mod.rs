//! The runtime's one body cache, owned by the actor: what an attempt sends, without a store
//! read when it can be helped.
//!
//! Three kinds of entry, one owner: bodies of attempts under way (kept while any uses them),
//! bodies of recent publishes (a byte budget, see [`recent`]), and store reads under way
//! (shared by the attempts that start while one runs). [`Bodies::published`] is the one place
//! that knows that an id published again replaces its body. The store's own caches sit below
//! its traits and are its business.

mod recent;

use crate::budget::Budget;
use bytes::Bytes;
use hallway_domain::{AccountId, EventId, Timestamp};
use recent::RecentBodies;
use std::collections::HashMap;
use std::sync::{Arc, Weak};

/// Which body: an event of an account.
pub(crate) type BodyKey = (AccountId, EventId);

/// A body's read from the store: none if it is gone or unreadable.
pub(crate) type BodyRead = tokio::sync::OnceCell<Option<Bytes>>;

/// Where an attempt gets its body.
pub(crate) enum Body {
    /// In memory.
    Ready(Bytes),
    /// From the store, through a read shared with the other attempts that need it now.
    Read(Arc<BodyRead>),
}

/// See the module documentation.
pub(crate) struct Bodies {
    /// Bodies of attempts under way, with how many attempts use each.
    in_use: HashMap<BodyKey, (Bytes, usize)>,
    /// Bodies of recent publishes, so first attempts need no store read.
    recent: RecentBodies,
    /// Store reads of bodies under way.
    reads: SharedReads,
}

impl Bodies {
    /// An empty cache whose recent bodies fit a memory budget of `memory_budget_bytes`.
    pub(crate) fn new(memory_budget_bytes: u64) -> Self {
        Bodies {
            in_use: HashMap::new(),
            recent: RecentBodies::with_budget(Budget::new(memory_budget_bytes).recent_body_bytes()),
            reads: SharedReads::new(),
        }
    }

    /// An event was published (or a test send created) with `waiting` first attempts to come.
    /// An id published again (after its idempotency window) sends its new body from now on,
    /// as the store keeps it, also to attempts of the earlier publish still to start or under
    /// way.
    pub(crate) fn published(&mut self, key: BodyKey, body: Bytes, waiting: u32, now: Timestamp) {
        if let Some((in_use, _)) = self.in_use.get_mut(&key) {
            *in_use = body.clone();
        }
        self.recent.insert(key, body, waiting, now);
    }

    /// An id published again whose new body the store keeps though nothing sends it now (its
    /// deliveries are paused): attempts of the earlier publish send it from now on too.
    pub(crate) fn replaced(&mut self, key: &BodyKey, body: Bytes) {
        if let Some((in_use, _)) = self.in_use.get_mut(key) {
            *in_use = body;
        }
        // Read from the store when next needed, where the new body is once this is durable.
        self.recent.forget(key);
    }

    /// The body for an attempt that starts now; `release` it when the attempt reports.
    pub(crate) fn checkout(&mut self, key: &BodyKey, first_attempt: bool) -> Body {
        if first_attempt {
            self.recent.started(key);
        }
        if let Some((body, users)) = self.in_use.get_mut(key) {
            *users += 1;
            return Body::Ready(body.clone());
        }
        match self.recent.get(key) {
            Some(body) => {
                self.in_use.insert(key.clone(), (body.clone(), 1));
                Body::Ready(body)
            }
            None => Body::Read(self.reads.of(key)),
        }
    }

    /// An attempt that used the body reported.
    pub(crate) fn release(&mut self, key: &BodyKey) {
        if let Some(entry) = self.in_use.get_mut(key) {
            entry.1 = entry.1.saturating_sub(1);
            if entry.1 == 0 {
                self.in_use.remove(key);
            }
        }
    }
}

/// Store reads of bodies under way, shared by the attempts that start while one runs: a
/// fan-out's deliveries are due together, and would otherwise read the body once each.
struct SharedReads {
    reads: HashMap<BodyKey, Weak<BodyRead>>,
    /// When `reads` is next swept of finished reads.
    sweep_at: usize,
}

impl SharedReads {
    fn new() -> Self {
        SharedReads {
            reads: HashMap::new(),
            sweep_at: 1024,
        }
    }

    /// The read of `key` under way, or a new one.
    fn of(&mut self, key: &BodyKey) -> Arc<BodyRead> {
        if let Some(read) = self.reads.get(key).and_then(Weak::upgrade) {
            return read;
        }
        if self.reads.len() >= self.sweep_at {
            // Reads whose attempts all have their body are gone: forget their names.
            self.reads.retain(|_, r| r.strong_count() > 0);
            self.sweep_at = 2 * self.reads.len() + 1024;
        }
        let read = Arc::new(BodyRead::new());
        self.reads.insert(key.clone(), Arc::downgrade(&read));
        read
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32) -> BodyKey {
        (AccountId::from("acc"), EventId::from(format!("evt_{n}")))
    }

    fn ready(b: Body) -> Bytes {
        match b {
            Body::Ready(b) => b,
            Body::Read(_) => panic!("expected the body in memory"),
        }
    }

    #[test]
    fn attempts_starting_together_share_one_read_and_finished_reads_are_forgotten() {
        let mut reads = SharedReads::new();
        let first = reads.of(&key(0));
        let second = reads.of(&key(0));
        assert!(Arc::ptr_eq(&first, &second));
        assert!(first.set(Some(Bytes::from_static(b"{}"))).is_ok());
        assert_eq!(second.get(), Some(&Some(Bytes::from_static(b"{}"))));
        drop((first, second));
        assert!(
            reads.of(&key(0)).get().is_none(),
            "a finished read is not reused"
        );
        for n in 1..10_000 {
            drop(reads.of(&key(n)));
        }
        assert!(reads.reads.len() <= 1024);
    }

    #[test]
    fn a_republished_id_replaces_the_body_of_attempts_to_start_and_under_way() {
        let mut b = Bodies::new(crate::config::DEFAULT_MEMORY_BUDGET_BYTES);
        b.published(key(0), Bytes::from_static(b"old"), 2, Timestamp(0));
        assert_eq!(ready(b.checkout(&key(0), true)), "old");
        b.published(key(0), Bytes::from_static(b"new"), 1, Timestamp(1));
        // A retry of the earlier publish's attempt under way, and a new first attempt.
        assert_eq!(ready(b.checkout(&key(0), false)), "new");
        assert_eq!(ready(b.checkout(&key(0), true)), "new");
    }

    #[test]
    fn a_republish_with_only_paused_deliveries_replaces_the_body_kept_and_in_use() {
        let mut b = Bodies::new(crate::config::DEFAULT_MEMORY_BUDGET_BYTES);
        b.published(key(0), Bytes::from_static(b"old"), 2, Timestamp(0));
        assert_eq!(ready(b.checkout(&key(0), true)), "old");
        b.replaced(&key(0), Bytes::from_static(b"new"));
        assert_eq!(ready(b.checkout(&key(0), false)), "new");
        b.release(&key(0));
        b.release(&key(0));
        assert!(
            matches!(b.checkout(&key(0), true), Body::Read(_)),
            "the old body is not kept: the store has the new one"
        );
    }

    #[test]
    fn a_body_in_use_stays_until_its_last_attempt_reports() {
        let mut b = Bodies::new(crate::config::DEFAULT_MEMORY_BUDGET_BYTES);
        b.published(key(0), Bytes::from_static(b"x"), 1, Timestamp(0));
        ready(b.checkout(&key(0), true));
        ready(b.checkout(&key(0), false));
        b.release(&key(0));
        assert!(b.in_use.contains_key(&key(0)));
        b.release(&key(0));
        assert!(!b.in_use.contains_key(&key(0)));
        assert!(matches!(b.checkout(&key(1), false), Body::Read(_)));
    }
}
