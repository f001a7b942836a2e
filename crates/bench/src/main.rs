//! `hallway-bench`: how fast the engine is next to the physical ceiling of the same machine,
//! measured in the same run. Run with `just bench` (`cargo run --release -p hallway-bench --`);
//! `--json` prints one JSON object per scenario per line, `--quick` runs everything small.
//!
//! The engine runs in-process on a temp data dir with the production configuration (system
//! clock, durable group commit, the default HTTPS transport, which speaks plain HTTP to the
//! loopback receivers here). Receivers are keep-alive hyper servers on 127.0.0.1, one port per
//! webhook, on their own runtime; they answer at once and record when each body arrived.
//!
//! - `throughput`: 5 accounts x 5 webhooks, ~2 KB transcripts, closed-loop publishers whose
//!   raw events are built before the clock starts (as the ceiling's bodies are).
//!   `deliveries_per_sec` runs from the first publish to the last arrival;
//!   `ceiling_requests_per_sec` is a plain pooled hyper client posting the same signed bodies
//!   to the same receivers with the engine's `max_in_flight` concurrency: the mean of a run
//!   right before and one right after (both are reported too).
//!   `p50_ms`/`p99_ms` are publish-accepted-to-arrival; `publish_*` the publish call. The
//!   `store_*`, `flush_*`, `payload_*`, `snapshot_ms` and `actor_other_ms` fields split the
//!   engine actor's time between the store calls it waits for and everything else.
//!   `commit_runqueue_ms` is how long the committing thread was runnable but had no CPU
//!   (Linux schedstat); `snapshot_write_max_ms` the longest snapshot encode, during which the
//!   actor decides nothing. `written_bytes_per_delivery` (throughput and latency) is what the
//!   process sent to storage (`/proc/self/io`) per delivery: sled rewrites pages, so it is
//!   several times `disk_bytes_per_delivery`.
//! - `api`: the server binary in a child process, publishes POSTed to its HTTP API over
//!   keep-alive connections by `--publishers` closed-loop producers, `--api-accounts` accounts
//!   (1, 4 and 16 by default; 4 and 1 with --quick) with one webhook each, ~2 KB events;
//!   the ceiling is an ack-then-forward hyper proxy (a child too) right before and after.
//!   `server_cpu_us_per_delivery` is the server process's CPU (every thread) from the first
//!   publish to the last result recorded, per delivery; `half_load_publish_p99_ms` is the
//!   publish latency at a fixed rate of half the achieved one. `HALLWAY_BENCH_PERF="-g -o
//!   <file>"` profiles the server over its closed loop with `perf record`.
//! - `latency`: a fixed (open-loop) offered load at half the measured throughput. With
//!   `HALLWAY_BENCH_TRACE=<dir>` it writes every publish (`publish.trace`) and every store
//!   call (`store.trace`) of the window as `kind start_ns duration_ns events` lines, to line
//!   slow publishes up with what ran beside them.
//! - `retries`: receivers answer 500 on a compressed five-attempt schedule; checks every
//!   delivery made exactly five attempts, none early.
//! - `backlog`: pending retries (1 KiB bodies, 20 webhooks; 1,000,000 by default, 10,000,000
//!   with `--backlog-pending 10000000` for a person with time) in a child process (the
//!   receivers stay in the parent) so `peak_rss_mib` (VmHWM) is the engine's:
//!   `bytes_per_pending` is what the resident set grew by per pending delivery. Then a clean
//!   shutdown, a timed reopen in a fresh process (as after a restart), and the whole backlog
//!   retried when it comes due: `retries_started_late` counts second attempts started more
//!   than 1 s after they were due; `peak_rss_mib` is the larger of the two processes' peaks.
//!   It publishes 500 events a second (`--backlog-rate`, the example outage), so the
//!   retries come due at that rate; `--backlog-rate 0` fills as fast as the engine takes it.
//!   Set `HALLWAY_BENCH_CHILD_PREFIX` to run the children under a profiler, e.g.
//!   `"valgrind --tool=massif"`, or `HALLWAY_BENCH_DRAIN_PREFIX` to run the drain alone under
//!   one, e.g. `"heaptrack -o /tmp/drain"` (a heap profiler sees the system's allocator, not
//!   mimalloc: build with `--no-default-features`, and rebuild with the default before
//!   comparing: every record names its `bench_allocator`). `publishes_waiting_peak` is the most
//!   publishes the open loop had waiting at once: past a second's worth the engine fell behind
//!   the rate, and the fill's peak holds what waits.
//! - `replay`: a log written the way the actor writes it (domain decisions appended turn by
//!   turn to the sled store), then `Engine::open` timed with no snapshot, and again with the
//!   snapshot a production engine would have taken.
//!
//! The last line, `targets`, lists each target of the issue with the value measured here.

