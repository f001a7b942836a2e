//! The dispatcher: hands started attempts to the transport, each in its own task, and brings
//! their outcomes back to the actor over a bounded channel. It never waits on the network.

use super::targets::{Target, Targets};
use crate::bodies::{Bodies, Body, BodyKey, BodyRead};
use crate::clock::Clock;
use crate::secrets::SecretBox;
use crate::transport::{OutgoingRequest, Sent, Transport, USER_AGENT_VALUE};
use bytes::Bytes;
use hallway_domain::{
    signature, AttemptDetail, AttemptError, DeliveryId, DurationMs, Event, EventId, Outcome,
    PreviousSecret, SealedSecret, SignatureScheme, State, WebhookId,
};
use hallway_store::EventStore;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{error, Instrument};

/// What a send reports back.
pub(crate) struct Report {
    pub(crate) delivery_id: DeliveryId,
    pub(crate) attempt: u32,
    pub(crate) outcome: Outcome,
    /// What was sent and received, for history.
    pub(crate) detail: Option<Arc<AttemptDetail>>,
    pub(crate) body_key: BodyKey,
}

/// See the module documentation.
pub(crate) struct Dispatcher {
    transport: Arc<dyn Transport>,
    secrets: Arc<SecretBox>,
    clock: Arc<dyn Clock>,
    store: Arc<dyn EventStore>,
    max_in_flight: usize,
    /// Each webhook's secrets as sealed and opened: opening (AES-GCM) once per rotation, not
    /// once per attempt.
    opened: HashMap<WebhookId, Opened>,
    /// Each webhook's URL and signing as the durable log has them.
    targets: Targets,
    reports_tx: mpsc::Sender<Report>,
    reports_rx: mpsc::Receiver<Report>,
}

/// Room in the reports channel: each send task reports once, and the domain keeps at most
/// `max_in_flight` attempts open, so twice that covers attempts whose deadline passed while
/// their task still runs and those resumed at startup past a lowered limit. A send therefore
/// does not wait for room in practice; were it to, it would wait (not fail), and the actor,
/// which always takes reports, makes the room.
fn reports_capacity(max_in_flight: usize) -> usize {
    max_in_flight.saturating_mul(2).max(64)
}

/// An attempt that could not be sent: closed at once rather than holding an in-flight slot
/// until its deadline; it fails and retries on schedule. `why` says so in history.
fn unsent(error: AttemptError, why: &str) -> Sent {
    Sent::failed(error, DurationMs(0), format!("not sent: {why}"))
}

impl Dispatcher {
    /// A dispatcher sending through `transport`, at most `max_in_flight` attempts at once, to
    /// the webhooks of `state` (which must be exactly its log).
    pub(crate) fn new(
        state: &State,
        transport: Arc<dyn Transport>,
        secrets: Arc<SecretBox>,
        clock: Arc<dyn Clock>,
        store: Arc<dyn EventStore>,
        max_in_flight: usize,
    ) -> Self {
        let (reports_tx, reports_rx) = mpsc::channel(reports_capacity(max_in_flight));
        Dispatcher {
            transport,
            secrets,
            clock,
            store,
            max_in_flight,
            opened: HashMap::new(),
            targets: Targets::of(state),
            reports_tx,
            reports_rx,
        }
    }

    /// Learns the webhooks' URLs and secrets a batch changed, once it is durable.
    pub(crate) fn learn(&mut self, events: &[Event]) {
        self.targets.learn(events);
    }

    /// How many more attempts may start, with `in_flight` open.
    pub(crate) fn room(&self, in_flight: usize) -> usize {
        self.max_in_flight.saturating_sub(in_flight)
    }

    /// The next report (never `None` while the dispatcher lives: it holds a sender).
    pub(crate) async fn recv(&mut self) -> Option<Report> {
        self.reports_rx.recv().await
    }

    /// A report already waiting, if any.
    pub(crate) fn try_recv(&mut self) -> Option<Report> {
        self.reports_rx.try_recv().ok()
    }

