//! Attachment upload throughput on the local stack (issue #5): files of `--size` bytes uploaded
//! through the API (`POST /v1/tickets/{id}/attachments`, multipart, streamed to Garage, metadata
//! and outbox event in Postgres) against direct `PutObject`s of the same bytes with the same SDK
//! client to the same bucket. Rounds alternate API and direct in one run, so the ratio compares
//! like with like on a noisy machine.
//!
//! `eval "$(infra/local/stack env)" && cargo run --release -p benches --bin attachments -- --out reports/<dir>`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use clap::Parser;
use futures::StreamExt;
use serde_json::json;
use service::config::S3Config;
use service::{App, Config};
use sqlx::PgPool;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
struct Args {
    /// Files per round and mode.
    #[arg(long, default_value_t = 500)]
    files: usize,
    /// Bytes per file.
    #[arg(long, default_value_t = 1024 * 1024)]
    size: usize,
    /// Uploads in flight at once (both modes).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Rounds; each runs the API mode, then the direct mode.
    #[arg(long, default_value_t = 4)]
    rounds: usize,
    /// Directory for report.json and results.md.
    #[arg(long)]
    out: std::path::PathBuf,
}

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: eval \"$(infra/local/stack env)\""))
}

struct Round {
    seconds: f64,
    latencies_ms: Vec<f64>,
}

impl Round {
    fn mib_per_sec(&self, files: usize, size: usize) -> f64 {
        (files * size) as f64 / (1024.0 * 1024.0) / self.seconds
    }
    fn files_per_sec(&self, files: usize) -> f64 {
        files as f64 / self.seconds
    }
    fn print(&self, mode: &str, args: &Args) {
        eprintln!(
            "  {mode} {:.1} MiB/s ({:.0} files/s)",
            self.mib_per_sec(args.files, args.size),
            self.files_per_sec(args.files)
        );
    }
    fn json(&self, args: &Args) -> serde_json::Value {
        json!({"seconds": self.seconds, "mib_per_sec": self.mib_per_sec(args.files, args.size),
               "files_per_sec": self.files_per_sec(args.files),
               "p50_ms": pct(&self.latencies_ms, 50.0), "p99_ms": pct(&self.latencies_ms, 99.0)})
    }
}

fn pct(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i]
}

