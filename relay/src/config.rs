//! Configuration: one clap struct, every knob also an environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::diag::DiagCommand;

/// `relay [COMMAND] [FLAGS]`; `diag` does not need the run's flags.
pub type Cli = ops::Cli<Command, Config>;

/// What `relay --help` and `--version` say.
pub const PROGRAM: ops::Program =
    ops::program!("Transactional outbox relay: Postgres outbox_events -> Kafka");

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Relay outbox rows to Kafka until stopped (the default).
    Run,
    /// Inspect the pipeline: topics, messages, outbox and consumer-group state.
    Diag {
        #[command(subcommand)]
        command: DiagCommand,
        #[command(flatten)]
        args: crate::diag::DiagArgs,
    },
}

#[derive(Debug, Clone, Parser)]
pub struct Config {
    /// Postgres URL of the database holding `outbox_events`.
    #[arg(long, env = "DATABASE_URL", required = true, hide_env_values = true)]
    pub database_url: Option<String>,

    /// Kafka bootstrap servers (`host:port[,host:port]`).
    #[arg(long, env = "KAFKA_BROKERS", default_value = ops::kafka::DEFAULT_BROKERS)]
    pub kafka_brokers: String,

    /// Topic the events are published to.
    #[arg(long, env = "RELAY_TOPIC", default_value = contracts::topics::TICKETS_EVENTS)]
    pub topic: String,

    /// This relay's name in `outbox_events.claimed_by`. Default: `relay-<host>-<pid>`. Give each
    /// relay a stable, unique name (a StatefulSet's pod name): on start a named relay returns the
    /// rows its previous run still held, instead of leaving them to the claim timeout.
    #[arg(long, env = "RELAY_ID")]
    pub relay_id: Option<String>,

    /// Rows claimed and published per step.
    #[arg(long, env = "RELAY_BATCH_SIZE", default_value_t = 500)]
    pub batch_size: u32,

    /// Fallback poll interval when idle (notifications normally wake the relay sooner).
    #[arg(long, env = "RELAY_POLL_INTERVAL", default_value = "250ms", value_parser = humantime::parse_duration)]
    pub poll_interval: Duration,

    /// Shortest time from the start of one step to the start of the next when the first did not
    /// fill a batch. Commits notified meanwhile are claimed together, so under a steady write
    /// rate each relay runs at most one claim, one produce request and one mark per gap instead
    /// of one per committing transaction (both relays wake on every commit). Costs up to one gap
    /// of outbox lag; 0 steps on every notification.
    #[arg(long, env = "RELAY_STEP_GAP", default_value = "20ms", value_parser = humantime::parse_duration)]
    pub step_gap: Duration,

    /// Disable LISTEN/NOTIFY wake-ups and rely on polling alone (for comparison).
    #[arg(long, env = "RELAY_NO_LISTEN", default_value_t = false)]
    pub no_listen: bool,

    /// First retry delay of a row whose publish failed; doubles per attempt.
    #[arg(long, env = "RELAY_RETRY_BASE", default_value = "200ms", value_parser = humantime::parse_duration)]
    pub retry_base: Duration,

    /// Upper bound of the retry delay.
    #[arg(long, env = "RELAY_RETRY_MAX", default_value = "30s", value_parser = humantime::parse_duration)]
    pub retry_max: Duration,

    /// Rows in `processing` longer than this belong to a dead relay and go back to pending.
    /// Must exceed the Kafka delivery timeout, or a slow live relay loses its claim.
    #[arg(long, env = "RELAY_CLAIM_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub claim_timeout: Duration,

    /// Hold a session advisory lock named after this relay's id while it runs, and release the
    /// claims of relays whose lock is free (dead) within a second instead of after
    /// `RELAY_CLAIM_TIMEOUT`. Costs one more Postgres connection per relay. Every relay of one
    /// database must agree; turn it off only behind a transaction-mode pooler (pgbouncer
    /// `pool_mode=transaction`), where a session lock does not stay with its client.
    #[arg(long, env = "RELAY_LIVENESS_LOCK", default_value_t = true, action = clap::ArgAction::Set)]
    pub liveness_lock: bool,

    /// How often the reaper and the retention sweep run.
    #[arg(long, env = "RELAY_MAINTENANCE_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub maintenance_interval: Duration,

    /// Sent rows older than this are deleted. `0s` keeps them forever.
    #[arg(long, env = "RELAY_RETENTION", default_value = "1h", value_parser = humantime::parse_duration)]
    pub retention: Duration,

    /// Rows deleted per retention statement (small, so it never holds long locks).
    #[arg(long, env = "RELAY_RETENTION_BATCH", default_value_t = 5000)]
    pub retention_batch: u32,

