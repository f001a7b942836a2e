//! Runs domain commands the way the runtime does: decide, then apply.

use hallway_domain::{decide, Command, CommandKind, Event, Policy, Rejection, State, Timestamp};

/// Decides `kind` at `now` against `state` and applies the events when accepted.
pub fn step(state: &mut State, now: Timestamp, kind: CommandKind) -> Result<Vec<Event>, Rejection> {
    let events = decide(state, Command::new(now, kind))?;
    for e in &events {
        state.apply(e);
    }
    Ok(events)
}

/// A state and the log of every event applied to it; invariants checked after each event.
#[derive(Clone, Debug)]
pub struct Driver {
    /// The state every logged event has been applied to.
    pub state: State,
    /// Every event so far, in order.
    pub log: Vec<Event>,
}

impl Driver {
    /// A fresh state under `policy`, with an empty log.
    pub fn new(policy: Policy) -> Self {
        Driver {
            state: State::new(policy),
            log: Vec::new(),
        }
    }

    /// Decides `kind` at `now`; applies and logs the events when accepted.
    pub fn try_run(&mut self, now: Timestamp, kind: CommandKind) -> Result<Vec<Event>, Rejection> {
        let events = decide(&self.state, Command::new(now, kind))?;
        for e in &events {
            self.state.apply(e);
            self.state.check_invariants();
        }
        self.log.extend(events.iter().cloned());
        Ok(events)
    }

    /// Runs a command that must be accepted; returns its events.
    #[track_caller]
    pub fn run(&mut self, now: Timestamp, kind: CommandKind) -> Vec<Event> {
        let desc = format!("{kind:?}");
        self.try_run(now, kind)
            .unwrap_or_else(|r| panic!("fixture command {desc} was refused: {r:?}"))
    }

    /// The policy the state runs under.
    pub fn policy(&self) -> Policy {
        self.state.policy().clone()
    }
}

/// Applies `events` to `state`, checking invariants after each.
pub fn apply_all<'a>(mut state: State, events: impl IntoIterator<Item = &'a Event>) -> State {
    for e in events {
        state.apply(e);
        state.check_invariants();
    }
    state
}

/// Replays `events` onto a fresh state under `policy` (no invariant checks: large histories).
pub fn replay(policy: Policy, events: impl IntoIterator<Item = Event>) -> State {
    let mut state = State::new(policy);
    for e in events {
        state.apply(&e);
    }
    state
}
