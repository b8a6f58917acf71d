//! Process plumbing every binary shares (issue #12.2 moves tracing, shutdown and the metrics
//! server here too). Nothing in it may print a secret.

pub mod config;
pub mod health;
pub mod postgres;

pub use config::{KvParser, parse_kv, redact_url};
pub use health::Heartbeat;
pub use postgres::{SessionLimits, bounded, connect_options};
