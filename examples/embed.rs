//! A host that embeds the engine without the HTTP layer: it creates an account and a webhook,
//! publishes a `session.processing.completed` event, and reads the delivery history.
//!
//! Run it with `cargo run --example embed`. It starts a local receiver on 127.0.0.1 so the
//! delivery has somewhere to go (plain HTTP to loopback is allowed here for the demo only).

use hallway_webhooks::{AccountId, Config, Engine, NewWebhook, Plan, Policy, SignatureScheme};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A receiver that answers 200 to anything.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hallway", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = tcp.read(&mut buf).await;
                let _ = tcp
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });

    let dir = tempfile::tempdir()?;
    let config = Config {
        policy: Policy {
            require_https: false,
            allow_private_targets: true,
            ..Policy::default()
        },
        ..Config::default()
    };
    let engine = Engine::open(dir.path(), config).await?;
    let h = engine.handle();

    let (account, _api_key) = h
        .create_account(&AccountId::from("acc_abc123"), "Acme Research", Plan::Pro)
        .await?;
    let (webhook, secret) = h
        .create_webhook(
            &account.id,
            NewWebhook {
                name: "Slack Notifications".into(),
                url,
                description: Some("Posts finished interviews to #research".into()),
                events: vec!["session.processing.completed".into()],
                project_ids: vec![],
                signature_scheme: SignatureScheme::Hallway,
            },
        )
        .await?;
    println!(
        "webhook {} created; its secret is {}",
        webhook.id,
        secret.expose()
    );

    let event = br#"{
        "type": "session.processing.completed",
        "project": {"id": "prj_xyz789", "name": "Customer Discovery Q1", "status": "active"},
        "session": {"id": "ses_def456", "respondent_name": "Jane Doe", "duration_seconds": 342},
        "transcript": {"id": "trx_ghi789", "full_text": "Interviewer: Hello and welcome...", "word_count": 1240}
    }"#;
    let receipt = h.publish(&account.id, event).await?;
    println!(
        "published {} to {} webhook(s)",
        receipt.event_id, receipt.deliveries
    );

    // Delivery is asynchronous: wait until the history shows the outcome.
    for _ in 0..100 {
        let page = h.deliveries(&account.id, &webhook.id, 50, None).await?;
        if let Some(d) = page.data.first().filter(|d| !d.attempts.is_empty()) {
            println!(
                "delivery {}: {:?} after {} attempt(s), status code {:?}",
                d.id,
                d.status,
                d.attempts.len(),
                d.attempts.last().and_then(|a| a.status_code)
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    engine.shutdown().await?;
    Ok(())
}
