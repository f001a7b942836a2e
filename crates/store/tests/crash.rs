//! Crash safety under SIGKILL.
//!
//! A child process (this test binary, re-run with an environment variable) appends batches
//! in a loop, flushes now and then (several batches share a flush: group commit), and prints
//! `ACK {seq}` after each flush returns. The parent kills it with SIGKILL at random moments,
//! many times, reopening the store after each kill and checking:
//! - the store opens (sled 0.34 has open reports of databases that cannot be reopened after
//!   an abrupt stop; this is where we would see it);
//! - the log reads without a gap up to `last_seq`, and `last_seq` covers every acknowledged
//!   batch;
//! - every batch in it is whole (each batch describes its own size in every event);
//! - the projections agree with the log: each recent delivery has its record, in the state
//!   the log says, its body is there while it is pending, and the index trees match.
//!
//! The child also snapshots, truncates the log and prunes history as it goes, so crashes
//! land inside those too. Set `HALLWAY_CRASH_SEED` to replay a run's kill schedule.

mod common;

use common::T0;
use hallway_domain::*;
use hallway_store::{DeliveryStatus, EventLog, ReadModel, Seq, SledStore, StoreError, Truncation};
use hallway_testkit::rng::Rng;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "HALLWAY_STORE_CRASH_CHILD_DIR";
const SEED_ENV: &str = "HALLWAY_CRASH_SEED";
const KILLS: usize = 25;
/// The child prunes deliveries created more than this many batches ago; the parent checks
/// the projections of the batches after that.
const PRUNE_LAG: u64 = 100;
const CHECKED_TAIL: u64 = 60;

fn at(seq: Seq) -> Timestamp {
    Timestamp(T0.0 + seq * 1000)
}

/// The deliveries a batch's publishes create.
fn deliveries_of(batch: &[Event]) -> Vec<DeliveryId> {
    batch
        .iter()
        .filter_map(|e| match e {
            Event::EventPublished { deliveries, .. } => {
                Some(deliveries.iter().map(|(d, _)| d.clone()))
            }
            _ => None,
        })
        .flatten()
        .collect()
}

/// Batch `seq`: 1 to 6 publishes whose bodies say `{seq}:{i}:{n}:`, each to 1 or 2
/// webhooks, then the success of every delivery of the batch before.
fn make_batch(seq: Seq, previous: &[DeliveryId], rng: &mut Rng) -> Vec<Event> {
    let n = 1 + rng.next() % 6;
    let mut events = Vec::new();
    for i in 0..n {
        let fanout = 1 + rng.next() % 2;
        let filler = "x".repeat((rng.next() % 1500) as usize);
        events.push(Event::EventPublished {
            account_id: AccountId::from("acc_1"),
            event_id: EventId::from(format!("evt_{seq}_{i}")),
            event_type: SESSION_PROCESSING_COMPLETED.into(),
            project_id: ProjectId::from("prj_1"),
            digest: BodyDigest::default(),
            body: format!("{seq}:{i}:{n}:{filler}"),
            deliveries: (0..fanout)
                .map(|k| {
                    (
                        common::fan_out(at(seq), seq * 8 + i).delivery(k as u32),
                        WebhookId::from(format!("wh_{k}")),
                    )
                })
                .collect(),
            first_due: at(seq),
            at: at(seq),
        });
    }
    for d in previous {
        events.push(Event::AttemptSucceeded {
            delivery_id: d.clone(),
            attempt: 1,
            status_code: 200,
            duration: DurationMs(12),
            started_at: at(seq),
            at: at(seq),
            detail: None,
        });
    }
    events
}

