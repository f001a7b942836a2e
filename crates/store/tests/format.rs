//! The log's format stays readable: event variants and history statuses added for pausing,
//! recovering and alerts come after every earlier one, so earlier records decode unchanged.

use hallway_domain::*;
use hallway_store::DeliveryStatus;
use hallway_testkit::ids::dlv;

/// The variant index bincode writes first (a one-byte varint below 251).
fn tag<T: serde::Serialize>(value: &T) -> u8 {
    let bytes = bincode::serde::encode_to_vec(value, bincode::config::standard()).expect("encodes");
    bytes[0]
}

#[test]
fn new_event_variants_come_after_every_earlier_one() {
    let at = Timestamp(1);
    let d = || dlv("dlv_1");
    let w = || WebhookId::from("wh_1");
    assert_eq!(
        tag(&Event::IdempotencyKeysExpired { before: at, at }),
        16,
        "the last variant before pausing keeps its index"
    );
    let added = [
        Event::DeliveriesPaused {
            account_id: AccountId::from("acc_1"),
            event_id: EventId::from("evt_1"),
            event_type: SESSION_PROCESSING_COMPLETED.into(),
            deliveries: vec![(d(), w())],
            at,
        },
        Event::DeliveryPaused {
            delivery_id: d(),
            at,
        },
        Event::DeliveriesRecovered {
            webhook_id: w(),
            deliveries: Vec::new(),
            first_due: at,
            at,
        },
        Event::EventReplayed {
            account_id: AccountId::from("acc_1"),
            event_id: EventId::from("evt_1"),
            event_type: SESSION_PROCESSING_COMPLETED.into(),
            deliveries: Vec::new(),
            first_due: at,
            at,
        },
        Event::AlertRaised {
            alert: Alert {
                kind: AlertKind::Disabled,
                webhook_id: w(),
                account_id: AccountId::from("acc_1"),
                reason: Some(DisabledReason::ConsecutiveFailures),
                last_error: Some(AttemptError::Timeout),
                consecutive_failures: 10,
            },
            at,
        },
    ];
    for (i, e) in added.iter().enumerate() {
        assert_eq!(tag(e) as usize, 17 + i, "{e:?}");
        let bytes = bincode::serde::encode_to_vec(e, bincode::config::standard()).expect("encodes");
        let (back, _): (Event, usize) =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard())
                .expect("decodes");
        assert_eq!(&back, e);
    }
}

#[test]
fn paused_is_a_new_status_after_the_earlier_ones() {
    assert_eq!(tag(&DeliveryStatus::Cancelled), 3);
    assert_eq!(tag(&DeliveryStatus::Paused), 4);
}

/// A data directory of another layout (an earlier build of the unreleased 0.1) is refused at
/// open with an error that says what to do, rather than read as garbage; a new one is numbered
/// and opens again.
#[test]
fn a_directory_of_another_layout_is_refused_at_open() {
    use hallway_store::{codec, EventLog, SledStore, StoreError};
    /// A directory with one record whose layout number `change` rewrote.
    fn written(change: impl FnOnce(&sled::Tree)) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SledStore::open(dir.path()).expect("a new directory opens");
        store
            .append(&[Event::AccountCreated {
                account_id: AccountId::from("acc_1"),
                name: "Acme".into(),
                plan: Plan::Pro,
                api_key_hash: "hash".into(),
                at: Timestamp(1),
            }])
            .expect("appends");
        change(&store.raw_db().open_tree("meta").expect("tree"));
        store.flush().expect("flushes");
        dir
    }

    let dir = written(|_| {});
    let store = SledStore::open(dir.path()).expect("its own layout opens again");
    assert_eq!(store.last_seq().expect("last"), 1);

    let dir = written(|meta| {
        let one = codec::encode(&1u64).expect("encodes");
        meta.insert("layout", one).expect("writes");
    });
    let err = SledStore::open(dir.path()).expect_err("layout 1 is refused");
    assert!(
        matches!(
            err,
            StoreError::Layout {
                found: Some(1),
                expected: 8,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("start with a new data directory"),
        "{err}"
    );

    // Data without a layout number predates numbering.
    let dir = written(|meta| {
        meta.remove("layout").expect("removes");
    });
    let err = SledStore::open(dir.path()).expect_err("an unnumbered layout is refused");
    assert!(
        matches!(err, StoreError::Layout { found: None, .. }),
        "{err:?}"
    );
}
