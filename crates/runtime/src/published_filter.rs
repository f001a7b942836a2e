//! A filter in front of the store's published ids (`ReadModel::published`): a publish whose
//! id the filter has never seen skips the store read, since the store cannot know it.
//!
//! It answers "maybe" for every id it was given and, by chance, for a few it was not (a
//! blocked Bloom filter: all of a key's bits in one 512-bit block, one cache line). It holds
//! ids in generations by publish time, each a third of the retention window long, so the ids
//! that left the window leave with their generation. Until the store's ids are all in it (the
//! engine fills it from the store in the background when it opens) it says "maybe" to
//! everything, and so does a generation filled past its capacity: a wrong "maybe" costs only
//! the read the engine would have made anyway, a wrong "no" would publish a repeat.

use crate::clock::Clock;
use hallway_domain::{DurationMs, IdempotencyKey, Timestamp};
use hallway_store::EventStore;
use std::sync::{Arc, Mutex, Weak};
use tracing::warn;

/// Ids read from the store per call while filling.
const FILL_CHUNK: usize = 4096;

/// Bits of a key set in its block. With about ten bits per id, one id in a hundred or so
/// not given reads as "maybe".
const PROBES: u32 = 6;

/// A block: 512 bits, one cache line.
const BLOCK_WORDS: usize = 8;

/// Bits per id a generation is sized for; past that many ids it answers "maybe" to all.
const BITS_PER_ID: u64 = 10;

/// Generations per retention window (each a third of it). One more than the window needs is
/// kept, so an id's publish time as the store has it (the actor's clock, a moment after the
/// time the filter was given) is never past a generation already dropped.
const GENERATIONS_PER_WINDOW: u64 = 3;

/// Most generations kept; one more (a clock moved back past a generation) makes the filter
/// answer "maybe" to everything rather than drop ids still inside the window.
const MAX_GENERATIONS: usize = 6;

/// Ids published since `start`, for one generation's span.
struct Generation {
    start: Timestamp,
    words: Vec<u64>,
    ids: u64,
}

struct Inner {
    /// Every id the store knew when the engine opened has been added.
    ready: bool,
    /// More generations than [`MAX_GENERATIONS`] were asked for.
    overflowed: bool,
    generations: Vec<Generation>,
}

/// The filter; shared by every publish (`EngineHandle::publish`).
pub(crate) struct PublishedFilter {
    window: DurationMs,
    span: u64,
    words_per_generation: usize,
    inner: Mutex<Inner>,
}

/// A key's block and its bits within the block.
type Probe = (usize, [u32; PROBES as usize]);

/// The block index and the bits within it of `key`: its event part is already SHA-256 output,
/// so its bytes are used as they are.
fn probes(key: &IdempotencyKey, blocks: usize) -> Probe {
    let bytes = key.to_bytes();
    let word = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[i..i + 8]);
        u64::from_le_bytes(b)
    };
    let (h1, h2) = (word(8), word(16));
    let block = (h1 % blocks as u64) as usize;
    let mut bits = [0u32; PROBES as usize];
    for (i, bit) in bits.iter_mut().enumerate() {
        *bit = ((h2 >> (i as u32 * 9)) & 511) as u32;
    }
    (block, bits)
}

