//! The projections: delivery history by webhook, payloads once per event, retention.

mod common;

use common::{acc, failed, published, started, succeeded, t, Sim};
use hallway_domain::*;
use hallway_store::{
    AttemptRecord, DeliveryFilter, DeliveryRecord, DeliveryStatus, EventLog, ReadModel, SledStore,
    StoreError,
};
use hallway_testkit::ids::dlv;
use std::collections::HashMap;

/// Two deliveries of one fan-out (see `hallway_testkit::ids::dlv`).
const FAN_A: &str = "dlv_aaaa00";
const FAN_B: &str = "dlv_aaaa01";
/// Another fan-out's pair, for retention within one bucket.
const M1: &str = "dlv_mmmm00";
const M2: &str = "dlv_mmmm01";

fn record(store: &SledStore, webhook: &str, delivery: &str) -> DeliveryRecord {
    store
        .delivery(&WebhookId::from(webhook), &dlv(delivery))
        .expect("reads")
        .expect("exists")
}

#[test]
fn a_publish_stores_one_body_and_one_pending_record_per_delivery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(dir.path()).expect("opens");
    store
        .append(&[published(
            "evt_1",
            0,
            &[(FAN_A, "wh_1"), (FAN_B, "wh_2"), ("dlv_c", "wh_3")],
        )])
        .expect("appends");
    // An event nobody receives keeps no body.
    store
        .append(&[published("evt_2", 5, &[])])
        .expect("appends");

    let lens: HashMap<_, _> = store.tree_lens().into_iter().collect();
    assert_eq!(
        store.entry_counts().expect("counts"),
        (2, 1),
        "one body per event, not per delivery, and none for an event nobody receives"
    );
    assert_eq!(
        lens["history_chunks"], 3,
        "each delivery is listed under its webhook"
    );
    assert_eq!(
        lens["deliveries"], 2,
        "one fan-out's records share a bucket"
    );
    assert_eq!(
        lens["bucket_time_chunks"], 1,
        "retention finds buckets by time, in one chunk per append"
    );
    assert_eq!(store.check_projections().expect("consistent"), 3);
    assert_eq!(
        store
            .payload(&acc(), &EventId::from("evt_1"))
            .expect("reads")
            .as_deref(),
        Some("{\"id\":\"evt_1\"}")
    );
    assert_eq!(
        store
            .payload(&acc(), &EventId::from("evt_2"))
            .expect("reads"),
        None
    );

    let r = record(&store, "wh_2", FAN_B);
    assert_eq!(
        r,
        DeliveryRecord {
            id: dlv(FAN_B),
            webhook_id: WebhookId::from("wh_2"),
            account_id: acc(),
            event_id: EventId::from("evt_1"),
            event_type: SESSION_PROCESSING_COMPLETED.into(),
            test: false,
            status: DeliveryStatus::Pending,
            created_at: t(0),
            next_attempt_at: Some(t(0)),
            attempts: vec![],
        }
    );
    // A delivery is found only under its own webhook.
    assert_eq!(
        store
            .delivery(&WebhookId::from("wh_1"), &dlv(FAN_B))
            .expect("reads"),
        None
    );
}

