//! The auditor catches what it is for, on hand-written logs (the mutants in
//! `crates/sim/mutants/` show the same through the real engine).

use super::*;
use hallway_domain::{
    AttemptError, BodyDigest, SealedSecret, SignatureScheme, SESSION_PROCESSING_COMPLETED,
};

const T: Timestamp = Timestamp(1_768_003_200_000);

fn policy() -> Policy {
    Policy {
        auto_disable_after: 2,
        ..Policy::default()
    }
}

fn acc() -> AccountId {
    AccountId::from("acc_1")
}

fn wh() -> WebhookId {
    WebhookId::from("wh_1")
}

fn dlv() -> DeliveryId {
    hallway_testkit::ids::dlv("dlv_1")
}

fn at(ms: u64) -> Timestamp {
    Timestamp(T.0 + ms)
}

/// An account with one webhook, and one publish to it: records 1 and 2.
fn setup(audit: &mut Audit) {
    let config = WebhookConfig {
        name: "hook".into(),
        url: "https://ep0.example/w/1".into(),
        description: None,
        events: vec![SESSION_PROCESSING_COMPLETED.into()],
        project_ids: Vec::new(),
        signature_scheme: SignatureScheme::Hallway,
    };
    let first = [
        Event::AccountCreated {
            account_id: acc(),
            name: "Acme".into(),
            plan: Plan::Pro,
            api_key_hash: "h".into(),
            at: T,
        },
        Event::WebhookCreated {
            webhook_id: wh(),
            account_id: acc(),
            config,
            secret: SealedSecret("s".into()),
            at: T,
        },
    ];
    assert_eq!(audit.apply_record(1, &first, &[]), Violations::new());
    let publish = [
        Event::EventPublished {
            account_id: acc(),
            event_id: EventId::from("evt_1"),
            event_type: SESSION_PROCESSING_COMPLETED.into(),
            project_id: "prj_a".into(),
            digest: BodyDigest([0; 16]),
            body: "{}".into(),
            deliveries: vec![(dlv(), wh())],
            first_due: T,
            at: T,
        },
        started(1, 0),
    ];
    assert_eq!(audit.apply_record(2, &publish, &[]), Violations::new());
}

fn started(attempt: u32, ms: u64) -> Event {
    Event::AttemptStarted {
        delivery_id: dlv(),
        attempt,
        deadline: at(ms + 60_000),
        at: at(ms),
    }
}

/// An attempt that could not be sent (no request), failing at once.
fn unsent_failure(attempt: u32, ms: u64, next_due: Option<Timestamp>) -> Event {
    Event::AttemptFailed {
        delivery_id: dlv(),
        attempt,
        status_code: None,
        error: AttemptError::Connect,
        duration: DurationMs(0),
        started_at: at(ms),
        next_due,
        detail: None,
        at: at(ms),
    }
}

#[test]
fn a_webhook_left_enabled_at_the_limit_is_caught() {
    let mut audit = Audit::new(policy(), 8);
    setup(&mut audit);
    let first = [unsent_failure(1, 0, Some(at(60_000)))];
    assert_eq!(audit.apply_record(3, &first, &[]), Violations::new());
    let second = [
        started(2, 60_000),
        unsent_failure(2, 60_000, Some(at(360_000))),
    ];
    let found = audit.apply_record(4, &second, &[]);
    assert!(
        found.iter().any(|v| v.contains("still enabled after 2")),
        "{found:?}"
    );
}

#[test]
fn a_retry_due_counted_from_the_publish_is_caught() {
    let mut audit = Audit::new(policy(), 8);
    setup(&mut audit);
    // The failure comes 10 s after the publish; the next attempt is due a minute after the
    // failure, not a minute after the publish.
    let failed = [Event::AttemptFailed {
        delivery_id: dlv(),
        attempt: 1,
        status_code: Some(500),
        error: AttemptError::HttpStatus,
        duration: DurationMs(10_000),
        started_at: T,
        next_due: Some(at(60_000)),
        detail: None,
        at: at(10_000),
    }];
    let request = Request {
        at_ms: 0,
        webhook: wh(),
        event: EventId::from("evt_1"),
        test: false,
        result: Some(Outcome::Response {
            status: 500,
            duration: DurationMs(10_000),
        }),
    };
    assert!(audit.carry(&wh(), &EventId::from("evt_1"), 0));
    let found = audit.apply_record(3, &failed, &[request]);
    assert!(found.iter().any(|v| v.contains("next due")), "{found:?}");
}

#[test]
fn a_request_needs_its_own_durable_started_attempt() {
    let mut audit = Audit::new(policy(), 8);
    let evt = EventId::from("evt_1");
    assert!(!audit.carry(&wh(), &evt, 0), "nothing started yet");
    setup(&mut audit);
    assert!(audit.carry(&wh(), &evt, 0));
    assert!(
        !audit.carry(&wh(), &evt, 1),
        "one request per started attempt"
    );
}

#[test]
fn a_fan_out_that_skips_a_matching_webhook_is_caught() {
    let mut audit = Audit::new(policy(), 8);
    setup(&mut audit);
    let publish = [Event::EventPublished {
        account_id: acc(),
        event_id: EventId::from("evt_2"),
        event_type: SESSION_PROCESSING_COMPLETED.into(),
        project_id: "prj_a".into(),
        digest: BodyDigest([0; 16]),
        body: "{}".into(),
        deliveries: Vec::new(),
        first_due: T,
        at: T,
    }];
    let found = audit.apply_record(3, &publish, &[]);
    assert!(found.iter().any(|v| v.contains("fanned out")), "{found:?}");
}
