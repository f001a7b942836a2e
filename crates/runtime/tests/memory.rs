//! The engine over the in-memory store, which the runtime calls on its own tasks: what the
//! deterministic simulation (crates/sim) relies on, and what it found.

use hallway_domain::{
    signature, AccountId, DurationMs, Event, Outcome, Plan, SignatureScheme, Timestamp,
    WebhookChanges, SESSION_PROCESSING_COMPLETED,
};
use hallway_runtime::transport::{OutgoingRequest, SendFuture, Sent, Transport};
use hallway_runtime::{Config, Engine, ManualClock, MasterKey, NewWebhook};
use hallway_store::{EventLog, MemoryStore, ReadModel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Answers 200 to everything, and notes each request's URL and signature with whether the
/// store's log held that URL and that secret's rotation at the moment it was sent.
struct Recorder {
    store: Arc<MemoryStore>,
    sent: Mutex<Vec<(String, String, bool)>>,
}

struct Recording(Arc<Recorder>);

impl Transport for Recording {
    fn send(&self, request: OutgoingRequest, _timeout: Duration) -> SendFuture {
        let logged_url = self.0.store.read_log(1).any(|record| {
            record.expect("reads").1.iter().any(|e| match e {
                Event::WebhookCreated { config, .. } | Event::WebhookUpdated { config, .. } => {
                    config.url == request.url
                }
                _ => false,
            })
        });
        // The scheme the attempt was signed under shows in which header it carries.
        let hallway = request
            .headers
            .iter()
            .find(|(name, _)| *name == signature::HEADER_NAME)
            .map(|(_, value)| value.clone());
        self.0.sent.lock().unwrap().push((
            request.url,
            hallway.unwrap_or_else(|| "(not the hallway scheme)".into()),
            logged_url,
        ));
        Box::pin(async {
            Sent::bare(Outcome::Response {
                status: 200,
                duration: DurationMs(1),
            })
        })
    }
}

/// Found by the simulation: an attempt of a batch that just landed was sent to the URL, and
/// signed with the secret (and scheme), of an update and a rotation decided while that batch
/// committed,
/// before they were durable (a crash then would have lost them, after the payload went out).
#[tokio::test]
async fn an_attempt_goes_where_the_durable_log_says_not_where_an_unlogged_change_says() {
    let store = Arc::new(MemoryStore::new());
    let recorder = Arc::new(Recorder {
        store: store.clone(),
        sent: Mutex::new(Vec::new()),
    });
    let config = Config {
        // One message per batch: the update and the rotation come in batches after the
        // publish's, decided while it commits.
        max_batch: 1,
        clock: Arc::new(ManualClock::new(Timestamp(1_768_059_000_000))),
        transport: Some(Arc::new(Recording(recorder.clone()))),
        master_key: Some(MasterKey::from_bytes([7; 32])),
        ..Config::default()
    };
    let engine = Engine::with_store(store.clone(), config).await.unwrap();
    let h = engine.handle();
    let account = AccountId::from("acc_1");
    h.create_account(&account, "Acme", Plan::Pro).await.unwrap();
    let (webhook, secret) = h
        .create_webhook(
            &account,
            NewWebhook {
                name: "Receiver".into(),
                url: "https://a.example/hook".into(),
                description: None,
                events: vec![SESSION_PROCESSING_COMPLETED.into()],
                project_ids: Vec::new(),
                signature_scheme: SignatureScheme::Hallway,
            },
        )
        .await
        .unwrap();
    let body = br#"{"type":"session.processing.completed","id":"evt_1","project":{"id":"prj_1"}}"#;
    let publish = {
        let (h, account) = (h.clone(), account.clone());
        tokio::spawn(async move { h.publish(&account, body).await })
    };
    let update = {
        let (h, account, id) = (h.clone(), account.clone(), webhook.id.clone());
        tokio::spawn(async move {
            let changes = WebhookChanges {
                url: Some("https://b.example/hook".into()),
                signature_scheme: Some(SignatureScheme::Standard),
                ..WebhookChanges::default()
            };
            h.update_webhook(&account, &id, changes).await
        })
    };
    let rotate = {
        let (h, account, id) = (h.clone(), account.clone(), webhook.id.clone());
        tokio::spawn(async move { h.rotate_secret(&account, &id).await })
    };
    assert_eq!(publish.await.unwrap().unwrap().deliveries, 1);
    update.await.unwrap().unwrap();
    rotate.await.unwrap().unwrap();
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    let sent = recorder.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let (url, header, logged) = &sent[0];
    assert_eq!(
        url, "https://a.example/hook",
        "the URL when the attempt started"
    );
    assert!(logged, "sent to a URL the log did not hold yet");
    let t = signature::parse(header).unwrap().timestamp;
    let sent_body = store.payload(&account, &"evt_1".into()).unwrap().unwrap();
    assert_eq!(
        *header,
        signature::sign(secret.expose(), t, sent_body.as_bytes()),
        "signed with the secret the log held"
    );
    engine.shutdown().await.unwrap();
}