#[test]
fn attempts_and_statuses_follow_the_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(dir.path()).expect("opens");
    store
        .append(&[
            published(
                "evt_1",
                0,
                &[
                    ("ok", "wh_1"),
                    ("bad", "wh_1"),
                    ("cut", "wh_1"),
                    ("gone", "wh_1"),
                ],
            ),
            started("ok", 1, 0),
            started("bad", 1, 0),
            started("cut", 1, 0),
        ])
        .expect("appends");
    assert_eq!(
        record(&store, "wh_1", "ok").next_attempt_at,
        None,
        "under way"
    );
    assert_eq!(record(&store, "wh_1", "gone").next_attempt_at, Some(t(0)));

    store
        .append(&[
            succeeded("ok", 1, 0),
            failed("bad", 1, 0, Some(60_000)),
            // Cancelled while its attempt is open: the outcome is recorded, the status stays.
            Event::DeliveryCancelled {
                delivery_id: dlv("cut"),
                at: t(10),
            },
            Event::DeliveryCancelled {
                delivery_id: dlv("gone"),
                at: t(10),
            },
        ])
        .expect("appends");
    store.append(&[succeeded("cut", 1, 0)]).expect("appends");

    let ok = record(&store, "wh_1", "ok");
    assert_eq!(ok.status, DeliveryStatus::Succeeded);
    assert_eq!(
        ok.attempts,
        vec![AttemptRecord {
            attempt: 1,
            started_at: t(0),
            duration_ms: 25,
            status_code: Some(200),
            error: None,
            detail: None,
        }]
    );
    let bad = record(&store, "wh_1", "bad");
    assert_eq!(
        (bad.status, bad.next_attempt_at),
        (DeliveryStatus::Pending, Some(t(60_000)))
    );
    assert_eq!(bad.attempts[0].error, Some(AttemptError::HttpStatus));
    let cut = record(&store, "wh_1", "cut");
    assert_eq!(
        (cut.status, cut.attempts.len()),
        (DeliveryStatus::Cancelled, 1)
    );
    let gone = record(&store, "wh_1", "gone");
    assert_eq!(
        (gone.status, gone.next_attempt_at),
        (DeliveryStatus::Cancelled, None)
    );

    // The last attempt fails with nothing after it; then a manual retry reopens it.
    store
        .append(&[started("bad", 2, 60_000), failed("bad", 2, 60_000, None)])
        .expect("appends");
    let bad = record(&store, "wh_1", "bad");
    assert_eq!(
        (bad.status, bad.next_attempt_at, bad.attempts.len()),
        (DeliveryStatus::Failed, None, 2)
    );
    store
        .append(&[Event::DeliveryRetried {
            delivery: DeliverySummary {
                delivery_id: dlv("bad"),
                webhook_id: WebhookId::from("wh_1"),
                account_id: acc(),
                event_id: EventId::from("evt_1"),
                event_type: SESSION_PROCESSING_COMPLETED.into(),
                test: false,
                created_at: t(0),
                attempts_made: 2,
            },
            at: t(100_000),
        }])
        .expect("appends");
    let bad = record(&store, "wh_1", "bad");
    assert_eq!(
        (bad.status, bad.next_attempt_at, bad.attempts.len()),
        (DeliveryStatus::Pending, Some(t(100_000)), 2)
    );

    // An abandoned attempt is due again at once.
    store
        .append(&[
            started("bad", 3, 100_000),
            Event::AttemptAbandoned {
                delivery_id: dlv("bad"),
                attempt: 3,
                at: t(200_000),
            },
        ])
        .expect("appends");
    assert_eq!(
        record(&store, "wh_1", "bad").next_attempt_at,
        Some(t(200_000))
    );
}

#[test]
fn a_test_send_is_recorded_as_a_test_with_its_body() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(dir.path()).expect("opens");
    store
        .append(&[Event::TestDeliveryCreated {
            delivery_id: dlv("dlv_t"),
            webhook_id: WebhookId::from("wh_1"),
            account_id: acc(),
            event_id: EventId::from("evt_test_1"),
            event_type: "invoice.paid".into(),
            body: "{\"_test\":true}".into(),
            at: t(5),
        }])
        .expect("appends");
    let r = record(&store, "wh_1", "dlv_t");
    assert!(r.test);
    assert_eq!(r.event_type, "invoice.paid", "the sample's own type");
    assert_eq!(
        (r.status, r.next_attempt_at),
        (DeliveryStatus::Pending, Some(t(5)))
    );
    assert_eq!(
        store
            .payload(&acc(), &EventId::from("evt_test_1"))
            .expect("reads")
            .as_deref(),
        Some("{\"_test\":true}")
    );
}

