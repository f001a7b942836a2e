//! Log lines reach stderr in batches: each line is copied into a shared buffer, and one
//! thread writes what has gathered with a single `write` every few milliseconds. A write per
//! line (the access line of each request, the line of each attempt) cost a system call and
//! often a wake-up of the reader on the pipe's other end, per line.
//!
//! Lines keep their order. A line waits at most [`GATHER`] plus the write before it; what is
//! gathered when the process is killed outright (SIGKILL) is lost, everything else is written
//! when the [`LogGuard`] is dropped. A writer that finds [`MAX_PENDING`] bytes waiting (the
//! reader stopped reading) waits for room, as a direct write to a full pipe would.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;
use tracing_subscriber::fmt::MakeWriter;

/// How long the writing thread lets lines gather after the first one arrives.
pub const GATHER: Duration = Duration::from_millis(2);

/// Bytes that may wait for the writing thread before writers wait for room.
pub const MAX_PENDING: usize = 1 << 20;

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    /// The writing thread sleeps until a line comes.
    idle: bool,
    /// The writing thread is writing what it took.
    writing: bool,
    closed: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    /// A first line arrived, or the writer is closing.
    arrived: Condvar,
    /// The writing thread took what was pending.
    taken: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The `MakeWriter` of the log subscriber: every line goes into the shared buffer.
#[derive(Clone)]
pub struct Batched {
    shared: Arc<Shared>,
}

/// Writes what is still gathered, and stops the writing thread, when dropped.
pub struct LogGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

static CURRENT: OnceLock<Arc<Shared>> = OnceLock::new();

/// Starts the writing thread over `out`; the first call in a process is also what [`flush`]
/// flushes.
pub fn start<W: Write + Send + 'static>(out: W) -> (Batched, LogGuard) {
    let shared = Arc::new(Shared {
        pending: Mutex::new(Pending::default()),
        arrived: Condvar::new(),
        taken: Condvar::new(),
    });
    let _ = CURRENT.set(shared.clone());
    let thread = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || write_loop(&shared, out))
            .ok()
    };
    (
        Batched {
            shared: shared.clone(),
        },
        LogGuard { shared, thread },
    )
}

fn write_loop<W: Write>(shared: &Shared, mut out: W) {
    let mut spare = Vec::new();
    loop {
        let mut pending = shared.lock();
        while pending.bytes.is_empty() && !pending.closed {
            pending.idle = true;
            pending = shared
                .arrived
                .wait(pending)
                .unwrap_or_else(PoisonError::into_inner);
        }
        pending.idle = false;
        if pending.bytes.is_empty() && pending.closed {
            return;
        }
        if !pending.closed {
            // Let the lines of the next moments join this write.
            drop(pending);
            std::thread::sleep(GATHER);
            pending = shared.lock();
        }
        std::mem::swap(&mut pending.bytes, &mut spare);
        pending.writing = true;
        drop(pending);
        shared.taken.notify_all();
        // A failed write (stderr closed) loses these lines, as it would lose a direct write.
        let _ = out.write_all(&spare).and_then(|()| out.flush());
        spare.clear();
        shared.lock().writing = false;
        shared.taken.notify_all();
    }
}

/// Writes everything gathered so far before returning (used before a notice that goes to
/// stderr directly, so lines stay in order).
pub fn flush() {
    if let Some(shared) = CURRENT.get() {
        flush_shared(shared);
    }
}

fn flush_shared(shared: &Shared) {
    let mut pending = shared.lock();
    while !pending.bytes.is_empty() || pending.writing {
        if pending.idle {
            shared.arrived.notify_one();
        }
        let (next, timeout) = shared
            .taken
            .wait_timeout(pending, Duration::from_millis(100))
            .unwrap_or_else(PoisonError::into_inner);
        pending = next;
        if timeout.timed_out() && pending.closed {
            return;
        }
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.arrived.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One line being written.
pub struct Line<'a> {
    shared: &'a Shared,
}

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut pending = self.shared.lock();
        while pending.bytes.len() >= MAX_PENDING && !pending.closed {
            pending = self
                .shared
                .taken
                .wait(pending)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if pending.closed {
            // The writing thread is gone (the process is ending): write directly.
            drop(pending);
            return io::stderr().write(buf);
        }
        pending.bytes.extend_from_slice(buf);
        if pending.idle {
            pending.idle = false;
            self.shared.arrived.notify_one();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Batched {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line {
            shared: &self.shared,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink the test can read back.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_from_many_threads_arrive_whole_and_in_each_threads_order() {
        let sink = Sink::default();
        let (writer, guard) = start(sink.clone());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..2_000 {
                        let line = format!("thread {t} line {i} {}\n", "x".repeat(i % 97));
                        writer.make_writer().write_all(line.as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        flush_shared(&writer.shared);
        drop(guard);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let mut next = [0usize; 4];
        for line in text.lines() {
            let words: Vec<&str> = line.split(' ').collect();
            let (t, i): (usize, usize) = (words[1].parse().unwrap(), words[3].parse().unwrap());
            assert_eq!(i, next[t], "thread {t}'s lines out of order");
            assert_eq!(words[4].len(), i % 97, "a torn line: {line}");
            next[t] += 1;
        }
        assert_eq!(next, [2_000; 4]);
    }

    #[test]
    fn dropping_the_guard_writes_what_is_gathered() {
        let sink = Sink::default();
        let (writer, guard) = start(sink.clone());
        writer.make_writer().write_all(b"last words\n").unwrap();
        drop(guard);
        assert_eq!(&*sink.0.lock().unwrap(), b"last words\n");
    }
}