    /// Share of publishes failed on purpose, as a broker error would (chaos testing, R-6).
    #[arg(long, env = "RELAY_CHAOS_FAILURE_RATE", default_value_t = 0.0)]
    pub chaos_failure_rate: f64,

    /// librdkafka `linger.ms`: how long the producer waits to fill a batch.
    #[arg(long, env = "RELAY_LINGER_MS", default_value_t = 5)]
    pub linger_ms: u32,

    /// librdkafka `compression.type` (none, gzip, snappy, lz4, zstd).
    #[arg(long, env = "RELAY_COMPRESSION", default_value = "lz4")]
    pub compression: String,

    /// librdkafka `message.timeout.ms`: a message not acked within this fails and is retried.
    #[arg(long, env = "RELAY_DELIVERY_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub delivery_timeout: Duration,

    /// Address of the metrics/health endpoint (`/metrics`, `/healthz`, `/readyz`). Port 0: any.
    #[arg(long, env = "RELAY_METRICS_ADDR", default_value = "127.0.0.1:9101")]
    pub metrics_addr: SocketAddr,

    /// Server-side `statement_timeout` of every relay session; the relay itself gives up on an
    /// operation 5 s after it (a half-open connection after a failover fails the step instead
    /// of hanging it).
    #[arg(long, env = "RELAY_DB_STATEMENT_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub db_statement_timeout: Duration,

    /// Server-side `idle_in_transaction_session_timeout` of every relay session.
    #[arg(long, env = "RELAY_DB_IDLE_IN_TRANSACTION_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub db_idle_in_transaction_timeout: Duration,

    /// `/healthz` fails when the step loop has not completed a turn for this long (a stuck
    /// worker behind a live HTTP endpoint). Must exceed the longest legitimate turn: the delivery
    /// timeout plus three database operations.
    #[arg(long, env = "RELAY_STUCK_AFTER", default_value = "120s", value_parser = humantime::parse_duration)]
    pub stuck_after: Duration,

    /// Postgres connections (claim/mark, listener, maintenance, stats).
    #[arg(long, env = "RELAY_DB_MAX_CONNECTIONS", default_value_t = 4)]
    pub db_max_connections: u32,

    /// librdkafka producer setting `key=value`, repeatable; applied last, so it overrides ours
    /// (e.g. security settings for a real cluster).
    #[arg(long = "kafka-option", env = "RELAY_KAFKA_OPTIONS", hide_env_values = true, value_delimiter = ',', value_parser = ops::KvParser)]
    pub kafka_options: Vec<(String, String)>,
}

impl Config {
    /// Defaults for tests: a private topic, port 0, fast retries and maintenance.
    pub fn for_tests(database_url: &str, brokers: &str, topic: &str) -> Self {
        let mut config = Config::parse_from(["relay", "--database-url", database_url]);
        config.kafka_brokers = brokers.to_owned();
        config.topic = topic.to_owned();
        config.metrics_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        config.retry_base = Duration::from_millis(20);
        config.retry_max = Duration::from_millis(200);
        config.poll_interval = Duration::from_millis(50);
        config.maintenance_interval = Duration::from_millis(200);
        config.linger_ms = 1;
        config
    }

    pub fn database_url(&self) -> &str {
        self.database_url.as_deref().unwrap_or_default()
    }

