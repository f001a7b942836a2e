//! Store work nobody waits for (installing a snapshot, dropping the log before it) on a thread
//! of its own at a lower CPU priority.
//!
//! On a busy machine that work competes with the commit path for cores: a log truncation
//! beside the commits measured as the main source of slow publishes at half load. A thread
//! may lower its own priority without privileges (raising it back would need
//! `CAP_SYS_NICE`), so each job gets a fresh thread rather than a pooled one.

use tracing::warn;

/// How much lower than the engine's threads background work runs (a nice value: the
/// scheduler gives a nice-10 thread about a tenth of the CPU share of a nice-0 one).
const NICE: i32 = 10;

/// One background job, running or done.
pub(crate) struct Background {
    thread: Option<std::thread::JoinHandle<()>>,
    /// Where a thread could not be started, the job runs on tokio's blocking pool instead.
    pooled: Option<tokio::task::JoinHandle<()>>,
}

impl Background {
    /// Runs `job` on a new low-priority thread called `name`.
    pub(crate) fn spawn(name: &str, job: impl FnOnce() + Send + 'static) -> Background {
        // The job is shared with the fallback: `Builder::spawn` consumes its closure even
        // when it fails to start the thread.
        let job = std::sync::Arc::new(std::sync::Mutex::new(Some(job)));
        let take = {
            let job = job.clone();
            move || job.lock().ok().and_then(|mut j| j.take())
        };
        let in_thread = take.clone();
        match std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                lower_priority();
                if let Some(job) = in_thread() {
                    job();
                }
            }) {
            Ok(thread) => Background {
                thread: Some(thread),
                pooled: None,
            },
            Err(e) => {
                warn!(error = %e, "no thread for background work; it runs on the blocking pool");
                Background {
                    thread: None,
                    pooled: Some(tokio::task::spawn_blocking(move || {
                        if let Some(job) = take() {
                            job();
                        }
                    })),
                }
            }
        }
    }

    /// Whether the job has ended.
    pub(crate) fn is_finished(&self) -> bool {
        !self.thread.as_ref().is_some_and(|t| !t.is_finished())
            && !self.pooled.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Waits for the job to end, off the async threads.
    pub(crate) async fn join(mut self) {
        if let Some(t) = self.thread.take() {
            if let Ok(Err(_)) = tokio::task::spawn_blocking(move || t.join()).await {
                warn!("a background job panicked");
            }
        }
        if let Some(t) = self.pooled.take() {
            if t.await.is_err() {
                warn!("a background job panicked");
            }
        }
    }
}

/// Lowers the calling thread's CPU priority; a failure leaves it as it was.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `gettid` has no preconditions; `setpriority` on the caller's own thread id
        // changes only this thread's nice value (Linux treats a tid as a process here).
        let tid = unsafe { libc::gettid() };
        let who = libc::id_t::try_from(tid).unwrap_or(0);
        if who != 0 && unsafe { libc::setpriority(libc::PRIO_PROCESS, who, NICE) } != 0 {
            warn!("could not lower a background thread's priority");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// The calling thread's nice value.
    #[cfg(target_os = "linux")]
    fn nice() -> i32 {
        // SAFETY: as in `lower_priority`; `getpriority` only reads.
        let tid = unsafe { libc::gettid() };
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::id_t::try_from(tid).unwrap_or(0)) }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_runs_on_its_own_lower_priority_thread_and_join_waits_for_it() {
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let (seen_tx, seen_rx) = mpsc::channel();
        let job = Background::spawn("hallway-test-bg", move || {
            let name = std::thread::current().name().map(str::to_owned);
            #[cfg(target_os = "linux")]
            let priority = nice();
            #[cfg(not(target_os = "linux"))]
            let priority = 0;
            let _ = go_rx.recv();
            let _ = seen_tx.send((name, priority));
        });
        assert!(!job.is_finished(), "the job waits for its go signal");
        go_tx.send(()).expect("the job is waiting");
        job.join().await;
        let (name, priority) = seen_rx.try_recv().expect("join returns after the job ran");
        assert_eq!(name.as_deref(), Some("hallway-test-bg"));
        #[cfg(target_os = "linux")]
        assert_eq!(
            priority,
            (nice() + NICE).min(19),
            "the job's thread runs niced"
        );
        let _ = priority;
    }
}
