//! Fault injection: receivers that misbehave on purpose (slow, trickling, reset, truncated,
//! garbage, endless, huge, redirecting, failing, bad TLS, nobody listening). Each is recorded
//! with its error class, and 1,000 deliveries to them at once keep the engine's in-flight
//! count and memory bounded.
//!
//! The receivers are raw tokio sockets, not hyper, so they can break HTTP and TCP on purpose.
//! The engine runs on the system clock with a 500 ms attempt timeout and one attempt per
//! delivery (`retry_delays = [0]`), so every delivery ends after its first attempt.

use hallway_domain::{AccountId, AttemptError, DurationMs, Plan, Policy, Timestamp, WebhookId};
use hallway_runtime::clock::Sleep;
use hallway_runtime::transport::SendFuture;
use hallway_runtime::{
    Clock, Config, Engine, EngineHandle, HttpsTransport, NewWebhook, OutgoingRequest, Transport,
    TransportConfig,
};
use hallway_store::{DeliveryRecord, DeliveryStatus};
use hallway_testkit::tls::TestCa;
use rustls::pki_types::CertificateDer;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The attempt timeout every test here runs with.
const TIMEOUT_MS: u64 = 500;

/// How each receiver misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// 200 at once (the control).
    Ok,
    /// HTTPS with a certificate the engine trusts: 200 (the TLS control).
    TlsOk,
    /// Reads the request and never answers; holds the connection until the client goes.
    Slow,
    /// Writes a valid 200 head one byte every 100 ms: complete only long after the timeout.
    TrickleHead,
    /// Reads the request, then resets the connection (RST) without a byte of answer.
    ResetBeforeHead,
    /// Writes part of the status line, then resets the connection.
    ResetInHead,
    /// Writes a complete 200 head and part of the body, then resets the connection.
    ResetInBody,
    /// Writes part of the head, then closes cleanly (FIN).
    TruncatedHead,
    /// Answers with bytes that are not HTTP.
    Garbage,
    /// A 200 head, then a chunked body that never ends.
    Endless,
    /// A 200 head announcing a 100 MB body, then the body.
    Huge,
    /// 302 to another path of the same receiver.
    Redirect,
    /// 404.
    ClientError,
    /// 503.
    ServerError,
    /// Nothing listens on the port.
    ClosedPort,
    /// HTTPS whose certificate (for `localhost`) chains to a CA the engine does not trust.
    TlsUntrusted,
    /// HTTPS whose certificate, from the trusted CA, names another host.
    TlsWrongName,
    /// An `https://` URL whose port speaks plain HTTP.
    TlsToPlain,
}

const ALL_FAULTS: [Fault; 18] = [
    Fault::Ok,
    Fault::TlsOk,
    Fault::Slow,
    Fault::TrickleHead,
    Fault::ResetBeforeHead,
    Fault::ResetInHead,
    Fault::ResetInBody,
    Fault::TruncatedHead,
    Fault::Garbage,
    Fault::Endless,
    Fault::Huge,
    Fault::Redirect,
    Fault::ClientError,
    Fault::ServerError,
    Fault::ClosedPort,
    Fault::TlsUntrusted,
    Fault::TlsWrongName,
    Fault::TlsToPlain,
];

/// What history must show for one attempt to a receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Expected {
    status: DeliveryStatus,
    error: Option<AttemptError>,
    status_code: Option<u16>,
}

impl Fault {
    /// The rules: success is a 2xx head within the timeout, whatever the body does after;
    /// errors are classed as `docs/decisions.md` ("Error classes") says.
    fn expected(self) -> Expected {
        use AttemptError::*;
        let ok = |code| Expected {
            status: DeliveryStatus::Succeeded,
            error: None,
            status_code: Some(code),
        };
        let fail = |error, status_code| Expected {
            status: DeliveryStatus::Failed,
            error: Some(error),
            status_code,
        };
        match self {
            Fault::Ok | Fault::TlsOk | Fault::ResetInBody | Fault::Endless | Fault::Huge => ok(200),
            Fault::Slow | Fault::TrickleHead => fail(Timeout, None),
            Fault::ResetBeforeHead | Fault::ResetInHead | Fault::ClosedPort => fail(Connect, None),
            Fault::TruncatedHead | Fault::Garbage => fail(InvalidResponse, None),
            Fault::Redirect => fail(HttpStatus, Some(302)),
            Fault::ClientError => fail(HttpStatus, Some(404)),
            Fault::ServerError => fail(HttpStatus, Some(503)),
            Fault::TlsUntrusted | Fault::TlsWrongName | Fault::TlsToPlain => fail(Tls, None),
        }
    }

