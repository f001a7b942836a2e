//! The default transport's connections, seen from receivers written on raw TCP: attempts to
//! one origin share a kept-alive connection (bursts reuse what earlier bursts opened), a
//! connection the receiver closed while it sat idle is replaced without a failed attempt, an
//! answer that ends its connection is not reused, and the pool closes connections left idle.

use bytes::Bytes;
use hallway_runtime::{HttpsTransport, OutgoingRequest, Sent, Transport, TransportConfig};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How a receiver ends each exchange.
#[derive(Clone, Copy, Debug)]
enum After {
    /// Keeps the connection for the next request.
    KeepAlive,
    /// Answers `Connection: close`, and would go on serving a client that ignored it.
    SaysClose,
    /// Closes without saying so (as an idle timeout at the receiver does, just later).
    Closes,
}

/// What a receiver saw.
#[derive(Default)]
struct Seen {
    connections: usize,
    /// Connections the client closed.
    closed_by_client: usize,
    /// Connections the receiver closed.
    closed_by_receiver: usize,
    /// Each request's line and `Host` header.
    requests: Vec<(String, String)>,
}

/// Starts a receiver on 127.0.0.1 answering 200 to each request; returns its address.
async fn receiver(after: After) -> (String, Arc<Mutex<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            record.lock().expect("seen").connections += 1;
            tokio::spawn(serve(tcp, after, record.clone()));
        }
    });
    (addr, seen)
}

async fn serve(mut tcp: TcpStream, after: After, seen: Arc<Mutex<Seen>>) {
    let mut buf = Vec::new();
    loop {
        let Some(end) = read_until_head_end(&mut tcp, &mut buf).await else {
            seen.lock().expect("seen").closed_by_client += 1;
            return;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let header = |name: &str| {
            head.lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                })
                .unwrap_or_default()
        };
        let length: usize = header("content-length").parse().unwrap_or(0);
        while buf.len() < end + length {
            if !read_more(&mut tcp, &mut buf).await {
                return;
            }
        }
        buf.drain(..end + length);
        let line = head.lines().next().unwrap_or_default().to_owned();
        seen.lock()
            .expect("seen")
            .requests
            .push((line, header("host")));
        let close = if matches!(after, After::SaysClose) {
            "Connection: close\r\n"
        } else {
            ""
        };
        let answer = format!("HTTP/1.1 200 OK\r\n{close}Content-Length: 2\r\n\r\nok");
        if tcp.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
        match after {
            After::KeepAlive | After::SaysClose => {}
            After::Closes => {
                // Late enough that the client has put the connection back in its pool.
                tokio::time::sleep(Duration::from_millis(20)).await;
                drop(tcp);
                seen.lock().expect("seen").closed_by_receiver += 1;
                return;
            }
        }
    }
}

/// Reads into `buf` until it holds a whole head; the head's length with its blank line.
async fn read_until_head_end(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(i + 4);
        }
        if !read_more(tcp, buf).await {
            return None;
        }
    }
}

/// Appends what the next read brings to `buf`; false once the connection has ended.
async fn read_more(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 4096];
    match tcp.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

/// Waits (up to 5 s) until what the receiver saw satisfies `done`.
async fn until_seen(seen: &Mutex<Seen>, what: &str, done: impl Fn(&Seen) -> bool) {
    let check = || async { done(&seen.lock().expect("seen")).then_some(()) };
    hallway_testkit::wait::eventually_within(what, Duration::from_secs(5), check).await;
}

fn transport() -> HttpsTransport {
    HttpsTransport::new(TransportConfig {
        allow_private_targets: true,
        skip_native_roots: true,
        ..TransportConfig::default()
    })
    .expect("transport")
}

/// A receiver ending each exchange as `after`, a transport, and the receiver's `/hook` URL.
async fn hook(after: After) -> (HttpsTransport, String, Arc<Mutex<Seen>>) {
    let (addr, seen) = receiver(after).await;
    (transport(), format!("http://{addr}/hook"), seen)
}

async fn post(transport: &HttpsTransport, url: &str) -> Sent {
    let request = OutgoingRequest {
        url: url.to_owned(),
        body: Bytes::from_static(b"{\"n\":1}"),
        headers: vec![("x-hallway-event-id", "evt_1".to_owned())],
    };
    transport.send(request, Duration::from_secs(5)).await
}

