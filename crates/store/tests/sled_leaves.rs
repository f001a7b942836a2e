//! How the vendored sled splits leaves (its sixth patch, `vendor/sled/HALLWAY.md`): small keys
//! written in order leave full leaves behind them, so a backlog's spilled queues and
//! histories cost sled fewer pages, each of which it keeps in memory for the life of the
//! process; leaves of large values still split in the middle.

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
        leaves(&tree)
    };
    let db = sled::open(dir.path()).expect("reopen sled");
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
    // Split in the middle, each leaf left behind keeps 9 of 17 entries.
    assert!(leaves <= (KEYS / 12) as usize, "{leaves} leaves");
}

#[test]
fn small_keys_written_in_descending_order_fill_their_leaves() {
    let keys: Vec<Vec<u8>> = (0..KEYS).rev().map(|i| i.to_be_bytes().to_vec()).collect();
    let leaves = written(&keys, 40);
    assert!(leaves <= (KEYS / 12) as usize, "{leaves} leaves");
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
    assert!(leaves <= (KEYS / 11) as usize, "{leaves} leaves");
}

#[test]
fn leaves_of_large_values_still_split_in_the_middle() {
    let keys: Vec<Vec<u8>> = (0..2_000u64).map(|i| i.to_be_bytes().to_vec()).collect();
    let leaves = written(&keys, 1_200);
    assert!(leaves >= 2_000 / 10, "{leaves} leaves");
}
