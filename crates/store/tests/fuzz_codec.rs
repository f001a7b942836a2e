//! Fuzzing the record decoder (proptest over arbitrary and mutated bytes, as cargo-fuzz needs
//! a nightly toolchain): decoding never panics, never allocates without bound, and anything
//! that is not a record this build wrote is an error naming the tree and key.
//!
//! Each property runs a bounded number of cases (a few seconds in a debug build); set
//! `PROPTEST_CASES` to run more.

mod common;

use common::{every_event_kind, Sim};
use hallway_domain::{Event, Policy, State};
use hallway_store::{codec, DeliveryRecord, EventLog, ReadModel, SledStore, StoreError};
use proptest::prelude::*;

fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A record with a valid version and checksum around `body`: what a writer with a bug (or a
/// checksum collision) would leave, so the bytes reach bincode itself.
fn sealed(body: &[u8]) -> Vec<u8> {
    let mut out = vec![codec::FORMAT_VERSION];
    out.extend_from_slice(&codec::crc32(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// The error must be a corrupt-record error naming the tree and key it was given.
fn names_the_record(err: &StoreError) -> Result<(), TestCaseError> {
    match err {
        StoreError::Corrupt { tree, key, reason } => {
            prop_assert_eq!(*tree, "log");
            prop_assert_eq!(key.as_str(), "seq 7");
            prop_assert!(!reason.is_empty());
            Ok(())
        }
        other => Err(TestCaseError::fail(format!(
            "expected a corrupt-record error, got {other:?}"
        ))),
    }
}

/// Decodes `bytes` as each type the store keeps; values that decode must survive a round
/// trip (the decoder and encoder agree on them).
fn decode_all(bytes: &[u8]) -> Result<usize, TestCaseError> {
    let key = || "seq 7".to_owned();
    let mut decoded = 0;
    match codec::decode::<Vec<Event>>("log", key, bytes) {
        Ok(events) => {
            decoded += 1;
            let back: Vec<Event> = codec::decode("log", key, &codec::encode(&events).unwrap())
                .expect("a re-encoded batch decodes");
            prop_assert_eq!(back, events);
        }
        Err(e) => names_the_record(&e)?,
    }
    match codec::decode::<(u64, State)>("log", key, bytes) {
        Ok((seq, state)) => {
            decoded += 1;
            let back: (u64, State) =
                codec::decode("log", key, &codec::encode(&(seq, &state)).unwrap())
                    .expect("a re-encoded snapshot decodes");
            prop_assert_eq!(back, (seq, state));
        }
        Err(e) => names_the_record(&e)?,
    }
    match codec::decode::<DeliveryRecord>("log", key, bytes) {
        Ok(record) => {
            decoded += 1;
            let back: DeliveryRecord = codec::decode("log", key, &codec::encode(&record).unwrap())
                .expect("a re-encoded delivery decodes");
            prop_assert_eq!(back, record);
        }
        Err(e) => names_the_record(&e)?,
    }
    match codec::decode::<u64>("log", key, bytes) {
        Ok(_) => decoded += 1,
        Err(e) => names_the_record(&e)?,
    }
    Ok(decoded)
}

/// Valid records of every shape the store writes (built once).
fn valid_records() -> &'static [Vec<u8>] {
    static RECORDS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    RECORDS.get_or_init(build_records)
}

fn build_records() -> Vec<Vec<u8>> {
    let (mut sim, setup) = Sim::new(Policy::default(), 3, 11);
    let mut batches = vec![setup, every_event_kind()];
    for _ in 0..3 {
        sim.advance(1_000);
        batches.push(sim.batch(2, 300, 30));
    }
    let mut out: Vec<Vec<u8>> = batches.iter().map(|b| codec::encode(b).unwrap()).collect();
    out.push(codec::encode(&(42u64, &sim.state)).unwrap());
    out.push(codec::encode(&7u64).unwrap());
    out
}

/// One change to a record's bytes.
#[derive(Clone, Debug)]
enum Mutation {
    Flip { at: usize, bit: u8 },
    Set { at: usize, byte: u8 },
    Insert { at: usize, bytes: Vec<u8> },
    Remove { at: usize, len: usize },
    Truncate { at: usize },
    Swap { a: usize, b: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        // Bytes that mean something to bincode: varint markers and extremes.
        (
            any::<usize>(),
            prop_oneof![
                Just(0u8),
                Just(0xFB),
                Just(0xFC),
                Just(0xFD),
                Just(0xFE),
                Just(0xFF),
                any::<u8>()
            ]
        )
            .prop_map(|(at, byte)| Mutation::Set { at, byte }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 1usize..32).prop_map(|(at, len)| Mutation::Remove { at, len }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Swap { a, b }),
    ]
}

fn mutate(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    let n = bytes.len();
    match m {
        Mutation::Flip { at, bit } => bytes[at % n] ^= 1 << bit,
        Mutation::Set { at, byte } => bytes[at % n] = *byte,
        Mutation::Insert { at, bytes: new } => {
            let at = at % (n + 1);
            bytes.splice(at..at, new.iter().copied());
        }
        Mutation::Remove { at, len } => {
            let at = at % n;
            bytes.drain(at..(at + len).min(n));
        }
        Mutation::Truncate { at } => bytes.truncate(at % n),
        Mutation::Swap { a, b } => bytes.swap(a % n, b % n),
    }
}

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn arbitrary_bytes_never_panic_and_are_corrupt(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        // Random bytes pass the version and checksum with odds of 2^-40: every decode fails.
        prop_assert_eq!(decode_all(&bytes)?, 0);
    }

    #[test]
    fn arbitrary_bodies_behind_a_valid_checksum_never_panic(
        body in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        decode_all(&sealed(&body))?;
    }

    #[test]
    fn bodies_of_varint_markers_never_allocate_without_bound(
        body in prop::collection::vec(
            prop_oneof![Just(0xFFu8), Just(0xFE), Just(0xFD), Just(0xFC), Just(0xFB), Just(0x01), Just(0x00)],
            0..64,
        ),
    ) {
        // Length prefixes of up to u64::MAX: the decoder's limit turns them into errors
        // (an unbounded allocation would abort the test process, not fail it).
        decode_all(&sealed(&body))?;
    }
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn mutated_valid_records_never_panic(
        which in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..4),
        reseal in any::<bool>(),
    ) {
        let records = valid_records();
        let original = which.get(records).clone();
        let mut bytes = original.clone();
        for m in &mutations {
            mutate(&mut bytes, m);
        }
        if reseal && bytes.len() >= 5 {
            // Past the checksum: bincode meets the damage itself.
            let body = bytes[5..].to_vec();
            bytes = sealed(&body);
        }
        let decoded = decode_all(&bytes)?;
        if !reseal && bytes != original {
            // The checksum catches what the mutations did (a collision has odds of 2^-32).
            prop_assert_eq!(decoded, 0, "damage went unnoticed: {:?}", mutations);
        }
    }
}

proptest! {
    #![proptest_config(config(24))]

    /// Garbage written around the store into its trees: reading it back is an error, never a
    /// panic, and opening the store again does not panic either.
    #[test]
    fn garbage_in_the_trees_is_an_error_through_the_store(
        garbage in prop::collection::vec(any::<u8>(), 0..256),
        reseal in any::<bool>(),
        target in 0usize..4,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let (mut sim, setup) = Sim::new(Policy::default(), 2, 5);
        store.append(&setup).unwrap();
        let mut delivery = None;
        for _ in 0..3 {
            sim.advance(1_000);
            let batch = sim.batch(1, 200, 50);
            if delivery.is_none() {
                delivery = batch.iter().find_map(|e| match e {
                    Event::EventPublished { deliveries, .. } => deliveries.first().cloned(),
                    _ => None,
                });
            }
            store.append(&batch).unwrap();
        }
        let seq = store.last_seq().unwrap();
        store.save_snapshot(seq, &sim.state).unwrap();
        let value = if reseal { sealed(&garbage) } else { garbage.clone() };
        let db = store.raw_db();
        let (tree, key): (&str, Vec<u8>) = match target {
            0 => ("log", 2u64.to_be_bytes().to_vec()),
            1 => ("meta", b"truncated_through".to_vec()),
            2 => ("meta", b"snapshot_seq".to_vec()),
            _ => {
                // Some delivery's history record.
                let history = db.open_tree("history_chunks").unwrap();
                let (k, _) = history.iter().next().expect("a history record").unwrap();
                ("history_chunks", k.to_vec())
            }
        };
        db.open_tree(tree).unwrap().insert(key, value).unwrap();
        // Every read path: errors are fine, panics are not.
        let _ = store.read_log(1).collect::<Vec<_>>();
        let _ = store.load_snapshot();
        for w in sim.state.webhooks_of(&sim.account) {
            let _ = store.deliveries(&w.id, 100, None);
        }
        if let Some((dlv, wh)) = &delivery {
            let _ = store.delivery(wh, dlv);
        }
        drop(store);
        if let Ok(reopened) = SledStore::open(dir.path()) {
            let _ = reopened.read_log(1).collect::<Vec<_>>();
            let _ = reopened.load_snapshot();
        }
        if tree == "log" && !reseal {
            let reopened = SledStore::open(dir.path()).unwrap();
            let bad = reopened.read_log(1).find_map(|r| r.err());
            prop_assert!(
                matches!(bad, Some(StoreError::Corrupt { tree: "log", .. })),
                "garbage in the log reads as {:?}", bad
            );
        }
    }
}