/// Not a test of its own: the body of the child process that `sigkill_many_times` runs.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut rng = Rng::new(
        std::env::var(SEED_ENV)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1),
    );
    // Small body segments, so kills also land while segments start and retention deletes them.
    let options = hallway_store::StoreOptions {
        body_segment_bytes: 16 * 1024,
        ..hallway_store::StoreOptions::default()
    };
    let store = SledStore::open_with(Path::new(&dir), &options).expect("child opens");
    let mut seq = store.last_seq().expect("last");
    let mut previous = if seq == 0 {
        Vec::new()
    } else {
        let (_, batch) = store
            .read_log(seq)
            .next()
            .expect("one record")
            .expect("reads");
        deliveries_of(&batch)
    };
    let empty = State::new(Policy::default());
    let mut stdout = std::io::stdout();
    // libtest may have printed "test crash_child ... " without a newline.
    writeln!(stdout).expect("stdout");
    loop {
        let batch = make_batch(seq + 1, &previous, &mut rng);
        let appended = store.append(&batch).expect("child appends");
        assert_eq!(appended, seq + 1);
        seq = appended;
        previous = deliveries_of(&batch);
        if seq.is_multiple_of(40) {
            // The state does not matter here; the sequence and the truncation do.
            store
                .save_snapshot(seq - 10, &empty)
                .expect("child snapshots");
            // Every other time the appends that follow carry the truncation, so kills land
            // inside those transactions too.
            if seq.is_multiple_of(80) {
                store
                    .truncate(seq - 10, Truncation::Now)
                    .expect("child truncates");
            } else {
                store
                    .truncate(seq - 10, Truncation::WithAppends)
                    .expect("child truncates");
            }
        }
        if seq.is_multiple_of(25) && seq > PRUNE_LAG {
            store.prune(at(seq - PRUNE_LAG)).expect("child prunes");
        }
        // Group commit: one flush covers the last 1 to 4 appends.
        if rng.next().is_multiple_of(4) {
            store.flush().expect("child flushes");
            writeln!(stdout, "ACK {seq}").expect("stdout");
        }
    }
}

/// Runs the child until a random moment, kills it, and returns the sequences it acknowledged.
fn run_and_kill(dir: &Path, seed: u64, rng: &mut Rng) -> Vec<Seq> {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .env(SEED_ENV, seed.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawns");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut acks = Vec::new();
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return acks,
                Ok(_) => {}
            }
            // Only whole lines count: a line cut by the kill was never acknowledged.
            if line.last() != Some(&b'\n') {
                return acks;
            }
            let text = String::from_utf8_lossy(&line);
            if let Some(rest) = text.trim_end().strip_prefix("ACK ") {
                let seq: Seq = rest.parse().expect("an ACK line holds a sequence");
                acks.push(seq);
                let _ = tx.send(seq);
            }
        }
    });
    // Half the time kill at a random wall-clock moment (possibly while the child is still
    // opening or recovering); otherwise after a random number of acknowledgements, plus a
    // little, so the kill lands mid-append, mid-flush, mid-prune or mid-truncation.
    if rng.next().is_multiple_of(2) {
        std::thread::sleep(Duration::from_millis(rng.next() % 400));
    } else {
        let wanted = rng.next() % 150;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = 0;
        while seen < wanted && Instant::now() < deadline {
            if rx.recv_timeout(Duration::from_millis(100)).is_ok() {
                seen += 1;
            }
        }
        std::thread::sleep(Duration::from_micros(rng.next() % 3000));
    }
    child.kill().expect("SIGKILL"); // Child::kill sends SIGKILL on Unix.
    let status = child.wait().expect("waits");
    assert!(
        !status.success(),
        "the child only stops by being killed: {status}"
    );
    reader.join().expect("reader")
}

