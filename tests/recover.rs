//! End-to-end tests of pausing and recovering against the real binary: an endpoint down
//! while events are published, the webhook auto-disabled, the endpoint back, re-enable and
//! recover; once cleanly and once with a SIGKILL while the recover's deliveries are sent.

mod common;

use common::*;
use hallway_webhooks::{signature, Timestamp};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Events that arrive while the endpoint is up, before the outage.
const BEFORE: usize = 50;
/// Events published during the outage.
const DURING: usize = 1_000;

fn now_rfc3339() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64;
    Timestamp(ms).to_rfc3339()
}

/// How many requests each event id got that the receiver answered with a 2xx.
fn successes(receiver: &Receiver) -> HashMap<String, usize> {
    let mut out: HashMap<String, usize> = HashMap::new();
    for r in receiver.received() {
        if matches!(r.reply, Reply::Status(200..=299)) {
            let id = r.json()["id"].as_str().expect("id").to_owned();
            *out.entry(id).or_default() += 1;
        }
    }
    out
}

/// The outage: `BEFORE` events arrive, the endpoint goes down, `DURING` events are published
/// and the webhook auto-disables; every outage event ends up paused. Returns the webhook id,
/// the outage's start, and the outage's event ids.
async fn outage(server: &Server, receiver: &Receiver) -> (String, String, Vec<String>) {
    server.create_account("acc_1", "Acme Research", "pro").await;
    let (w, _) = server
        .create_webhook("acc_1", "Receiver", &receiver.url())
        .await;
    let wh = w["id"].as_str().expect("id").to_owned();
    let since = now_rfc3339();
    let before: Vec<String> = (0..BEFORE).map(|i| format!("evt_before_{i}")).collect();
    publish_all(server, &before).await;
    receiver.wait_for(BEFORE).await;
    eventually("the first events succeed", || async {
        (successes(receiver).len() == BEFORE).then_some(())
    })
    .await;
    // Recorded, not only received: a success the engine has not recorded yet would reset the
    // failure counter in the middle of the outage and raise `webhook.failing` twice.
    eventually("the engine records the first events' successes", || async {
        let recorded = server.deliveries("acc_1", &wh).await;
        (recorded.len() == BEFORE && recorded.iter().all(|d| d["status"] == json!("succeeded")))
            .then_some(())
    })
    .await;

    receiver.set_status(503);
    let during: Vec<String> = (0..DURING).map(|i| format!("evt_outage_{i}")).collect();
    publish_all(server, &during).await;
    let hook = eventually("the webhook auto-disables", || async {
        let w = server.webhook("acc_1", &wh).await;
        (w["enabled"] == json!(false)).then_some(w)
    })
    .await;
    assert_eq!(hook["disabled_reason"], json!("consecutive_failures"));
    // Nothing is pending: every outage delivery is paused (or failed, if its last attempt
    // ended it), none cancelled.
    let page = server
        .admin(
            "GET",
            &format!("/v1/accounts/acc_1/webhooks/{wh}/deliveries?limit=100"),
            None,
        )
        .await;
    for d in page.1["data"].as_array().expect("data") {
        assert_delivery(d);
        assert_eq!(d["status"], json!("paused"), "{d}");
    }
    (wh, since, during)
}

/// The endpoint is back: re-enable and recover from the outage's start, with `callers`
/// overlapping recovers of the same range (which together send each delivery once).
async fn re_enable_and_recover(
    server: &Server,
    receiver: &Receiver,
    wh: &str,
    since: &str,
    callers: usize,
) {
    receiver.set_status(200);
    // Refused while disabled, with a message that says what to do.
    let path = format!("/v1/accounts/acc_1/webhooks/{wh}/recover");
    let refused = server
        .admin("POST", &path, Some(json!({"since": since})))
        .await;
    let message = assert_error(&refused, 409, "conflict");
    assert!(message.contains("disabled"), "{message}");

    let (status, v) = server
        .admin(
            "PATCH",
            &format!("/v1/accounts/acc_1/webhooks/{wh}"),
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["consecutive_failures"], json!(0));
    let calls: Vec<_> = (0..callers)
        .map(|_| {
            let (http, path, body) = (server.http.clone(), path.clone(), json!({"since": since}));
            tokio::spawn(async move { http.json("POST", &path, Some(ADMIN), Some(body)).await })
        })
        .collect();
    let mut total = 0;
    for call in calls {
        let (status, v) = call.await.expect("recover task");
        assert_eq!(status, 202, "{v}");
        total += v["deliveries"].as_u64().expect("deliveries");
    }
    assert_eq!(
        total, DURING as u64,
        "overlapping recovers count each delivery once"
    );
}

