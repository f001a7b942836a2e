//! The committer: which decisions are open, which batch is being made durable, and when a
//! snapshot may be taken. Sans-IO: it never touches the store or the clock. The actor feeds it
//! decisions (`push_*`) and commit outcomes (`handle_committed`) and asks it what to do next
//! (`poll_commit`, `poll_output`, `poll_snapshot`); the actor does the I/O.
//!
//! One batch commits at a time, so the log's records are in decision order and a caller is
//! answered only once every event it could have seen is durable. The next batch is decided
//! while one commits (pipelining), and its commit starts as soon as the previous one lands.

use hallway_domain::Event;
use std::sync::Arc;

/// What the actor must do for the committer.
#[derive(Debug)]
pub(crate) enum Output<P> {
    /// Append these events as one record and flush; report with `handle_committed`.
    Commit(Arc<Vec<Event>>),
    /// Answer these now: their batch logged nothing, and every earlier batch is durable.
    Answer(Vec<P>),
}

/// A batch that became durable: its events, its callers and its log position.
#[derive(Debug)]
pub(crate) struct Committed<P> {
    /// The batch's events, as logged.
    pub(crate) events: Arc<Vec<Event>>,
    /// Who waits for the batch, in decision order.
    pub(crate) pending: Vec<P>,
    /// The record's sequence number.
    pub(crate) seq: u64,
}

/// The open batch, the batch in flight and the snapshot hold. `P` is whatever waits for a
/// batch (a reply, a query); the committer only keeps it in order.
pub(crate) struct Committer<P> {
    open_events: Vec<Event>,
    open_pending: Vec<P>,
    /// The batch being appended and flushed, if any.
    in_flight: Option<(Arc<Vec<Event>>, Vec<P>)>,
    events_since_snapshot: u64,
    snapshot_every: u64,
    /// The actor has work that needs a quiet moment (reading the spill index).
    quiet_wanted: bool,
    /// After a failed commit the store is broken: nothing more is committed.
    failed: bool,
}

impl<P> Committer<P> {
    /// A committer that asks for a snapshot every `snapshot_every` logged events.
    pub(crate) fn new(snapshot_every: u64) -> Self {
        Committer {
            open_events: Vec::new(),
            open_pending: Vec::new(),
            in_flight: None,
            events_since_snapshot: 0,
            snapshot_every,
            quiet_wanted: false,
            failed: false,
        }
    }

    /// Events decided and applied, to be logged with the open batch.
    pub(crate) fn push_events(&mut self, events: impl IntoIterator<Item = Event>) {
        self.open_events.extend(events);
    }

    /// Someone waiting for the open batch to be durable.
    pub(crate) fn push_pending(&mut self, p: P) {
        self.open_pending.push(p);
    }

    /// Events in the open batch so far: where the next pushed events start.
    pub(crate) fn open_len(&self) -> usize {
        self.open_events.len()
    }

    /// Whether nothing is open and nothing is committing.
    pub(crate) fn is_quiet(&self) -> bool {
        self.in_flight.is_none() && self.open_events.is_empty() && self.open_pending.is_empty()
    }

    /// Whether a batch is being committed.
    #[cfg(test)]
    pub(crate) fn is_committing(&self) -> bool {
        self.in_flight.is_some()
    }

    fn snapshot_due(&self) -> bool {
        self.events_since_snapshot >= self.snapshot_every
    }

    /// Asks for (or stops asking for) a quiet moment, as a due snapshot does.
    pub(crate) fn want_quiet(&mut self, wanted: bool) {
        self.quiet_wanted = wanted;
    }

    /// Whether nothing new may be decided: a snapshot is due (or the actor wants a quiet
    /// moment) and a batch commits. The state snapshotted must be exactly the state of the
    /// log, so the snapshot waits for the commit and new decisions wait for the snapshot.
    pub(crate) fn is_holding(&self) -> bool {
        (self.snapshot_due() || self.quiet_wanted) && self.in_flight.is_some()
    }

    /// The open batch to commit now, if it has events and no batch is in flight. Batches that
    /// logged nothing are left for `poll_output`, which answers them in order.
    pub(crate) fn poll_commit(&mut self) -> Option<Arc<Vec<Event>>> {
        if self.failed || self.in_flight.is_some() || self.open_events.is_empty() {
            return None;
        }
        let events = Arc::new(std::mem::take(&mut self.open_events));
        let pending = std::mem::take(&mut self.open_pending);
        self.in_flight = Some((events.clone(), pending));
        Some(events)
    }

    /// What to do with the open batch now that the actor has decided what it could.
    pub(crate) fn poll_output(&mut self) -> Option<Output<P>> {
        if let Some(events) = self.poll_commit() {
            return Some(Output::Commit(events));
        }
        if self.failed || self.in_flight.is_some() || self.open_pending.is_empty() {
            return None;
        }
        Some(Output::Answer(std::mem::take(&mut self.open_pending)))
    }

    /// The batch in flight landed (`Ok(seq)`) or failed. On failure the error comes back with
    /// the callers of the failed batch, and nothing is committed again.
    pub(crate) fn handle_committed<E>(
        &mut self,
        result: Result<u64, E>,
    ) -> Result<Committed<P>, (E, Vec<P>)> {
        // The actor reports only commits it started; were it not so, an empty batch landed.
        let (events, pending) = self.in_flight.take().unwrap_or_default();
        match result {
            Ok(seq) => {
                self.events_since_snapshot += events.len() as u64;
                Ok(Committed {
                    events,
                    pending,
                    seq,
                })
            }
            Err(e) => {
                self.failed = true;
                Err((e, pending))
            }
        }
    }

