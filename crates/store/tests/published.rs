//! Published event ids for the whole idempotency window: memory keeps only the last minutes
//! of them, so the store must hold each from the append that logs its publish until retention,
//! across a reopen, and forget an account's when it is purged.

mod common;

use common::{fan_out, host_event_json, Sim};
use hallway_domain::envelope::prepare;
use hallway_domain::{
    CommandKind, DurationMs, Event, EventId, IdempotencyKey, Policy, Published, Timestamp,
    WebhookId,
};
use hallway_store::{EventLog, MemoryStore, ReadModel, SledStore};

fn policy() -> Policy {
    Policy {
        retention: DurationMs::from_mins(30),
        idempotency_memory: DurationMs::from_mins(1),
        ..Policy::default()
    }
}

/// Publishes `id` (a new body each time) and returns what its publish recorded.
fn publish(sim: &mut Sim, id: &str, n: u64) -> (Vec<Event>, Published) {
    let raw = host_event_json(id, "prj_1", 200 + (n % 100) as usize);
    let event = prepare(raw.as_bytes(), sim.state.policy()).expect("valid host event");
    let events = sim.run(CommandKind::Publish {
        account_id: sim.account.clone(),
        event,
        fresh_event_id: EventId::from("evt_unused"),
        fan_out: fan_out(sim.now, n),
        first_index: 0,
        remembered: None,
    });
    let Some((_, published)) = events.first().and_then(Published::of) else {
        panic!("not a publish: {events:?}");
    };
    (events, published)
}

/// A new store in `dir` with one account's set-up logged, and the simulation that made it.
fn opened(dir: &std::path::Path, seed: u64) -> (SledStore, Sim) {
    let store = SledStore::open(dir).expect("opens");
    let (sim, setup) = Sim::new(policy(), 1, seed);
    store.append(&setup).expect("appends");
    (store, sim)
}

fn key(sim: &Sim, id: &str) -> IdempotencyKey {
    IdempotencyKey::of(&sim.account, &EventId::from(id))
}

#[test]
fn every_published_id_is_kept_with_its_publish_across_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut sim, setup) = Sim::new(policy(), 2, 7);
    let mut expected = Vec::new();
    {
        let store = SledStore::open(dir.path()).expect("opens");
        store.append(&setup).expect("appends");
        let mut batch = Vec::new();
        for (n, id) in ["evt_a", "evt_b", "evt_c"].iter().enumerate() {
            let (events, published) = publish(&mut sim, id, n as u64);
            batch.extend(events);
            expected.push((*id, published));
        }
        store.append(&batch).expect("appends");
        sim.advance(1_000);
        let (events, published) = publish(&mut sim, "evt_d", 9);
        store.append(&events).expect("appends");
        expected.push(("evt_d", published));
        store.flush().expect("flushes");
        for (id, published) in &expected {
            assert_eq!(
                store.published(&key(&sim, id)).expect("reads"),
                Some(*published)
            );
        }
        assert_eq!(
            store.published(&key(&sim, "evt_never")).expect("reads"),
            None
        );
        store.check_projections().expect("consistent");
    }
    let store = SledStore::open(dir.path()).expect("reopens");
    for (id, published) in &expected {
        assert_eq!(
            store.published(&key(&sim, id)).expect("reads"),
            Some(*published),
            "{id} after a reopen"
        );
    }
}

#[test]
fn retention_forgets_old_ids_but_not_an_id_published_again_since() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, mut sim) = opened(dir.path(), 8);
    let (events, _) = publish(&mut sim, "evt_old", 1);
    store.append(&events).expect("appends");
    let (events, _) = publish(&mut sim, "evt_again", 2);
    store.append(&events).expect("appends");
    // Past the window: the id is new again, and its second publish is what the store keeps.
    sim.advance(DurationMs::from_mins(31).0);
    let (events, second) = publish(&mut sim, "evt_again", 3);
    store.append(&events).expect("appends");
    let (events, recent) = publish(&mut sim, "evt_recent", 4);
    store.append(&events).expect("appends");
    let before = policy().retention_start(sim.now);
    store.prune(before).expect("prunes");
    assert_eq!(store.published(&key(&sim, "evt_old")).expect("reads"), None);
    assert_eq!(
        store.published(&key(&sim, "evt_again")).expect("reads"),
        Some(second),
        "the old publish's expiry leaves the newer one"
    );
    assert_eq!(
        store.published(&key(&sim, "evt_recent")).expect("reads"),
        Some(recent)
    );
    store.check_projections().expect("consistent");
    assert_eq!(
        store.entry_counts().expect("counts").0,
        2,
        "only the ids inside the window are left"
    );
}

