//! One test per rule of the domain, each written as
//! `given(past events).when(now, command).then_events(..)` or `.then_rejects(..)`.

mod common;

use common::*;
use hallway_domain::*;

const COMPLETED: &str = SESSION_PROCESSING_COMPLETED;
const FAILED_TYPE: &str = "session.processing.failed";

/// A policy that knows a second event type, so fan-out by type can be tested.
fn two_types() -> Policy {
    Policy {
        event_types: vec![COMPLETED.to_owned(), FAILED_TYPE.to_owned()],
        ..Policy::default()
    }
}

fn deliveries_of(events: &[Event]) -> Vec<(DeliveryId, WebhookId)> {
    match events {
        [Event::EventPublished { deliveries, .. }] => deliveries.clone(),
        other => panic!("expected one EventPublished, got {other:#?}"),
    }
}

fn pair(d: &str, w: &str) -> (DeliveryId, WebhookId) {
    (dlv(d), wh(w))
}

fn summary(
    driver: &Driver,
    delivery: &str,
    webhook: &str,
    event_id: &str,
    attempts_made: u32,
) -> DeliverySummary {
    assert!(
        driver.state.delivery(&dlv(delivery)).is_none(),
        "fixture: {delivery} is not finished"
    );
    DeliverySummary {
        delivery_id: dlv(delivery),
        webhook_id: wh(webhook),
        account_id: acc("acc_1"),
        event_id: evt(event_id),
        event_type: COMPLETED.to_owned(),
        test: false,
        created_at: T0,
        attempts_made,
    }
}

fn counter(state: &State, webhook: &str) -> u32 {
    state
        .webhook(&wh(webhook))
        .map(|w| w.consecutive_failures)
        .unwrap_or_else(|| panic!("webhook {webhook} is gone"))
}

// ---------------------------------------------------------------- accounts and plans

#[test]
fn free_plan_cannot_create_webhooks() {
    given([account_created("acc_f", Plan::Free)])
        .when(t(1), create_webhook("acc_f", "wh_1", default_config()))
        .then_rejects(Rejection::PlanRequired(acc("acc_f")));
}

#[test]
fn upgrading_to_pro_allows_webhooks() {
    let upgraded = Event::AccountUpdated {
        account_id: acc("acc_f"),
        name: "Account acc_f".into(),
        plan: Plan::Pro,
        at: t(1),
    };
    given([account_created("acc_f", Plan::Free)])
        .when(
            t(1),
            CommandKind::UpdateAccount {
                account_id: acc("acc_f"),
                name: None,
                plan: Some(Plan::Pro),
            },
        )
        .then_events(vec![upgraded.clone()]);
    given([account_created("acc_f", Plan::Free), upgraded])
        .when(t(2), create_webhook("acc_f", "wh_1", default_config()))
        .then_events(vec![Event::WebhookCreated {
            webhook_id: wh("wh_1"),
            account_id: acc("acc_f"),
            config: default_config(),
            secret: secret_of("wh_1"),
            at: t(2),
        }]);
}

#[test]
fn pro_plan_creates_an_enabled_webhook_with_a_normalised_config() {
    let mut asked = config(
        "  Slack Notifications  ",
        "https://hooks.example.com/hallway",
    );
    asked.events = vec![COMPLETED.into(), COMPLETED.into()];
    asked.project_ids = vec![prj("prj_1"), prj("prj_2"), prj("prj_1")];
    let mut stored = default_config();
    stored.project_ids = vec![prj("prj_1"), prj("prj_2")];
    let state = given([account_created("acc_1", Plan::Pro)])
        .when(t(1), create_webhook("acc_1", "wh_1", asked))
        .then_events(vec![Event::WebhookCreated {
            webhook_id: wh("wh_1"),
            account_id: acc("acc_1"),
            config: stored,
            secret: secret_of("wh_1"),
            at: t(1),
        }]);
    let w = state.webhook(&wh("wh_1")).expect("created");
    assert!(w.enabled);
    assert_eq!(w.disabled_reason, None);
    assert_eq!(w.consecutive_failures, 0);
    assert_eq!(w.secret, secret_of("wh_1"));
}

#[test]
fn creating_an_account_twice_is_refused() {
    given([account_created("acc_1", Plan::Pro)])
        .when(t(1), create_account("acc_1", Plan::Free))
        .then_rejects(Rejection::AccountExists(acc("acc_1")));
}

#[test]
fn webhooks_of_an_unknown_account_are_refused() {
    given([])
        .when(t(1), create_webhook("acc_x", "wh_1", default_config()))
        .then_rejects(Rejection::AccountNotFound(acc("acc_x")));
}

// ---------------------------------------------------------------- webhook limit

#[test]
fn an_account_may_have_at_most_five_webhooks() {
    let mut past = vec![account_created("acc_1", Plan::Pro)];
    past.extend((1..=5).map(|i| webhook_created("acc_1", &format!("wh_{i}"))));
    given(past)
        .when(t(1), create_webhook("acc_1", "wh_6", default_config()))
        .then_rejects(Rejection::LimitReached {
            account: acc("acc_1"),
            max: 5,
        });
}

#[test]
fn the_webhook_limit_is_per_account() {
    let mut past = vec![
        account_created("acc_1", Plan::Pro),
        account_created("acc_2", Plan::Pro),
    ];
    past.extend((1..=5).map(|i| webhook_created("acc_1", &format!("wh_{i}"))));
    let (events, _) = given(past)
        .when(t(1), create_webhook("acc_2", "wh_6", default_config()))
        .events();
    assert!(matches!(events.as_slice(), [Event::WebhookCreated { .. }]));
}

#[test]
fn deleted_webhooks_do_not_count_towards_the_limit() {
    let mut past = vec![account_created("acc_1", Plan::Pro)];
    past.extend((1..=5).map(|i| webhook_created("acc_1", &format!("wh_{i}"))));
    past.push(Event::WebhookDeleted {
        webhook_id: wh("wh_3"),
        at: t(1),
    });
    given(past)
        .when(t(2), create_webhook("acc_1", "wh_6", default_config()))
        .then_events(vec![Event::WebhookCreated {
            webhook_id: wh("wh_6"),
            account_id: acc("acc_1"),
            config: default_config(),
            secret: secret_of("wh_6"),
            at: t(2),
        }]);
}

// ---------------------------------------------------------------- config validation

#[test]
fn a_malformed_url_is_invalid() {
    let g = given([account_created("acc_1", Plan::Pro)]);
    g.when(
        t(1),
        create_webhook("acc_1", "wh_1", config("n", "example.com/hook")),
    )
    .then_rejects(Rejection::InvalidUrl(
        "must be an absolute https:// URL".into(),
    ));
    for url in [
        "",
        "ftp://example.com/",
        "https://",
        "https://exa mple.com/",
        "https://user:pw@example.com/",
        "https://example.com:70000/",
        "https://example.com/#frag",
    ] {
        let result = g
            .when(t(1), create_webhook("acc_1", "wh_1", config("n", url)))
            .result();
        assert!(
            matches!(result, Err(Rejection::InvalidUrl(_))),
            "{url:?}: {result:?}"
        );
    }
}

#[test]
fn an_http_url_requires_https_unless_the_policy_allows_it() {
    let http = config("n", "http://hooks.example.com/hallway");
    given([account_created("acc_1", Plan::Pro)])
        .when(t(1), create_webhook("acc_1", "wh_1", http.clone()))
        .then_rejects(Rejection::HttpsRequired);
    let lax = Policy {
        require_https: false,
        ..Policy::default()
    };
    given_with(lax, [account_created("acc_1", Plan::Pro)])
        .when(t(1), create_webhook("acc_1", "wh_1", http.clone()))
        .then_events(vec![Event::WebhookCreated {
            webhook_id: wh("wh_1"),
            account_id: acc("acc_1"),
            config: http,
            secret: secret_of("wh_1"),
            at: t(1),
        }]);
}

#[test]
fn a_private_literal_target_is_refused() {
    let g = given([account_created("acc_1", Plan::Pro)]);
    for (url, host) in [
        ("https://10.0.0.1/hook", "10.0.0.1"),
        ("https://127.0.0.1:8443/", "127.0.0.1"),
        ("https://169.254.169.254/latest", "169.254.169.254"),
        ("https://[::1]/", "::1"),
        ("https://localhost/", "localhost"),
        // Numeric spellings are judged by the address they mean, as the sender reads them.
        ("https://2130706433/", "127.0.0.1"),
        ("https://0x7f000001:8443/", "127.0.0.1"),
        ("https://[2002:c0a8:1::]/", "2002:c0a8:1::"),
    ] {
        g.when(t(1), create_webhook("acc_1", "wh_1", config("n", url)))
            .then_rejects(Rejection::TargetRefused(host.into()));
    }
    let lax = Policy {
        allow_private_targets: true,
        ..Policy::default()
    };
    let (events, _) = given_with(lax, [account_created("acc_1", Plan::Pro)])
        .when(
            t(1),
            create_webhook("acc_1", "wh_1", config("n", "https://10.0.0.1/hook")),
        )
        .events();
    assert!(matches!(events.as_slice(), [Event::WebhookCreated { .. }]));
}

#[test]
fn an_unknown_event_type_is_refused() {
    let g = given([account_created("acc_1", Plan::Pro)]);
    let mut c = default_config();
    c.events = vec![COMPLETED.into(), "session.started".into()];
    g.when(t(1), create_webhook("acc_1", "wh_1", c))
        .then_rejects(Rejection::UnknownEventType("session.started".into()));
    let mut none = default_config();
    none.events = Vec::new();
    g.when(t(1), create_webhook("acc_1", "wh_1", none))
        .then_rejects(Rejection::NoEventTypes);
}

#[test]
fn an_empty_name_is_refused() {
    let g = given([account_created("acc_1", Plan::Pro)]);
    for name in ["", "   ", "\t\n"] {
        g.when(
            t(1),
            create_webhook("acc_1", "wh_1", config(name, "https://hooks.example.com/")),
        )
        .then_rejects(Rejection::EmptyName);
    }
}

#[test]
fn names_with_control_characters_or_bidi_overrides_are_refused() {
    let g = given([account_created("acc_1", Plan::Pro)]);
    for name in [
        "Sla\0ck",
        "Slack\u{1b}[31m",
        "Slack \u{202E}kcalS",
        "a\u{2066}b",
        "two\nlines",
    ] {
        let rejected = g
            .when(
                t(1),
                create_webhook("acc_1", "wh_1", config(name, "https://hooks.example.com/")),
            )
            .result()
            .expect_err("refused");
        assert!(
            matches!(rejected, Rejection::InvalidField { field: "name", .. }),
            "{name:?}: {rejected:?}"
        );
    }
    let mut notes = default_config();
    notes.description = Some("line one\nline two\tand a tab".into());
    g.when(t(1), create_webhook("acc_1", "wh_1", notes.clone()))
        .events();
    notes.description = Some("hidden \u{202D}text".into());
    let rejected = g
        .when(t(1), create_webhook("acc_1", "wh_1", notes))
        .result()
        .expect_err("refused");
    assert!(
        matches!(
            rejected,
            Rejection::InvalidField {
                field: "description",
                ..
            }
        ),
        "{rejected:?}"
    );
    let account_named = |name: &str| CommandKind::CreateAccount {
        account_id: acc("acc_2"),
        name: name.to_owned(),
        plan: Plan::Pro,
        api_key_hash: "h".into(),
    };
    let rejected = g
        .when(t(1), account_named("Acme\u{0}"))
        .result()
        .expect_err("refused");
    assert!(
        matches!(rejected, Rejection::InvalidField { field: "name", .. }),
        "{rejected:?}"
    );
    g.when(t(1), account_named("Acme Research")).events();
}

#[test]
fn an_empty_project_filter_entry_is_refused() {
    let mut c = default_config();
    c.project_ids = vec![prj("prj_1"), prj(" ")];
    given([account_created("acc_1", Plan::Pro)])
        .when(t(1), create_webhook("acc_1", "wh_1", c))
        .then_rejects(Rejection::EmptyProjectId);
}

