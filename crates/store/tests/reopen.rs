//! A store dropped at rest leaves sled a recovery snapshot, and reopening from it gives back
//! exactly what was there: every tree, key for key, and projections that agree with the log.

mod common;

use common::Sim;
use hallway_domain::Policy;
use hallway_store::{EventLog, SledStore};
use std::collections::BTreeMap;
use std::path::Path;

type Dump = BTreeMap<Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>>;

/// Every tree of the store, key for key.
fn dump(store: &SledStore) -> Dump {
    let db = store.raw_db();
    db.tree_names()
        .into_iter()
        .map(|name| {
            let tree = db.open_tree(&name).expect("tree");
            let pairs = tree
                .iter()
                .map(|kv| {
                    let (k, v) = kv.expect("reads");
                    (k.to_vec(), v.to_vec())
                })
                .collect();
            (name.to_vec(), pairs)
        })
        .collect()
}

/// The log position of sled's newest recovery snapshot (its file is `snap.{lsn:016X}`).
fn newest_snapshot(dir: &Path) -> Option<u64> {
    std::fs::read_dir(dir)
        .expect("lists")
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            u64::from_str_radix(name.strip_prefix("snap.")?, 16).ok()
        })
        .max()
}

/// A new store in a fresh directory, with the simulation's accounts and webhooks logged.
fn fresh(seed: u64) -> (tempfile::TempDir, Sim, SledStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (sim, setup) = Sim::new(Policy::default(), 3, seed);
    let store = SledStore::open(dir.path()).expect("opens");
    store.append(&setup).expect("appends");
    (dir, sim, store)
}

/// Enough batches that sled splits nodes, relocates pages and cleans segments, with the
/// store's own snapshots, truncation and pruning among them.
fn write(store: &SledStore, sim: &mut Sim, batches: usize) {
    for i in 0..batches {
        sim.advance(1_000);
        let seq = store.append(&sim.batch(3, 600, 30)).expect("appends");
        if i % 200 == 199 {
            store.save_snapshot(seq, &sim.state).expect("snapshots");
        }
    }
    store.flush().expect("flushes");
}

#[test]
fn a_store_dropped_at_rest_reopens_from_its_snapshot_with_everything_in_place() {
    let (dir, mut sim, store) = fresh(11);
    write(&store, &mut sim, 1_500);
    let at_open = newest_snapshot(dir.path());
    let before = dump(&store);
    let last = store.last_seq().expect("last");
    drop(store);

    let written = newest_snapshot(dir.path());
    assert!(
        written > at_open,
        "dropping the store writes a newer snapshot ({written:?} after {at_open:?})"
    );
    let store = SledStore::open(dir.path()).expect("reopens");
    assert_eq!(store.last_seq().expect("last"), last);
    assert!(dump(&store) == before, "every tree is as it was");
    let records = store.check_projections().expect("projections agree");
    assert!(records > 1_000, "{records} records");

    // Writing on from the snapshot, and dropping again, keeps it all the same way.
    write(&store, &mut sim, 300);
    let before = dump(&store);
    drop(store);
    let store = SledStore::open(dir.path()).expect("reopens");
    assert!(dump(&store) == before, "every tree is as it was, again");
    store.check_projections().expect("projections agree");
}

/// Whether sled wrote any page to a file of its own (a node too large for its log segments).
fn has_blobs(dir: &Path) -> bool {
    std::fs::read_dir(dir.join("blobs"))
        .map(|entries| entries.flatten().next().is_some())
        .unwrap_or(false)
}

#[test]
fn a_log_of_large_batches_written_to_sled_blobs_reopens_whole() {
    // Batches of this size make log pages past sled's inline limit (a quarter of a 512 KiB
    // segment), which sled writes to files in `blobs/` (and, patched, syncs before the log
    // entry that points at them can be made durable).
    let (dir, mut sim, store) = fresh(17);
    for _ in 0..40 {
        sim.advance(1_000);
        store.append(&sim.batch(120, 600, 30)).expect("appends");
        store.flush().expect("flushes");
    }
    assert!(
        has_blobs(dir.path()),
        "the batches were large enough for blobs"
    );
    let before = dump(&store);
    let last = store.last_seq().expect("last");
    drop(store);

    let store = SledStore::open(dir.path()).expect("reopens");
    assert_eq!(store.last_seq().expect("last"), last);
    assert!(dump(&store) == before, "every tree is as it was");
    store.check_projections().expect("projections agree");
}
