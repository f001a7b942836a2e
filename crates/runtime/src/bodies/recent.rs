//! Bodies of recent publishes, kept in memory so that first attempts need no store read.
//!
//! The budget is bytes. When it is full, a body no first attempt still waits for goes first;
//! if there is none, the new body is not kept. Under a backlog the deliveries start in
//! publish order, so the bodies published last are the ones needed last: evicting the oldest
//! (plain FIFO) would send nearly every start to the store exactly when the engine is
//! busiest.

use super::BodyKey;
use bytes::Bytes;
use hallway_domain::Timestamp;
use std::collections::{HashMap, VecDeque};

/// How long a body whose first attempts have not all started may hold its place against
/// newer ones, in ms. Past it, its deliveries are taken to be stuck (their webhook was
/// disabled, or they were cancelled) and it may be evicted like a body nobody waits for.
pub(crate) const STALE_AFTER_MS: u64 = 10 * 60 * 1000;

struct Entry {
    body: Bytes,
    /// First attempts not started yet.
    waiting: u32,
    at: Timestamp,
}

/// See the module documentation.
pub(crate) struct RecentBodies {
    budget: usize,
    map: HashMap<BodyKey, Entry>,
    /// Keys in the order they were kept; may name keys already gone (skipped when met).
    order: VecDeque<BodyKey>,
    /// Keys whose first attempts have all started, in that order: the first to go.
    done: VecDeque<BodyKey>,
    bytes: usize,
}

