//! Replay: the time to open an engine whose log holds a given number of events.
//!
//! The log is written the way the engine writes it, without the network in the way: the
//! domain decides publishes, attempt starts and outcomes turn by turn (as the actor does),
//! and each turn's events are appended to the sled store as one record. The mix is the
//! throughput scenario's: Pro accounts with five webhooks, ~2 KB bodies, 2% of first attempts
//! failing (those wait for their retry, as a live engine's backlog would).

use crate::receiver::Receivers;
use crate::scenarios::Ctx;
use crate::util::{unix_millis, BenchError, BenchResult, Record};
use crate::workload::{
    account_id, account_name, account_of, bench_config, bench_policy, raw_event, ACCOUNTS,
    WEBHOOKS, WEBHOOKS_PER_ACCOUNT,
};
use hallway_domain::{
    decide, envelope, Command, CommandKind, DeliveryId, DurationMs, Event, EventId, FanOutId,
    Outcome, Plan, SealedSecret, SignatureScheme, State, Timestamp, WebhookConfig, WebhookId,
    SESSION_PROCESSING_COMPLETED,
};
use hallway_runtime::{Config, Engine};
use hallway_store::{EventLog, Seq, SledStore, StoreError, Truncation};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Publishes decided per turn (one log record each, like one actor batch under load).
const PUBLISHES_PER_TURN: u32 = 32;
/// Attempts open at once, as the engine's default `max_in_flight`.
const MAX_IN_FLIGHT: usize = 512;
/// One in this many first attempts fails.
const FAIL_ONE_IN: u64 = 50;

/// What writing the log produced.
struct Written {
    events: u64,
    records: u64,
    publishes: u32,
    seconds: f64,
    /// The state as of the last record a production engine would have snapshotted at.
    snapshot: Option<(Seq, State)>,
}

/// Decides one command, applies its events and collects them.
fn step(
    state: &mut State,
    now: Timestamp,
    kind: CommandKind,
    out: &mut Vec<Event>,
) -> BenchResult<()> {
    let events = decide(state, Command::new(now, kind))?;
    for e in &events {
        state.apply(e);
    }
    out.extend(events);
    Ok(())
}

/// Writes at least `target` events into a fresh store in `dir`, remembering the state as of
/// the last point an engine snapshotting every `snapshot_every` events would have saved.
fn write_log(
    dir: &Path,
    target: u64,
    urls: &[String],
    snapshot_every: u64,
) -> BenchResult<Written> {
    let started = Instant::now();
    let store = SledStore::open(dir)?;
    let policy = bench_policy();
    let mut state = State::new(policy.clone());
    let mut now = Timestamp(unix_millis());
    let mut turn: Vec<Event> = Vec::new();
    for a in 0..ACCOUNTS {
        let kind = CommandKind::CreateAccount {
            account_id: account_id(a),
            name: account_name(a),
            plan: Plan::Pro,
            api_key_hash: format!("{a:064x}"),
        };
        step(&mut state, now, kind, &mut turn)?;
    }
    for (w, url) in urls.iter().enumerate() {
        let kind = CommandKind::CreateWebhook {
            account_id: account_id(w / WEBHOOKS_PER_ACCOUNT),
            webhook_id: WebhookId::from(format!("wh_bench_{w:02}")),
            secret: SealedSecret(format!("whsec_bench_{w:02}")),
            config: WebhookConfig {
                name: format!("Receiver {w}"),
                url: url.clone(),
                description: None,
                events: vec![SESSION_PROCESSING_COMPLETED.to_owned()],
                project_ids: vec![],
                signature_scheme: SignatureScheme::Hallway,
            },
        };
        step(&mut state, now, kind, &mut turn)?;
    }
    store.append(&turn)?;
    let mut events = turn.len() as u64;
    let mut records = 1u64;
    let mut since_snapshot = events;
    let mut snapshot = None;
    let mut open: Vec<(DeliveryId, u32)> = Vec::new();
    let mut outcomes = 0u64;
    let mut n = 0u32;
    let mut finishing = false;
    loop {
        now = now.plus(DurationMs(10));
        turn.clear();
        for (delivery_id, attempt) in std::mem::take(&mut open) {
            outcomes += 1;
            let status = if attempt == 1 && outcomes.is_multiple_of(FAIL_ONE_IN) {
                500
            } else {
                200
            };
            let kind = CommandKind::RecordOutcome {
                delivery_id,
                attempt,
                outcome: Outcome::Response {
                    status,
                    duration: DurationMs(3),
                },
                // Opening replays the log, which never holds attempt detail.
                detail: None,
            };
            step(&mut state, now, kind, &mut turn)?;
        }
        if !finishing {
            for _ in 0..PUBLISHES_PER_TURN {
                let event = envelope::prepare(&raw_event(n), &policy)?;
                let kind = CommandKind::Publish {
                    account_id: account_id(account_of(n)),
                    event,
                    fresh_event_id: EventId::from(format!("evt_fresh_{n}")),
                    fan_out: FanOutId::new(now, numbered(n)),
                    first_index: 0,
                    remembered: None,
                };
                step(&mut state, now, kind, &mut turn)?;
                n += 1;
            }
            // Start what is due, as the actor's tick does after deciding its batch.
            loop {
                let max_starts = MAX_IN_FLIGHT.saturating_sub(state.in_flight_count());
                let mut started = Vec::new();
                step(
                    &mut state,
                    now,
                    CommandKind::Tick { max_starts },
                    &mut started,
                )?;
                if started.is_empty() {
                    break;
                }
                for e in &started {
                    if let Event::AttemptStarted {
                        delivery_id,
                        attempt,
                        ..
                    } = e
                    {
                        open.push((delivery_id.clone(), *attempt));
                    }
                }
                turn.extend(started);
            }
        }
        if turn.is_empty() {
            break;
        }
        let seq = store.append(&turn)?;
        records += 1;
        events += turn.len() as u64;
        since_snapshot += turn.len() as u64;
        if since_snapshot >= snapshot_every {
            snapshot = Some((seq, state.clone()));
            since_snapshot = 0;
        }
        if records.is_multiple_of(64) {
            store.flush()?;
        }
        if events >= target {
            // One more turn records the open attempts' outcomes; then the log is complete.
            finishing = true;
        }
    }
    store.flush()?;
    drop(store);
    Ok(Written {
        events,
        records,
        publishes: n,
        seconds: started.elapsed().as_secs_f64(),
        snapshot,
    })
}

