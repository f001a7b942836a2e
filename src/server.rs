//! The API's listener: HTTP/1.1 connections with a cap, a header-read timeout, an idle
//! timeout, a per-request time limit, and a shutdown no client can stall.
//!
//! Each connection task watches its own connection: while no request is inside the router it
//! is either idle (closed after the idle timeout) or sending a request head (closed after the
//! header-read timeout, counted from the head's first byte). At the cap, the longest-idle
//! connection is closed to make room; when every connection is busy, new ones wait in the
//! listen backlog until one finishes, so `/healthz` is answered as soon as anything frees.

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

/// How the listener treats its clients.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Time from a request head's first byte to its end.
    pub header_read_timeout: Duration,
    /// Time a keep-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Time a request may spend in the router, its body's upload included.
    pub request_timeout: Duration,
    /// Time open requests get to finish once shutdown starts.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// What one connection shares with its watcher and the listener.
struct Conn {
    /// Requests inside the router.
    active: AtomicUsize,
    /// Milliseconds since the listener's epoch when the connection last became idle.
    idle_since_ms: AtomicU64,
    /// When the current head's first byte arrived (0: no head under way).
    head_started_ms: AtomicU64,
    /// Asks the watcher to close the connection now.
    close: Notify,
    closing: AtomicBool,
}

struct Shared {
    epoch: Instant,
    limits: Limits,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    shutdown: Notify,
    shutting_down: AtomicBool,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        // Never 0, which marks "no head under way".
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// Closes the connection that has been idle longest; `false` when every one is busy.
    fn evict_idle(&self) -> bool {
        let conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        let oldest = conns
            .values()
            .filter(|c| c.active.load(Ordering::Acquire) == 0 && !c.closing.load(Ordering::Acquire))
            .min_by_key(|c| c.idle_since_ms.load(Ordering::Acquire));
        match oldest {
            Some(c) => {
                c.closing.store(true, Ordering::Release);
                c.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Serves `app` on `listener` until `signal` completes, then stops accepting at once, gives
/// open requests `shutdown_grace` to finish and closes every connection left.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    signal: impl Future<Output = ()>,
) {
    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        limits: limits.clone(),
        conns: Mutex::new(HashMap::new()),
        shutdown: Notify::new(),
        shutting_down: AtomicBool::new(false),
    });
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut tasks = JoinSet::new();
    let mut next_id = 0u64;
    tokio::pin!(signal);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut signal => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors or a connection reset before accept: back off briefly
                // instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // The evicted connection's task gives its slot back as it ends; with none
                // idle, this one waits for the first to finish.
                shared.evict_idle();
                tokio::select! {
                    p = slots.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    _ = &mut signal => break,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        next_id += 1;
        let id = next_id;
        let conn = Arc::new(Conn {
            active: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(shared.now_ms()),
            head_started_ms: AtomicU64::new(0),
            close: Notify::new(),
            closing: AtomicBool::new(false),
        });
        shared
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, conn.clone());
        let (shared, app) = (shared.clone(), app.clone());
        tasks.spawn(async move {
            serve_connection(stream, app, &shared, &conn).await;
            shared
                .conns
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            drop(permit);
        });
        // Reap finished tasks so the set stays as small as the open connections.
        while tasks.try_join_next().is_some() {}
    }
    drop(listener);
    shared.shutting_down.store(true, Ordering::Release);
    shared.shutdown.notify_waiters();
    let open = tasks.len();
    if open > 0 {
        tracing::info!(connections = open, "closing API connections");
    }
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = tasks.len(),
            "requests still open after the shutdown grace; closing them"
        );
        tasks.shutdown().await;
    }
}

