//! How the vendored sled splits leaves (its sixth and eighth patches, `vendor/sled/HALLWAY.md`):
//! a leaf of small entries holds up to 64 of them, and small keys written in order leave full
//! leaves behind them, so a backlog's spilled queues, ids and time indexes cost sled fewer
//! pages, each of which it keeps in memory for the life of the process; leaves of large
//! values still split past 16 entries, in the middle.

use std::collections::BTreeSet;

/// The leaves of `tree`, counted in sled's own dump of its levels (the last level listed).
fn leaves(tree: &sled::Tree) -> usize {
    let dump = format!("{tree:?}");
    let last = dump.rsplit("\tlevel ").next().unwrap_or_default();
    last.lines().filter(|l| l.starts_with("\t\t")).count()
}

/// Writes `keys` in the order given, each with `value_len` bytes, into a fresh tree; checks
/// every key reads back, also after a reopen, and returns the leaves the tree had.
fn written(keys: &[Vec<u8>], value_len: usize) -> usize {
    let dir = tempfile::tempdir().expect("temp dir");
    let count = {
        let db = sled::open(dir.path()).expect("open sled");
        let tree = db.open_tree("t").expect("open tree");
        for k in keys {
            tree.insert(k.as_slice(), vec![7u8; value_len])
                .expect("insert");
        }
        db.flush().expect("flush");
        let leaves = leaves(&tree);
        assert!(db.page_count() as usize > leaves, "every leaf is a page");
        (leaves, db.page_count())
    };
    let db = sled::open(dir.path()).expect("reopen sled");
    assert_eq!(db.page_count(), count.1, "the reopened page table");
    let count = count.0;
    let tree = db.open_tree("t").expect("open tree");
    let read: Vec<Vec<u8>> = tree
        .iter()
        .keys()
        .map(|k| k.expect("read key").to_vec())
        .collect();
    let sorted: BTreeSet<&Vec<u8>> = keys.iter().collect();
    assert_eq!(read.len(), sorted.len());
    assert!(read.iter().zip(sorted).all(|(a, b)| a == b));
    count
}

const KEYS: u64 = 12_000;

#[test]
fn small_keys_written_in_ascending_order_fill_their_leaves() {
    let keys: Vec<Vec<u8>> = (0..KEYS).map(|i| i.to_be_bytes().to_vec()).collect();
    let leaves = written(&keys, 40);
    // Split in the middle at 17 entries, each leaf left behind would keep 9.
    assert!(leaves <= (KEYS / 56) as usize, "{leaves} leaves");
}

#[test]
fn small_keys_written_in_descending_order_fill_their_leaves() {
    let keys: Vec<Vec<u8>> = (0..KEYS).rev().map(|i| i.to_be_bytes().to_vec()).collect();
    let leaves = written(&keys, 40);
    assert!(leaves <= (KEYS / 56) as usize, "{leaves} leaves");
}

#[test]
fn queues_appended_side_by_side_fill_their_leaves() {
    // Eight queues, each appended at its end in turn: every insert lands just before the
    // next queue's first key, in the middle of a leaf.
    let keys: Vec<Vec<u8>> = (0..KEYS)
        .map(|i| {
            let mut k = format!("webhook-{}", i % 8).into_bytes();
            k.extend_from_slice(&(i / 8).to_be_bytes());
            k
        })
        .collect();
    let leaves = written(&keys, 40);
    assert!(leaves <= (KEYS / 50) as usize, "{leaves} leaves");
}

#[test]
fn leaves_of_large_values_still_split_in_the_middle() {
    let keys: Vec<Vec<u8>> = (0..2_000u64).map(|i| i.to_be_bytes().to_vec()).collect();
    let leaves = written(&keys, 1_200);
    assert!(leaves >= 2_000 / 10, "{leaves} leaves");
}

#[test]
fn leaves_of_mid_sized_values_split_by_bytes() {
    // 308-byte entries: a leaf splits once past 12 KiB, at about 40 of them, not at 64
    // (and where the key goes: ascending keys leave ~36 behind, not ~20).
    let keys: Vec<Vec<u8>> = (0..4_000u64).map(|i| i.to_be_bytes().to_vec()).collect();
    let leaves = written(&keys, 300);
    assert!(
        (4_000 / 42..=4_000 / 30).contains(&leaves),
        "{leaves} leaves"
    );
}
