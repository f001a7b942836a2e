//! A small benchmark of the sled store: appends per second with a durable flush (one
//! command per append, and many commands per append as group commit makes them), replay
//! speed, and the cost of a multi-tree sled transaction against a single-tree batch.
//!
//! Run with `cargo run --release -p hallway-store --example store_bench`
//! (`-- --quick` for a short run, `-- --retention` to also print disk use over a long
//! steady-load run, `-- --engine-shape` for only the store's cost per delivery in the
//! throughput scenario's shape; `PER_BATCH=<publishes>` sets its batch size, 80 by default).

#[path = "../tests/common/mod.rs"]
mod common;

use common::Sim;
use hallway_domain::{CommandKind, DurationMs, Event, Policy, Timestamp};
use hallway_store::{codec, EventLog, ReadModel, SledStore, Truncation};
use sled::Transactional;
use std::time::{Duration, Instant};

/// The events of one runtime command each: a publish with the starts of its attempts, or
/// one attempt's outcome. Realistic shapes, produced by the real domain.
fn command_groups(publishes: usize, body_bytes: usize) -> (Vec<Event>, Vec<Vec<Event>>) {
    let (mut sim, setup) = Sim::new(Policy::default(), 3, 42);
    let mut groups = Vec::new();
    for i in 0..publishes {
        sim.advance(50);
        let mut publish = sim.publish(body_bytes);
        publish.extend(sim.tick());
        groups.push(publish);
        // Outcomes arrive a few publishes later, as they would.
        if i % 4 == 3 {
            let open: Vec<_> = sim.complete_open(5).into_iter().map(|e| vec![e]).collect();
            groups.extend(open);
        }
    }
    groups.extend(sim.complete_open(0).into_iter().map(|e| vec![e]));
    (setup, groups)
}

struct Run {
    appends: usize,
    commands: usize,
    events: usize,
    elapsed: Duration,
}

/// Appends `groups` in batches of `per_append` commands, flushing after each append.
fn append_run(
    setup: &[Event],
    groups: &[Vec<Event>],
    per_append: usize,
) -> (Run, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(dir.path()).expect("opens");
    store.append(setup).expect("appends");
    store.flush().expect("flushes");
    let batches: Vec<Vec<Event>> = groups
        .chunks(per_append)
        .map(|c| c.iter().flatten().cloned().collect())
        .collect();
    let started = Instant::now();
    for b in &batches {
        store.append(b).expect("appends");
        store.flush().expect("flushes");
    }
    let elapsed = started.elapsed();
    let run = Run {
        appends: batches.len(),
        commands: groups.len(),
        events: batches.iter().map(Vec::len).sum(),
        elapsed,
    };
    drop(store);
    (run, dir)
}

