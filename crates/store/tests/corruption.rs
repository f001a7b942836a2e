//! Damaged records are clear errors naming the tree and key: never a panic, never skipped.
//! The damage is written through sled directly, around the store.

mod common;

use common::{every_event_kind, Sim};
use hallway_domain::{AccountId, DeliveryId, Event, EventId, IdempotencyKey, Policy, WebhookId};
use hallway_store::{EventLog, ReadModel, SledStore, StoreError};

/// Flips one bit at `at` (counted from the end if negative) of the value under `key`.
fn flip(store: &SledStore, tree: &str, key: &[u8], at: isize) {
    let tree = store.raw_db().open_tree(tree).expect("tree");
    let mut value = tree.get(key).expect("reads").expect("exists").to_vec();
    let i = if at < 0 {
        value.len() as isize + at
    } else {
        at
    } as usize;
    value[i] ^= 0x10;
    tree.insert(key, value).expect("writes");
}

/// The events the store keeps a body for, read back from its log: every publish with a
/// delivery (entries are keyed by a hash, so the tree cannot name them).
fn events_with_bodies(store: &SledStore) -> Vec<(AccountId, EventId)> {
    let mut out = Vec::new();
    // Without bodies, which these tests damage.
    for record in store.replay_log(1) {
        let (_, events) = record.expect("reads");
        for e in events.iter() {
            if let Event::EventPublished {
                account_id,
                event_id,
                deliveries,
                ..
            } = e
            {
                if !deliveries.is_empty() {
                    out.push((account_id.clone(), event_id.clone()));
                }
            }
        }
    }
    out
}

fn corrupt_in(err: &StoreError) -> (&'static str, String) {
    match err {
        StoreError::Corrupt { tree, key, .. } => (tree, key.clone()),
        other => panic!("expected a corrupt-record error, got {other:?}"),
    }
}

fn setup() -> (tempfile::TempDir, SledStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(dir.path()).expect("opens");
    let (mut sim, setup) = Sim::new(Policy::default(), 2, 5);
    store.append(&setup).expect("appends");
    for _ in 0..5 {
        sim.advance(1_000);
        let seq = store.append(&sim.batch(2, 300, 0)).expect("appends");
        store.save_snapshot(seq, &sim.state).expect("snapshots");
    }
    (dir, store)
}

#[test]
fn a_flipped_byte_anywhere_in_a_log_record_names_its_sequence() {
    let (_dir, store) = setup();
    let key = 3u64.to_be_bytes();
    let len = store
        .raw_db()
        .open_tree("log")
        .expect("tree")
        .get(key)
        .expect("reads")
        .expect("exists")
        .len();
    // Every position: the header, the checksum, the middle of a body string, the end.
    for at in [0, 1, 4, 5, (len / 2) as isize, -1] {
        flip(&store, "log", &key, at);
        let results: Vec<_> = store.read_log(1).collect();
        assert_eq!(
            results.len(),
            3,
            "two good records, the error, and nothing after it"
        );
        let err = results[2].as_ref().expect_err("record 3 is damaged");
        assert_eq!(
            corrupt_in(err),
            ("log", "seq 3".to_owned()),
            "flipped at {at}"
        );
        let text = err.to_string();
        assert!(text.contains("\"log\"") && text.contains("seq 3"), "{text}");
        // Undo, and the log reads whole again.
        flip(&store, "log", &key, at);
        assert!(store.read_log(1).all(|r| r.is_ok()));
    }
}

#[test]
fn an_unknown_format_version_is_named_as_such() {
    let (_dir, store) = setup();
    let log = store.raw_db().open_tree("log").expect("tree");
    let mut value = log
        .get(2u64.to_be_bytes())
        .expect("reads")
        .expect("exists")
        .to_vec();
    value[0] = hallway_store::codec::FORMAT_VERSION + 1;
    log.insert(2u64.to_be_bytes(), value.clone())
        .expect("writes");
    let err = store.read_log(1).find_map(|r| r.err()).expect("an error");
    assert_eq!(corrupt_in(&err), ("log", "seq 2".to_owned()));
    let newer = format!("unknown format version {}", value[0]);
    assert!(err.to_string().contains(&newer), "{err}");
    // A record of an older layout is refused as such, never decoded as this one.
    value[0] = hallway_store::codec::FORMAT_VERSION - 1;
    log.insert(2u64.to_be_bytes(), value).expect("writes");
    let err = store.read_log(1).find_map(|r| r.err()).expect("an error");
    assert!(
        err.to_string().contains("written by an older build"),
        "{err}"
    );
}

/// A delivery listed under `wh_0`, and its bucket's key (its fan-out).
fn first_listed(store: &SledStore) -> (DeliveryId, Vec<u8>) {
    let page = store
        .deliveries(&WebhookId::from("wh_0"), 1, None)
        .expect("lists");
    let id = page.data[0].id.clone();
    let bucket = id.fan_out().to_bytes().to_vec();
    (id, bucket)
}

