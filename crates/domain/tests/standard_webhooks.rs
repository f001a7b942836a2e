//! Standard Webhooks signatures against the specification's published test vectors, the
//! headers each scheme puts on a delivery, and strict, total verification.

use hallway_domain::signature::{self, standard, VerifyError};
use hallway_domain::SignatureScheme;
use proptest::prelude::*;

/// A published vector: secret, message id, timestamp, payload, expected `webhook-signature`.
struct Vector {
    secret: &'static str,
    msg_id: &'static str,
    timestamp: u64,
    payload: &'static str,
    signature: &'static str,
}

/// From the standard-webhooks/standard-webhooks repository (the reference libraries of the
/// specification): `libraries/javascript/src/webhook.test.ts` ("sign function works", at
/// commit 10d3e46d720c4e5861a792bec25792a04ad4e2b3) and `libraries/rust/src/lib.rs`
/// (`test_sign`, at commit 1e88c9ce08bb2c605fea9a2a540b4a91d31c7a62).
const VECTORS: [Vector; 2] = [
    Vector {
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        msg_id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
        timestamp: 1_614_265_330,
        payload: r#"{"test": 2432232314}"#,
        signature: "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    },
    Vector {
        secret: "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
        msg_id: "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
        timestamp: 1_649_367_553,
        payload: r#"{"email":"test@example.com","username":"test_user"}"#,
        signature: "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
    },
];

#[test]
fn signing_gives_the_published_signatures() {
    for v in &VECTORS {
        let got = standard::sign(v.secret, v.msg_id, v.timestamp, v.payload.as_bytes());
        assert_eq!(got.as_deref(), Ok(v.signature), "{}", v.msg_id);
        // The reference libraries take the secret with or without its prefix.
        let bare = v.secret.strip_prefix("whsec_").expect("prefixed");
        assert_eq!(
            standard::sign(bare, v.msg_id, v.timestamp, v.payload.as_bytes()).as_deref(),
            Ok(v.signature)
        );
    }
}

#[test]
fn the_published_signatures_verify_and_altered_ones_do_not() {
    for v in &VECTORS {
        let ts = v.timestamp.to_string();
        let body = v.payload.as_bytes();
        let ok = |secret: &str, id: &str, ts: &str, sigs: &str, body: &[u8]| {
            standard::verify(secret, id, ts, sigs, body, v.timestamp, 300)
        };
        assert_eq!(ok(v.secret, v.msg_id, &ts, v.signature, body), Ok(()));
        // Among others, space-separated, in any position (the reference's multi-signature case).
        let decoy = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";
        let many = format!("{decoy} v2,{} {} {decoy}", &v.signature[3..], v.signature);
        assert_eq!(ok(v.secret, v.msg_id, &ts, &many, body), Ok(()));
        assert_eq!(
            ok(v.secret, v.msg_id, &ts, decoy, body),
            Err(VerifyError::Mismatch)
        );
        // The id, the time and the body are all signed.
        assert_eq!(
            ok(v.secret, "msg_other", &ts, v.signature, body),
            Err(VerifyError::Mismatch)
        );
        let later = (v.timestamp + 1).to_string();
        assert_eq!(
            standard::verify(
                v.secret,
                v.msg_id,
                &later,
                v.signature,
                body,
                v.timestamp,
                300
            ),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            ok(v.secret, v.msg_id, &ts, v.signature, b"{}"),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            standard::verify(
                v.secret,
                v.msg_id,
                &ts,
                v.signature,
                body,
                v.timestamp + 301,
                300
            ),
            Err(VerifyError::Stale { age_s: 301 })
        );
    }
}

#[test]
fn malformed_headers_and_secrets_are_errors_not_panics() {
    let v = &VECTORS[0];
    let ts = v.timestamp.to_string();
    let check = |id: &str, ts: &str, sigs: &str| {
        standard::verify(
            v.secret,
            id,
            ts,
            sigs,
            v.payload.as_bytes(),
            v.timestamp,
            300,
        )
    };
    for (id, t, sigs) in [
        ("", ts.as_str(), v.signature),
        (v.msg_id, "hello", v.signature),
        (v.msg_id, "", v.signature),
        (v.msg_id, "-1", v.signature),
        (v.msg_id, ts.as_str(), ""),
        (v.msg_id, ts.as_str(), "v1,"),
        (v.msg_id, ts.as_str(), "v1,dawfeoifkpqwoekfpqoekf"),
        (v.msg_id, ts.as_str(), &v.signature[..8]),
        (v.msg_id, ts.as_str(), "v1a,abc"),
        (v.msg_id, ts.as_str(), "g0hM9SsE"),
    ] {
        assert!(
            matches!(check(id, t, sigs), Err(VerifyError::Malformed(_))),
            "{id:?} {t:?} {sigs:?}: {:?}",
            check(id, t, sigs)
        );
    }
    assert_eq!(
        standard::verify(
            "whsec_not base64!",
            v.msg_id,
            &ts,
            v.signature,
            b"{}",
            v.timestamp,
            300
        ),
        Err(VerifyError::InvalidSecret(standard::InvalidSecret))
    );
    assert_eq!(
        standard::sign("whsec_", "m", 1, b"{}"),
        Err(standard::InvalidSecret)
    );
}

#[test]
fn a_secret_shows_its_key_in_base64_and_reads_back() {
    let key = [7u8; 24];
    let secret = standard::secret_from_key(&key);
    assert_eq!(secret, "whsec_BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcH");
    assert_eq!(standard::key(&secret).as_deref(), Ok(&key[..]));
    // The spec's scheme makes `whsec_` and 48 hex digits: valid base64 too (36 bytes), so a
    // webhook can switch schemes and keep its secret.
    let hex_secret = format!("whsec_{}", "0123456789abcdef".repeat(3));
    assert_eq!(standard::key(&hex_secret).map(|k| k.len()), Ok(36));
}

#[test]
fn each_scheme_puts_its_headers_and_the_event_id_on_a_delivery() {
    let body = br#"{"id":"evt_1"}"#;
    let hallway = signature::headers(
        SignatureScheme::Hallway,
        "evt_1",
        "whsec_new",
        Some("whsec_old"),
        1_768_059_000,
        body,
    )
    .expect("signs");
    assert_eq!(
        hallway,
        vec![
            (
                signature::HEADER_NAME,
                signature::sign_with("whsec_new", Some("whsec_old"), 1_768_059_000, body)
            ),
            (signature::EVENT_ID_HEADER, "evt_1".to_owned()),
        ]
    );

    let v = &VECTORS[0];
    let old = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let standard_headers = signature::headers(
        SignatureScheme::Standard,
        v.msg_id,
        v.secret,
        Some(old),
        v.timestamp,
        v.payload.as_bytes(),
    )
    .expect("signs");
    let old_sig = standard::sign(old, v.msg_id, v.timestamp, v.payload.as_bytes()).expect("signs");
    assert_eq!(
        standard_headers,
        vec![
            (standard::ID_HEADER, v.msg_id.to_owned()),
            (standard::TIMESTAMP_HEADER, v.timestamp.to_string()),
            // The new secret's signature first, then the old one's, space-separated.
            (
                standard::SIGNATURE_HEADER,
                format!("{} {old_sig}", v.signature)
            ),
            (signature::EVENT_ID_HEADER, v.msg_id.to_owned()),
        ]
    );
    let without_grace = signature::headers(
        SignatureScheme::Standard,
        v.msg_id,
        v.secret,
        None,
        v.timestamp,
        v.payload.as_bytes(),
    )
    .expect("signs");
    assert_eq!(without_grace[2].1, v.signature);
}

#[test]
fn event_ids_become_header_values_that_read_back() {
    assert_eq!(signature::header_id("evt_0a1b", false), "evt_0a1b");
    assert_eq!(signature::header_id("order.42", false), "order.42");
    // The signed Standard Webhooks id holds no `.` (it separates the signed parts).
    assert_eq!(signature::header_id("order.42", true), "order%2E42");
    assert_eq!(signature::header_id("zoë%", false), "zo%C3%AB%25");
    let headers = signature::headers(
        SignatureScheme::Standard,
        "order.42",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        None,
        1,
        b"{}",
    )
    .expect("signs");
    assert_eq!(headers[0].1, "order%2E42");
    assert_eq!(headers[3].1, "order.42");
}

proptest! {
    #[test]
    fn verifying_any_input_never_panics(
        id in ".{0,40}",
        ts in "[0-9a-z-]{0,25}",
        sigs in "[ -~]{0,120}",
        secret in "[ -~]{0,60}",
    ) {
        let _ = standard::verify(&secret, &id, &ts, &sigs, b"{}", 1_700_000_000, 300);
    }

    #[test]
    fn what_the_engine_signs_verifies_under_either_secret_of_a_grace(
        id in "[a-z_0-9.]{1,30}",
        t in 0u64..4_000_000_000,
        body in ".{0,200}",
        new_key in prop::collection::vec(any::<u8>(), 24..64),
        old_key in prop::collection::vec(any::<u8>(), 24..64),
    ) {
        let (new, old) = (standard::secret_from_key(&new_key), standard::secret_from_key(&old_key));
        let headers = signature::headers(SignatureScheme::Standard, &id, &new, Some(&old), t, body.as_bytes())
            .expect("signs");
        for secret in [&new, &old] {
            prop_assert_eq!(
                standard::verify(secret, &headers[0].1, &headers[1].1, &headers[2].1, body.as_bytes(), t, 300),
                Ok(())
            );
        }
        prop_assert!(!headers[0].1.contains('.'));
    }
}
