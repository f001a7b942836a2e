//! The log: round trips, replay from any sequence, gaps, snapshots, truncation.

mod common;

use common::{every_event_kind, replay, Sim};
use hallway_domain::{Event, Policy, State};
use hallway_store::{codec, EventLog, Seq, SledStore, SnapshotDraft, StoreError, Truncation};
use proptest::prelude::*;

fn read_all(store: &SledStore, from: Seq) -> Result<Vec<(Seq, Vec<Event>)>, StoreError> {
    store.read_log(from).collect()
}

#[test]
fn every_event_kind_round_trips_through_the_codec() {
    for event in every_event_kind() {
        let bytes = codec::encode(&event).expect("encodes");
        let back: Event = codec::decode("test", || "k".into(), &bytes).expect("decodes");
        assert_eq!(back, event);
    }
}

#[test]
fn every_event_kind_round_trips_through_the_log_and_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let events = every_event_kind();
    assert_eq!(
        events.len(),
        17,
        "a new event kind needs a case in every_event_kind"
    );
    {
        let store = SledStore::open(dir.path()).expect("opens");
        // Each kind alone, then all of them as one batch.
        for (i, e) in events.iter().enumerate() {
            assert_eq!(
                store.append(std::slice::from_ref(e)).expect("appends"),
                i as Seq + 1
            );
        }
        assert_eq!(store.append(&events).expect("appends"), 18);
        store.flush().expect("flushes");
    }
    let store = SledStore::open(dir.path()).expect("reopens");
    assert_eq!(store.last_seq().expect("last"), 18);
    let log = read_all(&store, 1).expect("reads");
    assert_eq!(log.len(), 18);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(log[i], (i as Seq + 1, vec![e.clone()]));
    }
    assert_eq!(log[17], (18, events));
}

#[test]
fn replay_from_any_sequence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(dir.path()).expect("opens");
    let (mut sim, setup) = Sim::new(Policy::default(), 3, 7);
    let mut batches = vec![setup];
    for i in 0..40 {
        sim.advance(1_000);
        batches.push(sim.batch(i % 5, 300, 30));
    }
    for (i, b) in batches.iter().enumerate() {
        assert_eq!(store.append(b).expect("appends"), i as Seq + 1);
    }
    let n = batches.len() as Seq;
    for from in 0..=n + 2 {
        let got = read_all(&store, from).expect("reads");
        let start = from.max(1);
        let want: Vec<(Seq, Vec<Event>)> = (start..=n)
            .map(|s| (s, batches[(s - 1) as usize].clone()))
            .collect();
        assert_eq!(got, want, "from {from}");
    }
    // Replaying everything rebuilds the live state.
    let all = read_all(&store, 1).expect("reads");
    let rebuilt = replay(Policy::default(), all.into_iter().flat_map(|(_, b)| b));
    assert_eq!(rebuilt, sim.state);
}

#[test]
fn a_missing_record_is_a_gap_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(dir.path()).expect("opens");
    for _ in 0..5 {
        store.append(&every_event_kind()[..2]).expect("appends");
    }
    let log = store.raw_db().open_tree("log").expect("tree");
    log.remove(3u64.to_be_bytes()).expect("removes");
    let got: Vec<_> = store.read_log(1).collect();
    assert_eq!(got.len(), 3, "two records, then the error, then nothing");
    assert!(got[0].is_ok() && got[1].is_ok());
    assert!(
        matches!(
            got[2],
            Err(StoreError::Gap {
                expected: 3,
                found: 4
            })
        ),
        "{:?}",
        got[2]
    );
    // Starting inside the hole is a gap too: the record asked for is not there.
    assert!(matches!(
        read_all(&store, 3),
        Err(StoreError::Gap {
            expected: 3,
            found: 4
        })
    ));
}