fn is_200(sent: &Sent) -> bool {
    matches!(
        sent.outcome,
        hallway_domain::Outcome::Response { status: 200, .. }
    )
}

#[tokio::test]
async fn attempts_to_one_origin_share_one_kept_alive_connection() {
    let (addr, seen) = receiver(After::KeepAlive).await;
    let t = transport();
    for i in 0..20 {
        // Two webhooks of one origin: the path differs, the connection does not.
        let url = format!("http://{addr}/hooks/{}?k=v", i % 2);
        let sent = post(&t, &url).await;
        assert!(is_200(&sent), "attempt {i}: {sent:?}");
    }
    let seen = seen.lock().expect("seen");
    assert_eq!(
        seen.connections, 1,
        "one connection for 20 sequential attempts"
    );
    assert_eq!(seen.requests.len(), 20);
    // Origin-form targets, and a Host header with the (non-default) port.
    assert_eq!(seen.requests[0].0, "POST /hooks/0?k=v HTTP/1.1");
    assert_eq!(seen.requests[1].0, "POST /hooks/1?k=v HTTP/1.1");
    assert!(
        seen.requests.iter().all(|(_, host)| *host == addr),
        "{:?}",
        seen.requests
    );
}

#[tokio::test]
async fn a_connection_the_receiver_closed_while_idle_is_replaced_without_a_failure() {
    let (t, url, seen) = hook(After::Closes).await;
    for i in 0..5 {
        let sent = post(&t, &url).await;
        assert!(is_200(&sent), "attempt {i}: {sent:?}");
        // The receiver's close reaches the client while the connection is idle: once it is
        // closed, a pause lets the runtime hand the close to the connection's task.
        until_seen(&seen, "the receiver closed", |s| s.closed_by_receiver > i).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = seen.lock().expect("seen");
    assert_eq!(seen.requests.len(), 5, "each attempt sent once");
    assert_eq!(seen.connections, 5, "a new connection for each");
}

#[tokio::test]
async fn an_answer_saying_connection_close_is_not_reused() {
    let (t, url, seen) = hook(After::SaysClose).await;
    for i in 0..5 {
        // No pause: the receiver would serve a client that reused the connection anyway.
        let sent = post(&t, &url).await;
        assert!(is_200(&sent), "attempt {i}: {sent:?}");
    }
    {
        let seen = seen.lock().expect("seen");
        assert_eq!(seen.requests.len(), 5);
        assert_eq!(
            seen.connections, 5,
            "no connection reused after `Connection: close`"
        );
    }
    until_seen(&seen, "the client closed all 5", |s| {
        s.closed_by_client == 5
    })
    .await;
}

#[tokio::test]
async fn concurrent_attempts_open_connections_that_later_attempts_reuse() {
    let (t, url, seen) = hook(After::KeepAlive).await;
    let burst = |n: usize| {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let (t, url) = (t.clone(), url.clone());
                tokio::spawn(async move { post(&t, &url).await })
            })
            .collect();
        async move {
            for task in tasks {
                let sent = task.await.expect("task");
                assert!(is_200(&sent), "{sent:?}");
            }
        }
    };
    burst(8).await;
    let opened = seen.lock().expect("seen").connections;
    assert!(
        (1..=8).contains(&opened),
        "{opened} connections for 8 attempts"
    );
    burst(8).await;
    burst(8).await;
    let seen = seen.lock().expect("seen");
    assert_eq!(seen.requests.len(), 24);
    assert!(
        seen.connections <= 8,
        "later bursts reuse the first burst's connections: {} opened",
        seen.connections
    );
}

#[tokio::test]
async fn a_connection_idle_for_a_minute_is_closed() {
    let (t, url, seen) = hook(After::KeepAlive).await;
    let sent = post(&t, &url).await;
    assert!(is_200(&sent), "{sent:?}");
    // Paused, tokio's clock jumps to each timer: the pool's sweep runs as if 70 s had passed.
    tokio::time::pause();
    tokio::time::sleep(Duration::from_secs(59)).await;
    tokio::time::resume();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        seen.lock().expect("seen").closed_by_client,
        0,
        "kept at 59 s"
    );
    tokio::time::pause();
    tokio::time::sleep(Duration::from_secs(11)).await;
    tokio::time::resume();
    let closed = "the pool closed the connection idle past 60 s";
    until_seen(&seen, closed, |s| s.closed_by_client == 1).await;
    drop(t);
}
