//! The `api` scenario's ceiling: a plain hyper proxy that answers each publish 202 as soon as
//! its body has arrived, then forwards the body, signed, to the account's receiver. No
//! durability, no parsing, no bookkeeping: what the machine does for the same HTTP in and out.
//! It runs as a child process (this binary re-executed) so that its CPU is measured the way
//! the server's is.

use crate::util::{unix_seconds, BenchError, BenchResult};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, USER_AGENT};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The hidden flag that runs the proxy in this process (the child's side).
pub const CHILD_FLAG: &str = "--proxy-child";

/// The hidden flag that gives the proxy its receivers' URLs, by account index.
pub const TARGETS_FLAG: &str = "--proxy-targets";

/// The secret the proxy signs with: signing is work the engine does per delivery, so the
/// ceiling does it too.
const SECRET: &str = "whsec_proxy_ceiling_secret";

/// The account index a publish path names: `/v1/accounts/{acc}/events` where `acc` ends in
/// `_{index}`.
fn account_index(path: &str) -> Option<usize> {
    let acc = path.strip_prefix("/v1/accounts/")?.split('/').next()?;
    acc.rsplit_once('_')?.1.parse().ok()
}

/// Serves until killed: prints `listening on http://{addr}` on stdout, then answers every
/// publish 202 and forwards its body to `targets[account]`, at most `concurrency` forwards
/// at once (a publish waits for room before it is answered, so the proxy cannot run away
/// from its receivers).
pub async fn child(targets: Vec<String>, concurrency: usize) -> BenchResult<()> {
    let targets: Vec<hyper::Uri> = targets
        .iter()
        .map(|u| {
            u.parse()
                .map_err(|e| BenchError::new(format!("bad target {u}: {e}")))
        })
        .collect::<BenchResult<_>>()?;
    let targets = Arc::new(targets);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{addr}")?;
        out.flush()?;
    }
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    // The engine's pool settings.
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .build(http);
    let room = Arc::new(Semaphore::new(concurrency.max(1)));
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(a) => a,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (client, targets, room) = (client.clone(), targets.clone(), room.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let (client, targets, room) = (client.clone(), targets.clone(), room.clone());
                async move {
                    let target = account_index(req.uri().path())
                        .and_then(|a| targets.get(a))
                        .cloned();
                    let body = req.into_body().collect().await?.to_bytes();
                    let Some(target) = target else {
                        let mut r = Response::new(Full::new(Bytes::new()));
                        *r.status_mut() = StatusCode::NOT_FOUND;
                        return Ok::<_, hyper::Error>(r);
                    };
                    let Ok(permit) = room.acquire_owned().await else {
                        let mut r = Response::new(Full::new(Bytes::new()));
                        *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                        return Ok(r);
                    };
                    tokio::spawn(async move {
                        let signature =
                            hallway_domain::signature::sign(SECRET, unix_seconds(), &body);
                        let request = hyper::Request::post(target)
                            .header(CONTENT_TYPE, "application/json")
                            .header(USER_AGENT, hallway_runtime::transport::USER_AGENT_VALUE)
                            .header(hallway_domain::signature::HEADER_NAME, signature)
                            .body(Full::new(body));
                        if let Ok(request) = request {
                            if let Ok(response) = client.request(request).await {
                                let _ = response.into_body().collect().await;
                            }
                        }
                        drop(permit);
                    });
                    let mut r = Response::new(Full::new(Bytes::from_static(b"{\"deliveries\":1}")));
                    *r.status_mut() = StatusCode::ACCEPTED;
                    Ok(r)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::account_index;

    #[test]
    fn publish_paths_name_their_account_index() {
        assert_eq!(account_index("/v1/accounts/acc_api_3/events"), Some(3));
        assert_eq!(account_index("/v1/accounts/acc_api_x/events"), None);
        assert_eq!(account_index("/healthz"), None);
    }
}
