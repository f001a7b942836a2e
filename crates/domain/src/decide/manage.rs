//! Accounts and webhooks as the host manages them: the checks on their names, plans, URLs,
//! event types and filters, and what a change does to the deliveries waiting.

use super::*;

fn validated_account_name(name: &str) -> Result<String, Rejection> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Rejection::MissingField("name"));
    }
    if name.chars().count() > MAX_ACCOUNT_NAME_CHARS {
        return Err(Rejection::TooLong {
            field: "name",
            max: MAX_ACCOUNT_NAME_CHARS,
        });
    }
    crate::webhook::refuse_hidden_chars("name", name, false)?;
    Ok(name.to_owned())
}

pub(super) fn handle_create_account(
    state: &State,
    now: Timestamp,
    account_id: AccountId,
    name: String,
    plan: Plan,
    api_key_hash: String,
) -> Result<Vec<Event>, Rejection> {
    if account_id.0.is_empty()
        || account_id.0.len() > 128
        || !account_id
            .0
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(Rejection::InvalidField {
            field: "id",
            message: "must be 1 to 128 characters of letters, digits, '_' or '-'".into(),
        });
    }
    let name = validated_account_name(&name)?;
    if state.account(&account_id).is_some() {
        return Err(Rejection::AccountExists(account_id));
    }
    Ok(vec![Event::AccountCreated {
        account_id,
        name,
        plan,
        api_key_hash,
        at: now,
    }])
}

pub(super) fn handle_update_account(
    state: &State,
    now: Timestamp,
    account_id: AccountId,
    name: Option<String>,
    plan: Option<Plan>,
) -> Result<Vec<Event>, Rejection> {
    let account = find_account(state, &account_id)?;
    let name = match name {
        Some(n) => validated_account_name(&n)?,
        None => account.name.clone(),
    };
    let plan = plan.unwrap_or(account.plan);
    Ok(vec![Event::AccountUpdated {
        account_id,
        name,
        plan,
        at: now,
    }])
}

pub(super) fn handle_create_webhook(
    state: &State,
    now: Timestamp,
    account_id: AccountId,
    webhook_id: WebhookId,
    secret: SealedSecret,
    config: WebhookConfig,
) -> Result<Vec<Event>, Rejection> {
    let account = find_account(state, &account_id)?;
    if state.policy().require_pro_plan && account.plan != Plan::Pro {
        return Err(Rejection::PlanRequired(account_id));
    }
    let config = config.validated(state.policy())?;
    let max = state.policy().max_webhooks_per_account;
    if account.webhooks.len() as u32 >= max {
        return Err(Rejection::LimitReached {
            account: account_id,
            max,
        });
    }
    if state.webhook(&webhook_id).is_some() {
        return Err(Rejection::InvalidField {
            field: "webhook_id",
            message: "is already in use".into(),
        });
    }
    Ok(vec![Event::WebhookCreated {
        webhook_id,
        account_id,
        config,
        secret,
        at: now,
    }])
}

pub(super) fn handle_update_webhook(
    state: &State,
    now: Timestamp,
    account_id: &AccountId,
    webhook_id: &WebhookId,
    changes: WebhookChanges,
) -> Result<Vec<Event>, Rejection> {
    let webhook = find_webhook(state, account_id, webhook_id)?;
    let mut events = Vec::new();
    let config_changed = changes.name.is_some()
        || changes.url.is_some()
        || changes.description.is_some()
        || changes.events.is_some()
        || changes.project_ids.is_some()
        || changes.signature_scheme.is_some();
    if config_changed {
        let old = &webhook.config;
        let config = WebhookConfig {
            name: changes.name.unwrap_or_else(|| old.name.clone()),
            url: changes.url.unwrap_or_else(|| old.url.clone()),
            description: changes
                .description
                .unwrap_or_else(|| old.description.clone()),
            events: changes.events.unwrap_or_else(|| old.events.clone()),
            project_ids: changes
                .project_ids
                .unwrap_or_else(|| old.project_ids.clone()),
            signature_scheme: changes.signature_scheme.unwrap_or(old.signature_scheme),
        }
        .validated(state.policy())?;
        events.push(Event::WebhookUpdated {
            webhook_id: webhook_id.clone(),
            config,
            at: now,
        });
    }
    match changes.enabled {
        Some(true) if !webhook.enabled => {
            events.push(Event::WebhookEnabled {
                webhook_id: webhook_id.clone(),
                at: now,
            });
            events.push(alert(webhook, AlertKind::Enabled, None, None, 0, now));
        }
        Some(false) if webhook.enabled => {
            events.extend(pause_all(state, now, webhook_id));
            events.push(Event::WebhookDisabled {
                webhook_id: webhook_id.clone(),
                reason: DisabledReason::Manual,
                at: now,
            });
            events.push(alert(
                webhook,
                AlertKind::Disabled,
                Some(DisabledReason::Manual),
                None,
                webhook.consecutive_failures,
                now,
            ));
        }
        _ => {}
    }
    Ok(events)
}

