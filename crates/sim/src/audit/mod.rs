//! The auditor: reads every durable log record, in order, and checks each decision against
//! the rules (written here again, independently of the domain) and against what the network
//! really did. It also keeps a replica of the state, rebuilt by applying the durable log, for
//! comparing with the running engine's.
//!
//! Durable records only: what a crash lost was never decided, and what a flush made durable
//! stays, so the auditor only moves forward.

use crate::net::{succeeded, Request};
use hallway_domain::{
    AccountId, DeliveryId, DisabledReason, DurationMs, Event, EventId, Outcome, Plan, Policy,
    State, Timestamp, WebhookConfig, WebhookId,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};

mod attempts;
mod publish;
mod spill;
#[cfg(test)]
mod tests;

use publish::Publish;

/// A webhook as the log has it.
#[derive(Clone, Debug)]
pub struct Hook {
    /// Its account.
    pub account: AccountId,
    /// Its configuration now.
    pub config: WebhookConfig,
    /// Whether real deliveries go to it.
    pub enabled: bool,
    /// Counted failures since the last success or enable.
    pub failures: u32,
    /// Not deleted.
    pub live: bool,
}

/// Where a delivery stands, as the log has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// More attempts may follow.
    Pending,
    /// A 2xx arrived in time.
    Succeeded,
    /// Its attempts ran out.
    Failed,
    /// Its webhook was deleted.
    Cancelled,
    /// Its webhook was disabled; a recover may send it again.
    Paused,
}

/// An attempt the log says started and has not ended.
#[derive(Clone, Copy, Debug)]
pub struct Open {
    attempt: u32,
    at: Timestamp,
    /// The request that carried it, once one did.
    request: Option<usize>,
}

/// A delivery as the log has it.
#[derive(Clone, Debug)]
pub struct Dlv {
    /// Its webhook.
    pub webhook: WebhookId,
    /// Its account.
    pub account: AccountId,
    /// Its event.
    pub event: EventId,
    /// A test send.
    pub test: bool,
    /// Where it stands.
    pub status: Status,
    /// Attempts started (an abandoned one is started again with its number).
    attempts_made: u32,
    /// Attempts with a recorded outcome (what history lists).
    pub recorded: u32,
    /// The highest attempt number it may reach now.
    cap: u32,
    /// Attempts made in its current schedule (the index of the next retry delay).
    schedule_pos: u32,
    /// No attempt may start before this.
    earliest: Timestamp,
    open: Option<Open>,
    /// Paused or cancelled while an attempt was open: that outcome counts for nothing.
    cancelled: bool,
    /// Moved to the store's spill index, and not loaded or settled since.
    spilled: bool,
}

/// See the module documentation.
pub struct Audit {
    policy: Policy,
    max_in_flight: usize,
    accounts: HashMap<AccountId, Plan>,
    /// Every webhook ever created, by id.
    pub hooks: BTreeMap<WebhookId, Hook>,
    /// Every URL a webhook had, to its webhook (URLs are unique in the simulation).
    pub urls: HashMap<String, WebhookId>,
    /// Every delivery, by id.
    pub deliveries: BTreeMap<DeliveryId, Dlv>,
    by_key: HashMap<(WebhookId, EventId), Vec<DeliveryId>>,
    /// Remembered publishes: when, how many deliveries, in which record.
    pub published: HashMap<(AccountId, EventId), (Timestamp, u32, u64)>,
    open_per_hook: HashMap<WebhookId, u32>,
    open_total: usize,
    /// The state the durable log builds.
    pub replica: State,
    /// The last durable record applied.
    pub seq: u64,
    /// The record a restart's resume may come in (abandoned attempts are legal only there).
    pub resume_seq: Option<u64>,
    /// Retries and recovers the workload asked for and the log has not shown yet.
    pub retries_asked: HashMap<DeliveryId, u32>,
    /// Recovers asked for, per webhook.
    pub recovers_asked: HashMap<WebhookId, u32>,
    /// The latest record with a fact of each kind about a subject (`"rotated wh_.."`).
    pub marks: HashMap<String, u64>,
    /// The paused deliveries the publish just seen owes, if any.
    owed_paused: Option<(AccountId, EventId, BTreeSet<WebhookId>)>,
}

