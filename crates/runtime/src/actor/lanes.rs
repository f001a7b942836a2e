//! Each webhook's lane: how many of its requests are under way, and the started attempts
//! waiting for one of them to end. A send task holds one slot and, when its request ends,
//! takes the lane's next waiting attempt itself, so a slot never waits for the actor.

use super::dispatcher::{Job, SendContext};
use hallway_domain::WebhookId;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use tracing::{error, Instrument};

/// Every webhook's lane, shared with the send tasks.
#[derive(Default, Clone)]
pub(crate) struct Lanes(Arc<Mutex<HashMap<WebhookId, Lane>>>);

/// One webhook's sends: how many are under way, and the attempts waiting for one to end.
#[derive(Default)]
struct Lane {
    sending: usize,
    waiting: VecDeque<Job>,
}

impl Lanes {
    /// Puts `job` in `webhook`'s lane: a [`Sender`] to spawn if one of its `limit` slots is
    /// free, or `None` if the job waits for a running sender to take it.
    pub(crate) fn enter(&self, webhook: &WebhookId, job: Job, limit: usize) -> Option<Sender> {
        let mut lanes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let lane = lanes.entry(webhook.clone()).or_default();
        if lane.sending >= limit {
            lane.waiting.push_back(job);
            return None;
        }
        lane.sending += 1;
        Some(Sender {
            lanes: self.clone(),
            webhook: webhook.clone(),
            job: Some(job),
            released: false,
        })
    }
}

/// A task holding one of a webhook's send slots: it sends an attempt, reports it, and takes
/// the lane's next waiting attempt until none is left.
pub(crate) struct Sender {
    lanes: Lanes,
    webhook: WebhookId,
    job: Option<Job>,
    /// Whether the slot went back to the lane; a task dropped mid-send did not give it back.
    released: bool,
}

impl Sender {
    /// Sends until the lane has nothing waiting, then gives the slot back.
    pub(crate) async fn run(mut self, cx: Arc<SendContext>) {
        while let Some(job) = self.job.take() {
            let (delivery, attempt) = job.attempt();
            let span = tracing::debug_span!("attempt", %delivery, attempt);
            // A transport that panics loses its attempt (the domain times it out at its
            // deadline), not the lane's slot.
            if Unwinding(Box::pin(job.send(&cx).instrument(span)))
                .await
                .is_err()
            {
                error!(webhook = %self.webhook, "an attempt's send panicked");
            }
            self.job = self.next_or_release(cx.stopped());
        }
    }

    /// The lane's next waiting attempt, or (none waiting, or the engine `stopped`: what waits
    /// is in the log and resumed on the next start) gives the slot back.
    fn next_or_release(&mut self, stopped: bool) -> Option<Job> {
        let mut lanes = self.lanes.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(lane) = lanes.get_mut(&self.webhook) {
            if stopped {
                lane.waiting.clear();
            } else if let Some(next) = lane.waiting.pop_front() {
                return Some(next);
            }
            lane.sending = lane.sending.saturating_sub(1);
            if lane.sending == 0 {
                lanes.remove(&self.webhook);
            }
        }
        self.released = true;
        None
    }
}

impl Drop for Sender {
    /// A task dropped mid-send (the runtime shutting down) gives its slot back; what waits in
    /// its lane is in the log and is sent again on the next start.
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let mut lanes = self.lanes.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(lane) = lanes.get_mut(&self.webhook) {
            lane.sending = lane.sending.saturating_sub(1);
            if lane.sending == 0 && lane.waiting.is_empty() {
                lanes.remove(&self.webhook);
            }
        }
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