#[test]
fn history_pages_newest_first_with_a_cursor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(dir.path()).expect("opens");
    // 25 events to wh_1, interleaved with others to wh_10 (a longer id with wh_1 as prefix).
    for i in 0..25u64 {
        store
            .append(&[published(
                &format!("evt_{i}"),
                i * 1000,
                &[
                    (&format!("dlv_{i:02}_a"), "wh_1"),
                    (&format!("dlv_{i:02}_b"), "wh_10"),
                ],
            )])
            .expect("appends");
    }
    let wh = WebhookId::from("wh_1");
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store.deliveries(&wh, 10, cursor.as_deref()).expect("pages");
        pages += 1;
        assert!(page.data.len() <= 10);
        seen.extend(page.data.iter().map(|r| r.id.clone()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let want: Vec<DeliveryId> = (0..25)
        .rev()
        .map(|i| dlv(&format!("dlv_{i:02}_a")))
        .collect();
    assert_eq!(seen, want);
    // An exact multiple of the page size ends without an empty extra page.
    let page = store
        .deliveries(&WebhookId::from("wh_10"), 25, None)
        .expect("pages");
    assert_eq!((page.data.len(), page.next_cursor), (25, None));
    // Unknown webhooks have empty history; garbage cursors are refused.
    assert!(store
        .deliveries(&WebhookId::from("wh_9"), 10, None)
        .expect("pages")
        .data
        .is_empty());
    assert!(matches!(
        store.deliveries(&wh, 10, Some("nonsense")),
        Err(StoreError::Invalid(_))
    ));
}

#[test]
fn many_events_on_one_delivery_in_one_batch_coalesce_to_the_right_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(dir.path()).expect("opens");
    store
        .append(&[
            published("evt_1", 0, &[("d", "wh_1")]),
            started("d", 1, 0),
            failed("d", 1, 0, Some(1)),
            started("d", 2, 1),
            failed("d", 2, 1, Some(2)),
            started("d", 3, 2),
            succeeded("d", 3, 2),
        ])
        .expect("appends");
    let r = record(&store, "wh_1", "d");
    assert_eq!(r.status, DeliveryStatus::Succeeded);
    assert_eq!(
        r.attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
}

/// The history the store projects agrees with the domain's own state after a long
/// realistic run: a delivery is pending in history exactly when the state still has it.
#[test]
fn history_agrees_with_the_domain_after_a_realistic_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(dir.path()).expect("opens");
    let (mut sim, setup) = Sim::new(Policy::default(), 3, 99);
    store.append(&setup).expect("appends");
    let mut outcomes: HashMap<DeliveryId, usize> = HashMap::new();
    let mut all: Vec<DeliveryId> = Vec::new();
    for i in 0..200u64 {
        sim.advance(40_000);
        let batch = sim.batch((i % 3) as usize, 200, 50);
        for e in &batch {
            match e {
                Event::AttemptSucceeded { delivery_id, .. }
                | Event::AttemptFailed { delivery_id, .. } => {
                    *outcomes.entry(delivery_id.clone()).or_default() += 1
                }
                Event::EventPublished { deliveries, .. } => {
                    all.extend(deliveries.iter().map(|(d, _)| d.clone()))
                }
                _ => {}
            }
        }
        store.append(&batch).expect("appends");
    }
    assert!(all.len() > 300);
    let mut statuses: HashMap<DeliveryStatus, usize> = HashMap::new();
    for id in &all {
        let wh = sim_webhook_of(&store, id);
        let r = store.delivery(&wh, id).expect("reads").expect("exists");
        *statuses.entry(r.status).or_default() += 1;
        let live = sim.state.delivery(id).is_some();
        assert_eq!(r.status == DeliveryStatus::Pending, live, "{id}: {r:?}");
        assert_eq!(
            r.attempts.len(),
            outcomes.get(id).copied().unwrap_or(0),
            "{id}"
        );
    }
    assert!(
        statuses
            .get(&DeliveryStatus::Succeeded)
            .copied()
            .unwrap_or(0)
            > 0
    );
    assert!(statuses.get(&DeliveryStatus::Pending).copied().unwrap_or(0) > 0);
}

/// Finds a delivery's webhook through paging (the API always knows it; the test does not).
fn sim_webhook_of(store: &SledStore, id: &DeliveryId) -> WebhookId {
    for w in 0..3 {
        let wh = WebhookId::from(format!("wh_{w}"));
        if store.delivery(&wh, id).expect("reads").is_some() {
            return wh;
        }
    }
    panic!("{id} has no record");
}

