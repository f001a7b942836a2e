//! The dispatcher: hands started attempts to the transport and brings their outcomes back to
//! the actor over a bounded channel. It never waits on the network.
//!
//! Each webhook has a lane: at most the policy's `max_in_flight_per_webhook` requests under
//! way, the other started attempts waiting in the order they were logged. The domain keeps
//! up to four times that many attempts open ([`Policy::max_open_per_webhook`]), so when a request
//! ends its task takes the next waiting attempt at once: the receiver's slot is held for the
//! receiver's time, not for the commits that log the next start and this result.
//!
//! [`Policy::max_open_per_webhook`]: hallway_domain::Policy::max_open_per_webhook

use crate::bodies::{Bodies, Body, BodyKey, BodyRead};
use crate::clock::Clock;
use crate::secrets::SecretBox;
use crate::transport::{OutgoingRequest, Transport};
use bytes::Bytes;
use hallway_domain::{
    signature, AttemptError, DeliveryId, DurationMs, Outcome, SealedSecret, State, Timestamp,
    WebhookId,
};
use hallway_store::EventStore;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
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
    reports_tx: mpsc::Sender<Report>,
    reports_rx: mpsc::Receiver<Report>,
    /// Each webhook's requests under way and started attempts waiting, shared with the send
    /// tasks, which hand a freed slot to the next waiting attempt themselves.
    lanes: Arc<Mutex<HashMap<WebhookId, Lane>>>,
}

/// One webhook's sends: how many are under way, and the attempts waiting for one to end.
#[derive(Default)]
struct Lane {
    sending: usize,
    waiting: VecDeque<Job>,
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
/// until its deadline; it fails and retries on schedule.
fn unsent(error: AttemptError) -> Outcome {
    Outcome::Error {
        error,
        duration: DurationMs(0),
    }
}

impl Dispatcher {
    /// A dispatcher sending through `transport`, at most `max_in_flight` attempts at once.
    pub(crate) fn new(
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
            reports_tx,
            reports_rx,
            lanes: Arc::new(Mutex::new(HashMap::new())),
        }
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

    /// Hands one started (and logged) attempt to its webhook's lane, to be signed with the
    /// current secret and sent when the lane has room. An attempt that cannot be sent is
    /// reported back at once.
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
        let Some(w) = state.webhook(&d.webhook_id) else {
            // Deleted while this batch was being committed.
            return Some(report(unsent(AttemptError::Connect)));
        };
        let body = bodies.checkout(&key, attempt == 1);
        let secret = match self.opened.get(&w.id) {
            Some((sealed, plain)) if *sealed == w.secret => plain.clone(),
            _ => {
                let Some((plain, _)) = self.secrets.open(&w.secret) else {
                    error!(webhook = %w.id, "webhook secret does not open with the master key");
                    return Some(report(unsent(AttemptError::InvalidResponse)));
                };
                if self.opened.len() > state.webhook_count() {
                    // Deleted webhooks' entries: start again rather than track deletions.
                    self.opened.clear();
                }
                let plain: Arc<str> = Arc::from(plain);
                self.opened
                    .insert(w.id.clone(), (w.secret.clone(), plain.clone()));
                plain
            }
        };
        let job = Job {
            // Only a send that reads its body holds the store: one that hangs must not keep
            // the data directory open after the engine stops.
            store: matches!(body, Body::Read(_)).then(|| self.store.clone()),
            body,
            url: w.config.url.clone(),
            secret,
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
            template: report(unsent(AttemptError::Timeout)),
        };
        let limit = state.policy().max_in_flight_per_webhook.max(1) as usize;
        let mut lanes = self.lanes.lock().unwrap_or_else(PoisonError::into_inner);
        let lane = lanes.entry(w.id.clone()).or_default();
        if lane.sending >= limit {
            lane.waiting.push_back(job);
            return None;
        }
        lane.sending += 1;
        drop(lanes);
        let sender = Sender {
            transport: self.transport.clone(),
            clock: self.clock.clone(),
            reports: self.reports_tx.clone(),
            lanes: self.lanes.clone(),
            webhook: w.id.clone(),
            released: false,
        };
        tokio::spawn(sender.run(job));
        None
    }
}

