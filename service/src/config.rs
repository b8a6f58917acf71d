//! Configuration: one clap struct, every knob also an environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Debug, Clone, Parser)]
#[command(name = "service", version, about = "servicedesk-lite tickets API")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply the database migrations to DATABASE_URL and exit.
    Migrate,
}

#[derive(Debug, Clone, Parser)]
pub struct Config {
    /// Address to listen on. Port 0 picks a free port.
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    pub listen_addr: SocketAddr,

    /// Postgres URL. Unset: tickets live in memory (lost on exit) — the embedded mode.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// Maximum Postgres connections in the pool.
    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value_t = 32)]
    pub db_max_connections: u32,

    /// How long a request may wait for a free Postgres connection.
    #[arg(long, env = "DB_ACQUIRE_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub db_acquire_timeout: Duration,

    /// Apply migrations at start (Postgres mode only).
    #[arg(long, env = "MIGRATE", default_value_t = false)]
    pub migrate: bool,

    /// Redis URL for idempotency keys and the list cache (L2). Unset: in-process only.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// Per-command Redis timeout; past it the request carries on without Redis (degraded).
    #[arg(long, env = "REDIS_TIMEOUT", default_value = "250ms", value_parser = humantime::parse_duration)]
    pub redis_timeout: Duration,

    /// Per-request timeout; a request running longer gets 504 in the error envelope.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// Time a client has to send the request headers before the connection is closed.
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,

    /// Maximum request body in bytes (413 above it).
    #[arg(long, env = "BODY_LIMIT_BYTES", default_value_t = 1024 * 1024)]
    pub body_limit_bytes: usize,

    /// Time-to-live of list responses in the in-process cache (L1). Bounds how stale another
    /// replica's view can be; writes through this replica invalidate it at once.
    #[arg(long, env = "LIST_CACHE_L1_TTL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub list_cache_l1_ttl: Duration,

    /// Maximum number of list responses held in the in-process cache.
    #[arg(long, env = "LIST_CACHE_L1_CAPACITY", default_value_t = 100_000)]
    pub list_cache_l1_capacity: u64,

    /// Time-to-live of list responses in Redis (L2).
    #[arg(long, env = "LIST_CACHE_TTL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub list_cache_ttl: Duration,

    /// Time-to-live of idempotency keys in Redis.
    #[arg(long, env = "IDEMPOTENCY_TTL", default_value = "1h", value_parser = humantime::parse_duration)]
    pub idempotency_ttl: Duration,

    /// Requests per second allowed per X-User-Id (burst of the same size); 0 turns it off.
    #[arg(long, env = "RATE_LIMIT_PER_USER", default_value_t = 0)]
    pub rate_limit_per_user: u32,

    /// Time in-flight requests get to finish after SIGTERM/SIGINT.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// Log one JSON line per request.
    #[arg(long, env = "ACCESS_LOG", default_value_t = true, action = clap::ArgAction::Set)]
    pub access_log: bool,
}

impl Config {
    /// Checks what clap cannot; the error names the variable to fix.
    pub fn validate(&self) -> Result<(), String> {
        let nonzero = [
            ("REQUEST_TIMEOUT", self.request_timeout),
            ("HEADER_READ_TIMEOUT", self.header_read_timeout),
            ("REDIS_TIMEOUT", self.redis_timeout),
            ("DB_ACQUIRE_TIMEOUT", self.db_acquire_timeout),
            ("LIST_CACHE_L1_TTL", self.list_cache_l1_ttl),
            ("LIST_CACHE_TTL", self.list_cache_ttl),
            ("IDEMPOTENCY_TTL", self.idempotency_ttl),
        ];
        if let Some((name, _)) = nonzero.iter().find(|(_, d)| d.is_zero()) {
            return Err(format!("{name} must be greater than zero"));
        }
        if self.db_max_connections == 0 {
            return Err("DB_MAX_CONNECTIONS must be at least 1".into());
        }
        if self.body_limit_bytes < 1024 {
            return Err("BODY_LIMIT_BYTES must be at least 1024".into());
        }
        for (name, url, schemes) in [
            (
                "DATABASE_URL",
                &self.database_url,
                &["postgres://", "postgresql://"][..],
            ),
            (
                "REDIS_URL",
                &self.redis_url,
                &["redis://", "rediss://", "unix://"][..],
            ),
        ] {
            if let Some(url) = url
                && !schemes.iter().any(|s| url.starts_with(s))
            {
                return Err(format!("{name} must start with one of {schemes:?}"));
            }
        }
        Ok(())
    }

    /// A configuration for tests and embedding: memory mode on a free port, whatever the
    /// environment says.
    pub fn for_tests() -> Self {
        Self::embedded()
    }

    /// Memory mode on a free port, no access log: what `loadgen` starts in-process when no
    /// service answers (whatever DATABASE_URL/REDIS_URL the environment holds).
    pub fn embedded() -> Self {
        let mut config = Self::parse_from([
            "service",
            "--listen-addr",
            "127.0.0.1:0",
            "--access-log",
            "false",
        ]);
        config.database_url = None;
        config.redis_url = None;
        config.migrate = false;
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::for_tests().validate().unwrap();
    }

    #[test]
    fn bad_values_name_the_variable() {
        let mut c = Config::for_tests();
        c.redis_url = Some("http://x".into());
        assert!(c.validate().unwrap_err().contains("REDIS_URL"));
        let mut c = Config::for_tests();
        c.request_timeout = Duration::ZERO;
        assert!(c.validate().unwrap_err().contains("REQUEST_TIMEOUT"));
    }

    #[test]
    fn unparsable_duration_is_rejected_by_clap() {
        let err = Cli::try_parse_from(["service", "--request-timeout", "soon"]).unwrap_err();
        assert!(err.to_string().contains("--request-timeout"), "{err}");
    }
}
