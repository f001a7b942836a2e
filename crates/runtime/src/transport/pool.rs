//! The attempts' connections: HTTP/1.1 connections kept idle per origin, each driven by the
//! attempt that holds it. An attempt reads and writes its connection in its own task, so a
//! request costs no task of its own and no hand-off between tasks, which a client that runs
//! every connection as a spawned task pays on each request and each answer.

use super::GuardedResolver;
use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1;
use hyper::http::uri::{Authority, Scheme};
use hyper::{Request, Response, Uri};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::error::Error as StdError;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;
use tokio::time::Instant;
use tower_service::Service;

/// How a connection is made: DNS through [`GuardedResolver`], TCP, then TLS for `https`.
pub(super) type Connector = HttpsConnector<HttpConnector<GuardedResolver>>;

type Io = MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>;

type Driver = http1::Connection<Io, Full<Bytes>>;

/// A connection error from the connector (DNS, TCP, TLS) or from hyper's handshake.
pub(super) type ConnectError = Box<dyn StdError + Send + Sync>;

/// How long a connection may sit idle before it is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Idle connections kept per origin; the per-webhook in-flight limit keeps the number of
/// busy ones near this too.
const MAX_IDLE_PER_ORIGIN: usize = 256;

/// How often idle connections past [`IDLE_TIMEOUT`] are looked for when no attempt is.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Connections are shared by every URL with the same scheme, host and port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Origin {
    scheme: Scheme,
    authority: Authority,
}

impl Origin {
    /// The origin of an absolute URI, if it has one.
    pub(super) fn of(uri: &Uri) -> Option<Origin> {
        Some(Origin {
            scheme: uri.scheme()?.clone(),
            authority: uri.authority()?.clone(),
        })
    }
}

/// One HTTP/1.1 connection: the handle requests go through, and the connection itself,
/// which does its reading and writing whenever the attempt holding it is polled.
pub(super) struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
    /// The connection, until it finishes (closed by either side, or failed). Dropping it
    /// then hands back any request still queued on it, unsent.
    driver: Option<Driver>,
    /// It came from the pool rather than a fresh connect, so it may have been closed by the
    /// receiver while idle.
    reused: bool,
    /// Tokio's clock, so that a test can pause it past the idle timeout.
    idle_since: Instant,
}

/// Why a request did not get an answer.
pub(super) enum SendError {
    /// The connection was closed before the request was written: it can go on another.
    Unsent(Box<Request<Full<Bytes>>>, hyper::Error),
    /// Written (perhaps in part), or failed on the way back.
    Failed(hyper::Error),
}

impl Conn {
    /// Whether the connection came from the pool.
    pub(super) fn reused(&self) -> bool {
        self.reused
    }

    /// Sends `request` and waits for the answer's head.
    pub(super) async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<hyper::body::Incoming>, SendError> {
        let sender = &mut self.sender;
        let work = async move {
            if let Err(e) = poll_fn(|cx| sender.poll_ready(cx)).await {
                return Err(SendError::Unsent(Box::new(request), e));
            }
            sender
                .try_send_request(request)
                .await
                .map_err(|mut e| match e.take_message() {
                    Some(request) => SendError::Unsent(Box::new(request), e.into_error()),
                    None => SendError::Failed(e.into_error()),
                })
        };
        drive(&mut self.driver, work).await
    }

    /// Runs `work` (reading the answer's body) while the connection does its I/O.
    pub(super) async fn with<F: Future>(&mut self, work: F) -> F::Output {
        drive(&mut self.driver, work).await
    }
}

/// Polls `work` to its end, and the connection's driver beside it until the driver finishes:
/// the driver moves the bytes that `work` waits for, and both wake this one task. The driver
/// goes first, so a receiver's close that arrived while the connection was idle is seen
/// before a request is handed to it (which then goes back unsent).
async fn drive<F: Future>(driver: &mut Option<Driver>, work: F) -> F::Output {
    let mut work = pin!(work);
    poll_fn(|cx| {
        if let Some(d) = driver {
            if std::pin::Pin::new(d).poll(cx).is_ready() {
                // Closed or failed: any error has gone to the request in flight, and a
                // request queued but not written comes back unsent when the driver drops.
                *driver = None;
            }
        }
        work.as_mut().poll(cx)
    })
    .await
}

/// Idle connections by origin, and how new ones are made.
pub(super) struct Pool {
    shared: Arc<Shared>,
    connector: Connector,
    builder: http1::Builder,
}

struct Shared {
    idle: Mutex<HashMap<Origin, Vec<Conn>>>,
    /// The task that closes connections idle too long, started with the first check-in
    /// (inside the runtime).
    sweeper: OnceLock<()>,
}

impl Pool {
    /// A pool that connects through `connector`, reading at most `max_buf_size` bytes of an
    /// answer's head at once.
    pub(super) fn new(connector: Connector, max_buf_size: usize) -> Pool {
        let mut builder = http1::Builder::new();
        builder.max_buf_size(max_buf_size);
        Pool {
            shared: Arc::new(Shared {
                idle: Mutex::default(),
                sweeper: OnceLock::new(),
            }),
            connector,
            builder,
        }
    }

    /// An idle connection to `origin` that has not been idle too long, if there is one.
    pub(super) fn checkout(&self, origin: &Origin) -> Option<Conn> {
        let mut idle = self.shared.lock();
        let list = idle.get_mut(origin)?;
        let mut conn = list.pop()?;
        if conn.idle_since.elapsed() >= IDLE_TIMEOUT {
            // The rest went idle earlier still.
            let stale = std::mem::take(list);
            drop(idle);
            drop((conn, stale));
            return None;
        }
        conn.reused = true;
        Some(conn)
    }

    /// A new connection to `uri`'s origin.
    pub(super) async fn connect(&self, uri: &Uri) -> Result<Conn, ConnectError> {
        let mut connector = self.connector.clone();
        poll_fn(|cx| connector.poll_ready(cx)).await?;
        let io = connector.call(uri.clone()).await?;
        let (sender, driver) = self.builder.handshake(io).await?;
        Ok(Conn {
            sender,
            driver: Some(driver),
            reused: false,
            idle_since: Instant::now(),
        })
    }

    /// Keeps `conn` for the next request to `origin`: its last answer was read to the end.
    pub(super) fn checkin(&self, origin: Origin, mut conn: Conn) {
        if conn.driver.is_none() {
            return;
        }
        self.shared.sweeper.get_or_init(|| {
            tokio::spawn(sweep(Arc::downgrade(&self.shared)));
        });
        conn.idle_since = Instant::now();
        let mut idle = self.shared.lock();
        let list = idle.entry(origin).or_default();
        if list.len() < MAX_IDLE_PER_ORIGIN {
            list.push(conn);
        } else {
            drop(idle);
            drop(conn);
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, HashMap<Origin, Vec<Conn>>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Closes connections idle longer than [`IDLE_TIMEOUT`] every [`SWEEP_EVERY`], until the
/// pool is dropped: without it a quiet origin's connections would stay open.
async fn sweep(shared: Weak<Shared>) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let mut stale = Vec::new();
        {
            let mut idle = shared.lock();
            idle.retain(|_, list| {
                // Oldest first: a list is pushed to as connections go idle.
                let fresh = list.partition_point(|c| c.idle_since.elapsed() >= IDLE_TIMEOUT);
                stale.extend(list.drain(..fresh));
                !list.is_empty()
            });
        }
        drop(stale);
    }
}
