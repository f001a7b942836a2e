//! Key layouts of the trees, and how to print a key in an error.
//!
//! Variable-length ids that start a key are length-prefixed (u32 big-endian), so no id can
//! be a prefix of another's key and host-chosen ids may hold any byte. Numbers are
//! big-endian so that sled's byte order is numeric order.

use crate::Seq;
use hallway_domain::{AccountId, DeliveryId, EventId, Timestamp, WebhookId};

/// One versioned, encoded batch of events per sequence number.
pub(crate) const LOG: &str = "log";
/// The latest snapshot, its sequence, and how far the log was truncated.
pub(crate) const META: &str = "meta";
/// Where each event's body is (in the body segments, see `bodies`), once per event.
pub(crate) const PAYLOADS: &str = "payload_refs";
/// Each webhook's deliveries in chunks, newest first (see [`history_key`]); the records are
/// in [`DELIVERIES`].
pub(crate) const HISTORY: &str = "history_chunks";
/// Delivery records in buckets (see [`bucket_key`]): one value per publish's fan-out.
pub(crate) const DELIVERIES: &str = "deliveries";
/// Buckets by creation time in chunks, one per append (see [`time_chunk_key`]), oldest
/// first, so retention reads only what expired.
pub(crate) const BY_TIME: &str = "bucket_time_chunks";

/// Bytes of a delivery id that name its bucket: `dlv_` and the 80-bit seed a fan-out shares
/// (ids without a time, as test sends have).
const BUCKET_KEY_LEN: usize = 4 + 20;
/// Length of a fan-out's delivery id since seeds start with the time: `dlv_`, 11 hex digits
/// of ms, 20 of randomness, 2 of index (more past 256). All but the index name the bucket.
const TIMED_ID_LEN: usize = 4 + 11 + 20 + 2;

/// The meta key of the latest snapshot's sequence alone, so opening need not decode the state.
pub(crate) const META_SNAPSHOT_SEQ: &[u8] = b"snapshot_seq";
/// The meta key of the last sequence removed by truncation.
pub(crate) const META_TRUNCATED_THROUGH: &[u8] = b"truncated_through";

/// The prefix of the meta keys that count the references into each body segment.
pub(crate) const META_BODY_REFS: &[u8] = b"body_refs/";

/// The meta key of a body segment's reference count.
pub(crate) fn body_refs_key(segment: u64) -> Vec<u8> {
    let mut out = META_BODY_REFS.to_vec();
    out.extend_from_slice(&segment.to_be_bytes());
    out
}

/// The segment of a [`body_refs_key`].
pub(crate) fn parse_body_refs_key(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(
        key.strip_prefix(META_BODY_REFS)?.try_into().ok()?,
    ))
}

/// A log key.
pub(crate) fn seq_key(seq: Seq) -> [u8; 8] {
    seq.to_be_bytes()
}

/// A log key's sequence, if the key has the right length.
pub(crate) fn parse_seq(key: &[u8]) -> Option<Seq> {
    Some(Seq::from_be_bytes(key.try_into().ok()?))
}

/// Prints a log key.
pub(crate) fn show_seq(key: &[u8]) -> String {
    match parse_seq(key) {
        Some(seq) => format!("seq {seq}"),
        None => format!("{key:02x?}"),
    }
}

fn push_prefixed(out: &mut Vec<u8>, id: &str) {
    // Ids longer than 4 GiB cannot reach here: the domain bounds every request's size.
    out.extend_from_slice(&(id.len() as u32).to_be_bytes());
    out.extend_from_slice(id.as_bytes());
}

/// Splits a length-prefixed id off the front of `key`.
fn split_prefixed(key: &[u8]) -> Option<(&str, &[u8])> {
    let len = u32::from_be_bytes(key.get(..4)?.try_into().ok()?) as usize;
    let id = key.get(4..4 + len)?;
    Some((std::str::from_utf8(id).ok()?, key.get(4 + len..)?))
}

/// A payload key: the account, then the event id.
pub(crate) fn payload_key(account: &AccountId, event: &EventId) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + account.0.len() + event.0.len());
    push_prefixed(&mut out, account.as_str());
    out.extend_from_slice(event.as_str().as_bytes());
    out
}

