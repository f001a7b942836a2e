//! Under steady load with pruning, snapshots and truncation, the disk stops growing.

mod common;

use common::Sim;
use hallway_domain::{CommandKind, DurationMs, Policy};
use hallway_store::{codec, EventLog, ReadModel, SledStore, StoreOptions, Truncation};
use std::collections::HashMap;

#[test]
fn disk_use_plateaus_under_steady_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Small body segments, so that retention has whole segments to delete within the test.
    let options = StoreOptions {
        body_segment_bytes: 256 * 1024,
        ..StoreOptions::default()
    };
    let store = SledStore::open_with(dir.path(), &options).expect("opens");
    // Short delays and a short window, so that steady state comes within the test; the
    // shape of the work is the real one (every command goes through the domain).
    let policy = Policy {
        retry_delays: vec![
            DurationMs(0),
            DurationMs::from_secs(30),
            DurationMs::from_secs(60),
        ],
        retention: DurationMs::from_mins(5),
        ..Policy::default()
    };
    let window = policy.retention;
    let (mut sim, setup) = Sim::new(policy, 3, 2024);
    store.append(&setup).expect("appends");
    store.flush().expect("flushes");

    const ROUNDS: usize = 600;
    const STEP_MS: u64 = 10_000;
    let mut samples: Vec<(usize, u64, HashMap<&'static str, usize>)> = Vec::new();
    let mut logged_bytes = 0u64;
    for round in 1..=ROUNDS {
        sim.advance(STEP_MS);
        let mut batch = sim.batch(20, 1_000, 10);
        if round % 10 == 0 {
            batch.extend(sim.run(CommandKind::ExpireIdempotencyKeys));
        }
        logged_bytes += codec::encode(&batch).expect("encodes").len() as u64;
        let seq = store.append(&batch).expect("appends");
        store.flush().expect("flushes");
        if round % 10 == 0 {
            // What the runtime does on a timer: retention, then snapshot and truncate.
            store
                .prune(hallway_domain::Timestamp(sim.now.0 - window.0))
                .expect("prunes");
            store.save_snapshot(seq, &sim.state).expect("snapshots");
            store.flush().expect("flushes");
            store.truncate(seq, Truncation::Now).expect("truncates");
            store.flush().expect("flushes");
        }
        if round % 50 == 0 {
            let size = store.size_on_disk().expect("size");
            let mut lens: HashMap<_, _> = store.tree_lens().into_iter().collect();
            lens.insert(
                "records",
                store.check_projections().expect("the projections agree"),
            );
            let segments = std::fs::read_dir(dir.path().join("bodies"))
                .expect("bodies")
                .count();
            lens.insert("body segments", segments);
            lens.insert("bodies", store.entry_counts().expect("counts").1);
            println!("round {round}: {size} bytes on disk, trees {lens:?}");
            samples.push((round, size, lens));
        }
    }

    // Tree sizes are bounded by the window: 5 minutes of 10 s rounds, 20 publishes to 3
    // webhooks each, plus what is still being retried and up to one pruning period.
    let max_live_deliveries = (window.0 / STEP_MS + 10 + 10) as usize * 20 * 3;
    let third = samples.len() / 3;
    for (round, _, lens) in &samples[third..] {
        assert!(
            lens["history_chunks"] <= max_live_deliveries,
            "round {round}: {lens:?}"
        );
        assert!(
            lens["bodies"] <= max_live_deliveries / 3,
            "round {round}: {lens:?}"
        );
        assert!(lens["log"] <= 10, "round {round}: {lens:?}");
        // ~1 MiB of bodies is live (20 a round of ~1 KiB, for the window and the retries):
        // the segments they are in, the active one, and one pruning period's worth.
        assert!(lens["body segments"] <= 12, "round {round}: {lens:?}");
        assert!(
            lens["history_chunks"] <= lens["records"],
            "chunks list records"
        );
        assert!(
            lens["bucket_time_chunks"] <= lens["bodies"],
            "one entry per fan-out"
        );
    }
    // The file plateaus: the last third of the run never goes far above the middle third's
    // peak (sled's file size moves in segment steps and with its cleaner, hence the slack),
    // though what was logged keeps growing linearly and ends far above it.
    let peak = |s: &[(usize, u64, HashMap<&'static str, usize>)]| {
        s.iter().map(|(_, size, _)| *size).max().unwrap_or(0)
    };
    let middle = peak(&samples[third..2 * third]);
    let last = peak(&samples[2 * third..]);
    println!(
        "peak in the middle third: {middle}, in the last third: {last}; logged: {logged_bytes}"
    );
    assert!(
        last <= middle + middle / 2,
        "disk use keeps growing: {middle} then {last} bytes"
    );
    assert!(
        last < logged_bytes,
        "disk use {last} is not below the {logged_bytes} bytes logged"
    );
}