    pub fn relay_id(&self) -> String {
        self.relay_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "localhost".into());
            format!("relay-{host}-{}", std::process::id())
        })
    }

    /// The producer's delivery timeout as librdkafka will apply it: `--kafka-option` is applied
    /// after our own setting, so `message.timeout.ms` (or its alias `delivery.timeout.ms`) there
    /// wins.
    pub fn effective_delivery_timeout(&self) -> Result<Duration, String> {
        let mut timeout = self.delivery_timeout;
        for (k, v) in &self.kafka_options {
            if k == "message.timeout.ms" || k == "delivery.timeout.ms" {
                let ms: u64 = v.parse().map_err(|_| {
                    format!("RELAY_KAFKA_OPTIONS: {k} must be a number of milliseconds")
                })?;
                timeout = Duration::from_millis(ms);
            }
        }
        Ok(timeout)
    }

    /// The server-side limits every session of the relay's pool gets.
    pub fn session_limits(&self) -> ops::SessionLimits {
        ops::SessionLimits {
            statement_timeout: self.db_statement_timeout,
            idle_in_transaction_timeout: self.db_idle_in_transaction_timeout,
        }
    }

    /// Names the offending variable, so a bad deployment fails fast and clearly.
    pub fn validate(&self) -> Result<(), String> {
        if self.database_url.as_deref().unwrap_or_default().is_empty() {
            return Err("DATABASE_URL must be set".into());
        }
        if self.batch_size == 0 || self.batch_size > 10_000 {
            return Err("RELAY_BATCH_SIZE must be within 1..=10000".into());
        }
        if !(0.0..=1.0).contains(&self.chaos_failure_rate) {
            return Err("RELAY_CHAOS_FAILURE_RATE must be within 0..=1".into());
        }
        if self.retry_base.is_zero() || self.retry_max < self.retry_base {
            return Err("RELAY_RETRY_BASE must be > 0 and <= RELAY_RETRY_MAX".into());
        }
        let delivery = self.effective_delivery_timeout()?;
        if self.db_statement_timeout.is_zero() || self.db_idle_in_transaction_timeout.is_zero() {
            return Err(
                "RELAY_DB_STATEMENT_TIMEOUT and RELAY_DB_IDLE_IN_TRANSACTION_TIMEOUT must be > 0"
                    .into(),
            );
        }
        let db = self.session_limits().client_timeout();
        if self.claim_timeout < delivery + db.max(MARK_MARGIN) {
            return Err(format!(
                "RELAY_CLAIM_TIMEOUT ({:?}) must exceed the delivery timeout ({delivery:?}) plus                  the time a mark may take ({:?}: RELAY_DB_STATEMENT_TIMEOUT + 5 s)",
                self.claim_timeout,
                db.max(MARK_MARGIN)
            ));
        }
        if self.stuck_after < delivery + db * 3 {
            return Err(format!(
                "RELAY_STUCK_AFTER ({:?}) must exceed the longest step: the delivery timeout                  ({delivery:?}) plus three database operations ({:?})",
                self.stuck_after,
                db * 3
            ));
        }
        if self.retention_batch == 0 {
            return Err("RELAY_RETENTION_BATCH must be > 0".into());
        }
        if self.poll_interval.is_zero() {
            return Err("RELAY_POLL_INTERVAL must be > 0".into());
        }
        if self.step_gap >= self.poll_interval {
            return Err(format!(
                "RELAY_STEP_GAP ({:?}) must be shorter than RELAY_POLL_INTERVAL ({:?})",
                self.step_gap, self.poll_interval
            ));
        }
        Ok(())
    }
}

/// Time allowed for marking a batch after its last delivery report, inside the claim timeout.
pub const MARK_MARGIN: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue #11.5: a delivery timeout raised through the passthrough options counts too.
    #[test]
    fn the_claim_timeout_is_checked_against_the_delivery_timeout_in_effect() {
        let err = parse(&["--kafka-option", "delivery.timeout.ms=120000"])
            .validate()
            .unwrap_err();
        assert!(err.contains("RELAY_CLAIM_TIMEOUT"), "{err}");
        let err = parse(&["--kafka-option", "message.timeout.ms=55000"])
            .validate()
            .unwrap_err();
        assert!(err.contains("55s"), "the mark needs its margin too: {err}");
        assert_eq!(
            parse(&["--kafka-option", "message.timeout.ms=20000"]).validate(),
            Ok(())
        );
        let err = parse(&["--kafka-option", "message.timeout.ms=soon"])
            .validate()
            .unwrap_err();
        assert!(err.contains("RELAY_KAFKA_OPTIONS"), "{err}");
    }

    fn parse(extra: &[&str]) -> Config {
        Config::parse_from(
            ["relay", "--database-url", "postgres://x/y"]
                .iter()
                .chain(extra),
        )
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(parse(&[]).validate(), Ok(()));
    }

    #[test]
    fn rejects_bad_values_naming_the_variable() {
        let err = parse(&["--chaos-failure-rate", "1.5"])
            .validate()
            .unwrap_err();
        assert!(err.contains("RELAY_CHAOS_FAILURE_RATE"), "{err}");
        let err = parse(&["--batch-size", "0"]).validate().unwrap_err();
        assert!(err.contains("RELAY_BATCH_SIZE"), "{err}");
        let err = parse(&["--claim-timeout", "10s"]).validate().unwrap_err();
        assert!(err.contains("RELAY_CLAIM_TIMEOUT"), "{err}");
        let err = parse(&["--step-gap", "250ms"]).validate().unwrap_err();
        assert!(err.contains("RELAY_STEP_GAP"), "{err}");
        assert!(parse(&["--step-gap", "0s"]).validate().is_ok());
    }

    #[test]
    fn diag_does_not_need_the_run_flags() {
        let cli = Cli::try_parse_as(PROGRAM, ["relay", "diag", "topics"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Diag { .. })));
    }
}
