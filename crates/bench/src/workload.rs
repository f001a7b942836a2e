//! The workload: seed-shaped event bodies with ~2 KB transcripts, the engine's configuration,
//! the accounts and webhooks, and the publishers (closed loop and fixed rate).

use crate::util::{now_ns, BenchError, BenchResult};
use hallway_domain::{AccountId, Plan, Policy, SESSION_PROCESSING_COMPLETED};
use hallway_runtime::{Config, EngineHandle, MasterKey, NewWebhook, TransportConfig};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// Accounts in every scenario.
pub const ACCOUNTS: usize = 5;
/// Webhooks per account (the policy's maximum).
pub const WEBHOOKS_PER_ACCOUNT: usize = 5;
/// Webhooks in all; receiver `w` serves webhook `w`.
pub const WEBHOOKS: usize = ACCOUNTS * WEBHOOKS_PER_ACCOUNT;

/// The id of event number `n`.
pub fn event_id(n: u32) -> String {
    format!("evt_bench_{n}")
}

/// The account (index) that publishes event `n`.
pub fn account_of(n: u32) -> usize {
    n as usize % ACCOUNTS
}

/// The account id of account index `a`.
pub fn account_id(a: usize) -> AccountId {
    AccountId::from(format!("acc_bench_{a}"))
}

/// The display name of account index `a`.
pub fn account_name(a: usize) -> String {
    format!("Bench Research {a}")
}

const LINES: [&str; 12] = [
    "Thanks for joining today. Could you start by telling me about your role and your team?",
    "Sure. I lead a team of six engineers working on the data platform, mostly ingestion.",
    "How do you usually evaluate a new tool before you bring it to the rest of the team?",
    "We run a two week trial with one squad, then write a short memo with what worked.",
    "What was the last tool you adopted that way, and what made the decision easy or hard?",
    "An observability product. The hard part was pricing; the easy part was the setup.",
    "When you say pricing was hard, was it the amount or how predictable the bill would be?",
    "Predictability, definitely. Finance wants a number for the year, not a usage curve.",
    "If you could change one thing about how your team receives research findings, what?",
    "Fewer slide decks. I would rather get the raw quotes with a summary on top of them.",
    "Is there anything we did not cover that you think matters for this kind of product?",
    "Integrations. If it does not push into our tracker automatically, nobody will read it.",
];

/// The raw body a host publishes for event `n`: the spec's example payload's shape with a
/// transcript of about 2 KB. Its `id` comes first, as in the envelope, so receivers identify
/// a body forwarded as posted (the `api` scenario's proxy) the way they identify the engine's.
pub fn raw_event(n: u32) -> Vec<u8> {
    raw_event_sized(n, 2000)
}

/// [`raw_event`] with a transcript of about `transcript_bytes` (at least one line).
pub fn raw_event_sized(n: u32, transcript_bytes: usize) -> Vec<u8> {
    let mut text = String::with_capacity(transcript_bytes + 300);
    let mut line = n as usize;
    let mut turn = 0usize;
    while text.is_empty() || text.len() < transcript_bytes {
        text.push_str(if turn.is_multiple_of(2) {
            "Interviewer: "
        } else {
            "Respondent: "
        });
        text.push_str(LINES[line % LINES.len()]);
        text.push_str("\n\n");
        line = line.wrapping_mul(7).wrapping_add(3);
        turn += 1;
    }
    let words = text.split_whitespace().count();
    let text_json = serde_json::Value::from(text).to_string();
    let project = n % 7;
    let id = event_id(n);
    format!(
        concat!(
            r#"{{"id":"{id}","type":"{ty}","#,
            r#""project":{{"id":"prj_{project:04}","name":"Customer Discovery Q{q}","status":"active"}},"#,
            r#""session":{{"id":"ses_{n:08}","respondent_name":"Jane Doe","respondent_email":"jane.doe@example.com","duration_seconds":{dur},"completed_at":"2026-01-10T15:25:00.000Z"}},"#,
            r#""respondent_attributes":[{{"category_name":"Department","option_value":"Engineering"}},{{"category_name":"Role","option_value":"Manager"}}],"#,
            r#""transcript":{{"id":"trx_{n:08}","full_text":{text},"word_count":{words}}},"#,
            r#""insights":{{"count":{insights},"objectives_covered":3}},"#,
            r#""links":{{"session":"https://app.hallwayai.com/projects/prj_{project:04}/sessions/ses_{n:08}","project":"https://app.hallwayai.com/projects/prj_{project:04}"}}}}"#
        ),
        ty = SESSION_PROCESSING_COMPLETED,
        id = id,
        project = project,
        q = project % 4 + 1,
        n = n,
        dur = 300 + n % 600,
        text = text_json,
        words = words,
        insights = 4 + n % 9,
    )
    .into_bytes()
}

