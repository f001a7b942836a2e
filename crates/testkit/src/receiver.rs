//! A local HTTP(S) receiver on 127.0.0.1 with scripted replies and recorded requests.

use crate::tls::TestCa;
use crate::wait::DEADLINE;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::CertificateDer;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// What the receiver does with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Answer this status at once (3xx with `Location: /redirected`).
    Status(u16),
    /// Answer this status after a pause.
    After(u16, Duration),
    /// Answer this status with this body, as text, and an `x-request-number` header (the
    /// request's number from 0).
    WithBody(u16, &'static str),
    /// Never answer.
    Hang,
}

/// One request as the receiver saw it.
#[derive(Clone, Debug)]
pub struct Received {
    /// The method.
    pub method: String,
    /// The path.
    pub path: String,
    /// `X-Hallway-Signature`.
    pub signature: String,
    /// `User-Agent`.
    pub user_agent: String,
    /// `Content-Type`.
    pub content_type: String,
    /// Every header, as received (names in lowercase).
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Bytes,
    /// What the receiver answered.
    pub reply: Reply,
}

impl Received {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the delivered body is JSON")
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8(self.body.to_vec()).expect("the delivered body is UTF-8")
    }

    /// The values of the header `name` (any case), in order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The one value of the header `name`; panics when it is missing or repeated.
    #[track_caller]
    pub fn header(&self, name: &str) -> &str {
        match self.header_values(name)[..] {
            [one] => one,
            ref other => panic!("expected one {name} header, got {other:?}"),
        }
    }
}

/// Decides the reply to the n-th request (from 0), given that request.
type Script = Box<dyn FnMut(usize, &Received) -> Reply + Send>;

/// A local receiver: HTTPS with a `localhost` certificate from [`TestCa::shared`], or HTTP.
pub struct Receiver {
    /// Its port.
    pub port: u16,
    /// Whether it speaks HTTPS.
    pub tls: bool,
    /// The CA to trust for it (HTTPS only).
    pub ca: Option<CertificateDer<'static>>,
    received: Arc<Mutex<Vec<Received>>>,
    notify: Arc<Notify>,
    script: Arc<Mutex<Script>>,
}

impl Receiver {
    /// An HTTPS receiver replying `script(index of the request)`.
    pub async fn https(mut script: impl FnMut(usize) -> Reply + Send + 'static) -> Receiver {
        Self::start(true, Box::new(move |n, _: &Received| script(n))).await
    }

    /// A plain HTTP receiver replying `script(index of the request)`.
    pub async fn http(mut script: impl FnMut(usize) -> Reply + Send + 'static) -> Receiver {
        Self::start(false, Box::new(move |n, _: &Received| script(n))).await
    }

    /// A plain HTTP receiver replying `answer(the request)`.
    pub async fn http_answering(
        mut answer: impl FnMut(&Received) -> Reply + Send + 'static,
    ) -> Receiver {
        Self::start(false, Box::new(move |_, r: &Received| answer(r))).await
    }

    /// An HTTPS receiver answering `status` to everything.
    pub async fn status(status: u16) -> Receiver {
        Self::https(move |_| Reply::Status(status)).await
    }

    /// An HTTPS receiver replying `script(index of the request)` (same as [`Receiver::https`]).
    pub async fn scripted(script: impl FnMut(usize) -> Reply + Send + 'static) -> Receiver {
        Self::https(script).await
    }

    async fn start(tls: bool, script: Script) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let port = listener.local_addr().expect("receiver addr").port();
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let notify = Arc::new(Notify::new());
        let script = Arc::new(Mutex::new(script));
        let ca = tls.then(TestCa::shared);
        let acceptor = ca.map(|ca| ca.acceptor());
        let (r, n, s) = (received.clone(), notify.clone(), script.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (r, n, s, acceptor) = (r.clone(), n.clone(), s.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (r, n, s) = (r.clone(), n.clone(), s.clone());
                        async move { serve(req, &r, &n, &s).await }
                    });
                    let builder = hyper::server::conn::http1::Builder::new();
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
                        }
                    }
                });
            }
        });
        Receiver {
            port,
            tls,
            ca: ca.map(TestCa::der),
            received,
            notify,
            script,
        }
    }

    /// The URL to register (`localhost`, so the certificate's name matches).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://localhost:{}/hook", self.port)
    }

    /// Replaces the script.
    pub fn set_script(&self, mut script: impl FnMut(usize) -> Reply + Send + 'static) {
        *self.script.lock().expect("script lock") = Box::new(move |n, _: &Received| script(n));
    }

    /// Answers `status` from now on.
    pub fn set_status(&self, status: u16) {
        self.set_script(move |_| Reply::Status(status));
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("received lock").clone()
    }

    /// Waits (up to [`DEADLINE`]) until at least `n` requests arrived; returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let notified = self.notify.notified();
            let all = self.received();
            if all.len() >= n {
                return all;
            }
            if Instant::now() > deadline {
                panic!("expected {n} requests at the receiver, got {}", all.len());
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
        }
    }
}

/// Records one request, then replies as the script says.
async fn serve(
    req: Request<hyper::body::Incoming>,
    received: &Mutex<Vec<Received>>,
    notify: &Notify,
    script: &Mutex<Script>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (method, path) = (req.method().to_string(), req.uri().path().to_owned());
    let headers = req
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let (signature, user_agent, content_type) = (
        header("x-hallway-signature"),
        header("user-agent"),
        header("content-type"),
    );
    let body = req.into_body().collect().await?.to_bytes();
    let mut request = Received {
        method,
        path,
        signature,
        user_agent,
        content_type,
        headers,
        body,
        reply: Reply::Hang,
    };
    let (number, reply) = {
        let mut all = received.lock().expect("received lock");
        let number = all.len();
        request.reply = (script.lock().expect("script lock"))(number, &request);
        all.push(request.clone());
        (number, request.reply)
    };
    notify.notify_waiters();
    let (code, body) = match reply {
        Reply::Status(code) => (code, "ok"),
        Reply::After(code, pause) => {
            tokio::time::sleep(pause).await;
            (code, "ok")
        }
        Reply::WithBody(code, body) => (code, body),
        Reply::Hang => std::future::pending().await,
    };
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = hyper::StatusCode::from_u16(code).expect("a valid status code");
    if let Reply::WithBody(..) = reply {
        let h = resp.headers_mut();
        h.insert(
            "content-type",
            hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert(
            "x-request-number",
            hyper::header::HeaderValue::from(number as u64),
        );
    }
    if (300..400).contains(&code) {
        resp.headers_mut().insert(
            "location",
            hyper::header::HeaderValue::from_static("/redirected"),
        );
    }
    Ok(resp)
}
