//! Shared test helpers: one event of every kind, and a small driver that produces realistic
//! batches by running the real domain (decide, then apply), as the runtime does.
#![allow(dead_code)]

use hallway_domain::envelope::prepare;
use hallway_domain::*;
use hallway_testkit::ids::dlv;
// Some test binaries replay histories.
#[allow(unused_imports)]
pub use hallway_testkit::driver::replay;
use hallway_testkit::driver::step;
use hallway_testkit::rng::Rng;

/// A timestamp near the spec's example date.
pub const T0: Timestamp = Timestamp(1_768_059_000_000);

/// One event of every kind, with every optional field set in at least one of them.
pub fn every_event_kind() -> Vec<Event> {
    let acc = AccountId::from("acc_1");
    let wh = WebhookId::from("wh_1");
    let one = dlv("dlv_1");
    let config = WebhookConfig {
        name: "CRM sync".into(),
        url: "https://example.com/hooks".into(),
        description: Some("notes \u{1F600}".into()),
        events: vec![SESSION_PROCESSING_COMPLETED.into()],
        project_ids: vec![ProjectId::from("prj_1")],
        signature_scheme: SignatureScheme::Standard,
    };
    let at = T0;
    vec![
        Event::AccountCreated {
            account_id: acc.clone(),
            name: "Acme".into(),
            plan: Plan::Pro,
            api_key_hash: "h".into(),
            at,
        },
        Event::AccountUpdated {
            account_id: acc.clone(),
            name: "Acme 2".into(),
            plan: Plan::Free,
            at,
        },
        Event::WebhookCreated {
            webhook_id: wh.clone(),
            account_id: acc.clone(),
            config: config.clone(),
            secret: SealedSecret("whsec_abc".into()),
            at,
        },
        Event::WebhookUpdated {
            webhook_id: wh.clone(),
            config: WebhookConfig {
                description: None,
                ..config
            },
            at,
        },
        Event::WebhookEnabled {
            webhook_id: wh.clone(),
            at,
        },
        Event::WebhookDisabled {
            webhook_id: wh.clone(),
            reason: DisabledReason::ConsecutiveFailures,
            at,
        },
        Event::WebhookDeleted {
            webhook_id: wh.clone(),
            at,
        },
        Event::SecretRotated {
            webhook_id: wh.clone(),
            secret: SealedSecret("whsec_new".into()),
            previous: Some(PreviousSecret {
                secret: SealedSecret("whsec_abc".into()),
                until: T0.plus(DurationMs::from_hours(24)),
            }),
            at,
        },
        Event::EventPublished {
            account_id: acc.clone(),
            event_id: EventId::from("evt_1"),
            event_type: SESSION_PROCESSING_COMPLETED.into(),
            project_id: ProjectId::from("prj_1"),
            digest: BodyDigest::default(),
            body: "{\"id\":\"evt_1\"}".into(),
            deliveries: vec![(one.clone(), wh.clone())],
            first_due: at,
            at,
        },
        Event::TestDeliveryCreated {
            delivery_id: dlv("dlv_test"),
            webhook_id: wh.clone(),
            account_id: acc.clone(),
            event_id: EventId::from("evt_test"),
            event_type: SESSION_PROCESSING_COMPLETED.into(),
            body: "{\"_test\":true}".into(),
            at,
        },
        Event::AttemptStarted {
            delivery_id: one.clone(),
            attempt: 1,
            deadline: Timestamp(at.0 + 60_000),
            at,
        },
        Event::AttemptFailed {
            delivery_id: one.clone(),
            attempt: 1,
            status_code: Some(503),
            error: AttemptError::HttpStatus,
            duration: DurationMs(120),
            started_at: at,
            next_due: Some(Timestamp(at.0 + 60_000)),
            at,
            detail: None,
        },
        Event::AttemptAbandoned {
            delivery_id: one.clone(),
            attempt: 2,
            at,
        },
        Event::AttemptSucceeded {
            delivery_id: one.clone(),
            attempt: 2,
            status_code: 204,
            duration: DurationMs(35),
            started_at: at,
            at,
            detail: None,
        },
        Event::DeliveryCancelled {
            delivery_id: dlv("dlv_test"),
            at,
        },
        Event::DeliveryRetried {
            delivery: DeliverySummary {
                delivery_id: one,
                webhook_id: wh,
                account_id: acc,
                event_id: EventId::from("evt_1"),
                event_type: SESSION_PROCESSING_COMPLETED.into(),
                test: false,
                created_at: at,
                attempts_made: 2,
            },
            at,
        },
        Event::IdempotencyKeysExpired { before: at, at },
    ]
}

