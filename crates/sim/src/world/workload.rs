//! The workload: the settings a seed runs with, and what happens at each step (an
//! operation of the host's, a change in the network) and how long until the next.

use super::World;
use crate::audit::Status;
use crate::net::Mode;
use crate::ops::Op;
use crate::random::Draw;
use hallway_domain::{AccountId, DurationMs, Policy, SignatureScheme, Timestamp, WebhookId};
use hallway_runtime::{Clock, Config};
use hallway_testkit::rng::Rng;
use std::time::Duration;

/// Projects events are published in.
const PROJECTS: [&str; 3] = ["prj_a", "prj_b", "prj_c"];

/// The policy and engine settings a seed runs with: the spec's defaults or tighter ones, so
/// that auto-disable, capacity limits, snapshots and retention are reached within a run.
pub fn settings(rng: &mut Rng) -> (Policy, Config) {
    let delays: Vec<u64> = match rng.below(4) {
        0 | 1 => vec![0, 60_000, 300_000, 1_800_000, 7_200_000],
        2 => vec![0, 10_000, 30_000, 120_000],
        _ => vec![0, 0, 60_000],
    };
    let policy = Policy {
        retry_delays: delays.into_iter().map(DurationMs).collect(),
        attempt_timeout: DurationMs(*rng.pick(&[30_000, 10_000, 5_000])),
        auto_disable_after: rng.range(3, 10) as u32,
        max_in_flight_per_webhook: *rng.pick(&[1, 2, 4, 64]),
        max_manual_retries: rng.range(1, 5) as u32,
        failing_alert_after: rng.range(0, 4) as u32,
        retention: DurationMs(*rng.pick(&[30 * 24 * 3_600_000, 4 * 3_600_000])),
        ..Policy::default()
    };
    let config = Config {
        policy: policy.clone(),
        max_in_flight: *rng.pick(&[2, 8, 32, 1024]),
        snapshot_every_events: *rng.pick(&[5, 20, 100, 400]),
        maintenance_interval: DurationMs(*rng.pick(&[60_000, 600_000])),
        shutdown_grace: Duration::from_secs(5),
        max_batch: *rng.pick(&[1, 3, 16, 4096]),
        command_queue: 256,
        manual_actions_per_minute: *rng.pick(&[0, 60]),
        max_recover: *rng.pick(&[5, 100_000]),
        ..Config::default()
    };
    (policy, config)
}

