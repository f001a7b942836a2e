//! Memory forgets published event ids after `Policy::idempotency_memory`, and a repeat is
//! still a duplicate whatever the commits and the store reads do meanwhile: memory keeps an
//! id until its record is durable, and a publish whose store read came before memory forgot
//! reads the store again.

mod common;
#[path = "common/held.rs"]
mod held;

use common::{account_with_webhook, event_body, T0};
use hallway_domain::{AccountId, DurationMs, Outcome, Policy};
use hallway_runtime::transport::SendFuture;
use hallway_runtime::{
    Config, Engine, EngineHandle, ManualClock, OutgoingRequest, PublishReceipt, Sent, Transport,
};
use hallway_testkit::wait::eventually;
use held::Held;
use std::sync::Arc;
use std::time::Duration;

/// Well past memory's window of one minute.
const LATER_MS: u64 = 10 * 60_000;

/// A receiver that takes everything at once.
struct Accepts;

impl Transport for Accepts {
    fn send(&self, _request: OutgoingRequest, _timeout: Duration) -> SendFuture {
        Box::pin(async {
            Sent::bare(Outcome::Response {
                status: 200,
                duration: DurationMs(1),
            })
        })
    }
}

/// An engine over a held store, memory keeping ids for a minute, retention not pruning
/// anything, with one webhook; its
/// filter of published ids is filled, so a new id reads nothing from the store.
async fn engine(dir: &std::path::Path) -> (Engine, Arc<Held>, ManualClock) {
    let store = Held::open(dir);
    let clock = ManualClock::new(T0);
    let config = Config {
        policy: Policy {
            idempotency_memory: DurationMs::from_mins(1),
            allow_private_targets: true,
            ..Policy::default()
        },
        clock: Arc::new(clock.clone()),
        // Retention runs once, at the start: a record past the window stays in the store.
        maintenance_interval: DurationMs::from_hours(24 * 365),
        transport: Some(Arc::new(Accepts)),
        master_key: Some(hallway_runtime::MasterKey::generate()),
        ..Config::default()
    };
    let engine = Engine::with_store(store.clone(), config).await.unwrap();
    let h = engine.handle();
    account_with_webhook(&h, "https://receiver.example/hook").await;
    eventually("the filter filled", || async {
        h.published_filter_ready().then_some(())
    })
    .await;
    (engine, store, clock)
}

fn account() -> AccountId {
    AccountId::from("acc_1")
}

/// Publishes event `id` in a task of its own.
fn publish(h: &EngineHandle, id: &str) -> tokio::task::JoinHandle<PublishReceipt> {
    let h = h.clone();
    let body = event_body(id);
    tokio::spawn(async move { h.publish(&account(), &body).await.unwrap() })
}

/// Waits until memory holds no id (an expiry on the timer, once the clock passed the window).
async fn forgotten(h: &EngineHandle) {
    eventually("memory to forget every id", || async {
        (h.metrics().remembered_ids == 0).then_some(())
    })
    .await;
}

/// Publishes evt_x, its record held before it is written, then a repeat of it, held after its
/// store read (which cannot know evt_x yet) and before it is decided.
async fn first_and_repeat_held(
    h: &EngineHandle,
    store: &Held,
) -> (
    tokio::task::JoinHandle<PublishReceipt>,
    tokio::task::JoinHandle<PublishReceipt>,
) {
    store.publish_appends.hold(true);
    let first = publish(h, "evt_x");
    eventually("the first record held", || async {
        (store.publish_appends.waiting() == 1).then_some(())
    })
    .await;
    store.reads.hold(true);
    let repeat = publish(h, "evt_x");
    eventually("the repeat's read held", || async {
        (store.reads.waiting() == 1).then_some(())
    })
    .await;
    (first, repeat)
}

