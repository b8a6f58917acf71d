//! Configuration: one clap struct, every knob also an environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use clap::Parser;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "notifier",
    version,
    about = "Consumes ticket events and writes one notification per event (idempotent, with retries and a DLQ)"
)]
pub struct Config {
    /// Postgres URL holding `processed_events` and `notifications`.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,

    /// Kafka bootstrap servers (`host:port[,host:port]`).
    #[arg(long, env = "KAFKA_BROKERS", default_value = ops::kafka::DEFAULT_BROKERS)]
    pub kafka_brokers: String,

    /// Topic to consume.
    #[arg(long, env = "NOTIFIER_TOPIC", default_value = contracts::topics::TICKETS_EVENTS)]
    pub topic: String,

    /// Where messages go after the last failed attempt.
    #[arg(long, env = "NOTIFIER_DLQ_TOPIC", default_value = contracts::topics::TICKETS_DLQ)]
    pub dlq_topic: String,

    /// Consumer group.
    #[arg(long, env = "NOTIFIER_GROUP_ID", default_value = contracts::groups::NOTIFIER)]
    pub group_id: String,

    /// Consumer group session timeout: a notifier that dies without leaving (kill -9, lost host)
    /// keeps its partitions this long before the group hands them to the others. The broker
    /// bounds it (`group.min.session.timeout.ms`, 6 s by default). Heartbeats every tenth of it
    /// (at least 100 ms): the client revokes its own partitions when no heartbeat succeeded for
    /// this long, so the last success must be recent when a coordinator dies (its move takes a
    /// broker failover, ~5 s on the local cluster).
    #[arg(long, env = "NOTIFIER_SESSION_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub session_timeout: Duration,

    /// Delay before the first retry while Postgres is unavailable (retries never end: a good
    /// event is not dead-lettered because the database was away).
    #[arg(long, env = "NOTIFIER_RETRY_BASE", default_value = "1s", value_parser = humantime::parse_duration)]
    pub retry_base: Duration,

    /// Each retry waits this many times longer than the one before (1 s, 2 s, 4 s, 5 s, 5 s, …
    /// by default).
    #[arg(long, env = "NOTIFIER_RETRY_FACTOR", default_value_t = 2.0)]
    pub retry_factor: f32,

    /// Upper bound of one retry delay: how long after Postgres is back the consumer may still
    /// be waiting.
    #[arg(long, env = "NOTIFIER_RETRY_MAX", default_value = "5s", value_parser = humantime::parse_duration)]
    pub retry_max: Duration,

    /// Messages handled in one Postgres transaction when they are already waiting.
    #[arg(long, env = "NOTIFIER_BATCH_SIZE", default_value_t = 256)]
    pub batch_size: usize,

    /// How long to wait for more messages to fill a batch once one has arrived.
    #[arg(long, env = "NOTIFIER_BATCH_WAIT", default_value = "2ms", value_parser = humantime::parse_duration)]
    pub batch_wait: Duration,

    /// Address of `/metrics`, `/healthz`, `/readyz`. Port 0: any.
    #[arg(long, env = "NOTIFIER_METRICS_ADDR", default_value = "127.0.0.1:9102")]
    pub metrics_addr: SocketAddr,

    /// Server-side `statement_timeout` of every notifier session; the notifier itself gives up
    /// on an operation 5 s after it and treats that as Postgres unavailable (waited out).
    #[arg(long, env = "NOTIFIER_DB_STATEMENT_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub db_statement_timeout: Duration,

    /// Server-side `idle_in_transaction_session_timeout` of every notifier session.
    #[arg(long, env = "NOTIFIER_DB_IDLE_IN_TRANSACTION_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub db_idle_in_transaction_timeout: Duration,

    /// `/healthz` fails when the consume loop has not turned for this long (a stuck worker
    /// behind a live HTTP endpoint). Waiting out a database outage counts as turning.
    #[arg(long, env = "NOTIFIER_STUCK_AFTER", default_value = "60s", value_parser = humantime::parse_duration)]
    pub stuck_after: Duration,

    /// Postgres connections.
    #[arg(long, env = "NOTIFIER_DB_MAX_CONNECTIONS", default_value_t = 4)]
    pub db_max_connections: u32,

