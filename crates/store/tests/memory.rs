//! The in-memory backend against the sled one: the same batches read back the same history,
//! payloads and log; and a simulated crash keeps exactly what was flushed (plus the prefix of
//! unflushed records it is told reached the disk).

mod common;

use common::{walk_pages, Sim};
use hallway_domain::*;
use hallway_store::{
    DeliveryFilter, DeliveryRecord, DeliveryStatus, EventLog, MemoryStore, ReadModel, SledStore,
    StoreError, Truncation,
};
use hallway_testkit::driver::step;
use hallway_testkit::ids::dlv;

/// Every page of a webhook's history in the memory store, `size` at a time.
fn walk_memory(store: &MemoryStore, webhook: &WebhookId, size: usize) -> Vec<DeliveryRecord> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .deliveries(webhook, size, cursor.as_deref())
            .expect("pages");
        seen.extend(page.data);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return seen,
        }
    }
}

/// Runs a command, ignoring a rejection (the mix below asks for things that may not apply).
fn try_run(sim: &mut Sim, kind: CommandKind) -> Vec<Event> {
    step(&mut sim.state, sim.now, kind).unwrap_or_default()
}

/// A batch mixing what the engine logs: publishes, outcomes, disables (pausing), re-enables,
/// recovers and retries (read from `history`), test sends and a delete.
fn mixed_batch(sim: &mut Sim, i: u64, history: &dyn ReadModel) -> Vec<Event> {
    let account = sim.account.clone();
    let webhook = WebhookId::from(format!("wh_{}", sim.next_random() % 4));
    let mut events = sim.batch((i % 3) as usize, 300, 40);
    match sim.next_random() % 10 {
        0 => events.extend(try_run(
            sim,
            CommandKind::UpdateWebhook {
                account_id: account,
                webhook_id: webhook,
                changes: WebhookChanges {
                    enabled: Some(false),
                    ..WebhookChanges::default()
                },
            },
        )),
        1 => events.extend(try_run(
            sim,
            CommandKind::UpdateWebhook {
                account_id: account,
                webhook_id: webhook,
                changes: WebhookChanges {
                    enabled: Some(true),
                    ..WebhookChanges::default()
                },
            },
        )),
        2 => {
            let candidates = history
                .deliveries(&webhook, 50, None)
                .expect("pages")
                .data
                .into_iter()
                .filter(|r| !r.test)
                .map(|r| RecoverCandidate {
                    succeeded: r.status == DeliveryStatus::Succeeded,
                    delivery: summary(&r),
                })
                .collect();
            events.extend(try_run(
                sim,
                CommandKind::RecoverDeliveries {
                    account_id: account,
                    webhook_id: webhook,
                    candidates,
                },
            ));
        }
        3 => {
            let finished = history
                .deliveries(&webhook, 20, None)
                .expect("pages")
                .data
                .into_iter()
                .find(|r| r.status != DeliveryStatus::Pending);
            if let Some(r) = finished {
                events.extend(try_run(
                    sim,
                    CommandKind::RetryDelivery {
                        account_id: account,
                        delivery: summary(&r),
                    },
                ));
            }
        }
        4 => {
            let n = sim.next_random();
            events.extend(try_run(
                sim,
                CommandKind::SendTest {
                    account_id: account,
                    webhook_id: webhook,
                    delivery_id: dlv(&format!("t{:x}", n >> 4)),
                    event_id: EventId::from(format!("evt_test_{n:x}")),
                    event_type: SESSION_PROCESSING_COMPLETED.to_owned(),
                    example_fields: r#","project":{"id":"prj_e"}"#.to_owned(),
                },
            ));
        }
        5 if i > 150 => events.extend(try_run(
            sim,
            CommandKind::DeleteWebhook {
                account_id: account,
                webhook_id: webhook,
            },
        )),
        _ => {}
    }
    events.extend(sim.tick());
    events
}

fn summary(r: &DeliveryRecord) -> DeliverySummary {
    DeliverySummary {
        delivery_id: r.id.clone(),
        webhook_id: r.webhook_id.clone(),
        account_id: r.account_id.clone(),
        event_id: r.event_id.clone(),
        event_type: r.event_type.clone(),
        test: r.test,
        created_at: r.created_at,
        attempts_made: r.attempts.len() as u32,
    }
}

