//! Identifiers, time values and the small value types shared by commands and events.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::num::NonZeroU8;
use std::sync::Arc;
use time::format_description::well_known::{iso8601, Iso8601, Rfc3339};
use time::OffsetDateTime;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// Shared, not copied: an id is cloned into every event, record and index that names
        /// it, and a clone is a count increment. (It encodes as a plain string.)
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(pub Arc<str>);

        impl $name {
            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(Arc::from(s))
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(Arc::from(s))
            }
        }
    };
}

/// Text from a caller, cut for echoing in a message: at most [`Echo::MAX_CHARS`] characters,
/// then an ellipsis, so a 60 KB id does not come back whole in an error.
pub struct Echo<'a>(pub &'a str);

impl Echo<'_> {
    /// The most characters echoed.
    pub const MAX_CHARS: usize = 64;
}

impl fmt::Display for Echo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(Self::MAX_CHARS) {
            None => f.write_str(self.0),
            Some((end, _)) => write!(f, "{}…", &self.0[..end]),
        }
    }
}

id_type!(
    /// An account (a tenant), chosen by the host.
    AccountId
);
id_type!(
    /// A registered webhook endpoint (`wh_...`).
    WebhookId
);
id_type!(
    /// A published event (`evt_...`); unique within its account, stable across retries.
    EventId
);
id_type!(
    /// A project of the host, used by webhook project filters.
    ProjectId
);

/// One fan-out: the deliveries a publish, a replay or a test send creates, each named by
/// this id and its index. The time it was made comes first (48 bits of milliseconds), then
/// 80 random bits, so ids sort by creation time and a new fan-out's records land next to the
/// newest ones in a store ordered by it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FanOutId([u8; 16]);

impl FanOutId {
    /// The fan-out made at `at` (its milliseconds modulo 2^48, past the year 10000) with
    /// these random bits.
    pub fn new(at: Timestamp, random: [u8; 10]) -> FanOutId {
        let mut bytes = [0u8; 16];
        bytes[..6].copy_from_slice(&at.0.to_be_bytes()[2..]);
        bytes[6..].copy_from_slice(&random);
        FanOutId(bytes)
    }

    /// The id from its 16 bytes (as [`FanOutId::to_bytes`] gives them).
    pub fn from_bytes(bytes: [u8; 16]) -> FanOutId {
        FanOutId(bytes)
    }

    /// Its 16 bytes, time first: their byte order is the ids' order.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0
    }

    /// Its delivery number `index`.
    pub fn delivery(self, index: u32) -> DeliveryId {
        DeliveryId {
            fan_out: self,
            index,
        }
    }
}

impl fmt::Display for FanOutId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for FanOutId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FanOutId({self})")
    }
}

/// One delivery of one event to one webhook: its fan-out and its index there. Shown as
/// `dlv_`, the fan-out's 32 hex digits and the index in at least two hex digits
/// ([`DeliveryId::parse`] reads exactly that form back). Stores key a fan-out's records by
/// [`DeliveryId::fan_out`], never by the text.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeliveryId {
    fan_out: FanOutId,
    index: u32,
}

impl DeliveryId {
    /// Delivery `index` of `fan_out`.
    pub fn new(fan_out: FanOutId, index: u32) -> DeliveryId {
        DeliveryId { fan_out, index }
    }

    /// The fan-out it belongs to.
    pub fn fan_out(&self) -> FanOutId {
        self.fan_out
    }

    /// Its index in its fan-out.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Reads the form [`DeliveryId`]'s `Display` writes; `None` for any other text (so each
    /// delivery has exactly one spelling).
    pub fn parse(text: &str) -> Option<DeliveryId> {
        let hex = text.strip_prefix("dlv_")?;
        if hex.len() < 34
            || hex.len() > 40
            || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        let index_hex = &hex[32..];
        // One spelling per index: no leading zeros beyond the two-digit minimum.
        if index_hex.len() > 2 && index_hex.starts_with('0') {
            return None;
        }
        let index = u32::from_str_radix(index_hex, 16).ok()?;
        Some(FanOutId(bytes).delivery(index))
    }
}

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dlv_{}{:02x}", self.fan_out, self.index)
    }
}

impl fmt::Debug for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeliveryId({self})")
    }
}

