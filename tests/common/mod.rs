//! Shared fixtures of the end-to-end tests: the real `hallway-webhooks` binary as a child
//! process, a small HTTP client, the kit's HTTPS receiver with scripted answers, and helpers to
//! check the contract's shapes (`/work/shared/design/HTTP_API.md`).
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The admin token every server gets unless a test wants the generated one.
pub const ADMIN: &str = "test-admin-token-0123456789abcdef";

/// The event type the product publishes.
pub const EVENT_TYPE: &str = "session.processing.completed";

// Each test binary uses some of these.
use hallway_testkit::tls::TestCa;
#[allow(unused_imports)]
pub use hallway_testkit::{
    receiver::{Received, Receiver, Reply},
    wait::{eventually, DEADLINE},
};

/// The fields of an account, exactly.
pub const ACCOUNT_KEYS: &[&str] = &["id", "name", "plan", "created_at"];
/// The fields of a webhook, exactly (never the secret).
pub const WEBHOOK_KEYS: &[&str] = &[
    "id",
    "account_id",
    "name",
    "url",
    "description",
    "events",
    "project_ids",
    "enabled",
    "disabled_reason",
    "consecutive_failures",
    "signature_scheme",
    "created_at",
    "updated_at",
];
/// The fields of a delivery, exactly.
pub const DELIVERY_KEYS: &[&str] = &[
    "id",
    "webhook_id",
    "event_id",
    "event_type",
    "test",
    "status",
    "created_at",
    "next_attempt_at",
    "attempts",
];
/// The fields of an attempt, exactly.
pub const ATTEMPT_KEYS: &[&str] = &[
    "attempt",
    "started_at",
    "duration_ms",
    "status_code",
    "error",
    "error_message",
    "request_headers",
    "response_headers",
    "response_body",
    "response_body_truncated",
];

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_hallway-webhooks")
}

/// Unix seconds now.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// A home for one server: a temp dir with the data dir and the test CA as a PEM file.

/// A temp dir holding `data/` (the server's data dir) and `ca.pem` (the receivers' CA).
pub struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    /// A fresh home with the CA written.
    pub fn new() -> Home {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("ca.pem"), TestCa::shared().pem()).expect("write CA");
        Home { dir }
    }

    /// The server's data dir.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The CA to pass with `--ca-file`.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Any other file in the home.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Default for Home {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------------------------------------
// A child process whose output lines are collected by reader threads.

/// Lines a child printed, shared with the reader thread.
pub type Lines = Arc<Mutex<Vec<String>>>;

/// Starts a thread that collects `stream`'s lines and calls `on_line` for each.
fn collect_lines(
    stream: impl std::io::Read + Send + 'static,
    lines: Lines,
    mut on_line: impl FnMut(&str) + Send + 'static,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            lines.lock().expect("lines lock").push(line.clone());
            on_line(&line);
        }
    });
}

/// A running child process, killed on drop.
pub struct Proc {
    child: Child,
    /// Lines printed on stdout so far.
    pub stdout: Lines,
    /// Lines printed on stderr so far.
    pub stderr: Lines,
}