/// One started attempt, ready to be sent.
struct Job {
    body: Body,
    url: String,
    secret: Arc<str>,
    timeout: Duration,
    /// When the send must have ended: a little before the domain times the attempt out.
    send_by: Option<Timestamp>,
    /// The report, with the outcome to fill in.
    template: Report,
    store: Option<Arc<dyn EventStore>>,
}

/// A task holding one of a webhook's send slots: it sends an attempt, reports it, and takes
/// the lane's next waiting attempt until none is left.
struct Sender {
    transport: Arc<dyn Transport>,
    clock: Arc<dyn Clock>,
    reports: mpsc::Sender<Report>,
    lanes: Arc<Mutex<HashMap<WebhookId, Lane>>>,
    webhook: WebhookId,
    /// Whether the slot went back to the lane; a task dropped mid-send did not give it back.
    released: bool,
}

impl Sender {
    async fn run(mut self, mut job: Job) {
        loop {
            let span = tracing::debug_span!(
                "attempt",
                delivery = %job.template.delivery_id,
                attempt = job.template.attempt
            );
            // A transport that panics loses its attempt (the domain times it out at its
            // deadline), not the lane's slot.
            if Unwinding(Box::pin(self.send(job).instrument(span)))
                .await
                .is_err()
            {
                error!(webhook = %self.webhook, "an attempt's send panicked");
            }
            match self.next_or_release() {
                Some(next) => job = next,
                None => return,
            }
        }
    }

    /// The lane's next waiting attempt, or (none waiting) gives the slot back.
    fn next_or_release(&mut self) -> Option<Job> {
        let mut lanes = self.lanes.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(lane) = lanes.get_mut(&self.webhook) else {
            self.released = true;
            return None;
        };
        if let Some(next) = lane.waiting.pop_front() {
            return Some(next);
        }
        lane.sending = lane.sending.saturating_sub(1);
        if lane.sending == 0 {
            lanes.remove(&self.webhook);
        }
        self.released = true;
        None
    }

    async fn send(&self, job: Job) {
        let Job {
            body,
            url,
            secret,
            timeout,
            send_by,
            template,
            mut store,
        } = job;
        // A body not in memory is read here, off the actor: under a deep backlog many are,
        // and the actor is everyone's critical path.
        let body = match body {
            Body::Ready(body) => body,
            Body::Read(read) => match read_body(store.take(), read, &template).await {
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
        let now = self.clock.now();
        // An attempt that waited in its lane gets the time left before its deadline, so it
        // never outlives it: the domain would have timed it out and scheduled a retry.
        let timeout = match send_by {
            Some(send_by) => {
                let left = send_by.0.saturating_sub(now.0);
                if left == 0 {
                    let _ = self.reports.send(template).await;
                    return;
                }
                timeout.min(Duration::from_millis(left))
            }
            None => timeout,
        };
        let signature = signature::sign(&secret, now.as_unix_seconds(), &body);
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

impl Drop for Sender {
    /// A task dropped mid-send (the runtime shutting down) gives its slot back; what waits in
    /// its lane is in the log and is sent again on the next start.
    fn drop(&mut self) {
        if !self.released {
            let _ = self.give_back();
        }
    }
}

impl Sender {
    /// Gives the slot back without taking the next attempt.
    fn give_back(&mut self) -> Option<()> {
        let mut lanes = self.lanes.lock().unwrap_or_else(PoisonError::into_inner);
        let lane = lanes.get_mut(&self.webhook)?;
        lane.sending = lane.sending.saturating_sub(1);
        if lane.sending == 0 && lane.waiting.is_empty() {
            lanes.remove(&self.webhook);
        }
        self.released = true;
        Some(())
    }
}

/// A future that turns a panic while polling into `Err`, like `catch_unwind` for closures.
struct Unwinding<F>(Pin<Box<F>>);

impl<F: Future> Future for Unwinding<F> {
    type Output = Result<F::Output, ()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(poll) => poll.map(Ok),
            Err(_) => Poll::Ready(Err(())),
        }
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
