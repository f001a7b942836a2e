//! The dispatcher: hands started attempts to the transport and brings their outcomes back to
//! the actor over a bounded channel. It never waits on the network.
//!
//! Each webhook has a lane ([`super::lanes`]): at most the policy's `max_in_flight_per_webhook`
//! requests under way, the other started attempts waiting in the order they were logged. The
//! domain keeps up to four times that many attempts open ([`Policy::max_open_per_webhook`]),
//! so when a request ends its task takes the next waiting attempt at once: the receiver's
//! slot is held for the receiver's time, not for the commits that log the next start and this
//! result.
//!
//! [`Policy::max_open_per_webhook`]: hallway_domain::Policy::max_open_per_webhook

use super::lanes::Lanes;
use super::signer::Signer;
use crate::bodies::{Bodies, Body, BodyKey, BodyRead};
use crate::clock::Clock;
use crate::secrets::SecretBox;
use crate::transport::{OutgoingRequest, Sent, Transport, USER_AGENT_VALUE};
use bytes::Bytes;
use hallway_domain::{
    signature, AttemptDetail, AttemptError, DeliveryId, DurationMs, Event, EventId, Outcome, State,
    Timestamp, WebhookId,
};
use hallway_store::EventStore;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::error;

/// What a send reports back.
pub(crate) struct Report {
    pub(crate) delivery_id: DeliveryId,
    pub(crate) attempt: u32,
    pub(crate) outcome: Outcome,
    /// What was sent and received, for history.
    pub(crate) detail: Option<Arc<AttemptDetail>>,
    pub(crate) body_key: BodyKey,
    /// Not sent: it waited in its webhook's lane until its deadline was near, so it is
    /// started again rather than failed (the receiver never saw it). `outcome` is unused.
    pub(crate) abandoned: bool,
}

/// See the module documentation.
pub(crate) struct Dispatcher {
    context: Arc<SendContext>,
    /// Kept here, not in the context every send holds: a send that hangs must not keep the
    /// data directory open after the engine stops.
    store: Arc<dyn EventStore>,
    max_in_flight: usize,
    reports_rx: mpsc::Receiver<Report>,
    lanes: Lanes,
}

/// An attempt's send must end this long before its deadline (or half the deadline's grace, if
/// shorter), so that its report reaches the actor before the deadline times it out.
const DEADLINE_MARGIN_MS: u64 = 1_000;

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
        let (reports, reports_rx) = mpsc::channel(reports_capacity(max_in_flight));
        Dispatcher {
            context: Arc::new(SendContext {
                transport,
                clock,
                reports,
                signer: Mutex::new(Signer::new(state, secrets)),
            }),
            store,
            max_in_flight,
            reports_rx,
            lanes: Lanes::default(),
        }
    }

    /// Learns the webhooks' URLs and secrets a batch changed, once it is durable.
    pub(crate) fn learn(&mut self, events: &[Event]) {
        self.context.signer().learn(events);
    }

    /// How many more attempts may start, with `in_flight` open.
    pub(crate) fn room(&self, in_flight: usize) -> usize {
        self.max_in_flight.saturating_sub(in_flight)
    }

    /// The next report (never `None` while the dispatcher lives: its context holds a sender).
    pub(crate) async fn recv(&mut self) -> Option<Report> {
        self.reports_rx.recv().await
    }

    /// A report already waiting, if any.
    pub(crate) fn try_recv(&mut self) -> Option<Report> {
        self.reports_rx.try_recv().ok()
    }

    /// Hands one started (and logged) attempt to its webhook's lane, to be sent to the URL and
    /// signed with the secret its webhook has in the durable log (the state may hold later,
    /// unlogged changes) when the lane has room. An attempt that cannot be sent is reported
    /// back at once.
    pub(crate) fn dispatch(
        &mut self,
        state: &State,
        bodies: &mut Bodies,
        delivery_id: &DeliveryId,
        attempt: u32,
    ) -> Option<Report> {
        let d = state.delivery(delivery_id)?;
        let key: BodyKey = (d.account_id.clone(), d.event_id.clone());
        let template = Report {
            delivery_id: delivery_id.clone(),
            attempt,
            outcome: Outcome::Error {
                error: AttemptError::Timeout,
                duration: DurationMs(0),
            },
            detail: None,
            body_key: key.clone(),
            abandoned: false,
        };
        if !self.context.signer().knows(&d.webhook_id) {
            // Deleted in a durable batch before this one's attempts went out.
            return Some(template.with(unsent(AttemptError::Connect, "the webhook was deleted")));
        }
        let body = bodies.checkout(&key, attempt == 1);
        let job = Job {
            // Only a send that reads its body holds the store, and lets go of it before the
            // request.
            store: matches!(body, Body::Read(_)).then(|| self.store.clone()),
            body,
            webhook: d.webhook_id.clone(),
            event_id: d.event_id.clone(),
            timeout: Duration::from_millis(state.policy().attempt_timeout.0),
            // The time the send must end by, which only an attempt that waited long in its
            // lane can reach before its own timeout.
            send_by: d.open.map(|o| {
                let grace = state.policy().attempt_deadline_grace.0;
                Timestamp(
                    o.deadline
                        .0
                        .saturating_sub(DEADLINE_MARGIN_MS.min(grace / 2)),
                )
            }),
            template,
        };
        let limit = state.policy().max_in_flight_per_webhook.max(1) as usize;
        if let Some(sender) = self.lanes.enter(&d.webhook_id, job, limit) {
            tokio::spawn(sender.run(self.context.clone()));
        }
        None
    }
}

