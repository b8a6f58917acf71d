//! Process plumbing every binary shares: logging, shutdown, configuration parsing, metrics, the
//! operations endpoint (`/metrics`, `/healthz`, `/readyz`), Postgres session limits, liveness
//! and Kafka client settings (issue #12.2). Nothing in it may print a secret.

pub mod cli;
pub mod config;
pub mod health;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod metrics;
pub mod postgres;
pub mod process;
pub mod server;

pub use cli::{Cli, Program};
pub use config::{KvParser, parse_kv, redact_url};
pub use health::Heartbeat;
pub use postgres::{SessionLimits, bounded, connect_options};
pub use process::{cancel_on_signal, init_tracing, shutdown_signal};
pub use server::Probe;
