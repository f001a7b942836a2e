//! The spill index: waiting deliveries the domain moved out of memory, per webhook and spill
//! generation, in runs: a key holds up to [`RUN_MAX`] deliveries in queue order (due time,
//! then id) and is named by its first. A run rather than a key per delivery because sled
//! keeps a page state in memory for every page, cached or not, and a backlog of millions
//! made the index most of the store's pages. Runs of one generation may overlap (a spill can
//! sort between two earlier ones), so the first deliveries are found by merging the runs that
//! start before them. Written from the spill events in the same transaction as their log
//! record, so the index is always the committed log's; read back, in order, to load or
//! settle them.

use super::{keys, Op, SledStore};
use crate::codec;
use crate::StoreError;
use hallway_domain::{
    AccountId, DeliveryId, EventId, FanOutId, SpilledDelivery, Timestamp, WebhookId,
};
use serde::{Deserialize, Serialize};
use sled::IVec;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Most deliveries in a run. A run is rewritten whole when an append extends it or a load
/// takes from it; sixteen runs (a leaf of large values) stay well under sled's blob size.
const RUN_MAX: usize = 32;

/// Where a delivery sorts in its queue.
type QueueKey = (Timestamp, DeliveryId);

/// Most generations whose last run [`OpenRuns`] names; past it a generation's is looked up.
const OPEN_RUNS_MAX: usize = 4096;

/// Each generation's last run's key, as committed, kept by the writer: a backlog appends to
/// every spilling queue's last run in every batch, and finding it in sled is a reverse scan
/// that copies the whole leaf it ends in.
pub(crate) type OpenRuns = HashMap<(WebhookId, u32), Vec<u8>>;

/// Keys to write in the index, each with its new run or `None` to remove it.
pub(crate) type RunChanges = Vec<(IVec, Option<IVec>)>;

/// What a batch leaves as a generation's last run: its key, or `None` when unknown.
pub(crate) type LastRun = ((WebhookId, u32), Option<Vec<u8>>);

/// Notes the last runs a batch committed; an unknown one is forgotten (the next append
/// looks it up).
pub(crate) fn keep_last(open: &mut OpenRuns, lasts: Vec<LastRun>) {
    for (generation, last) in lasts {
        match last {
            Some(k) if open.len() < OPEN_RUNS_MAX || open.contains_key(&generation) => {
                open.insert(generation, k);
            }
            _ => {
                open.remove(&generation);
            }
        }
    }
}

/// The prefix of one webhook's generation in the index.
pub(crate) fn prefix(webhook: &WebhookId, generation: u32) -> Vec<u8> {
    let mut out = keys::history_prefix(webhook);
    out.extend_from_slice(&generation.to_be_bytes());
    out
}

/// A run's key: its webhook and generation, then the due time and id of its first
/// delivery, so that a generation's runs sort by where they start.
pub(crate) fn key(
    webhook: &WebhookId,
    generation: u32,
    due: Timestamp,
    id: &DeliveryId,
) -> Vec<u8> {
    let mut out = prefix(webhook, generation);
    out.extend_from_slice(&due.0.to_be_bytes());
    out.extend_from_slice(&id.fan_out().to_bytes());
    out.extend_from_slice(&id.index().to_be_bytes());
    out
}

/// A key's due time and delivery, after its webhook and generation.
fn parse_tail(tail: &[u8]) -> Option<(Timestamp, DeliveryId)> {
    let due = u64::from_be_bytes(tail.get(..8)?.try_into().ok()?);
    let fan_out = FanOutId::from_bytes(tail.get(8..24)?.try_into().ok()?);
    let index = u32::from_be_bytes(tail.get(24..28)?.try_into().ok()?);
    (tail.len() == 28).then(|| (Timestamp(due), fan_out.delivery(index)))
}

/// Prints a key as `webhook/generation/due/delivery`.
pub(crate) fn show_key(key: &[u8]) -> String {
    let Some((webhook, rest)) = keys::split_prefixed(key) else {
        return format!("{key:02x?}");
    };
    match (rest.get(..4), rest.get(4..).and_then(parse_tail)) {
        (Some(g), Some((due, id))) => format!(
            "{webhook}/{}/{}/{id}",
            u32::from_be_bytes(g.try_into().unwrap_or_default()),
            due.0
        ),
        _ => format!("{key:02x?}"),
    }
}

