//! A store wrapper that times the engine's store calls (appends, flushes, payload reads,
//! snapshots), so a run can say how much of the actor's time goes to the store.

use crate::util::{now_ns, quantile_ms};
use hallway_domain::{
    AccountId, DeliveryId, Event, EventId, IdempotencyKey, Published, SpilledDelivery, State,
    Timestamp, WebhookId,
};
use hallway_store::{
    DeliveryRecord, EventLog, LogRecords, Page, PublishedIds, ReadModel, Seq, SledStore,
    SnapshotDraft, StoreError, Truncation,
};
use std::sync::{Arc, Mutex, PoisonError};

/// Every timed call since the last reset.
#[derive(Default)]
struct Samples {
    /// (start ns, duration ns, events) per append.
    appends: Vec<(u64, u64, u64)>,
    /// CPU time the appending thread spent in appends, ns.
    append_cpu_ns: u64,
    /// Time the committing thread waited for a CPU (runnable, not running) in appends and
    /// flushes, ns.
    commit_runqueue_ns: u64,
    /// (start ns, duration ns) per flush.
    flushes: Vec<(u64, u64)>,
    /// Duration ns per payload read (a body not in the actor's memory).
    payloads: Vec<u64>,
    /// Duration ns of snapshot encodes and eager log truncations (the engine truncates
    /// eagerly only on shutdown; otherwise its appends carry the truncation).
    snapshots: Vec<u64>,
    /// Duration ns of each snapshot encode (the part the actor waits for).
    snapshot_writes: Vec<u64>,
    /// (kind, start ns, duration ns) of snapshot steps, for `trace`.
    steps: Vec<(&'static str, u64, u64)>,
}

/// What the store calls cost during a window.
#[derive(Clone, Debug, Default)]
pub struct StoreTimes {
    /// From the first append to the end of the last flush.
    pub window_ms: f64,
    /// Log records appended.
    pub appends: u64,
    /// Total time in `append` (encoding, sled inserts of the record and projections).
    pub append_ms: f64,
    /// CPU time of the appending thread in `append`: below `append_ms` when the thread
    /// waited (for the CPU, a lock or a page).
    pub append_cpu_ms: f64,
    /// Time the committing thread was runnable but waited for a CPU, in appends and flushes:
    /// the part of a commit that other threads' work adds.
    pub commit_runqueue_ms: f64,
    /// The slowest append.
    pub append_max_ms: f64,
    /// Median append.
    pub append_p50_ms: f64,
    /// 99th percentile append.
    pub append_p99_ms: f64,
    /// Append time per event in the first fifth of the window's appends, in µs.
    pub append_us_per_event_first_fifth: f64,
    /// Append time per event in the last fifth of the window's appends, in µs.
    pub append_us_per_event_last_fifth: f64,
    /// Total time in `flush` (sled's durable flush).
    pub flush_ms: f64,
    /// Median flush.
    pub flush_p50_ms: f64,
    /// 99th percentile flush.
    pub flush_p99_ms: f64,
    /// Slowest flush.
    pub flush_max_ms: f64,
    /// Bodies read back from the store to start an attempt.
    pub payload_reads: u64,
    /// Total time of those reads.
    pub payload_ms: f64,
    /// Total time encoding snapshots and truncating the log eagerly.
    pub snapshot_ms: f64,
    /// Snapshots encoded.
    pub snapshot_writes: u64,
    /// The longest snapshot encode: the actor decides nothing meanwhile.
    pub snapshot_write_max_ms: f64,
}

/// A [`SledStore`] whose calls on the actor's path are timed.
pub struct TimedStore {
    inner: Arc<SledStore>,
    samples: Mutex<Samples>,
}

/// How long the calling thread has waited on a run queue, ns (0 where the kernel does not
/// say: `/proc/thread-self/schedstat` is Linux's, with scheduler statistics on).
fn thread_runqueue_ns() -> u64 {
    use std::os::unix::fs::FileExt;
    thread_local! {
        // Opened once per thread (`thread-self` names the opener) and read at offset 0: a
        // reopen per call would cost syscalls on the very path being measured.
        static SCHEDSTAT: Option<std::fs::File> =
            std::fs::File::open("/proc/thread-self/schedstat").ok();
    }
    SCHEDSTAT
        .with(|file| {
            let mut buf = [0u8; 128];
            let n = file.as_ref()?.read_at(&mut buf, 0).ok()?;
            std::str::from_utf8(&buf[..n])
                .ok()?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// CPU time the calling thread has used, ns (0 where the clock is unavailable).
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn us_per_event(appends: &[(u64, u64, u64)]) -> f64 {
    let ns: u64 = appends.iter().map(|a| a.1).sum();
    let events: u64 = appends.iter().map(|a| a.2).sum();
    if events == 0 {
        0.0
    } else {
        ns as f64 / events as f64 / 1e3
    }
}

impl TimedStore {
    /// Wraps a store.
    pub fn new(inner: Arc<SledStore>) -> Self {
        TimedStore {
            inner,
            samples: Mutex::new(Samples::default()),
        }
    }

    fn samples(&self) -> std::sync::MutexGuard<'_, Samples> {
        self.samples.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a new measuring window.
    pub fn reset(&self) {
        *self.samples() = Samples::default();
    }

    /// The times since the last reset.
    pub fn times(&self) -> StoreTimes {
        let s = self.samples();
        let ms = |ns: u64| ns as f64 / 1e6;
        let mut flushes: Vec<u64> = s.flushes.iter().map(|f| f.1).collect();
        flushes.sort_unstable();
        let mut appends: Vec<u64> = s.appends.iter().map(|a| a.1).collect();
        appends.sort_unstable();
        let first = s.appends.first().map(|a| a.0).unwrap_or(0);
        let last = s.flushes.last().map(|f| f.0 + f.1).unwrap_or(first);
        let fifth = s.appends.len() / 5;
        StoreTimes {
            window_ms: ms(last.saturating_sub(first)),
            appends: s.appends.len() as u64,
            append_ms: ms(s.appends.iter().map(|a| a.1).sum()),
            append_cpu_ms: ms(s.append_cpu_ns),
            commit_runqueue_ms: ms(s.commit_runqueue_ns),
            append_max_ms: ms(s.appends.iter().map(|a| a.1).max().unwrap_or(0)),
            append_p50_ms: quantile_ms(&appends, 0.5).unwrap_or(0.0),
            append_p99_ms: quantile_ms(&appends, 0.99).unwrap_or(0.0),
            append_us_per_event_first_fifth: us_per_event(&s.appends[..fifth]),
            append_us_per_event_last_fifth: us_per_event(&s.appends[s.appends.len() - fifth..]),
            flush_ms: ms(flushes.iter().sum()),
            flush_p50_ms: quantile_ms(&flushes, 0.5).unwrap_or(0.0),
            flush_p99_ms: quantile_ms(&flushes, 0.99).unwrap_or(0.0),
            flush_max_ms: quantile_ms(&flushes, 1.0).unwrap_or(0.0),
            payload_reads: s.payloads.len() as u64,
            payload_ms: ms(s.payloads.iter().sum()),
            snapshot_ms: ms(s.snapshots.iter().sum()),
            snapshot_writes: s.snapshot_writes.len() as u64,
            snapshot_write_max_ms: ms(s.snapshot_writes.iter().copied().max().unwrap_or(0)),
        }
    }

    /// Writes every timed call since the last reset to `path`, one line each
    /// (`kind start_ns dur_ns events`), to line stalls up with what ran beside them.
    pub fn trace(&self, path: &std::path::Path) -> std::io::Result<()> {
        use std::io::Write;
        let s = self.samples();
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        for a in &s.appends {
            writeln!(out, "append {} {} {}", a.0, a.1, a.2)?;
        }
        for f in &s.flushes {
            writeln!(out, "flush {} {} 0", f.0, f.1)?;
        }
        for (k, t, d) in &s.steps {
            writeln!(out, "{k} {t} {d} 0")?;
        }
        out.flush()
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<SledStore> {
        &self.inner
    }
}

impl EventLog for TimedStore {
    fn append(&self, events: &[Event]) -> Result<Seq, StoreError> {
        let t = now_ns();
        let cpu = thread_cpu_ns();
        let waited = thread_runqueue_ns();
        let r = self.inner.append(events);
        let cpu = thread_cpu_ns().saturating_sub(cpu);
        let waited = thread_runqueue_ns().saturating_sub(waited);
        let took = now_ns() - t;
        let mut s = self.samples();
        s.appends.push((t, took, events.len() as u64));
        s.append_cpu_ns += cpu;
        s.commit_runqueue_ns += waited;
        drop(s);
        r
    }

    fn flush(&self) -> Result<(), StoreError> {
        let t = now_ns();
        let waited = thread_runqueue_ns();
        let r = self.inner.flush();
        let waited = thread_runqueue_ns().saturating_sub(waited);
        let took = now_ns() - t;
        let mut s = self.samples();
        s.flushes.push((t, took));
        s.commit_runqueue_ns += waited;
        r
    }

    fn last_seq(&self) -> Result<Seq, StoreError> {
        self.inner.last_seq()
    }

    fn read_log(&self, from: Seq) -> LogRecords<'_> {
        self.inner.read_log(from)
    }

    fn replay_log(&self, from: Seq) -> LogRecords<'_> {
        self.inner.replay_log(from)
    }

    /// Timed: this is the part of a snapshot the engine's actor waits for.
    fn write_snapshot(&self, seq: Seq, state: &State) -> Result<SnapshotDraft, StoreError> {
        let t = now_ns();
        let r = self.inner.write_snapshot(seq, state);
        let took = now_ns() - t;
        let mut samples = self.samples();
        samples.snapshots.push(took);
        samples.snapshot_writes.push(took);
        samples.steps.push(("snapshot_write", t, took));
        r
    }

    fn install_snapshot(&self, draft: SnapshotDraft) -> Result<(), StoreError> {
        let t = now_ns();
        let r = self.inner.install_snapshot(draft);
        self.samples().steps.push(("install", t, now_ns() - t));
        r
    }

    fn load_snapshot(&self) -> Result<Option<(Seq, State)>, StoreError> {
        self.inner.load_snapshot()
    }

    /// Timed when it removes records now; with the appends, their times hold its cost.
    fn truncate(&self, through: Seq, when: Truncation) -> Result<u64, StoreError> {
        if when == Truncation::WithAppends {
            return self.inner.truncate(through, when);
        }
        let t = now_ns();
        let r = self.inner.truncate(through, when);
        let mut s = self.samples();
        s.snapshots.push(now_ns() - t);
        s.steps.push(("truncate", t, now_ns() - t));
        r
    }
}

impl ReadModel for TimedStore {
    fn published(&self, key: &IdempotencyKey) -> Result<Option<Published>, StoreError> {
        self.inner.published(key)
    }

    fn published_ids(
        &self,
        after: Option<[u8; 24]>,
        limit: usize,
    ) -> Result<Option<PublishedIds>, StoreError> {
        self.inner.published_ids(after, limit)
    }

    fn payload(
        &self,
        account: &AccountId,
        event: &EventId,
    ) -> Result<Option<Arc<str>>, StoreError> {
        let t = now_ns();
        let r = self.inner.payload(account, event);
        self.samples().payloads.push(now_ns() - t);
        r
    }

    fn delivery(
        &self,
        webhook: &WebhookId,
        delivery: &DeliveryId,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        self.inner.delivery(webhook, delivery)
    }

    fn deliveries_where(
        &self,
        webhook: &WebhookId,
        filter: &hallway_store::DeliveryFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, StoreError> {
        self.inner.deliveries_where(webhook, filter, limit, cursor)
    }

    fn prune(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.inner.prune(before)
    }

    fn spilled(
        &self,
        webhook: &WebhookId,
        generation: u32,
        limit: usize,
    ) -> Result<Vec<SpilledDelivery>, StoreError> {
        self.inner.spilled(webhook, generation, limit)
    }

    fn purge_account(
        &self,
        account: &hallway_domain::AccountId,
        webhooks: &[WebhookId],
    ) -> Result<u64, StoreError> {
        self.inner.purge_account(account, webhooks)
    }
}
