//! `decide`: checks a command against the state and the policy and returns the facts it
//! produces. It reads the state only; the caller persists the events, then applies them.

mod attempts;
mod manage;
mod spill;

use attempts::{handle_abandon, handle_outcome, handle_tick};
use manage::{
    delete_webhook, handle_create_account, handle_create_webhook, handle_delete_account,
    handle_reseal_secret, handle_rotate_account_key, handle_rotate_secret, handle_update_account,
    handle_update_webhook,
};
use spill::{handle_load, handle_settle, handle_spill};

use crate::alert::{Alert, AlertKind};
use crate::command::{Command, CommandKind, DeliverySummary, RecoverCandidate, WebhookChanges};
use crate::envelope::{self, PreparedEvent};
use crate::event::Event;
use crate::rejection::Rejection;
use crate::state::{Delivery, Published, State};
use crate::types::{
    AccountId, AttemptError, DeliveryId, DisabledReason, DurationMs, EventId, Outcome, Plan,
    Timestamp, WebhookId,
};
use crate::webhook::{PreviousSecret, SealedSecret, WebhookConfig, MAX_SECRET_GRACE};

/// Longest account name, in characters.
pub const MAX_ACCOUNT_NAME_CHARS: usize = 200;

/// Decides a command: `Ok(events)` (possibly none, for a spurious tick) or why it is refused.
pub fn decide(state: &State, cmd: Command) -> Result<Vec<Event>, Rejection> {
    let now = cmd.now;
    match cmd.kind {
        CommandKind::CreateAccount {
            account_id,
            name,
            plan,
            api_key_hash,
        } => handle_create_account(state, now, account_id, name, plan, api_key_hash),
        CommandKind::UpdateAccount {
            account_id,
            name,
            plan,
        } => handle_update_account(state, now, account_id, name, plan),
        CommandKind::RotateAccountKey {
            account_id,
            api_key_hash,
            grace,
        } => handle_rotate_account_key(state, now, account_id, api_key_hash, grace),
        CommandKind::DeleteAccount { account_id } => handle_delete_account(state, now, account_id),
        CommandKind::CreateWebhook {
            account_id,
            webhook_id,
            secret,
            config,
        } => handle_create_webhook(state, now, account_id, webhook_id, secret, config),
        CommandKind::UpdateWebhook {
            account_id,
            webhook_id,
            changes,
        } => handle_update_webhook(state, now, &account_id, &webhook_id, changes),
        CommandKind::DeleteWebhook {
            account_id,
            webhook_id,
        } => {
            find_webhook(state, &account_id, &webhook_id)?;
            Ok(delete_webhook(state, now, webhook_id))
        }
        CommandKind::RotateSecret {
            account_id,
            webhook_id,
            secret,
            grace,
        } => handle_rotate_secret(state, now, account_id, webhook_id, secret, grace),
        CommandKind::ResealSecret {
            account_id,
            webhook_id,
            secret,
            previous,
        } => handle_reseal_secret(state, now, account_id, webhook_id, secret, previous),
        CommandKind::Publish {
            account_id,
            event,
            fresh_event_id,
            fan_out,
            first_index,
            remembered,
        } => handle_publish(
            state,
            now,
            account_id,
            event,
            fresh_event_id,
            fan_out.delivery(first_index),
            remembered,
        ),
        CommandKind::SendTest {
            account_id,
            webhook_id,
            delivery_id,
            event_id,
            event_type,
            example_fields,
        } => {
            let account = find_account(state, &account_id)?;
            let webhook = find_webhook(state, &account_id, &webhook_id)?;
            if state.delivery(&delivery_id).is_some() {
                return Err(Rejection::InvalidField {
                    field: "delivery_id",
                    message: "is already in use".into(),
                });
            }
            if !webhook.config.events.contains(&event_type) {
                return Err(Rejection::InvalidField {
                    field: "event_type",
                    message: format!(
                        "the webhook does not subscribe to \"{}\"",
                        crate::types::Echo(&event_type)
                    ),
                });
            }
            let body = envelope::test_payload(
                &event_id,
                &event_type,
                now,
                &account_id,
                &account.name,
                &example_fields,
            );
            Ok(vec![Event::TestDeliveryCreated {
                delivery_id,
                webhook_id,
                account_id,
                event_id,
                event_type,
                body,
                at: now,
            }])
        }
        CommandKind::RetryDelivery {
            account_id,
            delivery,
            pending,
        } => handle_retry(state, now, &account_id, delivery, pending),
        CommandKind::Tick { max_starts } => Ok(handle_tick(state, now, max_starts)),
        CommandKind::RecordOutcome {
            delivery_id,
            attempt,
            outcome,
            detail,
        } => handle_outcome(state, now, &delivery_id, attempt, outcome, detail),
        CommandKind::AbandonAttempt {
            delivery_id,
            attempt,
        } => handle_abandon(state, now, &delivery_id, attempt),
        CommandKind::Resume => Ok(state
            .open_deliveries()
            .filter_map(|d| {
                Some(Event::AttemptAbandoned {
                    delivery_id: d.id.clone(),
                    attempt: d.open?.attempt,
                    at: now,
                })
            })
            .collect()),
        CommandKind::RecoverDeliveries {
            account_id,
            webhook_id,
            candidates,
        } => handle_recover(state, now, &account_id, &webhook_id, candidates),
        CommandKind::ReplayEvent {
            account_id,
            event_id,
            event_type,
            project_id,
            webhook_ids,
            fan_out,
        } => {
            let account = find_account(state, &account_id)?;
            let targets: Vec<WebhookId> = match webhook_ids {
                // Named webhooks get it whatever their filters: the host asked for them.
                Some(ids) => {
                    let mut out: Vec<WebhookId> = Vec::new();
                    for id in ids {
                        let w = find_webhook(state, &account_id, &id)?;
                        if !w.enabled {
                            return Err(Rejection::WebhookDisabled(id));
                        }
                        if !out.contains(&id) {
                            out.push(id);
                        }
                    }
                    out
                }
                None if fans_out(state.policy(), account) => state
                    .webhooks_of(&account_id)
                    .into_iter()
                    .filter(|w| w.enabled && w.config.matches(&event_type, &project_id))
                    .map(|w| w.id.clone())
                    .collect(),
                None => Vec::new(),
            };
            if targets.is_empty() {
                return Ok(Vec::new());
            }
            let deliveries = targets
                .into_iter()
                .enumerate()
                .map(|(i, w)| (fan_out.delivery(i as u32), w))
                .collect();
            Ok(vec![Event::EventReplayed {
                account_id,
                event_id,
                event_type,
                deliveries,
                first_due: state.policy().first_due(now),
                at: now,
            }])
        }
        CommandKind::Spill { keep } => Ok(handle_spill(state, now, keep)),
        CommandKind::LoadSpilled {
            webhook_id,
            generation,
            deliveries,
            next,
        } => handle_load(state, now, webhook_id, generation, deliveries, next),
        CommandKind::SettleSpilled {
            webhook_id,
            generation,
            deliveries,
        } => handle_settle(state, now, webhook_id, generation, deliveries),
        CommandKind::ExpireIdempotencyKeys => {
            let before = state.policy().idempotency_memory_start(now);
            Ok(match state.oldest_published() {
                Some(oldest) if oldest < before => {
                    vec![Event::IdempotencyKeysExpired { before, at: now }]
                }
                _ => Vec::new(),
            })
        }
    }
}