/// Violations found, in order.
pub type Violations = Vec<String>;

impl Audit {
    /// An auditor for an engine with `policy` and `max_in_flight`.
    pub fn new(policy: Policy, max_in_flight: usize) -> Audit {
        Audit {
            replica: State::new(policy.clone()),
            policy,
            max_in_flight,
            accounts: HashMap::new(),
            hooks: BTreeMap::new(),
            urls: HashMap::new(),
            deliveries: BTreeMap::new(),
            by_key: HashMap::new(),
            published: HashMap::new(),
            open_per_hook: HashMap::new(),
            open_total: 0,
            seq: 0,
            resume_seq: None,
            retries_asked: HashMap::new(),
            recovers_asked: HashMap::new(),
            marks: HashMap::new(),
            owed_paused: None,
        }
    }

    /// The first open, durable attempt of `(webhook, event)` no request has carried yet:
    /// a request must carry one. Marks it carried by `request`.
    pub fn carry(&mut self, webhook: &WebhookId, event: &EventId, request: usize) -> bool {
        let Some(ids) = self.by_key.get(&(webhook.clone(), event.clone())) else {
            return false;
        };
        for id in ids {
            if let Some(open) = self.deliveries.get_mut(id).and_then(|d| d.open.as_mut()) {
                if open.request.is_none() {
                    open.request = Some(request);
                    return true;
                }
            }
        }
        false
    }

    /// Applies one durable record; returns what it broke.
    pub fn apply_record(&mut self, seq: u64, events: &[Event], requests: &[Request]) -> Violations {
        let mut v = Violations::new();
        if seq != self.seq + 1 {
            v.push(format!("durable record {seq} follows {}", self.seq));
        }
        let resume = self.resume_seq == Some(seq);
        for e in events {
            self.event(seq, e, resume, requests, &mut v);
            self.replica.apply(e);
        }
        if let Some((_, event, hooks)) = self.owed_paused.take() {
            v.push(format!(
                "publish of {event} paused nothing, though {hooks:?} match and are disabled"
            ));
        }
        let limit = self.policy.auto_disable_after;
        for (id, h) in &self.hooks {
            if h.live && h.enabled && h.failures >= limit {
                v.push(format!(
                    "{id} is still enabled after {} consecutive failures (limit {limit})",
                    h.failures
                ));
            }
        }
        self.seq = seq;
        self.resume_seq = self.resume_seq.filter(|s| *s > seq);
        v
    }

    fn mark(&mut self, what: &str, subject: &str, seq: u64) {
        self.marks.insert(format!("{what} {subject}"), seq);
    }

    /// The latest record with a fact `what` about `subject`.
    pub fn marked(&self, what: &str, subject: &str) -> Option<u64> {
        self.marks.get(&format!("{what} {subject}")).copied()
    }

