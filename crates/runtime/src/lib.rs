//! hallway-runtime
