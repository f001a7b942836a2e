//! The engine actor: the one owner of the state and the store.
//!
//! Each turn it drains waiting messages into a batch, decides and applies them in order,
//! starts due attempts (`Tick`), appends the batch's events as one log record and flushes once
//! (group commit), then answers the callers and hands the started attempts to the transport.
//! It never waits on the network: sends run in their own tasks and report back by channel.

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::secrets::SecretBox;
use crate::transport::{OutgoingRequest, Transport};
use crate::{Config, EngineError};
use bytes::Bytes;
use hallway_domain::{
    decide, signature, AccountId, Command, CommandKind, DeliveryId, Event, EventId, Outcome, State,
    Timestamp,
};
use hallway_store::EventStore;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

/// Answers a command once its batch is durable: with its events (or why it failed) and the
/// state after the batch.
pub(crate) type Reply = Box<dyn FnOnce(Result<&[Event], EngineError>, &State) + Send>;

/// What the actor receives from handles.
pub(crate) enum Msg {
    /// Decide a command, answer after commit.
    Exec { kind: CommandKind, reply: Reply },
    /// Read the state after the current batch commits.
    Query(Box<dyn FnOnce(&State) + Send>),
    /// Stop: finish attempts under way, snapshot, flush.
    Shutdown {
        done: oneshot::Sender<Result<(), EngineError>>,
    },
}

/// What a send task reports back.
pub(crate) struct Report {
    delivery_id: DeliveryId,
    attempt: u32,
    outcome: Outcome,
    body_key: BodyKey,
}

type BodyKey = (AccountId, EventId);

enum Pending {
    Reply(Reply, Result<Range<usize>, EngineError>),
    Query(Box<dyn FnOnce(&State) + Send>),
}

pub(crate) struct Actor {
    state: State,
    last_seq: u64,
    store: Arc<dyn EventStore>,
    transport: Arc<dyn Transport>,
    secrets: Arc<SecretBox>,
    clock: Arc<dyn Clock>,
    rx: mpsc::Receiver<Msg>,
    reports_tx: mpsc::UnboundedSender<Report>,
    reports_rx: mpsc::UnboundedReceiver<Report>,
    config: Config,
    metrics: Arc<Metrics>,
    /// Bodies of attempts under way, with how many attempts use each.
    bodies: HashMap<BodyKey, (Bytes, usize)>,
    events_since_snapshot: u64,
    next_maintenance: Timestamp,
    shutdown: Option<(oneshot::Sender<Result<(), EngineError>>, Timestamp)>,
}

