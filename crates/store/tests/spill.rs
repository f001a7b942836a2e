//! The spill index: written from the domain's spill events in the same append as their log
//! record, read back in queue order, emptied by loads and settlements (which also settle the
//! deliveries' history), and whole again after a reopen. The in-memory backend keeps the same
//! index, taken back with an unflushed append in a crash.

mod common;

use common::{Sim, T0};
use hallway_domain::*;
use hallway_store::{DeliveryStatus, EventLog, EventStore, MemoryStore, ReadModel, SledStore};

fn policy() -> Policy {
    Policy {
        retry_delays: vec![DurationMs(0), DurationMs::from_hours(1)],
        auto_disable_after: u32::MAX,
        ..Policy::default()
    }
}

/// Appends one batch to each store.
fn append_all(stores: &[&dyn EventStore], batch: &[Event]) {
    for store in stores {
        store.append(batch).expect("appends");
    }
}

/// Twelve publishes to two webhooks, every first attempt failed (due again in an hour), then
/// all but the first two of each webhook's queue spilled; each batch appended to each store.
fn backlog_in(stores: &[&dyn EventStore]) -> Sim {
    let (mut sim, setup) = Sim::new(policy(), 2, 7);
    append_all(stores, &setup);
    for _ in 0..12 {
        let mut batch = sim.publish(300);
        batch.extend(sim.tick());
        sim.now = sim.now.plus(DurationMs(10));
        batch.extend(sim.complete_open(100));
        append_all(stores, &batch);
    }
    let spilled = sim.run(CommandKind::Spill { keep: 2 });
    assert_eq!(spilled.len(), 2, "one event per webhook");
    append_all(stores, &spilled);
    sim
}

fn backlog(store: &SledStore) -> Sim {
    backlog_in(&[store])
}

fn read(store: &dyn EventStore, w: &str, g: u32) -> Vec<SpilledDelivery> {
    store
        .spilled(&WebhookId::from(w), g, usize::MAX)
        .expect("reads")
}

#[test]
fn the_index_follows_spills_loads_and_settlements() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(dir.path()).expect("opens");
    let mut sim = backlog(&store);
    let w0 = WebhookId::from("wh_0");
    let listed = read(&store, "wh_0", 0);
    assert_eq!(listed.len(), 10);
    assert!(
        listed.windows(2).all(|p| p[0].key() < p[1].key()),
        "queue order"
    );
    assert_eq!(sim.state.spill_tier(&w0).map(|t| t.count), Some(10));
    assert_eq!(
        store.spilled(&w0, 0, 3).expect("reads"),
        listed[..3].to_vec()
    );
    assert!(read(&store, "wh_0", 1).is_empty(), "another generation");
    store.check_projections().expect("consistent");

    // A load takes the first ones out, in the same append as its record.
    let load = sim.run(CommandKind::LoadSpilled {
        webhook_id: w0.clone(),
        generation: 0,
        deliveries: listed[..4].to_vec(),
        next: Some((listed[4].due, listed[4].id.clone())),
    });
    store.append(&load).expect("appends");
    assert_eq!(read(&store, "wh_0", 0), listed[4..].to_vec());

    // Disabling pauses what memory holds at once and what is spilled a chunk at a time.
    let disable = sim.run(CommandKind::UpdateWebhook {
        account_id: sim.account.clone(),
        webhook_id: w0.clone(),
        changes: WebhookChanges {
            enabled: Some(false),
            ..WebhookChanges::default()
        },
    });
    store.append(&disable).expect("appends");
    let left = read(&store, "wh_0", 0);
    assert_eq!(left.len(), 6, "settled only when asked");
    for chunk in left.chunks(4) {
        let settle = sim.run(CommandKind::SettleSpilled {
            webhook_id: w0.clone(),
            generation: 0,
            deliveries: chunk.to_vec(),
        });
        store.append(&settle).expect("appends");
    }
    assert!(read(&store, "wh_0", 0).is_empty());
    for d in &left {
        let r = store.delivery(&w0, &d.id).expect("reads").expect("exists");
        assert_eq!(
            (r.status, r.next_attempt_at),
            (DeliveryStatus::Paused, None)
        );
    }
    store.check_projections().expect("consistent");

    // The other webhook's index survives a reopen as it was.
    let before = read(&store, "wh_1", 0);
    assert_eq!(before.len(), 10);
    store.flush().expect("flushes");
    drop(store);
    let store = SledStore::open(dir.path()).expect("reopens");
    assert_eq!(read(&store, "wh_1", 0), before);
    store.check_projections().expect("consistent");
    assert!(sim.now > T0);
}