/// Opens the store once the previous engine has let go of it (dropping an engine releases
/// the store when its task is torn down, a moment later).
fn open_when_free(dir: &Path) -> BenchResult<SledStore> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match SledStore::open(dir) {
            Ok(s) => return Ok(s),
            Err(StoreError::Locked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

async fn timed_open(dir: &Path, config: Config) -> BenchResult<(f64, Engine)> {
    // Wait (untimed) until the store is free, then time the open itself.
    let probe_dir: PathBuf = dir.to_owned();
    tokio::task::spawn_blocking(move || open_when_free(&probe_dir).map(drop)).await??;
    let t = Instant::now();
    let engine = Engine::open(dir, config).await?;
    Ok((t.elapsed().as_secs_f64() * 1e3, engine))
}

/// Replay: writes a log of at least `target` events, then times `Engine::open` over it with
/// no snapshot (the raw replay) and with the snapshot a production engine would have taken.
pub async fn replay(ctx: &Ctx, target: u64) -> BenchResult<Record> {
    let receivers = Receivers::start(&ctx.receivers_rt, WEBHOOKS, 200)?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().to_owned();
    let urls = receivers.urls();
    // The production interval unless the run overrides it.
    let snapshot_every = ctx
        .snapshot_every_events
        .unwrap_or(Config::default().snapshot_every_events);
    let written =
        tokio::task::spawn_blocking(move || write_log(&path, target, &urls, snapshot_every))
            .await??;
    let disk = crate::util::dir_bytes(dir.path());

    // One config (one master key) for both opens: the first reseals the webhooks' secrets.
    let config = Config {
        // No snapshot shortens the raw replay (none exists yet, and none is taken).
        snapshot_every_events: u64::MAX,
        ..bench_config(bench_policy())
    };
    let (raw_ms, engine) = timed_open(dir.path(), config.clone()).await?;
    // Dropping without shutdown, as a crash: no snapshot is written on the way out.
    drop(engine);

    let mut snapshot_ms = serde_json::Value::Null;
    let mut tail_events = serde_json::Value::Null;
    if let Some((seq, state)) = written.snapshot {
        let path = dir.path().to_owned();
        let tail = tokio::task::spawn_blocking(move || -> BenchResult<u64> {
            let store = open_when_free(&path)?;
            store.save_snapshot(seq, &state)?;
            store.flush()?;
            store.truncate(seq, Truncation::Now)?;
            store.flush()?;
            let mut tail = 0u64;
            for record in store.read_log(seq + 1) {
                tail += record?.1.len() as u64;
            }
            Ok(tail)
        })
        .await??;
        let (ms, engine) = timed_open(dir.path(), config).await?;
        drop(engine);
        snapshot_ms = ms.into();
        tail_events = tail.into();
    }
    let _ = open_when_free_async(dir.path()).await;

    let mut r = Record::new("replay");
    r.put("events", written.events)
        .put("log_records", written.records)
        .put("publishes", written.publishes)
        .put("write_seconds", written.seconds)
        .put("disk_bytes", disk)
        .put("open_ms", raw_ms)
        .put(
            "replay_events_per_sec",
            written.events as f64 / (raw_ms / 1e3).max(1e-9),
        )
        .put("open_with_snapshot_ms", snapshot_ms)
        .put("events_after_snapshot", tail_events);
    Ok(r)
}

/// Waits until the last engine has released the directory (so the temp dir can go).
async fn open_when_free_async(dir: &Path) -> BenchResult<()> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || open_when_free(&dir).map(drop))
        .await
        .map_err(BenchError::from)?
}

/// Where a production fan-out has 80 random bits, the publish's number: fan-outs stay
/// distinct, and the log written is the same from run to run.
fn numbered(n: u32) -> [u8; 10] {
    let mut bytes = [0u8; 10];
    bytes[6..].copy_from_slice(&n.to_be_bytes());
    bytes
}
