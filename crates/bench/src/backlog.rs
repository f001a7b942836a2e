//! Backlog: a large number of pending retries (receivers failing), in child processes (this
//! binary re-executed) so that the peak RSS it reports is the engine's: the receivers stay in
//! the parent, and earlier scenarios' memory is not in a child's high-water mark.
//!
//! The first child fills the backlog (one failed first attempt per delivery, the second due
//! `retry_after` later), measures memory and shuts down (`fill.rs`). A second child, a fresh
//! process as after an operator's restart, reopens the store (timed, with the memory it
//! takes alone and sled's page count), and waits for the whole backlog to come due
//! (`drain.rs`): every second attempt must start within a second of its due time (the
//! engine's `started_late` counter), at the rate the receivers allow. The run's peak is the
//! larger of the two processes' peaks.

mod drain;
mod fill;

pub use drain::drain;
pub use fill::fill;

use crate::receiver::Receivers;
use crate::scenarios::Ctx;
use crate::util::{BenchError, BenchResult, Record};
use crate::workload::{bench_policy, raw_event_sized, WEBHOOKS, WEBHOOKS_PER_ACCOUNT};
use hallway_domain::DurationMs;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

/// The hidden flag that fills the backlog in this process (the first child's side).
pub const CHILD_FLAG: &str = "--backlog-child";

/// The hidden flag that reopens a filled backlog and drains it (the second child's side).
pub const DRAIN_FLAG: &str = "--backlog-drain";

/// The hidden flag that names the backlog's data directory (the parent's).
pub const DIR_FLAG: &str = "--backlog-dir";

/// The hidden flags that tell the drain when the fill started and how long it took.
pub const STARTED_FLAG: &str = "--backlog-started-unix-ms";
pub const FILL_SECS_FLAG: &str = "--backlog-fill-secs";

/// An environment variable holding a command to run both children under (a profiler).
pub const CHILD_PREFIX_ENV: &str = "HALLWAY_BENCH_CHILD_PREFIX";

/// An environment variable holding a command to run the drain alone under, in place of
/// [`CHILD_PREFIX_ENV`]'s: a heap profile of the drain without the fill's hour under it.
pub const DRAIN_PREFIX_ENV: &str = "HALLWAY_BENCH_DRAIN_PREFIX";

/// The hidden flag that gives the child the receivers' ports (one per webhook).
pub const PORTS_FLAG: &str = "--backlog-ports";

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

/// What both children are told: the backlog's size, where its store is, and the delay of
/// its retries.
pub struct BacklogArgs {
    /// Pending deliveries asked for (rounded up to whole fan-outs).
    pub pending: u32,
    /// The run's directory, which the parent owns: the store in `data`, the master key
    /// beside it (both children must open the webhooks' secrets).
    pub dir: PathBuf,
    /// The second attempt's delay.
    pub retry_after: Duration,
}

impl BacklogArgs {
    /// Events the fill publishes.
    fn events(&self) -> u32 {
        self.pending.div_ceil(WEBHOOKS_PER_ACCOUNT as u32)
    }

    /// Deliveries the fill makes pending.
    fn deliveries(&self) -> u64 {
        u64::from(self.events()) * WEBHOOKS_PER_ACCOUNT as u64
    }

    /// The store's directory.
    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The engine's configuration in either child: the backlog's policy and the run's
    /// master key (made by the fill, read by the drain).
    fn config(&self, ctx: &Ctx) -> BenchResult<hallway_runtime::Config> {
        let mut config = ctx.config(backlog_policy(self.retry_after));
        let key = hallway_runtime::MasterKey::load_or_create(&self.dir.join("master.key"))
            .map_err(|e| BenchError::new(format!("the backlog's master key: {e}")))?;
        config.master_key = Some(key);
        Ok(config)
    }
}

/// Two attempts, the second `retry_after` after the first, and no auto-disable: every
/// attempt fails by design, and auto-disable would pause the backlog.
fn backlog_policy(retry_after: Duration) -> hallway_domain::Policy {
    hallway_domain::Policy {
        retry_delays: vec![DurationMs(0), DurationMs(retry_after.as_millis() as u64)],
        auto_disable_after: u32::MAX,
        ..bench_policy()
    }
}