#[test]
fn prune_removes_finished_old_deliveries_and_bodies_nobody_needs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(dir.path()).expect("opens");
    store
        .append(&[
            // Old: one delivery done, one still pending: body and pending record stay.
            published("evt_old_mixed", 0, &[(M1, "wh_1"), (M2, "wh_2")]),
            started(M1, 1, 0),
            succeeded(M1, 1, 0),
            // Old and done: everything goes.
            published("evt_old_done", 10, &[("d1", "wh_1")]),
            started("d1", 1, 10),
            failed("d1", 1, 10, None),
            // New and done: stays (inside the window).
            published("evt_new", 5_000, &[("n1", "wh_1")]),
            started("n1", 1, 5_000),
            succeeded("n1", 1, 5_000),
        ])
        .expect("appends");
    let lens = |s: &SledStore| -> HashMap<&'static str, usize> {
        let mut l: HashMap<_, _> = s.tree_lens().into_iter().collect();
        l.insert("bodies", s.entry_counts().expect("counts").1);
        l
    };
    assert_eq!(store.prune(t(1_000)).expect("prunes"), 2);
    let l = lens(&store);
    assert_eq!(
        (
            l["history_chunks"],
            l["deliveries"],
            l["bucket_time_chunks"],
            l["bodies"]
        ),
        (2, 2, 1, 2)
    );
    assert_eq!(store.check_projections().expect("consistent"), 2);
    assert!(store
        .payload(&acc(), &EventId::from("evt_old_done"))
        .expect("reads")
        .is_none());
    assert!(store
        .payload(&acc(), &EventId::from("evt_old_mixed"))
        .expect("reads")
        .is_some());
    assert!(store
        .delivery(&WebhookId::from("wh_1"), &dlv(M1))
        .expect("reads")
        .is_none());
    assert!(store
        .delivery(&WebhookId::from("wh_2"), &dlv(M2))
        .expect("reads")
        .is_some());

    // The pending one finishes: the next prune takes it and the body.
    store
        .append(&[started(M2, 1, 6_000), succeeded(M2, 1, 6_000)])
        .expect("appends");
    assert_eq!(store.prune(t(1_000)).expect("prunes"), 1);
    let l = lens(&store);
    assert_eq!(
        (l["history_chunks"], l["deliveries"], l["bodies"]),
        (1, 1, 1)
    );
    assert_eq!(store.check_projections().expect("consistent"), 1);
    assert!(store
        .payload(&acc(), &EventId::from("evt_old_mixed"))
        .expect("reads")
        .is_none());
    // Pruning again changes nothing.
    assert_eq!(store.prune(t(1_000)).expect("prunes"), 0);
    // Attempt events for a pruned delivery are ignored by the projection (the log keeps them).
    store.append(&[succeeded("d1", 2, 7_000)]).expect("appends");
    assert_eq!(lens(&store)["history_chunks"], 1);
}

#[test]
fn prune_handles_more_than_one_chunk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(dir.path()).expect("opens");
    let mut batch = Vec::new();
    for i in 0..3000u64 {
        let d = format!("d{i}");
        batch.push(published(&format!("evt_{i}"), i, &[(&d, "wh_1")]));
        batch.push(started(&d, 1, i));
        // Every tenth stays pending.
        if i % 10 != 0 {
            batch.push(succeeded(&d, 1, i));
        }
    }
    store.append(&batch).expect("appends");
    assert_eq!(store.prune(t(1_000_000)).expect("prunes"), 2700);
    let l: HashMap<_, _> = store.tree_lens().into_iter().collect();
    assert_eq!(
        (
            l["history_chunks"],
            l["deliveries"],
            l["bucket_time_chunks"],
            store.entry_counts().expect("counts").1
        ),
        (1, 300, 1, 300),
        "one append made one history chunk and one by-time chunk"
    );
    assert_eq!(store.check_projections().expect("consistent"), 300);
}

