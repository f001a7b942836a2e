//! Crash soak: a client publishes continuously to the real server while it is killed with
//! SIGKILL at random moments and restarted on the same data dir. At the end every
//! acknowledged publish reached every matching endpoint, the histories are whole and
//! consistent, and the server started every time and never answered a 5xx.
//!
//! CI runs a small size (6 kills over about 15 s). `just soak` runs a bigger one through the
//! environment: `SOAK_KILLS`, `SOAK_SECS`, `SOAK_RATE` (publishes per second) and
//! `SOAK_SEED` (to replay a run's kill schedule and choices; each run prints its seed).

use bytes::Bytes;
use hallway_domain::signature;
use hallway_testkit::receiver as kit;
use hallway_testkit::rng::Rng;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

const ADMIN: &str = "soak-admin-token-0123456789abcdef";
const EVENT_TYPE: &str = "session.processing.completed";
const HOT: &str = "prj_hot";
const COLD: &str = "prj_cold";
const ACCOUNTS: [&str; 2] = ["acc_a", "acc_b"];

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// FNV-1a, to pick which deliveries fail their first attempt, the same way on every run.
fn fnv(parts: &[&str]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for p in parts {
        for b in p.bytes().chain([0]) {
            h ^= b as u64;
            h = h.wrapping_mul(0x100_0000_01b3);
        }
    }
    h
}

// ---------------------------------------------------------------------------------------------
// The server process.

/// The last lines a server printed, and the error lines of every run.
#[derive(Default)]
struct Logs {
    tail: VecDeque<String>,
    errors: Vec<String>,
}

