//! The run's trace: every observable step (operations and their answers, log records, sends
//! and their outcomes, crashes), hashed as it goes so two runs of a seed can be compared bit
//! for bit, and kept as text only when asked (`--trace`).

use sha2::{Digest, Sha256};
use std::fmt::Write;

/// See the module documentation.
pub struct Trace {
    hasher: Sha256,
    lines: Option<Vec<String>>,
    count: u64,
    /// The last lines, for a failure's report even when the whole trace is not kept.
    tail: std::collections::VecDeque<String>,
}

/// Lines kept for a failure's report.
const TAIL: usize = 40;

impl Trace {
    /// A trace that keeps its text when `keep` is set.
    pub fn new(keep: bool) -> Trace {
        Trace {
            hasher: Sha256::new(),
            lines: keep.then(Vec::new),
            count: 0,
            tail: std::collections::VecDeque::with_capacity(TAIL),
        }
    }

    /// Records one line at simulated time `ms` (since the start).
    pub fn line(&mut self, ms: u64, text: std::fmt::Arguments<'_>) {
        let mut s = String::with_capacity(64);
        let _ = write!(s, "{:>6}.{:03}s ", ms / 1000, ms % 1000);
        let _ = s.write_fmt(text);
        self.hasher.update(s.as_bytes());
        self.hasher.update(b"\n");
        self.count += 1;
        if self.tail.len() == TAIL {
            self.tail.pop_front();
        }
        self.tail.push_back(s.clone());
        if let Some(lines) = &mut self.lines {
            lines.push(s);
        }
    }

    /// Feeds bytes to the hash without a line (the content of log records).
    pub fn absorb(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
    }

    /// The hash of everything recorded so far, as hex.
    pub fn hash(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }

    /// How many lines were recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The whole text, if kept.
    pub fn lines(&self) -> Option<&[String]> {
        self.lines.as_deref()
    }

    /// The last lines recorded.
    pub fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }
}
