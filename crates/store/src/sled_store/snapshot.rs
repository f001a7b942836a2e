//! Snapshots of the state: a file beside the trees, written aside and then installed, with
//! the sequence it covers in `meta`.

use super::{keys, Op, SledStore, WriterGuard};
use crate::codec;
use crate::{Seq, SnapshotDraft, StoreError};
use hallway_domain::{FromSnapshot, SnapshotForm, State};
use std::path::PathBuf;

/// The latest snapshot of the state, in the store's directory, in the state's snapshot form
/// (`hallway_domain::SnapshotForm`).
pub const SNAPSHOT_FILE: &str = "hallway-state";

/// What a [`SnapshotDraft`] of this backend holds: the file written aside.
struct Draft {
    tmp: PathBuf,
}

/// A snapshot at `seq` must cover records the log has and has not truncated past.
fn check_seq(writer: &WriterGuard<'_>, seq: Seq) -> Result<(), StoreError> {
    let last = writer.next_seq - 1;
    if seq > last {
        return Err(StoreError::Invalid(format!(
            "snapshot at seq {seq} is ahead of the log, which ends at {last}"
        )));
    }
    if seq < writer.truncated_through {
        return Err(StoreError::Invalid(format!(
            "snapshot at seq {seq} is behind the truncated log, which starts after {}",
            writer.truncated_through
        )));
    }
    Ok(())
}

/// Encodes the state as of `seq` to a file aside, not yet current.
pub(super) fn write(
    store: &SledStore,
    seq: Seq,
    state: &State,
) -> Result<SnapshotDraft, StoreError> {
    check_seq(&store.writer(), seq)?;
    // The snapshot is a file next to the trees, streamed without holding it in memory
    // (a large state would double its memory as one encoded value); no lock is held, so
    // appends go on meanwhile.
    let tmp = store.path.join(format!("{SNAPSHOT_FILE}.{seq}.tmp"));
    let mut file =
        std::fs::File::create(&tmp).map_err(StoreError::io(format!("create {}", tmp.display())))?;
    codec::encode_to_file(&(seq, SnapshotForm(state)), &mut file)?;
    Ok(SnapshotDraft::new(seq, Draft { tmp }))
}

/// Makes a written snapshot durable and current, unless a newer one is already.
pub(super) fn install(store: &SledStore, draft: SnapshotDraft) -> Result<(), StoreError> {
    let seq = draft.seq();
    let Draft { tmp } = draft.into_backend::<Draft>()?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(StoreError::io(format!("sync {}", tmp.display())))?;
    if seq < store.writer().snapshot_seq {
        // A newer snapshot is current already.
        let _ = std::fs::remove_file(&tmp);
        return Ok(());
    }
    // Installs are not concurrent (one snapshotter), so no lock is needed while syncing:
    // appends go on.
    let current = store.path.join(SNAPSHOT_FILE);
    std::fs::rename(&tmp, &current).map_err(StoreError::io(format!(
        "rename {} to {}",
        tmp.display(),
        current.display()
    )))?;
    if let Ok(dir) = std::fs::File::open(&store.path) {
        // Makes the rename durable; not every platform can sync a directory.
        let _ = dir.sync_all();
    }
    // The sequence in `meta` moves only once the file is durable and in place.
    let mut writer = store.writer();
    check_seq(&writer, seq)?;
    // One key is atomic by itself; a batch would take sled's global write lock.
    store
        .trees
        .meta
        .insert(keys::META_SNAPSHOT_SEQ, codec::encode(&seq)?)
        .op("record the snapshot's sequence")?;
    writer.snapshot_seq = seq;
    store.wrote();
    Ok(())
}

/// The installed snapshot and the sequence it covers, if any.
pub(super) fn load(store: &SledStore) -> Result<Option<(Seq, State)>, StoreError> {
    let path = store.path.join(SNAPSHOT_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io(format!("read {}", path.display()))(e)),
    };
    let (seq, state): (Seq, FromSnapshot) =
        codec::decode(SNAPSHOT_FILE, || path.display().to_string(), &bytes)?;
    Ok(Some((seq, state.0)))
}