/// One generation's changes in a batch: each delivery's last state (to keep, or `None`),
/// and the deliveries the index held before the batch (their first change was a removal).
#[derive(Default)]
struct Changes {
    last: BTreeMap<QueueKey, Option<SpilledDelivery>>,
    stored: BTreeSet<QueueKey>,
}

/// The index's changes of one batch, by generation. A delivery a batch spills and loads
/// again ends as its last event left it.
#[derive(Default)]
pub(crate) struct SpillWrites(BTreeMap<(WebhookId, u32), Changes>);

impl SpillWrites {
    /// A delivery spilled to the index.
    pub(crate) fn put(&mut self, webhook: &WebhookId, generation: u32, d: &SpilledDelivery) {
        let changes = self.0.entry((webhook.clone(), generation)).or_default();
        changes.last.insert((d.due, d.id.clone()), Some(d.clone()));
    }

    /// A delivery gone from the index (loaded or settled).
    pub(crate) fn remove(
        &mut self,
        webhook: &WebhookId,
        generation: u32,
        due: Timestamp,
        id: &DeliveryId,
    ) {
        let changes = self.0.entry((webhook.clone(), generation)).or_default();
        let k = (due, id.clone());
        if !changes.last.contains_key(&k) {
            changes.stored.insert(k.clone());
        }
        changes.last.insert(k, None);
    }

    /// The runs to write (or remove, `None`), read against `tree` as the last append left it
    /// (whose last runs `open` names), and the last runs they leave, for [`keep_last`] once
    /// they are committed.
    pub(crate) fn encoded(
        self,
        tree: &sled::Tree,
        open: &OpenRuns,
    ) -> Result<(RunChanges, Vec<LastRun>), StoreError> {
        let mut out = Vec::new();
        let mut lasts = Vec::new();
        for (generation, changes) in self.0 {
            let (webhook, g) = &generation;
            let mut runs = RunWrites::new(tree, webhook, *g);
            let mut before = open.get(&generation).map(|k| Last::Key(k.clone()));
            runs.take(&changes.stored)?;
            runs.add(changes.last.into_values().flatten().collect(), &mut before)?;
            if let Some(before) = before {
                lasts.push((generation.clone(), runs.last_after(before)));
            }
            for (k, run) in runs.writes {
                let value = match run {
                    Some(run) => Some(IVec::from(codec::encode(&StoredRun::of(&run))?)),
                    None => None,
                };
                out.push((IVec::from(k), value));
            }
        }
        Ok((out, lasts))
    }
}

/// A generation's last run before a batch, where known.
enum Last {
    /// The run under this key.
    Key(Vec<u8>),
    /// The generation has no runs.
    Empty,
}

/// One generation's runs as a batch changes them: each key's new run, or `None` to remove it.
struct RunWrites<'a> {
    tree: &'a sled::Tree,
    webhook: &'a WebhookId,
    generation: u32,
    writes: BTreeMap<Vec<u8>, Option<Vec<SpilledDelivery>>>,
}

impl<'a> RunWrites<'a> {
    fn new(tree: &'a sled::Tree, webhook: &'a WebhookId, generation: u32) -> Self {
        RunWrites {
            tree,
            webhook,
            generation,
            writes: BTreeMap::new(),
        }
    }

    /// Takes `gone` out of the runs holding them. They are the first of the generation (loads
    /// and settlements take a queue's head), so only the runs that start before the last of
    /// them are read.
    fn take(&mut self, gone: &BTreeSet<QueueKey>) -> Result<(), StoreError> {
        let Some(last) = gone.last() else {
            return Ok(());
        };
        let mut found = 0;
        let prefix = prefix(self.webhook, self.generation);
        for item in self.tree.scan_prefix(&prefix) {
            let (k, v) = item.op("read the spill index")?;
            if run_start(&k, prefix.len())? > *last {
                break;
            }
            let run = decode_run(&k, prefix.len(), &v)?;
            let before = run.len();
            let kept: Vec<SpilledDelivery> = run
                .into_iter()
                .filter(|d| !gone.contains(&(d.due, d.id.clone())))
                .collect();
            if kept.len() == before {
                continue;
            }
            found += before - kept.len();
            self.writes.insert(k.to_vec(), None);
            if let Some(first) = kept.first() {
                let new = key(self.webhook, self.generation, first.due, &first.id);
                self.writes.insert(new, Some(kept));
            }
        }
        if found != gone.len() {
            return Err(StoreError::Corrupt {
                tree: keys::SPILLED,
                key: show_key(&key(self.webhook, self.generation, last.0, &last.1)),
                reason: format!(
                    "{} of {} deliveries loaded or settled were not in the index",
                    gone.len() - found,
                    gone.len()
                ),
            });
        }
        Ok(())
    }

