//! One webhook's requests: at most `max_in_flight_per_webhook` under way, twice that many
//! attempts open, and a freed slot taken by the next logged attempt at once, while commits
//! are held, so the receiver's slot is never waiting on our bookkeeping.

#[path = "common/held.rs"]
mod held;

use hallway_domain::{
    AccountId, DurationMs, Outcome, Plan, Policy, Timestamp, SESSION_PROCESSING_COMPLETED,
};
use hallway_runtime::transport::SendFuture;
use hallway_runtime::{Config, Engine, ManualClock, NewWebhook, OutgoingRequest, Sent, Transport};
use hallway_testkit::wait::eventually;
use held::Held;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// The moment the test starts at.
const T0: Timestamp = Timestamp(1_768_059_000_000);

/// What the test sees of the transport, and how it lets sends end.
struct Gated {
    started: AtomicUsize,
    under_way: AtomicUsize,
    most_under_way: AtomicUsize,
    release: Semaphore,
    panic_next: AtomicBool,
    /// What the send that panics waits for before it panics.
    panic_gate: Semaphore,
}

impl Gated {
    fn new() -> Gated {
        Gated {
            started: AtomicUsize::new(0),
            under_way: AtomicUsize::new(0),
            most_under_way: AtomicUsize::new(0),
            release: Semaphore::new(0),
            panic_next: AtomicBool::new(false),
            panic_gate: Semaphore::new(0),
        }
    }
}

/// A transport whose sends wait until the test releases them (or panic, when told to).
struct GatedTransport(Arc<Gated>);

impl Transport for GatedTransport {
    fn send(&self, _request: OutgoingRequest, _timeout: Duration) -> SendFuture {
        let gate = self.0.clone();
        Box::pin(async move {
            gate.started.fetch_add(1, Ordering::SeqCst);
            if gate.panic_next.swap(false, Ordering::SeqCst) {
                let _ = gate.panic_gate.acquire().await;
                panic!("a transport that panics");
            }
            let now = gate.under_way.fetch_add(1, Ordering::SeqCst) + 1;
            gate.most_under_way.fetch_max(now, Ordering::SeqCst);
            if let Ok(permit) = gate.release.acquire().await {
                permit.forget();
            }
            gate.under_way.fetch_sub(1, Ordering::SeqCst);
            Sent::bare(Outcome::Response {
                status: 200,
                duration: DurationMs(1),
            })
        })
    }
}

/// An engine over a held store and a gated transport, with one webhook allowing
/// `per_webhook` requests under way.
async fn engine(
    dir: &std::path::Path,
    per_webhook: u32,
) -> (Engine, Arc<Held>, Arc<Gated>, ManualClock) {
    let store = Held::open(dir);
    let gate = Arc::new(Gated::new());
    let clock = ManualClock::new(T0);
    let config = Config {
        policy: Policy {
            max_in_flight_per_webhook: per_webhook,
            allow_private_targets: true,
            ..Policy::default()
        },
        clock: Arc::new(clock.clone()),
        transport: Some(Arc::new(GatedTransport(gate.clone()))),
        master_key: Some(hallway_runtime::MasterKey::generate()),
        ..Config::default()
    };
    let engine = Engine::with_store(store.clone(), config).await.unwrap();
    let h = engine.handle();
    let account = AccountId::from("acc_1");
    h.create_account(&account, "Acme Research", Plan::Pro)
        .await
        .unwrap();
    h.create_webhook(
        &account,
        NewWebhook {
            name: "Receiver".into(),
            url: "https://receiver.example/hook".into(),
            description: None,
            events: vec![SESSION_PROCESSING_COMPLETED.into()],
            project_ids: vec![],
            signature_scheme: hallway_domain::SignatureScheme::Hallway,
        },
    )
    .await
    .unwrap();
    (engine, store, gate, clock)
}

async fn publish(engine: &Engine, n: usize) {
    let h = engine.handle();
    for i in 0..n {
        let receipt = h
            .publish(
                &AccountId::from("acc_1"),
                format!(r#"{{"type":"{SESSION_PROCESSING_COMPLETED}","id":"evt_{i}","project":{{"id":"prj_1"}}}}"#).as_bytes(),
            )
            .await
            .unwrap();
        assert_eq!(receipt.deliveries, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freed_slot_goes_to_the_next_logged_attempt_without_waiting_for_a_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, store, gate, _clock) = engine(dir.path(), 2).await;
    let open = engine.handle().policy().max_open_per_webhook() as usize;
    assert_eq!(open, 8, "four times the requests allowed under way");
    let h = engine.handle();
    publish(&engine, open + 2).await;
    // Two requests under way, the other open attempts logged and waiting behind them.
    eventually("lanes", || async {
        (gate.started.load(Ordering::SeqCst) == 2 && h.metrics().in_flight == open as u64)
            .then_some(())
    })
    .await;
    // A query is answered once every batch decided before it is durable (and dispatched).
    h.account(&AccountId::from("acc_1")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        gate.started.load(Ordering::SeqCst),
        2,
        "a third went out early"
    );

    // No commit can land from now on: each request that ends lets a logged attempt go.
    store.appends.hold(true);
    for sent in 3..=open {
        gate.release.add_permits(1);
        eventually("lanes", || async {
            (gate.started.load(Ordering::SeqCst) == sent).then_some(())
        })
        .await;
    }
    // The logged attempts are spent; the next ones wait for their start to be committed.
    gate.release.add_permits(2);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        gate.started.load(Ordering::SeqCst),
        open,
        "sent before its start was logged"
    );

    store.appends.hold(false);
    gate.release.add_permits(100);
    eventually("lanes", || async {
        let m = h.metrics();
        (m.attempts_succeeded == open as u64 + 2 && m.in_flight == 0).then_some(())
    })
    .await;
    assert_eq!(gate.started.load(Ordering::SeqCst), open + 2);
    assert_eq!(gate.most_under_way.load(Ordering::SeqCst), 2);
    drop(h);
    engine.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transport_that_panics_loses_its_attempt_but_not_the_webhook_slot() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _store, gate, clock) = engine(dir.path(), 1).await;
    let h = engine.handle();
    gate.panic_next.store(true, Ordering::SeqCst);
    gate.release.add_permits(100);
    publish(&engine, 2).await;
    // The first send holds the one slot; the second attempt is logged and waits behind it.
    eventually("lanes", || async {
        (h.metrics().in_flight == 2 && gate.started.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    h.account(&AccountId::from("acc_1")).await.unwrap();
    // The first send panics: the slot passes to the waiting attempt all the same.
    gate.panic_gate.add_permits(1);
    eventually("lanes", || async {
        (h.metrics().attempts_succeeded == 1).then_some(())
    })
    .await;
    // The lost attempt times out at its deadline and its retry succeeds.
    clock.advance_ms(61_000);
    eventually("lanes", || async {
        (h.metrics()
            .attempts_failed
            .iter()
            .map(|(_, n)| n)
            .sum::<u64>()
            == 1)
            .then_some(())
    })
    .await;
    clock.advance_ms(61_000);
    eventually("lanes", || async {
        (h.metrics().attempts_succeeded == 2).then_some(())
    })
    .await;
    assert_eq!(gate.started.load(Ordering::SeqCst), 3);
    drop(h);
    engine.shutdown().await.unwrap();
}
