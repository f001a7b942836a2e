//! The rules of signing secrets and schemes: a rotation's optional grace (the replaced
//! secret signs after the new one until `now + grace`, capped, a fact in the log), resealing
//! under a new master key, and the signature scheme a webhook chooses.

mod common;

use common::*;
use hallway_domain::*;

const HOUR: DurationMs = DurationMs::from_hours(1);

fn rotated_with_grace() -> State {
    given([
        account_created("acc_1", Plan::Pro),
        webhook_created("acc_1", "wh_1"),
    ])
    .when(
        t(10),
        rotate_secret_with_grace("acc_1", "wh_1", "whsec_new", HOUR),
    )
    .then_events(vec![Event::SecretRotated {
        webhook_id: wh("wh_1"),
        secret: SealedSecret("whsec_new".into()),
        previous: Some(PreviousSecret {
            secret: secret_of("wh_1"),
            until: t(10 + 3600),
        }),
        at: t(10),
    }])
}

#[test]
fn a_rotation_with_a_grace_keeps_the_old_secret_signing_until_its_end() {
    let state = rotated_with_grace();
    let w = state.webhook(&wh("wh_1")).expect("live");
    assert_eq!(w.secret, SealedSecret("whsec_new".into()));
    let previous = w.previous_secret.as_ref().expect("a grace");
    // The end is decided from the command's time: signing at the last millisecond of the
    // grace uses both secrets, at its end only the new one.
    assert!(previous.signs_at(t(10)));
    assert!(previous.signs_at(Timestamp(t(10 + 3600).0 - 1)));
    assert!(!previous.signs_at(t(10 + 3600)));

    let body = br#"{"id":"evt_1"}"#;
    let during = signature::sign_with("whsec_new", Some("whsec_wh_1"), 1_768_059_100, body);
    let parsed = signature::parse(&during).expect("parses");
    assert_eq!(parsed.signatures.len(), 2, "one signature per secret");
    // The new secret's signature comes first: a receiver reading only the first v1 passes
    // with the new secret.
    assert_eq!(
        during,
        format!(
            "t=1768059100,v1={},v1={}",
            signature::compute("whsec_new", 1_768_059_100, body),
            signature::compute("whsec_wh_1", 1_768_059_100, body)
        )
    );
    for secret in ["whsec_new", "whsec_wh_1"] {
        assert_eq!(
            signature::verify(secret, &during, body, 1_768_059_100, 300),
            Ok(())
        );
    }
}

#[test]
fn a_rotation_without_a_grace_or_with_a_zero_one_invalidates_the_old_secret_at_once() {
    for grace in [None, Some(DurationMs(0))] {
        let state = given([
            account_created("acc_1", Plan::Pro),
            webhook_created("acc_1", "wh_1"),
        ])
        .when(
            t(1),
            CommandKind::RotateSecret {
                account_id: acc("acc_1"),
                webhook_id: wh("wh_1"),
                secret: SealedSecret("whsec_new".into()),
                grace,
            },
        )
        .then_events(vec![Event::SecretRotated {
            webhook_id: wh("wh_1"),
            secret: SealedSecret("whsec_new".into()),
            previous: None,
            at: t(1),
        }]);
        assert_eq!(
            state.webhook(&wh("wh_1")).expect("live").previous_secret,
            None
        );
    }
}

#[test]
fn a_grace_longer_than_a_week_is_refused_naming_the_field() {
    let g = given([
        account_created("acc_1", Plan::Pro),
        webhook_created("acc_1", "wh_1"),
    ]);
    g.when(
        t(1),
        rotate_secret_with_grace(
            "acc_1",
            "wh_1",
            "whsec_new",
            DurationMs(MAX_SECRET_GRACE.0 + 1),
        ),
    )
    .then_rejects(Rejection::InvalidField {
        field: "grace",
        message: "must be at most 168 hours (7 days)".into(),
    });
    let (events, _) = g
        .when(
            t(1),
            rotate_secret_with_grace("acc_1", "wh_1", "whsec_new", MAX_SECRET_GRACE),
        )
        .events();
    assert!(matches!(
        &events[..],
        [Event::SecretRotated { previous: Some(p), .. }] if p.until == t(1).plus(MAX_SECRET_GRACE)
    ));
}

#[test]
fn a_rotation_during_a_grace_keeps_only_the_secret_it_replaces() {
    let state = rotated_with_grace();
    let (events, state) = given_state(state)
        .when(
            t(20),
            rotate_secret_with_grace("acc_1", "wh_1", "whsec_newer", HOUR),
        )
        .events();
    assert_eq!(events.len(), 1);
    let w = state.webhook(&wh("wh_1")).expect("live");
    assert_eq!(w.secret, SealedSecret("whsec_newer".into()));
    assert_eq!(
        w.previous_secret,
        Some(PreviousSecret {
            secret: SealedSecret("whsec_new".into()),
            until: t(20 + 3600),
        }),
        "at most two secrets sign; the oldest is dropped"
    );
}