/// Runs one connection until it ends, times out, is evicted, or shutdown closes it.
async fn serve_connection(stream: TcpStream, app: Router, shared: &Arc<Shared>, conn: &Arc<Conn>) {
    let io = TokioIo::new(WatchedIo {
        inner: stream,
        conn: conn.clone(),
        shared: shared.clone(),
        rewrite: None,
    });
    let service = {
        let (conn, shared) = (conn.clone(), shared.clone());
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let (conn, shared, app) = (conn.clone(), shared.clone(), app.clone());
            async move {
                conn.head_started_ms.store(0, Ordering::Release);
                conn.active.fetch_add(1, Ordering::AcqRel);
                let timeout = shared.limits.request_timeout;
                let answer = tokio::time::timeout(timeout, handle(app, req)).await;
                conn.idle_since_ms.store(shared.now_ms(), Ordering::Release);
                conn.active.fetch_sub(1, Ordering::AcqRel);
                Ok::<_, std::convert::Infallible>(answer.unwrap_or_else(|_| {
                    crate::api::error_response(
                        StatusCode::REQUEST_TIMEOUT,
                        "request_timeout",
                        "the request took longer than the server allows",
                    )
                }))
            }
        })
    };
    let limits = &shared.limits;
    let tick =
        (limits.header_read_timeout.min(limits.idle_timeout) / 4).max(Duration::from_millis(50));
    // The tick enforces both flags: a connection may idle for `--idle-timeout`, then take
    // `--header-read-timeout` over a head. hyper's header timer starts when the connection
    // starts waiting for a head (idle included), not at the head's first byte, so at its 30 s
    // default it would close idle connections before `--idle-timeout`; set to the sum of both
    // and a tick, it is only an outer bound that never fires before the flags do.
    let outer_bound = limits
        .idle_timeout
        .saturating_add(limits.header_read_timeout)
        .saturating_add(tick);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(outer_bound)
        .keep_alive(true);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut graceful = false;
    loop {
        tokio::select! {
            _ = connection.as_mut() => return,
            _ = conn.close.notified() => return,
            _ = shared.shutdown.notified(), if !graceful => {
                if conn.active.load(Ordering::Acquire) == 0 {
                    return;
                }
                // Finish the request under way, then close.
                graceful = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep(tick) => {
                if shared.shutting_down.load(Ordering::Acquire) && !graceful {
                    if conn.active.load(Ordering::Acquire) == 0 {
                        return;
                    }
                    graceful = true;
                    connection.as_mut().graceful_shutdown();
                }
                if conn.active.load(Ordering::Acquire) > 0 {
                    continue;
                }
                let now = shared.now_ms();
                let head = conn.head_started_ms.load(Ordering::Acquire);
                let expired = if head != 0 {
                    now.saturating_sub(head) > limits.header_read_timeout.as_millis() as u64
                } else {
                    let idle = conn.idle_since_ms.load(Ordering::Acquire);
                    now.saturating_sub(idle) > limits.idle_timeout.as_millis() as u64
                };
                if expired {
                    return;
                }
            }
        }
    }
}

async fn handle(app: Router, req: Request<Incoming>) -> Response<Body> {
    use tower_service::Service;
    let mut app = app;
    match app.call(req.map(Body::new)).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

/// The connection's socket, noting when a request head starts arriving.
struct WatchedIo {
    inner: TcpStream,
    conn: Arc<Conn>,
    shared: Arc<Shared>,
    /// A replacement answer being written, and how much of it is out.
    rewrite: Option<(Vec<u8>, usize)>,
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before
            && self.conn.active.load(Ordering::Acquire) == 0
            && self.conn.head_started_ms.load(Ordering::Acquire) == 0
        {
            let now = self.shared.now_ms();
            self.conn.head_started_ms.store(now, Ordering::Release);
        }
        poll
    }
}

impl WatchedIo {
    /// hyper answers a request it cannot parse itself, with an empty body; the contract wants
    /// its error object on every error, so such a head is replaced on its way out.
    fn parse_error_answer(head: &[u8]) -> Option<Vec<u8>> {
        const MARK: &[u8] = b"\r\nconnection: close\r\ncontent-length: 0\r\n";
        if !head.starts_with(b"HTTP/1.1 4") || !head.windows(MARK.len()).any(|w| w == MARK) {
            return None;
        }
        let (code, message) = match head.get(9..12)? {
            b"431" => (
                "request_header_fields_too_large",
                "the request's headers are larger than the server accepts",
            ),
            b"414" => (
                "uri_too_long",
                "the request's URI is longer than the server accepts",
            ),
            _ => ("invalid_request", "the request is not valid HTTP/1.1"),
        };
        let status_line_end = head.windows(2).position(|w| w == b"\r\n")?;
        let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
        let mut out = head[..status_line_end].to_vec();
        out.extend_from_slice(
            format!(
                "\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        Some(out)
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.rewrite.is_none() && self.conn.active.load(Ordering::Acquire) == 0 {
            self.rewrite = Self::parse_error_answer(buf).map(|b| (b, 0));
        }
        let Some((mut out, mut written)) = self.rewrite.take() else {
            return Pin::new(&mut self.inner).poll_write(cx, buf);
        };
        while written < out.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &out[written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    self.rewrite = Some((std::mem::take(&mut out), written));
                    return Poll::Pending;
                }
            }
        }
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            if self.rewrite.is_some() || Self::parse_error_answer(first).is_some() {
                return self.poll_write(cx, first);
            }
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