/// History chunks (one per webhook per append) are split across pages and walked in order,
/// ties at the same millisecond included, and a cursor stays valid when retention removes
/// the delivery it points at.
#[test]
fn pages_split_chunks_in_order_and_survive_pruning_mid_walk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(dir.path()).expect("opens");
    let mut want = Vec::new();
    for append in 0..4u64 {
        let mut batch = Vec::new();
        for i in 0..5u64 {
            let id = format!("dlv_{append}_{i}");
            // Two deliveries per append share a millisecond.
            let at = append * 10_000 + (i / 2) * 100;
            batch.push(published(
                &format!("evt_{append}_{i}"),
                at,
                &[(&id, "wh_1")],
            ));
            batch.push(started(&id, 1, at));
            batch.push(succeeded(&id, 1, at));
            want.push((at, id));
        }
        store.append(&batch).expect("appends");
    }
    // Newest first, ties by id.
    let mut want: Vec<(u64, DeliveryId)> =
        want.into_iter().map(|(at, id)| (at, dlv(&id))).collect();
    want.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let want: Vec<DeliveryId> = want.into_iter().map(|(_, id)| id).collect();

    let wh = WebhookId::from("wh_1");
    let walk = |store: &SledStore, size: usize| -> Vec<DeliveryId> {
        let records = common::walk_pages(store, &wh, size);
        records.iter().map(|r| r.id.clone()).collect()
    };
    for size in [1, 2, 3, 7, 20, 100] {
        assert_eq!(walk(&store, size), want, "page size {size}");
    }

    // A cursor taken, then the delivery it points at (and everything older) pruned.
    let first = store.deliveries(&wh, 8, None).expect("pages");
    let cursor = first.next_cursor.expect("more");
    let pointed = first.data.last().expect("one").created_at;
    assert_eq!(store.prune(Timestamp(pointed.0 + 1)).expect("prunes"), 14);
    let rest = store.deliveries(&wh, 100, Some(&cursor)).expect("pages");
    assert!(
        rest.data.is_empty(),
        "everything after the cursor is older and was pruned"
    );
    assert_eq!(walk(&store, 3), want[..6].to_vec());
    store.check_projections().expect("consistent");
}

#[test]
fn a_body_segment_goes_only_once_the_prune_that_emptied_it_is_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Every append after the first starts a new segment.
    let options = hallway_store::StoreOptions {
        body_segment_bytes: 1,
        ..hallway_store::StoreOptions::default()
    };
    let store = SledStore::open_with(dir.path(), &options).expect("opens");
    store
        .append(&[
            published("evt_old", 0, &[("dlv_old", "wh_1")]),
            started("dlv_old", 1, 0),
            succeeded("dlv_old", 1, 0),
        ])
        .expect("appends");
    store
        .append(&[published("evt_new", 5_000, &[("dlv_new", "wh_1")])])
        .expect("appends");
    store.flush().expect("flushes");
    let segments = || {
        std::fs::read_dir(dir.path().join("bodies"))
            .expect("a bodies directory")
            .count()
    };
    assert_eq!(segments(), 2);

    assert_eq!(store.prune(t(1_000)).expect("prunes"), 1);
    // Until the prune is durable a crash could bring its references back: the file stays.
    assert_eq!(segments(), 2);
    store.flush().expect("flushes");
    assert_eq!(segments(), 1, "the emptied segment went with the flush");
    assert_eq!(
        store
            .payload(&acc(), &EventId::from("evt_old"))
            .expect("reads"),
        None
    );
    assert_eq!(
        store
            .payload(&acc(), &EventId::from("evt_new"))
            .expect("reads")
            .as_deref(),
        Some("{\"id\":\"evt_new\"}")
    );
    store.check_projections().expect("consistent");
}

