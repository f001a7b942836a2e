//! The delivery scenarios: throughput next to the ceiling, latency at half load, and retries.

use crate::ceiling;
use crate::receiver::Receivers;
use crate::timed_store::{StoreTimes, TimedStore};
use crate::util::{
    now_ns, process_cpu_seconds, process_written_bytes, quantile_ms, unix_millis, wait_until,
    BenchError, BenchResult, Record,
};
use crate::workload::{
    account_id, account_name, account_of, bench_config, bench_policy, provision,
    publish_closed_loop, publish_fixed_rate, raw_event, PublishTimes, RawBodies, WEBHOOKS,
    WEBHOOKS_PER_ACCOUNT,
};
use bytes::Bytes;
use hallway_domain::{envelope, AttemptError, DurationMs, EventId, Timestamp};
use hallway_runtime::{Engine, MetricsSnapshot};
use hallway_store::{SledStore, StoreOptions};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle;

/// What every scenario needs from the command line and the process.
pub struct Ctx {
    /// The runtime the receivers run on (their own threads, like a separate peer).
    pub receivers_rt: Handle,
    /// Smaller sizes (the whole run under a minute).
    pub quick: bool,
    /// Concurrent publishing tasks.
    pub publishers: usize,
    /// The engine's `max_in_flight`, when not its default.
    pub max_in_flight: Option<usize>,
    /// The engine's `snapshot_every_events`, when not its default.
    pub snapshot_every_events: Option<u64>,
    /// sled's page cache in MiB, when not the store's default (an experiment knob).
    pub sled_cache_mib: Option<u64>,
    /// The engine's memory budget in MiB, when not its default.
    pub memory_budget_mib: Option<u64>,
    /// The backlog's retry delay in seconds, when not the size's default.
    pub backlog_retry_after_secs: Option<u64>,
    /// Events per second the backlog is published at (0: as fast as the engine takes them).
    pub backlog_rate: u32,
}

impl Ctx {
    /// The production configuration over `policy`, with this run's overrides.
    pub fn config(&self, policy: hallway_domain::Policy) -> hallway_runtime::Config {
        let mut config = bench_config(policy);
        if let Some(n) = self.max_in_flight {
            config.max_in_flight = n;
        }
        if let Some(n) = self.snapshot_every_events {
            config.snapshot_every_events = n;
        }
        if let Some(n) = self.memory_budget_mib {
            config.memory_budget_bytes = n * 1024 * 1024;
        }
        config
    }

    /// Opens an engine on `dir`: `Engine::open` itself, unless the store's options are
    /// overridden (then the same steps with those options).
    pub async fn open_engine(
        &self,
        dir: &Path,
        config: hallway_runtime::Config,
    ) -> BenchResult<Engine> {
        if self.sled_cache_mib.is_none() {
            return Ok(Engine::open(dir, config).await?);
        }
        let store = open_store(dir, self.sled_cache_mib, config.memory_budget_bytes).await?;
        Ok(Engine::with_store(store, config).await?)
    }
}

/// Fan-out of every publish: the account's webhooks.
const FANOUT: u32 = WEBHOOKS_PER_ACCOUNT as u32;

/// Opens the sled store for an engine with `budget` bytes of memory budget: its records
/// cache is the budget's share, as `Engine::open` sizes it, and its page cache `cache_mib`
/// or the store's default. Keeps a handle to read its size.
pub async fn open_store(
    dir: &Path,
    cache_mib: Option<u64>,
    budget: u64,
) -> BenchResult<Arc<SledStore>> {
    let dir = dir.to_owned();
    let options = StoreOptions {
        cache_capacity_bytes: cache_mib
            .map(|m| m * 1024 * 1024)
            .unwrap_or(StoreOptions::default().cache_capacity_bytes),
        bucket_cache_records: hallway_runtime::Budget::new(budget).bucket_cache_records(),
        ..StoreOptions::default()
    };
    let store = tokio::task::spawn_blocking(move || SledStore::open_with(&dir, &options)).await??;
    Ok(Arc::new(store))
}

/// The sum of the failed-attempt counters.
pub fn failed_total(m: &MetricsSnapshot) -> u64 {
    m.attempts_failed.iter().map(|(_, n)| n).sum()
}

fn failed_of(m: &MetricsSnapshot, class: AttemptError) -> u64 {
    m.attempts_failed
        .iter()
        .find(|(c, _)| *c == class)
        .map(|(_, n)| *n)
        .unwrap_or(0)
}

