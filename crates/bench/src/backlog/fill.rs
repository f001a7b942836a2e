//! The first child: fills the backlog (every first attempt fails, its retry due
//! `retry_after` later), measures memory, and stops the engine cleanly.

use super::{mib, per_pending, BacklogArgs, TRANSCRIPT_BYTES};
use crate::scenarios::{failed_total, Ctx};
use crate::util::{
    dir_bytes, proc_status_kib, process_cpu_seconds, wait_until, BenchError, BenchResult, Record,
};
use crate::workload::{
    provision, publish_closed_loop, publish_fixed_rate, PublishTimes, RawBodies, WEBHOOKS,
    WEBHOOKS_PER_ACCOUNT,
};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Fills `args.pending` deliveries into the store in `args.dir` against the receivers on
/// `ports`, then stops the engine; the record carries what the drain's process needs.
pub async fn fill(ctx: &Ctx, args: &BacklogArgs, ports: &[u16]) -> BenchResult<Record> {
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
    let config = args.config(ctx)?;
    let events = args.events();
    let deliveries = args.deliveries();
    let engine = ctx.open_engine(&args.data_dir(), config).await?;
    let h = engine.handle();
    let tenants = provision(&h, &urls).await?;
    let rss_at_open = proc_status_kib("VmRSS");
    let started = Instant::now();
    let started_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| BenchError::new(format!("the clock is before 1970: {e}")))?
        .as_millis() as u64;
    // Peak memory is what this scenario measures: no prebuilt bodies, no publish times.
    let times = PublishTimes::new(0);
    let fanout = WEBHOOKS_PER_ACCOUNT as u32;
    let accounts = &tenants.accounts;
    let waiting_peak = match ctx.backlog_rate {
        0 => {
            let bodies = RawBodies::OnTheFlySized(TRANSCRIPT_BYTES);
            publish_closed_loop(
                &h,
                accounts,
                0..events,
                bodies,
                ctx.publishers,
                fanout,
                &times,
            )
            .await?;
            ctx.publishers
        }
        rate => {
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
    };
    let filled = wait_until(
        || {
            let m = h.metrics();
            failed_total(&m) >= deliveries && m.in_flight == 0 && m.pending >= deliveries
        },
        Duration::from_secs(60 + deliveries / 1000),
    )
    .await;
    let fill_secs = started.elapsed().as_secs_f64();
    let fill_cpu = process_cpu_seconds();
    let m = h.metrics();
    let hwm_fill = proc_status_kib("VmHWM");
    let rss = proc_status_kib("VmRSS");
    let disk = dir_bytes(&args.data_dir());
    drop(h);
    let t = Instant::now();
    engine.shutdown().await?;
    let shutdown_ms = t.elapsed().as_secs_f64() * 1e3;
    // What the stopped engine left (freed memory goes back to the system within 100 ms).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_stopped = proc_status_kib("VmRSS");

    let mut r = Record::new("backlog");
    r.put("pending_retries", m.pending)
        .put("spilled", m.spilled)
        .put("attempts_failed", failed_total(&m))
        .put("fill_seconds", fill_secs)
        // Publishes the open loop had waiting at once: more than a second's worth means the
        // engine fell behind the rate, and the fill's peak holds them.
        .put("publishes_waiting_peak", waiting_peak)
        // The engine's and the publishers' CPU, from the process's start.
        .put("fill_cpu_seconds", fill_cpu)
        .put("fill_started_unix_ms", started_unix_ms)
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
        .put("rss_stopped_mib", mib(rss_stopped))
        // The fill's process from its start to its stop, the store's snapshots included.
        .put("peak_rss_fill_process_mib", mib(proc_status_kib("VmHWM")))
        .put("filled", filled && m.pending == deliveries);
    Ok(r)
}
