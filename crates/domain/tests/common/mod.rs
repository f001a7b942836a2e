//! Shared fixtures for the domain's integration tests: id and time helpers, command builders,
//! a `given(events).when(now, cmd).then_events(..)` harness and the kit's `Driver` that
//! builds histories by running commands the way the real runtime does (decide, then apply).
// Each test file uses its own part of these (`unused_imports` covers the re-exports).
#![allow(dead_code, unused_imports)]

use hallway_domain::*;
use hallway_testkit::driver::apply_all;
pub use hallway_testkit::driver::Driver;
pub use hallway_testkit::ids::fan;

/// The spec's example instant, 2026-01-10T15:30:00.000Z.
pub const T0: Timestamp = Timestamp(1_768_059_000_000);

/// `T0` plus `secs` seconds.
pub fn t(secs: u64) -> Timestamp {
    Timestamp(T0.0 + secs * 1000)
}

/// `T0` plus `ms` milliseconds.
pub fn t_ms(ms: u64) -> Timestamp {
    Timestamp(T0.0 + ms)
}

pub fn acc(s: &str) -> AccountId {
    AccountId::from(s)
}

pub fn wh(s: &str) -> WebhookId {
    WebhookId::from(s)
}

/// The delivery written `dlv_{label}{index:02x}`, as [`publish`]'s fan-outs name theirs.
pub fn dlv(s: &str) -> DeliveryId {
    hallway_testkit::ids::dlv(s)
}

pub fn evt(s: &str) -> EventId {
    EventId::from(s)
}

pub fn prj(s: &str) -> ProjectId {
    ProjectId::from(s)
}

/// The secret the fixtures give webhook `id`.
pub fn secret_of(id: &str) -> SealedSecret {
    SealedSecret(format!("whsec_{id}"))
}

/// A valid config subscribed to the product's one event type, for every project.
pub fn config(name: &str, url: &str) -> WebhookConfig {
    WebhookConfig {
        name: name.to_owned(),
        url: url.to_owned(),
        description: None,
        events: vec![SESSION_PROCESSING_COMPLETED.to_owned()],
        project_ids: Vec::new(),
        signature_scheme: SignatureScheme::Hallway,
    }
}

/// The config every `webhook_created` fixture uses.
pub fn default_config() -> WebhookConfig {
    config("Slack Notifications", "https://hooks.example.com/hallway")
}

// ---- Events used as givens ----

pub fn account_created(id: &str, plan: Plan) -> Event {
    Event::AccountCreated {
        account_id: acc(id),
        name: format!("Account {id}"),
        plan,
        api_key_hash: format!("hash_{id}"),
        at: T0,
    }
}

pub fn webhook_created(account: &str, id: &str) -> Event {
    webhook_created_with(account, id, default_config())
}

pub fn webhook_created_with(account: &str, id: &str, config: WebhookConfig) -> Event {
    Event::WebhookCreated {
        webhook_id: wh(id),
        account_id: acc(account),
        config,
        secret: secret_of(id),
        at: T0,
    }
}

// ---- Command builders ----

pub fn create_account(id: &str, plan: Plan) -> CommandKind {
    CommandKind::CreateAccount {
        account_id: acc(id),
        name: format!("Account {id}"),
        plan,
        api_key_hash: format!("hash_{id}"),
    }
}

pub fn create_webhook(account: &str, id: &str, config: WebhookConfig) -> CommandKind {
    CommandKind::CreateWebhook {
        account_id: acc(account),
        webhook_id: wh(id),
        secret: secret_of(id),
        config,
    }
}

pub fn update_webhook(account: &str, id: &str, changes: WebhookChanges) -> CommandKind {
    CommandKind::UpdateWebhook {
        account_id: acc(account),
        webhook_id: wh(id),
        changes,
    }
}

pub fn set_enabled(account: &str, id: &str, enabled: bool) -> CommandKind {
    update_webhook(
        account,
        id,
        WebhookChanges {
            enabled: Some(enabled),
            ..WebhookChanges::default()
        },
    )
}