#[test]
fn a_damaged_delivery_record_names_its_bucket() {
    let (_dir, store) = setup();
    let wh = WebhookId::from("wh_0");
    let (id, bucket) = first_listed(&store);
    flip(&store, "deliveries", &bucket, -3);
    let err = store.deliveries(&wh, 100, None).expect_err("damaged");
    let (tree, key) = corrupt_in(&err);
    assert_eq!(tree, "deliveries");
    assert_eq!(key, format!("fan-out {}", id.fan_out()));
    // The same record by id.
    let err = store.delivery(&wh, &id).expect_err("damaged");
    assert_eq!(corrupt_in(&err).0, "deliveries");
}

#[test]
fn an_append_touching_a_damaged_record_fails_without_writing_anything() {
    let (dir, store) = setup();
    let before = store.last_seq().expect("last");
    let (id, bucket) = first_listed(&store);
    flip(&store, "deliveries", &bucket, 7);
    // Damage on disk is found when the record is read from disk: a fresh open has none of
    // the records of recent appends in memory.
    drop(store);
    let store = SledStore::open(dir.path()).expect("reopens");
    let err = store
        .append(&[hallway_domain::Event::DeliveryCancelled {
            delivery_id: id,
            at: common::T0,
        }])
        .expect_err("damaged");
    assert_eq!(corrupt_in(&err).0, "deliveries");
    assert_eq!(
        store.last_seq().expect("last"),
        before,
        "no record was appended"
    );
    assert_eq!(store.read_log(1).count() as u64, before);
}

#[test]
fn damaged_payloads_snapshots_and_indexes_are_named() {
    let (_dir, store) = setup();
    // An event's entry (its body reference and published id).
    let (account, event) = events_with_bodies(&store).remove(0);
    let key = IdempotencyKey::of(&account, &event).to_bytes();
    flip(&store, "published", &key, -1);
    let err = store.payload(&account, &event).expect_err("damaged");
    assert_eq!(corrupt_in(&err), ("published", format!("{key:02x?}")));

    // The snapshot (a file next to the trees).
    let file = store.path().join(hallway_store::SNAPSHOT_FILE);
    let mut bytes = std::fs::read(&file).expect("a snapshot file");
    bytes[20] ^= 0x10;
    std::fs::write(&file, bytes).expect("writes");
    let err = store.load_snapshot().expect_err("damaged");
    let (tree, key) = corrupt_in(&err);
    assert_eq!(tree, hallway_store::SNAPSHOT_FILE);
    assert!(key.ends_with(hallway_store::SNAPSHOT_FILE), "{key}");

    // A listed delivery whose bucket is gone.
    let wh = WebhookId::from("wh_0");
    let (id, bucket) = first_listed(&store);
    store
        .raw_db()
        .open_tree("deliveries")
        .expect("tree")
        .remove(&bucket)
        .expect("removes");
    let err = store.deliveries(&wh, 100, None).expect_err("dangling");
    assert_eq!(
        corrupt_in(&err),
        ("deliveries", format!("fan-out {}", id.fan_out()))
    );
    assert_eq!(store.delivery(&wh, &id).expect("reads"), None);

    // A damaged history chunk names itself.
    let history = store.raw_db().open_tree("history_chunks").expect("tree");
    let (key, _) = history.iter().next().expect("one").expect("reads");
    flip(&store, "history_chunks", &key, -1);
    let err = store.deliveries(&wh, 100, None).expect_err("damaged");
    let (tree, shown) = corrupt_in(&err);
    assert_eq!(tree, "history_chunks");
    assert!(shown.starts_with("wh_0/"), "{shown}");
}

#[test]
fn a_damaged_meta_number_fails_the_open_with_its_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = SledStore::open(dir.path()).expect("opens");
        store.append(&every_event_kind()[..1]).expect("appends");
        store
            .save_snapshot(1, &hallway_domain::State::new(Policy::default()))
            .expect("snapshots");
        flip(&store, "meta", b"snapshot_seq", -1);
        store.flush().expect("flushes");
    }
    let err = SledStore::open(dir.path()).expect_err("damaged");
    assert_eq!(corrupt_in(&err), ("meta", "snapshot_seq".to_owned()));
}

#[test]
fn a_damaged_body_is_named_and_the_others_still_read() {
    let (_dir, store) = setup();
    let segments: Vec<_> = std::fs::read_dir(store.path().join("bodies"))
        .expect("a bodies directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| std::fs::metadata(p).map(|m| m.len() > 0).unwrap_or(false))
        .collect();
    assert_eq!(
        segments.len(),
        1,
        "one segment holds this little: {segments:?}"
    );
    let mut bytes = std::fs::read(&segments[0]).expect("reads");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x10;
    std::fs::write(&segments[0], bytes).expect("writes");

    let events = events_with_bodies(&store);
    assert!(events.len() > 1);
    let mut damaged = Vec::new();
    for (account, event) in &events {
        match store.payload(account, event) {
            Ok(Some(body)) => assert!(!body.is_empty()),
            Ok(None) => panic!("the body of {event} is missing"),
            Err(e) => damaged.push(corrupt_in(&e)),
        }
    }
    // Only the last body written was hit, and the error says where it is.
    assert_eq!(damaged.len(), 1, "{damaged:?}");
    assert_eq!(damaged[0].0, "bodies");
    assert!(damaged[0].1.starts_with("segment "), "{}", damaged[0].1);
    let err = store
        .check_projections()
        .expect_err("the check reads every body");
    assert_eq!(corrupt_in(&err).0, "bodies");
}