/// The production policy with loopback HTTP receivers allowed.
pub fn bench_policy() -> Policy {
    Policy {
        require_https: false,
        allow_private_targets: true,
        ..Policy::default()
    }
}

/// The production configuration (system clock, durable group commit, the default HTTPS
/// transport) over `policy`, with a fresh master key (reuse the config to reopen).
pub fn bench_config(policy: Policy) -> Config {
    Config {
        policy,
        master_key: Some(MasterKey::generate()),
        transport_config: TransportConfig {
            allow_private_targets: true,
            ..TransportConfig::default()
        },
        ..Config::default()
    }
}

/// The accounts and the webhooks' secrets (by webhook index).
pub struct Tenants {
    /// Account ids, by account index.
    pub accounts: Arc<Vec<AccountId>>,
    /// Signing secrets, by webhook index.
    pub secrets: Vec<String>,
}

/// Creates the Pro accounts and one webhook per URL (webhook `w` belongs to account
/// `w / WEBHOOKS_PER_ACCOUNT`).
pub async fn provision(h: &EngineHandle, urls: &[String]) -> BenchResult<Tenants> {
    let mut accounts = Vec::with_capacity(ACCOUNTS);
    for a in 0..ACCOUNTS {
        let (account, _key) = h
            .create_account(&account_id(a), &account_name(a), Plan::Pro)
            .await?;
        accounts.push(account.id);
    }
    let mut secrets = Vec::with_capacity(urls.len());
    for (w, url) in urls.iter().enumerate() {
        let (_, secret) = h
            .create_webhook(
                &accounts[w / WEBHOOKS_PER_ACCOUNT],
                NewWebhook {
                    name: format!("Receiver {w}"),
                    url: url.clone(),
                    description: None,
                    events: vec![SESSION_PROCESSING_COMPLETED.to_owned()],
                    project_ids: vec![],
                    signature_scheme: hallway_domain::SignatureScheme::Hallway,
                },
            )
            .await?;
        secrets.push(secret.expose().to_owned());
    }
    Ok(Tenants {
        accounts: Arc::new(accounts),
        secrets,
    })
}

/// When each event's publish call started and returned (ns, 0 = not yet).
pub struct PublishTimes {
    start: Vec<AtomicU64>,
    accepted: Vec<AtomicU64>,
}

