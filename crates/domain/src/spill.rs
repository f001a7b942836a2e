//! Spilling: memory holds the head of each webhook's queue of waiting deliveries, and the
//! store holds the rest (its spill index, ordered by due time), so a backlog costs disk, not
//! memory. The domain decides what moves and records it as events carrying the deliveries'
//! data (`DeliveriesSpilled`, `DeliveriesLoaded`, `SpilledDeliveriesSettled`); the store
//! writes its index from those events, in the same atomic step as the log record, and the
//! runtime reads the index back to build the commands that load or settle them. Nothing
//! here does I/O.
//!
//! Each live webhook's spilled deliveries form the tail of its queue: every waiting real
//! delivery in memory sorts (by due time, then id) before its spill floor, the first spilled
//! key. So loading the first spilled deliveries back, in order, continues the queue exactly
//! where memory ends. Disabling or deleting a webhook starts a new spill generation; the
//! spilled deliveries of the one before are settled a chunk at a time: paused or cancelled as
//! the disable or delete did to those in memory (test sends go on while a webhook is
//! disabled, so those come back to memory).

use crate::types::{AccountId, DeliveryId, EventId, Timestamp, WebhookId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A waiting delivery as the store keeps it while it is spilled: everything the state holds
/// of it in memory but its webhook (which names the spill index it is in).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpilledDelivery {
    /// Its id.
    pub id: DeliveryId,
    /// The webhook's account.
    pub account_id: AccountId,
    /// The event it carries.
    pub event_id: EventId,
    /// The event's type.
    pub event_type: String,
    /// Whether it is a test send.
    pub test: bool,
    /// When it was created.
    pub created_at: Timestamp,
    /// Attempts made so far.
    pub attempts_made: u32,
    /// Attempts it may make in all.
    pub max_attempts: u32,
    /// When its next attempt is due.
    pub due: Timestamp,
}

impl SpilledDelivery {
    /// Where it sorts in its webhook's queue.
    pub fn key(&self) -> (Timestamp, &DeliveryId) {
        (self.due, &self.id)
    }
}

/// What the spilled deliveries of a former generation become when settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Settle {
    /// The webhook was disabled: real deliveries are paused (kept for a recover), test sends
    /// go on.
    Paused,
    /// The webhook was deleted: every one is cancelled.
    Cancelled,
}

/// A live webhook's current spill generation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpillTier {
    /// The generation new spills go to.
    pub generation: u32,
    /// Deliveries spilled in it.
    pub count: u64,
    /// The first spilled key (due time and id), while `count > 0`.
    pub floor: Option<(Timestamp, DeliveryId)>,
}

/// The spilled deliveries of a former generation, settled a chunk at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settling {
    /// How many are left.
    pub count: u64,
    /// What they become.
    pub settle: Settle,
}

/// The state's side of spilling: per live webhook its generation, count and floor, and the
/// former generations still being settled. The deliveries themselves are in the store.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Spills {
    /// One per live webhook.
    pub(crate) tiers: BTreeMap<WebhookId, SpillTier>,
    /// Former generations with deliveries left to settle.
    pub(crate) settling: BTreeMap<(WebhookId, u32), Settling>,
    /// The live webhooks with spilled deliveries (`count > 0`), for the runtime's loads.
    #[serde(skip)]
    pub(crate) spilled: BTreeSet<WebhookId>,
    /// The sum of the tiers' counts.
    #[serde(skip)]
    pub(crate) total: u64,
}

impl Spills {
    /// Rebuilds the derived indexes (after decoding).
    pub(crate) fn reindex(mut self) -> Self {
        self.spilled = self
            .tiers
            .iter()
            .filter(|(_, t)| t.count > 0)
            .map(|(w, _)| w.clone())
            .collect();
        self.total = self.tiers.values().map(|t| t.count).sum();
        self
    }

    /// A new live webhook: its first generation follows any of a former webhook with its id
    /// still being settled, so the two never share a generation.
    pub(crate) fn add_webhook(&mut self, webhook: &WebhookId) {
        let generation = self
            .settling
            .range((webhook.clone(), 0)..=(webhook.clone(), u32::MAX))
            .next_back()
            .map_or(0, |((_, g), _)| g + 1);
        self.tiers.insert(
            webhook.clone(),
            SpillTier {
                generation,
                count: 0,
                floor: None,
            },
        );
    }

    /// The webhook was disabled (`Settle::Paused`) or deleted (`Settle::Cancelled`): its
    /// spilled deliveries are to be settled, and later spills start a new generation.
    /// Deletion removes the tier.
    pub(crate) fn retire(&mut self, webhook: &WebhookId, settle: Settle, remove: bool) {
        let Some(tier) = self.tiers.get_mut(webhook) else {
            return;
        };
        if tier.count > 0 {
            self.settling.insert(
                (webhook.clone(), tier.generation),
                Settling {
                    count: tier.count,
                    settle,
                },
            );
            self.total -= tier.count;
            self.spilled.remove(webhook);
        }
        tier.generation += 1;
        tier.count = 0;
        tier.floor = None;
        if remove {
            self.tiers.remove(webhook);
        }
    }

    /// The current generation of a live webhook's spills.
    pub(crate) fn generation(&self, webhook: &WebhookId) -> Option<u32> {
        self.tiers.get(webhook).map(|t| t.generation)
    }

    /// Records deliveries spilled into a webhook's current generation.
    pub(crate) fn spilled(
        &mut self,
        webhook: &WebhookId,
        generation: u32,
        first: (Timestamp, DeliveryId),
        n: u64,
    ) {
        let Some(tier) = self.tiers.get_mut(webhook) else {
            panic!("deliveries spilled for {webhook}, which is not live");
        };
        assert_eq!(
            tier.generation, generation,
            "deliveries of {webhook} spilled into generation {generation}, not the current one"
        );
        tier.count += n;
        tier.floor = Some(match tier.floor.take() {
            Some(floor) if floor <= first => floor,
            _ => first,
        });
        self.total += n;
        self.spilled.insert(webhook.clone());
    }

    /// Records the first `n` spilled deliveries of a webhook loaded back; `next` is the first
    /// one still spilled.
    pub(crate) fn loaded(
        &mut self,
        webhook: &WebhookId,
        generation: u32,
        n: u64,
        next: Option<(Timestamp, DeliveryId)>,
    ) {
        let Some(tier) = self.tiers.get_mut(webhook) else {
            panic!("spilled deliveries loaded for {webhook}, which is not live");
        };
        assert_eq!(
            tier.generation, generation,
            "a load from a former generation"
        );
        assert!(n <= tier.count, "more loaded than {webhook} has spilled");
        tier.count -= n;
        assert_eq!(
            tier.count == 0,
            next.is_none(),
            "a load must name the next spilled key of {webhook} exactly when some are left"
        );
        tier.floor = next;
        self.total -= n;
        if tier.count == 0 {
            self.spilled.remove(webhook);
        }
    }

    /// Records `n` deliveries of a former generation settled.
    pub(crate) fn settled(&mut self, webhook: &WebhookId, generation: u32, n: u64) {
        let key = (webhook.clone(), generation);
        let Some(s) = self.settling.get_mut(&key) else {
            panic!(
                "settled deliveries of {webhook}'s generation {generation}, which has none left"
            );
        };
        assert!(n <= s.count, "more settled than {webhook} had spilled");
        s.count -= n;
        if s.count == 0 {
            self.settling.remove(&key);
        }
    }
}
