//! How each webhook's attempts are addressed and signed at the moment they are sent: its
//! target as the durable log has it then ([`Targets`]), its secrets opened once per change.
//! An attempt may wait in its webhook's lane while a rotation or an update lands, and must
//! go out as the log stands when it is sent, not as it stood when it started.

use super::targets::{Target, Targets};
use crate::secrets::SecretBox;
use hallway_domain::{
    AttemptError, Event, PreviousSecret, SealedSecret, SignatureScheme, State, WebhookId,
};
use std::collections::HashMap;
use std::sync::Arc;
use tracing::error;

/// See the module documentation.
pub(crate) struct Signer {
    secrets: Arc<SecretBox>,
    /// Each webhook's URL and signing as the durable log has them.
    targets: Targets,
    /// Each webhook's secrets as sealed and opened: opening (AES-GCM) once per rotation, not
    /// once per attempt.
    opened: HashMap<WebhookId, Opened>,
}

/// Where an attempt goes and how it is signed.
pub(crate) struct Resolved {
    /// The URL it is sent to.
    pub(crate) url: String,
    /// Its signature scheme.
    pub(crate) scheme: SignatureScheme,
    /// The current secret, opened.
    pub(crate) current: Arc<str>,
    /// The previous secret while a rotation's grace may still be running; whether it signs
    /// is decided at the send's time.
    pub(crate) previous: Option<(PreviousSecret, Arc<str>)>,
}

/// A webhook's secrets, sealed as the log holds them and opened.
struct Opened {
    current: (SealedSecret, Arc<str>),
    previous: Option<(PreviousSecret, Arc<str>)>,
}

impl Opened {
    /// Whether these are the webhook's secrets now (no rotation or reseal since).
    fn matches(&self, t: &Target) -> bool {
        self.current.0 == t.secret && self.previous.as_ref().map(|(p, _)| p) == t.previous.as_ref()
    }
}

impl Signer {
    /// The signer of `state`'s webhooks (a state that is exactly its log, at startup).
    pub(crate) fn new(state: &State, secrets: Arc<SecretBox>) -> Signer {
        Signer {
            secrets,
            targets: Targets::of(state),
            opened: HashMap::new(),
        }
    }

    /// Learns the webhooks' URLs and secrets a batch changed, once it is durable.
    pub(crate) fn learn(&mut self, events: &[Event]) {
        self.targets.learn(events);
    }

    /// Whether the webhook is live in the durable log.
    pub(crate) fn knows(&self, webhook: &WebhookId) -> bool {
        self.targets.get(webhook).is_some()
    }

    /// Where an attempt to `webhook` goes now and its secrets, or why it cannot be sent.
    pub(crate) fn resolve(
        &mut self,
        webhook: &WebhookId,
    ) -> Result<Resolved, (AttemptError, &'static str)> {
        let Some(target) = self.targets.get(webhook) else {
            return Err((AttemptError::Connect, "the webhook was deleted"));
        };
        let (url, scheme) = (target.url.clone(), target.scheme);
        let Some(opened) = self.open_secrets(webhook) else {
            return Err((
                AttemptError::InvalidResponse,
                "the webhook's secret does not open with the master key",
            ));
        };
        Ok(Resolved {
            url,
            scheme,
            current: opened.current.1.clone(),
            previous: opened.previous.clone(),
        })
    }

    /// A logged webhook's secrets opened, from the cache while they are unchanged. `None`
    /// (logged) if the current one does not open; a previous one that does not open signs
    /// nothing.
    fn open_secrets(&mut self, webhook: &WebhookId) -> Option<&Opened> {
        let target = self.targets.get(webhook)?;
        if !self.opened.get(webhook).is_some_and(|o| o.matches(target)) {
            let Some((plain, _)) = self.secrets.open(&target.secret) else {
                error!(%webhook, "webhook secret does not open with the master key");
                return None;
            };
            let previous = target.previous.as_ref().and_then(|p| {
                let opened = self.secrets.open(&p.secret);
                if opened.is_none() {
                    error!(%webhook, "previous webhook secret does not open with the master key");
                }
                opened.map(|(plain, _)| (p.clone(), Arc::from(plain)))
            });
            let opened = Opened {
                current: (target.secret.clone(), Arc::from(plain)),
                previous,
            };
            if self.opened.len() > self.targets.len() {
                // Deleted webhooks' entries: start again rather than track deletions.
                self.opened.clear();
            }
            self.opened.insert(webhook.clone(), opened);
        }
        self.opened.get(webhook)
    }
}
