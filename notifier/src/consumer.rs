//! The consume loop: batches of waiting messages are handled in one transaction.
//!
//! Failures are split by what can fix them (issue #11.1). A message that is itself wrong
//! (undecodable, unknown type, data Postgres refuses) goes to the DLQ at once, so its partition
//! moves on. A failure of Postgres (unreachable, restarting, timed out) is waited out without
//! limit: every assigned partition is paused, the consumer keeps polling so it stays in the
//! group, `/readyz` and `notifier_stalled` report it, and the batch is retried with exponential
//! backoff. A good event is never dead-lettered because the database was away. Offsets are stored
//! only once every message of the batch is handled or dead-lettered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{DateTime, Utc};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, ClientContext, TopicPartitionList};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::Config;
use crate::handler::{self, HandleError, NewNotification};
use crate::metrics::Metrics;

/// DLQ header names, next to the original message's own headers.
pub mod dlq_header {
    pub const ERROR: &str = "dlq.error";
    pub const REASON: &str = "dlq.reason";
    pub const SOURCE: &str = "dlq.source";
}

/// Feeds librdkafka's per-partition `consumer_lag` statistics into the gauge, for the partitions
/// this consumer is assigned (`desired`) only: after a rebalance librdkafka keeps reporting the
/// lag a revoked partition had when it left, frozen, which summed over the group never drains
/// (seen in the notifier-kill drill: a lag of 3 for minutes with every event handled).
pub struct LagContext {
    metrics: Arc<Metrics>,
}

impl ClientContext for LagContext {
    fn stats(&self, stats: Statistics) {
        self.metrics.consumer_lag.reset();
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                if *partition >= 0 && p.desired && p.consumer_lag >= 0 {
                    self.metrics
                        .consumer_lag
                        .with_label_values(&[topic.as_str(), &partition.to_string()])
                        .set(p.consumer_lag);
                }
            }
        }
    }
}

/// Logs every assignment and revocation (partitions by topic) and keeps the assignment gauge: an
/// operator sees at once when a consumer holds nothing or a rebalance is stuck.
impl ConsumerContext for LagContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            self.metrics.rebalances.with_label_values(&["revoke"]).inc();
            tracing::info!(partitions = %describe(tpl), "partitions revoked");
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                self.metrics.rebalances.with_label_values(&["assign"]).inc();
                tracing::info!(partitions = %describe(tpl), "partitions assigned");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => {
                self.metrics.rebalances.with_label_values(&["error"]).inc();
                tracing::warn!(error = %e, "rebalance failed");
            }
        }
        let held = consumer.assignment().map(|a| a.count()).unwrap_or(0);
        self.metrics.assigned_partitions.set(held as i64);
        if held == 0 {
            tracing::warn!("this consumer holds no partitions (readiness reports it)");
        }
    }
}