struct ServerProc {
    child: Child,
    addr: SocketAddr,
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_args(data_dir: &Path) -> Vec<String> {
    [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data_dir.to_str().expect("utf-8 path"),
        "--admin-token",
        ADMIN,
        "--allow-http",
        "--allow-private-targets",
        "--retry-delays",
        "0s,200ms,400ms,800ms,1s",
        // Failures must not disable a webhook (that would cancel what it was owed).
        "--auto-disable-after",
        "1000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Starts the server and waits for `listening on http://ADDR`; an error if it exits first
/// or says nothing for 30 s.
fn start_server(data_dir: &Path, logs: &Arc<Mutex<Logs>>) -> Result<ServerProc, String> {
    start_server_with(data_dir, logs, None)
}

/// [`start_server`], optionally under a file-size limit (`ulimit -f`, in the shell's blocks)
/// with SIGXFSZ ignored, so that writes past it fail with EFBIG as on a full disk.
fn start_server_with(
    data_dir: &Path,
    logs: &Arc<Mutex<Logs>>,
    file_size_blocks: Option<u64>,
) -> Result<ServerProc, String> {
    let bin = env!("CARGO_BIN_EXE_hallway-webhooks");
    let mut cmd = match file_size_blocks {
        None => Command::new(bin),
        Some(blocks) => {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(format!(
                    r#"trap "" XFSZ; ulimit -f {blocks} && exec "$0" "$@""#
                ))
                .arg(bin);
            c
        }
    };
    cmd.args(serve_args(data_dir))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env("RUST_LOG", "warn");
    for (var, _) in std::env::vars() {
        if var.starts_with("HALLWAY_") {
            cmd.env_remove(var);
        }
    }
    let mut child = cmd.spawn().map_err(|e| format!("spawn: {e}"))?;
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
    let logs_in = logs.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split("listening on http://").nth(1) {
                if let Ok(addr) = rest.trim().parse() {
                    let _ = tx.send(addr);
                }
            }
            let mut l = logs_in.lock().unwrap();
            if line.contains("ERROR") || line.contains("panicked") {
                l.errors.push(line.clone());
            }
            l.tail.push_back(line);
            if l.tail.len() > 200 {
                l.tail.pop_front();
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(addr) = rx.recv_timeout(Duration::from_millis(50)) {
            return Ok(ServerProc { child, addr });
        }
        if let Ok(Some(status)) = child.try_wait() {
            std::thread::sleep(Duration::from_millis(100));
            let tail: Vec<String> = logs.lock().unwrap().tail.iter().cloned().collect();
            return Err(format!(
                "the server exited with {status} instead of starting:\n{}",
                tail.join("\n")
            ));
        }
        if Instant::now() > deadline {
            return Err("the server did not start within 30 s".into());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A small HTTP client.

type Http = Client<HttpConnector, Full<Bytes>>;

fn http() -> Http {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn call(
    client: &Http,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("authorization", format!("Bearer {ADMIN}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let bytes = tokio::time::timeout(Duration::from_secs(10), resp.into_body().collect())
        .await
        .map_err(|_| "body timed out".to_owned())?
        .map_err(|e| e.to_string())?
        .to_bytes();
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Ok((status, v))
}

// ---------------------------------------------------------------------------------------------
// The receiver: answers 200 (503 to the first arrival of one delivery in ten), records what
// it accepted per path, and checks every signature.

#[derive(Default)]
struct Received {
    /// Event ids answered 200, per path.
    delivered: HashMap<String, HashSet<String>>,
    /// (path, event id) pairs seen at least once.
    seen: HashSet<(String, String)>,
    requests: usize,
    /// 200s for a (path, event id) already answered 200: allowed (at least once), counted.
    duplicates: usize,
    problems: Vec<String>,
}

struct Receiver {
    port: u16,
    secrets: Arc<Mutex<HashMap<String, String>>>,
    state: Arc<Mutex<Received>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let secrets: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let state: Arc<Mutex<Received>> = Arc::default();
        let (sec, st) = (secrets.clone(), state.clone());
        let kit = kit::Receiver::http_answering(move |req: &kit::Received| {
            let status = receive(&sec, &st, &req.path, &req.signature, &req.body);
            // Answer after a few milliseconds, so that kills find attempts
            // under way (sent again after the restart, under their number).
            let pause = fnv(&[&req.path, &String::from_utf8_lossy(&req.body)]) % 15;
            kit::Reply::After(status, Duration::from_millis(pause))
        })
        .await;
        Receiver {
            port: kit.port,
            secrets,
            state,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn receive(
    secrets: &Mutex<HashMap<String, String>>,
    state: &Mutex<Received>,
    path: &str,
    sig: &str,
    body: &[u8],
) -> u16 {
    let mut st = state.lock().unwrap();
    st.requests += 1;
    let secret = secrets.lock().unwrap().get(path).cloned();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    match secret {
        Some(s) => {
            if let Err(e) = signature::verify(&s, sig, body, now, 300) {
                st.problems.push(format!("{path}: bad signature ({e})"));
            }
        }
        None => st
            .problems
            .push(format!("{path}: a request to an unknown path")),
    }
    let id = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["id"].as_str().map(str::to_owned));
    let Some(id) = id else {
        st.problems.push(format!("{path}: a body without an id"));
        return 400;
    };
    let first = st.seen.insert((path.to_owned(), id.clone()));
    if first && fnv(&[path, &id]).is_multiple_of(10) {
        return 503;
    }
    if !st.delivered.entry(path.to_owned()).or_default().insert(id) {
        st.duplicates += 1;
    }
    200
}

// ---------------------------------------------------------------------------------------------
// The publishers.

/// What the publishers did.
#[derive(Default)]
struct Published {
    /// Every event id ever posted, with its account and project.
    attempted: HashMap<String, (String, String)>,
    /// Ids answered 202 or 200, with the `deliveries` the answer gave.
    acknowledged: HashMap<String, u64>,
    /// Answers that were not 2xx (must stay empty).
    bad_answers: Vec<String>,
    /// Attempts that got no answer (the server was down or died mid-request).
    no_answer: usize,
}

fn matching_paths(acc: &str, project: &str) -> Vec<String> {
    let mut paths = vec![format!("/{acc}/all")];
    if project == HOT {
        paths.push(format!("/{acc}/hot"));
    }
    paths
}

async fn publisher(
    index: usize,
    seed: u64,
    per_second: f64,
    addr: watch::Receiver<Option<SocketAddr>>,
    stop: Arc<AtomicBool>,
    out: Arc<Mutex<Published>>,
) {
    let client = http();
    let mut rng = Rng::new(seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let pause = Duration::from_secs_f64(1.0 / per_second);
    let mut n = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let id = format!("evt_p{index}_{n}");
        n += 1;
        let acc = ACCOUNTS[rng.below(2) as usize];
        let project = if rng.below(2) == 0 { HOT } else { COLD };
        let body = json!({
            "type": EVENT_TYPE,
            "id": id,
            "project": {"id": project, "name": "Soak"},
            "session": {"id": format!("ses_{n}"), "duration_seconds": n},
        });
        out.lock()
            .unwrap()
            .attempted
            .insert(id.clone(), (acc.to_owned(), project.to_owned()));
        // The same id until it is acknowledged: a repeat after a crash is answered from the
        // idempotency record.
        while !stop.load(Ordering::SeqCst) {
            let Some(a) = *addr.borrow() else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            match call(
                &client,
                a,
                "POST",
                &format!("/v1/accounts/{acc}/events"),
                Some(&body),
            )
            .await
            {
                Ok((200 | 202, v)) => {
                    let deliveries = v["deliveries"].as_u64().unwrap_or(u64::MAX);
                    out.lock()
                        .unwrap()
                        .acknowledged
                        .insert(id.clone(), deliveries);
                    break;
                }
                Ok((status, v)) => {
                    out.lock()
                        .unwrap()
                        .bad_answers
                        .push(format!("publish {id}: {status} {v}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(_) => {
                    out.lock().unwrap().no_answer += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        tokio::time::sleep(pause).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Checking the histories.

/// Every delivery of a webhook, through every page.
async fn history(client: &Http, addr: SocketAddr, acc: &str, wh: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let path = format!("/v1/accounts/{acc}/webhooks/{wh}/deliveries?limit=100&cursor={cursor}");
        let (status, v) = call(client, addr, "GET", &path, None)
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(status, 200, "GET {path}: {v}");
        out.extend(v["data"].as_array().expect("data").iter().cloned());
        match v["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => return out,
        }
    }
}

/// Problems with one webhook's history: unknown statuses, broken attempt numbering, events
/// that do not match its filter, two deliveries of one event, deliveries not yet succeeded.
fn history_problems(
    path: &str,
    filter_hot: bool,
    deliveries: &[Value],
    published: &Published,
) -> (Vec<String>, usize) {
    let mut problems = Vec::new();
    let mut unfinished = 0;
    let mut events = HashSet::new();
    for d in deliveries {
        let id = d["event_id"].as_str().unwrap_or("");
        let status = d["status"].as_str().unwrap_or("");
        if !["pending", "succeeded", "failed", "cancelled", "paused"].contains(&status) {
            problems.push(format!(
                "{path}: delivery {} has status {status:?}",
                d["id"]
            ));
        }
        if status != "succeeded" {
            unfinished += 1;
        }
        if !events.insert(id.to_owned()) {
            problems.push(format!("{path}: two deliveries of {id}"));
        }
        match published.attempted.get(id) {
            None => problems.push(format!("{path}: a delivery of unknown event {id}")),
            Some((_, project)) if filter_hot && project != HOT => {
                problems.push(format!("{path}: {id} of {project} passed the {HOT} filter"))
            }
            _ => {}
        }
        // Attempts are numbered 1, 2, ... with no gap or repeat (an attempt open at a crash
        // is sent again under its number and recorded once). Only a first arrival is
        // answered 503, so at most two attempts, and a 503 always comes first.
        let attempts = d["attempts"].as_array().cloned().unwrap_or_default();
        let numbers: Vec<u64> = attempts
            .iter()
            .filter_map(|a| a["attempt"].as_u64())
            .collect();
        let expected: Vec<u64> = (1..=attempts.len() as u64).collect();
        if numbers != expected || attempts.len() > 2 {
            problems.push(format!("{path}: {id} has attempts {numbers:?}"));
        }
        for (i, a) in attempts.iter().enumerate() {
            let code = a["status_code"].as_u64();
            let last_of_success = status == "succeeded" && i + 1 == attempts.len();
            let fine = if last_of_success {
                code == Some(200) && a["error"].is_null()
            } else {
                code == Some(503) && a["error"] == "http_status"
            };
            if !fine {
                problems.push(format!("{path}: {id} attempt {}: {a}", i + 1));
            }
        }
    }
    (problems, unfinished)
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_publishes_survive_repeated_sigkill() {
    let kills: usize = env_or("SOAK_KILLS", 6);
    let secs: f64 = env_or("SOAK_SECS", 15.0);
    let rate: f64 = env_or("SOAK_RATE", 80.0);
    let seed: u64 = env_or(
        "SOAK_SEED",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    eprintln!("soak: seed {seed} (SOAK_SEED={seed} replays it), {kills} kills over {secs} s, {rate} publishes/s");
    let mut rng = Rng::new(seed);

    let home = tempfile::tempdir().unwrap();
    let data_dir: PathBuf = home.path().join("data");
    let logs: Arc<Mutex<Logs>> = Arc::default();
    let receiver = Receiver::start().await;
    let client = http();

    let mut server = start_server(&data_dir, &logs).unwrap();
    // Two accounts, each with a webhook for everything and one for the hot project only.
    let mut hooks: Vec<(String, String, String, bool)> = Vec::new(); // (acc, wh, path, hot only)
    for acc in ACCOUNTS {
        let (status, v) = call(
            &client,
            server.addr,
            "POST",
            "/v1/accounts",
            Some(&json!({"id": acc, "name": acc, "plan": "pro"})),
        )
        .await
        .unwrap();
        assert_eq!(status, 201, "{v}");
        for hot_only in [false, true] {
            let path = format!("/{acc}/{}", if hot_only { "hot" } else { "all" });
            let mut body =
                json!({"name": path, "url": receiver.url(&path), "events": [EVENT_TYPE]});
            if hot_only {
                body["project_ids"] = json!([HOT]);
            }
            let (status, v) = call(
                &client,
                server.addr,
                "POST",
                &format!("/v1/accounts/{acc}/webhooks"),
                Some(&body),
            )
            .await
            .unwrap();
            assert_eq!(status, 201, "{v}");
            receiver
                .secrets
                .lock()
                .unwrap()
                .insert(path.clone(), v["secret"].as_str().unwrap().to_owned());
            hooks.push((
                acc.to_owned(),
                v["id"].as_str().unwrap().to_owned(),
                path,
                hot_only,
            ));
        }
    }

    // Publish continuously from two clients.
    let (addr_tx, addr_rx) = watch::channel(Some(server.addr));
    let stop = Arc::new(AtomicBool::new(false));
    let published: Arc<Mutex<Published>> = Arc::default();
    let publishers: Vec<_> = (0..2)
        .map(|i| {
            tokio::spawn(publisher(
                i,
                seed,
                rate / 2.0,
                addr_rx.clone(),
                stop.clone(),
                published.clone(),
            ))
        })
        .collect();

    // Kill at random moments; one stop in the middle is graceful (SIGTERM), so later runs
    // start from a snapshot and replay the log after it.
    let restarts = AtomicUsize::new(0);
    let started = Instant::now();
    let mean_ms = (secs * 1000.0 / kills.max(1) as f64) as u64;
    for k in 0..kills {
        let wait_ms = mean_ms / 4 + rng.below(mean_ms * 3 / 2);
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        addr_tx.send_replace(None);
        if k == kills / 2 {
            let pid = server.child.id().to_string();
            let ok = Command::new("sh")
                .args(["-c", &format!("kill -TERM {pid}")])
                .status()
                .unwrap();
            assert!(ok.success());
            let deadline = Instant::now() + Duration::from_secs(30);
            let status = loop {
                if let Some(s) = server.child.try_wait().unwrap() {
                    break s;
                }
                assert!(
                    Instant::now() < deadline,
                    "graceful shutdown took over 30 s"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            assert!(status.success(), "graceful shutdown exited with {status}");
        } else {
            server.child.kill().unwrap();
            server.child.wait().unwrap();
        }
        let dir = data_dir.clone();
        let l = logs.clone();
        server = tokio::task::spawn_blocking(move || start_server(&dir, &l))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("seed {seed}: restart {} failed: {e}", k + 1));
        restarts.fetch_add(1, Ordering::SeqCst);
        addr_tx.send_replace(Some(server.addr));
    }
    let remaining = Duration::from_secs_f64(secs).saturating_sub(started.elapsed());
    tokio::time::sleep(remaining).await;
    stop.store(true, Ordering::SeqCst);
    for p in publishers {
        p.await.unwrap();
    }

    // Everything acknowledged arrives everywhere it matches.
    let published = Arc::try_unwrap(published)
        .ok()
        .expect("publishers are done")
        .into_inner()
        .unwrap();
    let mut expected: Vec<(String, String)> = Vec::new(); // (path, event id)
    let mut fanout_problems = Vec::new();
    for (id, deliveries) in &published.acknowledged {
        let (acc, project) = &published.attempted[id];
        let paths = matching_paths(acc, project);
        if *deliveries != paths.len() as u64 {
            fanout_problems.push(format!(
                "{id} ({acc}, {project}) was answered with {deliveries} deliveries, expected {}",
                paths.len()
            ));
        }
        expected.extend(paths.into_iter().map(|p| (p, id.clone())));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let missing = loop {
        let missing: Vec<(String, String)> = {
            let st = receiver.state.lock().unwrap();
            expected
                .iter()
                .filter(|(p, id)| !st.delivered.get(p).is_some_and(|s| s.contains(id)))
                .cloned()
                .collect()
        };
        if missing.is_empty() || Instant::now() > deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        missing.is_empty(),
        "seed {seed}: {} acknowledged deliveries never arrived, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );

    // The histories: whole, consistent, every delivery succeeded, nothing a filter excludes.
    let deadline = Instant::now() + Duration::from_secs(30);
    let history_count = loop {
        let mut problems = Vec::new();
        let mut unfinished = 0;
        let mut count = 0;
        for (acc, wh, path, hot_only) in &hooks {
            let ds = history(&client, server.addr, acc, wh).await;
            count += ds.len();
            let (p, u) = history_problems(path, *hot_only, &ds, &published);
            problems.extend(p);
            unfinished += u;
            let listed: HashSet<&str> = ds.iter().filter_map(|d| d["event_id"].as_str()).collect();
            for (p, id) in &expected {
                if p == path && !listed.contains(id.as_str()) {
                    problems.push(format!(
                        "{path}: acknowledged {id} has no delivery in history"
                    ));
                }
            }
        }
        problems.truncate(20);
        assert!(problems.is_empty(), "seed {seed}:\n{}", problems.join("\n"));
        if unfinished == 0 {
            break count;
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed}: {unfinished} deliveries still not succeeded after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let st = receiver.state.lock().unwrap();
    let errors = logs.lock().unwrap().errors.clone();
    eprintln!(
        "soak: seed {seed}: {} restarts, {} events posted, {} acknowledged, {} posts unanswered; \
         {} deliveries in history, {} requests received, {} duplicate deliveries",
        restarts.load(Ordering::SeqCst),
        published.attempted.len(),
        published.acknowledged.len(),
        published.no_answer,
        history_count,
        st.requests,
        st.duplicates
    );
    assert!(
        published.acknowledged.len() > 20,
        "too few publishes were acknowledged to mean anything"
    );
    assert!(fanout_problems.is_empty(), "{}", fanout_problems.join("\n"));
    assert!(
        published.bad_answers.is_empty(),
        "seed {seed}: the server answered publishes with errors:\n{}",
        published.bad_answers[..published.bad_answers.len().min(10)].join("\n")
    );
    assert!(
        st.problems.is_empty(),
        "{}",
        st.problems[..st.problems.len().min(10)].join("\n")
    );
    assert!(
        errors.is_empty(),
        "seed {seed}: the server logged errors:\n{}",
        errors.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// A full disk.

/// What filling the disk did.
struct Filled {
    server: ServerProc,
    /// Event ids answered 202 before the store failed.
    acknowledged: Vec<String>,
    /// The first answer that was not 202 (status and body).
    first_refusal: (u16, Value),
    /// Every answer after that.
    later: Vec<(u16, Value)>,
    webhook: String,
}

/// Starts a server whose files cannot grow past about 1 MiB and publishes ~3 KB events until
/// the store fails.
async fn fill_the_disk(data_dir: &Path, logs: &Arc<Mutex<Logs>>, receiver: &Receiver) -> Filled {
    let (dir, l) = (data_dir.to_owned(), logs.clone());
    let server = tokio::task::spawn_blocking(move || start_server_with(&dir, &l, Some(2048)))
        .await
        .unwrap()
        .expect("the server starts under the file-size limit");
    let client = http();
    let (status, v) = call(
        &client,
        server.addr,
        "POST",
        "/v1/accounts",
        Some(&json!({"id": "acc_full", "name": "Full", "plan": "pro"})),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{v}");
    let path = "/acc_full/all";
    let (status, v) = call(
        &client,
        server.addr,
        "POST",
        "/v1/accounts/acc_full/webhooks",
        Some(&json!({"name": "full", "url": receiver.url(path), "events": [EVENT_TYPE]})),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{v}");
    receiver
        .secrets
        .lock()
        .unwrap()
        .insert(path.to_owned(), v["secret"].as_str().unwrap().to_owned());
    let webhook = v["id"].as_str().unwrap().to_owned();
    let mut acknowledged = Vec::new();
    let pad = "x".repeat(3000);
    let mut first_refusal = None;
    for i in 0..5_000 {
        let id = format!("evt_full_{i}");
        let body = json!({"type": EVENT_TYPE, "id": id, "project": {"id": "prj_1"}, "pad": pad});
        let (status, v) = call(
            &client,
            server.addr,
            "POST",
            "/v1/accounts/acc_full/events",
            Some(&body),
        )
        .await
        .expect("the server answers while its disk is full");
        if status == 202 {
            acknowledged.push(id);
        } else {
            first_refusal = Some((status, v));
            break;
        }
    }
    let first_refusal = first_refusal.expect("the file-size limit was never reached");
    let mut later = Vec::new();
    for (method, p, body) in [
        (
            "POST",
            "/v1/accounts/acc_full/events",
            Some(json!({"type": EVENT_TYPE, "id": "evt_after_full", "project": {"id": "prj_1"}})),
        ),
        ("GET", "/v1/accounts/acc_full", None),
        (
            "POST",
            "/v1/accounts",
            Some(json!({"id": "acc_new", "name": "New", "plan": "free"})),
        ),
    ] {
        later.push(
            call(&client, server.addr, method, p, body.as_ref())
                .await
                .unwrap(),
        );
    }
    Filled {
        server,
        acknowledged,
        first_refusal,
        later,
        webhook,
    }
}

fn is_error_object(v: &Value, codes: &[&str]) -> bool {
    v["error"]["message"].is_string()
        && v["error"]["code"]
            .as_str()
            .is_some_and(|c| codes.contains(&c))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_the_engine_and_loses_nothing_acknowledged() {
    let home = tempfile::tempdir().unwrap();
    let data_dir = home.path().join("data");
    let logs: Arc<Mutex<Logs>> = Arc::default();
    let receiver = Receiver::start().await;
    let mut filled = fill_the_disk(&data_dir, &logs, &receiver).await;
    assert!(
        filled.acknowledged.len() >= 5,
        "the disk filled after {} publishes: the test needs a larger limit",
        filled.acknowledged.len()
    );
    // Fail-stop: the write that failed answers 500, everything after 503; nothing is
    // acknowledged that is not durable.
    let (status, v) = &filled.first_refusal;
    assert!(
        (*status == 500 && is_error_object(v, &["internal"]))
            || (*status == 503 && is_error_object(v, &["unavailable"])),
        "the first refusal: {status} {v}"
    );
    for (status, v) in &filled.later {
        assert_eq!(*status, 503, "after the failure: {v}");
        assert!(is_error_object(v, &["unavailable"]), "{v}");
    }
    // Log lines reach stderr in batches a few milliseconds apart, so the reason may follow
    // the refusals it caused by a moment.
    hallway_testkit::wait::eventually_within(
        "the server says why it stopped (an error line naming the storage failure)",
        Duration::from_secs(5),
        || async {
            let errors = &logs.lock().unwrap().errors;
            errors
                .iter()
                .any(|e| e.contains("storage failed"))
                .then_some(())
        },
    )
    .await;
    // SIGTERM still ends it promptly.
    let pid = filled.server.child.id().to_string();
    Command::new("sh")
        .args(["-c", &format!("kill -TERM {pid}")])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = filled.server.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "a stopped engine hangs SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!(
        "full disk: {} publishes acknowledged, then {} {}; SIGTERM exit: {status}",
        filled.acknowledged.len(),
        filled.first_refusal.0,
        filled.first_refusal.1
    );

    // Space freed: the server starts on the same data, with everything acknowledged.
    let (dir, l) = (data_dir.clone(), logs.clone());
    let server = tokio::task::spawn_blocking(move || start_server(&dir, &l))
        .await
        .unwrap()
        .expect("the server starts once space is freed");
    let client = http();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ds = history(&client, server.addr, "acc_full", &filled.webhook).await;
        let listed: HashSet<&str> = ds.iter().filter_map(|d| d["event_id"].as_str()).collect();
        let lost: Vec<&String> = filled
            .acknowledged
            .iter()
            .filter(|id| !listed.contains(id.as_str()))
            .collect();
        assert!(lost.is_empty(), "acknowledged and lost: {lost:?}");
        let delivered = {
            let st = receiver.state.lock().unwrap();
            let got = st
                .delivered
                .get("/acc_full/all")
                .cloned()
                .unwrap_or_default();
            filled.acknowledged.iter().all(|id| got.contains(id))
        };
        if delivered {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "acknowledged events were not all delivered after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And it takes commands again: the refused publish can be sent again.
    let (status, v) = call(
        &client,
        server.addr,
        "POST",
        "/v1/accounts/acc_full/events",
        Some(&json!({"type": EVENT_TYPE, "id": "evt_after_full", "project": {"id": "prj_1"}})),
    )
    .await
    .unwrap();
    assert!(status == 202 || status == 200, "{status} {v}");
    assert!(receiver.state.lock().unwrap().problems.is_empty());
}

/// After the store fails, the engine takes no command again, and `/healthz` says so (503), so
/// a supervisor or load balancer polling it learns that every call now gets 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_reports_an_engine_stopped_by_a_full_disk() {
    let home = tempfile::tempdir().unwrap();
    let logs: Arc<Mutex<Logs>> = Arc::default();
    let receiver = Receiver::start().await;
    let filled = fill_the_disk(&home.path().join("data"), &logs, &receiver).await;
    assert_eq!(filled.later[0].0, 503, "the engine stopped");
    let (status, v) = call(&http(), filled.server.addr, "GET", "/healthz", None)
        .await
        .unwrap();
    assert_eq!(
        status, 503,
        "healthz while every command fails: {status} {v}"
    );
}
