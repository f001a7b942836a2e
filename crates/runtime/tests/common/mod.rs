//! Shared test fixtures: the kit's receiver (its `Reply` named `Answer` here), and helpers to
//! open an engine on a temp dir with a manual clock.
#![allow(dead_code, unused_imports)]

use hallway_domain::{AccountId, Plan, Policy, Timestamp, WebhookId};
use hallway_runtime::{Config, Engine, EngineHandle, ManualClock, NewWebhook, TransportConfig};
pub use hallway_testkit::receiver::{Receiver, Reply as Answer};
use std::sync::Arc;

/// The moment every test starts at.
pub const T0: Timestamp = Timestamp(1_768_059_000_000);

/// A policy for tests: private targets allowed (receivers are on loopback), given delays.
pub fn policy(delays_ms: &[u64]) -> Policy {
    Policy {
        retry_delays: delays_ms
            .iter()
            .map(|d| hallway_domain::DurationMs(*d))
            .collect(),
        allow_private_targets: true,
        ..Policy::default()
    }
}

/// A config with a manual clock at [`T0`], trusting `receiver`'s CA.
pub fn config(policy: Policy, clock: &ManualClock, receiver: &Receiver) -> Config {
    Config {
        policy,
        clock: Arc::new(clock.clone()),
        transport_config: TransportConfig {
            extra_roots: receiver.ca.iter().cloned().collect(),
            skip_native_roots: true,
            ..TransportConfig::default()
        },
        ..Config::default()
    }
}

/// Opens an engine, creates a Pro account `acc_1` and a webhook to `url`.
pub async fn engine_with_webhook(
    dir: &std::path::Path,
    config: Config,
    url: &str,
) -> (Engine, EngineHandle, WebhookId, String) {
    let engine = Engine::open(dir, config).await.unwrap();
    let h = engine.handle();
    let (wh, secret) = account_with_webhook(&h, url).await;
    (engine, h, wh, secret)
}

/// Creates a Pro account `acc_1` with a webhook to `url`, subscribed to the spec's event:
/// the webhook's id and its secret.
pub async fn account_with_webhook(h: &EngineHandle, url: &str) -> (WebhookId, String) {
    h.create_account(&AccountId::from("acc_1"), "Acme Research", Plan::Pro)
        .await
        .unwrap();
    let (wh, secret) = h
        .create_webhook(
            &"acc_1".into(),
            NewWebhook {
                name: "Receiver".into(),
                url: url.to_owned(),
                description: None,
                events: vec![hallway_domain::SESSION_PROCESSING_COMPLETED.into()],
                project_ids: vec![],
                signature_scheme: hallway_domain::SignatureScheme::Hallway,
            },
        )
        .await
        .unwrap();
    (wh.id, secret.expose().to_owned())
}

/// A publish body like the spec's example.
pub fn event_body(id: &str) -> Vec<u8> {
    format!(
        r#"{{"type":"session.processing.completed","id":"{id}","project":{{"id":"prj_1","name":"Discovery","status":"active"}},"session":{{"id":"ses_1","respondent_name":"Jane Doe","duration_seconds":342}},"transcript":{{"id":"trx_1","full_text":"Interviewer: Hello","word_count":2}}}}"#
    )
    .into_bytes()
}

/// Polls `f` until it returns `Some` (the kit's `eventually`, up to 10 s of real time).
pub async fn eventually<T, F, Fut>(f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    hallway_testkit::wait::eventually("condition", f).await
}
