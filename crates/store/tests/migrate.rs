//! A data directory written with the first history layout (a record per delivery, an id
//! index, a time entry per delivery) opens as the current one: buckets and history chunks.

mod common;

use common::{walk_pages as walk, Sim, T0};
use hallway_domain::{AccountId, AttemptError, DeliveryId, EventId, Policy, Timestamp, WebhookId};
use hallway_store::{codec, AttemptRecord, DeliveryRecord, DeliveryStatus, EventStore, SledStore};

/// Opens the directory with sled alone, as the first layout's binary did. A store dropped
/// just before may keep sled's file lock for a moment while its background writes finish.
fn raw_open(dir: &std::path::Path) -> sled::Db {
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match sled::open(dir) {
            Ok(db) => return db,
            Err(_) if std::time::Instant::now() < give_up => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) => panic!("raw open: {e:?}"),
        }
    }
}

/// The first layout's history key: the length-prefixed webhook, the inverted creation time,
/// the delivery id.
fn old_key(r: &DeliveryRecord) -> Vec<u8> {
    let mut k = (r.webhook_id.0.len() as u32).to_be_bytes().to_vec();
    k.extend_from_slice(r.webhook_id.0.as_bytes());
    k.extend_from_slice(&(u64::MAX - r.created_at.0).to_be_bytes());
    k.extend_from_slice(r.id.0.as_bytes());
    k
}

fn records() -> Vec<DeliveryRecord> {
    (0..600u64)
        .map(|i| {
            // Two deliveries per publish, to the two webhooks, sharing a seed; three publishes
            // per millisecond step, so creation times tie.
            let publish = i / 2;
            let done = i % 7 != 0;
            DeliveryRecord {
                id: DeliveryId::from(format!("dlv_{publish:020}{:02x}", i % 2)),
                webhook_id: WebhookId::from(format!("wh_{}", i % 2)),
                account_id: AccountId::from("acc_1"),
                event_id: EventId::from(format!("evt_{publish}")),
                event_type: "session.processing.completed".into(),
                test: false,
                status: if done {
                    DeliveryStatus::Succeeded
                } else {
                    DeliveryStatus::Pending
                },
                created_at: Timestamp(T0.0 + (publish / 3) * 10),
                next_attempt_at: (!done).then_some(Timestamp(T0.0 + 60_000)),
                attempts: vec![AttemptRecord {
                    attempt: 1,
                    started_at: Timestamp(T0.0 + publish * 10),
                    duration_ms: 40,
                    status_code: Some(if done { 200 } else { 500 }),
                    error: (!done).then_some(AttemptError::HttpStatus),
                }],
            }
        })
        .collect()
}

#[test]
fn a_first_layout_data_dir_is_moved_to_buckets_and_chunks() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        // The log and payloads kept their layout; a few records so sequence numbers exist.
        let store = SledStore::open(dir.path()).expect("opens");
        let (_sim, setup) = Sim::new(Policy::default(), 2, 3);
        for e in setup {
            store.append(&[e]).expect("appends");
        }
        store.flush().expect("flushes");
    }
    let all = records();
    {
        let db = raw_open(dir.path());
        let history = db.open_tree("history").expect("tree");
        let index = db.open_tree("dlv_index").expect("tree");
        let by_time = db.open_tree("by_time").expect("tree");
        for r in &all {
            let key = old_key(r);
            history
                .insert(&key, codec::encode(r).expect("encodes"))
                .expect("writes");
            index
                .insert(r.id.0.as_bytes(), codec::encode_raw(&key))
                .expect("writes");
            let mut t = r.created_at.0.to_be_bytes().to_vec();
            t.extend_from_slice(r.id.0.as_bytes());
            by_time.insert(t, &codec::marker()[..]).expect("writes");
        }
        db.flush().expect("flushes");
    }

    let check = |store: &SledStore| {
        let names: Vec<String> = store
            .raw_db()
            .tree_names()
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect();
        for old in ["history", "dlv_index", "by_time"] {
            assert!(!names.contains(&old.to_string()), "{old} is still there");
        }
        assert_eq!(store.check_projections().expect("consistent"), all.len());
        for w in ["wh_0", "wh_1"] {
            let webhook = WebhookId::from(w);
            let mut want: Vec<&DeliveryRecord> =
                all.iter().filter(|r| r.webhook_id == webhook).collect();
            want.sort_by(|a, b| {
                b.created_at
                    .cmp(&a.created_at)
                    .then_with(|| a.id.cmp(&b.id))
            });
            let want: Vec<DeliveryRecord> = want.into_iter().cloned().collect();
            for size in [1, 7, 100, 1000] {
                assert_eq!(walk(store, &webhook, size), want, "{w}, pages of {size}");
            }
            for r in &want {
                assert_eq!(
                    store.delivery(&webhook, &r.id).expect("reads").as_ref(),
                    Some(r)
                );
            }
        }
    };
    let store = SledStore::open(dir.path()).expect("opens and moves the history");
    check(&store);
    // Retention works on what was moved: finished deliveries before the cut go.
    let cut = Timestamp(T0.0 + 500);
    let gone = all
        .iter()
        .filter(|r| r.created_at < cut && r.status != DeliveryStatus::Pending)
        .count() as u64;
    assert!(gone > 0);
    assert_eq!(store.prune(cut).expect("prunes"), gone);
    assert_eq!(
        store.check_projections().expect("consistent"),
        all.len() - gone as usize
    );
    drop(store);
    // A second open has nothing to move.
    let store = SledStore::open(dir.path()).expect("reopens");
    assert_eq!(
        store.check_projections().expect("consistent"),
        all.len() - gone as usize
    );
}