    /// Adds `puts` (in queue order): the generation's last run takes those that sort after
    /// it while it has room (a backlog spills each queue's newest deliveries append by append,
    /// in order), new runs the rest. `last` names that run if known, and is found otherwise.
    fn add(
        &mut self,
        puts: Vec<SpilledDelivery>,
        last: &mut Option<Last>,
    ) -> Result<(), StoreError> {
        let mut puts = puts.into_iter().peekable();
        if puts.peek().is_none() {
            return Ok(());
        }
        let prefix = prefix(self.webhook, self.generation);
        let known = match last {
            Some(Last::Key(k)) => self
                .tree
                .get(&k[..])
                .op("read the spill index")?
                .map(|v| (IVec::from(&k[..]), v)),
            _ => None,
        };
        let found = match known {
            Some(pair) => Some(pair),
            None => self
                .tree
                .scan_prefix(&prefix)
                .next_back()
                .transpose()
                .op("read the spill index")?,
        };
        *last = Some(match &found {
            Some((k, _)) => Last::Key(k.to_vec()),
            None => Last::Empty,
        });
        if let Some((k, v)) = found {
            // A run this batch already rewrote is left as it is.
            if !self.writes.contains_key(&k[..]) {
                let mut run = decode_run(&k, prefix.len(), &v)?;
                let grows = |run: &Vec<SpilledDelivery>, d: &SpilledDelivery| {
                    run.len() < RUN_MAX && run.last().is_some_and(|l| l.key() < d.key())
                };
                if puts.peek().is_some_and(|d| grows(&run, d)) {
                    while let Some(d) = puts.next_if(|d| grows(&run, d)) {
                        run.push(d);
                    }
                    self.writes.insert(k.to_vec(), Some(run));
                }
            }
        }
        let rest: Vec<SpilledDelivery> = puts.collect();
        for chunk in rest.chunks(RUN_MAX) {
            let first = &chunk[0];
            let k = key(self.webhook, self.generation, first.due, &first.id);
            self.writes.insert(k, Some(chunk.to_vec()));
        }
        Ok(())
    }

    /// The generation's last run once this batch's writes are committed, given the last
    /// before them; `None` when the writes do not tell (the last was taken, and what else
    /// the generation holds was not read).
    fn last_after(&self, before: Last) -> Option<Vec<u8>> {
        let written = self
            .writes
            .iter()
            .rev()
            .find_map(|(k, run)| run.as_ref().map(|_| k.clone()));
        match before {
            Last::Empty => written,
            // Every other stored run starts before the last, so a written run after it is
            // the new last even when the last itself was taken.
            Last::Key(k) => match (self.writes.get(&k), written) {
                (Some(None), Some(w)) if w > k => Some(w),
                (Some(None), _) => None,
                (_, w) => Some(w.map_or(k.clone(), |w| w.max(k))),
            },
        }
    }
}

/// Where the run under `k` starts: its key after the generation's prefix.
fn run_start(k: &[u8], prefix_len: usize) -> Result<QueueKey, StoreError> {
    k.get(prefix_len..)
        .and_then(parse_tail)
        .ok_or_else(|| StoreError::Corrupt {
            tree: keys::SPILLED,
            key: show_key(k),
            reason: "not a spill key".into(),
        })
}

/// The first `limit` spilled deliveries of a webhook's generation, in queue order: the runs
/// merged, read until the next one starts after the `limit`th delivery found.
pub(super) fn read(
    store: &SledStore,
    webhook: &WebhookId,
    generation: u32,
    limit: usize,
) -> Result<Vec<SpilledDelivery>, StoreError> {
    read_tree(&store.trees.spilled, webhook, generation, limit)
}

