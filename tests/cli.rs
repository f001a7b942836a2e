//! End-to-end tests of `hallway-webhooks verify` and `hallway-webhooks listen`.

mod common;

use common::*;
use hallway_webhooks::signature;
use std::time::{Duration, Instant};

const SECRET: &str = "whsec_cli_test_secret";
const BODY: &[u8] = br#"{"id":"evt_cli_1","type":"session.processing.completed","created_at":"2026-01-10T15:30:00.000Z","api_version":"2026-01-01","account":{"id":"acc_1","name":"Acme"},"project":{"id":"prj_1"}}"#;

fn verify_args<'a>(header: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["verify", "--secret", SECRET, "--header", header];
    args.extend_from_slice(extra);
    args
}

#[test]
fn verify_accepts_a_good_signature_from_a_file_and_from_stdin() {
    let dir = tempfile::tempdir().expect("temp dir");
    let body_file = dir.path().join("body.json");
    std::fs::write(&body_file, BODY).expect("write body");
    let header = signature::sign(SECRET, now_secs(), BODY);
    let file = arg(&body_file);

    let (code, out, err) = run_cli(&verify_args(&header, &["--body-file", &file]), None);
    assert_eq!(code, 0, "stdout {out:?} stderr {err:?}");
    assert_eq!(out.trim(), "valid");

    let (code, out, err) = run_cli(&verify_args(&header, &[]), Some(BODY));
    assert_eq!(code, 0, "stdout {out:?} stderr {err:?}");
    assert_eq!(out.trim(), "valid");

    // An old capture checked with --now at its time.
    let old = signature::sign(SECRET, 1_768_059_000, BODY);
    let (code, out, _) = run_cli(
        &verify_args(&old, &["--body-file", &file, "--now", "1768059100"]),
        None,
    );
    assert_eq!((code, out.trim()), (0, "valid"));
}

#[test]
fn verify_names_malformed_stale_and_mismatch() {
    let dir = tempfile::tempdir().expect("temp dir");
    let body_file = dir.path().join("body.json");
    std::fs::write(&body_file, BODY).expect("write body");
    let file = arg(&body_file);
    let now = now_secs();
    let good = signature::sign(SECRET, now, BODY);
    let cases: Vec<(String, Option<&[u8]>, &str)> = vec![
        ("garbage".to_owned(), None, "malformed"),
        (format!("t={now}"), None, "malformed"),
        (format!("t=abc,v1={}", "0".repeat(64)), None, "malformed"),
        (format!("t={now},v1=xyz"), None, "malformed"),
        (signature::sign(SECRET, now - 3600, BODY), None, "stale"),
        (signature::sign(SECRET, now + 3600, BODY), None, "stale"),
        (signature::sign("whsec_other", now, BODY), None, "mismatch"),
        (good.clone(), Some(b"{\"id\":\"evt_tampered\"}"), "mismatch"),
    ];
    for (header, stdin_body, reason) in cases {
        let (code, out, err) = match stdin_body {
            None => run_cli(&verify_args(&header, &["--body-file", &file]), None),
            Some(body) => run_cli(&verify_args(&header, &[]), Some(body)),
        };
        assert_eq!(code, 1, "{header}: stdout {out:?} stderr {err:?}");
        assert!(
            out.starts_with("invalid: ") && out.contains(reason),
            "{header}: expected {reason}, got {out:?}"
        );
    }
    // A tighter tolerance makes a recent signature stale.
    let (code, out, _) = run_cli(
        &verify_args(
            &signature::sign(SECRET, now - 120, BODY),
            &["--body-file", &file, "--tolerance-secs", "60"],
        ),
        None,
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("stale"), "{out}");
    // A body file that does not exist is neither valid nor invalid.
    let missing = arg(&dir.path().join("missing.json"));
    let (code, out, err) = run_cli(&verify_args(&good, &["--body-file", &missing]), None);
    assert_ne!(code, 0, "{out} {err}");
    assert!(!out.contains("valid"), "{out}");
}

