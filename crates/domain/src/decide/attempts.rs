//! The attempt lifecycle: starting due attempts on a tick, recording each outcome, and the
//! failure rule (the retry schedule, the consecutive-failure counter, auto-disable).

use super::*;
use crate::attempt::AttemptDetail;
use std::sync::Arc;

pub(super) fn handle_tick(state: &State, now: Timestamp, max_starts: usize) -> Vec<Event> {
    // Timeouts first, one at a time: each may disable a webhook, which changes what follows.
    if let Some(d) = state.first_expired(now) {
        let started_at = d.open.map(|o| o.started_at).unwrap_or(now);
        return fail_attempt(
            state,
            now,
            d,
            None,
            AttemptError::Timeout,
            now.since(started_at),
            None,
        );
    }
    let policy = state.policy();
    let deadline = now
        .plus(policy.attempt_timeout)
        .plus(policy.attempt_deadline_grace);
    let mut events = Vec::new();
    let mut budget = max_starts;
    for webhook_id in state.ready_at(now) {
        if budget == 0 {
            break;
        }
        // The schedule readies live webhooks only.
        debug_assert!(
            state.webhook(webhook_id).is_some(),
            "{webhook_id} ready but not live"
        );
        let room = policy
            .max_open_per_webhook()
            .saturating_sub(state.in_flight_of(webhook_id)) as usize;
        for delivery_id in state.queue_due(webhook_id, now).take(room.min(budget)) {
            let Some(d) = state.delivery(delivery_id) else {
                continue;
            };
            events.push(Event::AttemptStarted {
                delivery_id: delivery_id.clone(),
                attempt: d.attempts_made + 1,
                deadline,
                at: now,
            });
            budget -= 1;
        }
    }
    events
}

/// An open attempt given up unsent: started again from the queue, its number free again.
pub(super) fn handle_abandon(
    state: &State,
    now: Timestamp,
    delivery_id: &DeliveryId,
    attempt: u32,
) -> Result<Vec<Event>, Rejection> {
    let open = state.delivery(delivery_id).and_then(|d| d.open);
    if open.is_none_or(|o| o.attempt != attempt) {
        return Err(Rejection::AttemptNotOpen {
            delivery_id: delivery_id.clone(),
            attempt,
        });
    }
    Ok(vec![Event::AttemptAbandoned {
        delivery_id: delivery_id.clone(),
        attempt,
        at: now,
    }])
}

pub(super) fn handle_outcome(
    state: &State,
    now: Timestamp,
    delivery_id: &DeliveryId,
    attempt: u32,
    outcome: Outcome,
    detail: Option<Arc<AttemptDetail>>,
) -> Result<Vec<Event>, Rejection> {
    let not_open = || Rejection::AttemptNotOpen {
        delivery_id: delivery_id.clone(),
        attempt,
    };
    let d = state.delivery(delivery_id).ok_or_else(not_open)?;
    let open = d.open.ok_or_else(not_open)?;
    if open.attempt != attempt {
        return Err(not_open());
    }
    let timeout = state.policy().attempt_timeout;
    Ok(match outcome {
        Outcome::Response { status, duration }
            if (200..300).contains(&status) && duration <= timeout =>
        {
            let mut events = vec![Event::AttemptSucceeded {
                delivery_id: delivery_id.clone(),
                attempt,
                status_code: status,
                duration,
                started_at: open.started_at,
                detail,
                at: now,
            }];
            // The success that ends a streak the host was warned about.
            let warn_at = state.policy().failing_alert_after;
            if let Some(w) = state.webhook(&d.webhook_id) {
                if !d.test
                    && !d.cancelled
                    && w.enabled
                    && warn_at > 0
                    && w.consecutive_failures >= warn_at
                {
                    events.push(alert(
                        w,
                        AlertKind::Recovered,
                        None,
                        None,
                        w.consecutive_failures,
                        now,
                    ));
                }
            }
            events
        }
        Outcome::Response { status, duration } => {
            let error = if (200..300).contains(&status) {
                AttemptError::Timeout
            } else {
                AttemptError::HttpStatus
            };
            fail_attempt(state, now, d, Some(status), error, duration, detail)
        }
        Outcome::Error { error, duration } => {
            fail_attempt(state, now, d, None, error, duration, detail)
        }
    })
}

/// The events of a failed attempt: the failure with its next due time, and, when this failure
/// reaches the limit, the webhook's auto-disable with every pending real delivery cancelled.
fn fail_attempt(
    state: &State,
    now: Timestamp,
    d: &Delivery,
    status_code: Option<u16>,
    error: AttemptError,
    duration: DurationMs,
    detail: Option<Arc<AttemptDetail>>,
) -> Vec<Event> {
    let policy = state.policy();
    // A recovered delivery runs a fresh schedule after the attempts it had: its attempts
    // before the recover are those beyond the schedule's length.
    let before_schedule = d.max_attempts.saturating_sub(policy.max_attempts());
    let next_due = if d.cancelled || d.attempts_made >= d.max_attempts {
        None
    } else {
        policy
            .retry_delays
            .get(d.attempts_made.saturating_sub(before_schedule) as usize)
            .map(|delay| now.plus(*delay))
    };
    let open = d.open.map(|o| o.attempt).unwrap_or(d.attempts_made);
    let mut events = vec![Event::AttemptFailed {
        delivery_id: d.id.clone(),
        attempt: open,
        status_code,
        error,
        duration,
        started_at: d.open.map(|o| o.started_at).unwrap_or(now),
        next_due,
        detail,
        at: now,
    }];
    let counts = !d.test && !d.cancelled;
    if let Some(webhook) = state.webhook(&d.webhook_id) {
        if counts
            && webhook.enabled
            && webhook.consecutive_failures + 1 >= policy.auto_disable_after
        {
            events.push(Event::WebhookDisabled {
                webhook_id: d.webhook_id.clone(),
                reason: DisabledReason::ConsecutiveFailures,
                at: now,
            });
            // This delivery too, unless the failure already finished it.
            events.extend(pause_where(state, now, &d.webhook_id, |other| {
                !other.test && (other.id != d.id || next_due.is_some())
            }));
            events.push(alert(
                webhook,
                AlertKind::Disabled,
                Some(DisabledReason::ConsecutiveFailures),
                Some(error),
                webhook.consecutive_failures + 1,
                now,
            ));
        } else if counts
            && webhook.enabled
            && policy.failing_alert_after > 0
            && webhook.consecutive_failures + 1 == policy.failing_alert_after
        {
            events.push(alert(
                webhook,
                AlertKind::Failing,
                None,
                Some(error),
                webhook.consecutive_failures + 1,
                now,
            ));
        }
    }
    events
}