fn read_tree(
    tree: &sled::Tree,
    webhook: &WebhookId,
    generation: u32,
    limit: usize,
) -> Result<Vec<SpilledDelivery>, StoreError> {
    let mut out: Vec<SpilledDelivery> = Vec::new();
    let prefix = prefix(webhook, generation);
    for item in tree.scan_prefix(&prefix) {
        let (k, v) = item.op("read the spill index")?;
        if out.len() >= limit {
            out.sort_by(|a, b| a.key().cmp(&b.key()));
            out.truncate(limit);
            let start = run_start(&k, prefix.len())?;
            if out.last().is_none_or(|d| d.key() < (start.0, &start.1)) {
                break;
            }
        }
        out.extend(decode_run(&k, prefix.len(), &v)?);
    }
    out.sort_by(|a, b| a.key().cmp(&b.key()));
    out.truncate(limit);
    Ok(out)
}

/// Every delivery in the index as (webhook, delivery, due), for the consistency check.
pub(super) fn all(store: &SledStore) -> Result<Vec<(String, DeliveryId, Timestamp)>, StoreError> {
    all_in(&store.trees.spilled)
}

fn all_in(tree: &sled::Tree) -> Result<Vec<(String, DeliveryId, Timestamp)>, StoreError> {
    let mut out = Vec::new();
    for item in tree.iter() {
        let (k, v) = item.op("read the spill index")?;
        let (webhook, rest) = keys::split_prefixed(&k).ok_or_else(|| StoreError::Corrupt {
            tree: keys::SPILLED,
            key: show_key(&k),
            reason: "not a spill key".into(),
        })?;
        let prefix_len = k.len() - rest.len() + 4;
        for d in decode_run(&k, prefix_len, &v)? {
            out.push((webhook.to_owned(), d.id, d.due));
        }
    }
    Ok(out)
}

/// The run under key `k` (whose generation's prefix is `prefix_len` bytes), checked: not
/// empty, in queue order, and named by its first delivery.
fn decode_run(k: &[u8], prefix_len: usize, v: &[u8]) -> Result<Vec<SpilledDelivery>, StoreError> {
    let run = codec::decode::<StoredRun>(keys::SPILLED, || show_key(k), v)?.deliveries();
    let corrupt = |reason: String| StoreError::Corrupt {
        tree: keys::SPILLED,
        key: show_key(k),
        reason,
    };
    let Some(first) = run.first() else {
        return Err(corrupt("an empty run".into()));
    };
    // The pair check: the key names the run's first delivery.
    if run_start(k, prefix_len)? != (first.due, first.id.clone()) {
        return Err(corrupt(format!(
            "starts with {} due at {}",
            first.id, first.due.0
        )));
    }
    if let Some(w) = run.windows(2).find(|w| w[0].key() >= w[1].key()) {
        return Err(corrupt(format!("{} is out of queue order", w[1].id)));
    }
    Ok(run)
}

/// A run as stored: what its deliveries share said once (a webhook's deliveries are of one
/// account, and mostly of one event type), then each one's own fields. About half of a
/// delivery's bytes are its account and type, and a run is rewritten whole as it grows.
#[derive(Serialize, Deserialize)]
struct StoredRun {
    account_id: AccountId,
    event_type: String,
    deliveries: Vec<StoredDelivery>,
}

/// A delivery of a [`StoredRun`]: its account and event type only where they differ from
/// the run's.
#[derive(Serialize, Deserialize)]
struct StoredDelivery {
    id: DeliveryId,
    account_id: Option<AccountId>,
    event_id: EventId,
    event_type: Option<String>,
    test: bool,
    created_at: Timestamp,
    attempts_made: u32,
    max_attempts: u32,
    due: Timestamp,
}

impl StoredRun {
    /// `run` (not empty) as stored.
    fn of(run: &[SpilledDelivery]) -> StoredRun {
        let (account_id, event_type) = run
            .first()
            .map(|d| (d.account_id.clone(), d.event_type.clone()))
            .unwrap_or_else(|| (AccountId::from(""), String::new()));
        let deliveries = run
            .iter()
            .map(|d| StoredDelivery {
                id: d.id.clone(),
                account_id: (d.account_id != account_id).then(|| d.account_id.clone()),
                event_id: d.event_id.clone(),
                event_type: (d.event_type != event_type).then(|| d.event_type.clone()),
                test: d.test,
                created_at: d.created_at,
                attempts_made: d.attempts_made,
                max_attempts: d.max_attempts,
                due: d.due,
            })
            .collect();
        StoredRun {
            account_id,
            event_type,
            deliveries,
        }
    }