// ---------------------------------------------------------------- not found

#[test]
fn an_unknown_webhook_is_not_found() {
    let g = given([
        account_created("acc_1", Plan::Pro),
        webhook_created("acc_1", "wh_1"),
    ]);
    let missing = Rejection::WebhookNotFound(wh("wh_x"));
    g.when(t(1), set_enabled("acc_1", "wh_x", false))
        .then_rejects(missing.clone());
    g.when(t(1), delete_webhook("acc_1", "wh_x"))
        .then_rejects(missing.clone());
    g.when(t(1), rotate_secret("acc_1", "wh_x", "whsec_new"))
        .then_rejects(missing.clone());
    g.when(t(1), send_test("acc_1", "wh_x", "dlv_t", "evt_t"))
        .then_rejects(missing);
}

#[test]
fn a_deleted_webhook_is_not_found() {
    let g = given([
        account_created("acc_1", Plan::Pro),
        webhook_created("acc_1", "wh_1"),
        Event::WebhookDeleted {
            webhook_id: wh("wh_1"),
            at: t(1),
        },
    ]);
    let missing = Rejection::WebhookNotFound(wh("wh_1"));
    g.when(t(2), set_enabled("acc_1", "wh_1", true))
        .then_rejects(missing.clone());
    g.when(t(2), delete_webhook("acc_1", "wh_1"))
        .then_rejects(missing.clone());
    g.when(t(2), rotate_secret("acc_1", "wh_1", "whsec_new"))
        .then_rejects(missing.clone());
    g.when(t(2), send_test("acc_1", "wh_1", "dlv_t", "evt_t"))
        .then_rejects(missing);
}

#[test]
fn another_accounts_webhook_is_not_found() {
    let g = given([
        account_created("acc_1", Plan::Pro),
        account_created("acc_2", Plan::Pro),
        webhook_created("acc_1", "wh_1"),
    ]);
    let missing = Rejection::WebhookNotFound(wh("wh_1"));
    g.when(
        t(1),
        update_webhook(
            "acc_2",
            "wh_1",
            WebhookChanges {
                name: Some("mine now".into()),
                ..WebhookChanges::default()
            },
        ),
    )
    .then_rejects(missing.clone());
    g.when(t(1), set_enabled("acc_2", "wh_1", false))
        .then_rejects(missing.clone());
    g.when(t(1), delete_webhook("acc_2", "wh_1"))
        .then_rejects(missing.clone());
    g.when(t(1), rotate_secret("acc_2", "wh_1", "whsec_new"))
        .then_rejects(missing.clone());
    g.when(t(1), send_test("acc_2", "wh_1", "dlv_t", "evt_t"))
        .then_rejects(missing.clone());
    g.when(
        t(1),
        CommandKind::RetryDelivery {
            account_id: acc("acc_2"),
            delivery: DeliverySummary {
                delivery_id: dlv("dlv_1"),
                webhook_id: wh("wh_1"),
                account_id: acc("acc_1"),
                event_id: evt("evt_1"),
                event_type: COMPLETED.into(),
                test: false,
                created_at: T0,
                attempts_made: 5,
            },
            pending: false,
        },
    )
    .then_rejects(missing);
}

// ---------------------------------------------------------------- update

#[test]
fn update_webhook_changes_only_the_given_fields() {
    let mut original = default_config();
    original.description = Some("notes".into());
    original.project_ids = vec![prj("prj_1")];
    let g = given([
        account_created("acc_1", Plan::Pro),
        webhook_created_with("acc_1", "wh_1", original.clone()),
    ]);
    let mut renamed = original.clone();
    renamed.name = "Zapier".into();
    g.when(
        t(1),
        update_webhook(
            "acc_1",
            "wh_1",
            WebhookChanges {
                name: Some(" Zapier ".into()),
                ..WebhookChanges::default()
            },
        ),
    )
    .then_events(vec![Event::WebhookUpdated {
        webhook_id: wh("wh_1"),
        config: renamed,
        at: t(1),
    }]);

    let mut moved = original.clone();
    moved.url = "https://zapier.example.com/catch".into();
    moved.description = None;
    moved.project_ids = Vec::new();
    let state = g
        .when(
            t(2),
            update_webhook(
                "acc_1",
                "wh_1",
                WebhookChanges {
                    url: Some("https://zapier.example.com/catch".into()),
                    description: Some(None),
                    project_ids: Some(Vec::new()),
                    ..WebhookChanges::default()
                },
            ),
        )
        .then_events(vec![Event::WebhookUpdated {
            webhook_id: wh("wh_1"),
            config: moved.clone(),
            at: t(2),
        }]);
    let w = state.webhook(&wh("wh_1")).expect("still there");
    assert_eq!(w.config, moved);
    assert_eq!(w.secret, secret_of("wh_1"), "an update keeps the secret");
    assert!(w.enabled);
}

#[test]
fn update_webhook_validates_the_merged_config() {
    let g = given([
        account_created("acc_1", Plan::Pro),
        webhook_created("acc_1", "wh_1"),
    ]);
    let change = |c: WebhookChanges| update_webhook("acc_1", "wh_1", c);
    g.when(
        t(1),
        change(WebhookChanges {
            url: Some("http://hooks.example.com/".into()),
            ..WebhookChanges::default()
        }),
    )
    .then_rejects(Rejection::HttpsRequired);
    g.when(
        t(1),
        change(WebhookChanges {
            name: Some("  ".into()),
            ..WebhookChanges::default()
        }),
    )
    .then_rejects(Rejection::EmptyName);
    g.when(
        t(1),
        change(WebhookChanges {
            events: Some(vec!["nope".into()]),
            ..WebhookChanges::default()
        }),
    )
    .then_rejects(Rejection::UnknownEventType("nope".into()));
    // A refused update changes nothing, not even the enabled flag asked in the same request.
    g.when(
        t(1),
        change(WebhookChanges {
            url: Some("https://192.168.0.10/".into()),
            enabled: Some(false),
            ..WebhookChanges::default()
        }),
    )
    .then_rejects(Rejection::TargetRefused("192.168.0.10".into()));
    g.when(
        t(1),
        change(WebhookChanges {
            url: Some("https://0300.0250.0.10/".into()),
            ..WebhookChanges::default()
        }),
    )
    .then_rejects(Rejection::TargetRefused("192.168.0.10".into()));
}

#[test]
fn an_empty_update_yields_no_events() {
    given([
        account_created("acc_1", Plan::Pro),
        webhook_created("acc_1", "wh_1"),
    ])
    .when(
        t(1),
        update_webhook("acc_1", "wh_1", WebhookChanges::default()),
    )
    .then_no_events();
}

// ---------------------------------------------------------------- enable / disable

#[test]
fn manual_disable_pauses_pending_real_deliveries_and_keeps_test_sends() {
    let mut d = pro_with_webhook(Policy::default());
    d.run(t(1), publish("acc_1", "evt_1", "prj_1", "a"));
    d.run(t(1), publish("acc_1", "evt_2", "prj_1", "b"));
    d.run(t(1), send_test("acc_1", "wh_1", "dlv_t", "evt_t"));
    // Start the first real delivery only, so one real delivery is open and one waits.
    let started_now = d.run(t(1), tick(1));
    assert_eq!(started_now, vec![started(&d.policy(), "dlv_a00", 1, t(1))]);

    let state = d
        .given()
        .when(t(2), set_enabled("acc_1", "wh_1", false))
        .then_events(vec![
            paused("dlv_a00", t(2)),
            paused("dlv_b00", t(2)),
            Event::WebhookDisabled {
                webhook_id: wh("wh_1"),
                reason: DisabledReason::Manual,
                at: t(2),
            },
            alert(
                AlertKind::Disabled,
                "wh_1",
                Some(DisabledReason::Manual),
                None,
                0,
                t(2),
            ),
        ]);
    let w = state.webhook(&wh("wh_1")).expect("kept");
    assert!(!w.enabled);
    assert_eq!(w.disabled_reason, Some(DisabledReason::Manual));
    assert!(
        state.delivery(&dlv("dlv_b00")).is_none(),
        "waiting real one is gone"
    );
    assert!(
        state.delivery(&dlv("dlv_t")).is_some(),
        "the test send goes on"
    );
    // The open attempt is still open, so its outcome can be recorded.
    assert!(state
        .delivery(&dlv("dlv_a00"))
        .is_some_and(|x| x.open.is_some()));
}

#[test]
fn a_cancelled_open_attempt_records_its_outcome_and_stops() {
    let mut d = pro_with_webhook(Policy::default());
    d.run(t(0), publish("acc_1", "evt_1", "prj_1", "a"));
    d.run(t(0), publish("acc_1", "evt_2", "prj_1", "b"));
    d.run(t(0), tick(10));
    d.run(t(1), response("dlv_b00", 1, 500, 100));
    assert_eq!(counter(&d.state, "wh_1"), 1);
    d.run(t(2), set_enabled("acc_1", "wh_1", false));
    let state = d
        .given()
        .when(t(3), response("dlv_a00", 1, 503, 200))
        .then_events(vec![Event::AttemptFailed {
            delivery_id: dlv("dlv_a00"),
            attempt: 1,
            status_code: Some(503),
            error: AttemptError::HttpStatus,
            duration: DurationMs(200),
            started_at: t(0),
            next_due: None,
            at: t(3),
            detail: None,
        }]);
    assert!(state.delivery(&dlv("dlv_a00")).is_none());
    assert_eq!(state.pending_count(), 0);
    assert_eq!(
        counter(&state, "wh_1"),
        1,
        "the attempt of a cancelled delivery does not count"
    );
}

#[test]
fn disabling_a_disabled_webhook_or_enabling_an_enabled_one_changes_nothing() {
    let created = [
        account_created("acc_1", Plan::Pro),
        webhook_created("acc_1", "wh_1"),
    ];
    given(created.clone())
        .when(t(1), set_enabled("acc_1", "wh_1", true))
        .then_no_events();
    let mut past = created.to_vec();
    past.push(Event::WebhookDisabled {
        webhook_id: wh("wh_1"),
        reason: DisabledReason::Manual,
        at: t(1),
    });
    given(past)
        .when(t(2), set_enabled("acc_1", "wh_1", false))
        .then_no_events();
}

#[test]
fn enabling_a_webhook_does_not_resurrect_cancelled_deliveries() {
    let mut d = pro_with_webhook(Policy::default());
    d.run(t(1), publish("acc_1", "evt_1", "prj_1", "a"));
    d.run(t(2), set_enabled("acc_1", "wh_1", false));
    let state = d
        .given()
        .when(t(3), set_enabled("acc_1", "wh_1", true))
        .then_events(vec![
            Event::WebhookEnabled {
                webhook_id: wh("wh_1"),
                at: t(3),
            },
            alert(AlertKind::Enabled, "wh_1", None, None, 0, t(3)),
        ]);
    assert_eq!(state.pending_count(), 0);
    assert_eq!(state.poll_timeout(), None);
}

// ---------------------------------------------------------------- delete

#[test]
fn delete_cancels_every_pending_delivery_including_test_sends() {
    let mut d = pro_with_webhook(Policy::default());
    d.run(t(1), publish("acc_1", "evt_1", "prj_1", "a"));
    d.run(t(1), send_test("acc_1", "wh_1", "dlv_t", "evt_t"));
    let state = d
        .given()
        .when(t(2), delete_webhook("acc_1", "wh_1"))
        .then_events(vec![
            cancelled("dlv_a00", t(2)),
            cancelled("dlv_t", t(2)),
            Event::WebhookDeleted {
                webhook_id: wh("wh_1"),
                at: t(2),
            },
        ]);
    assert!(state.webhook(&wh("wh_1")).is_none());
    assert_eq!(state.pending_count(), 0);
    assert_eq!(state.poll_timeout(), None);
    assert!(state.webhooks_of(&acc("acc_1")).is_empty());
}

