//! How a [`State`] is encoded: its own encoding (the layout of older snapshot files) and the
//! smaller snapshot form. Both hold the schedule's indexes and each webhook's in-flight count,
//! as the layout always has; loading reads them and rebuilds the schedule from the deliveries
//! instead, so a loaded state is consistent by construction.

use super::{Account, Delivery, Published, State, Webhook};
use crate::policy::Policy;
use crate::schedule::Schedule;
use crate::spill::Spills;
use crate::types::{AccountId, DeliveryId, DisabledReason, IdempotencyKey, Timestamp, WebhookId};
use crate::webhook::{PreviousSecret, SealedSecret, WebhookConfig};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A [`Webhook`] as encoded: its fields and then its in-flight count, in this order.
#[derive(Serialize)]
#[serde(rename = "Webhook")]
struct WebhookOut<'a> {
    id: &'a WebhookId,
    account_id: &'a AccountId,
    config: &'a WebhookConfig,
    secret: &'a SealedSecret,
    previous_secret: &'a Option<PreviousSecret>,
    enabled: bool,
    disabled_reason: Option<DisabledReason>,
    consecutive_failures: u32,
    created_at: Timestamp,
    updated_at: Timestamp,
    in_flight: u32,
}

/// A [`Webhook`] as decoded; see [`WebhookOut`].
#[derive(Deserialize)]
#[serde(rename = "Webhook")]
struct WebhookIn {
    id: WebhookId,
    account_id: AccountId,
    config: WebhookConfig,
    secret: SealedSecret,
    previous_secret: Option<PreviousSecret>,
    enabled: bool,
    disabled_reason: Option<DisabledReason>,
    consecutive_failures: u32,
    created_at: Timestamp,
    updated_at: Timestamp,
    /// Read to consume its bytes; loading counts open attempts from the deliveries instead.
    #[allow(dead_code)]
    in_flight: u32,
}

impl From<WebhookIn> for Webhook {
    fn from(w: WebhookIn) -> Self {
        Webhook {
            id: w.id,
            account_id: w.account_id,
            config: w.config,
            secret: w.secret,
            previous_secret: w.previous_secret,
            enabled: w.enabled,
            disabled_reason: w.disabled_reason,
            consecutive_failures: w.consecutive_failures,
            created_at: w.created_at,
            updated_at: w.updated_at,
        }
    }
}

/// The live webhooks with their in-flight counts, encoded as a map of [`WebhookOut`].
struct Webhooks<'a>(&'a State);

impl Serialize for Webhooks<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let State {
            webhooks, schedule, ..
        } = self.0;
        serializer.collect_map(webhooks.iter().map(|(id, w)| {
            let out = WebhookOut {
                id: &w.id,
                account_id: &w.account_id,
                config: &w.config,
                secret: &w.secret,
                previous_secret: &w.previous_secret,
                enabled: w.enabled,
                disabled_reason: w.disabled_reason,
                consecutive_failures: w.consecutive_failures,
                created_at: w.created_at,
                updated_at: w.updated_at,
                in_flight: schedule.in_flight(id),
            };
            (id, out)
        }))
    }
}

type Queues = HashMap<WebhookId, BTreeSet<(Timestamp, DeliveryId)>>;

/// [`State`]'s own encoding, borrowed: the layout of earlier snapshot files.
#[derive(Serialize)]
#[serde(rename = "State")]
struct StateOut<'a> {
    policy: &'a Policy,
    accounts: &'a BTreeMap<AccountId, Account>,
    webhooks: Webhooks<'a>,
    deliveries: &'a HashMap<DeliveryId, Delivery>,
    queues: &'a Queues,
    ready: &'a BTreeSet<(Timestamp, WebhookId)>,
    deadlines: &'a BTreeSet<(Timestamp, DeliveryId)>,
    published: &'a HashMap<IdempotencyKey, Published>,
    published_order: &'a BTreeSet<(Timestamp, IdempotencyKey)>,
    key_hashes: &'a HashMap<String, AccountId>,
    spills: &'a Spills,
}