mod api;
mod backlog;
mod ceiling;
mod proxy;
mod receiver;
mod replay;
mod scenarios;
mod timed_store;
mod util;
mod workload;

use clap::{Parser, ValueEnum};
use scenarios::{failed_record, Ctx};
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use util::{BenchError, BenchResult, Record};

/// The benchmark harness of hallway-webhooks.
#[derive(Parser, Debug)]
#[command(name = "hallway-bench", version, about)]
struct Args {
    /// Print one JSON object per line instead of tables.
    #[arg(long)]
    json: bool,
    /// Run a smaller version of every scenario (under a minute in all).
    #[arg(long)]
    quick: bool,
    /// Scenarios to run (repeatable or a comma list); all when absent.
    #[arg(long = "scenario", value_enum, value_delimiter = ',')]
    scenarios: Vec<Scenario>,
    /// Concurrent publishing tasks.
    #[arg(long, default_value_t = 128)]
    publishers: usize,
    /// Events the throughput scenario publishes (5 deliveries each); default 20,000
    /// (4,000 with --quick).
    #[arg(long)]
    throughput_events: Option<u32>,
    /// Pending retries the backlog scenario builds; default 1,000,000 (20,000 with --quick).
    #[arg(long)]
    backlog_pending: Option<u32>,
    /// Seconds between the backlog's failed first attempts and their retries; default long
    /// enough for the fill at --backlog-rate (counting at most 6,000 deliveries a second),
    /// plus a tenth and 10 s.
    #[arg(long)]
    backlog_retry_after_secs: Option<u64>,
    /// Events per second the backlog scenario publishes (its retries come due at that rate
    /// later); 0: as fast as the engine takes them (closed loop). The example outage
    /// is 500 events a second.
    #[arg(long, default_value_t = 500)]
    backlog_rate: u32,
    /// The engine's memory budget in MiB; default the engine's own (256 MiB).
    #[arg(long)]
    memory_budget_mib: Option<u64>,
    /// Events the replay scenario writes; default 1,000,000 (100,000 with --quick).
    #[arg(long)]
    replay_events: Option<u64>,
    /// The engine's `snapshot_every_events`; default the engine's own default.
    #[arg(long)]
    snapshot_every_events: Option<u64>,
    /// sled's page cache in MiB (an experiment; default the store's own, 128 MiB).
    #[arg(long)]
    sled_cache_mib: Option<u64>,
    /// The engine's `max_in_flight` (and the ceiling client's concurrency); default the
    /// engine's own default.
    #[arg(long)]
    max_in_flight: Option<usize>,
    /// The throughput the latency scenario offers half of, in deliveries/s, instead of
    /// measuring it first (to compare builds at one load).
    #[arg(long)]
    latency_of_throughput: Option<f64>,
    /// Accounts (one webhook each) of the api scenario's runs; default 1,4,16 (4,1 with
    /// --quick).
    #[arg(long, value_delimiter = ',')]
    api_accounts: Vec<usize>,
    /// Events each api run publishes in its closed loop; default 40,000 (5,000 with --quick).
    #[arg(long)]
    api_events: Option<u32>,
    /// The server binary the api scenario runs; default `hallway-webhooks` next to this
    /// binary (build both: `cargo build --release -p hallway-webhooks -p hallway-bench`).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Internal: run the api scenario's proxy in this process.
    #[arg(long = "proxy-child", hide = true)]
    proxy_child: bool,
    /// Internal: the proxy's receivers, by account index.
    #[arg(long = "proxy-targets", hide = true, value_delimiter = ',')]
    proxy_targets: Vec<String>,
    /// Internal: run the backlog scenario in this process with this many pending retries.
    #[arg(long = "backlog-child", hide = true)]
    backlog_child: Option<u32>,
    /// Internal: the backlog child's receiver ports.
    #[arg(long = "backlog-ports", hide = true, value_delimiter = ',')]
    backlog_ports: Vec<u16>,
    /// Internal: reopen the backlog of this many pending retries and drain it.
    #[arg(long = "backlog-drain", hide = true)]
    backlog_drain: Option<u32>,
    /// Internal: the backlog's data directory.
    #[arg(long = "backlog-dir", hide = true)]
    backlog_dir: Option<PathBuf>,
    /// Internal: when the backlog's fill started (Unix milliseconds).
    #[arg(long = "backlog-started-unix-ms", hide = true, default_value_t = 0)]
    backlog_started_unix_ms: u64,
    /// Internal: how long the backlog's fill took, in seconds.
    #[arg(long = "backlog-fill-secs", hide = true, default_value_t = 0.0)]
    backlog_fill_secs: f64,
}

