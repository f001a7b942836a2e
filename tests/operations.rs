//! End-to-end tests of what an operator watches: `/metrics` (names, histograms, build info),
//! `/readyz`, and `--log-format json` with its access log.

mod common;

use common::*;
use serde_json::Value;

/// The value of the sample line `name` (labels included) in a Prometheus text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_have_latency_histograms_and_build_info() {
    let home = Home::new();
    let receiver = Receiver::status(200).await;
    let server = Server::permissive(&home, &[]).await;
    server.create_account("acc_1", "Acme", "pro").await;
    let (w, _) = server
        .create_webhook("acc_1", "Hook", &receiver.url())
        .await;
    let wh = w["id"].as_str().expect("id").to_owned();

    let before = server.metrics().await;
    assert_eq!(
        sample(&before, "hallway_attempt_duration_seconds_count"),
        Some(0.0),
        "{before}"
    );
    assert_eq!(
        sample(&before, "hallway_publish_duration_seconds_count"),
        Some(0.0),
        "{before}"
    );
    let build = format!(
        "hallway_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(sample(&before, &build), Some(1.0), "{before}");
    assert!(
        before.contains("# TYPE hallway_build_info gauge"),
        "{before}"
    );

    let (status, v) = server.publish("acc_1", event("evt_m")).await;
    assert_eq!(status, 202, "{v}");
    let dlv = server.deliveries("acc_1", &wh).await[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    server
        .wait_delivery("acc_1", &wh, &dlv, "succeeded", |d| {
            d["status"] == "succeeded"
        })
        .await;

    let text = server.metrics().await;
    for (name, kind) in [
        ("hallway_attempt_duration_seconds", "histogram"),
        ("hallway_publish_duration_seconds", "histogram"),
        ("hallway_events_published_total", "counter"),
        ("hallway_duplicate_publishes_total", "counter"),
        ("hallway_attempts_total", "counter"),
        ("hallway_deliveries_pending", "gauge"),
        ("hallway_attempts_in_flight", "gauge"),
        ("hallway_log_batches_total", "counter"),
        ("hallway_log_events_total", "counter"),
        ("hallway_deliveries_spilled", "gauge"),
        ("hallway_attempts_started_total", "counter"),
        ("hallway_attempts_started_late_total", "counter"),
        ("hallway_attempt_start_delay_seconds", "histogram"),
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "{name} {kind}: {text}"
        );
    }
    assert_eq!(
        sample(&text, "hallway_attempt_duration_seconds_count"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "hallway_publish_duration_seconds_count"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "hallway_attempt_duration_seconds_bucket{le=\"+Inf\"}"
        ),
        Some(1.0),
        "{text}"
    );
    let sum = sample(&text, "hallway_publish_duration_seconds_sum").expect("a sum");
    assert!(sum > 0.0 && sum < 10.0, "{sum}");
    assert_eq!(
        sample(&text, "hallway_attempts_total{outcome=\"succeeded\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "hallway_attempts_total{outcome=\"failed\",error=\"timeout\"}"
        ),
        Some(0.0)
    );
    assert_eq!(sample(&text, "hallway_events_published_total"), Some(1.0));
    assert_eq!(sample(&text, "hallway_attempts_started_total"), Some(1.0));
    assert_eq!(
        sample(&text, "hallway_attempt_start_delay_seconds_count"),
        Some(1.0)
    );

    // A scraper that asks for OpenMetrics gets it.
    let a = server
        .http
        .send_with(
            "GET",
            "/metrics",
            &[("accept", "application/openmetrics-text; version=1.0.0")],
            None,
        )
        .await;
    assert_eq!(a.status, 200);
    assert!(
        a.content_type.starts_with("application/openmetrics-text"),
        "{}",
        a.content_type
    );
    let om = String::from_utf8(a.body.to_vec()).expect("UTF-8");
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(
        om.contains("hallway_attempts_total{outcome=\"succeeded\"} 1"),
        "{om}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_parse_and_every_request_has_an_access_line() {
    let home = Home::new();
    let server = Server::start(&home, &["--log-format", "json"]).await;
    server.create_account("acc_1", "Acme", "pro").await;
    let (status, _) = server
        .call("GET", "/v1/accounts/acc_1", Some("hwa_wrong"), None)
        .await;
    assert_eq!(status, 401);
    let (status, _) = server.call("GET", "/readyz", None, None).await;
    assert_eq!(status, 200);

    let lines: Vec<Value> = eventually("three access lines", || {
        let text = server.proc.stderr_text();
        async move {
            let parsed: Vec<Value> = text
                .lines()
                .map(|l| {
                    serde_json::from_str(l)
                        .unwrap_or_else(|e| panic!("a stderr line is not JSON ({e}): {l}"))
                })
                .collect();
            let access = parsed
                .iter()
                .filter(|v| v["target"] == "hallway::access")
                .count();
            (access >= 3).then_some(parsed)
        }
    })
    .await;
    // The banner the tests wait for is a log line too.
    assert!(
        lines.iter().any(|v| v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("listening on http://"))),
        "{lines:?}"
    );
    let access: Vec<&Value> = lines
        .iter()
        .filter(|v| v["target"] == "hallway::access")
        .collect();
    let find = |method: &str, status: u64| {
        access
            .iter()
            .find(|v| v["method"] == method && v["status"] == status)
            .unwrap_or_else(|| panic!("no {method} {status} access line in {access:?}"))
    };
    let created = find("POST", 201);
    assert_eq!(created["route"], "/v1/accounts");
    assert_eq!(created["account"], "-");
    assert_eq!(created["level"], "INFO");
    assert!(created["duration_ms"].as_f64().is_some_and(|d| d >= 0.0));
    let refused = find("GET", 401);
    assert_eq!(refused["route"], "/v1/accounts/{acc}");
    assert_eq!(refused["account"], "acc_1");
    let ready = find("GET", 200);
    assert_eq!(ready["route"], "/readyz");
    // No line carries a token.
    let text = server.proc.stderr_text();
    assert!(
        !text.contains(ADMIN) && !text.contains("hwa_wrong"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durations_take_days_and_compounds() {
    let home = Home::new();
    let server = Server::start(
        &home,
        &["--retry-delays", "0s,1h30m,1d", "--idle-timeout", "2m30s"],
    )
    .await;
    let (status, _) = server.call("GET", "/readyz", None, None).await;
    assert_eq!(status, 200);
    // A bare number is still refused: seconds or minutes?
    let (code, _, err) = run_cli(&["serve", "--retry-delays", "0s,30"], None);
    assert_ne!(code, 0);
    assert!(err.contains("needs a unit"), "{err}");
}
