//! Spilling changes nothing a user can see. Two engines run the same random commands: one
//! keeps every waiting delivery in memory, the other spills all but the head of each
//! webhook's queue to a model of the store's spill index (built from its events alone) and
//! loads and settles as the runtime does, reading that index. After every step both have the
//! same pending deliveries (memory and index together), have started the same attempts, and
//! have paused and cancelled the same deliveries; memory never holds a real delivery that
//! sorts after a spilled one of its webhook; and the spilling engine's log replays into its
//! state, which a snapshot also reads back as.
//!
//! A failure prints the shrunk op list; pin it as a `regression_*` test at the bottom.

mod common;

use common::{fan, T0};
use hallway_domain::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

const COMPLETED: &str = SESSION_PROCESSING_COMPLETED;
const WEBHOOKS: [&str; 3] = ["wh_0", "wh_1", "wh_2"];
/// Waiting deliveries per webhook the spilling engine keeps in memory: twice the open limit
/// (`Policy::max_open_per_webhook`, four times the in-flight limit of 1), as the runtime
/// keeps at least.
const KEEP: usize = 8;

fn policy() -> Policy {
    Policy {
        retry_delays: vec![
            DurationMs(0),
            DurationMs::from_secs(10),
            DurationMs::from_secs(30),
        ],
        attempt_timeout: DurationMs::from_secs(10),
        attempt_deadline_grace: DurationMs::from_secs(5),
        auto_disable_after: 6,
        max_webhooks_per_account: 3,
        max_in_flight_per_webhook: 1,
        ..Policy::default()
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// Publishes this many events at once.
    Publish(u8),
    Tick(u8),
    Report {
        pick: u8,
        ok: bool,
    },
    Advance(u64),
    Disable(u8),
    Enable(u8),
    Delete(u8),
    SendTest(u8),
    Recover(u8),
    Resume,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (1u8..6).prop_map(Op::Publish),
        4 => (0u8..8).prop_map(Op::Tick),
        5 => (any::<u8>(), any::<bool>()).prop_map(|(pick, ok)| Op::Report { pick, ok }),
        3 => prop_oneof![Just(1_000u64), Just(10_000), Just(31_000)].prop_map(Op::Advance),
        1 => (0u8..3).prop_map(Op::Disable),
        1 => (0u8..3).prop_map(Op::Enable),
        1 => (0u8..3).prop_map(Op::Delete),
        1 => (0u8..3).prop_map(Op::SendTest),
        1 => (0u8..3).prop_map(Op::Recover),
        1 => Just(Op::Resume),
    ]
}

/// The store's spill index, as its events build it: (webhook, generation, due, id).
type Index = BTreeMap<(WebhookId, u32, Timestamp, DeliveryId), SpilledDelivery>;

/// What a user can see of the deliveries, folded from an engine's events.
#[derive(Debug, Default, PartialEq, Eq)]
struct Seen {
    started: BTreeSet<(DeliveryId, u32)>,
    finished: BTreeMap<DeliveryId, (u32, bool)>,
    paused: BTreeSet<DeliveryId>,
    cancelled: BTreeSet<DeliveryId>,
}

struct Engine {
    state: State,
    log: Vec<Event>,
    /// `Some` for the engine that spills.
    index: Option<Index>,
    seen: Seen,
}

impl Engine {
    fn new(spills: bool) -> Self {
        Engine {
            state: State::new(policy()),
            log: Vec::new(),
            index: spills.then(Index::new),
            seen: Seen::default(),
        }
    }

    fn run(&mut self, now: Timestamp, kind: CommandKind) -> Result<Vec<Event>, Rejection> {
        let events = decide(&self.state, Command::new(now, kind))?;
        for e in &events {
            self.state.apply(e);
            self.state.check_invariants();
            self.observe(e);
        }
        self.log.extend(events.iter().cloned());
        Ok(events)
    }

