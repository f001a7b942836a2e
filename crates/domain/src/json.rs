//! A strict check of JSON text: what a receiver's strict parser would refuse, and members
//! repeated in any object, which parsers resolve differently (first wins, last wins, error);
//! and a published object's members read in the same pass.

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

/// Objects with more members than this check them through a hash set instead of a scan.
const SCAN_MAX: usize = 16;

/// Containers a member of the top-level object may nest: with the object itself, the 127
/// levels serde_json (and so `check`) allows a whole text.
const MEMBER_DEPTH_MAX: u32 = 126;

/// A JSON object's members in document order: names as written when they have no escapes,
/// values as their text (a transcript is not copied).
pub(crate) type Members<'a> = Vec<(Key<'a>, &'a str)>;

/// Checks `raw` as one JSON value: the grammar, nesting depth, number ranges and lone
/// surrogates (as `serde_json::Value` would) and no repeated member name in any object.
/// The error names the repeated member and where the parser was.
pub fn check(raw: &[u8]) -> Result<(), String> {
    serde_json::from_slice::<Strict>(raw)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// `raw` as a JSON object's members, checked as strictly as [`check`] checks a text; the
/// error is `check`'s, or "expected a JSON object".
pub(crate) fn object_members(raw: &[u8]) -> Result<Members<'_>, String> {
    if let Some(members) = members_in_one_pass(raw) {
        return Ok(members);
    }
    // What one pass does not take (malformed, repeated, too deep, not an object), two passes
    // explain, with serde_json's words and position.
    check(raw)?;
    serde_json::from_slice::<OrderedObject>(raw)
        .map(|o| o.0)
        .map_err(|e| e.to_string())
}

/// The members of the object `raw`, each value checked by [`Strict`] as it is crossed, so the
/// text is read once; `None` for anything [`check`] might refuse or that is not an object.
fn members_in_one_pass(raw: &[u8]) -> Option<Members<'_>> {
    let mut at = skip_whitespace(raw, 0);
    if raw.get(at) != Some(&b'{') {
        return None;
    }
    at = skip_whitespace(raw, at + 1);
    let mut members: Members = Vec::new();
    if raw.get(at) == Some(&b'}') {
        at += 1;
    } else {
        loop {
            if raw.get(at) != Some(&b'"') {
                return None;
            }
            let (name, end) = one_value::<Key>(raw, at)?;
            at = skip_whitespace(raw, end);
            if raw.get(at) != Some(&b':') {
                return None;
            }
            at = skip_whitespace(raw, at + 1);
            let (MemberValue, end) = one_value::<MemberValue>(raw, at)?;
            // Parsed as JSON, so UTF-8; checked again rather than assumed.
            members.push((name, std::str::from_utf8(raw.get(at..end)?).ok()?));
            at = skip_whitespace(raw, end);
            match raw.get(at) {
                Some(b',') => at = skip_whitespace(raw, at + 1),
                Some(b'}') => {
                    at += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    let repeated = if members.len() <= SCAN_MAX {
        (1..members.len()).any(|i| members[..i].iter().any(|(k, _)| k.0 == members[i].0 .0))
    } else {
        let mut seen = HashSet::with_capacity(members.len());
        !members.iter().all(|(k, _)| seen.insert(&k.0))
    };
    (skip_whitespace(raw, at) == raw.len() && !repeated).then_some(members)
}

/// The JSON value that starts at `at` (after any whitespace), and where it ends.
fn one_value<'de, T: Deserialize<'de>>(raw: &'de [u8], at: usize) -> Option<(T, usize)> {
    let mut values = serde_json::Deserializer::from_slice(raw.get(at..)?).into_iter::<T>();
    let value = values.next()?.ok()?;
    Some((value, at + values.byte_offset()))
}

/// Where the JSON whitespace at `at` ends.
fn skip_whitespace(raw: &[u8], mut at: usize) -> usize {
    while matches!(raw.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// A JSON object's members with values as raw text, which checks only their grammar: read
/// after [`check`], which refuses the rest.
struct OrderedObject<'a>(Members<'a>);

impl<'de> Deserialize<'de> for OrderedObject<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OrderedObject<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out: Members<'de> = Vec::new();
                while let Some((k, v)) = map.next_entry::<Key<'de>, &'de RawValue>()? {
                    out.push((k, v.get()));
                }
                Ok(OrderedObject(out))
            }
        }
        d.deserialize_map(V)
    }
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
        StrictAt {
            depth: 0,
            max: u32::MAX,
        }
        .deserialize(d)
    }
}

/// A member's value of the top-level object, checked as [`Strict`] and nested at most
/// [`MEMBER_DEPTH_MAX`] deep.
struct MemberValue;

impl<'de> Deserialize<'de> for MemberValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        StrictAt {
            depth: 0,
            max: MEMBER_DEPTH_MAX,
        }
        .deserialize(d)
        .map(|Strict| MemberValue)
    }
}

