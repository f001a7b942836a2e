//! The auditor's rules for attempts: when one may start, what its outcome must match on the
//! network, the retry schedule, the failure counter, and reopening by hand.

use super::{Audit, Open, Status, Violations};
use crate::net::{succeeded, Request};
use hallway_domain::{AttemptError, DeliveryId, DurationMs, Outcome, Timestamp};

impl Audit {
    pub(super) fn started(
        &mut self,
        id: &DeliveryId,
        attempt: u32,
        deadline: Timestamp,
        at: Timestamp,
        v: &mut Violations,
    ) {
        let grace = self.policy.attempt_deadline_grace;
        let timeout = self.policy.attempt_timeout;
        let per_hook = self.policy.max_open_per_webhook();
        let Some(d) = self.deliveries.get_mut(id) else {
            v.push(format!("attempt started for unknown delivery {id}"));
            return;
        };
        if d.status != Status::Pending || d.open.is_some() || d.spilled {
            v.push(format!(
                "{id} attempt {attempt} started while {:?} (open {:?}, spilled {})",
                d.status, d.open, d.spilled
            ));
        }
        match self.hooks.get(&d.webhook) {
            Some(h) if h.live && (h.enabled || d.test) => {}
            Some(h) => v.push(format!(
                "{id} attempt {attempt} started for {} (enabled {}, live {})",
                d.webhook, h.enabled, h.live
            )),
            None => v.push(format!("{id} started for unknown webhook {}", d.webhook)),
        }
        if attempt != d.attempts_made + 1 {
            v.push(format!(
                "{id} started attempt {attempt} after {} attempts",
                d.attempts_made
            ));
        }
        if attempt > d.cap {
            v.push(format!(
                "{id} started attempt {attempt}, past its cap of {}",
                d.cap
            ));
        }
        if at < d.earliest {
            v.push(format!(
                "{id} attempt {attempt} started at {at:?}, {} ms before its delay allows",
                d.earliest.0 - at.0
            ));
        }
        if deadline != at.plus(timeout).plus(grace) {
            v.push(format!(
                "{id} attempt {attempt} deadline {deadline:?} at {at:?}"
            ));
        }
        d.attempts_made = attempt;
        d.open = Some(Open {
            attempt,
            at,
            request: None,
        });
        let webhook = d.webhook.clone();
        let n = self.open_per_hook.entry(webhook.clone()).or_default();
        *n += 1;
        if *n > per_hook {
            v.push(format!(
                "{webhook} has {n} attempts open, over its limit of {per_hook}"
            ));
        }
        self.open_total += 1;
        if self.open_total > self.max_in_flight {
            v.push(format!(
                "{} attempts open, over the engine's limit of {}",
                self.open_total, self.max_in_flight
            ));
        }
    }

    /// Ends the open attempt `attempt` of `id`; returns it.
    pub(super) fn close(
        &mut self,
        id: &DeliveryId,
        attempt: u32,
        started_at: Timestamp,
        v: &mut Violations,
    ) -> Option<Open> {
        let Some(d) = self.deliveries.get_mut(id) else {
            v.push(format!(
                "outcome of attempt {attempt} of unknown delivery {id}"
            ));
            return None;
        };
        let open = match d.open.take() {
            Some(o) if o.attempt == attempt => o,
            other => {
                v.push(format!(
                    "{id} attempt {attempt} ended while {other:?} was open"
                ));
                d.open = other;
                return None;
            }
        };
        if started_at != Timestamp(0) && started_at != open.at {
            v.push(format!(
                "{id} attempt {attempt} recorded as started {started_at:?}, it started {:?}",
                open.at
            ));
        }
        if let Some(n) = self.open_per_hook.get_mut(&d.webhook) {
            *n = n.saturating_sub(1);
        }
        self.open_total = self.open_total.saturating_sub(1);
        Some(open)
    }