    fn observe(&mut self, e: &Event) {
        let seen = &mut self.seen;
        match e {
            Event::AttemptStarted {
                delivery_id,
                attempt,
                ..
            } => {
                seen.started.insert((delivery_id.clone(), *attempt));
            }
            Event::AttemptSucceeded {
                delivery_id,
                attempt,
                ..
            } => {
                seen.finished.insert(delivery_id.clone(), (*attempt, true));
            }
            Event::AttemptFailed {
                delivery_id,
                attempt,
                ..
            } => {
                seen.finished.insert(delivery_id.clone(), (*attempt, false));
            }
            Event::DeliveryPaused { delivery_id, .. } => {
                seen.paused.insert(delivery_id.clone());
            }
            Event::DeliveryCancelled { delivery_id, .. } => {
                seen.cancelled.insert(delivery_id.clone());
            }
            Event::DeliveriesRecovered { deliveries, .. } => {
                for d in deliveries {
                    seen.paused.remove(&d.delivery_id);
                }
            }
            _ => {}
        }
        let Some(index) = &mut self.index else {
            return;
        };
        match e {
            Event::DeliveriesSpilled {
                webhook_id,
                generation,
                deliveries,
                ..
            } => {
                for d in deliveries {
                    let key = (webhook_id.clone(), *generation, d.due, d.id.clone());
                    assert!(index.insert(key, d.clone()).is_none(), "spilled twice");
                }
            }
            Event::DeliveriesLoaded {
                webhook_id,
                generation,
                deliveries,
                ..
            } => {
                for d in deliveries {
                    let key = (webhook_id.clone(), *generation, d.due, d.id.clone());
                    assert!(index.remove(&key).is_some(), "loaded what is not spilled");
                }
            }
            Event::SpilledDeliveriesSettled {
                webhook_id,
                generation,
                paused,
                cancelled,
                kept,
                ..
            } => {
                let kept = kept.iter().map(|d| (d.due, d.id.clone()));
                for (due, id) in paused.iter().chain(cancelled).cloned().chain(kept) {
                    let key = (webhook_id.clone(), *generation, due, id);
                    assert!(index.remove(&key).is_some(), "settled what is not spilled");
                }
                self.seen
                    .paused
                    .extend(paused.iter().map(|(_, id)| id.clone()));
                self.seen
                    .cancelled
                    .extend(cancelled.iter().map(|(_, id)| id.clone()));
            }
            _ => {}
        }
    }

    /// What the runtime does after each turn: spill, then (at a quiet point) settle and load
    /// what the state asks for, reading the index.
    fn housekeep(&mut self, now: Timestamp) {
        let Some(index) = &self.index else {
            return;
        };
        let settling: Vec<(WebhookId, u32)> = self
            .state
            .settling()
            .map(|(w, g, _)| (w.clone(), g))
            .collect();
        let mut commands = Vec::new();
        for (w, g) in settling {
            // In chunks of two, as the runtime settles in chunks.
            let spilled: Vec<SpilledDelivery> =
                index.range(range(&w, g)).map(|(_, d)| d.clone()).collect();
            for chunk in spilled.chunks(2) {
                commands.push(CommandKind::SettleSpilled {
                    webhook_id: w.clone(),
                    generation: g,
                    deliveries: chunk.to_vec(),
                });
            }
        }
        for kind in commands {
            self.run(now, kind)
                .expect("a settlement read from the index");
        }
        self.run(now, CommandKind::Spill { keep: KEEP })
            .expect("spilling");
        let loads = self.state.spill_loads(KEEP);
        for (w, g, room) in loads {
            let index = self.index.as_ref().expect("spills");
            let mut read: Vec<SpilledDelivery> =
                index.range(range(&w, g)).map(|(_, d)| d.clone()).collect();
            let next = read.get(room).map(|d| (d.due, d.id.clone()));
            read.truncate(room);
            self.run(
                now,
                CommandKind::LoadSpilled {
                    webhook_id: w,
                    generation: g,
                    deliveries: read,
                    next,
                },
            )
            .expect("a load read from the index");
        }
    }

    /// Every pending delivery, in memory or spilled, as a user could tell them apart.
    fn pending(&self) -> BTreeMap<DeliveryId, String> {
        let mut out: BTreeMap<DeliveryId, String> = self
            .state
            .deliveries()
            .map(|d| {
                let when = match d.open {
                    Some(o) => format!("open {} until {:?}", o.attempt, o.deadline),
                    None => format!("due {:?}", d.due),
                };
                let shown = format!(
                    "{} {} {}/{} {when} cancelled={}",
                    d.webhook_id, d.event_id, d.attempts_made, d.max_attempts, d.cancelled
                );
                (d.id.clone(), shown)
            })
            .collect();
        for ((w, _, due, id), d) in self.index.iter().flatten() {
            let shown = format!(
                "{w} {} {}/{} due {due:?} cancelled=false",
                d.event_id, d.attempts_made, d.max_attempts
            );
            assert!(out.insert(id.clone(), shown).is_none(), "{id} twice");
        }
        out
    }