#[test]
fn commands_after_delete_are_webhook_not_found_and_publish_skips_it() {
    let mut d = pro_with_webhook(Policy::default());
    d.run(t(1), delete_webhook("acc_1", "wh_1"));
    let g = d.given();
    g.when(t(2), rotate_secret("acc_1", "wh_1", "whsec_2"))
        .then_rejects(Rejection::WebhookNotFound(wh("wh_1")));
    g.when(t(2), send_test("acc_1", "wh_1", "dlv_t", "evt_t"))
        .then_rejects(Rejection::WebhookNotFound(wh("wh_1")));
    let (events, _) = g
        .when(t(2), publish("acc_1", "evt_1", "prj_1", "a"))
        .events();
    assert_eq!(deliveries_of(&events), vec![]);
}

// ---------------------------------------------------------------- secrets

#[test]
fn rotating_the_secret_replaces_it() {
    let state = given([
        account_created("acc_1", Plan::Pro),
        webhook_created("acc_1", "wh_1"),
    ])
    .when(t(1), rotate_secret("acc_1", "wh_1", "whsec_rotated"))
    .then_events(vec![Event::SecretRotated {
        webhook_id: wh("wh_1"),
        secret: SealedSecret("whsec_rotated".into()),
        previous: None,
        at: t(1),
    }]);
    let w = state.webhook(&wh("wh_1")).expect("kept");
    assert_eq!(w.secret, SealedSecret("whsec_rotated".into()));
    // The old secret verifies nothing signed from now on.
    let body = b"{\"id\":\"evt_1\"}";
    let header = signature::sign(&w.secret.0, 1_768_059_001, body);
    assert_eq!(
        signature::verify("whsec_wh_1", &header, body, 1_768_059_001, 300),
        Err(signature::VerifyError::Mismatch)
    );
    assert_eq!(
        signature::verify("whsec_rotated", &header, body, 1_768_059_001, 300),
        Ok(())
    );
}

// ---------------------------------------------------------------- publish fan-out

#[test]
fn publish_fans_out_by_event_type() {
    let mut only_failed = default_config();
    only_failed.events = vec![FAILED_TYPE.into()];
    let mut both = default_config();
    both.events = vec![COMPLETED.into(), FAILED_TYPE.into()];
    let g = given_with(
        two_types(),
        [
            account_created("acc_1", Plan::Pro),
            webhook_created("acc_1", "wh_1"),
            webhook_created_with("acc_1", "wh_2", only_failed),
            webhook_created_with("acc_1", "wh_3", both),
        ],
    );
    let (events, _) = g
        .when(
            t(1),
            publish_typed("acc_1", "evt_1", FAILED_TYPE, "prj_1", "s"),
        )
        .events();
    assert_eq!(
        deliveries_of(&events),
        vec![pair("dlv_s00", "wh_2"), pair("dlv_s01", "wh_3")]
    );
    let (events, _) = g
        .when(
            t(1),
            publish_typed("acc_1", "evt_2", COMPLETED, "prj_1", "s"),
        )
        .events();
    assert_eq!(
        deliveries_of(&events),
        vec![pair("dlv_s00", "wh_1"), pair("dlv_s01", "wh_3")]
    );
}

#[test]
fn publish_fans_out_by_project_filter_and_an_empty_filter_means_every_project() {
    let mut only_a = default_config();
    only_a.project_ids = vec![prj("prj_a")];
    let mut b_or_c = default_config();
    b_or_c.project_ids = vec![prj("prj_b"), prj("prj_c")];
    let g = given([
        account_created("acc_1", Plan::Pro),
        webhook_created("acc_1", "wh_1"),
        webhook_created_with("acc_1", "wh_2", only_a),
        webhook_created_with("acc_1", "wh_3", b_or_c),
    ]);
    for (project, expected) in [
        (
            "prj_a",
            vec![pair("dlv_s00", "wh_1"), pair("dlv_s01", "wh_2")],
        ),
        (
            "prj_c",
            vec![pair("dlv_s00", "wh_1"), pair("dlv_s01", "wh_3")],
        ),
        ("prj_z", vec![pair("dlv_s00", "wh_1")]),
    ] {
        let (events, state) = g
            .when(t(1), publish("acc_1", "evt_1", project, "s"))
            .events();
        assert_eq!(deliveries_of(&events), expected, "{project}");
        assert_eq!(state.pending_count(), expected.len());
    }
}

#[test]
fn publish_only_reaches_the_publishing_accounts_webhooks() {
    let (events, _) = given([
        account_created("acc_1", Plan::Pro),
        account_created("acc_2", Plan::Pro),
        webhook_created("acc_1", "wh_1"),
        webhook_created("acc_2", "wh_2"),
    ])
    .when(t(1), publish("acc_2", "evt_1", "prj_1", "s"))
    .events();
    assert_eq!(deliveries_of(&events), vec![pair("dlv_s00", "wh_2")]);
}

#[test]
fn disabled_webhooks_get_a_paused_delivery_and_nothing_sent() {
    let (events, state) = given([
        account_created("acc_1", Plan::Pro),
        webhook_created("acc_1", "wh_1"),
        webhook_created("acc_1", "wh_2"),
        Event::WebhookDisabled {
            webhook_id: wh("wh_1"),
            reason: DisabledReason::Manual,
            at: t(1),
        },
    ])
    .when(t(2), publish("acc_1", "evt_1", "prj_1", "s"))
    .events();
    match &events[..] {
        [Event::EventPublished {
            deliveries, body, ..
        }, Event::DeliveriesPaused {
            deliveries: paused,
            event_id,
            ..
        }] => {
            assert_eq!(deliveries, &vec![pair("dlv_s01", "wh_2")]);
            assert_eq!(paused, &vec![pair("dlv_s00", "wh_1")]);
            assert_eq!(event_id, &evt("evt_1"));
            assert!(!body.is_empty(), "the body is kept for the paused delivery");
        }
        other => panic!("expected a publish and its paused deliveries, got {other:#?}"),
    }
    // Only the enabled webhook's delivery waits to be sent; the publish answers 1.
    assert_eq!(state.pending_count(), 1);
    assert!(state.delivery(&dlv("dlv_s00")).is_none());
    assert_eq!(
        state
            .published(&acc("acc_1"), &evt("evt_1"))
            .map(|p| p.deliveries),
        Some(1)
    );
}

#[test]
fn a_free_account_publish_is_accepted_with_zero_deliveries() {
    given([account_created("acc_f", Plan::Free)])
        .when(t(1), publish("acc_f", "evt_1", "prj_1", "s"))
        .then_events(vec![Event::EventPublished {
            account_id: acc("acc_f"),
            event_id: evt("evt_1"),
            event_type: COMPLETED.into(),
            project_id: prj("prj_1"),
            digest: prepared("evt_1", COMPLETED, "prj_1").digest,
            body: String::new(),
            deliveries: Vec::new(),
            first_due: t(1),
            at: t(1),
        }]);
    // A Pro account downgraded to free keeps its webhooks but they get nothing.
    let (events, state) = given([
        account_created("acc_1", Plan::Pro),
        webhook_created("acc_1", "wh_1"),
        Event::AccountUpdated {
            account_id: acc("acc_1"),
            name: "Account acc_1".into(),
            plan: Plan::Free,
            at: t(1),
        },
    ])
    .when(t(2), publish("acc_1", "evt_1", "prj_1", "s"))
    .events();
    assert_eq!(deliveries_of(&events), vec![]);
    assert_eq!(state.pending_count(), 0);
}

#[test]
fn publishing_an_unknown_event_type_is_refused() {
    given([account_created("acc_1", Plan::Pro)])
        .when(t(1), publish_typed("acc_1", "evt_1", "nope", "prj_1", "s"))
        .then_rejects(Rejection::UnknownPublishedType("nope".into()));
}

#[test]
fn publish_is_idempotent_by_event_id() {
    let mut d = pro_with_webhook(Policy::default());
    d.run(t(0), create_webhook("acc_1", "wh_2", default_config()));
    let first = d.run(t(1), publish("acc_1", "evt_1", "prj_1", "a"));
    assert_eq!(deliveries_of(&first).len(), 2);
    let g = d.given();
    let duplicate = Rejection::EventExists {
        event_id: evt("evt_1"),
        deliveries: 2,
    };
    g.when(t(5), publish("acc_1", "evt_1", "prj_1", "b"))
        .then_rejects(duplicate);
    // The same id with another body (here another project) is a conflict, not a repeat:
    // answering the first answer would tell the host its new content went out.
    g.when(t(6), publish("acc_1", "evt_1", "prj_other", "c"))
        .then_rejects(Rejection::EventConflict(evt("evt_1")));
    g.when(
        t(6),
        publish_typed("acc_1", "evt_1", FAILED_TYPE, "prj_1", "c"),
    )
    .then_rejects(Rejection::UnknownPublishedType(FAILED_TYPE.into()));
    // Another account may use the same id.
    d.run(t(7), create_account("acc_2", Plan::Free));
    let (events, _) = d
        .given()
        .when(t(8), publish("acc_2", "evt_1", "prj_1", "d"))
        .events();
    assert_eq!(deliveries_of(&events), vec![]);
}

#[test]
fn a_publish_without_an_id_uses_the_fresh_one() {
    let mut event = prepared("unused", COMPLETED, "prj_1");
    event.event_id = None;
    let (events, _) = given([
        account_created("acc_1", Plan::Pro),
        webhook_created("acc_1", "wh_1"),
    ])
    .when(
        t(1),
        CommandKind::Publish {
            account_id: acc("acc_1"),
            event,
            fresh_event_id: evt("evt_generated"),
            fan_out: fan("s"),
            first_index: 0,
            remembered: None,
        },
    )
    .events();
    assert!(matches!(
        events.as_slice(),
        [Event::EventPublished { event_id, .. }] if *event_id == evt("evt_generated")
    ));
}

#[test]
fn a_publish_numbers_its_deliveries_from_its_first_index_in_a_shared_fan_out() {
    let g = given([
        account_created("acc_1", Plan::Pro),
        webhook_created("acc_1", "wh_1"),
        webhook_created("acc_1", "wh_2"),
    ]);
    let publish_at = |first_index| CommandKind::Publish {
        account_id: acc("acc_1"),
        event: prepared("evt_1", COMPLETED, "prj_1"),
        fresh_event_id: evt("evt_unused"),
        fan_out: fan("s"),
        first_index,
        remembered: None,
    };
    let (events, _) = g.when(t(1), publish_at(7)).events();
    let ids: Vec<DeliveryId> = deliveries_of(&events).into_iter().map(|(d, _)| d).collect();
    assert_eq!(ids, vec![fan("s").delivery(7), fan("s").delivery(8)]);
    g.when(t(1), publish_at(u32::MAX - 1))
        .then_rejects(Rejection::InvalidRequest(format!(
            "delivery numbers from {} overflow the fan-out",
            u32::MAX - 1
        )));
}

// ---------------------------------------------------------------- scheduling

#[test]
fn the_first_attempt_is_due_at_publish_plus_the_first_delay() {
    let policy = Policy {
        retry_delays: vec![
            DurationMs::from_secs(10),
            DurationMs::from_mins(1),
            DurationMs::from_mins(5),
        ],
        ..Policy::default()
    };
    let mut d = pro_with_webhook(policy.clone());
    let events = d.run(t(0), publish("acc_1", "evt_1", "prj_1", "a"));
    assert!(matches!(
        events.as_slice(),
        [Event::EventPublished { first_due, .. }] if *first_due == t(10)
    ));
    assert_eq!(d.state.poll_timeout(), Some(t(10)));
    let g = d.given();
    g.when(t_ms(9_999), tick(10)).then_no_events();
    g.when(t(10), tick(10))
        .then_events(vec![started(&policy, "dlv_a00", 1, t(10))]);
}

