//! Shared helpers of the pipeline tests (relay and notifier crates). Each test gets its own
//! database (migrated) and its own topics on the local stack's broker, so tests run in parallel
//! without seeing each other's rows or messages.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

use crate::lifetime::{self, Owned};

/// The schema every service shares (`migrations/`), as the API applies it.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Postgres URL and Kafka brokers of the local stack, or `None` (test skipped) when it is not
/// running. `make test` sets SERVICEDESK_REQUIRE_STACK=1 so that a missing stack fails instead.
pub fn stack() -> Option<(String, String)> {
    match (
        std::env::var("DATABASE_URL"),
        std::env::var("KAFKA_BROKERS"),
    ) {
        (Ok(db), Ok(kafka)) => Some((db, kafka)),
        _ if std::env::var("SERVICEDESK_REQUIRE_STACK").is_ok_and(|v| v == "1") => {
            panic!(
                "DATABASE_URL and KAFKA_BROKERS must be set: run `eval \"$(infra/local/stack env)\"` (make test does)"
            )
        }
        _ => {
            eprintln!("skipped: the local stack is not running (make test starts it)");
            None
        }
    }
}

/// A test's private world: a fresh migrated database, an events topic and a DLQ topic.
#[derive(Clone)]
pub struct World {
    pub db_url: String,
    pub pool: PgPool,
    pub brokers: String,
    pub topic: String,
    pub dlq: String,
    /// Removes the database and topics when the last clone goes (`lifetime`).
    _owned: Arc<Owned>,
}

impl World {
    pub async fn new(partitions: i32) -> Option<World> {
        let (base, brokers) = stack()?;
        lifetime::sweep_once(&base, &brokers).await;
        let (name, topic) = lifetime::fresh_names();
        let admin = PgPool::connect(&base)
            .await
            .expect("stack Postgres answers");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .expect("create test database");
        admin.close().await;
        let dlq = format!("{topic}.dlq");
        // Owned from here on: a test that fails while the world is made still removes it.
        let owned = Arc::new(Owned {
            base_url: base,
            brokers: brokers.clone(),
            database: name,
            topics: vec![topic.clone(), dlq.clone()],
        });
        let db_url = with_database(&owned.base_url, &owned.database);
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect(&db_url)
            .await
            .unwrap();
        MIGRATOR.run(&pool).await.expect("migrations apply");
        create_topic(&brokers, &topic, partitions).await;
        create_topic(&brokers, &dlq, 1).await;
        Some(World {
            db_url,
            pool,
            brokers,
            topic,
            dlq,
            _owned: owned,
        })
    }

    /// Inserts `n` `ticket.created` outbox rows (as the service's create does); returns their
    /// event ids in insertion order.
    pub async fn insert_events(&self, n: usize) -> Vec<Uuid> {
        let mut ids = Vec::with_capacity(n);
        for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
            let events: Vec<Uuid> = chunk.iter().map(|_| Uuid::now_v7()).collect();
            let tickets: Vec<Uuid> = chunk.iter().map(|_| Uuid::now_v7()).collect();
            sqlx::query(
                "INSERT INTO outbox_events (event_id, aggregate_id, event_type, payload, headers)
                 SELECT e, t, 'ticket.created',
                        jsonb_build_object('ticket_id', t, 'created_by', 'user-' || (ord % 50),
                                           'title', 'load', 'status', 'OPEN',
                                           'request_id', 'req-' || e),
                        jsonb_build_object('request_id', 'req-' || e)
                 FROM UNNEST($1::uuid[], $2::uuid[]) WITH ORDINALITY AS x(e, t, ord)",
            )
            .bind(&events)
            .bind(&tickets)
            .execute(&self.pool)
            .await
            .unwrap();
            ids.extend(events);
        }
        ids
    }

    pub async fn status_counts(&self) -> HashMap<String, i64> {
        sqlx::query_as::<_, (String, i64)>(
            "SELECT status, count(*) FROM outbox_events GROUP BY status",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
    }

    /// Outbox events with no `processed_events` row (the notifier never handled them).
    pub async fn unprocessed_events(&self) -> i64 {
        self.count(
            "SELECT count(*) FROM outbox_events o
             WHERE NOT EXISTS (SELECT 1 FROM processed_events p WHERE p.event_id = o.event_id)",
        )
        .await
    }

    /// Events with more than one notification (a duplicate a user would receive).
    pub async fn events_notified_twice(&self) -> i64 {
        self.count(
            "SELECT count(*) FROM (SELECT event_id FROM notifications GROUP BY event_id
                                   HAVING count(*) > 1) d",
        )
        .await
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap()
    }

    /// Every message of `topic` (from the beginning), as read by a throwaway consumer.
    pub fn read_topic(&self, topic: &str, timeout: Duration) -> Vec<Read> {
        read_topic(&self.brokers, topic, timeout)
    }

    pub async fn produce(&self, topic: &str, key: &str, value: &[u8], headers: &[(&str, &str)]) {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("acks", "all")
            .create()
            .unwrap();
        let mut hs = rdkafka::message::OwnedHeaders::new();
        for (k, v) in headers {
            hs = hs.insert(rdkafka::message::Header {
                key: k,
                value: Some(*v),
            });
        }
        producer
            .send(
                FutureRecord::to(topic).key(key).payload(value).headers(hs),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("test produce acked");
    }
}

/// One message read back from a topic.
#[derive(Debug, Clone)]
pub struct Read {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub headers: HashMap<String, String>,
    pub value: Vec<u8>,
}

/// Each partition of `topic` as `(partition, leader's node.id, replica count)`, from the
/// cluster's metadata (one request; no admin tool, no JVM).
pub fn partition_leaders(brokers: &str, topic: &str, timeout: Duration) -> Vec<(i32, i32, usize)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let md = c.fetch_metadata(Some(topic), timeout).unwrap();
    md.topics()[0]
        .partitions()
        .iter()
        .map(|p| (p.id(), p.leader(), p.replicas().len()))
        .collect()
}

pub fn read_topic(brokers: &str, topic: &str, timeout: Duration) -> Vec<Read> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("test-reader-{}", Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let md = c.fetch_metadata(Some(topic), timeout).unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut expected = 0;
    for p in md.topics()[0].partitions() {
        let (lo, hi) = c.fetch_watermarks(topic, p.id(), timeout).unwrap();
        if hi > lo {
            tpl.add_partition_offset(topic, p.id(), Offset::Offset(lo))
                .unwrap();
            expected += hi - lo;
        }
    }
    let mut out = Vec::new();
    if expected == 0 {
        return out;
    }
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + timeout;
    while (out.len() as i64) < expected && Instant::now() < deadline {
        let Some(m) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.unwrap();
        let headers = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(Read {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            headers,
            value: m.payload().unwrap_or_default().to_vec(),
        });
    }
    assert_eq!(
        out.len() as i64,
        expected,
        "read every message of {topic} before the timeout"
    );
    out
}

pub async fn create_topic(brokers: &str, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let results = admin
        .create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(-1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("create_topics answered");
    for r in results {
        r.expect("topic created");
    }
}

fn with_database(base: &str, name: &str) -> String {
    let (head, _) = base
        .rsplit_once('/')
        .expect("DATABASE_URL has a database path");
    format!("{head}/{name}")
}

/// Polls `check` until it returns true or `timeout` passes (then panics with `what`).
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out after {timeout:?} waiting for: {what}");
}

/// Scrapes one metric's value (summing all label sets) from a Prometheus endpoint.
pub async fn scrape(addr: std::net::SocketAddr, name: &str) -> f64 {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