    /// Memory holds only the head of each queue: no waiting delivery sorts at or after its
    /// webhook's first spilled one, and that one is the state's floor.
    fn check_head_in_memory(&self) {
        let Some(index) = &self.index else {
            return;
        };
        assert_eq!(self.state.settling().count(), 0, "settled eagerly");
        for (w, g, _, _) in index.keys() {
            let current = self
                .state
                .spill_tier(w)
                .expect("a live webhook's")
                .generation;
            assert_eq!(*g, current, "only the current generation is left");
        }
        for w in WEBHOOKS.map(WebhookId::from) {
            let Some(tier) = self.state.spill_tier(&w) else {
                continue;
            };
            let (g, count, floor) = (tier.generation, tier.count, tier.floor.as_ref());
            let spilled: Vec<_> = index.range(range(&w, g)).map(|(k, _)| k).collect();
            assert_eq!(spilled.len() as u64, count, "{w} spilled count");
            let first = spilled.first().map(|(_, _, due, id)| (*due, id.clone()));
            assert_eq!(first.as_ref(), floor, "{w} floor");
            if let Some(first) = first {
                for d in self.state.deliveries() {
                    if d.webhook_id == w && d.open.is_none() {
                        assert!((d.due, d.id.clone()) < first, "{} after {w}'s floor", d.id);
                    }
                }
            }
        }
    }
}

fn range(
    w: &WebhookId,
    g: u32,
) -> std::ops::RangeInclusive<(WebhookId, u32, Timestamp, DeliveryId)> {
    let low = fan("").delivery(0);
    let high = FanOutId::from_bytes([0xff; 16]).delivery(u32::MAX);
    (w.clone(), g, Timestamp(0), low)..=(w.clone(), g, Timestamp(u64::MAX), high)
}

struct Sim {
    now: Timestamp,
    plain: Engine,
    spilling: Engine,
    published: u32,
    tests: u32,
}

impl Sim {
    fn new() -> Self {
        let mut sim = Sim {
            now: T0,
            plain: Engine::new(false),
            spilling: Engine::new(true),
            published: 0,
            tests: 0,
        };
        sim.both(CommandKind::CreateAccount {
            account_id: AccountId::from("acc"),
            name: "Acme".into(),
            plan: Plan::Pro,
            api_key_hash: "hash".into(),
        });
        for w in WEBHOOKS {
            sim.both(CommandKind::CreateWebhook {
                account_id: AccountId::from("acc"),
                webhook_id: WebhookId::from(w),
                secret: SealedSecret(format!("whsec_{w}")),
                config: common::config(w, "https://hooks.example.com/x"),
            });
        }
        sim
    }

    /// Runs a command on both engines, which must agree on whether it was accepted.
    fn both(&mut self, kind: CommandKind) {
        let a = self.plain.run(self.now, kind.clone()).map(|_| ());
        let b = self.spilling.run(self.now, kind).map(|_| ());
        assert_eq!(a, b, "the engines answered differently");
        self.spilling.housekeep(self.now);
    }

    fn step(&mut self, op: &Op) {
        let acc = AccountId::from("acc");
        match op {
            Op::Publish(n) => {
                for _ in 0..*n {
                    self.published += 1;
                    let id = format!("evt_{}", self.published);
                    self.both(CommandKind::Publish {
                        account_id: acc.clone(),
                        event: common::prepared(&id, COMPLETED, "prj"),
                        fresh_event_id: EventId::from("evt_unused"),
                        fan_out: fan(&format!("p{}", self.published)),
                        first_index: 0,
                        remembered: None,
                    });
                }
            }
            Op::Tick(budget) => self.both(CommandKind::Tick {
                max_starts: *budget as usize,
            }),
            Op::Report { pick, ok } => {
                let open: Vec<(DeliveryId, u32)> = self
                    .plain
                    .state
                    .in_flight()
                    .map(|(d, o)| (d.id.clone(), o.attempt))
                    .collect();
                if open.is_empty() {
                    return;
                }
                let (delivery_id, attempt) = open[*pick as usize % open.len()].clone();
                self.both(CommandKind::RecordOutcome {
                    delivery_id,
                    attempt,
                    outcome: Outcome::Response {
                        status: if *ok { 200 } else { 500 },
                        duration: DurationMs(10),
                    },
                    detail: None,
                });
            }
            Op::Advance(ms) => {
                self.now = self.now.plus(DurationMs(*ms));
                self.spilling.housekeep(self.now);
            }
            Op::Disable(w) | Op::Enable(w) => {
                self.both(CommandKind::UpdateWebhook {
                    account_id: acc,
                    webhook_id: WebhookId::from(WEBHOOKS[*w as usize]),
                    changes: WebhookChanges {
                        enabled: Some(matches!(op, Op::Enable(_))),
                        ..WebhookChanges::default()
                    },
                });
            }
            Op::Delete(w) => {
                let webhook_id = WebhookId::from(WEBHOOKS[*w as usize]);
                if self.plain.state.webhook(&webhook_id).is_none() {
                    return;
                }
                self.both(CommandKind::DeleteWebhook {
                    account_id: acc,
                    webhook_id,
                });
            }
            Op::SendTest(w) => {
                let webhook_id = WebhookId::from(WEBHOOKS[*w as usize]);
                if self.plain.state.webhook(&webhook_id).is_none() {
                    return;
                }
                self.tests += 1;
                self.both(CommandKind::SendTest {
                    account_id: acc,
                    webhook_id,
                    delivery_id: fan(&format!("t{}", self.tests)).delivery(0),
                    event_id: EventId::from(format!("evt_t{}", self.tests)),
                    event_type: hallway_domain::policy::SESSION_PROCESSING_COMPLETED.to_owned(),
                    example_fields: r#","project":{"id":"prj_example"}"#.to_owned(),
                });
            }
            Op::Recover(w) => {
                let webhook_id = WebhookId::from(WEBHOOKS[*w as usize]);
                let Some(webhook) = self.plain.state.webhook(&webhook_id) else {
                    return;
                };
                if !webhook.enabled {
                    return;
                }
                // History's paused deliveries of the webhook (the same in both engines).
                let candidates = self.paused_of(&webhook_id);
                if candidates.is_empty() {
                    return;
                }
                self.both(CommandKind::RecoverDeliveries {
                    account_id: acc,
                    webhook_id,
                    candidates,
                });
            }
            Op::Resume => self.both(CommandKind::Resume),
        }
        self.check();
    }

