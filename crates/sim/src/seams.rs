//! The engine's store and transport in a run, each bound to one incarnation of the engine:
//! after a crash, the dead incarnation's store calls fail and its sends never leave, as a
//! dead process's would.

use crate::core::{kind, Core, Shared};
use hallway_domain::{
    AccountId, DeliveryId, Event, EventId, IdempotencyKey, Published, SpilledDelivery, State,
    Timestamp, WebhookId,
};
use hallway_runtime::transport::{OutgoingRequest, SendFuture, Sent, Transport};
use hallway_store::{
    DeliveryFilter, DeliveryRecord, EventLog, LogRecords, MemoryStore, Page, PublishedIds,
    ReadModel, Seq, SnapshotDraft, StoreError, Truncation,
};
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

fn crashed() -> StoreError {
    StoreError::Invalid("the process crashed (simulated)".into())
}

/// The store as one incarnation of the engine sees it.
pub struct SimStore {
    shared: Shared,
    memory: Arc<MemoryStore>,
    incarnation: u64,
}

impl SimStore {
    /// The store for the live incarnation.
    pub fn new(shared: &Shared) -> SimStore {
        let core = shared.lock();
        SimStore {
            shared: shared.clone(),
            memory: core.memory.clone(),
            incarnation: core.incarnation,
        }
    }

    /// The core, if this incarnation is alive; a write counts against the fuse.
    fn alive(&self, write: bool) -> Result<MutexGuard<'_, Core>, StoreError> {
        let mut core = self.shared.lock();
        if core.incarnation != self.incarnation || core.dead {
            return Err(crashed());
        }
        if write {
            if let Some(left) = core.fuse.as_mut() {
                if *left == 0 {
                    core.dead = true;
                    core.note(format_args!("fuse: the process dies at this store write"));
                    return Err(crashed());
                }
                *left -= 1;
            }
        }
        Ok(core)
    }
}

impl EventLog for SimStore {
    fn append(&self, events: &[Event]) -> Result<Seq, StoreError> {
        let mut core = self.alive(true)?;
        let seq = self.memory.append(events)?;
        let kinds: Vec<&str> = events.iter().map(kind).collect();
        core.note(format_args!("append {seq}: {}", kinds.join(" ")));
        for e in events {
            core.trace.absorb(format!("{e:?}").as_bytes());
        }
        core.unflushed.push((seq, events.to_vec()));
        core.stats.records += 1;
        Ok(seq)
    }

    fn flush(&self) -> Result<(), StoreError> {
        let mut core = self.alive(true)?;
        self.memory.flush()?;
        let records = std::mem::take(&mut core.unflushed);
        if let Some((last, _)) = records.last() {
            let last = *last;
            core.note(format_args!("flush through {last}"));
        }
        core.durable(records);
        Ok(())
    }

    fn never_blocks(&self) -> bool {
        true
    }

    fn last_seq(&self) -> Result<Seq, StoreError> {
        let _core = self.alive(false)?;
        self.memory.last_seq()
    }

    fn read_log(&self, from: Seq) -> LogRecords<'_> {
        match self.alive(false) {
            Ok(_core) => {
                let records: Vec<_> = self.memory.read_log(from).collect();
                Box::new(records.into_iter())
            }
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }

    fn write_snapshot(&self, seq: Seq, state: &State) -> Result<SnapshotDraft, StoreError> {
        let mut core = self.alive(false)?;
        // A snapshot must be exactly the replay of the durable log through its sequence:
        // what a restart rebuilds from it.
        if core.audit.seq != seq {
            let durable = core.audit.seq;
            core.violation(format!(
                "a snapshot at record {seq} while the durable log ends at {durable}"
            ));
        } else if core.audit.replica != *state {
            core.violation(format!(
                "the snapshot at record {seq} differs from the replay of the log through it"
            ));
        }
        self.memory.write_snapshot(seq, state)
    }

    fn install_snapshot(&self, draft: SnapshotDraft) -> Result<(), StoreError> {
        let mut core = self.alive(true)?;
        let seq = draft.seq();
        self.memory.install_snapshot(draft)?;
        core.note(format_args!("snapshot at {seq} installed"));
        Ok(())
    }

    fn load_snapshot(&self) -> Result<Option<(Seq, State)>, StoreError> {
        let _core = self.alive(false)?;
        self.memory.load_snapshot()
    }

    fn truncate(&self, through: Seq, when: Truncation) -> Result<u64, StoreError> {
        let mut core = self.alive(true)?;
        let n = self.memory.truncate(through, when)?;
        core.note(format_args!("truncate through {through} ({when:?})"));
        Ok(n)
    }
}

impl ReadModel for SimStore {
    fn published(&self, key: &IdempotencyKey) -> Result<Option<Published>, StoreError> {
        let _core = self.alive(false)?;
        self.memory.published(key)
    }

    fn published_ids(
        &self,
        after: Option<[u8; 24]>,
        limit: usize,
    ) -> Result<Option<PublishedIds>, StoreError> {
        let _core = self.alive(false)?;
        self.memory.published_ids(after, limit)
    }

    fn payload(
        &self,
        account: &AccountId,
        event: &EventId,
    ) -> Result<Option<Arc<str>>, StoreError> {
        let _core = self.alive(false)?;
        self.memory.payload(account, event)
    }

    fn delivery(
        &self,
        webhook: &WebhookId,
        delivery: &DeliveryId,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        let _core = self.alive(false)?;
        self.memory.delivery(webhook, delivery)
    }

    fn deliveries_where(
        &self,
        webhook: &WebhookId,
        filter: &DeliveryFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, StoreError> {
        let _core = self.alive(false)?;
        self.memory.deliveries_where(webhook, filter, limit, cursor)
    }

    fn spilled(
        &self,
        webhook: &WebhookId,
        generation: u32,
        limit: usize,
    ) -> Result<Vec<SpilledDelivery>, StoreError> {
        let _core = self.alive(false)?;
        self.memory.spilled(webhook, generation, limit)
    }

    fn prune(&self, before: Timestamp) -> Result<u64, StoreError> {
        let mut core = self.alive(true)?;
        let n = self.memory.prune(before)?;
        core.note(format_args!("prune before {} removed {n}", before.0));
        Ok(n)
    }

    fn purge_account(
        &self,
        account: &AccountId,
        webhooks: &[WebhookId],
    ) -> Result<u64, StoreError> {
        let mut core = self.alive(true)?;
        let n = self.memory.purge_account(account, webhooks)?;
        core.note(format_args!("purge of account {account} removed {n}"));
        Ok(n)
    }
}

/// The network as one incarnation of the engine sees it.
pub struct SimTransport {
    shared: Shared,
    incarnation: u64,
}

impl SimTransport {
    /// The transport of the live incarnation.
    pub fn new(shared: &Shared) -> SimTransport {
        let incarnation = shared.lock().incarnation;
        SimTransport {
            shared: shared.clone(),
            incarnation,
        }
    }
}

impl Transport for SimTransport {
    fn send(&self, request: OutgoingRequest, timeout: Duration) -> SendFuture {
        let shared = self.shared.clone();
        let incarnation = self.incarnation;
        Box::pin(async move {
            let fate = shared.lock().on_send(incarnation, &request, timeout);
            let Some((id, fate)) = fate else {
                // A dead process sends nothing, and hears nothing back.
                return std::future::pending().await;
            };
            tokio::time::sleep(Duration::from_millis(fate.after_ms)).await;
            shared.lock().on_answer(id, fate.outcome);
            Sent::bare(fate.outcome)
        })
    }
}
