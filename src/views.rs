//! The JSON shapes of the HTTP API (accounts, webhooks, deliveries), exactly as the contract
//! names their fields.

use hallway_domain::{Account, Timestamp, Webhook};
use hallway_store::{DeliveryRecord, DeliveryStatus};
use serde_json::{json, Value};

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
        "attempts": d.attempts.iter().map(|a| json!({
            "attempt": a.attempt,
            "started_at": ts(a.started_at),
            "duration_ms": a.duration_ms,
            "status_code": a.status_code,
            "error": a.error.map(|e| e.as_str()),
        })).collect::<Vec<_>>(),
    })
}