/// Every page of a webhook's history that passes `filter`, `size` at a time.
fn walk_filtered(
    store: &dyn ReadModel,
    webhook: &WebhookId,
    filter: &DeliveryFilter,
) -> Vec<DeliveryRecord> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .deliveries_where(webhook, filter, 5, cursor.as_deref())
            .expect("pages");
        seen.extend(page.data);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return seen,
        }
    }
}

fn assert_same_reads(sled: &SledStore, memory: &MemoryStore, events: &[Event], when: &str) {
    for w in 0..4 {
        let webhook = WebhookId::from(format!("wh_{w}"));
        let a = walk_pages(sled, &webhook, 7);
        let b = walk_memory(memory, &webhook, 7);
        assert_eq!(a, b, "{when}: history of {webhook}");
        let middle = a.get(a.len() / 2).map(|r| r.created_at);
        for filter in [
            DeliveryFilter {
                status: Some(DeliveryStatus::Failed),
                ..DeliveryFilter::default()
            },
            DeliveryFilter {
                since: middle,
                ..DeliveryFilter::default()
            },
            DeliveryFilter {
                status: Some(DeliveryStatus::Succeeded),
                until: middle,
                ..DeliveryFilter::default()
            },
        ] {
            assert_eq!(
                walk_filtered(sled, &webhook, &filter),
                walk_filtered(memory, &webhook, &filter),
                "{when}: {filter:?} of {webhook}"
            );
        }
        for r in &a {
            assert_eq!(
                memory.delivery(&webhook, &r.id).expect("reads").as_ref(),
                Some(r),
                "{when}: {}",
                r.id
            );
        }
    }
    for e in events {
        if let Event::EventPublished {
            account_id,
            event_id,
            ..
        }
        | Event::TestDeliveryCreated {
            account_id,
            event_id,
            ..
        } = e
        {
            assert_eq!(
                sled.payload(account_id, event_id).expect("reads"),
                memory.payload(account_id, event_id).expect("reads"),
                "{when}: payload of {event_id}"
            );
        }
    }
}

#[test]
fn the_memory_store_reads_back_what_sled_reads_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sled = SledStore::open(dir.path()).expect("opens");
    let memory = MemoryStore::new();
    let policy = Policy {
        auto_disable_after: 6,
        ..Policy::default()
    };
    let (mut sim, setup) = Sim::new(policy, 4, 7);
    let mut all = setup.clone();
    assert_eq!(sled.append(&setup).expect("appends"), 1);
    assert_eq!(memory.append(&setup).expect("appends"), 1);
    let mut statuses = std::collections::BTreeSet::new();
    for i in 0..300u64 {
        sim.advance(45_000);
        let batch = mixed_batch(&mut sim, i, &memory);
        let seq = sled.append(&batch).expect("appends");
        assert_eq!(memory.append(&batch).expect("appends"), seq);
        all.extend(batch);
        if i % 25 == 0 {
            assert_same_reads(&sled, &memory, &all, &format!("batch {i}"));
        }
        if i % 100 == 99 {
            // Retention at a cut-off inside the run: both remove the same deliveries.
            let cut = Timestamp(sim.now.0 - 60 * 60 * 1000);
            assert_eq!(
                sled.prune(cut).expect("prunes"),
                memory.prune(cut).expect("prunes")
            );
        }
        for w in 0..4 {
            for r in walk_memory(&memory, &WebhookId::from(format!("wh_{w}")), 100) {
                statuses.insert(format!("{:?}", r.status));
            }
        }
    }
    assert_same_reads(&sled, &memory, &all, "the end");
    // Purging the account's history leaves both with the same (pending) rest.
    let webhooks: Vec<WebhookId> = (0..4).map(|w| WebhookId::from(format!("wh_{w}"))).collect();
    let purged = sled.purge_account(&sim.account, &webhooks).expect("purges");
    assert!(purged > 0, "the run left finished deliveries to purge");
    assert_eq!(
        memory
            .purge_account(&sim.account, &webhooks)
            .expect("purges"),
        purged
    );
    assert_same_reads(&sled, &memory, &all, "after the purge");
    // The mix reached every status, so every rule above was compared.
    assert_eq!(statuses.len(), 5, "{statuses:?}");
    // The same records; bodies aside, which sled puts back from its payloads (gone once
    // retention removed them) and this backend keeps in the records.
    let read = |store: &dyn EventLog| -> Vec<(u64, Vec<Event>)> {
        let without_body = |mut e: Event| {
            if let Event::EventPublished { body, .. } | Event::TestDeliveryCreated { body, .. } =
                &mut e
            {
                body.clear();
            }
            e
        };
        store
            .read_log(1)
            .map(|r| {
                let (seq, events) = r.expect("reads");
                (seq, events.into_iter().map(without_body).collect())
            })
            .collect()
    };
    assert_eq!(read(&sled), read(&memory));
}