/// Text formats (JSON) see the id as it is shown; binary ones (the log) see its two fields.
impl Serialize for DeliveryId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            (self.fan_out, self.index).serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for DeliveryId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            DeliveryId::parse(&text).ok_or_else(|| {
                serde::de::Error::custom(format!("not a delivery id: {}", Echo(&text)))
            })
        } else {
            let (fan_out, index) = <(FanOutId, u32)>::deserialize(deserializer)?;
            Ok(DeliveryId { fan_out, index })
        }
    }
}

/// What the state remembers of a published event id, for idempotency: a tag of the account
/// (the first 64 bits of SHA-256 over its id, so deleting an account can forget its ids) and
/// the first 128 bits of SHA-256 over the account and the event id (length-prefixed, so no two
/// pairs share an input). A false repeat needs about 2^64 ids in one retention window; the ids
/// themselves would cost several times the memory in a state that holds one per publish.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IdempotencyKey {
    account: [u8; 8],
    event: [u8; 16],
}

impl IdempotencyKey {
    /// The key of `event` published by `account`.
    pub fn of(account: &AccountId, event: &EventId) -> IdempotencyKey {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update((account.as_str().len() as u64).to_be_bytes());
        h.update(account.as_str().as_bytes());
        h.update(event.as_str().as_bytes());
        let digest = h.finalize();
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        IdempotencyKey {
            account: Self::account_tag(account),
            event: key,
        }
    }

    /// Whether this key is of an id published by `account` (up to a 64-bit tag collision,
    /// which would only make a deleted account's ids be forgotten along with another's).
    pub fn is_of(&self, account: &AccountId) -> bool {
        self.account == Self::account_tag(account)
    }

    /// The key as 24 bytes: the account's tag, then the event's part, so every key of one
    /// account shares the first eight ([`IdempotencyKey::account_prefix`]).
    pub fn to_bytes(&self) -> [u8; 24] {
        let mut out = [0u8; 24];
        out[..8].copy_from_slice(&self.account);
        out[8..].copy_from_slice(&self.event);
        out
    }

    /// The key whose [`IdempotencyKey::to_bytes`] gives `bytes`.
    pub fn from_bytes(bytes: [u8; 24]) -> IdempotencyKey {
        let (mut account, mut event) = ([0u8; 8], [0u8; 16]);
        account.copy_from_slice(&bytes[..8]);
        event.copy_from_slice(&bytes[8..]);
        IdempotencyKey { account, event }
    }

    /// The first eight bytes of [`IdempotencyKey::to_bytes`] of every key of `account`.
    pub fn account_prefix(account: &AccountId) -> [u8; 8] {
        Self::account_tag(account)
    }

    fn account_tag(account: &AccountId) -> [u8; 8] {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(account.as_str().as_bytes());
        let mut tag = [0u8; 8];
        tag.copy_from_slice(&digest[..8]);
        tag
    }
}

/// A point in time, in milliseconds since the Unix epoch. Never read from a clock here.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Milliseconds since the Unix epoch.
    pub fn as_millis(self) -> u64 {
        self.0
    }

    /// Whole seconds since the Unix epoch (what signatures carry).
    pub fn as_unix_seconds(self) -> u64 {
        self.0 / 1000
    }

    /// This time plus a duration, saturating rather than wrapping.
    pub fn plus(self, d: DurationMs) -> Timestamp {
        Timestamp(self.0.saturating_add(d.0))
    }

    /// The time elapsed since `earlier`, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> DurationMs {
        DurationMs(self.0.saturating_sub(earlier.0))
    }

    /// RFC 3339 UTC with milliseconds, as the API and payloads show times.
    pub fn to_rfc3339(self) -> String {
        // The largest u64 of milliseconds is far past year 9999; such a time only comes from
        // a broken clock, and the latest time the format can show says so better than a panic.
        let at = OffsetDateTime::UNIX_EPOCH
            .checked_add(time::Duration::milliseconds(
                self.0.min(MAX_RFC3339_MS) as i64
            ))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        at.format(&RFC3339_MILLIS)
            .unwrap_or_else(|_| "9999-12-31T23:59:59.999Z".to_owned())
    }

    /// Parses an RFC 3339 time (`2026-01-10T15:30:00.000Z`, or with any offset, which is
    /// converted to UTC); digits past milliseconds are dropped. `None` for anything else,
    /// including times before 1970.
    pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
        let at = OffsetDateTime::parse(s, &Rfc3339).ok()?;
        let ms = at.unix_timestamp_nanos().div_euclid(1_000_000);
        u64::try_from(ms).ok().map(Timestamp)
    }
}