/// `topic[0,2,4]` for a partition list (log lines stay short however many partitions).
fn describe(tpl: &TopicPartitionList) -> String {
    let mut by_topic: std::collections::BTreeMap<String, Vec<i32>> = Default::default();
    for e in tpl.elements() {
        by_topic
            .entry(e.topic().to_owned())
            .or_default()
            .push(e.partition());
    }
    by_topic
        .into_iter()
        .map(|(t, mut ps)| {
            ps.sort_unstable();
            let ps: Vec<String> = ps.iter().map(i32::to_string).collect();
            format!("{t}[{}]", ps.join(","))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub type EventConsumer = StreamConsumer<LagContext>;

/// The settings every Kafka client of the notifier shares: the brokers, then the
/// `--kafka-option` passthrough applied last (security settings of a real cluster reach the DLQ
/// producer too, or dead-lettering would fail there and stall the partition).
fn client_config(config: &Config, own: &[(&str, String)]) -> ClientConfig {
    ops::kafka::client_config(&config.kafka_brokers, own, &config.kafka_options)
}

pub fn consumer_config(config: &Config) -> ClientConfig {
    client_config(
        config,
        &[
            ("group.id", config.group_id.clone()),
            ("client.id", format!("notifier-{}", std::process::id())),
            ("auto.offset.reset", "earliest".into()),
            // Offsets are stored by us after handling, committed by librdkafka every second and
            // on close: a crash re-delivers at most the last second, and handling is idempotent.
            ("enable.auto.commit", "true".into()),
            ("auto.commit.interval.ms", "1000".into()),
            ("enable.auto.offset.store", "false".into()),
            (
                "session.timeout.ms",
                config.session_timeout.as_millis().to_string(),
            ),
            (
                "heartbeat.interval.ms",
                heartbeat_interval_ms(config).to_string(),
            ),
            ("statistics.interval.ms", "1000".into()),
        ],
    )
}

/// A tenth of the session timeout: when the group coordinator dies, the client's last good
/// heartbeat is at most this old, so the session survives a coordinator move that takes up to
/// nine tenths of it. With a third (the usual advice) a 10 s session was lost to a 7 s move.
fn heartbeat_interval_ms(config: &Config) -> u128 {
    (config.session_timeout.as_millis() / 10).max(100)
}

pub fn dlq_producer_config(config: &Config) -> ClientConfig {
    client_config(
        config,
        &[
            ("acks", "all".into()),
            ("enable.idempotence", "true".into()),
            ("linger.ms", "1".into()),
        ],
    )
}

pub fn consumer(config: &Config, metrics: Arc<Metrics>) -> anyhow::Result<EventConsumer> {
    let consumer: EventConsumer = consumer_config(config)
        .create_with_context(LagContext { metrics })
        .context("creating the Kafka consumer")?;
    consumer
        .subscribe(&[&config.topic])
        .with_context(|| format!("subscribing to {}", config.topic))?;
    Ok(consumer)
}

pub fn dlq_producer(config: &Config) -> anyhow::Result<FutureProducer> {
    dlq_producer_config(config)
        .create()
        .context("creating the DLQ producer")
}

pub struct Notifier {
    pub(crate) consumer: EventConsumer,
    pub(crate) dlq: FutureProducer,
    pub(crate) pool: PgPool,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) dlq_topic: String,
    pub(crate) backoff: ExponentialBuilder,
    pub(crate) batch_size: usize,
    pub(crate) batch_wait: Duration,
    /// Why and since when the consumer is waiting out a transient failure (for `/readyz`).
    pub(crate) stalled: Mutex<Option<Stall>>,
    /// Client-side bound of one database operation (server limit + round trip).
    pub(crate) db_timeout: Duration,
    /// Beaten on every turn of the consume loop, idle or busy.
    pub(crate) heartbeat: ops::Heartbeat,
    pub(crate) stuck_after: Duration,
}

/// A transient failure being waited out.
#[derive(Debug, Clone)]
pub struct Stall {
    pub error: String,
    pub since: Instant,
    pub attempts: u32,
}

/// One decoded message of a batch.
struct Item<'a> {
    msg: &'a BorrowedMessage<'a>,
    decoded: Result<(NewNotification, DateTime<Utc>), HandleError>,
}

/// Messages received while the partitions were paused (fetched before the pause took effect):
/// they start the next batch, so none is skipped.
type Carry<'c> = Vec<BorrowedMessage<'c>>;

impl Notifier {
    /// Consumes until `stop`; then finishes the batch in hand, commits and leaves the group.
    pub async fn run(&self, stop: CancellationToken) {
        let mut carry: Carry<'_> = Vec::new();
        loop {
            self.heartbeat.beat();
            let mut batch = std::mem::take(&mut carry);
            if batch.is_empty() {
                let first = tokio::select! {
                    m = self.consumer.recv() => m,
                    // Idle: turn anyway, so liveness sees the loop alive.
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = stop.cancelled() => break,
                };
                match first {
                    Ok(m) => batch.push(m),
                    Err(e) => {
                        tracing::warn!(error = %e, "consumer error");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                }
            }
            let deadline = tokio::time::Instant::now() + self.batch_wait;
            while batch.len() < self.batch_size {
                match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                    Ok(Ok(m)) => batch.push(m),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "consumer error");
                        break;
                    }
                    Err(_) => break,
                }
            }
            if !self.handle_batch(&batch, &mut carry, &stop).await {
                break; // stopped midway: no offset stored for what was not handled
            }
            for m in &batch {
                if let Err(e) = self.consumer.store_offset_from_message(m) {
                    tracing::warn!(error = %e, "storing offset (partition revoked?)");
                }
            }
        }
        self.close();
    }

    fn close(&self) {
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => tracing::info!("offsets committed"),
            // Nothing stored since the last commit.
            Err(rdkafka::error::KafkaError::ConsumerCommit(
                rdkafka::types::RDKafkaErrorCode::NoOffset,
            )) => {}
            Err(e) => tracing::warn!(error = %e, "final offset commit failed"),
        }
        self.consumer.unsubscribe();
    }

    /// Handles every message of the batch (notification written, duplicate skipped, or
    /// dead-lettered for a permanent error). `false` when stopped midway: then no offset may be
    /// stored.
    async fn handle_batch<'c>(
        &'c self,
        batch: &[BorrowedMessage<'c>],
        carry: &mut Carry<'c>,
        stop: &CancellationToken,
    ) -> bool {
        let items: Vec<Item<'_>> = batch
            .iter()
            .map(|msg| Item {
                msg,
                decoded: handler::decode(msg.payload())
                    .and_then(|e| handler::notification_for(&e).map(|n| (n, e.created_at))),
            })
            .collect();

        // Fast path: everything decodable in one statement, waited out while Postgres is away.
        let good: Vec<&(NewNotification, DateTime<Utc>)> = items
            .iter()
            .filter_map(|i| i.decoded.as_ref().ok())
            .collect();
        let mut fast_path_done = false;
        if !good.is_empty() {
            let notes: Vec<NewNotification> = good.iter().map(|(n, _)| n.clone()).collect();
            let created: HashMap<Uuid, DateTime<Utc>> =
                good.iter().map(|(n, c)| (n.event_id, *c)).collect();
            match self.record_waiting(&notes, carry, stop).await {
                None => return false,
                Some(Ok(fresh)) => {
                    self.count(&fresh, notes.len(), &created);
                    fast_path_done = true;
                }
                Some(Err(e)) => tracing::warn!(error = %e, messages = notes.len(),
                    "Postgres refused the batch; handling one message at a time"),
            }
        }

        for item in &items {
            let refused = match &item.decoded {
                Ok(_) if fast_path_done => continue,
                Ok((note, created_at)) => {
                    match self
                        .record_waiting(std::slice::from_ref(note), carry, stop)
                        .await
                    {
                        None => return false,
                        Some(Ok(fresh)) => {
                            self.count(&fresh, 1, &HashMap::from([(note.event_id, *created_at)]));
                            continue;
                        }
                        Some(Err(e)) => e,
                    }
                }
                // Permanent: the message itself is wrong, the DLQ takes it at once.
                Err(e) => {
                    if !self.dead_letter(item.msg, e, stop).await {
                        return false;
                    }
                    continue;
                }
            };
            if !self.dead_letter(item.msg, &refused, stop).await {
                return false;
            }
        }
        true
    }

    /// Records the notifications, waiting out transient failures without limit. `None` when
    /// stopped; `Some(Err)` only for a permanent error.
    async fn record_waiting<'c>(
        &'c self,
        notes: &[NewNotification],
        carry: &mut Carry<'c>,
        stop: &CancellationToken,
    ) -> Option<Result<Vec<Uuid>, HandleError>> {
        let mut delays = self.backoff.build();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let started = Instant::now();
            self.heartbeat.beat();
            let result = tokio::select! {
                r = ops::bounded(self.db_timeout, handler::record(&self.pool, notes)) => r,
                _ = stop.cancelled() => return None,
            };
            match result {
                Ok(fresh) => {
                    self.metrics
                        .handle_seconds
                        .observe(started.elapsed().as_secs_f64());
                    if attempts > 1 {
                        self.unstall();
                    }
                    return Some(Ok(fresh));
                }
                Err(e) if e.is_transient() => {
                    let delay = delays.next().unwrap_or(Duration::from_secs(1));
                    self.metrics.retries.inc();
                    tracing::warn!(error = %e, attempts, retry_in = ?delay, messages = notes.len(),
                        "Postgres unavailable; partitions paused, waiting (nothing is dead-lettered)");
                    self.mark_stalled(&e, attempts);
                    if !self.wait_paused(delay, carry, stop).await {
                        return None;
                    }
                }
                Err(e) => {
                    if attempts > 1 {
                        self.unstall();
                    }
                    return Some(Err(e));
                }
            }
        }
    }

    /// Sleeps `delay` with every assigned partition paused, still polling the consumer so the
    /// group keeps us (`max.poll.interval.ms`) and rebalances are served. A message that was
    /// already fetched before the pause took effect goes to `carry`. `false` when stopped.
    async fn wait_paused<'c>(
        &'c self,
        delay: Duration,
        carry: &mut Carry<'c>,
        stop: &CancellationToken,
    ) -> bool {
        self.pause_assignment();
        let until = tokio::time::Instant::now() + delay;
        loop {
            self.heartbeat.beat();
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return true,
                _ = stop.cancelled() => return false,
                m = self.consumer.recv() => match m {
                    Ok(m) => carry.push(m),
                    Err(e) => tracing::warn!(error = %e, "consumer error while paused"),
                },
            }
            // A rebalance may have handed us partitions that are not paused yet.
            self.pause_assignment();
        }
    }

    fn pause_assignment(&self) {
        if let Ok(assigned) = self.consumer.assignment()
            && let Err(e) = self.consumer.pause(&assigned)
        {
            tracing::warn!(error = %e, "pausing partitions");
        }
    }

    fn mark_stalled(&self, error: &HandleError, attempts: u32) {
        let mut stalled = self.stalled.lock().unwrap_or_else(|p| p.into_inner());
        let since = stalled.as_ref().map_or_else(Instant::now, |s| s.since);
        *stalled = Some(Stall {
            error: error.to_string(),
            since,
            attempts,
        });
        self.metrics.stalled.set(1);
    }

    fn unstall(&self) {
        let was = self
            .stalled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        self.metrics.stalled.set(0);
        if let Some(s) = was {
            tracing::info!(stalled_for = ?s.since.elapsed(), attempts = s.attempts,
                "Postgres back; partitions resumed");
        }
        if let Ok(assigned) = self.consumer.assignment()
            && let Err(e) = self.consumer.resume(&assigned)
        {
            tracing::warn!(error = %e, "resuming partitions");
        }
    }

    /// The transient failure being waited out, if any.
    pub fn stall(&self) -> Option<Stall> {
        self.stalled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn count(&self, fresh: &[Uuid], handled: usize, created: &HashMap<Uuid, DateTime<Utc>>) {
        let now = Utc::now();
        for id in fresh {
            if let Some(c) = created.get(id) {
                let secs = (now - *c).to_std().unwrap_or_default().as_secs_f64();
                self.metrics.e2e_latency.observe(secs);
            }
        }
        self.metrics.processed.inc_by(fresh.len() as u64);
        self.metrics
            .duplicates
            .inc_by(handled.saturating_sub(fresh.len()) as u64);
    }

    /// Publishes the message to the DLQ with why and how often it failed, waiting for the ack
    /// (retrying until it comes or we are stopped): a message is never dropped silently.
    async fn dead_letter(
        &self,
        msg: &BorrowedMessage<'_>,
        error: &HandleError,
        stop: &CancellationToken,
    ) -> bool {
        let error_text = error.to_string();
        let source = format!("{}/{}/{}", msg.topic(), msg.partition(), msg.offset());
        tracing::error!(error = %error_text, %source, "permanent error: message dead-lettered");
        loop {
            self.heartbeat.beat();
            let mut headers = OwnedHeaders::new();
            if let Some(original) = msg.headers() {
                for h in original.iter() {
                    headers = headers.insert(Header {
                        key: h.key,
                        value: h.value,
                    });
                }
            }
            let headers = headers
                .insert(Header {
                    key: dlq_header::ERROR,
                    value: Some(error_text.as_str()),
                })
                .insert(Header {
                    key: dlq_header::REASON,
                    value: Some(error.reason()),
                })
                .insert(Header {
                    key: dlq_header::SOURCE,
                    value: Some(source.as_str()),
                });
            let mut record = FutureRecord::<[u8], [u8]>::to(&self.dlq_topic).headers(headers);
            if let Some(k) = msg.key() {
                record = record.key(k);
            }
            if let Some(p) = msg.payload() {
                record = record.payload(p);
            }
            let sent = tokio::select! {
                r = self.dlq.send(record, Duration::from_secs(5)) => r,
                _ = stop.cancelled() => return false,
            };
            match sent {
                Ok(_) => {
                    self.metrics.dlq.with_label_values(&[error.reason()]).inc();
                    return true;
                }
                Err((e, _)) => {
                    tracing::error!(error = %e, "DLQ publish failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.cancelled() => return false,
                    }
                }
            }
        }
    }

    /// Whether the consumer currently holds partitions (used by readiness and tests).
    pub fn assignment_size(&self) -> KafkaResult<usize> {
        Ok(self.consumer.assignment()?.count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue #11.2: the DLQ producer gets the same passthrough options as the consumer.
    #[test]
    fn every_client_gets_the_kafka_options() {
        let mut config = Config::for_tests("postgres://x/y", "b:9092", "t", "t.dlq");
        config.kafka_options = vec![
            ("security.protocol".into(), "sasl_plaintext".into()),
            ("sasl.mechanism".into(), "PLAIN".into()),
            ("linger.ms".into(), "7".into()),
        ];
        for (name, c) in [
            ("consumer", consumer_config(&config)),
            ("dlq producer", dlq_producer_config(&config)),
        ] {
            assert_eq!(c.get("security.protocol"), Some("sasl_plaintext"), "{name}");
            assert_eq!(c.get("sasl.mechanism"), Some("PLAIN"), "{name}");
            assert_eq!(c.get("bootstrap.servers"), Some("b:9092"), "{name}");
        }
        assert_eq!(
            dlq_producer_config(&config).get("linger.ms"),
            Some("7"),
            "the operator's options win over ours"
        );
    }

    /// The kafka-leader-kill drill once lost both notifiers' sessions: heartbeats every third of
    /// a 10 s session left as little as 6.7 s for the coordinator's move.
    #[test]
    fn heartbeats_come_often_enough_to_outlive_a_coordinator_move() {
        let mut config = Config::for_tests("postgres://x/y", "b:9092", "t", "t.dlq");
        config.session_timeout = Duration::from_secs(10);
        let c = consumer_config(&config);
        assert_eq!(c.get("session.timeout.ms"), Some("10000"));
        assert_eq!(c.get("heartbeat.interval.ms"), Some("1000"));
        assert_eq!(c.get("reconnect.backoff.max.ms"), Some("1000"));
    }
}
