//! `relay diag …`: pipeline diagnostics written with rdkafka (Debian's kcat is too old for the
//! local broker): topics, peeking messages, outbox and processed state, consumer-group lag.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use sqlx::PgPool;

#[derive(Debug, Clone, Args)]
pub struct DiagArgs {
    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BROKERS", default_value = ops::kafka::DEFAULT_BROKERS)]
    pub kafka_brokers: String,
    /// Postgres URL (for `outbox` and `processed`).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Per-request timeout towards the broker.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// librdkafka options, as the relay takes them (`--kafka-option security.protocol=SSL`):
    /// a cluster that needs TLS or SASL needs them to be inspected too.
    #[arg(long = "kafka-option", env = "RELAY_KAFKA_OPTIONS", hide_env_values = true, value_delimiter = ',', value_parser = ops::KvParser)]
    pub kafka_options: Vec<(String, String)>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum DiagCommand {
    /// Topics with their partitions and low/high watermarks.
    Topics,
    /// Print the last N messages of each partition of a topic (key, headers, value).
    Peek {
        #[arg(default_value = contracts::topics::TICKETS_EVENTS)]
        topic: String,
        #[arg(long, default_value_t = 5)]
        limit: i64,
    },
    /// Find the message carrying this event_id header; exit 1 when absent.
    FindEvent {
        event_id: uuid::Uuid,
        #[arg(long, default_value = contracts::topics::TICKETS_EVENTS)]
        topic: String,
    },
    /// Outbox rows by status, oldest unsent age, attempts and last errors.
    Outbox,
    /// processed_events / notifications counts, and sent events not yet processed.
    Processed,
    /// Committed offset, high watermark and lag per partition of a consumer group.
    Lag {
        #[arg(long, default_value = contracts::groups::NOTIFIER)]
        group: String,
        #[arg(long, default_value = contracts::topics::TICKETS_EVENTS)]
        topic: String,
    },
}

pub async fn run(command: DiagCommand, args: DiagArgs) -> anyhow::Result<()> {
    match command {
        DiagCommand::Topics => blocking(move || topics(&args)).await,
        DiagCommand::Peek { topic, limit } => blocking(move || peek(&args, &topic, limit)).await,
        DiagCommand::FindEvent { event_id, topic } => {
            blocking(move || find_event(&args, &topic, event_id)).await
        }
        DiagCommand::Lag { group, topic } => blocking(move || lag(&args, &group, &topic)).await,
        DiagCommand::Outbox => outbox(&pool(&args).await?).await,
        DiagCommand::Processed => processed(&pool(&args).await?).await,
    }
}

async fn blocking(f: impl FnOnce() -> anyhow::Result<()> + Send + 'static) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(f).await?
}

async fn pool(args: &DiagArgs) -> anyhow::Result<PgPool> {
    let url = args
        .database_url
        .as_deref()
        .context("DATABASE_URL must be set for this command")?;
    PgPool::connect(url)
        .await
        .context("connecting to Postgres (DATABASE_URL)")
}

fn consumer(args: &DiagArgs, group: &str) -> anyhow::Result<BaseConsumer> {
    let own = [
        ("group.id", group.to_string()),
        ("enable.auto.commit", "false".into()),
        ("enable.auto.offset.store", "false".into()),
    ];
    ops::kafka::client_config(&args.kafka_brokers, &own, &args.kafka_options)
        .create()
        .context("creating a Kafka consumer")
}

fn diag_group() -> String {
    format!("servicedesk-diag-{}", uuid::Uuid::new_v4())
}

/// Partitions of `topic` with (low, high) watermarks.
fn watermarks(
    c: &BaseConsumer,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<Vec<(i32, i64, i64)>> {
    let md = c
        .fetch_metadata(Some(topic), timeout)
        .with_context(|| format!("metadata of {topic}"))?;
    let t = md.topics().first().context("no metadata returned")?;
    if let Some(e) = t.error() {
        bail!("topic {topic}: {e:?}");
    }
    let mut out = Vec::new();
    for p in t.partitions() {
        let (lo, hi) = c
            .fetch_watermarks(topic, p.id(), timeout)
            .with_context(|| format!("watermarks of {topic}/{}", p.id()))?;
        out.push((p.id(), lo, hi));
    }
    out.sort_unstable();
    Ok(out)
}

fn topics(args: &DiagArgs) -> anyhow::Result<()> {
    let c = consumer(args, &diag_group())?;
    let md = c.fetch_metadata(None, args.timeout)?;
    let mut names: Vec<&str> = md.topics().iter().map(|t| t.name()).collect();
    names.sort_unstable();
    println!(
        "{:<32} {:>9} {:>12} {:>12}",
        "topic", "partition", "low", "high"
    );
    for name in names {
        for (p, lo, hi) in watermarks(&c, name, args.timeout)? {
            println!("{name:<32} {p:>9} {lo:>12} {hi:>12}");
        }
    }
    Ok(())
}

fn assign_from(
    c: &BaseConsumer,
    topic: &str,
    marks: &[(i32, i64, i64)],
    start: impl Fn(i64, i64) -> i64,
) -> anyhow::Result<i64> {
    let mut tpl = TopicPartitionList::new();
    let mut expected = 0;
    for &(p, lo, hi) in marks {
        if hi > lo {
            let from = start(lo, hi);
            tpl.add_partition_offset(topic, p, Offset::Offset(from))?;
            expected += hi - from;
        }
    }
    c.assign(&tpl)?;
    Ok(expected)
}

fn peek(args: &DiagArgs, topic: &str, limit: i64) -> anyhow::Result<()> {
    let c = consumer(args, &diag_group())?;
    let marks = watermarks(&c, topic, args.timeout)?;
    let expected = assign_from(&c, topic, &marks, |lo, hi| (hi - limit).max(lo))?;
    let mut seen = 0;
    let deadline = Instant::now() + args.timeout;
    while seen < expected && Instant::now() < deadline {
        let Some(msg) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        let msg = msg?;
        seen += 1;
        let key = msg.key().map(String::from_utf8_lossy).unwrap_or_default();
        let headers: Vec<String> = msg
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| {
                        let v = h.value.map(String::from_utf8_lossy).unwrap_or_default();
                        format!("{}={v}", h.key)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let value = msg
            .payload()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        println!(
            "{topic}/{} @{} key={key} [{}]\n  {value}",
            msg.partition(),
            msg.offset(),
            headers.join(" ")
        );
    }
    if seen < expected {
        bail!("read {seen} of {expected} messages before the timeout");
    }
    Ok(())
}

fn find_event(args: &DiagArgs, topic: &str, event_id: uuid::Uuid) -> anyhow::Result<()> {
    let c = consumer(args, &diag_group())?;
    let marks = watermarks(&c, topic, args.timeout)?;
    let expected = assign_from(&c, topic, &marks, |lo, _| lo)?;
    let wanted = event_id.to_string();
    let deadline = Instant::now() + args.timeout.max(Duration::from_secs(30));
    let mut seen = 0;
    while seen < expected && Instant::now() < deadline {
        let Some(msg) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        let msg = msg?;
        seen += 1;
        let hit = msg.headers().is_some_and(|hs| {
            hs.iter().any(|h| {
                h.key == contracts::kafka_headers::EVENT_ID && h.value == Some(wanted.as_bytes())
            })
        });
        if hit {
            let value = msg
                .payload()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            println!(
                "found {topic}/{} @{}: {value}",
                msg.partition(),
                msg.offset()
            );
            return Ok(());
        }
    }
    bail!("event {event_id} not found in {topic} ({seen} of {expected} messages scanned)")
}

fn lag(args: &DiagArgs, group: &str, topic: &str) -> anyhow::Result<()> {
    let c = consumer(args, group)?;
    let marks = watermarks(&c, topic, args.timeout)?;
    let mut tpl = TopicPartitionList::new();
    for &(p, _, _) in &marks {
        tpl.add_partition(topic, p);
    }
    let committed = c
        .committed_offsets(tpl, Timeout::After(args.timeout))
        .context("committed offsets")?;
    println!("group {group} on {topic}");
    println!(
        "{:>9} {:>12} {:>12} {:>10}",
        "partition", "committed", "high", "lag"
    );
    let mut total = 0;
    for (p, lo, hi) in marks {
        let off = committed
            .find_partition(topic, p)
            .map(|e| e.offset())
            .unwrap_or(Offset::Invalid);
        let (shown, lag) = match off {
            Offset::Offset(o) => (o.to_string(), hi - o),
            _ => ("-".to_string(), hi - lo),
        };
        total += lag;
        println!("{p:>9} {shown:>12} {hi:>12} {lag:>10}");
    }
    println!("total lag {total}");
    Ok(())
}

async fn outbox(pool: &PgPool) -> anyhow::Result<()> {
    let rows: Vec<(String, i64, Option<i32>)> = sqlx::query_as(
        "SELECT status, count(*), max(attempts) FROM outbox_events GROUP BY status ORDER BY status",
    )
    .fetch_all(pool)
    .await?;
    println!("{:<12} {:>10} {:>13}", "status", "rows", "max attempts");
    for (status, n, attempts) in rows {
        println!("{status:<12} {n:>10} {:>13}", attempts.unwrap_or(0));
    }
    let oldest: Option<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM now() - min(created_at))::float8 FROM outbox_events
         WHERE status <> 'sent'",
    )
    .fetch_one(pool)
    .await?;
    println!("oldest unsent: {:.3}s", oldest.unwrap_or(0.0));
    let errors: Vec<(String, i64)> = sqlx::query_as(
        "SELECT last_error, count(*) FROM outbox_events WHERE last_error IS NOT NULL
         GROUP BY last_error ORDER BY count(*) DESC LIMIT 5",
    )
    .fetch_all(pool)
    .await?;
    for (e, n) in errors {
        println!("last_error x{n}: {e}");
    }
    Ok(())
}

async fn processed(pool: &PgPool) -> anyhow::Result<()> {
    let (processed, notifications, latest, unprocessed): (i64, i64, Option<chrono::DateTime<chrono::Utc>>, i64) =
        sqlx::query_as(
            "SELECT (SELECT count(*) FROM processed_events),
                    (SELECT count(*) FROM notifications),
                    (SELECT max(processed_at) FROM processed_events),
                    (SELECT count(*) FROM outbox_events o WHERE o.status = 'sent'
                       AND NOT EXISTS (SELECT 1 FROM processed_events p WHERE p.event_id = o.event_id))",
        )
        .fetch_one(pool)
        .await?;
    println!("processed_events        {processed}");
    println!("notifications           {notifications}");
    println!(
        "latest processed_at     {}",
        latest.map(|t| t.to_rfc3339()).unwrap_or_else(|| "-".into())
    );
    println!("sent, not yet processed {unprocessed}");
    Ok(())
}
