//! `App::build(config)` wires the consumer, the DLQ producer, the pool and the health endpoint;
//! `run_until_stopped` consumes until the shutdown token fires.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::consumer::{self, Notifier};
use crate::metrics::Metrics;

pub struct App {
    notifier: Arc<Notifier>,
    listener: TcpListener,
    addr: SocketAddr,
    stop: CancellationToken,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<App> {
        ops::config::valid(config.validate())?;
        tracing::info!(
            database = %ops::redact_url(&config.database_url),
            brokers = %config.kafka_brokers,
            kafka_options = ?config.kafka_options.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            "notifier starting"
        );
        let limits = config.session_limits();
        let max = config.db_max_connections.max(1);
        let pool = ops::postgres::worker_pool(&config.database_url, max, limits).await?;
        let metrics = Arc::new(Metrics::new());
        let notifier = Arc::new(Notifier {
            consumer: consumer::consumer(&config, metrics.clone())?,
            dlq: consumer::dlq_producer(&config)?,
            pool,
            metrics,
            dlq_topic: config.dlq_topic.clone(),
            backoff: config.backoff(),
            batch_size: config.batch_size,
            batch_wait: config.batch_wait,
            stalled: Default::default(),
            db_timeout: config.session_limits().client_timeout(),
            heartbeat: ops::Heartbeat::new(),
            stuck_after: config.stuck_after,
        });
        let listener = TcpListener::bind(config.metrics_addr)
            .await
            .with_context(|| format!("binding the metrics address {}", config.metrics_addr))?;
        let addr = listener.local_addr()?;
        tracing::info!(topic = %config.topic, group = %config.group_id,
            retry_delays = ?config.retry_delays(5), "notifier configured");
        Ok(App {
            notifier,
            listener,
            addr,
            stop: CancellationToken::new(),
        })
    }

    /// Address of `/metrics`, `/healthz`, `/readyz`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let App {
            notifier,
            listener,
            stop,
            ..
        } = self;
        let http = tokio::spawn(ops::server::serve(listener, notifier.clone(), stop.clone()));
        notifier.run(stop.clone()).await;
        stop.cancel();
        let _ = http.await;
        tracing::info!("notifier stopped");
        Ok(())
    }
}

/// What `/metrics`, `/healthz` and `/readyz` report.
impl ops::Probe for Notifier {
    fn metrics(&self) -> String {
        self.metrics.registry.render()
    }

    /// Live while the consume loop turns (idle, busy or waiting out an outage): a loop stuck
    /// on anything fails this after `--stuck-after`, so the orchestrator restarts the process.
    fn live(&self) -> Result<(), String> {
        self.heartbeat.check(self.stuck_after, "consume loop")
    }

    /// Ready when Postgres answers, the consumer holds at least one partition and is not
    /// waiting out a database failure (then `stalled` says why, since when and how many
    /// attempts).
    async fn ready(&self) -> (bool, serde_json::Value) {
        let n = self;
        let db = ops::bounded(n.db_timeout, sqlx::query("SELECT 1").execute(&n.pool))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
        let assigned = n.assignment_size().map_err(|e| e.to_string());
        let stall = n.stall();
        let ok = db.is_ok() && matches!(assigned, Ok(n) if n > 0) && stall.is_none();
        let body = serde_json::json!({
            "stalled": stall.map(|s| serde_json::json!({
                "error": s.error,
                "for_seconds": s.since.elapsed().as_secs(),
                "attempts": s.attempts,
            })),
            "postgres": db.as_ref().map(|_| "ok".to_string()).unwrap_or_else(|e| e.clone()),
            "assigned_partitions": assigned.as_ref().map(|n| serde_json::json!(n))
                .unwrap_or_else(|e| serde_json::json!(e)),
        });
        (ok, body)
    }
}
