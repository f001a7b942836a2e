//! Where each webhook's attempts go and how they are signed, as the durable log has it.
//!
//! The actor's state runs ahead of the log: the next batch is decided and applied while one
//! commits. An attempt of a batch that just landed must not take its webhook's URL or secret
//! from that state: an update, rotation or delete decided meanwhile is not durable yet, and
//! after a crash it may never have happened, while the payload would already have gone to a
//! URL (or been signed with a secret) the host never had confirmed. So the dispatcher reads
//! them here, learned from each batch as it lands.

use hallway_domain::{Event, PreviousSecret, SealedSecret, SignatureScheme, State, WebhookId};
use std::collections::HashMap;

/// A live webhook's endpoint and signing, as logged.
pub(crate) struct Target {
    /// The URL attempts go to.
    pub(crate) url: String,
    /// How they are signed.
    pub(crate) scheme: SignatureScheme,
    /// The sealed secret that signs them.
    pub(crate) secret: SealedSecret,
    /// The replaced secret while a rotation's grace may still run.
    pub(crate) previous: Option<PreviousSecret>,
}

/// See the module documentation.
#[derive(Default)]
pub(crate) struct Targets(HashMap<WebhookId, Target>);

impl Targets {
    /// The targets of a state that is exactly its log (at startup).
    pub(crate) fn of(state: &State) -> Targets {
        let mut targets = Targets::default();
        for account in state.accounts() {
            for w in state.webhooks_of(&account.id) {
                targets.0.insert(
                    w.id.clone(),
                    Target {
                        url: w.config.url.clone(),
                        scheme: w.config.signature_scheme,
                        secret: w.secret.clone(),
                        previous: w.previous_secret.clone(),
                    },
                );
            }
        }
        targets
    }

    /// Learns what a durable batch changed.
    pub(crate) fn learn(&mut self, events: &[Event]) {
        for e in events {
            match e {
                Event::WebhookCreated {
                    webhook_id,
                    config,
                    secret,
                    ..
                } => {
                    self.0.insert(
                        webhook_id.clone(),
                        Target {
                            url: config.url.clone(),
                            scheme: config.signature_scheme,
                            secret: secret.clone(),
                            previous: None,
                        },
                    );
                }
                Event::WebhookUpdated {
                    webhook_id, config, ..
                } => {
                    if let Some(t) = self.0.get_mut(webhook_id) {
                        t.url = config.url.clone();
                        t.scheme = config.signature_scheme;
                    }
                }
                Event::SecretRotated {
                    webhook_id,
                    secret,
                    previous,
                    ..
                } => {
                    if let Some(t) = self.0.get_mut(webhook_id) {
                        t.secret = secret.clone();
                        t.previous = previous.clone();
                    }
                }
                Event::WebhookDeleted { webhook_id, .. } => {
                    self.0.remove(webhook_id);
                }
                _ => {}
            }
        }
    }

    /// A live webhook's target.
    pub(crate) fn get(&self, webhook: &WebhookId) -> Option<&Target> {
        self.0.get(webhook)
    }

    /// How many live webhooks there are.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}
