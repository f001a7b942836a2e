//! The spill index: written from the domain's spill events in the same append as their log
//! record, read back in queue order, emptied by loads and settlements (which also settle the
//! deliveries' history), and whole again after a reopen.

mod common;

use common::{Sim, T0};
use hallway_domain::*;
use hallway_store::{DeliveryStatus, EventLog, ReadModel, SledStore};

fn policy() -> Policy {
    Policy {
        retry_delays: vec![DurationMs(0), DurationMs::from_hours(1)],
        auto_disable_after: u32::MAX,
        ..Policy::default()
    }
}

/// Twelve publishes to two webhooks, every first attempt failed (due again in an hour), then
/// all but the first two of each webhook's queue spilled.
fn backlog(store: &SledStore) -> Sim {
    let (mut sim, setup) = Sim::new(policy(), 2, 7);
    store.append(&setup).expect("appends");
    for _ in 0..12 {
        let mut batch = sim.publish(300);
        batch.extend(sim.tick());
        sim.now = sim.now.plus(DurationMs(10));
        batch.extend(sim.complete_open(100));
        store.append(&batch).expect("appends");
    }
    let spilled = sim.run(CommandKind::Spill { keep: 2 });
    assert_eq!(spilled.len(), 2, "one event per webhook");
    store.append(&spilled).expect("appends");
    sim
}

fn read(store: &SledStore, w: &str, g: u32) -> Vec<SpilledDelivery> {
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