/// Whether an account's events go to its webhooks: on the Pro plan, or with the plan rule off.
fn fans_out(policy: &crate::policy::Policy, account: &crate::state::Account) -> bool {
    !policy.require_pro_plan || account.plan == Plan::Pro
}

fn find_account<'a>(
    state: &'a State,
    account_id: &AccountId,
) -> Result<&'a crate::state::Account, Rejection> {
    state
        .account(account_id)
        .ok_or_else(|| Rejection::AccountNotFound(account_id.clone()))
}

fn find_webhook<'a>(
    state: &'a State,
    account_id: &AccountId,
    webhook_id: &WebhookId,
) -> Result<&'a crate::state::Webhook, Rejection> {
    find_account(state, account_id)?;
    state
        .webhook_of(account_id, webhook_id)
        .ok_or_else(|| Rejection::WebhookNotFound(webhook_id.clone()))
}

/// An alert about `webhook`.
fn alert(
    webhook: &crate::state::Webhook,
    kind: AlertKind,
    reason: Option<DisabledReason>,
    last_error: Option<AttemptError>,
    consecutive_failures: u32,
    now: Timestamp,
) -> Event {
    Event::AlertRaised {
        alert: Alert {
            kind,
            webhook_id: webhook.id.clone(),
            account_id: webhook.account_id.clone(),
            reason,
            last_error,
            consecutive_failures,
        },
        at: now,
    }
}

