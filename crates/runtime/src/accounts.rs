//! Accounts as a host manages them: create, change, list, rotate keys, delete, and the API
//! key check.

use crate::{ids, EngineError, EngineHandle};
use hallway_domain::{
    Account, AccountChanges, AccountId, CommandKind, Event, Plan, Rejection, WebhookId,
};

impl EngineHandle {
    /// Creates an account; returns it with its API key, which is shown only this once.
    pub async fn create_account(
        &self,
        id: &AccountId,
        name: &str,
        plan: Plan,
    ) -> Result<(Account, String), EngineError> {
        let key = ids::api_key(&*self.random);
        let account_id = id.clone();
        let lookup = account_id.clone();
        let account = self
            .exec(
                CommandKind::CreateAccount {
                    account_id,
                    name: name.to_owned(),
                    plan,
                    api_key_hash: ids::hash_api_key(&key),
                },
                move |_, s| s.account(&lookup).cloned(),
            )
            .await?
            .ok_or(EngineError::Closed)?;
        Ok((account, key))
    }

    /// Changes an account's name or plan.
    pub async fn update_account(
        &self,
        id: &AccountId,
        changes: AccountChanges,
    ) -> Result<Account, EngineError> {
        let lookup = id.clone();
        self.exec(
            CommandKind::UpdateAccount {
                account_id: id.clone(),
                name: changes.name,
                plan: changes.plan,
            },
            move |_, s| s.account(&lookup).cloned(),
        )
        .await?
        .ok_or_else(|| Rejection::AccountNotFound(id.clone()).into())
    }

    /// An account.
    pub async fn account(&self, id: &AccountId) -> Result<Account, EngineError> {
        let lookup = id.clone();
        self.query(move |s| s.account(&lookup).cloned())
            .await?
            .ok_or_else(|| Rejection::AccountNotFound(id.clone()).into())
    }

    /// Accounts by id, `limit` at a time after the id `after`; also whether more follow.
    pub async fn list_accounts(
        &self,
        limit: usize,
        after: Option<&str>,
    ) -> Result<(Vec<Account>, bool), EngineError> {
        let after = after.map(AccountId::from);
        self.query(move |s| {
            let mut page: Vec<Account> = s
                .accounts()
                .filter(|a| after.as_ref().is_none_or(|after| &a.id > after))
                .take(limit + 1)
                .cloned()
                .collect();
            let more = page.len() > limit;
            page.truncate(limit);
            (page, more)
        })
        .await
    }

    /// Gives an account a new API key, shown only this once; the old key stops working at
    /// once, or when `grace` has passed (answered too).
    pub async fn rotate_account_key(
        &self,
        account: &AccountId,
        grace: hallway_domain::DurationMs,
    ) -> Result<(String, Option<hallway_domain::Timestamp>), EngineError> {
        let key = ids::api_key(&*self.random);
        let until = self
            .exec(
                CommandKind::RotateAccountKey {
                    account_id: account.clone(),
                    api_key_hash: ids::hash_api_key(&key),
                    grace,
                },
                |events, _| match events.first() {
                    Some(Event::AccountKeyRotated {
                        previous_valid_until,
                        ..
                    }) => *previous_valid_until,
                    _ => None,
                },
            )
            .await?;
        Ok((key, until))
    }

    /// Deletes an account: its webhooks (their pending deliveries cancelled), its keys and its
    /// remembered event ids at once, then its history and bodies from the store (deliveries
    /// still under way are left to retention). Answers how many deliveries were removed.
    pub async fn delete_account(&self, account: &AccountId) -> Result<u64, EngineError> {
        let webhooks = self
            .exec(
                CommandKind::DeleteAccount {
                    account_id: account.clone(),
                },
                |events, _| {
                    events
                        .iter()
                        .filter_map(|e| match e {
                            Event::WebhookDeleted { webhook_id, .. } => Some(webhook_id.clone()),
                            _ => None,
                        })
                        .collect::<Vec<WebhookId>>()
                },
            )
            .await?;
        let store = self.store.clone();
        let account = account.clone();
        let removed = tokio::task::spawn_blocking(move || store.purge_account(&account, &webhooks))
            .await
            .map_err(EngineError::from)??;
        Ok(removed)
    }

    /// The account an API key belongs to, if any.
    pub async fn authenticate(&self, api_key: &str) -> Result<Option<AccountId>, EngineError> {
        let hash = ids::hash_api_key(api_key);
        let now = self.now();
        self.query(move |s| s.account_by_key_hash(&hash, now).map(|a| a.id.clone()))
            .await
    }
}
