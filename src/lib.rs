//! hallway-webhooks