    /// librdkafka consumer setting `key=value`, repeatable; applied last, so it overrides ours
    /// (e.g. `--kafka-option fetch.wait.max.ms=100`, security settings for a real cluster).
    #[arg(long = "kafka-option", env = "NOTIFIER_KAFKA_OPTIONS", hide_env_values = true, value_delimiter = ',', value_parser = ops::KvParser)]
    pub kafka_options: Vec<(String, String)>,
}

impl Config {
    /// Defaults for tests: private topics and group, port 0, millisecond retries.
    pub fn for_tests(database_url: &str, brokers: &str, topic: &str, dlq: &str) -> Self {
        let mut c = Config::parse_from(["notifier", "--database-url", database_url]);
        c.kafka_brokers = brokers.to_owned();
        (c.topic, c.dlq_topic) = (topic.to_owned(), dlq.to_owned());
        c.metrics_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        c.group_id = format!("{topic}-notifier");
        c.retry_base = Duration::from_millis(20);
        c.retry_max = Duration::from_millis(200);
        c
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.database_url.is_empty() {
            return Err("DATABASE_URL must be set".into());
        }
        if self.retry_factor < 1.0 {
            return Err("NOTIFIER_RETRY_FACTOR must be >= 1".into());
        }
        if self.batch_size == 0 || self.batch_size > 10_000 {
            return Err("NOTIFIER_BATCH_SIZE must be within 1..=10000".into());
        }
        if self.topic == self.dlq_topic {
            return Err("NOTIFIER_DLQ_TOPIC must differ from NOTIFIER_TOPIC".into());
        }
        if self.db_statement_timeout.is_zero() || self.db_idle_in_transaction_timeout.is_zero() {
            return Err(
                "NOTIFIER_DB_STATEMENT_TIMEOUT and NOTIFIER_DB_IDLE_IN_TRANSACTION_TIMEOUT must be > 0"
                    .into(),
            );
        }
        let turn =
            self.session_limits().client_timeout().max(self.retry_max) + Duration::from_secs(5);
        if self.stuck_after < turn * 2 {
            return Err(format!(
                "NOTIFIER_STUCK_AFTER must be at least {:?}: twice the longest turn of the loop \
                 (a database operation or a retry delay, plus a DLQ publish)",
                turn * 2
            ));
        }
        if self.session_timeout < Duration::from_secs(1) {
            return Err("NOTIFIER_SESSION_TIMEOUT must be at least 1s".into());
        }
        Ok(())
    }

    /// The server-side limits every session of the notifier's pool gets.
    pub fn session_limits(&self) -> ops::SessionLimits {
        ops::SessionLimits {
            statement_timeout: self.db_statement_timeout,
            idle_in_transaction_timeout: self.db_idle_in_transaction_timeout,
        }
    }

    /// Exponential backoff between attempts while Postgres is unavailable: `base * factor^n`,
    /// capped, without end. No jitter: one consumer waits on one database.
    pub fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.retry_base)
            .with_factor(self.retry_factor)
            .with_max_delay(self.retry_max)
            .without_max_times()
    }

    /// The first `n` delays [`Config::backoff`] produces, for logs and tests.
    pub fn retry_delays(&self, n: usize) -> Vec<Duration> {
        self.backoff().build().take(n).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Config {
        Config::parse_from(
            ["notifier", "--database-url", "postgres://x/y"]
                .iter()
                .chain(extra),
        )
    }

    #[test]
    fn default_backoff_is_the_seed_schedule() {
        let secs: Vec<u64> = parse(&[])
            .retry_delays(6)
            .iter()
            .map(|d| d.as_secs())
            .collect();
        assert_eq!(secs, [1, 2, 4, 5, 5, 5], "capped, and never ends");
    }

    #[test]
    fn backoff_is_capped() {
        let c = parse(&["--retry-max", "3s"]);
        assert_eq!(c.retry_delays(8).last(), Some(&Duration::from_secs(3)));
    }

    #[test]
    fn rejects_bad_values_naming_the_variable() {
        let err = parse(&["--retry-factor", "0.5"]).validate().unwrap_err();
        assert!(err.contains("NOTIFIER_RETRY_FACTOR"), "{err}");
        let err = parse(&["--dlq-topic", "tickets.events"])
            .validate()
            .unwrap_err();
        assert!(err.contains("NOTIFIER_DLQ_TOPIC"), "{err}");
    }
}
