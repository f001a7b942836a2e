//! What every part of a run shares (one lock, one thread): the clock, the trace, the store
//! and the network as the engine sees them, the auditor, and the first violation. The
//! engine reaches it through [`SimStore`] and [`SimTransport`], both bound to one
//! incarnation of the engine: after a crash, the dead incarnation's calls fail or never end,
//! as a dead process's would.

use crate::audit::Audit;
use crate::clock::SimClock;
use crate::net::{Fate, Net};
use crate::signing::Signed;
use crate::trace::Trace;
use hallway_domain::{Event, EventId, Outcome, Policy, Timestamp, WebhookId};
use hallway_runtime::transport::OutgoingRequest;
use hallway_runtime::Clock;
use hallway_store::{MemoryStore, Seq};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Counts for the run's report.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// Log records appended.
    pub records: u64,
    /// Requests sent.
    pub requests: u64,
    /// Crashes (a blown fuse or a kill) and clean restarts.
    pub crashes: u64,
    /// Clean shutdowns followed by a restart.
    pub restarts: u64,
    /// Operations issued.
    pub ops: u64,
    /// Operations the engine acknowledged.
    pub acked: u64,
    /// Requests signed with a secret the host never learned (a rotation whose answer a
    /// crash lost), at the end.
    pub unverified: u64,
}

/// A request whose signature no secret known yet verifies: signed with a secret whose
/// create or rotate has not answered yet.
struct Unverified {
    request: usize,
    signed: Signed,
}

/// A secret as the host learned it.
#[derive(Clone, Debug)]
pub struct Learned {
    /// The secret.
    pub secret: String,
    /// When (ms since the start) the host learned it.
    pub at_ms: u64,
    /// Until when the secret it replaced goes on signing too (the rotation's grace).
    pub grace_until: Option<Timestamp>,
}

/// See the module documentation.
pub struct Core {
    /// Simulated time.
    pub clock: SimClock,
    /// Everything observable, hashed.
    pub trace: Trace,
    /// The engine's policy.
    pub policy: Policy,
    /// Which engine process is alive (bumped by each crash and restart).
    pub incarnation: u64,
    /// The live incarnation died (a store write hit the fuse); the world restarts it.
    pub dead: bool,
    /// Store writes left before the process dies, when armed.
    pub fuse: Option<u32>,
    /// The store's memory, which outlives crashes.
    pub memory: Arc<MemoryStore>,
    /// Appended records not flushed yet (lost in a crash, but for a surviving prefix).
    pub unflushed: Vec<(Seq, Vec<Event>)>,
    /// Checks on the durable log.
    pub audit: Audit,
    /// The network and what crossed it.
    pub net: Net,
    /// Each webhook's secrets as the host learned them, oldest first.
    pub secrets: HashMap<WebhookId, Vec<Learned>>,
    unverified: HashMap<WebhookId, Vec<Unverified>>,
    /// The body each delivery's requests carry, by webhook, event and publish.
    bodies: HashMap<(WebhookId, EventId, u64), [u8; 32]>,
    /// Requests under way, by id, and how many each incarnation's webhooks have.
    under_way: HashMap<usize, (u64, WebhookId)>,
    under_way_per_hook: HashMap<(u64, WebhookId), u32>,
    /// The first violation, which ends the run.
    pub failure: Option<String>,
    /// Counts for the report.
    pub stats: Stats,
}

impl Core {
    /// A run's shared core.
    pub fn new(clock: SimClock, trace: Trace, policy: Policy, audit: Audit, net: Net) -> Core {
        Core {
            clock,
            trace,
            policy,
            incarnation: 0,
            dead: false,
            fuse: None,
            memory: Arc::new(MemoryStore::new()),
            unflushed: Vec::new(),
            audit,
            net,
            secrets: HashMap::new(),
            unverified: HashMap::new(),
            bodies: HashMap::new(),
            under_way: HashMap::new(),
            under_way_per_hook: HashMap::new(),
            failure: None,
            stats: Stats::default(),
        }
    }

    /// Milliseconds since the start.
    pub fn ms(&self) -> u64 {
        self.clock.elapsed_ms()
    }

    /// Records a line of the trace.
    pub fn note(&mut self, text: std::fmt::Arguments<'_>) {
        let ms = self.ms();
        self.trace.line(ms, text);
    }

    /// Records a violation; the first one ends the run.
    pub fn violation(&mut self, what: String) {
        self.note(format_args!("VIOLATION {what}"));
        if self.failure.is_none() {
            self.failure = Some(what);
        }
    }

    /// Feeds newly durable records to the auditor.
    pub fn durable(&mut self, records: Vec<(Seq, Vec<Event>)>) {
        for (seq, events) in records {
            let found = self.audit.apply_record(seq, &events, &self.net.requests);
            for v in found {
                self.violation(format!("record {seq}: {v}"));
            }
        }
    }

