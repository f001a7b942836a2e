//! The engine actor: the one owner of the state and the store.
//!
//! Each turn it drains waiting messages into a batch, decides and applies them in order,
//! starts due attempts (`Tick`), appends the batch's events as one log record and flushes once
//! (group commit), then answers the callers and hands the started attempts to the transport.
//! It never waits on the network: sends run in their own tasks and report back by channel.

use crate::alerts::AlertHub;
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::recent::{BodyKey, RecentBodies};
use crate::secrets::SecretBox;
use crate::transport::{OutgoingRequest, Transport};
use crate::{Config, EngineError};
use bytes::Bytes;
use hallway_domain::{
    decide, signature, AccountId, Command, CommandKind, DeliveryId, Event, Outcome, SealedSecret,
    State, Timestamp, WebhookId,
};
use hallway_store::{EventStore, Truncation};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn, Instrument};

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

/// Decisions applied to the state and not yet durable.
#[derive(Default)]
struct Open {
    events: Vec<Event>,
    pending: Vec<Pending>,
    /// Events before this index have had their bodies remembered.
    remembered: usize,
}

impl Open {
    fn is_empty(&self) -> bool {
        self.events.is_empty() && self.pending.is_empty()
    }
}

/// A batch being appended and flushed on the blocking pool.
struct InCommit {
    task: tokio::task::JoinHandle<(Vec<Event>, Result<u64, hallway_store::StoreError>)>,
    pending: Vec<Pending>,
}

/// What woke the actor.
enum Wake {
    Committed(Result<(Vec<Event>, Result<u64, hallway_store::StoreError>), tokio::task::JoinError>),
    Report(Report),
    Msg(Option<Msg>),
    Timer,
}

enum Pending {
    Reply(Reply, Result<Range<usize>, EngineError>),
    Query(Box<dyn FnOnce(&State) + Send>),
}

/// A body's read from the store: none if it is gone or unreadable.
type BodyRead = tokio::sync::OnceCell<Option<Bytes>>;

/// Store reads of bodies under way, shared by the attempts that start while one runs: a
/// fan-out's deliveries are due together, and would otherwise read the body once each.
struct SharedReads {
    reads: HashMap<BodyKey, Weak<BodyRead>>,
    /// When `reads` is next swept of finished reads.
    sweep_at: usize,
}

impl SharedReads {
    fn new() -> Self {
        SharedReads {
            reads: HashMap::new(),
            sweep_at: 1024,
        }
    }

