//! [`State::check_invariants`]: every index checked against what it indexes.

use super::State;

impl State {
    /// Panics, naming the broken invariant, unless every index agrees with what it indexes
    /// (the schedule with the deliveries, accounts with webhooks, the publish order with the
    /// publishes). Costs O(size of the state): for tests, which call it after every step.
    pub fn check_invariants(&self) {
        self.schedule.check_invariants(
            self.policy.max_open_per_webhook(),
            self.webhooks.keys(),
            &self.deliveries,
        );
        for (id, d) in &self.deliveries {
            assert_eq!(&d.id, id, "deliveries: {id} is filed under another id");
            assert!(
                d.open.is_some() || !d.cancelled,
                "deliveries: {id} cancelled but waiting"
            );
        }
        let listed: usize = self.accounts.values().map(|a| a.webhooks.len()).sum();
        assert_eq!(
            listed,
            self.webhooks.len(),
            "accounts: webhook lists differ from webhooks"
        );
        for a in self.accounts.values() {
            for w in &a.webhooks {
                let webhook = self.webhooks.get(w);
                assert!(
                    webhook.is_some_and(|w| w.account_id == a.id),
                    "accounts: {} lists {w}, which is not its live webhook",
                    a.id
                );
            }
        }
        assert_eq!(
            self.published_order.len(),
            self.published.len(),
            "published: order and entries differ in size"
        );
        for (at, key) in &self.published_order {
            let p = self.published.get(key);
            assert!(
                p.is_some_and(|p| p.at == *at),
                "published: {key:?} ordered at {at:?} but not published then"
            );
        }
        self.check_spills();
        for (hash, account) in &self.key_hashes {
            let a = self.accounts.get(account);
            assert!(
                a.is_some_and(|a| &a.api_key_hash == hash
                    || a.previous_key.as_ref().is_some_and(|p| &p.hash == hash)),
                "key hashes: {account} is not found by its hash"
            );
        }
        for a in self.accounts.values() {
            assert_eq!(
                self.key_hashes.get(&a.api_key_hash),
                Some(&a.id),
                "key hashes: {} has no entry for its key",
                a.id
            );
        }
    }
}
