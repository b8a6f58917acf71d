//! `App::build(config)` wires the pool, producer, metrics and the health endpoint;
//! `run_until_stopped` runs the loops. Tests start exactly what `main` starts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::liveness::Liveness;
use crate::metrics::Metrics;
use crate::publish::{self, Publisher};
use crate::worker::{Relay, Settings};

pub struct App {
    relay: Arc<Relay>,
    listener: TcpListener,
    addr: SocketAddr,
    listen: bool,
    stop: CancellationToken,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<App> {
        ops::config::valid(config.validate())?;
        tracing::info!(
            database = %ops::redact_url(config.database_url()),
            brokers = %config.kafka_brokers,
            kafka_options = ?config.kafka_options.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            "relay starting"
        );
        let limits = config.session_limits();
        let max = config.db_max_connections.max(3);
        let pool = ops::postgres::worker_pool(config.database_url(), max, limits).await?;
        let relay_id = config.relay_id();
        // Before releasing anything: holding the lock proves a previous run of this name is gone.
        let liveness = if config.liveness_lock {
            Some(Liveness::acquire(&pool, &relay_id, Duration::from_secs(30)).await?)
        } else {
            None
        };
        if let Some(name) = &config.relay_id {
            let released = crate::outbox::release_own_claims(&pool, name)
                .await
                .context("releasing this relay's claims from before its restart")?;
            if released > 0 {
                tracing::warn!(released, relay_id = %name, "claims of this relay's previous run returned to pending");
            }
        }
        let producer = publish::producer(&config)?;
        let publisher = Publisher::new(producer, config.topic.clone(), config.chaos_failure_rate);
        let metrics = Arc::new(Metrics::new());
        let settings = Settings {
            relay_id,
            batch_size: config.batch_size,
            retry_base: config.retry_base,
            retry_max: config.retry_max,
            poll_interval: config.poll_interval,
            step_gap: config.step_gap,
            listen: !config.no_listen,
            claim_timeout: config.claim_timeout,
            maintenance_interval: config.maintenance_interval,
            retention: config.retention,
            retention_batch: config.retention_batch,
            db_timeout: config.session_limits().client_timeout(),
            stuck_after: config.stuck_after,
        };
        let listen = settings.listen;
        let relay = Arc::new(Relay::new(pool, publisher, metrics, settings, liveness));
        let listener = TcpListener::bind(config.metrics_addr)
            .await
            .with_context(|| format!("binding the metrics address {}", config.metrics_addr))?;
        let addr = listener.local_addr()?;
        Ok(App {
            relay,
            listener,
            addr,
            listen,
            stop: CancellationToken::new(),
        })
    }

    /// Address of `/metrics`, `/healthz`, `/readyz`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn relay(&self) -> Arc<Relay> {
        self.relay.clone()
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let App {
            relay,
            listener,
            listen,
            stop,
            ..
        } = self;
        tracing::info!(relay = relay.id(), listen, "relay started");
        let wake = Arc::new(Notify::new());
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(relay.clone().run_steps(wake.clone(), stop.clone()));
        if listen {
            tasks.spawn(relay.clone().run_listener(wake.clone(), stop.clone()));
        }
        tasks.spawn(relay.clone().run_maintenance(wake.clone(), stop.clone()));
        tasks.spawn(ops::server::serve(listener, relay.clone(), stop.clone()));
        while tasks.join_next().await.is_some() {}
        relay.publisher().flush(Duration::from_secs(5));
        tracing::info!(relay = relay.id(), "relay stopped");
        Ok(())
    }
}

/// What `/metrics`, `/healthz` and `/readyz` report.
impl ops::Probe for Relay {
    fn metrics(&self) -> String {
        Relay::metrics(self).registry.render()
    }

    /// Live while the step loop turns: a step that hangs (whatever it waits for) fails this
    /// after `--stuck-after`, so the orchestrator restarts the process.
    fn live(&self) -> Result<(), String> {
        self.heartbeat().check(self.stuck_after(), "step loop")
    }

    /// Ready when both Postgres and the broker answer (API-7's Kafka check lives here: the API
    /// itself stays up through a broker outage, that is what the outbox is for).
    async fn ready(&self) -> (bool, serde_json::Value) {
        let db = self.refresh_backlog().await.map_err(|e| e.to_string());
        let kafka = self.publisher().broker_ready(Duration::from_secs(2)).await;
        let body = serde_json::json!({
            "postgres": db.as_ref().map(|_| "ok").unwrap_or_else(|e| e.as_str()),
            "kafka": kafka.as_ref().map(|_| "ok").unwrap_or_else(|e| e.as_str()),
        });
        (db.is_ok() && kafka.is_ok(), body)
    }
}