pub fn delete_webhook(account: &str, id: &str) -> CommandKind {
    CommandKind::DeleteWebhook {
        account_id: acc(account),
        webhook_id: wh(id),
    }
}

pub fn rotate_secret(account: &str, id: &str, secret: &str) -> CommandKind {
    CommandKind::RotateSecret {
        account_id: acc(account),
        webhook_id: wh(id),
        secret: SealedSecret(secret.to_owned()),
        grace: None,
    }
}

/// A rotation whose replaced secret goes on signing for `grace`.
pub fn rotate_secret_with_grace(
    account: &str,
    id: &str,
    secret: &str,
    grace: DurationMs,
) -> CommandKind {
    CommandKind::RotateSecret {
        account_id: acc(account),
        webhook_id: wh(id),
        secret: SealedSecret(secret.to_owned()),
        grace: Some(grace),
    }
}

/// A prepared event of `event_type` in `project`, with the host's id `event_id`.
pub fn prepared(event_id: &str, event_type: &str, project: &str) -> PreparedEvent {
    let fields_json = format!(r#","project":{{"id":"{project}"}}"#);
    PreparedEvent {
        event_id: Some(evt(event_id)),
        event_type: event_type.to_owned(),
        project_id: prj(project),
        digest: BodyDigest::of(event_type, &fields_json),
        fields_json,
    }
}

/// Publishes `session.processing.completed` in `project` as the fan-out labelled `seed`; the
/// deliveries are `dlv_{seed}00`, `dlv_{seed}01`, ... (see [`dlv`]) in the order of the
/// account's webhooks.
pub fn publish(account: &str, event_id: &str, project: &str, seed: &str) -> CommandKind {
    publish_typed(
        account,
        event_id,
        SESSION_PROCESSING_COMPLETED,
        project,
        seed,
    )
}

pub fn publish_typed(
    account: &str,
    event_id: &str,
    event_type: &str,
    project: &str,
    seed: &str,
) -> CommandKind {
    CommandKind::Publish {
        account_id: acc(account),
        event: prepared(event_id, event_type, project),
        fresh_event_id: evt("evt_fresh_unused"),
        fan_out: hallway_testkit::ids::fan(seed),
        first_index: 0,
        remembered: None,
    }
}

/// A test send of the default catalog's example (the spec's type).
pub fn send_test(account: &str, webhook: &str, delivery: &str, event_id: &str) -> CommandKind {
    let catalog = Catalog::default();
    let example = &catalog.types()[0];
    CommandKind::SendTest {
        account_id: acc(account),
        webhook_id: wh(webhook),
        delivery_id: dlv(delivery),
        event_id: evt(event_id),
        event_type: example.name.clone(),
        example_fields: example.example_fields().to_owned(),
    }
}

pub fn tick(max_starts: usize) -> CommandKind {
    CommandKind::Tick { max_starts }
}

/// A response with `status` after `duration_ms`.
pub fn response(delivery: &str, attempt: u32, status: u16, duration_ms: u64) -> CommandKind {
    CommandKind::RecordOutcome {
        delivery_id: dlv(delivery),
        attempt,
        outcome: Outcome::Response {
            status,
            duration: DurationMs(duration_ms),
        },
        detail: None,
    }
}

/// A transport failure after `duration_ms`.
pub fn failure(delivery: &str, attempt: u32, error: AttemptError, duration_ms: u64) -> CommandKind {
    CommandKind::RecordOutcome {
        delivery_id: dlv(delivery),
        attempt,
        outcome: Outcome::Error {
            error,
            duration: DurationMs(duration_ms),
        },
        detail: None,
    }
}

// ---- given / when / then ----

/// A state built from past facts.
pub struct Given {
    state: State,
}

/// The state built by applying `events` under the default policy.
pub fn given(events: impl IntoIterator<Item = Event>) -> Given {
    given_with(Policy::default(), events)
}

/// A state built by earlier steps, to decide more commands against.
pub fn given_state(state: State) -> Given {
    Given { state }
}

/// The state built by applying `events` under `policy`.
pub fn given_with(policy: Policy, events: impl IntoIterator<Item = Event>) -> Given {
    let mut state = State::new(policy);
    for e in events {
        state.apply(&e);
        state.check_invariants();
    }
    Given { state }
}

impl Given {
    /// Decides `kind` at `now`.
    pub fn when(&self, now: Timestamp, kind: CommandKind) -> Then {
        Then {
            state: self.state.clone(),
            result: decide(&self.state, Command::new(now, kind)),
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }
}

/// What a decision answered, with the state it was decided against.
pub struct Then {
    state: State,
    result: Result<Vec<Event>, Rejection>,
}

impl Then {
    /// Asserts the decision produced exactly `expected`; returns the state after applying them.
    #[track_caller]
    pub fn then_events(self, expected: Vec<Event>) -> State {
        match self.result {
            Ok(events) => {
                assert_eq!(events, expected, "decided events differ");
                apply_all(self.state, &events)
            }
            Err(r) => panic!("expected events {expected:#?}, got rejection {r:?}"),
        }
    }

    /// Asserts the decision produced no events.
    #[track_caller]
    pub fn then_no_events(self) -> State {
        self.then_events(Vec::new())
    }

    /// Asserts the command was refused with exactly `expected`.
    #[track_caller]
    pub fn then_rejects(self, expected: Rejection) {
        match self.result {
            Ok(events) => panic!("expected rejection {expected:?}, got events {events:#?}"),
            Err(r) => assert_eq!(r, expected),
        }
    }

    /// The events, for tests that look at parts of them; panics on a rejection.
    #[track_caller]
    pub fn events(self) -> (Vec<Event>, State) {
        match self.result {
            Ok(events) => {
                let after = apply_all(self.state, &events);
                (events, after)
            }
            Err(r) => panic!("expected events, got rejection {r:?}"),
        }
    }

    /// The raw result.
    pub fn result(self) -> Result<Vec<Event>, Rejection> {
        self.result
    }
}

// ---- a tiny runtime, to build histories ----

/// The kit's driver, with the log as the givens of a test.
pub trait DriverGiven {
    /// The log so far as the givens of a test (rebuilt from the log, not cloned).
    fn given(&self) -> Given;
}

impl DriverGiven for Driver {
    fn given(&self) -> Given {
        let g = given_with(self.state.policy().clone(), self.log.iter().cloned());
        assert_eq!(
            g.state, self.state,
            "replaying the fixture log changed the state"
        );
        g
    }
}

/// A Pro account `acc_1` with one webhook `wh_1` (default config), created at `T0`.
pub fn pro_with_webhook(policy: Policy) -> Driver {
    let mut d = Driver::new(policy);
    d.run(T0, create_account("acc_1", Plan::Pro));
    d.run(T0, create_webhook("acc_1", "wh_1", default_config()));
    d
}

/// The deadline of an attempt started at `at` under `policy`.
pub fn deadline(policy: &Policy, at: Timestamp) -> Timestamp {
    at.plus(policy.attempt_timeout)
        .plus(policy.attempt_deadline_grace)
}

/// The `AttemptStarted` an attempt started at `at` produces.
pub fn started(policy: &Policy, delivery: &str, attempt: u32, at: Timestamp) -> Event {
    Event::AttemptStarted {
        delivery_id: dlv(delivery),
        attempt,
        deadline: deadline(policy, at),
        at,
    }
}

pub fn cancelled(delivery: &str, at: Timestamp) -> Event {
    Event::DeliveryCancelled {
        delivery_id: dlv(delivery),
        at,
    }
}

pub fn paused(delivery: &str, at: Timestamp) -> Event {
    Event::DeliveryPaused {
        delivery_id: dlv(delivery),
        at,
    }
}

/// An alert about `webhook` of account `acc_1`.
pub fn alert(
    kind: AlertKind,
    webhook: &str,
    reason: Option<DisabledReason>,
    last_error: Option<AttemptError>,
    consecutive_failures: u32,
    at: Timestamp,
) -> Event {
    Event::AlertRaised {
        alert: Alert {
            kind,
            webhook_id: wh(webhook),
            account_id: acc("acc_1"),
            reason,
            last_error,
            consecutive_failures,
        },
        at,
    }
}
