//! Attempt detail lives in history only: a delivery's record keeps what each attempt sent and
//! got back, log records leave it out, a reopen keeps it, retention removes it with the
//! record, and one attempt's share of a record is bounded.

use hallway_domain::attempt::{
    MAX_ERROR_MESSAGE_BYTES, MAX_RESPONSE_BODY_BYTES, MAX_RESPONSE_HEADER_BYTES,
};
use hallway_domain::*;
use hallway_store::{codec, AttemptRecord, EventLog, ReadModel, SledStore};

const T0: Timestamp = Timestamp(1_768_059_000_000);
const DLV: &str = "dlv_detail00";

fn events(detail: &AttemptDetail) -> Vec<Event> {
    vec![
        Event::EventPublished {
            account_id: AccountId::from("acc_1"),
            event_id: EventId::from("evt_1"),
            event_type: SESSION_PROCESSING_COMPLETED.into(),
            project_id: ProjectId::from("prj_1"),
            body: r#"{"id":"evt_1"}"#.into(),
            digest: BodyDigest::default(),
            deliveries: vec![(hallway_testkit::ids::dlv(DLV), WebhookId::from("wh_1"))],
            first_due: T0,
            at: T0,
        },
        Event::AttemptStarted {
            delivery_id: hallway_testkit::ids::dlv(DLV),
            attempt: 1,
            deadline: T0.plus(DurationMs::from_secs(60)),
            at: T0,
        },
        Event::AttemptFailed {
            delivery_id: hallway_testkit::ids::dlv(DLV),
            attempt: 1,
            status_code: Some(500),
            error: AttemptError::HttpStatus,
            duration: DurationMs(12),
            started_at: T0,
            next_due: None,
            detail: Some(std::sync::Arc::new(detail.clone())),
            at: T0.plus(DurationMs(12)),
        },
    ]
}

/// What a receiver that answers 500 with a short text sends back, and what was sent to it.
fn typical() -> AttemptDetail {
    AttemptDetail {
        error_message: None,
        request_headers: vec![
            ("content-type".into(), "application/json".into()),
            ("user-agent".into(), "Hallway-Webhooks/1.0".into()),
            (
                "x-hallway-signature".into(),
                format!("t=1768059000,v1={}", "a".repeat(64)),
            ),
            (
                "x-hallway-event-id".into(),
                "evt_0123456789abcdef01234567".into(),
            ),
        ],
        response_headers: vec![
            ("content-type".into(), "text/plain; charset=utf-8".into()),
            ("content-length".into(), "21".into()),
            ("date".into(), "Sat, 10 Jan 2026 15:30:00 GMT".into()),
        ],
        response_body: "database unavailable".into(),
        response_body_truncated: false,
    }
}

/// The largest detail the limits allow (with a grace's two signatures in the request).
fn largest() -> AttemptDetail {
    let mut d = typical();
    d.error_message = Some("e".repeat(MAX_ERROR_MESSAGE_BYTES));
    d.request_headers[2].1 = format!("t=1768059000,v1={},v1={}", "a".repeat(64), "b".repeat(64));
    d.response_headers = (0..MAX_RESPONSE_HEADER_BYTES / 64)
        .map(|i| (format!("x-h{i:03}"), "v".repeat(58)))
        .collect();
    d.response_body = "b".repeat(MAX_RESPONSE_BODY_BYTES);
    d.response_body_truncated = true;
    d.bounded()
}

#[test]
fn history_keeps_the_detail_the_log_leaves_it_out_and_retention_removes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let detail = typical();
    {
        let store = SledStore::open(dir.path()).expect("opens");
        store.append(&events(&detail)).expect("appends");
        store.flush().expect("flushes");
        let logged: Vec<Event> = store
            .read_log(1)
            .flat_map(|r| r.expect("reads").1)
            .collect();
        match &logged[2] {
            Event::AttemptFailed { detail, .. } => assert_eq!(detail, &None),
            other => panic!("{other:?}"),
        }
    }
    let store = SledStore::open(dir.path()).expect("reopens");
    let record = store
        .delivery(&WebhookId::from("wh_1"), &hallway_testkit::ids::dlv(DLV))
        .expect("reads")
        .expect("kept");
    assert_eq!(record.attempts[0].detail.as_deref(), Some(&detail));
    assert_eq!(store.check_projections().expect("consistent"), 1);
    // The failed delivery is finished: retention takes the record, detail and all.
    assert_eq!(store.prune(T0.plus(DurationMs(1))).expect("prunes"), 1);
    assert_eq!(
        store
            .delivery(&WebhookId::from("wh_1"), &hallway_testkit::ids::dlv(DLV))
            .expect("reads"),
        None
    );
}

#[test]
fn one_attempt_adds_a_bounded_number_of_bytes_to_its_record() {
    let record = |detail: Option<AttemptDetail>| AttemptRecord {
        attempt: 1,
        started_at: T0,
        duration_ms: 12,
        status_code: Some(500),
        error: Some(AttemptError::HttpStatus),
        detail: detail.map(std::sync::Arc::new),
    };
    let size = |detail| codec::encode(&record(detail)).expect("encodes").len();
    let bare = size(None);
    let typical = size(Some(typical())) - bare;
    let largest = size(Some(largest())) - bare;
    eprintln!(
        "bytes per attempt: without detail {bare}, typical detail +{typical}, largest +{largest}"
    );
    assert!(typical < 512, "{typical}");
    // 4 KiB of body, 4 KiB of response headers, 512 bytes of error and the request's headers.
    assert!(largest <= 9 * 1024 + 512, "{largest}");
}
