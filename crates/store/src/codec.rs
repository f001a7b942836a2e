//! How records are encoded: one format-version byte, a CRC-32 of the rest, then bincode 2
//! (serde, standard config).
//!
//! The checksum is what makes "a corrupt record is an error" true: bincode alone accepts
//! most flipped bytes inside a string as a different string. sled checksums its own log
//! on disk, but not what reaches a tree through its API or survives in its page cache.
//!
//! Every bincode call of the crate lives here, so replacing the codec (bincode is
//! unmaintained upstream, hence the `=2.0.1` pin) is a change to this module only.
//! Decoding never panics and never allocates much more than the record's own size:
//! a corrupt length prefix becomes an error, not a multi-gigabyte allocation.

use crate::StoreError;
use bincode::config::{self, Config};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The format version written in front of every record. 5: delivery ids are a fan-out and an
/// index (see the store's layout number, which refuses a whole directory of older records),
/// test sends record their event type (the event catalog), webhooks have signature schemes and
/// previous secrets, attempts keep their detail in history, published events and remembered
/// ids keep their body's digest (a republish with another body is a conflict), and accounts
/// keep the key a rotation's grace still accepts.
pub const FORMAT_VERSION: u8 = 5;

/// The version byte and the checksum.
const HEADER_LEN: usize = 5;

/// Encodes `value` as a versioned, checksummed record.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(&[FORMAT_VERSION, 0, 0, 0, 0]);
    bincode::serde::encode_into_std_write(value, &mut out, config::standard())
        .map_err(encode_error)?;
    seal(&mut out);
    Ok(out)
}

/// Encodes `value` as a versioned, checksummed record straight into a file, without holding
/// the encoded bytes in memory (snapshots of a large state).
pub fn encode_to_file<T: Serialize + ?Sized>(
    value: &T,
    file: &mut std::fs::File,
) -> Result<(), StoreError> {
    use std::io::{Seek, SeekFrom, Write};
    struct Checksummed<W> {
        inner: W,
        crc: crc32fast::Hasher,
    }
    impl<W: Write> Write for Checksummed<W> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = self.inner.write(buf)?;
            self.crc.update(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.inner.flush()
        }
    }
    let io = |e: std::io::Error| StoreError::Io {
        what: "write an encoded record to its file".into(),
        source: e,
    };
    file.write_all(&[FORMAT_VERSION, 0, 0, 0, 0]).map_err(io)?;
    let crc = {
        // Buffered before the checksum, so both see large chunks, not bincode's many small
        // writes.
        let mut out = std::io::BufWriter::with_capacity(
            1 << 16,
            Checksummed {
                inner: &mut *file,
                crc: crc32fast::Hasher::new(),
            },
        );
        bincode::serde::encode_into_std_write(value, &mut out, config::standard())
            .map_err(encode_error)?;
        out.flush().map_err(io)?;
        out.get_ref().crc.clone().finalize()
    };
    file.seek(SeekFrom::Start(1)).map_err(io)?;
    file.write_all(&crc.to_le_bytes()).map_err(io)?;
    Ok(())
}

fn encode_error(e: bincode::error::EncodeError) -> StoreError {
    StoreError::Encode {
        source: Box::new(e),
    }
}

/// Writes the checksum of the body into the header.
fn seal(record: &mut [u8]) {
    let crc = crc32(&record[HEADER_LEN..]);
    record[1..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
}

/// Checks a record's version and checksum; returns its body.
fn open<'a>(
    tree: &'static str,
    key: impl FnOnce() -> String,
    bytes: &'a [u8],
) -> Result<&'a [u8], StoreError> {
    let corrupt = |key: String, reason: String| StoreError::Corrupt { tree, key, reason };
    let Some(&version) = bytes.first() else {
        return Err(corrupt(key(), "empty record".into()));
    };
    if version < FORMAT_VERSION {
        return Err(corrupt(
            key(),
            format!(
                "format version {version} was written by an older build (this build reads {FORMAT_VERSION}); \
                 start from an empty data directory"
            ),
        ));
    }
    if version != FORMAT_VERSION {
        return Err(corrupt(
            key(),
            format!("unknown format version {version} (this build reads {FORMAT_VERSION})"),
        ));
    }
    let (Some(stored), Some(body)) = (bytes.get(1..HEADER_LEN), bytes.get(HEADER_LEN..)) else {
        return Err(corrupt(
            key(),
            format!("{} bytes is too short for a record", bytes.len()),
        ));
    };
    let stored = u32::from_le_bytes([stored[0], stored[1], stored[2], stored[3]]);
    let computed = crc32(body);
    if stored != computed {
        return Err(corrupt(
            key(),
            format!("checksum mismatch (stored {stored:08x}, computed {computed:08x})"),
        ));
    }
    Ok(body)
}