/// The prefix of every payload key of an account.
pub(crate) fn payload_prefix(account: &AccountId) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + account.0.len());
    push_prefixed(&mut out, account.as_str());
    out
}

/// Prints a payload key as `account/event`.
pub(crate) fn show_payload_key(key: &[u8]) -> String {
    match split_prefixed(key).and_then(|(a, rest)| Some((a, std::str::from_utf8(rest).ok()?))) {
        Some((account, event)) => format!("{account}/{event}"),
        None => format!("{key:02x?}"),
    }
}

/// The prefix of every history key of a webhook.
pub(crate) fn history_prefix(webhook: &WebhookId) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + webhook.0.len() + 8 + 32);
    push_prefixed(&mut out, webhook.as_str());
    out
}

/// A history chunk's key: the webhook, then the inverted sequence of the append that
/// created the chunk's deliveries, so a webhook's newest deliveries come first. One key per
/// webhook per append, not per delivery: a new key costs sled a leaf split now and then, and
/// chunks made appends 40% cheaper.
pub(crate) fn history_key(webhook: &WebhookId, seq: Seq) -> Vec<u8> {
    let mut out = history_prefix(webhook);
    out.extend_from_slice(&(u64::MAX - seq).to_be_bytes());
    out
}

/// A history key's parts: webhook, append sequence.
pub(crate) fn parse_history_key(key: &[u8]) -> Option<(&str, Seq)> {
    let (webhook, rest) = split_prefixed(key)?;
    let inverted = u64::from_be_bytes(rest.try_into().ok()?);
    Some((webhook, u64::MAX - inverted))
}

/// Prints a history key as `webhook/seq`.
pub(crate) fn show_history_key(key: &[u8]) -> String {
    match parse_history_key(key) {
        Some((webhook, seq)) => format!("{webhook}/{seq}"),
        None => format!("{key:02x?}"),
    }
}

/// The key of a delivery's bucket: the start of its id. One publish's deliveries are
/// `dlv_{seed}{index}` with a shared seed, so its whole fan-out is one value, written
/// once per batch however many of its deliveries change (the store's cost is per write). A
/// test send's id is all random, a bucket of its own. Ids that happen to share a bucket stay
/// correct: a bucket is a list of whole records.
pub(crate) fn bucket_key(delivery: &DeliveryId) -> &[u8] {
    let id = delivery.as_str().as_bytes();
    // Longer: a fan-out of more than 256 deliveries, whose index has more digits.
    if id.len() >= TIMED_ID_LEN {
        // Time-ordered seeds: a fan-out's bucket sorts after older ones, so new records go
        // where the tree is already being written and read.
        return &id[..TIMED_ID_LEN - 2];
    }
    &id[..id.len().min(BUCKET_KEY_LEN)]
}

/// A by-time chunk's key: the earliest creation time it lists, then the append's sequence.
pub(crate) fn time_chunk_key(earliest: Timestamp, seq: Seq) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&earliest.0.to_be_bytes());
    out[8..].copy_from_slice(&seq.to_be_bytes());
    out
}

/// Prints a by-time chunk's key as `earliest/seq`.
pub(crate) fn show_time_chunk_key(key: &[u8]) -> String {
    match (key.get(..8), key.get(8..)) {
        (Some(at), Some(seq)) if key.len() == 16 => format!(
            "{}/{}",
            u64::from_be_bytes(at.try_into().unwrap_or_default()),
            u64::from_be_bytes(seq.try_into().unwrap_or_default())
        ),
        _ => format!("{key:02x?}"),
    }
}

/// One by-time entry as a key, for errors: the creation time, then the bucket.
pub(crate) fn time_key(created_at: Timestamp, bucket: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + bucket.len());
    out.extend_from_slice(&created_at.0.to_be_bytes());
    out.extend_from_slice(bucket);
    out
}

/// A by-time key's parts.
pub(crate) fn parse_time_key(key: &[u8]) -> Option<(Timestamp, &str)> {
    let at = u64::from_be_bytes(key.get(..8)?.try_into().ok()?);
    Some((Timestamp(at), std::str::from_utf8(key.get(8..)?).ok()?))
}