/// Checks the store after a crash; returns its last sequence.
fn check(dir: &Path, acked: Seq) -> Seq {
    let store = match SledStore::open(dir) {
        Ok(s) => s,
        Err(e) => panic!(
            "REPRODUCED: the store does not open after SIGKILL: {e} (data kept in {})",
            dir.display()
        ),
    };
    let last = store.last_seq().expect("last");
    assert!(
        last >= acked,
        "acknowledged seq {acked} is lost: the log ends at {last}"
    );
    let start = match store.load_snapshot().expect("snapshot") {
        Some((seq, _)) => seq + 1,
        None => 1,
    };
    // The log reads whole and without gaps from the snapshot to its end.
    let mut batches: HashMap<Seq, Vec<Event>> = HashMap::new();
    let mut expected = start;
    for item in store.read_log(start) {
        let (seq, batch) = item.unwrap_or_else(|e| panic!("log unreadable after a crash: {e}"));
        assert_eq!(seq, expected);
        expected += 1;
        batches.insert(seq, batch);
    }
    assert_eq!(
        expected - 1,
        last.max(start - 1),
        "the log must end at last_seq"
    );
    // Truncation left nothing the snapshot needs, and older reads say so clearly.
    if start > 1 {
        match store.read_log(1).next() {
            Some(Err(StoreError::Truncated { first_kept, .. })) => assert!(first_kept <= start),
            Some(Ok((1, _))) => {}
            other => panic!("unexpected read from 1: {other:?}"),
        }
    }
    // Every batch is whole.
    for (seq, batch) in &batches {
        let publishes: Vec<&str> = batch
            .iter()
            .filter_map(|e| match e {
                Event::EventPublished { body, .. } => Some(body.as_str()),
                _ => None,
            })
            .collect();
        let n = publishes.len();
        for (i, body) in publishes.iter().enumerate() {
            let prefix = format!("{seq}:{i}:{n}:");
            assert!(
                body.starts_with(&prefix),
                "batch {seq} is not whole: {body:.20} vs {prefix}"
            );
        }
        if let Some(prev) = batches.get(&(seq - 1)) {
            let successes = batch
                .iter()
                .filter(|e| matches!(e, Event::AttemptSucceeded { .. }))
                .count();
            assert_eq!(
                successes,
                deliveries_of(prev).len(),
                "batch {seq} lost its outcomes"
            );
        }
    }
    // The projections agree with the log for the batches retention has not reached.
    for seq in last.saturating_sub(CHECKED_TAIL).max(start)..=last {
        let Some(batch) = batches.get(&seq) else {
            continue;
        };
        for e in batch {
            let Event::EventPublished {
                account_id,
                event_id,
                deliveries,
                ..
            } = e
            else {
                continue;
            };
            for (d, w) in deliveries {
                let record = store
                    .delivery(w, d)
                    .expect("history reads")
                    .unwrap_or_else(|| {
                        panic!("batch {seq} is logged but delivery {d} has no record")
                    });
                let want = if seq < last {
                    DeliveryStatus::Succeeded
                } else {
                    DeliveryStatus::Pending
                };
                assert_eq!(record.status, want, "{d} in batch {seq} of {last}");
                if want == DeliveryStatus::Pending {
                    assert!(
                        store
                            .payload(account_id, event_id)
                            .expect("payload reads")
                            .is_some(),
                        "{event_id} is pending without its body"
                    );
                }
            }
        }
    }
    store.check_projections().expect("the projections agree");
    last
}

#[test]
fn sigkill_many_times() {
    let seed: u64 = std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(7)
        });
    println!("crash test seed: {seed} (set {SEED_ENV}={seed} to replay the schedule)");
    let dir = tempfile::tempdir().expect("tempdir").keep();
    let mut rng = Rng::new(seed);
    let mut acked: Seq = 0;
    let mut total_acks = 0;
    for run in 0..KILLS {
        let acks = run_and_kill(&dir, seed.wrapping_add(run as u64), &mut rng);
        total_acks += acks.len();
        if let Some(&max) = acks.iter().max() {
            assert!(max >= acked, "acknowledgements go forward");
            acked = max;
        }
        let last = check(&dir, acked);
        println!(
            "run {run}: {} acks, acknowledged through {acked}, log ends at {last}",
            acks.len()
        );
    }
    assert!(
        total_acks > 0,
        "the child never got to acknowledge anything"
    );
    // Only a passing run removes its data; a failing one keeps it for a look.
    std::fs::remove_dir_all(&dir).expect("cleans up");
}
