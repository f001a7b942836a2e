//! The API's connections against clients that misbehave: idle and half-sent connections are
//! closed (a keep-alive connection's second head too), while a kept-alive one is kept for
//! the whole idle timeout; a request whose body stalls is answered 408, the connection cap
//! keeps `/healthz` answerable, SIGTERM is not stalled by clients, and API clients cannot
//! take the descriptors deliveries need.

mod common;

use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Waits (bounded) until the server closes `stream`: a read returns end of file or an error.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let until = Instant::now() + limit;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // An answer (such as hyper's) before the close: keep reading.
            Ok(Ok(_)) => continue,
        }
    }
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect to the API")
}

/// One `GET /healthz` on a kept-alive connection, answered 200.
async fn healthz_on(s: &mut TcpStream) {
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("send");
    answered_200(s).await;
}

/// Reads an answer (within 5 s) and checks it is a 200.
async fn answered_200(s: &mut TcpStream) {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("an answer")
        .expect("read");
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Ten idle connections and ten with half a request head.
async fn idle_and_half_sent(addr: SocketAddr) -> (Vec<TcpStream>, Vec<TcpStream>) {
    let mut idle = Vec::new();
    let mut half = Vec::new();
    for _ in 0..10 {
        idle.push(connect(addr).await);
        let mut s = connect(addr).await;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .expect("send half a head");
        half.push(s);
    }
    (idle, half)
}

#[tokio::test]
async fn idle_and_half_sent_connections_are_closed_after_their_timeouts() {
    let home = Home::new();
    let server = Server::start(
        &home,
        &["--header-read-timeout", "500ms", "--idle-timeout", "1s"],
    )
    .await;
    let (mut idle, mut half) = idle_and_half_sent(server.addr).await;
    for s in half.iter_mut() {
        assert!(
            closed_within(s, Duration::from_secs(5)).await,
            "a half-sent request head was still open after 5 s"
        );
    }
    for s in idle.iter_mut() {
        assert!(
            closed_within(s, Duration::from_secs(5)).await,
            "an idle connection was still open after 5 s"
        );
    }
    // A keep-alive client that sends its requests in time is served throughout.
    let mut s = connect(server.addr).await;
    for _ in 0..3 {
        healthz_on(&mut s).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn a_keep_alive_connections_next_head_sent_slowly_is_closed_after_the_header_timeout() {
    let home = Home::new();
    let server = Server::start(
        &home,
        &["--header-read-timeout", "500ms", "--idle-timeout", "60s"],
    )
    .await;
    let mut s = connect(server.addr).await;
    healthz_on(&mut s).await;
    // The next head starts, then stalls: the idle timeout (60 s) must not be what ends it.
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .expect("send half a head");
    let started = Instant::now();
    assert!(
        closed_within(&mut s, Duration::from_secs(5)).await,
        "a keep-alive connection's half-sent second head was still open after 5 s"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "closed after {:?}, before the head's time was up",
        started.elapsed()
    );
}

/// Serves `/healthz` on one connection, leaves it idle for `idle`, then serves it again.
async fn served_again_after_idling(flags: &[&str], idle: Duration) {
    let home = Home::new();
    let server = Server::start(&home, flags).await;
    let mut s = connect(server.addr).await;
    healthz_on(&mut s).await;
    tokio::time::sleep(idle).await;
    healthz_on(&mut s).await;
}

#[tokio::test]
async fn a_kept_alive_connection_is_kept_for_the_whole_idle_timeout() {
    // Above hyper's own header timer (30 s by default), which also runs between requests.
    let flags = ["--header-read-timeout", "500ms", "--idle-timeout", "40s"];
    served_again_after_idling(&flags, Duration::from_secs(32)).await;
}

#[tokio::test]
async fn a_kept_alive_connection_outlives_the_header_timeout_while_idle() {
    let flags = ["--header-read-timeout", "300ms", "--idle-timeout", "5s"];
    served_again_after_idling(&flags, Duration::from_millis(1500)).await;
}

#[tokio::test]
async fn a_head_begun_late_in_the_idle_time_gets_the_whole_header_timeout() {
    let home = Home::new();
    let flags = ["--header-read-timeout", "2s", "--idle-timeout", "3s"];
    let server = Server::start(&home, &flags).await;
    let mut s = connect(server.addr).await;
    healthz_on(&mut s).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("send half a head");
    // Past the idle timeout counted from the first answer, within the head's own time.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.write_all(b"\r\n").await.expect("finish the head");
    answered_200(&mut s).await;
}

#[tokio::test]
async fn a_request_whose_body_stalls_is_answered_408_after_the_request_timeout() {
    let home = Home::new();
    let server = Server::start(&home, &["--request-timeout", "500ms"]).await;
    let mut s = connect(server.addr).await;
    // An authorized create whose body promises 100 bytes and sends 9: the handler waits
    // for the rest inside the request's time.
    let head = format!(
        "POST /v1/accounts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"id\": \"a"
    );
    let started = Instant::now();
    s.write_all(head.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("request_timeout") {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&buf[..n]),
            other => panic!(
                "no 408 within 10 s ({other:?}): {}",
                String::from_utf8_lossy(&answer)
            ),
        }
    }
    let waited = started.elapsed();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        waited >= Duration::from_millis(450),
        "answered after {waited:?}, before the request's time was up"
    );
    // The server goes on serving others.
    let health = server.http.send("GET", "/healthz", None, None).await;
    assert_eq!(health.status, 200);
}

#[tokio::test]
async fn at_the_connection_cap_healthz_is_still_answered() {
    let home = Home::new();
    let server = Server::start(
        &home,
        &[
            "--max-connections",
            "20",
            "--header-read-timeout",
            "60s",
            "--idle-timeout",
            "60s",
        ],
    )
    .await;
    // The listener and the runtime's own sockets (the signal driver's pair).
    let baseline = count_sockets(server.proc.pid());
    let (mut idle, mut half) = idle_and_half_sent(server.addr).await;
    // Every slot is taken; a new client still gets its answer, at the cost of the connection
    // idle longest.
    for round in 0..3 {
        let answer = server.http.send("GET", "/healthz", None, None).await;
        assert_eq!(answer.status, 200, "round {round}");
    }
    let mut closed = 0;
    for s in idle.iter_mut().chain(half.iter_mut()) {
        if closed_within(s, Duration::from_millis(50)).await {
            closed += 1;
        }
    }
    assert!(
        (1..=20).contains(&closed),
        "{closed} of the 20 old connections were closed"
    );
    let open_sockets = count_sockets(server.proc.pid());
    assert!(
        open_sockets <= baseline + 20,
        "the server holds {open_sockets} sockets ({baseline} of its own) with a cap of 20"
    );
}

/// Sockets the process holds (its listener included).
fn count_sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter(|target| target.to_string_lossy().starts_with("socket:"))
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn sigterm_is_not_stalled_by_half_sent_requests() {
    let home = Home::new();
    let mut server = Server::start(
        &home,
        &[
            "--header-read-timeout",
            "120s",
            "--idle-timeout",
            "120s",
            "--shutdown-grace",
            "1s",
        ],
    )
    .await;
    let mut stalled = Vec::new();
    for _ in 0..3 {
        let mut s = connect(server.addr).await;
        s.write_all(b"POST /v1/accounts HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            .await
            .expect("send half a request");
        stalled.push(s);
        let mut h = connect(server.addr).await;
        h.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("send half a head");
        stalled.push(h);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    server.proc.terminate();
    let status = server.proc.wait_exit(Duration::from_secs(20));
    let took = started.elapsed();
    assert!(
        status.is_some(),
        "still running 20 s after SIGTERM with stalled clients\n{}",
        server.proc.stderr_text()
    );
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?}"
    );
    eprintln!("SIGTERM to exit with 6 stalled clients: {took:?}");
    // New connections are refused once shutdown began.
    assert!(TcpStream::connect(server.addr).await.is_err());
}

#[tokio::test]
async fn api_clients_cannot_take_the_descriptors_deliveries_need() {
    let home = Home::new();
    let receiver = Receiver::status(200).await;
    let server = Server::start_customized(
        &home,
        Some(ADMIN),
        &["--allow-private-targets", "--idle-timeout", "60s"],
        |cmd| {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; it runs in the child before exec.
            unsafe {
                cmd.pre_exec(|| {
                    let lim = libc::rlimit {
                        rlim_cur: 256,
                        rlim_max: 256,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        },
    )
    .await;
    server.create_account("acc_fd", "Fd", "pro").await;
    let (w, _) = server.create_webhook("acc_fd", "Up", &receiver.url()).await;
    let wh = w["id"].as_str().expect("id").to_owned();
    let mut idle = Vec::new();
    for _ in 0..300 {
        if let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(server.addr)).await
        {
            idle.push(s);
        }
    }
    let mut ids = Vec::new();
    for i in 0..3 {
        let (status, v) = server.publish("acc_fd", event(&format!("evt_fd{i}"))).await;
        assert_eq!(status, 202, "{v}");
        ids.push(v["id"].as_str().expect("id").to_owned());
    }
    receiver.wait_for(3).await;
    for d in server.deliveries("acc_fd", &wh).await {
        let done = server
            .wait_delivery(
                "acc_fd",
                &wh,
                d["id"].as_str().expect("id"),
                "settled",
                |d| d["status"] != "pending",
            )
            .await;
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!(done["attempts"].as_array().map(Vec::len), Some(1), "{done}");
    }
    drop(idle);
}