impl RecentBodies {
    /// An empty set holding at most `budget` bytes of bodies.
    pub(crate) fn with_budget(budget: usize) -> Self {
        RecentBodies {
            budget,
            map: HashMap::new(),
            order: VecDeque::new(),
            done: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Keeps `body` for `waiting` first attempts if there is room, or room can be made.
    /// Returns whether it was kept. A body kept under the same key is replaced, and its
    /// waiting first attempts carry over (the caller, `Bodies::published`, decides that a
    /// republished id replaces its body).
    pub(crate) fn insert(
        &mut self,
        key: BodyKey,
        body: Bytes,
        waiting: u32,
        now: Timestamp,
    ) -> bool {
        let waiting = match self.map.get(&key) {
            Some(old) => {
                let still = old.waiting.saturating_add(waiting);
                self.remove(&key);
                still
            }
            None => waiting,
        };
        while self.bytes + body.len() > self.budget {
            if !self.evict_one(now) {
                return false;
            }
        }
        self.bytes += body.len();
        if waiting == 0 {
            self.done.push_back(key.clone());
        }
        self.order.push_back(key.clone());
        self.map.insert(
            key,
            Entry {
                body,
                waiting,
                at: now,
            },
        );
        self.compact();
        true
    }

    /// A first attempt of the body's event started.
    pub(crate) fn started(&mut self, key: &BodyKey) {
        if let Some(e) = self.map.get_mut(key) {
            if e.waiting > 0 {
                e.waiting -= 1;
                if e.waiting == 0 {
                    self.done.push_back(key.clone());
                }
            }
        }
    }

    /// The body, if kept.
    pub(crate) fn get(&self, key: &BodyKey) -> Option<Bytes> {
        self.map.get(key).map(|e| e.body.clone())
    }

    /// Whether the body is kept.
    #[cfg(test)]
    fn contains(&self, key: &BodyKey) -> bool {
        self.map.contains_key(key)
    }

    /// Bytes of the bodies kept.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.bytes
    }

    /// Drops a body whose store copy was replaced.
    pub(crate) fn forget(&mut self, key: &BodyKey) {
        self.remove(key);
    }

    fn remove(&mut self, key: &BodyKey) {
        if let Some(e) = self.map.remove(key) {
            self.bytes -= e.body.len();
        }
    }

    /// Evicts a body nobody waits for, else the oldest if it is stale. False if neither.
    fn evict_one(&mut self, now: Timestamp) -> bool {
        while let Some(key) = self.done.pop_front() {
            if self.map.get(&key).is_some_and(|e| e.waiting == 0) {
                self.remove(&key);
                return true;
            }
        }
        while let Some(key) = self.order.front() {
            match self.map.get(key) {
                None => {
                    self.order.pop_front();
                }
                Some(e) if now.0.saturating_sub(e.at.0) >= STALE_AFTER_MS => {
                    if let Some(key) = self.order.pop_front() {
                        self.remove(&key);
                    }
                    return true;
                }
                Some(_) => return false,
            }
        }
        false
    }

    /// Drops the queues' names of keys already gone once they outnumber the live ones, so
    /// the queues stay proportional to what is kept.
    fn compact(&mut self) {
        let live = self.map.len();
        if self.order.len() > 2 * live + 1024 {
            let map = &self.map;
            self.order.retain(|k| map.contains_key(k));
        }
        if self.done.len() > 2 * live + 1024 {
            let map = &self.map;
            self.done
                .retain(|k| map.get(k).is_some_and(|e| e.waiting == 0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hallway_domain::{AccountId, EventId};

    fn key(n: u32) -> BodyKey {
        (AccountId::from("acc"), EventId::from(format!("evt_{n}")))
    }

    fn body() -> Bytes {
        Bytes::from(vec![b'x'; 100])
    }

    #[test]
    fn when_full_a_waited_for_body_stays_and_the_newest_is_not_kept() {
        let mut r = RecentBodies::with_budget(300);
        for n in 0..3 {
            assert!(r.insert(key(n), body(), 5, Timestamp(0)));
        }
        assert!(!r.insert(key(3), body(), 5, Timestamp(1)));
        assert!((0..3).all(|n| r.contains(&key(n))));
        assert!(!r.contains(&key(3)));
        assert_eq!(r.bytes(), 300);
    }

    #[test]
    fn a_body_whose_first_attempts_all_started_goes_first() {
        let mut r = RecentBodies::with_budget(300);
        for n in 0..3 {
            r.insert(key(n), body(), 2, Timestamp(0));
        }
        r.started(&key(1));
        assert!(
            !r.insert(key(3), body(), 2, Timestamp(1)),
            "1 still waits once"
        );
        r.started(&key(1));
        assert!(r.insert(key(3), body(), 2, Timestamp(1)));
        assert!(!r.contains(&key(1)));
        assert!(r.contains(&key(0)) && r.contains(&key(2)) && r.contains(&key(3)));
        // A started count beyond the waiting ones changes nothing.
        r.started(&key(1));
        assert_eq!(r.bytes(), 300);
    }

    #[test]
    fn an_id_published_again_replaces_its_body() {
        let mut r = RecentBodies::with_budget(1_000);
        r.insert(key(0), body(), 1, Timestamp(0));
        let newer = Bytes::from(vec![b'y'; 150]);
        assert!(r.insert(key(0), newer.clone(), 2, Timestamp(5)));
        assert_eq!(r.get(&key(0)), Some(newer));
        assert_eq!(r.bytes(), 150);
        // The waiting first attempts of both publishes count.
        r.started(&key(0));
        r.started(&key(0));
        assert!(r.done.is_empty());
        r.started(&key(0));
        assert_eq!(r.done.len(), 1);
    }

    #[test]
    fn a_stale_body_gives_way_to_a_new_one() {
        let mut r = RecentBodies::with_budget(200);
        r.insert(key(0), body(), 1, Timestamp(0));
        r.insert(key(1), body(), 1, Timestamp(10));
        assert!(!r.insert(key(2), body(), 1, Timestamp(STALE_AFTER_MS - 1)));
        assert!(r.insert(key(2), body(), 1, Timestamp(STALE_AFTER_MS)));
        assert!(!r.contains(&key(0)));
        assert!(r.contains(&key(1)) && r.contains(&key(2)));
    }

    #[test]
    fn queues_stay_bounded_while_bodies_come_and_go() {
        let mut r = RecentBodies::with_budget(1_000);
        for n in 0..100_000 {
            assert!(r.insert(key(n), body(), 1, Timestamp(0)));
            r.started(&key(n));
        }
        assert!(r.order.len() <= 2 * r.map.len() + 1025);
        assert!(r.done.len() <= 2 * r.map.len() + 1025);
        assert_eq!(r.bytes(), 1_000);
    }
}
