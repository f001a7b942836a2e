//! Sending one signed attempt: the `Transport` trait and its default, a pooled hyper client
//! over rustls (ring) that refuses private targets after DNS and follows no redirects.

use bytes::Bytes;
use hallway_domain::attempt::{MAX_RESPONSE_BODY_BYTES, MAX_RESPONSE_HEADER_BYTES};
use hallway_domain::target::{check_host, is_refused_ip, read_url};
use hallway_domain::{AttemptDetail, AttemptError, DurationMs, Outcome};
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE, USER_AGENT};
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::CertificateDer;
use std::collections::HashMap;
use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The `User-Agent` every attempt carries.
pub const USER_AGENT_VALUE: &str = "Hallway-Webhooks/1.0";

/// A boxed future of what an attempt came to.
pub type SendFuture = Pin<Box<dyn Future<Output = Sent> + Send>>;

/// What one attempt came to: the outcome the domain judges, and what history keeps of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Sent {
    /// The classified outcome.
    pub outcome: Outcome,
    /// The response's headers and the start of its body, or the failure in words. The
    /// dispatcher adds the request's headers.
    pub detail: AttemptDetail,
}

impl Sent {
    /// An outcome with nothing more known about it (a transport that sees no more).
    pub fn bare(outcome: Outcome) -> Sent {
        Sent {
            outcome,
            detail: AttemptDetail::default(),
        }
    }

    /// A failure without a usable response, described in `message`.
    pub fn failed(error: AttemptError, duration: DurationMs, message: String) -> Sent {
        Sent {
            outcome: Outcome::Error { error, duration },
            detail: AttemptDetail {
                error_message: Some(message),
                ..AttemptDetail::default()
            }
            .bounded(),
        }
    }
}

/// One attempt, ready to go: the body is the same bytes on every attempt of a delivery.
#[derive(Clone, Debug)]
pub struct OutgoingRequest {
    /// The endpoint.
    pub url: String,
    /// The exact JSON body.
    pub body: Bytes,
    /// The headers that sign and identify the attempt, computed at send time
    /// ([`hallway_domain::signature::headers`]); `Content-Type` and `User-Agent` are the
    /// transport's.
    pub headers: Vec<(&'static str, String)>,
}

/// How attempts leave the engine. Tests, simulations and hosts with special egress plug in
/// their own; the default is [`HttpsTransport`].
pub trait Transport: Send + Sync + 'static {
    /// Sends one attempt and classifies what happened (with what it saw, for history); must
    /// finish within about `timeout`.
    fn send(&self, request: OutgoingRequest, timeout: Duration) -> SendFuture;
}

/// Options of the default transport.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TransportConfig {
    /// Connect to loopback, private and link-local addresses too.
    pub allow_private_targets: bool,
    /// Extra trusted root certificates (DER), for tests and private CAs.
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// Skip the system's root store (tests on machines with odd stores).
    pub skip_native_roots: bool,
    /// Most bytes of a response body read before the connection is dropped.
    pub response_body_limit: usize,
}

/// A target refused after DNS: it resolved to a private or reserved address.
#[derive(Debug, thiserror::Error)]
#[error("target resolves to refused address {0}")]
pub struct BlockedTarget(pub IpAddr);

/// DNS through the system resolver, refusing names that resolve to any refused address.
/// Checking here, at connect time, means DNS rebinding cannot get around it.
#[derive(Clone, Debug)]
pub struct GuardedResolver {
    allow_private: bool,
}

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, io::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            if !allow_private {
                if let Some(bad) = addrs.iter().find(|a| is_refused_ip(a.ip())) {
                    return Err(io::Error::other(BlockedTarget(bad.ip())));
                }
            }
            Ok(addrs.into_iter())
        })
    }
}

type HttpsClient =
    Client<hyper_rustls::HttpsConnector<HttpConnector<GuardedResolver>>, Full<Bytes>>;