#[test]
fn each_failure_schedules_the_next_attempt_after_its_delay() {
    let policy = Policy {
        retry_delays: vec![
            DurationMs::from_secs(10),
            DurationMs::from_mins(1),
            DurationMs::from_mins(5),
        ],
        ..Policy::default()
    };
    let mut d = pro_with_webhook(policy.clone());
    d.run(t(0), publish("acc_1", "evt_1", "prj_1", "a"));
    d.run(t(10), tick(10));
    // The delay counts from the failure, not from the attempt's start.
    d.given()
        .when(t(12), response("dlv_a00", 1, 500, 2_000))
        .then_events(vec![Event::AttemptFailed {
            delivery_id: dlv("dlv_a00"),
            attempt: 1,
            status_code: Some(500),
            error: AttemptError::HttpStatus,
            duration: DurationMs(2_000),
            started_at: t(10),
            next_due: Some(t(72)),
            at: t(12),
            detail: None,
        }]);
    d.run(t(12), response("dlv_a00", 1, 500, 2_000));
    assert_eq!(d.state.poll_timeout(), Some(t(72)));
    d.given().when(t(71), tick(10)).then_no_events();
    d.run(t(72), tick(10));
    d.given()
        .when(t(80), failure("dlv_a00", 2, AttemptError::Connect, 5))
        .then_events(vec![Event::AttemptFailed {
            delivery_id: dlv("dlv_a00"),
            attempt: 2,
            status_code: None,
            error: AttemptError::Connect,
            duration: DurationMs(5),
            started_at: t(72),
            next_due: Some(t(380)),
            at: t(80),
            detail: None,
        }]);
}