/// A scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Deliveries per second next to the ceiling.
    Throughput,
    /// Publish-to-arrival latency at half of the measured throughput.
    Latency,
    /// The server's HTTP API next to an ack-then-forward proxy.
    Api,
    /// Attempts per second and exact attempt counts with failing receivers.
    Retries,
    /// Peak RSS and reopen time with many pending retries.
    Backlog,
    /// Time to open an engine over a long log.
    Replay,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Throughput => "throughput",
            Scenario::Latency => "latency",
            Scenario::Api => "api",
            Scenario::Retries => "retries",
            Scenario::Backlog => "backlog",
            Scenario::Replay => "replay",
        }
    }
}

/// The sizes of one run.
struct Sizes {
    throughput_events: u32,
    probe_events: u32,
    latency_secs: f64,
    latency_warm_secs: f64,
    retries_events: u32,
    backlog_pending: u32,
    replay_events: u64,
    api_accounts: Vec<usize>,
    api_events: u32,
    api_half_load_secs: f64,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                throughput_events: 4_000,
                probe_events: 2_000,
                latency_secs: 3.0,
                latency_warm_secs: 0.5,
                retries_events: 1_000,
                backlog_pending: 20_000,
                replay_events: 100_000,
                api_accounts: vec![4, 1],
                api_events: 5_000,
                api_half_load_secs: 2.0,
            }
        } else {
            Sizes {
                throughput_events: 20_000,
                probe_events: 4_000,
                latency_secs: 15.0,
                latency_warm_secs: 1.0,
                retries_events: 4_000,
                backlog_pending: 1_000_000,
                replay_events: 1_000_000,
                api_accounts: vec![1, 4, 16],
                api_events: 40_000,
                api_half_load_secs: 5.0,
            }
        }
    }
}

/// The engine's allocator, as in the server binary (see `hallway_runtime::alloc`).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: hallway_runtime::alloc::Allocator = hallway_runtime::alloc::Allocator;