    fn event(
        &mut self,
        seq: u64,
        e: &Event,
        resume: bool,
        requests: &[Request],
        v: &mut Violations,
    ) {
        let owes = |owed: &(AccountId, EventId, BTreeSet<WebhookId>)| {
            !matches!(e, Event::DeliveriesPaused { account_id, event_id, .. }
                if *account_id == owed.0 && *event_id == owed.1)
        };
        if self.owed_paused.as_ref().is_some_and(owes) {
            if let Some((_, event, hooks)) = self.owed_paused.take() {
                v.push(format!(
                    "publish of {event} paused nothing, though {hooks:?} match and are disabled"
                ));
            }
        }
        match e {
            Event::AccountCreated {
                account_id, plan, ..
            } => {
                self.accounts.insert(account_id.clone(), *plan);
                self.mark("account", account_id.as_str(), seq);
            }
            Event::AccountUpdated {
                account_id, plan, ..
            } => {
                self.accounts.insert(account_id.clone(), *plan);
            }
            // The workload never deletes an account; its webhooks' deletions come before it.
            Event::AccountDeleted { account_id, .. } => {
                self.accounts.remove(account_id);
            }
            Event::AccountKeyRotated { .. } => {}
            Event::WebhookCreated {
                webhook_id,
                account_id,
                config,
                ..
            } => {
                self.urls.insert(config.url.clone(), webhook_id.clone());
                self.hooks.insert(
                    webhook_id.clone(),
                    Hook {
                        account: account_id.clone(),
                        config: config.clone(),
                        enabled: true,
                        failures: 0,
                        live: true,
                    },
                );
                self.mark("created", webhook_id.as_str(), seq);
            }
            Event::WebhookUpdated {
                webhook_id, config, ..
            } => {
                self.urls.insert(config.url.clone(), webhook_id.clone());
                if let Some(h) = self.hooks.get_mut(webhook_id) {
                    h.config = config.clone();
                }
                self.mark("changed", webhook_id.as_str(), seq);
            }
            Event::WebhookEnabled { webhook_id, .. } => {
                if let Some(h) = self.hooks.get_mut(webhook_id) {
                    h.enabled = true;
                    h.failures = 0;
                }
                self.mark("changed", webhook_id.as_str(), seq);
            }
            Event::WebhookDisabled {
                webhook_id, reason, ..
            } => {
                let limit = self.policy.auto_disable_after;
                if let Some(h) = self.hooks.get_mut(webhook_id) {
                    if *reason == DisabledReason::ConsecutiveFailures && h.failures != limit {
                        v.push(format!(
                            "{webhook_id} auto-disabled after {} consecutive failures, not {limit}",
                            h.failures
                        ));
                    }
                    if !h.enabled {
                        v.push(format!("{webhook_id} disabled while disabled"));
                    }
                    h.enabled = false;
                }
                self.mark("changed", webhook_id.as_str(), seq);
            }
            Event::WebhookDeleted { webhook_id, .. } => {
                if let Some(h) = self.hooks.get_mut(webhook_id) {
                    h.live = false;
                }
                // Spilled ones are cancelled as their former generation is settled.
                for (id, d) in &self.deliveries {
                    if &d.webhook == webhook_id
                        && d.status == Status::Pending
                        && d.open.is_none()
                        && !d.spilled
                    {
                        v.push(format!("{id} left pending by the delete of {webhook_id}"));
                    }
                }
                self.mark("deleted", webhook_id.as_str(), seq);
            }
            Event::SecretRotated { webhook_id, .. } => {
                self.mark("rotated", webhook_id.as_str(), seq);
            }
            Event::EventPublished {
                account_id,
                event_id,
                event_type,
                project_id,
                deliveries,
                first_due,
                at,
                ..
            } => {
                let publish = Publish {
                    account: account_id,
                    event: event_id,
                    event_type,
                    project: project_id,
                    at: *at,
                };
                self.published_event(seq, publish, deliveries, *first_due, v);
            }
            Event::DeliveriesPaused {
                account_id,
                event_id,
                deliveries,
                at,
                ..
            } => self.paused_deliveries(account_id, event_id, deliveries, *at, v),
            Event::TestDeliveryCreated {
                delivery_id,
                webhook_id,
                account_id,
                event_id,
                at,
                ..
            } => {
                if !self.hooks.get(webhook_id).is_some_and(|h| h.live) {
                    v.push(format!(
                        "test send {delivery_id} for a deleted {webhook_id}"
                    ));
                }
                self.create(
                    delivery_id,
                    webhook_id,
                    account_id,
                    event_id,
                    true,
                    *at,
                    Status::Pending,
                    v,
                );
                self.mark("test", &delivery_id.to_string(), seq);
            }
            Event::AttemptStarted {
                delivery_id,
                attempt,
                deadline,
                at,
            } => self.started(delivery_id, *attempt, *deadline, *at, v),
            Event::AttemptSucceeded {
                delivery_id,
                attempt,
                status_code,
                duration,
                started_at,
                ..
            } => {
                let outcome = Outcome::Response {
                    status: *status_code,
                    duration: *duration,
                };
                let Some(open) = self.close(delivery_id, *attempt, *started_at, v) else {
                    return;
                };
                match open.request.and_then(|r| requests.get(r)) {
                    Some(r) if r.result.is_some_and(|o| o == outcome) => {}
                    Some(r) => v.push(format!(
                        "{delivery_id} attempt {attempt} recorded as {outcome:?}, the network answered {:?}",
                        r.result
                    )),
                    None => v.push(format!(
                        "{delivery_id} attempt {attempt} succeeded without a request"
                    )),
                }
                if !succeeded(&outcome, self.policy.attempt_timeout) {
                    v.push(format!(
                        "{delivery_id} attempt {attempt}: {outcome:?} is no success"
                    ));
                }
                let d = &self.deliveries[delivery_id];
                let (webhook, counts) = (d.webhook.clone(), !d.test && !d.cancelled);
                if counts {
                    if let Some(h) = self.hooks.get_mut(&webhook) {
                        h.failures = 0;
                    }
                }
                self.recorded_success(delivery_id);
                if let Some(d) = self.deliveries.get_mut(delivery_id) {
                    if d.status != Status::Cancelled {
                        d.status = Status::Succeeded;
                    }
                    d.cancelled = false;
                }
            }
            Event::AttemptFailed {
                delivery_id,
                attempt,
                status_code,
                error,
                duration,
                started_at,
                next_due,
                at,
                ..
            } => {
                let Some(open) = self.close(delivery_id, *attempt, *started_at, v) else {
                    return;
                };
                self.check_failure(
                    delivery_id,
                    &open,
                    *status_code,
                    *error,
                    *duration,
                    *at,
                    requests,
                    v,
                );
                self.failed(delivery_id, *next_due, *at, v);
            }
            Event::AttemptAbandoned {
                delivery_id,
                attempt,
                at,
            } => {
                let Some(open) = self.close(delivery_id, *attempt, Timestamp(0), v) else {
                    return;
                };
                // Outside a restart's resume, only an attempt that waited in its webhook's
                // lane until just before its deadline, never sent, is given up.
                let deadline = open
                    .at
                    .plus(self.policy.attempt_timeout)
                    .plus(self.policy.attempt_deadline_grace);
                let margin = 1_000.min(self.policy.attempt_deadline_grace.0 / 2);
                let waited = open.request.is_none() && at.0 + margin >= deadline.0;
                if !resume && !waited {
                    v.push(format!(
                        "{delivery_id} attempt {attempt} abandoned at {at:?} outside a restart's \
                         resume (started {:?}, sent {:?})",
                        open.at, open.request
                    ));
                }
                if let Some(d) = self.deliveries.get_mut(delivery_id) {
                    d.attempts_made = attempt.saturating_sub(1);
                    if d.cancelled {
                        d.cancelled = false;
                    } else {
                        d.earliest = *at;
                    }
                }
            }
            Event::DeliveryCancelled { delivery_id, .. } => {
                self.stop(delivery_id, Status::Cancelled, v);
            }
            Event::DeliveryPaused { delivery_id, .. } => {
                if self.deliveries.get(delivery_id).is_some_and(|d| d.test) {
                    v.push(format!("test send {delivery_id} paused"));
                }
                self.stop(delivery_id, Status::Paused, v);
            }
            Event::DeliveryRetried { delivery, at } => {
                let id = &delivery.delivery_id;
                match self.retries_asked.get_mut(id) {
                    Some(n) if *n > 0 => *n -= 1,
                    _ => v.push(format!("{id} retried, though nobody asked")),
                }
                let cap = self.policy.attempts_cap(delivery.test);
                if delivery.attempts_made >= cap {
                    v.push(format!("{id} retried past its cap of {cap} attempts"));
                }
                self.reopen(id, delivery.attempts_made, *at, 1, "retried", v);
                self.mark("retried", &id.to_string(), seq);
            }
            Event::DeliveriesRecovered {
                webhook_id,
                deliveries,
                first_due,
                at,
            } => {
                match self.recovers_asked.get_mut(webhook_id) {
                    Some(n) if *n > 0 => {}
                    _ => v.push(format!("{webhook_id} recovered, though nobody asked")),
                }
                if !self
                    .hooks
                    .get(webhook_id)
                    .is_some_and(|h| h.live && h.enabled)
                {
                    v.push(format!("{webhook_id} recovered while disabled or deleted"));
                }
                if *first_due != at.plus(self.first_delay()) {
                    v.push(format!(
                        "recover of {webhook_id} first due {first_due:?} at {at:?}"
                    ));
                }
                let n = self.policy.max_attempts();
                for d in deliveries {
                    if d.test || &d.webhook_id != webhook_id {
                        v.push(format!("{} recovered with {webhook_id}", d.delivery_id));
                    }
                    if let Some(known) = self.deliveries.get(&d.delivery_id) {
                        if known.status == Status::Succeeded {
                            v.push(format!("{} recovered after it succeeded", d.delivery_id));
                        }
                    }
                    self.reopen(
                        &d.delivery_id,
                        d.attempts_made,
                        *first_due,
                        n,
                        "recovered",
                        v,
                    );
                }
                self.mark("recovered", webhook_id.as_str(), seq);
            }
            Event::EventReplayed { event_id, .. } => {
                v.push(format!("{event_id} replayed, though nobody asked"));
            }
            // Memory forgets ids after its own window; the store keeps them for retention, so
            // a repeat within retention is still a violation.
            Event::IdempotencyKeysExpired { before, at } => {
                if *before != self.policy.idempotency_memory_start(*at) {
                    v.push(format!(
                        "idempotency keys expired before {before:?} at {at:?}"
                    ));
                }
                let window = self.policy.retention_start(*at);
                self.published.retain(|_, (t, _, _)| *t >= window);
            }
            Event::AlertRaised { .. } => {}
            Event::DeliveriesSpilled {
                webhook_id,
                deliveries,
                ..
            } => self.spilled(webhook_id, deliveries, v),
            Event::DeliveriesLoaded {
                webhook_id,
                deliveries,
                ..
            } => {
                for d in deliveries {
                    self.unspilled(webhook_id, d, "loaded", v);
                }
            }
            Event::SpilledDeliveriesSettled {
                webhook_id,
                paused,
                cancelled,
                kept,
                ..
            } => self.settled(webhook_id, paused, cancelled, kept, v),
        }
    }

