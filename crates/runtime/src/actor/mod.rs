//! The engine actor: the one owner of the state and the store.
//!
//! The loop reads select → handle → poll. It waits for whichever comes first: the batch in
//! flight landing, a send's report, a caller's message, or the next deadline. It handles that
//! input, decides every waiting report and message into the open batch (applying them to the
//! state) and starts due attempts (`Tick`), then polls its parts for what to do: the
//! [`committer`] for a batch to append and flush (group commit, one in flight while the next
//! is decided), callers to answer and a snapshot to take; the [`dispatcher`] sends the
//! attempts a landed batch started; [`housekeeping`] runs retention and snapshots. The actor
//! never waits on the network, and it sleeps until the next deadline, re-arming its timer
//! only when that deadline changes.

mod committer;
mod dispatcher;
mod fan_outs;
mod housekeeping;
mod id_memory;
mod lanes;
mod signer;
mod spilling;
mod targets;
mod timer;

use crate::alerts::AlertHub;
use crate::bodies::Bodies;
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::secrets::SecretBox;
use crate::transport::Transport;
use crate::{Config, EngineError};
use bytes::Bytes;
use committer::{Committer, Output};
use dispatcher::{Dispatcher, Report};
use fan_outs::FanOuts;
use hallway_domain::{decide, Command, CommandKind, Event, Outcome, State, Timestamp};
use hallway_store::{EventStore, StoreError};
use housekeeping::Housekeeping;
pub(crate) use id_memory::Expiries;
use id_memory::IdMemory;
use std::ops::Range;
use std::sync::Arc;
use timer::Timer;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

/// Answers a command once its batch is durable: with its events (or why it failed) and the
/// state after the batch.
pub(crate) type Reply = Box<dyn FnOnce(Result<&[Event], EngineError>, &State) + Send>;

/// Runs with the state once it is exactly the log through the given sequence.
pub(crate) type Inspect = Box<dyn FnOnce(&State, u64) + Send>;

/// What the actor receives from handles.
// Nearly every message is an `Exec`: boxing its command would cost an allocation per publish.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Msg {
    /// Decide a command, answer after commit. `read` is the expiry count at which a publish
    /// read the store for its id.
    Exec {
        kind: CommandKind,
        reply: Reply,
        read: Option<u64>,
    },
    /// Read the state after the current batch commits.
    Query(Box<dyn FnOnce(&State) + Send>),
    /// Run this once the state is exactly the log's (nothing decided and unlogged).
    Logged(Inspect),
    /// Stop: finish attempts under way, snapshot, flush.
    Shutdown {
        done: oneshot::Sender<Result<(), EngineError>>,
    },
}

/// Who waits for a batch to be durable.
enum Pending {
    /// A command, with where its events are in the batch (or why it was rejected).
    Reply(Reply, Result<Range<usize>, EngineError>),
    /// A read of the state after the batch.
    Query(Box<dyn FnOnce(&State) + Send>),
}

/// A commit's outcome, from the blocking pool.
type CommitResult = Result<Result<u64, StoreError>, tokio::task::JoinError>;

/// What woke the actor.
enum Wake {
    Committed(CommitResult),
    Report(Report),
    Msg(Option<Msg>),
    Timer,
}

