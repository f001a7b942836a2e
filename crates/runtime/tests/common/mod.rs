//! Shared test fixtures: a local HTTPS (or HTTP) receiver with scripted answers, and helpers
//! to open an engine on a temp dir with a manual clock.
#![allow(dead_code)]

use bytes::Bytes;
use hallway_domain::{AccountId, Plan, Policy, Timestamp, WebhookId};
use hallway_runtime::{Config, Engine, EngineHandle, ManualClock, NewWebhook, TransportConfig};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// The moment every test starts at.
pub const T0: Timestamp = Timestamp(1_768_059_000_000);

/// What the receiver does with one request.
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    /// Answer this status at once.
    Status(u16),
    /// Never answer.
    Hang,
}

/// One request as the receiver saw it.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub signature: String,
    pub user_agent: String,
    pub content_type: String,
    pub body: Bytes,
}

/// Decides the answer to the n-th request.
type Script = Box<dyn FnMut(usize) -> Answer + Send>;

/// A local receiver on 127.0.0.1.
pub struct Receiver {
    pub port: u16,
    pub tls: bool,
    pub ca: Option<CertificateDer<'static>>,
    received: Arc<Mutex<Vec<Received>>>,
    notify: Arc<Notify>,
    script: Arc<Mutex<Script>>,
}

impl Receiver {
    /// An HTTPS receiver with a certificate for `localhost`, signed by a fresh test CA.
    pub async fn https(script: impl FnMut(usize) -> Answer + Send + 'static) -> Receiver {
        Self::start(true, Box::new(script)).await
    }

    /// A plain HTTP receiver.
    pub async fn http(script: impl FnMut(usize) -> Answer + Send + 'static) -> Receiver {
        Self::start(false, Box::new(script)).await
    }

    async fn start(tls: bool, script: Script) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let notify = Arc::new(Notify::new());
        let script = Arc::new(Mutex::new(script));
        let (acceptor, ca) = if tls {
            let (acceptor, ca) = tls_acceptor();
            (Some(acceptor), Some(ca))
        } else {
            (None, None)
        };
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
                        async move {
                            let header = |name: &str| {
                                req.headers()
                                    .get(name)
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("")
                                    .to_owned()
                            };
                            let rec_head = (
                                req.uri().path().to_owned(),
                                header("x-hallway-signature"),
                                header("user-agent"),
                                header("content-type"),
                            );
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let index = {
                                let mut all = r.lock().unwrap();
                                all.push(Received {
                                    path: rec_head.0,
                                    signature: rec_head.1,
                                    user_agent: rec_head.2,
                                    content_type: rec_head.3,
                                    body,
                                });
                                all.len() - 1
                            };
                            n.notify_waiters();
                            let answer = (s.lock().unwrap())(index);
                            match answer {
                                Answer::Status(code) => {
                                    let mut resp =
                                        Response::new(Full::new(Bytes::from_static(b"ok")));
                                    *resp.status_mut() = hyper::StatusCode::from_u16(code).unwrap();
                                    if (300..400).contains(&code) {
                                        resp.headers_mut().insert(
                                            "location",
                                            hyper::header::HeaderValue::from_static("/redirected"),
                                        );
                                    }
                                    Ok::<_, hyper::Error>(resp)
                                }
                                Answer::Hang => {
                                    std::future::pending::<()>().await;
                                    unreachable!()
                                }
                            }
                        }
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
            ca,
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
    pub fn set_script(&self, script: impl FnMut(usize) -> Answer + Send + 'static) {
        *self.script.lock().unwrap() = Box::new(script);
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits (up to 10 s of real time) until at least `n` requests arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.notify.notified();
            let all = self.received();
            if all.len() >= n {
                return all;
            }
            if Instant::now() > deadline {
                panic!("expected {n} requests, got {}", all.len());
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
        }
    }
}

/// A TLS acceptor for `localhost` with a certificate from a fresh CA; returns the CA too.
fn tls_acceptor() -> (tokio_rustls::TlsAcceptor, CertificateDer<'static>) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "hallway test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .unwrap();
    (
        tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        ca.der().clone(),
    )
}

/// A policy for tests: private targets allowed (receivers are on loopback), given delays.
pub fn policy(delays_ms: &[u64]) -> Policy {
    Policy {
        retry_delays: delays_ms
            .iter()
            .map(|d| hallway_domain::DurationMs(*d))
            .collect(),
        allow_private_targets: true,
        ..Policy::default()
    }
}

/// A config with a manual clock at [`T0`], trusting `receiver`'s CA.
pub fn config(policy: Policy, clock: &ManualClock, receiver: &Receiver) -> Config {
    Config {
        policy,
        clock: Arc::new(clock.clone()),
        transport_config: TransportConfig {
            extra_roots: receiver.ca.iter().cloned().collect(),
            skip_native_roots: true,
            ..TransportConfig::default()
        },
        ..Config::default()
    }
}

/// Opens an engine, creates a Pro account `acc_1` and a webhook to `url`.
pub async fn engine_with_webhook(
    dir: &std::path::Path,
    config: Config,
    url: &str,
) -> (Engine, EngineHandle, WebhookId, String) {
    let engine = Engine::open(dir, config).await.unwrap();
    let h = engine.handle();
    h.create_account(&AccountId::from("acc_1"), "Acme Research", Plan::Pro)
        .await
        .unwrap();
    let (wh, secret) = h
        .create_webhook(
            &"acc_1".into(),
            NewWebhook {
                name: "Receiver".into(),
                url: url.to_owned(),
                description: None,
                events: vec![hallway_domain::SESSION_PROCESSING_COMPLETED.into()],
                project_ids: vec![],
            },
        )
        .await
        .unwrap();
    (engine, h, wh.id, secret.expose().to_owned())
}

/// A publish body like the spec's example.
pub fn event_body(id: &str) -> Vec<u8> {
    format!(
        r#"{{"type":"session.processing.completed","id":"{id}","project":{{"id":"prj_1","name":"Discovery","status":"active"}},"session":{{"id":"ses_1","respondent_name":"Jane Doe","duration_seconds":342}},"transcript":{{"id":"trx_1","full_text":"Interviewer: Hello","word_count":2}}}}"#
    )
    .into_bytes()
}

/// Polls `f` until it returns `Some` (up to 10 s of real time).
pub async fn eventually<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("condition not reached within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