#[test]
fn a_spilled_delivery_missing_from_history_is_damage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(dir.path()).expect("opens");
    let sim = backlog(&store);
    let d = read(&store, "wh_1", 0).remove(0);
    // Succeeded in history while the index still lists it: the two disagree.
    store
        .append(&[
            Event::AttemptStarted {
                delivery_id: d.id.clone(),
                attempt: 2,
                deadline: sim.now.plus(DurationMs(60_000)),
                at: sim.now,
            },
            Event::AttemptSucceeded {
                delivery_id: d.id.clone(),
                attempt: 2,
                status_code: 200,
                duration: DurationMs(5),
                started_at: sim.now,
                detail: None,
                at: sim.now,
            },
        ])
        .expect("appends");
    let err = store.check_projections().expect_err("inconsistent");
    assert!(err.to_string().contains("spilled"), "{err}");
}

#[test]
fn the_in_memory_store_keeps_the_same_index_and_a_crash_takes_back_what_was_not_flushed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sled = SledStore::open(dir.path()).expect("opens");
    let memory = MemoryStore::new();
    let mut sim = backlog_in(&[&sled, &memory]);
    memory.flush().expect("flushes");
    for w in ["wh_0", "wh_1"] {
        assert_eq!(read(&memory, w, 0), read(&sled, w, 0), "{w}");
        assert_eq!(read(&memory, w, 0).len(), 10);
    }
    let w0 = WebhookId::from("wh_0");
    let listed = read(&memory, "wh_0", 0);
    assert_eq!(
        memory.spilled(&w0, 0, 3).expect("reads"),
        listed[..3].to_vec()
    );

    // A load in an append that was not flushed is lost with it, index and all.
    let load = sim.run(CommandKind::LoadSpilled {
        webhook_id: w0.clone(),
        generation: 0,
        deliveries: listed[..4].to_vec(),
        next: Some((listed[4].due, listed[4].id.clone())),
    });
    memory.append(&load).expect("appends");
    assert_eq!(read(&memory, "wh_0", 0), listed[4..].to_vec());
    memory.crash(0);
    assert_eq!(
        read(&memory, "wh_0", 0),
        listed,
        "the crash took the load back"
    );
    // Flushed, it stays.
    append_all(&[&sled, &memory], &load);
    memory.flush().expect("flushes");
    memory.crash(0);
    assert_eq!(read(&memory, "wh_0", 0), listed[4..].to_vec());
    assert_eq!(read(&memory, "wh_0", 0), read(&sled, "wh_0", 0));

    // A delete's settlements cancel the spilled deliveries' history in both backends alike;
    // an unflushed settlement comes back pending after a crash.
    let delete = sim.run(CommandKind::DeleteWebhook {
        account_id: sim.account.clone(),
        webhook_id: w0.clone(),
    });
    append_all(&[&sled, &memory], &delete);
    memory.flush().expect("flushes");
    let left = read(&memory, "wh_0", 0);
    assert_eq!(left.len(), 6);
    let settle = sim.run(CommandKind::SettleSpilled {
        webhook_id: w0.clone(),
        generation: 0,
        deliveries: left.clone(),
    });
    memory.append(&settle).expect("appends");
    let status = |store: &dyn EventStore, id: &DeliveryId| {
        store
            .delivery(&w0, id)
            .expect("reads")
            .map(|r| (r.status, r.next_attempt_at))
    };
    assert_eq!(
        status(&memory, &left[0].id),
        Some((DeliveryStatus::Cancelled, None))
    );
    memory.crash(0);
    assert_eq!(read(&memory, "wh_0", 0), left);
    assert_eq!(
        status(&memory, &left[0].id).map(|s| s.0),
        Some(DeliveryStatus::Pending)
    );
    append_all(&[&sled, &memory], &settle);
    memory.flush().expect("flushes");
    assert!(read(&memory, "wh_0", 0).is_empty());
    for d in &left {
        assert_eq!(status(&memory, &d.id), status(&sled, &d.id), "{}", d.id);
        assert_eq!(
            status(&memory, &d.id),
            Some((DeliveryStatus::Cancelled, None))
        );
    }
    assert_eq!(read(&memory, "wh_1", 0), read(&sled, "wh_1", 0));
}
