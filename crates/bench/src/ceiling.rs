//! The physical ceiling: a plain pooled hyper client posting the same signed bodies to the
//! same receivers with the same concurrency as the engine, with nothing else in the way.

use crate::receiver::Receivers;
use crate::util::{now_ns, unix_seconds, BenchError, BenchResult};
use crate::workload::{account_of, WEBHOOKS_PER_ACCOUNT};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, USER_AGENT};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// What the ceiling run measured.
#[derive(Clone, Copy, Debug)]
pub struct Ceiling {
    /// Requests answered 2xx.
    pub requests: u64,
    /// Requests per second, from the first send to the last arrival.
    pub requests_per_sec: f64,
    /// Requests that failed or got a non-2xx answer.
    pub errors: u64,
    /// CPU cores busy on average during the run (the whole process).
    pub cpu_cores: Option<f64>,
}

/// Posts `bodies.len() * WEBHOOKS_PER_ACCOUNT` requests: body `n` to each webhook of its
/// account, signed at send time like the engine does, from `concurrency` workers.
pub async fn run(
    receivers: &Receivers,
    secrets: &[String],
    bodies: Arc<Vec<Bytes>>,
    concurrency: usize,
) -> BenchResult<Ceiling> {
    let urls: Vec<hyper::Uri> = receivers
        .urls()
        .iter()
        .map(|u| {
            u.parse()
                .map_err(|e| BenchError::new(format!("bad receiver URL {u}: {e}")))
        })
        .collect::<BenchResult<_>>()?;
    let urls = Arc::new(urls);
    let secrets = Arc::new(secrets.to_vec());
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    // The engine's pool settings.
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .build(http);
    let total = (bodies.len() * WEBHOOKS_PER_ACCOUNT) as u64;
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    receivers.clear();
    let cpu_before = crate::util::process_cpu_seconds();
    let started = now_ns();
    let mut tasks = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (client, urls, secrets, bodies, next, errors) = (
            client.clone(),
            urls.clone(),
            secrets.clone(),
            bodies.clone(),
            next.clone(),
            errors.clone(),
        );
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return;
                }
                let n = (i / WEBHOOKS_PER_ACCOUNT as u64) as u32;
                let w = account_of(n) * WEBHOOKS_PER_ACCOUNT + (i as usize % WEBHOOKS_PER_ACCOUNT);
                let body = bodies[n as usize].clone();
                let signature = hallway_domain::signature::sign(&secrets[w], unix_seconds(), &body);
                let request = hyper::Request::post(urls[w].clone())
                    .header(CONTENT_TYPE, "application/json")
                    .header(USER_AGENT, hallway_runtime::transport::USER_AGENT_VALUE)
                    .header(hallway_domain::signature::HEADER_NAME, signature)
                    .body(Full::new(body));
                let ok = match request {
                    Ok(request) => match client.request(request).await {
                        Ok(response) => {
                            let success = response.status().is_success();
                            // Read the (empty) body so the connection goes back to the pool.
                            let _ = response.into_body().collect().await;
                            success
                        }
                        Err(_) => false,
                    },
                    Err(_) => false,
                };
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r?;
    }
    let cpu = crate::util::process_cpu_seconds()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    let wall = now_ns().saturating_sub(started) as f64 / 1e9;
    let errors = errors.load(Ordering::Relaxed);
    let arrived = receivers.count();
    let last = receivers
        .take()
        .iter()
        .flatten()
        .map(|(_, at)| *at)
        .max()
        .unwrap_or(started);
    let secs = (last.saturating_sub(started)) as f64 / 1e9;
    let requests = total - errors;
    Ok(Ceiling {
        requests,
        requests_per_sec: if secs > 0.0 {
            arrived as f64 / secs
        } else {
            0.0
        },
        errors,
        cpu_cores: cpu.map(|c| c / wall.max(1e-9)),
    })
}
