//! [`State::apply`]: the only code that mutates the state, one fact at a time.

use super::*;

impl State {
    /// Applies one fact. Total: it never fails, and the same events always build the same state.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::AccountCreated {
                account_id,
                name,
                plan,
                api_key_hash,
                at,
            } => {
                self.key_hashes
                    .insert(api_key_hash.clone(), account_id.clone());
                self.accounts.insert(
                    account_id.clone(),
                    Account {
                        id: account_id.clone(),
                        name: name.clone(),
                        plan: *plan,
                        api_key_hash: api_key_hash.clone(),
                        created_at: *at,
                        updated_at: *at,
                        webhooks: Vec::new(),
                        previous_key: None,
                    },
                );
            }
            Event::AccountKeyRotated {
                account_id,
                api_key_hash,
                previous_valid_until,
                at,
            } => {
                let Some(a) = self.accounts.get_mut(account_id) else {
                    return;
                };
                if let Some(p) = a.previous_key.take() {
                    self.key_hashes.remove(&p.hash);
                }
                let old = std::mem::replace(&mut a.api_key_hash, api_key_hash.clone());
                match previous_valid_until {
                    Some(until) => {
                        a.previous_key = Some(PreviousKey {
                            hash: old,
                            until: *until,
                        })
                    }
                    None => {
                        self.key_hashes.remove(&old);
                    }
                }
                a.updated_at = *at;
                self.key_hashes
                    .insert(api_key_hash.clone(), account_id.clone());
            }
            Event::AccountDeleted { account_id, .. } => {
                // `decide` deletes its webhooks (cancelling their deliveries) in the same batch.
                if let Some(a) = self.accounts.remove(account_id) {
                    self.key_hashes.remove(&a.api_key_hash);
                    if let Some(p) = a.previous_key {
                        self.key_hashes.remove(&p.hash);
                    }
                }
                self.published.retain(|key, _| !key.is_of(account_id));
                self.published_order
                    .retain(|(_, key)| !key.is_of(account_id));
            }
            Event::AccountUpdated {
                account_id,
                name,
                plan,
                at,
            } => {
                if let Some(a) = self.accounts.get_mut(account_id) {
                    a.name = name.clone();
                    a.plan = *plan;
                    a.updated_at = *at;
                }
            }
            Event::WebhookCreated {
                webhook_id,
                account_id,
                config,
                secret,
                at,
            } => {
                if let Some(a) = self.accounts.get_mut(account_id) {
                    a.webhooks.push(webhook_id.clone());
                }
                self.webhooks.insert(
                    webhook_id.clone(),
                    Webhook {
                        id: webhook_id.clone(),
                        account_id: account_id.clone(),
                        config: config.clone(),
                        secret: secret.clone(),
                        previous_secret: None,
                        enabled: true,
                        disabled_reason: None,
                        consecutive_failures: 0,
                        created_at: *at,
                        updated_at: *at,
                    },
                );
                self.schedule.add_webhook(webhook_id);
                self.spills.add_webhook(webhook_id);
            }
            Event::WebhookUpdated {
                webhook_id,
                config,
                at,
            } => {
                if let Some(w) = self.webhooks.get_mut(webhook_id) {
                    w.config = config.clone();
                    w.updated_at = *at;
                }
            }
            Event::WebhookEnabled { webhook_id, at } => {
                if let Some(w) = self.webhooks.get_mut(webhook_id) {
                    w.enabled = true;
                    w.disabled_reason = None;
                    w.consecutive_failures = 0;
                    w.updated_at = *at;
                }
            }
            Event::WebhookDisabled {
                webhook_id,
                reason,
                at,
            } => {
                if let Some(w) = self.webhooks.get_mut(webhook_id) {
                    w.enabled = false;
                    w.disabled_reason = Some(*reason);
                    w.updated_at = *at;
                }
                // Its spilled deliveries are paused too, a chunk at a time.
                self.spills.retire(webhook_id, Settle::Paused, false);
            }
            Event::WebhookDeleted { webhook_id, .. } => {
                // Its spilled deliveries are cancelled, a chunk at a time.
                self.spills.retire(webhook_id, Settle::Cancelled, true);
                // `decide` cancels a webhook's deliveries before deleting it, so none wait.
                for orphan in self.schedule.remove_webhook(webhook_id) {
                    self.deliveries.remove(&orphan);
                }
                if let Some(w) = self.webhooks.remove(webhook_id) {
                    if let Some(a) = self.accounts.get_mut(&w.account_id) {
                        a.webhooks.retain(|id| id != webhook_id);
                    }
                }
            }
            Event::SecretRotated {
                webhook_id,
                secret,
                previous,
                at,
            } => {
                if let Some(w) = self.webhooks.get_mut(webhook_id) {
                    w.secret = secret.clone();
                    w.previous_secret = previous.clone();
                    w.updated_at = *at;
                }
            }
            Event::EventPublished {
                account_id,
                event_id,
                event_type,
                deliveries,
                first_due,
                at,
                ..
            } => {
                if let Some((key, published)) = Published::of(event) {
                    // An id published again once its window passed, before memory forgot it.
                    if let Some(earlier) = self.published.insert(key, published) {
                        self.published_order.remove(&(earlier.at, key));
                    }
                    self.published_order.insert((*at, key));
                }
                self.enqueue_fan_out(
                    account_id, event_id, event_type, deliveries, *at, *first_due,
                );
            }
            Event::TestDeliveryCreated {
                delivery_id,
                webhook_id,
                account_id,
                event_id,
                event_type,
                at,
                ..
            } => {
                self.enqueue_new(Delivery {
                    id: delivery_id.clone(),
                    webhook_id: webhook_id.clone(),
                    account_id: account_id.clone(),
                    event_id: event_id.clone(),
                    event_type: event_type.clone(),
                    test: true,
                    created_at: *at,
                    attempts_made: 0,
                    max_attempts: 1,
                    due: *at,
                    open: None,
                    cancelled: false,
                });
            }
            Event::AttemptStarted {
                delivery_id,
                attempt,
                deadline,
                at,
            } => {
                let Some(d) = self.deliveries.get_mut(delivery_id) else {
                    debug_assert!(false, "attempt started for unknown delivery");
                    return;
                };
                // Panics if the delivery is not waiting in its queue (one attempt at a time).
                self.schedule
                    .start(&d.webhook_id, d.due, delivery_id, *deadline);
                d.attempts_made = *attempt;
                d.open = Some(OpenAttempt {
                    attempt: *attempt,
                    started_at: *at,
                    deadline: *deadline,
                });
            }
            Event::AttemptSucceeded { delivery_id, .. } => {
                if let Some(d) = self.close_attempt(delivery_id) {
                    if !d.test && !d.cancelled {
                        if let Some(w) = self.webhooks.get_mut(&d.webhook_id) {
                            w.consecutive_failures = 0;
                        }
                    }
                    self.deliveries.remove(delivery_id);
                }
            }
            Event::AttemptFailed {
                delivery_id,
                next_due,
                ..
            } => {
                if let Some(d) = self.close_attempt(delivery_id) {
                    if !d.test && !d.cancelled {
                        if let Some(w) = self.webhooks.get_mut(&d.webhook_id) {
                            w.consecutive_failures += 1;
                        }
                    }
                    match next_due {
                        Some(due) if !d.cancelled => self.requeue(delivery_id, *due),
                        _ => {
                            self.deliveries.remove(delivery_id);
                        }
                    }
                }
            }
            Event::AttemptAbandoned {
                delivery_id,
                attempt,
                at,
            } => {
                if let Some(d) = self.close_attempt(delivery_id) {
                    if d.cancelled {
                        self.deliveries.remove(delivery_id);
                    } else {
                        if let Some(d) = self.deliveries.get_mut(delivery_id) {
                            d.attempts_made = attempt.saturating_sub(1);
                        }
                        self.requeue(delivery_id, *at);
                    }
                }
            }
            // A paused delivery leaves the state as a cancelled one does: history keeps it (and
            // its body) for a recover.
            Event::DeliveryCancelled { delivery_id, .. }
            | Event::DeliveryPaused { delivery_id, .. } => {
                let Some(d) = self.deliveries.get_mut(delivery_id) else {
                    return;
                };
                if d.open.is_some() {
                    d.cancelled = true;
                    return;
                }
                self.schedule.dequeue(&d.webhook_id, d.due, delivery_id);
                self.deliveries.remove(delivery_id);
            }
            Event::DeliveryRetried { delivery, at } => {
                self.enqueue_new(Delivery {
                    id: delivery.delivery_id.clone(),
                    webhook_id: delivery.webhook_id.clone(),
                    account_id: delivery.account_id.clone(),
                    event_id: delivery.event_id.clone(),
                    event_type: delivery.event_type.clone(),
                    test: delivery.test,
                    created_at: delivery.created_at,
                    attempts_made: delivery.attempts_made,
                    max_attempts: delivery.attempts_made + 1,
                    due: *at,
                    open: None,
                    cancelled: false,
                });
            }
            Event::DeliveriesPaused { .. } | Event::AlertRaised { .. } => {}
            Event::EventReplayed {
                account_id,
                event_id,
                event_type,
                deliveries,
                first_due,
                at,
            } => {
                self.enqueue_fan_out(
                    account_id, event_id, event_type, deliveries, *at, *first_due,
                );
            }
            Event::DeliveriesRecovered {
                deliveries,
                first_due,
                ..
            } => {
                for delivery in deliveries {
                    // `decide` skips pending ones; a duplicate here must not reset one.
                    if self.deliveries.contains_key(&delivery.delivery_id) {
                        continue;
                    }
                    self.enqueue_new(Delivery {
                        id: delivery.delivery_id.clone(),
                        webhook_id: delivery.webhook_id.clone(),
                        account_id: delivery.account_id.clone(),
                        event_id: delivery.event_id.clone(),
                        event_type: delivery.event_type.clone(),
                        test: delivery.test,
                        created_at: delivery.created_at,
                        attempts_made: delivery.attempts_made,
                        max_attempts: delivery.attempts_made + self.policy.max_attempts(),
                        due: *first_due,
                        open: None,
                        cancelled: false,
                    });
                }
            }
            Event::DeliveriesSpilled {
                webhook_id,
                generation,
                deliveries,
                ..
            } => self.apply_spilled(webhook_id, *generation, deliveries),
            Event::DeliveriesLoaded {
                webhook_id,
                generation,
                deliveries,
                next,
                ..
            } => self.apply_loaded(webhook_id, *generation, deliveries, next),
            Event::SpilledDeliveriesSettled {
                webhook_id,
                generation,
                paused,
                cancelled,
                kept,
                ..
            } => self.apply_settled(
                webhook_id,
                *generation,
                paused.len() + cancelled.len(),
                kept,
            ),
            Event::IdempotencyKeysExpired { before, .. } => {
                while let Some(first) = self.published_order.first() {
                    if first.0 >= *before {
                        break;
                    }
                    if let Some((_, key)) = self.published_order.pop_first() {
                        self.published.remove(&key);
                    }
                }
            }
        }
    }

    /// Queues a fresh delivery of an event to each webhook of a fan-out (a publish or a replay).
    fn enqueue_fan_out(
        &mut self,
        account_id: &AccountId,
        event_id: &EventId,
        event_type: &str,
        deliveries: &[(DeliveryId, WebhookId)],
        at: Timestamp,
        first_due: Timestamp,
    ) {
        for (delivery_id, webhook_id) in deliveries {
            self.enqueue_new(Delivery {
                id: delivery_id.clone(),
                webhook_id: webhook_id.clone(),
                account_id: account_id.clone(),
                event_id: event_id.clone(),
                event_type: event_type.to_owned(),
                test: false,
                created_at: at,
                attempts_made: 0,
                max_attempts: self.policy.max_attempts(),
                due: first_due,
                open: None,
                cancelled: false,
            });
        }
    }

    /// Inserts a new waiting delivery and queues it.
    pub(super) fn enqueue_new(&mut self, delivery: Delivery) {
        // Every event that creates a delivery names a live webhook (`decide` checks).
        if !self
            .schedule
            .enqueue(&delivery.webhook_id, delivery.due, &delivery.id)
        {
            debug_assert!(false, "delivery {} for a dead webhook", delivery.id);
            return;
        }
        let id = delivery.id.clone();
        let replaced = self.deliveries.insert(id, delivery);
        // A replaced delivery would leave its old queue entry or deadline behind.
        assert!(replaced.is_none(), "a delivery id was created twice");
    }

    /// Puts an existing delivery (with no open attempt) back in its queue, due at `due`.
    fn requeue(&mut self, id: &DeliveryId, due: Timestamp) {
        let Some(d) = self.deliveries.get_mut(id) else {
            return;
        };
        d.due = due;
        if !self.schedule.enqueue(&d.webhook_id, due, id) {
            // Deleting a webhook cancels its attempts, so none comes back for a retry.
            debug_assert!(false, "delivery {id} requeued for a dead webhook");
            self.deliveries.remove(id);
        }
    }

    /// Closes a delivery's open attempt, returning a copy of the delivery as it was.
    fn close_attempt(&mut self, id: &DeliveryId) -> Option<Delivery> {
        let d = self.deliveries.get_mut(id)?;
        let open = d.open.take()?;
        self.schedule.finish(&d.webhook_id, id, open.deadline);
        Some(d.clone())
    }
}
