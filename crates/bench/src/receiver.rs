//! Local receivers: keep-alive hyper servers on 127.0.0.1 that answer at once with a set
//! status and record when each request's body has fully arrived, keyed by its event number.

use crate::util::{now_ns, BenchResult};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

/// What one receiver saw: (event number, arrival in ns) per request.
#[derive(Default)]
struct Log {
    arrivals: Mutex<Vec<(u32, u64)>>,
    count: AtomicU64,
    unidentified: AtomicU64,
    status: AtomicU16,
}

impl Log {
    fn record(&self, body: &[u8]) {
        let at = now_ns();
        match event_number(body) {
            Some(n) => self
                .arrivals
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((n, at)),
            None => {
                self.unidentified.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Release);
    }
}

/// The event number of a delivered body: the digits after the last `_` of its leading
/// `"id"` (every body the engine sends starts with `{"id":"...`).
pub fn event_number(body: &[u8]) -> Option<u32> {
    let rest = body.strip_prefix(br#"{"id":""#)?;
    let end = rest.iter().position(|b| *b == b'"')?;
    let id = std::str::from_utf8(&rest[..end]).ok()?;
    id.rsplit_once('_')?.1.parse().ok()
}

/// One receiver listening on its own port.
pub struct Receiver {
    /// The port on 127.0.0.1.
    pub port: u16,
    log: Arc<Log>,
    accept: JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Receiver {
    /// Starts a receiver on `runtime` answering `status` to every request.
    pub fn start(runtime: &Handle, status: u16) -> BenchResult<Receiver> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let port = std_listener.local_addr()?.port();
        let listener = {
            let _guard = runtime.enter();
            TcpListener::from_std(std_listener)?
        };
        let log = Arc::new(Log::default());
        log.status.store(status, Ordering::Relaxed);
        let accept_log = log.clone();
        let accept = runtime.spawn(async move {
            loop {
                let tcp = match listener.accept().await {
                    Ok((tcp, _)) => tcp,
                    // Out of descriptors or similar: back off a little and keep serving.
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let log = accept_log.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let log = log.clone();
                        async move {
                            let body = req.into_body().collect().await?.to_bytes();
                            log.record(&body);
                            let code = log.status.load(Ordering::Relaxed);
                            let mut resp = Response::new(Full::new(Bytes::new()));
                            *resp.status_mut() =
                                StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
                            Ok::<_, hyper::Error>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Ok(Receiver { port, log, accept })
    }

    /// The URL to register.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }
}

/// Several receivers, one per webhook (one connection pool per host:port, as in production).
pub struct Receivers {
    /// The receivers, by webhook index.
    pub all: Vec<Receiver>,
}

impl Receivers {
    /// Starts `n` receivers answering `status`.
    pub fn start(runtime: &Handle, n: usize, status: u16) -> BenchResult<Receivers> {
        let all = (0..n)
            .map(|_| Receiver::start(runtime, status))
            .collect::<BenchResult<Vec<_>>>()?;
        Ok(Receivers { all })
    }

    /// The URLs, by webhook index.
    pub fn urls(&self) -> Vec<String> {
        self.all.iter().map(Receiver::url).collect()
    }

    /// Requests received so far, by every receiver.
    pub fn count(&self) -> u64 {
        self.all
            .iter()
            .map(|r| r.log.count.load(Ordering::Acquire))
            .sum()
    }

    /// Requests whose body carried no recognisable event id.
    pub fn unidentified(&self) -> u64 {
        self.all
            .iter()
            .map(|r| r.log.unidentified.load(Ordering::Relaxed))
            .sum()
    }

    /// Forgets everything recorded so far.
    pub fn clear(&self) {
        for r in &self.all {
            r.log
                .arrivals
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
            r.log.count.store(0, Ordering::Release);
            r.log.unidentified.store(0, Ordering::Relaxed);
        }
    }

    /// Waits until at least `expected` requests arrived; `false` if `timeout` passed first.
    pub async fn wait_for(&self, expected: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.count() >= expected {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Takes the arrivals recorded so far: per receiver, (event number, arrival ns).
    pub fn take(&self) -> Vec<Vec<(u32, u64)>> {
        self.all
            .iter()
            .map(|r| {
                std::mem::take(
                    &mut *r
                        .log
                        .arrivals
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::event_number;

    #[test]
    fn event_numbers_come_from_the_leading_id() {
        assert_eq!(
            event_number(br#"{"id":"evt_bench_42","type":"x"}"#),
            Some(42)
        );
        assert_eq!(event_number(br#"{"type":"x","id":"evt_bench_42"}"#), None);
        assert_eq!(event_number(br#"{"id":"evt_bench_x"}"#), None);
        assert_eq!(event_number(br#"{"id":"evt_bench_42"#), None);
        assert_eq!(event_number(b""), None);
    }
}
