//! The writer's cache of decoded delivery buckets: it keeps what expects an outcome soon,
//! within its bound, and what it keeps or drops never changes what a reader sees.

mod common;

use common::{failed, published, started, succeeded, t, walk_pages, Sim};
use hallway_domain::*;
use hallway_store::{DeliveryStatus, EventLog, ReadModel, SledStore, StoreOptions};
use hallway_testkit::ids::dlv;

fn open(dir: &std::path::Path, records: usize) -> SledStore {
    let options = StoreOptions {
        bucket_cache_records: records,
        ..StoreOptions::default()
    };
    SledStore::open_with(dir, &options).expect("opens")
}

const DELIVERIES: [&str; 3] = ["dlv_aaaa00", "dlv_aaaa01", "dlv_aaaa02"];

/// The publish every test starts with: three deliveries to one webhook, at `t(0)`.
fn publish() -> Event {
    published("evt_1", 0, &DELIVERIES.map(|d| (d, "wh_1")))
}

#[test]
fn records_waiting_minutes_for_a_retry_leave_the_cache_and_read_back_the_same() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), 1024);
    store.append(&[publish()]).expect("appends");
    assert_eq!(store.cached_records(), 3, "each awaits its first attempt");
    let starts: Vec<Event> = DELIVERIES.iter().map(|d| started(d, 1, 0)).collect();
    store.append(&starts).expect("appends");
    assert_eq!(store.cached_records(), 3, "under way");
    // One retry is due a second after its failure, the others a minute after.
    store
        .append(&[
            failed(DELIVERIES[0], 1, 0, Some(60_030)),
            failed(DELIVERIES[1], 1, 0, Some(1_030)),
        ])
        .expect("appends");
    assert_eq!(
        store.cached_records(),
        3,
        "one due soon, one still under way"
    );
    store
        .append(&[
            started(DELIVERIES[1], 2, 1_030),
            failed(DELIVERIES[1], 2, 1_030, Some(60_030)),
            failed(DELIVERIES[2], 1, 0, Some(60_030)),
        ])
        .expect("appends");
    assert_eq!(store.cached_records(), 0, "all wait a minute");
    for (d, attempts) in DELIVERIES.into_iter().zip([1, 2, 1]) {
        let r = store
            .delivery(&WebhookId::from("wh_1"), &dlv(d))
            .expect("reads")
            .expect("exists");
        assert_eq!(r.status, DeliveryStatus::Pending);
        assert_eq!(r.next_attempt_at, Some(t(60_030)), "{d}");
        assert_eq!(r.attempts.len(), attempts, "{d}");
    }
}

#[test]
fn a_full_cache_takes_no_more_and_what_it_took_is_dropped_when_done() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), 2);
    store.append(&[publish()]).expect("appends");
    assert_eq!(store.cached_records(), 0, "three do not fit in two");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), 3);
    store.append(&[publish()]).expect("appends");
    assert_eq!(store.cached_records(), 3);
    let starts: Vec<Event> = DELIVERIES.iter().map(|d| started(d, 1, 0)).collect();
    store.append(&starts).expect("appends");
    let outcomes: Vec<Event> = DELIVERIES.iter().map(|d| succeeded(d, 1, 0)).collect();
    store.append(&outcomes).expect("appends");
    assert_eq!(store.cached_records(), 0, "nothing pending");
}

#[test]
fn the_cache_and_its_bound_change_nothing_a_reader_sees() {
    // Retries due seconds and minutes apart, so the cache keeps some buckets and drops
    // others, and a bound of none, a few and plenty.
    let policy = Policy {
        retry_delays: vec![DurationMs(0), DurationMs(2_000), DurationMs(120_000)],
        ..Policy::default()
    };
    let bounds = [0, 7, 1 << 20];
    let dirs: Vec<_> = bounds
        .iter()
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let stores: Vec<SledStore> = bounds
        .iter()
        .zip(&dirs)
        .map(|(b, d)| open(d.path(), *b))
        .collect();
    let (mut sim, setup) = Sim::new(policy, 3, 7);
    for s in &stores {
        s.append(&setup).expect("appends");
    }
    let mut kept = 0;
    for i in 0..150u64 {
        sim.advance(if i % 10 == 0 { 60_000 } else { 700 });
        let batch = sim.batch((i % 3) as usize, 200, 60);
        for s in &stores {
            s.append(&batch).expect("appends");
        }
        kept = kept.max(stores[2].cached_records());
        assert_eq!(stores[0].cached_records(), 0);
        assert!(stores[1].cached_records() <= 7);
    }
    assert!(kept > 0, "the unbounded cache kept something");
    for w in 0..3 {
        let webhook = WebhookId::from(format!("wh_{w}"));
        let seen: Vec<_> = stores.iter().map(|s| walk_pages(s, &webhook, 50)).collect();
        assert!(!seen[0].is_empty());
        assert_eq!(seen[0], seen[1], "{webhook}");
        assert_eq!(seen[0], seen[2], "{webhook}");
    }
}