impl Proc {
    /// Spawns `cmd` with piped output and waits until it prints `listening on http://ADDR`
    /// (on stderr or stdout); returns the process and that address.
    async fn spawn_and_wait_for_addr(mut cmd: Command, addr_on_stderr: bool) -> (Proc, SocketAddr) {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for var in [
            "HALLWAY_DATA_DIR",
            "HALLWAY_LISTEN",
            "HALLWAY_ADMIN_TOKEN",
            "HALLWAY_RETRY_DELAYS",
            "HALLWAY_ATTEMPT_TIMEOUT",
            "HALLWAY_AUTO_DISABLE_AFTER",
            "HALLWAY_MAX_WEBHOOKS",
            "HALLWAY_MAX_PAYLOAD_BYTES",
            "HALLWAY_ALLOW_HTTP",
            "HALLWAY_ALLOW_PRIVATE_TARGETS",
            "HALLWAY_MAX_IN_FLIGHT",
            "HALLWAY_CA_FILE",
            "HALLWAY_MAX_CONNECTIONS",
            "HALLWAY_HEADER_READ_TIMEOUT",
            "HALLWAY_IDLE_TIMEOUT",
            "HALLWAY_REQUEST_TIMEOUT",
            "HALLWAY_SHUTDOWN_GRACE",
            "HALLWAY_MAX_MANUAL_RETRIES",
            "HALLWAY_MANUAL_ACTIONS_PER_MINUTE",
            "HALLWAY_MEMORY_BUDGET",
            "HALLWAY_LOG_FORMAT",
            "HALLWAY_WEBHOOK_SECRET",
        ] {
            // Unset what the test's own environment may hold, but keep what the test set.
            if !cmd.get_envs().any(|(k, v)| k == var && v.is_some()) {
                cmd.env_remove(var);
            }
        }
        cmd.env("RUST_LOG", "info");
        let mut child = cmd.spawn().expect("spawn hallway-webhooks");
        let stdout: Lines = Arc::default();
        let stderr: Lines = Arc::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<SocketAddr>();
        let mut tx = Some(tx);
        let mut find_addr = move |line: &str| {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                // In a JSON log line the address ends at the closing quote.
                let rest = rest.split('"').next().unwrap_or(rest);
                if let Ok(addr) = rest.trim().parse::<SocketAddr>() {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
            }
        };
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        if addr_on_stderr {
            collect_lines(out, stdout.clone(), |_| {});
            collect_lines(err, stderr.clone(), move |l| find_addr(l));
        } else {
            collect_lines(out, stdout.clone(), move |l| find_addr(l));
            collect_lines(err, stderr.clone(), |_| {});
        }
        let proc = Proc {
            child,
            stdout,
            stderr,
        };
        match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(addr)) => (proc, addr),
            _ => panic!(
                "the child never printed `listening on http://ADDR`\nstdout:\n{}\nstderr:\n{}",
                proc.stdout_text(),
                proc.stderr_text()
            ),
        }
    }

    /// Everything printed on stdout so far.
    pub fn stdout_text(&self) -> String {
        self.stdout.lock().expect("lines lock").join("\n")
    }

    /// Everything printed on stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr.lock().expect("lines lock").join("\n")
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (a graceful shutdown).
    pub fn terminate(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits");
        // SAFETY: kill only sends a signal to our own child.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }

    /// Waits up to `limit` for the child to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let until = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------------------------
// The server.

/// `hallway-webhooks serve` on 127.0.0.1 with an ephemeral port.
pub struct Server {
    /// The process.
    pub proc: Proc,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The admin token.
    pub token: String,
    /// A client for its API.
    pub http: Http,
}

impl Server {
    /// Starts a server on `home` with the admin token [`ADMIN`], the test CA and `args`.
    pub async fn start(home: &Home, args: &[&str]) -> Server {
        Self::start_with(home, Some(ADMIN), args).await
    }

    /// Starts a server; without `admin_token`, the server generates or reads its own (the
    /// caller learns it from stdout or the data dir and sets `token`).
    pub async fn start_with(home: &Home, admin_token: Option<&str>, args: &[&str]) -> Server {
        Self::start_customized(home, admin_token, args, |_| {}).await
    }

    /// Starts a server like [`Server::start_with`], letting `customize` change the command
    /// (limits or a umask set before exec) first.
    pub async fn start_customized(
        home: &Home,
        admin_token: Option<&str>,
        args: &[&str],
        customize: impl FnOnce(&mut Command),
    ) -> Server {
        let mut cmd = Command::new(bin());
        cmd.arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(home.data_dir())
            .arg("--ca-file")
            .arg(home.ca_file());
        if let Some(t) = admin_token {
            cmd.arg("--admin-token").arg(t);
        }
        cmd.args(args);
        customize(&mut cmd);
        let (proc, addr) = Proc::spawn_and_wait_for_addr(cmd, true).await;
        Server {
            proc,
            addr,
            token: admin_token.unwrap_or_default().to_owned(),
            http: Http::new(addr),
        }
    }

    /// The flags most delivery tests use: loopback receivers allowed.
    pub async fn permissive(home: &Home, extra: &[&str]) -> Server {
        let mut args = vec!["--allow-private-targets"];
        args.extend_from_slice(extra);
        Self::start(home, &args).await
    }

    /// A JSON call with the admin token.
    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.http.json(method, path, Some(&self.token), body).await
    }

    /// A JSON call with any token (or none).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.http.json(method, path, token, body).await
    }

    /// Creates an account with the admin token; returns it and its api key.
    pub async fn create_account(&self, id: &str, name: &str, plan: &str) -> (Value, String) {
        let (status, v) = self
            .admin(
                "POST",
                "/v1/accounts",
                Some(json!({"id": id, "name": name, "plan": plan})),
            )
            .await;
        assert_eq!(status, 201, "create account {id}: {v}");
        let key = v["api_key"].as_str().expect("api_key").to_owned();
        (v, key)
    }

    /// Creates a webhook to `url` with the admin token; returns it and its secret.
    pub async fn create_webhook(&self, acc: &str, name: &str, url: &str) -> (Value, String) {
        self.create_webhook_with(
            acc,
            json!({"name": name, "url": url, "events": [EVENT_TYPE]}),
        )
        .await
    }

    /// Creates a webhook from a full body with the admin token.
    pub async fn create_webhook_with(&self, acc: &str, body: Value) -> (Value, String) {
        let (status, v) = self
            .admin("POST", &format!("/v1/accounts/{acc}/webhooks"), Some(body))
            .await;
        assert_eq!(status, 201, "create webhook: {v}");
        let secret = v["secret"].as_str().expect("secret").to_owned();
        (v, secret)
    }

    /// Publishes an event for `acc` with the admin token.
    pub async fn publish(&self, acc: &str, event: Value) -> (u16, Value) {
        self.admin("POST", &format!("/v1/accounts/{acc}/events"), Some(event))
            .await
    }

    /// A delivery, by the admin.
    pub async fn delivery(&self, acc: &str, wh: &str, dlv: &str) -> Value {
        let (status, v) = self
            .admin(
                "GET",
                &format!("/v1/accounts/{acc}/webhooks/{wh}/deliveries/{dlv}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "get delivery {dlv}: {v}");
        v
    }

    /// The first page (up to 100) of a webhook's deliveries, newest first.
    pub async fn deliveries(&self, acc: &str, wh: &str) -> Vec<Value> {
        let (status, v) = self
            .admin(
                "GET",
                &format!("/v1/accounts/{acc}/webhooks/{wh}/deliveries?limit=100"),
                None,
            )
            .await;
        assert_eq!(status, 200, "list deliveries: {v}");
        v["data"].as_array().expect("data").clone()
    }

    /// A webhook, by the admin.
    pub async fn webhook(&self, acc: &str, wh: &str) -> Value {
        let (status, v) = self
            .admin("GET", &format!("/v1/accounts/{acc}/webhooks/{wh}"), None)
            .await;
        assert_eq!(status, 200, "get webhook {wh}: {v}");
        v
    }

    /// Polls a delivery until `done` holds for it (up to [`DEADLINE`]).
    pub async fn wait_delivery(
        &self,
        acc: &str,
        wh: &str,
        dlv: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let d = self.delivery(acc, wh, dlv).await;
            if done(&d) {
                return d;
            }
            if Instant::now() > deadline {
                panic!(
                    "delivery {dlv} never reached: {what}; last seen: {d}\nserver stderr:\n{}",
                    self.proc.stderr_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let r = self.http.send("GET", "/metrics", None, None).await;
        assert_eq!(r.status, 200);
        String::from_utf8(r.body.to_vec()).expect("metrics are UTF-8")
    }
}

// ---------------------------------------------------------------------------------------------
// The HTTP client.

/// A raw answer.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The `Content-Type`, empty when absent.
    pub content_type: String,
    /// The body.
    pub body: Bytes,
    /// Every header.
    pub headers: hyper::HeaderMap,
}

/// A plain-HTTP client for one `host:port`, on hyper-util's legacy client.
#[derive(Clone)]
pub struct Http {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Http {
    /// A client for `addr`.
    pub fn new(addr: SocketAddr) -> Http {
        Http {
            base: format!("http://{addr}"),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Sends a request with extra headers; the body as given.
    pub async fn send_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Answer {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .expect("request");
        let resp = tokio::time::timeout(DEADLINE, self.client.request(req))
            .await
            .unwrap_or_else(|_| panic!("{method} {path}: no answer within {DEADLINE:?}"))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: reading the body: {e}"))
            .to_bytes();
        Answer {
            status,
            content_type,
            body,
            headers,
        }
    }

    /// Sends a request with an optional bearer token and raw body (JSON content type).
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Answer {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("authorization", a.as_str()));
        }
        self.send_with(method, path, &headers, body).await
    }

    /// A JSON call: the status and the parsed body (`Null` when empty).
    pub async fn json(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let raw = body.map(|b| serde_json::to_vec(&b).expect("serialise"));
        let a = self.send(method, path, token, raw).await;
        (a.status, parse_body(method, path, &a))
    }

    /// A call with a raw body: the status and the parsed answer.
    pub async fn raw_json(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> (u16, Value) {
        let a = self.send(method, path, token, Some(body.to_vec())).await;
        (a.status, parse_body(method, path, &a))
    }
}

fn parse_body(method: &str, path: &str, a: &Answer) -> Value {
    if a.body.is_empty() {
        return Value::Null;
    }
    assert!(
        a.content_type.starts_with("application/json"),
        "{method} {path}: answered {} with content type {:?}: {}",
        a.status,
        a.content_type,
        String::from_utf8_lossy(&a.body)
    );
    serde_json::from_slice(&a.body).unwrap_or_else(|e| {
        panic!(
            "{method} {path}: answer is not JSON ({e}): {}",
            String::from_utf8_lossy(&a.body)
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Shape checks.

/// The object's keys are exactly `keys`.
#[track_caller]
pub fn assert_keys(v: &Value, keys: &[&str]) {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"));
    let mut got: Vec<&str> = obj.keys().map(String::as_str).collect();
    got.sort_unstable();
    let mut want = keys.to_vec();
    want.sort_unstable();
    assert_eq!(got, want, "fields of {v}");
}

/// An RFC 3339 UTC timestamp with milliseconds: `2026-01-10T15:30:00.000Z`.
#[track_caller]
pub fn assert_ts(v: &Value) {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("timestamp is not a string: {v}"));
    let pattern = b"dddd-dd-ddTdd:dd:dd.dddZ";
    let ok = s.len() == pattern.len()
        && s.bytes().zip(pattern.iter()).all(|(c, p)| match p {
            b'd' => c.is_ascii_digit(),
            p => c == *p,
        });
    assert!(ok, "not RFC 3339 UTC with milliseconds: {s:?}");
    assert!(s > "2020", "implausible timestamp {s:?}");
}

/// An account as the API shows it (no api key).
#[track_caller]
pub fn assert_account(v: &Value) {
    assert_keys(v, ACCOUNT_KEYS);
    assert_ts(&v["created_at"]);
}

/// A webhook as the API shows it (no secret).
#[track_caller]
pub fn assert_webhook(v: &Value) {
    assert_keys(v, WEBHOOK_KEYS);
    assert!(
        v["id"].as_str().is_some_and(|s| s.starts_with("wh_")),
        "{v}"
    );
    assert!(v["enabled"].is_boolean(), "{v}");
    assert!(v["consecutive_failures"].is_u64(), "{v}");
    assert!(v["events"].is_array() && v["project_ids"].is_array(), "{v}");
    assert!(
        matches!(
            v["disabled_reason"].as_str(),
            None | Some("manual") | Some("consecutive_failures")
        ),
        "{v}"
    );
    assert_ts(&v["created_at"]);
    assert_ts(&v["updated_at"]);
}

/// A delivery and its attempts as the API shows them.
#[track_caller]
pub fn assert_delivery(v: &Value) {
    assert_keys(v, DELIVERY_KEYS);
    assert!(
        v["id"].as_str().is_some_and(|s| s.starts_with("dlv_")),
        "{v}"
    );
    assert!(
        v["webhook_id"]
            .as_str()
            .is_some_and(|s| s.starts_with("wh_")),
        "{v}"
    );
    assert!(
        v["event_id"].is_string() && v["event_type"].is_string(),
        "{v}"
    );
    assert!(v["test"].is_boolean(), "{v}");
    assert!(
        matches!(
            v["status"].as_str(),
            Some("pending" | "succeeded" | "failed" | "cancelled" | "paused")
        ),
        "{v}"
    );
    assert_ts(&v["created_at"]);
    if !v["next_attempt_at"].is_null() {
        assert_ts(&v["next_attempt_at"]);
    }
    let attempts = v["attempts"].as_array().expect("attempts");
    for (i, a) in attempts.iter().enumerate() {
        assert_keys(a, ATTEMPT_KEYS);
        assert!(a["attempt"].as_u64().is_some_and(|n| n >= 1), "{a}");
        if i > 0 {
            assert!(
                a["attempt"].as_u64() > attempts[i - 1]["attempt"].as_u64(),
                "{v}"
            );
        }
        assert_ts(&a["started_at"]);
        assert!(a["duration_ms"].is_u64(), "{a}");
        assert!(
            a["status_code"].is_null() || a["status_code"].is_u64(),
            "{a}"
        );
        // The failure in words exactly when it failed; what came back only with a response.
        assert_eq!(a["error"].is_null(), a["error_message"].is_null(), "{a}");
        assert!(
            a["request_headers"].is_null() || a["request_headers"].is_object(),
            "{a}"
        );
        if a["status_code"].is_null() {
            assert!(
                a["response_headers"].is_null() && a["response_body"].is_null(),
                "{a}"
            );
        }
        assert!(a["response_body_truncated"].is_boolean(), "{a}");
        assert!(
            matches!(
                a["error"].as_str(),
                None | Some(
                    "timeout"
                        | "connect"
                        | "tls"
                        | "http_status"
                        | "blocked_target"
                        | "invalid_response"
                )
            ),
            "{a}"
        );
    }
}

/// An error answer with this status and code; returns the message.
#[track_caller]
pub fn assert_error(got: &(u16, Value), status: u16, code: &str) -> String {
    let (s, v) = got;
    assert_eq!(*s, status, "expected {status} {code}, got {s}: {v}");
    assert_keys(v, &["error"]);
    assert_keys(&v["error"], &["code", "message"]);
    assert_eq!(v["error"]["code"], code, "{v}");
    let message = v["error"]["message"].as_str().expect("message").to_owned();
    assert!(!message.is_empty(), "empty error message");
    message
}

/// A `validation_failed` answer whose message names `field` (first, as `field: why`).
#[track_caller]
pub fn assert_validation(got: &(u16, Value), field: &str) {
    let message = assert_error(got, 422, "validation_failed");
    assert!(
        message.starts_with(field),
        "the message {message:?} does not name {field:?}"
    );
}

/// A publish body like the spec's example payload.
pub fn event(id: &str) -> Value {
    json!({
        "type": EVENT_TYPE,
        "id": id,
        "project": {"id": "prj_xyz789", "name": "Customer Discovery Q1", "status": "active"},
        "session": {
            "id": "ses_def456",
            "respondent_name": "Jane Doe",
            "respondent_email": "jane@example.com",
            "duration_seconds": 342,
            "completed_at": "2026-01-10T15:25:00.000Z"
        },
        "respondent_attributes": [
            {"category_name": "Department", "option_value": "Engineering"}
        ],
        "transcript": {"id": "trx_ghi789", "full_text": "Interviewer: Hello", "word_count": 2},
        "insights": {"count": 8, "objectives_covered": 3},
        "links": {"project": "https://app.hallwayai.com/projects/prj_xyz789"}
    })
}

// ---------------------------------------------------------------------------------------------
// Other subcommands.

/// `hallway-webhooks listen --port 0 --secret S`, once it printed its address.
pub async fn start_listen(secret: &str) -> (Proc, Http) {
    let mut cmd = Command::new(bin());
    cmd.args(["listen", "--port", "0", "--secret", secret]);
    let (proc, addr) = Proc::spawn_and_wait_for_addr(cmd, false).await;
    (proc, Http::new(addr))
}

/// `hallway-webhooks listen --port 0 ARGS` with `env` set, once it printed its address.
pub async fn start_listen_with(args: &[&str], env: &[(&str, &str)]) -> (Proc, Http) {
    let mut cmd = Command::new(bin());
    cmd.args(["listen", "--port", "0"]).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (proc, addr) = Proc::spawn_and_wait_for_addr(cmd, false).await;
    (proc, Http::new(addr))
}

/// Runs `hallway-webhooks ARGS` to completion with `stdin`; returns the exit code and stdout.
pub fn run_cli(args: &[&str], stdin: Option<&[u8]>) -> (i32, String, String) {
    run_cli_with_env(args, stdin, &[])
}

/// [`run_cli`] with `env` set and `HALLWAY_WEBHOOK_SECRET` unset unless `env` sets it.
pub fn run_cli_with_env(
    args: &[&str],
    stdin: Option<&[u8]>,
    env: &[(&str, &str)],
) -> (i32, String, String) {
    use std::io::Write;
    let mut cmd = Command::new(bin());
    cmd.env_remove("HALLWAY_WEBHOOK_SECRET");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hallway-webhooks");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input).expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A path inside `dir`, as a string argument.
pub fn arg(p: &Path) -> String {
    p.to_str().expect("UTF-8 path").to_owned()
}

/// Publishes an event for each of `ids` to `acc_1` (admin), 16 at a time; each must be
/// accepted.
pub async fn publish_all(server: &Server, ids: &[String]) {
    for chunk in ids.chunks(16) {
        let calls: Vec<_> = chunk
            .iter()
            .map(|id| {
                let (http, body) = (server.http.clone(), event(id));
                tokio::spawn(async move {
                    http.json("POST", "/v1/accounts/acc_1/events", Some(ADMIN), Some(body))
                        .await
                })
            })
            .collect();
        for call in calls {
            let (status, v) = call.await.expect("publish task");
            assert_eq!(status, 202, "{v}");
        }
    }
}
