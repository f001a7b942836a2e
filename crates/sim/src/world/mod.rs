//! One run: the engine under a seeded workload, with network faults, crashes and restarts,
//! checked after every step; then the network heals, three simulated hours pass, and nothing
//! may still be pending.

use crate::audit::Audit;
use crate::clock::SimClock;
use crate::core::{Core, Shared};
use crate::net::Net;
use crate::ops::Op;
use crate::random::{stream, Draw, SeededRandom};
use crate::seams::{SimStore, SimTransport};
use crate::trace::Trace;

mod workload;
use hallway_domain::{AccountId, Timestamp};
use hallway_runtime::{Config, Engine, EngineHandle, MasterKey};
use hallway_testkit::rng::Rng;
use std::sync::Arc;
use std::time::Duration;
pub use workload::settings;

/// The simulated clock's start: the spec's example day.
const EPOCH: Timestamp = Timestamp(1_768_003_200_000);

/// How long the liveness phase waits after healing the network.
const HEAL: Duration = Duration::from_secs(3 * 60 * 60);

/// What a run did, and whether it broke a rule.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// The trace's hash: equal for two runs of a seed, bit for bit.
    pub trace_hash: String,
    /// The first violation, if any, with the step it was found after.
    pub failure: Option<(usize, String)>,
    /// Simulated milliseconds the run covered.
    pub simulated_ms: u64,
    /// Counts.
    pub stats: crate::core::Stats,
    /// The trace's last lines (all of them when traced).
    pub trace: Vec<String>,
}

/// A run under way.
pub struct World {
    shared: Shared,
    config: Config,
    engine: Option<Engine>,
    handle: Option<EngineHandle>,
    rng: Rng,
    crash_rng: Rng,
    accounts: Vec<AccountId>,
    published_ids: Vec<(AccountId, String)>,
    counter: u64,
    ops: Vec<tokio::task::JoinHandle<()>>,
}

impl World {
    /// A world for `seed`; call inside the simulation's runtime.
    pub fn new(seed: u64, keep_trace: bool) -> World {
        let mut setup = stream(seed, 1);
        let (policy, mut config) = settings(&mut setup);
        let endpoints = setup.range(2, 6) as usize;
        let clock = SimClock::start(EPOCH);
        config.clock = Arc::new(clock);
        config.random = Arc::new(SeededRandom::new(stream(seed, 2)));
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        config.master_key = Some(MasterKey::from_bytes(key));
        let mut trace = Trace::new(keep_trace);
        trace.line(
            0,
            format_args!(
                "seed {seed}: {endpoints} endpoints, policy {policy:?}, max_in_flight {}, snapshot every {} events, max_batch {}",
                config.max_in_flight, config.snapshot_every_events, config.max_batch
            ),
        );
        let audit = Audit::new(policy.clone(), config.max_in_flight);
        let net = Net::new(stream(seed, 3), endpoints);
        let core = Core::new(clock, trace, policy, audit, net);
        World {
            shared: Shared::new(core),
            config,
            engine: None,
            handle: None,
            rng: stream(seed, 4),
            crash_rng: stream(seed, 5),
            accounts: Vec::new(),
            published_ids: Vec::new(),
            counter: 0,
            ops: Vec::new(),
        }
    }

    /// Starts the engine's live incarnation over the store as it is.
    async fn start(&mut self) {
        let mut config = self.config.clone();
        config.transport = Some(Arc::new(SimTransport::new(&self.shared)));
        let store = Arc::new(SimStore::new(&self.shared));
        {
            let mut core = self.shared.lock();
            let next = core.audit.seq + 1;
            core.audit.resume_seq = Some(next);
            let inc = core.incarnation;
            core.note(format_args!("start incarnation {inc}"));
        }
        match Engine::with_store(store, config).await {
            Ok(engine) => {
                self.handle = Some(engine.handle());
                self.engine = Some(engine);
            }
            Err(e) => {
                let mut core = self.shared.lock();
                if core.dead {
                    core.note(format_args!("the start died: {e}"));
                } else {
                    core.violation(format!("the engine failed to start: {e}"));
                }
            }
        }
    }

    /// Kills the live incarnation (what was not flushed is lost, but for a random prefix) and
    /// starts the next, after some downtime.
    async fn crash_and_restart(&mut self) {
        let survivors = {
            let unflushed = self.shared.lock().unflushed.len() as u64;
            match self.crash_rng.below(3) {
                0 => 0,
                1 => unflushed,
                _ => self.crash_rng.below(unflushed + 1),
            }
        };
        self.shared.lock().crash(survivors as usize);
        // Dropping the engine aborts its actor, as a crash would.
        self.engine = None;
        self.handle = None;
        let downtime = *self.crash_rng.pick(&[0, 10, 1_000, 60_000, 600_000]);
        tokio::time::sleep(Duration::from_millis(downtime)).await;
        self.start().await;
    }

    /// Shuts the engine down cleanly and starts it again.
    async fn restart(&mut self) {
        let Some(engine) = self.engine.take() else {
            return;
        };
        self.handle = None;
        self.shared.lock().note(format_args!("shutdown"));
        if let Err(e) = engine.shutdown().await {
            let mut core = self.shared.lock();
            if !core.dead {
                core.violation(format!("a clean shutdown failed: {e}"));
            }
            return;
        }
        {
            let mut core = self.shared.lock();
            core.stats.restarts += 1;
            core.incarnation += 1;
        }
        self.start().await;
    }

