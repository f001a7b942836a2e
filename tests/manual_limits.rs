//! Manual actions are bounded: a delivery's attempts stop at the cap (even after success), and
//! an account's retries and test sends are rate-limited.

mod common;

use common::*;

#[tokio::test]
async fn manual_retries_stop_at_the_attempts_cap() {
    let home = Home::new();
    let receiver = Receiver::status(200).await;
    let server = Server::permissive(
        &home,
        &[
            "--retry-delays",
            "0s",
            "--max-manual-retries",
            "3",
            "--manual-actions-per-minute",
            "0",
        ],
    )
    .await;
    server.create_account("acc_1", "Acme", "pro").await;
    let (w, _) = server
        .create_webhook("acc_1", "Hook", &receiver.url())
        .await;
    let wh = w["id"].as_str().expect("id").to_owned();
    server.publish("acc_1", event("evt_cap")).await;
    receiver.wait_for(1).await;
    let dlv = server.deliveries("acc_1", &wh).await[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let retry = format!("/v1/accounts/acc_1/webhooks/{wh}/deliveries/{dlv}/retry");
    for attempts in 2..=4 {
        server
            .wait_delivery("acc_1", &wh, &dlv, "finished", |d| {
                d["status"] == "succeeded"
            })
            .await;
        let (status, v) = server.admin("POST", &retry, None).await;
        assert_eq!(status, 202, "retry to attempt {attempts}: {v}");
        server
            .wait_delivery("acc_1", &wh, &dlv, "retried", |d| {
                d["attempts"].as_array().map(Vec::len) == Some(attempts)
                    && d["status"] == "succeeded"
            })
            .await;
    }
    let message = assert_error(
        &server.admin("POST", &retry, None).await,
        409,
        "limit_reached",
    );
    assert!(message.contains("4 attempts"), "{message}");
    assert_eq!(receiver.received().len(), 4);
    let d = server.delivery("acc_1", &wh, &dlv).await;
    assert_eq!(d["attempts"].as_array().map(Vec::len), Some(4), "{d}");
}

#[tokio::test]
async fn retries_and_test_sends_are_rate_limited_per_account() {
    let home = Home::new();
    let receiver = Receiver::status(200).await;
    let server = Server::permissive(&home, &["--manual-actions-per-minute", "3"]).await;
    for acc in ["acc_1", "acc_2"] {
        server.create_account(acc, "Acme", "pro").await;
    }
    let (w1, _) = server.create_webhook("acc_1", "One", &receiver.url()).await;
    let (w2, _) = server.create_webhook("acc_2", "Two", &receiver.url()).await;
    let test = |w: &serde_json::Value, acc: &str| {
        format!(
            "/v1/accounts/{acc}/webhooks/{}/test",
            w["id"].as_str().expect("id")
        )
    };
    for _ in 0..3 {
        let (status, v) = server.admin("POST", &test(&w1, "acc_1"), None).await;
        assert_eq!(status, 202, "{v}");
    }
    let answer = server
        .http
        .send("POST", &test(&w1, "acc_1"), Some(ADMIN), None)
        .await;
    assert_eq!(answer.status, 429);
    let v: serde_json::Value = serde_json::from_slice(&answer.body).expect("JSON");
    assert_eq!(v["error"]["code"], "rate_limited", "{v}");
    // Another account is not slowed down by the first.
    let (status, v) = server.admin("POST", &test(&w2, "acc_2"), None).await;
    assert_eq!(status, 202, "{v}");
    receiver.wait_for(4).await;
}
