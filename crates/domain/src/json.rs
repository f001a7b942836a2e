//! A strict check of JSON text: what a receiver's strict parser would refuse, and members
//! repeated in any object, which parsers resolve differently (first wins, last wins, error).

use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

/// Objects with more members than this check them through a hash set instead of a scan.
const SCAN_MAX: usize = 16;

/// Checks `raw` as one JSON value: the grammar, nesting depth, number ranges and lone
/// surrogates (as `serde_json::Value` would) and no repeated member name in any object.
/// The error names the repeated member and where the parser was.
pub fn check(raw: &[u8]) -> Result<(), String> {
    serde_json::from_slice::<Strict>(raw)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// JSON text without the whitespace between tokens (strings are kept as written).
pub fn minify(json: &str) -> String {
    let mut out = Vec::with_capacity(json.len());
    minified_runs(json, |run| out.extend_from_slice(run));
    // Only ASCII whitespace outside strings is left out, so the runs join into UTF-8.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Hands `json` to `sink` in runs of bytes that leave out the whitespace between tokens,
/// so that a digest of the minified text needs no copy of it. Bytes are scanned, not
/// characters: a multi-byte UTF-8 sequence never holds a quote, a backslash or ASCII
/// whitespace, and valid JSON has no other whitespace between tokens.
pub fn minified_runs(json: &str, mut sink: impl FnMut(&[u8])) {
    let bytes = json.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => i = string_end(bytes, i + 1),
            b' ' | b'\t' | b'\n' | b'\r' => {
                if start < i {
                    sink(&bytes[start..i]);
                }
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    if start < bytes.len() {
        sink(&bytes[start..]);
    }
}

/// Where the string whose text begins at `i` ends: just past its closing quote (or the end
/// of `bytes`). Strings are most of an event's text (a transcript), so they are crossed
/// eight bytes at a time up to the next quote or backslash.
fn string_end(bytes: &[u8], mut i: usize) -> usize {
    loop {
        i = next_quote_or_backslash(bytes, i);
        match bytes.get(i) {
            Some(b'\\') => i += 2,
            Some(_) => return i + 1,
            None => return bytes.len(),
        }
    }
}

/// The index of the first `"` or `\\` at or after `i`, or `bytes.len()`.
fn next_quote_or_backslash(bytes: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // A byte of `x` is zero exactly where the lowest flagged byte of this mask is; bytes
    // flagged above a zero byte may be wrong, so only the lowest flag of either is used.
    let zero_bytes = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let found =
            zero_bytes(w ^ (ONES * u64::from(b'"'))) | zero_bytes(w ^ (ONES * u64::from(b'\\')));
        if found != 0 {
            return i + (found.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\\' {
        i += 1;
    }
    i
}

/// Any JSON value, parsed as strictly as into a `serde_json::Value` (the parser makes those
/// checks, not the visitor) but without building it.
struct Strict;

/// An object member's name, borrowed from the input when it has no escapes.
pub(crate) struct Key<'de>(pub(crate) Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Strict;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Strict, E> {
                Ok(Strict)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Strict, E> {
                Ok(Strict)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Strict, E> {
                Ok(Strict)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Strict, E> {
                Ok(Strict)
            }
            fn visit_str<E>(self, _: &str) -> Result<Strict, E> {
                Ok(Strict)
            }
            fn visit_unit<E>(self) -> Result<Strict, E> {
                Ok(Strict)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
                while seq.next_element::<Strict>()?.is_some() {}
                Ok(Strict)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
                let mut few: Vec<Cow<'de, str>> = Vec::new();
                let mut many: HashSet<Cow<'de, str>> = HashSet::new();
                while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
                    let repeated = if few.len() < SCAN_MAX {
                        let seen = few.contains(&k);
                        few.push(k.clone());
                        seen
                    } else {
                        if many.is_empty() {
                            many.extend(few.iter().cloned());
                        }
                        !many.insert(k.clone())
                    };
                    if repeated {
                        return Err(serde::de::Error::custom(format_args!(
                            "duplicate member `{}`",
                            crate::types::Echo(&k)
                        )));
                    }
                    map.next_value::<Strict>()?;
                }
                Ok(Strict)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::{check, minified_runs, minify};
    use proptest::prelude::*;

    /// The definition, a byte at a time: whitespace outside strings is left out.
    fn minified_slowly(json: &str) -> Vec<u8> {
        let (mut in_string, mut escaped) = (false, false);
        let mut out = Vec::new();
        for &b in json.as_bytes() {
            if in_string {
                match (escaped, b) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_string = false,
                    _ => {}
                }
            } else if b == b'"' {
                in_string = true;
            } else if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                continue;
            }
            out.push(b);
        }
        out
    }

    proptest! {
        #[test]
        fn runs_are_the_text_without_whitespace_outside_strings(
            json in prop_oneof![
                // Quotes, escapes and whitespace everywhere.
                proptest::string::string_regex("[ \t\n\r\"\\\\a-c{}:,é]{0,80}").unwrap(),
                // Long stretches between them, crossed a word at a time.
                proptest::string::string_regex("([a-z é\t\n]{0,30}[\"\\\\]){0,6}[a-z ]{0,20}").unwrap(),
            ]
        ) {
            let mut runs = Vec::new();
            minified_runs(&json, |r| runs.extend_from_slice(r));
            prop_assert_eq!(runs, minified_slowly(&json));
        }
    }

    #[test]
    fn minifying_drops_whitespace_between_tokens_and_keeps_strings_as_written() {
        let pretty =
            "{\n  \"a\" : [ 1 ,\t2 ],\r\n  \"b\": \"x \\\" y\\\\\",\n  \"é\": \" ü \"\n}\n";
        let compact = r#"{"a":[1,2],"b":"x \" y\\","é":" ü "}"#;
        assert_eq!(minify(pretty), compact);
        assert_eq!(minify(compact), compact);
        let mut runs = Vec::new();
        minified_runs(pretty, |r| runs.push(r.to_vec()));
        assert_eq!(runs.concat(), compact.as_bytes());
        assert!(runs.len() > 1, "whitespace splits the text into runs");
    }

    #[test]
    fn repeated_members_are_refused_at_any_depth() {
        assert!(check(br#"{"a":1,"b":{"c":[{"d":1,"e":2}]}}"#).is_ok());
        let top = check(br#"{"id":"acc_d1","id":"acc_d2"}"#).unwrap_err();
        assert!(top.contains("duplicate member `id`"), "{top}");
        let nested = check(br#"{"a":{"b":[1,{"x":1,"y":2,"x":3}]}}"#).unwrap_err();
        assert!(nested.contains("duplicate member `x`"), "{nested}");
        // An escaped spelling is the same name once decoded.
        assert!(check(br#"{"a":1,"\u0061":2}"#).is_err());
        // The same name in sibling objects is fine.
        assert!(check(br#"[{"a":1},{"a":2}]"#).is_ok());
    }

    #[test]
    fn large_objects_are_checked_too() {
        let members: Vec<String> = (0..100).map(|i| format!("\"k{i}\":{i}")).collect();
        let ok = format!("{{{}}}", members.join(","));
        assert!(check(ok.as_bytes()).is_ok());
        let dup = format!("{{{},\"k7\":0}}", members.join(","));
        assert!(check(dup.as_bytes()).is_err());
    }

    #[test]
    fn what_a_strict_parser_refuses_is_refused() {
        assert!(check(b"{").is_err());
        assert!(check(br#"{"a":1} x"#).is_err());
        assert!(check(br#""\ud800""#).is_err());
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(check(deep.as_bytes()).is_err());
    }
}
