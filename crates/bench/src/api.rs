//! The `api` scenario: the server binary (`hallway-webhooks serve`, the real router and
//! listener) in a child process, publishes POSTed over keep-alive connections by a pool of
//! closed-loop producers, N accounts with one webhook each, ~2 KB events; the ceiling is an
//! ack-then-forward hyper proxy (also a child process) measured right before and right after
//! on the same receivers. Both run as children so that their CPU (utime + stime of
//! `/proc/<pid>/stat`) is theirs alone: the producers and receivers stay in this process.
//! A fixed-rate phase at half the achieved rate follows the closed loop, for the publish
//! latency a host sees when the server is not saturated.

use crate::proxy;
use crate::receiver::Receivers;
use crate::scenarios::{arrivals_of, per_sec, put_ms, Ctx};
use crate::util::{now_ns, quantile_ms, BenchError, BenchResult, Record};
use crate::workload::{raw_event, PublishTimes};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// The admin token the server child runs with.
const ADMIN_TOKEN: &str = "hwa_bench_api_scenario_admin_token";

/// What one `api` run is asked for.
pub struct ApiRun {
    /// Accounts, one webhook (and one receiver) each.
    pub accounts: usize,
    /// Events the closed loop publishes (one delivery each).
    pub events: u32,
    /// Seconds of the fixed-rate phase at half the achieved rate.
    pub half_load_secs: f64,
    /// The server binary.
    pub server_bin: PathBuf,
}

/// The server binary next to this one (`cargo build` puts both in the same directory).
pub fn default_server_bin() -> BenchResult<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .ok_or_else(|| BenchError::new("the bench binary has no directory"))?;
    Ok(dir.join("hallway-webhooks"))
}

/// The account id of account index `a` (the proxy routes on the digits after the last `_`).
fn account(a: usize) -> String {
    format!("acc_api_{a}")
}

/// A child process that listens: its pid, its address, and what it prints drained.
struct Proc {
    child: Child,
    addr: String,
}