/// The end of a rotation's grace (keys and secrets alike): none for no grace or a zero one,
/// refused past [`MAX_SECRET_GRACE`] (Stripe's longest roll expiry).
fn grace_until(now: Timestamp, grace: Option<DurationMs>) -> Result<Option<Timestamp>, Rejection> {
    match grace {
        Some(g) if g > MAX_SECRET_GRACE => Err(Rejection::InvalidField {
            field: "grace",
            message: format!(
                "must be at most {} hours (7 days)",
                MAX_SECRET_GRACE.as_millis() / 3_600_000
            ),
        }),
        Some(g) if g.as_millis() > 0 => Ok(Some(now.plus(g))),
        _ => Ok(None),
    }
}

pub(super) fn handle_rotate_account_key(
    state: &State,
    now: Timestamp,
    account_id: AccountId,
    api_key_hash: String,
    grace: DurationMs,
) -> Result<Vec<Event>, Rejection> {
    find_account(state, &account_id)?;
    Ok(vec![Event::AccountKeyRotated {
        account_id,
        api_key_hash,
        previous_valid_until: grace_until(now, Some(grace))?,
        at: now,
    }])
}

/// Deleting an account deletes its webhooks first, in the same decision.
pub(super) fn handle_delete_account(
    state: &State,
    now: Timestamp,
    account_id: AccountId,
) -> Result<Vec<Event>, Rejection> {
    find_account(state, &account_id)?;
    let mut events = Vec::new();
    for w in state.webhooks_of(&account_id) {
        events.extend(delete_webhook(state, now, w.id.clone()));
    }
    events.push(Event::AccountDeleted {
        account_id,
        at: now,
    });
    Ok(events)
}

/// A found webhook's deletion: its waiting deliveries are cancelled first.
pub(super) fn delete_webhook(state: &State, now: Timestamp, webhook_id: WebhookId) -> Vec<Event> {
    let mut events = cancel_all(state, now, &webhook_id, true);
    events.push(Event::WebhookDeleted {
        webhook_id,
        at: now,
    });
    events
}

pub(super) fn handle_rotate_secret(
    state: &State,
    now: Timestamp,
    account_id: AccountId,
    webhook_id: WebhookId,
    secret: SealedSecret,
    grace: Option<DurationMs>,
) -> Result<Vec<Event>, Rejection> {
    let webhook = find_webhook(state, &account_id, &webhook_id)?;
    // A rotation during a grace replaces the older secret, so at most two secrets ever sign.
    let previous = grace_until(now, grace)?.map(|until| PreviousSecret {
        secret: webhook.secret.clone(),
        until,
    });
    Ok(vec![Event::SecretRotated {
        webhook_id,
        secret,
        previous,
        at: now,
    }])
}

/// The same secrets sealed under a new master key; a running grace goes on under it.
pub(super) fn handle_reseal_secret(
    state: &State,
    now: Timestamp,
    account_id: AccountId,
    webhook_id: WebhookId,
    secret: SealedSecret,
    previous: Option<SealedSecret>,
) -> Result<Vec<Event>, Rejection> {
    let webhook = find_webhook(state, &account_id, &webhook_id)?;
    // An ended grace is dropped here rather than carried on under the new key.
    let previous = match (&webhook.previous_secret, previous) {
        (Some(p), Some(sealed)) if p.signs_at(now) => Some(PreviousSecret {
            secret: sealed,
            until: p.until,
        }),
        _ => None,
    };
    Ok(vec![Event::SecretRotated {
        webhook_id,
        secret,
        previous,
        at: now,
    }])
}
