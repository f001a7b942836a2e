//! The state's side of spilling (see `crate::spill`): applying the spill events, what to
//! spill, and what the runtime should load or settle next.

use super::{Delivery, State};
use crate::spill::{Settling, SpillTier, SpilledDelivery};
use crate::types::{DeliveryId, Timestamp, WebhookId};

impl State {
    /// Moves spilled deliveries out of memory (a `DeliveriesSpilled`).
    pub(super) fn apply_spilled(
        &mut self,
        webhook_id: &WebhookId,
        generation: u32,
        deliveries: &[SpilledDelivery],
    ) {
        let Some(first) = deliveries.first() else {
            return;
        };
        for s in deliveries {
            let Some(d) = self.deliveries.remove(&s.id) else {
                panic!("{} spilled, but it is not in memory", s.id);
            };
            assert!(
                d.open.is_none() && &d.webhook_id == webhook_id && d.due == s.due,
                "{} spilled, but it is not a waiting delivery of {webhook_id} due then",
                s.id
            );
            self.schedule.dequeue(webhook_id, d.due, &s.id);
        }
        self.spills.spilled(
            webhook_id,
            generation,
            (first.due, first.id.clone()),
            deliveries.len() as u64,
        );
    }

    /// Moves loaded deliveries back into memory (a `DeliveriesLoaded`).
    pub(super) fn apply_loaded(
        &mut self,
        webhook_id: &WebhookId,
        generation: u32,
        deliveries: &[SpilledDelivery],
        next: &Option<(Timestamp, DeliveryId)>,
    ) {
        self.spills.loaded(
            webhook_id,
            generation,
            deliveries.len() as u64,
            next.clone(),
        );
        self.enqueue_spilled(webhook_id, deliveries);
    }

    /// Settles spilled deliveries of a former generation (a `SpilledDeliveriesSettled`):
    /// `kept` come back to memory, the rest leave the state.
    pub(super) fn apply_settled(
        &mut self,
        webhook_id: &WebhookId,
        generation: u32,
        settled: usize,
        kept: &[SpilledDelivery],
    ) {
        let n = settled + kept.len();
        self.spills.settled(webhook_id, generation, n as u64);
        self.enqueue_spilled(webhook_id, kept);
    }

    fn enqueue_spilled(&mut self, webhook_id: &WebhookId, deliveries: &[SpilledDelivery]) {
        for s in deliveries {
            self.enqueue_new(Delivery {
                id: s.id.clone(),
                webhook_id: webhook_id.clone(),
                account_id: s.account_id.clone(),
                event_id: s.event_id.clone(),
                event_type: s.event_type.clone(),
                test: s.test,
                created_at: s.created_at,
                attempts_made: s.attempts_made,
                max_attempts: s.max_attempts,
                due: s.due,
                open: None,
                cancelled: false,
            });
        }
    }

