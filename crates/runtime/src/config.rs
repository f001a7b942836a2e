//! How the engine runs: every knob in one value, checked as a whole before the engine starts,
//! so that no field is silently overridden or ignored.

use crate::clock::{Clock, SystemClock};
use crate::ids::{OsRandom, RandomSource};
use crate::secrets::MasterKey;
use crate::transport::{Transport, TransportConfig};
use crate::EngineError;
use hallway_domain::{Catalog, DurationMs, Policy};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// How the engine runs. `Config::default()` is production: the spec's policy, the system
/// clock, the HTTPS transport. Build one with [`Config::builder`], or as a struct literal
/// over `Config::default()`; either way [`Config::validate`] runs before the engine starts.
#[derive(Clone)]
pub struct Config {
    /// The rules' numbers. Its `allow_private_targets` is also the default transport's.
    pub policy: Policy,
    /// Attempts under way at once, across all webhooks.
    pub max_in_flight: usize,
    /// Options of the default transport; must stay at its default when `transport` is set.
    pub transport_config: TransportConfig,
    /// A transport to use instead of the default HTTPS client.
    pub transport: Option<Arc<dyn Transport>>,
    /// Where time comes from.
    pub clock: Arc<dyn Clock>,
    /// Where fresh ids, secrets, API keys and sealing nonces come from (the operating
    /// system's secure source by default; a seeded one makes a simulation replay exactly).
    pub random: Arc<dyn RandomSource>,
    /// Events logged between snapshots (the log before a snapshot is truncated).
    pub snapshot_every_events: u64,
    /// How often retention runs (old deliveries, payloads and idempotency keys removed).
    pub maintenance_interval: DurationMs,
    /// How long `shutdown` waits for attempts under way.
    pub shutdown_grace: Duration,
    /// Most messages decided in one batch (one log record, one flush).
    pub max_batch: usize,
    /// Commands that may wait for the actor before callers are slowed down.
    pub command_queue: usize,
    /// Seals webhook secrets at rest. `Engine::open` reads or creates `<dir>/master.key`
    /// when this is `None`; `Engine::with_store` needs one.
    pub master_key: Option<MasterKey>,
    /// Earlier master keys: secrets sealed under them are opened and resealed at startup.
    pub previous_master_keys: Vec<MasterKey>,
    /// Manual retries and test sends an account may ask for per minute (0: unlimited).
    pub manual_actions_per_minute: u32,
    /// Most deliveries one recover may send again; a range holding more is refused.
    pub max_recover: usize,
    /// The event types, with descriptions and examples; `policy.event_types` must be its
    /// names (the builder's `catalog` sets both).
    pub catalog: Arc<Catalog>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            policy: Policy::default(),
            max_in_flight: 1024,
            transport_config: TransportConfig::default(),
            transport: None,
            clock: Arc::new(SystemClock),
            random: Arc::new(OsRandom),
            snapshot_every_events: 200_000,
            maintenance_interval: DurationMs::from_mins(10),
            shutdown_grace: Duration::from_secs(10),
            max_batch: 4096,
            command_queue: 8192,
            master_key: None,
            previous_master_keys: Vec::new(),
            manual_actions_per_minute: 60,
            max_recover: crate::DEFAULT_MAX_RECOVER,
            catalog: Arc::new(Catalog::default()),
        }
    }
}

impl fmt::Debug for Config {
    /// Every field but the secrets' material: master keys show only their ids.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("policy", &self.policy)
            .field("max_in_flight", &self.max_in_flight)
            .field("transport_config", &self.transport_config)
            .field(
                "transport",
                &self.transport.as_ref().map(|_| "custom").unwrap_or("https"),
            )
            .field("clock", &"..")
            .field("random", &"..")
            .field("snapshot_every_events", &self.snapshot_every_events)
            .field("maintenance_interval", &self.maintenance_interval)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("max_batch", &self.max_batch)
            .field("command_queue", &self.command_queue)
            .field("master_key", &self.master_key)
            .field("previous_master_keys", &self.previous_master_keys)
            .field("manual_actions_per_minute", &self.manual_actions_per_minute)
            .field("max_recover", &self.max_recover)
            .field("catalog", &self.catalog.names())
            .finish()
    }
}

