//! Attempt detail over the API, end to end: after a 500 with a body, the delivery shows the
//! failure in words, the request headers sent (the signature included, as the receiver got
//! them), the response's headers and body; a long body is cut at 4 KiB; a refused connection
//! says so in words.

mod common;

use common::*;
use serde_json::Value;

const BODY_500: &str = "database unavailable, try again later";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_shows_what_each_attempt_sent_and_got_back() {
    let home = Home::new();
    let receiver = Receiver::scripted(|n| match n {
        0 => Reply::WithBody(500, BODY_500),
        _ => Reply::Status(200),
    })
    .await;
    let long: &'static str = Box::leak("x".repeat(6000).into_boxed_str());
    let chatty = Receiver::scripted(move |_| Reply::WithBody(502, long)).await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let server = Server::permissive(&home, &["--retry-delays", "0s,100ms"]).await;
    server.create_account("acc_1", "Acme", "pro").await;
    let (w, _) = server
        .create_webhook("acc_1", "Flaky", &receiver.url())
        .await;
    let wh = w["id"].as_str().expect("id").to_owned();
    let (c, _) = server
        .create_webhook("acc_1", "Chatty", &chatty.url())
        .await;
    let chatty_wh = c["id"].as_str().expect("id").to_owned();
    let (d, _) = server
        .create_webhook("acc_1", "Down", &format!("https://localhost:{closed}/hook"))
        .await;
    let down_wh = d["id"].as_str().expect("id").to_owned();
    let (status, _) = server.publish("acc_1", event("evt_detail")).await;
    assert_eq!(status, 202);

    let dlv_of = |list: Vec<Value>| list[0]["id"].as_str().expect("id").to_owned();
    let dlv = dlv_of(server.deliveries("acc_1", &wh).await);
    let done = server
        .wait_delivery("acc_1", &wh, &dlv, "succeeded on the second attempt", |d| {
            d["status"] == "succeeded"
        })
        .await;
    assert_delivery(&done);
    let got = receiver.wait_for(2).await;
    let [first, second] = &done["attempts"].as_array().expect("attempts")[..] else {
        panic!("two attempts: {done}");
    };
    assert_eq!(first["status_code"], 500);
    assert_eq!(first["error"], "http_status");
    assert_eq!(
        first["error_message"],
        "the endpoint answered HTTP 500 Internal Server Error"
    );
    // The headers sent are the ones the receiver got, signature and event id included.
    let sent = &first["request_headers"];
    for name in [
        "content-type",
        "user-agent",
        "x-hallway-signature",
        "x-hallway-event-id",
    ] {
        assert_eq!(sent[name], got[0].header(name), "{name}: {sent}");
    }
    assert_eq!(sent["x-hallway-event-id"], "evt_detail");
    assert_eq!(first["response_body"], BODY_500);
    assert_eq!(first["response_body_truncated"], false);
    assert_eq!(
        first["response_headers"]["content-type"],
        "text/plain; charset=utf-8"
    );
    assert_eq!(first["response_headers"]["x-request-number"], "0");
    // The retry's own signature (signed at its send time), and its answer.
    assert_eq!(
        second["request_headers"]["x-hallway-signature"],
        got[1].header("x-hallway-signature")
    );
    assert_eq!(second["status_code"], 200);
    assert_eq!(second["error"], Value::Null);
    assert_eq!(second["error_message"], Value::Null);
    assert_eq!(second["response_body"], "ok");

    // A long answer is kept to its first 4 KiB, and says so.
    let chatty_dlv = dlv_of(server.deliveries("acc_1", &chatty_wh).await);
    let failed = server
        .wait_delivery("acc_1", &chatty_wh, &chatty_dlv, "failed twice", |d| {
            d["status"] == "failed"
        })
        .await;
    let a = &failed["attempts"][0];
    assert_eq!(a["response_body"].as_str().map(str::len), Some(4096));
    assert_eq!(a["response_body_truncated"], true);
    assert_eq!(
        a["error_message"],
        "the endpoint answered HTTP 502 Bad Gateway"
    );

    // No response at all: the failure in words, what was sent, nothing received.
    let down_dlv = dlv_of(server.deliveries("acc_1", &down_wh).await);
    let down = server
        .wait_delivery("acc_1", &down_wh, &down_dlv, "failed twice", |d| {
            d["status"] == "failed"
        })
        .await;
    assert_delivery(&down);
    let a = &down["attempts"][0];
    assert_eq!(a["error"], "connect");
    let words = a["error_message"].as_str().expect("words");
    assert!(words.contains("refused"), "{words}");
    assert!(
        a["request_headers"]["x-hallway-signature"].is_string(),
        "{a}"
    );
    assert_eq!(a["response_headers"], Value::Null);
    assert_eq!(a["response_body"], Value::Null);

    // The list shows the same as the delivery's own view.
    let listed = server.deliveries("acc_1", &wh).await;
    assert_eq!(listed[0], done);
}
