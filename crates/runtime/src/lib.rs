//! The running engine: one actor task owns the domain state and the store, decides commands
//! in batches, commits each batch with one durable flush, answers callers, and hands due
//! attempts to the dispatcher, which signs and sends them through a [`Transport`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), hallway_runtime::EngineError> {
//! use hallway_runtime::{Config, Engine};
//! let engine = Engine::open("./hallway-data", Config::default()).await?;
//! let handle = engine.handle();
//! // handle.create_account(..), handle.create_webhook(..), handle.publish(..)
//! engine.shutdown().await?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod accounts;
mod actor;
pub mod alerts;
#[cfg(feature = "mimalloc")]
pub mod alloc;
mod bodies;
pub mod budget;
pub mod clock;
mod config;
pub mod ids;
mod limiter;
pub mod metrics;
mod publish;
mod published_filter;
mod resend;
pub mod secrets;
mod store_calls;
pub mod transport;

pub use alerts::{AlertCursor, AlertRecord, AlertStream};
pub use budget::Budget;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{Config, ConfigBuilder, DEFAULT_MEMORY_BUDGET_BYTES, MIN_MEMORY_BUDGET_BYTES};
pub use ids::{OsRandom, RandomSource};
pub use metrics::{Metrics, MetricsSnapshot};
pub use resend::DEFAULT_MAX_RECOVER;
pub use secrets::{MasterKey, Secret};
pub use transport::{HttpsTransport, OutgoingRequest, Sent, Transport, TransportConfig};

use actor::{Actor, Msg, Reply};
use hallway_domain::Policy;
use hallway_domain::{
    AccountId, CommandKind, DeliveryId, DurationMs, Event, EventId, Rejection, SignatureScheme,
    State, Timestamp, Webhook, WebhookChanges, WebhookConfig, WebhookId,
};
use hallway_store::{DeliveryFilter, DeliveryRecord, EventStore, Page, SledStore, StoreOptions};
use limiter::ManualLimiter;
use published_filter::PublishedFilter;
use secrets::{Sealing, SecretBox};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Why an engine call failed. Cloned to every caller of a failed batch, so sources are shared.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The domain refused the command; nothing changed.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The store failed; the engine stops rather than run ahead of its log.
    #[error("storage failure: {0}")]
    Storage(#[source] Arc<hallway_store::StoreError>),
    /// A task of the engine's ended abnormally (a panic, or the runtime shutting down).
    #[error("an engine task failed: {0}")]
    Task(#[source] Arc<tokio::task::JoinError>),
    /// The engine is shut down (or stopped after a storage failure).
    #[error("the engine is shut down")]
    Closed,
    /// The configuration cannot be used.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Too many manual actions (retries, test sends) for this account; try again later.
    #[error("too many retries and test sends for this account; try again in {retry_after_secs} s")]
    RateLimited {
        /// Seconds until the next action is allowed.
        retry_after_secs: u64,
    },
}

impl From<hallway_store::StoreError> for EngineError {
    fn from(e: hallway_store::StoreError) -> Self {
        EngineError::Storage(Arc::new(e))
    }
}

impl From<tokio::task::JoinError> for EngineError {
    fn from(e: tokio::task::JoinError) -> Self {
        EngineError::Task(Arc::new(e))
    }
}

/// What a publish answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishReceipt {
    /// The event's id (the host's, or a fresh one).
    pub event_id: EventId,
    /// Deliveries scheduled (by the first publish, for a repeat).
    pub deliveries: u32,
    /// `true` when this id was published before and nothing was scheduled now.
    pub duplicate: bool,
}

/// A running engine. Dropping it without [`Engine::shutdown`] is like a crash: nothing
/// acknowledged is lost, and open attempts are sent again on the next open.
pub struct Engine {
    handle: EngineHandle,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// A cheap, cloneable handle to call the engine from anywhere.
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Msg>,
    store: Arc<dyn EventStore>,
    metrics: Arc<Metrics>,
    policy: Arc<Policy>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn RandomSource>,
    secrets: Arc<SecretBox>,
    manual: Arc<ManualLimiter>,
    /// Held by a recover (and a manual retry) from reading history to deciding: no other
    /// command makes a finished delivery pending in between, so what it read is still true.
    resend: Arc<tokio::sync::Mutex<()>>,
    max_recover: usize,
    alerts: alerts::AlertHub,
    catalog: Arc<hallway_domain::Catalog>,
    /// Ids the store may know; a publish whose id it has never seen skips the store read.
    published_filter: Arc<PublishedFilter>,
    /// How many times memory has forgotten ids (a store read made before the latest one is
    /// made again when its publish is decided).
    expiries: actor::Expiries,
}