/// The bodies the engine sends for events `0..events` (the envelope of each), for the ceiling.
fn envelope_bodies(events: u32) -> BenchResult<Vec<Bytes>> {
    let policy = bench_policy();
    let created_at = Timestamp(unix_millis());
    (0..events)
        .map(|n| {
            let prepared = envelope::prepare(&raw_event(n), &policy)?;
            let a = account_of(n);
            let event = prepared
                .event_id
                .clone()
                .unwrap_or_else(|| EventId::from(crate::workload::event_id(n)));
            Ok(Bytes::from(envelope::envelope(
                &event,
                &prepared.event_type,
                created_at,
                &account_id(a),
                &account_name(a),
                &prepared.fields_json,
            )))
        })
        .collect()
}

/// Arrival statistics of a run: latencies from publish accepted to arrival, sorted.
pub(crate) struct Arrivals {
    pub(crate) latencies_ns: Vec<u64>,
    pub(crate) count: u64,
    pub(crate) last_ns: u64,
}

pub(crate) fn arrivals_of(
    per_receiver: &[Vec<(u32, u64)>],
    times: &PublishTimes,
    from: u32,
) -> Arrivals {
    let mut latencies_ns = Vec::new();
    let mut last_ns = 0;
    let mut count = 0;
    for (n, at) in per_receiver.iter().flatten() {
        if *n < from {
            continue;
        }
        count += 1;
        last_ns = last_ns.max(*at);
        if let Some(accepted) = times.accepted(*n) {
            // An arrival can beat the publisher task's wake-up by a hair: that counts as 0.
            latencies_ns.push(at.saturating_sub(accepted));
        }
    }
    latencies_ns.sort_unstable();
    Arrivals {
        latencies_ns,
        count,
        last_ns,
    }
}

pub(crate) fn per_sec(count: u64, from_ns: u64, to_ns: u64) -> f64 {
    let secs = to_ns.saturating_sub(from_ns) as f64 / 1e9;
    if secs > 0.0 {
        count as f64 / secs
    } else {
        0.0
    }
}

pub(crate) fn put_ms(r: &mut Record, key: &str, v: Option<f64>) {
    match v {
        Some(v) => r.put(key, v),
        None => r.put(key, serde_json::Value::Null),
    };
}

