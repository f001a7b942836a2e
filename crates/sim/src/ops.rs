//! The workload's operations: what a host asks of the engine, run through the real
//! `EngineHandle`, and what each acknowledgement promises (checked against the durable log
//! the moment it arrives).

use crate::core::Core;
use hallway_domain::{
    AccountChanges, AccountId, DeliveryId, DurationMs, Plan, ProjectId, SignatureScheme, Timestamp,
    WebhookChanges, WebhookId, SESSION_PROCESSING_COMPLETED,
};
use hallway_runtime::{EngineError, EngineHandle, NewWebhook, PublishReceipt};

/// One thing the host asks.
#[derive(Clone, Debug)]
pub enum Op {
    /// Create an account.
    CreateAccount {
        /// Its id.
        account: AccountId,
        /// Pro (webhooks allowed) or free.
        pro: bool,
    },
    /// Change an account's plan.
    SetPlan {
        /// The account.
        account: AccountId,
        /// Pro or free.
        pro: bool,
    },
    /// Register a webhook.
    CreateWebhook {
        /// Its account.
        account: AccountId,
        /// Its URL (unique in the run).
        url: String,
        /// Its project filter.
        projects: Vec<String>,
        /// How it signs.
        scheme: SignatureScheme,
    },
    /// Change a webhook's URL or filter.
    UpdateWebhook {
        /// Its account.
        account: AccountId,
        /// The webhook.
        webhook: WebhookId,
        /// A new URL.
        url: Option<String>,
        /// A new filter.
        projects: Option<Vec<String>>,
        /// A new signing scheme.
        scheme: Option<SignatureScheme>,
    },
    /// Enable or disable a webhook.
    Toggle {
        /// Its account.
        account: AccountId,
        /// The webhook.
        webhook: WebhookId,
        /// Enable (or disable).
        enable: bool,
    },
    /// Rotate a webhook's secret.
    Rotate {
        /// Its account.
        account: AccountId,
        /// The webhook.
        webhook: WebhookId,
        /// How long the replaced secret goes on signing too.
        grace_ms: Option<u64>,
    },
    /// Delete a webhook.
    Delete {
        /// Its account.
        account: AccountId,
        /// The webhook.
        webhook: WebhookId,
    },
    /// Publish an event.
    Publish {
        /// The account.
        account: AccountId,
        /// Its idempotency id, if the host gives one.
        id: Option<String>,
        /// Its project.
        project: String,
    },
    /// Send a test.
    Test {
        /// Its account.
        account: AccountId,
        /// The webhook.
        webhook: WebhookId,
    },
    /// Retry a finished delivery by hand.
    Retry {
        /// Its account.
        account: AccountId,
        /// Its webhook.
        webhook: WebhookId,
        /// The delivery.
        delivery: DeliveryId,
    },
    /// Recover a range of a webhook's deliveries.
    Recover {
        /// Its account.
        account: AccountId,
        /// The webhook.
        webhook: WebhookId,
        /// From (inclusive).
        since: Timestamp,
        /// Up to (exclusive), or now.
        until: Option<Timestamp>,
    },
}

/// What the engine answered.
#[derive(Debug)]
pub enum Answer {
    /// An account was created or changed.
    Account,
    /// A webhook was created, with its secret.
    Created(WebhookId, String),
    /// A webhook was changed.
    Updated,
    /// A secret was rotated: the new one, and the end of the old one's grace.
    Rotated(String, Option<Timestamp>),
    /// A webhook was deleted.
    Deleted,
    /// A publish's receipt.
    Published(PublishReceipt),
    /// A test send's delivery.
    Tested(DeliveryId),
    /// A retry was accepted.
    Retried,
    /// A recover sent this many again.
    Recovered(u64),
    /// Refused or failed.
    Error(EngineError),
}

