//! Process plumbing every binary shares: logging, shutdown, configuration parsing, Postgres
//! session limits, liveness (issue #12.2; the metrics server is still per binary). Nothing in it
//! may print a secret.

pub mod config;
pub mod health;
pub mod postgres;
pub mod process;

pub use config::{KvParser, parse_kv, redact_url};
pub use health::Heartbeat;
pub use postgres::{SessionLimits, bounded, connect_options};
pub use process::{init_tracing, shutdown_signal};
