//! History chunks gathered across appends: a webhook whose appends each bring a delivery or
//! two shares a chunk between them (up to 32 deliveries), and pages, cursors, retention,
//! purges and reopening see the same history as with a chunk per append.

mod common;

use common::{walk_pages, T0};
use hallway_domain::*;
use hallway_store::{EventLog, ReadModel, SledStore};
use hallway_testkit::ids::dlv;
use std::collections::HashMap;
use std::path::Path;

fn wh() -> WebhookId {
    WebhookId::from("wh_1")
}

/// Event `i`, published at `T0 + i` seconds with one delivery to `wh_1`, which succeeds in
/// the same append when `finished`.
fn one_delivery(i: u64, finished: bool) -> Vec<Event> {
    let at = Timestamp(T0.0 + i * 1000);
    let d = dlv(&format!("dlv_{i:04}"));
    let mut events = vec![Event::EventPublished {
        account_id: AccountId::from("acc_1"),
        event_id: EventId::from(format!("evt_{i}").as_str()),
        event_type: SESSION_PROCESSING_COMPLETED.into(),
        project_id: ProjectId::from("prj_1"),
        digest: BodyDigest::default(),
        body: format!("{{\"id\":\"evt_{i}\"}}"),
        deliveries: vec![(d.clone(), wh())],
        first_due: at,
        at,
    }];
    if finished {
        events.push(Event::AttemptStarted {
            delivery_id: d.clone(),
            attempt: 1,
            deadline: Timestamp(at.0 + 30_000),
            at,
        });
        events.push(Event::AttemptSucceeded {
            delivery_id: d,
            attempt: 1,
            status_code: 200,
            duration: DurationMs(5),
            started_at: at,
            at: Timestamp(at.0 + 5),
            detail: None,
        });
    }
    events
}

/// Appends events `range`, one append each.
fn append_each(store: &SledStore, range: std::ops::Range<u64>, finished: bool) {
    for i in range {
        store.append(&one_delivery(i, finished)).expect("appends");
    }
}

/// The ids `range` of [`one_delivery`], newest first (the order pages list).
fn newest_first(range: std::ops::Range<u64>) -> Vec<DeliveryId> {
    range.rev().map(|i| dlv(&format!("dlv_{i:04}"))).collect()
}

fn listed(store: &SledStore, size: usize) -> Vec<DeliveryId> {
    walk_pages(store, &wh(), size)
        .into_iter()
        .map(|r| r.id)
        .collect()
}

fn chunks(store: &SledStore) -> usize {
    let lens: HashMap<_, _> = store.tree_lens().into_iter().collect();
    lens["history_chunks"]
}

fn open(dir: &Path) -> SledStore {
    SledStore::open(dir).expect("opens")
}

#[test]
fn appends_of_one_delivery_each_share_chunks_of_up_to_32() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    append_each(&store, 0..100, false);
    assert_eq!(chunks(&store), 4, "100 deliveries in chunks of 32");
    for size in [1, 7, 32, 33, 100] {
        assert_eq!(
            listed(&store, size),
            newest_first(0..100),
            "page size {size}"
        );
    }
    assert_eq!(store.check_projections().expect("consistent"), 100);
}

#[test]
fn a_cursor_taken_while_its_chunk_gathers_resumes_where_it_was() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    append_each(&store, 0..10, false);
    let first = store.deliveries(&wh(), 4, None).expect("pages");
    assert_eq!(
        first.data.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        newest_first(6..10)
    );
    // Newer deliveries join the chunk the cursor points into.
    append_each(&store, 10..15, false);
    let cursor = first.next_cursor.expect("more");
    let rest = store.deliveries(&wh(), 100, Some(&cursor)).expect("pages");
    assert_eq!(
        rest.data.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        newest_first(0..6)
    );
    assert_eq!(listed(&store, 3), newest_first(0..15));
}

#[test]
fn retention_and_purges_do_not_bring_removed_entries_back_into_an_open_chunk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    append_each(&store, 0..20, true);
    // The first ten are older than the cut-off; the chunk holding all twenty stays open.
    assert_eq!(store.prune(Timestamp(T0.0 + 10_000)).expect("prunes"), 10);
    append_each(&store, 20..22, true);
    assert_eq!(listed(&store, 5), newest_first(10..22));
    assert_eq!(store.check_projections().expect("consistent"), 12);

    let purged = store
        .purge_account(&AccountId::from("acc_1"), &[wh()])
        .expect("purges");
    assert_eq!(purged, 12);
    append_each(&store, 22..24, true);
    assert_eq!(listed(&store, 5), newest_first(22..24));
    assert_eq!(store.check_projections().expect("consistent"), 2);
}

#[test]
fn a_reopened_store_lists_everything_and_starts_a_new_chunk() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(dir.path());
        append_each(&store, 0..10, false);
        assert_eq!(chunks(&store), 1);
    }
    let store = open(dir.path());
    append_each(&store, 10..20, false);
    assert_eq!(chunks(&store), 2);
    assert_eq!(listed(&store, 6), newest_first(0..20));
    assert_eq!(store.check_projections().expect("consistent"), 20);
}