/// Decodes a versioned record read from `tree` at the key that `key` prints.
///
/// A short record, an unknown version, a checksum mismatch, bytes bincode rejects and
/// trailing bytes are all [`StoreError::Corrupt`] naming the tree and key.
pub fn decode<T: DeserializeOwned>(
    tree: &'static str,
    key: impl FnOnce() -> String,
    bytes: &[u8],
) -> Result<T, StoreError> {
    let corrupt = |key: String, reason: String| StoreError::Corrupt { tree, key, reason };
    // The key printer is needed at most once; share it between the two stages.
    let mut key = Some(key);
    let mut take_key = || key.take().map(|k| k()).unwrap_or_default();
    let body = open(tree, &mut take_key, bytes)?;
    match decode_body::<T>(body) {
        Ok((value, used)) if used == body.len() => Ok(value),
        Ok((_, used)) => Err(corrupt(
            take_key(),
            format!("{} trailing bytes after the record", body.len() - used),
        )),
        Err(e) => Err(corrupt(take_key(), e.to_string())),
    }
}

/// CRC-32 (IEEE, as zlib and PNG use it), with the CPU's carry-less multiply where it has one.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// Decodes with a byte limit set by the body's size.
///
/// bincode allocates a string's buffer from its length prefix before reading it, so a
/// corrupt prefix could ask for terabytes and abort the process. What bincode "claims"
/// against the limit is each string's length plus each integer's in-memory width (8 bytes
/// for a `u64` that took 1 byte as a varint, 16 at most for a `u128`), so a valid record
/// claims at most 16 times its own size. The limit is 16 times the top of the body's size
/// bucket: every valid record fits, and a corrupt one cannot allocate more than 64 times its
/// size. The limit is a const generic, hence the buckets.
fn decode_body<T: DeserializeOwned>(
    body: &[u8],
) -> Result<(T, usize), bincode::error::DecodeError> {
    fn run<T: DeserializeOwned, C: Config>(
        body: &[u8],
        config: C,
    ) -> Result<(T, usize), bincode::error::DecodeError> {
        bincode::serde::decode_from_slice(body, config)
    }
    let standard = config::standard();
    match body.len() {
        n if n <= 1 << 10 => run(body, standard.with_limit::<{ 16 << 10 }>()),
        n if n <= 1 << 12 => run(body, standard.with_limit::<{ 16 << 12 }>()),
        n if n <= 1 << 14 => run(body, standard.with_limit::<{ 16 << 14 }>()),
        n if n <= 1 << 16 => run(body, standard.with_limit::<{ 16 << 16 }>()),
        n if n <= 1 << 18 => run(body, standard.with_limit::<{ 16 << 18 }>()),
        n if n <= 1 << 20 => run(body, standard.with_limit::<{ 16 << 20 }>()),
        n if n <= 1 << 22 => run(body, standard.with_limit::<{ 16 << 22 }>()),
        n if n <= 1 << 24 => run(body, standard.with_limit::<{ 16 << 24 }>()),
        n if n <= 1 << 26 => run(body, standard.with_limit::<{ 16 << 26 }>()),
        n if n <= 1 << 28 => run(body, standard.with_limit::<{ 16 << 28 }>()),
        n if n <= 1 << 30 => run(body, standard.with_limit::<{ 16 << 30 }>()),
        _ => run(body, standard.with_no_limit()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_a_value() {
        let value = (7u64, String::from("hello"), vec![1u32, 2, 3]);
        let bytes = encode(&value).expect("encodes");
        assert_eq!(bytes[0], FORMAT_VERSION);
        let back: (u64, String, Vec<u32>) = decode("t", || "k".into(), &bytes).expect("decodes");
        assert_eq!(back, value);
    }

    #[test]
    fn an_id_encodes_as_a_plain_string() {
        // Ids are shared strings in memory; on disk they are plain strings.
        let id = hallway_domain::WebhookId::from("wh_0123");
        let as_id = encode(&id).expect("encodes");
        assert_eq!(as_id, encode(&String::from("wh_0123")).expect("encodes"));
        let back: hallway_domain::WebhookId = decode("t", || "k".into(), &as_id).expect("decodes");
        assert_eq!(back, id);
    }

    #[test]
    fn a_delivery_id_encodes_as_its_fan_out_and_index() {
        use hallway_domain::{FanOutId, Timestamp};
        let fan_out = FanOutId::new(Timestamp(7), [9; 10]);
        let id = fan_out.delivery(3);
        let bytes = encode(&id).expect("encodes");
        assert_eq!(bytes, encode(&(fan_out.to_bytes(), 3u32)).expect("encodes"));
        assert_eq!(
            bytes.len(),
            HEADER_LEN + 16 + 1,
            "no text, no length prefix"
        );
        let back: hallway_domain::DeliveryId = decode("t", || "k".into(), &bytes).expect("decodes");
        assert_eq!(back, id);
    }

    #[test]
    fn unknown_version_is_corrupt() {
        let mut bytes = encode(&5u64).expect("encodes");
        bytes[0] = 9;
        let err = decode::<u64>("log", || "42".into(), &bytes).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("\"log\"") && text.contains("42") && text.contains("version 9"));
    }

    #[test]
    fn an_older_format_is_named_as_such() {
        let mut bytes = encode(&5u64).expect("encodes");
        bytes[0] = 1;
        let text = decode::<u64>("log", || "seq 1".into(), &bytes)
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("format version 1 was written by an older build")
                && text.contains("empty data directory"),
            "{text}"
        );
    }

    #[test]
    fn empty_and_trailing_bytes_are_corrupt() {
        assert!(matches!(
            decode::<u64>("t", || "k".into(), &[]),
            Err(StoreError::Corrupt { .. })
        ));
        let mut bytes = encode(&5u64).expect("encodes");
        bytes.push(0);
        seal(&mut bytes);
        let err = decode::<u64>("t", || "k".into(), &bytes).unwrap_err();
        assert!(err.to_string().contains("trailing"), "{err}");
    }

    /// A record with a valid header around `body`, as a writer with a bug could make.
    fn sealed(body: &[u8]) -> Vec<u8> {
        let mut bytes = vec![FORMAT_VERSION, 0, 0, 0, 0];
        bytes.extend_from_slice(body);
        seal(&mut bytes);
        bytes
    }

    #[test]
    fn a_huge_length_prefix_is_an_error_not_an_allocation() {
        // A varint length of u64::MAX (0xFF marker + 8 bytes), then "x".
        let mut body = vec![0xFF];
        body.extend_from_slice(&u64::MAX.to_le_bytes());
        body.push(b'x');
        assert!(matches!(
            decode::<String>("t", || "k".into(), &sealed(&body)),
            Err(StoreError::Corrupt { .. })
        ));
        // One string of 2^40 bytes: more than memory, within u64.
        let mut body = vec![1, 0xFF];
        body.extend_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(matches!(
            decode::<Vec<String>>("t", || "k".into(), &sealed(&body)),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn every_flipped_bit_is_caught() {
        let bytes = encode(&("some text", 12345u64)).expect("encodes");
        for i in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[i / 8] ^= 1 << (i % 8);
            assert!(
                decode::<(String, u64)>("t", || "k".into(), &damaged).is_err(),
                "bit {i} flipped went unnoticed"
            );
        }
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn records_of_many_small_integers_fit_the_limit() {
        // Each u64 takes one byte but claims eight: the worst realistic ratio.
        let many = vec![1u64; 100_000];
        let bytes = encode(&many).expect("encodes");
        let back: Vec<u64> = decode("t", || "k".into(), &bytes).expect("decodes");
        assert_eq!(back, many);
        let many = vec![(1u64, true, None::<u8>); 1000];
        let back: Vec<(u64, bool, Option<u8>)> =
            decode("t", || "k".into(), &encode(&many).expect("encodes")).expect("decodes");
        assert_eq!(back, many);
    }

    #[test]
    fn large_valid_records_decode() {
        let big = "x".repeat(3 << 20);
        let bytes = encode(&vec![big.clone(), big.clone()]).expect("encodes");
        let back: Vec<String> = decode("t", || "k".into(), &bytes).expect("decodes");
        assert_eq!(back, vec![big.clone(), big]);
    }
}
