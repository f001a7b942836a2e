//! hallway-webhooks: a webhook delivery engine, event-sourced on an embedded database.
//!
//! Embed it in a host binary without the HTTP layer:
//!
//! ```no_run
//! use hallway_webhooks::{AccountId, Config, Engine, NewWebhook, Plan, SignatureScheme};
//!
//! # async fn demo() -> Result<(), hallway_webhooks::EngineError> {
//! let engine = Engine::open("./hallway-data", Config::default()).await?;
//! let h = engine.handle();
//! let (account, _api_key) = h
//!     .create_account(&AccountId::from("acc_1"), "Acme Research", Plan::Pro)
//!     .await?;
//! let (webhook, secret) = h
//!     .create_webhook(&account.id, NewWebhook {
//!         name: "Slack".into(),
//!         url: "https://hooks.example.com/hallway".into(),
//!         description: None,
//!         events: vec!["session.processing.completed".into()],
//!         project_ids: vec![],
//!         signature_scheme: SignatureScheme::Hallway,
//!     })
//!     .await?;
//! let receipt = h
//!     .publish(&account.id, br#"{"type":"session.processing.completed","project":{"id":"prj_1"}}"#)
//!     .await?;
//! let history = h.deliveries(&account.id, &webhook.id, 50, None).await?;
//! # let _ = (secret, receipt, history);
//! engine.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! Or run it as a server: `hallway-webhooks serve` (its HTTP API and command line are the
//! binary's, not part of this library).
#![deny(missing_docs)]

pub use hallway_domain::{
    signature, Account, AccountChanges, AccountId, AttemptError, DeliveryId, DisabledReason,
    DurationMs, EventId, Outcome, Plan, Policy, PreviousSecret, ProjectId, Rejection,
    RejectionKind, SignatureScheme, Timestamp, Webhook, WebhookChanges, WebhookConfig, WebhookId,
};
pub use hallway_runtime::{
    Clock, Config, ConfigBuilder, Engine, EngineError, EngineHandle, HttpsTransport, ManualClock,
    MasterKey, MetricsSnapshot, NewWebhook, OutgoingRequest, PublishReceipt, Secret, Sent,
    SystemClock, Transport, TransportConfig,
};
pub use hallway_store::{
    AttemptRecord, DeliveryFilter, DeliveryRecord, DeliveryStatus, Page, StoreError,
};