    /// The waiting deliveries to spill, per webhook in id order: beyond the first `keep` of
    /// its queue, and any that sort at or after its spill floor.
    pub(crate) fn to_spill(&self, keep: usize) -> Vec<(WebhookId, u32, Vec<SpilledDelivery>)> {
        let mut out = Vec::new();
        for (webhook, queue) in self.schedule.queues() {
            let floor = self
                .spills
                .tiers
                .get(webhook)
                .and_then(|t| t.floor.as_ref());
            let after_floor = |key: &(Timestamp, DeliveryId)| floor.is_some_and(|f| key >= f);
            let excess = queue.len().saturating_sub(keep);
            if excess == 0 && !queue.last().is_some_and(after_floor) {
                continue;
            }
            let Some(generation) = self.spills.generation(webhook) else {
                continue;
            };
            let mut spill = Vec::new();
            // From the back: the latest keys go first. Once a key is neither in the excess
            // nor after the floor, none before it is.
            for (i, key) in queue.iter().rev().enumerate() {
                if i >= excess && !after_floor(key) {
                    break;
                }
                let Some(d) = self.deliveries.get(&key.1) else {
                    continue;
                };
                spill.push(SpilledDelivery {
                    id: d.id.clone(),
                    account_id: d.account_id.clone(),
                    event_id: d.event_id.clone(),
                    event_type: d.event_type.clone(),
                    test: d.test,
                    created_at: d.created_at,
                    attempts_made: d.attempts_made,
                    max_attempts: d.max_attempts,
                    due: d.due,
                });
            }
            if !spill.is_empty() {
                spill.reverse();
                out.push((webhook.clone(), generation, spill));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// A live webhook's spill generation, how many deliveries it has spilled, and its floor.
    pub fn spill_tier(&self, webhook: &WebhookId) -> Option<&SpillTier> {
        self.spills.tiers.get(webhook)
    }

    /// Deliveries spilled to the store (pending, not in memory).
    pub fn spilled_count(&self) -> u64 {
        self.spills.total
    }

    /// What to load once a webhook's queue in memory ran down to half of `keep` while
    /// deliveries of its are spilled: every webhook with spilled deliveries and fewer than
    /// `keep` in memory, with its generation and how many to load to hold `keep` again, in id
    /// order (one read tops them all up, since queues drain together). Empty while every queue
    /// holds more than half.
    pub fn spill_loads(&self, keep: usize) -> Vec<(WebhookId, u32, usize)> {
        let queued = |w: &WebhookId| self.schedule.queue_len(w);
        if !self.spills.spilled.iter().any(|w| queued(w) <= keep / 2) {
            return Vec::new();
        }
        self.spills
            .spilled
            .iter()
            .filter_map(|w| {
                let n = queued(w);
                let generation = self.spills.generation(w)?;
                (n < keep).then(|| (w.clone(), generation, keep - n))
            })
            .collect()
    }

    /// A former spill generation of a webhook with deliveries left to settle.
    pub fn settling_of(&self, webhook: &WebhookId, generation: u32) -> Option<Settling> {
        self.spills
            .settling
            .get(&(webhook.clone(), generation))
            .copied()
    }

    /// Every former spill generation with deliveries left to settle.
    pub fn settling(&self) -> impl Iterator<Item = (&WebhookId, u32, Settling)> {
        self.spills.settling.iter().map(|((w, g), s)| (w, *g, *s))
    }

    /// Panics unless the spill bookkeeping agrees with the live webhooks and the queues.
    pub(super) fn check_spills(&self) {
        let spills = &self.spills;
        assert_eq!(
            spills.tiers.len(),
            self.webhooks.len(),
            "spills: tiers are not one per live webhook"
        );
        let mut total = 0;
        for (w, tier) in &spills.tiers {
            assert!(
                self.webhooks.contains_key(w),
                "spills: tier of {w}, not live"
            );
            assert_eq!(
                tier.count == 0,
                tier.floor.is_none(),
                "spills: {w} has a floor exactly when it has spilled deliveries"
            );
            assert_eq!(
                tier.count > 0,
                spills.spilled.contains(w),
                "spills: {w} is listed as spilled exactly when it has spilled deliveries"
            );
            // Memory holds only what sorts before the floor once a `Spill` has run: an event
            // may queue a delivery after it, which the same turn's `Spill` moves (the spill
            // property test checks the order between turns).
            total += tier.count;
            for ((_, g), _) in spills
                .settling
                .range((w.clone(), 0)..=(w.clone(), u32::MAX))
            {
                assert!(
                    *g < tier.generation,
                    "spills: {w} settles its current generation"
                );
            }
        }
        assert_eq!(
            total, spills.total,
            "spills: the total differs from the tiers"
        );
        assert_eq!(
            spills.spilled.len(),
            spills.tiers.values().filter(|t| t.count > 0).count(),
            "spills: the spilled list names a webhook without spilled deliveries"
        );
        for ((w, g), s) in &spills.settling {
            assert!(s.count > 0, "spills: {w}'s generation {g} settles nothing");
        }
    }
}