    /// The paused deliveries of a webhook as history would list them, from the plain
    /// engine's log.
    fn paused_of(&self, webhook: &WebhookId) -> Vec<RecoverCandidate> {
        let mut created: BTreeMap<DeliveryId, (DeliverySummary, u32)> = BTreeMap::new();
        for e in &self.plain.log {
            match e {
                Event::EventPublished {
                    account_id,
                    event_id,
                    event_type,
                    deliveries,
                    at,
                    ..
                } => {
                    for (id, w) in deliveries {
                        let summary = DeliverySummary {
                            delivery_id: id.clone(),
                            webhook_id: w.clone(),
                            account_id: account_id.clone(),
                            event_id: event_id.clone(),
                            event_type: event_type.clone(),
                            test: false,
                            created_at: *at,
                            attempts_made: 0,
                        };
                        created.insert(id.clone(), (summary, 0));
                    }
                }
                Event::AttemptSucceeded { delivery_id, .. }
                | Event::AttemptFailed { delivery_id, .. } => {
                    if let Some((s, _)) = created.get_mut(delivery_id) {
                        s.attempts_made += 1;
                    }
                }
                _ => {}
            }
        }
        self.plain
            .seen
            .paused
            .iter()
            .filter_map(|id| created.get(id))
            .filter(|(s, _)| &s.webhook_id == webhook)
            .map(|(s, _)| RecoverCandidate {
                delivery: s.clone(),
                succeeded: false,
            })
            .collect()
    }

    fn check(&self) {
        let (a, b) = (&self.plain, &self.spilling);
        assert_eq!(a.pending(), b.pending(), "pending deliveries");
        assert_eq!(a.state.pending_count(), b.state.pending_count());
        assert_eq!(a.seen, b.seen, "what users saw");
        assert_eq!(
            a.state.poll_timeout(),
            b.state.poll_timeout(),
            "the next deadline"
        );
        b.check_head_in_memory();
    }

    fn finish(&self) {
        let b = &self.spilling;
        let mut replayed = State::new(policy());
        for e in &b.log {
            replayed.apply(e);
        }
        assert_eq!(replayed, b.state, "the log replays into the state");
        let config = bincode::config::standard();
        let bytes = bincode::serde::encode_to_vec(SnapshotForm(&b.state), config).expect("encodes");
        let (read, _): (FromSnapshot, usize) =
            bincode::serde::decode_from_slice(&bytes, config).expect("decodes");
        read.0.check_invariants();
        assert_eq!(read.0, b.state, "a snapshot reads back as the state");
    }
}

fn run(ops: &[Op]) -> Sim {
    let mut sim = Sim::new();
    for op in ops {
        sim.step(op);
    }
    sim.finish();
    sim
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn spilling_changes_nothing_a_user_sees(ops in prop::collection::vec(op(), 1..60)) {
        run(&ops);
    }
}