#[test]
fn resealing_keeps_a_running_grace_and_drops_an_ended_one() {
    let reseal = || CommandKind::ResealSecret {
        account_id: acc("acc_1"),
        webhook_id: wh("wh_1"),
        secret: SealedSecret("sealed_new".into()),
        previous: Some(SealedSecret("sealed_old".into())),
    };
    given_state(rotated_with_grace())
        .when(t(100), reseal())
        .then_events(vec![Event::SecretRotated {
            webhook_id: wh("wh_1"),
            secret: SealedSecret("sealed_new".into()),
            previous: Some(PreviousSecret {
                secret: SealedSecret("sealed_old".into()),
                until: t(10 + 3600),
            }),
            at: t(100),
        }]);
    given_state(rotated_with_grace())
        .when(t(10 + 3600), reseal())
        .then_events(vec![Event::SecretRotated {
            webhook_id: wh("wh_1"),
            secret: SealedSecret("sealed_new".into()),
            previous: None,
            at: t(10 + 3600),
        }]);
}

#[test]
fn the_grace_survives_a_snapshot_and_a_replay() {
    let mut d = Driver::new(Policy::default());
    d.run(t(0), create_account("acc_1", Plan::Pro));
    d.run(t(0), create_webhook("acc_1", "wh_1", default_config()));
    d.run(
        t(5),
        rotate_secret_with_grace("acc_1", "wh_1", "whsec_new", HOUR),
    );
    let live = d.state.clone();
    let replayed = hallway_testkit::driver::replay(Policy::default(), d.log.clone());
    assert_eq!(replayed, live);
    let config = bincode::config::standard();
    let bytes = bincode::serde::encode_to_vec(SnapshotForm(&live), config).expect("encodes");
    let (back, _): (FromSnapshot, usize) =
        bincode::serde::decode_from_slice(&bytes, config).expect("decodes");
    assert_eq!(back.0, live);
    assert_eq!(
        back.0
            .webhook(&wh("wh_1"))
            .and_then(|w| w.previous_secret.clone())
            .map(|p| p.until),
        Some(t(5 + 3600))
    );
}

#[test]
fn a_webhook_keeps_the_scheme_it_was_created_with_until_an_update_changes_it() {
    let standard = WebhookConfig {
        signature_scheme: SignatureScheme::Standard,
        ..default_config()
    };
    let state = given([account_created("acc_1", Plan::Pro)])
        .when(t(1), create_webhook("acc_1", "wh_1", standard.clone()))
        .then_events(vec![Event::WebhookCreated {
            webhook_id: wh("wh_1"),
            account_id: acc("acc_1"),
            config: standard.clone(),
            secret: secret_of("wh_1"),
            at: t(1),
        }]);
    assert_eq!(
        state
            .webhook(&wh("wh_1"))
            .expect("live")
            .config
            .signature_scheme,
        SignatureScheme::Standard
    );
    // Renaming leaves the scheme alone; asking for the spec's scheme switches back.
    let (_, state) = given_state(state)
        .when(
            t(2),
            update_webhook(
                "acc_1",
                "wh_1",
                WebhookChanges {
                    name: Some("Renamed".into()),
                    ..WebhookChanges::default()
                },
            ),
        )
        .events();
    assert_eq!(
        state
            .webhook(&wh("wh_1"))
            .expect("live")
            .config
            .signature_scheme,
        SignatureScheme::Standard
    );
    let state = given_state(state)
        .when(
            t(3),
            update_webhook(
                "acc_1",
                "wh_1",
                WebhookChanges {
                    signature_scheme: Some(SignatureScheme::Hallway),
                    ..WebhookChanges::default()
                },
            ),
        )
        .then_events(vec![Event::WebhookUpdated {
            webhook_id: wh("wh_1"),
            config: WebhookConfig {
                name: "Renamed".into(),
                signature_scheme: SignatureScheme::Hallway,
                ..standard
            },
            at: t(3),
        }]);
    assert_eq!(
        state
            .webhook(&wh("wh_1"))
            .expect("live")
            .config
            .signature_scheme,
        SignatureScheme::Hallway
    );
}

#[test]
fn the_scheme_is_spelled_as_the_api_spells_it() {
    for scheme in [SignatureScheme::Hallway, SignatureScheme::Standard] {
        assert_eq!(SignatureScheme::parse(scheme.as_str()), Some(scheme));
        assert_eq!(
            serde_json::to_string(&scheme).expect("encodes"),
            format!("\"{}\"", scheme.as_str())
        );
    }
    assert_eq!(SignatureScheme::default(), SignatureScheme::Hallway);
    assert_eq!(SignatureScheme::parse("standard_webhooks"), None);
    assert_eq!(SignatureScheme::parse("Hallway"), None);
}