#[test]
fn a_crash_keeps_what_was_flushed_and_the_surviving_prefix() {
    let (mut sim, setup) = Sim::new(Policy::default(), 2, 11);
    let mut batches = vec![setup];
    for _ in 0..6 {
        sim.advance(70_000);
        batches.push(sim.batch(2, 200, 50));
    }
    let memory = MemoryStore::new();
    for b in &batches[..3] {
        memory.append(b).expect("appends");
    }
    memory.flush().expect("flushes");
    for b in &batches[3..] {
        memory.append(b).expect("appends");
    }
    assert_eq!(memory.unflushed(), 4);
    memory.crash(1);
    assert_eq!(memory.unflushed(), 0);
    assert_eq!(memory.last_seq().expect("reads"), 4);
    // The same as a store that only ever saw the surviving records.
    let expected = MemoryStore::new();
    for b in &batches[..4] {
        expected.append(b).expect("appends");
    }
    let everything: Vec<Event> = batches.concat();
    for w in 0..2 {
        let webhook = WebhookId::from(format!("wh_{w}"));
        assert_eq!(
            walk_memory(&memory, &webhook, 5),
            walk_memory(&expected, &webhook, 5)
        );
    }
    for e in &everything {
        if let Event::EventPublished {
            account_id,
            event_id,
            ..
        } = e
        {
            assert_eq!(
                memory.payload(account_id, event_id).expect("reads"),
                expected.payload(account_id, event_id).expect("reads")
            );
        }
    }
    // Numbering goes on after the survivors.
    assert_eq!(memory.append(&batches[4]).expect("appends"), 5);
}

#[test]
fn a_snapshot_reads_back_and_truncation_stops_at_it() {
    let (mut sim, setup) = Sim::new(Policy::default(), 2, 5);
    let memory = MemoryStore::new();
    memory.append(&setup).expect("appends");
    for _ in 0..5 {
        sim.advance(30_000);
        memory.append(&sim.batch(1, 200, 30)).expect("appends");
    }
    memory.flush().expect("flushes");
    // Truncation never passes the latest snapshot: with none, nothing goes.
    assert_eq!(memory.truncate(6, Truncation::Now).expect("truncates"), 0);
    memory.save_snapshot(4, &sim.state).expect("snapshots");
    let (seq, loaded) = memory.load_snapshot().expect("loads").expect("a snapshot");
    assert_eq!((seq, &loaded), (4, &sim.state));
    assert_eq!(memory.truncate(6, Truncation::Now).expect("truncates"), 4);
    assert!(matches!(
        memory.read_log(3).next(),
        Some(Err(StoreError::Truncated {
            from: 3,
            first_kept: 5
        }))
    ));
    let kept: Vec<u64> = memory.read_log(5).map(|r| r.expect("reads").0).collect();
    assert_eq!(kept, vec![5, 6]);
    assert!(
        memory.write_snapshot(9, &sim.state).is_err(),
        "ahead of the log"
    );
    // A crash does not bring truncated records back.
    memory.crash(0);
    assert_eq!(memory.read_log(5).count(), 2);
}
