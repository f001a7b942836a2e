//! The auditor's rules for publishes: idempotency, and a fan-out to exactly the enabled
//! matching webhooks of a Pro account, with a paused delivery for each disabled one.

use super::{Audit, Status, Violations};
use hallway_domain::{AccountId, DeliveryId, EventId, Plan, ProjectId, Timestamp, WebhookId};
use std::collections::BTreeSet;

/// What an `EventPublished` says besides its deliveries.
pub(super) struct Publish<'e> {
    pub(super) account: &'e AccountId,
    pub(super) event: &'e EventId,
    pub(super) event_type: &'e str,
    pub(super) project: &'e ProjectId,
    pub(super) at: Timestamp,
}

impl Audit {
    pub(super) fn published_event(
        &mut self,
        seq: u64,
        p: Publish<'_>,
        deliveries: &[(DeliveryId, WebhookId)],
        first_due: Timestamp,
        v: &mut Violations,
    ) {
        let (account_id, event_id, at) = (p.account, p.event, p.at);
        let key = (account_id.clone(), event_id.clone());
        let window = self.policy.retention_start(at);
        if self
            .published
            .get(&key)
            .is_some_and(|(t, _, _)| *t >= window)
        {
            v.push(format!(
                "{event_id} published twice within its idempotency window"
            ));
        }
        self.published
            .insert(key, (at, deliveries.len() as u32, seq));
        let pro = self.accounts.get(account_id) == Some(&Plan::Pro);
        let matching: Vec<(&WebhookId, bool)> = self
            .hooks
            .iter()
            .filter(|(_, h)| {
                pro && h.live
                    && &h.account == account_id
                    && h.config.matches(p.event_type, p.project)
            })
            .map(|(id, h)| (id, h.enabled))
            .collect();
        let want: BTreeSet<WebhookId> = matching
            .iter()
            .filter(|(_, enabled)| *enabled)
            .map(|(id, _)| (*id).clone())
            .collect();
        let paused: BTreeSet<WebhookId> = matching
            .iter()
            .filter(|(_, enabled)| !*enabled)
            .map(|(id, _)| (*id).clone())
            .collect();
        let got: Vec<WebhookId> = deliveries.iter().map(|(_, w)| w.clone()).collect();
        let got_set: BTreeSet<WebhookId> = got.iter().cloned().collect();
        if got_set != want || got.len() != got_set.len() {
            v.push(format!(
                "{event_id} fanned out to {got:?}; its enabled matching webhooks are {want:?}"
            ));
        }
        if first_due != at.plus(self.first_delay()) {
            v.push(format!(
                "{event_id} first due {first_due:?}, published {at:?}"
            ));
        }
        for (d, w) in deliveries {
            self.create(d, w, account_id, event_id, false, at, Status::Pending, v);
        }
        if !paused.is_empty() {
            self.owed_paused = Some((account_id.clone(), event_id.clone(), paused));
        }
        self.mark("published", &format!("{account_id}/{event_id}"), seq);
    }

    pub(super) fn paused_deliveries(
        &mut self,
        account_id: &AccountId,
        event_id: &EventId,
        deliveries: &[(DeliveryId, WebhookId)],
        at: Timestamp,
        v: &mut Violations,
    ) {
        let owed = self.owed_paused.take();
        let got: BTreeSet<WebhookId> = deliveries.iter().map(|(_, w)| w.clone()).collect();
        match owed {
            Some((a, ev, want)) if &a == account_id && &ev == event_id => {
                if got != want || got.len() != deliveries.len() {
                    v.push(format!(
                        "{event_id} paused for {got:?}; its disabled matching webhooks are {want:?}"
                    ));
                }
            }
            _ => v.push(format!("{event_id} paused deliveries without its publish")),
        }
        for (d, w) in deliveries {
            self.create(d, w, account_id, event_id, false, at, Status::Paused, v);
        }
    }
}