impl Engine {
    /// Opens (or creates) the engine's data directory, rebuilds the state from the latest
    /// snapshot and the log after it, and resumes every pending delivery.
    pub async fn open(dir: impl AsRef<Path>, mut config: Config) -> Result<Engine, EngineError> {
        let dir = dir.as_ref().to_owned();
        if config.master_key.is_none() {
            std::fs::create_dir_all(&dir)
                .map_err(|e| EngineError::Config(format!("{}: {e}", dir.display())))?;
            config.master_key = Some(MasterKey::load_or_create(&dir.join("master.key"))?);
        }
        let budget = Budget::new(config.memory_budget_bytes);
        let options = StoreOptions {
            cache_capacity_bytes: budget.store_cache_bytes(),
            bucket_cache_records: budget.bucket_cache_records(),
            ..StoreOptions::default()
        };
        let store = tokio::task::spawn_blocking(move || SledStore::open_with(&dir, &options))
            .await
            .map_err(EngineError::from)??;
        Self::with_store(Arc::new(store), config).await
    }

    /// Starts the engine over any store.
    pub async fn with_store(
        store: Arc<dyn EventStore>,
        config: Config,
    ) -> Result<Engine, EngineError> {
        config.validate()?;
        let master_key = config.master_key.clone().ok_or_else(|| {
            EngineError::Config("a master key is needed to seal webhook secrets".into())
        })?;
        let secrets = Arc::new(SecretBox::new(
            &master_key,
            &config.previous_master_keys,
            config.random.clone(),
        ));
        let transport: Arc<dyn Transport> = match &config.transport {
            Some(t) => t.clone(),
            None => {
                let mut tc = config.transport_config.clone();
                tc.allow_private_targets = config.policy.allow_private_targets;
                Arc::new(HttpsTransport::new(tc).map_err(|e| EngineError::Config(e.to_string()))?)
            }
        };
        let policy = config.policy.clone();
        let loader = store.clone();
        let (state, last_seq) = store_calls::spawn(&*store, move || load_state(&*loader, policy))
            .await
            .map_err(EngineError::from)??;
        let reseal = stale_secrets(&state, &secrets)?;
        let (tx, rx) = mpsc::channel(config.command_queue);
        let metrics = Arc::new(Metrics::default());
        let handle = EngineHandle {
            tx,
            store: store.clone(),
            metrics: metrics.clone(),
            policy: Arc::new(config.policy.clone()),
            clock: config.clock.clone(),
            random: config.random.clone(),
            secrets: secrets.clone(),
            manual: Arc::new(ManualLimiter::new(config.manual_actions_per_minute)),
            resend: Arc::new(tokio::sync::Mutex::new(())),
            max_recover: config.max_recover,
            alerts: alerts::AlertHub::new(),
            catalog: config.catalog.clone(),
            published_filter: Arc::new(PublishedFilter::new(
                Budget::new(config.memory_budget_bytes).published_filter_bytes(),
                config.policy.retention,
            )),
            expiries: actor::Expiries::default(),
        };
        published_filter::fill(&store, &handle.published_filter, config.clock.clone());
        let mut actor = Actor::new(
            state,
            last_seq,
            store,
            transport,
            secrets,
            rx,
            config,
            metrics,
            handle.alerts.clone(),
            handle.expiries.clone(),
        );
        actor.resume(reseal).await?;
        let task = tokio::spawn(actor.run());
        Ok(Engine {
            handle,
            task: Some(task),
        })
    }

    /// A handle for calls.
    pub fn handle(&self) -> EngineHandle {
        self.handle.clone()
    }