/// Runs the backlog scenario in two child processes (fill, then a restart's drain) against
/// receivers in this process, and returns their records as one.
pub async fn run_in_child(ctx: &Ctx, pending: u32) -> BenchResult<Record> {
    let receivers = Receivers::start(&ctx.receivers_rt, WEBHOOKS, 500)?;
    let ports: Vec<String> = receivers.all.iter().map(|r| r.port.to_string()).collect();
    let dir = tempfile::tempdir()?;
    let retry_after = ctx
        .backlog_retry_after_secs
        .map(Duration::from_secs)
        .unwrap_or_else(|| default_retry_after(pending, ctx.backlog_rate));
    let mut common = vec![
        DIR_FLAG.to_owned(),
        dir.path().to_string_lossy().into_owned(),
        "--backlog-retry-after-secs".to_owned(),
        retry_after.as_secs().to_string(),
        "--publishers".to_owned(),
        ctx.publishers.to_string(),
    ];
    let numbers = [
        ("--max-in-flight", ctx.max_in_flight.map(|n| n as u64)),
        ("--snapshot-every-events", ctx.snapshot_every_events),
        ("--sled-cache-mib", ctx.sled_cache_mib),
        ("--memory-budget-mib", ctx.memory_budget_mib),
        ("--backlog-rate", Some(u64::from(ctx.backlog_rate))),
    ];
    for (flag, value) in numbers {
        if let Some(n) = value {
            common.extend([flag.to_owned(), n.to_string()]);
        }
    }
    let mut fill_args = vec![
        CHILD_FLAG.to_owned(),
        pending.to_string(),
        PORTS_FLAG.to_owned(),
        ports.join(","),
    ];
    fill_args.extend(common.iter().cloned());
    let mut record = run_child(fill_args, "backlog", CHILD_PREFIX_ENV).await?;
    let number = |r: &Record, k: &str| r.number(k).unwrap_or(0.0);
    let mut drain_args = vec![
        DRAIN_FLAG.to_owned(),
        pending.to_string(),
        STARTED_FLAG.to_owned(),
        (number(&record, "fill_started_unix_ms") as u64).to_string(),
        FILL_SECS_FLAG.to_owned(),
        number(&record, "fill_seconds").to_string(),
    ];
    drain_args.extend(common);
    let drain_prefix = match std::env::var_os(DRAIN_PREFIX_ENV) {
        Some(_) => DRAIN_PREFIX_ENV,
        None => CHILD_PREFIX_ENV,
    };
    let drained = run_child(drain_args, "backlog_drain", drain_prefix).await?;
    let filled = record.get("filled") == Some(&serde_json::Value::Bool(true));
    let peak =
        number(&record, "peak_rss_fill_process_mib").max(number(&drained, "peak_rss_drain_mib"));
    let complete = filled && drained.get("drained") == Some(&serde_json::Value::Bool(true));
    for (k, v) in drained.fields.into_iter().skip(1) {
        record.put(&k, v);
    }
    record
        .put("body_bytes", raw_event_sized(0, TRANSCRIPT_BYTES).len())
        .put("publish_rate", ctx.backlog_rate)
        .put("retry_after_seconds", retry_after.as_secs_f64())
        .put("receiver_requests", receivers.count())
        .put("peak_rss_mib", peak)
        .put("complete", complete);
    Ok(record)
}

/// Runs this binary with `args` (under the command in the environment variable `prefix_env`,
/// if set) and returns the record it prints, which must be a `scenario` record.
async fn run_child(args: Vec<String>, scenario: &str, prefix_env: &str) -> BenchResult<Record> {
    let exe = std::env::current_exe()?;
    let prefix: Vec<String> = std::env::var(prefix_env)
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
    let record = Record::from_lines(&String::from_utf8_lossy(&output.stdout));
    let named = record.get("scenario").and_then(serde_json::Value::as_str) == Some(scenario);
    if !output.status.success() || !named {
        return Err(BenchError::new(format!(
            "the {scenario} child failed ({}): {}",
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

/// sled's cache for the engine `config` runs with: the flag's, or the budget's share.
fn store_cache_mib(ctx: &Ctx, config: &hallway_runtime::Config) -> u64 {
    ctx.sled_cache_mib.unwrap_or_else(|| {
        hallway_runtime::Budget::new(config.memory_budget_bytes).store_cache_bytes() / (1024 * 1024)
    })
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