    fn first_delay(&self) -> DurationMs {
        self.policy
            .retry_delays
            .first()
            .copied()
            .unwrap_or_default()
    }

    // One place that makes a delivery, with everything the log says about it.
    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        id: &DeliveryId,
        webhook: &WebhookId,
        account: &AccountId,
        event: &EventId,
        test: bool,
        at: Timestamp,
        status: Status,
        v: &mut Violations,
    ) {
        if self.deliveries.contains_key(id) {
            v.push(format!("delivery id {id} created twice"));
            return;
        }
        let key = (webhook.clone(), event.clone());
        let siblings = self.by_key.entry(key).or_default();
        siblings.push(id.clone());
        self.deliveries.insert(
            id.clone(),
            Dlv {
                webhook: webhook.clone(),
                account: account.clone(),
                event: event.clone(),
                test,
                status,
                attempts_made: 0,
                recorded: 0,
                cap: if test { 1 } else { self.policy.max_attempts() },
                schedule_pos: 0,
                earliest: if test {
                    at
                } else {
                    at.plus(self.first_delay())
                },
                open: None,
                cancelled: false,
                spilled: false,
            },
        );
    }

    /// Deliveries still pending.
    pub fn pending(&self) -> Vec<(&DeliveryId, &Dlv)> {
        self.deliveries
            .iter()
            .filter(|(_, d)| d.status == Status::Pending)
            .collect()
    }
}
