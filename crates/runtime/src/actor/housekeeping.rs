//! Housekeeping: retention (old deliveries, payloads and published ids) on a timer, and
//! snapshots (with the truncation of the log before them) when the committer says the state
//! is the log's.

use crate::EngineError;
use hallway_domain::{DurationMs, State, Timestamp};
use hallway_store::{EventStore, Truncation};
use std::sync::Arc;
use tracing::{debug, info, warn};

/// See the module documentation.
pub(crate) struct Housekeeping {
    store: Arc<dyn EventStore>,
    interval: DurationMs,
    next_maintenance: Timestamp,
    /// The last snapshot's install, while it runs.
    installing: Option<tokio::task::JoinHandle<()>>,
}

impl Housekeeping {
    /// Retention every `interval`, the first at `now`.
    pub(crate) fn new(store: Arc<dyn EventStore>, interval: DurationMs, now: Timestamp) -> Self {
        Housekeeping {
            store,
            interval,
            next_maintenance: now,
            installing: None,
        }
    }

    /// When retention is next due.
    pub(crate) fn poll_timeout(&self) -> Timestamp {
        self.next_maintenance
    }

    /// Whether retention is due at `now`.
    pub(crate) fn is_due(&self, now: Timestamp) -> bool {
        now >= self.poll_timeout()
    }

    /// Prunes old finished deliveries, payloads and published ids from the store, when
    /// retention is due.
    pub(crate) async fn maintain(&mut self, now: Timestamp, state: &State) {
        if now < self.next_maintenance {
            return;
        }
        self.next_maintenance = now.plus(self.interval);
        let before = state.policy().retention_start(now);
        let store = self.store.clone();
        match crate::store_calls::spawn(&*self.store, move || store.prune(before)).await {
            Ok(Ok(n)) if n > 0 => info!(deliveries = n, "retention pruned old deliveries"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!(error = %e, "retention failed"),
            Err(e) => warn!(error = %e, "retention task failed"),
        }
    }

    /// Saves `state`, which must be exactly the log through `seq`, and drops the log through
    /// `through` (at most `seq`: alert subscribers may still hold records after it).
    pub(crate) fn snapshot(
        &mut self,
        seq: u64,
        through: u64,
        state: &State,
    ) -> Result<(), EngineError> {
        if self.installing.as_ref().is_some_and(|t| !t.is_finished()) {
            // The previous snapshot is still being installed: the committer asks again after
            // as many events.
            return Ok(());
        }
        // Encoded from the live state, on this thread: a clone for a background thread would
        // double the state's memory at the worst moment (a large backlog). Syncing it runs
        // beside the actor, so commits do not wait for it; the log before it then goes a few
        // records per append, inside the appends' own transactions, so that removing it
        // never stalls a commit (docs/decisions.md, truncation).
        let draft = self.store.write_snapshot(seq, state)?;
        let store = self.store.clone();
        self.installing = Some(crate::store_calls::spawn(&*self.store, move || {
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

    /// At shutdown: a last snapshot of the log through `seq`, and the log through `through`
    /// removed.
    pub(crate) async fn finish(
        &mut self,
        seq: u64,
        through: u64,
        state: &State,
    ) -> Result<(), EngineError> {
        if let Some(t) = self.installing.take() {
            let _ = t.await;
        }
        if seq > 0 {
            self.snapshot(seq, through, state)?;
        }
        if let Some(t) = self.installing.take() {
            let _ = t.await;
        }
        let store = self.store.clone();
        // No appends follow to carry the truncation: the log before the final snapshot goes
        // now, so a stopped engine leaves only what its next start reads.
        crate::store_calls::spawn(&*self.store, move || {
            store
                .truncate(through, Truncation::Now)
                .and_then(|_| store.flush())
        })
        .await
        .map_err(EngineError::from)??;
        Ok(())
    }
}
