//! Opening a store: the options, the directory lock, and what the writer starts from.

use super::bodies::BodyFiles;
use super::bucket_cache::BucketCache;
use super::snapshot::SNAPSHOT_FILE;
use super::{keys, Op, SledStore, Trees, Writer};
use crate::codec;
use crate::{Seq, StoreError};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The file sled 0.34 keeps its log and pages in, inside the store's directory.
const SLED_DATA_FILE: &str = "db";

/// How a [`SledStore`] is opened.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// The size of sled's page cache, in bytes.
    pub cache_capacity_bytes: u64,
    /// Remove the data when the store is dropped (tests and benchmarks).
    pub temporary: bool,
    /// How long to retry while the directory is locked before answering
    /// [`StoreError::Locked`]. sled finishes background writes after a store is dropped and
    /// keeps its lock until then, which a reopen in the same process must not mistake for
    /// another process.
    pub lock_wait: Duration,
    /// Event bodies go to a new segment file once the current one is this long.
    pub body_segment_bytes: u64,
    /// Most delivery records the writer keeps decoded for outcomes about to arrive (records
    /// with a first attempt to make, one under way, or a retry due within seconds); the rest
    /// are read back when needed.
    pub bucket_cache_records: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            // The log is write-only and history is read back soon after it is written, so a
            // modest cache serves the hot set; sled overshoots its budget, so keep it small.
            cache_capacity_bytes: 32 * 1024 * 1024,
            temporary: false,
            lock_wait: Duration::from_millis(250),
            // Retention deletes a segment once its last body goes: small enough that
            // little is kept for long, large enough that files stay few.
            body_segment_bytes: 64 * 1024 * 1024,
            // Outcomes come back within the attempts in flight and the commits behind them:
            // a few thousand records at this machine's rates.
            bucket_cache_records: 16 * 1024,
        }
    }
}

/// The body segments' reference counts as `meta` holds them.
pub(super) fn read_body_refs(meta: &sled::Tree) -> Result<BTreeMap<u64, u64>, StoreError> {
    let mut counts = BTreeMap::new();
    for item in meta.scan_prefix(keys::META_BODY_REFS) {
        let (key, value) = item.op("read the body segments' counts")?;
        let show = || keys::show_text(&key);
        let segment = keys::parse_body_refs_key(&key).ok_or_else(|| StoreError::Corrupt {
            tree: keys::META,
            key: show(),
            reason: "not a body segment's count".into(),
        })?;
        counts.insert(segment, codec::decode::<u64>(keys::META, show, &value)?);
    }
    Ok(counts)
}

/// A number in `meta`, 0 if absent.
fn read_u64(meta: &sled::Tree, key: &[u8]) -> Result<u64, StoreError> {
    match meta.get(key).op("read the log's bounds")? {
        Some(bytes) => codec::decode(keys::META, || keys::show_text(key), &bytes),
        None => Ok(0),
    }
}

/// The last sequence the log holds, 0 if it is empty.
fn last_logged(log: &sled::Tree) -> Result<Seq, StoreError> {
    match log.last().op("read the log's last record")? {
        Some((key, _)) => keys::parse_seq(&key).ok_or_else(|| StoreError::Corrupt {
            tree: keys::LOG,
            key: keys::show_seq(&key),
            reason: "a log key must be 8 bytes".into(),
        }),
        None => Ok(0),
    }
}

/// sled 0.34 reports a held lock as an I/O error of kind `Other` whose text starts with
/// "could not acquire lock" (config.rs, `try_lock`); that text is the only signal it gives.
fn map_open_error(source: sled::Error, dir: &Path) -> StoreError {
    match &source {
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
            StoreError::Locked {
                path: dir.display().to_string(),
            }
        }
        _ => StoreError::Backend {
            op: "open the data directory",
            source,
        },
    }
}