const ALERT_SECRET: &str = "whsec_alerts_for_the_host";

/// The alerts the host's receiver got, by type, each checked for its signature; ids repeat
/// only for a resend after a crash.
fn alerts_by_type(alerts: &Receiver) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for r in alerts.received() {
        assert_eq!(
            signature::verify(ALERT_SECRET, &r.signature, &r.body, now_secs(), 300),
            Ok(()),
            "alerts are signed like deliveries"
        );
        let v = r.json();
        let (kind, id) = (
            v["type"].as_str().expect("type"),
            v["id"].as_str().expect("id"),
        );
        let ids = out.entry(kind.to_owned()).or_default();
        if !ids.iter().any(|i| i == id) {
            ids.push(id.to_owned());
        }
    }
    out
}

/// Checks the alerts of an outage: one `webhook.failing`, one `webhook.disabled` (with its
/// reason and last error), one `webhook.enabled`.
async fn assert_outage_alerts(alerts: &Receiver) {
    eventually("the alerts arrive", || async {
        let got = alerts_by_type(alerts);
        ["webhook.failing", "webhook.disabled", "webhook.enabled"]
            .iter()
            .all(|k| got.contains_key(*k))
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = alerts_by_type(alerts);
    for kind in ["webhook.failing", "webhook.disabled", "webhook.enabled"] {
        assert_eq!(got[kind].len(), 1, "{kind} once: {got:?}");
    }
    let disabled = alerts
        .received()
        .into_iter()
        .map(|r| r.json())
        .find(|v| v["type"] == json!("webhook.disabled"))
        .expect("disabled alert");
    assert_eq!(disabled["data"]["reason"], json!("consecutive_failures"));
    assert_eq!(disabled["data"]["last_error"], json!("http_status"));
    assert_eq!(disabled["data"]["consecutive_failures"], json!(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_recovered_and_every_missed_event_arrives_exactly_once() {
    let home = Home::new();
    let receiver = Receiver::status(200).await;
    let alerts = Receiver::status(204).await;
    let alert_url = alerts.url();
    let server = Server::permissive(
        &home,
        &[
            "--retry-delays",
            "0s,1m",
            "--alert-url",
            &alert_url,
            "--alert-secret",
            ALERT_SECRET,
        ],
    )
    .await;
    let (wh, since, during) = outage(&server, &receiver).await;
    // Enabling alone sends nothing.
    let received_before = receiver.received().len();
    re_enable_and_recover(&server, &receiver, &wh, &since, 2).await;

    eventually("every outage event arrives", || async {
        (successes(&receiver).len() == BEFORE + DURING).then_some(())
    })
    .await;
    // Give a resend, if any were wrongly made, time to show.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = successes(&receiver);
    for id in &during {
        assert_eq!(got.get(id), Some(&1), "{id} arrives exactly once");
    }
    for i in 0..BEFORE {
        assert_eq!(
            got.get(&format!("evt_before_{i}")),
            Some(&1),
            "nothing succeeded is sent again"
        );
    }
    assert_eq!(
        receiver.received().len() - received_before,
        DURING,
        "one request per recovered delivery"
    );
    // A second recover of the same range finds nothing left to send.
    let (status, v) = server
        .admin(
            "POST",
            &format!("/v1/accounts/acc_1/webhooks/{wh}/recover"),
            Some(json!({"since": since})),
        )
        .await;
    assert_eq!((status, v), (202, json!({"deliveries": 0})));
    assert_outage_alerts(&alerts).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recover_interrupted_by_sigkill_completes_after_restart_without_double_sends() {
    let home = Home::new();
    let receiver = Receiver::status(200).await;
    let alerts = Receiver::status(204).await;
    let alert_url = alerts.url();
    let args = [
        "--retry-delays",
        "0s,1m",
        "--max-in-flight",
        "4",
        "--alert-url",
        &alert_url,
        "--alert-secret",
        ALERT_SECRET,
    ];
    let mut server = Server::permissive(&home, &args).await;
    let (wh, since, during) = outage(&server, &receiver).await;
    let received_before = receiver.received().len();
    re_enable_and_recover(&server, &receiver, &wh, &since, 1).await;

    // SIGKILL while the recovered deliveries are being sent.
    receiver.wait_for(received_before + DURING / 5).await;
    server.proc.kill();
    let sent_before_kill = receiver.received().len() - received_before;
    assert!(
        sent_before_kill < DURING,
        "the kill came after everything was sent ({sent_before_kill}); nothing was tested"
    );

    let server = Server::permissive(&home, &args).await;
    eventually("every outage event arrives after the restart", || async {
        (successes(&receiver).len() == BEFORE + DURING).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = successes(&receiver);
    // At least once: only attempts open at the kill (at most the in-flight limit, 4) may
    // arrive twice.
    let twice: Vec<&String> = during.iter().filter(|id| got[*id] > 1).collect();
    assert!(
        twice.len() <= 4 && got.values().all(|n| *n <= 2),
        "sent twice beyond the attempts in flight: {twice:?}"
    );
    for i in 0..BEFORE {
        assert_eq!(got.get(&format!("evt_before_{i}")), Some(&1));
    }
    // Recovering again sends nothing: each is pending or succeeded.
    let (status, v): (u16, Value) = server
        .admin(
            "POST",
            &format!("/v1/accounts/acc_1/webhooks/{wh}/recover"),
            Some(json!({"since": since})),
        )
        .await;
    assert_eq!((status, v), (202, json!({"deliveries": 0})));
    // The restart neither lost nor (beyond a resend of the same id) repeated an alert.
    assert_outage_alerts(&alerts).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_sends_the_same_body_and_event_id_as_new_deliveries() {
    let home = Home::new();
    let receiver = Receiver::status(200).await;
    let server = Server::permissive(&home, &[]).await;
    let (_, key) = server.create_account("acc_1", "Acme Research", "pro").await;
    let (w1, _) = server.create_webhook("acc_1", "One", &receiver.url()).await;
    let (w2, _) = server.create_webhook("acc_1", "Two", &receiver.url()).await;
    let (wh1, wh2) = (
        w1["id"].as_str().expect("id"),
        w2["id"].as_str().expect("id"),
    );
    let (status, _) = server.publish("acc_1", event("evt_replay_1")).await;
    assert_eq!(status, 202);
    let first = receiver.wait_for(2).await;

    // To every enabled match: both webhooks get the identical body again.
    let path = "/v1/accounts/acc_1/events/evt_replay_1/replay";
    let (status, v) = server.admin("POST", path, Some(json!({}))).await;
    assert_eq!((status, v), (202, json!({"deliveries": 2})));
    let all = receiver.wait_for(4).await;
    assert!(all[2..].iter().all(|r| r.body == first[0].body));

    // To one named webhook; a disabled one is refused; an account key may not replay.
    let (status, v) = server
        .admin("POST", path, Some(json!({"webhook_ids": [wh2]})))
        .await;
    assert_eq!((status, v), (202, json!({"deliveries": 1})));
    receiver.wait_for(5).await;
    let (status, _) = server
        .admin(
            "PATCH",
            &format!("/v1/accounts/acc_1/webhooks/{wh1}"),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, 200);
    let refused = server
        .admin("POST", path, Some(json!({"webhook_ids": [wh1]})))
        .await;
    assert_error(&refused, 409, "conflict");
    let by_key = server.call("POST", path, Some(&key), Some(json!({}))).await;
    assert_eq!(by_key.0, 403, "{}", by_key.1);
    let unknown = server
        .admin(
            "POST",
            "/v1/accounts/acc_1/events/evt_never/replay",
            Some(json!({})),
        )
        .await;
    assert_error(&unknown, 404, "not_found");
    // History lists the replayed deliveries as deliveries of the same event.
    let listed = server.deliveries("acc_1", wh2).await;
    assert_eq!(listed.len(), 3);
    assert!(listed
        .iter()
        .all(|d| d["event_id"] == json!("evt_replay_1")));
}