    /// Checks a recorded failure against what the network did.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn check_failure(
        &self,
        id: &DeliveryId,
        open: &Open,
        status_code: Option<u16>,
        error: AttemptError,
        duration: DurationMs,
        at: Timestamp,
        requests: &[Request],
        v: &mut Violations,
    ) {
        let attempt = open.attempt;
        let timeout = self.policy.attempt_timeout;
        let recorded = (status_code, error);
        match open.request.and_then(|r| requests.get(r)) {
            Some(r) => match r.result {
                Some(outcome) => {
                    let expected = match outcome {
                        Outcome::Response { status, .. } if (200..300).contains(&status) => {
                            (Some(status), AttemptError::Timeout)
                        }
                        Outcome::Response { status, .. } => (Some(status), AttemptError::HttpStatus),
                        Outcome::Error { error, .. } => (None, error),
                    };
                    let took = match outcome {
                        Outcome::Response { duration, .. } | Outcome::Error { duration, .. } => {
                            duration
                        }
                    };
                    if succeeded(&outcome, timeout) {
                        v.push(format!(
                            "{id} attempt {attempt} recorded as failed ({recorded:?}), the network answered {outcome:?}"
                        ));
                    } else if expected != recorded || took != duration {
                        v.push(format!(
                            "{id} attempt {attempt} recorded as {recorded:?} in {duration:?}, the network answered {outcome:?}"
                        ));
                    }
                }
                // Still on the wire. The network answers within the attempt timeout, well
                // before the deadline, so only a lost report ends an attempt this way.
                None => v.push(format!(
                    "{id} attempt {attempt} recorded as {recorded:?} while its request was still out (a lost report)"
                )),
            },
            None => {
                // An attempt that could not be sent (its webhook deleted meanwhile, its body
                // gone) fails at once, or when its turn in its webhook's lane comes; one that was never sent and timed out at its deadline
                // was lost, since a restart abandons and resends every open attempt.
                // One that waited in its webhook's lane finds the deletion when its turn comes.
                let unsent = matches!(error, AttemptError::Connect | AttemptError::InvalidResponse);
                let deleted = self
                    .deliveries
                    .get(id)
                    .and_then(|d| self.hooks.get(&d.webhook))
                    .is_some_and(|h| !h.live);
                let waited = error == AttemptError::Connect && deleted;
                if !unsent || (at > open.at && !waited) {
                    v.push(format!(
                        "{id} attempt {attempt} recorded as {recorded:?} at {at:?} though it was never sent (started {:?})",
                        open.at
                    ));
                }
            }
        }
    }

    /// A failure's bookkeeping: the counter, and the next attempt's time.
    pub(super) fn failed(
        &mut self,
        id: &DeliveryId,
        next_due: Option<Timestamp>,
        at: Timestamp,
        v: &mut Violations,
    ) {
        let Some(d) = self.deliveries.get_mut(id) else {
            return;
        };
        d.recorded += 1;
        d.schedule_pos += 1;
        if !d.test && !d.cancelled {
            if let Some(h) = self.hooks.get_mut(&d.webhook) {
                h.failures += 1;
            }
        }
        let expected = if d.cancelled || d.attempts_made >= d.cap {
            None
        } else {
            self.policy
                .retry_delays
                .get(d.schedule_pos as usize)
                .map(|delay| at.plus(*delay))
        };
        if next_due != expected {
            v.push(format!(
                "{id} attempt {} failed at {at:?} with its next due {next_due:?}, not {expected:?}",
                d.attempts_made
            ));
        }
        match expected {
            Some(due) if !d.cancelled => d.earliest = due,
            _ if d.cancelled => d.cancelled = false,
            _ => d.status = Status::Failed,
        }
    }

    /// A delivery's webhook was disabled (paused) or deleted (cancelled).
    pub(super) fn stop(&mut self, id: &DeliveryId, status: Status, v: &mut Violations) {
        let Some(d) = self.deliveries.get_mut(id) else {
            v.push(format!("unknown delivery {id} stopped"));
            return;
        };
        if d.status != Status::Pending {
            v.push(format!("{id} stopped ({status:?}) while {:?}", d.status));
        }
        d.status = status;
        if d.open.is_some() {
            d.cancelled = true;
        }
    }

    /// A finished delivery pending again (a retry or a recover) with `more` attempts.
    pub(super) fn reopen(
        &mut self,
        id: &DeliveryId,
        attempts_made: u32,
        due: Timestamp,
        more: u32,
        why: &str,
        v: &mut Violations,
    ) {
        let Some(d) = self.deliveries.get_mut(id) else {
            v.push(format!("unknown delivery {id} {why}"));
            return;
        };
        if d.status == Status::Pending || d.open.is_some() {
            v.push(format!("{id} {why} while {:?}", d.status));
        }
        if attempts_made != d.recorded {
            v.push(format!(
                "{id} {why} with {attempts_made} attempts, history has {}",
                d.recorded
            ));
        }
        if !self
            .hooks
            .get(&d.webhook)
            .is_some_and(|h| h.live && (h.enabled || d.test))
        {
            v.push(format!(
                "{id} {why} for a disabled or deleted {}",
                d.webhook
            ));
        }
        d.status = Status::Pending;
        d.attempts_made = attempts_made;
        d.cap = attempts_made + more;
        d.schedule_pos = 0;
        d.earliest = due;
        d.cancelled = false;
    }

    /// Counts an outcome as history does (every recorded success too).
    pub(super) fn recorded_success(&mut self, id: &DeliveryId) {
        if let Some(d) = self.deliveries.get_mut(id) {
            d.recorded += 1;
        }
    }
}