/// The last millisecond of year 9999, the latest time RFC 3339's four-digit years can show.
const MAX_RFC3339_MS: u64 = 253_402_300_799_999;

/// ISO 8601 as RFC 3339 profiles it, with exactly three fraction digits and `Z` for UTC.
const RFC3339_MILLIS: Iso8601<
    {
        iso8601::Config::DEFAULT
            .set_time_precision(iso8601::TimePrecision::Second {
                decimal_digits: NonZeroU8::new(3),
            })
            .encode()
    },
> = Iso8601;

/// What identifies a published event's body for idempotency: the first 128 bits of the
/// SHA-256 of its type and its own fields as delivered, without the whitespace between
/// tokens. Kept with each remembered event id, so a repeat is compared without the body.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BodyDigest(pub [u8; 16]);

impl BodyDigest {
    /// The digest of an event of `event_type` whose own fields are `fields_json` (as the
    /// envelope appends them).
    pub fn of(event_type: &str, fields_json: &str) -> BodyDigest {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(event_type.as_bytes());
        // A separator no type contains, so type and fields cannot run into each other.
        h.update([0u8]);
        crate::json::minified_runs(fields_json, |run| h.update(run));
        let full = h.finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        BodyDigest(out)
    }
}

impl fmt::Debug for BodyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BodyDigest({})", hex::encode(self.0))
    }
}

/// A span of time in milliseconds.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct DurationMs(pub u64);

impl DurationMs {
    /// A duration of `s` seconds.
    pub const fn from_secs(s: u64) -> Self {
        Self(s * 1000)
    }

    /// A duration of `m` minutes.
    pub const fn from_mins(m: u64) -> Self {
        Self(m * 60_000)
    }

    /// A duration of `h` hours.
    pub const fn from_hours(h: u64) -> Self {
        Self(h * 3_600_000)
    }

    /// Milliseconds.
    pub fn as_millis(self) -> u64 {
        self.0
    }
}

/// The plan an account is on; webhooks are a Pro feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Plan {
    /// No webhooks.
    Free,
    /// Webhooks included.
    Pro,
}

impl Plan {
    /// The plan's name as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Free => "free",
            Plan::Pro => "pro",
        }
    }
}

/// Why a webhook is disabled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisabledReason {
    /// Switched off by a person.
    Manual,
    /// Switched off by the engine after too many consecutive failed attempts.
    ConsecutiveFailures,
}

impl DisabledReason {
    /// The reason as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            DisabledReason::Manual => "manual",
            DisabledReason::ConsecutiveFailures => "consecutive_failures",
        }
    }
}

/// How an attempt failed, as delivery history shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptError {
    /// No response head within the attempt timeout.
    Timeout,
    /// The TCP connection could not be made (refused, unreachable, DNS failure).
    Connect,
    /// The TLS handshake failed (bad certificate, protocol error).
    Tls,
    /// A response arrived, but its status was not 2xx (redirects included).
    HttpStatus,
    /// The target resolved to an address the engine refuses to connect to.
    BlockedTarget,
    /// The peer answered with something that is not valid HTTP.
    InvalidResponse,
}

impl AttemptError {
    /// The error as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptError::Timeout => "timeout",
            AttemptError::Connect => "connect",
            AttemptError::Tls => "tls",
            AttemptError::HttpStatus => "http_status",
            AttemptError::BlockedTarget => "blocked_target",
            AttemptError::InvalidResponse => "invalid_response",
        }
    }
}