    /// A crash: the live incarnation dies, and of the unflushed records the first
    /// `survivors` reach the disk; the rest are lost.
    pub fn crash(&mut self, survivors: usize) {
        let unflushed = std::mem::take(&mut self.unflushed);
        let kept = survivors.min(unflushed.len());
        let (incarnation, total) = (self.incarnation, unflushed.len());
        self.note(format_args!(
            "CRASH incarnation {incarnation}: {kept} of {total} unflushed records survive"
        ));
        self.memory.crash(kept);
        self.incarnation += 1;
        self.dead = false;
        self.fuse = None;
        self.stats.crashes += 1;
        self.durable(unflushed.into_iter().take(kept).collect());
    }

    /// The host learned a webhook's secret (a create or a rotate answered), and until when
    /// the one it replaced still signs.
    pub fn learn_secret(
        &mut self,
        webhook: &WebhookId,
        secret: String,
        grace_until: Option<Timestamp>,
    ) {
        let at_ms = self.ms();
        if let Some(list) = self.unverified.get_mut(webhook) {
            list.retain(|u| {
                u.signed
                    .signer(0, std::iter::once(secret.as_str()))
                    .is_none()
            });
        }
        self.secrets
            .entry(webhook.clone())
            .or_default()
            .push(Learned {
                secret,
                at_ms,
                grace_until,
            });
    }

    /// A request leaves the live engine: checked, recorded, and given its fate.
    pub(crate) fn on_send(
        &mut self,
        incarnation: u64,
        req: &OutgoingRequest,
        timeout: Duration,
    ) -> Option<(usize, Fate)> {
        if incarnation != self.incarnation || self.dead {
            return None;
        }
        let id = self.net.requests.len();
        let now = self.clock.now();
        let ms = self.ms();
        let Some(webhook) = self.audit.urls.get(&req.url).cloned() else {
            self.violation(format!(
                "request #{id} to {}, which no webhook has",
                req.url
            ));
            return None;
        };
        let parsed: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
        let event = EventId::from(parsed["id"].as_str().unwrap_or_default());
        let test = parsed.get("_test").is_some();
        if !self.audit.carry(&webhook, &event, id) {
            self.violation(format!(
                "request #{id} for {webhook}/{event} carries no durable started attempt"
            ));
        }
        self.check_signature(id, &webhook, req, now);
        self.check_body(&webhook, &event, &req.body);
        self.check_under_way(id, &webhook);
        let endpoint = crate::net::Net::endpoint_of(&req.url).unwrap_or(usize::MAX);
        let fate = self.net.fate(endpoint, timeout.as_millis() as u64);
        self.net.requests.push(crate::net::Request {
            at_ms: ms,
            webhook: webhook.clone(),
            event: event.clone(),
            test,
            result: None,
        });
        self.stats.requests += 1;
        self.note(format_args!(
            "send #{id} {webhook} {event}{} -> {} after {} ms",
            if test { " (test)" } else { "" },
            show(&fate.outcome),
            fate.after_ms
        ));
        Some((id, fate))
    }

    pub(crate) fn on_answer(&mut self, id: usize, outcome: Outcome) {
        if let Some(key) = self.under_way.remove(&id) {
            if let Some(n) = self.under_way_per_hook.get_mut(&key) {
                *n = n.saturating_sub(1);
            }
        }
        if let Some(r) = self.net.requests.get_mut(id) {
            r.result = Some(outcome);
        }
        self.note(format_args!("answer #{id} {}", show(&outcome)));
    }

    /// A request must be signed now, first with the newest secret the host has learned (or
    /// a newer one it is about to learn), never with one rotated out; and, while that
    /// secret's rotation grace runs, also with the secret it replaced, and never after.
    fn check_signature(
        &mut self,
        id: usize,
        webhook: &WebhookId,
        req: &OutgoingRequest,
        now: Timestamp,
    ) {
        let signed = match Signed::read(req) {
            Ok(signed) => signed,
            Err(why) => return self.violation(format!("request #{id}: {why}")),
        };
        if signed.timestamp != now.as_unix_seconds() {
            self.violation(format!(
                "request #{id} signed for t={}, sent at {}",
                signed.timestamp,
                now.as_unix_seconds()
            ));
        }
        if signed.entries.len() > 2 {
            self.violation(format!(
                "request #{id} carries {} signatures",
                signed.entries.len()
            ));
        }
        let ms = self.ms();
        let known = self.secrets.get(webhook).cloned().unwrap_or_default();
        let signer = |i| signed.signer(i, known.iter().map(|l| l.secret.as_str()));
        // The newest secret the host learned before this instant.
        let current = known.iter().rposition(|l| l.at_ms < ms);
        let Some(used) = signer(0) else {
            self.unverified
                .entry(webhook.clone())
                .or_default()
                .push(Unverified {
                    request: id,
                    signed,
                });
            return;
        };
        if let Some(current) = current.filter(|c| used < *c) {
            self.violation(format!(
                "request #{id} to {webhook} signed with secret #{used}, rotated out by #{current}"
            ));
        }
        let grace = known[used].grace_until.filter(|until| now < *until);
        match (signed.entries.len() > 1, grace) {
            // A second signature by a secret the host never learned comes from a rotation
            // whose answer a crash lost: the previous secret is that one.
            (true, _) => match signer(1) {
                Some(previous) if previous + 1 != used || grace.is_none() => {
                    self.violation(format!(
                        "request #{id} to {webhook} also signed with secret #{previous}, \
                         outside secret #{used}'s rotation grace"
                    ))
                }
                _ => {}
            },
            (false, Some(until)) if Some(used) == current => self.violation(format!(
                "request #{id} to {webhook} lacks the previous secret's signature during \
                 the grace (until {})",
                until.0
            )),
            (false, _) => {}
        }
    }