    /// Stops taking commands, waits for attempts under way (up to the configured grace),
    /// snapshots and flushes.
    pub async fn shutdown(mut self) -> Result<(), EngineError> {
        let (done, rx) = oneshot::channel();
        if self.handle.tx.send(Msg::Shutdown { done }).await.is_err() {
            return Err(EngineError::Closed);
        }
        let result = rx.await.unwrap_or(Err(EngineError::Closed));
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        result
    }
}

/// A webhook whose secrets were sealed under an earlier key (or not at all): both in plain
/// text, to seal again under the current key.
pub(crate) struct Reseal {
    pub(crate) account_id: AccountId,
    pub(crate) webhook_id: WebhookId,
    pub(crate) current: String,
    pub(crate) previous: Option<String>,
}

/// Checks that every stored secret opens, and lists the webhooks to reseal under the current
/// key.
fn stale_secrets(state: &State, secrets: &SecretBox) -> Result<Vec<Reseal>, EngineError> {
    let unopened = |w: &Webhook| {
        EngineError::Config(format!(
            "the master key does not open the secret of webhook {}; start with the key this data directory was created with",
            w.id
        ))
    };
    let mut stale = Vec::new();
    for account in state.accounts() {
        for w in state.webhooks_of(&account.id) {
            let (current, current_sealing) = secrets.open(&w.secret).ok_or_else(|| unopened(w))?;
            let previous = match &w.previous_secret {
                Some(p) => Some(secrets.open(&p.secret).ok_or_else(|| unopened(w))?),
                None => None,
            };
            let stale_previous = previous
                .as_ref()
                .is_some_and(|(_, sealing)| *sealing == Sealing::Stale);
            if current_sealing == Sealing::Stale || stale_previous {
                stale.push(Reseal {
                    account_id: account.id.clone(),
                    webhook_id: w.id.clone(),
                    current,
                    previous: previous.map(|(plain, _)| plain),
                });
            }
        }
    }
    Ok(stale)
}

/// Loads the snapshot and replays the log after it.
fn load_state(store: &dyn EventStore, policy: Policy) -> Result<(State, u64), EngineError> {
    let (mut state, mut last) = match store.load_snapshot()? {
        Some((seq, snapshot)) => (snapshot.with_policy(policy), seq),
        None => (State::new(policy), 0),
    };
    for record in store.replay_log(last + 1) {
        let (seq, events) = record?;
        for e in &events {
            state.apply(e);
        }
        last = seq;
    }
    Ok((state, last))
}

/// Input for creating a webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewWebhook {
    /// A friendly name.
    pub name: String,
    /// The HTTPS endpoint.
    pub url: String,
    /// Optional notes.
    pub description: Option<String>,
    /// Event types to subscribe to.
    pub events: Vec<String>,
    /// Projects to fire for; empty means all.
    pub project_ids: Vec<String>,
    /// How its deliveries are signed.
    pub signature_scheme: SignatureScheme,
}

impl EngineHandle {
    async fn send(&self, msg: Msg) -> Result<(), EngineError> {
        self.tx.send(msg).await.map_err(|_| EngineError::Closed)
    }

