//! Event bodies in append-only segment files beside sled.
//!
//! sled keeps values inside its B-tree leaves (at most 16 entries each) and rewrites a whole
//! leaf when it consolidates or splits one, so a body kept in a tree is copied and written
//! several times over (docs/decisions.md has the cost). Here a body is written once, in a
//! checksummed frame, and the event's entry in the `published` tree holds only where it is.
//!
//! Order makes it crash-safe: an append writes its bodies and syncs them before its sled
//! transaction, so no committed reference can point at bytes that were not durable first.
//! A segment is deleted once retention has removed the last reference into it (the count
//! of references per segment is kept in `meta`, in the same transactions as the references).
//! A file no count names is left over from an append that never committed, and goes on open.

use super::lock;
use crate::StoreError;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The directory of segment files, inside the store's directory.
pub(crate) const BODIES_DIR: &str = "bodies";

/// The name errors give for body segments (they are not a sled tree).
pub(crate) const BODIES: &str = "bodies";

/// Length (u32 LE) and CRC-32 (u32 LE) in front of each body.
const FRAME_HEADER: usize = 8;

/// Where one body is: its segment, its frame's offset and the body's length in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BodyAt {
    pub segment: u64,
    pub offset: u64,
    pub len: u32,
}

impl BodyAt {
    fn show(&self) -> String {
        format!("segment {:016x} at {}", self.segment, self.offset)
    }
}

/// The segment being appended to.
struct Active {
    segment: u64,
    file: Arc<File>,
    len: u64,
}

/// The segment files of one store.
pub(crate) struct BodyFiles {
    dir: PathBuf,
    /// Sync writes (not for temporary stores, as sled's own flush is not synced for them).
    durable: bool,
    /// A segment this long or longer takes no more bodies.
    segment_max: u64,
    active: Mutex<Active>,
    /// Open handles for reading. A handle keeps working after its file is deleted, so a
    /// read racing with retention either finds its body or finds the reference gone.
    readers: Mutex<HashMap<u64, Arc<File>>>,
}

/// A [`StoreError::Io`] maker for `map_err`, naming the action and the segment.
fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreError {
    StoreError::io(what)
}

fn segment_name(segment: u64) -> String {
    format!("{segment:016x}.bodies")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".bodies")?;
    (hex.len() == 16)
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
}

impl BodyFiles {
    /// Opens the segments under `store_dir`: deletes those no reference counts name (left
    /// by appends that never committed) and starts a new segment after every known one.
    pub fn open(
        store_dir: &Path,
        referenced: &BTreeMap<u64, u64>,
        durable: bool,
        segment_max: u64,
    ) -> Result<BodyFiles, StoreError> {
        let dir = store_dir.join(BODIES_DIR);
        std::fs::create_dir_all(&dir).map_err(io("create the bodies directory"))?;
        let mut last = referenced.keys().next_back().copied().unwrap_or(0);
        for entry in std::fs::read_dir(&dir).map_err(io("list the bodies directory"))? {
            let entry = entry.map_err(io("list the bodies directory"))?;
            let name = entry.file_name();
            let Some(segment) = parse_segment_name(&name.to_string_lossy()) else {
                continue;
            };
            last = last.max(segment);
            if !referenced.contains_key(&segment) {
                std::fs::remove_file(entry.path())
                    .map_err(io("remove an unreferenced body segment"))?;
            }
        }
        let active = Self::create(&dir, last + 1, durable)?;
        Ok(BodyFiles {
            dir,
            durable,
            segment_max: segment_max.max(1),
            active: Mutex::new(active),
            readers: Mutex::new(HashMap::new()),
        })
    }

