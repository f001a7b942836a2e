//! Backlog: a large number of pending retries (receivers failing, a long second delay).
//! Runs in a child process (this binary re-executed) so the peak RSS it reports is its own.

use crate::receiver::Receivers;
use crate::scenarios::{failed_total, Ctx};
use crate::util::{dir_bytes, proc_status_kib, wait_until, BenchError, BenchResult, Record};
use crate::workload::{
    bench_policy, provision, publish_closed_loop, PublishTimes, WEBHOOKS, WEBHOOKS_PER_ACCOUNT,
};
use hallway_domain::DurationMs;
use hallway_runtime::Engine;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The hidden flag that runs the backlog scenario in this process (the child's side).
pub const CHILD_FLAG: &str = "--backlog-child";

/// Runs the backlog scenario in a child process and returns its record.
pub async fn run_in_child(ctx: &Ctx, pending: u32) -> BenchResult<Record> {
    let exe = std::env::current_exe()?;
    let mut args = vec![
        CHILD_FLAG.to_owned(),
        pending.to_string(),
        "--publishers".to_owned(),
        ctx.publishers.to_string(),
    ];
    if let Some(n) = ctx.max_in_flight {
        args.extend(["--max-in-flight".to_owned(), n.to_string()]);
    }
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(exe)
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
    })
    .await??;
    let record = Record::from_lines(&String::from_utf8_lossy(&output.stdout));
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

/// The child's side: `pending` deliveries (pending / 5 publishes) whose first attempt fails
/// and whose second is an hour away; then peak RSS, a clean shutdown and a timed reopen.
pub async fn child(ctx: &Ctx, pending: u32) -> BenchResult<Record> {
    let receivers = Receivers::start(&ctx.receivers_rt, WEBHOOKS, 500)?;
    let dir = tempfile::tempdir()?;
    let policy = hallway_domain::Policy {
        retry_delays: vec![DurationMs(0), DurationMs::from_hours(1)],
        // Every first attempt fails by design; auto-disable would cancel the backlog.
        auto_disable_after: u32::MAX,
        ..bench_policy()
    };
    let config = ctx.config(policy);
    let events = pending.div_ceil(WEBHOOKS_PER_ACCOUNT as u32);
    let deliveries = u64::from(events) * WEBHOOKS_PER_ACCOUNT as u64;
    let engine = Engine::open(dir.path(), config.clone()).await?;
    let h = engine.handle();
    let tenants = provision(&h, &receivers.urls()).await?;
    let times = PublishTimes::new(events as usize);
    let started = Instant::now();
    publish_closed_loop(
        &h,
        &tenants.accounts,
        0..events,
        ctx.publishers,
        WEBHOOKS_PER_ACCOUNT as u32,
        &times,
    )
    .await?;
    drop(times);
    let settled = wait_until(
        || {
            let m = h.metrics();
            failed_total(&m) >= deliveries && m.in_flight == 0 && m.pending >= deliveries
        },
        Duration::from_secs(60 + deliveries / 1000),
    )
    .await;
    let fill_secs = started.elapsed().as_secs_f64();
    let m = h.metrics();
    let hwm = proc_status_kib("VmHWM");
    let rss = proc_status_kib("VmRSS");
    let disk = dir_bytes(dir.path());
    drop(h);
    let t = Instant::now();
    engine.shutdown().await?;
    let shutdown_ms = t.elapsed().as_secs_f64() * 1e3;

    let t = Instant::now();
    let engine = Engine::open(dir.path(), config).await?;
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
    drop(h);
    engine.shutdown().await?;

    let mut r = Record::new("backlog");
    r.put("pending_retries", m.pending)
        .put("attempts_failed", failed_total(&m))
        .put("fill_seconds", fill_secs)
        .put("peak_rss_mib", mib(hwm))
        .put("rss_mib", mib(rss))
        .put("disk_bytes", disk)
        .put("shutdown_ms", shutdown_ms)
        .put("reopen_ms", reopen_ms)
        .put("reopen_ready_ms", ready_ms)
        .put("reopen_pending", reopen_pending)
        .put("peak_rss_after_reopen_mib", mib(hwm_after_reopen))
        .put("complete", settled && reopened && m.pending == deliveries);
    Ok(r)
}