impl Actor {
    // Private constructor called once; a parameter struct would only rename these.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        state: State,
        last_seq: u64,
        store: Arc<dyn EventStore>,
        transport: Arc<dyn Transport>,
        secrets: Arc<SecretBox>,
        rx: mpsc::Receiver<Msg>,
        config: Config,
        metrics: Arc<Metrics>,
    ) -> Self {
        let (reports_tx, reports_rx) = mpsc::unbounded_channel();
        let clock = config.clock.clone();
        let next_maintenance = clock.now();
        Actor {
            state,
            last_seq,
            store,
            transport,
            secrets,
            clock,
            rx,
            reports_tx,
            reports_rx,
            config,
            metrics,
            bodies: HashMap::new(),
            events_since_snapshot: 0,
            next_maintenance,
            shutdown: None,
        }
    }

    /// After a restart: attempts open in the log may not have been sent; reopen them so the
    /// first turn sends them again. Secrets sealed under an old key are resealed.
    pub(crate) async fn resume(
        &mut self,
        reseal: Vec<(AccountId, hallway_domain::WebhookId, String)>,
    ) -> Result<(), EngineError> {
        let now = self.clock.now();
        let mut events = decide(&self.state, Command::new(now, CommandKind::Resume))?;
        for e in &events {
            self.state.apply(e);
        }
        for (account_id, webhook_id, plain) in reseal {
            let cmd = CommandKind::RotateSecret {
                account_id,
                webhook_id,
                secret: self.secrets.seal(&plain),
            };
            let new = decide(&self.state, Command::new(now, cmd))?;
            for e in &new {
                self.state.apply(e);
            }
            events.extend(new);
        }
        if events.is_empty() {
            return Ok(());
        }
        info!(
            abandoned = events.len(),
            "resuming attempts open at the last stop"
        );
        for e in &events {
            self.state.apply(e);
        }
        self.commit(events).await.map(|_| ())
    }

    pub(crate) async fn run(mut self) {
        let mut batch: Vec<Msg> = Vec::new();
        let mut reports: Vec<Report> = Vec::new();
        loop {
            let wake = self.next_wake();
            let sleep = wake.map(|t| self.clock.sleep_until(t));
            tokio::select! {
                biased;
                Some(r) = self.reports_rx.recv() => reports.push(r),
                m = self.rx.recv(), if self.shutdown.is_none() => match m {
                    Some(m) => batch.push(m),
                    // Every handle is gone: nobody can ask for anything again.
                    None => break,
                },
                _ = async { match sleep { Some(s) => s.await, None => std::future::pending().await } } => {}
            }
            while batch.len() + reports.len() < self.config.max_batch {
                if let Ok(r) = self.reports_rx.try_recv() {
                    reports.push(r);
                } else if self.shutdown.is_none() {
                    match self.rx.try_recv() {
                        Ok(m) => batch.push(m),
                        Err(_) => break,
                    }
                } else {
                    break;
                }
            }
            if let Err(e) = self.turn(&mut batch, &mut reports).await {
                error!(error = %e, "storage failed; the engine stops");
                self.fail_all(e);
                return;
            }
            if let Some((_, deadline)) = &self.shutdown {
                if self.state.in_flight_count() == 0 || self.clock.now() >= *deadline {
                    let result = self.finish().await;
                    if let Some((done, _)) = self.shutdown.take() {
                        let _ = done.send(result);
                    }
                    return;
                }
            }
        }
    }

    /// When the actor must wake without a message: the next startable attempt (if the
    /// dispatcher has room), the next attempt deadline, maintenance, the shutdown deadline.
    fn next_wake(&self) -> Option<Timestamp> {
        let room = self.room();
        let start = if room > 0 {
            self.state.next_start()
        } else {
            None
        };
        let candidates = [
            start,
            self.state.next_deadline(),
            Some(self.next_maintenance),
            self.shutdown.as_ref().map(|(_, t)| *t),
        ];
        candidates.into_iter().flatten().min()
    }

    fn room(&self) -> usize {
        if self.shutdown.is_some() {
            return 0;
        }
        self.config
            .max_in_flight
            .saturating_sub(self.state.in_flight_count())
    }

    /// One turn: decide the batch, start due attempts, commit, answer, dispatch.
    async fn turn(
        &mut self,
        batch: &mut Vec<Msg>,
        reports: &mut Vec<Report>,
    ) -> Result<(), EngineError> {
        let now = self.clock.now();
        let mut events: Vec<Event> = Vec::new();
        let mut pending: Vec<Pending> = Vec::with_capacity(batch.len());
        for report in reports.drain(..) {
            self.record_report(now, report, &mut events);
        }
        for msg in batch.drain(..) {
            match msg {
                Msg::Exec { kind, reply } => {
                    let _span = tracing::debug_span!("command").entered();
                    match decide(&self.state, Command::new(now, kind)) {
                        Ok(new) => {
                            let start = events.len();
                            for e in &new {
                                self.state.apply(e);
                                if matches!(e, Event::EventPublished { .. }) {
                                    self.metrics.published();
                                }
                            }
                            events.extend(new);
                            pending.push(Pending::Reply(reply, Ok(start..events.len())));
                        }
                        Err(r) => {
                            debug!(rejection = %r, "command rejected");
                            pending.push(Pending::Reply(reply, Err(EngineError::Rejected(r))));
                        }
                    }
                }
                Msg::Query(f) => pending.push(Pending::Query(f)),
                Msg::Shutdown { done } => {
                    let deadline = now.plus(hallway_domain::DurationMs(
                        self.config.shutdown_grace.as_millis() as u64,
                    ));
                    self.shutdown = Some((done, deadline));
                }
            }
        }
        if now >= self.next_maintenance && self.shutdown.is_none() {
            self.maintain(now, &mut events).await;
        }
        let started_from = events.len();
        self.tick(now, &mut events);
        // Bodies published in this batch, for the attempts it starts right away.
        let fresh: HashMap<BodyKey, Bytes> = events
            .iter()
            .filter_map(|e| match e {
                Event::EventPublished {
                    account_id,
                    event_id,
                    body,
                    deliveries,
                    ..
                } if !deliveries.is_empty() => Some((
                    (account_id.clone(), event_id.clone()),
                    Bytes::from(body.clone()),
                )),
                Event::TestDeliveryCreated {
                    account_id,
                    event_id,
                    body,
                    ..
                } => Some((
                    (account_id.clone(), event_id.clone()),
                    Bytes::from(body.clone()),
                )),
                _ => None,
            })
            .collect();
        let events = if events.is_empty() {
            events
        } else {
            match self.commit(events).await {
                Ok(events) => events,
                Err(e) => {
                    for p in pending {
                        if let Pending::Reply(reply, _) = p {
                            reply(Err(e.clone()), &self.state);
                        }
                    }
                    return Err(e);
                }
            }
        };
        for p in pending {
            match p {
                Pending::Reply(reply, Ok(range)) => reply(Ok(&events[range]), &self.state),
                Pending::Reply(reply, Err(e)) => reply(Err(e), &self.state),
                Pending::Query(f) => f(&self.state),
            }
        }
        for e in &events[started_from.min(events.len())..] {
            if let Event::AttemptStarted {
                delivery_id,
                attempt,
                ..
            } = e
            {
                self.dispatch(delivery_id, *attempt, &fresh);
            }
        }
        self.metrics
            .gauges(self.state.pending_count(), self.state.in_flight_count());
        if self.events_since_snapshot >= self.config.snapshot_every_events {
            self.snapshot().await?;
        }
        Ok(())
    }

    /// Starts due attempts while the dispatcher has room, and times out overdue ones.
    fn tick(&mut self, now: Timestamp, events: &mut Vec<Event>) {
        loop {
            let max_starts = self.room();
            let new = match decide(
                &self.state,
                Command::new(now, CommandKind::Tick { max_starts }),
            ) {
                Ok(new) => new,
                Err(r) => {
                    warn!(rejection = %r, "tick rejected");
                    return;
                }
            };
            if new.is_empty() {
                return;
            }
            for e in &new {
                self.state.apply(e);
                self.count_outcome(e);
            }
            events.extend(new);
        }
    }

    fn record_report(&mut self, now: Timestamp, report: Report, events: &mut Vec<Event>) {
        if let Some(entry) = self.bodies.get_mut(&report.body_key) {
            entry.1 = entry.1.saturating_sub(1);
            if entry.1 == 0 {
                self.bodies.remove(&report.body_key);
            }
        }
        let webhook = self
            .state
            .delivery(&report.delivery_id)
            .map(|d| d.webhook_id.to_string())
            .unwrap_or_default();
        let cmd = CommandKind::RecordOutcome {
            delivery_id: report.delivery_id.clone(),
            attempt: report.attempt,
            outcome: report.outcome,
        };
        match decide(&self.state, Command::new(now, cmd)) {
            Ok(new) => {
                for e in &new {
                    self.state.apply(e);
                    self.count_outcome(e);
                }
                let (outcome, status, error, duration_ms) = match report.outcome {
                    Outcome::Response { status, duration } => {
                        ("response", Some(status), None, duration.0)
                    }
                    Outcome::Error { error, duration } => {
                        ("error", None, Some(error.as_str()), duration.0)
                    }
                };
                info!(
                    webhook = %webhook,
                    event = %report.body_key.1,
                    delivery = %report.delivery_id,
                    attempt = report.attempt,
                    outcome,
                    status,
                    error,
                    duration_ms,
                    success = matches!(new.first(), Some(Event::AttemptSucceeded { .. })),
                    "attempt"
                );
                events.extend(new);
            }
            // A late report for an attempt that already timed out or was abandoned.
            Err(r) => debug!(rejection = %r, "report ignored"),
        }
    }

    fn count_outcome(&self, e: &Event) {
        match e {
            Event::AttemptSucceeded { .. } => self.metrics.succeeded(),
            Event::AttemptFailed { error, .. } => self.metrics.failed(*error),
            Event::WebhookDisabled {
                webhook_id,
                reason: hallway_domain::DisabledReason::ConsecutiveFailures,
                ..
            } => warn!(webhook = %webhook_id, "webhook auto-disabled after consecutive failures"),
            _ => {}
        }
    }

    /// Appends the batch as one record and flushes it (off the async threads).
    async fn commit(&mut self, events: Vec<Event>) -> Result<Vec<Event>, EngineError> {
        let store = self.store.clone();
        let (events, result) = tokio::task::spawn_blocking(move || {
            let result = store
                .append(&events)
                .and_then(|seq| store.flush().map(|_| seq));
            (events, result)
        })
        .await
        .map_err(|e| EngineError::Storage(e.to_string()))?;
        self.last_seq = result?;
        self.events_since_snapshot += events.len() as u64;
        self.metrics.committed(events.len());
        Ok(events)
    }

    /// Hands one started attempt to the transport: signed at send time with the current secret.
    fn dispatch(
        &mut self,
        delivery_id: &DeliveryId,
        attempt: u32,
        fresh: &HashMap<BodyKey, Bytes>,
    ) {
        let Some(d) = self.state.delivery(delivery_id) else {
            return;
        };
        let Some(w) = self.state.webhook(&d.webhook_id) else {
            return;
        };
        let key: BodyKey = (d.account_id.clone(), d.event_id.clone());
        let body =
            match self.bodies.get_mut(&key) {
                Some((b, n)) => {
                    *n += 1;
                    Some(b.clone())
                }
                None => {
                    let found = fresh.get(&key).cloned().or_else(|| {
                        match self.store.payload(&key.0, &key.1) {
                            Ok(p) => p.map(|p| Bytes::from(p.as_bytes().to_vec())),
                            Err(e) => {
                                error!(error = %e, delivery = %delivery_id, "payload unreadable");
                                None
                            }
                        }
                    });
                    if let Some(b) = &found {
                        self.bodies.insert(key.clone(), (b.clone(), 1));
                    }
                    found
                }
            };
        let reports = self.reports_tx.clone();
        let report = |outcome| Report {
            delivery_id: delivery_id.clone(),
            attempt,
            outcome,
            body_key: key.clone(),
        };
        let Some(body) = body else {
            // Without its body the attempt cannot be sent; it fails and retries on schedule.
            let _ = reports.send(report(Outcome::Error {
                error: hallway_domain::AttemptError::InvalidResponse,
                duration: hallway_domain::DurationMs(0),
            }));
            return;
        };
        let url = w.config.url.clone();
        let Some((secret, _)) = self.secrets.open(&w.secret) else {
            error!(webhook = %w.id, "webhook secret does not open with the master key");
            let _ = reports.send(report(Outcome::Error {
                error: hallway_domain::AttemptError::InvalidResponse,
                duration: hallway_domain::DurationMs(0),
            }));
            return;
        };
        let transport = self.transport.clone();
        let clock = self.clock.clone();
        let timeout = Duration::from_millis(self.state.policy().attempt_timeout.0);
        let template = report(Outcome::Error {
            error: hallway_domain::AttemptError::Timeout,
            duration: hallway_domain::DurationMs(0),
        });
        tokio::spawn(async move {
            let t = clock.now().as_unix_seconds();
            let signature = signature::sign(&secret, t, &body);
            let outcome = transport
                .send(
                    OutgoingRequest {
                        url,
                        body,
                        signature,
                    },
                    timeout,
                )
                .await;
            let _ = reports.send(Report {
                outcome,
                ..template
            });
        });
    }

    /// Retention: forget old idempotency keys, prune old finished deliveries and payloads.
    async fn maintain(&mut self, now: Timestamp, events: &mut Vec<Event>) {
        self.next_maintenance = now.plus(self.config.maintenance_interval);
        if let Ok(new) = decide(
            &self.state,
            Command::new(now, CommandKind::ExpireIdempotencyKeys),
        ) {
            for e in &new {
                self.state.apply(e);
            }
            events.extend(new);
        }
        let before = Timestamp(now.0.saturating_sub(self.state.policy().retention.0));
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.prune(before)).await {
            Ok(Ok(n)) if n > 0 => info!(deliveries = n, "retention pruned old deliveries"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!(error = %e, "retention failed"),
            Err(e) => warn!(error = %e, "retention task failed"),
        }
    }

    /// Saves the state as of the last record and drops the log before it.
    async fn snapshot(&mut self) -> Result<(), EngineError> {
        let state = self.state.clone();
        let seq = self.last_seq;
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            store.save_snapshot(seq, &state)?;
            store.flush()?;
            store.truncate_log(seq)
        })
        .await
        .map_err(|e| EngineError::Storage(e.to_string()))??;
        self.events_since_snapshot = 0;
        debug!(seq, "snapshot saved");
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), EngineError> {
        if self.last_seq > 0 {
            self.snapshot().await?;
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.flush())
            .await
            .map_err(|e| EngineError::Storage(e.to_string()))??;
        info!("engine stopped");
        Ok(())
    }

    /// After a storage failure: answer everyone waiting, take nothing more.
    fn fail_all(&mut self, e: EngineError) {
        self.rx.close();
        while let Ok(msg) = self.rx.try_recv() {
            match msg {
                Msg::Exec { reply, .. } => reply(Err(e.clone()), &self.state),
                Msg::Query(_) => {}
                Msg::Shutdown { done } => {
                    let _ = done.send(Err(e.clone()));
                }
            }
        }
        if let Some((done, _)) = self.shutdown.take() {
            let _ = done.send(Err(e));
        }
    }
}
