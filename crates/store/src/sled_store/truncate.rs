//! Truncation: removing the log records a snapshot covers, either now (a step at a time) or
//! a few inside each following append.

use super::{keys, Op, SledStore, WriterGuard};
use crate::codec;
use crate::{Seq, StoreError};
use sled::IVec;

/// Log records [`now`] removes per step, each step under the writer lock once.
const TRUNCATE_CHUNK: u64 = 256;

/// Log records an append removes, at most, when a truncation was asked for with the appends:
/// the log gains one record per append, so this catches up within an eighth of the appends
/// between two snapshots, and costs each append only a few removals.
pub(super) const APPEND_TRUNCATE: u64 = 8;

/// The old records one append removes, in its own transaction.
pub(super) struct Cut {
    /// The last sequence removed; the new truncation marker.
    pub through: Seq,
    /// The log keys to remove.
    pub keys: Vec<IVec>,
    /// `through`, encoded for `meta`.
    pub marker: Vec<u8>,
}

impl Cut {
    /// What the next append removes: up to [`APPEND_TRUNCATE`] records toward the target,
    /// never past the latest snapshot. `None` when nothing is due.
    pub(super) fn for_append(writer: &WriterGuard<'_>) -> Result<Option<Cut>, StoreError> {
        let through = writer
            .truncate_target
            .min(writer.snapshot_seq)
            .min(writer.truncated_through + APPEND_TRUNCATE);
        if through <= writer.truncated_through {
            return Ok(None);
        }
        let keys = (writer.truncated_through + 1..=through)
            .map(|n| IVec::from(&keys::seq_key(n)[..]))
            .collect();
        Ok(Some(Cut {
            through,
            keys,
            marker: codec::encode(&through)?,
        }))
    }

    /// Records in the writer that the append carrying this cut committed.
    pub(super) fn committed(&self, writer: &mut WriterGuard<'_>) {
        assert!(
            self.through > writer.truncated_through && self.through <= writer.snapshot_seq,
            "a cut moves the marker forward and never past the snapshot"
        );
        writer.truncated_through = self.through;
    }
}

/// Asks the appends that follow to remove the records up to `through` (never past the
/// latest snapshot), a few each ([`crate::Truncation::WithAppends`]).
pub(super) fn with_appends(store: &SledStore, through: Seq) {
    let mut writer = store.writer();
    writer.truncate_target = writer.truncate_target.max(through);
}

/// Removes the records up to `through` (never past the latest snapshot) before returning
/// ([`crate::Truncation::Now`]); returns how many went.
pub(super) fn now(store: &SledStore, through: Seq) -> Result<u64, StoreError> {
    let t = &store.trees;
    let mut removed = 0u64;
    loop {
        // The writer lock is taken per chunk, not across the whole truncation: appends
        // must not wait for old records to be removed (they touch other keys).
        let chunk_end = {
            let mut writer = store.writer();
            // Records after the snapshot are needed to rebuild the state: keep them
            // whatever `through` says.
            let limit = through.min(writer.snapshot_seq);
            if writer.truncated_through >= limit {
                break;
            }
            let end = limit.min(writer.truncated_through + TRUNCATE_CHUNK);
            // The marker moves first, with the writer's copy (so an append carrying a
            // later truncation never writes an older marker): from then on the log is
            // the range after it, and records at or below it are garbage that a crash
            // may leave and the next call removes.
            t.meta
                .insert(keys::META_TRUNCATED_THROUGH, codec::encode(&end)?)
                .op("move the truncation marker")?;
            writer.truncated_through = end;
            end
        };
        let mut doomed = Vec::new();
        for key in t.log.range(..=keys::seq_key(chunk_end)).keys() {
            doomed.push(key.op("list truncated log records")?);
        }
        // Neither a transaction nor a batch: a transactional remove reads every old value
        // (log records are large) and holds them all until commit, and a batch holds
        // sled's global write lock throughout, stalling every append (so every publish)
        // behind it.
        for k in &doomed {
            t.log.remove(k).op("remove a truncated log record")?;
        }
        removed += doomed.len() as u64;
        store.wrote();
    }
    Ok(removed)
}
