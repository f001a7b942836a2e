//! Inputs handled one way everywhere: repeated JSON members refused at any depth, echoed ids
//! cut short, hidden characters refused in names, parser errors in the contract's shape; and
//! the smaller defences: receivers flooding 1xx heads, files private whatever the umask.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test]
async fn repeated_members_are_refused_at_any_depth() {
    let home = Home::new();
    let server = Server::start(&home, &[]).await;
    let (status, v) = server
        .http
        .raw_json(
            "POST",
            "/v1/accounts",
            Some(ADMIN),
            br#"{"id":"acc_d1","id":"acc_d2","name":"Dup","plan":"pro"}"#,
        )
        .await;
    let message = assert_error(&(status, v), 400, "invalid_request");
    assert!(message.contains("duplicate member `id`"), "{message}");
    for acc in ["acc_d1", "acc_d2"] {
        let (status, _) = server
            .admin("GET", &format!("/v1/accounts/{acc}"), None)
            .await;
        assert_eq!(status, 404, "{acc} must not exist");
    }
    server.create_account("acc_1", "Acme", "pro").await;
    let nested = br#"{"type":"session.processing.completed","project":{"id":"prj_1"},
        "session":{"id":"ses_1","respondent_name":"Jane","respondent_name":"Mallory"}}"#;
    let got = server
        .http
        .raw_json("POST", "/v1/accounts/acc_1/events", Some(ADMIN), nested)
        .await;
    let message = assert_error(&got, 400, "invalid_request");
    assert!(
        message.contains("duplicate member `respondent_name`"),
        "{message}"
    );
}

#[tokio::test]
async fn errors_echo_at_most_a_short_prefix_of_path_ids() {
    let home = Home::new();
    let server = Server::start(&home, &[]).await;
    server.create_account("acc_1", "Acme", "pro").await;
    let long = "w".repeat(60_000);
    for path in [
        format!("/v1/accounts/acc_1/webhooks/{long}"),
        format!("/v1/accounts/{long}"),
    ] {
        let answer = server.http.send("GET", &path, Some(ADMIN), None).await;
        assert_eq!(answer.status, 404);
        assert!(
            answer.body.len() < 400,
            "the error echoed {} bytes",
            answer.body.len()
        );
        let v: serde_json::Value = serde_json::from_slice(&answer.body).expect("JSON");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("wwww…")),
            "{v}"
        );
    }
}

#[tokio::test]
async fn names_with_hidden_characters_are_refused() {
    let home = Home::new();
    let server = Server::start(&home, &[]).await;
    server.create_account("acc_1", "Acme", "pro").await;
    for name in ["Sla\u{0}ck", "Slack\u{1b}[2J", "Slack \u{202e}kcalS"] {
        let got = server
            .admin(
                "POST",
                "/v1/accounts/acc_1/webhooks",
                Some(json!({"name": name, "url": "https://hooks.example.com/", "events": [EVENT_TYPE]})),
            )
            .await;
        assert_validation(&got, "name");
    }
    let got = server
        .admin(
            "POST",
            "/v1/accounts",
            Some(json!({"id": "acc_2", "name": "Acme\u{0}", "plan": "pro"})),
        )
        .await;
    assert_validation(&got, "name");
}

/// Sends raw bytes on a fresh connection and reads the whole answer.
async fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    // The server may answer and close before the whole request is written.
    let _ = s.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn requests_the_parser_refuses_get_the_error_object() {
    let home = Home::new();
    let server = Server::start(&home, &[]).await;
    let cases: [(Vec<u8>, &str, &str); 2] = [
        (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n".to_vec(),
            "HTTP/1.1 400",
            "invalid_request",
        ),
        (
            [
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ".as_slice(),
                &vec![b'a'; 600_000],
                b"\r\n\r\n",
            ]
            .concat(),
            "HTTP/1.1 431",
            "request_header_fields_too_large",
        ),
    ];
    for (request, status_line, code) in cases {
        let answer = raw_exchange(server.addr, &request).await;
        assert!(answer.starts_with(status_line), "{answer}");
        let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
        assert!(head.contains("content-type: application/json"), "{head}");
        let v: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
        assert_eq!(v["error"]["code"], code, "{v}");
    }
    // The server still answers normally afterwards.
    assert_eq!(
        server.http.send("GET", "/healthz", None, None).await.status,
        200
    );
}

#[tokio::test]
async fn a_receiver_flooding_informational_heads_fails_fast() {
    let flood = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = flood.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = flood.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                let _ = s.read(&mut buf).await;
                for _ in 0..100_000 {
                    if s.write_all(b"HTTP/1.1 102 Processing\r\n\r\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
        }
    });
    let home = Home::new();
    let server = Server::permissive(
        &home,
        &[
            "--allow-http",
            "--retry-delays",
            "0s",
            "--attempt-timeout",
            "10s",
        ],
    )
    .await;
    server.create_account("acc_1", "Acme", "pro").await;
    let (w, _) = server
        .create_webhook("acc_1", "Flood", &format!("http://127.0.0.1:{port}/hook"))
        .await;
    let wh = w["id"].as_str().expect("id").to_owned();
    server.publish("acc_1", event("evt_flood")).await;
    let dlv = eventually("the delivery is listed", || async {
        server.deliveries("acc_1", &wh).await.first().cloned()
    })
    .await;
    let done = server
        .wait_delivery(
            "acc_1",
            &wh,
            dlv["id"].as_str().expect("id"),
            "failed",
            |d| d["status"] == "failed",
        )
        .await;
    let attempt = &done["attempts"][0];
    assert_eq!(attempt["error"], "invalid_response", "{done}");
    assert!(
        attempt["duration_ms"].as_u64().is_some_and(|ms| ms < 5_000),
        "{done}"
    );
}

#[tokio::test]
async fn data_dir_files_are_private_whatever_the_umask() {
    let home = Home::new();
    let server = Server::start_customized(&home, None, &[], |cmd| {
        use std::os::unix::process::CommandExt;
        // SAFETY: umask is async-signal-safe; it runs in the child before exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::umask(0);
                Ok(())
            });
        }
    })
    .await;
    let token = std::fs::read_to_string(home.data_dir().join("admin-token")).expect("token");
    let (status, v) = server
        .call(
            "POST",
            "/v1/accounts",
            Some(token.trim()),
            Some(json!({"id": "acc_1", "name": "Acme", "plan": "pro"})),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    drop(server);
    let mut open_to_others = Vec::new();
    let mut seen = 0;
    let mut stack = vec![home.data_dir()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir").flatten() {
            use std::os::unix::fs::PermissionsExt;
            let meta = entry.metadata().expect("metadata");
            seen += 1;
            if meta.permissions().mode() & 0o077 != 0 {
                open_to_others.push(format!(
                    "{} {:o}",
                    entry.path().display(),
                    meta.permissions().mode()
                ));
            }
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    assert!(seen > 3, "only {seen} entries under the data dir");
    assert!(
        open_to_others.is_empty(),
        "readable or writable by others: {open_to_others:#?}"
    );
}
