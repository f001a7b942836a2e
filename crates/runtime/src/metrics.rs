//! The metrics the engine keeps for `/metrics`, on `prometheus-client`.

use hallway_domain::{AttemptError, DurationMs};
use prometheus_client::encoding::{prometheus_text, text as openmetrics_text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Every error class, in a fixed order for the `failed` counters.
pub const ERROR_CLASSES: [AttemptError; 6] = [
    AttemptError::Timeout,
    AttemptError::Connect,
    AttemptError::Tls,
    AttemptError::HttpStatus,
    AttemptError::BlockedTarget,
    AttemptError::InvalidResponse,
];

fn error_index(e: AttemptError) -> usize {
    ERROR_CLASSES.iter().position(|c| *c == e).unwrap_or(0)
}

/// The `Content-Type` of [`Metrics::encode`]'s Prometheus text (format 0.0.4).
pub const PROMETHEUS_CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The `Content-Type` of [`Metrics::encode_openmetrics`]'s text.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of `hallway_attempts_total`: `outcome`, then `error` on failures, in that order.
type AttemptLabels = Vec<(&'static str, &'static str)>;

fn attempt_labels(error: Option<AttemptError>) -> AttemptLabels {
    match error {
        None => vec![("outcome", "succeeded")],
        Some(e) => vec![("outcome", "failed"), ("error", e.as_str())],
    }
}

/// Live metrics, updated by the actor and the API, read by anyone.
pub struct Metrics {
    registry: Registry,
    published: Counter,
    duplicate_publishes: Counter,
    succeeded: Counter,
    failed: [Counter; 6],
    pending: Gauge,
    spilled: Gauge,
    in_flight: Gauge,
    remembered: Gauge,
    started: Counter,
    started_late: Counter,
    batches: Counter,
    events_logged: Counter,
    attempt_duration: Histogram,
    publish_duration: Histogram,
    start_delay: Histogram,
    /// The longest start delay so far, in ms (the histogram's buckets are too coarse to
    /// say whether every start was on time).
    start_delay_max_ms: std::sync::atomic::AtomicU64,
}

/// An attempt that starts later than this after its due time counts as late.
pub const LATE_START: DurationMs = DurationMs::from_secs(1);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        // The registry appends `_total` to counters and a period to every help text.
        let published = Counter::default();
        registry.register(
            "hallway_events_published",
            "Events published (first publishes)",
            published.clone(),
        );
        let duplicate_publishes = Counter::default();
        registry.register(
            "hallway_duplicate_publishes",
            "Publishes of an already published event id",
            duplicate_publishes.clone(),
        );
        let attempts = Family::<AttemptLabels, Counter>::default();
        // Every series exists from the start, so a scrape shows zeros rather than gaps; the
        // handles kept share the family's counters and spare the hot path its lock.
        let succeeded = attempts.get_or_create(&attempt_labels(None)).clone();
        let failed =
            ERROR_CLASSES.map(|c| attempts.get_or_create(&attempt_labels(Some(c))).clone());
        registry.register("hallway_attempts", "Delivery attempts by outcome", attempts);
        let pending = Gauge::default();
        registry.register(
            "hallway_deliveries_pending",
            "Deliveries not finished",
            pending.clone(),
        );
        let spilled = Gauge::default();
        registry.register(
            "hallway_deliveries_spilled",
            "Pending deliveries waiting in the store rather than in memory",
            spilled.clone(),
        );
        let remembered = Gauge::default();
        registry.register(
            "hallway_event_ids_remembered",
            "Published event ids memory holds (the store holds them all)",
            remembered.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "hallway_attempts_in_flight",
            "Attempts under way",
            in_flight.clone(),
        );
        let started = Counter::default();
        registry.register(
            "hallway_attempts_started",
            "Attempts started (resent ones included)",
            started.clone(),
        );
        let started_late = Counter::default();
        registry.register(
            "hallway_attempts_started_late",
            "Attempts started more than 1 s after they were due",
            started_late.clone(),
        );
        let batches = Counter::default();
        registry.register(
            "hallway_log_batches",
            "Batches committed to the log",
            batches.clone(),
        );
        let events_logged = Counter::default();
        registry.register(
            "hallway_log_events",
            "Events committed to the log",
            events_logged.clone(),
        );
        // 5 ms to about 41 s: past the default 30 s attempt timeout.
        let attempt_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register(
            "hallway_attempt_duration_seconds",
            "Time from sending an attempt to its outcome, in seconds",
            attempt_duration.clone(),
        );
        // 1 ms to about 8 s: a publish waits for one fsync of the log.
        let publish_duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "hallway_publish_duration_seconds",
            "Time to answer a publish, durable write included, in seconds",
            publish_duration.clone(),
        );
        // 1 ms to about 33 s: a due attempt waits for a tick, a free slot or a load.
        let start_delay = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "hallway_attempt_start_delay_seconds",
            "Time from an attempt's due time to its start, in seconds",
            start_delay.clone(),
        );
        let build_info = Family::<Vec<(&'static str, &'static str)>, Gauge>::default();
        build_info
            .get_or_create(&vec![("version", env!("CARGO_PKG_VERSION"))])
            .set(1);
        registry.register(
            "hallway_build_info",
            "The running version; always 1",
            build_info,
        );
        Metrics {
            registry,
            published,
            duplicate_publishes,
            succeeded,
            failed,
            pending,
            spilled,
            in_flight,
            remembered,
            started,
            started_late,
            batches,
            events_logged,
            attempt_duration,
            publish_duration,
            start_delay,
            start_delay_max_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

/// A copy of the counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Events published (first publishes only).
    pub published: u64,
    /// Publishes answered from the idempotency record.
    pub duplicate_publishes: u64,
    /// Attempts that succeeded.
    pub attempts_succeeded: u64,
    /// Failed attempts by error class, in [`ERROR_CLASSES`] order.
    pub attempts_failed: Vec<(AttemptError, u64)>,
    /// Unfinished deliveries.
    pub pending: u64,
    /// Unfinished deliveries waiting in the store rather than in memory.
    pub spilled: u64,
    /// Attempts under way.
    pub in_flight: u64,
    /// Published event ids memory holds.
    pub remembered_ids: u64,
    /// Attempts started.
    pub started: u64,
    /// Attempts started more than [`LATE_START`] after they were due.
    pub started_late: u64,
    /// The longest time from an attempt's due time to its start, in ms.
    pub start_delay_max_ms: u64,
    /// Log records committed.
    pub batches: u64,
    /// Events logged.
    pub events_logged: u64,
}