/// A realistic host event of about `size` bytes.
pub fn host_event_json(id: &str, project: &str, size: usize) -> String {
    let filler = "x".repeat(size.saturating_sub(200));
    format!(
        "{{\"id\":\"{id}\",\"type\":\"{SESSION_PROCESSING_COMPLETED}\",\"project\":{{\"id\":\"{project}\",\"name\":\"Customer Discovery\"}},\"session\":{{\"id\":\"ses_{id}\",\"duration_seconds\":342}},\"transcript\":{{\"text\":\"{filler}\"}}}}"
    )
}

/// Drives the real domain to produce batches of events, as the runtime would.
pub struct Sim {
    /// The state every produced event has been applied to.
    pub state: State,
    /// The simulated clock.
    pub now: Timestamp,
    /// The account every publish is for.
    pub account: AccountId,
    counter: u64,
    rng: Rng,
}

impl Sim {
    /// A Pro account with `webhooks` webhooks; returns the sim and the setup batch.
    pub fn new(policy: Policy, webhooks: usize, seed: u64) -> (Sim, Vec<Event>) {
        let mut sim = Sim {
            state: State::new(policy),
            now: T0,
            account: AccountId::from("acc_1"),
            counter: 0,
            rng: Rng::new(seed),
        };
        let mut events = sim.run(CommandKind::CreateAccount {
            account_id: sim.account.clone(),
            name: "Acme Research".into(),
            plan: Plan::Pro,
            api_key_hash: "hash".into(),
        });
        for i in 0..webhooks {
            events.extend(sim.run(CommandKind::CreateWebhook {
                account_id: sim.account.clone(),
                webhook_id: WebhookId::from(format!("wh_{i}")),
                secret: SealedSecret(format!("whsec_{i}")),
                config: WebhookConfig {
                    name: format!("hook {i}"),
                    url: format!("https://hooks{i}.example.com/in"),
                    description: None,
                    events: vec![SESSION_PROCESSING_COMPLETED.into()],
                    project_ids: Vec::new(),
                    signature_scheme: SignatureScheme::Hallway,
                },
            }));
        }
        (sim, events)
    }

    /// A pseudo-random number, deterministic per seed.
    pub fn next_random(&mut self) -> u64 {
        self.rng.next()
    }

    /// Decides and applies one command, returning its events (a rejection panics: tests
    /// only send valid commands).
    pub fn run(&mut self, kind: CommandKind) -> Vec<Event> {
        step(&mut self.state, self.now, kind.clone())
            .unwrap_or_else(|r| panic!("rejected {kind:?}: {r:?}"))
    }

    /// Publishes one event with a body of about `size` bytes, as its own fan-out.
    pub fn publish(&mut self, size: usize) -> Vec<Event> {
        self.counter += 1;
        let id = format!("evt_{:08}", self.counter);
        let raw = host_event_json(&id, "prj_1", size);
        let prepared = prepare(raw.as_bytes(), self.state.policy()).expect("valid host event");
        self.run(CommandKind::Publish {
            account_id: self.account.clone(),
            event: prepared,
            fresh_event_id: EventId::from(format!("evt_fresh_{}", self.counter)),
            fan_out: fan_out(self.now, self.counter),
            first_index: 0,
            remembered: None,
        })
    }

    /// Starts every due attempt.
    pub fn tick(&mut self) -> Vec<Event> {
        self.run(CommandKind::Tick {
            max_starts: usize::MAX,
        })
    }