fn per_sec(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn report(label: &str, r: &Run) {
    println!(
        "{label:<34} {:>9.0} appends/s {:>9.0} commands/s {:>9.0} events/s  ({} appends in {:.2?})",
        per_sec(r.appends, r.elapsed),
        per_sec(r.commands, r.elapsed),
        per_sec(r.events, r.elapsed),
        r.appends,
        r.elapsed
    );
}

/// Raw sled: the same records written as a single-tree batch or as a transaction over five
/// trees, with a durable flush after each group.
fn raw_sled(records: usize, per_flush: usize, value_bytes: usize) {
    let value = vec![7u8; value_bytes];
    for mode in ["one tree, apply_batch", "five trees, transaction"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::open(dir.path()).expect("opens");
        let trees: Vec<sled::Tree> = (0..5)
            .map(|i| db.open_tree(format!("t{i}")).expect("tree"))
            .collect();
        let started = Instant::now();
        let mut key = 0u64;
        for _ in 0..records / per_flush {
            if mode.starts_with("one") {
                let mut batch = sled::Batch::default();
                for _ in 0..per_flush {
                    key += 1;
                    batch.insert(&key.to_be_bytes(), value.as_slice());
                }
                trees[0].apply_batch(batch).expect("applies");
            } else {
                let first = key;
                (&trees[0], &trees[1], &trees[2], &trees[3], &trees[4])
                    .transaction(|(a, b, c, d, e)| {
                        let tx = [a, b, c, d, e];
                        for i in 0..per_flush as u64 {
                            let k = first + i + 1;
                            tx[(k % 5) as usize].insert(&k.to_be_bytes(), value.as_slice())?;
                        }
                        Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
                    })
                    .expect("commits");
                key += per_flush as u64;
            }
            db.flush().expect("flushes");
        }
        let elapsed = started.elapsed();
        println!(
            "raw sled, {mode:<24} {per_flush:>5} records/flush: {:>9.0} records/s",
            per_sec(records, elapsed)
        );
    }
}

fn retention_run(rounds: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(dir.path()).expect("opens");
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
    let (mut sim, setup) = Sim::new(policy, 3, 7);
    store.append(&setup).expect("appends");
    let mut logged = 0u64;
    let started = Instant::now();
    for round in 1..=rounds {
        sim.advance(10_000);
        let mut batch = sim.batch(20, 1_000, 10);
        if round % 10 == 0 {
            batch.extend(sim.run(CommandKind::ExpireIdempotencyKeys));
        }
        logged += codec::encode(&batch).expect("encodes").len() as u64;
        let seq = store.append(&batch).expect("appends");
        store.flush().expect("flushes");
        if round % 10 == 0 {
            store
                .prune(Timestamp(sim.now.0 - window.0))
                .expect("prunes");
            store.save_snapshot(seq, &sim.state).expect("snapshots");
            store.truncate(seq, Truncation::Now).expect("truncates");
            store.flush().expect("flushes");
        }
        if round % (rounds / 10).max(1) == 0 {
            println!(
                "retention round {round:>6}: {:>6.1} MB on disk, {:>7.1} MB logged so far ({:.1?})",
                store.size_on_disk().expect("size") as f64 / 1e6,
                logged as f64 / 1e6,
                started.elapsed()
            );
        }
    }
}

/// The throughput scenario's shape (5 webhooks, 2 KB bodies, each batch holding 80 publishes
/// with their starts and the previous batch's outcomes, about 880 events), 100,000
/// deliveries: the store's CPU cost per delivery without the HTTP work around it.
fn engine_shape_run() {
    let (mut sim, setup) = Sim::new(Policy::default(), 5, 11);
    let per_batch: usize = std::env::var("PER_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(80);
    let batches: Vec<Vec<Event>> = (0..20_000 / per_batch)
        .map(|_| {
            sim.advance(20);
            sim.batch(per_batch, 2_000, 0)
        })
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(dir.path()).expect("opens");
    store.append(&setup).expect("appends");
    let (mut append, mut flush) = (Duration::ZERO, Duration::ZERO);
    for b in &batches {
        let t = Instant::now();
        store.append(b).expect("appends");
        append += t.elapsed();
        let t = Instant::now();
        store.flush().expect("flushes");
        flush += t.elapsed();
    }
    let deliveries = (20_000 / per_batch) * per_batch * 5;
    println!(
        "engine shape: {deliveries} deliveries, append {:.1} µs/delivery, flush {:.1} µs/delivery, {:.0} bytes on disk/delivery",
        append.as_secs_f64() * 1e6 / deliveries as f64,
        flush.as_secs_f64() * 1e6 / deliveries as f64,
        store.size_on_disk().expect("size") as f64 / deliveries as f64,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--engine-shape") {
        engine_shape_run();
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let publishes = if quick { 1_000 } else { 5_000 };
    println!(
        "generating {publishes} publishes (1 KiB bodies, 3 webhooks each) through the domain..."
    );
    let (setup, groups) = command_groups(publishes, 1_000);
    let events: usize = groups.iter().map(Vec::len).sum();
    println!("{} commands, {events} events", groups.len());

    // One command per append and flush: what a lone caller waits for.
    let one_by_one = &groups[..groups.len().min(if quick { 1_000 } else { 4_000 })];
    let (r, _dir) = append_run(&setup, one_by_one, 1);
    report("1 command per append+flush", &r);
    let mut replay_dir = None;
    for per_append in [10, 100, 1_000] {
        let (r, dir) = append_run(&setup, &groups, per_append);
        report(&format!("{per_append} commands per append+flush"), &r);
        replay_dir = Some(dir);
    }

    // Replay: read and decode the whole log, as startup without a snapshot does.
    if let Some(dir) = replay_dir {
        let store = SledStore::open(dir.path()).expect("opens");
        for pass in ["cold", "warm"] {
            let started = Instant::now();
            let mut n = 0usize;
            let mut records = 0usize;
            for item in store.read_log(1) {
                n += item.expect("reads").1.len();
                records += 1;
            }
            let elapsed = started.elapsed();
            println!(
                "replay ({pass}, {records} records of up to 1,000 commands): {:>10.0} events/s ({n} events in {elapsed:.2?})",
                per_sec(n, elapsed)
            );
        }
        // Replay of small records (one command each), the worst case for per-record cost.
        drop(store);
        let (_, dir) = append_run(&setup, one_by_one, 1);
        let store = SledStore::open(dir.path()).expect("opens");
        let started = Instant::now();
        let mut n = 0usize;
        let mut records = 0usize;
        for item in store.read_log(1) {
            n += item.expect("reads").1.len();
            records += 1;
        }
        let elapsed = started.elapsed();
        println!(
            "replay ({records} records of 1 command):          {:>10.0} events/s ({n} events in {elapsed:.2?})",
            per_sec(n, elapsed)
        );
    }

    // What a multi-tree transaction costs against a single-tree batch.
    for per_flush in [1, 100, 1_000] {
        raw_sled(if per_flush == 1 { 2_000 } else { 100_000 }, per_flush, 200);
    }

    if args.iter().any(|a| a == "--retention") {
        retention_run(if quick { 1_000 } else { 5_000 });
    }
}
