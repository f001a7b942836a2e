//! The schedule: which unfinished deliveries wait for an attempt, which attempts are open, and
//! which webhooks can start one now. Its methods keep every index consistent themselves.

use crate::state::Delivery;
use crate::types::{DeliveryId, Timestamp, WebhookId};
use std::collections::{BTreeSet, HashMap};

/// The indexes a tick reads: per-webhook queues of waiting deliveries, open attempts by
/// deadline, open attempts per webhook, and the ready set of queue heads.
///
/// The ready set holds `(head due, webhook)` for exactly the live webhooks with a waiting
/// delivery and fewer than `limit` open attempts, so a tick finds what can start in
/// O(started · log n) whatever the backlog. Every mutation recomputes the one webhook it
/// touched (`refresh`), so no caller keeps the set in step by hand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Schedule {
    /// Attempts to one webhook that may be open at once (the policy's).
    limit: u32,
    /// Open attempts per live webhook: a webhook has an entry from `add_webhook` to
    /// `remove_webhook`, and only live webhooks get attempts started.
    in_flight: HashMap<WebhookId, u32>,
    /// Waiting deliveries per webhook, by due time. A queue is never empty.
    queues: HashMap<WebhookId, BTreeSet<(Timestamp, DeliveryId)>>,
    /// The head of each live webhook's queue while it has room for another attempt.
    ready: BTreeSet<(Timestamp, WebhookId)>,
    /// Open attempts by deadline.
    deadlines: BTreeSet<(Timestamp, DeliveryId)>,
}

impl Schedule {
    /// An empty schedule allowing `limit` open attempts per webhook.
    pub(crate) fn new(limit: u32) -> Self {
        Schedule {
            limit,
            in_flight: HashMap::new(),
            queues: HashMap::new(),
            ready: BTreeSet::new(),
            deadlines: BTreeSet::new(),
        }
    }

