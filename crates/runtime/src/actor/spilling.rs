//! Spilling (the domain's `spill` module says what moves and why): after each turn the actor
//! decides a `Spill`, which moves the waiting deliveries beyond the head of each webhook's
//! queue to the store's spill index with the turn's batch. At a quiet moment (nothing decided
//! and uncommitted, nothing committing, so the index is exactly the state's) it reads the
//! index back: the next deliveries of every queue that ran low, and a chunk of each former
//! generation a disable or delete left to settle.

use super::Actor;
use crate::budget::Budget;
use crate::EngineError;
use hallway_domain::{decide, Command, CommandKind, Event, SpilledDelivery, Timestamp, WebhookId};
use hallway_store::StoreError;
use tracing::{debug, error};

/// Deliveries of a former generation settled per read.
const SETTLE_CHUNK: usize = 4096;

/// Former generations settled at one quiet moment; the rest wait for the next.
const SETTLES_PER_QUIET: usize = 2;

/// Most deliveries loaded at one quiet moment, the emptiest queues first: a load is one log
/// record and its deliveries are held twice until it commits (in the state and in the
/// batch), so loading every webhook's whole room at once made the largest records and the
/// highest peak of memory.
const LOADS_PER_QUIET: usize = 2048;

/// What one quiet moment read from the spill index.
struct Read {
    loads: Vec<(WebhookId, u32, Vec<SpilledDelivery>, usize)>,
    settles: Vec<(WebhookId, u32, Vec<SpilledDelivery>)>,
}

impl Actor {
    /// Waiting deliveries of one webhook memory holds now.
    fn keep(&self) -> usize {
        if let Some(keep) = self.config.spill_keep {
            return keep.max(1);
        }
        Budget::new(self.config.memory_budget_bytes).waiting_per_webhook(
            self.state.webhook_count(),
            self.state.policy().max_open_per_webhook(),
        )
    }

    /// Moves what memory should not hold to the spill index, with the open batch.
    pub(super) fn spill(&mut self, now: Timestamp) {
        let keep = self.keep();
        match decide(&self.state, Command::new(now, CommandKind::Spill { keep })) {
            Ok(events) if !events.is_empty() => {
                for e in &events {
                    self.state.apply(e);
                }
                self.committer.push_events(events);
            }
            Ok(_) => {}
            Err(r) => error!(rejection = %r, "spill refused"),
        }
    }

    /// Whether a queue ran low while its webhook has spilled deliveries, or a former
    /// generation is left to settle: work for the next quiet moment.
    pub(super) fn spill_work_wanted(&self) -> bool {
        self.state.settling().next().is_some() || !self.state.spill_loads(self.keep()).is_empty()
    }

    /// At a quiet moment: reads the spill index for what the state asks to load and settle,
    /// and decides it into the open batch. A read the state refuses means the index and the
    /// log disagree: the engine stops, as for any damaged record.
    pub(super) async fn load_and_settle(&mut self, now: Timestamp) -> Result<(), EngineError> {
        debug_assert!(
            self.committer.is_quiet(),
            "the index is the log's only when quiet"
        );
        let mut loads = self.state.spill_loads(self.keep());
        // The emptiest queues (the most room) first, up to the cap.
        loads.sort_by_key(|l| std::cmp::Reverse(l.2));
        let mut left = LOADS_PER_QUIET;
        loads.retain_mut(|(_, _, room)| {
            *room = (*room).min(left);
            left -= *room;
            *room > 0
        });
        let settles: Vec<(WebhookId, u32)> = self
            .state
            .settling()
            .take(SETTLES_PER_QUIET)
            .map(|(w, g, _)| (w.clone(), g))
            .collect();
        let store = self.store.clone();
        let read = crate::store_calls::spawn(&*self.store, move || -> Result<Read, StoreError> {
            let mut read = Read {
                loads: Vec::with_capacity(loads.len()),
                settles: Vec::with_capacity(settles.len()),
            };
            for (w, g, room) in loads {
                // One more than the room: the key after the loaded ones is the new floor.
                let listed = store.spilled(&w, g, room.saturating_add(1))?;
                read.loads.push((w, g, listed, room));
            }
            for (w, g) in settles {
                let listed = store.spilled(&w, g, SETTLE_CHUNK)?;
                read.settles.push((w, g, listed));
            }
            Ok(read)
        })
        .await??;
        let mut commands = Vec::new();
        for (webhook_id, generation, mut listed, room) in read.loads {
            let next = listed.get(room).map(|d| (d.due, d.id.clone()));
            listed.truncate(room);
            debug!(webhook = %webhook_id, loaded = listed.len(), "spilled deliveries loaded");
            commands.push(CommandKind::LoadSpilled {
                webhook_id,
                generation,
                deliveries: listed,
                next,
            });
        }
        for (webhook_id, generation, listed) in read.settles {
            debug!(webhook = %webhook_id, settled = listed.len(), "spilled deliveries settled");
            commands.push(CommandKind::SettleSpilled {
                webhook_id,
                generation,
                deliveries: listed,
            });
        }
        for kind in commands {
            let events: Vec<Event> =
                decide(&self.state, Command::new(now, kind)).map_err(|r| StoreError::Corrupt {
                    tree: "spilled",
                    key: String::new(),
                    reason: format!("the spill index disagrees with the log: {r}"),
                })?;
            for e in &events {
                self.state.apply(e);
            }
            self.committer.push_events(events);
        }
        Ok(())
    }
}
