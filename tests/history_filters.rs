//! Delivery history filters end to end: `status`, `event_type`, `since` and `until` narrow the
//! list, paging with a cursor still walks every match exactly once, and a bad value answers
//! 400 naming its parameter.

mod common;

use common::*;
use serde_json::Value;

/// Every delivery id the filtered list pages through, `limit` at a time.
async fn walk(server: &Server, wh: &str, query: &str, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let path = format!(
            "/v1/accounts/acc_1/webhooks/{wh}/deliveries?limit={limit}&cursor={cursor}{query}"
        );
        let (status, page) = server.admin("GET", &path, None).await;
        assert_eq!(status, 200, "{path}: {page}");
        let data = page["data"].as_array().expect("data");
        assert!(data.len() <= limit);
        out.extend(
            data.iter()
                .map(|d| d["id"].as_str().expect("id").to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => return out,
        }
    }
}

fn ids_where(all: &[Value], keep: impl Fn(&Value) -> bool) -> Vec<String> {
    all.iter()
        .filter(|d| keep(d))
        .map(|d| d["id"].as_str().expect("id").to_owned())
        .collect()
}

/// A query-string value, percent-encoded where RFC 3339 needs it (`+` of an offset).
fn q(v: &str) -> String {
    v.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_narrow_the_history_and_paging_walks_each_match_once() {
    let home = Home::new();
    let receiver = Receiver::status(200).await;
    // One attempt each, so a failure is final at once.
    let server = Server::permissive(&home, &["--retry-delays", "0s"]).await;
    server.create_account("acc_1", "Acme", "pro").await;
    let (w, _) = server.create_webhook("acc_1", "R", &receiver.url()).await;
    let wh = w["id"].as_str().expect("id").to_owned();
    // Succeeded and failed deliveries, one at a time so each is finished before the next.
    for (i, status) in [200, 500, 200, 500, 500, 200, 200].into_iter().enumerate() {
        receiver.set_status(status);
        let (code, v) = server.publish("acc_1", event(&format!("evt_{i}"))).await;
        assert_eq!(code, 202, "{v}");
        let list = server.deliveries("acc_1", &wh).await;
        let id = list[0]["id"].as_str().expect("id").to_owned();
        server
            .wait_delivery("acc_1", &wh, &id, "finished", |d| d["status"] != "pending")
            .await;
        // Distinct creation times, so ranges can split them.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let all = server.deliveries("acc_1", &wh).await;
    assert_eq!(all.len(), 7);

    let failed = ids_where(&all, |d| d["status"] == "failed");
    assert_eq!(failed.len(), 3);
    for limit in [1, 2, 50] {
        assert_eq!(walk(&server, &wh, "&status=failed", limit).await, failed);
        assert_eq!(
            walk(&server, &wh, "&status=succeeded", limit).await,
            ids_where(&all, |d| d["status"] == "succeeded")
        );
    }
    assert!(walk(&server, &wh, "&status=paused", 5).await.is_empty());
    let everything = ids_where(&all, |_| true);
    assert_eq!(
        walk(&server, &wh, &format!("&event_type={EVENT_TYPE}"), 3).await,
        everything
    );
    assert!(walk(&server, &wh, "&event_type=other.type", 3)
        .await
        .is_empty());

    // since is inclusive, until exclusive, on creation times (newest first: index 0 is the
    // last published).
    let since = all[4]["created_at"].as_str().expect("created_at");
    let until = all[1]["created_at"].as_str().expect("created_at");
    let in_range = ids_where(&all, |d| {
        let t = d["created_at"].as_str().expect("created_at");
        t >= since && t < until
    });
    assert_eq!(in_range.len(), 3, "{in_range:?}");
    let query = format!("&since={}&until={}", q(since), q(until));
    for limit in [1, 2, 10] {
        assert_eq!(walk(&server, &wh, &query, limit).await, in_range);
    }
    // Any offset names the same instant.
    let shifted = hallway_webhooks::Timestamp::parse_rfc3339(since)
        .map(|t| t.as_millis())
        .expect("parses");
    let plus_two = {
        let t = hallway_webhooks::Timestamp(shifted + 2 * 3_600_000).to_rfc3339();
        format!("{}+02:00", t.trim_end_matches('Z'))
    };
    assert_eq!(
        walk(&server, &wh, &format!("&since={}", q(&plus_two)), 10).await,
        ids_where(&all, |d| d["created_at"].as_str().expect("t") >= since)
    );
    // Filters combine.
    assert_eq!(
        walk(&server, &wh, &format!("{query}&status=failed"), 1).await,
        ids_where(&all, |d| {
            let t = d["created_at"].as_str().expect("created_at");
            t >= since && t < until && d["status"] == "failed"
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_filter_value_answers_400_naming_its_parameter() {
    let home = Home::new();
    let receiver = Receiver::status(200).await;
    let server = Server::permissive(&home, &[]).await;
    server.create_account("acc_1", "Acme", "pro").await;
    let (w, _) = server.create_webhook("acc_1", "R", &receiver.url()).await;
    let wh = w["id"].as_str().expect("id");
    for (query, name) in [
        ("status=done", "status"),
        ("status=", "status"),
        ("since=yesterday", "since"),
        ("until=2026-13-01T00:00:00Z", "until"),
        (
            "since=2026-01-10T15%3A30%3A00Z&until=2026-01-10T15%3A30%3A00Z",
            "until",
        ),
        ("event_type=", "event_type"),
        ("stauts=failed", "stauts"),
    ] {
        let got = server
            .admin(
                "GET",
                &format!("/v1/accounts/acc_1/webhooks/{wh}/deliveries?{query}"),
                None,
            )
            .await;
        let message = assert_error(&got, 400, "invalid_request");
        assert!(message.contains(name), "{query}: {message}");
    }
}