#[test]
fn a_paused_delivery_keeps_its_body_and_a_recover_makes_it_pending_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(dir.path()).expect("opens");
    // wh_1 is disabled: its delivery of evt_1 is paused, with nothing sent.
    store
        .append(&[
            published("evt_1", 0, &[]),
            Event::DeliveriesPaused {
                account_id: acc(),
                event_id: EventId::from("evt_1"),
                event_type: SESSION_PROCESSING_COMPLETED.into(),
                deliveries: vec![(dlv(FAN_A), WebhookId::from("wh_1"))],
                at: t(0),
            },
        ])
        .expect("appends");
    let r = record(&store, "wh_1", FAN_A);
    assert_eq!(r.status, DeliveryStatus::Paused);
    assert_eq!(r.next_attempt_at, None);
    assert_eq!(
        store
            .payload(&acc(), &EventId::from("evt_1"))
            .expect("reads")
            .as_deref(),
        Some("{\"id\":\"evt_1\"}"),
        "a paused delivery's body is kept for a recover"
    );

    // A pending delivery paused by a disable keeps its attempts.
    store
        .append(&[published("evt_2", 10, &[(M1, "wh_1")])])
        .expect("appends");
    store.append(&[started(M1, 1, 20)]).expect("appends");
    store
        .append(&[failed(M1, 1, 20, Some(100))])
        .expect("appends");
    store
        .append(&[Event::DeliveryPaused {
            delivery_id: dlv(M1),
            at: t(60),
        }])
        .expect("appends");
    let r = record(&store, "wh_1", M1);
    assert_eq!(r.status, DeliveryStatus::Paused);
    assert_eq!(r.attempts.len(), 1);

    store
        .append(&[Event::DeliveriesRecovered {
            webhook_id: WebhookId::from("wh_1"),
            deliveries: vec![DeliverySummary {
                delivery_id: dlv(FAN_A),
                webhook_id: WebhookId::from("wh_1"),
                account_id: acc(),
                event_id: EventId::from("evt_1"),
                event_type: SESSION_PROCESSING_COMPLETED.into(),
                test: false,
                created_at: t(0),
                attempts_made: 0,
            }],
            first_due: t(200),
            at: t(200),
        }])
        .expect("appends");
    let r = record(&store, "wh_1", FAN_A);
    assert_eq!(r.status, DeliveryStatus::Pending);
    assert_eq!(r.next_attempt_at, Some(t(200)));
    store.check_projections().expect("consistent");
}

/// Every page of `webhook`'s history that passes `filter`, `size` at a time.
fn walk_filtered(
    store: &SledStore,
    webhook: &WebhookId,
    filter: &DeliveryFilter,
    size: usize,
) -> (Vec<DeliveryRecord>, usize) {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store
            .deliveries_where(webhook, filter, size, cursor.as_deref())
            .expect("pages");
        pages += 1;
        assert!(page.data.len() <= size);
        seen.extend(page.data);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return (seen, pages),
        }
    }
}

#[test]
fn filtered_pages_list_exactly_what_passes_newest_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(dir.path()).expect("opens");
    let (mut sim, setup) = Sim::new(Policy::default(), 2, 7);
    store.append(&setup).expect("appends");
    for i in 0..120u64 {
        sim.advance(40_000);
        let batch = sim.batch((i % 3) as usize, 200, 50);
        store.append(&batch).expect("appends");
    }
    let wh = WebhookId::from("wh_0");
    let all = common::walk_pages(&store, &wh, 1000);
    assert!(all.len() > 100, "{}", all.len());
    let mid = all[all.len() / 2].created_at;
    let late = all[all.len() / 5].created_at;
    let mut filters = vec![
        DeliveryFilter::default(),
        DeliveryFilter {
            event_type: Some(SESSION_PROCESSING_COMPLETED.into()),
            ..DeliveryFilter::default()
        },
        DeliveryFilter {
            event_type: Some("other.type".into()),
            ..DeliveryFilter::default()
        },
        DeliveryFilter {
            since: Some(mid),
            ..DeliveryFilter::default()
        },
        DeliveryFilter {
            until: Some(mid),
            ..DeliveryFilter::default()
        },
        DeliveryFilter {
            since: Some(mid),
            until: Some(late),
            status: Some(DeliveryStatus::Succeeded),
            ..DeliveryFilter::default()
        },
    ];
    for status in [
        DeliveryStatus::Pending,
        DeliveryStatus::Succeeded,
        DeliveryStatus::Failed,
    ] {
        filters.push(DeliveryFilter {
            status: Some(status),
            ..DeliveryFilter::default()
        });
    }
    for filter in &filters {
        let expected: Vec<&DeliveryId> = all
            .iter()
            .filter(|r| filter.matches(r))
            .map(|r| &r.id)
            .collect();
        for size in [1, 7, 100] {
            let (got, _) = walk_filtered(&store, &wh, filter, size);
            let got: Vec<&DeliveryId> = got.iter().map(|r| &r.id).collect();
            assert_eq!(got, expected, "{filter:?} by {size}");
        }
    }
    // Every status the run produced is seen through its filter.
    let succeeded = DeliveryFilter {
        status: Some(DeliveryStatus::Succeeded),
        ..DeliveryFilter::default()
    };
    assert!(!walk_filtered(&store, &wh, &succeeded, 50).0.is_empty());
}