/// Throughput: 5 accounts x 5 webhooks, `events` publishes (5 deliveries each) from many
/// concurrent publishers; the ceiling is measured right before and right after on the same
/// receivers, and the ratio is to their mean: this machine's speed moves by a quarter within
/// seconds, and one ceiling alone made the ratio swing with it.
pub async fn throughput(ctx: &Ctx, events: u32) -> BenchResult<Record> {
    let receivers = Receivers::start(&ctx.receivers_rt, WEBHOOKS, 200)?;
    let dir = tempfile::tempdir()?;
    let config = ctx.config(bench_policy());
    let max_in_flight = config.max_in_flight;
    let (engine, store) = open_timed(ctx, dir.path(), config).await?;
    let h = engine.handle();
    let tenants = provision(&h, &receivers.urls()).await?;
    let deliveries = u64::from(events) * u64::from(FANOUT);

    let bodies = Arc::new(envelope_bodies(events)?);
    let ceiling_before =
        ceiling::run(&receivers, &tenants.secrets, bodies.clone(), max_in_flight).await?;
    receivers.clear();

    // The host's raw events are inputs, built before the clock starts like the ceiling's.
    let raw = RawBodies::prebuilt(0..events);
    let times = PublishTimes::new(events as usize);
    let before = h.metrics();
    store.reset();
    let cpu_before = process_cpu_seconds();
    let written_before = process_written_bytes();
    let started = now_ns();
    publish_closed_loop(
        &h,
        &tenants.accounts,
        0..events,
        raw,
        ctx.publishers,
        FANOUT,
        &times,
    )
    .await?;
    let complete = receivers
        .wait_for(deliveries, timeout_for(deliveries))
        .await;
    let cpu_cores = process_cpu_seconds()
        .zip(cpu_before)
        .map(|(after, before)| (after - before) / (now_ns().saturating_sub(started) as f64 / 1e9));
    let written = process_written_bytes()
        .zip(written_before)
        .map(|(after, before)| after.saturating_sub(before));
    let unidentified = receivers.unidentified();
    let arrivals = arrivals_of(&receivers.take(), &times, 0);
    let first = times.first_start(0..events).unwrap_or(started);
    let deliveries_per_sec = per_sec(arrivals.count, first, arrivals.last_ns);
    let publish = times.call_latencies(0..events);
    let recorded = wait_until(
        || h.metrics().attempts_succeeded >= before.attempts_succeeded + deliveries,
        Duration::from_secs(30),
    )
    .await;
    let m = h.metrics();
    let st = store.times();
    let batches = m.batches - before.batches;
    let logged = m.events_logged - before.events_logged;
    let disk = {
        let store = store.inner().clone();
        tokio::task::spawn_blocking(move || store.size_on_disk()).await??
    };
    drop(h);
    engine.shutdown().await?;
    receivers.clear();
    let ceiling_after = ceiling::run(&receivers, &tenants.secrets, bodies, max_in_flight).await?;
    let ceiling_rate = (ceiling_before.requests_per_sec + ceiling_after.requests_per_sec) / 2.0;

    let mut r = Record::new("throughput");
    r.put("deliveries", arrivals.count)
        .put("events", events)
        .put("publishers", ctx.publishers as u64)
        .put("max_in_flight", max_in_flight as u64)
        .put("deliveries_per_sec", deliveries_per_sec)
        .put("ceiling_requests_per_sec", ceiling_rate)
        .put("ratio", ratio(deliveries_per_sec, ceiling_rate))
        .put(
            "ceiling_before_requests_per_sec",
            ceiling_before.requests_per_sec,
        )
        .put(
            "ceiling_after_requests_per_sec",
            ceiling_after.requests_per_sec,
        );
    put_ms(&mut r, "p50_ms", quantile_ms(&arrivals.latencies_ns, 0.5));
    put_ms(&mut r, "p99_ms", quantile_ms(&arrivals.latencies_ns, 0.99));
    put_ms(&mut r, "publish_p50_ms", quantile_ms(&publish, 0.5));
    put_ms(&mut r, "publish_p99_ms", quantile_ms(&publish, 0.99));
    r.put(
        "seconds",
        (arrivals.last_ns.saturating_sub(first)) as f64 / 1e9,
    )
    .put("log_records", batches)
    .put("events_logged", logged)
    .put(
        "events_per_record",
        if batches > 0 {
            logged as f64 / batches as f64
        } else {
            0.0
        },
    )
    .put("cpu_cores_used", cpu_cores)
    .put(
        "ceiling_cpu_cores_used",
        ceiling_before
            .cpu_cores
            .zip(ceiling_after.cpu_cores)
            .map(|(a, b)| (a + b) / 2.0),
    )
    .put("disk_bytes", disk)
    .put(
        "written_bytes_per_delivery",
        written
            .filter(|_| deliveries > 0)
            .map(|w| w as f64 / deliveries as f64),
    )
    .put(
        "disk_bytes_per_delivery",
        if deliveries > 0 {
            disk as f64 / deliveries as f64
        } else {
            0.0
        },
    )
    .put(
        "ceiling_requests",
        ceiling_before.requests + ceiling_after.requests,
    )
    .put(
        "ceiling_errors",
        ceiling_before.errors + ceiling_after.errors,
    )
    .put("unidentified", unidentified)
    .put(
        "complete",
        complete && recorded && arrivals.count == deliveries,
    );
    put_store_times(&mut r, &st);
    Ok(r)
}

/// Where the actor's time went: the store calls it waits for, and the rest of its turns.
fn put_store_times(r: &mut Record, st: &StoreTimes) {
    let other = st.window_ms - st.append_ms - st.flush_ms - st.payload_ms - st.snapshot_ms;
    r.put("store_window_ms", st.window_ms)
        .put("store_records", st.appends)
        .put("store_append_ms", st.append_ms)
        .put("store_append_cpu_ms", st.append_cpu_ms)
        .put("commit_runqueue_ms", st.commit_runqueue_ms)
        .put("store_append_p50_ms", st.append_p50_ms)
        .put("store_append_p99_ms", st.append_p99_ms)
        .put("store_append_max_ms", st.append_max_ms)
        .put(
            "append_us_per_event_first_fifth",
            st.append_us_per_event_first_fifth,
        )
        .put(
            "append_us_per_event_last_fifth",
            st.append_us_per_event_last_fifth,
        )
        .put("store_flush_ms", st.flush_ms)
        .put("flush_p50_ms", st.flush_p50_ms)
        .put("flush_p99_ms", st.flush_p99_ms)
        .put("flush_max_ms", st.flush_max_ms)
        .put("payload_reads", st.payload_reads)
        .put("payload_read_ms", st.payload_ms)
        .put("snapshot_ms", st.snapshot_ms)
        .put("snapshot_writes", st.snapshot_writes)
        .put("snapshot_write_max_ms", st.snapshot_write_max_ms)
        .put("actor_other_ms", other.max(0.0));
}