/// A host event's body.
pub fn body(id: Option<&str>, project: &str) -> String {
    let id = id.map(|i| format!("\"id\":\"{i}\",")).unwrap_or_default();
    format!(
        "{{{id}\"type\":\"{SESSION_PROCESSING_COMPLETED}\",\"project\":{{\"id\":\"{project}\",\"name\":\"Discovery\",\"status\":\"active\"}},\"session\":{{\"id\":\"ses_1\",\"duration_seconds\":342}},\"transcript\":{{\"id\":\"trx_1\",\"full_text\":\"Interviewer: Hello.\",\"word_count\":2}}}}"
    )
}

impl Op {
    /// Asks the engine.
    pub async fn run(&self, h: &EngineHandle) -> Answer {
        let plan = |pro: bool| if pro { Plan::Pro } else { Plan::Free };
        let r = match self {
            Op::CreateAccount { account, pro } => h
                .create_account(account, "Acme Research", plan(*pro))
                .await
                .map(|_| Answer::Account),
            Op::SetPlan { account, pro } => h
                .update_account(
                    account,
                    AccountChanges {
                        plan: Some(plan(*pro)),
                        ..AccountChanges::default()
                    },
                )
                .await
                .map(|_| Answer::Account),
            Op::CreateWebhook {
                account,
                url,
                projects,
                scheme,
            } => h
                .create_webhook(
                    account,
                    NewWebhook {
                        name: "Sim".into(),
                        url: url.clone(),
                        description: None,
                        events: vec![SESSION_PROCESSING_COMPLETED.into()],
                        project_ids: projects.clone(),
                        signature_scheme: *scheme,
                    },
                )
                .await
                .map(|(w, s)| Answer::Created(w.id, s.expose().to_owned())),
            Op::UpdateWebhook {
                account,
                webhook,
                url,
                projects,
                scheme,
            } => h
                .update_webhook(
                    account,
                    webhook,
                    WebhookChanges {
                        url: url.clone(),
                        project_ids: projects
                            .as_ref()
                            .map(|p| p.iter().map(|s| ProjectId::from(s.as_str())).collect()),
                        signature_scheme: *scheme,
                        ..WebhookChanges::default()
                    },
                )
                .await
                .map(|_| Answer::Updated),
            Op::Toggle {
                account,
                webhook,
                enable,
            } => h
                .update_webhook(
                    account,
                    webhook,
                    WebhookChanges {
                        enabled: Some(*enable),
                        ..WebhookChanges::default()
                    },
                )
                .await
                .map(|_| Answer::Updated),
            Op::Rotate {
                account,
                webhook,
                grace_ms,
            } => h
                .rotate_secret_with_grace(account, webhook, grace_ms.map(DurationMs))
                .await
                .map(|(s, until)| Answer::Rotated(s.expose().to_owned(), until)),
            Op::Delete { account, webhook } => h
                .delete_webhook(account, webhook)
                .await
                .map(|_| Answer::Deleted),
            Op::Publish {
                account,
                id,
                project,
            } => h
                .publish(account, body(id.as_deref(), project).as_bytes())
                .await
                .map(Answer::Published),
            Op::Test { account, webhook } => {
                h.send_test(account, webhook).await.map(Answer::Tested)
            }
            Op::Retry {
                account,
                webhook,
                delivery,
            } => h
                .retry_delivery(account, webhook, delivery)
                .await
                .map(|_| Answer::Retried),
            Op::Recover {
                account,
                webhook,
                since,
                until,
            } => h
                .recover(account, webhook, *since, *until)
                .await
                .map(Answer::Recovered),
        };
        r.unwrap_or_else(Answer::Error)
    }
}

