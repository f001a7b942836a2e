//! Backlog: a large number of pending retries (receivers failing, a long second delay).
//! The engine runs in a child process (this binary re-executed) so that the peak RSS it
//! reports is the engine's: the receivers stay in the parent, and earlier scenarios' memory
//! is not in the child's high-water mark.

use crate::receiver::Receivers;
use crate::scenarios::{failed_total, Ctx};
use crate::util::{dir_bytes, proc_status_kib, wait_until, BenchError, BenchResult, Record};
use crate::workload::{
    bench_policy, provision, publish_closed_loop, PublishTimes, RawBodies, WEBHOOKS,
    WEBHOOKS_PER_ACCOUNT,
};
use hallway_domain::DurationMs;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The hidden flag that runs the backlog scenario in this process (the child's side).
pub const CHILD_FLAG: &str = "--backlog-child";

/// An environment variable holding a command to run the child under (a profiler).
pub const CHILD_PREFIX_ENV: &str = "HALLWAY_BENCH_CHILD_PREFIX";

/// The hidden flag that gives the child the receivers' ports (one per webhook).
pub const PORTS_FLAG: &str = "--backlog-ports";

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
    if let Some(n) = ctx.max_in_flight {
        args.extend(["--max-in-flight".to_owned(), n.to_string()]);
    }
    if let Some(n) = ctx.snapshot_every_events {
        args.extend(["--snapshot-every-events".to_owned(), n.to_string()]);
    }
    if let Some(n) = ctx.sled_cache_mib {
        args.extend(["--sled-cache-mib".to_owned(), n.to_string()]);
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

/// The child's side: `pending` deliveries (pending / 5 publishes) whose first attempt fails
/// (the receivers on `ports` answer 500) and whose second is an hour away; then peak RSS, a
/// clean shutdown and a timed reopen.
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
    let policy = hallway_domain::Policy {
        retry_delays: vec![DurationMs(0), DurationMs::from_hours(1)],
        // Every first attempt fails by design; auto-disable would cancel the backlog.
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
    let times = PublishTimes::new(events as usize);
    let started = Instant::now();
    publish_closed_loop(
        &h,
        &tenants.accounts,
        0..events,
        // Peak memory is what this scenario measures: no prebuilt bodies in it.
        RawBodies::OnTheFly,
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
    let engine = ctx.open_engine(dir.path(), config).await?;
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
        .put("rss_at_open_mib", mib(rss_at_open))
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
