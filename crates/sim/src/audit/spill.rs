//! Spilling as the log records it: a waiting delivery moves to the store's spill index and
//! back (or is settled there after a disable or delete) unchanged, and never starts an
//! attempt while it is there.

use super::{Audit, Status, Violations};
use hallway_domain::{DeliveryId, SpilledDelivery, Timestamp, WebhookId};

impl Audit {
    /// Deliveries moved to the spill index: each must be waiting (pending, no attempt open),
    /// in memory, of this webhook, and carry what the log says of it.
    pub(super) fn spilled(
        &mut self,
        webhook: &WebhookId,
        deliveries: &[SpilledDelivery],
        v: &mut Violations,
    ) {
        for s in deliveries {
            let Some(d) = self.deliveries.get_mut(&s.id) else {
                v.push(format!("unknown delivery {} spilled", s.id));
                continue;
            };
            if d.status != Status::Pending || d.open.is_some() || d.spilled {
                v.push(format!(
                    "{} spilled while {:?} (open {:?}, spilled {})",
                    s.id, d.status, d.open, d.spilled
                ));
            }
            if &d.webhook != webhook
                || d.account != s.account_id
                || d.event != s.event_id
                || d.test != s.test
                || d.attempts_made != s.attempts_made
            {
                v.push(format!("{} spilled as {s:?}, the log has {d:?}", s.id));
            }
            if s.due < d.earliest {
                v.push(format!(
                    "{} spilled due at {:?}, before its earliest {:?}",
                    s.id, s.due, d.earliest
                ));
            }
            d.spilled = true;
        }
    }

    /// A delivery back from the spill index into memory, as it went there.
    pub(super) fn unspilled(
        &mut self,
        webhook: &WebhookId,
        s: &SpilledDelivery,
        why: &str,
        v: &mut Violations,
    ) {
        let Some(d) = self.deliveries.get_mut(&s.id) else {
            v.push(format!("unknown delivery {} {why}", s.id));
            return;
        };
        if !d.spilled || d.status != Status::Pending || &d.webhook != webhook {
            v.push(format!(
                "{} {why} from {webhook}'s spill index while {:?} (spilled {}, of {})",
                s.id, d.status, d.spilled, d.webhook
            ));
        }
        if d.attempts_made != s.attempts_made || d.test != s.test || s.due < d.earliest {
            v.push(format!("{} {why} as {s:?}, the log has {d:?}", s.id));
        }
        d.spilled = false;
    }

    /// A chunk of a former generation settled: real deliveries of a disabled webhook paused,
    /// every one of a deleted webhook cancelled, test sends of a disabled one back in memory.
    pub(super) fn settled(
        &mut self,
        webhook: &WebhookId,
        paused: &[(Timestamp, DeliveryId)],
        cancelled: &[(Timestamp, DeliveryId)],
        kept: &[SpilledDelivery],
        v: &mut Violations,
    ) {
        let live = self.hooks.get(webhook).is_some_and(|h| h.live);
        for s in kept {
            if !s.test || !live {
                v.push(format!(
                    "{} kept from {webhook}'s settled spill (test {}, live {live})",
                    s.id, s.test
                ));
            }
            self.unspilled(webhook, s, "kept", v);
        }
        for (list, status) in [(paused, Status::Paused), (cancelled, Status::Cancelled)] {
            for (_, id) in list {
                match self.deliveries.get_mut(id) {
                    Some(d) if d.spilled && &d.webhook == webhook => {
                        if status == Status::Paused && d.test {
                            v.push(format!("test send {id} paused"));
                        }
                        d.spilled = false;
                    }
                    Some(d) => v.push(format!(
                        "{id} settled ({status:?}) from {webhook}'s spill index while spilled {} of {}",
                        d.spilled, d.webhook
                    )),
                    None => v.push(format!("unknown delivery {id} settled")),
                }
                self.stop(id, status, v);
            }
        }
    }
}
