//! Pipeline macro-benchmarks on the local stack (issue #3), each in a fresh database and fresh
//! topics:
//! - relay drain: N outbox rows → Kafka, events/s, against a raw rdkafka produce of the same N
//!   messages with the same producer settings to the same broker in the same run (ratio);
//! - notifier: consume those N events into notifications, events/s;
//! - idle latency: one row at a time into an idle relay, commit → acked+marked, with
//!   LISTEN/NOTIFY and with polling only.
//!
//! `eval "$(infra/local/stack env)" && cargo run --release -p benches --bin pipeline -- --events 100000 --out reports/<dir>`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use clap::Parser;
use common::World;
use rdkafka::producer::{FutureRecord, Producer};
use serde_json::json;
use test_support::pipeline as common;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
struct Args {
    /// Events for the drain and consume benchmarks.
    #[arg(long, default_value_t = 100_000)]
    events: usize,
    /// Rows for the idle-latency benchmark (each mode).
    #[arg(long, default_value_t = 40)]
    idle_rows: usize,
    /// Relay batch size for the drain.
    #[arg(long, default_value_t = 500)]
    batch_size: u32,
    /// Skip the notifier benchmark (drain and idle latency only).
    #[arg(long)]
    skip_consume: bool,
    /// Directory for report.json and results.md.
    #[arg(long)]
    out: std::path::PathBuf,
}

fn relay_config(world: &World, batch: u32) -> relay::Config {
    relay::Config::parse_from([
        "relay",
        "--database-url",
        &world.db_url,
        "--kafka-brokers",
        &world.brokers,
        "--topic",
        &world.topic,
        "--metrics-addr",
        "127.0.0.1:0",
        "--batch-size",
        &batch.to_string(),
    ])
}

