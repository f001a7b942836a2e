//! The simulated network: endpoints that answer with a latency and a status, refuse or reset
//! connections, hang past the timeout, go down and come back. Each request's fate is drawn
//! from the network's own seeded stream when it is sent; the receiver's side of it (what
//! arrived, when, signed how) is what the checks compare with the log.

use crate::random::Draw;
use hallway_domain::{AttemptError, DurationMs, EventId, Outcome, WebhookId};
use hallway_testkit::rng::Rng;

/// How an endpoint behaves now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Answers 2xx, with now and then a failure of every kind.
    Healthy,
    /// Answers 2xx after a short latency, always (the healed network).
    Perfect,
    /// Refuses connections at once.
    Refuse,
    /// Takes the request, then resets the connection before answering.
    Reset,
    /// Answers this status.
    Status(u16),
    /// Never answers (the attempt times out).
    Hang,
    /// Fails about this percentage of requests.
    Flaky(u64),
}

/// One host of the simulated internet.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// How it behaves now.
    pub mode: Mode,
    /// Its answers' latency, in milliseconds (low, high).
    pub latency_ms: (u64, u64),
}

/// A request as the receiver saw it, and what the network answered.
#[derive(Clone, Debug)]
pub struct Request {
    /// When it was sent (ms since the start).
    pub at_ms: u64,
    /// The webhook its URL belongs to.
    pub webhook: WebhookId,
    /// The event id in its body.
    pub event: EventId,
    /// Whether its body is a test send's.
    pub test: bool,
    /// What the sender got back, once it did.
    pub result: Option<Outcome>,
}

/// See the module documentation.
pub struct Net {
    rng: Rng,
    /// The hosts, `ep{index}.example`.
    pub endpoints: Vec<Endpoint>,
    /// Every request sent, in order.
    pub requests: Vec<Request>,
}

/// How a request goes: when the sender hears back, and what.
pub struct Fate {
    /// Milliseconds until the sender hears back.
    pub after_ms: u64,
    /// What it hears.
    pub outcome: Outcome,
}

impl Net {
    /// `count` endpoints, each with its own latency, all healthy.
    pub fn new(mut rng: Rng, count: usize) -> Net {
        let endpoints = (0..count)
            .map(|_| {
                let lo = rng.range(1, 200);
                Endpoint {
                    mode: Mode::Healthy,
                    latency_ms: (lo, lo + rng.range(0, 2_000)),
                }
            })
            .collect();
        Net {
            rng,
            endpoints,
            requests: Vec::new(),
        }
    }

    /// The endpoint a URL names (`https://ep{n}.example/...`), if it is one of ours.
    pub fn endpoint_of(url: &str) -> Option<usize> {
        let host = url.strip_prefix("https://ep")?;
        let (n, _) = host.split_once('.')?;
        n.parse().ok()
    }

    /// Draws the fate of a request to `endpoint` sent with `timeout_ms`.
    pub fn fate(&mut self, endpoint: usize, timeout_ms: u64) -> Fate {
        let Some(ep) = self.endpoints.get(endpoint).cloned() else {
            return Fate {
                after_ms: 1,
                outcome: error(AttemptError::Connect, 1),
            };
        };
        let latency = self.rng.range(ep.latency_ms.0, ep.latency_ms.1);
        let mode = match ep.mode {
            Mode::Flaky(p) if self.rng.chance(p) => *self.rng.pick(&[
                Mode::Status(500),
                Mode::Status(503),
                Mode::Reset,
                Mode::Refuse,
                Mode::Hang,
            ]),
            Mode::Flaky(_) => Mode::Perfect,
            Mode::Healthy => match self.rng.below(100) {
                0..=2 => Mode::Status(500),
                3 => Mode::Status(404),
                4 => Mode::Status(301),
                5 => Mode::Reset,
                6 => Mode::Hang,
                _ => Mode::Perfect,
            },
            other => other,
        };
        match mode {
            Mode::Refuse => {
                let after = self.rng.range(1, 5);
                Fate {
                    after_ms: after,
                    outcome: error(AttemptError::Connect, after),
                }
            }
            Mode::Hang => Fate {
                after_ms: timeout_ms,
                outcome: error(AttemptError::Timeout, timeout_ms),
            },
            _ if latency > timeout_ms => Fate {
                after_ms: timeout_ms,
                outcome: error(AttemptError::Timeout, timeout_ms),
            },
            Mode::Reset => Fate {
                after_ms: latency,
                outcome: error(AttemptError::Connect, latency),
            },
            Mode::Status(status) => Fate {
                after_ms: latency,
                outcome: Outcome::Response {
                    status,
                    duration: DurationMs(latency),
                },
            },
            Mode::Perfect | Mode::Healthy | Mode::Flaky(_) => {
                let status = *self.rng.pick(&[200, 200, 200, 201, 202, 204]);
                let latency = if ep.mode == Mode::Perfect {
                    latency.min(100)
                } else {
                    latency
                };
                Fate {
                    after_ms: latency,
                    outcome: Outcome::Response {
                        status,
                        duration: DurationMs(latency),
                    },
                }
            }
        }
    }

    /// Every endpoint answers 2xx from now on.
    pub fn heal(&mut self) {
        for ep in &mut self.endpoints {
            ep.mode = Mode::Perfect;
        }
    }
}

fn error(error: AttemptError, ms: u64) -> Outcome {
    Outcome::Error {
        error,
        duration: DurationMs(ms),
    }
}

/// Whether an outcome is a success by the spec's rule (2xx within the timeout).
pub fn succeeded(outcome: &Outcome, timeout: DurationMs) -> bool {
    matches!(outcome, Outcome::Response { status, duration }
        if (200..300).contains(status) && *duration <= timeout)
}
