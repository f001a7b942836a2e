//! What can go wrong in a store, saying what failed and keeping the cause.

use crate::Seq;

/// What went wrong in the store. Corruption names the tree and key; nothing is skipped silently.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file of the store (a snapshot, a body segment, the data directory) could not be
    /// read, written, synced or removed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the file.
        what: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The embedded database failed an operation (I/O underneath it, or its own error).
    #[error("database failed to {op}: {source}")]
    Backend {
        /// The operation, as a verb phrase ("append a record").
        op: &'static str,
        /// The database's error.
        source: sled::Error,
    },
    /// A value could not be encoded (a bug: every domain value is encodable).
    #[error("encoding a record failed: {source}")]
    Encode {
        /// The encoder's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A record could not be decoded (corrupt bytes or an unknown format version).
    #[error("corrupt record in tree {tree:?} at key {key}: {reason}")]
    Corrupt {
        /// The tree (or file) it was read from.
        tree: &'static str,
        /// The key, printed readably (a sequence number or an id).
        key: String,
        /// What the decoder said.
        reason: String,
    },
    /// The log has a hole: a record is missing between two others.
    #[error("log gap: expected sequence {expected}, found {found}")]
    Gap {
        /// The sequence that should come next.
        expected: Seq,
        /// The one found instead.
        found: Seq,
    },
    /// Another process has the data directory open.
    #[error("data directory {path} is in use by another process")]
    Locked {
        /// The directory.
        path: String,
    },
    /// The log was truncated (after a snapshot) past the requested start.
    #[error("log truncated: asked from sequence {from}, the first kept is {first_kept}")]
    Truncated {
        /// The sequence asked for.
        from: Seq,
        /// The first sequence still in the log.
        first_kept: Seq,
    },
    /// The data directory was written in another layout than this build's (an earlier build
    /// of the unreleased 0.1): it is refused whole rather than misread.
    #[error("data directory {path} has {} and this build reads layout {expected} only; 0.1 is unreleased and migrates no earlier layout, so start with a new data directory (move this one aside)", match found { Some(n) => format!("layout {n}"), None => "an unnumbered layout (from before layouts were numbered)".to_owned() })]
    Layout {
        /// The directory.
        path: String,
        /// Its layout number, if it has one.
        found: Option<u64>,
        /// The layout this build reads.
        expected: u64,
    },
    /// The caller passed something the store cannot use (a malformed paging cursor, a
    /// snapshot ahead of the log, another backend's snapshot draft).
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl StoreError {
    /// An [`StoreError::Io`] maker for `map_err`: `what` names the action and the file.
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreError {
        let what = what.into();
        move |source| StoreError::Io { what, source }
    }
}
