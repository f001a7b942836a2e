//! The log's format stays readable: event variants and history statuses added for pausing,
//! recovering and alerts come after every earlier one, so earlier records decode unchanged.

use hallway_domain::*;
use hallway_store::DeliveryStatus;

/// The variant index bincode writes first (a one-byte varint below 251).
fn tag<T: serde::Serialize>(value: &T) -> u8 {
    let bytes = bincode::serde::encode_to_vec(value, bincode::config::standard()).expect("encodes");
    bytes[0]
}

#[test]
fn new_event_variants_come_after_every_earlier_one() {
    let at = Timestamp(1);
    let d = || DeliveryId::from("dlv_1");
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
