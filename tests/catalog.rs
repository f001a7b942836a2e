//! The event catalog end to end: `--event-catalog` declares the types, `GET /v1/event-types`
//! lists them, webhooks and publishes are held to them, and a test send delivers the example
//! of the webhook's own type. Hallway's rules (the Pro plan, `project.id`) are on unless
//! switched off.

mod common;

use common::*;
use serde_json::json;

const CATALOG: &str = r#"[
  {"name": "invoice.paid", "description": "An invoice was paid.",
   "example": {"project": {"id": "prj_billing"}, "invoice": {"id": "inv_1", "amount_cents": 4200}}},
  {"name": "session.processing.completed", "description": "Processed.",
   "example": {"project": {"id": "prj_1"}, "session": {"id": "ses_1"}}}
]"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_catalog_is_the_spec_s_one_type_with_its_example() {
    let home = Home::new();
    let server = Server::permissive(&home, &[]).await;
    let (_, key) = server.create_account("acc_1", "Acme", "pro").await;
    // Any valid token reads it: an account key too.
    let (status, v) = server
        .call("GET", "/v1/event-types", Some(&key), None)
        .await;
    assert_eq!(status, 200, "{v}");
    let data = v["data"].as_array().expect("data");
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["name"], EVENT_TYPE);
    assert!(!data[0]["description"].as_str().unwrap_or("").is_empty());
    assert_eq!(data[0]["example"]["project"]["id"], "prj_xyz789");
    assert_eq!(data[0]["example"]["transcript"]["word_count"], 1240);
    let got = server.call("GET", "/v1/event-types", None, None).await;
    assert_error(&got, 401, "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_file_declares_the_types_and_test_sends_use_their_examples() {
    let home = Home::new();
    let path = home.path("catalog.json");
    std::fs::write(&path, CATALOG).expect("write the catalog");
    let receiver = Receiver::status(200).await;
    let server = Server::permissive(&home, &["--event-catalog", &arg(&path)]).await;
    server.create_account("acc_1", "Acme", "pro").await;

    let (status, v) = server.admin("GET", "/v1/event-types", None).await;
    assert_eq!(status, 200, "{v}");
    let names: Vec<&str> = v["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["invoice.paid", "session.processing.completed"],
        "declared order"
    );
    // The example keeps its members' order.
    let raw = server
        .http
        .send("GET", "/v1/event-types", Some(&server.token), None)
        .await;
    let text = String::from_utf8_lossy(&raw.body).into_owned();
    assert!(
        text.contains(r#""example":{"project":{"id":"prj_billing"},"invoice":{"id":"inv_1","amount_cents":4200}}"#),
        "{text}"
    );

    // Subscribing to a type outside the catalog is refused, as is publishing one.
    let got = server
        .admin(
            "POST",
            "/v1/accounts/acc_1/webhooks",
            Some(json!({"name": "X", "url": receiver.url(), "events": ["invoice.voided"]})),
        )
        .await;
    assert_validation(&got, "events");
    let got = server
        .publish(
            "acc_1",
            json!({"type": "invoice.voided", "project": {"id": "prj_billing"}}),
        )
        .await;
    assert_validation(&got, "type");

    // A webhook of the file's type: its test send is that type's example, marked as a test.
    let (w, _) = server
        .create_webhook_with(
            "acc_1",
            json!({"name": "Billing", "url": receiver.url(), "events": ["invoice.paid"]}),
        )
        .await;
    let wh = w["id"].as_str().expect("id").to_owned();
    let (status, sent) = server
        .admin(
            "POST",
            &format!("/v1/accounts/acc_1/webhooks/{wh}/test"),
            None,
        )
        .await;
    assert_eq!(status, 202, "{sent}");
    let got = receiver.wait_for(1).await;
    let body = got[0].text();
    let v = got[0].json();
    assert_eq!(v["type"], "invoice.paid");
    assert_eq!(v["_test"], true);
    assert_eq!(v["account"]["id"], "acc_1");
    assert_eq!(v["invoice"]["amount_cents"], 4200);
    assert!(
        body.ends_with(r#""project":{"id":"prj_billing"},"invoice":{"id":"inv_1","amount_cents":4200},"_test":true}"#),
        "{body}"
    );
    let dlv = sent["delivery_id"].as_str().expect("delivery_id");
    let d = server.delivery("acc_1", &wh, dlv).await;
    assert_eq!(
        d["event_type"], "invoice.paid",
        "history shows the test's type"
    );
    assert_eq!(d["test"], true);

    // A publish of the file's type is delivered.
    let (status, v) = server
        .publish(
            "acc_1",
            json!({"type": "invoice.paid", "id": "evt_pay_1", "project": {"id": "prj_billing"}}),
        )
        .await;
    assert_eq!((status, &v["deliveries"]), (202, &json!(1)), "{v}");
    let got = receiver.wait_for(2).await;
    assert_eq!(got[1].json()["id"], "evt_pay_1");
}

#[test]
fn a_bad_catalog_file_stops_the_server_with_the_entry_named() {
    let home = Home::new();
    let path = home.path("catalog.json");
    std::fs::write(
        &path,
        r#"[{"name": "ok.type", "description": "", "example": {"project": {"id": "p"}}},
            {"name": "Bad Name", "description": "", "example": {}}]"#,
    )
    .expect("write");
    let data = arg(&home.data_dir());
    let (code, _, err) = run_cli(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &data,
            "--admin-token",
            ADMIN,
            "--event-catalog",
            &arg(&path),
        ],
        None,
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("--event-catalog") && err.contains("entry 2 (\"Bad Name\"): name"),
        "{err}"
    );
    // An example that would not publish (no project.id while the project rule is on).
    std::fs::write(
        &path,
        r#"[{"name": "a", "description": "", "example": {"n": 1}}]"#,
    )
    .expect("write");
    let (code, _, err) = run_cli(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &data,
            "--admin-token",
            ADMIN,
            "--event-catalog",
            &arg(&path),
        ],
        None,
    );
    assert_ne!(code, 0);
    assert!(err.contains("project.id"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hallway_s_rules_are_on_by_default_and_can_be_switched_off() {
    let receiver = Receiver::status(200).await;
    // On by default: a free account gets no webhook, an event needs its project.
    let home = Home::new();
    let server = Server::permissive(&home, &[]).await;
    server.create_account("acc_free", "Free", "free").await;
    let got = server
        .admin(
            "POST",
            "/v1/accounts/acc_free/webhooks",
            Some(json!({"name": "R", "url": receiver.url(), "events": [EVENT_TYPE]})),
        )
        .await;
    assert_error(&got, 403, "plan_required");
    let got = server
        .publish("acc_free", json!({"type": EVENT_TYPE}))
        .await;
    assert_validation(&got, "project.id");
    drop(server);

    // Off: the free account has a webhook, and an event without a project reaches it.
    let home = Home::new();
    let server = Server::permissive(
        &home,
        &["--require-pro-plan", "false", "--require-project", "false"],
    )
    .await;
    server.create_account("acc_free", "Free", "free").await;
    server
        .create_webhook("acc_free", "R", &receiver.url())
        .await;
    server
        .create_webhook_with(
            "acc_free",
            json!({"name": "Filtered", "url": receiver.url(), "events": [EVENT_TYPE],
                   "project_ids": ["prj_a"]}),
        )
        .await;
    let (status, v) = server
        .publish(
            "acc_free",
            json!({"type": EVENT_TYPE, "id": "evt_np", "n": 1}),
        )
        .await;
    assert_eq!(
        (status, &v["deliveries"]),
        (202, &json!(1)),
        "only the unfiltered webhook: {v}"
    );
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].json()["id"], "evt_np");
}
