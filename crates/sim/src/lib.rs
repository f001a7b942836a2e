//! A deterministic simulation of the whole engine (issue 18): the real runtime and domain on
//! one thread, under simulated time (tokio's paused clock), a simulated network in place of
//! HTTPS (latency, timeouts, resets, every status class, endpoints that go down and come
//! back) and an in-memory store that crashes between any two writes. One seed drives the
//! workload, the network, the engine's ids and the crashes, so a failing seed replays bit for
//! bit.
//!
//! A run: the engine starts over an empty store; each step issues an operation (accounts,
//! webhooks, publishes with repeated ids, test sends, retries, recovers), changes the
//! network, arms a crash at a store write to come, kills or restarts the engine; then time
//! passes and every check runs (see [`audit`], [`ops`] and [`world`]). At the end the
//! network heals and three simulated hours pass: nothing may still be pending.
//!
//! ```no_run
//! let outcome = hallway_sim::run_seed(7, &hallway_sim::Options::default());
//! assert!(outcome.failure.is_none(), "{:?}", outcome.failure);
//! ```
#![deny(missing_docs)]

pub mod audit;
pub mod clock;
pub mod core;
pub mod net;
pub mod ops;
pub mod random;
pub mod seams;
mod signing;
pub mod trace;
pub mod world;

pub use world::Outcome;

use std::cell::RefCell;

/// How a run goes.
#[derive(Clone, Debug)]
pub struct Options {
    /// Workload steps before the liveness phase.
    pub steps: usize,
    /// Keep the whole trace's text (else only its hash and last lines).
    pub trace: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            steps: 300,
            trace: false,
        }
    }
}

thread_local! {
    /// The message of the last panic on this thread while a run was under way.
    static PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
    static IN_RUN: RefCell<bool> = const { RefCell::new(false) };
}

/// Keeps panics inside a run (the engine's tasks, whose panics tokio catches) as the run's
/// failure instead of printing them; other panics print as usual.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_RUN.with(|r| *r.borrow()) {
                let at = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                let msg = info
                    .payload()
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                PANIC.with(|p| *p.borrow_mut() = Some(format!("panic{at}: {msg}")));
            } else {
                default(info);
            }
        }));
    });
}

/// Runs one seed to the end (or its first violation).
pub fn run_seed(seed: u64, options: &Options) -> Outcome {
    install_panic_hook();
    IN_RUN.with(|r| *r.borrow_mut() = true);
    PANIC.with(|p| *p.borrow_mut() = None);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime builds");
    let steps = options.steps;
    let keep = options.trace;
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(async move { world::World::new(seed, keep).run(seed, steps).await })
    }));
    drop(runtime);
    IN_RUN.with(|r| *r.borrow_mut() = false);
    let panic = PANIC.with(|p| p.borrow_mut().take());
    match run {
        Ok(mut outcome) => {
            if let (Some(p), Some((_, msg))) = (panic, outcome.failure.as_mut()) {
                msg.push_str(&format!(" ({p})"));
            }
            outcome
        }
        Err(_) => Outcome {
            seed,
            trace_hash: String::new(),
            failure: Some((0, panic.unwrap_or_else(|| "the run panicked".into()))),
            simulated_ms: 0,
            stats: Default::default(),
            trace: Vec::new(),
        },
    }
}
