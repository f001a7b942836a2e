//! Snapshot bytes are a format on disk: states encode exactly as the fixtures, and the
//! fixtures decode into equal states. The fixtures pin the current layout (the store's
//! `LAYOUT`): a change to them is a change of format, which needs that number raised so that
//! older data directories are refused rather than misread. `UPDATE_SNAPSHOT_FIXTURES=1`
//! rewrites them from the histories below.

use hallway_domain::*;

/// Two small histories whose states hold at most one entry per hash map, so that their
/// encodings are deterministic: a delivery waiting, then the same delivery with its attempt
/// open (a webhook with an in-flight count of 1).
fn histories() -> [Vec<Event>; 2] {
    let t0 = Timestamp(1_768_059_000_000);
    let webhook = |id: &str| Event::WebhookCreated {
        webhook_id: WebhookId::from(id),
        account_id: AccountId::from("acc_1"),
        config: WebhookConfig {
            name: format!("Hook {id}"),
            url: "https://hooks.example.com/hallway".into(),
            description: Some("notes".into()),
            events: vec![SESSION_PROCESSING_COMPLETED.to_owned()],
            project_ids: vec![ProjectId::from("prj_a")],
            signature_scheme: SignatureScheme::Standard,
        },
        secret: SealedSecret(format!("whsec_{id}")),
        at: t0,
    };
    let waiting = vec![
        Event::AccountCreated {
            account_id: AccountId::from("acc_1"),
            name: "Acme".into(),
            plan: Plan::Pro,
            api_key_hash: "hash_1".into(),
            at: t0,
        },
        webhook("wh_1"),
        webhook("wh_2"),
        Event::SecretRotated {
            webhook_id: WebhookId::from("wh_2"),
            secret: SealedSecret("whsec_wh_2_new".into()),
            previous: Some(PreviousSecret {
                secret: SealedSecret("whsec_wh_2".into()),
                until: Timestamp(t0.0 + 3_600_000),
            }),
            at: t0,
        },
        Event::EventPublished {
            account_id: AccountId::from("acc_1"),
            event_id: EventId::from("evt_1"),
            event_type: SESSION_PROCESSING_COMPLETED.to_owned(),
            project_id: ProjectId::from("prj_a"),
            digest: BodyDigest::default(),
            body: "{}".into(),
            deliveries: vec![(
                FanOutId::from_bytes([0xa; 16]).delivery(0),
                WebhookId::from("wh_1"),
            )],
            first_due: Timestamp(t0.0 + 1_000),
            at: t0,
        },
    ];
    let mut open = waiting.clone();
    open.push(Event::AttemptStarted {
        delivery_id: FanOutId::from_bytes([0xa; 16]).delivery(0),
        attempt: 1,
        deadline: Timestamp(t0.0 + 61_000),
        at: Timestamp(t0.0 + 1_000),
    });
    [waiting, open]
}

fn state_of(events: &[Event]) -> State {
    let mut state = State::new(Policy::default());
    for e in events {
        state.apply(e);
    }
    state
}

const FIXTURES: [(&str, &[u8], &[u8]); 2] = [
    (
        "waiting",
        include_bytes!("fixtures/waiting.snapshot.bin"),
        include_bytes!("fixtures/waiting.state.bin"),
    ),
    (
        "open",
        include_bytes!("fixtures/open.snapshot.bin"),
        include_bytes!("fixtures/open.state.bin"),
    ),
];

#[test]
fn states_encode_as_the_fixtures_and_the_fixtures_decode_into_the_states() {
    let config = bincode::config::standard();
    // A deliberate change of layout comes with a new record format version in the store
    // (`hallway_store::codec::FORMAT_VERSION`) and new fixtures, written by this switch.
    if std::env::var_os("UPDATE_SNAPSHOT_FIXTURES").is_some() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        for ((name, _, _), events) in FIXTURES.into_iter().zip(histories()) {
            let state = state_of(&events);
            let snapshot = bincode::serde::encode_to_vec(SnapshotForm(&state), config).unwrap();
            let own = bincode::serde::encode_to_vec(&state, config).unwrap();
            std::fs::write(dir.join(format!("{name}.snapshot.bin")), snapshot).unwrap();
            std::fs::write(dir.join(format!("{name}.state.bin")), own).unwrap();
        }
        return;
    }
    for ((name, snapshot, own), events) in FIXTURES.into_iter().zip(histories()) {
        let state = state_of(&events);
        let encoded = bincode::serde::encode_to_vec(SnapshotForm(&state), config).unwrap();
        assert_eq!(encoded, snapshot, "{name}: snapshot form bytes");
        let encoded = bincode::serde::encode_to_vec(&state, config).unwrap();
        assert_eq!(encoded, own, "{name}: the state's own encoding");

        let (back, _): (FromSnapshot, usize) =
            bincode::serde::decode_from_slice(snapshot, config).expect("decodes");
        back.0.check_invariants();
        assert_eq!(back.0, state, "{name}: decoded snapshot form");
        let (back, _): (State, usize) =
            bincode::serde::decode_from_slice(own, config).expect("decodes");
        back.check_invariants();
        assert_eq!(back, state, "{name}: decoded own encoding");
    }
    let open = state_of(&histories()[1]);
    assert_eq!(open.in_flight_of(&WebhookId::from("wh_1")), 1);
    assert_eq!(open.in_flight_count(), 1);
}
