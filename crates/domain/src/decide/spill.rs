//! Spilling decisions: which waiting deliveries move to the store, and checking the loads and
//! settlements the runtime reads back from the store's spill index against the state.

use super::*;
use crate::spill::{Settle, SpilledDelivery};

pub(super) fn handle_spill(state: &State, now: Timestamp, keep: usize) -> Vec<Event> {
    state
        .to_spill(keep)
        .into_iter()
        .map(
            |(webhook_id, generation, deliveries)| Event::DeliveriesSpilled {
                webhook_id,
                generation,
                deliveries,
                at: now,
            },
        )
        .collect()
}

/// A load or settlement that does not match the state: the runtime read the spill index at
/// the wrong moment (a bug), so nothing is decided.
fn mismatch(message: String) -> Rejection {
    Rejection::InvalidRequest(format!("spill index: {message}"))
}

pub(super) fn handle_load(
    state: &State,
    now: Timestamp,
    webhook_id: WebhookId,
    generation: u32,
    deliveries: Vec<SpilledDelivery>,
    next: Option<(Timestamp, DeliveryId)>,
) -> Result<Vec<Event>, Rejection> {
    let Some(tier) = state.spill_tier(&webhook_id) else {
        return Err(Rejection::WebhookNotFound(webhook_id));
    };
    let (current, count, floor) = (tier.generation, tier.count, tier.floor.as_ref());
    if generation != current {
        return Err(mismatch(format!(
            "a load from generation {generation} of {webhook_id}, whose current one is {current}"
        )));
    }
    let n = deliveries.len() as u64;
    if n == 0 || n > count {
        return Err(mismatch(format!(
            "{n} deliveries loaded for {webhook_id}, which has {count} spilled"
        )));
    }
    if next.is_none() != (n == count) {
        return Err(mismatch(format!(
            "the load for {webhook_id} must name the next spilled key exactly when some are left"
        )));
    }
    // The first loaded is the floor, and the keys go up to the next one left spilled.
    let first = deliveries[0].key();
    if floor.map(|(due, id)| (*due, id)) != Some(first) {
        return Err(mismatch(format!(
            "the load for {webhook_id} does not start at its first spilled delivery"
        )));
    }
    let keys = deliveries
        .iter()
        .map(|d| d.key())
        .chain(next.as_ref().map(|(due, id)| (*due, id)));
    let mut previous = None;
    for key in keys {
        if previous.is_some_and(|p| p >= key) {
            return Err(mismatch(format!(
                "the load for {webhook_id} is not in queue order"
            )));
        }
        previous = Some(key);
    }
    if let Some(d) = deliveries.iter().find(|d| state.delivery(&d.id).is_some()) {
        return Err(mismatch(format!(
            "{} is spilled and in memory at once",
            d.id
        )));
    }
    Ok(vec![Event::DeliveriesLoaded {
        webhook_id,
        generation,
        deliveries,
        next,
        at: now,
    }])
}

pub(super) fn handle_settle(
    state: &State,
    now: Timestamp,
    webhook_id: WebhookId,
    generation: u32,
    deliveries: Vec<SpilledDelivery>,
) -> Result<Vec<Event>, Rejection> {
    let Some(settling) = state.settling_of(&webhook_id, generation) else {
        return Err(mismatch(format!(
            "nothing of generation {generation} of {webhook_id} is left to settle"
        )));
    };
    let n = deliveries.len() as u64;
    if n == 0 || n > settling.count {
        return Err(mismatch(format!(
            "{n} deliveries settled for generation {generation} of {webhook_id}, which has {} left",
            settling.count
        )));
    }
    if deliveries
        .windows(2)
        .any(|pair| pair[0].key() >= pair[1].key())
    {
        return Err(mismatch(format!(
            "the settlement for {webhook_id} is not in queue order"
        )));
    }
    let live = state.webhook(&webhook_id).is_some();
    let (mut paused, mut cancelled, mut kept) = (Vec::new(), Vec::new(), Vec::new());
    for d in deliveries {
        match (settling.settle, d.test) {
            // Test sends go on while a webhook is disabled; deleting it cancels them.
            (Settle::Paused, true) if live => {
                if state.delivery(&d.id).is_some() {
                    return Err(mismatch(format!(
                        "{} is spilled and in memory at once",
                        d.id
                    )));
                }
                kept.push(d);
            }
            (Settle::Paused, false) => paused.push((d.due, d.id)),
            _ => cancelled.push((d.due, d.id)),
        }
    }
    Ok(vec![Event::SpilledDeliveriesSettled {
        webhook_id,
        generation,
        paused,
        cancelled,
        kept,
        at: now,
    }])
}
