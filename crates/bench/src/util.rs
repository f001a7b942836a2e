//! Small shared pieces: the error type, the monotonic clock every timestamp is taken from,
//! percentiles, process memory, and the ordered records the scenarios print.

use serde_json::Value;
use std::fmt;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;

/// Why a scenario could not run (the engine refused, a socket failed, a check broke).
#[derive(Debug)]
pub struct BenchError(pub String);

impl BenchError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        BenchError(message.into())
    }
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BenchError {}

impl From<hallway_runtime::EngineError> for BenchError {
    fn from(e: hallway_runtime::EngineError) -> Self {
        BenchError(format!("engine: {e}"))
    }
}

impl From<hallway_store::StoreError> for BenchError {
    fn from(e: hallway_store::StoreError) -> Self {
        BenchError(format!("store: {e}"))
    }
}

impl From<hallway_domain::Rejection> for BenchError {
    fn from(e: hallway_domain::Rejection) -> Self {
        BenchError(format!("domain rejected a command: {e}"))
    }
}

impl From<std::io::Error> for BenchError {
    fn from(e: std::io::Error) -> Self {
        BenchError(format!("i/o: {e}"))
    }
}

impl From<tokio::task::JoinError> for BenchError {
    fn from(e: tokio::task::JoinError) -> Self {
        BenchError(format!("task failed: {e}"))
    }
}

/// The result type of the harness.
pub type BenchResult<T> = Result<T, BenchError>;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the harness started, on the monotonic clock (shared by every thread).
pub fn now_ns() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Wall-clock Unix seconds (what signatures carry).
pub fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Wall-clock Unix milliseconds.
pub fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The `q` quantile (0..=1) of sorted nanosecond samples, in milliseconds; `None` if empty.
pub fn quantile_ms(sorted_ns: &[u64], q: f64) -> Option<f64> {
    if sorted_ns.is_empty() {
        return None;
    }
    let rank = (q * sorted_ns.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted_ns.len()) - 1;
    Some(sorted_ns[index] as f64 / 1e6)
}

/// Polls `done` every few milliseconds until it holds; `false` if `timeout` passed first.
pub async fn wait_until(mut done: impl FnMut() -> bool, timeout: std::time::Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Rounds to three decimals, for readable JSON.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A field of `/proc/self/status` in KiB (`VmHWM`, `VmRSS`), if the system has it.
pub fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// CPU time (user + system) this process has used, in seconds, from `/proc/self/stat`
/// (Linux's clock tick is 100 Hz on every mainstream architecture).
pub fn process_cpu_seconds() -> Option<f64> {
    cpu_seconds_of("/proc/self/stat")
}

/// CPU time (user + system, every thread) process `pid` has used, in seconds.
pub fn pid_cpu_seconds(pid: u32) -> Option<f64> {
    cpu_seconds_of(&format!("/proc/{pid}/stat"))
}

fn cpu_seconds_of(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// Bytes this process has caused to be written to storage (`write_bytes` of
/// `/proc/self/io`): with sled's page rewrites, far more than the data's size on disk.
pub fn process_written_bytes() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines()
        .find_map(|line| line.strip_prefix("write_bytes:")?.trim().parse().ok())
}

/// Bytes of every file under `dir`, recursively.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// One scenario's result: named fields in the order they were put, printed as one JSON
/// object or as rows of a table.
#[derive(Clone, Debug, Default)]
pub struct Record {
    /// The fields, in order.
    pub fields: Vec<(String, Value)>,
}

impl Record {
    /// A record whose first field is `scenario`.
    pub fn new(scenario: &str) -> Self {
        Record {
            fields: vec![("scenario".to_owned(), Value::from(scenario))],
        }
    }

    /// Adds (or replaces) a field.
    pub fn put(&mut self, key: &str, value: impl Into<Value>) -> &mut Self {
        let value = match value.into() {
            Value::Number(n) => match n.as_f64() {
                Some(f) if n.is_f64() => Value::from(round3(f)),
                _ => Value::Number(n),
            },
            v => v,
        };
        match self.fields.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.fields.push((key.to_owned(), value)),
        }
        self
    }

    /// A field's value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// A numeric field.
    pub fn number(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(Value::as_f64)
    }

    /// One JSON object on one line, fields in order.
    pub fn to_json(&self) -> String {
        let body: Vec<String> = self
            .fields
            .iter()
            .map(|(k, v)| format!("{}:{}", Value::from(k.as_str()), v))
            .collect();
        format!("{{{}}}", body.join(","))
    }

    /// A readable two-column table.
    pub fn to_table(&self) -> String {
        let width = self.fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (k, v) in &self.fields {
            let shown = match v {
                Value::String(s) => s.clone(),
                Value::Null => "-".to_owned(),
                Value::Object(o) if o.contains_key("met") => format!(
                    "{:<9} {:<8} {:<7} at {}",
                    o.get("value").map(Value::to_string).unwrap_or_default(),
                    o.get("target").and_then(Value::as_str).unwrap_or("?"),
                    if o.get("met").and_then(Value::as_bool) == Some(true) {
                        "MET"
                    } else {
                        "MISSED"
                    },
                    o.get("at").and_then(Value::as_str).unwrap_or("?"),
                ),
                other => other.to_string(),
            };
            out.push_str(&format!("  {k:<width$}  {shown}\n"));
        }
        out
    }

    /// The `key=json` lines a child process prints for its parent.
    pub fn to_lines(&self) -> String {
        self.fields
            .iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect()
    }

    /// Parses [`Record::to_lines`] output; lines that are not `key=json` are skipped.
    pub fn from_lines(text: &str) -> Record {
        let fields = text
            .lines()
            .filter_map(|line| {
                let (k, v) = line.split_once('=')?;
                let value: Value = serde_json::from_str(v).ok()?;
                Some((k.to_owned(), value))
            })
            .collect();
        Record { fields }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_pick_the_nearest_rank() {
        let v: Vec<u64> = (1..=100).map(|x| x * 1_000_000).collect();
        assert_eq!(quantile_ms(&v, 0.5), Some(50.0));
        assert_eq!(quantile_ms(&v, 0.99), Some(99.0));
        assert_eq!(quantile_ms(&v, 1.0), Some(100.0));
        assert_eq!(quantile_ms(&[], 0.5), None);
    }

    #[test]
    fn records_keep_their_order_and_round_trip_through_lines() {
        let mut r = Record::new("x");
        r.put("b", 1.23456).put("a", 2u64).put("s", "t");
        assert_eq!(r.to_json(), r#"{"scenario":"x","b":1.235,"a":2,"s":"t"}"#);
        let back = Record::from_lines(&r.to_lines());
        assert_eq!(back.to_json(), r.to_json());
    }
}