    /// Runs a command; `f` builds the answer from its events and the state after the batch
    /// is durable.
    async fn exec<T: Send + 'static>(
        &self,
        kind: CommandKind,
        f: impl FnOnce(&[Event], &State) -> T + Send + 'static,
    ) -> Result<T, EngineError> {
        self.exec_after_read(kind, None, f).await
    }

    /// [`Self::exec`] for a publish that read the store for its id at expiry count `read`.
    async fn exec_after_read<T: Send + 'static>(
        &self,
        kind: CommandKind,
        read: Option<u64>,
        f: impl FnOnce(&[Event], &State) -> T + Send + 'static,
    ) -> Result<T, EngineError> {
        let (tx, rx) = oneshot::channel();
        let reply: Reply = Box::new(move |res, state| {
            let _ = tx.send(res.map(|events| f(events, state)));
        });
        self.send(Msg::Exec { kind, reply, read }).await?;
        rx.await.map_err(|_| EngineError::Closed)?
    }

    /// Reads the state (after the current batch commits).
    async fn query<T: Send + 'static>(
        &self,
        f: impl FnOnce(&State) -> T + Send + 'static,
    ) -> Result<T, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.send(Msg::Query(Box::new(move |state| {
            let _ = tx.send(f(state));
        })))
        .await?;
        rx.await.map_err(|_| EngineError::Closed)
    }

    /// Runs `f` with the state and the sequence of the last log record, at the next moment the
    /// state is exactly what the log holds (nothing decided that is not logged yet). For
    /// simulations and tests that compare the running state with a replay of the log.
    pub async fn inspect_logged<T: Send + 'static>(
        &self,
        f: impl FnOnce(&State, u64) -> T + Send + 'static,
    ) -> Result<T, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.send(Msg::Logged(Box::new(move |state, seq| {
            let _ = tx.send(f(state, seq));
        })))
        .await?;
        rx.await.map_err(|_| EngineError::Closed)
    }

    /// Whether the engine still takes commands (false after shutdown or a storage failure).
    pub fn is_running(&self) -> bool {
        !self.tx.is_closed()
    }

    /// The counters.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }

    /// The live metrics, to encode for a scrape or to record what the host measures.
    pub fn live_metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The policy the engine runs with.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The event types, with their descriptions and examples.
    pub fn catalog(&self) -> &hallway_domain::Catalog {
        &self.catalog
    }

    /// Registers a webhook; returns it with its signing secret, shown only this once.
    pub async fn create_webhook(
        &self,
        account: &AccountId,
        input: NewWebhook,
    ) -> Result<(Webhook, Secret), EngineError> {
        let webhook_id = WebhookId::from(ids::webhook_id(&*self.random));
        let secret = Secret::new(ids::secret(&*self.random));
        let lookup = webhook_id.clone();
        let webhook = self
            .exec(
                CommandKind::CreateWebhook {
                    account_id: account.clone(),
                    webhook_id,
                    secret: self.secrets.seal(secret.expose()),
                    config: WebhookConfig {
                        name: input.name,
                        url: input.url,
                        description: input.description,
                        events: input.events,
                        project_ids: input.project_ids.into_iter().map(Into::into).collect(),
                        signature_scheme: input.signature_scheme,
                    },
                },
                move |_, s| s.webhook(&lookup).cloned(),
            )
            .await?
            .ok_or(EngineError::Closed)?;
        Ok((webhook, secret))
    }

    /// An account's webhooks, oldest first.
    pub async fn list_webhooks(&self, account: &AccountId) -> Result<Vec<Webhook>, EngineError> {
        let lookup = account.clone();
        self.query(move |s| {
            s.account(&lookup)
                .map(|_| s.webhooks_of(&lookup).into_iter().cloned().collect())
        })
        .await?
        .ok_or_else(|| Rejection::AccountNotFound(account.clone()).into())
    }

    /// One webhook of an account.
    pub async fn webhook(
        &self,
        account: &AccountId,
        webhook: &WebhookId,
    ) -> Result<Webhook, EngineError> {
        let (a, w) = (account.clone(), webhook.clone());
        self.query(move |s| find_webhook(s, &a, &w)).await?
    }

    /// Changes a webhook; `enabled: Some(true)` re-enables and resets its failure counter.
    pub async fn update_webhook(
        &self,
        account: &AccountId,
        webhook: &WebhookId,
        changes: WebhookChanges,
    ) -> Result<Webhook, EngineError> {
        let (a, w) = (account.clone(), webhook.clone());
        self.exec(
            CommandKind::UpdateWebhook {
                account_id: account.clone(),
                webhook_id: webhook.clone(),
                changes,
            },
            move |_, s| find_webhook(s, &a, &w),
        )
        .await?
    }

    /// Deletes a webhook for good.
    pub async fn delete_webhook(
        &self,
        account: &AccountId,
        webhook: &WebhookId,
    ) -> Result<(), EngineError> {
        self.exec(
            CommandKind::DeleteWebhook {
                account_id: account.clone(),
                webhook_id: webhook.clone(),
            },
            |_, _| (),
        )
        .await
    }

    /// Replaces a webhook's secret and returns the new one, shown only this once; the old
    /// one signs nothing from then on.
    pub async fn rotate_secret(
        &self,
        account: &AccountId,
        webhook: &WebhookId,
    ) -> Result<Secret, EngineError> {
        Ok(self
            .rotate_secret_with_grace(account, webhook, None)
            .await?
            .0)
    }

    /// Replaces a webhook's secret and returns the new one, shown only this once. With a
    /// `grace` (at most [`hallway_domain::MAX_SECRET_GRACE`]) the old secret goes on signing
    /// every attempt too, after the new one, until the returned time.
    pub async fn rotate_secret_with_grace(
        &self,
        account: &AccountId,
        webhook: &WebhookId,
        grace: Option<DurationMs>,
    ) -> Result<(Secret, Option<Timestamp>), EngineError> {
        let secret = Secret::new(ids::secret(&*self.random));
        let until = self
            .exec(
                CommandKind::RotateSecret {
                    account_id: account.clone(),
                    webhook_id: webhook.clone(),
                    secret: self.secrets.seal(secret.expose()),
                    grace,
                },
                |events, _| {
                    events.iter().find_map(|e| match e {
                        Event::SecretRotated { previous, .. } => previous.as_ref().map(|p| p.until),
                        _ => None,
                    })
                },
            )
            .await?;
        Ok((secret, until))
    }

    /// A webhook's deliveries, newest first.
    pub async fn deliveries(
        &self,
        account: &AccountId,
        webhook: &WebhookId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, EngineError> {
        self.deliveries_where(account, webhook, &DeliveryFilter::default(), limit, cursor)
            .await
    }

    /// A webhook's deliveries that pass `filter`, newest first. A page may stop early, with
    /// fewer than `limit` (even none) and a `next_cursor`, after examining many deliveries that
    /// do not pass; `next_cursor` is `None` only when nothing further passes.
    pub async fn deliveries_where(
        &self,
        account: &AccountId,
        webhook: &WebhookId,
        filter: &DeliveryFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, EngineError> {
        self.webhook(account, webhook).await?;
        self.store
            .deliveries_where(webhook, filter, limit, cursor)
            .map_err(|e| match e {
                // A cursor this list did not hand out is the caller's mistake.
                hallway_store::StoreError::Invalid(_) => {
                    Rejection::InvalidRequest("cursor: not a next_cursor of this list".into())
                        .into()
                }
                e => e.into(),
            })
    }

    /// One delivery with all its attempts.
    pub async fn delivery(
        &self,
        account: &AccountId,
        webhook: &WebhookId,
        delivery: &DeliveryId,
    ) -> Result<DeliveryRecord, EngineError> {
        self.webhook(account, webhook).await?;
        self.store
            .delivery(webhook, delivery)?
            .filter(|d| &d.account_id == account)
            .ok_or_else(|| Rejection::DeliveryNotFound(delivery.clone()).into())
    }

    /// Counts one manual action of `account` against its rate.
    fn take_manual(&self, account: &AccountId) -> Result<(), EngineError> {
        self.manual
            .take(account, self.now())
            .map_err(|retry_after_secs| EngineError::RateLimited { retry_after_secs })
    }

    /// The exact body sent for one of an account's events (every attempt of its deliveries
    /// sends these bytes), until retention removes it.
    pub async fn event_body(
        &self,
        account: &AccountId,
        event: &EventId,
    ) -> Result<Option<Arc<str>>, EngineError> {
        Ok(self.store.payload(account, event)?)
    }

    /// The time now, by the engine's clock.
    pub fn now(&self) -> hallway_domain::Timestamp {
        self.clock.now()
    }
}

fn find_webhook(
    s: &State,
    account: &AccountId,
    webhook: &WebhookId,
) -> Result<Webhook, EngineError> {
    if s.account(account).is_none() {
        return Err(Rejection::AccountNotFound(account.clone()).into());
    }
    s.webhook_of(account, webhook)
        .cloned()
        .ok_or_else(|| Rejection::WebhookNotFound(webhook.clone()).into())
}

impl Drop for Engine {
    /// Stops the actor at once, as a crash would; what was acknowledged is in the log.
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