    fn create(dir: &Path, segment: u64, durable: bool) -> Result<Active, StoreError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.join(segment_name(segment)))
            .map_err(io(format!("create body segment {}", segment_name(segment))))?;
        if durable {
            // The new name must be durable before any reference to the file is.
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io("sync the bodies directory"))?;
        }
        Ok(Active {
            segment,
            file: Arc::new(file),
            len: 0,
        })
    }

    /// The segment appends go to now; it is never deleted while active.
    pub fn active_segment(&self) -> u64 {
        lock(&self.active).segment
    }

    /// Appends `bodies` to the active segment (starting a new one when it is full) and makes
    /// them durable; returns where each is, in order. One write and one sync for them all.
    pub fn write(&self, bodies: &[&str]) -> Result<Vec<BodyAt>, StoreError> {
        if bodies.is_empty() {
            return Ok(Vec::new());
        }
        let mut active = lock(&self.active);
        if active.len >= self.segment_max {
            *active = Self::create(&self.dir, active.segment + 1, self.durable)?;
        }
        let size: usize = bodies.iter().map(|b| FRAME_HEADER + b.len()).sum();
        let mut buf = Vec::with_capacity(size);
        let mut places = Vec::with_capacity(bodies.len());
        for body in bodies {
            let len = u32::try_from(body.len()).map_err(|_| {
                StoreError::Invalid(format!("a body of {} bytes is too large", body.len()))
            })?;
            places.push(BodyAt {
                segment: active.segment,
                offset: active.len + buf.len() as u64,
                len,
            });
            buf.extend_from_slice(&len.to_le_bytes());
            buf.extend_from_slice(&crate::codec::crc32(body.as_bytes()).to_le_bytes());
            buf.extend_from_slice(body.as_bytes());
        }
        active
            .file
            .write_all_at(&buf, active.len)
            .map_err(io(format!(
                "write body segment {}",
                segment_name(active.segment)
            )))?;
        if self.durable {
            active.file.sync_data().map_err(io(format!(
                "sync body segment {}",
                segment_name(active.segment)
            )))?;
        }
        active.len += buf.len() as u64;
        Ok(places)
    }

    fn reader(&self, segment: u64) -> Result<Arc<File>, StoreError> {
        if let Some(file) = lock(&self.readers).get(&segment) {
            return Ok(file.clone());
        }
        let file = Arc::new(
            File::open(self.dir.join(segment_name(segment)))
                .map_err(io(format!("open body segment {}", segment_name(segment))))?,
        );
        lock(&self.readers).insert(segment, file.clone());
        Ok(file)
    }

    /// Reads one body back, checking its frame.
    pub fn read(&self, at: &BodyAt) -> Result<String, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            tree: BODIES,
            key: at.show(),
            reason,
        };
        let file = self.reader(at.segment)?;
        let mut buf = vec![0u8; FRAME_HEADER + at.len as usize];
        file.read_exact_at(&mut buf, at.offset).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                corrupt("the segment ends before the body".into())
            } else {
                io(format!("read body segment {}", segment_name(at.segment)))(e)
            }
        })?;
        let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if len != at.len {
            return Err(corrupt(format!(
                "the frame says {len} bytes, the reference {}",
                at.len
            )));
        }
        let stored = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let body = buf.split_off(FRAME_HEADER);
        let computed = crate::codec::crc32(&body);
        if stored != computed {
            return Err(corrupt(format!(
                "checksum mismatch (stored {stored:08x}, computed {computed:08x})"
            )));
        }
        String::from_utf8(body).map_err(|_| corrupt("the body is not UTF-8".into()))
    }

    /// Deletes a segment nothing refers to any more (never the active one).
    pub fn remove(&self, segment: u64) -> Result<(), StoreError> {
        if segment == self.active_segment() {
            return Ok(());
        }
        lock(&self.readers).remove(&segment);
        match std::fs::remove_file(self.dir.join(segment_name(segment))) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io(format!("remove body segment {}", segment_name(segment)))(e))
            }
            _ => Ok(()),
        }
    }

    /// The segments on disk, by number, with their sizes.
    pub fn segments(&self) -> Result<BTreeMap<u64, u64>, StoreError> {
        let mut out = BTreeMap::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io("list the bodies directory"))? {
            let entry = entry.map_err(io("list the bodies directory"))?;
            if let Some(segment) = parse_segment_name(&entry.file_name().to_string_lossy()) {
                out.insert(
                    segment,
                    entry
                        .metadata()
                        .map_err(io("measure a body segment"))?
                        .len(),
                );
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_read_back_across_segments_and_damage_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = BodyFiles::open(dir.path(), &BTreeMap::new(), true, 16).expect("open");
        let first = files.write(&["{\"a\":1}", "é"]).expect("write");
        // The first segment is full now: the next write starts another.
        let second = files.write(&["x".repeat(100).as_str()]).expect("write");
        assert_eq!(first[0].segment, first[1].segment);
        assert_ne!(first[0].segment, second[0].segment);
        assert_eq!(files.read(&first[0]).expect("read"), "{\"a\":1}");
        assert_eq!(files.read(&first[1]).expect("read"), "é");
        assert_eq!(files.read(&second[0]).expect("read"), "x".repeat(100));

        // A flipped byte in the body is a checksum error naming the segment and offset.
        let path = dir
            .path()
            .join(BODIES_DIR)
            .join(segment_name(first[1].segment));
        let mut bytes = std::fs::read(&path).expect("read file");
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        std::fs::write(&path, &bytes).expect("write file");
        let fresh = BodyFiles::open(
            dir.path(),
            &BTreeMap::from([(first[0].segment, 2), (second[0].segment, 1)]),
            true,
            16,
        )
        .expect("reopen");
        match fresh.read(&first[1]) {
            Err(StoreError::Corrupt { tree, key, reason }) => {
                assert_eq!(tree, BODIES);
                assert!(key.contains(&format!("at {}", first[1].offset)), "{key}");
                assert!(reason.contains("checksum"), "{reason}");
            }
            other => panic!("expected corruption, got {other:?}"),
        }
        // A reference past the end of its segment is damage too, not a short read.
        let beyond = BodyAt {
            offset: 1 << 20,
            ..second[0]
        };
        assert!(matches!(
            fresh.read(&beyond),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn open_deletes_unreferenced_segments_and_starts_after_all() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = BodyFiles::open(dir.path(), &BTreeMap::new(), false, 1 << 20).expect("open");
        let kept = files.write(&["kept"]).expect("write")[0];
        drop(files);
        let counted = BTreeMap::from([(kept.segment, 1)]);
        let files = BodyFiles::open(dir.path(), &counted, false, 1 << 20).expect("open");
        let orphan = files.write(&["never committed"]).expect("write")[0];
        drop(files);
        let files = BodyFiles::open(dir.path(), &counted, false, 1 << 20).expect("reopen");
        let on_disk = files.segments().expect("list");
        assert!(on_disk.contains_key(&kept.segment));
        assert!(!on_disk.contains_key(&orphan.segment), "{on_disk:?}");
        assert!(
            files.active_segment() > orphan.segment,
            "numbers are never reused"
        );
        assert_eq!(files.read(&kept).expect("read"), "kept");
        // The active segment is never deleted; another one is.
        files.remove(files.active_segment()).expect("no-op");
        assert!(files
            .segments()
            .expect("list")
            .contains_key(&files.active_segment()));
        files.remove(kept.segment).expect("remove");
        assert!(!files.segments().expect("list").contains_key(&kept.segment));
    }
}
