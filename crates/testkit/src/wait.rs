//! Polling for asynchronous results.

use std::future::Future;
use std::time::{Duration, Instant};

/// How long asynchronous results are waited for: generous, because debug builds on a loaded
/// 2-core machine run the recover and crash tests' thousand deliveries slowly; a passing test
/// never waits it out.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `f` every 20 ms until it returns `Some` (up to [`DEADLINE`]); panics naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(what, DEADLINE, f).await
}

/// [`eventually`] with its own deadline, for a wait that includes a known delay.
pub async fn eventually_within<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("never happened within {limit:?}: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