#[test]
fn a_filter_that_passes_little_stops_a_page_early_and_the_cursor_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(dir.path()).expect("opens");
    let old = "dlv_oooooooo00";
    store
        .append(&[published("evt_old", 0, &[(old, "wh_1")])])
        .expect("appends");
    // More newer deliveries than one page examines, each in a bucket of its own (as
    // deliveries of separate publishes are).
    let ids: Vec<String> = (0..10_050).map(|i| format!("dlv_n{i:013}00")).collect();
    let pairs: Vec<(&str, &str)> = ids.iter().map(|d| (d.as_str(), "wh_1")).collect();
    store
        .append(&[published("evt_new", 1_000, &pairs)])
        .expect("appends");
    let wh = WebhookId::from("wh_1");
    let only_old = DeliveryFilter {
        until: Some(t(1)),
        ..DeliveryFilter::default()
    };
    let first = store
        .deliveries_where(&wh, &only_old, 50, None)
        .expect("pages");
    assert!(first.data.is_empty(), "stopped before reaching the old one");
    let cursor = first.next_cursor.expect("a cursor to go on from");
    let second = store
        .deliveries_where(&wh, &only_old, 50, Some(&cursor))
        .expect("pages");
    let got: Vec<DeliveryId> = second.data.iter().map(|r| r.id.clone()).collect();
    assert_eq!(got, [dlv(old)]);
    assert_eq!(second.next_cursor, None, "nothing further passes");
    // Unfiltered paging is unchanged: full pages, and the end says so.
    let (all, _) = walk_filtered(&store, &wh, &DeliveryFilter::default(), 100);
    assert_eq!(all.len(), 10_051);
    // `since` stops the read at the first older delivery.
    let only_new = DeliveryFilter {
        since: Some(t(1)),
        status: Some(DeliveryStatus::Succeeded),
        ..DeliveryFilter::default()
    };
    let page = store
        .deliveries_where(&wh, &only_new, 50, None)
        .expect("pages");
    assert!(page.data.is_empty());
}

#[test]
fn purging_a_deleted_account_removes_its_finished_history_and_bodies_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(dir.path()).expect("opens");
    let other = AccountId::from("acc_2");
    let e2 = Event::EventPublished {
        account_id: other.clone(),
        event_id: EventId::from("evt_9"),
        event_type: SESSION_PROCESSING_COMPLETED.into(),
        project_id: ProjectId::from("prj_1"),
        digest: BodyDigest::default(),
        body: "{\"id\":\"evt_9\"}".into(),
        deliveries: vec![(dlv(M1), WebhookId::from("wh_9"))],
        first_due: t(0),
        at: t(0),
    };
    store
        .append(&[
            // evt_1 to wh_1 (finishes) and wh_2 (still pending); evt_2 to wh_1 (finishes).
            published("evt_1", 0, &[(FAN_A, "wh_1"), (FAN_B, "wh_2")]),
            published("evt_2", 1, &[("dlv_bbbb00", "wh_1")]),
            e2,
            started(FAN_A, 1, 2),
            succeeded(FAN_A, 1, 2),
            started("dlv_bbbb00", 1, 3),
            failed("dlv_bbbb00", 1, 3, None),
            started(M1, 1, 4),
            succeeded(M1, 1, 4),
        ])
        .expect("appends");
    let removed = store
        .purge_account(&acc(), &[WebhookId::from("wh_1"), WebhookId::from("wh_2")])
        .expect("purges");
    assert_eq!(removed, 2, "the two finished deliveries of the account");
    assert!(common::walk_pages(&store, &WebhookId::from("wh_1"), 10).is_empty());
    assert!(store
        .delivery(&WebhookId::from("wh_1"), &dlv(FAN_A))
        .expect("reads")
        .is_none());
    // The pending one stays (its outcome is still to be recorded), with the body it sends.
    let pending = common::walk_pages(&store, &WebhookId::from("wh_2"), 10);
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].status, DeliveryStatus::Pending);
    assert!(store
        .payload(&acc(), &EventId::from("evt_1"))
        .expect("reads")
        .is_some());
    assert!(store
        .payload(&acc(), &EventId::from("evt_2"))
        .expect("reads")
        .is_none());
    // Another account is untouched.
    assert_eq!(
        common::walk_pages(&store, &WebhookId::from("wh_9"), 10).len(),
        1
    );
    assert!(store
        .payload(&other, &EventId::from("evt_9"))
        .expect("reads")
        .is_some());
    // The projections still agree with each other (chunks, records, bodies' counts).
    store.check_projections().expect("consistent after a purge");
    store.flush().expect("flushes");
    drop(store);
    let store = SledStore::open(dir.path()).expect("reopens");
    assert_eq!(
        common::walk_pages(&store, &WebhookId::from("wh_2"), 10).len(),
        1
    );
}

