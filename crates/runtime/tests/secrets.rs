//! Webhook secrets at rest: sealed in the data dir, opened only to sign, rotatable master key.

mod common;

use common::*;
use hallway_domain::signature;
use hallway_runtime::{Engine, EngineError, ManualClock, MasterKey};

/// Every file under `dir`, read as bytes.
fn files(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn no_file_in_the_data_dir_holds_a_webhook_secret() {
    let receiver = Receiver::https(|_| Answer::Status(200)).await;
    let clock = ManualClock::new(T0);
    let dir = tempfile::tempdir().unwrap();
    let (engine, h, wh, secret) = engine_with_webhook(
        dir.path(),
        config(policy(&[0]), &clock, &receiver),
        &receiver.url(),
    )
    .await;
    let rotated = h.rotate_secret(&"acc_1".into(), &wh).await.unwrap();
    h.publish(&"acc_1".into(), &event_body("evt_s"))
        .await
        .unwrap();
    let got = receiver.wait_for(1).await;
    hallway_domain::signature::verify(
        rotated.expose(),
        &got[0].signature,
        &got[0].body,
        clock.now_secs(),
        300,
    )
    .expect("the rotated secret signs");
    engine.shutdown().await.unwrap();
    let all = files(dir.path());
    assert!(all.iter().any(|(p, _)| p.ends_with("master.key")));
    for (path, bytes) in &all {
        for s in [secret.as_str(), rotated.expose()] {
            assert!(
                !contains(bytes, s.as_bytes()),
                "{} holds a secret",
                path.display()
            );
        }
    }
}

#[tokio::test]
async fn the_wrong_master_key_is_refused_and_a_previous_key_is_rotated_out() {
    let receiver = Receiver::https(|_| Answer::Status(200)).await;
    let clock = ManualClock::new(T0);
    let dir = tempfile::tempdir().unwrap();
    let old = MasterKey::generate();
    let mut cfg = config(policy(&[0]), &clock, &receiver);
    cfg.master_key = Some(old.clone());
    let (engine, h, wh, secret) =
        engine_with_webhook(dir.path(), cfg.clone(), &receiver.url()).await;
    engine.shutdown().await.unwrap();
    drop(h);

    let new = MasterKey::generate();
    let mut wrong = cfg.clone();
    wrong.master_key = Some(new.clone());
    match Engine::open(dir.path(), wrong).await {
        Err(EngineError::Config(m)) => assert!(m.contains("master key"), "{m}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("opened with the wrong master key"),
    }

    // With the old key as a previous key, the engine opens, reseals, and still signs with the
    // same webhook secret.
    let mut rotating = cfg.clone();
    rotating.master_key = Some(new.clone());
    rotating.previous_master_keys = vec![old];
    let engine = Engine::open(dir.path(), rotating).await.unwrap();
    let h = engine.handle();
    h.publish(&"acc_1".into(), &event_body("evt_k"))
        .await
        .unwrap();
    let got = receiver.wait_for(1).await;
    hallway_domain::signature::verify(
        &secret,
        &got[0].signature,
        &got[0].body,
        clock.now_secs(),
        300,
    )
    .expect("the webhook secret is unchanged by a master key rotation");
    let _ = wh;
    engine.shutdown().await.unwrap();
    drop(h);

    // Now the new key alone is enough.
    let mut only_new = cfg;
    only_new.master_key = Some(new);
    let engine = Engine::open(dir.path(), only_new).await.unwrap();
    engine.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_rotation_grace_survives_a_master_key_rotation_and_ends_on_the_clock() {
    let receiver = Receiver::https(|_| Answer::Status(200)).await;
    let clock = ManualClock::new(T0);
    let dir = tempfile::tempdir().unwrap();
    let old_key = MasterKey::generate();
    let mut cfg = config(policy(&[0]), &clock, &receiver);
    cfg.master_key = Some(old_key.clone());
    let (engine, h, wh, old) = engine_with_webhook(dir.path(), cfg.clone(), &receiver.url()).await;
    let hour = hallway_domain::DurationMs::from_hours(1);
    let (new, until) = h
        .rotate_secret_with_grace(&"acc_1".into(), &wh, Some(hour))
        .await
        .unwrap();
    assert_eq!(until, Some(T0.plus(hour)));
    engine.shutdown().await.unwrap();
    drop(h);

    // Reopened under a new master key: both secrets are sealed again, the grace unchanged.
    let new_key = MasterKey::generate();
    let mut rotating = cfg.clone();
    rotating.master_key = Some(new_key.clone());
    rotating.previous_master_keys = vec![old_key];
    let engine = Engine::open(dir.path(), rotating).await.unwrap();
    let h = engine.handle();
    let w = h.webhook(&"acc_1".into(), &wh).await.unwrap();
    assert_eq!(w.previous_secret.as_ref().map(|p| p.until), until);
    clock.advance_ms(hour.0 - 1);
    h.publish(&"acc_1".into(), &event_body("evt_in_grace"))
        .await
        .unwrap();
    let got = receiver.wait_for(1).await;
    let parsed = signature::parse(&got[0].signature).unwrap();
    assert_eq!(parsed.signatures.len(), 2, "{}", got[0].signature);
    for s in [new.expose(), old.as_str()] {
        signature::verify(s, &got[0].signature, &got[0].body, clock.now_secs(), 300)
            .expect("both secrets sign during the grace");
    }

    // At the grace's end the old secret signs nothing more.
    clock.advance_ms(1);
    h.publish(&"acc_1".into(), &event_body("evt_after_grace"))
        .await
        .unwrap();
    let got = receiver.wait_for(2).await;
    assert_eq!(
        signature::parse(&got[1].signature)
            .unwrap()
            .signatures
            .len(),
        1
    );
    signature::verify(
        new.expose(),
        &got[1].signature,
        &got[1].body,
        clock.now_secs(),
        300,
    )
    .expect("the new secret signs");
    assert_eq!(
        signature::verify(&old, &got[1].signature, &got[1].body, clock.now_secs(), 300),
        Err(signature::VerifyError::Mismatch)
    );
    engine.shutdown().await.unwrap();
    drop(h);

    // The new master key alone opens everything, and no file holds either secret.
    let mut only_new = cfg;
    only_new.master_key = Some(new_key);
    let engine = Engine::open(dir.path(), only_new).await.unwrap();
    engine.shutdown().await.unwrap();
    for (path, bytes) in files(dir.path()) {
        for s in [old.as_str(), new.expose()] {
            assert!(
                !contains(&bytes, s.as_bytes()),
                "{} holds a secret",
                path.display()
            );
        }
    }
}