impl Proc {
    /// Starts `command` and waits for its `listening on http://{addr}` line on stdout or
    /// stderr; everything else it prints is read and dropped, so its pipes never fill.
    fn start(mut command: Command, what: &str) -> BenchResult<Proc> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| BenchError::new(format!("cannot start the {what}: {e}")))?;
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let pipes: [Option<Box<dyn Read + Send>>; 2] = [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ];
        for pipe in pipes.into_iter().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut lines = BufReader::new(pipe);
                let mut line = String::new();
                let mut found = false;
                while lines.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                    if !found {
                        if let Some(at) = line.find("listening on http://") {
                            let addr = line[at + "listening on http://".len()..]
                                .split_whitespace()
                                .next()
                                .unwrap_or("")
                                .trim_end_matches('"')
                                .to_owned();
                            found = tx.send(addr).is_ok();
                        }
                    }
                    line.clear();
                }
            });
        }
        drop(tx);
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) if !addr.is_empty() => Ok(Proc { child, addr }),
            _ => {
                let _ = child.kill();
                let status = child.wait();
                Err(BenchError::new(format!(
                    "the {what} did not say where it listens ({status:?})"
                )))
            }
        }
    }

    /// CPU seconds (user + system, every thread) the child has used so far.
    fn cpu_seconds(&self) -> Option<f64> {
        crate::util::pid_cpu_seconds(self.child.id())
    }

    /// SIGTERM, then up to `grace` for it to exit, then SIGKILL.
    fn stop(mut self, grace: Duration) -> bool {
        // SAFETY: kill(2) on our own child's pid, which we have not waited for yet.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One keep-alive HTTP/1.1 connection to `addr`.
async fn connect(addr: &str) -> BenchResult<SendRequest<Full<Bytes>>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| BenchError::new(format!("handshake with {addr}: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Sends one request and reads its answer: (status, body).
async fn call(
    conn: &mut SendRequest<Full<Bytes>>,
    addr: &str,
    method: hyper::Method,
    path: &str,
    body: Bytes,
) -> BenchResult<(u16, Bytes)> {
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, addr)
        .header(AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"))
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .map_err(|e| BenchError::new(format!("request {path}: {e}")))?;
    conn.ready()
        .await
        .map_err(|e| BenchError::new(format!("connection to {addr}: {e}")))?;
    let response = conn
        .send_request(request)
        .await
        .map_err(|e| BenchError::new(format!("{path}: {e}")))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| BenchError::new(format!("{path}: {e}")))?
        .to_bytes();
    Ok((status, body))
}

/// Creates the Pro accounts and one webhook each, webhook `a` posting to `urls[a]`.
async fn provision(addr: &str, urls: &[String]) -> BenchResult<()> {
    let mut conn = connect(addr).await?;
    for (a, url) in urls.iter().enumerate() {
        let body =
            serde_json::json!({"id": account(a), "name": format!("Bench {a}"), "plan": "pro"});
        let (status, text) = call(
            &mut conn,
            addr,
            hyper::Method::POST,
            "/v1/accounts",
            Bytes::from(body.to_string()),
        )
        .await?;
        if status != 201 {
            return Err(BenchError::new(format!(
                "create account {a}: {status} {}",
                String::from_utf8_lossy(&text)
            )));
        }
        let body = serde_json::json!({
            "name": format!("Receiver {a}"),
            "url": url,
            "events": [hallway_domain::SESSION_PROCESSING_COMPLETED],
        });
        let path = format!("/v1/accounts/{}/webhooks", account(a));
        let (status, text) = call(
            &mut conn,
            addr,
            hyper::Method::POST,
            &path,
            Bytes::from(body.to_string()),
        )
        .await?;
        if status != 201 {
            return Err(BenchError::new(format!(
                "create webhook {a}: {status} {}",
                String::from_utf8_lossy(&text)
            )));
        }
    }
    Ok(())
}

/// A counter of the server's Prometheus text, by its exact series name.
async fn metric(conn: &mut SendRequest<Full<Bytes>>, addr: &str, series: &str) -> Option<f64> {
    let (status, text) = call(conn, addr, hyper::Method::GET, "/metrics", Bytes::new())
        .await
        .ok()?;
    if status != 200 {
        return None;
    }
    String::from_utf8_lossy(&text).lines().find_map(|line| {
        let rest = line.strip_prefix(series)?.strip_prefix(' ')?;
        rest.trim().parse().ok()
    })
}

const SUCCEEDED: &str = "hallway_attempts_total{outcome=\"succeeded\"}";

/// Waits until the server has recorded `n` successful attempts (their results committed);
/// `false` after `timeout`.
async fn wait_recorded(addr: &str, n: u64, timeout: Duration) -> BenchResult<bool> {
    let mut conn = connect(addr).await?;
    let deadline = Instant::now() + timeout;
    loop {
        if metric(&mut conn, addr, SUCCEEDED).await.unwrap_or(0.0) >= n as f64 {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Where the producers publish: the server or the proxy, and how a publish is checked.
#[derive(Clone)]
struct Target {
    addr: Arc<str>,
    accounts: usize,
}

/// One publish of event `n` (body index `n`) on `conn`; records its times (from `start`).
async fn publish(
    conn: &mut SendRequest<Full<Bytes>>,
    target: &Target,
    n: u32,
    body: Bytes,
    start: u64,
    times: &PublishTimes,
) -> BenchResult<()> {
    let path = format!(
        "/v1/accounts/{}/events",
        account(n as usize % target.accounts)
    );
    let (status, answer) = call(conn, &target.addr, hyper::Method::POST, &path, body).await?;
    times.record(n, start, now_ns());
    // One webhook per account: every fresh publish fans out to one delivery.
    const ONE: &[u8] = b"\"deliveries\":1";
    if status != 202 || !answer.windows(ONE.len()).any(|w| w == ONE) {
        return Err(BenchError::new(format!(
            "event {n}: expected 202 with one delivery, got {status} {}",
            String::from_utf8_lossy(&answer)
        )));
    }
    Ok(())
}

/// Opens `producers` connections to the target (before any clock starts).
async fn connections(
    target: &Target,
    producers: usize,
) -> BenchResult<Vec<SendRequest<Full<Bytes>>>> {
    let mut out = Vec::with_capacity(producers);
    for _ in 0..producers.max(1) {
        out.push(connect(&target.addr).await?);
    }
    Ok(out)
}

/// Publishes events `range` from one task per connection, each publishing as soon as its
/// previous publish was answered (closed loop).
async fn closed_loop(
    target: &Target,
    conns: Vec<SendRequest<Full<Bytes>>>,
    range: std::ops::Range<u32>,
    bodies: &Arc<Vec<Bytes>>,
    times: &Arc<PublishTimes>,
) -> BenchResult<()> {
    let next = Arc::new(AtomicU32::new(range.start));
    let end = range.end;
    let mut tasks = JoinSet::new();
    for mut conn in conns {
        let (target, next, bodies, times) =
            (target.clone(), next.clone(), bodies.clone(), times.clone());
        tasks.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= end {
                    return Ok::<(), BenchError>(());
                }
                let body = bodies
                    .get(n as usize)
                    .cloned()
                    .ok_or_else(|| BenchError::new(format!("no body for event {n}")))?;
                publish(&mut conn, &target, n, body, now_ns(), &times).await?;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}

/// Publishes events `range` at `per_sec` (open loop): event `i` of the range is due at
/// `i / per_sec` seconds, sent by connection `i % conns` when that connection is free, and
/// timed from when it was due, so a publish that waits for its connection counts as slow.
async fn fixed_rate(
    target: &Target,
    conns: Vec<SendRequest<Full<Bytes>>>,
    range: std::ops::Range<u32>,
    per_sec: f64,
    bodies: &Arc<Vec<Bytes>>,
    times: &Arc<PublishTimes>,
) -> BenchResult<()> {
    let interval_ns = (1e9 / per_sec.max(1.0)) as u64;
    let origin = now_ns();
    let origin_instant = tokio::time::Instant::now();
    let width = conns.len() as u32;
    let mut tasks = JoinSet::new();
    for (k, mut conn) in conns.into_iter().enumerate() {
        let (target, bodies, times) = (target.clone(), bodies.clone(), times.clone());
        let (start, end) = (range.start, range.end);
        tasks.spawn(async move {
            let mut i = k as u32;
            while start + i < end {
                let n = start + i;
                let offset = interval_ns.saturating_mul(u64::from(i));
                tokio::time::sleep_until(origin_instant + Duration::from_nanos(offset)).await;
                let body = bodies
                    .get(n as usize)
                    .cloned()
                    .ok_or_else(|| BenchError::new(format!("no body for event {n}")))?;
                publish(&mut conn, &target, n, body, origin + offset, &times).await?;
                i += width;
            }
            Ok::<(), BenchError>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}

/// What the proxy measured in one closed-loop run.
struct CeilingRun {
    per_sec: f64,
    cpu_us_per_delivery: Option<f64>,
}

async fn ceiling_run(
    proxy: &Proc,
    receivers: &Receivers,
    accounts: usize,
    producers: usize,
    bodies: &Arc<Vec<Bytes>>,
    events: u32,
) -> BenchResult<CeilingRun> {
    let target = Target {
        addr: Arc::from(proxy.addr.as_str()),
        accounts,
    };
    receivers.clear();
    let conns = connections(&target, producers).await?;
    let times = PublishTimes::new(events as usize);
    let cpu_before = proxy.cpu_seconds();
    let started = now_ns();
    closed_loop(&target, conns, 0..events, bodies, &times).await?;
    let complete = receivers
        .wait_for(
            u64::from(events),
            Duration::from_secs(60 + u64::from(events) / 1000),
        )
        .await;
    let cpu = proxy.cpu_seconds().zip(cpu_before).map(|(a, b)| a - b);
    let arrivals = arrivals_of(&receivers.take(), &times, 0);
    if !complete {
        return Err(BenchError::new(format!(
            "the proxy delivered {} of {events}",
            arrivals.count
        )));
    }
    let first = times.first_start(0..events).unwrap_or(started);
    Ok(CeilingRun {
        per_sec: per_sec(arrivals.count, first, arrivals.last_ns),
        cpu_us_per_delivery: cpu.map(|c| c * 1e6 / f64::from(events.max(1))),
    })
}

/// The `api` scenario for one number of accounts; see the module documentation.
pub async fn api(ctx: &Ctx, run: &ApiRun) -> BenchResult<Record> {
    if !run.server_bin.is_file() {
        return Err(BenchError::new(format!(
            "no server binary at {}: build it in the same profile (`cargo build --release -p hallway-webhooks`) or pass --server-bin",
            run.server_bin.display()
        )));
    }
    let accounts = run.accounts.max(1);
    let events = run.events.max(1);
    let producers = ctx.publishers;
    let receivers = Receivers::start(&ctx.receivers_rt, accounts, 200)?;
    let urls = receivers.urls();
    // Bodies for the closed loop and for up to 30 s of half load at 100,000 a second.
    let half_max = (100_000.0 * run.half_load_secs).ceil() as u32;
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        (0..events + half_max)
            .map(|n| Bytes::from(raw_event(n)))
            .collect(),
    );

    let exe = std::env::current_exe()?;
    let mut command = Command::new(&exe);
    command
        .arg(proxy::CHILD_FLAG)
        .arg(proxy::TARGETS_FLAG)
        .arg(urls.join(","));
    if let Some(n) = ctx.max_in_flight {
        command.args(["--max-in-flight", &n.to_string()]);
    }
    let proxy = Proc::start(command, "proxy")?;
    let before = ceiling_run(&proxy, &receivers, accounts, producers, &bodies, events).await?;

    // The server, on a fresh data dir with the production defaults, HTTP receivers allowed.
    receivers.clear();
    let dir = tempfile::tempdir()?;
    let mut command = Command::new(&run.server_bin);
    command
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0", "--admin-token", ADMIN_TOKEN])
        .args(["--allow-http", "--allow-private-targets"]);
    if let Some(n) = ctx.max_in_flight {
        command.args(["--max-in-flight", &n.to_string()]);
    }
    let server = Proc::start(command, "server")?;
    let target = Target {
        addr: Arc::from(server.addr.as_str()),
        accounts,
    };
    provision(&target.addr, &urls).await?;
    let conns = connections(&target, producers).await?;
    let times = PublishTimes::new((events + half_max) as usize);
    let perf = Profiler::attach(server.child.id())?;
    let cpu_before = server.cpu_seconds();
    let bench_cpu_before = crate::util::process_cpu_seconds();
    let started = now_ns();
    closed_loop(&target, conns, 0..events, &bodies, &times).await?;
    let complete = receivers
        .wait_for(
            u64::from(events),
            Duration::from_secs(60 + u64::from(events) / 1000),
        )
        .await;
    let recorded = wait_recorded(&target.addr, u64::from(events), Duration::from_secs(60)).await?;
    if let Some(perf) = perf {
        perf.finish();
    }
    let wall = now_ns().saturating_sub(started) as f64 / 1e9;
    let (batches, logged) = {
        let mut conn = connect(&target.addr).await?;
        (
            metric(&mut conn, &target.addr, "hallway_log_batches_total").await,
            metric(&mut conn, &target.addr, "hallway_log_events_total").await,
        )
    };
    let cpu = server.cpu_seconds().zip(cpu_before).map(|(a, b)| a - b);
    let bench_cpu = crate::util::process_cpu_seconds()
        .zip(bench_cpu_before)
        .map(|(a, b)| a - b);
    let unidentified = receivers.unidentified();
    let arrivals = arrivals_of(&receivers.take(), &times, 0);
    // The half-load phase counts its own arrivals.
    receivers.clear();
    let first = times.first_start(0..events).unwrap_or(started);
    let rate = per_sec(arrivals.count, first, arrivals.last_ns);
    let publish_latencies = times.call_latencies(0..events);

    // Half of the achieved rate, open loop.
    let half_rate = (rate / 2.0).max(1.0);
    let half_events = ((half_rate * run.half_load_secs).ceil() as u32).clamp(1, half_max);
    let half_range = events..events + half_events;
    let conns = connections(&target, producers).await?;
    fixed_rate(
        &target,
        conns,
        half_range.clone(),
        half_rate,
        &bodies,
        &times,
    )
    .await?;
    let half_complete = receivers
        .wait_for(u64::from(half_events), Duration::from_secs(60))
        .await;
    let half_arrivals = arrivals_of(&receivers.take(), &times, events);
    let half_publish = times.call_latencies(half_range);
    let stopped_cleanly =
        tokio::task::spawn_blocking(move || server.stop(Duration::from_secs(30))).await?;
    drop(dir);

    let after = ceiling_run(&proxy, &receivers, accounts, producers, &bodies, events).await?;
    drop(proxy);
    let ceiling = (before.per_sec + after.per_sec) / 2.0;
    let per_delivery = |s: Option<f64>| s.map(|c| c * 1e6 / f64::from(events));

    let mut r = Record::new("api");
    r.put("accounts", accounts as u64)
        .put("producers", producers as u64)
        .put("deliveries", arrivals.count)
        .put("deliveries_per_sec", rate)
        .put("ceiling_requests_per_sec", ceiling)
        .put("ratio", if ceiling > 0.0 { rate / ceiling } else { 0.0 })
        .put("ceiling_before_requests_per_sec", before.per_sec)
        .put("ceiling_after_requests_per_sec", after.per_sec)
        .put("server_cpu_us_per_delivery", per_delivery(cpu))
        .put(
            "ceiling_cpu_us_per_delivery",
            before
                .cpu_us_per_delivery
                .zip(after.cpu_us_per_delivery)
                .map(|(a, b)| (a + b) / 2.0),
        )
        .put("server_cpu_cores", cpu.map(|c| c / wall.max(1e-9)))
        .put("bench_cpu_us_per_delivery", per_delivery(bench_cpu))
        .put(
            "events_per_record",
            logged.zip(batches).map(|(e, b)| e / b.max(1.0)),
        );
    put_ms(
        &mut r,
        "publish_p50_ms",
        quantile_ms(&publish_latencies, 0.5),
    );
    put_ms(
        &mut r,
        "publish_p99_ms",
        quantile_ms(&publish_latencies, 0.99),
    );
    put_ms(&mut r, "p50_ms", quantile_ms(&arrivals.latencies_ns, 0.5));
    put_ms(&mut r, "p99_ms", quantile_ms(&arrivals.latencies_ns, 0.99));
    r.put("half_load_offered_per_sec", half_rate)
        .put("half_load_events", half_events);
    put_ms(
        &mut r,
        "half_load_publish_p50_ms",
        quantile_ms(&half_publish, 0.5),
    );
    put_ms(
        &mut r,
        "half_load_publish_p99_ms",
        quantile_ms(&half_publish, 0.99),
    );
    put_ms(
        &mut r,
        "half_load_p99_ms",
        quantile_ms(&half_arrivals.latencies_ns, 0.99),
    );
    r.put("unidentified", unidentified)
        .put("results_recorded", recorded)
        .put("half_load_arrived", half_arrivals.count)
        .put("stopped_cleanly", stopped_cleanly)
        .put(
            "complete",
            complete
                && recorded
                && half_complete
                && stopped_cleanly
                && arrivals.count == u64::from(events)
                && half_arrivals.count == u64::from(half_events),
        );
    Ok(r)
}

/// An environment variable holding `perf record` options (`-g -o /tmp/api.data`): the
/// server is then profiled (`perf record <options> -p <pid>`) from its first publish to its
/// last recorded result of the closed loop.
pub const PERF_ENV: &str = "HALLWAY_BENCH_PERF";

/// A `perf record` attached to the server.
struct Profiler(Child);

impl Profiler {
    fn attach(pid: u32) -> BenchResult<Option<Profiler>> {
        let Some(options) = std::env::var_os(PERF_ENV) else {
            return Ok(None);
        };
        let options = options.to_string_lossy().into_owned();
        let child = Command::new("perf")
            .arg("record")
            .args(options.split_whitespace())
            .args(["-p", &pid.to_string()])
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| BenchError::new(format!("cannot start perf: {e}")))?;
        // perf needs a moment to attach before the clock starts.
        std::thread::sleep(Duration::from_millis(500));
        Ok(Some(Profiler(child)))
    }

    /// Stops recording (SIGINT, as Ctrl-C) and waits for perf to write its data.
    fn finish(mut self) {
        // SAFETY: kill(2) on our own child's pid, which we have not waited for yet.
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, libc::SIGINT);
        }
        let _ = self.0.wait();
    }
}