/// A move that stopped part-way (its new trees half written, the old ones all there) is
/// done again from the start on the next open.
#[test]
fn an_interrupted_move_starts_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = SledStore::open(dir.path()).expect("opens");
        let (_sim, setup) = Sim::new(Policy::default(), 2, 3);
        store.append(&setup).expect("appends");
        store.flush().expect("flushes");
    }
    let all = records();
    {
        let db = raw_open(dir.path());
        let history = db.open_tree("history").expect("tree");
        for r in &all {
            history
                .insert(old_key(r), codec::encode(r).expect("encodes"))
                .expect("writes");
        }
        // Leftovers of an earlier, interrupted move.
        db.open_tree("deliveries")
            .expect("tree")
            .insert(b"dlv_junk", &b"not a bucket"[..])
            .expect("writes");
        db.flush().expect("flushes");
    }
    let store = SledStore::open(dir.path()).expect("opens and moves the history");
    assert_eq!(store.check_projections().expect("consistent"), all.len());
}

/// A body as the layouts before body segments kept it, inline in the `payloads` tree.
#[derive(serde::Serialize)]
struct InlinePayload {
    created_at: Timestamp,
    deliveries: Vec<DeliveryId>,
    body: String,
}

#[test]
fn inline_bodies_move_to_segments_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let account = AccountId::from("acc_1");
    // More than one move's worth (256), so the move goes in several transactions.
    let events: Vec<(EventId, String)> = (0..700)
        .map(|i| {
            (
                EventId::from(format!("evt_{i}")),
                format!("{{\"n\":{i},\"pad\":\"{}\"}}", "é".repeat(i % 50)),
            )
        })
        .collect();
    {
        let store = SledStore::open(dir.path()).expect("opens");
        let old = store.raw_db().open_tree("payloads").expect("tree");
        for (i, (event, body)) in events.iter().enumerate() {
            let mut key = (account.0.len() as u32).to_be_bytes().to_vec();
            key.extend_from_slice(account.0.as_bytes());
            key.extend_from_slice(event.0.as_bytes());
            let record = InlinePayload {
                created_at: T0,
                deliveries: vec![DeliveryId::from(format!("dlv_{i:020}00"))],
                body: body.clone(),
            };
            old.insert(key, codec::encode(&record).expect("encodes"))
                .expect("inserts");
        }
        store.flush().expect("flushes");
    }
    let store = SledStore::open(dir.path()).expect("reopens");
    let names = store.raw_db().tree_names();
    assert!(
        !names.iter().any(|n| n.as_ref() == b"payloads"),
        "the old tree is dropped once moved"
    );
    for (event, body) in &events {
        let read = store.payload(&account, event).expect("reads");
        assert_eq!(read.as_deref(), Some(body.as_str()), "{event}");
    }
    let lens: std::collections::HashMap<_, _> = store.tree_lens().into_iter().collect();
    assert_eq!(lens["payload_refs"], events.len());
    // The segment counts agree with the references.
    store.check_projections().expect("consistent");
    drop(store);
    // Nothing is moved twice.
    let store = SledStore::open(dir.path()).expect("reopens");
    let lens: std::collections::HashMap<_, _> = store.tree_lens().into_iter().collect();
    assert_eq!(lens["payload_refs"], events.len());
    store.check_projections().expect("consistent");
}
