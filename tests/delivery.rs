//! End-to-end delivery tests against the real `hallway-webhooks serve` and a local HTTPS
//! receiver: signatures, headers and the envelope, idempotent publishing, retries and
//! auto-disable, secret rotation, test sends, manual retries, and a restart after SIGKILL.

mod common;

use common::*;
use hallway_webhooks::signature::{self, VerifyError};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;

/// Checks a received request: method, path, headers and a signature by `secret`.
#[track_caller]
fn assert_signed(r: &Received, secret: &str) {
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/hook");
    assert_eq!(r.user_agent, "Hallway-Webhooks/1.0");
    assert!(
        r.content_type.starts_with("application/json"),
        "{}",
        r.content_type
    );
    assert!(r.signature.starts_with("t="), "{}", r.signature);
    assert_eq!(
        signature::verify(secret, &r.signature, &r.body, now_secs(), 300),
        Ok(()),
        "signature {} over {}",
        r.signature,
        r.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_delivers_a_signed_enveloped_request_once() {
    let home = Home::new();
    let receiver = Receiver::status(200).await;
    let server = Server::permissive(&home, &[]).await;
    server.create_account("acc_1", "Acme Research", "pro").await;
    let (w, secret) = server
        .create_webhook("acc_1", "Receiver", &receiver.url())
        .await;
    let wh = w["id"].as_str().expect("id").to_owned();
    // A second webhook filtered to another project gets nothing.
    let (filtered, _) = server
        .create_webhook_with(
            "acc_1",
            json!({"name": "Other project", "url": receiver.url(),
                   "events": [EVENT_TYPE], "project_ids": ["prj_other"]}),
        )
        .await;

    // The spec's fields in the spec's order (raw text: a `Value` would sort its keys), plus
    // fields the engine sets, which are replaced, not spoofable.
    let raw = r#"{"type":"session.processing.completed","id":"evt_spec_1",
        "account":{"id":"acc_evil","name":"Evil"},"api_version":"1999-01-01",
        "project":{"id":"prj_xyz789","name":"Customer Discovery Q1","status":"active"},
        "session":{"id":"ses_def456","respondent_name":"Jane Doe","duration_seconds":342},
        "respondent_attributes":[{"category_name":"Department","option_value":"Engineering"}],
        "transcript":{"id":"trx_ghi789","full_text":"Interviewer: Hello\n\nRespondent: Hi","word_count":3},
        "insights":{"count":8,"objectives_covered":3},
        "links":{"project":"https://app.hallwayai.com/projects/prj_xyz789"}}"#;
    let posted: Value = serde_json::from_str(raw).expect("test JSON");
    let publish = |body: &'static str| {
        let http = server.http.clone();
        async move {
            http.raw_json(
                "POST",
                "/v1/accounts/acc_1/events",
                Some(ADMIN),
                body.as_bytes(),
            )
            .await
        }
    };
    let r = publish(raw).await;
    assert_eq!(r, (202, json!({"id": "evt_spec_1", "deliveries": 1})));

    let got = receiver.wait_for(1).await;
    let req = &got[0];
    assert_signed(req, &secret);
    // Wrong secret: mismatch.
    assert_eq!(
        signature::verify("whsec_wrong", &req.signature, &req.body, now_secs(), 300),
        Err(VerifyError::Mismatch)
    );
    // The envelope: id, type, created_at, api_version, account first, then the posted fields
    // in their order.
    let text = req.text();
    assert!(
        text.starts_with(
            r#"{"id":"evt_spec_1","type":"session.processing.completed","created_at":""#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#","api_version":"2026-01-01","account":{"id":"acc_1","name":"Acme Research"},"project":{"#),
        "{text}"
    );
    let order = [
        "\"project\":",
        "\"session\":",
        "\"respondent_attributes\":",
        "\"transcript\":",
        "\"insights\":",
        "\"links\":",
    ];
    let positions: Vec<usize> = order
        .iter()
        .map(|k| {
            text.find(k)
                .unwrap_or_else(|| panic!("{k} missing: {text}"))
        })
        .collect();
    assert!(positions.windows(2).all(|p| p[0] < p[1]), "{text}");
    let body = req.json();
    assert_eq!(body["id"], "evt_spec_1");
    assert_eq!(body["type"], EVENT_TYPE);
    assert_ts(&body["created_at"]);
    assert_eq!(body["api_version"], "2026-01-01");
    assert_eq!(
        body["account"],
        json!({"id": "acc_1", "name": "Acme Research"})
    );
    for k in [
        "project",
        "session",
        "respondent_attributes",
        "transcript",
        "insights",
        "links",
    ] {
        assert_eq!(body[k], posted[k], "{k}");
    }
    assert_eq!(body.as_object().map(|o| o.len()), Some(11), "{body}");
    assert!(body.get("_test").is_none());

    // The same id again: 200, the first answer, nothing sent.
    let r = publish(raw).await;
    assert_eq!(r, (200, json!({"id": "evt_spec_1", "deliveries": 1})));

    let list = server.deliveries("acc_1", &wh).await;
    assert_eq!(list.len(), 1, "{list:?}");
    let dlv = list[0]["id"].as_str().expect("id").to_owned();
    let d = server
        .wait_delivery("acc_1", &wh, &dlv, "succeeded", |d| {
            d["status"] == "succeeded"
        })
        .await;
    assert_delivery(&d);
    assert_eq!(d["event_id"], "evt_spec_1");
    assert_eq!(d["event_type"], EVENT_TYPE);
    assert_eq!(d["webhook_id"], wh.as_str());
    assert_eq!(d["test"], false);
    assert_eq!(d["next_attempt_at"], Value::Null);
    let attempts = d["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{d}");
    assert_eq!(attempts[0]["attempt"], 1);
    assert_eq!(attempts[0]["status_code"], 200);
    assert_eq!(attempts[0]["error"], Value::Null);

    let fid = filtered["id"].as_str().expect("id");
    assert!(server.deliveries("acc_1", fid).await.is_empty());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.received().len(), 1, "sent again");
    assert_eq!(server.deliveries("acc_1", &wh).await.len(), 1);

    let metrics = server.metrics().await;
    assert!(
        metrics.contains("hallway_attempts_total{outcome=\"succeeded\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hallway_duplicate_publishes_total 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_then_auto_disable_and_reenable() {
    let home = Home::new();
    let receiver = Receiver::status(500).await;
    let server = Server::permissive(
        &home,
        &[
            "--retry-delays",
            "0s,100ms,200ms",
            "--auto-disable-after",
            "3",
        ],
    )
    .await;
    server.create_account("acc_1", "Acme", "pro").await;
    let (w, secret) = server
        .create_webhook("acc_1", "Failing", &receiver.url())
        .await;
    let wh = w["id"].as_str().expect("id").to_owned();
    let r = server.publish("acc_1", event("evt_fail_1")).await;
    assert_eq!(r, (202, json!({"id": "evt_fail_1", "deliveries": 1})));

    let got = receiver.wait_for(3).await;
    // Every attempt carries the same body, freshly signed.
    for r in &got {
        assert_signed(r, &secret);
        assert_eq!(r.body, got[0].body);
    }
    let dlv = server.deliveries("acc_1", &wh).await[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let d = server
        .wait_delivery("acc_1", &wh, &dlv, "failed after 3 attempts", |d| {
            d["status"] == "failed"
        })
        .await;
    assert_delivery(&d);
    let attempts = d["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 3, "{d}");
    for (i, a) in attempts.iter().enumerate() {
        assert_eq!(a["attempt"], i + 1, "{d}");
        assert_eq!(a["status_code"], 500, "{d}");
        assert_eq!(a["error"], "http_status", "{d}");
    }
    assert_eq!(d["next_attempt_at"], Value::Null);
    // The retry delays were kept between attempts.
    let started: Vec<&str> = attempts
        .iter()
        .filter_map(|a| a["started_at"].as_str())
        .collect();
    assert!(started.windows(2).all(|p| p[0] < p[1]), "{started:?}");

    let w = server.webhook("acc_1", &wh).await;
    assert_webhook(&w);
    assert_eq!(w["enabled"], false, "{w}");
    assert_eq!(w["disabled_reason"], "consecutive_failures", "{w}");
    assert_eq!(w["consecutive_failures"], 3, "{w}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 3, "attempts after the last one");

    // Disabled: a publish schedules nothing for it.
    let r = server.publish("acc_1", event("evt_while_off")).await;
    assert_eq!(r, (202, json!({"id": "evt_while_off", "deliveries": 0})));

    // Re-enable: the counter is reset, and deliveries flow again.
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
    receiver.set_status(200);
    let r = server.publish("acc_1", event("evt_ok_after")).await;
    assert_eq!(r, (202, json!({"id": "evt_ok_after", "deliveries": 1})));
    let got = receiver.wait_for(4).await;
    assert_eq!(got[3].json()["id"], "evt_ok_after");
    let newest = server.deliveries("acc_1", &wh).await[0].clone();
    assert_eq!(newest["event_id"], "evt_ok_after");
    let dlv = newest["id"].as_str().expect("id");
    let d = server
        .wait_delivery("acc_1", &wh, dlv, "succeeded", |d| {
            d["status"] == "succeeded"
        })
        .await;
    assert_eq!(d["attempts"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        server.webhook("acc_1", &wh).await["consecutive_failures"],
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_below_the_limit_count_and_a_success_resets() {
    let home = Home::new();
    // Fails twice, then succeeds.
    let receiver = Receiver::scripted(|i| Reply::Status(if i < 2 { 503 } else { 204 })).await;
    let server = Server::permissive(
        &home,
        &[
            "--retry-delays",
            "0s,100ms,200ms",
            "--auto-disable-after",
            "3",
        ],
    )
    .await;
    server.create_account("acc_1", "Acme", "pro").await;
    let (w, _) = server
        .create_webhook("acc_1", "Flaky", &receiver.url())
        .await;
    let wh = w["id"].as_str().expect("id").to_owned();
    server.publish("acc_1", event("evt_flaky")).await;
    receiver.wait_for(3).await;
    let dlv = server.deliveries("acc_1", &wh).await[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let d = server
        .wait_delivery("acc_1", &wh, &dlv, "succeeded", |d| {
            d["status"] == "succeeded"
        })
        .await;
    let codes: Vec<Value> = d["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| a["status_code"].clone())
        .collect();
    assert_eq!(codes, vec![json!(503), json!(503), json!(204)], "{d}");
    let w = server.webhook("acc_1", &wh).await;
    assert_eq!(w["enabled"], true, "{w}");
    assert_eq!(w["consecutive_failures"], 0, "{w}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_secret_signs_and_the_old_one_does_not() {
    let home = Home::new();
    let receiver = Receiver::status(200).await;
    let server = Server::permissive(&home, &[]).await;
    server.create_account("acc_1", "Acme", "pro").await;
    let (w, old) = server.create_webhook("acc_1", "R", &receiver.url()).await;
    let wh = w["id"].as_str().expect("id").to_owned();
    server.publish("acc_1", event("evt_before")).await;
    let got = receiver.wait_for(1).await;
    assert_signed(&got[0], &old);

    let (status, v) = server
        .admin(
            "POST",
            &format!("/v1/accounts/acc_1/webhooks/{wh}/rotate-secret"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let new = v["secret"].as_str().expect("secret").to_owned();
    assert_ne!(new, old);

    server.publish("acc_1", event("evt_after")).await;
    let (_, t) = server
        .admin(
            "POST",
            &format!("/v1/accounts/acc_1/webhooks/{wh}/test"),
            None,
        )
        .await;
    assert!(t["delivery_id"].is_string(), "{t}");
    let got = receiver.wait_for(3).await;
    for r in &got[1..] {
        assert_signed(r, &new);
        assert_eq!(
            signature::verify(&old, &r.signature, &r.body, now_secs(), 300),
            Err(VerifyError::Mismatch),
            "the old secret still verifies {}",
            r.text()
        );
    }
    let ids: HashSet<String> = got[1..]
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(ids.contains("evt_after"), "{ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_sends_go_out_while_disabled() {
    let home = Home::new();
    let receiver = Receiver::status(200).await;
    let server = Server::permissive(&home, &[]).await;
    server.create_account("acc_1", "Acme Research", "pro").await;
    let (w, secret) = server.create_webhook("acc_1", "R", &receiver.url()).await;
    let wh = w["id"].as_str().expect("id").to_owned();
    let (status, off) = server
        .admin(
            "PATCH",
            &format!("/v1/accounts/acc_1/webhooks/{wh}"),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, 200, "{off}");
    assert_eq!(off["disabled_reason"], "manual");

    let (status, t) = server
        .admin(
            "POST",
            &format!("/v1/accounts/acc_1/webhooks/{wh}/test"),
            None,
        )
        .await;
    assert_eq!(status, 202, "{t}");
    let dlv = t["delivery_id"].as_str().expect("delivery_id").to_owned();
    let got = receiver.wait_for(1).await;
    let req = &got[0];
    assert_signed(req, &secret);
    let body = req.json();
    assert_eq!(body["_test"], true, "{body}");
    assert_eq!(body["type"], EVENT_TYPE);
    assert_eq!(body["api_version"], "2026-01-01");
    assert_eq!(
        body["account"],
        json!({"id": "acc_1", "name": "Acme Research"})
    );
    assert_ts(&body["created_at"]);
    for k in [
        "id",
        "project",
        "session",
        "respondent_attributes",
        "transcript",
        "insights",
        "links",
    ] {
        assert!(!body[k].is_null(), "{k} missing: {body}");
    }
    assert!(body["project"]["id"].is_string());

    let d = server
        .wait_delivery("acc_1", &wh, &dlv, "succeeded", |d| {
            d["status"] == "succeeded"
        })
        .await;
    assert_delivery(&d);
    assert_eq!(d["test"], true);
    assert_eq!(d["event_id"], body["id"]);
    let w = server.webhook("acc_1", &wh).await;
    assert_eq!(w["enabled"], false, "a test send enabled it: {w}");
    assert_eq!(w["disabled_reason"], "manual");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_retry_adds_an_attempt_to_a_finished_delivery() {
    let home = Home::new();
    // The first request hangs (the attempt stays open), every later one succeeds.
    let receiver = Receiver::scripted(|i| {
        if i == 0 {
            Reply::Hang
        } else {
            Reply::Status(200)
        }
    })
    .await;
    let server =
        Server::permissive(&home, &["--retry-delays", "0s", "--attempt-timeout", "1s"]).await;
    server.create_account("acc_1", "Acme", "pro").await;
    let (w, secret) = server.create_webhook("acc_1", "R", &receiver.url()).await;
    let wh = w["id"].as_str().expect("id").to_owned();
    server.publish("acc_1", event("evt_retry")).await;
    receiver.wait_for(1).await;
    let dlv = server.deliveries("acc_1", &wh).await[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let retry = format!("/v1/accounts/acc_1/webhooks/{wh}/deliveries/{dlv}/retry");

    // Still pending (its attempt is open): 409.
    let d = server.delivery("acc_1", &wh, &dlv).await;
    assert_eq!(d["status"], "pending", "{d}");
    assert_error(&server.admin("POST", &retry, None).await, 409, "conflict");

    // The attempt times out; one attempt only, so the delivery fails.
    let d = server
        .wait_delivery("acc_1", &wh, &dlv, "failed", |d| d["status"] == "failed")
        .await;
    assert_delivery(&d);
    let attempts = d["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{d}");
    assert_eq!(attempts[0]["error"], "timeout", "{d}");
    assert_eq!(attempts[0]["status_code"], Value::Null, "{d}");
    assert!(attempts[0]["duration_ms"].as_u64() >= Some(900), "{d}");

    // Retry by hand: 202, one more attempt in the same delivery.
    let (status, v) = server.admin("POST", &retry, None).await;
    assert_eq!(status, 202, "{v}");
    let got = receiver.wait_for(2).await;
    assert_signed(&got[1], &secret);
    assert_eq!(got[1].body, got[0].body, "the retried body differs");
    let d = server
        .wait_delivery("acc_1", &wh, &dlv, "succeeded", |d| {
            d["status"] == "succeeded"
        })
        .await;
    assert_delivery(&d);
    let attempts = d["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{d}");
    assert_eq!(attempts[1]["attempt"], 2, "{d}");
    assert_eq!(attempts[1]["status_code"], 200, "{d}");
    assert_eq!(attempts[1]["error"], Value::Null, "{d}");
    assert_eq!(server.deliveries("acc_1", &wh).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_sigkill_delivers_every_pending_event() {
    let home = Home::new();
    let receiver = Receiver::status(500).await;
    // Many short retries, and no auto-disable in the way.
    let delays = format!("0s{}", ",300ms".repeat(40));
    let args = [
        "--retry-delays",
        delays.as_str(),
        "--auto-disable-after",
        "1000",
    ];
    let mut server = Server::permissive(&home, &args).await;
    server.create_account("acc_1", "Acme", "pro").await;
    let (w, secret) = server.create_webhook("acc_1", "R", &receiver.url()).await;
    let wh = w["id"].as_str().expect("id").to_owned();
    let n = 5;
    let ids: Vec<String> = (0..n).map(|i| format!("evt_restart_{i}")).collect();
    for id in &ids {
        let r = server.publish("acc_1", event(id)).await;
        assert_eq!(r, (202, json!({"id": id, "deliveries": 1})));
    }
    // Every event was tried (and failed) at least once.
    eventually("a first failed attempt of every event", || {
        let seen: HashSet<String> = receiver
            .received()
            .iter()
            .filter_map(|r| r.json()["id"].as_str().map(str::to_owned))
            .collect();
        let all = ids.iter().all(|id| seen.contains(id));
        async move { all.then_some(()) }
    })
    .await;
    let before = server.deliveries("acc_1", &wh).await;
    assert_eq!(before.len(), n);
    assert!(
        before.iter().all(|d| d["status"] == "pending"),
        "{before:?}"
    );
    server.proc.kill();
    drop(server);

    let server = Server::permissive(&home, &args).await;
    // Accounts and webhooks are still there.
    let (status, acc) = server.admin("GET", "/v1/accounts/acc_1", None).await;
    assert_eq!(status, 200, "{acc}");
    let w2 = server.webhook("acc_1", &wh).await;
    assert_eq!(w2["url"], receiver.url());
    assert_eq!(w2["enabled"], true);
    let listed = server.deliveries("acc_1", &wh).await;
    assert_eq!(listed.len(), n, "{listed:?}");
    // Publishing an old id again is still a duplicate.
    let r = server.publish("acc_1", event(&ids[0])).await;
    assert_eq!(r, (200, json!({"id": ids[0], "deliveries": 1})));

    receiver.set_status(200);
    for d in &listed {
        let dlv = d["id"].as_str().expect("id");
        let done = server
            .wait_delivery("acc_1", &wh, dlv, "succeeded after the restart", |d| {
                d["status"] == "succeeded"
            })
            .await;
        assert_delivery(&done);
        let last = done["attempts"]
            .as_array()
            .and_then(|a| a.last().cloned())
            .expect("an attempt");
        assert_eq!(last["status_code"], 200, "{done}");
    }
    // Each event reached the receiver with a 200, correctly signed.
    let delivered: HashSet<String> = receiver
        .received()
        .iter()
        .filter(|r| r.reply == Reply::Status(200))
        .inspect(|r| assert_signed(r, &secret))
        .filter_map(|r| r.json()["id"].as_str().map(str::to_owned))
        .collect();
    for id in &ids {
        assert!(
            delivered.contains(id),
            "{id} never delivered: {delivered:?}"
        );
    }
}