    /// Hands one started (and logged) attempt to the transport, to the URL and signed with the
    /// secret its webhook has in the durable log (the state may hold later, unlogged changes).
    /// An attempt that cannot be sent is reported back at once.
    pub(crate) fn dispatch(
        &mut self,
        state: &State,
        bodies: &mut Bodies,
        delivery_id: &DeliveryId,
        attempt: u32,
    ) -> Option<Report> {
        let d = state.delivery(delivery_id)?;
        let key: BodyKey = (d.account_id.clone(), d.event_id.clone());
        let report = |sent: Sent| Report {
            delivery_id: delivery_id.clone(),
            attempt,
            outcome: sent.outcome,
            detail: Some(Arc::new(sent.detail)),
            body_key: key.clone(),
        };
        let Some(target) = self.targets.get(&d.webhook_id) else {
            // Deleted in a durable batch before this one's attempts went out.
            return Some(report(unsent(
                AttemptError::Connect,
                "the webhook was deleted",
            )));
        };
        let url = target.url.clone();
        let scheme = target.scheme;
        let Some(opened) = self.open_secrets(&d.webhook_id) else {
            return Some(report(unsent(
                AttemptError::InvalidResponse,
                "the webhook's secret does not open with the master key",
            )));
        };
        let signing = Signing {
            scheme,
            event_id: d.event_id.clone(),
            current: opened.current.1.clone(),
            previous: opened.previous.clone(),
        };
        let body = bodies.checkout(&key, attempt == 1);
        let timeout = Duration::from_millis(state.policy().attempt_timeout.0);
        let template = Report {
            delivery_id: delivery_id.clone(),
            attempt,
            outcome: Outcome::Error {
                error: AttemptError::Timeout,
                duration: DurationMs(0),
            },
            detail: None,
            body_key: key.clone(),
        };
        let span = tracing::debug_span!("attempt", delivery = %delivery_id, attempt);
        let send = Send {
            transport: self.transport.clone(),
            clock: self.clock.clone(),
            // Only a send that reads its body holds the store: one that hangs must not keep
            // the data directory open after the engine stops.
            store: matches!(body, Body::Read(_)).then(|| self.store.clone()),
            reports: self.reports_tx.clone(),
        };
        tokio::spawn(
            send.run(body, url, signing, timeout, template)
                .instrument(span),
        );
        None
    }

    /// A logged webhook's secrets opened, from the cache while they are unchanged. `None`
    /// (logged) if the current one does not open; a previous one that does not open signs
    /// nothing.
    fn open_secrets(&mut self, webhook: &WebhookId) -> Option<&Opened> {
        let target = self.targets.get(webhook)?;
        if !self.opened.get(webhook).is_some_and(|o| o.matches(target)) {
            let Some((plain, _)) = self.secrets.open(&target.secret) else {
                error!(%webhook, "webhook secret does not open with the master key");
                return None;
            };
            let previous = target.previous.as_ref().and_then(|p| {
                let opened = self.secrets.open(&p.secret);
                if opened.is_none() {
                    error!(%webhook, "previous webhook secret does not open with the master key");
                }
                opened.map(|(plain, _)| (p.clone(), Arc::from(plain)))
            });
            let opened = Opened {
                current: (target.secret.clone(), Arc::from(plain)),
                previous,
            };
            if self.opened.len() > self.targets.len() {
                // Deleted webhooks' entries: start again rather than track deletions.
                self.opened.clear();
            }
            self.opened.insert(webhook.clone(), opened);
        }
        self.opened.get(webhook)
    }
}

/// A webhook's secrets, sealed as the log holds them and opened.
struct Opened {
    current: (SealedSecret, Arc<str>),
    previous: Option<(PreviousSecret, Arc<str>)>,
}

impl Opened {
    /// Whether these are the webhook's secrets now (no rotation or reseal since).
    fn matches(&self, t: &Target) -> bool {
        self.current.0 == t.secret && self.previous.as_ref().map(|(p, _)| p) == t.previous.as_ref()
    }
}

