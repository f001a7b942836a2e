//! The dispatcher: hands started attempts to the transport, each in its own task, and brings
//! their outcomes back to the actor over a bounded channel. It never waits on the network.

use super::targets::Targets;
use crate::bodies::{Bodies, Body, BodyKey, BodyRead};
use crate::clock::Clock;
use crate::secrets::SecretBox;
use crate::transport::{OutgoingRequest, Transport};
use bytes::Bytes;
use hallway_domain::{
    signature, AttemptError, DeliveryId, DurationMs, Event, Outcome, SealedSecret, State, WebhookId,
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
    pub(crate) body_key: BodyKey,
}

/// See the module documentation.
pub(crate) struct Dispatcher {
    transport: Arc<dyn Transport>,
    secrets: Arc<SecretBox>,
    clock: Arc<dyn Clock>,
    store: Arc<dyn EventStore>,
    max_in_flight: usize,
    /// Each webhook's secret as sealed and opened: opening (AES-GCM) once per rotation, not
    /// once per attempt.
    opened: HashMap<WebhookId, (SealedSecret, Arc<str>)>,
    /// Each webhook's URL and secret as the durable log has them.
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
/// until its deadline; it fails and retries on schedule.
fn unsent(error: AttemptError) -> Outcome {
    Outcome::Error {
        error,
        duration: DurationMs(0),
    }
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
        let report = |outcome| Report {
            delivery_id: delivery_id.clone(),
            attempt,
            outcome,
            body_key: key.clone(),
        };
        let webhook = &d.webhook_id;
        let Some(target) = self.targets.get(webhook) else {
            // Deleted in the same batch.
            return Some(report(unsent(AttemptError::Connect)));
        };
        let body = bodies.checkout(&key, attempt == 1);
        let secret = match self.opened.get(webhook) {
            Some((sealed, plain)) if *sealed == target.secret => plain.clone(),
            _ => {
                let Some((plain, _)) = self.secrets.open(&target.secret) else {
                    error!(%webhook, "webhook secret does not open with the master key");
                    return Some(report(unsent(AttemptError::InvalidResponse)));
                };
                if self.opened.len() > self.targets.len() {
                    // Deleted webhooks' entries: start again rather than track deletions.
                    self.opened.clear();
                }
                let plain: Arc<str> = Arc::from(plain);
                self.opened
                    .insert(webhook.clone(), (target.secret.clone(), plain.clone()));
                plain
            }
        };
        let url = target.url.clone();
        let timeout = Duration::from_millis(state.policy().attempt_timeout.0);
        let template = report(unsent(AttemptError::Timeout));
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
            send.run(body, url, secret, timeout, template)
                .instrument(span),
        );
        None
    }
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
        secret: Arc<str>,
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
                    let outcome = unsent(AttemptError::InvalidResponse);
                    let _ = self
                        .reports
                        .send(Report {
                            outcome,
                            ..template
                        })
                        .await;
                    return;
                }
            },
        };
        let t = self.clock.now().as_unix_seconds();
        let signature = signature::sign(&secret, t, &body);
        let request = OutgoingRequest {
            url,
            body,
            signature,
        };
        let outcome = self.transport.send(request, timeout).await;
        // The actor may be gone (shut down, or aborted as in a crash); the log has the start.
        let _ = self
            .reports
            .send(Report {
                outcome,
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
