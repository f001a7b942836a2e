//! `X-Hallway-Signature`: known-answer vectors computed outside Rust, the header format,
//! the tolerance edges, strict parsing, and a property that parsing never panics.

use hallway_domain::signature::{compute, parse, sign, verify, VerifyError, MAX_HEADER_BYTES};
use proptest::prelude::*;

/// Known answers, computed outside Rust with OpenSSL 3.0 in bash (`printf '%s'` writes its
/// argument byte for byte, without a trailing newline and without interpreting `\n`):
///
/// ```text
/// printf '%s' '{t}.{body}' | openssl dgst -sha256 -hmac '{secret}'
/// ```
///
/// and cross-checked with Python 3's standard library, which gave the same digests:
///
/// ```text
/// hmac.new(secret.encode(), f"{t}.{body}".encode(), hashlib.sha256).hexdigest()
/// ```
///
/// The long-secret vector used `K=$(python3 -c "print('whsec_'+'x'*94, end='')")` (100 bytes,
/// longer than SHA-256's 64-byte block, so HMAC hashes the key first). The newline vector was
/// `printf '%s' "1768059000.{\"a\":\"x\"}<newline>tail"` with a literal newline in the shell
/// string. Secrets and bodies are UTF-8.
struct Vector {
    secret: &'static str,
    t: u64,
    body: &'static str,
    hex: &'static str,
}

fn long_secret() -> String {
    format!("whsec_{}", "x".repeat(94))
}

const VECTORS: [Vector; 6] = [
    Vector {
        secret: "whsec_test",
        t: 1_768_059_000,
        body: r#"{"id":"evt_1"}"#,
        hex: "e537e4c858fdb8207f199e8974478e7a36067a4fbf3b56837e7ae141ef9afc0f",
    },
    Vector {
        secret: "whsec_test",
        t: 1_768_059_000,
        body: "",
        hex: "1a59a07ca3662de22c4a782235990ef9063177c667abc7db3f114b9c693867a0",
    },
    Vector {
        secret: "whsec_5f2b8c1e9a7d4036",
        t: 1_768_059_300,
        body: r#"{"id":"evt_m5k2j_8x7yAbCdEf","type":"session.processing.completed"}"#,
        hex: "b25cac11e4ff19aa171639b6dbe2ea75a118ed8382c9d4293219d5678073e61e",
    },
    Vector {
        secret: "k",
        t: 0,
        body: r#"{"a":1}"#,
        hex: "af6ca6e445959e573a7ffa06a800530bcfc4be7ecd92b7be6379dedd89f5afd6",
    },
    Vector {
        secret: "whsec_ünïcode",
        t: 1_768_059_000,
        body: r#"{"id":"evt_1","name":"Zoë"}"#,
        hex: "2cfc3a3093e1daff13d3c3a5d6b379c8f348a3db94f24aa22d741452ca05f210",
    },
    Vector {
        secret: "whsec_test",
        t: 1_768_059_000,
        body: "{\"a\":\"x\"}\ntail",
        hex: "6e8c3c8a359e67173a27d70f17714cc7e69b674e247bed9521ba4556787e9f19",
    },
];

/// `printf '%s' '1768059000.{"a":"line1\nline2"}' | openssl dgst -sha256 -hmac "$K"` with the
/// 100-byte `K` above (the body holds a JSON escape: backslash, `n`).
const LONG_SECRET_BODY: &str = r#"{"a":"line1\nline2"}"#;
const LONG_SECRET_HEX: &str = "ab7bbb1ae8fb98bc174bc7d24dc26b939de9eeea74b5b5c8600549a5bd40470d";

const SECRET: &str = "whsec_test";
const NOW: u64 = 1_768_059_000;
const BODY: &[u8] = br#"{"id":"evt_1"}"#;
const BODY_HEX: &str = "e537e4c858fdb8207f199e8974478e7a36067a4fbf3b56837e7ae141ef9afc0f";

fn header(t: u64) -> String {
    sign(SECRET, t, BODY)
}

fn malformed(h: &str) -> bool {
    matches!(parse(h), Err(VerifyError::Malformed(_)))
        && matches!(
            verify(SECRET, h, BODY, NOW, 300),
            Err(VerifyError::Malformed(_))
        )
}

#[test]
fn compute_matches_openssl_and_python_vectors() {
    for v in &VECTORS {
        assert_eq!(
            compute(v.secret, v.t, v.body.as_bytes()),
            v.hex,
            "secret {:?}, t {}, body {:?}",
            v.secret,
            v.t,
            v.body
        );
    }
    assert_eq!(
        compute(&long_secret(), NOW, LONG_SECRET_BODY.as_bytes()),
        LONG_SECRET_HEX
    );
}

