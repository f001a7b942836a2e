//! Where the runtime calls its store: on tokio's blocking pool, so that a slow disk never
//! stalls the tasks beside it, unless the store says it never blocks
//! ([`hallway_store::EventLog::never_blocks`], an in-memory backend). Such a store is called
//! on a task of the engine's own runtime: no other thread decides when a call ends, which
//! keeps a single-threaded simulation deterministic.

use hallway_store::EventStore;
use tokio::task::JoinHandle;

/// Runs `f`, a call (or a few) on `store`, where the store's kind says it belongs.
pub(crate) fn spawn<T: Send + 'static>(
    store: &dyn EventStore,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    if store.never_blocks() {
        tokio::spawn(async move { f() })
    } else {
        tokio::task::spawn_blocking(f)
    }
}