/// Lets the held first publish commit, has memory forget its id on the timer alone (a
/// publish decided after the expiry with a read from before it would read again and wait at
/// the held gate), then lets the held repeat be decided. Returns whether each was a duplicate.
async fn commit_forget_and_decide(
    h: &EngineHandle,
    store: &Held,
    clock: &ManualClock,
    first: tokio::task::JoinHandle<PublishReceipt>,
    repeat: tokio::task::JoinHandle<PublishReceipt>,
) -> (bool, bool) {
    store.publish_appends.hold(false);
    let first = first.await.unwrap().duplicate;
    clock.advance_ms(LATER_MS);
    forgotten(h).await;
    store.reads.hold(false);
    (first, repeat.await.unwrap().duplicate)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_whose_record_is_not_durable_yet_outlives_memorys_window() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, store, clock) = engine(dir.path()).await;
    let h = engine.handle();
    let (first, repeat) = first_and_repeat_held(&h, &store).await;
    // Memory's window passes, and another publish has the actor run its housekeeping.
    clock.advance_ms(LATER_MS);
    let other = publish(&h, "evt_y");
    eventually("evt_y decided", || async {
        (h.metrics().published == 2).then_some(())
    })
    .await;
    // The gauge follows the turn that decided evt_y, whose housekeeping came after it.
    eventually("memory to hold evt_x and evt_y", || async {
        (h.metrics().remembered_ids == 2).then_some(())
    })
    .await;
    store.reads.hold(false);
    store.publish_appends.hold(false);
    assert!(
        repeat.await.unwrap().duplicate,
        "memory kept evt_x while its record was not durable"
    );
    assert!(!first.await.unwrap().duplicate);
    assert!(!other.await.unwrap().duplicate);
    assert_eq!(h.metrics().published, 2, "evt_x once, evt_y once");
    engine.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_read_made_before_memory_forgot_an_id_is_made_again() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, store, clock) = engine(dir.path()).await;
    let h = engine.handle();
    // A repeat of evt_x reads the store before the first publish's record is written...
    let (first, repeat) = first_and_repeat_held(&h, &store).await;
    // ...then the record is durable, memory forgets evt_x a window later, and the repeat is
    // decided: what it read is stale, and the store knows evt_x.
    let (first, repeat) = commit_forget_and_decide(&h, &store, &clock, first, repeat).await;
    assert!(!first);
    assert!(repeat, "the repeat read the store again");
    assert_eq!(h.metrics().published, 1, "evt_x once");
    engine.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_forgets_an_id_when_its_window_ends_with_nothing_else_published() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _store, clock) = engine(dir.path()).await;
    let h = engine.handle();
    // The second id is published once memory is empty, with no expiry due any more.
    for id in ["evt_w", "evt_x"] {
        assert!(!publish(&h, id).await.unwrap().duplicate);
        assert_eq!(h.metrics().remembered_ids, 1);
        // Memory's window is a minute: the expiry is due a moment after, on the timer alone.
        clock.advance_ms(60_000 + 1);
        forgotten(&h).await;
        assert!(
            publish(&h, id).await.unwrap().duplicate,
            "the store still knows {id}"
        );
        // The repeat is not remembered again: nothing was published.
        assert_eq!(h.metrics().remembered_ids, 0);
    }
    engine.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_store_read_is_made_again_whatever_it_found() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, store, clock) = engine(dir.path()).await;
    let h = engine.handle();
    // evt_x published once, then its idempotency window passes (its record is still stored).
    assert!(!publish(&h, "evt_x").await.unwrap().duplicate);
    clock.advance_ms(Policy::default().retention.0 + 1_000);
    forgotten(&h).await;
    // evt_x again, new; its repeat reads the old record, which no longer counts.
    // Memory forgets the new evt_x a window later, before the repeat is decided.
    let (first, repeat) = first_and_repeat_held(&h, &store).await;
    let (first, repeat) = commit_forget_and_decide(&h, &store, &clock, first, repeat).await;
    assert!(!first, "past its window evt_x is new");
    assert!(
        repeat,
        "the repeat read the store again and found the new evt_x"
    );
    engine.shutdown().await.unwrap();
}
