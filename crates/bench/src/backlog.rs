//! Backlog: a large number of pending retries (receivers failing), in a child process (this
//! binary re-executed) so that the peak RSS it reports is the engine's: the receivers stay in
//! the parent, and earlier scenarios' memory is not in the child's high-water mark.
//!
//! The child fills the backlog (one failed first attempt per delivery, the second due
//! `retry_after` later), measures memory, shuts down, has a process of its own open the
//! stopped store (sled's page count, and memory without what the allocator kept from the
//! engine's run), reopens (timed), and then waits for the
//! whole backlog to come due: every second attempt must start within a second of its due
//! time (the engine's `started_late` counter), at the rate the receivers allow.

use crate::receiver::Receivers;
use crate::scenarios::{failed_total, open_store, Ctx};
use crate::util::{dir_bytes, proc_status_kib, wait_until, BenchError, BenchResult, Record};
use crate::workload::{
    bench_policy, provision, publish_closed_loop, publish_fixed_rate, raw_event_sized,
    PublishTimes, RawBodies, WEBHOOKS, WEBHOOKS_PER_ACCOUNT,
};
use hallway_domain::DurationMs;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The hidden flag that runs the backlog scenario in this process (the child's side).
pub const CHILD_FLAG: &str = "--backlog-child";

/// An environment variable holding a command to run the child under (a profiler).
pub const CHILD_PREFIX_ENV: &str = "HALLWAY_BENCH_CHILD_PREFIX";

/// The hidden flag that gives the child the receivers' ports (one per webhook).
pub const PORTS_FLAG: &str = "--backlog-ports";

/// The hidden flag that opens a stopped backlog's store in a process of its own.
pub const OPEN_STORE_FLAG: &str = "--backlog-open-store";

/// Transcript bytes of the backlog's events: bodies of about 1 KiB, as the issue sizes them.
const TRANSCRIPT_BYTES: usize = 330;

/// Deliveries a second the retry delay counts on a fill to reach at most: at 2,000 events a
/// second (10,000 deliveries) a 10,000,000 fill kept about 7,000.
const FILL_DELIVERIES_MAX: u64 = 6_000;

/// The delay of the second attempt unless given: long enough for the fill (at `rate` events
/// a second, or at 4,000 deliveries a second or more when unlimited) to end before the
/// first retries come due. A rate asks for no more than [`FILL_DELIVERIES_MAX`] deliveries a
/// second, which is what a fill of failing first attempts kept up here.
pub fn default_retry_after(pending: u32, rate: u32) -> Duration {
    let fill_secs = match rate {
        0 => u64::from(pending) / 4_000,
        r => {
            let at_rate = u64::from(pending.div_ceil(WEBHOOKS_PER_ACCOUNT as u32)) / u64::from(r);
            at_rate.max(u64::from(pending) / FILL_DELIVERIES_MAX) * 11 / 10
        }
    };
    Duration::from_secs(10 + fill_secs)
}

/// Runs the backlog scenario in a child process, against receivers in this process, and
/// returns its record.
pub async fn run_in_child(ctx: &Ctx, pending: u32) -> BenchResult<Record> {
    let receivers = Receivers::start(&ctx.receivers_rt, WEBHOOKS, 500)?;
    let ports: Vec<String> = receivers.all.iter().map(|r| r.port.to_string()).collect();
    let exe = std::env::current_exe()?;
    let mut args = vec![
        CHILD_FLAG.to_owned(),
        pending.to_string(),
        PORTS_FLAG.to_owned(),
        ports.join(","),
        "--publishers".to_owned(),
        ctx.publishers.to_string(),
    ];
    let numbers = [
        ("--max-in-flight", ctx.max_in_flight.map(|n| n as u64)),
        ("--snapshot-every-events", ctx.snapshot_every_events),
        ("--sled-cache-mib", ctx.sled_cache_mib),
        ("--memory-budget-mib", ctx.memory_budget_mib),
        ("--backlog-retry-after-secs", ctx.backlog_retry_after_secs),
        ("--backlog-rate", Some(u64::from(ctx.backlog_rate))),
    ];
    for (flag, value) in numbers {
        if let Some(n) = value {
            args.extend([flag.to_owned(), n.to_string()]);
        }
    }
    // For profiling the child alone, e.g. `HALLWAY_BENCH_CHILD_PREFIX="valgrind --tool=massif"`.
    let prefix: Vec<String> = std::env::var(CHILD_PREFIX_ENV)
        .map(|p| p.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let output = tokio::task::spawn_blocking(move || {
        let mut command = match prefix.split_first() {
            Some((program, rest)) => {
                let mut c = std::process::Command::new(program);
                c.args(rest).arg(exe);
                c
            }
            None => std::process::Command::new(exe),
        };
        command
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
    })
    .await??;
    let mut record = Record::from_lines(&String::from_utf8_lossy(&output.stdout));
    record.put("receiver_requests", receivers.count());
    if !output.status.success() || record.get("scenario").is_none() {
        return Err(BenchError::new(format!(
            "the backlog child failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stdout).trim()
        )));
    }
    Ok(record)
}

fn mib(kib: Option<u64>) -> serde_json::Value {
    kib.map(|k| serde_json::Value::from(k as f64 / 1024.0))
        .unwrap_or(serde_json::Value::Null)
}

/// Bytes of resident memory per pending delivery: what the resident set grew by from the
/// empty engine to `kib`.
fn per_pending(kib: Option<u64>, base_kib: Option<u64>, pending: u64) -> serde_json::Value {
    match (kib, base_kib) {
        (Some(k), Some(b)) if pending > 0 => {
            serde_json::Value::from((k.saturating_sub(b) * 1024) as f64 / pending as f64)
        }
        _ => serde_json::Value::Null,
    }
}

/// The child's side: `pending` deliveries (pending / 5 publishes) whose first attempt fails
/// (the receivers on `ports` answer 500) and whose second (and last) is due `retry_after`
/// later; peak RSS, a clean shutdown, a timed reopen, then the whole backlog retried.
pub async fn child(ctx: &Ctx, pending: u32, ports: &[u16]) -> BenchResult<Record> {
    if ports.len() != WEBHOOKS {
        return Err(BenchError::new(format!(
            "the backlog child needs {WEBHOOKS} receiver ports, got {}",
            ports.len()
        )));
    }
    let urls: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}/hook"))
        .collect();
    let dir = tempfile::tempdir()?;
    let retry_after = ctx
        .backlog_retry_after_secs
        .map(Duration::from_secs)
        .unwrap_or_else(|| default_retry_after(pending, ctx.backlog_rate));
    let policy = hallway_domain::Policy {
        retry_delays: vec![DurationMs(0), DurationMs(retry_after.as_millis() as u64)],
        // Every attempt fails by design; auto-disable would pause the backlog.
        auto_disable_after: u32::MAX,
        ..bench_policy()
    };
    let config = ctx.config(policy);
    let events = pending.div_ceil(WEBHOOKS_PER_ACCOUNT as u32);
    let deliveries = u64::from(events) * WEBHOOKS_PER_ACCOUNT as u64;
    let engine = ctx.open_engine(dir.path(), config.clone()).await?;
    let h = engine.handle();
    let tenants = provision(&h, &urls).await?;
    let rss_at_open = proc_status_kib("VmRSS");
    let started = Instant::now();
    // Peak memory is what this scenario measures: no prebuilt bodies, no publish times.
    let times = PublishTimes::new(0);
    let fanout = WEBHOOKS_PER_ACCOUNT as u32;
    match ctx.backlog_rate {
        0 => {
            let bodies = RawBodies::OnTheFlySized(TRANSCRIPT_BYTES);
            let accounts = &tenants.accounts;
            publish_closed_loop(
                &h,
                accounts,
                0..events,
                bodies,
                ctx.publishers,
                fanout,
                &times,
            )
            .await?
        }
        rate => {
            let accounts = &tenants.accounts;
            let rate = f64::from(rate);
            publish_fixed_rate(
                &h,
                accounts,
                0..events,
                rate,
                fanout,
                &times,
                TRANSCRIPT_BYTES,
            )
            .await?
        }
    }
    let filled = wait_until(
        || {
            let m = h.metrics();
            failed_total(&m) >= deliveries && m.in_flight == 0 && m.pending >= deliveries
        },
        Duration::from_secs(60 + deliveries / 1000),
    )
    .await;
    let fill_secs = started.elapsed().as_secs_f64();
    let m = h.metrics();
    let hwm_fill = proc_status_kib("VmHWM");
    let rss = proc_status_kib("VmRSS");
    let disk = dir_bytes(dir.path());
    drop(h);
    let t = Instant::now();
    engine.shutdown().await?;
    let shutdown_ms = t.elapsed().as_secs_f64() * 1e3;
    // What the stopped engine left (freed memory goes back to the system within 100 ms).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_stopped = proc_status_kib("VmRSS");

    // What opening the store costs a process that has run nothing else (this one keeps
    // memory the allocator has not returned since the engine stopped).
    let alone = open_store_in_new_process(ctx, dir.path()).await?;

    // The store first, then the engine over it (what `Engine::open` does), timed apart.
    let cache_mib = store_cache_mib(ctx, &config);
    let t = Instant::now();
    let store = open_store(dir.path(), Some(cache_mib), config.memory_budget_bytes).await?;
    let reopen_store_ms = t.elapsed().as_secs_f64() * 1e3;
    let rss_store_open = proc_status_kib("VmRSS");
    let engine = hallway_runtime::Engine::with_store(store, config).await?;
    let reopen_ms = t.elapsed().as_secs_f64() * 1e3;
    let h = engine.handle();
    // The first turn publishes the gauges; the backlog must all be there.
    let reopened = wait_until(
        || h.metrics().pending >= deliveries,
        Duration::from_secs(10),
    )
    .await;
    let ready_ms = t.elapsed().as_secs_f64() * 1e3;
    let reopen_pending = h.metrics().pending;
    let hwm_after_reopen = proc_status_kib("VmHWM");

    // The retries: each delivery's second attempt, due `retry_after` after its first failed,
    // fails too and is its last; the backlog is drained when nothing is pending.
    let due_from = retry_after.as_secs_f64() - started.elapsed().as_secs_f64();
    let t = Instant::now();
    let drained = wait_until(
        || {
            let m = h.metrics();
            failed_total(&m) >= deliveries && m.pending == 0
        },
        retry_after + Duration::from_secs_f64(fill_secs) + Duration::from_secs(120),
    )
    .await;
    let drain_secs = t.elapsed().as_secs_f64();
    let after = h.metrics();
    drop(h);
    engine.shutdown().await?;
    // The whole run's peak, the final stop (which writes the store's snapshots) included.
    let hwm_end = proc_status_kib("VmHWM");

    let mut r = Record::new("backlog");
    r.put("pending_retries", m.pending)
        .put("spilled", m.spilled)
        .put("attempts_failed", failed_total(&m))
        .put("body_bytes", raw_event_sized(0, TRANSCRIPT_BYTES).len())
        .put("fill_seconds", fill_secs)
        .put("rss_at_open_mib", mib(rss_at_open))
        .put("peak_rss_fill_mib", mib(hwm_fill))
        .put("rss_mib", mib(rss))
        .put(
            "bytes_per_pending_peak",
            per_pending(hwm_fill, rss_at_open, m.pending),
        )
        .put(
            "bytes_per_pending",
            per_pending(rss, rss_at_open, m.pending),
        )
        .put("disk_bytes", disk)
        .put("shutdown_ms", shutdown_ms)
        .put("reopen_ms", reopen_ms)
        .put("reopen_store_ms", reopen_store_ms)
        .put("rss_stopped_mib", mib(rss_stopped))
        .put("rss_store_open_mib", mib(rss_store_open))
        .put("store_open_alone_mib", alone.rss_added_mib)
        .put("store_open_alone_ms", alone.open_ms)
        .put("sled_pages", alone.pages)
        .put(
            "sled_pages_per_pending",
            alone.pages as f64 / m.pending.max(1) as f64,
        )
        .put("reopen_ready_ms", ready_ms)
        .put("reopen_pending", reopen_pending)
        .put("peak_rss_after_reopen_mib", mib(hwm_after_reopen))
        .put("publish_rate", ctx.backlog_rate)
        .put("retry_after_seconds", retry_after.as_secs_f64())
        .put("first_due_in_seconds", due_from)
        .put("drain_seconds", drain_secs)
        .put("retries_started", after.started)
        .put("retries_started_late", after.started_late)
        .put("retry_start_delay_max_ms", after.start_delay_max_ms)
        .put("peak_rss_mib", mib(hwm_end))
        .put(
            "complete",
            filled && reopened && drained && m.pending == deliveries && after.started >= deliveries,
        );
    Ok(r)
}

/// sled's cache for the engine `config` runs with: the flag's, or the budget's share.
fn store_cache_mib(ctx: &Ctx, config: &hallway_runtime::Config) -> u64 {
    ctx.sled_cache_mib.unwrap_or_else(|| {
        hallway_runtime::Budget::new(config.memory_budget_bytes).store_cache_bytes() / (1024 * 1024)
    })
}

/// What opening a stopped store cost a fresh process.
struct StoreAlone {
    rss_added_mib: f64,
    open_ms: f64,
    pages: u64,
}

/// Opens the store in `dir` in a new process (this binary with [`OPEN_STORE_FLAG`]).
async fn open_store_in_new_process(ctx: &Ctx, dir: &Path) -> BenchResult<StoreAlone> {
    let mut command = std::process::Command::new(std::env::current_exe()?);
    command.arg(OPEN_STORE_FLAG).arg(dir);
    for (flag, value) in [
        ("--sled-cache-mib", ctx.sled_cache_mib),
        ("--memory-budget-mib", ctx.memory_budget_mib),
    ] {
        if let Some(n) = value {
            command.args([flag.to_owned(), n.to_string()]);
        }
    }
    let output = tokio::task::spawn_blocking(move || {
        command
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
    })
    .await??;
    let r = Record::from_lines(&String::from_utf8_lossy(&output.stdout));
    let number = |k: &str| r.get(k).and_then(serde_json::Value::as_f64);
    match (
        number("rss_before_kib"),
        number("rss_kib"),
        number("open_ms"),
        number("pages"),
    ) {
        (Some(before), Some(after), Some(open_ms), Some(pages)) if output.status.success() => {
            Ok(StoreAlone {
                rss_added_mib: (after - before) / 1024.0,
                open_ms,
                pages: pages as u64,
            })
        }
        _ => Err(BenchError::new(format!(
            "opening the store alone failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stdout).trim()
        ))),
    }
}

/// The new process's side of [`open_store_in_new_process`]: opens the store as the engine
/// would, and reports the resident set before and after, the time and sled's page count.
pub async fn open_store_alone(ctx: &Ctx, dir: &Path) -> BenchResult<Record> {
    let config = ctx.config(bench_policy());
    let cache_mib = store_cache_mib(ctx, &config);
    let before = proc_status_kib("VmRSS");
    let t = Instant::now();
    let store = open_store(dir, Some(cache_mib), config.memory_budget_bytes).await?;
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let rss = proc_status_kib("VmRSS");
    let pages = tokio::task::spawn_blocking(move || store.page_count()).await?;
    let mut r = Record::new("backlog_store");
    r.put("rss_before_kib", before)
        .put("rss_kib", rss)
        .put("open_ms", open_ms)
        .put("pages", pages);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_delay_outlasts_the_fill() {
        // 200,000 events at 500 a second: 400 s, and a tenth to spare.
        assert_eq!(
            default_retry_after(1_000_000, 500),
            Duration::from_secs(450)
        );
        // 10,000,000 deliveries at the most a fill keeps, not at the 10,000 a second asked.
        let delay = default_retry_after(10_000_000, 2_000);
        assert!(
            delay >= Duration::from_secs(10_000_000 / FILL_DELIVERIES_MAX),
            "{delay:?}"
        );
        assert_eq!(default_retry_after(40_000, 0), Duration::from_secs(20));
    }
}
