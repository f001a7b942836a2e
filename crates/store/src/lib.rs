//! The durable event log of hallway-webhooks, behind two traits ([`EventLog`] and
//! [`ReadModel`]), with sled as the embedded backend ([`SledStore`]).
//!
//! The log is the source of truth: one record per committed batch of events, keyed by a
//! big-endian sequence number. Snapshots of the domain state let startup skip most of it;
//! projections (delivery history by webhook, event payloads stored once per event, their
//! bodies in append-only segment files) are updated in the same atomic batch as the log
//! record they derive from.
//!
//! Durability: [`EventLog::append`] writes a record (and its projection updates)
//! atomically but not durably; [`EventLog::flush`] makes every record appended before it
//! durable. The runtime appends each actor batch, flushes once, and only then answers its
//! callers (group commit). Concurrent `flush` calls share one fsync.
//!
//! Startup, as the runtime does it:
//!
//! ```no_run
//! use hallway_domain::{Policy, State};
//! use hallway_store::{EventLog, SledStore, StoreError, Truncation};
//!
//! # fn main() -> Result<(), StoreError> {
//! let store = SledStore::open(std::path::Path::new("./hallway-data"))?;
//! let (from, mut state) = match store.load_snapshot()? {
//!     Some((seq, state)) => (seq + 1, state),
//!     None => (1, State::new(Policy::default())),
//! };
//! for record in store.read_log(from) {
//!     let (_seq, events) = record?; // a gap or a corrupt record stops startup, loudly
//!     for e in &events {
//!         state.apply(e);
//!     }
//! }
//! // Then: append each batch, flush, answer; every N batches save_snapshot(seq, &state)
//! // and truncate(seq, Truncation::WithAppends); now and then prune(now - retention).
//! # let _ = Truncation::Now;
//! # Ok(()) }
//! ```
//!
//! Records are versioned and checksummed ([`codec`]); a damaged one is
//! [`StoreError::Corrupt`] naming its tree and key. Retention ([`ReadModel::prune`]) removes
//! finished deliveries and unneeded bodies older than its cut-off; with snapshots and
//! truncation, disk use stays bounded under steady load.
#![deny(missing_docs)]

pub mod codec;
mod error;
mod history;
mod memory;
mod sled_store;
mod traits;

pub use error::StoreError;
pub use history::{AttemptRecord, DeliveryFilter, DeliveryRecord, DeliveryStatus, Page};
pub use memory::MemoryStore;
pub use sled_store::{SledStore, StoreOptions, SNAPSHOT_FILE};
pub use traits::{
    EventLog, EventStore, LogRecords, PublishedIds, ReadModel, Seq, SnapshotDraft, Truncation,
};