    /// The receivers whose TLS handshake must fail.
    fn tls_failure(self) -> bool {
        matches!(
            self,
            Fault::TlsUntrusted | Fault::TlsWrongName | Fault::TlsToPlain
        )
    }

    /// Receivers that must never see a request: a peer that failed TLS verification must not
    /// get the signed body.
    fn must_not_receive(self) -> bool {
        matches!(
            self,
            Fault::ClosedPort | Fault::TlsUntrusted | Fault::TlsWrongName | Fault::TlsToPlain
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Counters shared by the receivers.

/// Requests being served right now across every receiver, and the most at once.
#[derive(Default)]
struct Concurrency {
    now: AtomicUsize,
    peak: AtomicUsize,
}

struct Busy(Arc<Concurrency>);

impl Concurrency {
    fn enter(self: &Arc<Self>) -> Busy {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(n, Ordering::SeqCst);
        Busy(self.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What one receiver saw.
#[derive(Default)]
struct Stats {
    /// Requests read completely.
    requests: AtomicUsize,
    /// Requests to any path other than `/hook` (a followed redirect).
    other_paths: AtomicUsize,
    /// Response bodies still being written (endless and huge receivers).
    streaming: AtomicUsize,
    /// The most bytes one response body got written before the client went away.
    max_body_written: AtomicU64,
}

/// The default HTTPS transport, counting the sends under way: the engine's real concurrency,
/// measured outside its own bookkeeping.
struct CountingTransport {
    inner: HttpsTransport,
    sends: Arc<Concurrency>,
}

impl Transport for CountingTransport {
    fn send(&self, request: OutgoingRequest, timeout: Duration) -> SendFuture {
        let busy = self.sends.enter();
        let send = self.inner.send(request, timeout);
        Box::pin(async move {
            let outcome = send.await;
            drop(busy);
            outcome
        })
    }
}

// ---------------------------------------------------------------------------------------------
// TLS material: one CA the engine trusts, one it does not.

struct Pki {
    trusted_ca: CertificateDer<'static>,
    localhost: tokio_rustls::TlsAcceptor,
    untrusted: tokio_rustls::TlsAcceptor,
    wrong_name: tokio_rustls::TlsAcceptor,
}

impl Pki {
    fn new() -> Pki {
        let trusted = TestCa::new("hallway faults trusted CA");
        let other = TestCa::new("hallway faults untrusted CA");
        Pki {
            trusted_ca: trusted.der(),
            localhost: trusted.acceptor(),
            untrusted: other.acceptor(),
            wrong_name: trusted.acceptor_for("not-this-host.example"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The receivers.

struct FaultReceiver {
    fault: Fault,
    url: String,
    stats: Arc<Stats>,
}

impl FaultReceiver {
    async fn start(fault: Fault, pki: &Pki, busy: &Arc<Concurrency>) -> FaultReceiver {
        let stats = Arc::new(Stats::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = match fault {
            Fault::TlsOk | Fault::TlsUntrusted | Fault::TlsWrongName | Fault::TlsToPlain => {
                format!("https://localhost:{port}/hook")
            }
            _ => format!("http://127.0.0.1:{port}/hook"),
        };
        if fault == Fault::ClosedPort {
            // The port was free a moment ago and nobody listens on it now.
            drop(listener);
            return FaultReceiver { fault, url, stats };
        }
        let tls = match fault {
            Fault::TlsOk => Some(pki.localhost.clone()),
            Fault::TlsUntrusted => Some(pki.untrusted.clone()),
            Fault::TlsWrongName => Some(pki.wrong_name.clone()),
            _ => None,
        };
        let (s, b) = (stats.clone(), busy.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (s, b, tls) = (s.clone(), b.clone(), tls.clone());
                tokio::spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    match tls {
                        // A failed handshake ends here: no request is ever read.
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                serve_status(stream, 200, &s, &b).await;
                            }
                        }
                        None => serve_plain(fault, tcp, &s, &b).await,
                    }
                });
            }
        });
        FaultReceiver { fault, url, stats }
    }
}

/// Finds `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads one request (head and `Content-Length` body) into `buf`, leaving what follows it;
/// returns its path, or `None` when the peer closed or sent something that is not HTTP.
async fn read_request<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Option<String> {
    read_request_body(s, buf).await.map(|(path, _)| path)
}

/// [`read_request`], returning the body too.
async fn read_request_body<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
) -> Option<(String, Vec<u8>)> {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).ok()?.to_owned();
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            let total = end + 4 + len;
            while buf.len() < total {
                let n = s.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[end + 4..total].to_vec();
            buf.drain(..total);
            return Some((head.split(' ').nth(1)?.to_owned(), body));
        }
        if buf.len() > 1 << 20 {
            return None;
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn counted(path: &str, stats: &Stats) {
    stats.requests.fetch_add(1, Ordering::SeqCst);
    if path != "/hook" {
        stats.other_paths.fetch_add(1, Ordering::SeqCst);
    }
}

/// A well-behaved keep-alive server answering `status` to every request.
async fn serve_status<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    status: u16,
    stats: &Stats,
    busy: &Arc<Concurrency>,
) {
    let mut buf = Vec::new();
    while let Some(path) = read_request(&mut s, &mut buf).await {
        let _busy = busy.enter();
        counted(&path, stats);
        let head = match status {
            200 => "HTTP/1.1 200 OK\r\n".to_owned(),
            302 => "HTTP/1.1 302 Found\r\nLocation: /followed\r\n".to_owned(),
            404 => "HTTP/1.1 404 Not Found\r\n".to_owned(),
            503 => "HTTP/1.1 503 Service Unavailable\r\n".to_owned(),
            other => format!("HTTP/1.1 {other} Whatever\r\n"),
        };
        let answer = format!("{head}Content-Length: 2\r\nContent-Type: text/plain\r\n\r\nok");
        if s.write_all(answer.as_bytes()).await.is_err() || s.flush().await.is_err() {
            return;
        }
    }
}

/// Resets the connection: with a zero linger, closing sends RST instead of FIN.
fn reset(tcp: TcpStream) {
    let _ = tcp.set_zero_linger();
    drop(tcp);
}

/// Writes a response body until the client goes away or `limit` bytes are out; records the
/// bytes written.
async fn stream_body(tcp: &mut TcpStream, chunked: bool, limit: u64, stats: &Stats) {
    stats.streaming.fetch_add(1, Ordering::SeqCst);
    let payload = vec![b'x'; 16 * 1024];
    let mut frame = Vec::new();
    if chunked {
        frame.extend_from_slice(format!("{:x}\r\n", payload.len()).as_bytes());
        frame.extend_from_slice(&payload);
        frame.extend_from_slice(b"\r\n");
    } else {
        frame = payload;
    }
    let mut written = 0u64;
    while written < limit {
        let n = (frame.len() as u64).min(limit - written) as usize;
        if tcp.write_all(&frame[..n]).await.is_err() {
            break;
        }
        written += n as u64;
    }
    stats.max_body_written.fetch_max(written, Ordering::SeqCst);
    stats.streaming.fetch_sub(1, Ordering::SeqCst);
}

async fn serve_plain(fault: Fault, mut tcp: TcpStream, stats: &Stats, busy: &Arc<Concurrency>) {
    let status = match fault {
        Fault::Ok => Some(200),
        Fault::Redirect => Some(302),
        Fault::ClientError => Some(404),
        Fault::ServerError => Some(503),
        _ => None,
    };
    if let Some(status) = status {
        return serve_status(tcp, status, stats, busy).await;
    }
    if fault == Fault::TlsToPlain {
        // A TLS ClientHello is not HTTP: answer like a plain server would, and close.
        let mut first = [0u8; 1024];
        let _ = tcp.read(&mut first).await;
        let _ = tcp
            .write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .await;
        let _ = tcp.shutdown().await;
        return;
    }
    let mut buf = Vec::new();
    let Some(path) = read_request(&mut tcp, &mut buf).await else {
        return;
    };
    let _busy = busy.enter();
    counted(&path, stats);
    match fault {
        Fault::Slow => {
            // Hold the connection, reading nothing more, until the client hangs up.
            let mut sink = [0u8; 256];
            while let Ok(n) = tcp.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        }
        Fault::TrickleHead => {
            for b in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if tcp.write_all(&[*b]).await.is_err() {
                    return;
                }
            }
        }
        Fault::ResetBeforeHead => reset(tcp),
        Fault::ResetInHead => {
            let _ = tcp.write_all(b"HTTP/1.1 20").await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            reset(tcp);
        }
        Fault::ResetInBody => {
            let _ = tcp
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial...")
                .await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            reset(tcp);
        }
        Fault::TruncatedHead => {
            let _ = tcp.write_all(b"HTTP/1.1 200 OK\r\nContent-Le").await;
            let _ = tcp.shutdown().await;
        }
        Fault::Garbage => {
            let _ = tcp
                .write_all(
                    b"SSH-2.0-OpenSSH_9.6\r\n\x00\x00\x01\x0c\x0a\x14 not http at all\r\n\r\n",
                )
                .await;
            let _ = tcp.shutdown().await;
        }
        Fault::Endless => {
            let head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n";
            if tcp.write_all(head).await.is_ok() {
                stream_body(&mut tcp, true, u64::MAX, stats).await;
            }
        }
        Fault::Huge => {
            let size = 100 * 1024 * 1024u64;
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n");
            if tcp.write_all(head.as_bytes()).await.is_ok() {
                stream_body(&mut tcp, false, size, stats).await;
            }
        }
        _ => unreachable!("{fault:?} is served elsewhere"),
    }
}

// ---------------------------------------------------------------------------------------------
// The engine side.

fn engine_config(pki: &Pki, max_in_flight: usize) -> Config {
    Config {
        policy: Policy {
            retry_delays: vec![DurationMs(0)],
            attempt_timeout: DurationMs(TIMEOUT_MS),
            allow_private_targets: true,
            require_https: false,
            max_webhooks_per_account: 100,
            // Failures must not disable the webhooks (that would cancel deliveries).
            auto_disable_after: 1_000_000,
            ..Policy::default()
        },
        max_in_flight,
        transport_config: TransportConfig {
            extra_roots: vec![pki.trusted_ca.clone()],
            skip_native_roots: true,
            ..TransportConfig::default()
        },
        ..Config::default()
    }
}

fn event_body(id: &str) -> Vec<u8> {
    format!(
        r#"{{"type":"session.processing.completed","id":"{id}","project":{{"id":"prj_1","name":"Discovery"}},"session":{{"id":"ses_1","duration_seconds":342}}}}"#
    )
    .into_bytes()
}

async fn add_webhook(h: &EngineHandle, account: &AccountId, url: &str) -> WebhookId {
    h.create_webhook(
        account,
        NewWebhook {
            name: "fault".into(),
            url: url.to_owned(),
            description: None,
            events: vec![hallway_domain::SESSION_PROCESSING_COMPLETED.into()],
            project_ids: vec![],
            signature_scheme: hallway_domain::SignatureScheme::Hallway,
        },
    )
    .await
    .unwrap()
    .0
    .id
}

/// Every delivery of a webhook, through every page.
async fn all_deliveries(
    h: &EngineHandle,
    account: &AccountId,
    webhook: &WebhookId,
) -> Vec<DeliveryRecord> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = h
            .deliveries(account, webhook, 100, cursor.as_deref())
            .await
            .unwrap();
        out.extend(page.data);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

/// Waits until `attempts` attempts are recorded and nothing is pending or under way.
async fn wait_until_settled(h: &EngineHandle, attempts: u64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let m = h.metrics();
        let recorded = m.attempts_succeeded + m.attempts_failed.iter().map(|(_, n)| n).sum::<u64>();
        if recorded >= attempts && m.pending == 0 && m.in_flight == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not settled within {within:?}: {recorded} of {attempts} attempts recorded, {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Known bug, proved by `tls_failures_are_recorded_as_tls`: the transport records failed TLS
/// handshakes as `connect`. hyper-rustls wraps the rustls error in two `io::Error`s, and
/// `classify` (crates/runtime/src/transport.rs) looks inside only the outer one: the outer
/// error's `source()` is the *inner error's* source, so the rustls error itself is never
/// seen. While this is `true`, the tests that are not about TLS classes accept `connect` for
/// the TLS faults (everything else about them is still checked); set it to `false` with the fix.
const TLS_RECORDED_AS_CONNECT_BUG: bool = false;

/// Compares a delivery with what its receiver's fault must produce; describes any mismatch.
/// `strict_tls: false` tolerates the known bug above.
fn check(fault: Fault, d: &DeliveryRecord, strict_tls: bool) -> Result<(), String> {
    let mut want = fault.expected();
    if !strict_tls && TLS_RECORDED_AS_CONNECT_BUG && fault.tls_failure() {
        want.error = Some(AttemptError::Connect);
    }
    let [a] = d.attempts.as_slice() else {
        return Err(format!(
            "{fault:?}: {} attempts, expected exactly 1",
            d.attempts.len()
        ));
    };
    let got = Expected {
        status: d.status,
        error: a.error,
        status_code: a.status_code,
    };
    if got != want {
        return Err(format!("{fault:?}: got {got:?}, expected {want:?}"));
    }
    // Timeouts take the timeout (and not much more); everything else is decided sooner.
    let late = a.duration_ms > TIMEOUT_MS + 1_500;
    let early = want.error == Some(AttemptError::Timeout) && a.duration_ms < TIMEOUT_MS;
    if late || early {
        return Err(format!(
            "{fault:?}: attempt took {} ms with a {TIMEOUT_MS} ms timeout",
            a.duration_ms
        ));
    }
    Ok(())
}

/// Resident memory of this process, in bytes.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

async fn wait_streams_closed(receivers: &[FaultReceiver], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let open: usize = receivers
            .iter()
            .map(|r| r.stats.streaming.load(Ordering::SeqCst))
            .sum();
        if open == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{open} endless or huge response bodies are still being read {within:?} after the attempts ended: the engine did not drop them"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The most bytes any endless or huge body got to write before the engine hung up.
fn max_body_written(receivers: &[FaultReceiver]) -> u64 {
    receivers
        .iter()
        .map(|r| r.stats.max_body_written.load(Ordering::SeqCst))
        .max()
        .unwrap_or(0)
}

/// A bound on what a response body may push before the engine hangs up: the engine reads a
/// 16 KiB prefix; the rest is what socket buffers on both sides hold.
const BODY_WRITTEN_BOUND: u64 = 32 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// The tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_is_recorded_with_its_error_class() {
    let pki = Pki::new();
    let busy = Arc::new(Concurrency::default());
    let mut receivers = Vec::new();
    for fault in ALL_FAULTS {
        receivers.push(FaultReceiver::start(fault, &pki, &busy).await);
    }
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), engine_config(&pki, 64))
        .await
        .unwrap();
    let h = engine.handle();
    let acc = AccountId::from("acc_faults");
    h.create_account(&acc, "Faults", Plan::Pro).await.unwrap();
    let mut hooks = Vec::new();
    for r in &receivers {
        hooks.push(add_webhook(&h, &acc, &r.url).await);
    }
    let receipt = h.publish(&acc, &event_body("evt_fault_1")).await.unwrap();
    assert_eq!(receipt.deliveries as usize, receivers.len());
    wait_until_settled(&h, receivers.len() as u64, Duration::from_secs(20)).await;

    let mut problems = Vec::new();
    for (r, wh) in receivers.iter().zip(&hooks) {
        let ds = all_deliveries(&h, &acc, wh).await;
        match ds.as_slice() {
            [d] => {
                if let Err(p) = check(r.fault, d, false) {
                    problems.push(p);
                }
            }
            other => problems.push(format!("{:?}: {} deliveries", r.fault, other.len())),
        }
        let requests = r.stats.requests.load(Ordering::SeqCst);
        if r.fault.must_not_receive() && requests != 0 {
            problems.push(format!(
                "{:?}: the receiver got {requests} requests",
                r.fault
            ));
        }
        if !r.fault.must_not_receive() && requests != 1 {
            problems.push(format!(
                "{:?}: the receiver got {requests} requests, expected 1",
                r.fault
            ));
        }
        if r.stats.other_paths.load(Ordering::SeqCst) != 0 {
            problems.push(format!("{:?}: a redirect was followed", r.fault));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    wait_streams_closed(&receivers, Duration::from_secs(5)).await;
    let written = max_body_written(&receivers);
    assert!(
        written < BODY_WRITTEN_BOUND,
        "a receiver pushed {written} bytes of body before the engine hung up"
    );
    engine.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_deliveries_to_misbehaving_endpoints_stay_bounded() {
    const ACCOUNTS: usize = 4;
    const WEBHOOKS_PER_ACCOUNT: usize = 9;
    const EVENTS_PER_ACCOUNT: usize = 28;
    const MAX_IN_FLIGHT: usize = 64;
    const DELIVERIES: usize = ACCOUNTS * WEBHOOKS_PER_ACCOUNT * EVENTS_PER_ACCOUNT;
    const _: () = assert!(DELIVERIES >= 1_000);

    let pki = Pki::new();
    let busy = Arc::new(Concurrency::default());
    let mut receivers = Vec::new();
    for fault in ALL_FAULTS {
        receivers.push(FaultReceiver::start(fault, &pki, &busy).await);
    }
    let dir = tempfile::tempdir().unwrap();
    let sends = Arc::new(Concurrency::default());
    let mut config = engine_config(&pki, MAX_IN_FLIGHT);
    // The custom transport takes the default one's options: the engine refuses both at once.
    let transport = HttpsTransport::new(TransportConfig {
        allow_private_targets: true,
        ..std::mem::take(&mut config.transport_config)
    })
    .unwrap();
    config.transport = Some(Arc::new(CountingTransport {
        inner: transport,
        sends: sends.clone(),
    }));
    let engine = Engine::open(dir.path(), config).await.unwrap();
    let h = engine.handle();
    // Webhooks across accounts, the faults dealt round-robin: each fault gets two webhooks.
    let mut hooks: Vec<(AccountId, WebhookId, usize)> = Vec::new();
    for a in 0..ACCOUNTS {
        let acc = AccountId::from(format!("acc_{a}"));
        h.create_account(&acc, "Load", Plan::Pro).await.unwrap();
        for w in 0..WEBHOOKS_PER_ACCOUNT {
            let r = (a * WEBHOOKS_PER_ACCOUNT + w) % receivers.len();
            hooks.push((
                acc.clone(),
                add_webhook(&h, &acc, &receivers[r].url).await,
                r,
            ));
        }
    }

    // Sample the in-flight gauge and memory while the load runs.
    let rss_before = rss_bytes();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (h, stop) = (h.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut max_in_flight, mut rss_peak, mut samples) = (0u64, rss_before, 0usize);
            while !stop.load(Ordering::SeqCst) {
                max_in_flight = max_in_flight.max(h.metrics().in_flight);
                if samples % 10 == 0 {
                    rss_peak = rss_peak.max(rss_bytes());
                }
                samples += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (max_in_flight, rss_peak, samples)
        })
    };

    let started = Instant::now();
    let mut publishes = Vec::new();
    for a in 0..ACCOUNTS {
        for e in 0..EVENTS_PER_ACCOUNT {
            let h = h.clone();
            publishes.push(tokio::spawn(async move {
                let acc = AccountId::from(format!("acc_{a}"));
                h.publish(&acc, &event_body(&format!("evt_{a}_{e}")))
                    .await
                    .unwrap()
                    .deliveries as usize
            }));
        }
    }
    let mut scheduled = 0;
    for p in publishes {
        scheduled += p.await.unwrap();
    }
    assert_eq!(scheduled, DELIVERIES);
    wait_until_settled(&h, DELIVERIES as u64, Duration::from_secs(60)).await;
    let settled_in = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let (max_in_flight_seen, rss_peak, sample_count) = sampler.await.unwrap();
    wait_streams_closed(&receivers, Duration::from_secs(10)).await;
    let rss_after = rss_bytes();

    let mut problems = Vec::new();
    let mut checked = 0;
    for (acc, wh, r) in &hooks {
        let fault = receivers[*r].fault;
        let ds = all_deliveries(&h, acc, wh).await;
        if ds.len() != EVENTS_PER_ACCOUNT {
            problems.push(format!("{fault:?}: {} deliveries", ds.len()));
        }
        for d in &ds {
            checked += 1;
            if let Err(p) = check(fault, d, false) {
                problems.push(p);
            }
        }
    }
    problems.truncate(20);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(checked, DELIVERIES);

    // Receivers notice a dropped connection a moment after the engine has moved on, so their
    // count is informative only; the transport's count is exact.
    let receiver_peak = busy.peak.load(Ordering::SeqCst);
    let sends_peak = sends.peak.load(Ordering::SeqCst);
    let written = max_body_written(&receivers);
    eprintln!(
        "{DELIVERIES} deliveries settled in {settled_in:?}; in flight: max {max_in_flight_seen} of {MAX_IN_FLIGHT} ({sample_count} samples); \
         sends under way at once: {sends_peak}; receivers served at most {receiver_peak} requests at once; \
         RSS {} MiB before, peak {} MiB, after {} MiB; largest body pushed {} KiB",
        rss_before >> 20,
        rss_peak >> 20,
        rss_after >> 20,
        written >> 10
    );
    assert!(
        max_in_flight_seen > 0 && max_in_flight_seen <= MAX_IN_FLIGHT as u64,
        "in flight reached {max_in_flight_seen} with max_in_flight {MAX_IN_FLIGHT}"
    );
    assert!(
        sends_peak > 0 && sends_peak <= MAX_IN_FLIGHT,
        "{sends_peak} sends were under way at once with max_in_flight {MAX_IN_FLIGHT}"
    );
    assert_eq!(sends.now.load(Ordering::SeqCst), 0, "every send finished");
    let growth = rss_peak.max(rss_after).saturating_sub(rss_before);
    assert!(
        growth < 200 * 1024 * 1024,
        "RSS grew by {} MiB",
        growth >> 20
    );
    assert!(
        written < BODY_WRITTEN_BOUND,
        "a receiver pushed {written} bytes of body before the engine hung up"
    );

    // Still healthy: a new event reaches every well-behaved endpoint at once.
    let ok_requests = |rs: &[FaultReceiver]| {
        rs.iter()
            .filter(|r| r.fault == Fault::Ok)
            .map(|r| r.stats.requests.load(Ordering::SeqCst))
            .sum::<usize>()
    };
    let before = ok_requests(&receivers);
    let acc = AccountId::from("acc_0");
    let r = h.publish(&acc, &event_body("evt_after")).await.unwrap();
    assert_eq!(r.deliveries as usize, WEBHOOKS_PER_ACCOUNT);
    wait_until_settled(
        &h,
        (DELIVERIES + WEBHOOKS_PER_ACCOUNT) as u64,
        Duration::from_secs(10),
    )
    .await;
    let ok_hooks_in_acc_0 = hooks
        .iter()
        .filter(|(a, _, r)| a == &acc && receivers[*r].fault == Fault::Ok)
        .count();
    assert_eq!(ok_requests(&receivers), before + ok_hooks_in_acc_0);
    tokio::time::timeout(Duration::from_secs(10), engine.shutdown())
        .await
        .expect("shutdown finishes")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_failures_are_recorded_as_tls() {
    let pki = Pki::new();
    let busy = Arc::new(Concurrency::default());
    let faults = [
        Fault::TlsOk,
        Fault::TlsUntrusted,
        Fault::TlsWrongName,
        Fault::TlsToPlain,
    ];
    let mut receivers = Vec::new();
    for fault in faults {
        receivers.push(FaultReceiver::start(fault, &pki, &busy).await);
    }
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), engine_config(&pki, 64))
        .await
        .unwrap();
    let h = engine.handle();
    let acc = AccountId::from("acc_tls");
    h.create_account(&acc, "TLS", Plan::Pro).await.unwrap();
    let mut hooks = Vec::new();
    for r in &receivers {
        hooks.push(add_webhook(&h, &acc, &r.url).await);
    }
    h.publish(&acc, &event_body("evt_tls")).await.unwrap();
    wait_until_settled(&h, receivers.len() as u64, Duration::from_secs(20)).await;
    let mut problems = Vec::new();
    for (r, wh) in receivers.iter().zip(&hooks) {
        for d in all_deliveries(&h, &acc, wh).await {
            if let Err(p) = check(r.fault, &d, true) {
                problems.push(p);
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    engine.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Clock jumps.

/// The system clock plus an offset a test can move either way, as NTP stepping a badly set
/// clock would. Sleeps are computed like [`hallway_runtime::SystemClock`]'s: from the
/// distance to the deadline when the sleep starts.
#[derive(Clone, Default)]
struct JumpClock {
    offset_ms: Arc<AtomicI64>,
}

impl JumpClock {
    fn jump(&self, ms: i64) {
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for JumpClock {
    fn now(&self) -> Timestamp {
        let real = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        Timestamp((real + self.offset_ms.load(Ordering::SeqCst)) as u64)
    }

    fn sleep_until(&self, deadline: Timestamp) -> Sleep {
        let wait = deadline.0.saturating_sub(self.now().0);
        Box::pin(tokio::time::sleep(Duration::from_millis(wait)))
    }
}

/// A receiver that answers 500 to the first request carrying an event id and 200 after;
/// returns its URL and the number of requests per event id.
async fn fail_first_receiver() -> (
    String,
    Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://127.0.0.1:{}/hook",
        listener.local_addr().unwrap().port()
    );
    let seen: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>> = Arc::default();
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            let s = s.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some((_, body)) = read_request_body(&mut tcp, &mut buf).await {
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    let id = v["id"].as_str().unwrap_or("").to_owned();
                    let n = {
                        let mut seen = s.lock().unwrap();
                        let n = seen.entry(id).or_insert(0);
                        *n += 1;
                        *n
                    };
                    let head = if n == 1 {
                        "500 Internal Server Error"
                    } else {
                        "200 OK"
                    };
                    let answer = format!("HTTP/1.1 {head}\r\nContent-Length: 0\r\n\r\n");
                    if tcp.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, seen)
}

async fn delivery_of(
    h: &EngineHandle,
    acc: &AccountId,
    wh: &WebhookId,
    event: &str,
) -> DeliveryRecord {
    all_deliveries(h, acc, wh)
        .await
        .into_iter()
        .find(|d| d.event_id.as_str() == event)
        .unwrap_or_else(|| panic!("a delivery of {event}"))
}

async fn wait_succeeded(
    h: &EngineHandle,
    acc: &AccountId,
    wh: &WebhookId,
    event: &str,
) -> DeliveryRecord {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = delivery_of(h, acc, wh, event).await;
        if d.status == DeliveryStatus::Succeeded {
            return d;
        }
        assert!(Instant::now() < deadline, "{event} did not succeed: {d:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Due times are wall-clock timestamps: stepping the clock back an hour delays a pending
/// retry by that hour, stepping it forward again makes it due at once (it starts at the
/// engine's next wake-up: here a new command), and nothing is lost or sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_jumps_delay_or_hasten_retries_but_lose_nothing() {
    const HOUR: i64 = 3_600_000;
    let (url, seen) = fail_first_receiver().await;
    let clock = JumpClock::default();
    let pki = Pki::new();
    let mut config = engine_config(&pki, 16);
    config.policy.retry_delays = vec![DurationMs(0), DurationMs(700)];
    config.clock = Arc::new(clock.clone());
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), config).await.unwrap();
    let h = engine.handle();
    let acc = AccountId::from("acc_clock");
    h.create_account(&acc, "Clock", Plan::Pro).await.unwrap();
    let wh = add_webhook(&h, &acc, &url).await;

    // e1's first attempt fails; its retry is due 700 ms later by the clock.
    h.publish(&acc, &event_body("evt_e1")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while delivery_of(&h, &acc, &wh, "evt_e1")
        .await
        .attempts
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "e1's first attempt was not recorded"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The clock steps back an hour: e1's retry is now an hour away.
    clock.jump(-HOUR);
    h.publish(&acc, &event_body("evt_e2")).await.unwrap();
    // e2 fails once and is retried 700 ms later (by the stepped clock) while e1 waits.
    let e2 = wait_succeeded(&h, &acc, &wh, "evt_e2").await;
    assert_eq!(e2.attempts.len(), 2);
    let e1 = delivery_of(&h, &acc, &wh, "evt_e1").await;
    assert_eq!(e1.status, DeliveryStatus::Pending);
    assert_eq!(
        e1.attempts.len(),
        1,
        "e1's retry waits for the clock to catch up"
    );
    assert!(e1.next_attempt_at.unwrap() > clock.now().plus(DurationMs(HOUR as u64 - 60_000)));
    // The clock steps forward again: e1 is overdue and goes with the next wake-up.
    clock.jump(HOUR);
    h.publish(&acc, &event_body("evt_e3")).await.unwrap();
    let e1 = wait_succeeded(&h, &acc, &wh, "evt_e1").await;
    let e3 = wait_succeeded(&h, &acc, &wh, "evt_e3").await;
    for d in [&e1, &e2, &e3] {
        let numbers: Vec<u32> = d.attempts.iter().map(|a| a.attempt).collect();
        assert_eq!(numbers, vec![1, 2], "{}", d.event_id);
    }
    // Each event reached the receiver exactly twice: the 500 and the 200.
    let seen = seen.lock().unwrap().clone();
    for e in ["evt_e1", "evt_e2", "evt_e3"] {
        assert_eq!(seen.get(e), Some(&2), "{e}: {seen:?}");
    }
    engine.shutdown().await.unwrap();
}
