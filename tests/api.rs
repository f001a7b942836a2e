//! End-to-end tests of the HTTP API against the real `hallway-webhooks serve`: every route's
//! answer and fields, the error codes, auth and tenant isolation, the strict URL default,
//! paging, health and metrics, and the generated admin token.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::HashSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_metrics_need_no_token() {
    let home = Home::new();
    let server = Server::start(&home, &[]).await;
    let health = server.call("GET", "/healthz", None, None).await;
    assert_eq!(health, (200, json!({"status": "ok"})));

    let metrics = server.http.send("GET", "/metrics", None, None).await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.content_type.starts_with("text/plain"),
        "{}",
        metrics.content_type
    );
    let text = String::from_utf8(metrics.body.to_vec()).expect("UTF-8");
    assert!(
        text.contains("# TYPE hallway_attempts_total counter"),
        "{text}"
    );
    assert!(text.contains("hallway_attempts_total{"), "{text}");

    // An unknown route is a JSON 404 too, and a wrong method a JSON 405.
    let r = server.admin("GET", "/v1/nope", None).await;
    assert_error(&r, 404, "not_found");
    let r = server.admin("DELETE", "/healthz", None).await;
    assert_eq!(r.0, 405, "{}", r.1);
    assert!(r.1["error"]["code"].is_string(), "{}", r.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_routes_fields_and_errors() {
    let home = Home::new();
    let server = Server::start(&home, &[]).await;

    // Create: 201, the account and its key, once.
    let (status, created) = server
        .admin(
            "POST",
            "/v1/accounts",
            Some(json!({"id": "acc_1", "name": "Acme Research", "plan": "pro"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let mut keys = ACCOUNT_KEYS.to_vec();
    keys.push("api_key");
    assert_keys(&created, &keys);
    assert_eq!(created["id"], "acc_1");
    assert_eq!(created["name"], "Acme Research");
    assert_eq!(created["plan"], "pro");
    assert_ts(&created["created_at"]);
    let key = created["api_key"].as_str().expect("api_key").to_owned();
    assert!(!key.is_empty());

    // The same id again: 409 conflict, and the first account is unchanged.
    let again = server
        .admin(
            "POST",
            "/v1/accounts",
            Some(json!({"id": "acc_1", "name": "Other", "plan": "free"})),
        )
        .await;
    assert_error(&again, 409, "conflict");

    // Read: by the admin and by its own key, never with the key.
    for token in [ADMIN, key.as_str()] {
        let (status, got) = server
            .call("GET", "/v1/accounts/acc_1", Some(token), None)
            .await;
        assert_eq!(status, 200, "{got}");
        assert_account(&got);
        assert_eq!(got["name"], "Acme Research");
        assert_eq!(got["plan"], "pro");
        assert_eq!(got["created_at"], created["created_at"]);
    }

    // Update by the admin: 200 with the new values.
    let (status, updated) = server
        .admin(
            "PATCH",
            "/v1/accounts/acc_1",
            Some(json!({"name": "Acme Labs", "plan": "free"})),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_account(&updated);
    assert_eq!(updated["name"], "Acme Labs");
    assert_eq!(updated["plan"], "free");
    let (status, partial) = server
        .admin("PATCH", "/v1/accounts/acc_1", Some(json!({"plan": "pro"})))
        .await;
    assert_eq!(status, 200, "{partial}");
    assert_eq!(partial["name"], "Acme Labs");
    assert_eq!(partial["plan"], "pro");
    // An account key may not change its account (admin only; its own account: 403).
    let own = server
        .call(
            "PATCH",
            "/v1/accounts/acc_1",
            Some(&key),
            Some(json!({"plan": "free"})),
        )
        .await;
    assert_error(&own, 403, "forbidden");
    // ... nor create accounts.
    let create = server
        .call(
            "POST",
            "/v1/accounts",
            Some(&key),
            Some(json!({"id": "acc_x", "name": "X", "plan": "pro"})),
        )
        .await;
    assert_eq!(create.0, 403, "{}", create.1);

    // Unknown accounts: 404.
    assert_error(
        &server.admin("GET", "/v1/accounts/acc_missing", None).await,
        404,
        "not_found",
    );
    assert_error(
        &server
            .admin(
                "PATCH",
                "/v1/accounts/acc_missing",
                Some(json!({"name": "X"})),
            )
            .await,
        404,
        "not_found",
    );

    // Malformed JSON and wrong types: 400 invalid_request.
    let malformed = server
        .http
        .raw_json("POST", "/v1/accounts", Some(ADMIN), b"{\"id\": \"acc_2\",")
        .await;
    assert_error(&malformed, 400, "invalid_request");
    let not_object = server
        .http
        .raw_json("POST", "/v1/accounts", Some(ADMIN), b"[1,2]")
        .await;
    assert_error(&not_object, 400, "invalid_request");
    let wrong_type = server
        .admin(
            "POST",
            "/v1/accounts",
            Some(json!({"id": 5, "name": "X", "plan": "pro"})),
        )
        .await;
    assert_error(&wrong_type, 400, "invalid_request");
    let wrong_type = server
        .admin("PATCH", "/v1/accounts/acc_1", Some(json!({"name": ["x"]})))
        .await;
    assert_error(&wrong_type, 400, "invalid_request");
    // A field breaking a rule: 422, naming it.
    let bad_plan = server
        .admin(
            "POST",
            "/v1/accounts",
            Some(json!({"id": "acc_2", "name": "X", "plan": "gold"})),
        )
        .await;
    assert_validation(&bad_plan, "plan");
    let no_name = server
        .admin(
            "POST",
            "/v1/accounts",
            Some(json!({"id": "acc_2", "plan": "pro"})),
        )
        .await;
    assert_validation(&no_name, "name");
    // Nothing was created by the refused calls.
    assert_error(
        &server.admin("GET", "/v1/accounts/acc_2", None).await,
        404,
        "not_found",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_routes_and_fields() {
    let home = Home::new();
    let receiver = Receiver::status(200).await;
    let server = Server::permissive(&home, &[]).await;
    server.create_account("acc_1", "Acme Research", "pro").await;

    // Create: 201, the webhook and its secret, once.
    let (status, created) = server
        .admin(
            "POST",
            "/v1/accounts/acc_1/webhooks",
            Some(json!({
                "name": "Slack",
                "url": receiver.url(),
                "description": "Posts to #research",
                "events": [EVENT_TYPE],
                "project_ids": ["prj_1", "prj_2"]
            })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let mut keys = WEBHOOK_KEYS.to_vec();
    keys.push("secret");
    assert_keys(&created, &keys);
    let mut shown = created.clone();
    let secret = shown
        .as_object_mut()
        .and_then(|o| o.remove("secret"))
        .and_then(|s| s.as_str().map(str::to_owned))
        .expect("secret");
    assert!(!secret.is_empty());
    assert_webhook(&shown);
    let wh = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["account_id"], "acc_1");
    assert_eq!(created["name"], "Slack");
    assert_eq!(created["url"], receiver.url());
    assert_eq!(created["description"], "Posts to #research");
    assert_eq!(created["events"], json!([EVENT_TYPE]));
    assert_eq!(created["project_ids"], json!(["prj_1", "prj_2"]));
    assert_eq!(created["enabled"], true);
    assert_eq!(created["disabled_reason"], Value::Null);
    assert_eq!(created["consecutive_failures"], 0);

    // Optional fields default: no description, every project.
    let (minimal, _) = server
        .create_webhook("acc_1", "Minimal", &receiver.url())
        .await;
    assert_eq!(minimal["description"], Value::Null);
    assert_eq!(minimal["project_ids"], json!([]));

    // List and get: never the secret.
    let (status, list) = server
        .admin("GET", "/v1/accounts/acc_1/webhooks", None)
        .await;
    assert_eq!(status, 200, "{list}");
    assert_keys(&list, &["data"]);
    let data = list["data"].as_array().expect("data");
    assert_eq!(data.len(), 2, "{list}");
    for w in data {
        assert_webhook(w);
    }
    assert!(data.contains(&shown), "{list}");
    let got = server.webhook("acc_1", &wh).await;
    assert_webhook(&got);
    assert_eq!(got, shown);

    // Update: 200 with the changes; description can be cleared.
    let (status, patched) = server
        .admin(
            "PATCH",
            &format!("/v1/accounts/acc_1/webhooks/{wh}"),
            Some(json!({"name": "Renamed", "description": null, "project_ids": ["prj_9"]})),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_webhook(&patched);
    assert_eq!(patched["name"], "Renamed");
    assert_eq!(patched["description"], Value::Null);
    assert_eq!(patched["project_ids"], json!(["prj_9"]));
    assert_eq!(patched["url"], receiver.url());
    assert_eq!(patched["created_at"], created["created_at"]);
    assert!(patched["updated_at"].as_str() >= created["updated_at"].as_str());

    // Disable by hand and enable again.
    let (status, off) = server
        .admin(
            "PATCH",
            &format!("/v1/accounts/acc_1/webhooks/{wh}"),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, 200, "{off}");
    assert_eq!(off["enabled"], false);
    assert_eq!(off["disabled_reason"], "manual");
    let (status, on) = server
        .admin(
            "PATCH",
            &format!("/v1/accounts/acc_1/webhooks/{wh}"),
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(status, 200, "{on}");
    assert_eq!(on["enabled"], true);
    assert_eq!(on["disabled_reason"], Value::Null);
    assert_eq!(on["consecutive_failures"], 0);

    // Rotate: 200 {"secret"}, a new one.
    let (status, rotated) = server
        .admin(
            "POST",
            &format!("/v1/accounts/acc_1/webhooks/{wh}/rotate-secret"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    assert_keys(&rotated, &["secret", "previous_secret_expires_at"]);
    assert_eq!(rotated["previous_secret_expires_at"], Value::Null);
    assert_ne!(rotated["secret"].as_str(), Some(secret.as_str()));
    assert!(rotated["secret"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(server.webhook("acc_1", &wh).await.get("secret").is_none());

    // Test send: 202 {"delivery_id"}; the delivery is visible with every field.
    let (status, test) = server
        .admin(
            "POST",
            &format!("/v1/accounts/acc_1/webhooks/{wh}/test"),
            None,
        )
        .await;
    assert_eq!(status, 202, "{test}");
    assert_keys(&test, &["delivery_id"]);
    let dlv = test["delivery_id"]
        .as_str()
        .expect("delivery_id")
        .to_owned();
    assert!(dlv.starts_with("dlv_"), "{dlv}");
    let done = server
        .wait_delivery("acc_1", &wh, &dlv, "succeeded", |d| {
            d["status"] == "succeeded"
        })
        .await;
    assert_delivery(&done);
    assert_eq!(done["id"], dlv.as_str());
    assert_eq!(done["webhook_id"], wh.as_str());
    assert_eq!(done["event_type"], EVENT_TYPE);
    assert_eq!(done["test"], true);
    assert_eq!(done["next_attempt_at"], Value::Null);
    let attempts = done["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{done}");
    assert_eq!(attempts[0]["attempt"], 1);
    assert_eq!(attempts[0]["status_code"], 200);
    assert_eq!(attempts[0]["error"], Value::Null);

    let (status, page) = server
        .admin(
            "GET",
            &format!("/v1/accounts/acc_1/webhooks/{wh}/deliveries"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_keys(&page, &["data", "next_cursor"]);
    assert_eq!(page["next_cursor"], Value::Null);
    assert_eq!(page["data"], json!([done]));

    // Unknown webhook and delivery: 404.
    let missing_wh = "/v1/accounts/acc_1/webhooks/wh_missing";
    assert_error(
        &server.admin("GET", missing_wh, None).await,
        404,
        "not_found",
    );
    assert_error(
        &server
            .admin(
                "GET",
                &format!("/v1/accounts/acc_1/webhooks/{wh}/deliveries/dlv_missing"),
                None,
            )
            .await,
        404,
        "not_found",
    );
    assert_error(
        &server
            .admin(
                "POST",
                &format!("/v1/accounts/acc_1/webhooks/{wh}/deliveries/dlv_missing/retry"),
                None,
            )
            .await,
        404,
        "not_found",
    );
    assert_error(
        &server
            .admin("GET", "/v1/accounts/acc_missing/webhooks", None)
            .await,
        404,
        "not_found",
    );

    // Delete: 204 with no body; every later call on it is 404.
    let (status, body) = server
        .admin("DELETE", &format!("/v1/accounts/acc_1/webhooks/{wh}"), None)
        .await;
    assert_eq!((status, body), (204, Value::Null));
    let base = format!("/v1/accounts/acc_1/webhooks/{wh}");
    let later: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", base.clone(), None),
        ("PATCH", base.clone(), Some(json!({"name": "X"}))),
        ("DELETE", base.clone(), None),
        ("POST", format!("{base}/rotate-secret"), None),
        ("POST", format!("{base}/test"), None),
        ("GET", format!("{base}/deliveries"), None),
        ("GET", format!("{base}/deliveries/{dlv}"), None),
        ("POST", format!("{base}/deliveries/{dlv}/retry"), None),
    ];
    for (method, path, body) in later {
        let r = server.admin(method, &path, body).await;
        assert_error(&r, 404, "not_found");
    }
    let (_, list) = server
        .admin("GET", "/v1/accounts/acc_1/webhooks", None)
        .await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1), "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_create_errors() {
    let home = Home::new();
    let receiver = Receiver::status(200).await;
    let server = Server::permissive(&home, &[]).await;
    server.create_account("acc_free", "Free Co", "free").await;
    server.create_account("acc_pro", "Pro Co", "pro").await;
    let url = receiver.url();
    let ok = json!({"name": "A", "url": url, "events": [EVENT_TYPE]});

    // Free plan: 403 plan_required.
    let r = server
        .admin("POST", "/v1/accounts/acc_free/webhooks", Some(ok.clone()))
        .await;
    assert_error(&r, 403, "plan_required");

    let path = "/v1/accounts/acc_pro/webhooks";
    // 422: each names its field.
    let with = |field: &str, value: Value| {
        let mut body = ok.clone();
        body[field] = value;
        body
    };
    let cases = [
        (with("url", json!("not a url")), "url"),
        (with("url", json!("ftp://localhost/x")), "url"),
        (with("url", json!("http://localhost:9/x")), "url"),
        (with("url", json!("https://user:pw@localhost/x")), "url"),
        (with("name", json!("")), "name"),
        (with("events", json!(["session.unknown"])), "events"),
        (with("events", json!([])), "events"),
    ];
    for (body, field) in cases {
        let r = server.admin("POST", path, Some(body.clone())).await;
        assert_validation(&r, field);
    }
    // 400: malformed JSON and wrong types.
    let r = server
        .http
        .raw_json("POST", path, Some(ADMIN), b"{\"name\":")
        .await;
    assert_error(&r, 400, "invalid_request");
    for body in [
        with("name", json!(5)),
        with("url", json!(["x"])),
        with("events", json!(EVENT_TYPE)),
        with("events", json!([1])),
        with("project_ids", json!("prj_1")),
    ] {
        let r = server.admin("POST", path, Some(body.clone())).await;
        assert_error(&r, 400, "invalid_request");
    }
    // The PATCH route applies the same rules.
    let (w, _) = server.create_webhook("acc_pro", "W1", &url).await;
    let wh = w["id"].as_str().expect("id");
    let patch = format!("{path}/{wh}");
    assert_validation(
        &server
            .admin("PATCH", &patch, Some(json!({"url": "http://localhost/x"})))
            .await,
        "url",
    );
    assert_validation(
        &server
            .admin("PATCH", &patch, Some(json!({"name": ""})))
            .await,
        "name",
    );
    assert_validation(
        &server
            .admin("PATCH", &patch, Some(json!({"events": ["nope"]})))
            .await,
        "events",
    );
    assert_error(
        &server
            .admin("PATCH", &patch, Some(json!({"enabled": "yes"})))
            .await,
        400,
        "invalid_request",
    );
    assert_eq!(server.webhook("acc_pro", wh).await["url"], url.as_str());

    // The limit: five webhooks, the sixth is 409 limit_reached; deleting one frees a place.
    for i in 2..=5 {
        server
            .create_webhook("acc_pro", &format!("W{i}"), &url)
            .await;
    }
    let sixth = server.admin("POST", path, Some(ok.clone())).await;
    assert_error(&sixth, 409, "limit_reached");
    let (status, _) = server.admin("DELETE", &patch, None).await;
    assert_eq!(status, 204);
    let (status, again) = server.admin("POST", path, Some(ok.clone())).await;
    assert_eq!(status, 201, "{again}");
    let (_, list) = server.admin("GET", path, None).await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_answers_and_errors() {
    let home = Home::new();
    let receiver = Receiver::status(200).await;
    let server = Server::permissive(&home, &["--max-payload-bytes", "2048"]).await;
    server.create_account("acc_1", "Acme Research", "pro").await;
    server.create_account("acc_free", "Free Co", "free").await;
    server.create_webhook("acc_1", "R", &receiver.url()).await;

    let mut small = event("evt_pub_1");
    small["transcript"]["full_text"] = json!("short");
    let r = server.publish("acc_1", small.clone()).await;
    assert_eq!(r, (202, json!({"id": "evt_pub_1", "deliveries": 1})));
    // The same id again: 200 and the first answer.
    let r = server.publish("acc_1", small.clone()).await;
    assert_eq!(r, (200, json!({"id": "evt_pub_1", "deliveries": 1})));

    // Without an id the engine names the event.
    let mut anonymous = small.clone();
    anonymous.as_object_mut().map(|o| o.remove("id"));
    let (status, v) = server.publish("acc_1", anonymous).await;
    assert_eq!(status, 202, "{v}");
    assert_keys(&v, &["id", "deliveries"]);
    assert!(
        v["id"].as_str().is_some_and(|s| s.starts_with("evt_")),
        "{v}"
    );

    // A free account: accepted, nothing to send.
    let r = server.publish("acc_free", event("evt_free_1")).await;
    assert_eq!(r, (202, json!({"id": "evt_free_1", "deliveries": 0})));

    // Unknown account: 404.
    assert_error(
        &server.publish("acc_missing", event("evt_x")).await,
        404,
        "not_found",
    );

    // Above --max-payload-bytes: 413.
    let mut big = event("evt_big");
    big["transcript"]["full_text"] = json!("x".repeat(4096));
    assert_error(
        &server.publish("acc_1", big).await,
        413,
        "payload_too_large",
    );

    // Malformed JSON, wrong types: 400.
    let path = "/v1/accounts/acc_1/events";
    assert_error(
        &server
            .http
            .raw_json("POST", path, Some(ADMIN), b"{oops")
            .await,
        400,
        "invalid_request",
    );
    let mut wrong = small.clone();
    wrong["type"] = json!(7);
    assert_error(
        &server.publish("acc_1", wrong).await,
        400,
        "invalid_request",
    );
    // Rules: an unknown type, no project id: 422 naming the field.
    let mut unknown = small.clone();
    unknown["type"] = json!("session.exploded");
    unknown["id"] = json!("evt_unknown");
    let r = server.publish("acc_1", unknown).await;
    assert_validation(&r, "type");
    let mut no_project = small.clone();
    no_project["id"] = json!("evt_no_project");
    no_project.as_object_mut().map(|o| o.remove("project"));
    assert_validation(&server.publish("acc_1", no_project).await, "project");

    // Two events delivered, none of the refused ones.
    receiver.wait_for(2).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let ids: Vec<Value> = receiver
        .received()
        .iter()
        .map(|r| r.json()["id"].clone())
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&json!("evt_pub_1")), "{ids:?}");
}

/// Every route under an account, as (method, path, body); `{acc}`, `{wh}`, `{dlv}` filled in.
fn account_routes(acc: &str, wh: &str, dlv: &str) -> Vec<(&'static str, String, Option<Value>)> {
    let a = format!("/v1/accounts/{acc}");
    let w = format!("{a}/webhooks/{wh}");
    vec![
        ("GET", a.clone(), None),
        ("PATCH", a.clone(), Some(json!({"name": "Hijacked"}))),
        (
            "POST",
            format!("{a}/webhooks"),
            Some(json!({"name": "X", "url": "https://example.com/x", "events": [EVENT_TYPE]})),
        ),
        ("GET", format!("{a}/webhooks"), None),
        ("GET", w.clone(), None),
        ("PATCH", w.clone(), Some(json!({"name": "Hijacked"}))),
        ("POST", format!("{w}/rotate-secret"), None),
        ("POST", format!("{w}/test"), None),
        ("GET", format!("{w}/deliveries"), None),
        ("GET", format!("{w}/deliveries/{dlv}"), None),
        ("POST", format!("{w}/deliveries/{dlv}/retry"), None),
        ("POST", format!("{a}/events"), Some(event("evt_hijack"))),
        ("DELETE", w.clone(), None),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_and_tenant_isolation() {
    let home = Home::new();
    let receiver = Receiver::status(200).await;
    let server = Server::permissive(&home, &[]).await;
    let (_, key_a) = server.create_account("acc_a", "A", "pro").await;
    let (_, key_b) = server.create_account("acc_b", "B", "pro").await;
    let (wa, _) = server
        .create_webhook("acc_a", "A hook", &receiver.url())
        .await;
    let (wb, _) = server
        .create_webhook("acc_b", "B hook", &receiver.url())
        .await;
    let wa = wa["id"].as_str().expect("id").to_owned();
    let wb = wb["id"].as_str().expect("id").to_owned();
    let dlv_of = |v: &Value| v["delivery_id"].as_str().expect("delivery_id").to_owned();
    let (_, ta) = server
        .admin(
            "POST",
            &format!("/v1/accounts/acc_a/webhooks/{wa}/test"),
            None,
        )
        .await;
    let (_, tb) = server
        .admin(
            "POST",
            &format!("/v1/accounts/acc_b/webhooks/{wb}/test"),
            None,
        )
        .await;
    let (da, db) = (dlv_of(&ta), dlv_of(&tb));
    for (acc, wh, dlv) in [("acc_a", &wa, &da), ("acc_b", &wb, &db)] {
        server
            .wait_delivery(acc, wh, dlv, "succeeded", |d| d["status"] == "succeeded")
            .await;
    }

    // No token, a bad token, another scheme: 401 everywhere under /v1.
    let mut all_routes = account_routes("acc_b", &wb, &db);
    all_routes.push((
        "POST",
        "/v1/accounts".to_owned(),
        Some(json!({"id": "acc_c", "name": "C", "plan": "pro"})),
    ));
    for (method, path, body) in &all_routes {
        for token in [None, Some("not-a-token"), Some("")] {
            let r = server.call(method, path, token, body.clone()).await;
            assert_error(&r, 401, "unauthorized");
        }
        let basic = server
            .http
            .send_with(
                method,
                path,
                &[
                    ("authorization", &format!("Basic {ADMIN}")),
                    ("content-type", "application/json"),
                ],
                body.as_ref().map(|b| b.to_string().into_bytes()),
            )
            .await;
        assert_eq!(basic.status, 401, "{method} {path} with Basic");
    }

    // Account A's key on account B's every route: 404 as if B did not exist, like an
    // account that really does not exist.
    for (method, path, body) in account_routes("acc_b", &wb, &db) {
        let r = server.call(method, &path, Some(&key_a), body.clone()).await;
        let message = assert_error(&r, 404, "not_found");
        assert!(!message.contains(&wb), "{method} {path}: {message}");
    }
    for (method, path, body) in account_routes("acc_nobody", "wh_x", "dlv_x") {
        let r = server.call(method, &path, Some(&key_a), body.clone()).await;
        assert_error(&r, 404, "not_found");
    }
    // A's key with B's webhook under A's own account: 404 too.
    for (method, path, body) in account_routes("acc_a", &wb, &db).into_iter().skip(4) {
        if path.ends_with("/events") {
            continue;
        }
        let r = server.call(method, &path, Some(&key_a), body.clone()).await;
        assert_error(&r, 404, "not_found");
    }
    // Nothing of B changed.
    let b = server.webhook("acc_b", &wb).await;
    assert_eq!(b["name"], "B hook");
    let (_, acc_b) = server.admin("GET", "/v1/accounts/acc_b", None).await;
    assert_eq!(acc_b["name"], "B");
    assert_eq!(server.deliveries("acc_b", &wb).await.len(), 1);

    // A's key on its own account: everything but the admin-only routes.
    let own = |method: &'static str, path: String, body: Option<Value>| {
        let server = &server;
        let key_a = &key_a;
        async move { server.call(method, &path, Some(key_a), body).await }
    };
    let a = "/v1/accounts/acc_a".to_owned();
    let w = format!("{a}/webhooks/{wa}");
    assert_eq!(own("GET", a.clone(), None).await.0, 200);
    assert_eq!(own("GET", format!("{a}/webhooks"), None).await.0, 200);
    assert_eq!(own("GET", w.clone(), None).await.0, 200);
    let (s, v) = own("PATCH", w.clone(), Some(json!({"name": "Mine"}))).await;
    assert_eq!((s, v["name"].clone()), (200, json!("Mine")));
    assert_eq!(own("POST", format!("{w}/rotate-secret"), None).await.0, 200);
    assert_eq!(own("POST", format!("{w}/test"), None).await.0, 202);
    assert_eq!(own("GET", format!("{w}/deliveries"), None).await.0, 200);
    assert_eq!(
        own("GET", format!("{w}/deliveries/{da}"), None).await.0,
        200
    );
    assert_eq!(
        own("POST", format!("{w}/deliveries/{da}/retry"), None)
            .await
            .0,
        202
    );
    let (s, v) = own(
        "POST",
        format!("{a}/webhooks"),
        Some(json!({"name": "Second", "url": receiver.url(), "events": [EVENT_TYPE]})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert!(v["secret"].is_string());
    // Admin-only routes on its own account: 403 forbidden.
    assert_error(
        &own("PATCH", a.clone(), Some(json!({"plan": "free"}))).await,
        403,
        "forbidden",
    );
    assert_error(
        &own("POST", format!("{a}/events"), Some(event("evt_own"))).await,
        403,
        "forbidden",
    );
    assert_eq!(own("DELETE", w.clone(), None).await.0, 204);
    // B's key still works on B: keys are per account.
    let (s, _) = server
        .call("GET", "/v1/accounts/acc_b", Some(&key_b), None)
        .await;
    assert_eq!(s, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_default_refuses_http_and_private_targets() {
    let home = Home::new();
    // No --allow-http, no --allow-private-targets.
    let server = Server::start(&home, &[]).await;
    server.create_account("acc_1", "Acme", "pro").await;
    let path = "/v1/accounts/acc_1/webhooks";
    for url in [
        "http://hooks.example.com/x",
        "https://127.0.0.1/",
        "https://localhost:8443/hook",
        "https://10.1.2.3/hook",
        "https://192.168.0.10/hook",
        "https://169.254.169.254/latest",
        "https://[::1]/hook",
        "https://0.0.0.0/",
        // Numeric spellings, special-purpose ranges, IPv4 inside IPv6, unsendable paths.
        "https://2130706433/hook",
        "https://0x7f000001/hook",
        "https://127.1/hook",
        "https://198.18.0.1/hook",
        "https://192.0.2.10/hook",
        "https://[2002:7f00:1::]/hook",
        "https://[100::1]/hook",
        "https://hooks.example.com/\u{e9}<>\"{}|^",
    ] {
        let r = server
            .admin(
                "POST",
                path,
                Some(json!({"name": "X", "url": url, "events": [EVENT_TYPE]})),
            )
            .await;
        assert_validation(&r, "url");
    }
    // A public https URL is fine (nothing is sent: no event is published).
    let (w, _) = server
        .create_webhook("acc_1", "Public", "https://hooks.example.com/hallway")
        .await;
    let wh = w["id"].as_str().expect("id");
    // And cannot be moved to a refused target.
    for url in ["https://127.0.0.1/", "http://hooks.example.com/x"] {
        let r = server
            .admin("PATCH", &format!("{path}/{wh}"), Some(json!({"url": url})))
            .await;
        assert_validation(&r, "url");
    }
    let (_, list) = server.admin("GET", path, None).await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_urls_are_accepted_with_allow_http() {
    let home = Home::new();
    let server = Server::start(&home, &["--allow-http"]).await;
    server.create_account("acc_1", "Acme", "pro").await;
    let (w, _) = server
        .create_webhook("acc_1", "Plain", "http://hooks.example.com/x")
        .await;
    assert_eq!(w["url"], "http://hooks.example.com/x");
    // Private targets stay refused.
    let r = server
        .admin(
            "POST",
            "/v1/accounts/acc_1/webhooks",
            Some(json!({"name": "X", "url": "http://127.0.0.1/", "events": [EVENT_TYPE]})),
        )
        .await;
    assert_validation(&r, "url");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_paging_walks_newest_first() {
    let home = Home::new();
    let receiver = Receiver::status(200).await;
    let server = Server::permissive(&home, &[]).await;
    server.create_account("acc_1", "Acme", "pro").await;
    let (w, _) = server.create_webhook("acc_1", "R", &receiver.url()).await;
    let wh = w["id"].as_str().expect("id").to_owned();
    let n = 7;
    for i in 0..n {
        let (status, v) = server
            .publish("acc_1", event(&format!("evt_page_{i}")))
            .await;
        assert_eq!(status, 202, "{v}");
    }
    receiver.wait_for(n).await;

    let mut seen: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            None => format!("/v1/accounts/acc_1/webhooks/{wh}/deliveries?limit=3"),
            Some(c) => format!("/v1/accounts/acc_1/webhooks/{wh}/deliveries?limit=3&cursor={c}"),
        };
        let (status, page) = server.admin("GET", &path, None).await;
        assert_eq!(status, 200, "{page}");
        assert_keys(&page, &["data", "next_cursor"]);
        let data = page["data"].as_array().expect("data");
        assert!(data.len() <= 3, "{page}");
        for d in data {
            assert_delivery(d);
        }
        seen.extend(data.iter().cloned());
        pages += 1;
        assert!(pages <= n, "paging does not end");
        match page["next_cursor"].as_str() {
            Some(c) => {
                assert!(!data.is_empty(), "a cursor after an empty page");
                cursor = Some(c.to_owned());
            }
            None => {
                assert!(page["next_cursor"].is_null(), "{page}");
                break;
            }
        }
    }
    assert_eq!(pages, 3);
    let ids: Vec<&str> = seen.iter().filter_map(|d| d["id"].as_str()).collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), n, "{ids:?}");
    assert_eq!(unique.len(), n, "duplicates in {ids:?}");
    let events: Vec<String> = seen
        .iter()
        .filter_map(|d| d["event_id"].as_str().map(str::to_owned))
        .collect();
    let expected: Vec<String> = (0..n).rev().map(|i| format!("evt_page_{i}")).collect();
    assert_eq!(events, expected, "not newest first");
    for pair in seen.windows(2) {
        assert!(pair[0]["created_at"].as_str() >= pair[1]["created_at"].as_str());
    }
    // A cursor the server did not make: 400, not a 500.
    let r = server
        .admin(
            "GET",
            &format!("/v1/accounts/acc_1/webhooks/{wh}/deliveries?cursor=zzz"),
            None,
        )
        .await;
    assert_error(&r, 400, "invalid_request");
    let r = server
        .admin(
            "GET",
            &format!("/v1/accounts/acc_1/webhooks/{wh}/deliveries?limit=abc"),
            None,
        )
        .await;
    assert_error(&r, 400, "invalid_request");
    // The whole list in one page is the same order.
    let all = server.deliveries("acc_1", &wh).await;
    let all_ids: Vec<&str> = all.iter().filter_map(|d| d["id"].as_str()).collect();
    assert_eq!(all_ids, ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_admin_token_is_printed_once_and_saved_private() {
    use std::os::unix::fs::PermissionsExt;
    let home = Home::new();
    let mut first = Server::start_with(&home, None, &[]).await;
    let token_file = home.data_dir().join("admin-token");
    let token = std::fs::read_to_string(&token_file)
        .expect("the token is saved in the data dir")
        .trim()
        .to_owned();
    assert!(token.len() >= 16, "{token:?}");
    let mode = std::fs::metadata(&token_file)
        .expect("metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    // Printed once on stdout.
    let printed = eventually("the token is printed on stdout", || {
        let text = first.proc.stdout_text();
        let token = token.clone();
        async move { text.contains(&token).then_some(text) }
    })
    .await;
    assert!(printed.contains("admin token"), "{printed}");
    assert!(
        !first.proc.stderr_text().contains(&token),
        "token on stderr"
    );
    // It works as a bearer token.
    first.token = token.clone();
    first.create_account("acc_1", "Acme", "pro").await;
    assert_error(
        &first
            .call("GET", "/v1/accounts/acc_1", Some("hwa_wrong"), None)
            .await,
        401,
        "unauthorized",
    );
    first.proc.kill();
    drop(first);

    // A second start reads it and prints nothing about it.
    let mut second = Server::start_with(&home, None, &[]).await;
    second.token = token.clone();
    let (status, acc) = second.admin("GET", "/v1/accounts/acc_1", None).await;
    assert_eq!(status, 200, "{acc}");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let out = second.proc.stdout_text();
    assert!(!out.contains(&token), "printed again: {out}");
    assert!(
        !second.proc.stderr_text().contains(&token),
        "token on stderr"
    );
    assert_eq!(
        std::fs::read_to_string(&token_file).expect("token").trim(),
        token
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_body_fields_and_query_parameters_are_refused_by_name() {
    let home = Home::new();
    let receiver = Receiver::status(200).await;
    let server = Server::permissive(&home, &[]).await;
    server.create_account("acc_1", "Acme", "pro").await;
    let (w, _) = server
        .create_webhook("acc_1", "Hook", &receiver.url())
        .await;
    let wh = w["id"].as_str().expect("id").to_owned();
    let webhook = format!("/v1/accounts/acc_1/webhooks/{wh}");

    // The secret cannot be set by PATCH: 400 naming it, and nothing changes.
    let r = server
        .admin("PATCH", &webhook, Some(json!({"secret": "x"})))
        .await;
    let message = assert_error(&r, 400, "invalid_request");
    assert!(message.contains("secret"), "{message}");
    let r = server
        .admin(
            "PATCH",
            &webhook,
            Some(json!({"name": "Renamed", "enabld": false})),
        )
        .await;
    let message = assert_error(&r, 400, "invalid_request");
    assert!(message.contains("enabld"), "{message}");
    assert_eq!(server.webhook("acc_1", &wh).await["name"], "Hook");

    // Every other management body too.
    let url = receiver.url();
    for (method, path, body, field) in [
        (
            "POST",
            "/v1/accounts".to_owned(),
            json!({"id": "acc_2", "name": "B", "plan": "pro", "api_key": "k"}),
            "api_key",
        ),
        (
            "PATCH",
            "/v1/accounts/acc_1".to_owned(),
            json!({"name": "Acme", "id": "acc_9"}),
            "id",
        ),
        (
            "POST",
            "/v1/accounts/acc_1/webhooks".to_owned(),
            json!({"name": "H2", "url": url, "events": [EVENT_TYPE], "enabled": false}),
            "enabled",
        ),
    ] {
        let r = server.admin(method, &path, Some(body)).await;
        let message = assert_error(&r, 400, "invalid_request");
        assert!(message.contains(field), "{method} {path}: {message}");
    }
    let (_, list) = server
        .admin("GET", "/v1/accounts/acc_1/webhooks", None)
        .await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1), "{list}");
    let (status, _) = server.admin("GET", "/v1/accounts/acc_2", None).await;
    assert_eq!(status, 404);

    // The contract's codes stay: a wrong type is 400 naming the field, a missing required
    // field 422 naming it, and `null` still clears the description.
    let r = server
        .admin("PATCH", &webhook, Some(json!({"enabled": "yes"})))
        .await;
    let message = assert_error(&r, 400, "invalid_request");
    assert!(message.starts_with("enabled"), "{message}");
    let r = server
        .admin(
            "POST",
            "/v1/accounts/acc_1/webhooks",
            Some(json!({"name": "H3", "url": url})),
        )
        .await;
    assert_validation(&r, "events");
    let (status, v) = server
        .admin("PATCH", &webhook, Some(json!({"description": "d"})))
        .await;
    assert_eq!((status, &v["description"]), (200, &json!("d")), "{v}");
    let (status, v) = server.admin("PATCH", &webhook, Some(json!({}))).await;
    assert_eq!((status, &v["description"]), (200, &json!("d")), "{v}");
    let (status, v) = server
        .admin("PATCH", &webhook, Some(json!({"description": null})))
        .await;
    assert_eq!((status, &v["description"]), (200, &Value::Null), "{v}");

    // Query parameters: an unknown one is 400 naming it; a bad value names its parameter.
    let deliveries = format!("{webhook}/deliveries");
    let r = server
        .admin("GET", &format!("{deliveries}?limit=5&bogus=1"), None)
        .await;
    let message = assert_error(&r, 400, "invalid_request");
    assert!(message.contains("bogus"), "{message}");
    let r = server
        .admin("GET", &format!("{deliveries}?limit=abc"), None)
        .await;
    let message = assert_error(&r, 400, "invalid_request");
    assert!(message.contains("limit"), "{message}");
    assert_validation(
        &server
            .admin("GET", &format!("{deliveries}?limit=0"), None)
            .await,
        "limit",
    );
    let (status, page) = server
        .admin("GET", &format!("{deliveries}?limit=5&cursor="), None)
        .await;
    assert_eq!(status, 200, "{page}");

    // A published event's own fields, unknown to the engine, pass through untouched.
    let mut e = event("evt_extra");
    e["custom"] = json!({"nested": [1, "two", null], "secret": "not ours"});
    let (status, v) = server.publish("acc_1", e).await;
    assert_eq!(status, 202, "{v}");
    let got = receiver.wait_for(1).await;
    let body = got[0].json();
    assert_eq!(
        body["custom"],
        json!({"nested": [1, "two", null], "secret": "not ours"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_ready_and_401_names_the_scheme() {
    let home = Home::new();
    let server = Server::start(&home, &[]).await;
    let ready = server.call("GET", "/readyz", None, None).await;
    assert_eq!(ready, (200, json!({"status": "ready"})));

    for token in [None, Some("hwa_wrong")] {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![];
        if let Some(a) = &auth {
            headers.push(("authorization", a.as_str()));
        }
        let r = server
            .http
            .send_with("GET", "/v1/accounts/acc_1", &headers, None)
            .await;
        assert_eq!(r.status, 401);
        assert_eq!(
            r.headers
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some(r#"Bearer realm="hallway-webhooks""#),
            "token {token:?}"
        );
    }
    // Other errors do not carry it.
    let auth = format!("Bearer {ADMIN}");
    let r = server
        .http
        .send_with(
            "GET",
            "/v1/accounts/acc_1",
            &[("authorization", &auth)],
            None,
        )
        .await;
    assert_eq!(r.status, 404);
    assert!(r.headers.get("www-authenticate").is_none());
}
