//! The engine against real local receivers: signatures, retries under a manual clock,
//! auto-disable, timeouts, redirects, blocked targets and restarts.

mod common;

use common::*;
use hallway_domain::signature;
use hallway_domain::{AttemptError, WebhookChanges};
use hallway_runtime::{Clock, Engine, ManualClock};
use hallway_store::DeliveryStatus;

#[tokio::test]
async fn https_delivery_is_signed_and_identical_across_attempts() {
    let receiver = Receiver::https(|i| Answer::Status(if i == 0 { 500 } else { 200 })).await;
    let clock = ManualClock::new(T0);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(policy(&[0, 60_000]), &clock, &receiver);
    let (engine, h, wh, secret) = engine_with_webhook(dir.path(), cfg, &receiver.url()).await;

    let receipt = h
        .publish(&"acc_1".into(), &event_body("evt_a"))
        .await
        .unwrap();
    assert_eq!(receipt.deliveries, 1);
    assert_eq!(receipt.event_id.as_str(), "evt_a");

    let first = receiver.wait_for(1).await;
    // The retry is scheduled from the moment the failure is recorded.
    eventually(|| async {
        let page = h.deliveries(&"acc_1".into(), &wh, 10, None).await.unwrap();
        page.data.into_iter().find(|d| d.attempts.len() == 1)
    })
    .await;
    clock.advance_ms(60_000);
    let both = receiver.wait_for(2).await;
    assert_eq!(
        first[0].body, both[1].body,
        "the body is byte-identical on every attempt"
    );
    for r in &both {
        assert_eq!(r.user_agent, "Hallway-Webhooks/1.0");
        assert_eq!(r.content_type, "application/json");
        let now_s = clock.now_secs();
        signature::verify(&secret, &r.signature, &r.body, now_s, 300)
            .expect("signature verifies with the webhook's secret");
    }
    let v: serde_json::Value = serde_json::from_slice(&both[0].body).unwrap();
    assert_eq!(v["id"], "evt_a");
    assert_eq!(v["api_version"], "2026-01-01");
    assert_eq!(v["account"]["name"], "Acme Research");

    let dlv = eventually(|| async {
        let page = h.deliveries(&"acc_1".into(), &wh, 10, None).await.unwrap();
        page.data
            .into_iter()
            .find(|d| d.status == DeliveryStatus::Succeeded)
    })
    .await;
    assert_eq!(dlv.attempts.len(), 2);
    assert_eq!(dlv.attempts[0].status_code, Some(500));
    assert_eq!(dlv.attempts[0].error, Some(AttemptError::HttpStatus));
    assert_eq!(dlv.attempts[1].status_code, Some(200));
    engine.shutdown().await.unwrap();
}

#[tokio::test]
async fn retries_happen_at_the_policy_offsets_and_then_stop() {
    let receiver = Receiver::https(|_| Answer::Status(503)).await;
    let clock = ManualClock::new(T0);
    let dir = tempfile::tempdir().unwrap();
    let delays = [0, 60_000, 300_000];
    let cfg = config(policy(&delays), &clock, &receiver);
    let (engine, h, wh, _) = engine_with_webhook(dir.path(), cfg, &receiver.url()).await;
    h.publish(&"acc_1".into(), &event_body("evt_r"))
        .await
        .unwrap();
    for (n, delay) in delays.iter().enumerate() {
        clock.advance_ms(*delay);
        receiver.wait_for(n + 1).await;
        let expected_attempts = n + 1;
        let d = eventually(|| async {
            let page = h.deliveries(&"acc_1".into(), &wh, 10, None).await.unwrap();
            page.data
                .into_iter()
                .find(|d| d.attempts.len() == expected_attempts)
        })
        .await;
        let failed_at = clock.now();
        match delays.get(n + 1) {
            Some(next) => {
                assert_eq!(d.status, DeliveryStatus::Pending);
                assert_eq!(
                    d.next_attempt_at,
                    Some(failed_at.plus(hallway_domain::DurationMs(*next)))
                );
            }
            None => {
                assert_eq!(d.status, DeliveryStatus::Failed);
                assert_eq!(d.next_attempt_at, None);
            }
        }
    }
    // Far beyond the schedule nothing more is sent.
    clock.advance_ms(24 * 3_600_000);
    let w = h.webhook(&"acc_1".into(), &wh).await.unwrap();
    assert_eq!(w.consecutive_failures, 3);
    assert_eq!(receiver.received().len(), 3);
    engine.shutdown().await.unwrap();
}

