//! Publishing an id again: the same body answers the first answer and sends nothing; another
//! body answers 409 `conflict` and sends nothing, so a host never believes new content went
//! out under an id receivers already deduplicate.

mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_id_with_the_same_body_repeats_the_answer_and_another_body_conflicts() {
    let home = Home::new();
    let receiver = Receiver::status(200).await;
    let server = Server::permissive(&home, &[]).await;
    server.create_account("acc_1", "Acme", "pro").await;
    server.create_webhook("acc_1", "R", &receiver.url()).await;
    let path = "/v1/accounts/acc_1/events";
    let first = br#"{"type":"session.processing.completed","id":"evt_r1","project":{"id":"prj_1"},"session":{"id":"ses_1","duration_seconds":342}}"#;
    let (status, v) = server
        .http
        .raw_json("POST", path, Some(&server.token), first)
        .await;
    assert_eq!(
        (status, &v),
        (202, &json!({"id": "evt_r1", "deliveries": 1}))
    );
    receiver.wait_for(1).await;

    // The same event re-serialised by another client (whitespace, the engine's own fields).
    let again = br#"{ "id": "evt_r1", "type": "session.processing.completed",
        "created_at": "2026-01-10T15:30:00.000Z",
        "project": { "id": "prj_1" }, "session": { "id": "ses_1", "duration_seconds": 342 } }"#;
    let (status, v) = server
        .http
        .raw_json("POST", path, Some(&server.token), again)
        .await;
    assert_eq!(
        (status, &v),
        (200, &json!({"id": "evt_r1", "deliveries": 1}))
    );

    // Another body under the same id: refused, not silently answered as a repeat.
    let changed = br#"{"type":"session.processing.completed","id":"evt_r1","project":{"id":"prj_1"},"session":{"id":"ses_1","duration_seconds":343}}"#;
    let got = server
        .http
        .raw_json("POST", path, Some(&server.token), changed)
        .await;
    let message = assert_error(&got, 409, "conflict");
    assert!(
        message.contains("evt_r1") && message.contains("different body"),
        "{message}"
    );
    // Nothing more was sent for either.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 1);
    let history = server
        .deliveries("acc_1", &server_webhook(&server).await)
        .await;
    assert_eq!(history.len(), 1);
}

async fn server_webhook(server: &Server) -> String {
    let (_, v) = server
        .admin("GET", "/v1/accounts/acc_1/webhooks", None)
        .await;
    v["data"][0]["id"].as_str().expect("id").to_owned()
}