    fn launch(&mut self, op: Op) {
        let Some(handle) = self.handle.clone() else {
            return;
        };
        let shared = self.shared.clone();
        let (n, asked) = {
            let mut core = shared.lock();
            core.stats.ops += 1;
            let n = core.stats.ops;
            core.note(format_args!("op #{n} {op:?}"));
            if let Op::Retry { delivery, .. } = &op {
                *core
                    .audit
                    .retries_asked
                    .entry(delivery.clone())
                    .or_default() += 1;
            }
            if let Op::Recover { webhook, .. } = &op {
                *core
                    .audit
                    .recovers_asked
                    .entry(webhook.clone())
                    .or_default() += 1;
            }
            (n, core.audit.seq)
        };
        self.ops.push(tokio::spawn(async move {
            let answer = op.run(&handle).await;
            shared.lock().acknowledged(n, &op, &answer, asked);
        }));
    }

    /// The state the engine runs on must be exactly the replay of its durable log (and
    /// consistent by the domain's own invariants).
    async fn check_state(&mut self) {
        let Some(handle) = self.handle.clone() else {
            return;
        };
        let shared = self.shared.clone();
        let inspect = handle.inspect_logged(move |state, seq| {
            state.check_invariants();
            let core = shared.lock();
            if core.audit.seq != seq {
                return Some(format!(
                    "the engine's state is at record {seq}, its durable log at {}",
                    core.audit.seq
                ));
            }
            (core.audit.replica != *state).then(|| {
                format!("the engine's state differs from the replay of its log through {seq}")
            })
        });
        match tokio::time::timeout(Duration::from_secs(3_600), inspect).await {
            Ok(Ok(Some(v))) => self.shared.lock().violation(v),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                let mut core = self.shared.lock();
                if !core.dead {
                    core.violation(format!("the engine stopped: {e}"));
                }
            }
            Err(_) => self
                .shared
                .lock()
                .violation("the engine's state never settled within an hour".into()),
        }
    }

    /// Runs `steps` steps, then the liveness phase.
    pub async fn run(mut self, seed: u64, steps: usize) -> Outcome {
        self.start().await;
        let mut failed_at = None;
        for step in 0..steps {
            match self.rng.below(100) {
                0..=5 => self.network_event(),
                6 => {
                    // A crash at a random store write to come, or right now.
                    let fuse = self.rng.range(0, 12) as u32;
                    let mut core = self.shared.lock();
                    core.note(format_args!("fuse armed: {fuse} store writes"));
                    core.fuse = Some(fuse);
                }
                7 => {
                    // A kill while work is under way: publishes, sends on the wire.
                    for _ in 0..self.rng.range(0, 4) {
                        if let Some(op) = self.next_op(99) {
                            self.launch(op);
                        }
                    }
                    let ms = *self.rng.pick(&[0, 1, 5, 50, 200]);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    self.crash_and_restart().await;
                }
                8 => self.restart().await,
                9..=14 => {
                    // A burst: several operations at once, mostly publishes, decided while
                    // one another's batches commit.
                    for _ in 0..self.rng.range(2, 8) {
                        let roll = if self.rng.chance(60) {
                            99
                        } else {
                            self.rng.below(100)
                        };
                        if let Some(op) = self.next_op(roll) {
                            self.launch(op);
                        }
                    }
                }
                _ => {
                    let roll = self.rng.below(100);
                    if let Some(op) = self.next_op(roll) {
                        self.launch(op);
                    }
                }
            }
            let gap = self.gap();
            tokio::time::sleep(gap).await;
            if self.shared.lock().dead {
                self.crash_and_restart().await;
            }
            self.check_state().await;
            self.ops.retain(|t| !t.is_finished());
            if self.shared.lock().failure.is_some() {
                failed_at = Some(step);
                break;
            }
        }
        if failed_at.is_none() {
            self.liveness().await;
            if self.shared.lock().failure.is_some() {
                failed_at = Some(steps);
            }
        }
        let core = self.shared.lock();
        Outcome {
            seed,
            trace_hash: core.trace.hash(),
            failure: failed_at.zip(core.failure.clone()),
            simulated_ms: core.ms(),
            stats: core.stats,
            trace: core
                .trace
                .lines()
                .map(<[String]>::to_vec)
                .unwrap_or_else(|| core.trace.tail()),
        }
    }

    /// Heals the network, lets three hours pass, and checks nothing is pending any more.
    async fn liveness(&mut self) {
        {
            let mut core = self.shared.lock();
            core.fuse = None;
            core.net.heal();
            core.note(format_args!("the network heals; no more crashes"));
        }
        if self.shared.lock().dead || self.engine.is_none() {
            self.crash_and_restart().await;
        }
        tokio::time::sleep(HEAL).await;
        self.check_state().await;
        let Some(handle) = self.handle.clone() else {
            self.shared
                .lock()
                .violation("no engine runs at the end".into());
            return;
        };
        let left = handle
            .inspect_logged(|state, _| {
                state
                    .deliveries()
                    .map(|d| format!("{} ({:?})", d.id, d.open))
                    .take(5)
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
        let mut core = self.shared.lock();
        if !left.is_empty() {
            core.violation(format!(
                "three hours after the network healed, the engine still has deliveries to make: {left:?}"
            ));
        }
        let pending: Vec<String> = core
            .audit
            .pending()
            .iter()
            .take(5)
            .map(|(id, d)| format!("{id} of {}", d.webhook))
            .collect();
        if !pending.is_empty() {
            core.violation(format!(
                "three hours after the network healed, the log still has pending deliveries: {pending:?}"
            ));
        }
        let unverified = core.unverified();
        core.stats.unverified = unverified as u64;
        let ids = core.unverified_ids();
        core.note(format_args!(
            "end: {unverified} requests signed with a secret the host never learned {ids:?}"
        ));
    }
}
