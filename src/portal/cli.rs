//! `hallway-webhooks portal-link ACC`: asks the running server for a sign-in link to an
//! account's webhooks page and prints it. Only the server can open the data dir, so this
//! calls its admin API on 127.0.0.1 with the admin token saved in the data dir.

use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::path::PathBuf;
use std::time::Duration;

/// Flags of `portal-link`.
#[derive(Debug, Args)]
pub struct PortalLinkArgs {
    /// The account whose webhooks page the link opens.
    pub account: String,
    /// The running server's data dir; its `admin-token` file is read when no token is given.
    #[arg(long, env = "HALLWAY_DATA_DIR", default_value = "./hallway-data")]
    pub data_dir: PathBuf,
    /// The running server's address (its `--listen`).
    #[arg(long, env = "HALLWAY_LISTEN", default_value = "127.0.0.1:8080")]
    pub server: String,
    /// The admin token (defaults to the one saved in the data dir).
    #[arg(long, env = "HALLWAY_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

/// Percent-encodes a path segment (account ids are the host's and may hold anything).
fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Asks the server for a link and prints it on stdout (its expiry on stderr).
pub async fn portal_link(args: PortalLinkArgs) -> Result<(), String> {
    let token = match &args.admin_token {
        Some(t) => t.clone(),
        None => {
            let path = args.data_dir.join("admin-token");
            std::fs::read_to_string(&path)
                .map(|t| t.trim().to_owned())
                .map_err(|e| {
                    format!(
                        "cannot read the admin token from {}: {e} (pass --admin-token)",
                        path.display()
                    )
                })?
        }
    };
    let uri = format!(
        "http://{}/v1/accounts/{}/portal-sessions",
        args.server,
        path_segment(&args.account)
    );
    let req = hyper::Request::post(&uri)
        .header(hyper::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(b"{}")))
        .map_err(|e| format!("{uri}: {e}"))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .map_err(|_| format!("{uri}: no answer within 10 s"))?
        .map_err(|e| {
            format!(
                "cannot reach the server at {} (is `hallway-webhooks serve` running?): {e}",
                args.server
            )
        })?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{uri}: {e}"))?
        .to_bytes();
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if status != hyper::StatusCode::CREATED {
        let message = value["error"]["message"]
            .as_str()
            .unwrap_or("no error message");
        return Err(format!("the server answered {status}: {message}"));
    }
    let url = value["url"]
        .as_str()
        .ok_or_else(|| "the server's answer has no url".to_owned())?;
    println!("{url}");
    eprintln!(
        "Opens the webhooks page of {} once; expires at {}.",
        args.account,
        value["expires_at"].as_str().unwrap_or("?")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_are_encoded_as_one_segment() {
        assert_eq!(path_segment("acc_abc-123"), "acc_abc-123");
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
    }
}
