//! Test scaffolding shared by the workspace's tests (a dev-dependency only, never published):
//! a TLS test CA, a local HTTP(S) receiver with scripted replies, a seeded RNG, polling, a
//! driver that runs domain commands the way the runtime does, and readable delivery ids.

pub mod driver;
pub mod ids;
pub mod receiver;
pub mod rng;
pub mod tls;
pub mod wait;
