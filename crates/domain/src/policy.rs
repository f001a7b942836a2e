//! Every number the rules use, with the spec's values as defaults.

use crate::types::{DurationMs, Timestamp};
use serde::{Deserialize, Serialize};

/// The event type the product publishes today.
pub const SESSION_PROCESSING_COMPLETED: &str = "session.processing.completed";

/// The payload schema version every envelope carries.
pub const API_VERSION: &str = "2026-01-01";

/// The rules' numbers. Every field is overridable; `Policy::default()` is the spec.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Delay before each attempt, counted from the previous failure (the first from publish).
    /// Its length is the number of attempts a delivery makes.
    pub retry_delays: Vec<DurationMs>,
    /// A response head must arrive within this time for an attempt to succeed.
    pub attempt_timeout: DurationMs,
    /// Consecutive failed (non-test) attempts that disable a webhook.
    pub auto_disable_after: u32,
    /// Webhooks an account may have at once (deleted ones do not count).
    pub max_webhooks_per_account: u32,
    /// How far a signature's timestamp may be from `now` when verifying.
    pub signature_tolerance: DurationMs,
    /// Refuse `http://` webhook URLs.
    pub require_https: bool,
    /// Allow loopback, private, link-local and similar targets.
    pub allow_private_targets: bool,
    /// Largest published event body accepted, in bytes.
    pub max_payload_bytes: usize,
    /// The event types webhooks may subscribe to and hosts may publish: the names of the
    /// host's event catalog (`crate::catalog::Catalog::names`).
    pub event_types: Vec<String>,
    /// Requests to one webhook that may be under way at once: one endpoint gets at most this
    /// many divided by its response time (64 at 2 ms: 32,000 a second). The engine keeps up
    /// to [`Policy::max_open_per_webhook`] attempts started, so the next request leaves as
    /// soon as one ends rather than after the commits that log its start and a result.
    pub max_in_flight_per_webhook: u32,
    /// Extra time past the attempt timeout before an unreported attempt counts as timed out.
    pub attempt_deadline_grace: DurationMs,
    /// How long published event ids are remembered for idempotency and finished deliveries kept.
    pub retention: DurationMs,
    /// How long the state keeps a published event id in memory; older ones (up to
    /// `retention`) are the store's, read before a publish is decided
    /// (`CommandKind::Publish::remembered`). Not in snapshots, like `max_manual_retries`.
    #[serde(skip, default = "default_idempotency_memory")]
    pub idempotency_memory: DurationMs,
    /// Longest webhook name, in characters.
    pub max_name_chars: usize,
    /// Longest webhook description, in characters.
    pub max_description_chars: usize,
    /// Longest webhook URL, in bytes.
    pub max_url_bytes: usize,
    /// Most project ids in one webhook's filter.
    pub max_project_filters: usize,
    /// Attempts a delivery may have beyond its automatic ones, each asked for by hand. Not in
    /// snapshots: the policy is always the one the engine starts with.
    #[serde(skip, default = "default_max_manual_retries")]
    pub max_manual_retries: u32,
    /// Consecutive failures that raise a `webhook.failing` alert (0: never); meaningful below
    /// `auto_disable_after`. Not in snapshots, like `max_manual_retries`.
    #[serde(skip, default = "default_failing_alert_after")]
    pub failing_alert_after: u32,
    /// Hallway's rule: webhooks are a Pro feature (creating one on a free plan is refused and
    /// a free account's events fan out to nobody). On by default; not in snapshots.
    #[serde(skip, default = "on")]
    pub require_pro_plan: bool,
    /// Hallway's rule: every published event names its project (`project.id`), which
    /// webhooks' project filters match. Off, an event without one matches only webhooks
    /// without a filter. On by default; not in snapshots.
    #[serde(skip, default = "on")]
    pub require_project: bool,
}

fn on() -> bool {
    true
}

/// Consecutive failures that raise `webhook.failing` unless configured.
pub const DEFAULT_FAILING_ALERT_AFTER: u32 = 5;

fn default_failing_alert_after() -> u32 {
    DEFAULT_FAILING_ALERT_AFTER
}

