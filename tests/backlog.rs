//! A backlog larger than the memory budget survives a crash: the real binary under the
//! smallest budget fills a backlog of retries that spills to the store, is killed with
//! SIGKILL, and after the restart every pending delivery is still due when it was, and is
//! sent then (not before), exactly once.

mod common;

use common::*;
use serde_json::Value;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Webhooks, all of one account, each answering on its own path.
const WEBHOOKS: usize = 5;
/// Events published: each is one delivery per webhook.
const EVENTS: usize = 300;
/// The retry delays: the first attempt at once, the second (and last) 25 s after it failed,
/// once the fill, the kill and the restart are over.
const RETRY_DELAYS: &str = "0s,25s";
/// The smallest budget: each webhook keeps only twice the attempts it may have open in
/// memory ([`KEEP`]).
const BUDGET: &str = "1MiB";
/// Requests under way per webhook: four times as many attempts may be open.
const IN_FLIGHT: &str = "16";
/// Waiting deliveries each webhook keeps in memory under [`BUDGET`]: 2 × 4 × [`IN_FLIGHT`].
const KEEP: usize = 128;

fn args() -> Vec<&'static str> {
    vec![
        "--allow-http",
        "--allow-private-targets",
        "--memory-budget",
        BUDGET,
        "--retry-delays",
        RETRY_DELAYS,
        "--max-in-flight-per-webhook",
        IN_FLIGHT,
        // Every first attempt fails by design: the webhooks must not be disabled for it.
        "--auto-disable-after",
        "1000000",
    ]
}

