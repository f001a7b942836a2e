//! `hallway-sim`: runs seeds of the deterministic simulation and reports, for each failing
//! seed, the one command that replays it with its trace.

use clap::Parser;
use hallway_sim::{run_seed, Options, Outcome};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Runs seeds of the deterministic simulation of the engine.
#[derive(Parser, Debug)]
#[command(name = "hallway-sim")]
struct Args {
    /// How many seeds to run, from --first.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 1)]
    first: u64,
    /// Run this one seed only (with --trace, print its whole trace).
    #[arg(long)]
    seed: Option<u64>,
    /// Print the whole trace of a --seed run.
    #[arg(long)]
    trace: bool,
    /// Workload steps per seed.
    #[arg(long, default_value_t = 300)]
    steps: usize,
    /// Run seeds until this much wall time has passed (`120s`, `2m`), instead of --seeds.
    #[arg(long, value_parser = humantime::parse_duration)]
    budget: Option<Duration>,
    /// Threads running seeds (each seed runs on one thread, deterministically).
    #[arg(long)]
    jobs: Option<usize>,
    /// Stop at the first failing seed.
    #[arg(long)]
    fail_fast: bool,
}

/// CPU seconds this process has used (user and system).
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn replay_command(seed: u64, steps: usize) -> String {
    let release = if cfg!(debug_assertions) {
        ""
    } else {
        " --release"
    };
    let steps = if steps == Options::default().steps {
        String::new()
    } else {
        format!(" --steps {steps}")
    };
    format!("cargo run{release} -p hallway-sim -- --seed {seed}{steps} --trace")
}

fn report_failure(o: &Outcome, steps: usize) {
    if let Some((step, msg)) = &o.failure {
        println!("seed {} FAILED after step {step}: {msg}", o.seed);
        println!("  replay: {}", replay_command(o.seed, steps));
    }
}

fn main() {
    let args = Args::parse();
    if let Some(seed) = args.seed {
        let o = run_seed(
            seed,
            &Options {
                steps: args.steps,
                trace: args.trace,
            },
        );
        if args.trace || o.failure.is_some() {
            for line in &o.trace {
                println!("{line}");
            }
        }
        println!(
            "seed {seed}: {} simulated hours, {:?}, trace {}",
            o.simulated_ms as f64 / 3.6e6,
            o.stats,
            o.trace_hash
        );
        report_failure(&o, args.steps);
        std::process::exit(if o.failure.is_some() { 1 } else { 0 });
    }
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let started = Instant::now();
    let cpu_before = cpu_seconds();
    let next = Arc::new(AtomicU64::new(args.first));
    let end = match args.budget {
        Some(_) => u64::MAX,
        None => args.first + args.seeds,
    };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<Outcome>();
    let options = Options {
        steps: args.steps,
        trace: false,
    };
    let workers: Vec<_> = (0..jobs)
        .map(|_| {
            let (next, stop, tx, options) =
                (next.clone(), stop.clone(), tx.clone(), options.clone());
            let budget = args.budget;
            std::thread::spawn(move || loop {
                if stop.load(Ordering::Relaxed) || budget.is_some_and(|b| started.elapsed() >= b) {
                    return;
                }
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= end {
                    return;
                }
                if tx.send(run_seed(seed, &options)).is_err() {
                    return;
                }
            })
        })
        .collect();
    drop(tx);
    let (mut ran, mut failed, mut simulated_ms) = (0u64, Vec::new(), 0u64);
    let mut totals = hallway_sim::core::Stats::default();
    for o in rx {
        ran += 1;
        simulated_ms += o.simulated_ms;
        totals.records += o.stats.records;
        totals.requests += o.stats.requests;
        totals.crashes += o.stats.crashes;
        totals.restarts += o.stats.restarts;
        totals.ops += o.stats.ops;
        totals.acked += o.stats.acked;
        totals.unverified += o.stats.unverified;
        if o.failure.is_some() {
            report_failure(&o, args.steps);
            failed.push(o.seed);
            if args.fail_fast {
                stop.store(true, Ordering::Relaxed);
            }
        }
    }
    for w in workers {
        let _ = w.join();
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    println!("totals: {totals:?}");
    println!(
        "ran {ran} seeds ({} steps each) in {wall:.1} s on {jobs} threads: {:.1} runs/s, {:.0} simulated hours per wall second, {cpu:.1} CPU seconds; {} failed {failed:?}",
        args.steps,
        ran as f64 / wall.max(1e-9),
        simulated_ms as f64 / 3.6e6 / wall.max(1e-9),
        failed.len()
    );
    std::process::exit(if failed.is_empty() { 0 } else { 1 });
}