/// How long memory keeps published event ids unless configured. The runtime never forgets
/// an id before it is durable, whatever this is, so it only sets how many repeats memory
/// answers without a store read, against the memory that grows with the publish rate.
pub const DEFAULT_IDEMPOTENCY_MEMORY: DurationMs = DurationMs::from_secs(30);

fn default_idempotency_memory() -> DurationMs {
    DEFAULT_IDEMPOTENCY_MEMORY
}

/// Manual retries per delivery unless configured: as many again as the spec's schedule.
pub const DEFAULT_MAX_MANUAL_RETRIES: u32 = 5;

fn default_max_manual_retries() -> u32 {
    DEFAULT_MAX_MANUAL_RETRIES
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            retry_delays: vec![
                DurationMs(0),
                DurationMs::from_mins(1),
                DurationMs::from_mins(5),
                DurationMs::from_mins(30),
                DurationMs::from_hours(2),
            ],
            attempt_timeout: DurationMs::from_secs(30),
            auto_disable_after: 10,
            max_webhooks_per_account: 5,
            signature_tolerance: DurationMs::from_mins(5),
            require_https: true,
            allow_private_targets: false,
            max_payload_bytes: 1024 * 1024,
            event_types: vec![SESSION_PROCESSING_COMPLETED.to_owned()],
            max_in_flight_per_webhook: 64,
            attempt_deadline_grace: DurationMs::from_secs(30),
            retention: DurationMs::from_hours(24 * 30),
            idempotency_memory: DEFAULT_IDEMPOTENCY_MEMORY,
            max_name_chars: 200,
            max_description_chars: 2000,
            max_url_bytes: 2048,
            max_project_filters: 100,
            max_manual_retries: DEFAULT_MAX_MANUAL_RETRIES,
            failing_alert_after: DEFAULT_FAILING_ALERT_AFTER,
            require_pro_plan: true,
            require_project: true,
        }
    }
}

impl Policy {
    /// When a new delivery's first attempt is due, made `now`: after the schedule's first
    /// delay (0 in the spec's schedule).
    pub fn first_due(&self, now: Timestamp) -> Timestamp {
        now.plus(self.retry_delays.first().copied().unwrap_or_default())
    }

    /// The oldest publish time still inside the idempotency window at `now`.
    pub fn retention_start(&self, now: Timestamp) -> Timestamp {
        Timestamp(now.0.saturating_sub(self.retention.0))
    }

    /// The oldest publish time whose event id memory still keeps at `now`.
    pub fn idempotency_memory_start(&self, now: Timestamp) -> Timestamp {
        Timestamp(
            now.0
                .saturating_sub(self.idempotency_memory.min(self.retention).0),
        )
    }

    /// The first moment memory may forget an id published at `at`: the earliest `now` whose
    /// [`Self::idempotency_memory_start`] is after it.
    pub fn idempotency_memory_end(&self, at: Timestamp) -> Timestamp {
        Timestamp(
            at.0.saturating_add(self.idempotency_memory.min(self.retention).0)
                .saturating_add(1),
        )
    }

    /// The number of attempts a delivery makes before it is exhausted.
    pub fn max_attempts(&self) -> u32 {
        self.retry_delays.len() as u32
    }

    /// The most attempts one delivery can ever have: its automatic ones (one for a test send)
    /// plus the manual retries allowed.
    pub fn attempts_cap(&self, test: bool) -> u32 {
        let automatic = if test { 1 } else { self.max_attempts() };
        automatic.saturating_add(self.max_manual_retries)
    }

    /// Attempts of one webhook that may be open (started, and their outcome not recorded) at
    /// once: four times [`Policy::max_in_flight_per_webhook`]. A quarter are under way, the
    /// rest are logged and wait for a request to end, so a receiver's slot is held for its own
    /// time, not for the commits that log an attempt's start and its result: a start waits
    /// about one and a half commits to be sent, and three times the limit waiting covers that
    /// while a commit takes up to twice the receiver's response time.
    pub fn max_open_per_webhook(&self) -> u32 {
        self.max_in_flight_per_webhook.saturating_mul(4)
    }

    /// Whether `event_type` is one hosts may publish and webhooks may subscribe to.
    pub fn knows_event_type(&self, event_type: &str) -> bool {
        self.event_types.iter().any(|t| t == event_type)
    }
}