impl Report {
    /// This report with what the send came to.
    fn with(self, sent: Sent) -> Report {
        Report {
            outcome: sent.outcome,
            detail: Some(Arc::new(sent.detail)),
            ..self
        }
    }
}

/// What every send shares.
pub(crate) struct SendContext {
    transport: Arc<dyn Transport>,
    clock: Arc<dyn Clock>,
    reports: mpsc::Sender<Report>,
    signer: Mutex<Signer>,
}

impl SendContext {
    fn signer(&self) -> MutexGuard<'_, Signer> {
        self.signer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the actor is gone (the engine stopped): a lane then starts nothing more.
    pub(crate) fn stopped(&self) -> bool {
        self.reports.is_closed()
    }
}

/// One started attempt, ready to be sent.
pub(crate) struct Job {
    body: Body,
    webhook: WebhookId,
    event_id: EventId,
    timeout: Duration,
    /// When the send must have ended: a little before the domain times the attempt out.
    send_by: Option<Timestamp>,
    /// The report, with the outcome to fill in.
    template: Report,
    store: Option<Arc<dyn EventStore>>,
}

impl Job {
    /// The delivery and attempt, for the send's span.
    pub(crate) fn attempt(&self) -> (&DeliveryId, u32) {
        (&self.template.delivery_id, self.template.attempt)
    }

    /// Signs, sends and reports this attempt.
    pub(crate) async fn send(self, cx: &SendContext) {
        let Job {
            body,
            webhook,
            event_id,
            timeout,
            send_by,
            template,
            mut store,
        } = self;
        // A body not in memory is read here, off the actor: under a deep backlog many are,
        // and the actor is everyone's critical path.
        let body = match body {
            Body::Ready(body) => body,
            Body::Read(read) => match read_body(store.take(), read, &template).await {
                Some(body) => body,
                None => {
                    // Without its body the attempt cannot be sent; it fails and retries on
                    // schedule.
                    let sent = unsent(
                        AttemptError::InvalidResponse,
                        "the event's body is no longer stored",
                    );
                    report(cx, template, sent, Vec::new()).await;
                    return;
                }
            },
        };
        let now = cx.clock.now();
        // An attempt that waited in its lane gets the time left before its deadline, so it
        // never outlives it: the domain would have timed it out and scheduled a retry.
        let timeout = match send_by {
            Some(send_by) => {
                let left = send_by.0.saturating_sub(now.0);
                if left == 0 {
                    let abandoned = Report {
                        abandoned: true,
                        ..template
                    };
                    // The actor may be gone; the log has the start, resumed on the next one.
                    let _ = cx.reports.send(abandoned).await;
                    return;
                }
                timeout.min(Duration::from_millis(left))
            }
            None => timeout,
        };
        let resolved = cx.signer().resolve(&webhook);
        let signing = match resolved {
            Ok(resolved) => resolved,
            Err((error, why)) => {
                report(cx, template, unsent(error, why), Vec::new()).await;
                return;
            }
        };
        // The grace ends at a time the log holds; an attempt sent from then on carries the
        // current secret's signature alone.
        let previous = signing
            .previous
            .as_ref()
            .filter(|(p, _)| p.signs_at(now))
            .map(|(_, plain)| &**plain);
        let headers = match signature::headers(
            signing.scheme,
            event_id.as_str(),
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
                report(cx, template, sent, Vec::new()).await;
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
        let request = OutgoingRequest {
            url: signing.url,
            body,
            headers,
        };
        let sent = cx.transport.send(request, timeout).await;
        report(cx, template, sent, sent_headers).await;
    }
}

/// Reports what an attempt came to, with the request headers it sent.
async fn report(
    cx: &SendContext,
    template: Report,
    sent: Sent,
    request_headers: Vec<(String, String)>,
) {
    let mut detail = sent.detail;
    detail.request_headers = request_headers;
    // The actor may be gone (shut down, or aborted as in a crash); the log has the start.
    let _ = cx
        .reports
        .send(Report {
            outcome: sent.outcome,
            detail: Some(Arc::new(detail)),
            ..template
        })
        .await;
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