#[test]
fn known_vectors_verify_as_headers() {
    for v in &VECTORS {
        let h = format!("t={},v1={}", v.t, v.hex);
        assert_eq!(
            verify(v.secret, &h, v.body.as_bytes(), v.t, 300),
            Ok(()),
            "{h}"
        );
    }
}

#[test]
fn sign_writes_t_then_v1_in_lowercase_hex() {
    assert_eq!(header(NOW), format!("t={NOW},v1={BODY_HEX}"));
    let h = sign("whsec_ünïcode", 7, b"x");
    let (t, v1) = h.split_once(',').expect("two entries");
    assert_eq!(t, "t=7");
    let hex = v1.strip_prefix("v1=").expect("v1 second");
    assert_eq!(hex.len(), 64);
    assert!(hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
}

#[test]
fn a_signed_body_verifies() {
    assert_eq!(verify(SECRET, &header(NOW), BODY, NOW, 300), Ok(()));
    let parsed = parse(&header(NOW)).expect("own header parses");
    assert_eq!(parsed.timestamp, NOW);
    assert_eq!(parsed.signatures.len(), 1);
    assert_eq!(hex::encode(parsed.signatures[0]), BODY_HEX);
}

#[test]
fn spaces_around_entries_are_tolerated() {
    let h = format!("t={NOW}, v1={BODY_HEX}");
    assert_eq!(verify(SECRET, &h, BODY, NOW, 300), Ok(()));
}

#[test]
fn exactly_the_tolerance_is_accepted_in_both_directions() {
    assert_eq!(verify(SECRET, &header(NOW - 300), BODY, NOW, 300), Ok(()));
    assert_eq!(verify(SECRET, &header(NOW + 300), BODY, NOW, 300), Ok(()));
}

#[test]
fn one_second_past_the_tolerance_is_stale() {
    assert_eq!(
        verify(SECRET, &header(NOW - 301), BODY, NOW, 300),
        Err(VerifyError::Stale { age_s: 301 })
    );
    assert_eq!(
        verify(SECRET, &header(NOW + 301), BODY, NOW, 300),
        Err(VerifyError::Stale { age_s: 301 })
    );
    assert_eq!(
        verify(SECRET, &header(0), BODY, NOW, 300),
        Err(VerifyError::Stale { age_s: NOW })
    );
}

#[test]
fn staleness_is_checked_before_the_mac() {
    // A wrong secret on a stale header reports the age, not a mismatch.
    assert_eq!(
        verify("whsec_wrong", &header(NOW - 1000), BODY, NOW, 300),
        Err(VerifyError::Stale { age_s: 1000 })
    );
}

#[test]
fn extreme_timestamps_do_not_overflow() {
    let t_max = 9_999_999_999_999_999_999u64; // 19 digits, the longest t accepted
    let h = sign(SECRET, t_max, BODY);
    assert!(matches!(
        verify(SECRET, &h, BODY, 0, 300),
        Err(VerifyError::Stale { .. })
    ));
    assert_eq!(verify(SECRET, &h, BODY, t_max, 0), Ok(()));
    assert_eq!(verify(SECRET, &header(0), BODY, u64::MAX, u64::MAX), Ok(()));
}

#[test]
fn malformed_headers_are_refused() {
    let v1 = format!("v1={BODY_HEX}");
    let cases = [
        String::new(),
        ",".into(),
        "garbage".into(),
        // Missing t.
        v1.clone(),
        // Missing v1.
        format!("t={NOW}"),
        format!("t={NOW},v0={BODY_HEX}"),
        // Bad hex, wrong lengths.
        format!("t={NOW},v1={}", BODY_HEX.replace('e', "g")),
        format!("t={NOW},v1={}", &BODY_HEX[..62]),
        format!("t={NOW},v1={BODY_HEX}00"),
        format!("t={NOW},v1="),
        // Non-digit, signed, empty, fractional or overlong t.
        format!("t=abc,{v1}"),
        format!("t=-1,{v1}"),
        format!("t=+1768059000,{v1}"),
        format!("t=,{v1}"),
        format!("t=1768059000.5,{v1}"),
        format!("t=12345678901234567890,{v1}"),
        format!("t= {NOW},{v1}"),
        // Two timestamps.
        format!("t={NOW},t={NOW},{v1}"),
        // Entries without '=' or with odd keys.
        format!("t={NOW},{v1},"),
        format!("t={NOW},{v1},x"),
        format!("t={NOW},=1,{v1}"),
        format!("t={NOW},v-1=2,{v1}"),
        // Far too long.
        format!("t={NOW},{v1},v0={}", "a".repeat(MAX_HEADER_BYTES)),
    ];
    for h in &cases {
        assert!(malformed(h), "{h:?}: {:?}", parse(h));
    }
}

#[test]
fn one_matching_v1_among_several_is_enough() {
    let wrong = compute("whsec_old", NOW, BODY);
    for h in [
        format!("t={NOW},v1={wrong},v1={BODY_HEX}"),
        format!("t={NOW},v1={BODY_HEX},v1={wrong}"),
        format!("v1={wrong},t={NOW},v1={BODY_HEX}"),
    ] {
        assert_eq!(verify(SECRET, &h, BODY, NOW, 300), Ok(()), "{h}");
        assert_eq!(parse(&h).map(|p| p.signatures.len()), Ok(2));
    }
    let h = format!("t={NOW},v1={wrong},v1={wrong}");
    assert_eq!(
        verify(SECRET, &h, BODY, NOW, 300),
        Err(VerifyError::Mismatch)
    );
}

#[test]
fn unknown_schemes_are_ignored() {
    let wrong = compute("whsec_old", NOW, BODY);
    let h = format!("t={NOW},v0={wrong},v1={BODY_HEX},v2=anything");
    assert_eq!(verify(SECRET, &h, BODY, NOW, 300), Ok(()));
    // A correct MAC under an unknown scheme does not count as v1.
    let h = format!("t={NOW},v0={BODY_HEX},v1={wrong}");
    assert_eq!(
        verify(SECRET, &h, BODY, NOW, 300),
        Err(VerifyError::Mismatch)
    );
}

#[test]
fn a_wrong_secret_is_a_mismatch() {
    for secret in ["whsec_tesT", "whsec_test ", "", "whsec_tes"] {
        assert_eq!(
            verify(secret, &header(NOW), BODY, NOW, 300),
            Err(VerifyError::Mismatch),
            "{secret:?}"
        );
    }
}

#[test]
fn a_body_changed_by_one_byte_is_a_mismatch() {
    let h = header(NOW);
    for i in 0..BODY.len() {
        let mut changed = BODY.to_vec();
        changed[i] ^= 0x01;
        assert_eq!(
            verify(SECRET, &h, &changed, NOW, 300),
            Err(VerifyError::Mismatch),
            "byte {i}"
        );
    }
    let mut longer = BODY.to_vec();
    longer.push(b' ');
    assert_eq!(
        verify(SECRET, &h, &longer, NOW, 300),
        Err(VerifyError::Mismatch)
    );
    assert_eq!(
        verify(SECRET, &h, &BODY[..BODY.len() - 1], NOW, 300),
        Err(VerifyError::Mismatch)
    );
}

#[test]
fn a_changed_timestamp_is_a_mismatch() {
    // The MAC covers t: moving t within the tolerance does not keep the signature valid.
    let h = format!("t={},v1={BODY_HEX}", NOW + 1);
    assert_eq!(
        verify(SECRET, &h, BODY, NOW, 300),
        Err(VerifyError::Mismatch)
    );
}

#[test]
fn uppercase_hex_is_accepted() {
    let h = format!("t={NOW},v1={}", BODY_HEX.to_ascii_uppercase());
    assert_eq!(verify(SECRET, &h, BODY, NOW, 300), Ok(()));
}

/// Strings rich in the header's own syntax, to reach the parser's deeper branches.
fn header_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("t=".to_owned()),
        Just("v1=".to_owned()),
        Just("v0=".to_owned()),
        Just(",".to_owned()),
        Just("=".to_owned()),
        Just(" ".to_owned()),
        Just(BODY_HEX.to_owned()),
        Just(NOW.to_string()),
        "[0-9]{0,25}",
        "[0-9a-fA-F]{60,68}",
        "[a-z0-9,= ]{0,8}",
        any::<String>(),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn parse_and_verify_never_panic_on_arbitrary_strings(h in any::<String>(), now in any::<u64>(), tol in any::<u64>()) {
        let _ = parse(&h);
        let _ = verify(SECRET, &h, BODY, now, tol);
    }

    #[test]
    fn parse_and_verify_never_panic_on_header_like_strings(h in header_like(), now in any::<u64>(), tol in any::<u64>()) {
        let parsed = parse(&h);
        let verified = verify(SECRET, &h, BODY, now, tol);
        // Verification can only pass on headers that parse.
        if verified.is_ok() {
            prop_assert!(parsed.is_ok());
        }
        if let Err(e) = parsed {
            prop_assert_eq!(verified, Err(e));
        }
    }

    #[test]
    fn sign_then_verify_round_trips(secret in any::<String>(), body in any::<Vec<u8>>(), t in 0u64..10_000_000_000, skew in 0u64..=300) {
        let h = sign(&secret, t, &body);
        prop_assert_eq!(verify(&secret, &h, &body, t + skew, 300), Ok(()));
        prop_assert_eq!(verify(&secret, &h, &body, t.saturating_sub(skew), 300), Ok(()));
    }
}
