//! The pure core of hallway-webhooks: a deterministic state machine with no I/O, no clock,
//! no randomness and no async.
//!
//! Everything from the outside world arrives inside a [`Command`]: the time (`now`), fresh ids
//! and secrets, and the outcomes the dispatcher observed. [`decide`] checks the command against
//! the [`State`] and the [`Policy`] and returns the facts ([`Event`]s) it produces, or a
//! [`Rejection`] naming the broken rule. [`State::apply`] is the only mutation; replaying a log
//! of events through it rebuilds exactly the state that produced them.
//!
//! The run loop of a host (the `runtime` crate is one):
//!
//! ```
//! use hallway_domain::*;
//!
//! let mut state = State::new(Policy::default());
//! let now = Timestamp(1_768_059_000_000);
//! let cmd = Command::new(now, CommandKind::CreateAccount {
//!     account_id: AccountId::from("acc_1"),
//!     name: "Acme Research".into(),
//!     plan: Plan::Pro,
//!     api_key_hash: "hash".into(),
//! });
//! // 1. decide, 2. persist the events (the store), 3. apply them, 4. act on them.
//! let events = decide(&state, cmd).unwrap();
//! for e in &events {
//!     state.apply(e);
//! }
//! // Timers are data: sleep until `poll_timeout()`, then send `CommandKind::Tick`.
//! assert_eq!(state.poll_timeout(), None);
//! ```
#![deny(missing_docs)]

pub mod address;
pub mod alert;
pub mod attempt;
pub mod catalog;
pub mod command;
pub mod decide;
pub mod envelope;
pub mod event;
pub mod json;
pub mod policy;
pub mod rejection;
mod schedule;
pub mod signature;
pub mod spill;
pub mod state;
pub mod target;
pub mod types;
pub mod webhook;

pub use alert::{Alert, AlertKind};
pub use attempt::AttemptDetail;
pub use catalog::{Catalog, EventType};
pub use command::{
    AccountChanges, Command, CommandKind, DeliverySummary, RecoverCandidate, WebhookChanges,
};
pub use decide::decide;
pub use envelope::PreparedEvent;
pub use event::Event;
pub use policy::{Policy, API_VERSION, SESSION_PROCESSING_COMPLETED};
pub use rejection::{Rejection, RejectionKind};
pub use spill::{Settle, Settling, SpillTier, SpilledDelivery};
pub use state::{
    Account, Delivery, FromSnapshot, OpenAttempt, PreviousKey, Published, SnapshotForm, State,
    Webhook,
};
pub use types::{
    AccountId, AttemptError, BodyDigest, DeliveryId, DisabledReason, DurationMs, EventId, FanOutId,
    IdempotencyKey, Outcome, Plan, ProjectId, Timestamp, WebhookId,
};
pub use webhook::{PreviousSecret, SealedSecret, SignatureScheme, WebhookConfig, MAX_SECRET_GRACE};

impl State {
    /// Decides `cmd` against this state (see [`decide`]).
    pub fn decide(&self, cmd: Command) -> Result<Vec<Event>, Rejection> {
        decide::decide(self, cmd)
    }
}