    /// The schedule that `deliveries` imply for the live `webhooks` (loading a snapshot).
    pub(crate) fn rebuild<'a>(
        limit: u32,
        webhooks: impl Iterator<Item = &'a WebhookId>,
        deliveries: impl Iterator<Item = &'a Delivery>,
    ) -> Self {
        let mut s = Schedule::new(limit);
        s.in_flight = webhooks.map(|w| (w.clone(), 0)).collect();
        for d in deliveries {
            match d.open {
                Some(open) => {
                    s.deadlines.insert((open.deadline, d.id.clone()));
                    if let Some(n) = s.in_flight.get_mut(&d.webhook_id) {
                        *n += 1;
                    }
                }
                None => {
                    s.queues
                        .entry(d.webhook_id.clone())
                        .or_default()
                        .insert((d.due, d.id.clone()));
                }
            }
        }
        s.rebuild_ready();
        s
    }

    /// Changes the per-webhook limit (a restart with another policy).
    pub(crate) fn set_limit(&mut self, limit: u32) {
        self.limit = limit;
        self.rebuild_ready();
    }

    fn rebuild_ready(&mut self) {
        self.ready.clear();
        let heads: Vec<(Timestamp, WebhookId)> = self
            .queues
            .keys()
            .filter_map(|w| Some((self.ready_key(w)?, w.clone())))
            .collect();
        self.ready.extend(heads);
    }

    /// Where `webhook` belongs in the ready set: its queue head's due time, if it is live,
    /// has a waiting delivery and has room for another attempt.
    fn ready_key(&self, webhook: &WebhookId) -> Option<Timestamp> {
        if *self.in_flight.get(webhook)? >= self.limit {
            return None;
        }
        self.queues.get(webhook)?.first().map(|(due, _)| *due)
    }

    /// Moves `webhook`'s ready entry from `before` (its key before a change) to where it
    /// belongs now.
    fn refresh(&mut self, webhook: &WebhookId, before: Option<Timestamp>) {
        let after = self.ready_key(webhook);
        if before == after {
            return;
        }
        if let Some(due) = before {
            let removed = self.ready.remove(&(due, webhook.clone()));
            assert!(removed, "ready set lost {webhook}'s entry at {due:?}");
        }
        if let Some(due) = after {
            self.ready.insert((due, webhook.clone()));
        }
    }

    /// Starts tracking a new live webhook, with no attempt open.
    pub(crate) fn add_webhook(&mut self, webhook: &WebhookId) {
        let before = self.ready_key(webhook);
        let old = self.in_flight.insert(webhook.clone(), 0);
        debug_assert!(old.is_none(), "webhook {webhook} created twice");
        self.refresh(webhook, before);
    }

    /// Stops tracking a deleted webhook and returns the deliveries still waiting for it
    /// (none when the webhook's deliveries were cancelled first, as `decide` does).
    pub(crate) fn remove_webhook(&mut self, webhook: &WebhookId) -> Vec<DeliveryId> {
        let before = self.ready_key(webhook);
        self.in_flight.remove(webhook);
        self.refresh(webhook, before);
        let waiting = self.queues.remove(webhook).unwrap_or_default();
        debug_assert!(
            waiting.is_empty(),
            "webhook {webhook} deleted with waiting deliveries"
        );
        waiting.into_iter().map(|(_, id)| id).collect()
    }

    /// Queues a waiting delivery of `webhook`, due at `due`. Returns false (and queues
    /// nothing) if the webhook is not live: nothing could ever start it.
    pub(crate) fn enqueue(&mut self, webhook: &WebhookId, due: Timestamp, id: &DeliveryId) -> bool {
        if !self.in_flight.contains_key(webhook) {
            return false;
        }
        let before = self.ready_key(webhook);
        let queue = self.queues.entry(webhook.clone()).or_default();
        let added = queue.insert((due, id.clone()));
        assert!(added, "delivery {id} queued twice");
        self.refresh(webhook, before);
        true
    }

    /// Takes a waiting delivery out of its queue (cancelled).
    pub(crate) fn dequeue(&mut self, webhook: &WebhookId, due: Timestamp, id: &DeliveryId) {
        let before = self.ready_key(webhook);
        self.take(webhook, due, id);
        self.refresh(webhook, before);
    }

    /// Removes a waiting delivery from its queue, leaving the ready set to the caller.
    fn take(&mut self, webhook: &WebhookId, due: Timestamp, id: &DeliveryId) {
        let Some(queue) = self.queues.get_mut(webhook) else {
            panic!("delivery {id} taken from {webhook}, which has no queue");
        };
        let removed = queue.remove(&(due, id.clone()));
        assert!(
            removed,
            "delivery {id} is not queued in {webhook} at {due:?}"
        );
        if queue.is_empty() {
            self.queues.remove(webhook);
        }
    }

    /// Starts an attempt of a waiting delivery: out of its queue, open until `deadline`.
    pub(crate) fn start(
        &mut self,
        webhook: &WebhookId,
        due: Timestamp,
        id: &DeliveryId,
        deadline: Timestamp,
    ) {
        let before = self.ready_key(webhook);
        self.take(webhook, due, id);
        // Queued implies live (`enqueue`), so the webhook has a count.
        let Some(n) = self.in_flight.get_mut(webhook) else {
            panic!("attempt started for {webhook}, which is not live");
        };
        *n += 1;
        self.refresh(webhook, before);
        let added = self.deadlines.insert((deadline, id.clone()));
        assert!(added, "attempt of {id} opened twice");
    }

    /// Closes an open attempt that was due to time out at `deadline`.
    pub(crate) fn finish(&mut self, webhook: &WebhookId, id: &DeliveryId, deadline: Timestamp) {
        let removed = self.deadlines.remove(&(deadline, id.clone()));
        assert!(removed, "attempt of {id} is not open until {deadline:?}");
        let before = self.ready_key(webhook);
        // A deleted webhook's attempts stay open until reported; it has no count left.
        if let Some(n) = self.in_flight.get_mut(webhook) {
            assert!(*n > 0, "in-flight count of {webhook} would go below zero");
            *n -= 1;
        }
        self.refresh(webhook, before);
    }

    /// Live webhooks whose queue head is due at `now` and that have room, in due order.
    pub(crate) fn ready_at(&self, now: Timestamp) -> impl Iterator<Item = &WebhookId> {
        self.ready
            .iter()
            .take_while(move |(t, _)| *t <= now)
            .map(|(_, w)| w)
    }

    /// A webhook's waiting deliveries due at `now`, in order.
    pub(crate) fn queue_due(
        &self,
        webhook: &WebhookId,
        now: Timestamp,
    ) -> impl Iterator<Item = &DeliveryId> {
        self.waiting(webhook)
            .take_while(move |(t, _)| *t <= now)
            .map(|(_, d)| d)
    }

    /// A webhook's waiting deliveries with their due times, in order.
    pub(crate) fn waiting(
        &self,
        webhook: &WebhookId,
    ) -> impl Iterator<Item = &(Timestamp, DeliveryId)> {
        self.queues.get(webhook).into_iter().flatten()
    }

    /// Every webhook's waiting deliveries due at `now`, in no particular order.
    pub(crate) fn all_due(&self, now: Timestamp) -> impl Iterator<Item = &DeliveryId> {
        self.queues
            .values()
            .flat_map(move |q| q.iter().take_while(move |(t, _)| *t <= now))
            .map(|(_, d)| d)
    }

    /// Deliveries with an open attempt, by deadline.
    pub(crate) fn open(&self) -> impl Iterator<Item = &DeliveryId> {
        self.deadlines.iter().map(|(_, d)| d)
    }

    /// The number of open attempts.
    pub(crate) fn open_count(&self) -> usize {
        self.deadlines.len()
    }

    /// Open attempts to a live webhook (0 for any other).
    pub(crate) fn in_flight(&self, webhook: &WebhookId) -> u32 {
        self.in_flight.get(webhook).copied().unwrap_or(0)
    }

    /// The delivery whose open attempt has the earliest deadline, if it has passed at `now`.
    pub(crate) fn first_expired(&self, now: Timestamp) -> Option<&DeliveryId> {
        self.deadlines
            .first()
            .filter(|(deadline, _)| *deadline <= now)
            .map(|(_, d)| d)
    }

    /// The earliest time an attempt can start.
    pub(crate) fn next_start(&self) -> Option<Timestamp> {
        self.ready.first().map(|(t, _)| *t)
    }

    /// The earliest deadline of an open attempt.
    pub(crate) fn next_deadline(&self) -> Option<Timestamp> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    /// The queues, as snapshots hold them.
    pub(crate) fn queues(&self) -> &HashMap<WebhookId, BTreeSet<(Timestamp, DeliveryId)>> {
        &self.queues
    }

    /// The ready set, as snapshots hold it.
    pub(crate) fn ready(&self) -> &BTreeSet<(Timestamp, WebhookId)> {
        &self.ready
    }

    /// The deadlines, as snapshots hold them.
    pub(crate) fn deadlines(&self) -> &BTreeSet<(Timestamp, DeliveryId)> {
        &self.deadlines
    }

    /// Panics, naming the broken invariant, unless the schedule is exactly what `deliveries`
    /// imply for the live `webhooks` under `limit`. Costs O(size); meant for tests.
    pub(crate) fn check_invariants<'a>(
        &self,
        limit: u32,
        webhooks: impl ExactSizeIterator<Item = &'a WebhookId>,
        deliveries: &HashMap<DeliveryId, Delivery>,
    ) {
        assert_eq!(
            self.limit, limit,
            "schedule: limit differs from the policy's"
        );
        assert_eq!(
            self.in_flight.len(),
            webhooks.len(),
            "schedule: in-flight counts are not one per live webhook"
        );
        for w in webhooks {
            assert!(
                self.in_flight.contains_key(w),
                "schedule: live webhook {w} has no in-flight count"
            );
        }
        let mut open_per_webhook: HashMap<&WebhookId, u32> = HashMap::new();
        for (deadline, id) in &self.deadlines {
            let d = deliveries
                .get(id)
                .unwrap_or_else(|| panic!("schedule: open attempt of unknown delivery {id}"));
            let open = d
                .open
                .unwrap_or_else(|| panic!("schedule: {id} has a deadline but no open attempt"));
            assert_eq!(
                open.deadline, *deadline,
                "schedule: {id}'s deadline differs"
            );
            *open_per_webhook.entry(&d.webhook_id).or_default() += 1;
        }
        for (w, n) in &self.in_flight {
            let open = open_per_webhook.get(w).copied().unwrap_or(0);
            assert_eq!(
                *n, open,
                "schedule: in-flight count of {w} differs from its open attempts"
            );
        }
        let mut queued = 0;
        for (w, queue) in &self.queues {
            assert!(!queue.is_empty(), "schedule: empty queue kept for {w}");
            assert!(
                self.in_flight.contains_key(w),
                "schedule: queue kept for {w}, which is not live"
            );
            for (due, id) in queue {
                let d = deliveries
                    .get(id)
                    .unwrap_or_else(|| panic!("schedule: unknown delivery {id} queued"));
                assert!(d.open.is_none(), "schedule: {id} is queued and open");
                assert!(!d.cancelled, "schedule: cancelled {id} is queued");
                assert_eq!(
                    &d.webhook_id, w,
                    "schedule: {id} is queued for another webhook"
                );
                assert_eq!(d.due, *due, "schedule: {id} is queued at another due time");
            }
            queued += queue.len();
        }
        assert_eq!(
            queued + self.deadlines.len(),
            deliveries.len(),
            "schedule: a delivery is neither queued nor open"
        );
        let expected: BTreeSet<(Timestamp, WebhookId)> = self
            .queues
            .keys()
            .filter_map(|w| Some((self.ready_key(w)?, w.clone())))
            .collect();
        assert!(
            self.ready == expected,
            "schedule: ready set {:?} is not the heads with room {expected:?}",
            self.ready
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::OpenAttempt;
    use crate::types::{AccountId, EventId};

    /// A delivery id named by a one-byte label.
    fn did(label: &str) -> DeliveryId {
        crate::types::FanOutId::from_bytes([label.as_bytes()[0]; 16]).delivery(0)
    }

    fn delivery(id: &str, webhook: &WebhookId, due: u64) -> Delivery {
        Delivery {
            id: did(id),
            webhook_id: webhook.clone(),
            account_id: AccountId::from("acc"),
            event_id: EventId::from("evt"),
            event_type: "t".into(),
            test: false,
            created_at: Timestamp(0),
            attempts_made: 0,
            max_attempts: 1,
            due: Timestamp(due),
            open: None,
            cancelled: false,
        }
    }

    /// One webhook with limit 1: `a` open until 50, `b` waiting (due 10).
    fn sample() -> (Schedule, WebhookId, HashMap<DeliveryId, Delivery>) {
        let w = WebhookId::from("wh");
        let mut s = Schedule::new(1);
        s.add_webhook(&w);
        let mut a = delivery("a", &w, 5);
        let b = delivery("b", &w, 10);
        assert!(s.enqueue(&w, a.due, &a.id));
        assert!(s.enqueue(&w, b.due, &b.id));
        assert_eq!(s.ready_at(Timestamp(5)).collect::<Vec<_>>(), [&w]);
        s.start(&w, a.due, &a.id, Timestamp(50));
        a.open = Some(OpenAttempt {
            attempt: 1,
            started_at: Timestamp(5),
            deadline: Timestamp(50),
        });
        assert_eq!(
            s.next_start(),
            None,
            "at its limit, the webhook is not ready"
        );
        let deliveries = [a, b].into_iter().map(|d| (d.id.clone(), d)).collect();
        (s, w, deliveries)
    }

    #[test]
    fn methods_keep_the_indexes_consistent() {
        let (mut s, w, mut deliveries) = sample();
        s.check_invariants(1, [&w].into_iter(), &deliveries);
        s.finish(&w, &did("a"), Timestamp(50));
        deliveries.remove(&did("a"));
        assert_eq!(s.next_start(), Some(Timestamp(10)));
        s.check_invariants(1, [&w].into_iter(), &deliveries);
        let rebuilt = Schedule::rebuild(1, [&w].into_iter(), deliveries.values());
        assert_eq!(rebuilt, s);
        s.dequeue(&w, Timestamp(10), &did("b"));
        deliveries.clear();
        s.check_invariants(1, [&w].into_iter(), &deliveries);
        assert_eq!(s.remove_webhook(&w), Vec::<DeliveryId>::new());
        s.check_invariants(1, [].into_iter(), &deliveries);
    }

    #[test]
    #[should_panic(expected = "ready set")]
    fn check_invariants_catches_a_stale_ready_entry() {
        let (mut s, w, deliveries) = sample();
        // The webhook is at its limit, so a ready entry for it is a corruption.
        s.ready.insert((Timestamp(10), w.clone()));
        s.check_invariants(1, [&w].into_iter(), &deliveries);
    }

    #[test]
    #[should_panic(expected = "in-flight count of wh differs")]
    fn check_invariants_catches_a_wrong_in_flight_count() {
        let (mut s, w, deliveries) = sample();
        s.in_flight.insert(w.clone(), 0);
        s.check_invariants(1, [&w].into_iter(), &deliveries);
    }

    #[test]
    #[should_panic(expected = "neither queued nor open")]
    fn check_invariants_catches_a_lost_delivery() {
        let (mut s, w, deliveries) = sample();
        s.queues.remove(&w);
        s.check_invariants(1, [&w].into_iter(), &deliveries);
    }

    #[test]
    #[should_panic(expected = "is not queued")]
    fn dequeuing_a_delivery_that_is_not_queued_panics() {
        let (mut s, w, _) = sample();
        s.dequeue(&w, Timestamp(11), &did("b"));
    }

    #[test]
    #[should_panic(expected = "below zero")]
    fn an_in_flight_count_never_goes_below_zero() {
        let (mut s, w, _) = sample();
        s.deadlines.insert((Timestamp(60), did("b")));
        s.finish(&w, &did("a"), Timestamp(50));
        s.finish(&w, &did("b"), Timestamp(60));
    }
}
