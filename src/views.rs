//! The JSON shapes of the HTTP API (accounts, webhooks, deliveries), exactly as the contract
//! names their fields.

use hallway_domain::{Account, AttemptError, Timestamp, Webhook};
use hallway_store::{AttemptRecord, DeliveryRecord, DeliveryStatus};
use serde_json::{json, Map, Value};

fn ts(t: Timestamp) -> Value {
    Value::String(t.to_rfc3339())
}

/// `{"id","name","plan","created_at"}`.
pub fn account(a: &Account) -> Value {
    json!({
        "id": a.id.as_str(),
        "name": a.name,
        "plan": a.plan.as_str(),
        "created_at": ts(a.created_at),
    })
}

/// A webhook, never with its secret.
pub fn webhook(w: &Webhook) -> Value {
    json!({
        "id": w.id.as_str(),
        "account_id": w.account_id.as_str(),
        "name": w.config.name,
        "url": w.config.url,
        "description": w.config.description,
        "events": w.config.events,
        "project_ids": w.config.project_ids.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
        "enabled": w.enabled,
        "disabled_reason": w.disabled_reason.map(|r| r.as_str()),
        "consecutive_failures": w.consecutive_failures,
        "signature_scheme": w.config.signature_scheme.as_str(),
        "created_at": ts(w.created_at),
        "updated_at": ts(w.updated_at),
    })
}

/// A delivery with every attempt.
pub fn delivery(d: &DeliveryRecord) -> Value {
    let status = match d.status {
        DeliveryStatus::Pending => "pending",
        DeliveryStatus::Succeeded => "succeeded",
        DeliveryStatus::Failed => "failed",
        DeliveryStatus::Cancelled => "cancelled",
        DeliveryStatus::Paused => "paused",
    };
    json!({
        "id": d.id.as_str(),
        "webhook_id": d.webhook_id.as_str(),
        "event_id": d.event_id.as_str(),
        "event_type": d.event_type,
        "test": d.test,
        "status": status,
        "created_at": ts(d.created_at),
        "next_attempt_at": d.next_attempt_at.map(ts),
        "attempts": d.attempts.iter().map(attempt).collect::<Vec<_>>(),
    })
}

/// One attempt: its outcome, the failure in words, the request's headers as sent, and the
/// response's headers and first bytes (`null` where nothing is known: no response came, or
/// the attempt was never reported).
fn attempt(a: &AttemptRecord) -> Value {
    let detail = a.detail.as_deref();
    let answered = a.status_code.is_some() && detail.is_some();
    json!({
        "attempt": a.attempt,
        "started_at": ts(a.started_at),
        "duration_ms": a.duration_ms,
        "status_code": a.status_code,
        "error": a.error.map(|e| e.as_str()),
        "error_message": error_words(a),
        "request_headers": detail
            .filter(|d| !d.request_headers.is_empty())
            .map(|d| header_object(&d.request_headers)),
        "response_headers": detail.filter(|_| answered).map(|d| header_object(&d.response_headers)),
        "response_body": detail.filter(|_| answered).map(|d| d.response_body.as_str()),
        "response_body_truncated": detail.is_some_and(|d| answered && d.response_body_truncated),
    })
}

/// Headers as a JSON object; a repeated name's values joined with ", " (as HTTP allows).
fn header_object(headers: &[(String, String)]) -> Value {
    let mut out = Map::new();
    for (name, value) in headers {
        match out.get_mut(name) {
            Some(Value::String(joined)) => {
                joined.push_str(", ");
                joined.push_str(value);
            }
            _ => {
                out.insert(name.clone(), Value::String(value.clone()));
            }
        }
    }
    Value::Object(out)
}

/// Why an attempt failed, in words: what the sender saw, or what its class and status say.
pub fn error_words(a: &AttemptRecord) -> Option<String> {
    let error = a.error?;
    if let Some(message) = a.detail.as_deref().and_then(|d| d.error_message.clone()) {
        return Some(message);
    }
    let answered = |code: u16| {
        let reason = axum::http::StatusCode::from_u16(code)
            .ok()
            .and_then(|s| s.canonical_reason())
            .map(|r| format!(" {r}"))
            .unwrap_or_default();
        format!("HTTP {code}{reason}")
    };
    Some(match (error, a.status_code) {
        (AttemptError::HttpStatus, Some(code)) => {
            format!("the endpoint answered {}", answered(code))
        }
        (AttemptError::Timeout, Some(code)) => format!(
            "the endpoint answered {} after {} ms, past the attempt timeout",
            answered(code),
            a.duration_ms
        ),
        (AttemptError::Timeout, None) => {
            "no outcome was reported by the attempt's deadline".to_owned()
        }
        (AttemptError::HttpStatus, None) => "the endpoint's answer was not 2xx".to_owned(),
        (AttemptError::Connect, _) => "could not connect to the endpoint".to_owned(),
        (AttemptError::Tls, _) => "the TLS handshake failed".to_owned(),
        (AttemptError::BlockedTarget, _) => "the target is a refused address".to_owned(),
        (AttemptError::InvalidResponse, _) => "the answer was not valid HTTP".to_owned(),
    })
}