    /// A webhook never has more requests under way than its limit, however many of its
    /// attempts are open (the rest wait in its lane).
    fn check_under_way(&mut self, id: usize, webhook: &WebhookId) {
        let limit = self.policy.max_in_flight_per_webhook.max(1);
        // An earlier process's requests hold none of this one's slots.
        let key = (self.incarnation, webhook.clone());
        let n = self.under_way_per_hook.entry(key.clone()).or_default();
        *n += 1;
        let n = *n;
        self.under_way.insert(id, key);
        if n > limit {
            self.violation(format!(
                "request #{id}: {webhook} has {n} requests under way, over its limit of {limit}"
            ));
        }
    }

    /// Every request of a delivery carries the same bytes.
    fn check_body(&mut self, webhook: &WebhookId, event: &EventId, body: &[u8]) {
        let publish = self
            .audit
            .hooks
            .get(webhook)
            .and_then(|h| {
                self.audit
                    .published
                    .get(&(h.account.clone(), event.clone()))
            })
            .map_or(0, |p| p.2);
        let hash: [u8; 32] = Sha256::digest(body).into();
        let key = (webhook.clone(), event.clone(), publish);
        match self.bodies.get(&key) {
            Some(h) if *h != hash => {
                self.violation(format!("{webhook}/{event}: a request carried other bytes"))
            }
            Some(_) => {}
            None => {
                self.bodies.insert(key, hash);
            }
        }
    }

    /// Requests whose signature no learned secret verifies.
    pub fn unverified(&self) -> usize {
        self.unverified.values().map(Vec::len).sum()
    }

    /// The ids of unverified requests, for the trace.
    pub fn unverified_ids(&self) -> Vec<usize> {
        let mut ids: Vec<usize> = self
            .unverified
            .values()
            .flat_map(|l| l.iter().map(|u| u.request))
            .collect();
        // In request order, not the map's (which differs from run to run).
        ids.sort_unstable();
        ids
    }
}

/// An outcome in a few words.
pub fn show(o: &Outcome) -> String {
    match o {
        Outcome::Response { status, duration } => format!("{status} in {} ms", duration.0),
        Outcome::Error { error, duration } => format!("{} in {} ms", error.as_str(), duration.0),
    }
}

/// The shared core behind its lock.
#[derive(Clone)]
pub struct Shared(Arc<Mutex<Core>>);

impl Shared {
    /// Shares `core`.
    pub fn new(core: Core) -> Shared {
        Shared(Arc::new(Mutex::new(core)))
    }

    /// The core; never held across an await.
    pub fn lock(&self) -> MutexGuard<'_, Core> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An event's kind, for the trace.
pub fn kind(e: &Event) -> &'static str {
    match e {
        Event::AccountCreated { .. } => "AccountCreated",
        Event::AccountUpdated { .. } => "AccountUpdated",
        Event::AccountKeyRotated { .. } => "AccountKeyRotated",
        Event::AccountDeleted { .. } => "AccountDeleted",
        Event::WebhookCreated { .. } => "WebhookCreated",
        Event::WebhookUpdated { .. } => "WebhookUpdated",
        Event::WebhookEnabled { .. } => "WebhookEnabled",
        Event::WebhookDisabled { .. } => "WebhookDisabled",
        Event::WebhookDeleted { .. } => "WebhookDeleted",
        Event::SecretRotated { .. } => "SecretRotated",
        Event::EventPublished { .. } => "EventPublished",
        Event::TestDeliveryCreated { .. } => "TestDeliveryCreated",
        Event::AttemptStarted { .. } => "AttemptStarted",
        Event::AttemptSucceeded { .. } => "AttemptSucceeded",
        Event::AttemptFailed { .. } => "AttemptFailed",
        Event::AttemptAbandoned { .. } => "AttemptAbandoned",
        Event::DeliveryCancelled { .. } => "DeliveryCancelled",
        Event::DeliveryRetried { .. } => "DeliveryRetried",
        Event::IdempotencyKeysExpired { .. } => "IdempotencyKeysExpired",
        Event::DeliveriesPaused { .. } => "DeliveriesPaused",
        Event::DeliveryPaused { .. } => "DeliveryPaused",
        Event::DeliveriesRecovered { .. } => "DeliveriesRecovered",
        Event::EventReplayed { .. } => "EventReplayed",
        Event::AlertRaised { .. } => "AlertRaised",
        Event::DeliveriesSpilled { .. } => "DeliveriesSpilled",
        Event::DeliveriesLoaded { .. } => "DeliveriesLoaded",
        Event::SpilledDeliveriesSettled { .. } => "SpilledDeliveriesSettled",
    }
}
