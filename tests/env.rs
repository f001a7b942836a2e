//! Every flag of `serve` also reads its environment variable, with the usual spellings of
//! booleans (`1`, `true`, `yes`).

mod common;

use common::Http;
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
        // HALLWAY_ALLOW_HTTP and HALLWAY_ALLOW_PRIVATE_TARGETS: an http:// loopback URL.
        let webhook = json!({"name": "W", "url": "http://127.0.0.1:9/h",
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