/// The default transport: one pooled HTTP/1.1 client over rustls with the ring provider,
/// trusting webpki roots, the system's roots and any extra roots given.
#[derive(Clone)]
pub struct HttpsTransport {
    client: HttpsClient,
    allow_private_targets: bool,
    response_body_limit: usize,
    /// Each webhook URL as read for sending (or why it cannot be sent): the same few URLs
    /// come back on every attempt, and reading one cost a URL parse and several allocations.
    targets: Arc<std::sync::Mutex<HashMap<String, Target>>>,
}

/// A URL as read for sending, or why it cannot be sent (with the message history shows).
type Target = Result<hyper::Uri, (AttemptError, String)>;

/// URLs [`HttpsTransport`] remembers before it starts again (webhooks are few per account).
const TARGETS_MAX: usize = 4096;

impl HttpsTransport {
    /// Builds the client. Fails only if the TLS configuration cannot be built.
    pub fn new(config: TransportConfig) -> Result<Self, rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if !config.skip_native_roots {
            // Unreadable system certificates are skipped; webpki roots remain.
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
        for cert in config.extra_roots {
            roots.add(cert)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new_with_resolver(GuardedResolver {
            allow_private: config.allow_private_targets,
        });
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            // The timer runs the sweep that closes connections idle past the timeout
            // (checked every 60 s, so 60-120 s after going idle); without one they are only
            // dropped when a later request finds them expired.
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            // Receivers answer small heads; a small read buffer keeps hundreds of pooled
            // connections cheap (hyper's default may grow each one to 400 KB).
            .http1_max_buf_size(16 * 1024)
            .build(connector);
        Ok(HttpsTransport {
            client,
            targets: Arc::default(),
            allow_private_targets: config.allow_private_targets,
            response_body_limit: if config.response_body_limit == 0 {
                16 * 1024
            } else {
                config.response_body_limit
            },
        })
    }

    /// The URI an attempt to `url` is sent to, or why none can be (with the message the
    /// attempt's detail shows).
    fn target(&self, url: &str) -> Target {
        let mut targets = self
            .targets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(known) = targets.get(url) {
            return known.clone();
        }
        let target = Self::read_target(url, self.allow_private_targets);
        if targets.len() >= TARGETS_MAX {
            targets.clear();
        }
        targets.insert(url.to_owned(), target.clone());
        target
    }

    fn read_target(url: &str, allow_private_targets: bool) -> Target {
        // The URL is read the way the create and update checks read it (the `url` crate),
        // so a numeric or IDN host is judged and sent in its canonical form.
        let target = read_url(url).map_err(|e| {
            (
                AttemptError::Connect,
                format!("the URL cannot be read: {e}"),
            )
        })?;
        // Literal addresses skip the resolver, so they are checked here.
        if check_host(&target.host, allow_private_targets).is_err() {
            return Err((
                AttemptError::BlockedTarget,
                format!(
                    "{} is a refused address (loopback, private or reserved)",
                    target.host
                ),
            ));
        }
        target.normalized.parse().map_err(|e| {
            (
                AttemptError::Connect,
                format!("the URL cannot be sent: {e}"),
            )
        })
    }

    async fn attempt(self, request: OutgoingRequest, timeout: Duration) -> Sent {
        let started = Instant::now();
        let elapsed = || DurationMs(started.elapsed().as_millis() as u64);
        let fail = |error, message: String| Sent::failed(error, elapsed(), message);
        let uri = match self.target(&request.url) {
            Ok(uri) => uri,
            Err((error, message)) => return fail(error, message),
        };
        let deadline = tokio::time::Instant::from_std(started + timeout);
        let timed_out = || format!("no response within {} ms", timeout.as_millis());
        // One timer for the whole attempt, the answer's head and then its body: a timer
        // registration per phase was a measurable share of an attempt's cost.
        let expiry = tokio::time::sleep_until(deadline);
        tokio::pin!(expiry);
        let response = loop {
            let mut req = hyper::Request::new(Full::new(request.body.clone()));
            *req.method_mut() = hyper::Method::POST;
            *req.uri_mut() = uri.clone();
            if let Err(message) = put_headers(req.headers_mut(), &request.headers) {
                return fail(AttemptError::Connect, message);
            }
            // A receiver may send 1xx heads before its answer; past a few it is only keeping
            // the attempt (and a core parsing them) busy until the timeout.
            let informational = Arc::new(Informational::default());
            let counter = informational.clone();
            hyper::ext::on_informational(&mut req, move |_| counter.saw_one());
            // Biased, the answer first: one that is already in when the deadline passes is
            // taken, as it was before the deadline.
            let sent = tokio::select! {
                biased;
                r = self.client.request(req) => r,
                _ = &mut expiry => return fail(AttemptError::Timeout, timed_out()),
                _ = informational.too_many.notified() => {
                    return fail(
                        AttemptError::InvalidResponse,
                        format!("more than {MAX_INFORMATIONAL} informational (1xx) responses"),
                    );
                }
            };
            match sent {
                // Out of descriptors is the engine's trouble, not the receiver's: wait for one
                // within the attempt's time rather than record a connect failure.
                Err(e) if out_of_descriptors(&e) => {
                    tracing::warn!("out of file descriptors for an attempt; waiting for one");
                    let pause = tokio::time::Instant::now() + Duration::from_millis(100);
                    if pause >= deadline {
                        return fail(AttemptError::Timeout, timed_out());
                    }
                    tokio::time::sleep_until(pause).await;
                }
                Err(e) => return fail(classify(&e), describe(&e)),
                Ok(r) => break r,
            }
        };
        let duration = elapsed();
        let status = response.status().as_u16();
        let mut detail = AttemptDetail {
            response_headers: response_headers(response.headers()),
            ..AttemptDetail::default()
        };
        // Read a bounded prefix so small answers leave the connection reusable; a body that
        // is larger or slower than allowed is dropped with its connection. History keeps its
        // first bytes.
        let limit = self.response_body_limit;
        let mut body = response.into_body();
        let mut kept: Vec<u8> = Vec::new();
        let mut read = 0usize;
        let read_body = async {
            loop {
                match body.frame().await {
                    None => return true,
                    Some(Err(_)) => return false,
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            let room = MAX_RESPONSE_BODY_BYTES.saturating_sub(kept.len());
                            kept.extend_from_slice(&data[..data.len().min(room)]);
                            read += data.len();
                            if read > limit {
                                return false;
                            }
                        }
                    }
                }
            }
        };
        let read_all = tokio::select! {
            biased;
            done = read_body => done,
            _ = &mut expiry => false,
        };
        detail.response_body_truncated = !read_all || read > kept.len();
        detail.response_body = String::from_utf8_lossy(&kept).into_owned();
        Sent {
            outcome: Outcome::Response { status, duration },
            detail: detail.bounded(),
        }
    }
}