/// An event's entry holds its body reference and its published id, each with its own
/// lifetime: a republish without deliveries keeps the body the first publish's delivery
/// sends, and the id's expiry leaves the body to the delivery still pending.
#[test]
fn an_events_body_outlives_its_forgotten_id_while_a_delivery_needs_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(dir.path()).expect("opens");
    let key = IdempotencyKey::of(&acc(), &EventId::from("evt_1"));
    store
        .append(&[published("evt_1", 0, &[("d1", "wh_1")])])
        .expect("appends");
    store
        .append(&[published("evt_1", 5_000, &[])])
        .expect("appends");
    assert_eq!(
        store.published(&key).expect("reads").map(|p| p.at),
        Some(t(5_000)),
        "the id answers with its latest publish"
    );
    let body = store
        .payload(&acc(), &EventId::from("evt_1"))
        .expect("reads");
    assert!(body.is_some(), "the body d1 sends is kept");
    store.check_projections().expect("consistent");

    store.prune(t(10_000)).expect("prunes");
    assert_eq!(store.published(&key).expect("reads"), None);
    assert_eq!(
        store
            .payload(&acc(), &EventId::from("evt_1"))
            .expect("reads"),
        body,
        "d1 is still pending"
    );
    assert_eq!(store.entry_counts().expect("counts"), (0, 1));
    store.check_projections().expect("consistent");

    store
        .append(&[started("d1", 1, 11_000), succeeded("d1", 1, 11_000)])
        .expect("appends");
    store.prune(t(20_000)).expect("prunes");
    assert_eq!(
        store
            .payload(&acc(), &EventId::from("evt_1"))
            .expect("reads"),
        None
    );
    assert_eq!(
        store.entry_counts().expect("counts"),
        (0, 0),
        "the entry went"
    );
    store.check_projections().expect("consistent");
}

/// The other order: retention takes the body of a finished delivery while the idempotency
/// window still remembers the event's id, which goes only when its own time comes.
#[test]
fn an_events_id_outlives_its_removed_body() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(dir.path()).expect("opens");
    let key = IdempotencyKey::of(&acc(), &EventId::from("evt_1"));
    store
        .append(&[
            published("evt_1", 0, &[("d1", "wh_1")]),
            started("d1", 1, 100),
            succeeded("d1", 1, 100),
        ])
        .expect("appends");
    store
        .append(&[published("evt_1", 5_000, &[])])
        .expect("appends");
    store.prune(t(3_000)).expect("prunes");
    assert_eq!(
        store
            .payload(&acc(), &EventId::from("evt_1"))
            .expect("reads"),
        None,
        "nothing pending needs the body"
    );
    assert_eq!(
        store.published(&key).expect("reads").map(|p| p.at),
        Some(t(5_000)),
        "the republish is inside the window"
    );
    assert_eq!(store.entry_counts().expect("counts"), (1, 0));
    store.check_projections().expect("consistent");

    store.prune(t(10_000)).expect("prunes");
    assert_eq!(store.published(&key).expect("reads"), None);
    assert_eq!(store.entry_counts().expect("counts"), (0, 0));
    store.check_projections().expect("consistent");
}