    /// The read of `key` under way, or a new one.
    fn of(&mut self, key: &BodyKey) -> Arc<BodyRead> {
        if let Some(read) = self.reads.get(key).and_then(Weak::upgrade) {
            return read;
        }
        if self.reads.len() >= self.sweep_at {
            // Reads whose attempts all have their body are gone: forget their names.
            self.reads.retain(|_, r| r.strong_count() > 0);
            self.sweep_at = 2 * self.reads.len() + 1024;
        }
        let read = Arc::new(BodyRead::new());
        self.reads.insert(key.clone(), Arc::downgrade(&read));
        read
    }
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
    /// Bodies of recent publishes, so first attempts need no store read.
    recent: RecentBodies,
    /// Store reads of bodies under way.
    reads: SharedReads,
    /// Each webhook's secret as sealed and opened: opening (AES-GCM) once per rotation, not
    /// once per attempt.
    opened: HashMap<WebhookId, (SealedSecret, Arc<str>)>,
    events_since_snapshot: u64,
    /// The last snapshot's install, while it runs.
    installing: Option<tokio::task::JoinHandle<()>>,
    next_maintenance: Timestamp,
    shutdown: Option<(oneshot::Sender<Result<(), EngineError>>, Timestamp)>,
    /// Where committed alerts go, and how much of the log subscribers hold.
    alerts: AlertHub,
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
        alerts: AlertHub,
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
            recent: RecentBodies::default(),
            reads: SharedReads::new(),
            opened: HashMap::new(),
            events_since_snapshot: 0,
            installing: None,
            next_maintenance,
            shutdown: None,
            alerts,
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
            events = events.len(),
            "resuming attempts open at the last stop"
        );
        self.commit_now(events).await
    }

    pub(crate) async fn run(mut self) {
        let mut msgs: Vec<Msg> = Vec::new();
        let mut reports: Vec<Report> = Vec::new();
        let mut open = Open::default();
        let mut committing: Option<InCommit> = None;
        loop {
            // While a snapshot is due, new decisions wait for the batch being committed, so
            // that the state snapshotted is exactly the state of the log.
            let hold = self.snapshot_due() && committing.is_some();
            // While holding, nothing is decided, so a due timer would only wake the loop
            // again and again: wait for the commit instead.
            let sleep = match hold {
                true => None,
                false => self.next_wake().map(|t| self.clock.sleep_until(t)),
            };
            let wake = tokio::select! {
                biased;
                r = async {
                    match committing.as_mut() {
                        Some(c) => (&mut c.task).await,
                        None => std::future::pending().await,
                    }
                } => Wake::Committed(r),
                Some(r) = self.reports_rx.recv() => Wake::Report(r),
                m = self.rx.recv(), if self.shutdown.is_none() && !hold => Wake::Msg(m),
                _ = async {
                    match sleep {
                        Some(s) => s.await,
                        None => std::future::pending().await,
                    }
                } => Wake::Timer,
            };
            match wake {
                Wake::Committed(result) => {
                    let Some(c) = committing.take() else {
                        continue;
                    };
                    // The next batch was decided while this one committed: its commit starts
                    // before this one's callers are answered and its attempts dispatched, so
                    // the store does not wait on the actor. (Not after a failure: the store is
                    // broken then.)
                    if matches!(&result, Ok((_, Ok(_)))) && !open.events.is_empty() {
                        committing = Some(self.start_commit(std::mem::take(&mut open)));
                    }
                    if let Err(e) = self.complete(c, result) {
                        self.fail_all(e, open.pending);
                        return;
                    }
                    // A snapshot must match the log exactly: none while a batch commits.
                    if self.snapshot_due() && open.is_empty() && committing.is_none() {
                        if let Err(e) = self.snapshot().await {
                            self.fail_all(e, open.pending);
                            return;
                        }
                    }
                }
                Wake::Report(r) => reports.push(r),
                Wake::Msg(Some(m)) => msgs.push(m),
                Wake::Msg(None) => {
                    // Every handle is gone: nobody can ask for anything again.
                    if let Some(c) = committing.take() {
                        let _ = c.task.await;
                    }
                    return;
                }
                Wake::Timer => {}
            }
            let hold = self.snapshot_due() && committing.is_some();
            if !hold {
                while msgs.len() + reports.len() < self.config.max_batch {
                    if let Ok(r) = self.reports_rx.try_recv() {
                        reports.push(r);
                    } else if self.shutdown.is_none() {
                        match self.rx.try_recv() {
                            Ok(m) => msgs.push(m),
                            Err(_) => break,
                        }
                    } else {
                        break;
                    }
                }
                self.decide_into(&mut open, &mut msgs, &mut reports).await;
            }
            self.metrics
                .gauges(self.state.pending_count(), self.state.in_flight_count());
            if committing.is_none() && !open.is_empty() {
                let batch = std::mem::take(&mut open);
                if batch.events.is_empty() {
                    // Nothing to log: answer now (earlier batches are already durable).
                    self.answer(batch.pending, &[]);
                } else {
                    committing = Some(self.start_commit(batch));
                }
            }
            if let Some((_, deadline)) = &self.shutdown {
                let quiet = committing.is_none() && open.is_empty();
                if quiet && (self.state.in_flight_count() == 0 || self.clock.now() >= *deadline) {
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
        // Maintenance does not run during shutdown, so it must not wake it either.
        let maintenance = self.shutdown.is_none().then_some(self.next_maintenance);
        // A passed shutdown deadline is acted on at the next quiet moment, which a commit or
        // a report brings; as a timer it would only spin the loop.
        let now = self.clock.now();
        let shutdown = self.shutdown.as_ref().map(|(_, t)| *t).filter(|t| *t > now);
        let candidates = [start, self.state.next_deadline(), maintenance, shutdown];
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

    fn snapshot_due(&self) -> bool {
        self.events_since_snapshot >= self.config.snapshot_every_events
    }

    /// Decides waiting reports and messages into the open batch (applying them to the
    /// state), runs maintenance when due, and starts due attempts.
    async fn decide_into(
        &mut self,
        open: &mut Open,
        msgs: &mut Vec<Msg>,
        reports: &mut Vec<Report>,
    ) {
        let now = self.clock.now();
        for report in reports.drain(..) {
            self.record_report(now, report, &mut open.events);
        }
        for msg in msgs.drain(..) {
            match msg {
                Msg::Exec { kind, reply } => {
                    let _span = tracing::debug_span!("command").entered();
                    match decide(&self.state, Command::new(now, kind)) {
                        Ok(new) => {
                            let start = open.events.len();
                            for e in &new {
                                self.state.apply(e);
                                if matches!(e, Event::EventPublished { .. }) {
                                    self.metrics.published();
                                }
                            }
                            open.events.extend(new);
                            open.pending
                                .push(Pending::Reply(reply, Ok(start..open.events.len())));
                        }
                        Err(r) => {
                            debug!(rejection = %r, "command rejected");
                            open.pending
                                .push(Pending::Reply(reply, Err(EngineError::Rejected(r))));
                        }
                    }
                }
                Msg::Query(f) => open.pending.push(Pending::Query(f)),
                Msg::Shutdown { done } => {
                    let deadline = now.plus(hallway_domain::DurationMs(
                        self.config.shutdown_grace.as_millis() as u64,
                    ));
                    self.shutdown = Some((done, deadline));
                }
            }
        }
        if now >= self.next_maintenance && self.shutdown.is_none() {
            self.maintain(now, &mut open.events).await;
        }
        let first_new = open.events.len();
        self.tick(now, &mut open.events);
        // Bodies published here, for the attempts this batch (or one soon after) starts. A
        // batch is decided over many wakes: each looks only at what is new since the last.
        let from = open.remembered.min(first_new);
        open.remembered = open.events.len();
        for e in &open.events[from..first_new] {
            let (key, body, waiting) = match e {
                Event::EventPublished {
                    account_id,
                    event_id,
                    body,
                    deliveries,
                    ..
                } if !deliveries.is_empty() => (
                    (account_id.clone(), event_id.clone()),
                    body,
                    deliveries.len(),
                ),
                Event::TestDeliveryCreated {
                    account_id,
                    event_id,
                    body,
                    ..
                } => ((account_id.clone(), event_id.clone()), body, 1),
                _ => continue,
            };
            let body = Bytes::from(body.clone());
            // An id published again (after its idempotency window) sends its new body from
            // now on, as the store keeps it, also to attempts of the earlier publish.
            if let Some((in_flight, _)) = self.bodies.get_mut(&key) {
                *in_flight = body.clone();
            }
            let waiting = u32::try_from(waiting).unwrap_or(u32::MAX);
            self.recent.insert(key, body, waiting, now);
        }
    }

    /// Appends a decided batch as one record and flushes it on the blocking pool; the actor
    /// goes on deciding the next batch meanwhile.
    fn start_commit(&self, batch: Open) -> InCommit {
        let store = self.store.clone();
        let events = batch.events;
        let task = tokio::task::spawn_blocking(move || {
            let result = store
                .append(&events)
                .and_then(|seq| store.flush().map(|_| seq));
            (events, result)
        });
        InCommit {
            task,
            pending: batch.pending,
        }
    }

    /// A batch is durable: answer its callers, then send the attempts it started.
    fn complete(
        &mut self,
        c: InCommit,
        result: Result<
            (Vec<Event>, Result<u64, hallway_store::StoreError>),
            tokio::task::JoinError,
        >,
    ) -> Result<(), EngineError> {
        let (events, seq) = match result {
            Ok((events, Ok(seq))) => (events, seq),
            Ok((_, Err(e))) => {
                let e = EngineError::from(e);
                self.fail_pending(c.pending, &e);
                return Err(e);
            }
            Err(e) => {
                let e = EngineError::from(e);
                self.fail_pending(c.pending, &e);
                return Err(e);
            }
        };
        self.last_seq = seq;
        self.events_since_snapshot += events.len() as u64;
        self.metrics.committed(events.len());
        self.answer(c.pending, &events);
        for alert in crate::alerts::of_record(seq, &events) {
            // Nobody listening is fine: subscribers read the log from their cursor.
            let _ = self.alerts.live.send(alert);
        }
        self.alerts
            .committed
            .store(seq, std::sync::atomic::Ordering::Release);
        for e in &events {
            if let Event::AttemptStarted {
                delivery_id,
                attempt,
                ..
            } = e
            {
                self.dispatch(delivery_id, *attempt);
            }
        }
        Ok(())
    }

    fn answer(&self, pending: Vec<Pending>, events: &[Event]) {
        for p in pending {
            match p {
                Pending::Reply(reply, Ok(range)) => match events.get(range) {
                    Some(mine) => reply(Ok(mine), &self.state),
                    None => reply(Ok(&[]), &self.state),
                },
                Pending::Reply(reply, Err(e)) => reply(Err(e), &self.state),
                Pending::Query(f) => f(&self.state),
            }
        }
    }

    fn fail_pending(&self, pending: Vec<Pending>, e: &EngineError) {
        for p in pending {
            if let Pending::Reply(reply, _) = p {
                reply(Err(e.clone()), &self.state);
            }
        }
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
            Event::AttemptSucceeded { duration, .. } => self.metrics.succeeded(*duration),
            Event::AttemptFailed {
                error, duration, ..
            } => self.metrics.failed(*error, *duration),
            Event::WebhookDisabled {
                webhook_id,
                reason: hallway_domain::DisabledReason::ConsecutiveFailures,
                ..
            } => warn!(webhook = %webhook_id, "webhook auto-disabled after consecutive failures"),
            _ => {}
        }
    }

    /// Appends events as one record and flushes, waiting for it (startup only).
    async fn commit_now(&mut self, events: Vec<Event>) -> Result<(), EngineError> {
        let store = self.store.clone();
        let (events, result) = tokio::task::spawn_blocking(move || {
            let result = store
                .append(&events)
                .and_then(|seq| store.flush().map(|_| seq));
            (events, result)
        })
        .await
        .map_err(EngineError::from)?;
        self.last_seq = result?;
        self.events_since_snapshot += events.len() as u64;
        self.metrics.committed(events.len());
        Ok(())
    }

    /// Hands one started attempt to the transport: signed at send time with the current secret.
    fn dispatch(&mut self, delivery_id: &DeliveryId, attempt: u32) {
        let Some(d) = self.state.delivery(delivery_id) else {
            return;
        };
        let key: BodyKey = (d.account_id.clone(), d.event_id.clone());
        let reports = self.reports_tx.clone();
        let report = |outcome| Report {
            delivery_id: delivery_id.clone(),
            attempt,
            outcome,
            body_key: key.clone(),
        };
        // An attempt that cannot be sent is closed at once rather than holding an in-flight
        // slot until its deadline; it fails and retries on schedule.
        let unsent = |error| Outcome::Error {
            error,
            duration: hallway_domain::DurationMs(0),
        };
        let Some(w) = self.state.webhook(&d.webhook_id) else {
            // Deleted while this batch was being committed.
            let _ = reports.send(report(unsent(hallway_domain::AttemptError::Connect)));
            return;
        };
        if attempt == 1 {
            self.recent.started(&key);
        }
        // A body not in memory is read from the store by the attempt's task, off the actor:
        // under a deep backlog many are, and the actor is everyone's critical path.
        let body = match self.bodies.get_mut(&key) {
            Some((b, n)) => {
                *n += 1;
                Some(b.clone())
            }
            None => {
                let found = self.recent.get(&key);
                if let Some(b) = &found {
                    self.bodies.insert(key.clone(), (b.clone(), 1));
                }
                found
            }
        };
        let body = match body {
            Some(b) => Ok(b),
            None => Err((self.store.clone(), self.reads.of(&key))),
        };
        let url = w.config.url.clone();
        let secret = match self.opened.get(&w.id) {
            Some((sealed, plain)) if *sealed == w.secret => plain.clone(),
            _ => {
                let Some((plain, _)) = self.secrets.open(&w.secret) else {
                    error!(webhook = %w.id, "webhook secret does not open with the master key");
                    let _ = reports.send(report(unsent(
                        hallway_domain::AttemptError::InvalidResponse,
                    )));
                    return;
                };
                if self.opened.len() > self.state.webhook_count() {
                    // Deleted webhooks' entries: start again rather than track deletions.
                    self.opened.clear();
                }
                let plain: Arc<str> = Arc::from(plain);
                self.opened
                    .insert(w.id.clone(), (w.secret.clone(), plain.clone()));
                plain
            }
        };
        let transport = self.transport.clone();
        let clock = self.clock.clone();
        let timeout = Duration::from_millis(self.state.policy().attempt_timeout.0);
        let template = report(unsent(hallway_domain::AttemptError::Timeout));
        let span = tracing::debug_span!("attempt", delivery = %delivery_id, attempt);
        let delivery = delivery_id.clone();
        tokio::spawn(
            async move {
                let body = match body {
                    Ok(body) => body,
                    Err((store, read)) => {
                        // Read in place: a payload read is a lookup nearly always served from
                        // the store's cache, cheaper than a hop to the blocking pool.
                        let (account, event) = &template.body_key;
                        let found = read
                            .get_or_init(|| async {
                                match store.payload(account, event) {
                                    Ok(p) => p.map(|p| Bytes::from(p.as_bytes().to_vec())),
                                    Err(e) => {
                                        error!(error = %e, %delivery, "payload unreadable");
                                        None
                                    }
                                }
                            })
                            .await;
                        match found {
                            Some(body) => body.clone(),
                            None => {
                                // Without its body the attempt cannot be sent; it fails and
                                // retries on schedule.
                                let _ = reports.send(Report {
                                    outcome: unsent(hallway_domain::AttemptError::InvalidResponse),
                                    ..template
                                });
                                return;
                            }
                        }
                    }
                };
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
            }
            .instrument(span),
        );
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
        self.events_since_snapshot = 0;
        if self.installing.as_ref().is_some_and(|t| !t.is_finished()) {
            // The previous snapshot is still being installed: try again after as many events.
            return Ok(());
        }
        let seq = self.last_seq;
        // Encoded from the live state, on this thread: a clone for a background thread would
        // double the state's memory at the worst moment (a large backlog). Syncing it runs
        // beside the actor, so commits do not wait for it; the log before it then goes a few
        // records per append, inside the appends' own transactions, so that removing it
        // never stalls a commit (docs/decisions.md, truncation).
        let draft = self.store.write_snapshot(seq, &self.state)?;
        let store = self.store.clone();
        let through = self.alerts.truncate_through(seq);
        self.installing = Some(tokio::task::spawn_blocking(move || {
            let done = store
                .install_snapshot(draft)
                .and_then(|_| store.flush())
                .and_then(|_| store.truncate(through, Truncation::WithAppends));
            if let Err(e) = done {
                warn!(error = %e, seq, "snapshot failed; the next snapshot retries");
            }
        }));
        debug!(seq, "snapshot written");
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), EngineError> {
        if let Some(t) = self.installing.take() {
            let _ = t.await;
        }
        if self.last_seq > 0 {
            self.snapshot().await?;
        }
        if let Some(t) = self.installing.take() {
            let _ = t.await;
        }
        let store = self.store.clone();
        let through = self.alerts.truncate_through(self.last_seq);
        // No appends follow to carry the truncation: the log before the final snapshot goes
        // now, so a stopped engine leaves only what its next start reads.
        tokio::task::spawn_blocking(move || {
            store
                .truncate(through, Truncation::Now)
                .and_then(|_| store.flush())
        })
        .await
        .map_err(EngineError::from)??;
        info!("engine stopped");
        Ok(())
    }

    /// After a storage failure: answer everyone waiting, take nothing more.
    fn fail_all(&mut self, e: EngineError, open: Vec<Pending>) {
        error!(error = %e, "storage failed; the engine stops");
        self.fail_pending(open, &e);
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

#[cfg(test)]
mod tests {
    use super::*;
    use hallway_domain::EventId;

    fn key(n: u32) -> BodyKey {
        (AccountId::from("acc"), EventId::from(format!("evt_{n}")))
    }

    #[test]
    fn attempts_starting_together_share_one_read_and_finished_reads_are_forgotten() {
        let mut reads = SharedReads::new();
        let first = reads.of(&key(0));
        let second = reads.of(&key(0));
        assert!(Arc::ptr_eq(&first, &second));
        assert!(first.set(Some(Bytes::from_static(b"{}"))).is_ok());
        assert_eq!(second.get(), Some(&Some(Bytes::from_static(b"{}"))));
        drop((first, second));
        assert!(
            reads.of(&key(0)).get().is_none(),
            "a finished read is not reused"
        );
        for n in 1..10_000 {
            drop(reads.of(&key(n)));
        }
        assert!(reads.reads.len() <= 1024);
    }
}