/// Runs `op(i)` for i in 0..n with `concurrency` in flight; wall time and each call's latency.
async fn timed<F, Fut>(n: usize, concurrency: usize, op: F) -> Round
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let started = Instant::now();
    let latencies_ms: Vec<f64> = futures::stream::iter(0..n)
        .map(|i| {
            let call = op(i);
            async move {
                let t = Instant::now();
                call.await;
                t.elapsed().as_secs_f64() * 1000.0
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    Round {
        seconds: started.elapsed().as_secs_f64(),
        latencies_ms,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let base_url = env("DATABASE_URL");
    let (admin, db_name, db_url) = fresh_database(&base_url).await?;

    let config = bench_config(db_url, args.concurrency);
    let app = App::build(config).await?;
    let addr = app.addr();
    let objects = app.state().objects.clone().expect("S3 configured");
    let stop = app.shutdown_token();
    let server = tokio::spawn(app.run_until_stopped());

    let http = reqwest::Client::new();
    let ticket: serde_json::Value = http
        .post(format!("http://{addr}/v1/tickets"))
        .header("x-user-id", USER)
        .json(&json!({"title": "attachment bench", "description": "1 MiB uploads"}))
        .send()
        .await?
        .json()
        .await?;
    let ticket_id = ticket["id"].as_str().unwrap().to_owned();
    let upload_url = format!("http://{addr}/v1/tickets/{ticket_id}/attachments");
    // Each upload sends these bytes with its own first 16 (see `unique`).
    let payload = bytes::Bytes::from(
        (0..args.size)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[2])
            .collect::<Vec<u8>>(),
    );
    let direct_prefix = format!("bench/{}/", uuid::Uuid::new_v4().simple());

    let api_round = |n: usize| {
        let (http, url, payload) = (http.clone(), upload_url.clone(), payload.clone());
        timed(n, args.concurrency, move |i| {
            api_upload(http.clone(), url.clone(), unique(&payload), i)
        })
    };
    let direct_round = |n: usize, round: usize| {
        let (objects, payload, prefix) = (objects.clone(), payload.clone(), direct_prefix.clone());
        timed(n, args.concurrency, move |i| {
            let key = format!("{prefix}{round}-{i}");
            direct_put(Arc::clone(&objects), key, unique(&payload))
        })
    };

    // Warm-up: connections, prepared statements, Garage's first writes.
    eprintln!("warm-up…");
    api_round(20).await;
    direct_round(20, usize::MAX).await;
    let mut api = Vec::new();
    let mut direct = Vec::new();
    for round in 0..args.rounds {
        eprintln!("round {}: API…", round + 1);
        let a = api_round(args.files).await;
        a.print("API   ", &args);
        eprintln!("round {}: direct PutObject…", round + 1);
        let d = direct_round(args.files, round).await;
        d.print("direct", &args);
        api.push(a);
        direct.push(d);
    }

    // Every API upload is there: rows, events and the objects' sizes.
    let pool = app_pool(&base_url, &db_name).await?;
    let (rows, events) = stored(&pool).await?;
    let expected = (args.files * args.rounds + 20) as i64;
    assert_eq!((rows, events), (expected, expected));

    let (md, report) = results(&args, &api, &direct, (rows, events, expected));
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(
        args.out.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    std::fs::write(args.out.join("results.md"), &md)?;
    println!("{md}");

    // Leave the bucket and the database as they were.
    eprintln!("cleaning up…");
    for prefix in [direct_prefix, objects.prefix().to_owned()] {
        delete_prefix(objects.client(), objects.bucket(), &prefix).await?;
    }
    stop.cancel();
    server.await??;
    pool.close().await;
    sqlx::raw_sql(&format!("DROP DATABASE {db_name} WITH (FORCE)"))
        .execute(&admin)
        .await?;
    Ok(())
}

/// The API on the stack, on its own database and key prefix.
fn bench_config(db_url: String, concurrency: usize) -> Config {
    let mut config = Config::embedded();
    config.database_url = Some(db_url);
    config.redis_url = Some(env("REDIS_URL"));
    config.migrate = true;
    config.s3 = S3Config {
        s3_bucket: Some(env("S3_BUCKET")),
        s3_endpoint: Some(env("S3_ENDPOINT")),
        s3_public_endpoint: None,
        s3_region: env("S3_REGION"),
        // Its own prefix: the objects are not this run's database's business after it ends.
        s3_key_prefix: format!("bench-{}/", uuid::Uuid::new_v4().simple()),
        s3_access_key_id: Some(env("S3_ACCESS_KEY_ID")),
        s3_secret_access_key: Some(env("S3_SECRET_ACCESS_KEY")),
        s3_force_path_style: true,
        s3_timeout: Duration::from_secs(30),
    };
    config.attachments.attachment_max_concurrent_uploads = concurrency.max(16);
    config
}

/// results.md and report.json: per round, API against direct, and the check of what was stored.
fn results(
    args: &Args,
    api: &[Round],
    direct: &[Round],
    (rows, events, expected): (i64, i64, i64),
) -> (String, serde_json::Value) {
    let ratios: Vec<f64> = api
        .iter()
        .zip(direct)
        .map(|(a, d)| d.seconds / a.seconds)
        .collect();
    let mut md = format!(
        "{files} files of {size} bytes per round and mode, {c} in flight, {r} rounds alternating \
         API → direct in one run.\n\n\
         | round | API MiB/s | API files/s | API p50 / p99 ms | direct MiB/s | direct files/s | direct p50 / p99 ms | API / direct |\n\
         |---|---|---|---|---|---|---|---|\n",
        files = args.files,
        size = args.size,
        c = args.concurrency,
        r = args.rounds,
    );
    for (i, ((a, d), ratio)) in api.iter().zip(direct).zip(&ratios).enumerate() {
        md.push_str(&format!(
            "| {} | {:.1} | {:.0} | {:.1} / {:.1} | {:.1} | {:.0} | {:.1} / {:.1} | {:.2} |\n",
            i + 1,
            a.mib_per_sec(args.files, args.size),
            a.files_per_sec(args.files),
            pct(&a.latencies_ms, 50.0),
            pct(&a.latencies_ms, 99.0),
            d.mib_per_sec(args.files, args.size),
            d.files_per_sec(args.files),
            pct(&d.latencies_ms, 50.0),
            pct(&d.latencies_ms, 99.0),
            ratio,
        ));
    }
    let median_ratio = pct(&ratios, 50.0);
    md.push_str(&format!(
        "\nMedian API / direct throughput ratio: **{median_ratio:.2}**. Checked after the run: \
         {rows} attachment rows and {events} `ticket.attachment_added` events for {expected} API \
         uploads (20 of them warm-up).\n"
    ));
    let report = json!({
        "files_per_round": args.files,
        "size_bytes": args.size,
        "concurrency": args.concurrency,
        "rounds": api.iter().zip(direct).zip(&ratios).map(|((a, d), ratio)| json!({
            "api": a.json(args),
            "direct": d.json(args),
            "api_over_direct": ratio,
        })).collect::<Vec<_>>(),
        "median_api_over_direct": median_ratio,
        "attachment_rows": rows,
        "attachment_events": events,
    });
    (md, report)
}

const USER: &str = "bench-attachments";

/// A new database on the stack's server, dropped at the end: (admin pool, name, URL).
async fn fresh_database(base_url: &str) -> anyhow::Result<(PgPool, String, String)> {
    let server = base_url.rsplit_once('/').unwrap().0;
    let db_name = format!("bench_attachments_{}", uuid::Uuid::new_v4().simple());
    let admin = PgPool::connect(&format!("{server}/postgres")).await?;
    sqlx::raw_sql(&format!("CREATE DATABASE {db_name}"))
        .execute(&admin)
        .await?;
    let db_url = format!("{server}/{db_name}");
    Ok((admin, db_name, db_url))
}

/// One upload through the API, as a client sends it (multipart, streamed); it must be stored.
async fn api_upload(http: reqwest::Client, url: String, payload: bytes::Bytes, i: usize) {
    let size = payload.len() as u64;
    let part = reqwest::multipart::Part::stream_with_length(reqwest::Body::from(payload), size)
        .file_name(format!("file-{i}.bin"));
    let res = http
        .post(&url)
        .header("x-user-id", USER)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .expect("upload request");
    assert_eq!(res.status(), 201, "{:?}", res.text().await);
}

/// The same bytes straight to the bucket with the API's own S3 client.
async fn direct_put(objects: Arc<service::s3::ObjectStore>, key: String, payload: bytes::Bytes) {
    objects
        .client()
        .put_object()
        .bucket(objects.bucket())
        .key(key)
        .content_type("application/octet-stream")
        .body(ByteStream::from(payload))
        .send()
        .await
        .expect("direct put");
}

/// Attachment rows and `ticket.attachment_added` events in the bench's database.
async fn stored(pool: &PgPool) -> anyhow::Result<(i64, i64)> {
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM attachments")
        .fetch_one(pool)
        .await?;
    let events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox_events WHERE event_type = 'ticket.attachment_added'",
    )
    .fetch_one(pool)
    .await?;
    Ok((rows, events))
}

/// The payload with a fresh UUID in front: Garage stores content-addressed blocks, so identical
/// files would be deduplicated and never written again.
fn unique(payload: &bytes::Bytes) -> bytes::Bytes {
    let mut copy = payload.to_vec();
    copy[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    copy.into()
}

async fn app_pool(base_url: &str, db_name: &str) -> anyhow::Result<PgPool> {
    let url = format!("{}/{db_name}", base_url.rsplit_once('/').unwrap().0);
    Ok(PgPool::connect(&url).await?)
}

async fn delete_prefix(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> anyhow::Result<()> {
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for object in page?.contents() {
            if let Some(key) = object.key() {
                client
                    .delete_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await?;
            }
        }
    }
    Ok(())
}