impl Config {
    /// A builder starting from the production defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder(Config::default())
    }

    /// Checks the whole configuration: limits that must be positive, and fields that would
    /// otherwise be ignored or overridden without a word.
    pub fn validate(&self) -> Result<(), EngineError> {
        let bad = |m: &str| Err(EngineError::Config(m.to_owned()));
        if self.policy.retry_delays.is_empty() {
            return bad("at least one retry delay is needed");
        }
        if self.max_in_flight == 0 || self.max_batch == 0 || self.command_queue == 0 {
            return bad("max_in_flight, max_batch and command_queue must be positive");
        }
        if self.transport.is_some() && self.transport_config != TransportConfig::default() {
            return bad("transport_config configures the default transport only; a custom transport was given");
        }
        if self.policy.event_types != self.catalog.names() {
            return bad("policy.event_types must be the catalog's names; set the catalog with ConfigBuilder::catalog, which sets both");
        }
        if self.transport_config.allow_private_targets && !self.policy.allow_private_targets {
            return bad("transport_config.allow_private_targets contradicts the policy; set policy.allow_private_targets, which both use");
        }
        Ok(())
    }
}

/// Builds a [`Config`]; [`ConfigBuilder::build`] validates it.
#[derive(Debug)]
pub struct ConfigBuilder(Config);

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty),* $(,)?) => {
        impl ConfigBuilder {
            $(
                $(#[$doc])*
                pub fn $name(mut self, value: $ty) -> Self {
                    self.0.$name = value;
                    self
                }
            )*
        }
    };
}

setters! {
    /// The rules' numbers.
    policy: Policy,
    /// Attempts under way at once.
    max_in_flight: usize,
    /// Options of the default transport.
    transport_config: TransportConfig,
    /// Where time comes from.
    clock: Arc<dyn Clock>,
    /// Where fresh ids, secrets and nonces come from.
    random: Arc<dyn RandomSource>,
    /// Events logged between snapshots.
    snapshot_every_events: u64,
    /// How often retention runs.
    maintenance_interval: DurationMs,
    /// How long `shutdown` waits for attempts under way.
    shutdown_grace: Duration,
    /// Most messages decided in one batch.
    max_batch: usize,
    /// Commands that may wait for the actor.
    command_queue: usize,
    /// Earlier master keys, to reseal secrets under the current one.
    previous_master_keys: Vec<MasterKey>,
    /// Manual retries and test sends per account per minute (0: unlimited).
    manual_actions_per_minute: u32,
    /// Most deliveries one recover may send again.
    max_recover: usize,
}

impl ConfigBuilder {
    /// A transport to use instead of the default HTTPS client.
    pub fn transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.0.transport = Some(transport);
        self
    }

    /// The event catalog, and the policy's event types from it.
    pub fn catalog(mut self, catalog: Catalog) -> Self {
        self.0.policy.event_types = catalog.names();
        self.0.catalog = Arc::new(catalog);
        self
    }

    /// The key that seals webhook secrets at rest.
    pub fn master_key(mut self, key: MasterKey) -> Self {
        self.0.master_key = Some(key);
        self
    }

    /// The configuration, if it holds together.
    pub fn build(self) -> Result<Config, EngineError> {
        self.0.validate()?;
        Ok(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_valid_and_debug_shows_no_key_material() {
        let key = MasterKey::from_bytes([0xab; 32]);
        let config = Config::builder()
            .master_key(key.clone())
            .build()
            .expect("valid");
        let shown = format!("{config:?}");
        assert!(shown.contains("max_in_flight: 1024"), "{shown}");
        assert!(shown.contains(&key.id()), "{shown}");
        assert!(!shown.contains("abababab"), "{shown}");
    }

    #[test]
    fn fields_that_would_be_ignored_are_refused() {
        struct Null;
        impl Transport for Null {
            fn send(&self, _: crate::OutgoingRequest, _: Duration) -> crate::transport::SendFuture {
                Box::pin(async {
                    crate::Sent::bare(hallway_domain::Outcome::Response {
                        status: 200,
                        duration: DurationMs(1),
                    })
                })
            }
        }
        let custom = Config::builder()
            .transport(Arc::new(Null))
            .transport_config(TransportConfig {
                skip_native_roots: true,
                ..TransportConfig::default()
            })
            .build();
        assert!(matches!(custom, Err(EngineError::Config(m)) if m.contains("custom transport")));
        let contradiction = Config::builder()
            .transport_config(TransportConfig {
                allow_private_targets: true,
                ..TransportConfig::default()
            })
            .build();
        assert!(matches!(contradiction, Err(EngineError::Config(m)) if m.contains("policy")));
        let none = Config::builder()
            .policy(Policy {
                retry_delays: Vec::new(),
                ..Policy::default()
            })
            .build();
        assert!(none.is_err());
    }
}