/// [`State`]'s own encoding, decoded; see [`StateOut`].
#[derive(Deserialize)]
#[serde(rename = "State")]
struct StateIn {
    policy: Policy,
    accounts: BTreeMap<AccountId, Account>,
    webhooks: BTreeMap<WebhookId, WebhookIn>,
    deliveries: HashMap<DeliveryId, Delivery>,
    // The schedule's indexes are read to consume their bytes (the format is not
    // self-describing, so they cannot be skipped); loading rebuilds them.
    #[allow(dead_code)]
    queues: Queues,
    #[allow(dead_code)]
    ready: BTreeSet<(Timestamp, WebhookId)>,
    #[allow(dead_code)]
    deadlines: BTreeSet<(Timestamp, DeliveryId)>,
    published: HashMap<IdempotencyKey, Published>,
    published_order: BTreeSet<(Timestamp, IdempotencyKey)>,
    key_hashes: HashMap<String, AccountId>,
    spills: Spills,
}

impl Serialize for State {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        StateOut {
            policy: &self.policy,
            accounts: &self.accounts,
            webhooks: Webhooks(self),
            deliveries: &self.deliveries,
            queues: self.schedule.queues(),
            ready: self.schedule.ready(),
            deadlines: self.schedule.deadlines(),
            published: &self.published,
            published_order: &self.published_order,
            key_hashes: &self.key_hashes,
            spills: &self.spills,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for State {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(State::loaded(StateIn::deserialize(deserializer)?))
    }
}

impl State {
    /// A decoded state, with the schedule rebuilt from its deliveries (the decoded indexes
    /// are not read).
    fn loaded(s: StateIn) -> State {
        let webhooks: BTreeMap<WebhookId, Webhook> =
            s.webhooks.into_iter().map(|(k, w)| (k, w.into())).collect();
        let schedule = Schedule::rebuild(
            s.policy.max_open_per_webhook(),
            webhooks.keys(),
            s.deliveries.values(),
        );
        State {
            policy: s.policy,
            accounts: s.accounts,
            webhooks,
            deliveries: s.deliveries,
            schedule,
            published: s.published,
            published_order: s.published_order,
            key_hashes: s.key_hashes,
            spills: s.spills.reindex(),
        }
    }
}

/// [`State`]'s fields as a snapshot holds them, in order: all but `published_order`, the
/// index of `published` by time, which loading rebuilds (it was nearly half of a snapshot's
/// bytes, and a snapshot's encoding pauses the engine).
type SnapshotFields = (
    Policy,
    BTreeMap<AccountId, Account>,
    BTreeMap<WebhookId, WebhookIn>,
    HashMap<DeliveryId, Delivery>,
    Queues,
    BTreeSet<(Timestamp, WebhookId)>,
    BTreeSet<(Timestamp, DeliveryId)>,
    HashMap<IdempotencyKey, Published>,
    HashMap<String, AccountId>,
    Spills,
);

/// A state encoded in its snapshot form: smaller than the state's own encoding, which
/// stays what it was so that older snapshot files still read.
pub struct SnapshotForm<'a>(pub &'a State);

impl Serialize for SnapshotForm<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let s = self.0;
        // Borrowed, in the order of [`SnapshotFields`].
        (
            &s.policy,
            &s.accounts,
            Webhooks(s),
            &s.deliveries,
            s.schedule.queues(),
            s.schedule.ready(),
            s.schedule.deadlines(),
            &s.published,
            &s.key_hashes,
            &s.spills,
        )
            .serialize(serializer)
    }
}

/// A state read from its [`SnapshotForm`], with its indexes rebuilt.
pub struct FromSnapshot(pub State);

impl<'de> Deserialize<'de> for FromSnapshot {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (
            policy,
            accounts,
            webhooks,
            deliveries,
            queues,
            ready,
            deadlines,
            published,
            key_hashes,
            spills,
        ) = SnapshotFields::deserialize(deserializer)?;
        // Publishing an id present in `published` is refused, so each entry has exactly one
        // place in the order, at its own time.
        let published_order = published.iter().map(|(key, p)| (p.at, *key)).collect();
        Ok(FromSnapshot(State::loaded(StateIn {
            policy,
            accounts,
            webhooks,
            deliveries,
            queues,
            ready,
            deadlines,
            published,
            published_order,
            key_hashes,
            spills,
        })))
    }
}