/// Cancels a webhook's unfinished deliveries; test sends too only when `include_tests`.
fn cancel_all(
    state: &State,
    now: Timestamp,
    webhook_id: &WebhookId,
    include_tests: bool,
) -> Vec<Event> {
    cancel_where(state, now, webhook_id, |d| include_tests || !d.test)
}

/// Cancels a webhook's unfinished deliveries that `which` selects, in id order.
fn cancel_where(
    state: &State,
    now: Timestamp,
    webhook_id: &WebhookId,
    which: impl Fn(&Delivery) -> bool,
) -> Vec<Event> {
    live_ids_where(state, webhook_id, which)
        .into_iter()
        .map(|id| Event::DeliveryCancelled {
            delivery_id: id.clone(),
            at: now,
        })
        .collect()
}

/// Pauses a webhook's unfinished real deliveries (a disable): they keep their attempts and
/// wait for a recover. Test sends go on, as they do while disabled.
fn pause_all(state: &State, now: Timestamp, webhook_id: &WebhookId) -> Vec<Event> {
    pause_where(state, now, webhook_id, |d| !d.test)
}

/// Pauses a webhook's unfinished deliveries that `which` selects, in id order.
fn pause_where(
    state: &State,
    now: Timestamp,
    webhook_id: &WebhookId,
    which: impl Fn(&Delivery) -> bool,
) -> Vec<Event> {
    live_ids_where(state, webhook_id, which)
        .into_iter()
        .map(|id| Event::DeliveryPaused {
            delivery_id: id.clone(),
            at: now,
        })
        .collect()
}

/// A webhook's unfinished, not cancelled deliveries that `which` selects, in id order.
fn live_ids_where<'a>(
    state: &'a State,
    webhook_id: &WebhookId,
    which: impl Fn(&Delivery) -> bool,
) -> Vec<&'a DeliveryId> {
    let mut ids: Vec<&DeliveryId> = state
        .live_deliveries_of(webhook_id)
        .into_iter()
        .filter(|d| which(d))
        .map(|d| &d.id)
        .collect();
    ids.sort();
    ids
}