/// How an attempt is signed: its scheme, the event id its headers carry, and the secrets.
struct Signing {
    scheme: SignatureScheme,
    event_id: EventId,
    current: Arc<str>,
    /// The previous secret, while a rotation's grace may still be running; whether it signs
    /// is decided at the send's time.
    previous: Option<(PreviousSecret, Arc<str>)>,
}

/// What a send task needs besides its attempt.
struct Send {
    transport: Arc<dyn Transport>,
    clock: Arc<dyn Clock>,
    store: Option<Arc<dyn EventStore>>,
    reports: mpsc::Sender<Report>,
}

impl Send {
    async fn run(
        mut self,
        body: Body,
        url: String,
        signing: Signing,
        timeout: Duration,
        template: Report,
    ) {
        // A body not in memory is read here, off the actor: under a deep backlog many are,
        // and the actor is everyone's critical path.
        let body = match body {
            Body::Ready(body) => body,
            Body::Read(read) => match read_body(self.store.take(), read, &template).await {
                Some(body) => body,
                None => {
                    // Without its body the attempt cannot be sent; it fails and retries on
                    // schedule.
                    let sent = unsent(
                        AttemptError::InvalidResponse,
                        "the event's body is no longer stored",
                    );
                    self.report(template, sent, Vec::new()).await;
                    return;
                }
            },
        };
        let now = self.clock.now();
        // The grace ends at a time the log holds; an attempt sent from then on carries the
        // current secret's signature alone.
        let previous = signing
            .previous
            .as_ref()
            .filter(|(p, _)| p.signs_at(now))
            .map(|(_, plain)| &**plain);
        let headers = match signature::headers(
            signing.scheme,
            signing.event_id.as_str(),
            &signing.current,
            previous,
            now.as_unix_seconds(),
            &body,
        ) {
            Ok(headers) => headers,
            Err(e) => {
                // Engine-made secrets are base64; one that is not cannot sign this scheme.
                error!(error = %e, "webhook secret cannot sign its scheme");
                let sent = unsent(AttemptError::InvalidResponse, &e.to_string());
                self.report(template, sent, Vec::new()).await;
                return;
            }
        };
        // What history shows as sent: the transport's two headers, then these.
        let mut sent_headers = Vec::with_capacity(headers.len() + 2);
        sent_headers.push(("content-type".to_owned(), "application/json".to_owned()));
        sent_headers.push(("user-agent".to_owned(), USER_AGENT_VALUE.to_owned()));
        sent_headers.extend(
            headers
                .iter()
                .map(|(name, value)| (name.to_ascii_lowercase(), value.clone())),
        );
        let request = OutgoingRequest { url, body, headers };
        let sent = self.transport.send(request, timeout).await;
        self.report(template, sent, sent_headers).await;
    }

    /// Reports what an attempt came to, with the request headers it sent.
    async fn report(self, template: Report, sent: Sent, request_headers: Vec<(String, String)>) {
        let mut detail = sent.detail;
        detail.request_headers = request_headers;
        // The actor may be gone (shut down, or aborted as in a crash); the log has the start.
        let _ = self
            .reports
            .send(Report {
                outcome: sent.outcome,
                detail: Some(Arc::new(detail)),
                ..template
            })
            .await;
    }
}

/// Reads a body through the shared read, and lets go of the store before the send.
async fn read_body(
    store: Option<Arc<dyn EventStore>>,
    read: Arc<BodyRead>,
    template: &Report,
) -> Option<Bytes> {
    // Read in place: a payload read is a lookup nearly always served from the store's
    // cache, cheaper than a hop to the blocking pool.
    let (account, event) = &template.body_key;
    let delivery = &template.delivery_id;
    let store = store?;
    read.get_or_init(|| async {
        match store.payload(account, event) {
            Ok(p) => p.map(|p| Bytes::from(p.as_bytes().to_vec())),
            Err(e) => {
                error!(error = %e, %delivery, "payload unreadable");
                None
            }
        }
    })
    .await
    .clone()
}