impl Core {
    /// Checks what an acknowledgement promises against the durable log: every answered
    /// change is in a record flushed after the operation was asked (`asked_seq` was the last
    /// durable record then).
    pub fn acknowledged(&mut self, n: u64, op: &Op, answer: &Answer, asked_seq: u64) {
        let text = match answer {
            Answer::Error(e) => format!("error: {e}"),
            Answer::Created(w, _) => format!("created {w}"),
            Answer::Rotated(..) => "rotated".into(),
            Answer::Published(r) => format!(
                "{} {} deliveries{}",
                r.event_id,
                r.deliveries,
                if r.duplicate { " (duplicate)" } else { "" }
            ),
            other => format!("{other:?}"),
        };
        self.note(format_args!("op #{n} answered: {text}"));
        if !matches!(answer, Answer::Error(_)) {
            self.stats.acked += 1;
        }
        let after = |seq: Option<u64>| seq.is_some_and(|s| s > asked_seq);
        let broken = match (op, answer) {
            (Op::CreateAccount { account, .. }, Answer::Account) => self
                .audit
                .marked("account", account.as_str())
                .is_none()
                .then(|| format!("account {account} acknowledged, not in the durable log")),
            (Op::CreateWebhook { .. }, Answer::Created(w, secret)) => {
                self.learn_secret(w, secret.clone(), None);
                self.audit
                    .marked("created", w.as_str())
                    .is_none()
                    .then(|| format!("{w} acknowledged, not in the durable log"))
            }
            (Op::UpdateWebhook { webhook, .. }, Answer::Updated) => {
                (!after(self.audit.marked("changed", webhook.as_str())))
                    .then(|| format!("update of {webhook} acknowledged, not in the durable log"))
            }
            (Op::Rotate { webhook, .. }, Answer::Rotated(secret, until)) => {
                self.learn_secret(webhook, secret.clone(), *until);
                (!after(self.audit.marked("rotated", webhook.as_str())))
                    .then(|| format!("rotation of {webhook} acknowledged, not durable"))
            }
            (Op::Delete { webhook, .. }, Answer::Deleted) => self
                .audit
                .marked("deleted", webhook.as_str())
                .is_none()
                .then(|| format!("delete of {webhook} acknowledged, not durable")),
            (Op::Publish { account, id, .. }, Answer::Published(r)) => {
                let logged = self
                    .audit
                    .published
                    .get(&(account.clone(), r.event_id.clone()))
                    .copied();
                match logged {
                    _ if id.as_deref().is_some_and(|i| i != r.event_id.as_str()) => {
                        Some(format!("publish of {id:?} answered for {}", r.event_id))
                    }
                    None if !r.duplicate => Some(format!(
                        "publish of {} acknowledged, not in the durable log",
                        r.event_id
                    )),
                    Some((_, count, _)) if count != r.deliveries => Some(format!(
                        "publish of {} answered {} deliveries, the log has {count}",
                        r.event_id, r.deliveries
                    )),
                    Some((_, _, seq)) if !r.duplicate && seq <= asked_seq => Some(format!(
                        "publish of {} answered as new, logged before it was asked",
                        r.event_id
                    )),
                    _ => None,
                }
            }
            (Op::Test { .. }, Answer::Tested(d)) => self
                .audit
                .marked("test", &d.to_string())
                .is_none()
                .then(|| format!("test send {d} acknowledged, not durable")),
            (Op::Retry { delivery, .. }, Answer::Retried) => {
                (!after(self.audit.marked("retried", &delivery.to_string())))
                    .then(|| format!("retry of {delivery} acknowledged, not durable"))
            }
            (Op::Recover { webhook, .. }, Answer::Recovered(count)) => (*count > 0
                && !after(self.audit.marked("recovered", webhook.as_str())))
            .then(|| format!("recover of {count} for {webhook} acknowledged, not durable")),
            // Refused: nothing was logged. (A storage error may come from a crash whose
            // surviving records hold the retry after all.)
            (
                Op::Retry { delivery, .. },
                Answer::Error(EngineError::Rejected(_) | EngineError::RateLimited { .. }),
            ) => {
                if let Some(n) = self.audit.retries_asked.get_mut(delivery) {
                    *n = n.saturating_sub(1);
                }
                None
            }
            _ => None,
        };
        if let Some(b) = broken {
            self.violation(b);
        }
    }
}