/// Prints a by-time key as `created_at/bucket`.
pub(crate) fn show_time_key(key: &[u8]) -> String {
    match parse_time_key(key) {
        Some((at, bucket)) => format!("{}/{bucket}", at.0),
        None => format!("{key:02x?}"),
    }
}

/// Prints a key that is text (delivery ids, meta keys).
pub(crate) fn show_text(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

/// The paging cursor after a delivery: `{chunk_seq}.{created_at_ms}.{delivery_id}`.
pub(crate) fn cursor(seq: Seq, created_at: Timestamp, delivery: &DeliveryId) -> String {
    format!("{seq}.{}.{delivery}", created_at.0)
}

/// A cursor's parts, if it is one.
pub(crate) fn parse_cursor(cursor: &str) -> Option<(Seq, Timestamp, DeliveryId)> {
    let number = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (seq, rest) = cursor.split_once('.')?;
    let (at, delivery) = rest.split_once('.')?;
    if delivery.is_empty() {
        return None;
    }
    Some((
        number(seq)?,
        Timestamp(number(at)?),
        DeliveryId::from(delivery),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keys_sort_newest_first_and_parse_back() {
        let w = WebhookId::from("wh_1");
        let old = history_key(&w, 7);
        let new = history_key(&w, 8);
        assert!(new < old);
        assert_eq!(parse_history_key(&old), Some(("wh_1", 7)));
        assert!(old.starts_with(&history_prefix(&w)));
        assert!(!old.starts_with(&history_prefix(&WebhookId::from("wh_"))));
        assert_eq!(show_history_key(&old), "wh_1/7");
    }

    #[test]
    fn a_fan_out_shares_a_bucket_and_a_test_send_has_its_own() {
        let seed = "0123456789abcdef0123";
        let first = DeliveryId::from(format!("dlv_{seed}00"));
        let second = DeliveryId::from(format!("dlv_{seed}01"));
        assert_eq!(bucket_key(&first), bucket_key(&second));
        assert_eq!(bucket_key(&first), format!("dlv_{seed}").as_bytes());
        let test = DeliveryId::from("dlv_ffffffffffffffffffffffff");
        assert_ne!(bucket_key(&test), bucket_key(&first));
        assert_eq!(bucket_key(&DeliveryId::from("d")), b"d");
    }

    #[test]
    fn a_time_ordered_fan_out_shares_a_bucket_that_sorts_by_time() {
        let id = |ms: u64, random: &str, i: u8| {
            DeliveryId::from(format!("dlv_{ms:011x}{random}{i:02x}"))
        };
        let random = "0123456789abcdef0123";
        assert_eq!(bucket_key(&id(5, random, 0)), bucket_key(&id(5, random, 1)));
        assert_ne!(
            bucket_key(&id(5, random, 0)),
            bucket_key(&id(5, "0123456789abcdef0124", 0))
        );
        assert!(bucket_key(&id(5, "ffffffffffffffffffff", 0)) < bucket_key(&id(6, random, 0)));
        let wide = DeliveryId::from(format!("dlv_{:011x}{random}{:02x}", 5, 256));
        assert_eq!(bucket_key(&wide), bucket_key(&id(5, random, 0)));
        // Ids without a time are bucketed by their seed alone.
        let old = DeliveryId::from(format!("dlv_{random}07"));
        assert_eq!(bucket_key(&old), format!("dlv_{random}").as_bytes());
    }

    #[test]
    fn ids_with_any_bytes_do_not_collide() {
        let a = payload_key(&AccountId::from("a\0b"), &EventId::from("c"));
        let b = payload_key(&AccountId::from("a"), &EventId::from("b\0c"));
        assert_ne!(a, b);
        assert_eq!(show_payload_key(&a), "a\0b/c");
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = cursor(9, Timestamp(42), &DeliveryId::from("dlv_x.y"));
        assert_eq!(
            parse_cursor(&c),
            Some((9, Timestamp(42), DeliveryId::from("dlv_x.y")))
        );
        for bad in [
            "",
            ".",
            "1.42.",
            "42.dlv",
            "1..dlv",
            ".1.dlv",
            "x1.2.dlv",
            "1.-1.dlv",
            "1.99999999999999999999999.d",
        ] {
            assert_eq!(parse_cursor(bad), None, "{bad:?}");
        }
    }
}