#[test]
fn snapshot_plus_tail_replay_equals_a_full_replay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = Policy::default();
    let (mut sim, setup) = Sim::new(policy.clone(), 4, 11);
    let mut snapshots: Vec<(Seq, State)> = Vec::new();
    {
        let store = SledStore::open(dir.path()).expect("opens");
        store.append(&setup).expect("appends");
        for i in 0..60u64 {
            sim.advance(20_000);
            let seq = store
                .append(&sim.batch((i % 4) as usize, 500, 40))
                .expect("appends");
            if i % 15 == 14 {
                store.save_snapshot(seq, &sim.state).expect("snapshots");
                snapshots.push((seq, sim.state.clone()));
            }
        }
        store.flush().expect("flushes");
    }
    let store = SledStore::open(dir.path()).expect("reopens");
    let full = replay(
        policy.clone(),
        read_all(&store, 1)
            .expect("reads")
            .into_iter()
            .flat_map(|(_, b)| b),
    );
    assert_eq!(full, sim.state);

    // The latest snapshot, as startup loads it.
    let (snap_seq, mut state) = store.load_snapshot().expect("loads").expect("has one");
    assert_eq!((snap_seq, &state), (snapshots[3].0, &snapshots[3].1));
    for item in store.read_log(snap_seq + 1) {
        let (_, batch) = item.expect("reads");
        for e in &batch {
            state.apply(e);
        }
    }
    assert_eq!(state, full);

    // Every earlier snapshot plus its tail gives the same state too.
    for (seq, snap) in &snapshots {
        let mut state = snap.clone();
        for item in store.read_log(seq + 1) {
            for e in &item.expect("reads").1 {
                state.apply(e);
            }
        }
        assert_eq!(state, full, "snapshot at {seq}");
    }

    // Truncating to the snapshot keeps startup working and refuses older reads clearly.
    let removed = store
        .truncate(snap_seq, Truncation::Now)
        .expect("truncates");
    assert_eq!(removed, snap_seq);
    assert!(matches!(
        read_all(&store, 1),
        Err(StoreError::Truncated { from: 1, first_kept }) if first_kept == snap_seq + 1
    ));
    let mut state = store.load_snapshot().expect("loads").expect("has one").1;
    for item in store.read_log(snap_seq + 1) {
        for e in &item.expect("reads").1 {
            state.apply(e);
        }
    }
    assert_eq!(state, full);
}

#[test]
fn a_snapshot_draft_installs_only_in_the_backend_that_wrote_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with_snapshot(dir.path(), 3, 1);
    let foreign = SnapshotDraft::new(2, "another backend's draft");
    assert_eq!(foreign.seq(), 2);
    match store.install_snapshot(foreign) {
        Err(StoreError::Invalid(_)) => {}
        other => panic!("expected an invalid draft, got {other:?}"),
    }
    assert_eq!(
        store.load_snapshot().expect("loads").map(|(seq, _)| seq),
        Some(1)
    );
    let draft = store
        .write_snapshot(3, &State::new(Policy::default()))
        .expect("writes");
    assert_eq!(draft.seq(), 3);
    store.install_snapshot(draft).expect("installs");
    assert_eq!(
        store.load_snapshot().expect("loads").map(|(seq, _)| seq),
        Some(3)
    );
}

#[test]
fn a_snapshot_file_that_cannot_be_written_is_a_file_error_with_its_source() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with_snapshot(dir.path(), 3, 1);
    // A directory where the draft file goes: creating the file fails.
    std::fs::create_dir(
        dir.path()
            .join(format!("{}.2.tmp", hallway_store::SNAPSHOT_FILE)),
    )
    .expect("mkdir");
    let err = store
        .write_snapshot(2, &State::new(Policy::default()))
        .expect_err("cannot create the draft");
    match &err {
        StoreError::Io { what, .. } => assert!(what.contains(hallway_store::SNAPSHOT_FILE)),
        other => panic!("expected a file error, got {other:?}"),
    }
    assert!(
        std::error::Error::source(&err).is_some(),
        "keeps the OS error"
    );
}

#[test]
fn truncating_with_the_appends_removes_nothing_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with_snapshot(dir.path(), 10, 5);
    assert_eq!(store.truncate(5, Truncation::WithAppends).expect("asks"), 0);
    assert_eq!(read_all(&store, 1).expect("reads").len(), 10);
    store.append(&every_event_kind()[..1]).expect("appends");
    assert_eq!(first_kept_of(&store), 6);
}

/// The first record a truncated log still has.
fn first_kept_of(store: &SledStore) -> Seq {
    match read_all(store, 1) {
        Err(StoreError::Truncated { first_kept, .. }) => first_kept,
        other => panic!("expected a truncated log, got {other:?}"),
    }
}

/// A store in `dir` with `n` one-event records and a snapshot covering the first `covered`.
fn store_with_snapshot(dir: &std::path::Path, n: usize, covered: Seq) -> SledStore {
    let store = SledStore::open(dir).expect("opens");
    for _ in 0..n {
        store.append(&every_event_kind()[..1]).expect("appends");
    }
    store
        .save_snapshot(covered, &State::new(Policy::default()))
        .expect("snapshots");
    store
}