/// [`Strict`] inside `depth` containers, refusing more than `max`.
#[derive(Clone, Copy)]
struct StrictAt {
    depth: u32,
    max: u32,
}

impl StrictAt {
    /// The seed for a container's elements, or an error if it is one too many.
    fn inner<E: serde::de::Error>(self) -> Result<StrictAt, E> {
        if self.depth >= self.max {
            return Err(E::custom("nested too deeply"));
        }
        Ok(StrictAt {
            depth: self.depth + 1,
            max: self.max,
        })
    }
}

impl<'de> DeserializeSeed<'de> for StrictAt {
    type Value = Strict;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Strict, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictAt {
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
        let inner = self.inner()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(Strict)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        let inner = self.inner()?;
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
            map.next_value_seed(inner)?;
        }
        Ok(Strict)
    }
}

#[cfg(test)]
mod tests {
    use super::{check, members_in_one_pass, minified_runs, minify, OrderedObject};
    use proptest::prelude::*;

    type Owned = Vec<(String, String)>;

    /// What `object_members` falls back to: the whole text checked, then its members read.
    fn two_passes(raw: &[u8]) -> Option<Owned> {
        check(raw).ok()?;
        let o: OrderedObject = serde_json::from_slice(raw).ok()?;
        Some(
            o.0.iter()
                .map(|(k, v)| (k.0.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn one_pass(raw: &[u8]) -> Option<Owned> {
        let members = members_in_one_pass(raw)?;
        Some(
            members
                .iter()
                .map(|(k, v)| (k.0.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// JSON-like text: values of every kind, some refused by strict parsers, in objects whose
    /// few names repeat often (one of them also spelt with an escape).
    fn value() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            prop::sample::select(vec![
                "null",
                "true",
                "false",
                "0",
                "-0",
                "12.5e-3",
                "1e999",
                "01",
                "-",
                r#""""#,
                r#""\ud800""#,
                r#""\u0061\n""#,
                r#""é \"""#,
                "18446744073709551616",
            ])
            .prop_map(str::to_owned),
            "\"[a-c é]{0,8}\"",
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec((name(), inner), 0..4).prop_map(|m| object(&m)),
            ]
        })
    }

    fn name() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["a", "b", "\\u0061", "c d", "type"])
    }

    fn object(members: &[(&str, String)]) -> String {
        let members: Vec<String> = members
            .iter()
            .map(|(k, v)| format!("\"{k}\":{v}"))
            .collect();
        format!("{{{}}}", members.join(","))
    }

    proptest! {
        /// One pass takes exactly what the two passes take, with the same members.
        #[test]
        fn one_pass_agrees_with_two(
            members in prop::collection::vec((name(), value()), 0..6),
            spaced in any::<bool>(),
            edit in prop::option::weighted(0.3, (
                any::<prop::sample::Index>(),
                prop_oneof![any::<u8>(), prop::sample::select(b"{}[],:;\" \\0e.-\xff".to_vec())],
                0..3u8,
            )),
        ) {
            let mut text = object(&members);
            if spaced {
                text = text.replace(',', " ,\n\t").replace(':', " : ").replace('{', "{ ") + "\r\n";
            }
            let mut raw = text.into_bytes();
            if let Some((at, byte, op)) = edit {
                let at = at.index(raw.len());
                match op {
                    0 => raw[at] = byte,
                    1 => raw.insert(at, byte),
                    _ => { raw.remove(at); }
                }
            }
            prop_assert_eq!(one_pass(&raw), two_passes(&raw));
        }
    }

    #[test]
    fn one_pass_nests_as_deep_as_the_whole_check_allows() {
        let mut taken = Vec::new();
        for depth in 120..135 {
            let raw = format!(r#"{{"a":{}{}}}"#, "[".repeat(depth), "]".repeat(depth));
            assert_eq!(
                one_pass(raw.as_bytes()),
                two_passes(raw.as_bytes()),
                "{depth}"
            );
            taken.push(one_pass(raw.as_bytes()).is_some());
        }
        assert!(taken.contains(&true) && taken.contains(&false), "{taken:?}");
    }

    #[test]
    fn what_is_not_one_object_is_left_to_the_two_passes() {
        for raw in [
            "",
            " ",
            "[1]",
            r#""a""#,
            "{",
            r#"{"a":1} {}"#,
            r#"{"a":1,}"#,
            r#"{"a":"x";"b":2}"#,
            r#"{"a":1,"\u0061":2}"#,
            r#"{"a"}"#,
            r#"{1:2}"#,
        ] {
            assert_eq!(one_pass(raw.as_bytes()), None, "{raw}");
        }
        assert_eq!(
            one_pass(br#" {"a" : [1, {"b":"x"}] , "c":null} "#),
            Some(vec![
                ("a".to_owned(), r#"[1, {"b":"x"}]"#.to_owned()),
                ("c".to_owned(), "null".to_owned())
            ])
        );
        assert_eq!(one_pass(b"{}"), Some(Vec::new()));
    }

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