fn seconds(d: DurationMs) -> f64 {
    d.0 as f64 / 1_000.0
}

impl Metrics {
    pub(crate) fn published(&self) {
        self.published.inc();
    }
    pub(crate) fn duplicate_publish(&self) {
        self.duplicate_publishes.inc();
    }
    pub(crate) fn succeeded(&self, duration: DurationMs) {
        self.succeeded.inc();
        self.attempt_duration.observe(seconds(duration));
    }
    pub(crate) fn failed(&self, e: AttemptError, duration: DurationMs) {
        self.failed[error_index(e)].inc();
        self.attempt_duration.observe(seconds(duration));
    }
    pub(crate) fn committed(&self, events: usize) {
        self.batches.inc();
        self.events_logged.inc_by(events as u64);
    }
    pub(crate) fn gauges(&self, pending: usize, in_flight: usize, spilled: u64, remembered: usize) {
        self.remembered
            .set(i64::try_from(remembered).unwrap_or(i64::MAX));
        self.pending.set(i64::try_from(pending).unwrap_or(i64::MAX));
        self.in_flight
            .set(i64::try_from(in_flight).unwrap_or(i64::MAX));
        self.spilled.set(i64::try_from(spilled).unwrap_or(i64::MAX));
    }
    /// An attempt started `delay` after it was due.
    pub(crate) fn started(&self, delay: DurationMs) {
        self.start_delay.observe(seconds(delay));
        self.started.inc();
        self.start_delay_max_ms
            .fetch_max(delay.0, std::sync::atomic::Ordering::Relaxed);
        if delay > LATE_START {
            self.started_late.inc();
        }
    }

    /// Records how long one publish took to answer, as the caller saw it.
    pub fn observe_publish(&self, elapsed: std::time::Duration) {
        self.publish_duration.observe(elapsed.as_secs_f64());
    }

    /// Every metric in the Prometheus text format (0.0.4), served as
    /// [`PROMETHEUS_CONTENT_TYPE`].
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an encoder error would leave a partial scrape.
        if prometheus_text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Every metric in the OpenMetrics text format, served as [`OPENMETRICS_CONTENT_TYPE`].
    pub fn encode_openmetrics(&self) -> String {
        let mut out = String::new();
        if openmetrics_text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// A copy of every counter.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            published: self.published.get(),
            duplicate_publishes: self.duplicate_publishes.get(),
            attempts_succeeded: self.succeeded.get(),
            attempts_failed: ERROR_CLASSES
                .iter()
                .zip(&self.failed)
                .map(|(c, n)| (*c, n.get()))
                .collect(),
            pending: u64::try_from(self.pending.get()).unwrap_or(0),
            spilled: u64::try_from(self.spilled.get()).unwrap_or(0),
            in_flight: u64::try_from(self.in_flight.get()).unwrap_or(0),
            remembered_ids: u64::try_from(self.remembered.get()).unwrap_or(0),
            started: self.started.get(),
            started_late: self.started_late.get(),
            start_delay_max_ms: self
                .start_delay_max_ms
                .load(std::sync::atomic::Ordering::Relaxed),
            batches: self.batches.get(),
            events_logged: self.events_logged.get(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels_are_the_documented_ones() {
        let m = Metrics::default();
        m.succeeded(DurationMs(20));
        m.failed(AttemptError::Timeout, DurationMs(30_000));
        m.observe_publish(std::time::Duration::from_millis(3));
        let text = m.encode();
        for line in [
            "# TYPE hallway_events_published_total counter",
            "hallway_events_published_total 0",
            "hallway_duplicate_publishes_total 0",
            "# TYPE hallway_attempts_total counter",
            "hallway_attempts_total{outcome=\"succeeded\"} 1",
            "hallway_attempts_total{outcome=\"failed\",error=\"timeout\"} 1",
            "hallway_attempts_total{outcome=\"failed\",error=\"invalid_response\"} 0",
            "hallway_deliveries_pending 0",
            "hallway_deliveries_spilled 0",
            "hallway_attempts_in_flight 0",
            "hallway_event_ids_remembered 0",
            "hallway_attempts_started_total 0",
            "hallway_attempts_started_late_total 0",
            "hallway_attempt_start_delay_seconds_count 0",
            "hallway_log_batches_total 0",
            "hallway_log_events_total 0",
            "hallway_attempt_duration_seconds_count 2",
            "hallway_publish_duration_seconds_count 1",
            "# TYPE hallway_build_info gauge",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing in\n{text}"
            );
        }
        assert!(text.contains(&format!(
            "hallway_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
        let s = m.snapshot();
        assert_eq!(s.attempts_succeeded, 1);
        assert_eq!(s.attempts_failed[0], (AttemptError::Timeout, 1));
        assert!(m.encode_openmetrics().ends_with("# EOF\n"));
    }
}