#[test]
fn a_later_truncation_goes_a_few_records_per_append_and_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = store_with_snapshot(dir.path(), 30, 20);
        // Asked past the snapshot: only up to it, and nothing goes until appends carry it.
        store.truncate(25, Truncation::WithAppends).expect("asks");
        assert_eq!(read_all(&store, 1).expect("reads").len(), 30);
        let mut first_kept = Vec::new();
        for _ in 0..4 {
            store.append(&every_event_kind()[..1]).expect("appends");
            first_kept.push(first_kept_of(&store));
        }
        // Eight records per append, never past the snapshot.
        assert_eq!(first_kept, vec![9, 17, 21, 21]);
        assert_eq!(read_all(&store, 21).expect("reads").len(), 14);
        store.flush().expect("flushes");
    }
    let store = SledStore::open(dir.path()).expect("reopens");
    assert_eq!(first_kept_of(&store), 21);
    assert_eq!(read_all(&store, 21).expect("reads").len(), 14);
}

#[test]
fn a_later_truncation_cut_short_by_a_restart_goes_on_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = store_with_snapshot(dir.path(), 30, 20);
        store.truncate(20, Truncation::WithAppends).expect("asks");
        store.append(&every_event_kind()[..1]).expect("appends");
        store.flush().expect("flushes");
    }
    let store = SledStore::open(dir.path()).expect("reopens");
    let first_kept = || first_kept_of(&store);
    assert_eq!(first_kept(), 9, "the first append took 1..=8");
    store.append(&every_event_kind()[..1]).expect("appends");
    assert_eq!(
        first_kept(),
        17,
        "the next append after the restart goes on"
    );
    store.append(&every_event_kind()[..1]).expect("appends");
    assert_eq!(first_kept(), 21, "and stops at the snapshot");
}

#[test]
fn an_eager_truncation_and_appends_carrying_a_later_one_keep_one_unbroken_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = store_with_snapshot(dir.path(), 100, 90);
        store.truncate(90, Truncation::WithAppends).expect("asks");
        store.append(&every_event_kind()[..1]).expect("appends");
        // The append took 1..=8; the eager call takes the rest it is asked for.
        assert_eq!(store.truncate(50, Truncation::Now).expect("truncates"), 42);
        store.append(&every_event_kind()[..1]).expect("appends");
        store.flush().expect("flushes");
    }
    let store = SledStore::open(dir.path()).expect("reopens");
    assert_eq!(first_kept_of(&store), 59);
    assert_eq!(read_all(&store, 59).expect("reads whole").len(), 44);
}

#[test]
fn an_eager_truncation_beside_appends_carrying_a_later_one_leaves_a_marker_that_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = State::new(Policy::default());
    // A race: each round gives it another chance to show.
    for _ in 0..8 {
        let (first, last) = {
            let store = std::sync::Arc::new(SledStore::open(dir.path()).expect("opens"));
            for _ in 0..1_000 {
                store.append(&every_event_kind()[..1]).expect("appends");
            }
            let snapshot = store.last_seq().expect("last");
            store.save_snapshot(snapshot, &state).expect("snapshots");
            store
                .truncate(snapshot, Truncation::WithAppends)
                .expect("asks");
            // Appends run throughout the eager truncation, so some carry the later one
            // while the eager one is mid-chunk.
            let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let appender = {
                let (store, done) = (store.clone(), done.clone());
                std::thread::spawn(move || {
                    let mut n = 0;
                    while !done.load(std::sync::atomic::Ordering::Relaxed) || n < 20 {
                        store.append(&every_event_kind()[..1]).expect("appends");
                        n += 1;
                    }
                })
            };
            store
                .truncate(snapshot, Truncation::Now)
                .expect("truncates");
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            appender.join().expect("the appender ends");
            store.flush().expect("flushes");
            (snapshot + 1, store.last_seq().expect("last"))
        };
        // Whatever the interleaving, the durable marker names the first record the log has.
        let store = SledStore::open(dir.path()).expect("reopens");
        assert!(matches!(
            read_all(&store, 1),
            Err(StoreError::Truncated { first_kept, .. }) if first_kept == first
        ));
        let kept = read_all(&store, first).expect("reads whole from the marker");
        assert_eq!(kept.len() as u64, last - first + 1);
    }
}