#[test]
fn the_default_retry_schedule_matches_the_spec_table() {
    // Spec: attempts at 0, 1 m, 5 m, 30 m, 2 h after the previous failure; with instant
    // failures the total waits are 0, 1, 6, 36 and 156 minutes.
    let policy = Policy::default();
    let mut d = pro_with_webhook(policy.clone());
    d.run(T0, publish("acc_1", "evt_1", "prj_1", "a"));
    let mut now = T0;
    let mut starts = Vec::new();
    for attempt in 1..=5 {
        let events = d.run(now, tick(10));
        assert_eq!(events, vec![started(&policy, "dlv_a00", attempt, now)]);
        starts.push((now.0 - T0.0) / 60_000);
        let failed = d.run(now, response("dlv_a00", attempt, 500, 0));
        match failed.as_slice() {
            // The fifth failure also warns the host (`webhook.failing`).
            [Event::AttemptFailed { next_due, .. }, ..] => match next_due {
                Some(next) => now = *next,
                None => assert_eq!(attempt, 5, "only the last attempt has no successor"),
            },
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(starts, vec![0, 1, 6, 36, 156]);
}

// ---------------------------------------------------------------- outcomes

/// A webhook with one delivery `dlv_a00` whose first attempt started at `t(0)`.
fn one_open_attempt(policy: Policy) -> Driver {
    let mut d = pro_with_webhook(policy);
    d.run(t(0), publish("acc_1", "evt_1", "prj_1", "a"));
    d.run(t(0), tick(10));
    d
}

#[test]
fn a_2xx_within_the_timeout_succeeds() {
    let d = one_open_attempt(Policy::default());
    for (status, duration) in [(200, 120), (204, 29_999), (299, 30_000)] {
        let state = d
            .given()
            .when(t(31), response("dlv_a00", 1, status, duration))
            .then_events(vec![Event::AttemptSucceeded {
                delivery_id: dlv("dlv_a00"),
                attempt: 1,
                status_code: status,
                duration: DurationMs(duration),
                started_at: t(0),
                at: t(31),
                detail: None,
            }]);
        assert!(state.delivery(&dlv("dlv_a00")).is_none());
        assert_eq!(state.in_flight_count(), 0);
        assert_eq!(state.poll_timeout(), None);
    }
}

#[test]
fn a_2xx_after_the_timeout_fails_as_timeout() {
    let d = one_open_attempt(Policy::default());
    d.given()
        .when(t(31), response("dlv_a00", 1, 200, 30_001))
        .then_events(vec![Event::AttemptFailed {
            delivery_id: dlv("dlv_a00"),
            attempt: 1,
            status_code: Some(200),
            error: AttemptError::Timeout,
            duration: DurationMs(30_001),
            started_at: t(0),
            next_due: Some(t(91)),
            at: t(31),
            detail: None,
        }]);
}

#[test]
fn a_non_2xx_status_fails_as_http_status() {
    let d = one_open_attempt(Policy::default());
    for status in [100, 199, 301, 304, 400, 404, 410, 500, 503] {
        d.given()
            .when(t(1), response("dlv_a00", 1, status, 80))
            .then_events(vec![Event::AttemptFailed {
                delivery_id: dlv("dlv_a00"),
                attempt: 1,
                status_code: Some(status),
                error: AttemptError::HttpStatus,
                duration: DurationMs(80),
                started_at: t(0),
                next_due: Some(t(61)),
                at: t(1),
                detail: None,
            }]);
    }
}

#[test]
fn an_error_outcome_fails_with_its_error() {
    let d = one_open_attempt(Policy::default());
    for error in [
        AttemptError::Timeout,
        AttemptError::Connect,
        AttemptError::Tls,
        AttemptError::BlockedTarget,
        AttemptError::InvalidResponse,
    ] {
        d.given()
            .when(t(1), failure("dlv_a00", 1, error, 900))
            .then_events(vec![Event::AttemptFailed {
                delivery_id: dlv("dlv_a00"),
                attempt: 1,
                status_code: None,
                error,
                duration: DurationMs(900),
                started_at: t(0),
                next_due: Some(t(61)),
                at: t(1),
                detail: None,
            }]);
    }
}

#[test]
fn a_delivery_is_exhausted_after_its_last_attempt() {
    let policy = Policy {
        retry_delays: vec![DurationMs(0), DurationMs::from_secs(1)],
        ..Policy::default()
    };
    let mut d = one_open_attempt(policy.clone());
    d.run(t(0), response("dlv_a00", 1, 500, 10));
    assert_eq!(
        d.run(t(1), tick(10)),
        vec![started(&policy, "dlv_a00", 2, t(1))]
    );
    let state = d
        .given()
        .when(t(2), response("dlv_a00", 2, 502, 10))
        .then_events(vec![Event::AttemptFailed {
            delivery_id: dlv("dlv_a00"),
            attempt: 2,
            status_code: Some(502),
            error: AttemptError::HttpStatus,
            duration: DurationMs(10),
            started_at: t(1),
            next_due: None,
            at: t(2),
            detail: None,
        }]);
    assert!(state.delivery(&dlv("dlv_a00")).is_none());
    assert_eq!(state.pending_count(), 0);
    assert_eq!(state.poll_timeout(), None);
}

// ---------------------------------------------------------------- consecutive failures

fn auto_disable_policy() -> Policy {
    Policy {
        auto_disable_after: 3,
        retry_delays: vec![
            DurationMs(0),
            DurationMs::from_secs(10),
            DurationMs::from_secs(10),
        ],
        ..Policy::default()
    }
}

/// `wh_1` with real deliveries `dlv_a00`, `dlv_b00`, `dlv_c00` and test `dlv_t`, all open.
fn four_open_attempts() -> Driver {
    let mut d = pro_with_webhook(auto_disable_policy());
    d.run(t(0), publish("acc_1", "evt_1", "prj_1", "a"));
    d.run(t(0), publish("acc_1", "evt_2", "prj_1", "b"));
    d.run(t(0), publish("acc_1", "evt_3", "prj_1", "c"));
    d.run(t(0), send_test("acc_1", "wh_1", "dlv_t", "evt_t"));
    assert_eq!(d.run(t(0), tick(10)).len(), 4);
    d
}

#[test]
fn failures_below_the_limit_keep_the_webhook_enabled() {
    let mut d = four_open_attempts();
    d.run(t(1), response("dlv_a00", 1, 500, 10));
    let (events, state) = d
        .given()
        .when(t(1), response("dlv_b00", 1, 500, 10))
        .events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(counter(&state, "wh_1"), 2);
    assert!(state.webhook(&wh("wh_1")).is_some_and(|w| w.enabled));
}

#[test]
fn reaching_the_failure_limit_disables_the_webhook_and_pauses_its_real_deliveries_in_one_batch() {
    let mut d = four_open_attempts();
    d.run(t(1), response("dlv_a00", 1, 500, 10));
    d.run(t(1), response("dlv_b00", 1, 500, 10));
    let state = d
        .given()
        .when(t(2), failure("dlv_c00", 1, AttemptError::Connect, 10))
        .then_events(vec![
            Event::AttemptFailed {
                delivery_id: dlv("dlv_c00"),
                attempt: 1,
                status_code: None,
                error: AttemptError::Connect,
                duration: DurationMs(10),
                started_at: t(0),
                next_due: Some(t(12)),
                at: t(2),
                detail: None,
            },
            Event::WebhookDisabled {
                webhook_id: wh("wh_1"),
                reason: DisabledReason::ConsecutiveFailures,
                at: t(2),
            },
            paused("dlv_a00", t(2)),
            paused("dlv_b00", t(2)),
            paused("dlv_c00", t(2)),
            alert(
                AlertKind::Disabled,
                "wh_1",
                Some(DisabledReason::ConsecutiveFailures),
                Some(AttemptError::Connect),
                3,
                t(2),
            ),
        ]);
    let w = state.webhook(&wh("wh_1")).expect("kept");
    assert!(!w.enabled);
    assert_eq!(w.disabled_reason, Some(DisabledReason::ConsecutiveFailures));
    assert_eq!(w.consecutive_failures, 3);
    // Only the test send is left, still open.
    assert_eq!(state.pending_count(), 1);
    assert!(state.delivery(&dlv("dlv_t")).is_some());
}

#[test]
fn an_exhausting_failure_at_the_limit_disables_without_pausing_its_own_finished_delivery() {
    let policy = Policy {
        auto_disable_after: 2,
        retry_delays: vec![DurationMs(0)],
        ..Policy::default()
    };
    let mut d = pro_with_webhook(policy);
    d.run(t(0), publish("acc_1", "evt_1", "prj_1", "a"));
    d.run(t(0), publish("acc_1", "evt_2", "prj_1", "b"));
    d.run(t(0), publish("acc_1", "evt_3", "prj_1", "c"));
    d.run(t(0), tick(2));
    d.run(t(1), response("dlv_a00", 1, 500, 10));
    let state = d
        .given()
        .when(t(2), response("dlv_b00", 1, 500, 10))
        .then_events(vec![
            Event::AttemptFailed {
                delivery_id: dlv("dlv_b00"),
                attempt: 1,
                status_code: Some(500),
                error: AttemptError::HttpStatus,
                duration: DurationMs(10),
                started_at: t(0),
                next_due: None,
                at: t(2),
                detail: None,
            },
            Event::WebhookDisabled {
                webhook_id: wh("wh_1"),
                reason: DisabledReason::ConsecutiveFailures,
                at: t(2),
            },
            paused("dlv_c00", t(2)),
            alert(
                AlertKind::Disabled,
                "wh_1",
                Some(DisabledReason::ConsecutiveFailures),
                Some(AttemptError::HttpStatus),
                2,
                t(2),
            ),
        ]);
    assert_eq!(state.pending_count(), 0);
}

#[test]
fn a_timeout_on_tick_counts_towards_the_limit() {
    let mut d = four_open_attempts();
    d.run(t(1), response("dlv_a00", 1, 500, 10));
    d.run(t(1), response("dlv_b00", 1, 500, 10));
    let dl = deadline(&d.policy(), t(0));
    // `dlv_c00` and the test `dlv_t` share the deadline; ties go by delivery id, one per tick.
    let state = d.given().when(dl, tick(10)).then_events(vec![
        Event::AttemptFailed {
            delivery_id: dlv("dlv_c00"),
            attempt: 1,
            status_code: None,
            error: AttemptError::Timeout,
            duration: DurationMs(60_000),
            started_at: t(0),
            next_due: Some(dl.plus(DurationMs::from_secs(10))),
            at: dl,
            detail: None,
        },
        Event::WebhookDisabled {
            webhook_id: wh("wh_1"),
            reason: DisabledReason::ConsecutiveFailures,
            at: dl,
        },
        paused("dlv_a00", dl),
        paused("dlv_b00", dl),
        paused("dlv_c00", dl),
        alert(
            AlertKind::Disabled,
            "wh_1",
            Some(DisabledReason::ConsecutiveFailures),
            Some(AttemptError::Timeout),
            3,
            dl,
        ),
    ]);
    assert!(state.webhook(&wh("wh_1")).is_some_and(|w| !w.enabled));
    // The next tick times out the test attempt, which does not count.
    d.run(dl, tick(10));
    let (events, state) = d.given().when(dl, tick(10)).events();
    assert!(matches!(
        events.as_slice(),
        [Event::AttemptFailed { delivery_id, error: AttemptError::Timeout, next_due: None, .. }]
            if *delivery_id == dlv("dlv_t")
    ));
    assert_eq!(counter(&state, "wh_1"), 3);
    assert_eq!(state.pending_count(), 0);
}

#[test]
fn a_success_resets_the_failure_counter() {
    let mut d = four_open_attempts();
    d.run(t(1), response("dlv_a00", 1, 500, 10));
    d.run(t(1), response("dlv_b00", 1, 500, 10));
    let state = d
        .given()
        .when(t(2), response("dlv_c00", 1, 200, 10))
        .then_events(vec![Event::AttemptSucceeded {
            delivery_id: dlv("dlv_c00"),
            attempt: 1,
            status_code: 200,
            duration: DurationMs(10),
            started_at: t(0),
            at: t(2),
            detail: None,
        }]);
    assert_eq!(counter(&state, "wh_1"), 0);
}

#[test]
fn re_enabling_resets_the_counter_and_the_reason() {
    let mut d = four_open_attempts();
    d.run(t(1), response("dlv_a00", 1, 500, 10));
    d.run(t(1), response("dlv_b00", 1, 500, 10));
    d.run(t(1), response("dlv_c00", 1, 500, 10));
    assert_eq!(counter(&d.state, "wh_1"), 3);
    let state = d
        .given()
        .when(t(5), set_enabled("acc_1", "wh_1", true))
        .then_events(vec![
            Event::WebhookEnabled {
                webhook_id: wh("wh_1"),
                at: t(5),
            },
            alert(AlertKind::Enabled, "wh_1", None, None, 0, t(5)),
        ]);
    let w = state.webhook(&wh("wh_1")).expect("kept");
    assert!(w.enabled);
    assert_eq!(w.disabled_reason, None);
    assert_eq!(w.consecutive_failures, 0);
}

// ---------------------------------------------------------------- test sends

#[test]
fn a_test_send_makes_one_attempt_due_now() {
    let mut d = pro_with_webhook(Policy::default());
    let catalog = Catalog::default();
    let example = &catalog.types()[0];
    let expected_body = envelope::test_payload(
        &evt("evt_t"),
        COMPLETED,
        t(5),
        &acc("acc_1"),
        "Account acc_1",
        example.example_fields(),
    );
    d.given()
        .when(t(5), send_test("acc_1", "wh_1", "dlv_t", "evt_t"))
        .then_events(vec![Event::TestDeliveryCreated {
            delivery_id: dlv("dlv_t"),
            webhook_id: wh("wh_1"),
            account_id: acc("acc_1"),
            event_id: evt("evt_t"),
            event_type: COMPLETED.to_owned(),
            body: expected_body,
            at: t(5),
        }]);
    d.run(t(5), send_test("acc_1", "wh_1", "dlv_t", "evt_t"));
    assert_eq!(d.state.poll_timeout(), Some(t(5)));
    assert_eq!(
        d.run(t(5), tick(10)),
        vec![started(&d.policy(), "dlv_t", 1, t(5))]
    );
    let state = d
        .given()
        .when(t(6), response("dlv_t", 1, 500, 10))
        .then_events(vec![Event::AttemptFailed {
            delivery_id: dlv("dlv_t"),
            attempt: 1,
            status_code: Some(500),
            error: AttemptError::HttpStatus,
            duration: DurationMs(10),
            started_at: t(5),
            next_due: None,
            at: t(6),
            detail: None,
        }]);
    assert_eq!(state.pending_count(), 0);
    assert_eq!(counter(&state, "wh_1"), 0);
}

#[test]
fn a_test_send_is_allowed_while_disabled() {
    let mut d = pro_with_webhook(Policy::default());
    d.run(t(1), set_enabled("acc_1", "wh_1", false));
    d.run(t(2), send_test("acc_1", "wh_1", "dlv_t", "evt_t"));
    d.given()
        .when(t(2), tick(10))
        .then_events(vec![started(&d.policy(), "dlv_t", 1, t(2))]);
}

#[test]
fn a_test_send_reusing_a_pending_delivery_id_is_refused() {
    let mut d = pro_with_webhook(Policy::default());
    d.run(t(1), send_test("acc_1", "wh_1", "dlv_t", "evt_t"));
    let result = d
        .given()
        .when(t(1), send_test("acc_1", "wh_1", "dlv_t", "evt_t2"))
        .result();
    assert!(
        matches!(
            result,
            Err(Rejection::InvalidField {
                field: "delivery_id",
                ..
            })
        ),
        "{result:?}"
    );
}

#[test]
fn test_attempts_never_change_the_failure_counter() {
    let mut d = four_open_attempts();
    d.run(t(1), response("dlv_a00", 1, 500, 10));
    d.run(t(1), response("dlv_b00", 1, 500, 10));
    // A failing test at counter = limit - 1 neither counts nor disables.
    let (events, state) = d
        .given()
        .when(t(2), failure("dlv_t", 1, AttemptError::Connect, 10))
        .events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(counter(&state, "wh_1"), 2);
    assert!(state.webhook(&wh("wh_1")).is_some_and(|w| w.enabled));
    // A succeeding test does not reset it either.
    let (_, state) = d.given().when(t(2), response("dlv_t", 1, 200, 10)).events();
    assert_eq!(counter(&state, "wh_1"), 2);
}

// ---------------------------------------------------------------- manual retry

#[test]
fn a_finished_delivery_can_be_retried_by_hand_for_exactly_one_more_attempt() {
    let policy = Policy {
        retry_delays: vec![DurationMs(0), DurationMs::from_secs(1)],
        ..Policy::default()
    };
    let mut d = one_open_attempt(policy.clone());
    d.run(t(0), response("dlv_a00", 1, 500, 10));
    d.run(t(1), tick(10));
    d.run(t(1), response("dlv_a00", 2, 500, 10));
    let s = summary(&d, "dlv_a00", "wh_1", "evt_1", 2);
    d.given()
        .when(
            t(100),
            CommandKind::RetryDelivery {
                account_id: acc("acc_1"),
                delivery: s.clone(),
                pending: false,
            },
        )
        .then_events(vec![Event::DeliveryRetried {
            delivery: s.clone(),
            at: t(100),
        }]);
    d.run(
        t(100),
        CommandKind::RetryDelivery {
            account_id: acc("acc_1"),
            delivery: s,
            pending: false,
        },
    );
    assert_eq!(
        d.run(t(100), tick(10)),
        vec![started(&policy, "dlv_a00", 3, t(100))]
    );
    let state = d
        .given()
        .when(t(101), response("dlv_a00", 3, 500, 10))
        .then_events(vec![Event::AttemptFailed {
            delivery_id: dlv("dlv_a00"),
            attempt: 3,
            status_code: Some(500),
            error: AttemptError::HttpStatus,
            duration: DurationMs(10),
            started_at: t(100),
            next_due: None,
            at: t(101),
            detail: None,
        }]);
    assert_eq!(state.pending_count(), 0);
    // Manual retries of real deliveries count like any real attempt.
    assert_eq!(counter(&state, "wh_1"), 3);
}

#[test]
fn manual_retries_stop_at_the_attempts_cap_even_after_success() {
    let policy = Policy {
        retry_delays: vec![DurationMs(0)],
        max_manual_retries: 2,
        ..Policy::default()
    };
    assert_eq!(policy.attempts_cap(false), 3);
    assert_eq!(policy.attempts_cap(true), 3);
    let mut d = one_open_attempt(policy.clone());
    d.run(t(1), response("dlv_a00", 1, 200, 10));
    let retry = |attempts_made| CommandKind::RetryDelivery {
        account_id: acc("acc_1"),
        delivery: DeliverySummary {
            attempts_made,
            ..summary(&d, "dlv_a00", "wh_1", "evt_1", 0)
        },
        pending: false,
    };
    let (two, three) = (retry(2), retry(3));
    // A delivery that succeeded may still be sent again by hand, up to the cap.
    d.given()
        .when(t(2), two)
        .then_events(vec![Event::DeliveryRetried {
            delivery: DeliverySummary {
                attempts_made: 2,
                ..summary(&d, "dlv_a00", "wh_1", "evt_1", 0)
            },
            at: t(2),
        }]);
    d.given()
        .when(t(2), three)
        .then_rejects(Rejection::AttemptsExhausted {
            delivery_id: dlv("dlv_a00"),
            max: 3,
        });
    let mut test = summary(&d, "dlv_a00", "wh_1", "evt_1", 3);
    test.test = true;
    d.given()
        .when(
            t(2),
            CommandKind::RetryDelivery {
                account_id: acc("acc_1"),
                delivery: test,
                pending: false,
            },
        )
        .then_rejects(Rejection::AttemptsExhausted {
            delivery_id: dlv("dlv_a00"),
            max: 3,
        });
}

#[test]
fn retrying_a_pending_delivery_is_refused_as_not_finished() {
    let d = one_open_attempt(Policy::default());
    let s = DeliverySummary {
        delivery_id: dlv("dlv_a00"),
        webhook_id: wh("wh_1"),
        account_id: acc("acc_1"),
        event_id: evt("evt_1"),
        event_type: COMPLETED.into(),
        test: false,
        created_at: T0,
        attempts_made: 1,
    };
    d.given()
        .when(
            t(5),
            CommandKind::RetryDelivery {
                account_id: acc("acc_1"),
                delivery: s,
                pending: false,
            },
        )
        .then_rejects(Rejection::DeliveryNotFinished(dlv("dlv_a00")));
}

#[test]
fn retrying_on_a_disabled_webhook_is_refused_unless_it_is_a_test() {
    let mut d = one_open_attempt(Policy::default());
    d.run(t(1), response("dlv_a00", 1, 200, 10));
    d.run(t(2), set_enabled("acc_1", "wh_1", false));
    let real = summary(&d, "dlv_a00", "wh_1", "evt_1", 1);
    let g = d.given();
    g.when(
        t(3),
        CommandKind::RetryDelivery {
            account_id: acc("acc_1"),
            delivery: real.clone(),
            pending: false,
        },
    )
    .then_rejects(Rejection::WebhookDisabled(wh("wh_1")));
    let test = DeliverySummary {
        test: true,
        delivery_id: dlv("dlv_t"),
        ..real
    };
    let state = g
        .when(
            t(3),
            CommandKind::RetryDelivery {
                account_id: acc("acc_1"),
                delivery: test.clone(),
                pending: false,
            },
        )
        .then_events(vec![Event::DeliveryRetried {
            delivery: test,
            at: t(3),
        }]);
    assert!(state.delivery(&dlv("dlv_t")).is_some_and(|x| x.test));
}

#[test]
fn retrying_a_delivery_of_another_account_is_not_found() {
    let mut d = one_open_attempt(Policy::default());
    d.run(t(1), response("dlv_a00", 1, 200, 10));
    let mut s = summary(&d, "dlv_a00", "wh_1", "evt_1", 1);
    s.account_id = acc("acc_2");
    d.given()
        .when(
            t(3),
            CommandKind::RetryDelivery {
                account_id: acc("acc_1"),
                delivery: s,
                pending: false,
            },
        )
        .then_rejects(Rejection::DeliveryNotFound(dlv("dlv_a00")));
}

// ---------------------------------------------------------------- tick

#[test]
fn tick_starts_at_most_max_starts_attempts() {
    let mut d = pro_with_webhook(Policy::default());
    d.run(t(0), create_webhook("acc_1", "wh_2", default_config()));
    d.run(t(0), create_webhook("acc_1", "wh_3", default_config()));
    d.run(t(0), publish("acc_1", "evt_1", "prj_1", "a"));
    let p = d.policy();
    d.given().when(t(0), tick(0)).then_no_events();
    d.given().when(t(0), tick(2)).then_events(vec![
        started(&p, "dlv_a00", 1, t(0)),
        started(&p, "dlv_a01", 1, t(0)),
    ]);
    d.run(t(0), tick(2));
    d.given()
        .when(t(0), tick(2))
        .then_events(vec![started(&p, "dlv_a02", 1, t(0))]);
}

#[test]
fn tick_opens_at_most_four_times_the_requests_allowed_under_way_per_webhook() {
    // One request under way at a time: three more attempts are logged and ready behind it.
    let policy = Policy {
        max_in_flight_per_webhook: 1,
        ..Policy::default()
    };
    assert_eq!(policy.max_open_per_webhook(), 4);
    let mut d = pro_with_webhook(policy.clone());
    for (i, seed) in ["a", "b", "c", "d", "e", "f"].iter().enumerate() {
        d.run(t(0), publish("acc_1", &format!("evt_{i}"), "prj_1", seed));
    }
    assert_eq!(
        d.run(t(0), tick(10)),
        vec![
            started(&policy, "dlv_a00", 1, t(0)),
            started(&policy, "dlv_b00", 1, t(0)),
            started(&policy, "dlv_c00", 1, t(0)),
            started(&policy, "dlv_d00", 1, t(0)),
        ]
    );
    assert_eq!(
        d.state
            .webhook(&wh("wh_1"))
            .map(|w| d.state.in_flight_of(&w.id)),
        Some(4)
    );
    // The waiting ones are not "ready": the next wake-up is the open attempts' deadline.
    assert_eq!(d.state.poll_timeout(), Some(deadline(&policy, t(0))));
    d.given().when(t(1), tick(10)).then_no_events();
    // One slot frees up: exactly one more starts, though two are due.
    d.run(t(1), response("dlv_a00", 1, 200, 10));
    assert_eq!(d.state.poll_timeout(), Some(t(0)));
    d.given()
        .when(t(1), tick(10))
        .then_events(vec![started(&policy, "dlv_e00", 1, t(1))]);
}

#[test]
fn a_spurious_tick_yields_no_events() {
    let d = pro_with_webhook(Policy::default());
    d.given().when(t(1), tick(10)).then_no_events();
    let mut d = one_open_attempt(Policy::default());
    d.given().when(t(0), tick(10)).then_no_events();
    d.run(t(1), response("dlv_a00", 1, 200, 10));
    d.given().when(t(10_000), tick(10)).then_no_events();
}

#[test]
fn an_open_attempt_past_its_deadline_times_out_on_tick() {
    let d = one_open_attempt(Policy::default());
    let dl = deadline(&d.policy(), t(0));
    assert_eq!(dl, t(60), "timeout 30 s plus 30 s grace");
    assert_eq!(d.state.poll_timeout(), Some(dl));
    d.given().when(t_ms(59_999), tick(10)).then_no_events();
    let state = d
        .given()
        .when(dl, tick(10))
        .then_events(vec![Event::AttemptFailed {
            delivery_id: dlv("dlv_a00"),
            attempt: 1,
            status_code: None,
            error: AttemptError::Timeout,
            duration: DurationMs(60_000),
            started_at: t(0),
            next_due: Some(t(120)),
            at: dl,
            detail: None,
        }]);
    assert_eq!(counter(&state, "wh_1"), 1);
    // The late report of the timed-out attempt is refused.
    let mut d = d;
    d.run(dl, tick(10));
    d.given()
        .when(t(61), response("dlv_a00", 1, 200, 100))
        .then_rejects(Rejection::AttemptNotOpen {
            delivery_id: dlv("dlv_a00"),
            attempt: 1,
        });
}

// ---------------------------------------------------------------- resume

#[test]
fn resume_abandons_open_attempts_and_they_restart_with_the_same_number() {
    let policy = Policy {
        retry_delays: vec![DurationMs(0), DurationMs::from_secs(1)],
        ..Policy::default()
    };
    let mut d = one_open_attempt(policy.clone());
    d.run(t(0), response("dlv_a00", 1, 500, 10));
    d.run(t(1), publish("acc_1", "evt_2", "prj_1", "b"));
    assert_eq!(d.run(t(1), tick(10)).len(), 2);
    let state = d.given().when(t(5), CommandKind::Resume).then_events(vec![
        Event::AttemptAbandoned {
            delivery_id: dlv("dlv_a00"),
            attempt: 2,
            at: t(5),
        },
        Event::AttemptAbandoned {
            delivery_id: dlv("dlv_b00"),
            attempt: 1,
            at: t(5),
        },
    ]);
    assert_eq!(state.in_flight_count(), 0);
    assert_eq!(
        state
            .webhook(&wh("wh_1"))
            .map(|w| state.in_flight_of(&w.id)),
        Some(0)
    );
    assert_eq!(state.poll_timeout(), Some(t(5)));
    d.run(t(5), CommandKind::Resume);
    d.given().when(t(5), tick(10)).then_events(vec![
        started(&policy, "dlv_a00", 2, t(5)),
        started(&policy, "dlv_b00", 1, t(5)),
    ]);
    // A report for the abandoned attempt arriving now is not for an open attempt.
    d.given()
        .when(t(5), response("dlv_a00", 2, 200, 10))
        .then_rejects(Rejection::AttemptNotOpen {
            delivery_id: dlv("dlv_a00"),
            attempt: 2,
        });
}

#[test]
fn an_attempt_given_up_unsent_restarts_with_its_number_and_counts_no_failure() {
    let policy = Policy {
        retry_delays: vec![DurationMs(0), DurationMs::from_secs(1)],
        ..Policy::default()
    };
    let mut d = one_open_attempt(policy.clone());
    let abandon = |attempt| CommandKind::AbandonAttempt {
        delivery_id: dlv("dlv_a00"),
        attempt,
    };
    // Only the open attempt can be given up.
    d.given()
        .when(t(50), abandon(2))
        .then_rejects(Rejection::AttemptNotOpen {
            delivery_id: dlv("dlv_a00"),
            attempt: 2,
        });
    let state = d
        .given()
        .when(t(50), abandon(1))
        .then_events(vec![Event::AttemptAbandoned {
            delivery_id: dlv("dlv_a00"),
            attempt: 1,
            at: t(50),
        }]);
    assert_eq!(state.in_flight_count(), 0);
    assert_eq!(counter(&state, "wh_1"), 0, "the receiver never saw it");
    d.run(t(50), abandon(1));
    d.given()
        .when(t(50), tick(10))
        .then_events(vec![started(&policy, "dlv_a00", 1, t(50))]);
}

#[test]
fn resume_with_nothing_open_yields_no_events() {
    let mut d = pro_with_webhook(Policy::default());
    d.run(t(0), publish("acc_1", "evt_1", "prj_1", "a"));
    d.given().when(t(1), CommandKind::Resume).then_no_events();
}

#[test]
fn an_outcome_for_an_attempt_that_is_not_open_is_refused() {
    let mut d = pro_with_webhook(Policy::default());
    d.run(t(0), publish("acc_1", "evt_1", "prj_1", "a"));
    let not_open = |id: &str, attempt| Rejection::AttemptNotOpen {
        delivery_id: dlv(id),
        attempt,
    };
    // Waiting, not started.
    d.given()
        .when(t(0), response("dlv_a00", 1, 200, 10))
        .then_rejects(not_open("dlv_a00", 1));
    d.run(t(0), tick(10));
    // Unknown delivery, wrong attempt number.
    d.given()
        .when(t(1), response("dlv_zz", 1, 200, 10))
        .then_rejects(not_open("dlv_zz", 1));
    d.given()
        .when(t(1), response("dlv_a00", 2, 200, 10))
        .then_rejects(not_open("dlv_a00", 2));
    // A duplicate report after the first one was recorded.
    d.run(t(1), response("dlv_a00", 1, 200, 10));
    d.given()
        .when(t(2), response("dlv_a00", 1, 200, 10))
        .then_rejects(not_open("dlv_a00", 1));
}

// ---------------------------------------------------------------- idempotency window

/// A retention window of two hours, of which memory keeps `idempotency_memory`.
fn two_hour_window(idempotency_memory: DurationMs) -> Policy {
    Policy {
        retention: DurationMs::from_hours(2),
        idempotency_memory,
        ..Policy::default()
    }
}

#[test]
fn expiring_idempotency_keys_forgets_ids_older_than_the_memory_window() {
    let mut d = pro_with_webhook(two_hour_window(DurationMs::from_hours(1)));
    d.run(t(0), publish("acc_1", "evt_1", "prj_1", "a"));
    d.run(t(1), publish("acc_1", "evt_3", "prj_1", "e"));
    d.run(t(1800), publish("acc_1", "evt_2", "prj_1", "b"));
    d.given()
        .when(t(3600), CommandKind::ExpireIdempotencyKeys)
        .then_no_events();
    let state = d
        .given()
        .when(t(3601), CommandKind::ExpireIdempotencyKeys)
        .then_events(vec![Event::IdempotencyKeysExpired {
            before: t(1),
            at: t(3601),
        }]);
    assert_eq!(state.published(&acc("acc_1"), &evt("evt_1")), None);
    // Exactly the retention old is not older than it: still remembered.
    assert!(state.published(&acc("acc_1"), &evt("evt_3")).is_some());
    assert!(state.published(&acc("acc_1"), &evt("evt_2")).is_some());
    d.run(t(3601), CommandKind::ExpireIdempotencyKeys);
    let g = d.given();
    let (events, _) = g
        .when(t(3602), publish("acc_1", "evt_1", "prj_1", "c"))
        .events();
    assert_eq!(
        deliveries_of(&events),
        vec![pair("dlv_c00", "wh_1")],
        "memory forgot it and the store was not asked"
    );
    g.when(t(3602), publish("acc_1", "evt_2", "prj_1", "c"))
        .then_rejects(Rejection::EventExists {
            event_id: evt("evt_2"),
            deliveries: 1,
        });
}

/// A publish of an id memory forgot is decided by what the store remembers
/// (`remembered`), inside the retention window only, and only for the account as it is now.
#[test]
fn an_id_memory_forgot_is_refused_by_what_the_store_remembers_within_the_window() {
    let mut d = pro_with_webhook(two_hour_window(DurationMs::from_mins(5)));
    let (events, _) = d
        .given()
        .when(t(10), publish("acc_1", "evt_1", "prj_1", "a"))
        .events();
    d.run(t(10), publish("acc_1", "evt_1", "prj_1", "a"));
    let Some(Event::EventPublished { digest, .. }) = events.first() else {
        panic!("published: {events:?}");
    };
    let stored = Published {
        deliveries: 1,
        at: t(10),
        digest: *digest,
    };
    d.run(t(400), CommandKind::ExpireIdempotencyKeys);
    assert_eq!(
        d.given().state().published(&acc("acc_1"), &evt("evt_1")),
        None
    );
    let again = |at: Timestamp, seed: &str, remembered: Option<Published>| {
        let mut kind = publish("acc_1", "evt_1", "prj_1", seed);
        if let CommandKind::Publish { remembered: r, .. } = &mut kind {
            *r = remembered;
        }
        (at, kind)
    };
    let (at, kind) = again(t(400), "b", Some(stored));
    d.given()
        .when(at, kind)
        .then_rejects(Rejection::EventExists {
            event_id: evt("evt_1"),
            deliveries: 1,
        });
    let other = Published {
        digest: BodyDigest::of("x", "{}"),
        ..stored
    };
    let (at, kind) = again(t(400), "c", Some(other));
    d.given()
        .when(at, kind)
        .then_rejects(Rejection::EventConflict(evt("evt_1")));
    // Past the window the store's answer no longer counts.
    let (at, kind) = again(t(10 + 7201), "d", Some(stored));
    assert!(d.given().when(at, kind).result().is_ok());
    // Nor does one from before the account was created (a deleted account's, not yet purged).
    let before_account = Published {
        at: Timestamp(0),
        ..stored
    };
    let (at, kind) = again(t(400), "e", Some(before_account));
    assert!(d.given().when(at, kind).result().is_ok());
}

// ---------------------------------------------------------------- payloads

#[test]
fn the_delivered_envelope_puts_the_engines_fields_first() {
    let raw = br#"{
        "id": "evt_m5k2j_8x7yAbCdEf",
        "type": "session.processing.completed",
        "created_at": "1999-01-01T00:00:00.000Z",
        "api_version": "1999-01-01",
        "account": {"id": "acc_evil", "name": "Evil"},
        "project": {"id":"prj_xyz789","name":"Customer Discovery Q1","status":"active"},
        "session": {"id":"ses_def456","duration_seconds":342},
        "insights": {"count":8,"objectives_covered":3}
    }"#;
    // Values are kept as the host wrote them (compact here), so the body is exact.
    let policy = Policy::default();
    let event = envelope::prepare(raw, &policy).expect("the spec's shape is accepted");
    let (events, _) = given([
        account_created("acc_abc123", Plan::Pro),
        webhook_created("acc_abc123", "wh_1"),
    ])
    .when(
        T0,
        CommandKind::Publish {
            account_id: acc("acc_abc123"),
            event,
            fresh_event_id: evt("evt_unused"),
            fan_out: fan("s"),
            first_index: 0,
            remembered: None,
        },
    )
    .events();
    let body = match events.as_slice() {
        [Event::EventPublished { body, .. }] => body.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        body,
        concat!(
            r#"{"id":"evt_m5k2j_8x7yAbCdEf","type":"session.processing.completed","#,
            r#""created_at":"2026-01-10T15:30:00.000Z","api_version":"2026-01-01","#,
            r#""account":{"id":"acc_abc123","name":"Account acc_abc123"},"#,
            r#""project":{"id":"prj_xyz789","name":"Customer Discovery Q1","status":"active"},"#,
            r#""session":{"id":"ses_def456","duration_seconds":342},"#,
            r#""insights":{"count":8,"objectives_covered":3}}"#
        )
    );
    let v: serde_json::Value = serde_json::from_str(&body).expect("valid JSON");
    assert_eq!(v["api_version"], API_VERSION);
}

#[test]
fn the_test_send_sample_is_marked_test() {
    let (events, _) = given([
        account_created("acc_1", Plan::Pro),
        webhook_created("acc_1", "wh_1"),
    ])
    .when(T0, send_test("acc_1", "wh_1", "dlv_t", "evt_t"))
    .events();
    let body = match events.as_slice() {
        [Event::TestDeliveryCreated { body, .. }] => body.clone(),
        other => panic!("{other:?}"),
    };
    assert!(
        body.starts_with(concat!(
            r#"{"id":"evt_t","type":"session.processing.completed","#,
            r#""created_at":"2026-01-10T15:30:00.000Z","api_version":"2026-01-01","#,
            r#""account":{"id":"acc_1","name":"Account acc_1"},"project":"#
        )),
        "{body}"
    );
    assert!(body.ends_with(r#","_test":true}"#), "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("valid JSON");
    assert_eq!(v["_test"], true);
    for key in [
        "project",
        "session",
        "respondent_attributes",
        "transcript",
        "insights",
        "links",
    ] {
        assert!(v.get(key).is_some_and(|x| !x.is_null()), "{key}");
    }
}

// ---------------------------------------------------------------- pausing and recovering

fn recover(webhook: &str, candidates: Vec<RecoverCandidate>) -> CommandKind {
    CommandKind::RecoverDeliveries {
        account_id: acc("acc_1"),
        webhook_id: wh(webhook),
        candidates,
    }
}

fn candidate(summary: DeliverySummary, succeeded: bool) -> RecoverCandidate {
    RecoverCandidate {
        delivery: summary,
        succeeded,
    }
}

/// `wh_1` disabled by hand with two paused publishes (`dlv_a00`, `dlv_b00`), then re-enabled.
fn paused_then_enabled() -> Driver {
    let mut d = pro_with_webhook(Policy::default());
    d.run(t(1), set_enabled("acc_1", "wh_1", false));
    d.run(t(2), publish("acc_1", "evt_1", "prj_1", "a"));
    d.run(t(3), publish("acc_1", "evt_2", "prj_1", "b"));
    d.run(t(4), set_enabled("acc_1", "wh_1", true));
    d
}

#[test]
fn enabling_leaves_paused_deliveries_paused() {
    let d = paused_then_enabled();
    assert_eq!(d.state.pending_count(), 0, "nothing was resent by enabling");
    assert_eq!(counter(&d.state, "wh_1"), 0);
}

#[test]
fn recover_sends_paused_deliveries_again_in_the_order_given_with_a_fresh_schedule() {
    let d = paused_then_enabled();
    let a = summary(&d, "dlv_a00", "wh_1", "evt_1", 0);
    let b = summary(&d, "dlv_b00", "wh_1", "evt_2", 0);
    let state = d
        .given()
        .when(
            t(5),
            recover(
                "wh_1",
                vec![candidate(a.clone(), false), candidate(b.clone(), false)],
            ),
        )
        .then_events(vec![Event::DeliveriesRecovered {
            webhook_id: wh("wh_1"),
            deliveries: vec![a, b],
            first_due: t(5),
            at: t(5),
        }]);
    assert_eq!(state.pending_count(), 2);
    let x = state.delivery(&dlv("dlv_a00")).expect("pending again");
    assert_eq!((x.attempts_made, x.max_attempts, x.due), (0, 5, t(5)));
}

#[test]
fn recover_never_resends_a_succeeded_delivery_or_a_test_send() {
    let d = paused_then_enabled();
    let a = summary(&d, "dlv_a00", "wh_1", "evt_1", 0);
    let test = DeliverySummary {
        test: true,
        ..summary(&d, "dlv_t", "wh_1", "evt_t", 1)
    };
    d.given()
        .when(
            t(5),
            recover("wh_1", vec![candidate(a, true), candidate(test, false)]),
        )
        .then_no_events();
}

#[test]
fn recover_is_refused_while_the_webhook_is_disabled() {
    let mut d = paused_then_enabled();
    d.run(t(5), set_enabled("acc_1", "wh_1", false));
    let a = summary(&d, "dlv_a00", "wh_1", "evt_1", 0);
    d.given()
        .when(t(6), recover("wh_1", vec![candidate(a, false)]))
        .then_rejects(Rejection::WebhookDisabled(wh("wh_1")));
}

#[test]
fn an_overlapping_recover_skips_deliveries_already_pending() {
    let mut d = paused_then_enabled();
    let a = summary(&d, "dlv_a00", "wh_1", "evt_1", 0);
    let b = summary(&d, "dlv_b00", "wh_1", "evt_2", 0);
    d.run(t(5), recover("wh_1", vec![candidate(a.clone(), false)]));
    d.given()
        .when(
            t(5),
            recover(
                "wh_1",
                vec![candidate(a, false), candidate(b.clone(), false)],
            ),
        )
        .then_events(vec![Event::DeliveriesRecovered {
            webhook_id: wh("wh_1"),
            deliveries: vec![b],
            first_due: t(5),
            at: t(5),
        }]);
}

#[test]
fn a_recovered_delivery_keeps_its_attempt_numbers_and_retries_on_a_fresh_schedule() {
    let policy = Policy::default();
    let mut d = pro_with_webhook(policy.clone());
    d.run(t(0), publish("acc_1", "evt_1", "prj_1", "a"));
    d.run(t(0), tick(1));
    d.run(t(1), response("dlv_a00", 1, 500, 10));
    // Paused with one attempt made; recovered later.
    d.run(t(2), set_enabled("acc_1", "wh_1", false));
    d.run(t(3), set_enabled("acc_1", "wh_1", true));
    let a = summary(&d, "dlv_a00", "wh_1", "evt_1", 1);
    d.run(t(4), recover("wh_1", vec![candidate(a, false)]));
    assert_eq!(
        d.run(t(4), tick(1)),
        vec![started(&policy, "dlv_a00", 2, t(4))]
    );
    // Its first failure after the recover waits the schedule's second delay, not its third.
    let (events, _) = d
        .given()
        .when(t(5), response("dlv_a00", 2, 500, 10))
        .events();
    assert!(matches!(
        &events[..],
        [Event::AttemptFailed { next_due: Some(due), .. }] if *due == t(5).plus(policy.retry_delays[1])
    ));
}

#[test]
fn a_delivery_open_when_paused_that_succeeds_does_not_reset_the_counter() {
    let mut d = pro_with_webhook(Policy::default());
    d.run(t(0), publish("acc_1", "evt_1", "prj_1", "a"));
    d.run(t(0), tick(1));
    let events = d.run(t(1), set_enabled("acc_1", "wh_1", false));
    assert_eq!(events[0], paused("dlv_a00", t(1)));
    d.run(t(2), response("dlv_a00", 1, 200, 10));
    assert_eq!(d.state.pending_count(), 0);
}

fn replay(event_id: &str, webhook_ids: Option<Vec<&str>>, seed: &str) -> CommandKind {
    CommandKind::ReplayEvent {
        account_id: acc("acc_1"),
        event_id: evt(event_id),
        event_type: COMPLETED.into(),
        project_id: prj("prj_1"),
        webhook_ids: webhook_ids.map(|ids| ids.into_iter().map(wh).collect()),
        fan_out: fan(seed),
    }
}

#[test]
fn a_replay_creates_new_deliveries_of_the_same_event_to_enabled_matches_only() {
    let mut d = pro_with_webhook(Policy::default());
    d.run(T0, create_webhook("acc_1", "wh_2", default_config()));
    d.run(t(1), publish("acc_1", "evt_1", "prj_1", "a"));
    d.run(t(2), set_enabled("acc_1", "wh_2", false));
    d.given()
        .when(t(3), replay("evt_1", None, "r"))
        .then_events(vec![Event::EventReplayed {
            account_id: acc("acc_1"),
            event_id: evt("evt_1"),
            event_type: COMPLETED.into(),
            deliveries: vec![pair("dlv_r00", "wh_1")],
            first_due: t(3),
            at: t(3),
        }]);
    d.given()
        .when(t(3), replay("evt_1", Some(vec!["wh_2"]), "r"))
        .then_rejects(Rejection::WebhookDisabled(wh("wh_2")));
    d.given()
        .when(t(3), replay("evt_1", Some(vec!["wh_9"]), "r"))
        .then_rejects(Rejection::WebhookNotFound(wh("wh_9")));
}

#[test]
fn the_failing_warning_and_the_recovered_alert_bracket_a_streak() {
    let policy = Policy {
        failing_alert_after: 2,
        auto_disable_after: 3,
        retry_delays: vec![DurationMs(0), DurationMs(0), DurationMs(0)],
        ..Policy::default()
    };
    let mut d = pro_with_webhook(policy);
    d.run(t(0), publish("acc_1", "evt_1", "prj_1", "a"));
    d.run(t(0), tick(1));
    assert_eq!(d.run(t(1), response("dlv_a00", 1, 500, 10)).len(), 1);
    d.run(t(1), tick(1));
    let events = d.run(t(2), response("dlv_a00", 2, 500, 10));
    assert_eq!(
        events.last(),
        Some(&alert(
            AlertKind::Failing,
            "wh_1",
            None,
            Some(AttemptError::HttpStatus),
            2,
            t(2)
        ))
    );
    d.run(t(2), tick(1));
    d.given()
        .when(t(3), response("dlv_a00", 3, 200, 10))
        .then_events(vec![
            Event::AttemptSucceeded {
                delivery_id: dlv("dlv_a00"),
                attempt: 3,
                status_code: 200,
                duration: DurationMs(10),
                started_at: t(2),
                at: t(3),
                detail: None,
            },
            alert(AlertKind::Recovered, "wh_1", None, None, 2, t(3)),
        ]);
}

// ---------------------------------------------------------------- the catalog and Hallway's rules

#[test]
fn a_test_send_delivers_the_example_of_the_type_it_names() {
    let config = WebhookConfig {
        events: vec![FAILED_TYPE.to_owned()],
        ..default_config()
    };
    let (events, state) = given_with(
        two_types(),
        [
            account_created("acc_1", Plan::Pro),
            webhook_created_with("acc_1", "wh_1", config),
        ],
    )
    .when(
        T0,
        CommandKind::SendTest {
            account_id: acc("acc_1"),
            webhook_id: wh("wh_1"),
            delivery_id: dlv("dlv_t"),
            event_id: evt("evt_t"),
            event_type: FAILED_TYPE.to_owned(),
            example_fields: r#","project":{"id":"prj_e"},"reason":"audio""#.to_owned(),
        },
    )
    .events();
    let [Event::TestDeliveryCreated {
        event_type, body, ..
    }] = events.as_slice()
    else {
        panic!("{events:?}")
    };
    assert_eq!(event_type, FAILED_TYPE);
    assert!(
        body.starts_with(r#"{"id":"evt_t","type":"session.processing.failed","#),
        "{body}"
    );
    assert!(
        body.ends_with(r#""account":{"id":"acc_1","name":"Account acc_1"},"project":{"id":"prj_e"},"reason":"audio","_test":true}"#),
        "{body}"
    );
    assert_eq!(
        state.delivery(&dlv("dlv_t")).map(|d| d.event_type.as_str()),
        Some(FAILED_TYPE),
        "the test delivery carries its own type"
    );
}

#[test]
fn a_test_send_of_a_type_the_webhook_does_not_take_is_refused() {
    given_with(
        two_types(),
        [
            account_created("acc_1", Plan::Pro),
            webhook_created("acc_1", "wh_1"),
        ],
    )
    .when(
        T0,
        CommandKind::SendTest {
            account_id: acc("acc_1"),
            webhook_id: wh("wh_1"),
            delivery_id: dlv("dlv_t"),
            event_id: evt("evt_t"),
            event_type: FAILED_TYPE.to_owned(),
            example_fields: String::new(),
        },
    )
    .then_rejects(Rejection::InvalidField {
        field: "event_type",
        message: format!("the webhook does not subscribe to \"{FAILED_TYPE}\""),
    });
}

#[test]
fn without_the_plan_rule_a_free_account_has_webhooks_and_its_events_fan_out() {
    let policy = Policy {
        require_pro_plan: false,
        ..Policy::default()
    };
    let g = given_with(policy.clone(), [account_created("acc_1", Plan::Free)]);
    g.when(T0, create_webhook("acc_1", "wh_1", default_config()))
        .result()
        .expect("a free account may have a webhook");
    let (events, _) = given_with(
        policy,
        [
            account_created("acc_1", Plan::Free),
            webhook_created("acc_1", "wh_1"),
        ],
    )
    .when(T0, publish("acc_1", "evt_1", "prj_1", "s"))
    .events();
    assert_eq!(deliveries_of(&events), vec![pair("dlv_s00", "wh_1")]);
    // With the rule (the default), the same account is refused.
    given([account_created("acc_1", Plan::Free)])
        .when(T0, create_webhook("acc_1", "wh_1", default_config()))
        .then_rejects(Rejection::PlanRequired(acc("acc_1")));
}

#[test]
fn without_the_project_rule_an_event_without_a_project_reaches_unfiltered_webhooks_only() {
    let policy = Policy {
        require_project: false,
        ..Policy::default()
    };
    let raw = br#"{"type":"session.processing.completed","id":"evt_1","n":1}"#;
    assert_eq!(
        envelope::prepare(raw, &Policy::default()),
        Err(Rejection::MissingField("project.id")),
        "the rule is on by default"
    );
    let event = envelope::prepare(raw, &policy).expect("no project needed");
    let filtered = WebhookConfig {
        project_ids: vec![prj("prj_a")],
        ..default_config()
    };
    let (events, _) = given_with(
        policy,
        [
            account_created("acc_1", Plan::Pro),
            webhook_created("acc_1", "wh_all"),
            webhook_created_with("acc_1", "wh_a", filtered),
        ],
    )
    .when(
        T0,
        CommandKind::Publish {
            account_id: acc("acc_1"),
            event,
            fresh_event_id: evt("evt_unused"),
            fan_out: fan("s"),
            first_index: 0,
            remembered: None,
        },
    )
    .events();
    assert_eq!(deliveries_of(&events), vec![pair("dlv_s00", "wh_all")]);
}

#[test]
fn a_repeat_is_compared_by_the_body_as_delivered_not_by_its_whitespace() {
    let policy = Policy::default();
    let a = envelope::prepare(
        br#"{"type":"session.processing.completed","id":"evt_1","project":{"id":"p"},"n":[1, 2],"s":"a  b"}"#,
        &policy,
    )
    .expect("prepares");
    let spaced = envelope::prepare(
        br#"{ "id" : "evt_1", "type" : "session.processing.completed",
              "project" : { "id" : "p" }, "n" : [ 1,2 ], "s" : "a  b",
              "created_at": "ignored: the engine sets it" }"#,
        &policy,
    )
    .expect("prepares");
    assert_eq!(
        a.digest, spaced.digest,
        "whitespace and engine fields do not count"
    );
    for other in [
        br#"{"type":"session.processing.completed","id":"evt_1","project":{"id":"p"},"n":[1,2],"s":"a b"}"#.as_slice(),
        br#"{"type":"session.processing.completed","id":"evt_1","project":{"id":"p"},"s":"a  b","n":[1,2]}"#,
        br#"{"type":"session.processing.completed","id":"evt_1","project":{"id":"p"},"n":[1,2]}"#,
    ] {
        let b = envelope::prepare(other, &policy).expect("prepares");
        assert_ne!(
            a.digest,
            b.digest,
            "{}: what receivers get differs",
            String::from_utf8_lossy(other)
        );
    }
    // Through decide: the spaced repeat answers the first answer, another body conflicts.
    let mut d = pro_with_webhook(policy);
    let publish_of = |event: &PreparedEvent, seed: &str| CommandKind::Publish {
        account_id: acc("acc_1"),
        event: event.clone(),
        fresh_event_id: evt("evt_unused"),
        fan_out: fan(seed),
        first_index: 0,
        remembered: None,
    };
    d.run(t(1), publish_of(&a, "a"));
    d.given()
        .when(t(2), publish_of(&spaced, "b"))
        .then_rejects(Rejection::EventExists {
            event_id: evt("evt_1"),
            deliveries: 1,
        });
    let changed = envelope::prepare(
        br#"{"type":"session.processing.completed","id":"evt_1","project":{"id":"p"},"n":[1,2,3]}"#,
        &Policy::default(),
    )
    .expect("prepares");
    d.given()
        .when(t(2), publish_of(&changed, "c"))
        .then_rejects(Rejection::EventConflict(evt("evt_1")));
    // Once the idempotency window has passed, the id is new again.
    let later = t(1).plus(Policy::default().retention).plus(DurationMs(1));
    d.run(later, CommandKind::ExpireIdempotencyKeys);
    assert!(d
        .given()
        .when(later, publish_of(&changed, "d"))
        .result()
        .is_ok());
}

// ---------------------------------------------------------------- account keys and deletion

fn rotate_key(account: &str, hash: &str, grace: DurationMs) -> CommandKind {
    CommandKind::RotateAccountKey {
        account_id: acc(account),
        api_key_hash: hash.into(),
        grace,
    }
}

#[test]
fn a_rotated_key_replaces_the_old_one_at_once_without_a_grace() {
    let mut d = pro_with_webhook(Policy::default());
    assert!(d.state.account_by_key_hash("hash_acc_1", t(1)).is_some());
    d.run(t(1), rotate_key("acc_1", "hash_new", DurationMs(0)));
    assert!(d.state.account_by_key_hash("hash_acc_1", t(1)).is_none());
    assert_eq!(
        d.state
            .account_by_key_hash("hash_new", t(1))
            .map(|a| a.id.as_str()),
        Some("acc_1")
    );
    d.state.check_invariants();
}

#[test]
fn a_grace_keeps_the_old_key_until_it_ends_and_a_second_rotation_drops_it() {
    let mut d = pro_with_webhook(Policy::default());
    let events = d.run(
        t(10),
        rotate_key("acc_1", "hash_2", DurationMs::from_hours(24)),
    );
    let until = t(10).plus(DurationMs::from_hours(24));
    assert_eq!(
        events,
        vec![Event::AccountKeyRotated {
            account_id: acc("acc_1"),
            api_key_hash: "hash_2".into(),
            previous_valid_until: Some(until),
            at: t(10),
        }]
    );
    let before_end = Timestamp(until.0 - 1);
    assert!(d
        .state
        .account_by_key_hash("hash_acc_1", before_end)
        .is_some());
    assert!(d.state.account_by_key_hash("hash_2", before_end).is_some());
    assert!(d.state.account_by_key_hash("hash_acc_1", until).is_none());
    d.state.check_invariants();
    // Another rotation within the grace: the first key stops at once, the second has one.
    d.run(
        t(20),
        rotate_key("acc_1", "hash_3", DurationMs::from_hours(1)),
    );
    assert!(d.state.account_by_key_hash("hash_acc_1", t(20)).is_none());
    assert!(d.state.account_by_key_hash("hash_2", t(20)).is_some());
    assert!(d.state.account_by_key_hash("hash_3", t(20)).is_some());
    d.state.check_invariants();
    // Replayed from the log, the same keys work.
    let mut replayed = State::new(Policy::default());
    for e in &d.log {
        replayed.apply(e);
    }
    assert_eq!(replayed, d.state);
}

#[test]
fn a_grace_longer_than_seven_days_is_refused() {
    given([account_created("acc_1", Plan::Pro)])
        .when(
            t(1),
            rotate_key("acc_1", "h", DurationMs::from_hours(24 * 7 + 1)),
        )
        .then_rejects(Rejection::InvalidField {
            field: "grace",
            message: "must be at most 168 hours (7 days)".into(),
        });
    given([])
        .when(t(1), rotate_key("acc_x", "h", DurationMs(0)))
        .then_rejects(Rejection::AccountNotFound(acc("acc_x")));
}

#[test]
fn deleting_an_account_deletes_its_webhooks_cancels_their_deliveries_and_forgets_it() {
    let mut d = pro_with_webhook(Policy::default());
    d.run(t(0), create_webhook("acc_1", "wh_2", default_config()));
    d.run(t(0), create_account("acc_2", Plan::Pro));
    d.run(t(0), create_webhook("acc_2", "wh_other", default_config()));
    d.run(t(1), publish("acc_1", "evt_1", "prj_1", "a"));
    d.run(t(1), publish("acc_2", "evt_1", "prj_1", "b"));
    d.run(t(1), tick(1));
    assert!(d.state.in_flight_count() > 0, "an attempt is under way");
    let events = d.run(
        t(2),
        CommandKind::DeleteAccount {
            account_id: acc("acc_1"),
        },
    );
    assert!(matches!(events.last(), Some(Event::AccountDeleted { .. })));
    let deleted: Vec<&WebhookId> = events
        .iter()
        .filter_map(|e| match e {
            Event::WebhookDeleted { webhook_id, .. } => Some(webhook_id),
            _ => None,
        })
        .collect();
    assert_eq!(deleted, [&wh("wh_1"), &wh("wh_2")]);
    assert!(d.state.account(&acc("acc_1")).is_none());
    assert!(d.state.webhook(&wh("wh_1")).is_none());
    assert!(d.state.account_by_key_hash("hash_acc_1", t(2)).is_none());
    assert!(d.state.published(&acc("acc_1"), &evt("evt_1")).is_none());
    assert!(
        d.state
            .deliveries()
            .all(|x| x.account_id != acc("acc_1") || x.cancelled),
        "nothing of the account is sent any more"
    );
    // The other account is untouched.
    assert!(d.state.published(&acc("acc_2"), &evt("evt_1")).is_some());
    assert!(d.state.webhook(&wh("wh_other")).is_some());
    d.state.check_invariants();
    // The id can be taken again, by a new account without the old one's webhooks.
    d.run(t(3), create_account("acc_1", Plan::Pro));
    assert!(d.state.webhooks_of(&acc("acc_1")).is_empty());
    d.given()
        .when(
            t(4),
            CommandKind::DeleteAccount {
                account_id: acc("acc_9"),
            },
        )
        .then_rejects(Rejection::AccountNotFound(acc("acc_9")));
}
