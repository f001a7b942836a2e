//! hallway-store