#[test]
fn purging_an_account_forgets_all_its_ids_a_chunk_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, mut sim) = opened(dir.path(), 9);
    for n in 0..3000u64 {
        let (events, _) = publish(&mut sim, &format!("evt_{n}"), 100 + n);
        store.append(&events).expect("appends");
    }
    assert!(store
        .published(&key(&sim, "evt_2999"))
        .expect("reads")
        .is_some());
    store
        .purge_account(&sim.account, &[WebhookId::from("wh_0")])
        .expect("purges");
    for n in [0u64, 1500, 2999] {
        assert_eq!(
            store
                .published(&key(&sim, &format!("evt_{n}")))
                .expect("reads"),
            None
        );
    }
    assert_eq!(store.entry_counts().expect("counts").0, 0);
}

#[test]
fn the_memory_store_keeps_ids_as_the_sled_one_does_and_a_crash_takes_back_unflushed_ones() {
    let store = MemoryStore::new();
    let (mut sim, setup) = Sim::new(policy(), 1, 10);
    store.append(&setup).expect("appends");
    let (events, kept) = publish(&mut sim, "evt_kept", 1);
    store.append(&events).expect("appends");
    store.flush().expect("flushes");
    let (events, _) = publish(&mut sim, "evt_lost", 2);
    store.append(&events).expect("appends");
    store.crash(0);
    assert_eq!(
        store.published(&key(&sim, "evt_kept")).expect("reads"),
        Some(kept)
    );
    assert_eq!(
        store.published(&key(&sim, "evt_lost")).expect("reads"),
        None
    );
    store.prune(Timestamp(sim.now.0 + 1)).expect("prunes");
    assert_eq!(
        store.published(&key(&sim, "evt_kept")).expect("reads"),
        None
    );
}

/// Every id a store lists, a chunk of `limit` at a time.
fn list_all(store: &dyn ReadModel, limit: usize) -> Vec<([u8; 24], Timestamp)> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let chunk = store
            .published_ids(after, limit)
            .expect("lists")
            .expect("this backend lists its ids");
        assert!(chunk.len() <= limit);
        after = chunk.last().map(|(k, _)| *k);
        let done = chunk.len() < limit;
        all.extend(chunk);
        if done {
            return all;
        }
    }
}

#[test]
fn both_backends_list_every_published_id_in_chunks_with_its_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut sim, setup) = Sim::new(policy(), 2, 7);
    let sled = SledStore::open(dir.path()).expect("opens");
    let memory = MemoryStore::new();
    let mut expected = Vec::new();
    for store in [&sled as &dyn EventLog, &memory] {
        store.append(&setup).expect("appends");
    }
    for n in 0..23u64 {
        let id = format!("evt_{n}");
        let (events, published) = publish(&mut sim, &id, n);
        for store in [&sled as &dyn EventLog, &memory] {
            store.append(&events).expect("appends");
        }
        expected.push((key(&sim, &id).to_bytes(), published.at));
        sim.advance(1_000);
    }
    // Published again after the window: listed once, with the newer time.
    sim.advance(31 * 60_000);
    let (events, again) = publish(&mut sim, "evt_3", 99);
    for store in [&sled as &dyn EventLog, &memory] {
        store.append(&events).expect("appends");
    }
    expected.retain(|(k, _)| *k != key(&sim, "evt_3").to_bytes());
    expected.push((key(&sim, "evt_3").to_bytes(), again.at));
    expected.sort();
    for limit in [1, 5, 23, 100] {
        assert_eq!(list_all(&sled, limit), expected, "sled, chunks of {limit}");
        assert_eq!(
            list_all(&memory, limit),
            expected,
            "memory, chunks of {limit}"
        );
    }
}