/// Polls `f` every 50 ms until it returns `Ok`, up to `limit`; then its last `Err`.
async fn wait_for_or<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let until = Instant::now() + limit;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(last) if Instant::now() >= until => {
                return Err(format!("never happened within {limit:?}: {what}; {last}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// A metric's value in a Prometheus text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Every delivery of every webhook, by id, from history (paged).
async fn history(server: &Server, webhooks: &[String]) -> HashMap<String, Value> {
    let mut out = HashMap::new();
    for wh in webhooks {
        let mut cursor = String::new();
        loop {
            let (status, page) = server
                .admin(
                    "GET",
                    &format!(
                        "/v1/accounts/acc_1/webhooks/{wh}/deliveries?limit=100&cursor={cursor}"
                    ),
                    None,
                )
                .await;
            assert_eq!(status, 200, "{page}");
            for d in page["data"].as_array().expect("data") {
                out.insert(d["id"].as_str().expect("id").to_owned(), d.clone());
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = c.to_owned(),
                None => break,
            }
        }
    }
    out
}

fn ts(v: &Value) -> u64 {
    let text = v.as_str().unwrap_or_else(|| panic!("a timestamp: {v}"));
    hallway_webhooks::Timestamp::parse_rfc3339(text)
        .unwrap_or_else(|| panic!("an RFC 3339 time: {text}"))
        .as_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spilled_backlog_survives_sigkill_and_is_sent_when_due() {
    let home = Home::new();
    // Every first attempt fails; after the restart every attempt succeeds.
    let receiver = Receiver::http(|_| Reply::Status(500)).await;
    let mut server = Server::start(&home, &args()).await;
    server.create_account("acc_1", "Acme Research", "pro").await;
    let mut webhooks = Vec::new();
    for i in 0..WEBHOOKS {
        let url = format!("{}/w{i}", receiver.url());
        let (w, _) = server
            .create_webhook("acc_1", &format!("Hook {i}"), &url)
            .await;
        webhooks.push(w["id"].as_str().expect("id").to_owned());
    }
    let ids: Vec<String> = (0..EVENTS).map(|i| format!("evt_{i:04}")).collect();
    publish_all(&server, &ids).await;
    let total = EVENTS * WEBHOOKS;
    // Filled: every first attempt failed, nothing is under way, most of it is spilled.
    let filled = wait_for_or(
        "every first attempt fails",
        Duration::from_secs(60),
        || async {
            let m = server.metrics().await;
            let failed = receiver.received().len();
            let done = failed >= total
                && metric(&m, "hallway_attempts_in_flight") == Some(0.0)
                && metric(&m, "hallway_deliveries_pending") == Some(total as f64);
            if done {
                Ok(metric(&m, "hallway_deliveries_spilled").unwrap_or(0.0))
            } else {
                Err(format!("{failed} requests received; metrics:\n{m}"))
            }
        },
    )
    .await;
    let spilled = filled
        .unwrap_or_else(|last| panic!("{last}\nserver stderr:\n{}", server.proc.stderr_text()));
    assert!(
        spilled >= (total - WEBHOOKS * KEEP) as f64,
        "most of the backlog waits in the store, not in memory: {spilled} of {total} spilled"
    );
    let before = history(&server, &webhooks).await;
    assert_eq!(before.len(), total);
    let due: HashMap<String, u64> = before
        .iter()
        .map(|(id, d)| {
            assert_eq!(d["status"], "pending", "{d}");
            assert_eq!(d["attempts"].as_array().map(Vec::len), Some(1), "{d}");
            (id.clone(), ts(&d["next_attempt_at"]))
        })
        .collect();

    server.proc.kill();
    receiver.set_status(200);
    let server = Server::start(&home, &args()).await;
    // After the restart, before anything is due: every delivery still waits, due as before.
    let restarted = history(&server, &webhooks).await;
    let now = hallway_webhooks::Timestamp(now_secs() * 1000).as_millis();
    let earliest = due.values().copied().min().expect("some");
    assert!(
        now < earliest,
        "the fill and restart took longer than the retry delay ({RETRY_DELAYS}); the test cannot tell early from on time"
    );
    for (id, d) in &restarted {
        assert_eq!(d["status"], "pending", "{d}");
        assert_eq!(
            ts(&d["next_attempt_at"]),
            due[id],
            "{id} keeps its due time"
        );
    }
    assert_eq!(restarted.len(), total, "nothing was lost");
    // The restart rebuilt the spill bookkeeping from the log: memory holds the heads of the
    // queues again, not the whole backlog.
    let m = server.metrics().await;
    assert_eq!(
        metric(&m, "hallway_deliveries_pending"),
        Some(total as f64),
        "{m}"
    );
    let spilled_again = metric(&m, "hallway_deliveries_spilled").unwrap_or(0.0);
    assert!(
        spilled_again >= (total - WEBHOOKS * KEEP) as f64,
        "after the restart most of the backlog still waits in the store: {spilled_again} of {total}"
    );

    // Then each is sent once, when it is due and not before.
    hallway_testkit::wait::eventually_within(
        "every delivery succeeds after the restart",
        Duration::from_secs(90),
        || async {
            let m = server.metrics().await;
            (metric(&m, "hallway_deliveries_pending") == Some(0.0)).then_some(())
        },
    )
    .await;
    let after = history(&server, &webhooks).await;
    assert_eq!(after.len(), total);
    for (id, d) in &after {
        assert_eq!(d["status"], "succeeded", "{d}");
        let attempts = d["attempts"].as_array().expect("attempts");
        assert_eq!(attempts.len(), 2, "one retry each: {d}");
        let started = ts(&attempts[1]["started_at"]);
        assert!(
            started >= due[id],
            "{id} was retried at {started}, before it was due at {}",
            due[id]
        );
    }
    let mut successes: HashMap<(String, String), usize> = HashMap::new();
    for r in receiver.received() {
        if r.reply == Reply::Status(200) {
            let event = r.json()["id"].as_str().expect("id").to_owned();
            *successes.entry((r.path.clone(), event)).or_default() += 1;
        }
    }
    assert_eq!(
        successes.len(),
        total,
        "every delivery reached its endpoint"
    );
    assert!(
        successes.values().all(|n| *n == 1),
        "nothing was sent twice"
    );
}