#[test]
fn truncation_never_passes_the_snapshot_and_numbering_survives_an_empty_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = Policy::default();
    let state = State::new(policy);
    {
        let store = SledStore::open(dir.path()).expect("opens");
        for _ in 0..10 {
            store.append(&every_event_kind()[..1]).expect("appends");
        }
        // No snapshot yet: nothing may go.
        assert_eq!(store.truncate(10, Truncation::Now).expect("truncates"), 0);
        store.save_snapshot(6, &state).expect("snapshots");
        // Asked for more than the snapshot covers: only up to it.
        assert_eq!(store.truncate(9, Truncation::Now).expect("truncates"), 6);
        assert_eq!(read_all(&store, 7).expect("reads").len(), 4);
        assert_eq!(store.truncate(6, Truncation::Now).expect("truncates"), 0);
        store.save_snapshot(10, &state).expect("snapshots");
        assert_eq!(store.truncate(10, Truncation::Now).expect("truncates"), 4);
        assert_eq!(read_all(&store, 11).expect("reads"), vec![]);
        // A snapshot may not claim records the log does not have, or ones truncated away.
        assert!(matches!(
            store.save_snapshot(11, &state),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            store.save_snapshot(5, &state),
            Err(StoreError::Invalid(_))
        ));
        store.flush().expect("flushes");
    }
    let store = SledStore::open(dir.path()).expect("reopens");
    assert_eq!(store.last_seq().expect("last"), 10);
    assert_eq!(store.append(&every_event_kind()[..1]).expect("appends"), 11);
    assert_eq!(read_all(&store, 11).expect("reads").len(), 1);
    assert!(matches!(
        read_all(&store, 10),
        Err(StoreError::Truncated { .. })
    ));
}

#[test]
fn an_empty_store_reads_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(dir.path()).expect("opens");
    assert_eq!(store.last_seq().expect("last"), 0);
    assert_eq!(read_all(&store, 1).expect("reads"), vec![]);
    assert!(store.load_snapshot().expect("loads").is_none());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any batch sizes, any snapshot point, any truncation request, any start: the log reads
    /// back exactly the batches from there, or says clearly that they were truncated.
    #[test]
    fn reads_match_what_was_appended(
        sizes in proptest::collection::vec(0usize..6, 1..30),
        snap_at in any::<prop::sample::Index>(),
        truncate_to in 0u64..40,
        from in 0u64..40,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SledStore::open(dir.path()).expect("opens");
        let kinds = every_event_kind();
        let batches: Vec<Vec<Event>> = sizes
            .iter()
            .enumerate()
            .map(|(i, n)| kinds.iter().cycle().skip(i).take(*n).cloned().collect())
            .collect();
        for b in &batches {
            store.append(b).expect("appends");
        }
        let n = batches.len() as Seq;
        let snap = snap_at.index(batches.len()) as Seq + 1;
        store.save_snapshot(snap, &State::new(Policy::default())).expect("snapshots");
        let cut = truncate_to.min(snap);
        prop_assert_eq!(store.truncate(truncate_to, Truncation::Now).expect("truncates"), cut);
        let got = read_all(&store, from);
        if from.max(1) <= cut {
            prop_assert!(matches!(got, Err(StoreError::Truncated { .. })), "{:?}", got);
        } else {
            let want: Vec<(Seq, Vec<Event>)> =
                (from.max(1)..=n).map(|s| (s, batches[(s - 1) as usize].clone())).collect();
            prop_assert_eq!(got.expect("reads"), want);
        }
    }
}

/// Bodies live in body segments that events' entries point to, not in log records: reading
/// the log puts them back, replaying it (which only rebuilds state) leaves them out, and the
/// state is the same.
#[test]
fn replay_leaves_bodies_out_and_rebuilds_the_same_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(dir.path()).expect("opens");
    let (mut sim, setup) = Sim::new(Policy::default(), 2, 3);
    store.append(&setup).expect("appends");
    for _ in 0..5 {
        sim.advance(1_000);
        store.append(&sim.batch(3, 200, 0)).expect("appends");
    }
    let bodies = |records: Vec<(Seq, Vec<Event>)>| -> Vec<usize> {
        records
            .into_iter()
            .flat_map(|(_, events)| events)
            .filter_map(|e| match e {
                Event::EventPublished {
                    body, deliveries, ..
                } if !deliveries.is_empty() => Some(body.len()),
                _ => None,
            })
            .collect()
    };
    let read = read_all(&store, 1).expect("reads");
    let replayed: Vec<(Seq, Vec<Event>)> = store
        .replay_log(1)
        .collect::<Result<_, _>>()
        .expect("replays");
    assert!(!bodies(read.clone()).is_empty());
    assert!(
        bodies(read.clone()).iter().all(|n| *n > 0),
        "read_log restores bodies"
    );
    assert!(
        bodies(replayed.clone()).iter().all(|n| *n == 0),
        "replay_log leaves them out"
    );
    let mut from_read = State::new(Policy::default());
    let mut from_replay = State::new(Policy::default());
    for (_, events) in &read {
        events.iter().for_each(|e| from_read.apply(e));
    }
    for (_, events) in &replayed {
        events.iter().for_each(|e| from_replay.apply(e));
    }
    assert_eq!(from_read, from_replay);
    assert_eq!(from_read, sim.state);
}
