//! Key layouts of the trees, and how to print a key in an error.
//!
//! Variable-length ids that start a key are length-prefixed (u32 big-endian), so no id can
//! be a prefix of another's key and host-chosen ids may hold any byte. Numbers are
//! big-endian so that sled's byte order is numeric order.

use crate::Seq;
use hallway_domain::{
    AccountId, DeliveryId, EventId, FanOutId, IdempotencyKey, Timestamp, WebhookId,
};

/// One versioned, encoded batch of events per sequence number.
pub(crate) const LOG: &str = "log";
/// The latest snapshot, its sequence, and how far the log was truncated.
pub(crate) const META: &str = "meta";
/// Each webhook's deliveries in chunks, newest first (see [`history_key`]); the records are
/// in [`DELIVERIES`].
pub(crate) const HISTORY: &str = "history_chunks";
/// Delivery records in buckets (see [`bucket_key`]): one value per fan-out.
pub(crate) const DELIVERIES: &str = "deliveries";
/// Buckets by creation time in chunks, one per append (see [`time_chunk_key`]), oldest
/// first, so retention reads only what expired.
pub(crate) const BY_TIME: &str = "bucket_time_chunks";
/// Waiting deliveries spilled out of memory, in runs in queue order per webhook and spill
/// generation (see `spill::key`).
pub(crate) const SPILLED: &str = "spilled";

/// One entry per published event, by its idempotency key's bytes (see `entries`): its
/// publish while the idempotency window remembers it (see `idempotency`) and where its body
/// is (in the body segments, see `bodies`) while retention keeps it.
pub(crate) const PUBLISHED: &str = "published";

/// The meta key of the layout number the directory was created with (see [`LAYOUT`]).
pub(crate) const META_LAYOUT: &[u8] = b"layout";

/// The layout of the trees, the records and the snapshot this build writes and reads. A
/// directory of another layout is refused at open ([`crate::StoreError::Layout`]); 0.1 is
/// unreleased, so no older layout is migrated. 8: the spill index holds runs of deliveries
/// rather than a key each; 7: an event's body reference and its published
/// id share one entry in `published` (the `payload_refs` tree is gone); 6: published event ids
/// are kept in the `published` tree rather than only in snapshots; 5: waiting deliveries spill
/// to the `spilled` tree, snapshots hold the spill bookkeeping and remembered event ids are
/// hashed; 4: body digests and accounts' previous keys; 3: webhooks' signature schemes and
/// previous secrets, attempts' detail, test sends' event types; 2: delivery ids are a fan-out
/// and an index (1: text, bucketed by its first characters).
pub(crate) const LAYOUT: u64 = 8;

/// The meta key of the latest snapshot's sequence alone, so opening need not decode the state.
pub(crate) const META_SNAPSHOT_SEQ: &[u8] = b"snapshot_seq";
/// The meta key of the last sequence removed by truncation.
pub(crate) const META_TRUNCATED_THROUGH: &[u8] = b"truncated_through";

/// The prefix of the meta keys that list each append's published ids, by the newest
/// publish time then the append's sequence, so they expire in order.
pub(crate) const META_PUBLISHED_CHUNKS: &[u8] = b"published_ids/";

/// The meta key of the chunk of published ids an append wrote.
pub(crate) fn published_chunk_key(newest: Timestamp, seq: Seq) -> Vec<u8> {
    let mut out = META_PUBLISHED_CHUNKS.to_vec();
    out.extend_from_slice(&newest.0.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out
}

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
pub(crate) fn split_prefixed(key: &[u8]) -> Option<(&str, &[u8])> {
    let len = u32::from_be_bytes(key.get(..4)?.try_into().ok()?) as usize;
    let id = key.get(4..4 + len)?;
    Some((std::str::from_utf8(id).ok()?, key.get(4 + len..)?))
}

/// An event's key in the `published` tree: its idempotency key's bytes (see `entries`).
pub(crate) fn entry_key(account: &AccountId, event: &EventId) -> [u8; 24] {
    IdempotencyKey::of(account, event).to_bytes()
}

/// The prefix every entry key of an account starts with (an eight-byte tag of it).
pub(crate) fn entry_prefix(account: &AccountId) -> [u8; 8] {
    IdempotencyKey::account_prefix(account)
}

/// Prints an entry key (a hash: there is no id to show).
pub(crate) fn show_entry_key(key: &[u8]) -> String {
    format!("{key:02x?}")
}

/// The prefix of every history key of a webhook.
pub(crate) fn history_prefix(webhook: &WebhookId) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + webhook.0.len() + 8 + 32);
    push_prefixed(&mut out, webhook.as_str());
    out
}

/// A history chunk's key: the webhook, then the inverted sequence of the first append that
/// created the chunk's deliveries, so a webhook's newest deliveries come first. At most one
/// key per webhook per append, not per delivery (a chunk with room gathers the next appends'
/// deliveries too): a new key costs sled a leaf split now and then, and a page in memory for
/// every dozen or so.
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

/// The key of a delivery's bucket: its fan-out, so a fan-out's deliveries (a publish's, or
/// those of the consecutive publishes of one batch, which the runtime gives one fan-out) are
/// one value, written once per batch however many of them change (the store's cost is per
/// key). A fan-out's id starts with its time, so a new bucket sorts after older ones and new
/// records go where the tree is already being written and read.
pub(crate) fn bucket_key(delivery: &DeliveryId) -> [u8; 16] {
    delivery.fan_out().to_bytes()
}

/// Prints a bucket key as its fan-out.
pub(crate) fn show_bucket(key: &[u8]) -> String {
    match <[u8; 16]>::try_from(key) {
        Ok(bytes) => format!("fan-out {}", FanOutId::from_bytes(bytes)),
        Err(_) => format!("{key:02x?}"),
    }
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

/// Prints a by-time key as `created_at/bucket`.
pub(crate) fn show_time_key(key: &[u8]) -> String {
    match key.get(..8).and_then(|at| <[u8; 8]>::try_from(at).ok()) {
        Some(at) => format!("{}/{}", u64::from_be_bytes(at), show_bucket(&key[8..])),
        None => format!("{key:02x?}"),
    }
}

/// Prints a key that is text (meta keys).
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
    Some((
        number(seq)?,
        Timestamp(number(at)?),
        DeliveryId::parse(delivery)?,
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
    fn a_fan_out_is_one_bucket_that_sorts_by_time() {
        let fan_out = |ms: u64, random: u8| FanOutId::new(Timestamp(ms), [random; 10]);
        let a = fan_out(5, 1);
        assert_eq!(bucket_key(&a.delivery(0)), bucket_key(&a.delivery(300)));
        assert_ne!(
            bucket_key(&a.delivery(0)),
            bucket_key(&fan_out(5, 2).delivery(0))
        );
        assert!(bucket_key(&fan_out(5, 0xff).delivery(0)) < bucket_key(&fan_out(6, 0).delivery(0)));
        assert_eq!(
            show_bucket(&bucket_key(&a.delivery(0))),
            format!("fan-out {a}")
        );
        let timed = time_key(Timestamp(9), &bucket_key(&a.delivery(0)));
        assert_eq!(show_time_key(&timed), format!("9/fan-out {a}"));
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let id = FanOutId::new(Timestamp(42), [7; 10]).delivery(3);
        let c = cursor(9, Timestamp(42), &id);
        assert_eq!(parse_cursor(&c), Some((9, Timestamp(42), id)));
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
            "1.42.dlv_x",
        ] {
            assert_eq!(parse_cursor(bad), None, "{bad:?}");
        }
    }
}