impl PublishTimes {
    /// Room for events `0..n`.
    pub fn new(n: usize) -> Arc<Self> {
        Arc::new(PublishTimes {
            start: (0..n).map(|_| AtomicU64::new(0)).collect(),
            accepted: (0..n).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    /// Records event `n`'s publish: started at `start`, answered at `accepted` (ns).
    pub(crate) fn record(&self, n: u32, start: u64, accepted: u64) {
        if let (Some(s), Some(a)) = (self.start.get(n as usize), self.accepted.get(n as usize)) {
            s.store(start, Ordering::Relaxed);
            a.store(accepted, Ordering::Relaxed);
        }
    }

    /// When event `n`'s publish returned, if it did.
    pub fn accepted(&self, n: u32) -> Option<u64> {
        let v = self.accepted.get(n as usize)?.load(Ordering::Relaxed);
        (v > 0).then_some(v)
    }

    /// Publish call latencies (ns) of events in `range`, sorted.
    pub fn call_latencies(&self, range: std::ops::Range<u32>) -> Vec<u64> {
        let mut v: Vec<u64> = range
            .filter_map(|n| {
                let s = self.start.get(n as usize)?.load(Ordering::Relaxed);
                let a = self.accepted.get(n as usize)?.load(Ordering::Relaxed);
                (a > 0).then(|| a.saturating_sub(s))
            })
            .collect();
        v.sort_unstable();
        v
    }

    /// (start ns, latency ns) of each accepted publish in `range`, in event order.
    pub fn starts_and_latencies(&self, range: std::ops::Range<u32>) -> Vec<(u64, u64)> {
        range
            .filter_map(|n| {
                let s = self.start.get(n as usize)?.load(Ordering::Relaxed);
                let a = self.accepted.get(n as usize)?.load(Ordering::Relaxed);
                (a > 0).then(|| (s, a.saturating_sub(s)))
            })
            .collect()
    }

    /// The earliest publish start among events in `range`.
    pub fn first_start(&self, range: std::ops::Range<u32>) -> Option<u64> {
        range
            .filter_map(|n| {
                self.start
                    .get(n as usize)
                    .map(|s| s.load(Ordering::Relaxed))
            })
            .filter(|s| *s > 0)
            .min()
    }
}

/// The raw bodies publishers send: built before the clock starts (as the ceiling's bodies
/// are), or as each is published where memory is what is measured.
#[derive(Clone)]
pub enum RawBodies {
    /// `raw_event(range.start + i)` at index `i`.
    Prebuilt(Arc<Vec<Vec<u8>>>),
    /// Built by each publish.
    OnTheFly,
    /// Built by each publish, with transcripts of about this many bytes.
    OnTheFlySized(usize),
}

impl RawBodies {
    /// Bodies of events `range`, built now.
    pub fn prebuilt(range: std::ops::Range<u32>) -> RawBodies {
        RawBodies::Prebuilt(Arc::new(range.map(raw_event).collect()))
    }
}

/// Publishes event `n` and records its times; checks it fanned out to `fanout` deliveries.
async fn publish_one(
    h: &EngineHandle,
    accounts: &[AccountId],
    n: u32,
    body: &[u8],
    fanout: u32,
    times: &PublishTimes,
) -> BenchResult<()> {
    let account = &accounts[account_of(n)];
    let start = now_ns();
    let receipt = h.publish(account, body).await?;
    times.record(n, start, now_ns());
    if receipt.duplicate || receipt.deliveries != fanout {
        return Err(BenchError::new(format!(
            "event {n}: expected a fresh fan-out to {fanout} webhooks, got {receipt:?}"
        )));
    }
    Ok(())
}

/// Publishes events `range` from `concurrency` tasks, each publishing as soon as its
/// previous publish returned (closed loop).
pub async fn publish_closed_loop(
    h: &EngineHandle,
    accounts: &Arc<Vec<AccountId>>,
    range: std::ops::Range<u32>,
    bodies: RawBodies,
    concurrency: usize,
    fanout: u32,
    times: &Arc<PublishTimes>,
) -> BenchResult<()> {
    let start = range.start;
    let next = Arc::new(AtomicU32::new(range.start));
    let end = range.end;
    let mut tasks = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (h, accounts, next, times, bodies) = (
            h.clone(),
            accounts.clone(),
            next.clone(),
            times.clone(),
            bodies.clone(),
        );
        tasks.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= end {
                    return Ok::<(), BenchError>(());
                }
                match &bodies {
                    RawBodies::Prebuilt(all) => {
                        let body = all.get((n - start) as usize).ok_or_else(|| {
                            BenchError::new(format!("no prebuilt body for event {n}"))
                        })?;
                        publish_one(&h, &accounts, n, body, fanout, &times).await?;
                    }
                    RawBodies::OnTheFly => {
                        publish_one(&h, &accounts, n, &raw_event(n), fanout, &times).await?;
                    }
                    RawBodies::OnTheFlySized(bytes) => {
                        let body = raw_event_sized(n, *bytes);
                        publish_one(&h, &accounts, n, &body, fanout, &times).await?;
                    }
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}

/// Publishes events `range` at a fixed rate (open loop: each publish starts on schedule,
/// whether or not earlier ones have returned); returns the most publishes that were waiting
/// for their answer at once (an engine that falls behind the rate holds them all).
pub async fn publish_fixed_rate(
    h: &EngineHandle,
    accounts: &Arc<Vec<AccountId>>,
    range: std::ops::Range<u32>,
    events_per_sec: f64,
    fanout: u32,
    times: &Arc<PublishTimes>,
    transcript_bytes: usize,
) -> BenchResult<usize> {
    let interval_ns = (1e9 / events_per_sec.max(1.0)) as u64;
    let origin = tokio::time::Instant::now();
    let mut tasks = JoinSet::new();
    let mut waiting_peak = 0;
    for (i, n) in range.enumerate() {
        let due = origin + Duration::from_nanos(interval_ns.saturating_mul(i as u64));
        tokio::time::sleep_until(due).await;
        let (h, accounts, times) = (h.clone(), accounts.clone(), times.clone());
        tasks.spawn(async move {
            let body = raw_event_sized(n, transcript_bytes);
            publish_one(&h, &accounts, n, &body, fanout, &times).await
        });
        // Reap finished publishes as we go so errors surface early and memory stays flat.
        while let Some(r) = tasks.try_join_next() {
            r??;
        }
        waiting_peak = waiting_peak.max(tasks.len());
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(waiting_peak)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_valid_and_about_the_right_size() {
        let body = raw_event(12345);
        let v: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
        assert_eq!(v["id"], "evt_bench_12345");
        let text = v["transcript"]["full_text"].as_str().expect("a transcript");
        assert!((2000..2300).contains(&text.len()), "{}", text.len());
        let prepared = hallway_domain::envelope::prepare(&body, &bench_policy()).expect("accepted");
        assert_eq!(prepared.project_id.as_str(), "prj_0004");
    }
}