#[tokio::test]
async fn webhook_is_auto_disabled_after_the_failure_limit() {
    let receiver = Receiver::https(|_| Answer::Status(500)).await;
    let clock = ManualClock::new(T0);
    let dir = tempfile::tempdir().unwrap();
    let mut p = policy(&[0, 60_000]);
    p.auto_disable_after = 3;
    let (engine, h, wh, _) =
        engine_with_webhook(dir.path(), config(p, &clock, &receiver), &receiver.url()).await;
    for i in 0..3 {
        h.publish(&"acc_1".into(), &event_body(&format!("evt_{i}")))
            .await
            .unwrap();
    }
    receiver.wait_for(3).await;
    let w = eventually(|| async {
        let w = h.webhook(&"acc_1".into(), &wh).await.unwrap();
        (!w.enabled).then_some(w)
    })
    .await;
    assert_eq!(
        w.disabled_reason,
        Some(hallway_domain::DisabledReason::ConsecutiveFailures)
    );
    // Pending retries were paused, and new events are not sent to it (they are paused too).
    let page = h.deliveries(&"acc_1".into(), &wh, 10, None).await.unwrap();
    assert!(page.data.iter().all(|d| d.status == DeliveryStatus::Paused));
    let r = h
        .publish(&"acc_1".into(), &event_body("evt_late"))
        .await
        .unwrap();
    assert_eq!(r.deliveries, 0);
    clock.advance_ms(3_600_000);
    // A test send still works while disabled; re-enabling resets the counter.
    receiver.set_script(|_| Answer::Status(200));
    h.send_test(&"acc_1".into(), &wh).await.unwrap();
    let all = receiver.wait_for(4).await;
    assert_eq!(
        all.len(),
        4,
        "only the test send went out after the disable"
    );
    let v: serde_json::Value = serde_json::from_slice(&all[3].body).unwrap();
    assert_eq!(v["_test"], true);
    let w = h
        .update_webhook(
            &"acc_1".into(),
            &wh,
            WebhookChanges {
                enabled: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(w.enabled);
    assert_eq!(w.consecutive_failures, 0);
    engine.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out() {
    let receiver = Receiver::https(|_| Answer::Hang).await;
    let clock = ManualClock::new(T0);
    let dir = tempfile::tempdir().unwrap();
    let mut p = policy(&[0]);
    p.attempt_timeout = hallway_domain::DurationMs(300);
    let (engine, h, wh, _) =
        engine_with_webhook(dir.path(), config(p, &clock, &receiver), &receiver.url()).await;
    h.publish(&"acc_1".into(), &event_body("evt_t"))
        .await
        .unwrap();
    let d = eventually(|| async {
        let page = h.deliveries(&"acc_1".into(), &wh, 10, None).await.unwrap();
        page.data
            .into_iter()
            .find(|d| d.status == DeliveryStatus::Failed)
    })
    .await;
    assert_eq!(d.attempts[0].error, Some(AttemptError::Timeout));
    assert_eq!(d.attempts[0].status_code, None);
    assert!(d.attempts[0].duration_ms >= 300);
    engine.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_redirect_is_a_failure_and_is_not_followed() {
    let receiver = Receiver::https(|_| Answer::Status(302)).await;
    let clock = ManualClock::new(T0);
    let dir = tempfile::tempdir().unwrap();
    let (engine, h, wh, _) = engine_with_webhook(
        dir.path(),
        config(policy(&[0]), &clock, &receiver),
        &receiver.url(),
    )
    .await;
    h.publish(&"acc_1".into(), &event_body("evt_3xx"))
        .await
        .unwrap();
    let d = eventually(|| async {
        let page = h.deliveries(&"acc_1".into(), &wh, 10, None).await.unwrap();
        page.data
            .into_iter()
            .find(|d| d.status == DeliveryStatus::Failed)
    })
    .await;
    assert_eq!(d.attempts[0].status_code, Some(302));
    assert_eq!(d.attempts[0].error, Some(AttemptError::HttpStatus));
    let paths: Vec<String> = receiver.received().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, vec!["/hook".to_owned()]);
    engine.shutdown().await.unwrap();
}

#[tokio::test]
async fn private_targets_are_blocked_at_connect_time_under_the_strict_default() {
    // The webhook was registered while private targets were allowed; the engine then restarts
    // with the strict default, so the target is refused when the attempt connects.
    let receiver = Receiver::https(|_| Answer::Status(200)).await;
    let clock = ManualClock::new(T0);
    let dir = tempfile::tempdir().unwrap();
    let (engine, h, wh, _) = engine_with_webhook(
        dir.path(),
        config(policy(&[0]), &clock, &receiver),
        &receiver.url(),
    )
    .await;
    engine.shutdown().await.unwrap();
    drop(h);
    let mut strict = policy(&[0]);
    strict.allow_private_targets = false;
    let engine = Engine::open(dir.path(), config(strict, &clock, &receiver))
        .await
        .unwrap();
    let h = engine.handle();
    h.publish(&"acc_1".into(), &event_body("evt_priv"))
        .await
        .unwrap();
    let d = eventually(|| async {
        let page = h.deliveries(&"acc_1".into(), &wh, 10, None).await.unwrap();
        page.data
            .into_iter()
            .find(|d| d.status == DeliveryStatus::Failed)
    })
    .await;
    assert_eq!(d.attempts[0].error, Some(AttemptError::BlockedTarget));
    assert!(
        receiver.received().is_empty(),
        "nothing reached the private target"
    );
    engine.shutdown().await.unwrap();
}

#[tokio::test]
async fn numeric_spellings_of_loopback_are_sent_to_loopback_and_blocked_under_the_strict_default() {
    // The transport reads hosts the way the create check does (the url crate), so each
    // spelling reaches 127.0.0.1 while private targets are allowed, and is refused as
    // `blocked_target` (not `connect`) once they are not.
    let receiver = Receiver::http(|_| Answer::Status(200)).await;
    let clock = ManualClock::new(T0);
    let dir = tempfile::tempdir().unwrap();
    let mut lax = policy(&[0]);
    lax.require_https = false;
    let spellings = [
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "127.1",
        "127.000.000.001",
    ];
    let url = |host: &str| format!("http://{host}:{}/hook", receiver.port);
    let (engine, h, first, _) = engine_with_webhook(
        dir.path(),
        config(lax.clone(), &clock, &receiver),
        &url(spellings[0]),
    )
    .await;
    let mut webhooks = vec![first];
    for host in &spellings[1..] {
        let (wh, _) = h
            .create_webhook(
                &"acc_1".into(),
                hallway_runtime::NewWebhook {
                    name: (*host).into(),
                    url: url(host),
                    description: None,
                    events: vec![hallway_domain::SESSION_PROCESSING_COMPLETED.into()],
                    project_ids: vec![],
                    signature_scheme: hallway_domain::SignatureScheme::Hallway,
                },
            )
            .await
            .unwrap();
        webhooks.push(wh.id);
    }
    h.publish(&"acc_1".into(), &event_body("evt_lax"))
        .await
        .unwrap();
    receiver.wait_for(spellings.len()).await;
    engine.shutdown().await.unwrap();
    drop(h);

    let mut strict = lax;
    strict.allow_private_targets = false;
    let engine = Engine::open(dir.path(), config(strict, &clock, &receiver))
        .await
        .unwrap();
    let h = engine.handle();
    h.publish(&"acc_1".into(), &event_body("evt_strict"))
        .await
        .unwrap();
    for (wh, host) in webhooks.iter().zip(spellings) {
        let d = eventually(|| async {
            let page = h.deliveries(&"acc_1".into(), wh, 10, None).await.unwrap();
            page.data
                .into_iter()
                .find(|d| d.event_id.as_str() == "evt_strict" && d.status == DeliveryStatus::Failed)
        })
        .await;
        assert_eq!(
            d.attempts[0].error,
            Some(AttemptError::BlockedTarget),
            "{host}"
        );
    }
    assert_eq!(
        receiver.received().len(),
        spellings.len(),
        "nothing more reached loopback"
    );
    engine.shutdown().await.unwrap();
}

#[tokio::test]
async fn acknowledged_events_survive_a_crash_with_pending_and_in_flight_deliveries() {
    // Engine 1: the receiver hangs (attempts in flight) or fails (retries pending).
    let receiver = Receiver::https(|i| {
        if i % 2 == 0 {
            Answer::Hang
        } else {
            Answer::Status(500)
        }
    })
    .await;
    let clock = ManualClock::new(T0);
    let dir = tempfile::tempdir().unwrap();
    let (engine, h, wh, _) = engine_with_webhook(
        dir.path(),
        config(policy(&[0, 60_000]), &clock, &receiver),
        &receiver.url(),
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..6 {
        let r = h
            .publish(&"acc_1".into(), &event_body(&format!("evt_c{i}")))
            .await
            .unwrap();
        ids.push(r.event_id.to_string());
    }
    receiver.wait_for(6).await;
    // Crash: no shutdown; the actor stops where it is.
    drop(engine);
    drop(h);
    receiver.set_script(|_| Answer::Status(200));
    clock.advance_ms(60_000);
    let engine = open_retrying(dir.path(), config(policy(&[0, 60_000]), &clock, &receiver)).await;
    let h = engine.handle();
    let delivered = eventually(|| async {
        let page = h.deliveries(&"acc_1".into(), &wh, 50, None).await.unwrap();
        let ok: Vec<String> = page
            .data
            .iter()
            .filter(|d| d.status == DeliveryStatus::Succeeded)
            .map(|d| d.event_id.to_string())
            .collect();
        (ok.len() == ids.len()).then_some(ok)
    })
    .await;
    for id in &ids {
        assert!(
            delivered.contains(id),
            "{id} was delivered after the restart"
        );
        assert!(
            receiver
                .received()
                .iter()
                .any(|r| String::from_utf8_lossy(&r.body).contains(id.as_str())),
            "{id} reached the receiver"
        );
    }
    engine.shutdown().await.unwrap();
}

/// Reopens a data dir, waiting briefly for the crashed engine's last write to release it.
async fn open_retrying(dir: &std::path::Path, cfg: hallway_runtime::Config) -> Engine {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match Engine::open(dir, cfg.clone()).await {
            Ok(e) => return e,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("reopen: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("reopen failed: {e}"),
        }
    }
}

#[tokio::test]
async fn shutdown_waits_for_attempts_under_way_only_up_to_its_grace() {
    let receiver = Receiver::https(|_| Answer::Hang).await;
    let clock = ManualClock::new(T0);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(policy(&[0, 60_000]), &clock, &receiver);
    cfg.shutdown_grace = std::time::Duration::from_millis(300);
    let (engine, h, wh, _) = engine_with_webhook(dir.path(), cfg.clone(), &receiver.url()).await;
    h.publish(&"acc_1".into(), &event_body("evt_hang"))
        .await
        .unwrap();
    receiver.wait_for(1).await;
    // The manual clock stands still, so only the grace, measured on it, can end the wait:
    // move it past the grace while the attempt hangs.
    let stopping = tokio::spawn(engine.shutdown());
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    clock.advance_ms(1_000);
    tokio::time::timeout(std::time::Duration::from_secs(10), stopping)
        .await
        .expect("shutdown ends after its grace")
        .unwrap()
        .unwrap();
    drop(h);
    // The attempt under way was never recorded: the reopened engine sends it again.
    receiver.set_script(|_| Answer::Status(200));
    let engine = Engine::open(dir.path(), cfg).await.unwrap();
    let h = engine.handle();
    let d = eventually(|| async {
        let page = h.deliveries(&"acc_1".into(), &wh, 10, None).await.unwrap();
        page.data
            .into_iter()
            .find(|d| d.status == DeliveryStatus::Succeeded)
    })
    .await;
    assert_eq!(d.attempts.len(), 1, "the resend reuses attempt 1");
    assert_eq!(d.attempts[0].attempt, 1);
    engine.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_id_published_again_after_its_window_sends_its_new_body() {
    let receiver = Receiver::https(|_| Answer::Status(200)).await;
    let clock = ManualClock::new(T0);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(policy(&[0]), &clock, &receiver);
    let window = cfg.policy.retention.0;
    let (engine, h, _, _) = engine_with_webhook(dir.path(), cfg, &receiver.url()).await;
    let account = "acc_1".into();
    let first = h.publish(&account, &event_body("evt_again")).await.unwrap();
    assert!(!first.duplicate);
    receiver.wait_for(1).await;

    // Past the idempotency window, and a turn of the actor so that maintenance forgets the id.
    clock.advance_ms(window + 3_600_000);
    h.account(&account).await.unwrap();
    let newer = String::from_utf8(event_body("evt_again"))
        .unwrap()
        .replace("Interviewer: Hello", "Interviewer: Hello again");
    let second = eventually(|| async {
        let r = h.publish(&account, newer.as_bytes()).await.unwrap();
        (!r.duplicate).then_some(r)
    })
    .await;
    assert_eq!(second.event_id, first.event_id);
    let got = receiver.wait_for(2).await;
    let body = String::from_utf8(got[1].body.to_vec()).unwrap();
    assert!(
        body.contains("Hello again"),
        "the second publish sends its own body: {body}"
    );
    engine.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_id_memory_forgot_is_still_a_duplicate_from_the_store_across_a_restart() {
    let receiver = Receiver::https(|_| Answer::Status(200)).await;
    let clock = ManualClock::new(T0);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(policy(&[0]), &clock, &receiver);
    cfg.policy.idempotency_memory = hallway_domain::DurationMs::from_mins(1);
    let (engine, h, _, _) = engine_with_webhook(dir.path(), cfg.clone(), &receiver.url()).await;
    let account = "acc_1".into();
    let first = h.publish(&account, &event_body("evt_kept")).await.unwrap();
    receiver.wait_for(1).await;
    // Well past what memory keeps: the actor's next turns forget the id in memory.
    for _ in 0..3 {
        clock.advance_ms(10 * 60_000);
        h.account(&account).await.unwrap();
    }
    let again = h.publish(&account, &event_body("evt_kept")).await.unwrap();
    assert!(again.duplicate, "the store still knows the id");
    assert_eq!(again.deliveries, first.deliveries);
    let other = String::from_utf8(event_body("evt_kept"))
        .unwrap()
        .replace("Interviewer: Hello", "Interviewer: Goodbye");
    assert!(
        h.publish(&account, other.as_bytes()).await.is_err(),
        "another body under a known id is a conflict"
    );
    engine.shutdown().await.unwrap();
    drop(h);
    let engine = Engine::open(dir.path(), cfg).await.unwrap();
    let h = engine.handle();
    // Once the filter in front of the store's ids is filled, publishes rely on its "no".
    eventually(|| async { h.published_filter_ready().then_some(()) }).await;
    let again = h.publish(&account, &event_body("evt_kept")).await.unwrap();
    assert!(again.duplicate, "and so does the reopened store");
    assert_eq!(receiver.received().len(), 1, "nothing was sent again");
    let new = h.publish(&account, &event_body("evt_new")).await.unwrap();
    assert!(!new.duplicate, "an id never published is new");
    receiver.wait_for(2).await;
    engine.shutdown().await.unwrap();
}

#[tokio::test]
async fn alerts_stream_from_the_log_and_then_live_and_an_idle_stream_reports_progress() {
    let receiver = Receiver::https(|_| Answer::Status(500)).await;
    let clock = ManualClock::new(T0);
    let dir = tempfile::tempdir().unwrap();
    let mut p = policy(&[0, 60_000]);
    p.auto_disable_after = 3;
    p.failing_alert_after = 2;
    let (engine, h, wh, _) =
        engine_with_webhook(dir.path(), config(p, &clock, &receiver), &receiver.url()).await;
    for i in 0..3 {
        h.publish(&"acc_1".into(), &event_body(&format!("evt_{i}")))
            .await
            .unwrap();
    }
    receiver.wait_for(3).await;
    eventually(|| async {
        let w = h.webhook(&"acc_1".into(), &wh).await.unwrap();
        (!w.enabled).then_some(())
    })
    .await;
    // A subscriber from the start reads both alerts from the log, in order.
    let mut stream = h.alerts(None);
    let first = stream.recv().await.unwrap();
    let second = stream.recv().await.unwrap();
    assert_eq!(first.alert.kind, hallway_domain::AlertKind::Failing);
    assert_eq!(second.alert.kind, hallway_domain::AlertKind::Disabled);
    assert!(first.cursor < second.cursor);
    // A later alert arrives live; one from its cursor on sees only what follows.
    h.update_webhook(
        &"acc_1".into(),
        &wh,
        WebhookChanges {
            enabled: Some(true),
            ..WebhookChanges::default()
        },
    )
    .await
    .unwrap();
    let third = stream.recv().await.unwrap();
    assert_eq!(third.alert.kind, hallway_domain::AlertKind::Enabled);
    let mut from_second = h.alerts(Some(second.cursor));
    assert_eq!(from_second.recv().await.unwrap(), third);
    // Idle, the stream says how far it has handed everything on.
    eventually(|| async { (stream.caught_up_through() >= third.cursor.seq).then_some(()) }).await;
    engine.shutdown().await.unwrap();
}

/// Publishes decided in one batch share a fan-out (the store keeps a fan-out's deliveries in
/// one record), numbered one after another: each delivery is still its own, sent once,
/// recorded once, and read back after a crash.
#[tokio::test]
async fn publishes_of_one_batch_share_a_fan_out_and_each_delivery_stays_its_own() {
    let receiver = Receiver::https(|_| Answer::Status(200)).await;
    let clock = ManualClock::new(T0);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(policy(&[0, 60_000]), &clock, &receiver);
    let (engine, h, wh, _) = engine_with_webhook(dir.path(), cfg, &receiver.url()).await;
    // Published at once: all but the first wait for the first one's commit, in one batch.
    let publishes: Vec<_> = (0..40)
        .map(|i| {
            let h = h.clone();
            tokio::spawn(async move {
                h.publish(&"acc_1".into(), &event_body(&format!("evt_s{i}")))
                    .await
                    .unwrap()
            })
        })
        .collect();
    for p in publishes {
        assert_eq!(p.await.unwrap().deliveries, 1);
    }
    receiver.wait_for(40).await;
    let before = succeeded_once(&h, &wh, 40).await;
    let mut per_fan_out = std::collections::HashMap::new();
    for d in &before {
        *per_fan_out.entry(d.id.fan_out()).or_insert(0) += 1;
    }
    assert!(
        per_fan_out.len() < 40,
        "publishes of one batch share fan-outs: {per_fan_out:?}"
    );
    assert!(
        per_fan_out.values().all(|n| *n <= 16),
        "a shared fan-out stays small: {per_fan_out:?}"
    );
    let ids: std::collections::HashSet<_> = before.iter().map(|d| d.id.clone()).collect();
    assert_eq!(ids.len(), 40, "every delivery has its own id");
    let events: std::collections::HashSet<_> =
        before.iter().map(|d| d.event_id.to_string()).collect();
    assert_eq!(events.len(), 40, "one delivery per event");

    // Crash and reopen: the shared records read back as they were; nothing is sent again.
    drop(engine);
    drop(h);
    let engine = open_retrying(dir.path(), config(policy(&[0, 60_000]), &clock, &receiver)).await;
    let after = succeeded_once(&engine.handle(), &wh, 40).await;
    let reread: std::collections::HashSet<_> = after.iter().map(|d| d.id.clone()).collect();
    assert_eq!(reread, ids);
    assert_eq!(receiver.received().len(), 40, "each delivery was sent once");
    engine.shutdown().await.unwrap();
}

/// Waits until `webhook` lists `n` deliveries, each succeeded at its first attempt.
async fn succeeded_once(
    h: &hallway_runtime::EngineHandle,
    webhook: &hallway_domain::WebhookId,
    n: usize,
) -> Vec<hallway_store::DeliveryRecord> {
    eventually(|| async {
        let page = h
            .deliveries(&"acc_1".into(), webhook, 100, None)
            .await
            .unwrap();
        let done = page
            .data
            .iter()
            .all(|d| d.status == DeliveryStatus::Succeeded && d.attempts.len() == 1);
        (page.data.len() == n && done).then_some(page.data)
    })
    .await
}
