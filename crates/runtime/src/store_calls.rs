//! Where the runtime calls its store: on tokio's blocking pool, so that a slow disk never
//! stalls the tasks beside it, unless the store says it never blocks
//! ([`hallway_store::EventLog::never_blocks`], an in-memory backend). Such a store is called
//! on a task of the engine's own runtime: no other thread decides when a call ends, which
//! keeps a single-threaded simulation deterministic. The task yields once before the call,
//! as a real store's call takes a while: the tasks the actor started meanwhile (sends) run
//! first, so a simulation meets the interleavings a real store allows, not only those of a
//! store that answers at once.

use hallway_store::EventStore;
use tokio::task::JoinHandle;

/// Runs `f`, a call (or a few) on `store`, where the store's kind says it belongs.
pub(crate) fn spawn<T: Send + 'static>(
    store: &dyn EventStore,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    if store.never_blocks() {
        tokio::spawn(async move {
            tokio::task::yield_now().await;
            f()
        })
    } else {
        tokio::task::spawn_blocking(f)
    }
}