/// The one owner of the state and the store; see the module documentation.
pub(crate) struct Actor {
    state: State,
    last_seq: u64,
    store: Arc<dyn EventStore>,
    secrets: Arc<SecretBox>,
    clock: Arc<dyn Clock>,
    rx: mpsc::Receiver<Msg>,
    config: Config,
    metrics: Arc<Metrics>,
    committer: Committer<Pending>,
    /// The committer's batch in flight, as the task appending and flushing it.
    commit: Option<tokio::task::JoinHandle<Result<u64, StoreError>>>,
    dispatcher: Dispatcher,
    housekeeping: Housekeeping,
    bodies: Bodies,
    /// The fan-out the open batch's publishes share.
    fan_outs: FanOuts,
    /// When memory may forget published ids.
    id_memory: IdMemory,
    /// Reports and messages received and not decided yet.
    reports: Vec<Report>,
    msgs: Vec<Msg>,
    shutdown: Option<(oneshot::Sender<Result<(), EngineError>>, Timestamp)>,
    /// Callers waiting for the state to be exactly the log's (`Msg::Logged`).
    logged: Vec<Inspect>,
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
        expiries: Expiries,
    ) -> Self {
        let clock = config.clock.clone();
        let dispatcher = Dispatcher::new(
            &state,
            transport,
            secrets.clone(),
            clock.clone(),
            store.clone(),
            config.max_in_flight,
        );
        let now = clock.now();
        let housekeeping = Housekeeping::new(store.clone(), config.maintenance_interval, now);
        Actor {
            state,
            last_seq,
            store,
            secrets,
            clock,
            rx,
            committer: Committer::new(config.snapshot_every_events),
            commit: None,
            dispatcher,
            housekeeping,
            bodies: Bodies::new(config.memory_budget_bytes),
            fan_outs: FanOuts::default(),
            id_memory: IdMemory::new(expiries, now),
            reports: Vec::new(),
            msgs: Vec::new(),
            config,
            metrics,
            shutdown: None,
            logged: Vec::new(),
            alerts,
        }
    }

    /// After a restart: attempts open in the log may not have been sent; reopen them so the
    /// first turn sends them again. Secrets sealed under an old key are resealed.
    pub(crate) async fn resume(&mut self, reseal: Vec<crate::Reseal>) -> Result<(), EngineError> {
        let now = self.clock.now();
        let mut events = decide(&self.state, Command::new(now, CommandKind::Resume))?;
        for e in &events {
            self.state.apply(e);
        }
        for r in reseal {
            let cmd = CommandKind::ResealSecret {
                account_id: r.account_id,
                webhook_id: r.webhook_id,
                secret: self.secrets.seal(&r.current),
                previous: r.previous.map(|p| self.secrets.seal(&p)),
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
        self.commit_now(events.clone()).await?;
        self.dispatcher.learn(&events);
        Ok(())
    }

    /// Runs until shutdown, a storage failure, or every handle is gone.
    pub(crate) async fn run(mut self) {
        let mut timer = Timer::new(self.clock.clone());
        loop {
            // Select: while holding for a snapshot nothing is decided, so neither messages
            // nor the timer need to wake the loop; the commit in flight will.
            let hold = self.committer.is_holding();
            timer.set(if hold { None } else { self.poll_timeout() });
            let wake = tokio::select! {
                biased;
                r = async {
                    match self.commit.as_mut() {
                        Some(task) => task.await,
                        None => std::future::pending().await,
                    }
                } => Wake::Committed(r),
                Some(r) = self.dispatcher.recv() => Wake::Report(r),
                m = self.rx.recv(), if self.shutdown.is_none() && !hold => Wake::Msg(m),
                () = timer.fired() => Wake::Timer,
            };
            // Handle.
            match wake {
                Wake::Committed(result) => {
                    self.commit = None;
                    if let Err(e) = self.handle_committed(result) {
                        self.fail_all(e);
                        return;
                    }
                }
                Wake::Report(r) => self.reports.push(r),
                Wake::Msg(Some(m)) => self.msgs.push(m),
                Wake::Msg(None) => {
                    // Every handle is gone: nobody can ask for anything again.
                    if let Some(task) = self.commit.take() {
                        let _ = task.await;
                    }
                    return;
                }
                Wake::Timer => {}
            }
            if !self.committer.is_holding() {
                self.decide_waiting().await;
            }
            self.metrics.gauges(
                self.state.pending_count(),
                self.state.in_flight_count(),
                self.state.spilled_count(),
                self.state.remembered_count(),
            );
            // Poll.
            match self.committer.poll_output() {
                Some(Output::Commit(events)) => self.start_commit(events),
                Some(Output::Answer(pending)) => self.answer(pending, &[]),
                None => {}
            }
            if !self.logged.is_empty() && self.committer.is_quiet() {
                for f in std::mem::take(&mut self.logged) {
                    f(&self.state, self.last_seq);
                }
            }
            // Loading and settling spilled deliveries read the store's spill index, which is
            // the state's only at a quiet moment: hold new decisions until one comes.
            let spill_work = self.shutdown.is_none() && self.spill_work_wanted();
            self.committer.want_quiet(spill_work);
            if spill_work && self.committer.is_quiet() {
                if let Err(e) = self.load_and_settle(self.clock.now()).await {
                    self.fail_all(e);
                    return;
                }
                self.committer.want_quiet(false);
                if let Some(events) = self.committer.poll_commit() {
                    self.start_commit(events);
                }
            }
            if let Some((_, deadline)) = &self.shutdown {
                let quiet = self.committer.is_quiet();
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
    /// dispatcher has room), the next attempt deadline, retention, the shutdown deadline.
    fn poll_timeout(&self) -> Option<Timestamp> {
        let start = if self.room() > 0 {
            self.state.next_start()
        } else {
            None
        };
        // Retention and expiries do not run during shutdown, so they must not wake it either.
        let maintenance = self.shutdown.is_none().then(|| {
            self.housekeeping
                .poll_timeout()
                .min(self.id_memory.next_expiry())
        });
        // A passed shutdown deadline is acted on at the next quiet moment, which a commit or
        // a report brings; as a timer it would only spin the loop.
        let now = self.clock.now();
        let shutdown = self.shutdown.as_ref().map(|(_, t)| *t).filter(|t| *t > now);
        let candidates = [start, self.state.next_deadline(), maintenance, shutdown];
        candidates.into_iter().flatten().min()
    }

    /// How many more attempts may start (none while shutting down).
    fn room(&self) -> usize {
        if self.shutdown.is_some() {
            return 0;
        }
        self.dispatcher.room(self.state.in_flight_count())
    }

    /// The batch in flight landed or failed: start the next one, answer this one's callers,
    /// send the attempts it started, and take a snapshot if one is due.
    fn handle_committed(&mut self, result: CommitResult) -> Result<(), EngineError> {
        let result = match result {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(e)) => Err(EngineError::from(e)),
            Err(e) => Err(EngineError::from(e)),
        };
        let done = match self.committer.handle_committed(result) {
            Ok(done) => done,
            Err((e, pending)) => {
                self.fail_pending(pending, &e);
                return Err(e);
            }
        };
        self.id_memory.committed();
        // The next batch was decided while this one committed: its commit starts before this
        // one's callers are answered and its attempts dispatched, so the store does not wait
        // on the actor.
        if let Some(events) = self.committer.poll_commit() {
            self.start_commit(events);
        }
        self.last_seq = done.seq;
        self.metrics.committed(done.events.len());
        self.answer(done.pending, &done.events);
        for alert in crate::alerts::of_record(done.seq, &done.events) {
            // Nobody listening is fine: subscribers read the log from their cursor.
            let _ = self.alerts.live.send(alert);
        }
        self.alerts
            .committed
            .store(done.seq, std::sync::atomic::Ordering::Release);
        self.dispatcher.learn(&done.events);
        for e in done.events.iter() {
            if let Event::AttemptStarted {
                delivery_id,
                attempt,
                ..
            } = e
            {
                let unsent =
                    self.dispatcher
                        .dispatch(&self.state, &mut self.bodies, delivery_id, *attempt);
                self.reports.extend(unsent);
            }
        }
        // A snapshot must match the log exactly: none while a batch is open or commits.
        if self.committer.poll_snapshot() {
            let through = self.alerts.truncate_through(self.last_seq);
            self.housekeeping
                .snapshot(self.last_seq, through, &self.state)?;
        }
        Ok(())
    }

    /// Decides waiting reports and messages into the open batch (applying them to the
    /// state), runs retention when due, and starts due attempts.
    async fn decide_waiting(&mut self) {
        while self.msgs.len() + self.reports.len() < self.config.max_batch {
            if let Some(r) = self.dispatcher.try_recv() {
                self.reports.push(r);
            } else if self.shutdown.is_none() {
                match self.rx.try_recv() {
                    Ok(m) => self.msgs.push(m),
                    Err(_) => break,
                }
            } else {
                break;
            }
        }
        let now = self.clock.now();
        for report in std::mem::take(&mut self.reports) {
            self.record_report(now, report);
        }
        for msg in std::mem::take(&mut self.msgs) {
            match msg {
                Msg::Exec { kind, reply, read } => self.decide_command(now, kind, reply, read),
                Msg::Query(f) => self.committer.push_pending(Pending::Query(f)),
                Msg::Logged(f) => self.logged.push(f),
                Msg::Shutdown { done } => {
                    let grace = self.config.shutdown_grace.as_millis() as u64;
                    let deadline = now.plus(hallway_domain::DurationMs(grace));
                    self.shutdown = Some((done, deadline));
                }
            }
        }
        if self.shutdown.is_none() {
            let events = self.id_memory.expire(now, &mut self.state);
            self.committer.push_events(events);
            if self.housekeeping.is_due(now) {
                self.housekeeping.maintain(now, &self.state).await;
            }
        }
        self.tick(now);
        self.spill(now);
    }

    fn decide_command(
        &mut self,
        now: Timestamp,
        mut kind: CommandKind,
        reply: Reply,
        read: Option<u64>,
    ) {
        let _span = tracing::debug_span!("command").entered();
        if let Err(e) = self
            .id_memory
            .read_again_if_stale(&*self.store, &mut kind, read)
        {
            self.committer
                .push_pending(Pending::Reply(reply, Err(e.into())));
            return;
        }
        let fan_out = self.fan_outs.assign(&mut kind);
        match decide(&self.state, Command::new(now, kind)) {
            Ok(new) => {
                if let Some(fan_out) = fan_out {
                    self.fan_outs.decided(fan_out, &new);
                }
                let start = self.committer.open_len();
                for (i, e) in new.iter().enumerate() {
                    self.state.apply(e);
                    if matches!(e, Event::EventPublished { .. }) {
                        self.metrics.published();
                        self.id_memory.published(now, self.state.policy());
                    }
                    self.remember_body(now, e, &new[i + 1..]);
                }
                self.committer.push_events(new);
                let range = start..self.committer.open_len();
                self.committer
                    .push_pending(Pending::Reply(reply, Ok(range)));
            }
            Err(r) => {
                debug!(rejection = %r, "command rejected");
                let rejected = Err(EngineError::Rejected(r));
                self.committer.push_pending(Pending::Reply(reply, rejected));
            }
        }
    }

    /// Keeps a body just published for the attempts this batch (or one soon after) starts.
    /// `after` is what the same command decided after `e`.
    fn remember_body(&mut self, now: Timestamp, e: &Event, after: &[Event]) {
        let (key, body, waiting) = match e {
            Event::EventPublished {
                account_id,
                event_id,
                body,
                deliveries,
                ..
            } if deliveries.is_empty() => {
                // The store keeps a republished id's new body for its paused deliveries, and
                // from then on for the earlier publish's too: so must the cache.
                let paused = after.iter().any(|n| {
                    matches!(n, Event::DeliveriesPaused { account_id: a, event_id: v, .. }
                        if a == account_id && v == event_id)
                });
                if paused {
                    let key = (account_id.clone(), event_id.clone());
                    self.bodies.replaced(&key, Bytes::from(body.clone()));
                }
                return;
            }
            Event::EventPublished {
                account_id,
                event_id,
                body,
                deliveries,
                ..
            } => ((account_id, event_id), body, deliveries.len()),
            Event::TestDeliveryCreated {
                account_id,
                event_id,
                body,
                ..
            } => ((account_id, event_id), body, 1),
            _ => return,
        };
        let key = (key.0.clone(), key.1.clone());
        let waiting = u32::try_from(waiting).unwrap_or(u32::MAX);
        self.bodies
            .published(key, Bytes::from(body.clone()), waiting, now);
    }

    /// Appends a batch as one record and flushes it on the blocking pool; the actor goes on
    /// deciding the next batch meanwhile.
    fn start_commit(&mut self, events: Arc<Vec<Event>>) {
        self.fan_outs.batch_closed();
        self.id_memory.commit_started();
        let store = self.store.clone();
        self.commit = Some(crate::store_calls::spawn(&*self.store, move || {
            store
                .append(&events)
                .and_then(|seq| store.flush().map(|_| seq))
        }));
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
    fn tick(&mut self, now: Timestamp) {
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
                if let Event::AttemptStarted { delivery_id, .. } = e {
                    if let Some(d) = self.state.delivery(delivery_id) {
                        self.metrics.started(now.since(d.due));
                    }
                }
                self.state.apply(e);
                self.count_outcome(e);
            }
            self.committer.push_events(new);
        }
    }

    fn record_report(&mut self, now: Timestamp, report: Report) {
        self.bodies.release(&report.body_key);
        let webhook = self
            .state
            .delivery(&report.delivery_id)
            .map(|d| d.webhook_id.to_string())
            .unwrap_or_default();
        if report.abandoned {
            let cmd = CommandKind::AbandonAttempt {
                delivery_id: report.delivery_id.clone(),
                attempt: report.attempt,
            };
            if let Ok(new) = decide(&self.state, Command::new(now, cmd)) {
                debug!(delivery = %report.delivery_id, attempt = report.attempt, "attempt given up unsent, to start again");
                for e in &new {
                    self.state.apply(e);
                }
                self.committer.push_events(new);
            }
            return;
        }
        let cmd = CommandKind::RecordOutcome {
            delivery_id: report.delivery_id.clone(),
            attempt: report.attempt,
            outcome: report.outcome,
            detail: report.detail,
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
                self.committer.push_events(new);
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
        let count = events.len();
        let seq = crate::store_calls::spawn(&*self.store, move || {
            store
                .append(&events)
                .and_then(|seq| store.flush().map(|_| seq))
        })
        .await
        .map_err(EngineError::from)??;
        self.last_seq = seq;
        self.committer.note_durable(count);
        self.metrics.committed(count);
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), EngineError> {
        let through = self.alerts.truncate_through(self.last_seq);
        self.housekeeping
            .finish(self.last_seq, through, &self.state)
            .await?;
        info!("engine stopped");
        Ok(())
    }

    /// After a storage failure: answer everyone waiting, take nothing more.
    fn fail_all(&mut self, e: EngineError) {
        error!(error = %e, "storage failed; the engine stops");
        let open = self.committer.abandon();
        self.fail_pending(open, &e);
        self.rx.close();
        let waiting = std::mem::take(&mut self.msgs);
        let queued = std::iter::from_fn(|| self.rx.try_recv().ok()).collect::<Vec<_>>();
        for msg in waiting.into_iter().chain(queued) {
            match msg {
                Msg::Exec { reply, .. } => reply(Err(e.clone()), &self.state),
                Msg::Query(_) | Msg::Logged(_) => {}
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