    /// Reports an outcome for every open attempt: a failure with probability
    /// `fail_percent`%, else a 200.
    pub fn complete_open(&mut self, fail_percent: u64) -> Vec<Event> {
        let open: Vec<(DeliveryId, u32)> = self
            .state
            .in_flight()
            .map(|(d, a)| (d.id.clone(), a.attempt))
            .collect();
        let mut events = Vec::new();
        for (delivery_id, attempt) in open {
            let fail = self.next_random() % 100 < fail_percent;
            let outcome = if fail {
                Outcome::Response {
                    status: 500,
                    duration: DurationMs(80),
                }
            } else {
                Outcome::Response {
                    status: 200,
                    duration: DurationMs(40),
                }
            };
            events.extend(self.run(CommandKind::RecordOutcome {
                delivery_id,
                attempt,
                outcome,
                detail: None,
            }));
        }
        events
    }

    /// One runtime-like batch: `publishes` publishes, then a tick that starts what is due,
    /// after the outcomes of the previous batch's attempts.
    pub fn batch(&mut self, publishes: usize, size: usize, fail_percent: u64) -> Vec<Event> {
        let mut events = self.complete_open(fail_percent);
        for _ in 0..publishes {
            events.extend(self.publish(size));
        }
        events.extend(self.tick());
        events
    }

    /// Moves the clock forward.
    pub fn advance(&mut self, ms: u64) {
        self.now = Timestamp(self.now.0 + ms);
    }
}

/// Every page of a webhook's history, `size` at a time, following each `next_cursor`.
pub fn walk_pages(
    store: &hallway_store::SledStore,
    webhook: &WebhookId,
    size: usize,
) -> Vec<hallway_store::DeliveryRecord> {
    use hallway_store::ReadModel;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .deliveries(webhook, size, cursor.as_deref())
            .expect("pages");
        seen.extend(page.data);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return seen,
        }
    }
}

/// A fan-out made at `at`, numbered `n` where production ids have random bits.
pub fn fan_out(at: Timestamp, n: u64) -> FanOutId {
    let mut random = [0u8; 10];
    random[2..].copy_from_slice(&n.to_be_bytes());
    FanOutId::new(at, random)
}

/// A time `offset_ms` after [`T0`].
pub fn t(offset_ms: u64) -> Timestamp {
    Timestamp(T0.0 + offset_ms)
}

/// The account the hand-made events below belong to.
pub fn acc() -> AccountId {
    AccountId::from("acc_1")
}

/// A publish at `at` of `event` to (delivery, webhook) pairs.
pub fn published(event: &str, at: u64, deliveries: &[(&str, &str)]) -> Event {
    Event::EventPublished {
        account_id: acc(),
        event_id: EventId::from(event),
        event_type: SESSION_PROCESSING_COMPLETED.into(),
        project_id: ProjectId::from("prj_1"),
        digest: BodyDigest::default(),
        body: format!("{{\"id\":\"{event}\"}}"),
        deliveries: deliveries
            .iter()
            .map(|(d, w)| (dlv(d), WebhookId::from(*w)))
            .collect(),
        first_due: t(at),
        at: t(at),
    }
}

/// Attempt `attempt` of `d` starting at `at`.
pub fn started(d: &str, attempt: u32, at: u64) -> Event {
    Event::AttemptStarted {
        delivery_id: dlv(d),
        attempt,
        deadline: t(at + 60_000),
        at: t(at),
    }
}

/// Attempt `attempt` of `d`, started at `at`, succeeding 25 ms later.
pub fn succeeded(d: &str, attempt: u32, at: u64) -> Event {
    Event::AttemptSucceeded {
        delivery_id: dlv(d),
        attempt,
        status_code: 200,
        duration: DurationMs(25),
        started_at: t(at),
        at: t(at + 25),
        detail: None,
    }
}

/// Attempt `attempt` of `d`, started at `at`, failing 30 ms later (with a 500).
pub fn failed(d: &str, attempt: u32, at: u64, next_due: Option<u64>) -> Event {
    Event::AttemptFailed {
        delivery_id: dlv(d),
        attempt,
        status_code: Some(500),
        error: AttemptError::HttpStatus,
        duration: DurationMs(30),
        started_at: t(at),
        next_due: next_due.map(t),
        at: t(at + 30),
        detail: None,
    }
}