/// Opens an engine the way `Engine::open` does, over a store whose calls are timed.
async fn open_timed(
    ctx: &Ctx,
    dir: &Path,
    config: hallway_runtime::Config,
) -> BenchResult<(Engine, Arc<TimedStore>)> {
    let store = open_store(dir, ctx.sled_cache_mib, config.memory_budget_bytes).await?;
    let store = Arc::new(TimedStore::new(store));
    let engine = Engine::with_store(store.clone(), config).await?;
    Ok((engine, store))
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

fn timeout_for(requests: u64) -> Duration {
    // Generous: 1,000 requests a second at the very least, plus a minute.
    Duration::from_secs(60 + requests / 1000)
}

/// Latency: publishes at a fixed rate of `offered_deliveries_per_sec / 5` events a second
/// for `secs` (after `warm_secs` of warm-up at the same rate, not counted).
pub async fn latency(
    ctx: &Ctx,
    offered_deliveries_per_sec: f64,
    secs: f64,
    warm_secs: f64,
) -> BenchResult<Record> {
    let receivers = Receivers::start(&ctx.receivers_rt, WEBHOOKS, 200)?;
    let dir = tempfile::tempdir()?;
    let (engine, store) = open_timed(ctx, dir.path(), ctx.config(bench_policy())).await?;
    let h = engine.handle();
    let tenants = provision(&h, &receivers.urls()).await?;
    let events_per_sec = (offered_deliveries_per_sec / f64::from(FANOUT)).max(1.0);
    let warm = (events_per_sec * warm_secs).ceil() as u32;
    let measured = (events_per_sec * secs).ceil().max(1.0) as u32;
    let total = warm + measured;
    let times = PublishTimes::new(total as usize);
    let mut written_before = None;
    for (range, measuring) in [(0..warm, false), (warm..total, true)] {
        if measuring {
            store.reset();
            written_before = process_written_bytes();
        }
        publish_fixed_rate(
            &h,
            &tenants.accounts,
            range,
            events_per_sec,
            FANOUT,
            &times,
            2000,
        )
        .await?;
    }
    let deliveries = u64::from(total) * u64::from(FANOUT);
    let complete = receivers
        .wait_for(deliveries, timeout_for(deliveries))
        .await;
    let written = process_written_bytes()
        .zip(written_before)
        .map(|(after, before)| after.saturating_sub(before));
    let arrivals = arrivals_of(&receivers.take(), &times, warm);
    let first = times.first_start(warm..total).unwrap_or(0);
    let publish = times.call_latencies(warm..total);
    let st = store.times();
    if let Some(dir) = std::env::var_os("HALLWAY_BENCH_TRACE") {
        let dir = std::path::PathBuf::from(dir);
        store.trace(&dir.join("store.trace"))?;
        let mut out = String::new();
        for (s, l) in times.starts_and_latencies(warm..total) {
            out.push_str(&format!("publish {s} {l} 0\n"));
        }
        std::fs::write(dir.join("publish.trace"), out)?;
    }
    drop(h);
    engine.shutdown().await?;

    let l = &arrivals.latencies_ns;
    let mut r = Record::new("latency");
    r.put("deliveries", arrivals.count)
        .put(
            "offered_deliveries_per_sec",
            events_per_sec * f64::from(FANOUT),
        )
        .put(
            "achieved_deliveries_per_sec",
            per_sec(arrivals.count, first, arrivals.last_ns),
        );
    put_ms(&mut r, "p50_ms", quantile_ms(l, 0.5));
    put_ms(&mut r, "p99_ms", quantile_ms(l, 0.99));
    put_ms(&mut r, "p999_ms", quantile_ms(l, 0.999));
    put_ms(&mut r, "max_ms", quantile_ms(l, 1.0));
    put_ms(&mut r, "publish_p50_ms", quantile_ms(&publish, 0.5));
    put_ms(&mut r, "publish_p99_ms", quantile_ms(&publish, 0.99));
    put_ms(&mut r, "publish_p999_ms", quantile_ms(&publish, 0.999));
    let measured_deliveries = u64::from(measured) * u64::from(FANOUT);
    r.put(
        "written_bytes_per_delivery",
        written.map(|w| w as f64 / measured_deliveries.max(1) as f64),
    );
    r.put("warmup_events", warm).put(
        "complete",
        complete && arrivals.count == u64::from(measured) * u64::from(FANOUT),
    );
    put_store_times(&mut r, &st);
    Ok(r)
}

/// The compressed retry schedule of the retries scenario: five attempts, like the spec's.
pub const RETRY_DELAYS_MS: [u64; 5] = [0, 20, 40, 80, 160];

/// Retries: every receiver answers 500, so every delivery makes all its attempts on a
/// compressed schedule; checks each made exactly the policy's number, none early.
pub async fn retries(ctx: &Ctx, events: u32) -> BenchResult<Record> {
    let receivers = Receivers::start(&ctx.receivers_rt, WEBHOOKS, 500)?;
    let dir = tempfile::tempdir()?;
    let policy = hallway_domain::Policy {
        retry_delays: RETRY_DELAYS_MS.iter().map(|d| DurationMs(*d)).collect(),
        // Every attempt fails by design; auto-disable would cancel the deliveries.
        auto_disable_after: u32::MAX,
        ..bench_policy()
    };
    let attempts_each = policy.max_attempts();
    let engine = ctx.open_engine(dir.path(), ctx.config(policy)).await?;
    let h = engine.handle();
    let tenants = provision(&h, &receivers.urls()).await?;
    let deliveries = u64::from(events) * u64::from(FANOUT);
    let attempts = deliveries * u64::from(attempts_each);
    let times = PublishTimes::new(events as usize);
    publish_closed_loop(
        &h,
        &tenants.accounts,
        0..events,
        RawBodies::OnTheFly,
        ctx.publishers,
        FANOUT,
        &times,
    )
    .await?;
    let complete = receivers.wait_for(attempts, timeout_for(attempts)).await;
    let settled = wait_until(
        || {
            let m = h.metrics();
            m.pending == 0 && m.in_flight == 0 && failed_total(&m) >= attempts
        },
        Duration::from_secs(30),
    )
    .await;
    // A little longer, to catch any attempt beyond the policy's number.
    tokio::time::sleep(Duration::from_millis(2 * RETRY_DELAYS_MS[4] + 50)).await;
    let m = h.metrics();
    let per_receiver = receivers.take();
    drop(h);
    engine.shutdown().await?;

    let first = times.first_start(0..events).unwrap_or(0);
    let mut by_delivery: HashMap<(usize, u32), Vec<u64>> = HashMap::new();
    let mut last = 0;
    let mut arrived = 0u64;
    for (w, list) in per_receiver.iter().enumerate() {
        for (n, at) in list {
            arrived += 1;
            last = last.max(*at);
            by_delivery.entry((w, *n)).or_default().push(*at);
        }
    }
    let mut exact = 0u64;
    let mut wrong = 0u64;
    let mut early = 0u64;
    let mut misrouted = 0u64;
    for ((w, n), mut ats) in by_delivery {
        if w / WEBHOOKS_PER_ACCOUNT != account_of(n) {
            misrouted += 1;
        }
        if ats.len() == attempts_each as usize {
            exact += 1;
        } else {
            wrong += 1;
        }
        ats.sort_unstable();
        for (k, pair) in ats.windows(2).enumerate() {
            let delay_ns = RETRY_DELAYS_MS.get(k + 1).copied().unwrap_or(0) * 1_000_000;
            // The engine's clock has millisecond resolution: allow one.
            if pair[1] - pair[0] + 1_000_000 < delay_ns {
                early += 1;
            }
        }
    }
    let missing = deliveries.saturating_sub(exact + wrong);
    let correct = exact == deliveries && wrong == 0 && early == 0 && misrouted == 0;
    let mut r = Record::new("retries");
    r.put("deliveries", deliveries)
        .put("attempts", arrived)
        .put("attempts_per_delivery", attempts_each)
        .put("retry_delays_ms", RETRY_DELAYS_MS.to_vec())
        .put("attempts_per_sec", per_sec(arrived, first, last))
        .put("deliveries_with_exact_attempts", exact)
        .put("deliveries_with_wrong_attempts", wrong)
        .put("deliveries_missing", missing)
        .put("early_retries", early)
        .put(
            "engine_failed_http_status",
            failed_of(&m, AttemptError::HttpStatus),
        )
        .put(
            "engine_failed_other",
            failed_total(&m) - failed_of(&m, AttemptError::HttpStatus),
        )
        .put("engine_pending", m.pending)
        .put("correct", correct && complete && settled);
    if !correct {
        eprintln!(
            "retries: {exact} exact, {wrong} wrong, {missing} missing, {early} early, {misrouted} misrouted"
        );
    }
    Ok(r)
}

/// Converts an error into a record saying the scenario failed, so the others still run.
pub fn failed_record(scenario: &str, e: &BenchError) -> Record {
    let mut r = Record::new(scenario);
    r.put("error", e.to_string());
    r
}