/// What the dispatcher observed for one attempt; the domain decides whether it counts as success.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// A response head arrived with this status after `duration`.
    Response {
        /// The HTTP status code.
        status: u16,
        /// Time from send to the response head.
        duration: DurationMs,
    },
    /// No usable response.
    Error {
        /// The classified failure.
        error: AttemptError,
        /// Time from send to the failure.
        duration: DurationMs,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_parses_what_it_formats_and_refuses_the_rest() {
        for ms in [0, 951_782_400_123, 1_768_059_000_000, 4_102_444_799_999] {
            let t = Timestamp(ms);
            assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()), Some(t));
        }
        assert_eq!(
            Timestamp::parse_rfc3339("2026-01-10T15:30:00Z"),
            Some(Timestamp(1_768_059_000_000))
        );
        assert_eq!(
            Timestamp::parse_rfc3339("2026-01-10T15:30:00.5+00:00"),
            Some(Timestamp(1_768_059_000_500))
        );
        // Another offset is the same instant in UTC; nanoseconds are cut to milliseconds.
        assert_eq!(
            Timestamp::parse_rfc3339("2026-01-10T17:30:00.123987+02:00"),
            Some(Timestamp(1_768_059_000_123))
        );
        for bad in [
            "",
            "2026-01-10",
            "2026-02-30T00:00:00Z",
            "2026-01-10T15:30:00",
            "2026-01-10T25:00:00Z",
            "1969-12-31T23:59:59Z",
            "2026-01-10T15:30:00.Z",
            "+2026-01-10T15:30:00Z",
            "2026-01-10T15:30Z",
            "2026-01-10T15:30:00.000Z trailing",
        ] {
            assert_eq!(Timestamp::parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn delivery_ids_print_and_parse_back_one_spelling() {
        let fan_out = FanOutId::new(Timestamp(0x0123_4567_89ab), [0xff; 10]);
        let id = fan_out.delivery(1);
        let text = id.to_string();
        assert_eq!(text, "dlv_0123456789abffffffffffffffffffff01");
        assert_eq!(DeliveryId::parse(&text), Some(id.clone()));
        let wide = fan_out.delivery(0x1_0000);
        assert_eq!(DeliveryId::parse(&wide.to_string()), Some(wide));
        for bad in [
            "",
            "dlv_",
            "dlv_0123456789abffffffffffffffffffff",
            "dlv_0123456789abffffffffffffffffffff001",
            "dlv_0123456789abffffffffffffffffffffGG",
            "dlv_0123456789ABFFFFFFFFFFFFFFFFFFFF01",
            "evt_0123456789abffffffffffffffffffff01",
            "dlv_0123456789abffffffffffffffffffff123456789",
        ] {
            assert_eq!(DeliveryId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn idempotency_keys_tell_accounts_and_events_apart() {
        let key = |a: &str, e: &str| IdempotencyKey::of(&AccountId::from(a), &EventId::from(e));
        assert_eq!(key("acc_1", "evt_1"), key("acc_1", "evt_1"));
        assert_ne!(key("acc_1", "evt_1"), key("acc_2", "evt_1"));
        assert_ne!(key("acc_1", "evt_1"), key("acc_1", "evt_2"));
        // The account's length is hashed too: moving a character across the pair differs.
        assert_ne!(key("acc_1", "xevt"), key("acc_1x", "evt"));
        assert!(key("acc_1", "evt_1").is_of(&AccountId::from("acc_1")));
        assert!(!key("acc_1", "evt_1").is_of(&AccountId::from("acc_2")));
    }

    #[test]
    fn fan_outs_sort_by_time_first() {
        let early = FanOutId::new(Timestamp(5), [0xff; 10]);
        let late = FanOutId::new(Timestamp(6), [0; 10]);
        assert!(early < late);
        assert!(early.delivery(9) < late.delivery(0));
        assert_eq!(FanOutId::from_bytes(late.to_bytes()), late);
    }

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(Timestamp(0).to_rfc3339(), "1970-01-01T00:00:00.000Z");
        // 2026-01-10T15:30:00.000Z, the spec's example, is 1768059000 s.
        assert_eq!(
            Timestamp(1_768_059_000_000).to_rfc3339(),
            "2026-01-10T15:30:00.000Z"
        );
        // A leap day with milliseconds.
        assert_eq!(
            Timestamp(951_782_400_123).to_rfc3339(),
            "2000-02-29T00:00:00.123Z"
        );
        // Past year 9999 (only a broken clock gets there) shows the latest time it can.
        assert_eq!(Timestamp(u64::MAX).to_rfc3339(), "9999-12-31T23:59:59.999Z");
    }
}
