//! Publishing a claimed batch with an idempotent, acks=all rdkafka producer.

use std::time::Duration;

use anyhow::Context;
use contracts::EventEnvelope;
use futures::future::join_all;
use rand::Rng;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

use contracts::kafka_headers as header;

use crate::config::Config;
use crate::outbox::OutboxRow;

/// The producer every relay uses: `acks=all` + idempotence, so a retried send never duplicates
/// within a producer session and an ack means every in-sync replica has it.
pub fn producer(config: &Config) -> anyhow::Result<FutureProducer> {
    let own = [
        ("client.id", config.relay_id()),
        ("acks", "all".into()),
        ("enable.idempotence", "true".into()),
        ("compression.type", config.compression.clone()),
        ("linger.ms", config.linger_ms.to_string()),
        ("batch.num.messages", "10000".into()),
        ("batch.size", "1048576".into()),
        ("queue.buffering.max.messages", "200000".into()),
        (
            "message.timeout.ms",
            config.delivery_timeout.as_millis().to_string(),
        ),
        // A link that swallows bytes without closing (a dropped route, a half-open connection
        // after a failover) is only noticed when a request times out, and a new connection only
        // when its setup does: librdkafka waits 60 s and 30 s by default, then backs off up to
        // 10 s between reconnects. 10 s, 10 s and 1 s (the reconnect cap every client gets from
        // ops::kafka) bound a silent link's cost to about 20 s after it comes back (the
        // relay-kafka-blackhole drill). A produce slower than 10 s is retried on a new
        // connection (idempotent: no duplicate), costing one reconnect.
        ("socket.timeout.ms", "10000".into()),
        ("socket.connection.setup.timeout.ms", "10000".into()),
    ];
    ops::kafka::client_config(&config.kafka_brokers, &own, &config.kafka_options)
        .create()
        .context("creating the Kafka producer")
}

/// Outcome of one batch: which rows the broker acked and which failed (with why).
#[derive(Debug, Default)]
pub struct BatchResult {
    pub acked: Vec<i64>,
    pub failed: Vec<(i64, Failure)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// The broker (or librdkafka) reported an error for this message.
    Broker(String),
    /// Failed on purpose by the chaos knob, before reaching the broker.
    Chaos,
}

impl Failure {
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::Broker(_) => "broker",
            Failure::Chaos => "chaos",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Failure::Broker(e) => format!("kafka: {e}"),
            Failure::Chaos => "chaos: injected publish failure".into(),
        }
    }
}

/// The value of a Kafka message for an outbox row.
pub fn envelope(row: &OutboxRow) -> EventEnvelope {
    EventEnvelope {
        event_id: row.event_id,
        event_type: row.event_type.clone(),
        created_at: row.created_at,
        payload: row.payload.clone(),
    }
}

/// A claimed row as the Kafka message it becomes: keyed by ticket (one partition per ticket keeps
/// its events in order), the JSON envelope as value, event id, type and request id as headers.
pub struct Outgoing<'r> {
    row: &'r OutboxRow,
    key: String,
    value: Vec<u8>,
    event_id: String,
}

impl<'r> Outgoing<'r> {
    pub fn of(row: &'r OutboxRow) -> Result<Self, serde_json::Error> {
        Ok(Self {
            row,
            key: row.aggregate_id.to_string(),
            value: serde_json::to_vec(&envelope(row))?,
            event_id: row.event_id.to_string(),
        })
    }

    /// The record for `topic`, borrowing this message's bytes.
    pub fn record<'a>(&'a self, topic: &'a str) -> FutureRecord<'a, String, Vec<u8>> {
        let request_id = self
            .row
            .headers
            .get("request_id")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        let headers = OwnedHeaders::new_with_capacity(3)
            .insert(Header {
                key: header::EVENT_ID,
                value: Some(self.event_id.as_str()),
            })
            .insert(Header {
                key: header::EVENT_TYPE,
                value: Some(self.row.event_type.as_str()),
            })
            .insert(Header {
                key: header::REQUEST_ID,
                value: Some(request_id),
            });
        FutureRecord::to(topic)
            .key(&self.key)
            .payload(&self.value)
            .headers(headers)
    }
}

pub struct Publisher {
    producer: FutureProducer,
    topic: String,
    chaos_failure_rate: f64,
}

impl Publisher {
    pub fn new(producer: FutureProducer, topic: String, chaos_failure_rate: f64) -> Self {
        Self {
            producer,
            topic,
            chaos_failure_rate,
        }
    }

    pub fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    /// Hands every row to the producer, then waits for every delivery report. Nothing is
    /// reported acked unless the broker acked it.
    pub async fn publish(&self, rows: &[OutboxRow]) -> BatchResult {
        let mut result = BatchResult::default();
        let mut pending = Vec::with_capacity(rows.len());
        for row in rows {
            if self.chaos_failure_rate > 0.0 && rand::rng().random_bool(self.chaos_failure_rate) {
                result.failed.push((row.id, Failure::Chaos));
                continue;
            }
            let message = match Outgoing::of(row) {
                Ok(m) => m,
                Err(e) => {
                    result.failed.push((row.id, Failure::Broker(e.to_string())));
                    continue;
                }
            };
            let record = message.record(&self.topic);
            match self.producer.send_result(record) {
                Ok(delivery) => pending.push((row.id, delivery)),
                Err((e, _)) => result.failed.push((row.id, Failure::Broker(e.to_string()))),
            }
        }
        let ids: Vec<i64> = pending.iter().map(|(id, _)| *id).collect();
        let reports = join_all(pending.into_iter().map(|(_, d)| d)).await;
        for (id, report) in ids.into_iter().zip(reports) {
            match report {
                Ok(Ok(_)) => result.acked.push(id),
                Ok(Err((e, _))) => result.failed.push((id, Failure::Broker(e.to_string()))),
                Err(_canceled) => result
                    .failed
                    .push((id, Failure::Broker("producer dropped the message".into()))),
            }
        }
        result
    }

    /// Whether the broker answers a metadata request for our topic within `timeout`.
    pub async fn broker_ready(&self, timeout: Duration) -> Result<(), String> {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            let md = producer
                .client()
                .fetch_metadata(Some(&topic), Timeout::After(timeout))
                .map_err(|e| format!("kafka metadata: {e}"))?;
            match md.topics().first() {
                Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(()),
                Some(t) => Err(format!("topic {topic}: {:?}", t.error())),
                None => Err(format!("topic {topic} not found")),
            }
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Waits for in-flight messages on shutdown.
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer.flush(Timeout::After(timeout)) {
            tracing::warn!(error = %e, "producer flush on shutdown");
        }
    }
}