impl PublishedFilter {
    /// A filter of about `bytes` in all for ids published within `window` (the retention
    /// window: an older id is new again).
    pub(crate) fn new(bytes: usize, window: DurationMs) -> PublishedFilter {
        let live = GENERATIONS_PER_WINDOW as usize + 2;
        let blocks = (bytes / 8 / BLOCK_WORDS / live).max(1);
        PublishedFilter {
            window,
            span: (window.0 / GENERATIONS_PER_WINDOW).max(1),
            words_per_generation: blocks * BLOCK_WORDS,
            inner: Mutex::new(Inner {
                ready: false,
                overflowed: false,
                generations: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn capacity(&self) -> u64 {
        self.words_per_generation as u64 * 64 / BITS_PER_ID
    }

    /// Whether the store may know `key` at `now` (`false` only if it certainly does not),
    /// then adds it as published at `now`: a publish asks and adds before it is decided, so
    /// the filter knows an id before the store can. One lock and one hash for both.
    pub(crate) fn check_and_add(&self, key: &IdempotencyKey, now: Timestamp) -> bool {
        let probe = self.probe(key);
        let mut inner = self.lock();
        let known = self.knows(&inner, &probe, now);
        self.insert(&mut inner, &probe, now, now);
        known
    }

    /// Whether the store may know `key` at `now`, without adding it.
    #[cfg(test)]
    fn may_know(&self, key: &IdempotencyKey, now: Timestamp) -> bool {
        let probe = self.probe(key);
        self.knows(&self.lock(), &probe, now)
    }

    /// Adds `key`, published at `at`, as of `now` (the fill, from the store).
    pub(crate) fn add(&self, key: &IdempotencyKey, at: Timestamp, now: Timestamp) {
        let probe = self.probe(key);
        self.insert(&mut self.lock(), &probe, at, now);
    }

    fn probe(&self, key: &IdempotencyKey) -> Probe {
        probes(key, self.words_per_generation / BLOCK_WORDS)
    }

    fn knows(&self, inner: &Inner, (block, bits): &Probe, now: Timestamp) -> bool {
        if !inner.ready || inner.overflowed {
            return true;
        }
        let oldest = now.0.saturating_sub(self.window.0 + self.span);
        inner
            .generations
            .iter()
            .filter(|g| g.start.0.saturating_add(self.span) > oldest)
            .any(|g| {
                g.ids > self.capacity() || {
                    let words = &g.words[block * BLOCK_WORDS..(block + 1) * BLOCK_WORDS];
                    bits.iter()
                        .all(|&b| words[(b / 64) as usize] & (1 << (b % 64)) != 0)
                }
            })
    }

    fn insert(&self, inner: &mut Inner, (block, bits): &Probe, at: Timestamp, now: Timestamp) {
        let span = self.span;
        let start = Timestamp(at.0 - at.0 % span);
        // Generations whose every id is out of the window (and its margin) go, and so does
        // such an id: it would not count if it were asked about.
        let oldest = now.0.saturating_sub(self.window.0 + span);
        if start.0.saturating_add(span) <= oldest {
            return;
        }
        inner
            .generations
            .retain(|g| g.start.0.saturating_add(span) > oldest);
        let i = match inner.generations.iter().position(|g| g.start == start) {
            Some(i) => i,
            None if inner.generations.len() >= MAX_GENERATIONS => {
                inner.overflowed = true;
                return;
            }
            None => {
                inner.generations.push(Generation {
                    start,
                    words: vec![0; self.words_per_generation],
                    ids: 0,
                });
                inner.generations.len() - 1
            }
        };
        let g = &mut inner.generations[i];
        g.ids += 1;
        let words = &mut g.words[block * BLOCK_WORDS..(block + 1) * BLOCK_WORDS];
        for b in bits {
            words[(b / 64) as usize] |= 1 << (b % 64);
        }
    }

    /// Whether "no" answers have begun.
    pub(crate) fn is_ready(&self) -> bool {
        self.lock().ready
    }

    /// Every id the store knew at open has been added: "no" answers may begin.
    pub(crate) fn set_ready(&self) {
        self.lock().ready = true;
    }
}

/// Adds every id the store knows to `filter` in the background, a chunk at a time, then lets
/// it answer "no". It holds neither the store nor the filter between chunks, so a stopping
/// engine is not kept open; a store that cannot list its ids, or fails to, leaves the filter
/// answering "maybe" (every publish reads the store, as without a filter).
pub(crate) fn fill(
    store: &Arc<dyn EventStore>,
    filter: &Arc<PublishedFilter>,
    clock: Arc<dyn Clock>,
) {
    let (store, filter) = (Arc::downgrade(store), Arc::downgrade(filter));
    tokio::spawn(async move {
        let mut after = None;
        loop {
            let Some(s) = store.upgrade() else { return };
            let call =
                crate::store_calls::spawn(&*s.clone(), move || s.published_ids(after, FILL_CHUNK));
            let ids = match call.await {
                Ok(Ok(Some(ids))) => ids,
                Ok(Ok(None)) => return,
                Ok(Err(e)) => {
                    warn!(error = %e, "listing the published ids failed; every publish with an id reads the store");
                    return;
                }
                Err(_) => return,
            };
            let Some(f) = Weak::upgrade(&filter) else {
                return;
            };
            let now = clock.now();
            for (bytes, at) in &ids {
                f.add(&IdempotencyKey::from_bytes(*bytes), *at, now);
            }
            match ids.last() {
                Some((last, _)) if ids.len() == FILL_CHUNK => after = Some(*last),
                _ => {
                    f.set_ready();
                    return;
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use hallway_domain::{AccountId, EventId};

    const DAY: u64 = 24 * 3600 * 1000;

    fn key(i: u64) -> IdempotencyKey {
        IdempotencyKey::of(
            &AccountId::from("acct_1"),
            &EventId::from(format!("evt_{i}")),
        )
    }

    fn filter() -> PublishedFilter {
        let f = PublishedFilter::new(1 << 20, DurationMs(30 * DAY));
        f.set_ready();
        f
    }

    #[test]
    fn says_maybe_to_everything_until_ready() {
        let f = PublishedFilter::new(1 << 20, DurationMs(30 * DAY));
        assert!(f.may_know(&key(1), Timestamp(DAY)));
        f.set_ready();
        assert!(!f.may_know(&key(1), Timestamp(DAY)));
    }

    #[test]
    fn a_publish_is_answered_before_its_id_is_added() {
        let f = filter();
        let now = Timestamp(100 * DAY);
        assert!(!f.check_and_add(&key(1), now), "never seen: no store read");
        assert!(
            f.check_and_add(&key(1), now),
            "seen once: the store may know it"
        );
    }

    #[test]
    fn never_says_no_to_an_id_it_was_given_inside_the_window() {
        let f = filter();
        let t0 = 100 * DAY;
        for i in 0..20_000 {
            // Spread over 29 days, so the ids fall in several generations.
            let at = Timestamp(t0 + i * (29 * DAY / 20_000));
            f.add(&key(i), at, at);
        }
        let now = Timestamp(t0 + 29 * DAY);
        assert!((0..20_000).all(|i| f.may_know(&key(i), now)));
    }

    #[test]
    fn says_no_to_most_ids_it_was_not_given() {
        let f = filter();
        let now = Timestamp(100 * DAY);
        for i in 0..20_000 {
            f.add(&key(i), now, now);
        }
        let wrong = (20_000..120_000)
            .filter(|&i| f.may_know(&key(i), now))
            .count();
        // 1 MiB for 20,000 ids is far below capacity: the false "maybe"s are rare.
        assert!(wrong < 100, "{wrong} of 100,000 unseen ids read as maybe");
    }

    #[test]
    fn forgets_ids_that_left_the_window_with_their_generation() {
        let f = filter();
        f.add(&key(1), Timestamp(100 * DAY), Timestamp(100 * DAY));
        assert!(f.may_know(&key(1), Timestamp(100 * DAY + 29 * DAY)));
        assert!(f.may_know(&key(1), Timestamp(100 * DAY + 39 * DAY)));
        // Two thirds of the window past the window's end, its generation is dropped.
        let later = Timestamp(100 * DAY + 51 * DAY);
        f.add(&key(2), later, later);
        assert!(!f.may_know(&key(1), later));
        assert_eq!(f.lock().generations.len(), 1);
    }

    #[test]
    fn an_id_already_out_of_the_window_is_not_added() {
        let f = filter();
        let now = Timestamp(100 * DAY);
        // What the store still holds until its retention runs, read when the filter fills.
        f.add(&key(1), Timestamp(now.0 - 45 * DAY), now);
        assert!(f.lock().generations.is_empty());
        f.add(&key(2), Timestamp(now.0 - 35 * DAY), now);
        assert!(
            f.may_know(&key(2), now),
            "inside the window's margin it is kept"
        );
    }

    #[test]
    fn a_full_generation_says_maybe_to_all() {
        let f = PublishedFilter::new(4096, DurationMs(30 * DAY));
        f.set_ready();
        let now = Timestamp(100 * DAY);
        for i in 0..f.capacity() + 1 {
            f.add(&key(i), now, now);
        }
        assert!((1_000_000..1_000_100).all(|i| f.may_know(&key(i), now)));
    }

    #[test]
    fn a_clock_moved_back_past_many_generations_makes_it_say_maybe() {
        let f = filter();
        for g in 0..=MAX_GENERATIONS as u64 {
            let at = Timestamp(130 * DAY - g * 10 * DAY);
            f.add(&key(g), at, at);
        }
        assert!(f.may_know(&key(999), Timestamp(130 * DAY)));
    }
}