fn handle_publish(
    state: &State,
    now: Timestamp,
    account_id: AccountId,
    event: PreparedEvent,
    fresh_event_id: EventId,
    first_delivery: DeliveryId,
    remembered: Option<Published>,
) -> Result<Vec<Event>, Rejection> {
    let account = find_account(state, &account_id)?;
    let policy = state.policy();
    if !policy.knows_event_type(&event.event_type) {
        return Err(Rejection::UnknownPublishedType(event.event_type));
    }
    let event_id = event.event_id.unwrap_or(fresh_event_id);
    // The store's answer counts only for this account as it is now: a deleted account's ids
    // stay in the store until its purge, and its id may be taken again. Either answer counts
    // inside the window only, whenever memory or the store forgets.
    let remembered = remembered.filter(|p| p.at >= account.created_at);
    let first = state.published(&account_id, &event_id).or(remembered);
    if let Some(first) = first.filter(|p| p.at >= policy.retention_start(now)) {
        if first.digest != event.digest {
            return Err(Rejection::EventConflict(event_id));
        }
        return Err(Rejection::EventExists {
            event_id,
            deliveries: first.deliveries,
        });
    }
    // Disabled webhooks get a paused delivery each: recorded with the body, nothing sent.
    let numbered = state.webhooks_of(&account_id).len() as u32;
    if first_delivery.index().checked_add(numbered).is_none() {
        return Err(Rejection::InvalidRequest(format!(
            "delivery numbers from {} overflow the fan-out",
            first_delivery.index()
        )));
    }
    let (deliveries, paused): (Vec<_>, Vec<_>) = if fans_out(policy, account) {
        state
            .webhooks_of(&account_id)
            .into_iter()
            .filter(|w| w.config.matches(&event.event_type, &event.project_id))
            .enumerate()
            .map(|(i, w)| {
                // In range: checked above against every webhook of the account.
                let index = first_delivery.index() + i as u32;
                let id = first_delivery.fan_out().delivery(index);
                (w.enabled, (id, w.id.clone()))
            })
            .partition(|(enabled, _)| *enabled)
    } else {
        (Vec::new(), Vec::new())
    };
    let deliveries: Vec<(DeliveryId, WebhookId)> = deliveries.into_iter().map(|(_, d)| d).collect();
    let paused: Vec<(DeliveryId, WebhookId)> = paused.into_iter().map(|(_, d)| d).collect();
    let body = if deliveries.is_empty() && paused.is_empty() {
        String::new()
    } else {
        envelope::envelope(
            &event_id,
            &event.event_type,
            now,
            &account_id,
            &account.name,
            &event.fields_json,
        )
    };
    // The limit is on what the host posts (checked by `prepare`); the envelope adds at most
    // the engine's own fields on top.
    let mut events = vec![Event::EventPublished {
        account_id: account_id.clone(),
        event_id: event_id.clone(),
        event_type: event.event_type.clone(),
        project_id: event.project_id,
        digest: event.digest,
        body,
        deliveries,
        first_due: policy.first_due(now),
        at: now,
    }];
    if !paused.is_empty() {
        events.push(Event::DeliveriesPaused {
            account_id,
            event_id,
            event_type: event.event_type,
            deliveries: paused,
            at: now,
        });
    }
    Ok(events)
}

/// A recover: every candidate of this webhook that is not a test send, did not succeed and
/// is not pending already (another recover, or a retry, sends it) is sent again, in the
/// order given, with a fresh retry schedule. Refused while the webhook is disabled.
fn handle_recover(
    state: &State,
    now: Timestamp,
    account_id: &AccountId,
    webhook_id: &WebhookId,
    candidates: Vec<RecoverCandidate>,
) -> Result<Vec<Event>, Rejection> {
    let webhook = find_webhook(state, account_id, webhook_id)?;
    if !webhook.enabled {
        return Err(Rejection::WebhookDisabled(webhook_id.clone()));
    }
    let mut seen = std::collections::HashSet::new();
    let deliveries: Vec<DeliverySummary> = candidates
        .into_iter()
        .filter(|c| {
            !c.succeeded
                && !c.delivery.test
                && &c.delivery.webhook_id == webhook_id
                && &c.delivery.account_id == account_id
                && state.delivery(&c.delivery.delivery_id).is_none()
        })
        .map(|c| c.delivery)
        .filter(|d| seen.insert(d.delivery_id.clone()))
        .collect();
    if deliveries.is_empty() {
        return Ok(Vec::new());
    }
    Ok(vec![Event::DeliveriesRecovered {
        webhook_id: webhook_id.clone(),
        deliveries,
        first_due: state.policy().first_due(now),
        at: now,
    }])
}

fn handle_retry(
    state: &State,
    now: Timestamp,
    account_id: &AccountId,
    delivery: DeliverySummary,
    pending: bool,
) -> Result<Vec<Event>, Rejection> {
    let webhook = find_webhook(state, account_id, &delivery.webhook_id)?;
    if &delivery.account_id != account_id {
        return Err(Rejection::DeliveryNotFound(delivery.delivery_id));
    }
    // Pending in history but not in memory: spilled to the store.
    if pending || state.delivery(&delivery.delivery_id).is_some() {
        return Err(Rejection::DeliveryNotFinished(delivery.delivery_id));
    }
    let cap = state.policy().attempts_cap(delivery.test);
    if delivery.attempts_made >= cap {
        return Err(Rejection::AttemptsExhausted {
            delivery_id: delivery.delivery_id,
            max: cap,
        });
    }
    if !webhook.enabled && !delivery.test {
        return Err(Rejection::WebhookDisabled(webhook.id.clone()));
    }
    Ok(vec![Event::DeliveryRetried { delivery, at: now }])
}