async fn wait_for(world: &World, sql: &str, want: i64, limit: Duration) -> Duration {
    let started = Instant::now();
    while world.count(sql).await != want {
        assert!(
            started.elapsed() < limit,
            "timed out waiting for {sql} = {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed()
}

async fn drain(world: &World, events: usize, batch: u32) -> (f64, f64) {
    world.insert_events(events).await;
    let app = relay::App::build(relay_config(world, batch)).await.unwrap();
    let stop = app.shutdown_token();
    let started = Instant::now();
    let handle = tokio::spawn(app.run_until_stopped());
    // Partial indexes only: the poll must not compete with the relay for the 2 cores.
    let unsent =
        "SELECT count(*) FROM outbox_events WHERE status = 'pending' OR status = 'processing'";
    wait_for(world, unsent, 0, Duration::from_secs(900)).await;
    let relay_secs = started.elapsed().as_secs_f64();
    stop.cancel();
    handle.await.unwrap().unwrap();

    // The same messages, produced raw with the relay's producer settings to a second topic.
    let raw_topic = format!("{}.raw", world.topic);
    common::create_topic(&world.brokers, &raw_topic, 6).await;
    let rows: Vec<(uuid::Uuid, Vec<u8>)> = {
        sqlx::query_as::<_, (uuid::Uuid, serde_json::Value, uuid::Uuid, String, chrono::DateTime<chrono::Utc>)>(
            "SELECT aggregate_id, payload, event_id, event_type, created_at FROM outbox_events ORDER BY id",
        )
        .fetch_all(&world.pool)
        .await
        .unwrap()
        .into_iter()
        .map(|(key, payload, event_id, event_type, created_at)| {
            let env = contracts::EventEnvelope { event_id, event_type, created_at, payload };
            (key, serde_json::to_vec(&env).unwrap())
        })
        .collect()
    };
    let mut config = relay_config(world, batch);
    config.topic = raw_topic.clone();
    let producer = relay::publish::producer(&config).unwrap();
    let started = Instant::now();
    for chunk in rows.chunks(batch as usize) {
        let keys: Vec<String> = chunk.iter().map(|(k, _)| k.to_string()).collect();
        let deliveries: Vec<_> = chunk
            .iter()
            .zip(&keys)
            .map(|((_, v), k)| {
                producer
                    .send_result(FutureRecord::to(&raw_topic).key(k).payload(v))
                    .map_err(|(e, _)| e)
                    .unwrap()
            })
            .collect();
        for d in futures::future::join_all(deliveries).await {
            d.unwrap().map_err(|(e, _)| e).unwrap();
        }
    }
    let raw_secs = started.elapsed().as_secs_f64();
    producer.flush(Duration::from_secs(10)).unwrap();
    (relay_secs, raw_secs)
}

async fn consume(world: &World, events: usize) -> f64 {
    let config =
        notifier::Config::for_tests(&world.db_url, &world.brokers, &world.topic, &world.dlq);
    let app = notifier::App::build(config).await.unwrap();
    let stop = app.shutdown_token();
    let started = Instant::now();
    let handle = tokio::spawn(app.run_until_stopped());
    wait_for(
        world,
        "SELECT count(*) FROM notifications",
        events as i64,
        Duration::from_secs(900),
    )
    .await;
    let secs = started.elapsed().as_secs_f64();
    stop.cancel();
    handle.await.unwrap().unwrap();
    secs
}

/// Inserts rows one by one into an idle relay; returns the first row's commit → sent latency
/// and the others', sorted (ms).
async fn idle_latency(world: &World, rows: usize, listen: bool) -> (f64, Vec<f64>) {
    sqlx::query("TRUNCATE outbox_events")
        .execute(&world.pool)
        .await
        .unwrap();
    let mut config = relay_config(world, 500);
    config.no_listen = !listen;
    let app = relay::App::build(config).await.unwrap();
    let stop = app.shutdown_token();
    let handle = tokio::spawn(app.run_until_stopped());
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..rows {
        world.insert_events(1).await;
        // Arrivals spread over the poll period, so polling shows its average wait.
        tokio::time::sleep(Duration::from_millis(120 + (i as u64 * 37) % 160)).await;
    }
    wait_for(
        world,
        "SELECT count(*) FROM outbox_events WHERE status <> 'sent'",
        0,
        Duration::from_secs(60),
    )
    .await;
    stop.cancel();
    handle.await.unwrap().unwrap();
    let mut ms: Vec<f64> = sqlx::query_scalar(
        "SELECT (extract(epoch FROM published_at - created_at) * 1000)::float8 FROM outbox_events
         ORDER BY id",
    )
    .fetch_all(&world.pool)
    .await
    .unwrap();
    // The first event after start also pays the new producer's metadata/connection set-up;
    // it is reported on its own, not mixed into the idle-latency percentiles.
    let first = if ms.is_empty() {
        f64::NAN
    } else {
        ms.remove(0)
    };
    eprintln!(
        "idle ({}): first event after start {first:.1} ms",
        if listen { "listen" } else { "poll" }
    );
    ms.sort_by(f64::total_cmp);
    (first, ms)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let world = World::new(6)
        .await
        .expect("needs the local stack: eval \"$(infra/local/stack env)\"");
    eprintln!("drain: {} outbox rows…", args.events);
    let (relay_secs, raw_secs) = drain(&world, args.events, args.batch_size).await;
    let relay_rate = args.events as f64 / relay_secs;
    let raw_rate = args.events as f64 / raw_secs;
    eprintln!("relay {relay_rate:.0} ev/s, raw produce {raw_rate:.0} ev/s");
    eprintln!("notifier: consuming {} events…", args.events);
    let consume_secs = if args.skip_consume {
        f64::NAN
    } else {
        consume(&world, args.events).await
    };
    let consume_rate = args.events as f64 / consume_secs;
    eprintln!("notifier {consume_rate:.0} ev/s");
    // The broker's own fetch rate for the same topic: a bare consumer reading every message.
    let raw_consume_secs = if args.skip_consume {
        f64::NAN
    } else {
        let started = Instant::now();
        let read = world
            .read_topic(&world.topic, Duration::from_secs(900))
            .len();
        assert_eq!(read, args.events);
        started.elapsed().as_secs_f64()
    };
    let raw_consume_rate = args.events as f64 / raw_consume_secs;
    let idle_world = World::new(1).await.expect("stack");
    let (listen_first, listen) = idle_latency(&idle_world, args.idle_rows + 1, true).await;
    let (poll_first, poll) = idle_latency(&idle_world, args.idle_rows + 1, false).await;

    let report = json!({
        "events": args.events,
        "relay_batch_size": args.batch_size,
        "relay_drain": {"seconds": relay_secs, "events_per_sec": relay_rate},
        "raw_produce": {"seconds": raw_secs, "events_per_sec": raw_rate},
        "relay_vs_raw_ratio": relay_rate / raw_rate,
        "notifier_consume": {"seconds": consume_secs, "events_per_sec": consume_rate},
        "raw_consume": {"seconds": raw_consume_secs, "events_per_sec": raw_consume_rate},
        "notifier_vs_raw_consume_ratio": consume_rate / raw_consume_rate,
        "idle_commit_to_sent_ms": {
            "first_event_after_start": {"listen_notify": listen_first, "poll_only_250ms": poll_first},
            "listen_notify": {"n": listen.len(), "p50": pct(&listen, 50.0), "p90": pct(&listen, 90.0), "p99": pct(&listen, 99.0), "max": pct(&listen, 100.0)},
            "poll_only_250ms": {"n": poll.len(), "p50": pct(&poll, 50.0), "p90": pct(&poll, 90.0), "p99": pct(&poll, 99.0), "max": pct(&poll, 100.0)},
        },
    });
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(
        args.out.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let md = format!(
        "| benchmark | result |\n|---|---|\n\
         | relay drain of {n} rows (batch {b}) | {relay_rate:.0} events/s ({relay_secs:.1} s) |\n\
         | raw rdkafka produce of the same {n} messages | {raw_rate:.0} events/s ({raw_secs:.1} s) |\n\
         | relay / raw | {ratio:.2} |\n\
         | notifier consume of {n} events | {consume_rate:.0} events/s ({consume_secs:.1} s) |\n\
         | bare rdkafka consumer reading the same {n} messages | {raw_consume_rate:.0} events/s ({raw_consume_secs:.1} s) |\n\
         | idle commit → sent, LISTEN/NOTIFY (n={ln}) | p50 {lp50:.1} ms, p99 {lp99:.1} ms, max {lmax:.1} ms |\n\
         | idle commit → sent, polling only 250 ms (n={pn}) | p50 {pp50:.1} ms, p99 {pp99:.1} ms, max {pmax:.1} ms |\n\
         | first event after a relay start (producer set-up), LISTEN / polling | {listen_first:.1} ms / {poll_first:.1} ms |\n",
        n = args.events,
        b = args.batch_size,
        ratio = relay_rate / raw_rate,
        ln = listen.len(),
        lp50 = pct(&listen, 50.0),
        lp99 = pct(&listen, 99.0),
        lmax = pct(&listen, 100.0),
        pn = poll.len(),
        pp50 = pct(&poll, 50.0),
        pp99 = pct(&poll, 99.0),
        pmax = pct(&poll, 100.0),
    );
    std::fs::write(args.out.join("results.md"), &md)?;
    println!("{md}");
    Ok(())
}