impl World {
    /// Picks the next step's operation; `roll` (0-99) chooses its kind, 36 and up publish.
    pub(super) fn next_op(&mut self, roll: u64) -> Option<Op> {
        let core = self.shared.lock();
        let audit = &core.audit;
        let live: Vec<(WebhookId, AccountId, bool)> = audit
            .hooks
            .iter()
            .filter(|(_, h)| h.live)
            .map(|(id, h)| (id.clone(), h.account.clone(), h.enabled))
            .collect();
        let rng = &mut self.rng;
        let account = |rng: &mut Rng, accounts: &[AccountId]| -> Option<AccountId> {
            (!accounts.is_empty()).then(|| rng.pick(accounts).clone())
        };
        let hook = |rng: &mut Rng| -> Option<(WebhookId, AccountId, bool)> {
            (!live.is_empty()).then(|| rng.pick(&live).clone())
        };
        let op = match roll {
            _ if self.accounts.is_empty() || (roll < 2 && self.accounts.len() < 4) => {
                let account = AccountId::from(format!("acc_{}", self.accounts.len() + 1));
                self.accounts.push(account.clone());
                Op::CreateAccount {
                    account,
                    pro: rng.chance(85),
                }
            }
            0..=1 => Op::SetPlan {
                account: account(rng, &self.accounts)?,
                pro: rng.chance(80),
            },
            2..=9 => {
                self.counter += 1;
                let projects = match rng.below(3) {
                    0 => vec![rng.pick(&PROJECTS).to_string()],
                    _ => Vec::new(),
                };
                let endpoints = core.net.endpoints.len() as u64;
                Op::CreateWebhook {
                    account: account(rng, &self.accounts)?,
                    url: format!(
                        "https://ep{}.example/w/{}",
                        rng.below(endpoints),
                        self.counter
                    ),
                    projects,
                    // Most webhooks sign as the spec does; some as Standard Webhooks.
                    scheme: scheme(rng.chance(30)),
                }
            }
            10..=12 => {
                let (webhook, account, _) = hook(rng)?;
                self.counter += 1;
                let endpoints = core.net.endpoints.len() as u64;
                let url = rng.chance(50).then(|| {
                    format!(
                        "https://ep{}.example/w/{}",
                        rng.below(endpoints),
                        self.counter
                    )
                });
                // At least one field changes, so the update is logged.
                let projects = (url.is_none() || rng.chance(50)).then(|| match rng.below(2) {
                    0 => vec![rng.pick(&PROJECTS).to_string()],
                    _ => Vec::new(),
                });
                let scheme = rng.chance(20).then(|| scheme(rng.chance(50)));
                Op::UpdateWebhook {
                    account,
                    webhook,
                    url,
                    projects,
                    scheme,
                }
            }
            13..=18 => {
                let (webhook, account, enabled) = hook(rng)?;
                // Disabled webhooks mostly come back, so that deliveries keep flowing and
                // recovers find paused ones.
                let enable = if enabled {
                    rng.chance(40)
                } else {
                    rng.chance(85)
                };
                Op::Toggle {
                    account,
                    webhook,
                    enable,
                }
            }
            19..=22 => {
                let (webhook, account, _) = hook(rng)?;
                // Half keep the old secret signing too, for a minute to three hours.
                let grace_ms = rng.chance(50).then(|| rng.range(60_000, 3 * 3_600_000));
                Op::Rotate {
                    account,
                    webhook,
                    grace_ms,
                }
            }
            23 => {
                let (webhook, account, _) = hook(rng)?;
                Op::Delete { account, webhook }
            }
            24..=27 => {
                let (webhook, account, _) = hook(rng)?;
                Op::Test { account, webhook }
            }
            28..=32 => {
                let finished: Vec<_> = audit
                    .deliveries
                    .iter()
                    .filter(|(_, d)| d.status != Status::Pending || rng.chance(5))
                    .collect();
                if finished.is_empty() {
                    return None;
                }
                let (id, d) = finished[rng.below(finished.len() as u64) as usize];
                Op::Retry {
                    account: d.account.clone(),
                    webhook: d.webhook.clone(),
                    delivery: id.clone(),
                }
            }
            33..=35 => {
                // Mostly an enabled webhook: a recover of a disabled one is refused.
                let (webhook, account, _) = live
                    .iter()
                    .find(|(_, _, enabled)| *enabled && rng.chance(70))
                    .cloned()
                    .or_else(|| hook(rng))?;
                let now = core.clock.now();
                let back = rng.range(0, 3 * 3_600_000);
                let since = Timestamp(now.0.saturating_sub(back));
                let until = rng
                    .chance(30)
                    .then(|| Timestamp(since.0 + rng.range(1, 3_600_000)));
                Op::Recover {
                    account,
                    webhook,
                    since,
                    until,
                }
            }
            _ => {
                let account = account(rng, &self.accounts)?;
                let id = match rng.below(10) {
                    0..=1 if !self.published_ids.is_empty() => {
                        let (a, id) = rng.pick(&self.published_ids).clone();
                        if a == account {
                            Some(id)
                        } else {
                            None
                        }
                    }
                    2..=6 => {
                        self.counter += 1;
                        let id = format!("evt_sim_{}", self.counter);
                        self.published_ids.push((account.clone(), id.clone()));
                        Some(id)
                    }
                    _ => None,
                };
                Op::Publish {
                    account,
                    id,
                    project: rng.pick(&PROJECTS).to_string(),
                }
            }
        };
        Some(op)
    }

    /// Something happens to the network: an endpoint goes down in some way, or comes back.
    pub(super) fn network_event(&mut self) {
        let mut core = self.shared.lock();
        let n = core.net.endpoints.len() as u64;
        let e = self.rng.below(n) as usize;
        let mode = match self.rng.below(10) {
            0..=3 => Mode::Healthy,
            4 => Mode::Refuse,
            5 => Mode::Reset,
            6 => Mode::Status(*self.rng.pick(&[500, 502, 503, 404, 410, 301, 302, 429])),
            7 => Mode::Hang,
            _ => Mode::Flaky(self.rng.range(10, 90)),
        };
        core.net.endpoints[e].mode = mode;
        core.note(format_args!("network: ep{e} is now {mode:?}"));
    }

    /// The pause before the next step: mostly short, now and then minutes or an hour.
    pub(super) fn gap(&mut self) -> Duration {
        let ms = match self.rng.below(100) {
            0..=49 => self.rng.range(1, 2_000),
            50..=79 => self.rng.range(2_000, 60_000),
            80..=94 => self.rng.range(60_000, 600_000),
            _ => self.rng.range(600_000, 3_600_000),
        };
        Duration::from_millis(ms)
    }
}

/// The spec's scheme, or Standard Webhooks.
fn scheme(standard: bool) -> SignatureScheme {
    if standard {
        SignatureScheme::Standard
    } else {
        SignatureScheme::Hallway
    }
}