/// A backlog deep enough to spill on every webhook, drained by ticks and failures, with a
/// disable (paused, settled), a recover and a delete (cancelled, settled) in between.
#[test]
fn a_deep_backlog_spills_loads_and_settles() {
    use Op::*;
    let mut ops = vec![Publish(8), Publish(8), Tick(7)];
    for _ in 0..6 {
        ops.extend([Report { pick: 0, ok: false }, Report { pick: 1, ok: false }]);
    }
    ops.extend([Disable(1), Advance(10_000), Tick(7), Enable(1), Recover(1)]);
    ops.extend([Tick(7), Delete(2), Advance(31_000), Tick(7)]);
    for _ in 0..10 {
        ops.extend([Report { pick: 0, ok: true }, Tick(3)]);
    }
    let sim = run(&ops);
    let spilled_at_some_point = sim
        .spilling
        .log
        .iter()
        .any(|e| matches!(e, Event::DeliveriesSpilled { .. }));
    let settled = sim
        .spilling
        .log
        .iter()
        .filter(|e| matches!(e, Event::SpilledDeliveriesSettled { .. }))
        .count();
    assert!(spilled_at_some_point, "the backlog spilled");
    assert!(
        settled >= 2,
        "a disable and a delete settled spilled deliveries"
    );
}

/// Loads must continue the queue exactly where memory ends: one that skips the first spilled
/// delivery, repeats one in memory, or claims none are left while some are, is refused and
/// changes nothing.
#[test]
fn a_load_that_does_not_continue_the_queue_is_refused() {
    use Op::*;
    let sim = run(&[Publish(8), Publish(8)]);
    let b = &sim.spilling;
    let w = WebhookId::from("wh_0");
    let tier = b.state.spill_tier(&w).expect("live");
    let (g, count) = (tier.generation, tier.count);
    assert!(count >= 3, "wh_0 spilled {count}");
    let index = b.index.as_ref().expect("spills");
    let spilled: Vec<SpilledDelivery> = index.range(range(&w, g)).map(|(_, d)| d.clone()).collect();
    let load = |deliveries: Vec<SpilledDelivery>, next: Option<&SpilledDelivery>| {
        decide(
            &b.state,
            Command::new(
                sim.now,
                CommandKind::LoadSpilled {
                    webhook_id: w.clone(),
                    generation: g,
                    deliveries,
                    next: next.map(|d| (d.due, d.id.clone())),
                },
            ),
        )
    };
    assert!(load(spilled[..1].to_vec(), Some(&spilled[1])).is_ok());
    for (refused, why) in [
        (
            load(spilled[1..2].to_vec(), Some(&spilled[2])),
            "skips the first",
        ),
        (load(spilled[..1].to_vec(), None), "claims none are left"),
        (
            load(
                vec![spilled[1].clone(), spilled[0].clone()],
                Some(&spilled[2]),
            ),
            "out of order",
        ),
        (load(Vec::new(), Some(&spilled[0])), "loads nothing"),
    ] {
        assert!(
            matches!(refused, Err(Rejection::InvalidRequest(ref m)) if m.starts_with("spill index")),
            "{why}: {refused:?}"
        );
    }
    let stale = decide(
        &b.state,
        Command::new(
            sim.now,
            CommandKind::LoadSpilled {
                webhook_id: w.clone(),
                generation: g + 1,
                deliveries: spilled[..1].to_vec(),
                next: Some((spilled[1].due, spilled[1].id.clone())),
            },
        ),
    );
    assert!(stale.is_err(), "a load of another generation is refused");
}

/// A manual retry of a delivery that history shows pending is refused even when the state
/// does not hold it (it is spilled): retrying it would make a second copy.
#[test]
fn a_retry_of_a_delivery_pending_in_history_is_refused() {
    use Op::*;
    let sim = run(&[Publish(8), Publish(8)]);
    let b = &sim.spilling;
    let (_, spilled) = b
        .index
        .as_ref()
        .expect("spills")
        .iter()
        .next()
        .expect("one");
    assert!(
        b.state.delivery(&spilled.id).is_none(),
        "spilled, not in memory"
    );
    let summary = DeliverySummary {
        delivery_id: spilled.id.clone(),
        webhook_id: WebhookId::from("wh_0"),
        account_id: spilled.account_id.clone(),
        event_id: spilled.event_id.clone(),
        event_type: spilled.event_type.clone(),
        test: false,
        created_at: spilled.created_at,
        attempts_made: spilled.attempts_made,
    };
    let retry = |pending| {
        decide(
            &b.state,
            Command::new(
                sim.now,
                CommandKind::RetryDelivery {
                    account_id: AccountId::from("acc"),
                    delivery: summary.clone(),
                    pending,
                },
            ),
        )
    };
    assert_eq!(
        retry(true),
        Err(Rejection::DeliveryNotFinished(spilled.id.clone()))
    );
}