/// Waits until the listener printed `n` summary lines (after its `listening on` line).
async fn summaries(proc: &Proc, n: usize) -> Vec<String> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let lines: Vec<String> = proc
            .stdout
            .lock()
            .expect("lines lock")
            .iter()
            .filter(|l| !l.starts_with("listening on"))
            .cloned()
            .collect();
        if lines.len() >= n {
            return lines;
        }
        if Instant::now() > deadline {
            panic!(
                "expected {n} summary lines, got {lines:?}\nstderr: {}",
                proc.stderr_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_verifies_and_prints_one_line_per_request() {
    let (proc, http) = start_listen(SECRET).await;
    let post = |body: Vec<u8>, header: Option<String>| {
        let http = http.clone();
        async move {
            let mut headers = vec![
                ("content-type", "application/json".to_owned()),
                ("user-agent", "Hallway-Webhooks/1.0".to_owned()),
            ];
            if let Some(h) = header {
                headers.push(("x-hallway-signature", h));
            }
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            http.send_with("POST", "/hook", &headers, Some(body)).await
        }
    };
    let now = now_secs();

    // A correctly signed delivery: 200 and "<id> <type> valid".
    let a = post(BODY.to_vec(), Some(signature::sign(SECRET, now, BODY))).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let lines = summaries(&proc, 1).await;
    assert_eq!(lines[0], "evt_cli_1 session.processing.completed valid");

    // Signed with another secret: 400 and "invalid: mismatch".
    let bad = br#"{"id":"evt_cli_2","type":"session.processing.completed","project":{"id":"p"}}"#;
    let a = post(bad.to_vec(), Some(signature::sign("whsec_other", now, bad))).await;
    assert_eq!(a.status, 400);
    let lines = summaries(&proc, 2).await;
    assert_eq!(
        lines[1],
        "evt_cli_2 session.processing.completed invalid: mismatch"
    );

    // No header at all, a malformed one, a stale one: 400, each with its reason.
    let a = post(bad.to_vec(), None).await;
    assert_eq!(a.status, 400);
    let a = post(bad.to_vec(), Some("t=1,v1=nothex".to_owned())).await;
    assert_eq!(a.status, 400);
    let a = post(bad.to_vec(), Some(signature::sign(SECRET, now - 3600, bad))).await;
    assert_eq!(a.status, 400);
    let lines = summaries(&proc, 5).await;
    assert!(
        lines[2].starts_with("evt_cli_2 session.processing.completed invalid: ")
            && lines[2].contains("missing"),
        "{}",
        lines[2]
    );
    assert!(
        lines[3].starts_with("evt_cli_2 session.processing.completed invalid: malformed"),
        "{}",
        lines[3]
    );
    assert!(
        lines[4].starts_with("evt_cli_2 session.processing.completed invalid: stale"),
        "{}",
        lines[4]
    );

    // A test send is marked.
    let test = br#"{"id":"evt_cli_t","type":"session.processing.completed","_test":true}"#;
    let a = post(test.to_vec(), Some(signature::sign(SECRET, now, test))).await;
    assert_eq!(a.status, 200);
    let lines = summaries(&proc, 6).await;
    assert_eq!(
        lines[5],
        "evt_cli_t session.processing.completed (test) valid"
    );
    // Not JSON but correctly signed: still valid, with placeholders.
    let a = post(
        b"hello".to_vec(),
        Some(signature::sign(SECRET, now, b"hello")),
    )
    .await;
    assert_eq!(a.status, 200);
    let lines = summaries(&proc, 7).await;
    assert_eq!(lines[6], "- - valid");
    assert_eq!(lines.len(), 7, "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_receives_a_real_delivery_from_the_server() {
    // `listen` is plain HTTP on loopback: the server needs both relaxations.
    let home = Home::new();
    let server = Server::start(&home, &["--allow-http", "--allow-private-targets"]).await;
    server.create_account("acc_1", "Acme Research", "pro").await;
    // Create the webhook first (the listener needs its secret), on a port known only after
    // the listener starts: point it at a placeholder, then PATCH the URL.
    let (w, secret) = server
        .create_webhook("acc_1", "Local", "http://127.0.0.1:9/hook")
        .await;
    let wh = w["id"].as_str().expect("id").to_owned();
    let (proc, http) = start_listen(&secret).await;
    let url = format!("http://{}/hook", http_addr(&proc));
    let (status, v) = server
        .admin(
            "PATCH",
            &format!("/v1/accounts/acc_1/webhooks/{wh}"),
            Some(serde_json::json!({"url": url})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let r = server.publish("acc_1", event("evt_to_listen")).await;
    assert_eq!(r.0, 202, "{}", r.1);
    let lines = summaries(&proc, 1).await;
    assert_eq!(lines[0], "evt_to_listen session.processing.completed valid");
    let dlv = server.deliveries("acc_1", &wh).await[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let d = server
        .wait_delivery("acc_1", &wh, &dlv, "succeeded", |d| {
            d["status"] == "succeeded"
        })
        .await;
    assert_eq!(d["attempts"][0]["status_code"], 200);
    drop(http);
}

/// The address the listener printed.
fn http_addr(proc: &Proc) -> String {
    proc.stdout
        .lock()
        .expect("lines lock")
        .iter()
        .find_map(|l| l.strip_prefix("listening on http://").map(str::to_owned))
        .expect("listening line")
}

#[test]
fn verify_takes_the_secret_from_the_environment_and_a_pasted_header_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let body_file = dir.path().join("body.json");
    std::fs::write(&body_file, BODY).expect("write body");
    let file = arg(&body_file);
    let header = signature::sign(SECRET, now_secs(), BODY);
    let env = [("HALLWAY_WEBHOOK_SECRET", SECRET)];

    // The secret from the environment, the header's value alone.
    let args = ["verify", "--header", &header, "--body-file", &file];
    let (code, out, err) = run_cli_with_env(&args, None, &env);
    assert_eq!((code, out.trim()), (0, "valid"), "stderr {err:?}");

    // The whole line as a receiver logged it, in any case, with its line ending.
    for line in [
        format!("X-Hallway-Signature: {header}"),
        format!("x-hallway-signature:{header}\r\n"),
    ] {
        let args = ["verify", "--header", &line, "--body-file", &file];
        let (code, out, err) = run_cli_with_env(&args, None, &env);
        assert_eq!((code, out.trim()), (0, "valid"), "{line:?}: stderr {err:?}");
    }

    // Another header's line: an error that says what to paste.
    let wrong = format!("Authorization: {header}");
    let args = ["verify", "--header", &wrong, "--body-file", &file];
    let (code, out, err) = run_cli_with_env(&args, None, &env);
    assert_eq!(code, 2, "stdout {out:?}");
    assert!(err.contains("X-Hallway-Signature: t=...,v1=..."), "{err}");
    // A malformed value: invalid, with a hint on the accepted shapes.
    let args = ["verify", "--header", "v1=abc", "--body-file", &file];
    let (code, out, err) = run_cli_with_env(&args, None, &env);
    assert_eq!(code, 1);
    assert!(out.starts_with("invalid: malformed"), "{out}");
    assert!(err.contains("hint:"), "{err}");

    // The flag wins over the environment.
    let args = [
        "verify",
        "--secret",
        "whsec_other",
        "--header",
        &header,
        "--body-file",
        &file,
    ];
    let (code, out, _) = run_cli_with_env(&args, None, &env);
    assert_eq!((code, out.trim()), (1, "invalid: mismatch"));

    // No secret at all: a clear error naming the variable, before reading stdin.
    let args = ["verify", "--header", &header];
    let (code, out, err) = run_cli_with_env(&args, None, &[]);
    assert_eq!(code, 2, "stdout {out:?}");
    assert!(err.contains("HALLWAY_WEBHOOK_SECRET"), "{err}");
    // The value never shows in help.
    let (_, help, _) = run_cli_with_env(&["verify", "--help"], None, &env);
    assert!(help.contains("HALLWAY_WEBHOOK_SECRET"), "{help}");
    assert!(!help.contains(SECRET), "{help}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_takes_the_secret_from_the_environment_and_prints_details_when_verbose() {
    let (proc, http) =
        start_listen_with(&["--verbose"], &[("HALLWAY_WEBHOOK_SECRET", SECRET)]).await;
    let header = signature::sign(SECRET, now_secs(), BODY);
    let a = http
        .send_with(
            "POST",
            "/hook",
            &[
                ("content-type", "application/json"),
                ("x-hallway-signature", &header),
            ],
            Some(BODY.to_vec()),
        )
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let text = eventually("the verbose output", || {
        let text = proc.stdout_text();
        async move { text.contains("\"api_version\"").then_some(text) }
    })
    .await;
    assert!(
        text.contains("evt_cli_1 session.processing.completed valid"),
        "{text}"
    );
    assert!(text.contains("  content-type: application/json"), "{text}");
    assert!(
        text.contains(&format!("  x-hallway-signature: {header}")),
        "{text}"
    );
    // The body pretty-printed: one member a line.
    assert!(text.contains("\n    \"id\": \"evt_cli_1\","), "{text}");
    assert!(text.contains("\n      \"name\": \"Acme\""), "{text}");

    // Without a secret anywhere, listen refuses to start and says how to give one.
    let (code, _, err) = run_cli_with_env(&["listen", "--port", "0"], None, &[]);
    assert_ne!(code, 0);
    assert!(err.contains("HALLWAY_WEBHOOK_SECRET"), "{err}");
}

/// A Standard Webhooks secret (the specification's test vector's).
const STD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_and_listen_check_standard_webhooks_signatures_too() {
    use hallway_webhooks::signature::standard;
    let now = now_secs();
    let sig = |secret: &str| standard::sign(secret, "evt_cli_1", now, BODY).expect("base64");
    // A grace's pair: any v1 entry that matches is enough.
    let both = format!(
        "{} {}",
        sig("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"),
        sig(STD_SECRET)
    );
    let lines = |signatures: &str| {
        [
            "webhook-id: evt_cli_1".to_owned(),
            format!("webhook-timestamp: {now}"),
            format!("webhook-signature: {signatures}"),
        ]
    };
    let verify_with = |lines: &[String], stdin: Option<&[u8]>| {
        let mut args = vec!["verify", "--secret", STD_SECRET];
        for l in lines {
            args.extend(["--header", l.as_str()]);
        }
        run_cli(&args, stdin)
    };
    let verify = |lines: &[String]| verify_with(lines, Some(BODY));
    let (code, out, err) = verify(&lines(&both));
    assert_eq!((code, out.trim()), (0, "valid"), "{err}");
    let (code, out, _) = verify(&lines(&sig("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")));
    assert_eq!((code, out.trim()), (1, "invalid: mismatch"));
    let (code, out, err) = verify(&lines("v1,not-base64!")[..]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("malformed"), "{out}");
    assert!(err.contains("webhook-signature: v1,<base64>"), "{err}");
    // Two of the three lines: an error naming the missing one, before reading the body.
    let (code, _, err) = verify_with(&lines(&both)[..2], None);
    assert_eq!(code, 2);
    assert!(err.contains("missing webhook-signature"), "{err}");

    let (proc, http) = start_listen(STD_SECRET).await;
    let post = |signatures: String| {
        let http = http.clone();
        async move {
            let ts = now.to_string();
            let headers = [
                ("content-type", "application/json"),
                ("webhook-id", "evt_cli_1"),
                ("webhook-timestamp", ts.as_str()),
                ("webhook-signature", signatures.as_str()),
            ];
            http.send_with("POST", "/hook", &headers, Some(BODY.to_vec()))
                .await
        }
    };
    assert_eq!(post(both.clone()).await.status, 200);
    assert_eq!(
        post(sig("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"))
            .await
            .status,
        400
    );
    let lines = summaries(&proc, 2).await;
    assert_eq!(lines[0], "evt_cli_1 session.processing.completed valid");
    assert_eq!(
        lines[1],
        "evt_cli_1 session.processing.completed invalid: mismatch"
    );
}
