//! End-to-end signing against the real `hallway-webhooks serve` and a local HTTPS receiver:
//! the signature scheme a webhook chooses (the spec's `X-Hallway-Signature`, or Standard
//! Webhooks), the event id header every delivery carries, and a secret rotation's grace
//! (both secrets sign, the new one first, until the grace ends, across a restart).

mod common;

use common::*;
use hallway_webhooks::signature::{self, standard, VerifyError};
use serde_json::{json, Value};
use std::time::Duration;

fn webhook_path(wh: &str) -> String {
    format!("/v1/accounts/acc_1/webhooks/{wh}")
}

/// The `v1` signatures of a received `X-Hallway-Signature`, in order.
fn hallway_v1s(r: &Received) -> Vec<String> {
    r.header(signature::HEADER_NAME)
        .split(',')
        .filter_map(|p| p.strip_prefix("v1=").map(str::to_owned))
        .collect()
}

/// Whether `secret` verifies a Standard Webhooks request as received.
fn standard_verifies(r: &Received, secret: &str) -> Result<(), VerifyError> {
    standard::verify(
        secret,
        r.header(standard::ID_HEADER),
        r.header(standard::TIMESTAMP_HEADER),
        r.header(standard::SIGNATURE_HEADER),
        &r.body,
        now_secs(),
        300,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_scheme_sends_its_headers_and_every_delivery_its_event_id() {
    let home = Home::new();
    let receiver = Receiver::status(200).await;
    let server = Server::permissive(&home, &[]).await;
    server.create_account("acc_1", "Acme", "pro").await;
    let (spec, spec_secret) = server
        .create_webhook("acc_1", "Spec", &receiver.url())
        .await;
    assert_eq!(spec["signature_scheme"], "hallway", "the default: {spec}");
    let (std_hook, std_secret) = server
        .create_webhook_with(
            "acc_1",
            json!({"name": "Standard", "url": format!("{}?scheme=standard", receiver.url()),
                   "events": [EVENT_TYPE], "signature_scheme": "standard"}),
        )
        .await;
    assert_eq!(std_hook["signature_scheme"], "standard");
    let std_wh = std_hook["id"].as_str().expect("id").to_owned();
    let shown = server.webhook("acc_1", &std_wh).await;
    assert_webhook(&shown);
    assert_eq!(shown["signature_scheme"], "standard");
    // A secret is `whsec_` and base64, which either scheme takes.
    for s in [&spec_secret, &std_secret] {
        assert_eq!(standard::key(s).map(|k| k.len()), Ok(24), "{s}");
    }

    // A host id with a `.`: the body and X-Hallway-Event-Id carry it as is; the signed
    // Standard Webhooks id cannot hold a `.` and percent-encodes it.
    let r = server.publish("acc_1", event("order.42")).await;
    assert_eq!(r, (202, json!({"id": "order.42", "deliveries": 2})));
    let got = receiver.wait_for(2).await;
    let (std_req, spec_req) = match got[0].header_values(standard::ID_HEADER).is_empty() {
        true => (&got[1], &got[0]),
        false => (&got[0], &got[1]),
    };
    for r in [std_req, spec_req] {
        assert_eq!(r.header(signature::EVENT_ID_HEADER), "order.42");
        assert_eq!(r.json()["id"], "order.42");
    }
    // The spec's scheme: X-Hallway-Signature only.
    assert_eq!(
        signature::verify(
            &spec_secret,
            spec_req.header(signature::HEADER_NAME),
            &spec_req.body,
            now_secs(),
            300
        ),
        Ok(())
    );
    for name in [
        standard::ID_HEADER,
        standard::TIMESTAMP_HEADER,
        standard::SIGNATURE_HEADER,
    ] {
        assert!(
            spec_req.header_values(name).is_empty(),
            "{name} on a hallway delivery"
        );
    }
    // Standard Webhooks: its three headers, verified as the reference libraries verify.
    assert!(std_req.header_values(signature::HEADER_NAME).is_empty());
    assert_eq!(std_req.header(standard::ID_HEADER), "order%2E42");
    let ts: u64 = std_req
        .header(standard::TIMESTAMP_HEADER)
        .parse()
        .expect("digits");
    assert!(now_secs().abs_diff(ts) < 60, "{ts}");
    assert!(std_req
        .header(standard::SIGNATURE_HEADER)
        .starts_with("v1,"));
    assert_eq!(standard_verifies(std_req, &std_secret), Ok(()));
    assert_eq!(
        standard_verifies(std_req, &spec_secret),
        Err(VerifyError::Mismatch)
    );

    // Switching schemes keeps the secret: the next delivery is signed the other way.
    let (status, switched) = server
        .admin(
            "PATCH",
            &webhook_path(&std_wh),
            Some(json!({"signature_scheme": "hallway"})),
        )
        .await;
    assert_eq!(status, 200, "{switched}");
    assert_eq!(switched["signature_scheme"], "hallway");
    let (_, t) = server
        .admin("POST", &format!("{}/test", webhook_path(&std_wh)), None)
        .await;
    assert!(t["delivery_id"].is_string(), "{t}");
    let got = receiver.wait_for(3).await;
    let test = &got[2];
    assert_eq!(test.json()["_test"], true);
    assert_eq!(
        signature::verify(
            &std_secret,
            test.header(signature::HEADER_NAME),
            &test.body,
            now_secs(),
            300
        ),
        Ok(())
    );
    assert_eq!(test.header(signature::EVENT_ID_HEADER), test.json()["id"]);
    assert!(test.header_values(standard::SIGNATURE_HEADER).is_empty());

    // An unknown scheme is refused, naming the field and the choices.
    for body in [
        json!({"signature_scheme": "svix"}),
        json!({"signature_scheme": "Standard"}),
    ] {
        let got = server
            .admin("PATCH", &webhook_path(&std_wh), Some(body))
            .await;
        let message = assert_error(&got, 422, "validation_failed");
        assert!(
            message.contains("signature_scheme") && message.contains("\"standard\""),
            "{message}"
        );
    }
    let got = server
        .admin(
            "PATCH",
            &webhook_path(&std_wh),
            Some(json!({"signature_scheme": 1})),
        )
        .await;
    assert_error(&got, 400, "invalid_request");
}

/// Rotates `wh`'s secret with `body`; returns the new secret and the grace's end.
async fn rotate(server: &Server, wh: &str, body: Option<Value>) -> (String, Value) {
    let (status, v) = server
        .admin("POST", &format!("{}/rotate-secret", webhook_path(wh)), body)
        .await;
    assert_eq!(status, 200, "{v}");
    assert_keys(&v, &["secret", "previous_secret_expires_at"]);
    (
        v["secret"].as_str().expect("secret").to_owned(),
        v["previous_secret_expires_at"].clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grace_signs_with_both_secrets_new_first_until_it_ends_and_survives_a_restart() {
    let home = Home::new();
    let receiver = Receiver::status(200).await;
    let server = Server::permissive(&home, &[]).await;
    server.create_account("acc_1", "Acme", "pro").await;
    let (long, long_old) = server
        .create_webhook("acc_1", "Long grace", &receiver.url())
        .await;
    let long = long["id"].as_str().expect("id").to_owned();
    let (short, short_old) = server
        .create_webhook_with(
            "acc_1",
            json!({"name": "Short grace", "url": format!("{}?short", receiver.url()),
                   "events": [EVENT_TYPE], "signature_scheme": "standard"}),
        )
        .await;
    let short = short["id"].as_str().expect("id").to_owned();

    // Bad graces lose nothing: the secret stays.
    for (body, status, code) in [
        (json!({"grace": "8d"}), 422, "validation_failed"),
        (json!({"grace": "169h"}), 422, "validation_failed"),
        (json!({"grace": "soon"}), 422, "validation_failed"),
        (json!({"grace": 3600}), 400, "invalid_request"),
        (json!({"grace": "1h", "keep": true}), 400, "invalid_request"),
    ] {
        let got = server
            .admin(
                "POST",
                &format!("{}/rotate-secret", webhook_path(&long)),
                Some(body.clone()),
            )
            .await;
        let message = assert_error(&got, status, code);
        assert!(
            message.contains("grace") || message.contains("keep"),
            "{body}: {message}"
        );
    }
    let over = server
        .admin(
            "POST",
            &format!("{}/rotate-secret", webhook_path(&long)),
            Some(json!({"grace": "8d"})),
        )
        .await;
    assert!(assert_error(&over, 422, "validation_failed").contains("168 hours"));

    let before = now_secs();
    let (long_new, long_until) = rotate(&server, &long, Some(json!({"grace": "1h"}))).await;
    let (short_new, short_until) = rotate(&server, &short, Some(json!({"grace": "2s"}))).await;
    assert_ts(&long_until);
    assert_ts(&short_until);
    let until_ms = |v: &Value| {
        hallway_webhooks::Timestamp::parse_rfc3339(v.as_str().expect("a time"))
            .expect("RFC 3339")
            .0
    };
    let long_end = until_ms(&long_until) / 1000;
    assert!(
        (before + 3600..=now_secs() + 3600).contains(&long_end),
        "{long_until}"
    );

    server.publish("acc_1", event("evt_during")).await;
    let got = receiver.wait_for(2).await;
    let (long_req, short_req) = match got[0].header_values(standard::ID_HEADER).is_empty() {
        true => (&got[0], &got[1]),
        false => (&got[1], &got[0]),
    };
    // One signature per secret, the new one first: the spec's own Node example reads only
    // the first `v1`, so a receiver on the new secret passes at once.
    let v1s = hallway_v1s(long_req);
    assert_eq!(v1s.len(), 2, "{}", long_req.header(signature::HEADER_NAME));
    let t = long_req
        .header(signature::HEADER_NAME)
        .split(',')
        .find_map(|p| p.strip_prefix("t="))
        .expect("t=")
        .parse::<u64>()
        .expect("digits");
    assert_eq!(v1s[0], signature::compute(&long_new, t, &long_req.body));
    assert_eq!(v1s[1], signature::compute(&long_old, t, &long_req.body));
    let sigs: Vec<&str> = short_req
        .header(standard::SIGNATURE_HEADER)
        .split(' ')
        .collect();
    assert_eq!(sigs.len(), 2, "{sigs:?}");
    let ts: u64 = short_req
        .header(standard::TIMESTAMP_HEADER)
        .parse()
        .expect("digits");
    let msg_id = short_req.header(standard::ID_HEADER);
    assert_eq!(
        Ok(sigs[0].to_owned()),
        standard::sign(&short_new, msg_id, ts, &short_req.body)
    );
    assert_eq!(
        Ok(sigs[1].to_owned()),
        standard::sign(&short_old, msg_id, ts, &short_req.body)
    );
    for secret in [&short_new, &short_old] {
        assert_eq!(standard_verifies(short_req, secret), Ok(()));
    }

    // After the short grace ends, only the new secret signs; the long one still runs after a
    // restart (the state comes back from the snapshot taken at shutdown).
    let short_end_ms = until_ms(&short_until);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64;
    let wait = short_end_ms.saturating_sub(now_ms);
    tokio::time::sleep(Duration::from_millis(wait + 50)).await;
    let mut server = server;
    server.proc.terminate();
    server.proc.wait_exit(DEADLINE).expect("a graceful stop");
    drop(server);
    let server = Server::permissive(&home, &[]).await;
    server.publish("acc_1", event("evt_after")).await;
    let got = receiver.wait_for(4).await;
    let after: Vec<&Received> = got[2..].iter().collect();
    let (long_req, short_req) = match after[0].header_values(standard::ID_HEADER).is_empty() {
        true => (after[0], after[1]),
        false => (after[1], after[0]),
    };
    assert_eq!(long_req.json()["id"], "evt_after");
    assert_eq!(
        hallway_v1s(long_req).len(),
        2,
        "the 1 h grace runs on after a restart"
    );
    assert_eq!(
        signature::verify(
            &long_old,
            long_req.header(signature::HEADER_NAME),
            &long_req.body,
            now_secs(),
            300
        ),
        Ok(())
    );
    assert_eq!(
        short_req
            .header(standard::SIGNATURE_HEADER)
            .split(' ')
            .count(),
        1
    );
    assert_eq!(standard_verifies(short_req, &short_new), Ok(()));
    assert_eq!(
        standard_verifies(short_req, &short_old),
        Err(VerifyError::Mismatch)
    );

    // A rotation without a grace ends the running one at once.
    let (newest, none) = rotate(&server, &long, None).await;
    assert_eq!(none, Value::Null);
    server.publish("acc_1", event("evt_last")).await;
    let got = receiver.wait_for(6).await;
    let last = got[4..]
        .iter()
        .find(|r| r.header_values(standard::ID_HEADER).is_empty())
        .expect("the long-grace webhook's delivery");
    assert_eq!(hallway_v1s(last).len(), 1);
    for old in [&long_old, &long_new] {
        assert_eq!(
            signature::verify(
                old,
                last.header(signature::HEADER_NAME),
                &last.body,
                now_secs(),
                300
            ),
            Err(VerifyError::Mismatch)
        );
    }
    assert_eq!(
        signature::verify(
            &newest,
            last.header(signature::HEADER_NAME),
            &last.body,
            now_secs(),
            300
        ),
        Ok(())
    );
}
