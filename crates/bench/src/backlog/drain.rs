//! The second child, a process that has run nothing else, as after an operator's restart:
//! opens the filled store (timed, and its memory alone), then the engine over it, and waits
//! for the whole backlog to come due and be retried.

use super::{mib, store_cache_mib, BacklogArgs};
use crate::scenarios::{failed_total, open_store, Ctx};
use crate::util::{proc_status_kib, wait_until, BenchResult, Record};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Reopens the store in `args.dir` and drains its backlog; `started_unix_ms` is when the
/// fill began and `fill_secs` how long it took (the retries come due over as long).
pub async fn drain(
    ctx: &Ctx,
    args: &BacklogArgs,
    started_unix_ms: u64,
    fill_secs: f64,
) -> BenchResult<Record> {
    let config = args.config(ctx)?;
    let deliveries = args.deliveries();
    let cache_mib = store_cache_mib(ctx, &config);
    let rss_before = proc_status_kib("VmRSS");
    // The store first, then the engine over it (what `Engine::open` does), timed apart.
    let t = Instant::now();
    let store = open_store(
        &args.data_dir(),
        Some(cache_mib),
        config.memory_budget_bytes,
    )
    .await?;
    let reopen_store_ms = t.elapsed().as_secs_f64() * 1e3;
    let rss_store_open = proc_status_kib("VmRSS");
    let counted = store.clone();
    let pages = tokio::task::spawn_blocking(move || counted.page_count()).await?;
    let t = Instant::now();
    let engine = hallway_runtime::Engine::with_store(store, config).await?;
    let reopen_ms = reopen_store_ms + t.elapsed().as_secs_f64() * 1e3;
    let h = engine.handle();
    // The first turn publishes the gauges; the backlog must all be there.
    let reopened = wait_until(
        || h.metrics().pending >= deliveries,
        Duration::from_secs(10),
    )
    .await;
    let ready_ms = reopen_store_ms + t.elapsed().as_secs_f64() * 1e3;
    let reopen_pending = h.metrics().pending;
    let hwm_after_reopen = proc_status_kib("VmHWM");

    // The retries: each delivery's second attempt, due `retry_after` after its first failed,
    // fails too and is its last; the backlog is drained when nothing is pending.
    let now_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let since_fill_secs = now_unix_ms.saturating_sub(started_unix_ms) as f64 / 1e3;
    let due_from = args.retry_after.as_secs_f64() - since_fill_secs;
    let t = Instant::now();
    let drained = wait_until(
        || {
            let m = h.metrics();
            failed_total(&m) >= deliveries && m.pending == 0
        },
        args.retry_after + Duration::from_secs_f64(fill_secs) + Duration::from_secs(120),
    )
    .await;
    let drain_secs = t.elapsed().as_secs_f64();
    let after = h.metrics();
    drop(h);
    engine.shutdown().await?;

    let mut r = Record::new("backlog_drain");
    r.put("reopen_ms", reopen_ms)
        .put("reopen_store_ms", reopen_store_ms)
        .put("rss_store_open_mib", mib(rss_store_open))
        .put(
            "store_open_alone_mib",
            mib(rss_store_open
                .zip(rss_before)
                .map(|(after, before)| after.saturating_sub(before))),
        )
        .put("sled_pages", pages)
        .put(
            "sled_pages_per_pending",
            pages as f64 / reopen_pending.max(1) as f64,
        )
        .put("reopen_ready_ms", ready_ms)
        .put("reopen_pending", reopen_pending)
        .put("peak_rss_after_reopen_mib", mib(hwm_after_reopen))
        .put("first_due_in_seconds", due_from)
        .put("drain_seconds", drain_secs)
        .put("retries_started", after.started)
        .put("retries_started_late", after.started_late)
        .put("retry_start_delay_max_ms", after.start_delay_max_ms)
        // The drain's process from its start to its stop, the store's snapshots included.
        .put("peak_rss_drain_mib", mib(proc_status_kib("VmHWM")))
        .put(
            "drained",
            reopened && drained && after.started >= deliveries,
        );
    Ok(r)
}