/// The headers of every attempt: the transport's two, then the signing and identifying
/// ones the dispatcher computed; a name or value that is not valid (they never are) is
/// refused.
fn put_headers(
    headers: &mut hyper::HeaderMap,
    signed: &[(&'static str, String)],
) -> Result<(), String> {
    headers.reserve(signed.len() + 2);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    for (name, value) in signed {
        let invalid =
            |e: &dyn std::fmt::Display| format!("the request cannot be built: {name}: {e}");
        let parsed = HeaderName::from_bytes(name.as_bytes()).map_err(|e| invalid(&e))?;
        let value = HeaderValue::from_str(value).map_err(|e| invalid(&e))?;
        headers.append(parsed, value);
    }
    Ok(())
}

/// A response's headers for history: names lowercase, values as text, at most
/// [`MAX_RESPONSE_HEADER_BYTES`] of them.
fn response_headers(headers: &hyper::HeaderMap) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(headers.len());
    let mut used = 0;
    for (name, value) in headers {
        used += name.as_str().len() + value.len();
        if used > MAX_RESPONSE_HEADER_BYTES {
            break;
        }
        out.push((
            name.as_str().to_owned(),
            String::from_utf8_lossy(value.as_bytes()).into_owned(),
        ));
    }
    out
}

/// A client error in words: each distinct message of its source chain, outermost first.
fn describe(err: &hyper_util::client::legacy::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut src: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = src {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        src = match e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            // As in `classify`: descend into the error an io::Error wraps.
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    parts.join(": ")
}

impl Transport for HttpsTransport {
    fn send(&self, request: OutgoingRequest, timeout: Duration) -> SendFuture {
        Box::pin(self.clone().attempt(request, timeout))
    }
}

/// Informational (1xx) heads a response may have before its final head.
const MAX_INFORMATIONAL: usize = 8;

/// Counts an attempt's informational heads and says when there were too many.
#[derive(Default)]
struct Informational {
    seen: std::sync::atomic::AtomicUsize,
    too_many: tokio::sync::Notify,
}

impl Informational {
    fn saw_one(&self) {
        let seen = self.seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if seen > MAX_INFORMATIONAL {
            // notify_one keeps the permit if the attempt is not waiting yet.
            self.too_many.notify_one();
        }
    }
}

/// Whether a client error is the process running out of file descriptors (EMFILE, ENFILE).
fn out_of_descriptors(err: &hyper_util::client::legacy::Error) -> bool {
    let mut src: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = src {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if matches!(io.raw_os_error(), Some(code) if code == EMFILE || code == ENFILE) {
                return true;
            }
        }
        src = e.source();
    }
    false
}

/// "Too many open files" for the process and for the system, as Linux and the BSDs number them.
const EMFILE: i32 = 24;
const ENFILE: i32 = 23;

/// Maps a client error to the history's error classes by walking its source chain.
fn classify(err: &hyper_util::client::legacy::Error) -> AttemptError {
    let mut src: Option<&(dyn StdError + 'static)> = Some(err);
    let mut reset = false;
    while let Some(e) = src {
        if let Some(found) = classify_one(e) {
            return found;
        }
        src = match e.downcast_ref::<io::Error>() {
            Some(io) => {
                reset |= matches!(
                    io.kind(),
                    io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::BrokenPipe
                        | io::ErrorKind::ConnectionRefused
                );
                // `io::Error::source` skips the wrapped error itself (hyper-rustls nests the
                // rustls error two io::Errors deep), so descend into it explicitly.
                match io.get_ref() {
                    Some(inner) => Some(inner as &(dyn StdError + 'static)),
                    None => e.source(),
                }
            }
            None => e.source(),
        };
    }
    if err.is_connect() || reset {
        AttemptError::Connect
    } else {
        AttemptError::InvalidResponse
    }
}

fn classify_one(e: &(dyn StdError + 'static)) -> Option<AttemptError> {
    if e.downcast_ref::<BlockedTarget>().is_some() {
        Some(AttemptError::BlockedTarget)
    } else if e.downcast_ref::<rustls::Error>().is_some() {
        Some(AttemptError::Tls)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;
    use tower_service::Service;

    fn resolve(allow_private: bool, name: &str) -> io::Result<Vec<SocketAddr>> {
        let name = Name::from_str(name).map_err(io::Error::other)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            GuardedResolver { allow_private }
                .call(name)
                .await
                .map(Vec::from_iter)
        })
    }

    #[test]
    fn the_resolver_refuses_a_name_that_resolves_to_a_refused_address() {
        // `localhost` stands for any name whose DNS answer is private: the transport refuses
        // the name `localhost` before resolving, so only this test reaches the resolver's
        // per-address check with it.
        let err = resolve(false, "localhost").expect_err("refused");
        let blocked = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<BlockedTarget>())
            .expect("a BlockedTarget error");
        assert!(is_refused_ip(blocked.0), "{blocked}");
        let allowed = resolve(true, "localhost").expect("allowed");
        assert!(allowed.iter().all(|a| a.ip().is_loopback()), "{allowed:?}");
    }
}