/// Removes snapshots written but never installed (a crash in between): they are of no use.
fn remove_unused_drafts(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(SNAPSHOT_FILE) && name.ends_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Refuses a directory of another layout than this build's ([`keys::LAYOUT`]) and numbers a
/// new one. A directory with data but no number predates numbering.
fn check_layout(trees: &Trees, dir: &Path) -> Result<(), StoreError> {
    let refuse = |found| StoreError::Layout {
        path: dir.display().to_string(),
        found,
        expected: keys::LAYOUT,
    };
    if let Some(bytes) = trees.meta.get(keys::META_LAYOUT).op("read the layout")? {
        // Any encoding this build cannot read is a layout it does not know either.
        let found: u64 = codec::decode(keys::META, || keys::show_text(keys::META_LAYOUT), &bytes)
            .map_err(|_| refuse(None))?;
        return match found {
            keys::LAYOUT => Ok(()),
            other => Err(refuse(Some(other))),
        };
    }
    let has_data = !trees.log.is_empty()
        || !trees.meta.is_empty()
        || !trees.deliveries.is_empty()
        || !trees.published.is_empty()
        || dir.join(SNAPSHOT_FILE).exists();
    if has_data {
        return Err(refuse(None));
    }
    trees
        .meta
        .insert(keys::META_LAYOUT, codec::encode(&keys::LAYOUT)?)
        .op("record the layout")?;
    Ok(())
}

impl SledStore {
    /// Opens (creating if needed) the store in `dir` with default options.
    ///
    /// Fails with [`StoreError::Locked`] within [`StoreOptions::lock_wait`] if another
    /// process (or another open store in this one) holds the directory.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        Self::open_with(dir, &StoreOptions::default())
    }

    /// Opens (creating if needed) the store in `dir`. A directory of another layout than
    /// this build's is [`StoreError::Layout`].
    pub fn open_with(dir: &Path, options: &StoreOptions) -> Result<SledStore, StoreError> {
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(options.cache_capacity_bytes)
            .temporary(options.temporary);
        let give_up = Instant::now() + options.lock_wait;
        let db = loop {
            match config.open().map_err(|e| map_open_error(e, dir)) {
                Err(StoreError::Locked { .. }) if Instant::now() < give_up => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                other => break other?,
            }
        };
        let tree = |name: &str| db.open_tree(name).op("open a tree");
        let trees = Trees {
            log: tree(keys::LOG)?,
            meta: tree(keys::META)?,
            history: tree(keys::HISTORY)?,
            deliveries: tree(keys::DELIVERIES)?,
            by_time: tree(keys::BY_TIME)?,
            spilled: tree(keys::SPILLED)?,
            published: tree(keys::PUBLISHED)?,
        };
        check_layout(&trees, dir)?;
        let snapshot_seq = read_u64(&trees.meta, keys::META_SNAPSHOT_SEQ)?;
        let truncated_through = read_u64(&trees.meta, keys::META_TRUNCATED_THROUGH)?;
        // After truncating everything up to the snapshot the log can be empty; numbering
        // must still go on from where it was.
        let last = last_logged(&trees.log)?
            .max(snapshot_seq)
            .max(truncated_through);
        let body_refs = read_body_refs(&trees.meta)?;
        let bodies = BodyFiles::open(
            dir,
            &body_refs,
            !options.temporary,
            options.body_segment_bytes,
        )?;
        remove_unused_drafts(dir);
        let data_file = if options.temporary {
            None
        } else {
            let path = dir.join(SLED_DATA_FILE);
            let file = std::fs::File::open(&path)
                .map_err(StoreError::io(format!("open {}", path.display())))?;
            Some(file)
        };
        Ok(SledStore {
            db,
            trees,
            writer: Mutex::new(Writer {
                next_seq: last + 1,
                snapshot_seq,
                truncated_through,
                // A truncation asked for before a restart (or cut short by a crash) goes on:
                // everything before a durable snapshot may go, and nothing after it.
                truncate_target: snapshot_seq,
                body_refs,
                doomed: Vec::new(),
                open_chunks: Default::default(),
                open_runs: Default::default(),
            }),
            bodies: Arc::new(bodies),
            written: AtomicU64::new(0),
            durable: Mutex::new(0),
            buckets: Mutex::new(BucketCache::new(options.bucket_cache_records)),
            data_file,
            path: dir.to_path_buf(),
        })
    }
}
