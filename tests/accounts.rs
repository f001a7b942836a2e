//! Accounts in the admin API: listing them, issuing a new key (the old one revoked at once, or
//! kept for a grace period), and deleting one with its webhooks and history.

mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_are_listed_by_id_a_page_at_a_time() {
    let home = Home::new();
    let server = Server::start(&home, &[]).await;
    for id in ["acc_c", "acc_a", "acc_b", "acc_d", "acc_e"] {
        server.create_account(id, "Name", "pro").await;
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = server
            .admin(
                "GET",
                &format!("/v1/accounts?limit=2&cursor={cursor}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{page}");
        let data = page["data"].as_array().expect("data");
        assert!(data.len() <= 2);
        for a in data {
            assert_account(a);
            seen.push(a["id"].as_str().expect("id").to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, ["acc_a", "acc_b", "acc_c", "acc_d", "acc_e"]);
    // Admin only: an account key is forbidden, no token unauthorized.
    let (_, key) = server.create_account("acc_f", "F", "free").await;
    let got = server.call("GET", "/v1/accounts", Some(&key), None).await;
    assert_error(&got, 403, "forbidden");
    let got = server.call("GET", "/v1/accounts", None, None).await;
    assert_error(&got, 401, "unauthorized");
    let got = server.admin("GET", "/v1/accounts?limit=0", None).await;
    assert_validation(&got, "limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_key_revokes_the_old_one_at_once_or_after_its_grace() {
    let home = Home::new();
    let server = Server::start(&home, &[]).await;
    let (_, old) = server.create_account("acc_1", "Acme", "pro").await;
    let me = "/v1/accounts/acc_1";
    assert_eq!(server.call("GET", me, Some(&old), None).await.0, 200);

    // Without a body: the old key stops at once.
    let (status, v) = server
        .admin("POST", "/v1/accounts/acc_1/rotate-key", None)
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["previous_key_expires_at"], json!(null));
    let new = v["api_key"].as_str().expect("api_key").to_owned();
    assert_ne!(new, old);
    assert_error(
        &server.call("GET", me, Some(&old), None).await,
        401,
        "unauthorized",
    );
    assert_eq!(server.call("GET", me, Some(&new), None).await.0, 200);

    // With a grace: both work until it ends.
    let (status, v) = server
        .admin(
            "POST",
            "/v1/accounts/acc_1/rotate-key",
            Some(json!({"grace": "1h"})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let newer = v["api_key"].as_str().expect("api_key").to_owned();
    let expires = v["previous_key_expires_at"].as_str().expect("expires");
    let expires_ms = hallway_webhooks::Timestamp::parse_rfc3339(expires)
        .expect("RFC 3339")
        .as_millis();
    let in_an_hour = now_secs() * 1000 + 3_600_000;
    assert!(expires_ms.abs_diff(in_an_hour) < 60_000, "{expires}");
    assert_eq!(server.call("GET", me, Some(&new), None).await.0, 200);
    assert_eq!(server.call("GET", me, Some(&newer), None).await.0, 200);

    // A key cannot rotate itself (admin only), and bad graces are named.
    let got = server
        .call("POST", "/v1/accounts/acc_1/rotate-key", Some(&newer), None)
        .await;
    assert_error(&got, 403, "forbidden");
    for (body, field) in [
        (json!({"grace": "8d"}), "grace"),
        (json!({"grace": "soon"}), "grace"),
    ] {
        let got = server
            .admin("POST", "/v1/accounts/acc_1/rotate-key", Some(body))
            .await;
        assert_validation(&got, field);
    }
    let got = server
        .admin(
            "POST",
            "/v1/accounts/acc_1/rotate-key",
            Some(json!({"grace": 5})),
        )
        .await;
    assert_error(&got, 400, "invalid_request");
    let got = server
        .admin("POST", "/v1/accounts/acc_nope/rotate-key", None)
        .await;
    assert_error(&got, 404, "not_found");

    // The keys survive a restart as they were: the grace is in the log.
    drop(server);
    let server = Server::start(&home, &[]).await;
    assert_eq!(server.call("GET", me, Some(&new), None).await.0, 200);
    assert_eq!(server.call("GET", me, Some(&newer), None).await.0, 200);
    assert_error(
        &server.call("GET", me, Some(&old), None).await,
        401,
        "unauthorized",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_account_takes_its_webhooks_keys_and_history() {
    let home = Home::new();
    let receiver = Receiver::status(200).await;
    let server = Server::permissive(&home, &[]).await;
    let (_, key) = server.create_account("acc_1", "Acme", "pro").await;
    server.create_account("acc_2", "Other", "pro").await;
    let (w, _) = server.create_webhook("acc_1", "R", &receiver.url()).await;
    let wh = w["id"].as_str().expect("id").to_owned();
    let (w2, _) = server.create_webhook("acc_2", "R", &receiver.url()).await;
    let wh2 = w2["id"].as_str().expect("id").to_owned();
    for acc in ["acc_1", "acc_2"] {
        let (status, v) = server.publish(acc, event("evt_1")).await;
        assert_eq!(status, 202, "{v}");
    }
    receiver.wait_for(2).await;
    for (acc, w) in [("acc_1", &wh), ("acc_2", &wh2)] {
        let d = server.deliveries(acc, w).await;
        let id = d[0]["id"].as_str().expect("id").to_owned();
        server
            .wait_delivery(acc, w, &id, "succeeded", |d| d["status"] == "succeeded")
            .await;
    }

    // An account key cannot delete its own account.
    let got = server
        .call("DELETE", "/v1/accounts/acc_1", Some(&key), None)
        .await;
    assert_error(&got, 403, "forbidden");
    let (status, v) = server.admin("DELETE", "/v1/accounts/acc_1", None).await;
    assert_eq!(status, 204, "{v}");
    assert_error(
        &server.admin("GET", "/v1/accounts/acc_1", None).await,
        404,
        "not_found",
    );
    assert_error(
        &server.admin("DELETE", "/v1/accounts/acc_1", None).await,
        404,
        "not_found",
    );
    assert_error(
        &server
            .call("GET", "/v1/accounts/acc_1", Some(&key), None)
            .await,
        401,
        "unauthorized",
    );
    let (_, list) = server.admin("GET", "/v1/accounts", None).await;
    let ids: Vec<&str> = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|a| a["id"].as_str())
        .collect();
    assert_eq!(ids, ["acc_2"]);

    // Recreated under the same id, it starts empty: no webhooks, no history, a new key.
    let (_, new_key) = server.create_account("acc_1", "Acme again", "pro").await;
    assert_ne!(new_key, key);
    let (status, v) = server
        .admin("GET", "/v1/accounts/acc_1/webhooks", None)
        .await;
    assert_eq!((status, &v["data"]), (200, &json!([])));
    assert_error(
        &server
            .admin(
                "GET",
                &format!("/v1/accounts/acc_1/webhooks/{wh}/deliveries"),
                None,
            )
            .await,
        404,
        "not_found",
    );
    // Its event id is free again, the other account keeps its own.
    let (status, _) = server.publish("acc_1", event("evt_1")).await;
    assert_eq!(status, 202, "a new account's first publish of evt_1");
    let (status, _) = server.publish("acc_2", event("evt_1")).await;
    assert_eq!(status, 200, "acc_2 still remembers evt_1");
    assert_eq!(server.deliveries("acc_2", &wh2).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_under_way_when_its_account_goes_is_recorded_and_nothing_breaks() {
    let home = Home::new();
    // The receiver answers after a pause, so the attempt is under way during the delete.
    let receiver =
        Receiver::scripted(|_| Reply::After(200, std::time::Duration::from_millis(800))).await;
    let server = Server::permissive(&home, &[]).await;
    server.create_account("acc_1", "Acme", "pro").await;
    server
        .create_webhook("acc_1", "Slow", &receiver.url())
        .await;
    let (status, _) = server.publish("acc_1", event("evt_1")).await;
    assert_eq!(status, 202);
    receiver.wait_for(1).await;
    let (status, v) = server.admin("DELETE", "/v1/accounts/acc_1", None).await;
    assert_eq!(status, 204, "{v}");
    // The outcome arrives for a delivery whose account is gone: the engine records it and
    // goes on taking work.
    eventually("the attempt's outcome is recorded", || async {
        let text = server.metrics().await;
        text.contains("hallway_attempts_in_flight 0\n")
            .then_some(())
    })
    .await;
    assert_eq!(server.call("GET", "/readyz", None, None).await.0, 200);
    server.create_account("acc_2", "Next", "pro").await;
    let (w, _) = server.create_webhook("acc_2", "R", &receiver.url()).await;
    let wh = w["id"].as_str().expect("id").to_owned();
    let (status, _) = server.publish("acc_2", event("evt_2")).await;
    assert_eq!(status, 202);
    let d = server.deliveries("acc_2", &wh).await;
    let id = d[0]["id"].as_str().expect("id").to_owned();
    server
        .wait_delivery("acc_2", &wh, &id, "succeeded", |d| {
            d["status"] == "succeeded"
        })
        .await;
    assert_eq!(
        receiver.received().len(),
        2,
        "the deleted account's attempt was not sent again"
    );
    // And the store still opens after a restart.
    drop(server);
    let server = Server::permissive(&home, &[]).await;
    assert_eq!(server.call("GET", "/readyz", None, None).await.0, 200);
    assert_eq!(server.deliveries("acc_2", &wh).await.len(), 1);
}