fn main() -> ExitCode {
    #[cfg(feature = "mimalloc")]
    hallway_runtime::alloc::tune();
    let args = Args::parse();
    util::now_ns();
    let receivers_rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("receivers")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hallway-bench: cannot start the receivers' runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let main_rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hallway-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ctx = Ctx {
        receivers_rt: receivers_rt.handle().clone(),
        quick: args.quick,
        publishers: args.publishers.max(1),
        max_in_flight: args.max_in_flight.filter(|n| *n > 0),
        snapshot_every_events: args.snapshot_every_events.filter(|n| *n > 0),
        sled_cache_mib: args.sled_cache_mib.filter(|n| *n > 0),
        memory_budget_mib: args.memory_budget_mib.filter(|n| *n > 0),
        backlog_retry_after_secs: args.backlog_retry_after_secs,
        backlog_rate: args.backlog_rate,
    };
    let code = main_rt.block_on(async {
        if args.proxy_child {
            let concurrency = args.max_in_flight.filter(|n| *n > 0).unwrap_or(1024);
            return match proxy::child(args.proxy_targets.clone(), concurrency).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("hallway-bench: proxy: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        let child = match (args.backlog_child, args.backlog_drain) {
            (Some(pending), _) => Some((pending, true)),
            (None, Some(pending)) => Some((pending, false)),
            (None, None) => None,
        };
        if let Some((pending, fills)) = child {
            let result = match (&args.backlog_dir, args.backlog_retry_after_secs) {
                (Some(dir), Some(secs)) => {
                    let backlog = backlog::BacklogArgs {
                        pending,
                        dir: dir.clone(),
                        retry_after: Duration::from_secs(secs),
                    };
                    if fills {
                        backlog::fill(&ctx, &backlog, &args.backlog_ports).await
                    } else {
                        let started = args.backlog_started_unix_ms;
                        backlog::drain(&ctx, &backlog, started, args.backlog_fill_secs).await
                    }
                }
                _ => Err(BenchError::new(
                    "a backlog child needs --backlog-dir and --backlog-retry-after-secs",
                )),
            };
            return match result {
                Ok(r) => {
                    print!("{}", r.to_lines());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("hallway-bench: backlog: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        run(&args, &ctx).await
    });
    main_rt.shutdown_background();
    receivers_rt.shutdown_background();
    code
}

/// The allocator this bench binary runs on, in every record it prints: the in-process
/// scenarios and the api scenario's ceiling (this binary too) move by a fifth between the
/// two, so records of builds with different allocators do not compare.
const BENCH_ALLOCATOR: &str = if cfg!(feature = "mimalloc") {
    "mimalloc"
} else {
    "system"
};

fn emit(args: &Args, r: &Record) {
    let mut r = r.clone();
    r.put("bench_allocator", BENCH_ALLOCATOR);
    let r = &r;
    if args.json {
        println!("{}", r.to_json());
    } else {
        let name = r.get("scenario").and_then(Value::as_str).unwrap_or("?");
        println!("{name}\n{}", r.to_table());
    }
}

async fn run(args: &Args, ctx: &Ctx) -> ExitCode {
    let mut sizes = Sizes::new(ctx.quick);
    if let Some(n) = args.throughput_events {
        sizes.throughput_events = n.max(1);
    }
    if let Some(n) = args.backlog_pending {
        sizes.backlog_pending = n.max(1);
    }
    if let Some(n) = args.replay_events {
        sizes.replay_events = n.max(1);
    }
    if !args.api_accounts.is_empty() {
        sizes.api_accounts = args.api_accounts.iter().map(|n| (*n).max(1)).collect();
    }
    if let Some(n) = args.api_events {
        sizes.api_events = n.max(1);
    }
    let all = [
        Scenario::Throughput,
        Scenario::Latency,
        Scenario::Api,
        Scenario::Retries,
        Scenario::Backlog,
        Scenario::Replay,
    ];
    let chosen: Vec<Scenario> = all
        .into_iter()
        .filter(|s| args.scenarios.is_empty() || args.scenarios.contains(s))
        .collect();
    let started = Instant::now();
    let mut results: Vec<Record> = Vec::new();
    let mut throughput_dps: Option<f64> = args.latency_of_throughput;
    let mut failed = false;
    for s in chosen {
        if s == Scenario::Api {
            for record in api_runs(args, ctx, &sizes, &started).await {
                failed |= record.get("error").is_some();
                emit(args, &record);
                results.push(record);
            }
            continue;
        }
        eprintln!(
            "hallway-bench: {} ({:.1} s so far)",
            s.name(),
            started.elapsed().as_secs_f64()
        );
        let result: BenchResult<Record> = match s {
            Scenario::Throughput => scenarios::throughput(ctx, sizes.throughput_events).await,
            Scenario::Latency => {
                let dps = match throughput_dps {
                    Some(d) => Ok(d),
                    // Latency alone: measure the throughput it is half of, quietly.
                    None => scenarios::throughput(ctx, sizes.probe_events)
                        .await
                        .and_then(|r| {
                            r.number("deliveries_per_sec").ok_or_else(|| {
                                BenchError::new("the throughput probe measured nothing")
                            })
                        }),
                };
                match dps {
                    Ok(dps) => scenarios::latency(
                        ctx,
                        dps / 2.0,
                        sizes.latency_secs,
                        sizes.latency_warm_secs,
                    )
                    .await
                    .map(|mut r| {
                        r.put("throughput_deliveries_per_sec", dps);
                        r
                    }),
                    Err(e) => Err(e),
                }
            }
            Scenario::Retries => scenarios::retries(ctx, sizes.retries_events).await,
            // Run above, one record per number of accounts.
            Scenario::Api => continue,
            Scenario::Backlog => backlog::run_in_child(ctx, sizes.backlog_pending).await,
            Scenario::Replay => replay::replay(ctx, sizes.replay_events).await,
        };
        let record = match result {
            Ok(r) => r,
            Err(e) => {
                eprintln!("hallway-bench: {} failed: {e}", s.name());
                failed = true;
                failed_record(s.name(), &e)
            }
        };
        if s == Scenario::Throughput {
            throughput_dps = record.number("deliveries_per_sec");
        }
        emit(args, &record);
        results.push(record);
    }
    let mut targets = targets(&results);
    targets.put("quick", ctx.quick);
    targets.put("total_seconds", started.elapsed().as_secs_f64());
    emit(args, &targets);
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The api scenario, once per number of accounts.
async fn api_runs(args: &Args, ctx: &Ctx, sizes: &Sizes, started: &Instant) -> Vec<Record> {
    let server_bin = match args
        .server_bin
        .clone()
        .map(Ok)
        .unwrap_or_else(api::default_server_bin)
    {
        Ok(p) => p,
        Err(e) => return vec![failed_record("api", &e)],
    };
    let mut out = Vec::new();
    for &accounts in &sizes.api_accounts {
        eprintln!(
            "hallway-bench: api, {accounts} accounts ({:.1} s so far)",
            started.elapsed().as_secs_f64()
        );
        let run = api::ApiRun {
            accounts,
            events: sizes.api_events,
            half_load_secs: sizes.api_half_load_secs,
            server_bin: server_bin.clone(),
        };
        let record = match api::api(ctx, &run).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("hallway-bench: api ({accounts} accounts) failed: {e}");
                let mut r = failed_record("api", &e);
                r.put("accounts", accounts as u64);
                r
            }
        };
        out.push(record);
    }
    out
}

/// Each target of the issue, as measured in this run: `{value, target, met, at}`, where
/// `at` says the size it was measured at (smaller with `--quick`).
fn targets(results: &[Record]) -> Record {
    let find = |scenario: &str, key: &str| {
        results
            .iter()
            .find(|r| r.get("scenario").and_then(Value::as_str) == Some(scenario))
            .and_then(|r| r.number(key))
    };
    let api = |accounts: u64, key: &str| {
        results
            .iter()
            .find(|r| {
                r.get("scenario").and_then(Value::as_str) == Some("api")
                    && r.number("accounts") == Some(accounts as f64)
            })
            .and_then(|r| r.number(key))
    };
    let mut out = Record::new("targets");
    let mut check = |name: &str, value: Option<f64>, limit: f64, at_least: bool, at: String| {
        let Some(v) = value else {
            return;
        };
        let met = if at_least { v >= limit } else { v <= limit };
        let relation = if at_least { ">=" } else { "<=" };
        out.put(
            name,
            serde_json::json!({
                "value": util::round3(v),
                "target": format!("{relation} {limit}"),
                "met": met,
                "at": at,
            }),
        );
    };
    let num = |v: Option<f64>| v.map(|x| format!("{x:.0}")).unwrap_or_else(|| "?".into());
    let tp_at = format!("{} deliveries", num(find("throughput", "deliveries")));
    let lat_at = format!(
        "{} deliveries/s offered",
        num(find("latency", "offered_deliveries_per_sec"))
    );
    // 0.55: issue 17's figure for the normal path (the first issue asked for 0.5).
    check(
        "throughput_ratio",
        find("throughput", "ratio"),
        0.55,
        true,
        tp_at,
    );
    check(
        "latency_p99_ms",
        find("latency", "p99_ms"),
        25.0,
        false,
        lat_at.clone(),
    );
    check(
        "latency_publish_p99_ms",
        find("latency", "publish_p99_ms"),
        10.0,
        false,
        lat_at,
    );
    // The throughput scenario's own publish p99 is not a target: its 128 publishers run a
    // closed loop at saturation, so by Little's law a publish waits 128 / (events a second)
    // on average, ~26 ms at ~4,800 events a second; 10 ms would take 64,000 deliveries a
    // second, above the ceiling. The latency scenario measures the 10 ms at half load.
    let api_at = |accounts: u64| {
        format!(
            "{accounts} accounts, {} producers, {} deliveries",
            num(api(accounts, "producers")),
            num(api(accounts, "deliveries"))
        )
    };
    check("api_4_ratio", api(4, "ratio"), 0.5, true, api_at(4));
    check(
        "api_4_server_cpu_us_per_delivery",
        api(4, "server_cpu_us_per_delivery"),
        40.0,
        false,
        api_at(4),
    );
    check(
        "api_4_half_load_publish_p99_ms",
        api(4, "half_load_publish_p99_ms"),
        10.0,
        false,
        format!(
            "{} publishes/s offered, 4 accounts",
            num(api(4, "half_load_offered_per_sec"))
        ),
    );
    check(
        "api_1_deliveries_per_sec",
        api(1, "deliveries_per_sec"),
        20_000.0,
        true,
        api_at(1),
    );
    let backlog_at = format!(
        "{} pending retries",
        num(find("backlog", "pending_retries"))
    );
    check(
        "backlog_peak_rss_mib",
        find("backlog", "peak_rss_mib"),
        256.0,
        false,
        backlog_at.clone(),
    );
    check(
        "backlog_reopen_ms",
        find("backlog", "reopen_ms"),
        2000.0,
        false,
        backlog_at.clone(),
    );
    check(
        "backlog_retries_started_late",
        find("backlog", "retries_started_late"),
        0.0,
        false,
        backlog_at,
    );
    check(
        "replay_open_ms",
        find("replay", "open_ms"),
        5000.0,
        false,
        format!("{} events", num(find("replay", "events"))),
    );
    out
}
