//! `hallway-webhooks listen`: a local receiver for developing an endpoint. It verifies each
//! delivery's signature (either scheme), prints one line per request, and answers 200
//! (valid) or 400.

use crate::check::Signed;
use crate::check::{reason, require_secret};
use crate::cli::ListenArgs;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::time::{SystemTime, UNIX_EPOCH};

/// Largest body the listener reads.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// The one-line summary of a delivery: event id, type, and valid or why not. `headers` are
/// the request's (name, value), the signature's among them.
pub fn summarize(
    secret: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    now_s: u64,
    tolerance_s: u64,
) -> (bool, String) {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let field = |k: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(k))
            .and_then(|v| v.as_str())
            .unwrap_or("-")
            .to_owned()
    };
    let test = parsed
        .as_ref()
        .and_then(|v| v.get("_test"))
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let verdict = Signed::find(headers).and_then(|signed| {
        signed
            .verify(secret, body, now_s, tolerance_s)
            .map_err(|e| reason(&e))
    });
    let valid = verdict.is_ok();
    let line = format!(
        "{} {}{} {}",
        field("id"),
        field("type"),
        if test { " (test)" } else { "" },
        match verdict {
            Ok(()) => "valid".to_owned(),
            Err(why) => format!("invalid: {why}"),
        }
    );
    (valid, line)
}

/// The `--verbose` detail of a request: its headers, one a line, then a blank line and the
/// body, pretty-printed when it is JSON.
pub fn details(headers: &hyper::HeaderMap, body: &[u8]) -> String {
    let mut out = String::new();
    for (name, value) in headers {
        out.push_str("  ");
        out.push_str(name.as_str());
        out.push_str(": ");
        out.push_str(&String::from_utf8_lossy(value.as_bytes()));
        out.push('\n');
    }
    out.push('\n');
    let pretty = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok());
    let text = pretty.unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    for line in text.lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Runs the listener until interrupted.
pub async fn listen(args: ListenArgs) -> Result<(), String> {
    let secret = require_secret(args.secret.as_deref())?.to_owned();
    let verbose = args.verbose;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", args.port))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on http://{addr}");
    loop {
        let (tcp, _) = tokio::select! {
            r = listener.accept() => r.map_err(|e| e.to_string())?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let secret = secret.clone();
        let tolerance = args.tolerance_secs;
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let secret = secret.clone();
                async move {
                    let headers = req.headers().clone();
                    let body = match Limited::new(req.into_body(), MAX_BODY_BYTES)
                        .collect()
                        .await
                    {
                        Ok(b) => b.to_bytes(),
                        Err(_) => Bytes::new(),
                    };
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0);
                    let pairs: Vec<(&str, &str)> = headers
                        .iter()
                        .filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?)))
                        .collect();
                    let (valid, line) = summarize(&secret, &pairs, &body, now, tolerance);
                    if verbose {
                        // One write, so concurrent requests do not interleave their lines.
                        println!("{line}\n{}", details(&headers, &body));
                    } else {
                        println!("{line}");
                    }
                    let status = if valid {
                        StatusCode::OK
                    } else {
                        StatusCode::BAD_REQUEST
                    };
                    let mut resp = Response::new(Full::new(Bytes::from(line)));
                    *resp.status_mut() = status;
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}
