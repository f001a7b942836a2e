//! Every flag of `serve` also reads its environment variable, with the usual spellings of
//! booleans (`1`, `true`, `yes`): each variable set here is checked through the API.

mod common;

use common::{event, eventually, Http};
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Kills the child when the test ends, pass or fail.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port that accepts connections and never answers: every attempt to it times out.
async fn silent_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    port
}

/// Starts `serve` configured only through the environment; returns it and its address.
fn serve_from_env(dir: &std::path::Path, allow: &str) -> (Killed, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hallway-webhooks"))
        .arg("serve")
        .env("HALLWAY_DATA_DIR", dir)
        .env("HALLWAY_LISTEN", "127.0.0.1:0")
        .env("HALLWAY_ADMIN_TOKEN", "env-admin-token-0123456789")
        .env("HALLWAY_RETRY_DELAYS", "0s,100ms")
        .env("HALLWAY_ATTEMPT_TIMEOUT", "2s")
        .env("HALLWAY_AUTO_DISABLE_AFTER", "3")
        .env("HALLWAY_MAX_WEBHOOKS", "1")
        .env("HALLWAY_MAX_PAYLOAD_BYTES", "4096")
        .env("HALLWAY_ALLOW_HTTP", allow)
        .env("HALLWAY_ALLOW_PRIVATE_TARGETS", allow)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawns");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.split("listening on http://").nth(1) {
                let _ = tx.send(addr.trim().parse::<SocketAddr>());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the server printed its address")
        .expect("an address");
    (Killed(child), addr)
}

#[tokio::test]
async fn serve_reads_every_flag_from_the_environment() {
    for allow in ["1", "true", "yes"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_server, addr) = serve_from_env(dir.path(), allow);
        let http = Http::new(addr);
        let token = Some("env-admin-token-0123456789");
        let (status, _) = http
            .json(
                "POST",
                "/v1/accounts",
                token,
                Some(json!({"id": "acc_env", "name": "Env", "plan": "pro"})),
            )
            .await;
        assert_eq!(status, 201, "HALLWAY_ADMIN_TOKEN is the admin token");
        // HALLWAY_ALLOW_HTTP and HALLWAY_ALLOW_PRIVATE_TARGETS: an http:// loopback URL (one
        // that never answers, for the attempt timeout below).
        let url = format!("http://127.0.0.1:{}/h", silent_port().await);
        let webhook = json!({"name": "W", "url": url,
                             "events": ["session.processing.completed"]});
        let (status, body) = http
            .json(
                "POST",
                "/v1/accounts/acc_env/webhooks",
                token,
                Some(webhook.clone()),
            )
            .await;
        assert_eq!(status, 201, "{allow}: {body}");
        let webhook_path = format!(
            "/v1/accounts/acc_env/webhooks/{}",
            body["id"].as_str().expect("id")
        );
        // HALLWAY_MAX_WEBHOOKS=1.
        let (status, body) = http
            .json(
                "POST",
                "/v1/accounts/acc_env/webhooks",
                token,
                Some(webhook),
            )
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (409, Some("limit_reached"))
        );
        // HALLWAY_MAX_PAYLOAD_BYTES=4096.
        let big = json!({"type": "session.processing.completed", "project": {"id": "p"},
                         "pad": "x".repeat(5000)});
        let (status, _) = http
            .json("POST", "/v1/accounts/acc_env/events", token, Some(big))
            .await;
        assert_eq!(status, 413);
        // HALLWAY_RETRY_DELAYS=0s,100ms and HALLWAY_ATTEMPT_TIMEOUT=2s: an event to a receiver
        // that never answers fails after two attempts, each given up after about 2 s.
        let (status, _) = http
            .json(
                "POST",
                "/v1/accounts/acc_env/events",
                token,
                Some(event("evt_env_1")),
            )
            .await;
        assert_eq!(status, 202);
        let deliveries = format!("{webhook_path}/deliveries");
        let d = eventually("the first delivery failed", || async {
            let (_, v) = http.json("GET", &deliveries, token, None).await;
            let d = v["data"][0].clone();
            (d["status"] == "failed").then_some(d)
        })
        .await;
        let attempts = d["attempts"].as_array().expect("attempts");
        assert_eq!(
            attempts.len(),
            2,
            "HALLWAY_RETRY_DELAYS has two delays: {d}"
        );
        for a in attempts {
            assert_eq!(a["error"], "timeout", "{d}");
            let ms = a["duration_ms"].as_u64().expect("duration_ms");
            assert!(
                (1900..10_000).contains(&ms),
                "HALLWAY_ATTEMPT_TIMEOUT is 2 s: {d}"
            );
        }
        // HALLWAY_AUTO_DISABLE_AFTER=3: two failed attempts leave the webhook on, a third
        // turns it off.
        let (_, w) = http.json("GET", &webhook_path, token, None).await;
        assert_eq!(w["enabled"], true, "{w}");
        let (status, _) = http
            .json(
                "POST",
                "/v1/accounts/acc_env/events",
                token,
                Some(event("evt_env_2")),
            )
            .await;
        assert_eq!(status, 202);
        eventually(
            "the webhook is disabled after 3 failed attempts",
            || async {
                let (_, w) = http.json("GET", &webhook_path, token, None).await;
                (w["enabled"] == false).then_some(w)
            },
        )
        .await;
    }
}

#[tokio::test]
async fn a_false_boolean_in_the_environment_keeps_the_strict_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, addr) = serve_from_env(dir.path(), "0");
    let http = Http::new(addr);
    let token = Some("env-admin-token-0123456789");
    let (status, _) = http
        .json(
            "POST",
            "/v1/accounts",
            token,
            Some(json!({"id": "acc_env", "name": "Env", "plan": "pro"})),
        )
        .await;
    assert_eq!(status, 201);
    let (status, body) = http
        .json(
            "POST",
            "/v1/accounts/acc_env/webhooks",
            token,
            Some(json!({"name": "W", "url": "http://example.com/h",
                        "events": ["session.processing.completed"]})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("validation_failed"))
    );
}