    /// The run's deliveries, whole again.
    fn deliveries(self) -> Vec<SpilledDelivery> {
        let StoredRun {
            account_id,
            event_type,
            deliveries,
        } = self;
        deliveries
            .into_iter()
            .map(|d| SpilledDelivery {
                id: d.id,
                account_id: d.account_id.unwrap_or_else(|| account_id.clone()),
                event_id: d.event_id,
                event_type: d.event_type.unwrap_or_else(|| event_type.clone()),
                test: d.test,
                created_at: d.created_at,
                attempts_made: d.attempts_made,
                max_attempts: d.max_attempts,
                due: d.due,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A delivery due at `due`; every fifth of another event type, every seventh of another
    /// account (a run stores what most share once).
    fn delivery(due: u64, n: u32) -> SpilledDelivery {
        SpilledDelivery {
            id: FanOutId::new(Timestamp(due), [7; 10]).delivery(n),
            account_id: if n.is_multiple_of(7) {
                "acc_2"
            } else {
                "acc_1"
            }
            .into(),
            event_id: format!("evt_{n}").as_str().into(),
            event_type: if n.is_multiple_of(5) {
                "session.created"
            } else {
                "session.processing.completed"
            }
            .into(),
            test: false,
            created_at: Timestamp(due),
            attempts_made: 1,
            max_attempts: 5,
            due: Timestamp(due),
        }
    }

    /// A batch's change to one of two webhooks' queues.
    #[derive(Clone, Debug)]
    enum Change {
        /// Spill deliveries due at these times (ids from a counter, so never repeated).
        Spill(usize, Vec<u64>),
        /// Load the queue's first `n` (as many as it has).
        Load(usize, usize),
        /// Load the first `n` and spill them again in the same batch.
        Reload(usize, usize),
        /// Forget the last runs the writer knows, as a reopened store starts.
        Reopen,
    }

    fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            3 => (0..2usize, prop::collection::vec(0..400u64, 1..70)).prop_map(|(w, d)| Change::Spill(w, d)),
            2 => (0..2usize, 0..80usize).prop_map(|(w, n)| Change::Load(w, n)),
            1 => (0..2usize, 0..40usize).prop_map(|(w, n)| Change::Reload(w, n)),
            1 => Just(Change::Reopen),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The runs read back as the model's queues, whatever the spills' overlap, the loads'
        /// reach across runs and the batches' mix.
        #[test]
        fn runs_read_back_as_the_queues_they_hold(
            batches in prop::collection::vec(prop::collection::vec(change(), 1..4), 1..25),
            limits in prop::collection::vec(0..120usize, 3),
        ) {
            let db = sled::Config::new().temporary(true).open().expect("opens");
            let tree = db.open_tree("spilled").expect("tree");
            let webhooks = [WebhookId::from("wh_a"), WebhookId::from("wh_b")];
            let mut model: [BTreeMap<QueueKey, SpilledDelivery>; 2] = Default::default();
            let mut next_id = 0u32;
            let mut open = OpenRuns::new();
            for batch in batches {
                let mut writes = SpillWrites::default();
                for c in batch {
                    match c {
                        Change::Reopen => open.clear(),
                        Change::Spill(w, dues) => {
                            for due in dues {
                                next_id += 1;
                                let d = delivery(due, next_id);
                                if model[w].contains_key(&(d.due, d.id.clone())) {
                                    continue;
                                }
                                writes.put(&webhooks[w], 0, &d);
                                model[w].insert((d.due, d.id.clone()), d);
                            }
                        }
                        Change::Load(w, n) | Change::Reload(w, n) => {
                            let head: Vec<SpilledDelivery> = model[w].values().take(n).cloned().collect();
                            for d in &head {
                                writes.remove(&webhooks[w], 0, d.due, &d.id);
                                model[w].remove(&(d.due, d.id.clone()));
                            }
                            if matches!(c, Change::Reload(..)) {
                                for d in head {
                                    writes.put(&webhooks[w], 0, &d);
                                    model[w].insert((d.due, d.id.clone()), d);
                                }
                            }
                        }
                    }
                }
                let (runs, lasts) = writes.encoded(&tree, &open).expect("encodes");
                for (k, v) in runs {
                    match v {
                        Some(v) => tree.insert(k, v).map(|_| ()),
                        None => tree.remove(k).map(|_| ()),
                    }
                    .expect("writes");
                }
                keep_last(&mut open, lasts);
                for ((webhook, g), k) in &open {
                    let last = tree.scan_prefix(prefix(webhook, *g)).next_back().expect("a run");
                    prop_assert_eq!(&last.expect("reads").0[..], &k[..]);
                }
                for (w, queue) in model.iter().enumerate() {
                    for &limit in &limits {
                        let want: Vec<SpilledDelivery> = queue.values().take(limit).cloned().collect();
                        prop_assert_eq!(read_tree(&tree, &webhooks[w], 0, limit).expect("reads"), want);
                    }
                    prop_assert_eq!(
                        read_tree(&tree, &webhooks[w], 0, usize::MAX).expect("reads").len(),
                        queue.len()
                    );
                }
                let total: usize = model.iter().map(BTreeMap::len).sum();
                prop_assert_eq!(all_in(&tree).expect("reads all").len(), total);
            }
            let runs = tree.len();
            let total: usize = model.iter().map(BTreeMap::len).sum();
            prop_assert!(runs <= total, "{} runs for {} deliveries", runs, total);
        }
    }

    #[test]
    fn a_run_stores_its_account_and_type_once_and_reads_back_whole() {
        let run: Vec<SpilledDelivery> = (1..=RUN_MAX as u32)
            .map(|n| delivery(u64::from(n), n))
            .collect();
        let stored = codec::encode(&StoredRun::of(&run)).expect("encodes");
        let plain = codec::encode(&run).expect("encodes");
        assert!(
            stored.len() * 3 < plain.len() * 2,
            "{} bytes against {}",
            stored.len(),
            plain.len()
        );
        let back: StoredRun = codec::decode(keys::SPILLED, String::new, &stored).expect("decodes");
        assert_eq!(back.deliveries(), run);
    }

    #[test]
    fn a_backlog_spilled_in_order_is_a_run_per_thirty_two_deliveries() {
        let db = sled::Config::new().temporary(true).open().expect("opens");
        let tree = db.open_tree("spilled").expect("tree");
        let w = WebhookId::from("wh_1");
        // One delivery an append, each due after the last, as a fill spills them.
        let mut open = OpenRuns::new();
        for n in 0..200u32 {
            let mut writes = SpillWrites::default();
            writes.put(&w, 0, &delivery(1_000 + u64::from(n), n));
            let (runs, lasts) = writes.encoded(&tree, &open).expect("encodes");
            for (k, v) in runs {
                tree.insert(k, v.expect("a run")).expect("writes");
            }
            keep_last(&mut open, lasts);
            assert!(
                open.contains_key(&(w.clone(), 0)),
                "the writer knows the last run"
            );
        }
        assert_eq!(tree.len(), 200usize.div_ceil(RUN_MAX));
        assert_eq!(
            read_tree(&tree, &w, 0, usize::MAX).expect("reads").len(),
            200
        );
    }

    #[test]
    fn keys_sort_in_queue_order_within_a_generation_and_print_back() {
        let w = WebhookId::from("wh_1");
        let id = |n: u8, i: u32| FanOutId::from_bytes([n; 16]).delivery(i);
        let early = key(&w, 3, Timestamp(5), &id(9, 0));
        let tie = key(&w, 3, Timestamp(6), &id(1, 0));
        let later = key(&w, 3, Timestamp(6), &id(1, 1));
        assert!(early < tie && tie < later);
        assert!(later.starts_with(&prefix(&w, 3)));
        assert!(!later.starts_with(&prefix(&w, 4)));
        assert!(key(&w, 2, Timestamp(u64::MAX), &id(0xff, 9)) < early);
        assert!(
            !key(&WebhookId::from("wh_10"), 3, Timestamp(0), &id(0, 0)).starts_with(&prefix(&w, 3))
        );
        assert_eq!(show_key(&early), format!("wh_1/3/5/{}", id(9, 0)));
    }
}