    /// Events made durable outside the pipeline (at startup).
    pub(crate) fn note_durable(&mut self, events: usize) {
        self.events_since_snapshot += events as u64;
    }

    /// Whether to snapshot now: one is due, and the state is exactly the log's (nothing open,
    /// nothing committing). Saying yes restarts the count.
    pub(crate) fn poll_snapshot(&mut self) -> bool {
        if self.failed || !self.snapshot_due() || !self.is_quiet() {
            return false;
        }
        self.events_since_snapshot = 0;
        true
    }

    /// After a failure: the callers of the open batch, to be told.
    pub(crate) fn abandon(&mut self) -> Vec<P> {
        self.failed = true;
        self.open_events.clear();
        std::mem::take(&mut self.open_pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hallway_domain::Timestamp;

    fn event(n: u64) -> Event {
        Event::IdempotencyKeysExpired {
            before: Timestamp(n),
            at: Timestamp(n),
        }
    }

    fn commit(c: &mut Committer<&'static str>) -> Arc<Vec<Event>> {
        match c.poll_output() {
            Some(Output::Commit(events)) => events,
            other => panic!("expected a commit, got {other:?}"),
        }
    }

    #[test]
    fn a_batch_is_answered_only_after_it_is_durable() {
        let mut c = Committer::new(1_000);
        c.push_events([event(1), event(2)]);
        c.push_pending("publish");
        let events = commit(&mut c);
        assert_eq!(events.len(), 2);
        assert!(c.is_committing() && !c.is_quiet());
        let done = c.handle_committed::<()>(Ok(7)).expect("committed");
        assert_eq!(
            (done.seq, done.pending, done.events.len()),
            (7, vec!["publish"], 2)
        );
        assert!(c.is_quiet());
    }

    #[test]
    fn the_next_batch_waits_for_the_one_in_flight_then_commits_at_once() {
        let mut c = Committer::new(1_000);
        c.push_events([event(1)]);
        c.push_pending("first");
        commit(&mut c);
        c.push_events([event(2)]);
        c.push_pending("second");
        assert!(c.poll_output().is_none(), "one commit at a time");
        let first = c.handle_committed::<()>(Ok(1)).expect("committed");
        assert_eq!(first.pending, vec!["first"]);
        // Pipelining: the next commit starts before the first batch's callers are answered.
        let next = c.poll_commit().expect("the second batch commits");
        assert_eq!(*next, vec![event(2)]);
        let second = c.handle_committed::<()>(Ok(2)).expect("committed");
        assert_eq!(second.pending, vec!["second"]);
    }

    #[test]
    fn a_batch_without_events_is_answered_in_order_without_a_commit() {
        let mut c = Committer::new(1_000);
        c.push_events([event(1)]);
        c.push_pending("publish");
        commit(&mut c);
        c.push_pending("query");
        assert!(c.poll_commit().is_none(), "nothing to log");
        assert!(c.poll_output().is_none(), "not before the batch in flight");
        c.handle_committed::<()>(Ok(1)).expect("committed");
        assert!(c.poll_commit().is_none());
        match c.poll_output() {
            Some(Output::Answer(p)) => assert_eq!(p, vec!["query"]),
            other => panic!("expected an answer, got {other:?}"),
        }
        assert!(c.is_quiet());
    }

    #[test]
    fn a_due_snapshot_holds_decisions_until_the_commit_lands_and_waits_for_quiet() {
        let mut c = Committer::new(2);
        c.push_events([event(1), event(2)]);
        commit(&mut c);
        assert!(!c.is_holding(), "not due before the commit lands");
        c.handle_committed::<()>(Ok(1)).expect("committed");
        assert!(!c.is_holding());
        c.push_events([event(3)]);
        assert!(!c.poll_snapshot(), "the open batch is not in the snapshot");
        commit(&mut c);
        assert!(c.is_holding(), "due, and a batch commits: decide nothing");
        assert!(!c.poll_snapshot());
        c.handle_committed::<()>(Ok(2)).expect("committed");
        assert!(!c.is_holding());
        assert!(c.poll_snapshot());
        assert!(!c.poll_snapshot(), "the count restarted");
    }

    #[test]
    fn a_wanted_quiet_moment_holds_decisions_like_a_due_snapshot() {
        let mut c = Committer::new(1_000);
        c.push_events([event(1)]);
        commit(&mut c);
        assert!(!c.is_holding());
        c.want_quiet(true);
        assert!(
            c.is_holding(),
            "wanted, and a batch commits: decide nothing"
        );
        c.handle_committed::<()>(Ok(1)).expect("committed");
        assert!(!c.is_holding() && c.is_quiet());
        c.want_quiet(false);
        c.push_events([event(2)]);
        commit(&mut c);
        assert!(!c.is_holding(), "no longer wanted");
    }

    #[test]
    fn after_a_failed_commit_nothing_commits_again() {
        let mut c = Committer::new(1_000);
        c.push_events([event(1)]);
        c.push_pending("first");
        commit(&mut c);
        c.push_events([event(2)]);
        c.push_pending("second");
        let (e, failed) = c.handle_committed(Err("disk")).expect_err("failed");
        assert_eq!((e, failed), ("disk", vec!["first"]));
        assert!(c.poll_output().is_none());
        assert!(!c.poll_snapshot());
        assert_eq!(c.abandon(), vec!["second"]);
    }

    #[test]
    fn startup_commits_count_towards_the_next_snapshot() {
        let mut c: Committer<()> = Committer::new(3);
        c.note_durable(3);
        assert!(c.poll_snapshot());
    }
}
