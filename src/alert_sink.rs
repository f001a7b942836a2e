//! Sends the engine's alerts to a host URL, signed like deliveries, in order, at least once.
//!
//! How far it got is a file in the data directory (the last alert id answered with a 2xx),
//! written after each success: a crash between the answer and the write sends that alert
//! again, with the same id, which the host deduplicates.

use hallway_domain::{signature, Outcome};
use hallway_runtime::{AlertCursor, AlertRecord, EngineHandle, OutgoingRequest, Transport};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Where to send alerts and how.
pub struct AlertSink {
    /// The host's endpoint.
    pub url: String,
    /// The secret alerts are signed with (`X-Hallway-Signature`, the deliveries' scheme).
    pub secret: String,
    /// The file holding the last alert id delivered.
    pub cursor_file: PathBuf,
    /// How requests leave.
    pub transport: Arc<dyn Transport>,
    /// How long one request may take.
    pub timeout: Duration,
}

/// The JSON body of an alert, as the host receives it.
pub fn alert_body(a: &AlertRecord) -> serde_json::Value {
    json!({
        "id": a.cursor.id(),
        "type": a.alert.kind.as_str(),
        "created_at": a.at.to_rfc3339(),
        "data": {
            "account_id": a.alert.account_id.as_str(),
            "webhook_id": a.alert.webhook_id.as_str(),
            "reason": a.alert.reason.map(|r| r.as_str()),
            "last_error": a.alert.last_error.map(|e| e.as_str()),
            "consecutive_failures": a.alert.consecutive_failures,
        },
    })
}

fn read_cursor(path: &Path) -> Result<Option<AlertCursor>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => AlertCursor::parse(text.trim())
            .map(Some)
            .ok_or_else(|| format!("{}: not an alert id", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn write_cursor(path: &Path, cursor: AlertCursor) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, cursor.id())?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)
}

impl AlertSink {
    /// Reads the cursor and holds the log from it; call before serving, so no snapshot
    /// truncates an alert not yet sent.
    pub fn start(self, engine: EngineHandle) -> Result<tokio::task::JoinHandle<()>, String> {
        let cursor = read_cursor(&self.cursor_file)?;
        engine.hold_alerts(cursor);
        Ok(tokio::spawn(self.run(engine, cursor)))
    }

    async fn run(self, engine: EngineHandle, mut cursor: Option<AlertCursor>) {
        let mut alerts = engine.alerts(cursor);
        loop {
            let a = match alerts.try_recv() {
                Some(a) => a,
                None => {
                    // Nothing in hand: everything through `through` was sent, so an idle
                    // sender does not keep the log from being truncated.
                    let through = alerts.caught_up_through();
                    let a = match alerts.try_recv() {
                        Some(a) => a,
                        None => {
                            // Recorded like a sent alert, so a restart reads on from there.
                            let idle = AlertCursor::end_of(through);
                            if through > 0 && cursor.is_none_or(|c| idle > c) {
                                self.record(&engine, idle);
                                cursor = Some(idle);
                            }
                            match tokio::time::timeout(Duration::from_secs(1), alerts.recv()).await
                            {
                                Ok(Some(a)) => a,
                                Ok(None) => return,
                                Err(_) => continue,
                            }
                        }
                    };
                    a
                }
            };
            let body = bytes::Bytes::from(alert_body(&a).to_string());
            let mut backoff = Duration::from_millis(200);
            loop {
                let t = engine.now().as_unix_seconds();
                let request = OutgoingRequest {
                    url: self.url.clone(),
                    body: body.clone(),
                    headers: vec![(
                        signature::HEADER_NAME,
                        signature::sign(&self.secret, t, &body),
                    )],
                };
                match self.transport.send(request, self.timeout).await.outcome {
                    Outcome::Response { status, .. } if (200..300).contains(&status) => break,
                    outcome => {
                        tracing::warn!(alert = %a.cursor.id(), ?outcome, "alert not accepted; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(60));
                    }
                }
            }
            self.record(&engine, a.cursor);
            cursor = Some(a.cursor);
        }
    }

    /// Records that everything up to `cursor` was sent, and lets the log before it go.
    fn record(&self, engine: &EngineHandle, cursor: AlertCursor) {
        if let Err(e) = write_cursor(&self.cursor_file, cursor) {
            tracing::error!(error = %e, "cannot record the alert cursor; alerts may be sent again");
        }
        engine.hold_alerts(Some(cursor));
    }
}
